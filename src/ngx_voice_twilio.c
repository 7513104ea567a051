
/*
 * Copyright (C) ngx_voice authors
 *
 * Twilio Media Stream messages: parsed as they stream with yajl's event
 * parser (one handle per call), and the three messages a bidirectional
 * stream may send back (media, mark, clear) written from fixed templates
 * around the copied payload.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice_call.h"


enum {
    NGX_VOICE_TW_UNKNOWN = 0,
    NGX_VOICE_TW_CONNECTED,
    NGX_VOICE_TW_START,
    NGX_VOICE_TW_MEDIA,
    NGX_VOICE_TW_MARK,
    NGX_VOICE_TW_DTMF,
    NGX_VOICE_TW_STOP
};


static ngx_int_t ngx_voice_twilio_data(ngx_voice_peer_t *peer,
    ngx_voice_ws_event_t *ev);
static ngx_int_t ngx_voice_twilio_fail(ngx_voice_call_t *call,
    ngx_uint_t code, const char *reason);
static void ngx_voice_twilio_begin(void *data);
static int ngx_voice_twilio_string(void *data, ngx_voice_json_path_t *path,
    const u_char *s, size_t len);
static int ngx_voice_twilio_number(void *data, ngx_voice_json_path_t *path,
    const u_char *s, size_t len);
static ngx_int_t ngx_voice_twilio_dispatch(void *data);
static ngx_int_t ngx_voice_twilio_start(ngx_voice_call_t *call);
static void ngx_voice_twilio_copy(ngx_str_t *dst, u_char *buf, size_t size,
    const unsigned char *s, size_t len);
static ngx_int_t ngx_voice_twilio_emit(ngx_voice_call_t *call,
    const char *head, size_t head_len, u_char *value, size_t len,
    const char *tail, size_t tail_len);


static ngx_voice_json_handler_t  ngx_voice_twilio_json = {
    ngx_voice_twilio_begin,
    ngx_voice_twilio_string,
    ngx_voice_twilio_number,
    ngx_voice_twilio_dispatch
};


ngx_int_t
ngx_voice_twilio_init(ngx_voice_call_t *call)
{
    ngx_voice_peer_t  *peer;

    peer = &call->twilio;

    if (ngx_voice_peer_init(peer, call, call->request->connection, 0,
                            "Twilio", ngx_voice_twilio_data)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_voice_json_init(&peer->json, &ngx_voice_twilio_json, call,
                               call->log);
}


static ngx_int_t
ngx_voice_twilio_data(ngx_voice_peer_t *peer, ngx_voice_ws_event_t *ev)
{
    ngx_int_t          rc;
    ngx_voice_call_t  *call;

    call = peer->call;

    if (peer->parser.msg_len > call->conf->max_message_size) {
        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      "voice: Twilio message larger than "
                      "voice_max_message_size %uz",
                      call->conf->max_message_size);
        return ngx_voice_twilio_fail(call, NGX_VOICE_WS_CLOSE_TOO_BIG,
                                     "message too big");
    }

    rc = ngx_voice_peer_json(peer, ev);

    if (rc != NGX_DECLINED) {
        return rc;
    }

    ngx_log_error(NGX_LOG_INFO, call->log, 0,
                  "voice: Twilio sent a message that is not JSON, "
                  "or not one JSON object");
    return ngx_voice_twilio_fail(call, NGX_VOICE_WS_CLOSE_BAD_DATA,
                                 "invalid JSON");
}


static ngx_int_t
ngx_voice_twilio_fail(ngx_voice_call_t *call, ngx_uint_t code,
    const char *reason)
{
    ngx_voice_call_set_reason(call, "Twilio: %s", reason);
    ngx_voice_call_end(call, code, NGX_VOICE_WS_CLOSE_NORMAL, reason);
    return NGX_ERROR;
}


static int
ngx_voice_twilio_number(void *data, ngx_voice_json_path_t *path,
    const u_char *s, size_t len)
{
    ngx_voice_call_t  *call = data;

    if (ngx_voice_json_at(path, "start", "mediaFormat", "sampleRate")) {
        call->tw.sample_rate = ngx_atoi((u_char *) s, len);

    } else if (ngx_voice_json_at(path, "start", "mediaFormat", "channels")) {
        call->tw.channels = ngx_atoi((u_char *) s, len);
    }

    return 1;
}


static int
ngx_voice_twilio_string(void *data, ngx_voice_json_path_t *path,
    const u_char *s, size_t len)
{
    ngx_voice_call_t  *call = data;

    u_char                  *p;
    ngx_voice_twilio_msg_t  *tw;

    tw = &call->tw;

    if (ngx_voice_json_at(path, "event", NULL, NULL)) {

        if (len == 5 && ngx_strncmp(s, "media", 5) == 0) {
            tw->event = NGX_VOICE_TW_MEDIA;

        } else if (len == 4 && ngx_strncmp(s, "mark", 4) == 0) {
            tw->event = NGX_VOICE_TW_MARK;

        } else if (len == 5 && ngx_strncmp(s, "start", 5) == 0) {
            tw->event = NGX_VOICE_TW_START;

        } else if (len == 9 && ngx_strncmp(s, "connected", 9) == 0) {
            tw->event = NGX_VOICE_TW_CONNECTED;

        } else if (len == 4 && ngx_strncmp(s, "dtmf", 4) == 0) {
            tw->event = NGX_VOICE_TW_DTMF;

        } else if (len == 4 && ngx_strncmp(s, "stop", 4) == 0) {
            tw->event = NGX_VOICE_TW_STOP;
        }

    } else if (ngx_voice_json_at(path, "media", "payload", NULL)) {

        if (!ngx_voice_json_is_base64(s, len)) {
            ngx_log_error(NGX_LOG_INFO, call->log, 0,
                          "voice: Twilio media payload is not base64");
            (void) ngx_voice_twilio_fail(call, NGX_VOICE_WS_CLOSE_BAD_DATA,
                                         "payload is not base64");
            return 0;
        }

        if (tw->event == NGX_VOICE_TW_MEDIA) {
            /* the usual order: copied once, straight to OpenAI */
            tw->payload_sent = 1;
            return ngx_voice_call_caller_audio(call, (u_char *) s, len)
                   == NGX_OK;
        }

        p = ngx_voice_call_scratch(&call->twilio, len);
        if (p == NULL) {
            return 0;
        }

        ngx_memcpy(p, s, len);
        tw->payload.data = p;
        tw->payload.len = len;

    } else if (ngx_voice_json_at(path, "streamSid", NULL, NULL)
               || ngx_voice_json_at(path, "start", "streamSid", NULL))
    {
        ngx_voice_twilio_copy(&tw->stream_sid, tw->sid, sizeof(tw->sid),
                              s, len);

    } else if (ngx_voice_json_at(path, "start", "callSid", NULL)) {
        ngx_voice_twilio_copy(&tw->call_sid, tw->csid, sizeof(tw->csid),
                              s, len);

    } else if (ngx_voice_json_at(path, "start", "mediaFormat", "encoding")) {
        ngx_voice_twilio_copy(&tw->encoding, tw->enc, sizeof(tw->enc), s, len);

    } else if (ngx_voice_json_at(path, "mark", "name", NULL)) {
        ngx_voice_twilio_copy(&tw->mark, tw->mk, sizeof(tw->mk), s, len);

    } else if (ngx_voice_json_at(path, "dtmf", "digit", NULL)) {
        ngx_voice_twilio_copy(&tw->digit, tw->dg, sizeof(tw->dg), s, len);
    }

    return 1;
}


