
/*
 * Copyright (C) ngx_voice authors
 */


#ifndef _NGX_VOICE_H_INCLUDED_
#define _NGX_VOICE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice_token.h"
#include "ngx_voice_twiml.h"


#define NGX_VOICE_ROLE_NONE           1
#define NGX_VOICE_ROLE_INCOMING_CALL  2
#define NGX_VOICE_ROLE_MEDIA_STREAM   3


typedef struct {
    ngx_str_t                   type;            /* server_vad, semantic_vad */
    ngx_str_t                   eagerness;
    ngx_str_t                   threshold;
    ngx_int_t                   silence_duration_ms;
    ngx_int_t                   prefix_padding_ms;
} ngx_voice_turn_detection_t;


typedef struct {
    ngx_str_t                   name;
    ngx_str_t                   value;           /* may be a secret */
} ngx_voice_header_t;


typedef struct {
    ngx_str_t                   label;
    ngx_str_t                   url;
    ngx_array_t                 headers;         /* ngx_voice_header_t */
    ngx_array_t                *allowed_tools;   /* ngx_str_t */
} ngx_voice_mcp_server_t;


/* one per http{}: the token zone and process-wide state */
typedef struct {
    ngx_shm_zone_t             *token_zone;
    ngx_array_t                 streams;         /* ngx_voice_loc_conf_t * */
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
    ngx_str_t                   sig_host;        /* host Twilio signs */
    ngx_voice_twiml_t           twiml;

    /* the OpenAI leg */
    ngx_str_t                   openai_url;
    ngx_str_t                   openai_key;          /* secret */
    ngx_str_t                   openai_host;         /* to resolve */
    ngx_str_t                   openai_host_header;  /* host[:port] */
    ngx_str_t                   openai_uri;          /* path?query */
    in_port_t                   openai_port;
    ngx_addr_t                 *openai_addrs;
    ngx_uint_t                  openai_naddrs;

    ngx_ssl_t                  *ssl;
    ngx_flag_t                  ssl_verify;
    ngx_uint_t                  ssl_verify_depth;
    ngx_str_t                   ssl_trusted_certificate;
    ngx_str_t                   ssl_name;
    u_char                     *ssl_name_z;
    ngx_uint_t                  ssl_name_is_ip;
    ngx_flag_t                  ssl_session_reuse;
    ngx_ssl_session_t          *ssl_session;         /* per worker */

    ngx_msec_t                  connect_timeout;
    ngx_msec_t                  start_timeout;
    ngx_msec_t                  idle_timeout;
    ngx_msec_t                  max_call_duration;
    size_t                      buffer_size;
    size_t                      max_message_size;
    ngx_flag_t                  dtmf;

    /* the session */
    ngx_str_t                   voice;
    ngx_str_t                   instructions;
    ngx_str_t                   greeting;
    ngx_voice_turn_detection_t *turn_detection;
    ngx_array_t                *mcp_servers;     /* ngx_voice_mcp_server_t */
    ngx_str_t                   session_update;  /* built, may hold secrets */
    ngx_str_t                   greeting_item;   /* built */
} ngx_voice_loc_conf_t;


extern ngx_module_t  ngx_voice_module;


ngx_int_t ngx_voice_webhook_handler(ngx_http_request_t *r);

/* the first request header called "name", case-insensitively */
ngx_table_elt_t *ngx_voice_find_header(ngx_http_request_t *r,
    ngx_str_t *name);
ngx_table_elt_t *ngx_voice_header_with_token(ngx_http_request_t *r,
    ngx_str_t *name, const char *token);

ngx_int_t ngx_voice_media_stream_handler(ngx_http_request_t *r);

/* takes over the connection once "101 Switching Protocols" is sent */
ngx_int_t ngx_voice_call_start(ngx_http_request_t *r,
    ngx_voice_call_info_t *info);

/* ngx_voice_session.c: the session directives and session.update */
char *ngx_voice_set_turn_detection(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_voice_set_mcp_server(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_voice_set_instructions_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_voice_session_build(ngx_conf_t *cf,
    ngx_voice_loc_conf_t *conf);

/* ngx_voice_openai.c: the OpenAI URL, addresses and TLS context */
char *ngx_voice_openai_merge(ngx_conf_t *cf, ngx_voice_loc_conf_t *conf);

/* ngx_voice_variables.c */
ngx_int_t ngx_voice_add_variables(ngx_conf_t *cf);

/*
 * A CallSid for the log: itself when it has Twilio's exact shape
 * (CA + 32 hex digits), else "-", so nothing a client chose is logged.
 */
ngx_str_t *ngx_voice_loggable_sid(ngx_str_t *sid);

/* replaces control characters of peer text in place, for the log */
void ngx_voice_log_safe(u_char *p, size_t len);


#endif /* _NGX_VOICE_H_INCLUDED_ */
