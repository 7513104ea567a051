
/*
 * Copyright (C) ngx_voice authors
 *
 * The call-action webhook: Twilio requests it when <Connect> ends, and
 * when a transfer's <Dial> ends; it answers from the call's outcome.
 */


#ifndef _NGX_VOICE_CALL_ACTION_H_INCLUDED_
#define _NGX_VOICE_CALL_ACTION_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


ngx_int_t ngx_voice_call_action_handler(ngx_http_request_t *r);


#endif /* _NGX_VOICE_CALL_ACTION_H_INCLUDED_ */
