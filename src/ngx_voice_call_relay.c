
/*
 * Copyright (C) ngx_voice authors
 *
 * What each leg says, passed to the other: the handler tables the call
 * gives the Twilio leg, the OpenAI leg while it is set up, and the OpenAI
 * leg once it is a WebSocket.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice_call_agent.h"
#include "ngx_voice_call_end.h"
#include "ngx_voice_call_io.h"
#include "ngx_voice_call_relay.h"
#include "ngx_voice_call_setup.h"
#include "ngx_voice_metrics.h"


static ngx_int_t ngx_voice_call_on_start(ngx_voice_twilio_t *tw);
static ngx_int_t ngx_voice_call_on_media(ngx_voice_twilio_t *tw,
    u_char *payload, size_t len);
static ngx_int_t ngx_voice_call_on_mark(ngx_voice_twilio_t *tw,
    ngx_str_t *name);
static ngx_int_t ngx_voice_call_on_dtmf(ngx_voice_twilio_t *tw, u_char digit);
static ngx_int_t ngx_voice_call_on_stop(ngx_voice_twilio_t *tw);
static void ngx_voice_call_on_twilio_failed(ngx_voice_twilio_t *tw,
    ngx_uint_t code, const char *text, const char *reason);
static ngx_uint_t ngx_voice_call_twilio_paused(ngx_voice_twilio_t *tw);
static ngx_int_t ngx_voice_call_on_session_created(ngx_voice_realtime_t *rt);
static ngx_int_t ngx_voice_call_on_session_updated(ngx_voice_realtime_t *rt);
static ngx_int_t ngx_voice_call_on_audio(ngx_voice_realtime_t *rt,
    ngx_str_t *item_id, ngx_str_t *response_id, u_char *delta, size_t len);
static ngx_int_t ngx_voice_call_on_speech_started(ngx_voice_realtime_t *rt);
static ngx_int_t ngx_voice_call_on_tool_call(ngx_voice_realtime_t *rt,
    ngx_voice_tool_call_t *tc);
static ngx_int_t ngx_voice_call_on_transcript(ngx_voice_realtime_t *rt,
    ngx_uint_t assistant, ngx_str_t *item_id, ngx_str_t *previous_item_id,
    ngx_str_t *text);
static void ngx_voice_call_on_openai_failed(ngx_voice_realtime_t *rt,
    ngx_uint_t code, const char *text, const char *reason);
static ngx_uint_t ngx_voice_call_openai_paused(ngx_voice_realtime_t *rt);
static ngx_int_t ngx_voice_call_sent(ngx_voice_call_t *call, ngx_int_t rc);


const ngx_voice_twilio_handler_t  ngx_voice_call_twilio_handler = {
    ngx_voice_call_on_start,
    ngx_voice_call_on_media,
    ngx_voice_call_on_mark,
    ngx_voice_call_on_dtmf,
    ngx_voice_call_on_stop,
    ngx_voice_call_on_twilio_failed,
    ngx_voice_call_twilio_paused
};


const ngx_voice_realtime_handler_t  ngx_voice_call_openai_handler = {
    ngx_voice_call_on_session_created,
    ngx_voice_call_on_session_updated,
    ngx_voice_call_on_audio,
    ngx_voice_call_on_speech_started,
    ngx_voice_call_on_tool_call,
    ngx_voice_call_on_transcript,
    ngx_voice_call_on_openai_failed,
    ngx_voice_call_openai_paused
};



static ngx_int_t
ngx_voice_call_on_start(ngx_voice_twilio_t *tw)
{
    ngx_voice_call_t  *call = tw->data;

    call->vars.stream_sid = tw->stream_sid;

    return ngx_voice_call_sent(call, ngx_voice_call_start_checked(call));
}


static ngx_int_t
ngx_voice_call_on_media(ngx_voice_twilio_t *tw, u_char *payload, size_t len)
{
    ngx_voice_call_t  *call = tw->data;

    if (call->agent_ending) {
        /* the model ended the call: nothing said now starts a response */
        return NGX_OK;
    }

    return ngx_voice_call_sent(call,
                               ngx_voice_call_caller_audio(call, payload,
                                                           len));
}


static ngx_int_t
ngx_voice_call_on_mark(ngx_voice_twilio_t *tw, ngx_str_t *name)
{
    ngx_voice_call_t  *call = tw->data;

    ngx_voice_playback_echoed(&call->playback, name);

    ngx_voice_call_agent_played(call);

    return call->closing ? NGX_ERROR : NGX_OK;
}


