
/*
 * Copyright (C) ngx_voice authors
 *
 * The call after "101 Switching Protocols": takes over the Twilio
 * connection, opens the OpenAI leg at once, relays, and tears both legs
 * down through one idempotent path.  Every live call holds a
 * non-cancelable timer (its maximum duration), so a worker told to quit
 * lets its calls run to their end.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice_call.h"


#define NGX_VOICE_CLOSE_WAIT  2000
#define NGX_VOICE_QUEUE_SIZE  32768


static void ngx_voice_call_twilio_read_handler(ngx_http_request_t *r);
static void ngx_voice_call_twilio_write_handler(ngx_http_request_t *r);
static void ngx_voice_call_after_io(ngx_voice_call_t *call);
static ngx_int_t ngx_voice_call_flush_twilio(ngx_voice_call_t *call);
static void ngx_voice_call_resume(ngx_voice_call_t *call,
    ngx_voice_peer_t *peer, ngx_voice_peer_t *other);
static void ngx_voice_call_peer_closed(ngx_voice_call_t *call,
    ngx_voice_peer_t *peer);
static ngx_int_t ngx_voice_call_side_done(ngx_voice_peer_t *peer);
static void ngx_voice_call_send_session(ngx_voice_call_t *call);
static ngx_int_t ngx_voice_call_queue(ngx_voice_call_t *call,
    u_char *payload, size_t len);
static void ngx_voice_call_queue_drop(ngx_voice_call_t *call);
static void ngx_voice_call_start_timeout(ngx_event_t *ev);
static void ngx_voice_call_tick(ngx_event_t *ev);
static ngx_int_t ngx_voice_call_check_peer(ngx_voice_call_t *call,
    ngx_voice_peer_t *peer);
static void ngx_voice_call_duration_timeout(ngx_event_t *ev);
static void ngx_voice_call_close_timeout(ngx_event_t *ev);
static void ngx_voice_call_finish(ngx_voice_call_t *call);
static void ngx_voice_call_cleanup(void *data);
static void ngx_voice_call_release(ngx_voice_call_t *call);
static void ngx_voice_call_log_end(ngx_voice_call_t *call);
static void ngx_voice_call_timer(ngx_voice_call_t *call, ngx_event_t *ev,
    ngx_event_handler_pt handler, ngx_msec_t timer);


ngx_int_t
ngx_voice_call_start(ngx_http_request_t *r, ngx_voice_call_info_t *info)
{
    ngx_connection_t         *c;
    ngx_voice_call_t         *call;
    ngx_http_cleanup_t       *cln;
    ngx_voice_loc_conf_t     *conf;

    c = r->connection;
    conf = ngx_http_get_module_loc_conf(r, ngx_voice_module);

    call = ngx_pcalloc(r->pool, sizeof(ngx_voice_call_t));
    if (call == NULL) {
        return NGX_ERROR;
    }

    call->request = r;
    call->conf = conf;
    call->log = c->log;
    call->info = *info;
    call->accepted = ngx_current_msec;

    ngx_http_set_ctx(r, call, ngx_voice_module);

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_voice_call_cleanup;
    cln->data = call;

    if (ngx_voice_twilio_init(call) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the request stays ours until ngx_voice_call_finish() */

    r->main->count++;
    r->keepalive = 0;
    r->read_event_handler = ngx_voice_call_twilio_read_handler;
    r->write_event_handler = ngx_voice_call_twilio_write_handler;

    c->log->action = "relaying a voice call";

    if (c->tcp_nodelay == NGX_TCP_NODELAY_UNSET) {
        /* a failure is not fatal: audio still flows, a little later */
        (void) ngx_tcp_nodelay(c);
    }

    if (ngx_http_send_special(r, NGX_HTTP_FLUSH) == NGX_ERROR) {
        return NGX_ERROR;
    }

    ngx_voice_call_timer(call, &call->start_timer,
                         ngx_voice_call_start_timeout, conf->start_timeout);
    ngx_voice_call_timer(call, &call->tick, ngx_voice_call_tick,
                         ngx_max(conf->idle_timeout / 3, 1));

    /* non-cancelable: an exiting worker waits for its calls */
    ngx_voice_call_timer(call, &call->duration_timer,
                         ngx_voice_call_duration_timeout,
                         conf->max_call_duration);
    call->duration_timer.cancelable = 0;

    /* the OpenAI leg opens in parallel with Twilio's connected/start */

    if (ngx_voice_upstream_start(call) != NGX_OK) {
        return NGX_DONE;
    }

    if (call->done) {
        return NGX_DONE;
    }

    /* bytes Twilio sent right behind its handshake are not lost */

    if (r->header_in->pos < r->header_in->last) {
        if (ngx_voice_peer_feed(&call->twilio, r->header_in->pos,
                                r->header_in->last)
            == NGX_DONE)
        {
            ngx_voice_call_peer_closed(call, &call->twilio);
        }

        r->header_in->pos = r->header_in->last;
    }

    if (!call->done && c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);
    }

    ngx_voice_call_after_io(call);

    return NGX_DONE;
}


