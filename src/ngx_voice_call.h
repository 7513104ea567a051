
/*
 * Copyright (C) ngx_voice authors
 *
 * A call: Twilio's Media Stream (the downstream WebSocket, server role)
 * relayed to OpenAI Realtime (the upstream WebSocket, client role).
 */


#ifndef _NGX_VOICE_CALL_H_INCLUDED_
#define _NGX_VOICE_CALL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_http.h>
#include "ngx_voice.h"
#include "ngx_voice_json.h"
#include "ngx_voice_token.h"
#include "ngx_voice_ws.h"


#define NGX_VOICE_IN_BUFFER     16384
#define NGX_VOICE_OUT_CHUNK     16384
#define NGX_VOICE_SID_MAX       64
#define NGX_VOICE_ID_MAX        64
#define NGX_VOICE_MARKS         256
#define NGX_VOICE_ITEMS         4
#define NGX_VOICE_QUEUE_MS      2000


typedef struct ngx_voice_peer_s  ngx_voice_peer_t;
typedef struct ngx_voice_call_s  ngx_voice_call_t;


/* handles one piece of a text message; NGX_ERROR ends the call */
typedef ngx_int_t (*ngx_voice_peer_data_pt)(ngx_voice_peer_t *peer,
    ngx_voice_ws_event_t *ev);


/* one WebSocket endpoint over one connection */
struct ngx_voice_peer_s {
    ngx_connection_t            *connection;
    ngx_voice_call_t            *call;
    const char                  *name;

    ngx_voice_ws_parser_t        parser;
    ngx_buf_t                   *in;

    ngx_chain_t                 *out;
    ngx_chain_t                **last_out;
    ngx_chain_t                 *free;
    size_t                       pending;

    u_char                       mask[4];
    ngx_uint_t                   mask_pos;

    ngx_msec_t                   last_recv;
    ngx_msec_t                   last_send;

    ngx_uint_t                   frames_in;
    ngx_uint_t                   frames_out;

    ngx_uint_t                   close_code;      /* sent */
    ngx_uint_t                   peer_close_code; /* received */

    ngx_voice_json_t             json;
    ngx_voice_peer_data_pt       data;

    u_char                      *scratch;        /* deferred strings */

    unsigned                     client:1;
    unsigned                     open:1;
    unsigned                     close_sent:1;
    unsigned                     close_received:1;
    unsigned                     eof:1;
    unsigned                     ping_sent:1;
    unsigned                     failed:1;      /* protocol error */
    unsigned                     throttled:1;   /* not read: backpressure */
    unsigned                     skipping:1;    /* rest of a dropped event */
};


/* what the fields of the Twilio message being parsed said */
typedef struct {
    ngx_uint_t                   event;
    ngx_str_t                    stream_sid;
    ngx_str_t                    call_sid;
    ngx_str_t                    encoding;
    ngx_int_t                    sample_rate;
    ngx_int_t                    channels;
    ngx_str_t                    mark;
    ngx_str_t                    digit;
    ngx_str_t                    payload;        /* deferred copy */
    unsigned                     payload_sent:1;
    u_char                       sid[NGX_VOICE_SID_MAX];
    u_char                       csid[NGX_VOICE_SID_MAX];
    u_char                       enc[32];
    u_char                       mk[NGX_VOICE_SID_MAX];
    u_char                       dg[4];
} ngx_voice_twilio_msg_t;


/* what the fields of the OpenAI event being parsed said */
typedef struct {
    ngx_uint_t                   type;
    ngx_str_t                    item_id;
    ngx_str_t                    response_id;
    ngx_str_t                    delta;          /* deferred copy */
    ngx_str_t                    code;
    ngx_str_t                    message;
    ngx_str_t                    item_type;
    ngx_str_t                    approval_id;
    unsigned                     delta_sent:1;
    u_char                       iid[NGX_VOICE_ID_MAX];
    u_char                       rid[NGX_VOICE_ID_MAX];
    u_char                       cd[NGX_VOICE_ID_MAX];
    u_char                       msg[256];
    u_char                       ity[32];
    u_char                       aid[NGX_VOICE_ID_MAX];
} ngx_voice_realtime_msg_t;