static ngx_int_t
ngx_voice_call_on_dtmf(ngx_voice_twilio_t *tw, u_char digit)
{
    ngx_voice_call_t  *call = tw->data;

    if (!call->conf->dtmf || call->agent_ending) {
        return NGX_OK;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, call->log, 0,
                   "voice: caller pressed %c", digit);

    ngx_voice_metric_inc(dtmf);

    return ngx_voice_call_sent(call,
                               ngx_voice_call_caller_digit(call, digit));
}


static ngx_int_t
ngx_voice_call_on_stop(ngx_voice_twilio_t *tw)
{
    ngx_voice_call_t  *call = tw->data;

    ngx_voice_call_set_reason(call, NGX_VOICE_END_CALLER_HANGUP, "Twilio stop");
    ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_NORMAL,
                       NGX_VOICE_WS_CLOSE_NORMAL, NULL);

    return NGX_ERROR;
}


/* Twilio broke the protocol: it gets the code, OpenAI a normal close */
static void
ngx_voice_call_on_twilio_failed(ngx_voice_twilio_t *tw, ngx_uint_t code,
    const char *text, const char *reason)
{
    ngx_voice_call_t  *call = tw->data;

    ngx_voice_call_set_reason(call, ngx_voice_call_failure_code(code, reason),
                              "%s", reason);
    ngx_voice_call_end(call, code, NGX_VOICE_WS_CLOSE_NORMAL, text);
}


static ngx_uint_t
ngx_voice_call_twilio_paused(ngx_voice_twilio_t *tw)
{
    ngx_voice_call_t  *call = tw->data;

    return ngx_voice_call_backlogged(call, &call->openai.peer);
}


void
ngx_voice_call_on_upstream_ready(ngx_voice_upstream_t *u, u_char *pos,
    u_char *last)
{
    ngx_connection_t      *c;
    ngx_voice_call_t      *call = u->data;
    ngx_voice_realtime_t  *rt;

    c = u->peer.connection;
    rt = &call->openai;

    rt->handler = &ngx_voice_call_openai_handler;
    rt->data = call;
    rt->max_message = call->conf->max_message_size;
    rt->peer.limit = call->conf->buffer_size;
    rt->peer.log = call->log;
    rt->peer.pool = call->request->pool;
    rt->transcripts = (call->transcript != NULL);

    if (ngx_voice_realtime_open(rt, c) != NGX_OK) {
        ngx_voice_upstream_close(u);
        ngx_voice_call_on_upstream_failed(u, NGX_VOICE_UPSTREAM_HANDSHAKE,
                                          "out of memory");
        return;
    }

    u->read_event_handler = ngx_voice_call_openai_read;
    u->write_event_handler = ngx_voice_call_openai_write;

    /* OpenAI may have sent session.created with its 101 */

    if (pos < last) {
        /* a close among them is seen by the read below */
        (void) ngx_voice_peer_feed(&rt->peer, pos, last);
    }

    if (c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);
    }

    ngx_voice_call_openai_read(u);
}


void
ngx_voice_call_on_upstream_failed(ngx_voice_upstream_t *u,
    ngx_voice_upstream_stage_e stage, const char *reason)
{
    ngx_voice_call_t  *call = u->data;

    ngx_voice_metric_inc(upstream_failures[stage]);

    ngx_voice_call_set_reason(call, NGX_VOICE_END_OPENAI_FAILED, "%s",
                              reason);
    ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_ERROR,
                       NGX_VOICE_WS_CLOSE_NORMAL, "AI service unavailable");
}


static ngx_int_t
ngx_voice_call_on_session_created(ngx_voice_realtime_t *rt)
{
    ngx_voice_call_t  *call = rt->data;

    return ngx_voice_call_sent(call, ngx_voice_call_session_created(call));
}


static ngx_int_t
ngx_voice_call_on_session_updated(ngx_voice_realtime_t *rt)
{
    ngx_voice_call_t  *call = rt->data;

    if (call->session_updated) {
        return NGX_OK;
    }

    call->session_updated = 1;
    call->setup_ms = ngx_current_msec - call->accepted;

    ngx_log_error(NGX_LOG_INFO, call->log, 0,
                  "voice: session ready %Mms after the upgrade",
                  call->setup_ms);

    ngx_voice_metrics_setup(call->setup_ms);

    return NGX_OK;
}


