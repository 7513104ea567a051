
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
#include "ngx_voice_twilio.h"


enum {
    NGX_VOICE_TW_UNKNOWN = 0,
    NGX_VOICE_TW_CONNECTED,
    NGX_VOICE_TW_START,
    NGX_VOICE_TW_MEDIA,
    NGX_VOICE_TW_MARK,
    NGX_VOICE_TW_DTMF,
    NGX_VOICE_TW_STOP
};


static ngx_int_t ngx_voice_twilio_message(ngx_voice_peer_t *peer,
    ngx_voice_ws_event_t *ev);
static void ngx_voice_twilio_peer_failed(ngx_voice_peer_t *peer,
    ngx_uint_t code, const char *text, const char *reason);
static ngx_uint_t ngx_voice_twilio_paused(ngx_voice_peer_t *peer);
static ngx_int_t ngx_voice_twilio_fail(ngx_voice_twilio_t *tw,
    ngx_uint_t code, const char *what);
static void ngx_voice_twilio_begin(void *data);
static int ngx_voice_twilio_string(void *data, ngx_voice_json_path_t *path,
    const u_char *s, size_t len);
static int ngx_voice_twilio_payload(ngx_voice_twilio_t *tw, const u_char *s,
    size_t len);
static int ngx_voice_twilio_number(void *data, ngx_voice_json_path_t *path,
    const u_char *s, size_t len);
static ngx_int_t ngx_voice_twilio_dispatch(void *data);
static ngx_int_t ngx_voice_twilio_start(ngx_voice_twilio_t *tw);
static ngx_int_t ngx_voice_twilio_reject_start(ngx_voice_twilio_t *tw,
    const char *what);


static const ngx_voice_peer_handler_t  ngx_voice_twilio_peer_handler = {
    ngx_voice_twilio_message,
    ngx_voice_twilio_peer_failed,
    ngx_voice_twilio_paused
};


static ngx_voice_json_handler_t  ngx_voice_twilio_json = {
    ngx_voice_twilio_begin,
    ngx_voice_twilio_string,
    ngx_voice_twilio_number,
    ngx_voice_twilio_dispatch
};


