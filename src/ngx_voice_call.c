
/*
 * Copyright (C) ngx_voice authors
 *
 * The call after "101 Switching Protocols": takes over the Twilio
 * connection, opens the OpenAI leg at once, and keeps the call's timers.
 * Every live call holds a non-cancelable timer (its maximum duration),
 * so a worker told to quit lets its calls run to their end.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice.h"
#include "ngx_voice_call.h"
#include "ngx_voice_call_end.h"
#include "ngx_voice_call_io.h"
#include "ngx_voice_call_relay.h"
#include "ngx_voice_metrics.h"
#include "ngx_voice_util.h"


static ngx_int_t ngx_voice_call_init_log(ngx_voice_call_t *call);
static u_char *ngx_voice_call_log_handler(ngx_log_t *log, u_char *buf,
    size_t len);
static ngx_int_t ngx_voice_call_init_twilio(ngx_voice_call_t *call);
static void ngx_voice_call_init_upstream(ngx_voice_call_t *call);
static void ngx_voice_call_start_timeout(ngx_event_t *ev);
static void ngx_voice_call_tick(ngx_event_t *ev);
static ngx_int_t ngx_voice_call_check_peer(ngx_voice_call_t *call,
    ngx_voice_peer_t *peer);
static void ngx_voice_call_duration_timeout(ngx_event_t *ev);
static void ngx_voice_call_count(ngx_event_t *ev);


static ngx_log_handler_pt  ngx_voice_call_http_log_handler;


void
ngx_voice_call_create_conf(ngx_voice_call_conf_t *conf)
{
    conf->start_timeout = NGX_CONF_UNSET_MSEC;
    conf->idle_timeout = NGX_CONF_UNSET_MSEC;
    conf->max_call_duration = NGX_CONF_UNSET_MSEC;
    conf->buffer_size = NGX_CONF_UNSET_SIZE;
    conf->max_message_size = NGX_CONF_UNSET_SIZE;
    conf->dtmf = NGX_CONF_UNSET;
}


char *
ngx_voice_call_merge_conf(ngx_conf_t *cf, ngx_voice_call_conf_t *prev,
    ngx_voice_call_conf_t *conf)
{
    ngx_conf_merge_msec_value(conf->start_timeout, prev->start_timeout,
                              10000);
    ngx_conf_merge_msec_value(conf->idle_timeout, prev->idle_timeout, 60000);
    ngx_conf_merge_msec_value(conf->max_call_duration,
                              prev->max_call_duration, 60 * 60 * 1000);
    ngx_conf_merge_size_value(conf->buffer_size, prev->buffer_size,
                              256 * 1024);
    ngx_conf_merge_size_value(conf->max_message_size, prev->max_message_size,
                              64 * 1024);
    ngx_conf_merge_value(conf->dtmf, prev->dtmf, 1);

    return NGX_CONF_OK;
}


ngx_int_t
ngx_voice_call_start(ngx_http_request_t *r, ngx_voice_call_info_t *info)
{
    ngx_voice_call_t       *call;
    ngx_http_cleanup_t     *cln;
    ngx_voice_loc_conf_t   *vlcf;
    ngx_voice_main_conf_t  *vmcf;

    vlcf = ngx_http_get_module_loc_conf(r, ngx_voice_module);

    call = ngx_pcalloc(r->pool, sizeof(ngx_voice_call_t));
    if (call == NULL) {
        return NGX_ERROR;
    }

    vmcf = ngx_http_get_module_main_conf(r, ngx_voice_module);

    call->request = r;
    call->conf = &vlcf->call;
    call->session = &vlcf->session;
    call->zone = vmcf->token_zone;
    call->transcript = vlcf->transcript.file;
    call->info = *info;
    call->vars.call_sid = call->info.call_sid;
    call->accepted = ngx_current_msec;
    call->playback.pool = r->pool;

    /* the cleanup is there first: it gives the log handler back */

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_voice_call_cleanup;
    cln->data = call;

    /* counted out in ngx_voice_call_release(), whatever happens next */
    ngx_voice_metrics_call(1);

    /* the log handler finds the call through the request */
    ngx_http_set_ctx(r, call, ngx_voice_module);

    if (ngx_voice_call_init_log(call) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, call->log, 0,
                   "voice: call upgraded");

    if (ngx_voice_call_init_twilio(call) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_voice_call_timer(call, &call->start_timer,
                         ngx_voice_call_start_timeout,
                         call->conf->start_timeout);
    ngx_voice_call_timer(call, &call->tick, ngx_voice_call_tick,
                         ngx_max(call->conf->idle_timeout / 3, 1));

    /* non-cancelable: an exiting worker waits for its calls */
    ngx_voice_call_timer(call, &call->duration_timer,
                         ngx_voice_call_duration_timeout,
                         call->conf->max_call_duration);
    call->duration_timer.cancelable = 0;

    ngx_voice_call_timer(call, &call->count_timer, ngx_voice_call_count,
                         1000);

    /* the OpenAI leg opens in parallel with Twilio's connected/start */

    ngx_voice_call_init_upstream(call);
    ngx_voice_upstream_start(&call->upstream);

    /* bytes Twilio sent right behind its handshake are not lost */

    ngx_voice_twilio_read_early(&call->twilio);

    ngx_voice_call_after_io(call);

    return NGX_DONE;
}


/*
 * Every non-debug line about the call, on either leg, names it: the
 * Twilio connection's log gets a handler that adds the CallSid and the
 * StreamSid to nginx's own context, and the OpenAI connection shares that
 * log.  log->data stays nginx's (ngx_http_request_handler() writes into
 * it); the handler is given back when the call is released.
 */