/* an assistant item whose audio went to Twilio */
typedef struct {
    u_char                       id[NGX_VOICE_ID_MAX];
    size_t                       id_len;
    size_t                       sent;           /* audio bytes */
    size_t                       played;         /* echoed by a mark */
} ngx_voice_item_t;


typedef struct {
    ngx_uint_t                   seq;
    ngx_uint_t                   item;           /* index in items */
    size_t                       end;            /* item's sent bytes */
} ngx_voice_mark_t;


typedef struct {
    ngx_voice_item_t             items[NGX_VOICE_ITEMS];
    ngx_uint_t                   nitems;
    ngx_voice_mark_t             marks[NGX_VOICE_MARKS];
    ngx_uint_t                   mark_head;      /* oldest unechoed */
    ngx_uint_t                   nmarks;
    ngx_uint_t                   seq;
    ngx_uint_t                   generation;
    u_char                       response[NGX_VOICE_ID_MAX];
    size_t                       response_len;   /* playing now */
    u_char                       dropped[NGX_VOICE_ID_MAX];
    size_t                       dropped_len;    /* response cut off */
} ngx_voice_playback_t;


struct ngx_voice_call_s {
    ngx_http_request_t          *request;
    ngx_voice_loc_conf_t        *conf;
    ngx_log_t                   *log;

    ngx_voice_peer_t             twilio;
    ngx_voice_peer_t             openai;

    /* the upstream connection before it is a WebSocket */
    ngx_peer_connection_t        pc;
    ngx_pool_t                  *upstream_pool;
    ngx_resolver_ctx_t          *resolve;
    ngx_addr_t                  *addrs;
    ngx_uint_t                   naddrs;
    ngx_uint_t                   addr;
    ngx_buf_t                   *handshake;
    u_char                       ws_key[24];

    ngx_voice_call_info_t        info;
    ngx_str_t                    stream_sid;
    u_char                       sid[NGX_VOICE_SID_MAX];

    ngx_voice_twilio_msg_t       tw;
    ngx_voice_realtime_msg_t     oa;
    ngx_voice_playback_t         playback;

    /* caller audio that arrived before session.update was sent */
    ngx_buf_t                   *queue;
    size_t                       queued_bytes;   /* of base64 audio */
    ngx_uint_t                   queue_dropped;

    ngx_msec_t                   accepted;
    ngx_msec_t                   setup_ms;

    ngx_event_t                  start_timer;
    ngx_event_t                  connect_timer;
    ngx_event_t                  tick;
    ngx_event_t                  duration_timer;
    ngx_event_t                  close_timer;

    u_char                       digits[16];     /* before the session */
    ngx_uint_t                   ndigits;

    u_char                       denied[NGX_VOICE_ID_MAX];
    size_t                       denied_len;     /* approval request */

    ngx_uint_t                   interruptions;
    ngx_uint_t                   dropped_deltas;

    ngx_str_t                    close_reason;
    u_char                       reason[128];

    unsigned                     request_sent:1;
    unsigned                     started:1;
    unsigned                     session_created:1;
    unsigned                     session_sent:1;
    unsigned                     session_updated:1;
    unsigned                     response_active:1;
    unsigned                     response_pending:1;
    unsigned                     closing:1;
    unsigned                     done:1;
};


/* ngx_voice_peer.c */
ngx_int_t ngx_voice_peer_init(ngx_voice_peer_t *peer, ngx_voice_call_t *call,
    ngx_connection_t *c, ngx_uint_t client, const char *name,
    ngx_voice_peer_data_pt data);
ngx_int_t ngx_voice_peer_read(ngx_voice_peer_t *peer);
ngx_int_t ngx_voice_peer_feed(ngx_voice_peer_t *peer, u_char *pos,
    u_char *last);