/* a message starts: forget the fields of the previous one */
static void
ngx_voice_twilio_begin(void *data)
{
    ngx_voice_call_t  *call = data;

    ngx_memzero(&call->tw, offsetof(ngx_voice_twilio_msg_t, sid));
}


/* a whole message has been parsed */
static ngx_int_t
ngx_voice_twilio_dispatch(void *data)
{
    ngx_voice_call_t  *call = data;

    ngx_voice_twilio_msg_t  *tw;

    tw = &call->tw;

    switch (tw->event) {

    case NGX_VOICE_TW_START:
        return ngx_voice_twilio_start(call);

    case NGX_VOICE_TW_MEDIA:
        if (!tw->payload_sent && tw->payload.len) {
            return ngx_voice_call_caller_audio(call, tw->payload.data,
                                               tw->payload.len);
        }

        return NGX_OK;

    case NGX_VOICE_TW_MARK:
        ngx_voice_playback_mark_echoed(call, &tw->mark);
        return NGX_OK;

    case NGX_VOICE_TW_DTMF:
        if (!call->conf->dtmf || tw->digit.len != 1
            || ngx_strlchr((u_char *) "0123456789*#ABCD",
                           (u_char *) "0123456789*#ABCD" + 16,
                           tw->digit.data[0]) == NULL)
        {
            return NGX_OK;
        }

        return ngx_voice_realtime_dtmf(call, tw->digit.data[0]);

    case NGX_VOICE_TW_STOP:
        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      "voice: Twilio stopped the stream");
        ngx_voice_call_set_reason(call, "Twilio stop");
        ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_NORMAL,
                           NGX_VOICE_WS_CLOSE_NORMAL, NULL);
        return NGX_ERROR;

    default:
        return NGX_OK;
    }
}


