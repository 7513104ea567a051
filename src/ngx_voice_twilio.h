
/*
 * Copyright (C) ngx_voice authors
 *
 * The Twilio leg: Twilio's connection taken over after "101 Switching
 * Protocols", its Media Stream messages parsed as they stream, and the
 * three messages a bidirectional stream may send back (media, mark,
 * clear).  What Twilio says is reported to the owner through a handler
 * table; this file knows nothing of the other leg.
 */


#ifndef _NGX_VOICE_TWILIO_H_INCLUDED_
#define _NGX_VOICE_TWILIO_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice_json.h"
#include "ngx_voice_peer.h"


#define NGX_VOICE_SID_MAX       64


typedef struct ngx_voice_twilio_s  ngx_voice_twilio_t;


/*
 * What Twilio said.  The handlers that return ngx_int_t answer NGX_OK to
 * go on or NGX_ERROR once the call is ending, which stops the parsing.
 */
typedef struct {
    /* "start", its callSid, mediaFormat and streamSid checked */
    ngx_int_t                  (*start)(ngx_voice_twilio_t *tw);
    ngx_int_t                  (*media)(ngx_voice_twilio_t *tw,
                                        u_char *payload, size_t len);
    ngx_int_t                  (*mark)(ngx_voice_twilio_t *tw,
                                       ngx_str_t *name);
    ngx_int_t                  (*dtmf)(ngx_voice_twilio_t *tw,
                                       u_char digit);
    ngx_int_t                  (*stop)(ngx_voice_twilio_t *tw);

    /* Twilio broke the protocol: close it with "code" (see the peer's) */
    void                       (*failed)(ngx_voice_twilio_t *tw,
                                         ngx_uint_t code, const char *text,
                                         const char *reason);

    /* backpressure: true while what Twilio says cannot be passed on */
    ngx_uint_t                 (*paused)(ngx_voice_twilio_t *tw);
} ngx_voice_twilio_handler_t;


/* the fields of the message being parsed */
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

    /* what the strings above point into */
    u_char                       stream_sid_buf[NGX_VOICE_SID_MAX];
    u_char                       call_sid_buf[NGX_VOICE_SID_MAX];
    u_char                       encoding_buf[32];
    u_char                       mark_buf[NGX_VOICE_SID_MAX];
    u_char                       digit_buf[4];
} ngx_voice_twilio_msg_t;


struct ngx_voice_twilio_s {
    ngx_voice_peer_t                   peer;
    ngx_http_request_t                *request;
    ngx_voice_json_t                   json;
    ngx_voice_twilio_msg_t             msg;
    size_t                             max_message;
    u_char                            *scratch;

    ngx_str_t                          call_sid;    /* the token's */
    ngx_str_t                          stream_sid;
    u_char                             stream_sid_buf[NGX_VOICE_SID_MAX];

    const ngx_voice_twilio_handler_t  *handler;
    void                              *data;        /* the owner */

    unsigned                           started:1;
};


/*
 * Takes over the request's connection once the 101 is queued: the request
 * is held (r->main->count) and the 101 is pushed out.  The owner sets the
 * request's event handlers.  "tw->handler", "data", "max_message",
 * "call_sid" (the call the stream's start must name) and the peer's
 * "limit", "log" and "pool" are set before.
 */
ngx_int_t ngx_voice_twilio_take_over(ngx_voice_twilio_t *tw,
    ngx_http_request_t *r);

/* parses what Twilio sent right behind its handshake, then reads on */
void ngx_voice_twilio_read_early(ngx_voice_twilio_t *tw);

/* the 101 left in nginx's output first, then our queued frames */
ngx_int_t ngx_voice_twilio_write_queued(ngx_voice_twilio_t *tw);

void ngx_voice_twilio_free(ngx_voice_twilio_t *tw);

/*
 * NGX_OK (queued, or dropped after our close), or NGX_ERROR: Twilio is
 * not reading, or no memory; the failed handler has been told.
 */
ngx_int_t ngx_voice_twilio_send_media(ngx_voice_twilio_t *tw,
    u_char *payload, size_t len);
ngx_int_t ngx_voice_twilio_send_mark(ngx_voice_twilio_t *tw,
    ngx_str_t *name);
ngx_int_t ngx_voice_twilio_send_clear(ngx_voice_twilio_t *tw);


#endif /* _NGX_VOICE_TWILIO_H_INCLUDED_ */
