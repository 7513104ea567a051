
/*
 * Copyright (C) ngx_voice authors
 *
 * OpenAI Realtime (GA) events: parsed as they stream with yajl's event
 * parser, never held whole; only the fields the relay acts on are kept.
 * Client events on the hot path (input_audio_buffer.append) are written
 * from fixed templates; session.update is built at configuration time.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <openssl/rand.h>
#include "ngx_voice_call.h"


enum {
    NGX_VOICE_OA_UNKNOWN = 0,
    NGX_VOICE_OA_SESSION_CREATED,
    NGX_VOICE_OA_SESSION_UPDATED,
    NGX_VOICE_OA_AUDIO_DELTA,
    NGX_VOICE_OA_SPEECH_STARTED,
    NGX_VOICE_OA_RESPONSE_CREATED,
    NGX_VOICE_OA_RESPONSE_DONE,
    NGX_VOICE_OA_ITEM_DONE,
    NGX_VOICE_OA_ERROR
};


typedef struct {
    ngx_str_t                    name;
    ngx_uint_t                   type;
} ngx_voice_realtime_type_t;


static ngx_int_t ngx_voice_realtime_json_init(ngx_voice_call_t *call);
static ngx_int_t ngx_voice_realtime_data(ngx_voice_peer_t *peer,
    ngx_voice_ws_event_t *ev);
static ngx_int_t ngx_voice_realtime_fail(ngx_voice_call_t *call,
    ngx_uint_t code, const char *reason);
static void ngx_voice_realtime_begin(void *data);
static int ngx_voice_realtime_string(void *data, ngx_voice_json_path_t *path,
    const u_char *s, size_t len);
static ngx_int_t ngx_voice_realtime_dispatch(void *data);
static ngx_int_t ngx_voice_realtime_deny_approval(ngx_voice_call_t *call);
static void ngx_voice_realtime_copy(ngx_str_t *dst, u_char *buf,
    size_t size, const unsigned char *s, size_t len);
static ngx_int_t ngx_voice_realtime_send(ngx_voice_call_t *call,
    u_char *data, size_t len);
static ngx_int_t ngx_voice_realtime_sent(ngx_voice_call_t *call,
    ngx_int_t rc);


static ngx_voice_json_handler_t  ngx_voice_realtime_json = {
    ngx_voice_realtime_begin,
    ngx_voice_realtime_string,
    NULL,
    ngx_voice_realtime_dispatch
};


static ngx_voice_realtime_type_t  ngx_voice_realtime_types[] = {
    { ngx_string("response.output_audio.delta"), NGX_VOICE_OA_AUDIO_DELTA },
    { ngx_string("input_audio_buffer.speech_started"),
      NGX_VOICE_OA_SPEECH_STARTED },
    { ngx_string("response.created"), NGX_VOICE_OA_RESPONSE_CREATED },
    { ngx_string("response.done"), NGX_VOICE_OA_RESPONSE_DONE },
    { ngx_string("response.output_item.done"), NGX_VOICE_OA_ITEM_DONE },
    { ngx_string("conversation.item.done"), NGX_VOICE_OA_ITEM_DONE },
    { ngx_string("session.created"), NGX_VOICE_OA_SESSION_CREATED },
    { ngx_string("session.updated"), NGX_VOICE_OA_SESSION_UPDATED },
    { ngx_string("error"), NGX_VOICE_OA_ERROR },
    { ngx_null_string, 0 }
};


ngx_int_t
ngx_voice_realtime_init(ngx_voice_call_t *call)
{
    ngx_voice_peer_t  *peer;

    peer = &call->openai;

    if (ngx_voice_peer_init(peer, call, call->pc.connection, 1, "OpenAI",
                            ngx_voice_realtime_data)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_voice_realtime_json_init(call);
}


static ngx_int_t
ngx_voice_realtime_json_init(ngx_voice_call_t *call)
{
    return ngx_voice_json_init(&call->openai.json, &ngx_voice_realtime_json,
                               call, call->log);
}


static ngx_int_t
ngx_voice_realtime_data(ngx_voice_peer_t *peer, ngx_voice_ws_event_t *ev)
{
    ngx_int_t          rc;
    ngx_voice_call_t  *call;

    call = peer->call;

    if (ev->first) {
        /* the type seen so far is the previous event's */
        call->oa.type = NGX_VOICE_OA_UNKNOWN;
    }

    if (peer->skipping) {
        if (!ev->last) {
            return NGX_OK;
        }

        peer->skipping = 0;

        return ngx_voice_realtime_dispatch(call);
    }

    if (peer->parser.msg_len > call->conf->max_message_size) {

        /* audio deltas are held, and so limited */

        if (call->oa.type == NGX_VOICE_OA_AUDIO_DELTA) {
            ngx_log_error(NGX_LOG_ERR, call->log, 0,
                          "voice: OpenAI audio delta larger than "
                          "voice_max_message_size %uz",
                          call->conf->max_message_size);
            return ngx_voice_realtime_fail(call, NGX_VOICE_WS_CLOSE_TOO_BIG,
                                           "message too big");
        }

        /*
         * Anything else is dropped: past voice_max_message_size the rest
         * of it is not even parsed (a long string would be buffered by
         * yajl); a fresh handle takes the next event, as yajl 2.1 cannot
         * reset one, and the fields already seen still count.
         */

        ngx_voice_json_free(&peer->json);

        if (ngx_voice_realtime_json_init(call) != NGX_OK) {
            return NGX_ERROR;
        }

        if (!ev->last) {
            peer->skipping = 1;
            return NGX_OK;
        }

        return ngx_voice_realtime_dispatch(call);
    }

    rc = ngx_voice_peer_json(peer, ev);

    if (rc != NGX_DECLINED) {
        return rc;
    }

    ngx_log_error(NGX_LOG_ERR, call->log, 0,
                  "voice: OpenAI sent a message that is not one "
                  "JSON object");
    return ngx_voice_realtime_fail(call, NGX_VOICE_WS_CLOSE_BAD_DATA,
                                   "invalid JSON");
}


