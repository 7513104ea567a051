
/*
 * Copyright (C) ngx_voice authors
 *
 * How a call ends, whichever leg or timer ends it: close frames to the
 * legs still open, a short wait for the close handshakes, then one
 * release of everything the call holds and one "call ended" line.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice_call_end.h"
#include "ngx_voice_metrics.h"
#include "ngx_voice_token.h"
#include "ngx_voice_util.h"


#define NGX_VOICE_CLOSE_WAIT  2000


static void ngx_voice_call_close_timeout(ngx_event_t *ev);
static void ngx_voice_call_abort_leg(ngx_voice_peer_t *peer);
static void ngx_voice_call_release(ngx_voice_call_t *call);
static void ngx_voice_call_log_end(ngx_voice_call_t *call);


void
ngx_voice_call_end(ngx_voice_call_t *call, ngx_uint_t twilio_code,
    ngx_uint_t openai_code, const char *text)
{
    ngx_voice_peer_t  *tw, *oa;

    if (call->closing || call->done) {
        return;
    }

    call->closing = 1;

    tw = &call->twilio.peer;
    oa = &call->openai.peer;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, call->log, 0,
                   "voice: call ending, Twilio close %ui, OpenAI close %ui",
                   twilio_code, openai_code);

    /* what still arrives is parsed for the close frames only */
    tw->drop_data = 1;
    oa->drop_data = 1;

    if (text == NULL && twilio_code == NGX_VOICE_WS_CLOSE_ERROR) {
        /* Twilio is told why, even when the cause has no words of its own */
        text = "relay error";
    }

    if (text) {
        ngx_voice_call_set_reason(call, NGX_VOICE_END_INTERNAL_ERROR, "%s",
                                  text);
    }

    if (twilio_code != NGX_VOICE_CLOSE_NONE && !tw->eof) {
        (void) ngx_voice_peer_close(tw, twilio_code, text);
    }

    if (openai_code != NGX_VOICE_CLOSE_NONE && oa->open && !oa->eof) {
        (void) ngx_voice_peer_close(oa, openai_code, NULL);
    }

    /* a leg that is not a WebSocket yet is simply dropped */
    if (!oa->open) {
        ngx_voice_upstream_close(&call->upstream);
    }

    ngx_voice_call_timer(call, &call->close_timer,
                         ngx_voice_call_close_timeout, NGX_VOICE_CLOSE_WAIT);

    /* bounded, and it keeps a quitting worker until the call is done */
    call->close_timer.cancelable = 0;

    ngx_post_event(call->request->connection->write, &ngx_posted_events);
}


void
ngx_voice_call_set_reason(ngx_voice_call_t *call, ngx_voice_end_e code,
    const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    if (call->vars.close_reason.len) {
        /* the first cause is the one worth keeping */
        return;
    }

    call->end_code = code;

    va_start(args, fmt);
    p = ngx_vslprintf(call->reason, call->reason + sizeof(call->reason),
                      fmt, args);
    va_end(args);

    call->vars.close_reason.data = call->reason;
    call->vars.close_reason.len = p - call->reason;
}


void
ngx_voice_call_add_counts(ngx_voice_call_t *call)
{
    ngx_uint_t         i;
    ngx_voice_peer_t  *peer[NGX_VOICE_DIRECTIONS];

    peer[NGX_VOICE_TO_OPENAI] = &call->openai.peer;
    peer[NGX_VOICE_TO_TWILIO] = &call->twilio.peer;

    for (i = 0; i < NGX_VOICE_DIRECTIONS; i++) {
        ngx_voice_metric_add(frames[i],
                             peer[i]->frames_out - call->counted_frames[i]);
        ngx_voice_metric_add(bytes[i],
                             peer[i]->bytes_out - call->counted_bytes[i]);

        call->counted_frames[i] = peer[i]->frames_out;
        call->counted_bytes[i] = peer[i]->bytes_out;
    }
}


ngx_voice_end_e
ngx_voice_call_failure_code(ngx_uint_t code, const char *reason)
{
    if (code == NGX_VOICE_WS_CLOSE_TOO_BIG) {
        return NGX_VOICE_END_MESSAGE_TOO_BIG;
    }

    if (code != NGX_VOICE_WS_CLOSE_ERROR) {
        return NGX_VOICE_END_PROTOCOL_ERROR;
    }

    return ngx_strstr(reason, "not reading") ? NGX_VOICE_END_BACKPRESSURE
                                             : NGX_VOICE_END_INTERNAL_ERROR;
}


static void
ngx_voice_call_close_timeout(ngx_event_t *ev)
{
    ngx_voice_call_t  *call = ev->data;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, call->log, 0,
                   "voice: close handshake not finished in time");

    /* a peer that does not answer our close frame is not waited for */

    ngx_voice_call_abort_leg(&call->twilio.peer);

    if (call->openai.peer.open) {
        ngx_voice_call_abort_leg(&call->openai.peer);
    }

    ngx_voice_call_finish(call);
}


/*
 * A leg whose close handshake is not done when the close timer fires is
 * reset, not closed: a peer that is not reading can have megabytes of
 * audio left in our socket, with our close frame behind them or still in
 * our queue.  Closed normally, the kernel would go on offering all that
 * (for minutes, while the peer's window is zero), and the peer would see
 * stale audio and an end without a close frame late, or no end at all.
 */
