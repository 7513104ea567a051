
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
#include <openssl/rand.h>
#include "ngx_voice_realtime.h"
#include "ngx_voice_metrics.h"
#include "ngx_voice_realtime_items.h"
#include "ngx_voice_util.h"


enum {
    NGX_VOICE_OA_UNKNOWN = 0,
    NGX_VOICE_OA_SESSION_CREATED,
    NGX_VOICE_OA_SESSION_UPDATED,
    NGX_VOICE_OA_AUDIO_DELTA,
    NGX_VOICE_OA_SPEECH_STARTED,
    NGX_VOICE_OA_RESPONSE_CREATED,
    NGX_VOICE_OA_RESPONSE_DONE,
    NGX_VOICE_OA_ITEM_DONE,
    NGX_VOICE_OA_ITEM_ADDED,
    NGX_VOICE_OA_CALLER_TRANSCRIPT,
    NGX_VOICE_OA_ASSISTANT_TRANSCRIPT,
    NGX_VOICE_OA_ERROR
};


typedef struct {
    ngx_str_t                    name;
    ngx_uint_t                   type;
} ngx_voice_realtime_type_t;


static ngx_int_t ngx_voice_realtime_message(ngx_voice_peer_t *peer,
    ngx_voice_ws_event_t *ev);
static ngx_int_t ngx_voice_realtime_skip(ngx_voice_realtime_t *rt,
    ngx_voice_ws_event_t *ev);
static void ngx_voice_realtime_peer_failed(ngx_voice_peer_t *peer,
    ngx_uint_t code, const char *text, const char *reason);
static ngx_uint_t ngx_voice_realtime_paused(ngx_voice_peer_t *peer);
static ngx_int_t ngx_voice_realtime_fail(ngx_voice_realtime_t *rt,
    ngx_uint_t code, const char *what);
static void ngx_voice_realtime_begin(void *data);
static int ngx_voice_realtime_string(void *data, ngx_voice_json_path_t *path,
    const u_char *s, size_t len);
static int ngx_voice_realtime_delta(ngx_voice_realtime_t *rt,
    const u_char *s, size_t len);
static int ngx_voice_realtime_item_string(ngx_voice_realtime_t *rt,
    ngx_voice_json_path_t *path, const u_char *s, size_t len);
static ngx_int_t ngx_voice_realtime_dispatch(void *data);
static ngx_int_t ngx_voice_realtime_response_done(ngx_voice_realtime_t *rt);
static ngx_int_t ngx_voice_realtime_deny_approval(ngx_voice_realtime_t *rt);
static void ngx_voice_realtime_log_error(ngx_voice_realtime_t *rt);
static ngx_int_t ngx_voice_realtime_response_create(ngx_voice_realtime_t *rt);


static const ngx_voice_peer_handler_t  ngx_voice_realtime_peer_handler = {
    ngx_voice_realtime_message,
    ngx_voice_realtime_peer_failed,
    ngx_voice_realtime_paused
};


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
    { ngx_string("conversation.item.added"), NGX_VOICE_OA_ITEM_ADDED },
    { ngx_string("conversation.item.created"), NGX_VOICE_OA_ITEM_ADDED },
    { ngx_string("conversation.item.input_audio_transcription.completed"),
      NGX_VOICE_OA_CALLER_TRANSCRIPT },
    { ngx_string("response.output_audio_transcript.done"),
      NGX_VOICE_OA_ASSISTANT_TRANSCRIPT },
    { ngx_string("session.created"), NGX_VOICE_OA_SESSION_CREATED },
    { ngx_string("session.updated"), NGX_VOICE_OA_SESSION_UPDATED },
    { ngx_string("error"), NGX_VOICE_OA_ERROR },
    { ngx_null_string, 0 }
};


