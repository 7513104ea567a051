
/*
 * Copyright (C) ngx_voice authors
 *
 * The events of both legs of a call: each read, then what the relay
 * queued written on both legs in as few writes as possible, a leg that
 * ended noticed, backpressure applied and lifted.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice.h"
#include "ngx_voice_call_end.h"
#include "ngx_voice_call_io.h"


static void ngx_voice_call_write_legs(ngx_voice_call_t *call);
static ngx_int_t ngx_voice_call_write_leg(ngx_voice_call_t *call,
    ngx_voice_peer_t *peer);
static void ngx_voice_call_resume(ngx_voice_call_t *call,
    ngx_voice_peer_t *peer, ngx_voice_peer_t *other);
static void ngx_voice_call_shutdown(ngx_voice_call_t *call,
    ngx_connection_t *c);
static void ngx_voice_call_twilio_ended(ngx_voice_call_t *call);
static void ngx_voice_call_openai_ended(ngx_voice_call_t *call);


/*
 * When worker_shutdown_timeout fires, nginx sets c->close and c->error on
 * every connection and calls its read handler; nginx's request handler
 * would then terminate the request at once: close frames written as the
 * sockets close, neither close handshake awaited, the caller's media left
 * unread.  The call ends as any other instead: 1001 to both legs, their
 * close handshakes awaited (bounded by the close timer), a [warn] line and
 * the "call ended" line.
 */
void
ngx_voice_call_twilio_event(ngx_event_t *ev)
{
    ngx_connection_t    *c;
    ngx_voice_call_t    *call;
    ngx_http_request_t  *r;

    c = ev->data;
    r = c->data;
    call = ngx_http_get_module_ctx(r, ngx_voice_module);

    if (c->close && ngx_exiting && !call->done) {
        ngx_voice_call_shutdown(call, c);
    }

    /* c->close is left only where nginx terminates the request */

    if (ev->write) {
        call->http_write(ev);

    } else {
        call->http_read(ev);
    }
}


void
ngx_voice_call_twilio_read(ngx_http_request_t *r)
{
    ngx_voice_call_t  *call;

    call = ngx_http_get_module_ctx(r, ngx_voice_module);

    if (call == NULL || call->done) {
        return;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, call->log, 0,
                   "voice: Twilio read event");

    (void) ngx_voice_peer_read(&call->twilio.peer);

    ngx_voice_call_after_io(call);
}


void
ngx_voice_call_twilio_write(ngx_http_request_t *r)
{
    ngx_voice_call_t  *call;

    call = ngx_http_get_module_ctx(r, ngx_voice_module);

    if (call == NULL || call->done) {
        return;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, call->log, 0,
                   "voice: Twilio write event");

    ngx_voice_call_after_io(call);
}


void
ngx_voice_call_openai_read(ngx_voice_upstream_t *u)
{
    ngx_voice_call_t  *call = u->data;

    if (call->done) {
        return;
    }

    if (u->peer.connection->close) {
        /* worker_shutdown_timeout reached the OpenAI leg first */
        ngx_voice_call_shutdown(call, u->peer.connection);
    }

    (void) ngx_voice_peer_read(&call->openai.peer);

    ngx_voice_call_after_io(call);
}


void
ngx_voice_call_openai_write(ngx_voice_upstream_t *u)
{
    ngx_voice_call_t  *call = u->data;

    if (!call->done) {
        ngx_voice_call_after_io(call);
    }
}


/*
 * After any I/O: write what the relay queued on both legs in as few
 * writes as possible, notice a leg that ended, resume a paused one,
 * re-arm the events, and finish once both legs are done.
 */
void
ngx_voice_call_after_io(ngx_voice_call_t *call)
{
    ngx_connection_t  *c;
    ngx_voice_peer_t  *tw, *oa;

    tw = &call->twilio.peer;
    oa = &call->openai.peer;

    ngx_voice_call_write_legs(call);

    if (call->done) {
        return;
    }

    if (!call->closing && ngx_voice_peer_closed(tw)) {
        ngx_voice_call_twilio_ended(call);

    } else if (!call->closing && oa->open && ngx_voice_peer_closed(oa)) {
        ngx_voice_call_openai_ended(call);
    }

    ngx_voice_call_resume(call, tw, oa);
    ngx_voice_call_resume(call, oa, tw);

    c = call->request->connection;

    if (!tw->eof && ngx_handle_read_event(c->read, 0) != NGX_OK) {
        tw->eof = 1;
    }

    if (oa->open && !oa->eof
        && ngx_handle_read_event(oa->connection->read, 0) != NGX_OK)
    {
        oa->eof = 1;
    }

    if (call->closing && ngx_voice_peer_is_done(tw)
        && ngx_voice_peer_is_done(oa))
    {
        ngx_voice_call_finish(call);
    }
}