static void
ngx_voice_call_twilio_read_handler(ngx_http_request_t *r)
{
    ngx_int_t          rc;
    ngx_voice_call_t  *call;

    call = ngx_http_get_module_ctx(r, ngx_voice_module);

    if (call == NULL || call->done) {
        return;
    }

    /* c->close (worker_shutdown_timeout) ends in ngx_voice_call_cleanup() */

    rc = ngx_voice_peer_read(&call->twilio);

    if (rc == NGX_DONE) {
        ngx_voice_call_peer_closed(call, &call->twilio);
    }

    ngx_voice_call_after_io(call);
}


static void
ngx_voice_call_twilio_write_handler(ngx_http_request_t *r)
{
    ngx_voice_call_t  *call;

    call = ngx_http_get_module_ctx(r, ngx_voice_module);

    if (call == NULL || call->done) {
        return;
    }

    ngx_voice_call_after_io(call);
}


/* called by the OpenAI leg's handlers */
void
ngx_voice_call_peer_event(ngx_voice_peer_t *peer)
{
    ngx_int_t          rc;
    ngx_voice_call_t  *call;

    call = peer->call;

    if (call->done) {
        return;
    }

    if (peer->connection->close) {
        /* worker_shutdown_timeout reached the OpenAI leg first */
        ngx_voice_call_set_reason(call, "nginx is shutting down");
        ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_GOING,
                           NGX_VOICE_WS_CLOSE_GOING, NULL);
        ngx_voice_call_after_io(call);
        return;
    }

    rc = ngx_voice_peer_read(peer);

    if (rc == NGX_DONE) {
        ngx_voice_call_peer_closed(call, peer);
    }

    ngx_voice_call_after_io(call);
}


void
ngx_voice_call_peer_write(ngx_voice_peer_t *peer)
{
    if (!peer->call->done) {
        ngx_voice_call_after_io(peer->call);
    }
}


/*
 * After any I/O: send what the relay queued on both legs in as few writes
 * as possible, re-arm the events, and finish once both legs are done.
 */
static void
ngx_voice_call_after_io(ngx_voice_call_t *call)
{
    ngx_connection_t  *c;

    if (call->done) {
        return;
    }

    if (ngx_voice_call_flush_twilio(call) == NGX_ERROR) {
        call->twilio.eof = 1;

        if (!call->closing) {
            ngx_log_error(NGX_LOG_INFO, call->log, 0,
                          "voice: Twilio connection failed while writing");
            ngx_voice_call_set_reason(call, "Twilio connection lost");
            ngx_voice_call_end(call, 0, NGX_VOICE_WS_CLOSE_NORMAL, NULL);
            return;
        }
    }

    if (call->openai.open && !call->openai.eof
        && ngx_voice_peer_flush(&call->openai) == NGX_ERROR)
    {
        call->openai.eof = 1;

        if (!call->closing) {
            ngx_log_error(NGX_LOG_ERR, call->log, 0,
                          "voice: OpenAI connection failed while writing");
            ngx_voice_call_set_reason(call, "OpenAI connection lost");
            ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_ERROR, 0, NULL);
            return;
        }
    }

    if (call->done) {
        return;
    }

    /* a leg lost while writing for the other one */

    if (!call->closing && call->twilio.eof) {
        ngx_voice_call_peer_closed(call, &call->twilio);

    } else if (!call->closing && call->openai.open && call->openai.eof) {
        ngx_voice_call_peer_closed(call, &call->openai);
    }

    ngx_voice_call_resume(call, &call->twilio, &call->openai);
    ngx_voice_call_resume(call, &call->openai, &call->twilio);

    c = call->request->connection;

    if (!call->twilio.eof
        && ngx_handle_read_event(c->read, 0) != NGX_OK)
    {
        call->twilio.eof = 1;
    }

    if (call->openai.open && !call->openai.eof
        && ngx_handle_read_event(call->openai.connection->read, 0) != NGX_OK)
    {
        call->openai.eof = 1;
    }

    if (call->closing
        && ngx_voice_call_side_done(&call->twilio)
        && ngx_voice_call_side_done(&call->openai))
    {
        ngx_voice_call_finish(call);
    }
}