/* the model speaks: its audio to Twilio, then a mark to follow it */
static ngx_int_t
ngx_voice_call_on_audio(ngx_voice_realtime_t *rt, ngx_str_t *item_id,
    ngx_str_t *response_id, u_char *delta, size_t len)
{
    ngx_voice_call_t  *call = rt->data;

    ngx_str_t  mark;
    u_char     name[NGX_VOICE_MARK_NAME_MAX];

    if (ngx_voice_playback_is_dropped(&call->playback, response_id)) {
        /* a late delta of the response the caller interrupted */
        call->dropped_deltas++;
        return NGX_OK;
    }

    if (!call->started || len == 0) {
        return NGX_OK;
    }

    if (call->agent_ending) {
        /* a response after the one that ended the call: not played */
        call->dropped_deltas++;
        return NGX_OK;
    }

    if (!call->session_updated) {
        /*
         * audio made before our session.update took effect is in the
         * session's default format, not g711_ulaw: noise to the caller
         */
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, call->log, 0,
                       "voice: audio before session.updated dropped");
        call->dropped_deltas++;
        return NGX_OK;
    }

    if (ngx_voice_twilio_send_media(&call->twilio, delta, len) != NGX_OK) {
        return NGX_ERROR;
    }

    mark = ngx_voice_playback_sent(&call->playback, item_id, response_id,
                                   delta, len, name);

    if (mark.len == 0) {
        return NGX_OK;
    }

    return ngx_voice_twilio_send_mark(&call->twilio, &mark);
}


/* barge-in: Twilio drops what it still has, OpenAI cuts what was heard */
static ngx_int_t
ngx_voice_call_on_speech_started(ngx_voice_realtime_t *rt)
{
    ngx_voice_call_t  *call = rt->data;

    ngx_uint_t              i, n;
    ngx_voice_truncation_t  cut[NGX_VOICE_ITEMS];

    if (!ngx_voice_playback_is_playing(&call->playback)
        || call->agent_ending)
    {
        /* nothing is playing, or the model's last words: nothing to cut */
        return NGX_OK;
    }

    if (ngx_voice_twilio_send_clear(&call->twilio) != NGX_OK) {
        return NGX_ERROR;
    }

    n = ngx_voice_playback_interrupt(&call->playback, cut);

    for (i = 0; i < n; i++) {
        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, call->log, 0,
                       "voice: barge-in, truncate at %M ms "
                       "(sent %M, played %M)",
                       cut[i].audio_end_ms, cut[i].sent_ms, cut[i].played_ms);

        if (ngx_voice_realtime_truncate(&call->openai, &cut[i].item_id,
                                        cut[i].audio_end_ms)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    call->interruptions++;
    ngx_voice_metric_inc(barge_ins);

    ngx_voice_call_agent_cut(call, cut, n);

    return NGX_OK;
}


static ngx_int_t
ngx_voice_call_on_tool_call(ngx_voice_realtime_t *rt,
    ngx_voice_tool_call_t *tc)
{
    ngx_voice_call_t  *call = rt->data;

    return ngx_voice_call_sent(call, ngx_voice_call_agent_tool(call, tc));
}


static ngx_int_t
ngx_voice_call_on_transcript(ngx_voice_realtime_t *rt, ngx_uint_t assistant,
    ngx_str_t *item_id, ngx_str_t *previous_item_id, ngx_str_t *text)
{
    ngx_voice_call_t  *call = rt->data;

    return ngx_voice_call_agent_transcript(call, assistant, item_id,
                                           previous_item_id, text);
}


/* OpenAI broke the protocol: it gets the code, Twilio 1011 */
static void
ngx_voice_call_on_openai_failed(ngx_voice_realtime_t *rt, ngx_uint_t code,
    const char *text, const char *reason)
{
    ngx_voice_call_t  *call = rt->data;

    ngx_voice_call_set_reason(call, ngx_voice_call_failure_code(code, reason),
                              "%s", reason);
    ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_ERROR, code, text);
}


static ngx_uint_t
ngx_voice_call_openai_paused(ngx_voice_realtime_t *rt)
{
    ngx_voice_call_t  *call = rt->data;

    return ngx_voice_call_backlogged(call, &call->twilio.peer);
}


/*
 * What a relay step came to, for the parser: NGX_OK goes on, NGX_ERROR
 * stops it.  A failed write was reported by its leg; anything else
 * left unreported (no memory) ends the call here.
 */
static ngx_int_t
ngx_voice_call_sent(ngx_voice_call_t *call, ngx_int_t rc)
{
    if (rc == NGX_OK && !call->closing) {
        return NGX_OK;
    }

    if (!call->closing) {
        ngx_log_error(NGX_LOG_ALERT, call->log, 0,
                      "voice: out of memory relaying the call");
        ngx_voice_call_set_reason(call, NGX_VOICE_END_INTERNAL_ERROR,
                                  "out of memory");
        ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_ERROR,
                           NGX_VOICE_WS_CLOSE_ERROR, NULL);
    }

    return NGX_ERROR;
}