static ngx_int_t
ngx_voice_realtime_fail(ngx_voice_call_t *call, ngx_uint_t code,
    const char *reason)
{
    ngx_voice_call_set_reason(call, "OpenAI: %s", reason);
    ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_ERROR, code, reason);
    return NGX_ERROR;
}


static int
ngx_voice_realtime_string(void *data, ngx_voice_json_path_t *path,
    const u_char *s, size_t len)
{
    ngx_voice_call_t  *call = data;

    u_char                     *p;
    ngx_voice_realtime_msg_t   *oa;
    ngx_voice_realtime_type_t  *t;

    oa = &call->oa;

    if (ngx_voice_json_at(path, "type", NULL, NULL)) {

        for (t = ngx_voice_realtime_types; t->name.len; t++) {
            if (t->name.len == len && ngx_strncmp(t->name.data, s, len) == 0) {
                oa->type = t->type;
                break;
            }
        }

    } else if (ngx_voice_json_at(path, "delta", NULL, NULL)) {

        if (oa->type != NGX_VOICE_OA_AUDIO_DELTA) {
            return 1;
        }

        if (!ngx_voice_json_is_base64(s, len)) {
            ngx_log_error(NGX_LOG_ERR, call->log, 0,
                          "voice: OpenAI audio delta is not base64");
            (void) ngx_voice_realtime_fail(call, NGX_VOICE_WS_CLOSE_BAD_DATA,
                                           "delta is not base64");
            return 0;
        }

        if (oa->item_id.len && oa->response_id.len) {
            /* the usual order: copied once, straight to Twilio */
            oa->delta_sent = 1;
            return ngx_voice_playback_audio(call, &oa->item_id,
                                            &oa->response_id,
                                            (u_char *) s, len)
                   == NGX_OK;
        }

        p = ngx_voice_call_scratch(&call->openai, len);
        if (p == NULL) {
            return 0;
        }

        ngx_memcpy(p, s, len);
        oa->delta.data = p;
        oa->delta.len = len;

    } else if (ngx_voice_json_at(path, "item_id", NULL, NULL)) {
        ngx_voice_realtime_copy(&oa->item_id, oa->iid, sizeof(oa->iid),
                                s, len);

    } else if (ngx_voice_json_at(path, "response_id", NULL, NULL)) {
        ngx_voice_realtime_copy(&oa->response_id, oa->rid, sizeof(oa->rid),
                                s, len);

    } else if (ngx_voice_json_at(path, "error", "code", NULL)) {
        ngx_voice_realtime_copy(&oa->code, oa->cd, sizeof(oa->cd), s, len);

    } else if (ngx_voice_json_at(path, "error", "message", NULL)) {
        ngx_voice_realtime_copy(&oa->message, oa->msg, sizeof(oa->msg),
                                s, ngx_min(len, sizeof(oa->msg)));

    } else if (ngx_voice_json_at(path, "item", "type", NULL)) {
        ngx_voice_realtime_copy(&oa->item_type, oa->ity, sizeof(oa->ity),
                                s, len);

    } else if (ngx_voice_json_at(path, "item", "id", NULL)) {
        ngx_voice_realtime_copy(&oa->approval_id, oa->aid, sizeof(oa->aid),
                                s, len);
    }

    return 1;
}