/* a side paused for backpressure is read again once the other drained */
static void
ngx_voice_call_resume(ngx_voice_call_t *call, ngx_voice_peer_t *peer,
    ngx_voice_peer_t *other)
{
    if (!peer->throttled
        || (!call->closing && other->open && !other->eof
            && other->pending > call->conf->buffer_size / 2)
        || peer->connection == NULL)
    {
        /* once the call ends, a paused side is read again for its close */
        return;
    }

    peer->throttled = 0;

    ngx_post_event(peer->connection->read, &ngx_posted_events);
}


ngx_int_t
ngx_voice_call_flush(ngx_voice_call_t *call, ngx_voice_peer_t *peer)
{
    if (peer == &call->twilio) {
        return ngx_voice_call_flush_twilio(call);
    }

    if (!peer->open || peer->eof) {
        return NGX_OK;
    }

    return ngx_voice_peer_flush(peer);
}


/* the 101 may still sit in nginx's own output before our frames */
static ngx_int_t
ngx_voice_call_flush_twilio(ngx_voice_call_t *call)
{
    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = call->request;
    c = r->connection;

    if (call->twilio.eof) {
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

    return ngx_voice_peer_flush(&call->twilio);
}


static void
ngx_voice_call_peer_closed(ngx_voice_call_t *call, ngx_voice_peer_t *peer)
{
    if (call->closing) {
        return;
    }

    if (peer == &call->twilio) {
        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      peer->close_received
                      ? "voice: Twilio closed the stream"
                      : "voice: Twilio connection closed");

        ngx_voice_call_set_reason(call, peer->close_received
                                        ? "Twilio closed" : "Twilio gone");
        ngx_voice_call_end(call, 0, NGX_VOICE_WS_CLOSE_NORMAL, NULL);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, call->log, 0,
                  peer->close_received
                  ? "voice: OpenAI closed the session with %ui"
                  : "voice: OpenAI connection closed", peer->peer_close_code);

    ngx_voice_call_set_reason(call, peer->close_received
                                    ? "OpenAI closed" : "OpenAI gone");
    ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_ERROR, 0,
                       "AI session ended");
}


/*
 * Ends the call: sends a close frame (code 0: none) to each leg that is
 * still open, then waits a little for the close handshakes before the
 * connections are closed.  Safe to call any number of times.
 */
void
ngx_voice_call_end(ngx_voice_call_t *call, ngx_uint_t twilio_code,
    ngx_uint_t openai_code, const char *reason)
{
    if (call->closing || call->done) {
        return;
    }

    call->closing = 1;

    if (reason == NULL && twilio_code == NGX_VOICE_WS_CLOSE_ERROR) {
        /* Twilio is told why, even when the cause has no words of its own */
        reason = "relay error";
    }

    if (call->close_reason.len == 0 && reason) {
        ngx_voice_call_set_reason(call, "%s", reason);
    }

    if (twilio_code && !call->twilio.eof) {
        (void) ngx_voice_peer_close(&call->twilio, twilio_code, reason);
    }

    if (call->openai.open && !call->openai.eof) {
        (void) ngx_voice_peer_close(&call->openai,
                                    openai_code ? openai_code
                                                : NGX_VOICE_WS_CLOSE_NORMAL,
                                    NULL);
    }

    /* a leg that is not a WebSocket yet is simply dropped */
    if (!call->openai.open) {
        ngx_voice_upstream_close(call);
    }

    ngx_voice_call_timer(call, &call->close_timer,
                         ngx_voice_call_close_timeout, NGX_VOICE_CLOSE_WAIT);

    /* bounded, and it keeps a quitting worker until the call is done */
    call->close_timer.cancelable = 0;

    ngx_post_event(call->request->connection->write, &ngx_posted_events);
}


