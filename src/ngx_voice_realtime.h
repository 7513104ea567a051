
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
#define NGX_VOICE_TOOL_NAME_MAX 32
#define NGX_VOICE_TOOL_ARGS_MAX 1024
#define NGX_VOICE_TOOL_CALLS    2
#define NGX_VOICE_ITEM_ORDER    8


typedef struct ngx_voice_realtime_s  ngx_voice_realtime_t;


/* a function call of the model's, kept until its response is done */
typedef struct {
    u_char                       response_id[NGX_VOICE_ID_MAX];
    size_t                       response_id_len;
    u_char                       call_id[NGX_VOICE_ID_MAX];
    size_t                       call_id_len;
    u_char                       name[NGX_VOICE_TOOL_NAME_MAX];
    size_t                       name_len;
    u_char                       arguments[NGX_VOICE_TOOL_ARGS_MAX];
    size_t                       arguments_len;
    unsigned                     too_long:1;     /* name or arguments */
} ngx_voice_tool_call_t;


/* which item came before which: transcripts carry the order */
typedef struct {
    u_char                       item_id[NGX_VOICE_ID_MAX];
    size_t                       item_id_len;
    u_char                       previous[NGX_VOICE_ID_MAX];
    size_t                       previous_len;
} ngx_voice_item_order_t;


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

    /* a function call in a response that completed (none otherwise) */
    ngx_int_t                  (*tool_call)(ngx_voice_realtime_t *rt,
                                            ngx_voice_tool_call_t *tc);

    /* what the caller said, or what the model said, as text */
    ngx_int_t                  (*transcript)(ngx_voice_realtime_t *rt,
                                             ngx_uint_t assistant,
                                             ngx_str_t *item_id,
                                             ngx_str_t *previous_item_id,
                                             ngx_str_t *text);

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
    ngx_str_t                    approval_id;    /* item.id */
    ngx_str_t                    item_name;
    ngx_str_t                    item_call_id;
    ngx_str_t                    item_arguments;
    ngx_str_t                    response_ref;   /* response.id */
    ngx_str_t                    response_status;
    ngx_str_t                    previous_item_id;
    ngx_str_t                    transcript;     /* deferred copy */
    unsigned                     delta_sent:1;
    unsigned                     arguments_too_long:1;

    /* what the strings above point into */
    u_char                       item_id_buf[NGX_VOICE_ID_MAX];
    u_char                       response_id_buf[NGX_VOICE_ID_MAX];
    u_char                       error_code_buf[NGX_VOICE_ID_MAX];
    u_char                       error_message_buf[256];
    u_char                       item_type_buf[32];
    u_char                       approval_id_buf[NGX_VOICE_ID_MAX];
    u_char                       item_name_buf[NGX_VOICE_TOOL_NAME_MAX];
    u_char                       item_call_id_buf[NGX_VOICE_ID_MAX];
    u_char                       item_arguments_buf[NGX_VOICE_TOOL_ARGS_MAX];
    u_char                       response_ref_buf[NGX_VOICE_ID_MAX];
    u_char                       response_status_buf[16];
    u_char                       previous_item_id_buf[NGX_VOICE_ID_MAX];
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

    /* NGX_VOICE_TOOL_CALLS of them, on the first function call */
    ngx_voice_tool_call_t               *calls;
    ngx_uint_t                           ncalls;
    ngx_voice_item_order_t               order[NGX_VOICE_ITEM_ORDER];
    ngx_uint_t                           norder;
    u_char                              *transcript_buf;
    ngx_uint_t                           transcripts;   /* wanted */

    const ngx_voice_realtime_handler_t  *handler;
    void                                *data;        /* the owner */

    unsigned                             skipping:1;  /* a dropped event */
    unsigned                             response_active:1;
    unsigned                             response_pending:1;
    unsigned                             ending:1;    /* no new response */
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

/*
 * The answer to a function call; with "respond", a response.create after
 * it, so the model goes on (it is told what went wrong).
 */
ngx_int_t ngx_voice_realtime_tool_output(ngx_voice_realtime_t *rt,
    ngx_voice_tool_call_t *tc, ngx_str_t *output, ngx_uint_t respond);


#endif /* _NGX_VOICE_REALTIME_H_INCLUDED_ */