/* a leg whose write fails is lost: the call ends for it */
static void
ngx_voice_call_write_legs(ngx_voice_call_t *call)
{
    ngx_voice_peer_t  *tw, *oa;

    tw = &call->twilio.peer;
    oa = &call->openai.peer;

    if (ngx_voice_call_write_leg(call, tw) == NGX_ERROR) {
        tw->eof = 1;

        if (!call->closing) {
            ngx_log_error(NGX_LOG_INFO, call->log, 0,
                          "voice: Twilio connection failed while writing");
            ngx_voice_call_set_reason(call, NGX_VOICE_END_CALLER_HANGUP,
                                      "Twilio connection lost");
            ngx_voice_call_end(call, NGX_VOICE_CLOSE_NONE,
                               NGX_VOICE_WS_CLOSE_NORMAL, NULL);
            return;
        }
    }

    if (ngx_voice_call_write_leg(call, oa) == NGX_ERROR) {
        oa->eof = 1;

        if (!call->closing) {
            ngx_log_error(NGX_LOG_ERR, call->log, 0,
                          "voice: OpenAI connection failed while writing");
            ngx_voice_call_set_reason(call, NGX_VOICE_END_OPENAI_CLOSED,
                                      "OpenAI connection lost");
            ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_ERROR,
                               NGX_VOICE_CLOSE_NONE, NULL);
        }
    }
}


/* NGX_OK, NGX_AGAIN (the rest waits) or NGX_ERROR (the leg is lost) */
static ngx_int_t
ngx_voice_call_write_leg(ngx_voice_call_t *call, ngx_voice_peer_t *peer)
{
    if (!peer->open || peer->eof) {
        return NGX_OK;
    }

    if (peer == &call->twilio.peer) {
        return ngx_voice_twilio_write_queued(&call->twilio);
    }

    return ngx_voice_peer_write_queued(peer);
}


/* a side paused for backpressure is read again once the other drained */
static void
ngx_voice_call_resume(ngx_voice_call_t *call, ngx_voice_peer_t *peer,
    ngx_voice_peer_t *other)
{
    if (!peer->paused || peer->connection == NULL
        || (!call->closing && other->open && !other->eof
            && other->pending > call->conf->buffer_size / 2))
    {
        /* once the call ends, a paused side is read again for its close */
        return;
    }

    peer->paused = 0;

    ngx_post_event(peer->connection->read, &ngx_posted_events);
}


/*
 * Backpressure: a side is not read while the other has half its buffer
 * waiting, after an attempt to write it out.
 */
ngx_uint_t
ngx_voice_call_backlogged(ngx_voice_call_t *call, ngx_voice_peer_t *other)
{
    size_t  high;

    high = call->conf->buffer_size / 2;

    if (other->pending <= high || call->closing || !other->open
        || other->eof)
    {
        return 0;
    }

    if (ngx_voice_call_write_leg(call, other) == NGX_ERROR) {
        /* after_io() ends the call for the lost leg */
        other->eof = 1;
        return 0;
    }

    return other->pending > high;
}


/*
 * nginx is shutting down and worker_shutdown_timeout has passed: each leg
 * is told 1001 (going away), and Twilio goes on with the TwiML after
 * <Connect>, voice_fallback_say.  The connection is ours to close: its
 * close handshake is still read (the close timer bounds it).
 */
static void
ngx_voice_call_shutdown(ngx_voice_call_t *call, ngx_connection_t *c)
{
    c->close = 0;
    c->error = 0;

    if (call->closing) {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, call->log, 0,
                  "voice: call ended: nginx is shutting down and "
                  "worker_shutdown_timeout has passed");

    ngx_voice_call_set_reason(call, NGX_VOICE_END_SHUTDOWN,
                              "nginx is shutting down");
    ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_GOING,
                       NGX_VOICE_WS_CLOSE_GOING, "server shutting down");
}


static void
ngx_voice_call_twilio_ended(ngx_voice_call_t *call)
{
    ngx_voice_peer_t  *peer;

    peer = &call->twilio.peer;

    ngx_log_error(NGX_LOG_INFO, call->log, 0,
                  peer->close_received ? "voice: Twilio closed the stream"
                                       : "voice: Twilio connection closed");

    ngx_voice_call_set_reason(call, NGX_VOICE_END_CALLER_HANGUP,
                              peer->close_received ? "Twilio closed"
                                                         : "Twilio gone");
    ngx_voice_call_end(call, NGX_VOICE_CLOSE_NONE, NGX_VOICE_WS_CLOSE_NORMAL,
                       NULL);
}


static void
ngx_voice_call_openai_ended(ngx_voice_call_t *call)
{
    ngx_voice_peer_t  *peer;

    peer = &call->openai.peer;

    ngx_log_error(NGX_LOG_ERR, call->log, 0,
                  peer->close_received
                  ? "voice: OpenAI closed the session with %ui"
                  : "voice: OpenAI connection closed", peer->peer_close_code);

    ngx_voice_call_set_reason(call, NGX_VOICE_END_OPENAI_CLOSED,
                              peer->close_received ? "OpenAI closed"
                                                         : "OpenAI gone");
    ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_ERROR,
                       NGX_VOICE_WS_CLOSE_NORMAL, "AI session ended");
}
