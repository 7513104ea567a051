
/*
 * Copyright (C) ngx_voice authors
 *
 * The events of both legs of a call.
 */


#ifndef _NGX_VOICE_CALL_IO_H_INCLUDED_
#define _NGX_VOICE_CALL_IO_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice_call.h"


/*
 * The Twilio connection's event handler: nginx's, unless nginx is
 * shutting down (worker_shutdown_timeout); then the call is ended
 */
void ngx_voice_call_twilio_event(ngx_event_t *ev);

/* the Twilio request's event handlers */
void ngx_voice_call_twilio_read(ngx_http_request_t *r);
void ngx_voice_call_twilio_write(ngx_http_request_t *r);

/* the OpenAI leg's, once it is a WebSocket */
void ngx_voice_call_openai_read(ngx_voice_upstream_t *u);
void ngx_voice_call_openai_write(ngx_voice_upstream_t *u);

/*
 * After any I/O or timer: write what waits on both legs, notice a leg
 * that ended, re-arm the events, and finish once both legs are done.
 */
void ngx_voice_call_after_io(ngx_voice_call_t *call);

/*
 * Backpressure: true while "other" has half of voice_buffer_size waiting
 * for its peer, after an attempt to write it out.
 */
ngx_uint_t ngx_voice_call_backlogged(ngx_voice_call_t *call,
    ngx_voice_peer_t *other);


#endif /* _NGX_VOICE_CALL_IO_H_INCLUDED_ */