static ngx_int_t
ngx_voice_call_init_log(ngx_voice_call_t *call)
{
    ngx_log_t  *log;

    log = call->request->connection->log;

    call->log = log;
    call->log_handler = log->handler;

    /* nginx's ngx_http_log_error(), static there, for lines of no call */
    ngx_voice_call_http_log_handler = log->handler;

    log->handler = ngx_voice_call_log_handler;

    return NGX_OK;
}


static u_char *
ngx_voice_call_log_handler(ngx_log_t *log, u_char *buf, size_t len)
{
    u_char              *p;
    ngx_voice_call_t    *call;
    ngx_http_log_ctx_t  *ctx;

    ctx = log->data;
    call = ctx->request ? ngx_http_get_module_ctx(ctx->request,
                                                  ngx_voice_module)
                        : NULL;

    if (call == NULL || call->log != log) {
        /* not (or no longer) a call's line: nginx's context only */
        return ngx_voice_call_http_log_handler
               ? ngx_voice_call_http_log_handler(log, buf, len) : buf;
    }

    /* nginx's own context first: client, server, request */

    p = call->log_handler ? call->log_handler(log, buf, len) : buf;

    p = ngx_snprintf(p, len - (p - buf), ", CallSid: %V",
                     ngx_voice_loggable_sid(&call->info.call_sid));

    if (call->twilio.stream_sid.len) {
        p = ngx_snprintf(p, len - (p - buf), ", StreamSid: %V",
                         &call->twilio.stream_sid);
    }

    return p;
}


static ngx_int_t
ngx_voice_call_init_twilio(ngx_voice_call_t *call)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;
    ngx_voice_twilio_t  *tw;

    r = call->request;
    tw = &call->twilio;

    tw->handler = &ngx_voice_call_twilio_handler;
    tw->data = call;
    tw->call_sid = call->info.call_sid;
    tw->max_message = call->conf->max_message_size;
    tw->peer.limit = call->conf->buffer_size;
    tw->peer.log = call->log;
    tw->peer.pool = r->pool;

    if (ngx_voice_twilio_take_over(tw, r) != NGX_OK) {
        return NGX_ERROR;
    }

    r->read_event_handler = ngx_voice_call_twilio_read;
    r->write_event_handler = ngx_voice_call_twilio_write;

    /*
     * nginx's handlers of the connection (ngx_http_request_handler())
     * run behind ours, which keeps worker_shutdown_timeout from cutting
     * the call: see ngx_voice_call_twilio_event()
     */

    c = r->connection;

    call->http_read = c->read->handler;
    call->http_write = c->write->handler;

    c->read->handler = ngx_voice_call_twilio_event;
    c->write->handler = ngx_voice_call_twilio_event;

    return NGX_OK;
}


static void
ngx_voice_call_init_upstream(ngx_voice_call_t *call)
{
    ngx_voice_upstream_t  *u;
    ngx_voice_loc_conf_t  *vlcf;

    vlcf = ngx_http_get_module_loc_conf(call->request, ngx_voice_module);

    u = &call->upstream;

    u->conf = &vlcf->openai;
    u->request = call->request;
    u->log = call->log;
    u->ready = ngx_voice_call_on_upstream_ready;
    u->failed = ngx_voice_call_on_upstream_failed;
    u->data = call;
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

    ngx_voice_call_set_reason(call, NGX_VOICE_END_START_TIMEOUT, "no start");
    ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_POLICY,
                       NGX_VOICE_WS_CLOSE_NORMAL, "no start");
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

    if (ngx_voice_call_check_peer(call, &call->twilio.peer) != NGX_OK
        || ngx_voice_call_check_peer(call, &call->openai.peer) != NGX_OK)
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

    if (!peer->open || peer->eof) {
        return NGX_OK;
    }

    idle = call->conf->idle_timeout;

    if (peer->out
        && (ngx_current_msec - peer->last_send >= idle
            || (!peer->paused
                && ngx_current_msec - peer->last_recv >= idle)))
    {
        /* checked first: a peer that neither reads nor talks is stuck */
        /* log-safe: a leg's own name or an address */
        ngx_log_error(peer->log_level, call->log, 0,
                      "voice: %s is not reading: %M ms since it took "
                      "data, %M ms since it sent any (voice_idle_timeout)",
                      peer->name, ngx_current_msec - peer->last_send,
                      ngx_current_msec - peer->last_recv);

        ngx_voice_call_set_reason(call, NGX_VOICE_END_BACKPRESSURE,
                                  "%s is not reading", peer->name);

        /* what waits will not get through: the close frame goes first */
        ngx_voice_peer_discard(peer);

        ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_ERROR,
                           peer->masking ? NGX_VOICE_WS_CLOSE_ERROR
                                         : NGX_VOICE_WS_CLOSE_NORMAL,
                           "peer not reading");
        return NGX_ERROR;
    }

    if (!peer->paused && ngx_current_msec - peer->last_recv >= idle) {
        /* log-safe: a leg's own name or an address */
        ngx_log_error(peer->log_level, call->log, 0,
                      "voice: %s sent nothing for %M ms "
                      "(voice_idle_timeout)", peer->name,
                      ngx_current_msec - peer->last_recv);

        ngx_voice_call_set_reason(call, NGX_VOICE_END_IDLE_TIMEOUT, "%s idle",
                                  peer->name);
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
ngx_voice_call_count(ngx_event_t *ev)
{
    ngx_voice_call_t  *call = ev->data;

    ngx_voice_call_add_counts(call);

    if (!call->done) {
        ngx_add_timer(ev, 1000);
    }
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

    ngx_voice_call_set_reason(call, NGX_VOICE_END_MAX_DURATION,
                              "max call duration");
    ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_NORMAL,
                       NGX_VOICE_WS_CLOSE_NORMAL, "max call duration");
    ngx_voice_call_after_io(call);
}
