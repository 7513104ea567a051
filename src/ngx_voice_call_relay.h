
/*
 * Copyright (C) ngx_voice authors
 *
 * What each leg of a call says, passed to the other.
 */


#ifndef _NGX_VOICE_CALL_RELAY_H_INCLUDED_
#define _NGX_VOICE_CALL_RELAY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_voice_call.h"


/* what the call does with what Twilio and OpenAI say */
extern const ngx_voice_twilio_handler_t    ngx_voice_call_twilio_handler;
extern const ngx_voice_realtime_handler_t  ngx_voice_call_openai_handler;

/* the OpenAI leg is set up, or could not be */
void ngx_voice_call_on_upstream_ready(ngx_voice_upstream_t *u, u_char *pos,
    u_char *last);
void ngx_voice_call_on_upstream_failed(ngx_voice_upstream_t *u,
    ngx_voice_upstream_stage_e stage, const char *reason);


#endif /* _NGX_VOICE_CALL_RELAY_H_INCLUDED_ */