static ngx_int_t
ngx_voice_call_side_done(ngx_voice_peer_t *peer)
{
    if (!peer->open || peer->eof) {
        return 1;
    }

    if (peer->failed) {
        /* our close frame out, no reply awaited */
        return peer->out == NULL && !peer->connection->buffered;
    }

    if (!peer->close_sent) {
        /* no close was asked for this leg: Twilio, when it went away */
        return peer->connection == NULL || peer->close_received;
    }

    return peer->out == NULL && !peer->connection->buffered
           && peer->close_received;
}


void
ngx_voice_call_set_reason(ngx_voice_call_t *call, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    if (call->close_reason.len) {
        /* the first cause is the one worth keeping */
        return;
    }

    va_start(args, fmt);
    p = ngx_vslprintf(call->reason, call->reason + sizeof(call->reason),
                      fmt, args);
    va_end(args);

    call->close_reason.data = call->reason;
    call->close_reason.len = p - call->reason;
}


/*
 * A peer's buffer for a string that must wait for the end of its message
 * (its event type came after it); allocated on first need, it holds up
 * to voice_max_message_size.
 */
u_char *
ngx_voice_call_scratch(ngx_voice_peer_t *peer, size_t len)
{
    ngx_voice_call_t  *call;

    call = peer->call;

    if (len > call->conf->max_message_size) {
        return NULL;
    }

    if (peer->scratch == NULL) {
        peer->scratch = ngx_pnalloc(call->request->pool,
                                    call->conf->max_message_size);
    }

    return peer->scratch;
}


void
ngx_voice_call_upstream_ready(ngx_voice_call_t *call)
{
    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, call->log, 0,
                   "voice: OpenAI WebSocket open");
}


void
ngx_voice_call_start_checked(ngx_voice_call_t *call)
{
    if (call->start_timer.timer_set) {
        ngx_del_timer(&call->start_timer);
    }

    if (call->session_created) {
        ngx_voice_call_send_session(call);
    }
}


void
ngx_voice_call_session_created(ngx_voice_call_t *call)
{
    call->session_created = 1;

    if (call->started) {
        ngx_voice_call_send_session(call);
    }
}


/* session.update and the greeting, then the audio that waited for them */
static void
ngx_voice_call_send_session(ngx_voice_call_t *call)
{
    u_char      *p, *last;
    size_t       len;
    ngx_buf_t   *q;
    ngx_uint_t   i;

    if (call->session_sent) {
        return;
    }

    if (ngx_voice_realtime_session(call) != NGX_OK) {
        return;
    }

    call->session_sent = 1;

    for (i = 0; i < call->ndigits; i++) {
        if (ngx_voice_realtime_dtmf(call, call->digits[i]) != NGX_OK) {
            return;
        }
    }

    call->ndigits = 0;

    q = call->queue;

    if (q == NULL) {
        return;
    }

    for (p = q->pos, last = q->last; p < last; p += len) {
        len = ((size_t) p[0] << 8) | p[1];
        p += 2;

        if (ngx_voice_realtime_append(call, p, len) != NGX_OK) {
            break;
        }
    }

    if (call->queue_dropped) {
        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      "voice: %ui caller audio frames dropped while the "
                      "session was being set up", call->queue_dropped);
    }

    q->pos = q->start;
    q->last = q->start;
    call->queued_bytes = 0;
}


ngx_int_t
ngx_voice_call_caller_audio(ngx_voice_call_t *call, u_char *payload,
    size_t len)
{
    if (!call->session_sent) {
        /* OpenAI would read audio sent before session.update as PCM16 */
        return ngx_voice_call_queue(call, payload, len);
    }

    return ngx_voice_realtime_append(call, payload, len);
}


/*
 * Keeps up to 2 s of caller audio as length-prefixed entries; beyond that
 * the oldest entries are dropped and counted.
 */