ngx_int_t
ngx_voice_realtime_open(ngx_voice_realtime_t *rt, ngx_connection_t *c)
{
    rt->peer.name = "OpenAI";
    rt->peer.handler = &ngx_voice_realtime_peer_handler;
    rt->peer.data = rt;

    /* OpenAI's faults are upstream faults */
    rt->peer.log_level = NGX_LOG_ERR;

    if (ngx_voice_peer_init(&rt->peer, c, 1) != NGX_OK
        || ngx_voice_json_init(&rt->json, &ngx_voice_realtime_json, rt,
                               rt->peer.log)
           != NGX_OK)
    {
        /* not a WebSocket after all: the connection is closed by the owner */
        rt->peer.open = 0;
        rt->peer.connection = NULL;
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_voice_realtime_free(ngx_voice_realtime_t *rt)
{
    ngx_voice_json_free(&rt->json);
}


static ngx_int_t
ngx_voice_realtime_message(ngx_voice_peer_t *peer, ngx_voice_ws_event_t *ev)
{
    ngx_int_t              rc;
    ngx_voice_realtime_t  *rt;

    rt = peer->data;

    if (ev->first) {
        /* the type seen so far is the previous event's */
        rt->msg.type = NGX_VOICE_OA_UNKNOWN;
    }

    if (!rt->skipping && peer->parser.msg_len > rt->max_message) {
        /* what was gathered of it may hold the event's type */
        rc = ngx_voice_json_flush(&rt->json);

        if (rc == NGX_OK) {
            return ngx_voice_realtime_skip(rt, ev);
        }

    } else if (rt->skipping) {
        return ngx_voice_realtime_skip(rt, ev);

    } else {
        rc = ngx_voice_json_feed(&rt->json, ev->data, ev->len, ev->first,
                                 ev->last);

        if (rc == NGX_OK) {
            return NGX_OK;
        }
    }

    if (rc == NGX_ABORT) {
        /* a handler stopped it, and has said why */
        return NGX_ERROR;
    }

    if (rc == NGX_ERROR) {
        return ngx_voice_realtime_fail(rt, NGX_VOICE_WS_CLOSE_ERROR,
                                       "out of memory");
    }

    ngx_log_error(NGX_LOG_ERR, peer->log, 0,
                  "voice: OpenAI sent a message that is not one "
                  "JSON object");
    return ngx_voice_realtime_fail(rt, NGX_VOICE_WS_CLOSE_BAD_DATA,
                                   "invalid JSON");
}


/*
 * An event past voice_max_message_size.  Audio deltas are held, and so
 * limited; anything else is dropped: the rest of it is not even parsed
 * (a long string would be buffered by yajl).  A fresh handle takes the
 * next event, as yajl 2.1 cannot reset one, and the fields already seen
 * still count.
 */
static ngx_int_t
ngx_voice_realtime_skip(ngx_voice_realtime_t *rt, ngx_voice_ws_event_t *ev)
{
    if (!rt->skipping) {

        if (rt->msg.type == NGX_VOICE_OA_AUDIO_DELTA) {
            ngx_log_error(NGX_LOG_ERR, rt->peer.log, 0,
                          "voice: OpenAI audio delta larger than "
                          "voice_max_message_size %uz", rt->max_message);
            return ngx_voice_realtime_fail(rt, NGX_VOICE_WS_CLOSE_TOO_BIG,
                                           "message too big");
        }

        ngx_voice_json_free(&rt->json);

        if (ngx_voice_json_init(&rt->json, &ngx_voice_realtime_json, rt,
                                rt->peer.log)
            != NGX_OK)
        {
            return ngx_voice_realtime_fail(rt, NGX_VOICE_WS_CLOSE_ERROR,
                                           "out of memory");
        }

        rt->skipping = 1;
    }

    if (!ev->last) {
        return NGX_OK;
    }

    rt->skipping = 0;

    return ngx_voice_realtime_dispatch(rt);
}


static void
ngx_voice_realtime_peer_failed(ngx_voice_peer_t *peer, ngx_uint_t code,
    const char *text, const char *reason)
{
    ngx_voice_realtime_t  *rt;

    rt = peer->data;

    rt->handler->failed(rt, code, text, reason);
}


static ngx_uint_t
ngx_voice_realtime_paused(ngx_voice_peer_t *peer)
{
    ngx_voice_realtime_t  *rt;

    rt = peer->data;

    return rt->handler->paused(rt);
}


/* "what" is the close frame's text; the reason is "OpenAI: what" */
static ngx_int_t
ngx_voice_realtime_fail(ngx_voice_realtime_t *rt, ngx_uint_t code,
    const char *what)
{
    u_char  reason[128];

    (void) ngx_snprintf(reason, sizeof(reason), "OpenAI: %s%Z", what);

    rt->handler->failed(rt, code, what, (char *) reason);

    return NGX_ERROR;
}


static int
ngx_voice_realtime_string(void *data, ngx_voice_json_path_t *path,
    const u_char *s, size_t len)
{
    ngx_voice_realtime_t  *rt = data;

    ngx_voice_realtime_msg_t   *msg;
    ngx_voice_realtime_type_t  *t;

    msg = &rt->msg;

    if (ngx_voice_json_at(path, "type", NULL, NULL)) {

        for (t = ngx_voice_realtime_types; t->name.len; t++) {
            if (t->name.len == len && ngx_strncmp(t->name.data, s, len) == 0) {
                msg->type = t->type;
                break;
            }
        }

    } else if (ngx_voice_json_at(path, "delta", NULL, NULL)) {

        if (msg->type == NGX_VOICE_OA_AUDIO_DELTA) {
            return ngx_voice_realtime_delta(rt, s, len);
        }

    } else if (ngx_voice_json_at(path, "item_id", NULL, NULL)) {
        ngx_voice_json_copy(&msg->item_id, msg->item_id_buf,
                            sizeof(msg->item_id_buf), s, len);

    } else if (ngx_voice_json_at(path, "response_id", NULL, NULL)) {
        ngx_voice_json_copy(&msg->response_id, msg->response_id_buf,
                            sizeof(msg->response_id_buf), s, len);

    } else if (ngx_voice_json_at(path, "error", "code", NULL)) {
        ngx_voice_json_copy(&msg->error_code, msg->error_code_buf,
                            sizeof(msg->error_code_buf), s, len);

    } else if (ngx_voice_json_at(path, "error", "message", NULL)) {
        ngx_voice_json_copy(&msg->error_message, msg->error_message_buf,
                            sizeof(msg->error_message_buf), s,
                            ngx_min(len, sizeof(msg->error_message_buf)));

    } else if (ngx_voice_json_at(path, "item", "type", NULL)) {
        ngx_voice_json_copy(&msg->item_type, msg->item_type_buf,
                            sizeof(msg->item_type_buf), s, len);

    } else if (ngx_voice_json_at(path, "item", "id", NULL)) {
        ngx_voice_json_copy(&msg->approval_id, msg->approval_id_buf,
                            sizeof(msg->approval_id_buf), s, len);

    } else {
        return ngx_voice_realtime_item_string(rt, path, s, len);
    }

    return 1;
}


/* the fields of function calls, responses and transcripts */
static int
ngx_voice_realtime_item_string(ngx_voice_realtime_t *rt,
    ngx_voice_json_path_t *path, const u_char *s, size_t len)
{
    ngx_int_t                  rc;
    ngx_voice_realtime_msg_t  *msg;

    msg = &rt->msg;

    if (ngx_voice_json_at(path, "item", "name", NULL)) {
        ngx_voice_json_copy(&msg->item_name, msg->item_name_buf,
                            sizeof(msg->item_name_buf), s, len);

    } else if (ngx_voice_json_at(path, "item", "call_id", NULL)) {
        ngx_voice_json_copy(&msg->item_call_id, msg->item_call_id_buf,
                            sizeof(msg->item_call_id_buf), s, len);

    } else if (ngx_voice_json_at(path, "item", "arguments", NULL)) {
        ngx_voice_json_copy(&msg->item_arguments, msg->item_arguments_buf,
                            sizeof(msg->item_arguments_buf), s, len);
        msg->arguments_too_long = (len > sizeof(msg->item_arguments_buf));

    } else if (ngx_voice_json_at(path, "response", "id", NULL)) {
        ngx_voice_json_copy(&msg->response_ref, msg->response_ref_buf,
                            sizeof(msg->response_ref_buf), s, len);

    } else if (ngx_voice_json_at(path, "response", "status", NULL)) {
        ngx_voice_json_copy(&msg->response_status, msg->response_status_buf,
                            sizeof(msg->response_status_buf), s, len);

    } else if (ngx_voice_json_at(path, "previous_item_id", NULL, NULL)) {
        ngx_voice_json_copy(&msg->previous_item_id,
                            msg->previous_item_id_buf,
                            sizeof(msg->previous_item_id_buf), s, len);

    } else if (ngx_voice_json_at(path, "transcript", NULL, NULL)
               && rt->transcripts)
    {
        rc = ngx_voice_json_scratch(&rt->transcript_buf, rt->peer.pool,
                                    rt->max_message, len, rt->peer.log,
                                    "OpenAI");
        if (rc != NGX_OK) {
            /* a transcript is not worth the call: it is left out */
            return 1;
        }

        ngx_memcpy(rt->transcript_buf, s, len);
        msg->transcript.data = rt->transcript_buf;
        msg->transcript.len = len;
    }

    return 1;
}


static int
ngx_voice_realtime_delta(ngx_voice_realtime_t *rt, const u_char *s,
    size_t len)
{
    ngx_int_t                  rc;
    ngx_voice_realtime_msg_t  *msg;

    msg = &rt->msg;

    if (!ngx_voice_json_is_base64(s, len)) {
        ngx_log_error(NGX_LOG_ERR, rt->peer.log, 0,
                      "voice: OpenAI audio delta is not base64");
        (void) ngx_voice_realtime_fail(rt, NGX_VOICE_WS_CLOSE_BAD_DATA,
                                       "delta is not base64");
        return 0;
    }

    if (msg->item_id.len && msg->response_id.len) {
        /* the usual order: copied once, straight to the owner */
        msg->delta_sent = 1;
        return rt->handler->audio(rt, &msg->item_id, &msg->response_id,
                                  (u_char *) s, len)
               == NGX_OK;
    }

    /* the ids come later: the delta waits for them */

    rc = ngx_voice_json_scratch(&rt->scratch, rt->peer.pool, rt->max_message,
                                len, rt->peer.log, "OpenAI");

    if (rc != NGX_OK) {
        (void) ngx_voice_realtime_fail(rt,
                                       rc == NGX_DECLINED
                                       ? NGX_VOICE_WS_CLOSE_TOO_BIG
                                       : NGX_VOICE_WS_CLOSE_ERROR,
                                       rc == NGX_DECLINED ? "message too big"
                                                          : "out of memory");
        return 0;
    }

    ngx_memcpy(rt->scratch, s, len);
    msg->delta.data = rt->scratch;
    msg->delta.len = len;

    return 1;
}


/* an event starts: forget the fields of the previous one */
static void
ngx_voice_realtime_begin(void *data)
{
    ngx_voice_realtime_t  *rt = data;

    ngx_memzero(&rt->msg, offsetof(ngx_voice_realtime_msg_t, item_id_buf));
}


static ngx_int_t
ngx_voice_realtime_dispatch(void *data)
{
    ngx_voice_realtime_t  *rt = data;

    ngx_voice_realtime_msg_t  *msg;

    msg = &rt->msg;

    switch (msg->type) {

    case NGX_VOICE_OA_AUDIO_DELTA:
        if (msg->delta_sent || msg->delta.len == 0) {
            return NGX_OK;
        }

        return rt->handler->audio(rt, &msg->item_id, &msg->response_id,
                                  msg->delta.data, msg->delta.len);

    case NGX_VOICE_OA_SPEECH_STARTED:
        return rt->handler->speech_started(rt);

    case NGX_VOICE_OA_SESSION_CREATED:
        return rt->handler->session_created(rt);

    case NGX_VOICE_OA_SESSION_UPDATED:
        return rt->handler->session_updated(rt);

    case NGX_VOICE_OA_RESPONSE_CREATED:
        rt->response_active = 1;
        return NGX_OK;

    case NGX_VOICE_OA_RESPONSE_DONE:
        return ngx_voice_realtime_response_done(rt);

    case NGX_VOICE_OA_ITEM_DONE:
        if (msg->item_type.len == sizeof("mcp_approval_request") - 1
            && ngx_strncmp(msg->item_type.data, "mcp_approval_request",
                           msg->item_type.len) == 0)
        {
            return ngx_voice_realtime_deny_approval(rt);
        }

        ngx_voice_realtime_remember_call(rt);
        return NGX_OK;

    case NGX_VOICE_OA_ITEM_ADDED:
        ngx_voice_realtime_remember_order(rt);
        return NGX_OK;

    case NGX_VOICE_OA_CALLER_TRANSCRIPT:
    case NGX_VOICE_OA_ASSISTANT_TRANSCRIPT:
        return ngx_voice_realtime_transcript(rt,
                                        msg->type
                                        == NGX_VOICE_OA_ASSISTANT_TRANSCRIPT);

    case NGX_VOICE_OA_ERROR:
        ngx_voice_realtime_log_error(rt);
        return NGX_OK;

    default:
        return NGX_OK;
    }
}


/*
 * The response is over: its function calls are answered, and a response
 * asked for while it ran goes now, unless the answer to a refused call
 * has asked for one already (one response.create, not two).
 */
static ngx_int_t
ngx_voice_realtime_response_done(ngx_voice_realtime_t *rt)
{
    rt->response_active = 0;

    if (ngx_voice_realtime_calls_done(rt) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!rt->response_pending) {
        return NGX_OK;
    }

    rt->response_pending = 0;

    if (rt->response_active) {
        return NGX_OK;
    }

    return ngx_voice_realtime_response_create(rt);
}


/*
 * require_approval is always "never": a caller cannot approve a tool by
 * voice, so a request that still arrives is denied.
 */
static ngx_int_t
ngx_voice_realtime_deny_approval(ngx_voice_realtime_t *rt)
{
    u_char     *p;
    ngx_str_t  *id;
    u_char      rnd[8];
    u_char      buf[256 + NGX_VOICE_ID_MAX * 6];
    u_char      text[NGX_VOICE_LOG_TEXT_MAX];

    id = &rt->msg.approval_id;

    if (id->len == 0
        || (id->len == rt->denied_len
            && ngx_memcmp(id->data, rt->denied, id->len) == 0))
    {
        /* output_item.done and conversation.item.done name it twice */
        return NGX_OK;
    }

    ngx_memcpy(rt->denied, id->data, id->len);
    rt->denied_len = id->len;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        return ngx_voice_realtime_fail(rt, NGX_VOICE_WS_CLOSE_ERROR,
                                       "RAND_bytes() failed");
    }

    ngx_log_error(NGX_LOG_WARN, rt->peer.log, 0,
                  "voice: denied MCP approval request \"%s\": "
                  "require_approval is \"never\"",
                  ngx_voice_log_escape(text, id->data, id->len));

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

    return ngx_voice_peer_send_text(&rt->peer, buf, p - buf);
}


/* "Most errors are recoverable": the call goes on */
static void
ngx_voice_realtime_log_error(ngx_voice_realtime_t *rt)
{
    ngx_voice_realtime_msg_t  *msg;
    u_char                     code[NGX_VOICE_LOG_TEXT_MAX];
    u_char                     text[NGX_VOICE_LOG_TEXT_MAX];

    msg = &rt->msg;

    ngx_voice_metric_inc(openai_errors);

    ngx_log_error(NGX_LOG_WARN, rt->peer.log, 0,
                  "voice: OpenAI error \"%s\": %s",
                  ngx_voice_log_escape(code, msg->error_code.data,
                                       msg->error_code.len),
                  ngx_voice_log_escape(text, msg->error_message.data,
                                       msg->error_message.len));
}


ngx_int_t
ngx_voice_realtime_append(ngx_voice_realtime_t *rt, u_char *audio,
    size_t len)
{
    ngx_str_t  parts[3];

    ngx_str_set(&parts[0], "{\"type\":\"input_audio_buffer.append\","
                           "\"audio\":\"");
    parts[1].data = audio;
    parts[1].len = len;
    ngx_str_set(&parts[2], "\"}");

    return ngx_voice_peer_send(&rt->peer, NGX_VOICE_WS_TEXT, parts, 3);
}


/* session.update, then the greeting, both built at configuration time */
ngx_int_t
ngx_voice_realtime_send_session(ngx_voice_realtime_t *rt,
    ngx_str_t *session_update, ngx_str_t *greeting_item)
{
    ngx_int_t  rc;

    rc = ngx_voice_peer_send(&rt->peer, NGX_VOICE_WS_TEXT, session_update,
                             1);

    if (rc != NGX_OK || greeting_item->len == 0) {
        return rc;
    }

    rc = ngx_voice_peer_send(&rt->peer, NGX_VOICE_WS_TEXT, greeting_item,
                             1);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_voice_realtime_response_create(rt);
}


ngx_int_t
ngx_voice_realtime_truncate(ngx_voice_realtime_t *rt, ngx_str_t *item_id,
    ngx_msec_t audio_end_ms)
{
    u_char  *p;
    u_char   buf[192 + NGX_VOICE_ID_MAX * 6];

    p = ngx_cpymem(buf, "{\"type\":\"conversation.item.truncate\","
                        "\"item_id\":\"",
                   sizeof("{\"type\":\"conversation.item.truncate\","
                          "\"item_id\":\"") - 1);
    p = ngx_voice_json_escape(p, item_id->data,
                              ngx_min(item_id->len, NGX_VOICE_ID_MAX));
    p = ngx_sprintf(p, "\",\"content_index\":0,\"audio_end_ms\":%M}",
                    audio_end_ms);

    return ngx_voice_peer_send_text(&rt->peer, buf, p - buf);
}


ngx_int_t
ngx_voice_realtime_tool_output(ngx_voice_realtime_t *rt,
    ngx_voice_tool_call_t *tc, ngx_str_t *output, ngx_uint_t respond)
{
    u_char     *p;
    ngx_int_t   rc;
    u_char      buf[256 + NGX_VOICE_ID_MAX * 6 + 512 * 6];

    if (output->len > 512) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(buf, "{\"type\":\"conversation.item.create\",\"item\":{"
                        "\"type\":\"function_call_output\",\"call_id\":\"",
                   sizeof("{\"type\":\"conversation.item.create\",\"item\":{"
                          "\"type\":\"function_call_output\","
                          "\"call_id\":\"") - 1);
    p = ngx_voice_json_escape(p, tc->call_id, tc->call_id_len);
    p = ngx_cpymem(p, "\",\"output\":\"", sizeof("\",\"output\":\"") - 1);
    p = ngx_voice_json_escape(p, output->data, output->len);
    p = ngx_cpymem(p, "\"}}", 3);

    rc = ngx_voice_peer_send_text(&rt->peer, buf, p - buf);

    if (rc != NGX_OK || !respond) {
        return rc;
    }

    return ngx_voice_realtime_response_create(rt);
}


/* a keypad digit becomes a user message, answered like speech */
ngx_int_t
ngx_voice_realtime_dtmf(ngx_voice_realtime_t *rt, u_char digit)
{
    u_char     *p;
    ngx_int_t   rc;
    u_char      buf[256];

    p = ngx_sprintf(buf, "{\"type\":\"conversation.item.create\","
                         "\"item\":{\"type\":\"message\",\"role\":\"user\","
                         "\"content\":[{\"type\":\"input_text\","
                         "\"text\":\"The caller pressed %c.\"}]}}", digit);

    rc = ngx_voice_peer_send_text(&rt->peer, buf, p - buf);
    if (rc != NGX_OK) {
        return rc;
    }

    if (rt->response_active) {
        /* asked for once the current response is done */
        rt->response_pending = 1;
        return NGX_OK;
    }

    return ngx_voice_realtime_response_create(rt);
}


static ngx_int_t
ngx_voice_realtime_response_create(ngx_voice_realtime_t *rt)
{
    static u_char  msg[] = "{\"type\":\"response.create\"}";

    if (rt->ending) {
        /* the model ended the call: its last words are playing */
        return NGX_OK;
    }

    /* the response counts as active from now, so DTMF does not stack */
    rt->response_active = 1;

    return ngx_voice_peer_send_text(&rt->peer, msg, sizeof(msg) - 1);
}