/* an event starts: forget the fields of the previous one */
static void
ngx_voice_realtime_begin(void *data)
{
    ngx_voice_call_t  *call = data;

    ngx_memzero(&call->oa, offsetof(ngx_voice_realtime_msg_t, iid));
}


static ngx_int_t
ngx_voice_realtime_dispatch(void *data)
{
    ngx_voice_call_t  *call = data;

    ngx_voice_realtime_msg_t  *oa;

    oa = &call->oa;

    switch (oa->type) {

    case NGX_VOICE_OA_AUDIO_DELTA:
        if (oa->delta_sent || oa->delta.len == 0) {
            return NGX_OK;
        }

        return ngx_voice_playback_audio(call, &oa->item_id, &oa->response_id,
                                        oa->delta.data, oa->delta.len);

    case NGX_VOICE_OA_SPEECH_STARTED:
        return ngx_voice_playback_interrupt(call);

    case NGX_VOICE_OA_SESSION_CREATED:
        ngx_voice_call_session_created(call);
        return call->done ? NGX_ERROR : NGX_OK;

    case NGX_VOICE_OA_SESSION_UPDATED:
        if (!call->session_updated) {
            call->session_updated = 1;
            call->setup_ms = ngx_current_msec - call->accepted;

            ngx_log_error(NGX_LOG_INFO, call->log, 0,
                          "voice: session ready %Mms after the upgrade",
                          call->setup_ms);
        }

        return NGX_OK;

    case NGX_VOICE_OA_RESPONSE_CREATED:
        call->response_active = 1;
        return NGX_OK;

    case NGX_VOICE_OA_RESPONSE_DONE:
        call->response_active = 0;

        if (call->response_pending) {
            call->response_pending = 0;
            return ngx_voice_realtime_response_create(call);
        }

        return NGX_OK;

    case NGX_VOICE_OA_ITEM_DONE:
        if (oa->item_type.len == sizeof("mcp_approval_request") - 1
            && ngx_strncmp(oa->item_type.data, "mcp_approval_request",
                           oa->item_type.len) == 0)
        {
            return ngx_voice_realtime_deny_approval(call);
        }

        return NGX_OK;

    case NGX_VOICE_OA_ERROR:
        ngx_voice_log_safe(oa->code.data, oa->code.len);
        ngx_voice_log_safe(oa->message.data, oa->message.len);

        /* log-safe: both went through ngx_voice_log_safe() above */
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "voice: OpenAI error \"%V\": %V",
                      &oa->code, &oa->message);
        return NGX_OK;

    default:
        return NGX_OK;
    }
}


/*
 * require_approval is always "never": a caller cannot approve a tool by
 * voice, so a request that still arrives is denied.
 */
static ngx_int_t
ngx_voice_realtime_deny_approval(ngx_voice_call_t *call)
{
    u_char                    *p;
    ngx_str_t                 *id;
    ngx_voice_realtime_msg_t  *oa;
    u_char                     rnd[8];
    u_char                     buf[256 + NGX_VOICE_ID_MAX * 6];

    oa = &call->oa;
    id = &oa->approval_id;

    if (id->len == 0
        || (id->len == call->denied_len
            && ngx_memcmp(id->data, call->denied, id->len) == 0))
    {
        /* output_item.done and conversation.item.done name it twice */
        return NGX_OK;
    }

    ngx_memcpy(call->denied, id->data, id->len);
    call->denied_len = id->len;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        return NGX_ERROR;
    }

    ngx_log_error(NGX_LOG_WARN, call->log, 0,
                  "voice: denied MCP approval request \"%V\": "
                  "require_approval is \"never\"", id);

    p = ngx_sprintf(buf, "{\"type\":\"conversation.item.create\","
                         "\"item\":{\"id\":\"mcpr_");
    p = ngx_hex_dump(p, rnd, sizeof(rnd));
    p = ngx_cpymem(p, "\",\"type\":\"mcp_approval_response\","
                      "\"approval_request_id\":\"",
                   sizeof("\",\"type\":\"mcp_approval_response\","
                          "\"approval_request_id\":\"") - 1);
    p = ngx_voice_json_escape(p, id->data, id->len);
    p = ngx_cpymem(p, "\",\"approve\":false}}",
                   sizeof("\",\"approve\":false}}") - 1);

    return ngx_voice_realtime_send(call, buf, p - buf);
}


static void
ngx_voice_realtime_copy(ngx_str_t *dst, u_char *buf, size_t size,
    const unsigned char *s, size_t len)
{
    if (len > size) {
        dst->len = 0;
        return;
    }

    ngx_memcpy(buf, s, len);
    dst->data = buf;
    dst->len = len;
}