static ngx_int_t
ngx_voice_twilio_start(ngx_voice_call_t *call)
{
    size_t                   i;
    ngx_voice_twilio_msg_t  *tw;

    tw = &call->tw;

    if (call->started) {
        return NGX_OK;
    }

    if (tw->call_sid.len != call->info.call_sid.len
        || ngx_memcmp(tw->call_sid.data, call->info.call_sid.data,
                      tw->call_sid.len) != 0)
    {
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "voice: Twilio start callSid does not match the "
                      "call the token was minted for");
        ngx_voice_call_set_reason(call, "callSid mismatch");
        ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_POLICY, 0,
                           "callSid mismatch");
        return NGX_ERROR;
    }

    if (tw->encoding.len != sizeof("audio/x-mulaw") - 1
        || ngx_strncmp(tw->encoding.data, "audio/x-mulaw",
                       sizeof("audio/x-mulaw") - 1) != 0
        || tw->sample_rate != 8000 || tw->channels != 1)
    {
        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      "voice: Twilio start has an unsupported mediaFormat");
        ngx_voice_call_set_reason(call, "unsupported mediaFormat");
        ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_POLICY, 0,
                           "unsupported mediaFormat");
        return NGX_ERROR;
    }

    for (i = 0; i < tw->stream_sid.len; i++) {
        if (!isalnum(tw->stream_sid.data[i])) {
            break;
        }
    }

    if (tw->stream_sid.len == 0 || i != tw->stream_sid.len) {
        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      "voice: Twilio start has no valid streamSid");
        ngx_voice_call_set_reason(call, "invalid streamSid");
        ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_POLICY, 0,
                           "invalid streamSid");
        return NGX_ERROR;
    }

    call->stream_sid.data = call->sid;
    call->stream_sid.len = tw->stream_sid.len;
    ngx_memcpy(call->sid, tw->stream_sid.data, tw->stream_sid.len);

    call->started = 1;

    ngx_voice_call_start_checked(call);

    return call->done ? NGX_ERROR : NGX_OK;
}


/* a bounded copy; a value too long for "buf" is kept empty */
static void
ngx_voice_twilio_copy(ngx_str_t *dst, u_char *buf, size_t size,
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
ngx_voice_twilio_media(ngx_voice_call_t *call, u_char *payload, size_t len)
{
    static const char  head[] = "{\"event\":\"media\",\"streamSid\":\"";
    static const char  mid[] = "\",\"media\":{\"payload\":\"";
    static const char  tail[] = "\"}}";

    ngx_int_t          rc;
    ngx_voice_peer_t  *peer;

    peer = &call->twilio;

    rc = ngx_voice_peer_frame(peer, NGX_VOICE_WS_TEXT,
                              sizeof(head) - 1 + call->stream_sid.len
                              + sizeof(mid) - 1 + len + sizeof(tail) - 1);
    if (rc != NGX_OK) {
        return rc;
    }

    (void) ngx_voice_peer_append(peer, (u_char *) head, sizeof(head) - 1);
    (void) ngx_voice_peer_append(peer, call->stream_sid.data,
                                 call->stream_sid.len);
    (void) ngx_voice_peer_append(peer, (u_char *) mid, sizeof(mid) - 1);
    (void) ngx_voice_peer_append(peer, payload, len);

    return ngx_voice_peer_append(peer, (u_char *) tail, sizeof(tail) - 1);
}


ngx_int_t
ngx_voice_twilio_mark(ngx_voice_call_t *call, u_char *name, size_t len)
{
    static const char  head[] = "{\"event\":\"mark\",\"streamSid\":\"";
    static const char  tail[] = "\"}}";

    return ngx_voice_twilio_emit(call, head, sizeof(head) - 1, name, len,
                                 tail, sizeof(tail) - 1);
}


ngx_int_t
ngx_voice_twilio_clear(ngx_voice_call_t *call)
{
    static const char  head[] = "{\"event\":\"clear\",\"streamSid\":\"";
    static const char  tail[] = "\"}";

    ngx_int_t          rc;
    ngx_voice_peer_t  *peer;

    peer = &call->twilio;

    rc = ngx_voice_peer_frame(peer, NGX_VOICE_WS_TEXT,
                              sizeof(head) - 1 + call->stream_sid.len
                              + sizeof(tail) - 1);
    if (rc != NGX_OK) {
        return rc;
    }

    (void) ngx_voice_peer_append(peer, (u_char *) head, sizeof(head) - 1);
    (void) ngx_voice_peer_append(peer, call->stream_sid.data,
                                 call->stream_sid.len);

    return ngx_voice_peer_append(peer, (u_char *) tail, sizeof(tail) - 1);
}


/* {"event":"mark","streamSid":"SID","mark":{"name":"NAME"}} */
static ngx_int_t
ngx_voice_twilio_emit(ngx_voice_call_t *call, const char *head,
    size_t head_len, u_char *value, size_t len, const char *tail,
    size_t tail_len)
{
    static const char  mid[] = "\",\"mark\":{\"name\":\"";

    ngx_int_t          rc;
    ngx_voice_peer_t  *peer;

    peer = &call->twilio;

    rc = ngx_voice_peer_frame(peer, NGX_VOICE_WS_TEXT,
                              head_len + call->stream_sid.len
                              + sizeof(mid) - 1 + len + tail_len);
    if (rc != NGX_OK) {
        return rc;
    }

    (void) ngx_voice_peer_append(peer, (u_char *) head, head_len);
    (void) ngx_voice_peer_append(peer, call->stream_sid.data,
                                 call->stream_sid.len);
    (void) ngx_voice_peer_append(peer, (u_char *) mid, sizeof(mid) - 1);
    (void) ngx_voice_peer_append(peer, value, len);

    return ngx_voice_peer_append(peer, (u_char *) tail, tail_len);
}
