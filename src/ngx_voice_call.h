
/*
 * Copyright (C) ngx_voice authors
 *
 * A call: Twilio's Media Stream (the downstream WebSocket, server role)
 * relayed to OpenAI Realtime (the upstream WebSocket, client role).  The
 * call files (ngx_voice_call*.c) are the only ones that know both legs:
 * ngx_voice_call.c starts a call and keeps its timers, _io.c handles the
 * legs' events, _relay.c passes what one leg says to the other, _setup.c
 * orders the session's start, _end.c ends it.
 */


#ifndef _NGX_VOICE_CALL_H_INCLUDED_
#define _NGX_VOICE_CALL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>
#include "ngx_voice_playback.h"
#include "ngx_voice_realtime.h"
#include "ngx_voice_session.h"
#include "ngx_voice_token.h"
#include "ngx_voice_transcript.h"
#include "ngx_voice_twilio.h"
#include "ngx_voice_upstream.h"
#include "ngx_voice_variables.h"


/* the limits of a media-stream location */
typedef struct {
    ngx_msec_t                   start_timeout;
    ngx_msec_t                   idle_timeout;
    ngx_msec_t                   max_call_duration;
    size_t                       buffer_size;
    size_t                       max_message_size;
    ngx_flag_t                   dtmf;
} ngx_voice_call_conf_t;


/* why a call ended: $voice_close_reason's code, and the metrics' */
typedef enum {
    NGX_VOICE_END_NONE = 0,
    NGX_VOICE_END_CALLER_HANGUP,
    NGX_VOICE_END_OPENAI_CLOSED,
    NGX_VOICE_END_OPENAI_FAILED,
    NGX_VOICE_END_START_TIMEOUT,
    NGX_VOICE_END_IDLE_TIMEOUT,
    NGX_VOICE_END_MAX_DURATION,
    NGX_VOICE_END_PROTOCOL_ERROR,
    NGX_VOICE_END_BACKPRESSURE,
    NGX_VOICE_END_MESSAGE_TOO_BIG,
    NGX_VOICE_END_SHUTDOWN,
    NGX_VOICE_END_MODEL_HANGUP,
    NGX_VOICE_END_MODEL_TRANSFER,
    NGX_VOICE_END_INTERNAL_ERROR,
    NGX_VOICE_END_CODES
} ngx_voice_end_e;


/*
 * An utterance of the model's, held until it is known whether it was cut:
 * as many as the playback tracks items (generation runs ahead of playback).
 */
typedef struct {
    ngx_uint_t                   pending;
    ngx_uint_t                   seq;            /* the order they came in */
    u_char                       item_id[NGX_VOICE_ID_MAX];
    size_t                       item_id_len;
    u_char                       previous[NGX_VOICE_ID_MAX];
    size_t                       previous_len;
    u_char                      *text;           /* LINE_MAX, on first need */
    size_t                       text_len;
} ngx_voice_call_said_t;


/* where one of the model's items was cut, for a transcript that is late */
typedef struct {
    u_char                       item_id[NGX_VOICE_ID_MAX];
    size_t                       item_id_len;
    ngx_msec_t                   played_ms;
    ngx_msec_t                   sent_ms;
} ngx_voice_call_cut_t;


#define NGX_VOICE_CALL_CUTS  4


typedef struct {
    ngx_voice_vars_t             vars;           /* first: see variables */

    ngx_http_request_t          *request;
    ngx_voice_call_conf_t       *conf;
    ngx_voice_session_conf_t    *session;
    ngx_log_t                   *log;            /* adds CallSid, StreamSid */
    ngx_log_handler_pt           log_handler;    /* nginx's, given back */
    ngx_voice_call_info_t        info;
    ngx_shm_zone_t              *zone;           /* tokens, call records */
    ngx_voice_transcript_file_t *transcript;

    ngx_voice_twilio_t           twilio;
    ngx_event_handler_pt         http_read;      /* nginx's, run behind */
    ngx_event_handler_pt         http_write;     /* ours: see call_io.c */
    ngx_voice_upstream_t         upstream;
    ngx_voice_realtime_t         openai;
    ngx_voice_playback_t         playback;

    /* caller audio and digits that came before session.update was sent */
    ngx_buf_t                   *queue;
    size_t                       queued_bytes;   /* of base64 audio */
    ngx_uint_t                   queue_dropped;
    u_char                       digits[16];
    ngx_uint_t                   ndigits;

    ngx_msec_t                   accepted;
    ngx_msec_t                   setup_ms;

    ngx_event_t                  start_timer;
    ngx_event_t                  tick;
    ngx_event_t                  duration_timer;
    ngx_event_t                  close_timer;
    ngx_event_t                  drain_timer;    /* the model's last words */
    ngx_event_t                  count_timer;    /* metrics, once a second */

    /* frames and bytes already added to the shared metrics */
    ngx_uint_t                   counted_frames[2];
    off_t                        counted_bytes[2];

    /* the phone agent: how a tool ended the call, the words held */
    u_char                       outcome[NGX_VOICE_OUTCOME_MAX];
    size_t                       outcome_len;
    ngx_voice_call_said_t        said[NGX_VOICE_ITEMS];
    ngx_uint_t                   said_seq;
    ngx_voice_call_cut_t         cuts[NGX_VOICE_CALL_CUTS];  /* a ring */
    ngx_uint_t                   ncuts;

    ngx_uint_t                   interruptions;
    ngx_uint_t                   dropped_deltas;

    u_char                       reason[128];
    ngx_voice_end_e              end_code;

    unsigned                     started:1;      /* "start" checked out */
    unsigned                     session_created:1;
    unsigned                     session_sent:1;
    unsigned                     session_updated:1;
    unsigned                     agent_ending:1; /* no more caller audio */
    unsigned                     closing:1;
    unsigned                     done:1;
} ngx_voice_call_t;


void ngx_voice_call_create_conf(ngx_voice_call_conf_t *conf);
char *ngx_voice_call_merge_conf(ngx_conf_t *cf, ngx_voice_call_conf_t *prev,
    ngx_voice_call_conf_t *conf);

/*
 * Takes over the request once "101 Switching Protocols" is queued and
 * opens the OpenAI leg.  NGX_DONE, or NGX_ERROR before anything started.
 */
ngx_int_t ngx_voice_call_start(ngx_http_request_t *r,
    ngx_voice_call_info_t *info);

#endif /* _NGX_VOICE_CALL_H_INCLUDED_ */