static ngx_int_t
ngx_voice_call_queue(ngx_voice_call_t *call, u_char *payload, size_t len)
{
    size_t      max;
    ngx_buf_t  *q;

    /* 8 bytes a millisecond, as base64: 4 characters for 3 bytes */
    max = NGX_VOICE_QUEUE_MS * 8 / 3 * 4;

    if (len > max || len > 0xffff) {
        call->queue_dropped++;
        return NGX_OK;
    }

    if (call->queue == NULL) {
        call->queue = ngx_create_temp_buf(call->request->pool,
                                          NGX_VOICE_QUEUE_SIZE);
        if (call->queue == NULL) {
            return NGX_ERROR;
        }
    }

    q = call->queue;

    /* the oldest audio goes once 2 s of it are queued */

    while (q->pos < q->last && call->queued_bytes + len > max) {
        ngx_voice_call_queue_drop(call);
    }

    if ((size_t) (q->end - q->last) < len + 2) {
        /* the free room is at the front: move what is kept there */
        q->last = ngx_movemem(q->start, q->pos, q->last - q->pos);
        q->pos = q->start;
    }

    /* many tiny payloads: their length prefixes fill the buffer */

    while (q->pos < q->last && (size_t) (q->end - q->last) < len + 2) {
        ngx_voice_call_queue_drop(call);
        q->last = ngx_movemem(q->start, q->pos, q->last - q->pos);
        q->pos = q->start;
    }

    if (q->pos == q->last) {
        q->pos = q->start;
        q->last = q->start;
    }

    call->queued_bytes += len;

    *q->last++ = (u_char) (len >> 8);
    *q->last++ = (u_char) len;
    q->last = ngx_cpymem(q->last, payload, len);

    return NGX_OK;
}


static void
ngx_voice_call_queue_drop(ngx_voice_call_t *call)
{
    size_t      len;
    ngx_buf_t  *q;

    q = call->queue;

    len = ((size_t) q->pos[0] << 8) | q->pos[1];

    q->pos += 2 + len;
    call->queued_bytes -= len;
    call->queue_dropped++;
}


static void
ngx_voice_call_start_timeout(ngx_event_t *ev)
{
    ngx_voice_call_t  *call = ev->data;

    if (call->started || call->closing) {
        return;
    }

    ngx_log_error(NGX_LOG_INFO, call->log, 0,
                  "voice: no Twilio start within voice_start_timeout");

    ngx_voice_call_set_reason(call, "no start");
    ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_POLICY, 0, "no start");
    ngx_voice_call_after_io(call);
}


/* pings quiet peers and ends the call when one is dead or not reading */
static void
ngx_voice_call_tick(ngx_event_t *ev)
{
    ngx_voice_call_t  *call = ev->data;

    if (call->closing || call->done) {
        return;
    }

    if (ngx_voice_call_check_peer(call, &call->twilio) != NGX_OK
        || ngx_voice_call_check_peer(call, &call->openai) != NGX_OK)
    {
        ngx_voice_call_after_io(call);
        return;
    }

    ngx_add_timer(ev, ngx_max(call->conf->idle_timeout / 3, 1));

    ngx_voice_call_after_io(call);
}


static ngx_int_t
ngx_voice_call_check_peer(ngx_voice_call_t *call, ngx_voice_peer_t *peer)
{
    ngx_msec_t  idle;
    ngx_uint_t  level;

    if (!peer->open || peer->eof) {
        return NGX_OK;
    }

    idle = call->conf->idle_timeout;

    /* the Twilio leg is our client: its faults are logged at info */
    level = peer->client ? NGX_LOG_ERR : NGX_LOG_INFO;

    if (peer->out
        && (ngx_current_msec - peer->last_send >= idle
            || (!peer->throttled
                && ngx_current_msec - peer->last_recv >= idle)))
    {
        /* checked first: a peer that neither reads nor talks is stuck */
        /* log-safe: peer->name is "Twilio" or "OpenAI" */
        ngx_log_error(level, call->log, 0,
                      "voice: %s is not reading: %M ms since it took "
                      "data, %M ms since it sent any (voice_idle_timeout)",
                      peer->name, ngx_current_msec - peer->last_send,
                      ngx_current_msec - peer->last_recv);

        ngx_voice_call_set_reason(call, "%s is not reading", peer->name);

        /* what waits will not get through: the close frame goes first */
        ngx_voice_peer_discard(peer);

        ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_ERROR,
                           peer->client ? NGX_VOICE_WS_CLOSE_ERROR
                                        : NGX_VOICE_WS_CLOSE_NORMAL,
                           "peer not reading");
        return NGX_ERROR;
    }

    if (!peer->throttled && ngx_current_msec - peer->last_recv >= idle) {
        /* log-safe: peer->name is "Twilio" or "OpenAI" */
        ngx_log_error(level, call->log, 0,
                      "voice: %s sent nothing for %M ms "
                      "(voice_idle_timeout)", peer->name,
                      ngx_current_msec - peer->last_recv);

        ngx_voice_call_set_reason(call, "%s idle", peer->name);
        ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_ERROR,
                           NGX_VOICE_WS_CLOSE_NORMAL, "idle timeout");
        return NGX_ERROR;
    }

    if (!peer->ping_sent
        && ngx_current_msec - peer->last_recv >= idle / 3)
    {
        (void) ngx_voice_peer_ping(peer);
    }

    return NGX_OK;
}