static void
ngx_voice_call_abort_leg(ngx_voice_peer_t *peer)
{
    struct linger      linger;
    ngx_connection_t  *c;

    c = peer->connection;

    if (c == NULL || c->fd == (ngx_socket_t) -1
        || ngx_voice_peer_is_done(peer))
    {
        return;
    }

    /* no TLS close_notify either: it would wait behind the same data */
    c->timedout = 1;

    linger.l_onoff = 1;
    linger.l_linger = 0;

    if (setsockopt(c->fd, SOL_SOCKET, SO_LINGER, (const void *) &linger,
                   sizeof(struct linger))
        == -1)
    {
        ngx_log_error(NGX_LOG_ALERT, c->log, ngx_socket_errno,
                      "setsockopt(SO_LINGER) failed");
    }
}


/* the end of the call on the normal path: the request is released */
void
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
 * nginx terminated the request itself (worker_shutdown_timeout is handled
 * before: see ngx_voice_call_twilio_event()).  Close frames go out as far
 * as the sockets take them.
 */
void
ngx_voice_call_cleanup(void *data)
{
    ngx_voice_call_t  *call = data;

    if (call->done) {
        return;
    }

    if (!call->closing) {
        ngx_voice_call_set_reason(call,
                                  call->request->connection->close
                                  ? NGX_VOICE_END_SHUTDOWN
                                  : NGX_VOICE_END_INTERNAL_ERROR,
                                  call->request->connection->close
                                  ? "nginx is shutting down"
                                  : "request terminated");
        ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_GOING,
                           NGX_VOICE_WS_CLOSE_GOING, NULL);
    }

    if (!call->twilio.peer.eof) {
        (void) ngx_voice_twilio_write_queued(&call->twilio);
    }

    if (call->openai.peer.open && !call->openai.peer.eof) {
        (void) ngx_voice_peer_write_queued(&call->openai.peer);
    }

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

    if (call->drain_timer.timer_set) {
        ngx_del_timer(&call->drain_timer);
    }

    if (call->count_timer.timer_set) {
        ngx_del_timer(&call->count_timer);
    }

    ngx_voice_call_add_counts(call);

    if (call->zone) {
        /* the record outlives the call by the ttl: the action reads it */
        ngx_voice_token_call_ended(call->zone, &call->info.call_sid);
    }

    ngx_voice_metrics_call(-1);
    ngx_voice_metric_inc(calls[call->end_code]);

    ngx_voice_call_write_all_said(call);

    ngx_voice_call_log_end(call);

    ngx_voice_upstream_close(&call->upstream);
    call->openai.peer.connection = NULL;
    call->openai.peer.eof = 1;

    ngx_voice_twilio_free(&call->twilio);
    ngx_voice_realtime_free(&call->openai);

    /* the connection outlives the call: nginx's log handler comes back */

    call->log->handler = call->log_handler;
}


void
ngx_voice_call_write_all_said(ngx_voice_call_t *call)
{
    ngx_voice_call_said_t  *said;

    while ((said = ngx_voice_call_oldest_said(call)) != NULL) {
        ngx_voice_call_write_said(call, said, NULL);
    }
}


ngx_voice_call_said_t *
ngx_voice_call_oldest_said(ngx_voice_call_t *call)
{
    ngx_uint_t              i;
    ngx_voice_call_said_t  *oldest;

    oldest = NULL;

    for (i = 0; i < NGX_VOICE_ITEMS; i++) {
        if (call->said[i].pending
            && (oldest == NULL || call->said[i].seq < oldest->seq))
        {
            oldest = &call->said[i];
        }
    }

    return oldest;
}


void
ngx_voice_call_write_said(ngx_voice_call_t *call, ngx_voice_call_said_t *said,
    ngx_voice_truncation_t *cut)
{
    ngx_str_t                     item_id, previous, text;
    ngx_voice_transcript_line_t   line;

    said->pending = 0;

    item_id.data = said->item_id;
    item_id.len = said->item_id_len;
    previous.data = said->previous;
    previous.len = said->previous_len;
    text.data = said->text;
    text.len = said->text_len;

    ngx_memzero(&line, sizeof(ngx_voice_transcript_line_t));

    line.call_sid = &call->info.call_sid;
    line.item_id = &item_id;
    line.previous_item_id = &previous;
    line.assistant = 1;
    line.text = &text;

    if (cut) {
        line.interrupted = 1;
        line.played_ms = cut->played_ms;
        line.generated_ms = cut->sent_ms;
    }

    (void) ngx_voice_transcript_write(call->transcript, &line, call->log);
}


static void
ngx_voice_call_log_end(ngx_voice_call_t *call)
{
    ngx_voice_peer_t  *tw, *oa;

    tw = &call->twilio.peer;
    oa = &call->openai.peer;

    /* log-safe: a CallSid of Twilio's exact shape, else "-" */
    ngx_log_error(NGX_LOG_INFO, call->log, 0,
                  "voice: call ended, CallSid %V, StreamSid %V, "
                  "duration %Mms, setup %Mms, "
                  "frames from Twilio %ui, to Twilio %ui, "
                  "from OpenAI %ui, to OpenAI %ui, interruptions %ui, "
                  "Twilio close %ui/%ui, OpenAI close %ui/%ui, "
                  "reason \"%V\"",
                  ngx_voice_loggable_sid(&call->info.call_sid),
                  &call->twilio.stream_sid,
                  ngx_current_msec - call->accepted, call->setup_ms,
                  tw->frames_in, tw->frames_out,
                  oa->frames_in, oa->frames_out,
                  call->interruptions,
                  tw->close_code, tw->peer_close_code,
                  oa->close_code, oa->peer_close_code,
                  &call->vars.close_reason);
}


void
ngx_voice_call_timer(ngx_voice_call_t *call, ngx_event_t *ev,
    ngx_event_handler_pt handler, ngx_msec_t timer)
{
    ev->handler = handler;
    ev->data = call;
    ev->log = call->log;
    ev->cancelable = 1;

    ngx_add_timer(ev, timer);
}