ngx_int_t ngx_voice_peer_json(ngx_voice_peer_t *peer,
    ngx_voice_ws_event_t *ev);
ngx_int_t ngx_voice_peer_flush(ngx_voice_peer_t *peer);
ngx_int_t ngx_voice_peer_frame(ngx_voice_peer_t *peer, ngx_uint_t opcode,
    size_t len);
ngx_int_t ngx_voice_peer_append(ngx_voice_peer_t *peer, u_char *data,
    size_t len);
ngx_int_t ngx_voice_peer_text(ngx_voice_peer_t *peer, u_char *data,
    size_t len);
ngx_int_t ngx_voice_peer_close(ngx_voice_peer_t *peer, ngx_uint_t code,
    const char *reason);
ngx_int_t ngx_voice_peer_ping(ngx_voice_peer_t *peer);
void ngx_voice_peer_discard(ngx_voice_peer_t *peer);
void ngx_voice_peer_free(ngx_voice_peer_t *peer);

/* ngx_voice_upstream.c */
ngx_int_t ngx_voice_upstream_start(ngx_voice_call_t *call);
void ngx_voice_upstream_close(ngx_voice_call_t *call);

/* ngx_voice_twilio.c */
ngx_int_t ngx_voice_twilio_init(ngx_voice_call_t *call);
ngx_int_t ngx_voice_twilio_media(ngx_voice_call_t *call, u_char *payload,
    size_t len);
ngx_int_t ngx_voice_twilio_mark(ngx_voice_call_t *call, u_char *name,
    size_t len);
ngx_int_t ngx_voice_twilio_clear(ngx_voice_call_t *call);

/* ngx_voice_realtime.c */
ngx_int_t ngx_voice_realtime_init(ngx_voice_call_t *call);
ngx_int_t ngx_voice_realtime_append(ngx_voice_call_t *call, u_char *audio,
    size_t len);
ngx_int_t ngx_voice_realtime_session(ngx_voice_call_t *call);
ngx_int_t ngx_voice_realtime_truncate(ngx_voice_call_t *call,
    ngx_voice_item_t *item, ngx_msec_t audio_end_ms);
ngx_int_t ngx_voice_realtime_dtmf(ngx_voice_call_t *call, u_char digit);
ngx_int_t ngx_voice_realtime_response_create(ngx_voice_call_t *call);

/* ngx_voice_playback.c */
ngx_int_t ngx_voice_playback_audio(ngx_voice_call_t *call,
    ngx_str_t *item_id, ngx_str_t *response_id, u_char *delta, size_t len);
void ngx_voice_playback_mark_echoed(ngx_voice_call_t *call, ngx_str_t *name);
ngx_int_t ngx_voice_playback_interrupt(ngx_voice_call_t *call);
ngx_int_t ngx_voice_playback_is_dropped(ngx_voice_call_t *call,
    ngx_str_t *response_id);

/* ngx_voice_call.c */
void ngx_voice_call_upstream_ready(ngx_voice_call_t *call);
void ngx_voice_call_start_checked(ngx_voice_call_t *call);
void ngx_voice_call_session_created(ngx_voice_call_t *call);
ngx_int_t ngx_voice_call_caller_audio(ngx_voice_call_t *call,
    u_char *payload, size_t len);
void ngx_voice_call_end(ngx_voice_call_t *call, ngx_uint_t twilio_code,
    ngx_uint_t openai_code, const char *reason);
void ngx_voice_call_peer_event(ngx_voice_peer_t *peer);
void ngx_voice_call_peer_write(ngx_voice_peer_t *peer);
ngx_int_t ngx_voice_call_flush(ngx_voice_call_t *call,
    ngx_voice_peer_t *peer);
void ngx_voice_call_set_reason(ngx_voice_call_t *call, const char *fmt, ...);
u_char *ngx_voice_call_scratch(ngx_voice_peer_t *peer, size_t len);


#endif /* _NGX_VOICE_CALL_H_INCLUDED_ */