static void
ngx_voice_call_duration_timeout(ngx_event_t *ev)
{
    ngx_voice_call_t  *call = ev->data;

    if (call->closing) {
        return;
    }

    ngx_log_error(NGX_LOG_INFO, call->log, 0,
                  "voice: voice_max_call_duration reached");

    ngx_voice_call_set_reason(call, "max call duration");
    ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_NORMAL,
                       NGX_VOICE_WS_CLOSE_NORMAL, "max call duration");
    ngx_voice_call_after_io(call);
}


static void
ngx_voice_call_close_timeout(ngx_event_t *ev)
{
    ngx_voice_call_t  *call = ev->data;

    /* a peer that does not answer our close frame is not waited for */
    ngx_voice_call_finish(call);
}


/* the end of the call on the normal path: the request is released */
static void
ngx_voice_call_finish(ngx_voice_call_t *call)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    if (call->done) {
        return;
    }

    ngx_voice_call_release(call);

    r = call->request;
    c = r->connection;

    /* the request, and the call with it, is freed here */
    ngx_http_finalize_request(r, NGX_DONE);
    ngx_http_run_posted_requests(c);
}


/*
 * nginx terminated the request itself: worker_shutdown_timeout (c->close)
 * or a client abort.  Close frames go out as far as the sockets take them.
 */
static void
ngx_voice_call_cleanup(void *data)
{
    ngx_voice_call_t  *call = data;

    if (call->done) {
        return;
    }

    if (!call->closing) {
        ngx_voice_call_set_reason(call, call->request->connection->close
                                        ? "nginx is shutting down"
                                        : "request terminated");
        ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_GOING,
                           NGX_VOICE_WS_CLOSE_GOING, NULL);
    }

    (void) ngx_voice_call_flush(call, &call->twilio);
    (void) ngx_voice_call_flush(call, &call->openai);

    ngx_voice_call_release(call);
}


static void
ngx_voice_call_release(ngx_voice_call_t *call)
{
    call->done = 1;

    if (call->start_timer.timer_set) {
        ngx_del_timer(&call->start_timer);
    }

    if (call->tick.timer_set) {
        ngx_del_timer(&call->tick);
    }

    if (call->duration_timer.timer_set) {
        ngx_del_timer(&call->duration_timer);
    }

    if (call->close_timer.timer_set) {
        ngx_del_timer(&call->close_timer);
    }

    ngx_voice_call_log_end(call);

    ngx_voice_upstream_close(call);

    ngx_voice_peer_free(&call->twilio);
    ngx_voice_peer_free(&call->openai);
}


static void
ngx_voice_call_log_end(ngx_voice_call_t *call)
{
    /* log-safe: a checked CallSid, an alphanumeric StreamSid, our reason */
    ngx_log_error(NGX_LOG_INFO, call->log, 0,
                  "voice: call ended, CallSid %V, StreamSid %V, "
                  "duration %Mms, setup %Mms, "
                  "frames from Twilio %ui, to Twilio %ui, "
                  "from OpenAI %ui, to OpenAI %ui, interruptions %ui, "
                  "Twilio close %ui/%ui, OpenAI close %ui/%ui, "
                  "reason \"%V\"",
                  ngx_voice_loggable_sid(&call->info.call_sid),
                  &call->stream_sid,
                  ngx_current_msec - call->accepted, call->setup_ms,
                  call->twilio.frames_in, call->twilio.frames_out,
                  call->openai.frames_in, call->openai.frames_out,
                  call->interruptions,
                  call->twilio.close_code, call->twilio.peer_close_code,
                  call->openai.close_code, call->openai.peer_close_code,
                  &call->close_reason);
}


static void
ngx_voice_call_timer(ngx_voice_call_t *call, ngx_event_t *ev,
    ngx_event_handler_pt handler, ngx_msec_t timer)
{
    ev->handler = handler;
    ev->data = call;
    ev->log = call->log;
    ev->cancelable = 1;

    ngx_add_timer(ev, timer);
}
