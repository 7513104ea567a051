
/*
 * Copyright (C) ngx_voice authors
 *
 * The conversation items of the OpenAI leg that are not audio: the
 * model's function calls, acted on only once their response completed,
 * and transcripts, with the order of the items they belong to.
 */


#ifndef _NGX_VOICE_REALTIME_ITEMS_H_INCLUDED_
#define _NGX_VOICE_REALTIME_ITEMS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_voice_realtime.h"


/* response.output_item.done: a function call is kept until its response */
void ngx_voice_realtime_remember_call(ngx_voice_realtime_t *rt);

/*
 * response.done: the calls of a "completed" response go to the owner;
 * those of any other (cancelled, interrupted by the caller, failed) are
 * forgotten.  NGX_OK, or NGX_ERROR when the owner stopped the parsing.
 */
ngx_int_t ngx_voice_realtime_calls_done(ngx_voice_realtime_t *rt);

/* conversation.item.added: which item came before it */
void ngx_voice_realtime_remember_order(ngx_voice_realtime_t *rt);

/* a transcript, with the item before its own, to the owner */
ngx_int_t ngx_voice_realtime_transcript(ngx_voice_realtime_t *rt,
    ngx_uint_t assistant);


#endif /* _NGX_VOICE_REALTIME_ITEMS_H_INCLUDED_ */