ngx_int_t
ngx_voice_twilio_take_over(ngx_voice_twilio_t *tw, ngx_http_request_t *r)
{
    ngx_connection_t  *c;

    c = r->connection;

    tw->request = r;
    tw->peer.name = "Twilio";
    tw->peer.handler = &ngx_voice_twilio_peer_handler;
    tw->peer.data = tw;

    /* the Twilio leg is our client: its faults are logged at info */
    tw->peer.log_level = NGX_LOG_INFO;

    if (ngx_voice_peer_init(&tw->peer, c, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_voice_json_init(&tw->json, &ngx_voice_twilio_json, tw,
                            tw->peer.log)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the request stays ours until the owner finalizes it */

    r->main->count++;
    r->keepalive = 0;

    c->log->action = "relaying a voice call";

    if (c->tcp_nodelay == NGX_TCP_NODELAY_UNSET) {
        /* a failure is not fatal: audio still flows, a little later */
        (void) ngx_tcp_nodelay(c);
    }

    if (ngx_http_send_special(r, NGX_HTTP_FLUSH) == NGX_ERROR) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_voice_twilio_read_early(ngx_voice_twilio_t *tw)
{
    ngx_int_t          rc;
    ngx_buf_t         *b;
    ngx_connection_t  *c;

    b = tw->request->header_in;
    c = tw->request->connection;
    rc = NGX_OK;

    if (b->pos < b->last) {
        rc = ngx_voice_peer_feed(&tw->peer, b->pos, b->last);
        b->pos = b->last;
    }

    if (rc == NGX_OK && c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);
    }
}


ngx_int_t
ngx_voice_twilio_write_queued(ngx_voice_twilio_t *tw)
{
    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = tw->request;
    c = r->connection;

    if (tw->peer.eof) {
        return NGX_OK;
    }

    if (c->buffered & NGX_HTTP_WRITE_BUFFERED) {
        rc = ngx_http_output_filter(r, NULL);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (c->buffered & NGX_HTTP_WRITE_BUFFERED) {
            return ngx_handle_write_event(c->write, 0) == NGX_OK
                   ? NGX_AGAIN : NGX_ERROR;
        }
    }

    return ngx_voice_peer_write_queued(&tw->peer);
}


void
ngx_voice_twilio_free(ngx_voice_twilio_t *tw)
{
    ngx_voice_json_free(&tw->json);
}


static ngx_int_t
ngx_voice_twilio_message(ngx_voice_peer_t *peer, ngx_voice_ws_event_t *ev)
{
    ngx_int_t            rc;
    ngx_voice_twilio_t  *tw;

    tw = peer->data;

    if (peer->parser.msg_len > tw->max_message) {
        ngx_log_error(NGX_LOG_INFO, peer->log, 0,
                      "voice: Twilio message larger than "
                      "voice_max_message_size %uz", tw->max_message);
        return ngx_voice_twilio_fail(tw, NGX_VOICE_WS_CLOSE_TOO_BIG,
                                     "message too big");
    }

    rc = ngx_voice_json_feed(&tw->json, ev->data, ev->len, ev->first,
                             ev->last);

    if (rc == NGX_OK) {
        return NGX_OK;
    }

    if (rc == NGX_ABORT) {
        /* a handler stopped it, and has said why */
        return NGX_ERROR;
    }

    if (rc == NGX_ERROR) {
        return ngx_voice_twilio_fail(tw, NGX_VOICE_WS_CLOSE_ERROR,
                                     "out of memory");
    }

    ngx_log_error(NGX_LOG_INFO, peer->log, 0,
                  "voice: Twilio sent a message that is not JSON, "
                  "or not one JSON object");
    return ngx_voice_twilio_fail(tw, NGX_VOICE_WS_CLOSE_BAD_DATA,
                                 "invalid JSON");
}


static void
ngx_voice_twilio_peer_failed(ngx_voice_peer_t *peer, ngx_uint_t code,
    const char *text, const char *reason)
{
    ngx_voice_twilio_t  *tw;

    tw = peer->data;

    tw->handler->failed(tw, code, text, reason);
}


static ngx_uint_t
ngx_voice_twilio_paused(ngx_voice_peer_t *peer)
{
    ngx_voice_twilio_t  *tw;

    tw = peer->data;

    return tw->handler->paused(tw);
}


/* "what" is the close frame's text; the reason is "Twilio: what" */
static ngx_int_t
ngx_voice_twilio_fail(ngx_voice_twilio_t *tw, ngx_uint_t code,
    const char *what)
{
    u_char  reason[128];

    (void) ngx_snprintf(reason, sizeof(reason), "Twilio: %s%Z", what);

    tw->handler->failed(tw, code, what, (char *) reason);

    return NGX_ERROR;
}


static int
ngx_voice_twilio_number(void *data, ngx_voice_json_path_t *path,
    const u_char *s, size_t len)
{
    ngx_voice_twilio_t  *tw = data;

    if (ngx_voice_json_at(path, "start", "mediaFormat", "sampleRate")) {
        tw->msg.sample_rate = ngx_atoi((u_char *) s, len);

    } else if (ngx_voice_json_at(path, "start", "mediaFormat", "channels")) {
        tw->msg.channels = ngx_atoi((u_char *) s, len);
    }

    return 1;
}


static int
ngx_voice_twilio_string(void *data, ngx_voice_json_path_t *path,
    const u_char *s, size_t len)
{
    ngx_voice_twilio_t  *tw = data;

    ngx_voice_twilio_msg_t  *msg;

    msg = &tw->msg;

    if (ngx_voice_json_at(path, "event", NULL, NULL)) {

        if (len == 5 && ngx_strncmp(s, "media", 5) == 0) {
            msg->event = NGX_VOICE_TW_MEDIA;

        } else if (len == 4 && ngx_strncmp(s, "mark", 4) == 0) {
            msg->event = NGX_VOICE_TW_MARK;

        } else if (len == 5 && ngx_strncmp(s, "start", 5) == 0) {
            msg->event = NGX_VOICE_TW_START;

        } else if (len == 9 && ngx_strncmp(s, "connected", 9) == 0) {
            msg->event = NGX_VOICE_TW_CONNECTED;

        } else if (len == 4 && ngx_strncmp(s, "dtmf", 4) == 0) {
            msg->event = NGX_VOICE_TW_DTMF;

        } else if (len == 4 && ngx_strncmp(s, "stop", 4) == 0) {
            msg->event = NGX_VOICE_TW_STOP;
        }

    } else if (ngx_voice_json_at(path, "media", "payload", NULL)) {
        return ngx_voice_twilio_payload(tw, s, len);

    } else if (ngx_voice_json_at(path, "streamSid", NULL, NULL)
               || ngx_voice_json_at(path, "start", "streamSid", NULL))
    {
        ngx_voice_json_copy(&msg->stream_sid, msg->stream_sid_buf,
                            sizeof(msg->stream_sid_buf), s, len);

    } else if (ngx_voice_json_at(path, "start", "callSid", NULL)) {
        ngx_voice_json_copy(&msg->call_sid, msg->call_sid_buf,
                            sizeof(msg->call_sid_buf), s, len);

    } else if (ngx_voice_json_at(path, "start", "mediaFormat", "encoding")) {
        ngx_voice_json_copy(&msg->encoding, msg->encoding_buf,
                            sizeof(msg->encoding_buf), s, len);

    } else if (ngx_voice_json_at(path, "mark", "name", NULL)) {
        ngx_voice_json_copy(&msg->mark, msg->mark_buf, sizeof(msg->mark_buf),
                            s, len);

    } else if (ngx_voice_json_at(path, "dtmf", "digit", NULL)) {
        ngx_voice_json_copy(&msg->digit, msg->digit_buf,
                            sizeof(msg->digit_buf), s, len);
    }

    return 1;
}


static int
ngx_voice_twilio_payload(ngx_voice_twilio_t *tw, const u_char *s, size_t len)
{
    ngx_int_t  rc;

    if (!ngx_voice_json_is_base64(s, len)) {
        ngx_log_error(NGX_LOG_INFO, tw->peer.log, 0,
                      "voice: Twilio media payload is not base64");
        (void) ngx_voice_twilio_fail(tw, NGX_VOICE_WS_CLOSE_BAD_DATA,
                                     "payload is not base64");
        return 0;
    }

    if (tw->msg.event == NGX_VOICE_TW_MEDIA) {
        /* the usual order: copied once, straight to the owner */
        tw->msg.payload_sent = 1;
        return tw->handler->media(tw, (u_char *) s, len) == NGX_OK;
    }

    /* "event" comes later: the payload waits for it */

    rc = ngx_voice_json_scratch(&tw->scratch, tw->peer.pool, tw->max_message,
                                len, tw->peer.log, "Twilio");

    if (rc != NGX_OK) {
        (void) ngx_voice_twilio_fail(tw,
                                     rc == NGX_DECLINED
                                     ? NGX_VOICE_WS_CLOSE_TOO_BIG
                                     : NGX_VOICE_WS_CLOSE_ERROR,
                                     rc == NGX_DECLINED ? "message too big"
                                                        : "out of memory");
        return 0;
    }

    ngx_memcpy(tw->scratch, s, len);
    tw->msg.payload.data = tw->scratch;
    tw->msg.payload.len = len;

    return 1;
}


/* a message starts: forget the fields of the previous one */
static void
ngx_voice_twilio_begin(void *data)
{
    ngx_voice_twilio_t  *tw = data;

    ngx_memzero(&tw->msg, offsetof(ngx_voice_twilio_msg_t, stream_sid_buf));
}


/* a whole message has been parsed */
static ngx_int_t
ngx_voice_twilio_dispatch(void *data)
{
    ngx_voice_twilio_t  *tw = data;

    ngx_voice_twilio_msg_t  *msg;

    msg = &tw->msg;

    switch (msg->event) {

    case NGX_VOICE_TW_START:
        return ngx_voice_twilio_start(tw);

    case NGX_VOICE_TW_MEDIA:
        if (!msg->payload_sent && msg->payload.len) {
            return tw->handler->media(tw, msg->payload.data,
                                      msg->payload.len);
        }

        return NGX_OK;

    case NGX_VOICE_TW_MARK:
        return tw->handler->mark(tw, &msg->mark);

    case NGX_VOICE_TW_DTMF:
        if (msg->digit.len != 1
            || ngx_strlchr((u_char *) "0123456789*#ABCD",
                           (u_char *) "0123456789*#ABCD" + 16,
                           msg->digit.data[0]) == NULL)
        {
            return NGX_OK;
        }

        return tw->handler->dtmf(tw, msg->digit.data[0]);

    case NGX_VOICE_TW_STOP:
        ngx_log_error(NGX_LOG_INFO, tw->peer.log, 0,
                      "voice: Twilio stopped the stream");
        return tw->handler->stop(tw);

    default:
        return NGX_OK;
    }
}


/* the call the token was minted for, the stream's format, its streamSid */
static ngx_int_t
ngx_voice_twilio_start(ngx_voice_twilio_t *tw)
{
    size_t                   i;
    ngx_voice_twilio_msg_t  *msg;

    msg = &tw->msg;

    if (tw->started) {
        return NGX_OK;
    }

    if (msg->call_sid.len != tw->call_sid.len
        || ngx_memcmp(msg->call_sid.data, tw->call_sid.data,
                      msg->call_sid.len) != 0)
    {
        /* a token used for another call than its own */
        ngx_log_error(NGX_LOG_WARN, tw->peer.log, 0,
                      "voice: Twilio start callSid does not match the "
                      "call the token was minted for");
        tw->handler->failed(tw, NGX_VOICE_WS_CLOSE_POLICY,
                            "callSid mismatch", "callSid mismatch");
        return NGX_ERROR;
    }

    if (msg->encoding.len != sizeof("audio/x-mulaw") - 1
        || ngx_strncmp(msg->encoding.data, "audio/x-mulaw",
                       sizeof("audio/x-mulaw") - 1) != 0
        || msg->sample_rate != 8000 || msg->channels != 1)
    {
        return ngx_voice_twilio_reject_start(tw, "unsupported mediaFormat");
    }

    for (i = 0; i < msg->stream_sid.len; i++) {
        if (!isalnum(msg->stream_sid.data[i])) {
            break;
        }
    }

    if (msg->stream_sid.len == 0 || i != msg->stream_sid.len) {
        return ngx_voice_twilio_reject_start(tw, "invalid streamSid");
    }

    tw->stream_sid.data = tw->stream_sid_buf;
    tw->stream_sid.len = msg->stream_sid.len;
    ngx_memcpy(tw->stream_sid_buf, msg->stream_sid.data,
               msg->stream_sid.len);

    tw->started = 1;

    return tw->handler->start(tw);
}


static ngx_int_t
ngx_voice_twilio_reject_start(ngx_voice_twilio_t *tw, const char *what)
{
    ngx_log_error(NGX_LOG_INFO, tw->peer.log, 0,
                  "voice: Twilio start has %s",
                  what[0] == 'u' ? "an unsupported mediaFormat"
                                 : "no valid streamSid");

    tw->handler->failed(tw, NGX_VOICE_WS_CLOSE_POLICY, what, what);

    return NGX_ERROR;
}


ngx_int_t
ngx_voice_twilio_send_media(ngx_voice_twilio_t *tw, u_char *payload,
    size_t len)
{
    ngx_str_t  parts[5];

    ngx_str_set(&parts[0], "{\"event\":\"media\",\"streamSid\":\"");
    parts[1] = tw->stream_sid;
    ngx_str_set(&parts[2], "\",\"media\":{\"payload\":\"");
    parts[3].data = payload;
    parts[3].len = len;
    ngx_str_set(&parts[4], "\"}}");

    return ngx_voice_peer_send(&tw->peer, NGX_VOICE_WS_TEXT, parts, 5);
}


ngx_int_t
ngx_voice_twilio_send_mark(ngx_voice_twilio_t *tw, ngx_str_t *name)
{
    ngx_str_t  parts[5];

    ngx_str_set(&parts[0], "{\"event\":\"mark\",\"streamSid\":\"");
    parts[1] = tw->stream_sid;
    ngx_str_set(&parts[2], "\",\"mark\":{\"name\":\"");
    parts[3] = *name;
    ngx_str_set(&parts[4], "\"}}");

    return ngx_voice_peer_send(&tw->peer, NGX_VOICE_WS_TEXT, parts, 5);
}


ngx_int_t
ngx_voice_twilio_send_clear(ngx_voice_twilio_t *tw)
{
    ngx_str_t  parts[3];

    ngx_str_set(&parts[0], "{\"event\":\"clear\",\"streamSid\":\"");
    parts[1] = tw->stream_sid;
    ngx_str_set(&parts[2], "\"}");

    return ngx_voice_peer_send(&tw->peer, NGX_VOICE_WS_TEXT, parts, 3);
}
