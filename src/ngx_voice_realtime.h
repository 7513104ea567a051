
/*
 * Copyright (C) ngx_voice authors
 *
 * The OpenAI leg once its WebSocket is open: OpenAI Realtime (GA) events
 * parsed as they stream, and the client events the call sends.  What
 * OpenAI says is reported to the owner through a handler table; this
 * file knows nothing of the other leg.
 */


#ifndef _NGX_VOICE_REALTIME_H_INCLUDED_
#define _NGX_VOICE_REALTIME_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_voice_json.h"
#include "ngx_voice_peer.h"


#define NGX_VOICE_ID_MAX        64


typedef struct ngx_voice_realtime_s  ngx_voice_realtime_t;


/*
 * What OpenAI said.  Each handler answers NGX_OK to go on or NGX_ERROR
 * once the call is ending, which stops the parsing.
 */
typedef struct {
    ngx_int_t                  (*session_created)(ngx_voice_realtime_t *rt);
    ngx_int_t                  (*session_updated)(ngx_voice_realtime_t *rt);
    ngx_int_t                  (*audio)(ngx_voice_realtime_t *rt,
                                        ngx_str_t *item_id,
                                        ngx_str_t *response_id,
                                        u_char *delta, size_t len);
    ngx_int_t                  (*speech_started)(ngx_voice_realtime_t *rt);

    /* OpenAI broke the protocol: close it with "code" (see the peer's) */
    void                       (*failed)(ngx_voice_realtime_t *rt,
                                         ngx_uint_t code, const char *text,
                                         const char *reason);

    /* backpressure: true while what OpenAI says cannot be passed on */
    ngx_uint_t                 (*paused)(ngx_voice_realtime_t *rt);
} ngx_voice_realtime_handler_t;


/* the fields of the event being parsed */
typedef struct {
    ngx_uint_t                   type;
    ngx_str_t                    item_id;
    ngx_str_t                    response_id;
    ngx_str_t                    delta;          /* deferred copy */
    ngx_str_t                    error_code;
    ngx_str_t                    error_message;
    ngx_str_t                    item_type;
    ngx_str_t                    approval_id;
    unsigned                     delta_sent:1;

    /* what the strings above point into */
    u_char                       item_id_buf[NGX_VOICE_ID_MAX];
    u_char                       response_id_buf[NGX_VOICE_ID_MAX];
    u_char                       error_code_buf[NGX_VOICE_ID_MAX];
    u_char                       error_message_buf[256];
    u_char                       item_type_buf[32];
    u_char                       approval_id_buf[NGX_VOICE_ID_MAX];
} ngx_voice_realtime_msg_t;


struct ngx_voice_realtime_s {
    ngx_voice_peer_t                     peer;
    ngx_voice_json_t                     json;
    ngx_voice_realtime_msg_t             msg;
    size_t                               max_message;
    u_char                              *scratch;

    /* the last approval request denied: it is named twice */
    u_char                               denied[NGX_VOICE_ID_MAX];
    size_t                               denied_len;

    const ngx_voice_realtime_handler_t  *handler;
    void                                *data;        /* the owner */

    unsigned                             skipping:1;  /* a dropped event */
    unsigned                             response_active:1;
    unsigned                             response_pending:1;
};


/*
 * Starts the WebSocket endpoint on the upstream connection.
 * "rt->handler", "data", "max_message" and the peer's "limit", "log" and
 * "pool" are set before.
 */
ngx_int_t ngx_voice_realtime_open(ngx_voice_realtime_t *rt,
    ngx_connection_t *c);
void ngx_voice_realtime_free(ngx_voice_realtime_t *rt);

/*
 * NGX_OK (queued, or dropped after our close), or NGX_ERROR: OpenAI is
 * not reading, or no memory; the failed handler has been told.
 */
ngx_int_t ngx_voice_realtime_append(ngx_voice_realtime_t *rt, u_char *audio,
    size_t len);
ngx_int_t ngx_voice_realtime_send_session(ngx_voice_realtime_t *rt,
    ngx_str_t *session_update, ngx_str_t *greeting_item);
ngx_int_t ngx_voice_realtime_truncate(ngx_voice_realtime_t *rt,
    ngx_str_t *item_id, ngx_msec_t audio_end_ms);
ngx_int_t ngx_voice_realtime_dtmf(ngx_voice_realtime_t *rt, u_char digit);


#endif /* _NGX_VOICE_REALTIME_H_INCLUDED_ */
