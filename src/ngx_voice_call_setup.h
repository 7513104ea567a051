
/*
 * Copyright (C) ngx_voice authors
 *
 * How a call gets going: session.update goes to OpenAI once both its
 * session.created has come and Twilio's start has checked out; caller
 * audio and digits that come before it wait in a bounded queue.
 */


#ifndef _NGX_VOICE_CALL_SETUP_H_INCLUDED_
#define _NGX_VOICE_CALL_SETUP_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_voice_call.h"


/*
 * Each returns NGX_OK, or NGX_ERROR when a write to OpenAI failed; the
 * OpenAI leg's failed handler has been told.
 */
ngx_int_t ngx_voice_call_start_checked(ngx_voice_call_t *call);
ngx_int_t ngx_voice_call_session_created(ngx_voice_call_t *call);
ngx_int_t ngx_voice_call_caller_audio(ngx_voice_call_t *call,
    u_char *payload, size_t len);
ngx_int_t ngx_voice_call_caller_digit(ngx_voice_call_t *call, u_char digit);


#endif /* _NGX_VOICE_CALL_SETUP_H_INCLUDED_ */
