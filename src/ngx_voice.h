
/*
 * Copyright (C) ngx_voice authors
 */


#ifndef _NGX_VOICE_H_INCLUDED_
#define _NGX_VOICE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice_twiml.h"


#define NGX_VOICE_ROLE_NONE           1
#define NGX_VOICE_ROLE_INCOMING_CALL  2
#define NGX_VOICE_ROLE_MEDIA_STREAM   3


/* one per http{}: the token zone and process-wide state */
typedef struct {
    ngx_shm_zone_t             *token_zone;
} ngx_voice_main_conf_t;


typedef struct {
    ngx_uint_t                  role;

    ngx_flag_t                  signature;
    ngx_str_t                   auth_token;      /* secret */

    ngx_str_t                   public_url;      /* scheme://host[:port] */
    ngx_str_t                   public_host;     /* host, no port */
    ngx_str_t                   stream_url;      /* wss://host[/path] */
    ngx_str_t                   stream_host;     /* its host, no port */

    ngx_array_t                *allow_callers;   /* of ngx_str_t */

    ngx_str_t                   say;
    ngx_str_t                   fallback_say;

    /* derived at merge time */
    ngx_str_t                   sig_prefixes[2]; /* webhook URL variants */
    ngx_uint_t                  nsig_prefixes;
    ngx_str_t                   stream_base;     /* empty: from $host */
    ngx_voice_twiml_t           twiml;
} ngx_voice_loc_conf_t;


extern ngx_module_t  ngx_voice_module;


ngx_int_t ngx_voice_webhook_handler(ngx_http_request_t *r);

/* the first request header called "name", case-insensitively */
ngx_table_elt_t *ngx_voice_find_header(ngx_http_request_t *r,
    ngx_str_t *name);

ngx_int_t ngx_voice_media_stream_handler(ngx_http_request_t *r);

/* takes over the connection once "101 Switching Protocols" is sent */
ngx_int_t ngx_voice_call_start(ngx_http_request_t *r);

/*
 * A CallSid for the log: itself when it has Twilio's exact shape
 * (CA + 32 hex digits), else "-", so nothing a client chose is logged.
 */
ngx_str_t *ngx_voice_loggable_sid(ngx_str_t *sid);


#endif /* _NGX_VOICE_H_INCLUDED_ */