ngx_int_t
ngx_voice_realtime_append(ngx_voice_call_t *call, u_char *audio, size_t len)
{
    static const char  head[] = "{\"type\":\"input_audio_buffer.append\","
                                "\"audio\":\"";
    static const char  tail[] = "\"}";

    ngx_int_t          rc;
    ngx_voice_peer_t  *peer;

    peer = &call->openai;

    rc = ngx_voice_peer_frame(peer, NGX_VOICE_WS_TEXT,
                              sizeof(head) - 1 + len + sizeof(tail) - 1);

    if (rc == NGX_OK) {
        (void) ngx_voice_peer_append(peer, (u_char *) head, sizeof(head) - 1);
        (void) ngx_voice_peer_append(peer, audio, len);
        rc = ngx_voice_peer_append(peer, (u_char *) tail, sizeof(tail) - 1);
    }

    return ngx_voice_realtime_sent(call, rc);
}


/* session.update, then the greeting, both built at configuration time */
ngx_int_t
ngx_voice_realtime_session(ngx_voice_call_t *call)
{
    ngx_int_t              rc;
    ngx_voice_loc_conf_t  *conf;

    conf = call->conf;

    rc = ngx_voice_realtime_send(call, conf->session_update.data,
                                 conf->session_update.len);

    if (rc != NGX_OK || conf->greeting_item.len == 0) {
        return rc;
    }

    rc = ngx_voice_realtime_send(call, conf->greeting_item.data,
                                 conf->greeting_item.len);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_voice_realtime_response_create(call);
}


ngx_int_t
ngx_voice_realtime_truncate(ngx_voice_call_t *call, ngx_voice_item_t *item,
    ngx_msec_t audio_end_ms)
{
    u_char  *p;
    u_char   buf[192 + NGX_VOICE_ID_MAX * 6];

    p = ngx_cpymem(buf, "{\"type\":\"conversation.item.truncate\","
                        "\"item_id\":\"",
                   sizeof("{\"type\":\"conversation.item.truncate\","
                          "\"item_id\":\"") - 1);
    p = ngx_voice_json_escape(p, item->id, item->id_len);
    p = ngx_sprintf(p, "\",\"content_index\":0,\"audio_end_ms\":%M}",
                    audio_end_ms);

    return ngx_voice_realtime_send(call, buf, p - buf);
}


/* a keypad digit becomes a user message, answered like speech */
ngx_int_t
ngx_voice_realtime_dtmf(ngx_voice_call_t *call, u_char digit)
{
    u_char     *p;
    ngx_int_t   rc;
    u_char      buf[256];

    if (!call->session_sent) {
        /* sent with the queued audio, right after session.update */
        if (call->ndigits < sizeof(call->digits)) {
            call->digits[call->ndigits++] = digit;
        }

        return NGX_OK;
    }

    p = ngx_sprintf(buf, "{\"type\":\"conversation.item.create\","
                         "\"item\":{\"type\":\"message\",\"role\":\"user\","
                         "\"content\":[{\"type\":\"input_text\","
                         "\"text\":\"The caller pressed %c.\"}]}}", digit);

    rc = ngx_voice_realtime_send(call, buf, p - buf);
    if (rc != NGX_OK) {
        return rc;
    }

    if (call->response_active) {
        call->response_pending = 1;
        return NGX_OK;
    }

    return ngx_voice_realtime_response_create(call);
}


ngx_int_t
ngx_voice_realtime_response_create(ngx_voice_call_t *call)
{
    static u_char  msg[] = "{\"type\":\"response.create\"}";

    /* the response counts as active from now, so DTMF does not stack */
    call->response_active = 1;

    return ngx_voice_realtime_send(call, msg, sizeof(msg) - 1);
}


static ngx_int_t
ngx_voice_realtime_send(ngx_voice_call_t *call, u_char *data, size_t len)
{
    return ngx_voice_realtime_sent(call,
                                   ngx_voice_peer_text(&call->openai, data,
                                                       len));
}


/* what a write to OpenAI came to, for the callers */
static ngx_int_t
ngx_voice_realtime_sent(ngx_voice_call_t *call, ngx_int_t rc)
{
    if (rc == NGX_BUSY) {
        ngx_log_error(NGX_LOG_ERR, call->log, 0,
                      "voice: OpenAI is not reading, voice_buffer_size "
                      "%uz reached", call->conf->buffer_size);
        ngx_voice_call_set_reason(call, "OpenAI is not reading");
        ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_ERROR,
                           NGX_VOICE_WS_CLOSE_ERROR, NULL);
        return NGX_ERROR;
    }

    /* NGX_DECLINED: our close is out, nothing more goes */
    return (rc == NGX_DECLINED) ? NGX_OK : rc;
}
