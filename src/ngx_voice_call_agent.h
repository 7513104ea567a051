
/*
 * Copyright (C) ngx_voice authors
 *
 * The phone agent: the model hangs up and transfers the call through its
 * tools, and each utterance can go to the transcript log.
 */


#ifndef _NGX_VOICE_CALL_AGENT_H_INCLUDED_
#define _NGX_VOICE_CALL_AGENT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_voice_call.h"


/*
 * A function call of a completed response.  NGX_OK (answered, the call
 * goes on or is ending), or NGX_ERROR once the call ended.
 */
ngx_int_t ngx_voice_call_agent_tool(ngx_voice_call_t *call,
    ngx_voice_tool_call_t *tc);

/* an utterance for the transcript log; NGX_OK */
ngx_int_t ngx_voice_call_agent_transcript(ngx_voice_call_t *call,
    ngx_uint_t assistant, ngx_str_t *item_id, ngx_str_t *previous,
    ngx_str_t *text);

/* Twilio played audio (a mark came back) */
void ngx_voice_call_agent_played(ngx_voice_call_t *call);

/* a barge-in cut these items */
void ngx_voice_call_agent_cut(ngx_voice_call_t *call,
    ngx_voice_truncation_t *cut, ngx_uint_t n);


#endif /* _NGX_VOICE_CALL_AGENT_H_INCLUDED_ */
