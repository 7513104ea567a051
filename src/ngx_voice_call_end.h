
/*
 * Copyright (C) ngx_voice authors
 *
 * How a call ends: one idempotent path, whichever leg or timer ends it.
 */


#ifndef _NGX_VOICE_CALL_END_H_INCLUDED_
#define _NGX_VOICE_CALL_END_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_voice_call.h"


/* no close frame is sent to that leg */
#define NGX_VOICE_CLOSE_NONE  0


/*
 * Ends the call: sends a close frame to each leg that is still open
 * (NGX_VOICE_CLOSE_NONE: none to that leg), "text" to Twilio, then waits
 * a little for the close handshakes.  Safe to call any number of times.
 */
void ngx_voice_call_end(ngx_voice_call_t *call, ngx_uint_t twilio_code,
    ngx_uint_t openai_code, const char *text);

/* $voice_close_reason and its code: the first cause is the one kept */
void ngx_voice_call_set_reason(ngx_voice_call_t *call, ngx_voice_end_e code,
    const char *fmt, ...);

/* the code of a leg's failure, from its close code and reason */
ngx_voice_end_e ngx_voice_call_failure_code(ngx_uint_t code,
    const char *reason);

/* both legs are done: the request (and the call with it) is released */
void ngx_voice_call_finish(ngx_voice_call_t *call);

/* the request's cleanup: nginx terminated it (a client abort, shutdown) */
void ngx_voice_call_cleanup(void *data);

/*
 * The model's words held for the transcript, written out: cut by a
 * barge-in ("cut" says where), or heard whole ("cut" NULL).
 */
void ngx_voice_call_write_said(ngx_voice_call_t *call,
    ngx_voice_call_said_t *said, ngx_voice_truncation_t *cut);

/* every utterance still held, written as heard whole, oldest first */
void ngx_voice_call_write_all_said(ngx_voice_call_t *call);

/* the utterance held longest, or NULL */
ngx_voice_call_said_t *ngx_voice_call_oldest_said(ngx_voice_call_t *call);

/*
 * Adds what the call sent since the last time to the shared metrics:
 * nothing shared is written per frame.
 */
void ngx_voice_call_add_counts(ngx_voice_call_t *call);

/* a cancelable timer of the call's */
void ngx_voice_call_timer(ngx_voice_call_t *call, ngx_event_t *ev,
    ngx_event_handler_pt handler, ngx_msec_t timer);


#endif /* _NGX_VOICE_CALL_END_H_INCLUDED_ */
