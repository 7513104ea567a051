
/*
 * Copyright (C) ngx_voice authors
 *
 * The module's configuration: one main configuration per http{} and a
 * location configuration made of one part per concern, each created and
 * merged next to the code that uses it.  Types only.
 */


#ifndef _NGX_VOICE_H_INCLUDED_
#define _NGX_VOICE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice_call.h"
#include "ngx_voice_openai.h"
#include "ngx_voice_session.h"
#include "ngx_voice_signature.h"
#include "ngx_voice_transcript.h"
#include "ngx_voice_webhook.h"


/* what a location's content handler is; set in the location, never
 * inherited */
#define NGX_VOICE_ROLE_NONE           0
#define NGX_VOICE_ROLE_INCOMING_CALL  1
#define NGX_VOICE_ROLE_MEDIA_STREAM   2
#define NGX_VOICE_ROLE_CALL_ACTION    3
#define NGX_VOICE_ROLE_STATUS         4


typedef struct {
    ngx_shm_zone_t              *token_zone;
    ngx_array_t                  streams;    /* ngx_voice_openai_conf_t * */
    ngx_array_t                 *agent_locs; /* see ngx_voice_agent_conf.c */
} ngx_voice_main_conf_t;


typedef struct {
    ngx_uint_t                   role;
    u_char                      *role_file;  /* where it was set */
    ngx_uint_t                   role_line;
    ngx_uint_t                   status_health;  /* voice_status health */
    ngx_str_t                    bearer;         /* voice_require_bearer */

    ngx_voice_signature_conf_t   signature;  /* what Twilio signs */
    ngx_voice_webhook_conf_t     webhook;    /* the TwiML answer */
    ngx_voice_openai_conf_t      openai;     /* the OpenAI leg */
    ngx_voice_call_conf_t        call;       /* a call's limits */
    ngx_voice_session_conf_t     session;    /* the OpenAI session */
    ngx_voice_transcript_conf_t  transcript; /* the transcript log */
} ngx_voice_loc_conf_t;


extern ngx_module_t  ngx_voice_module;


#endif /* _NGX_VOICE_H_INCLUDED_ */
