
/*
 * Copyright (C) ngx_voice authors
 *
 * ngx_voice: a Twilio Voice <-> OpenAI Realtime gateway inside nginx.
 * This file holds the module definition, its directives and the
 * configuration create/merge logic; the work itself lives in src/.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice.h"
#include "ngx_voice_secret.h"
#include "ngx_voice_token.h"
#include "ngx_voice_twiml.h"


static ngx_int_t ngx_voice_preconfiguration(ngx_conf_t *cf);
static void ngx_voice_exit_process(ngx_cycle_t *cycle);
static void *ngx_voice_create_main_conf(ngx_conf_t *cf);
static void *ngx_voice_create_loc_conf(ngx_conf_t *cf);
static char *ngx_voice_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_voice_merge_webhook(ngx_conf_t *cf,
    ngx_voice_loc_conf_t *conf);
static char *ngx_voice_merge_media_stream(ngx_conf_t *cf,
    ngx_voice_loc_conf_t *conf);
static char *ngx_voice_set_role(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_voice_set_public_url(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_voice_set_stream_url(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_voice_set_allow_callers(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_voice_parse_url(ngx_str_t *url, ngx_str_t *scheme,
    ngx_str_t *host, ngx_str_t *port, ngx_str_t *path);


static ngx_command_t  ngx_voice_commands[] = {

    { ngx_string("voice_token_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_voice_token_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("voice_incoming_call"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_voice_set_role,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_VOICE_ROLE_INCOMING_CALL,
      NULL },

    { ngx_string("voice_media_stream"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_voice_set_role,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_VOICE_ROLE_MEDIA_STREAM,
      NULL },

    { ngx_string("voice_signature"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, signature),
      NULL },

    { ngx_string("voice_twilio_auth_token"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_voice_conf_set_secret_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, auth_token),
      NULL },

    { ngx_string("voice_public_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_voice_set_public_url,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("voice_stream_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_voice_set_stream_url,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("voice_allow_callers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_voice_set_allow_callers,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("voice_say"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, say),
      NULL },

    { ngx_string("voice_fallback_say"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, fallback_say),
      NULL },

    { ngx_string("voice_openai_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, openai_url),
      NULL },

    { ngx_string("voice_openai_api_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_voice_conf_set_secret_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, openai_key),
      NULL },

    { ngx_string("voice_ssl_trusted_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, ssl_trusted_certificate),
      NULL },

    { ngx_string("voice_ssl_verify"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, ssl_verify),
      NULL },

    { ngx_string("voice_ssl_verify_depth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, ssl_verify_depth),
      NULL },

    { ngx_string("voice_ssl_name"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, ssl_name),
      NULL },

    { ngx_string("voice_ssl_session_reuse"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, ssl_session_reuse),
      NULL },

    { ngx_string("voice_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, connect_timeout),
      NULL },

    { ngx_string("voice_start_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, start_timeout),
      NULL },

    { ngx_string("voice_idle_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, idle_timeout),
      NULL },

    { ngx_string("voice_max_call_duration"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, max_call_duration),
      NULL },

    { ngx_string("voice_buffer_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, buffer_size),
      NULL },

    { ngx_string("voice_max_message_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, max_message_size),
      NULL },

    { ngx_string("voice_dtmf"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, dtmf),
      NULL },

    { ngx_string("voice_voice"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, voice),
      NULL },

    { ngx_string("voice_instructions"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, instructions),
      NULL },

    { ngx_string("voice_instructions_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_voice_set_instructions_file,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("voice_turn_detection"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_voice_set_turn_detection,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("voice_mcp_server"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_voice_set_mcp_server,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("voice_greeting"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, greeting),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_voice_module_ctx = {
    ngx_voice_preconfiguration,            /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_voice_create_main_conf,            /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_voice_create_loc_conf,             /* create location configuration */
    ngx_voice_merge_loc_conf               /* merge location configuration */
};


ngx_module_t  ngx_voice_module = {
    NGX_MODULE_V1,
    &ngx_voice_module_ctx,                 /* module context */
    ngx_voice_commands,                    /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_voice_exit_process,                /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_voice_preconfiguration(ngx_conf_t *cf)
{
    return ngx_voice_add_variables(cf);
}


/* the TLS sessions each worker kept for reuse go with it */
static void
ngx_voice_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t              i;
    ngx_voice_loc_conf_t  **stream;
    ngx_voice_main_conf_t  *vmcf;

    vmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_voice_module);
    if (vmcf == NULL) {
        return;
    }

    stream = vmcf->streams.elts;

    for (i = 0; i < vmcf->streams.nelts; i++) {
        if (stream[i]->ssl_session) {
            ngx_ssl_free_session(stream[i]->ssl_session);
            stream[i]->ssl_session = NULL;
        }
    }
}


static void *
ngx_voice_create_main_conf(ngx_conf_t *cf)
{
    ngx_voice_main_conf_t  *vmcf;

    vmcf = ngx_pcalloc(cf->pool, sizeof(ngx_voice_main_conf_t));
    if (vmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     vmcf->token_zone = NULL;
     */

    if (ngx_array_init(&vmcf->streams, cf->pool, 4,
                       sizeof(ngx_voice_loc_conf_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return vmcf;
}


static void *
ngx_voice_create_loc_conf(ngx_conf_t *cf)
{
    ngx_voice_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_voice_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->auth_token = { 0, NULL };
     *     conf->public_url = { 0, NULL };
     *     conf->public_host = { 0, NULL };
     *     conf->stream_url = { 0, NULL };
     *     conf->stream_host = { 0, NULL };
     *     conf->say = { 0, NULL };
     *     conf->fallback_say = { 0, NULL };
     *     conf->nsig_prefixes = 0;
     *     conf->stream_base = { 0, NULL };
     *     conf->twiml = { ... };
     */

    conf->role = NGX_CONF_UNSET_UINT;
    conf->signature = NGX_CONF_UNSET;
    conf->allow_callers = NGX_CONF_UNSET_PTR;

    conf->ssl_verify = NGX_CONF_UNSET;
    conf->ssl_verify_depth = NGX_CONF_UNSET_UINT;
    conf->ssl_session_reuse = NGX_CONF_UNSET;
    conf->connect_timeout = NGX_CONF_UNSET_MSEC;
    conf->start_timeout = NGX_CONF_UNSET_MSEC;
    conf->idle_timeout = NGX_CONF_UNSET_MSEC;
    conf->max_call_duration = NGX_CONF_UNSET_MSEC;
    conf->buffer_size = NGX_CONF_UNSET_SIZE;
    conf->max_message_size = NGX_CONF_UNSET_SIZE;
    conf->dtmf = NGX_CONF_UNSET;
    conf->turn_detection = NGX_CONF_UNSET_PTR;
    conf->mcp_servers = NGX_CONF_UNSET_PTR;

    return conf;
}


static char *
ngx_voice_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_voice_loc_conf_t *prev = parent;
    ngx_voice_loc_conf_t *conf = child;

    ngx_uint_t                 explicit;
    ngx_http_core_loc_conf_t  *clcf;
    ngx_voice_main_conf_t     *vmcf;

    explicit = (conf->role != NGX_CONF_UNSET_UINT);

    ngx_conf_merge_uint_value(conf->role, prev->role, NGX_VOICE_ROLE_NONE);
    ngx_conf_merge_value(conf->signature, prev->signature, 1);
    ngx_conf_merge_str_value(conf->auth_token, prev->auth_token, "");
    ngx_conf_merge_ptr_value(conf->allow_callers, prev->allow_callers, NULL);

    if (conf->public_url.data == NULL) {
        conf->public_url = prev->public_url;
        conf->public_host = prev->public_host;
    }

    if (conf->stream_url.data == NULL) {
        conf->stream_url = prev->stream_url;
        conf->stream_host = prev->stream_host;
    }

    if (conf->say.data == NULL) {
        conf->say = prev->say;
    }

    if (conf->fallback_say.data == NULL) {
        conf->fallback_say = prev->fallback_say;
    }

    ngx_conf_merge_str_value(conf->openai_url, prev->openai_url,
                       "wss://api.openai.com/v1/realtime?model=gpt-realtime");
    ngx_conf_merge_str_value(conf->openai_key, prev->openai_key, "");
    ngx_conf_merge_value(conf->ssl_verify, prev->ssl_verify, 1);
    ngx_conf_merge_uint_value(conf->ssl_verify_depth,
                              prev->ssl_verify_depth, 4);
    ngx_conf_merge_str_value(conf->ssl_trusted_certificate,
                             prev->ssl_trusted_certificate, "");
    ngx_conf_merge_str_value(conf->ssl_name, prev->ssl_name, "");
    ngx_conf_merge_value(conf->ssl_session_reuse, prev->ssl_session_reuse, 1);
    ngx_conf_merge_msec_value(conf->connect_timeout, prev->connect_timeout,
                              10000);
    ngx_conf_merge_msec_value(conf->start_timeout, prev->start_timeout,
                              10000);
    ngx_conf_merge_msec_value(conf->idle_timeout, prev->idle_timeout, 60000);
    ngx_conf_merge_msec_value(conf->max_call_duration,
                              prev->max_call_duration, 60 * 60 * 1000);
    ngx_conf_merge_size_value(conf->buffer_size, prev->buffer_size,
                              256 * 1024);
    ngx_conf_merge_size_value(conf->max_message_size, prev->max_message_size,
                              64 * 1024);
    ngx_conf_merge_value(conf->dtmf, prev->dtmf, 1);
    ngx_conf_merge_str_value(conf->voice, prev->voice, "alloy");
    ngx_conf_merge_str_value(conf->greeting, prev->greeting, "");
    ngx_conf_merge_ptr_value(conf->turn_detection, prev->turn_detection,
                             NULL);
    ngx_conf_merge_ptr_value(conf->mcp_servers, prev->mcp_servers, NULL);

    if (conf->instructions.data == NULL) {
        conf->instructions = prev->instructions;
    }

    if (conf->role == NGX_VOICE_ROLE_NONE) {
        return NGX_CONF_OK;
    }

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_voice_module);

    if (vmcf->token_zone == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" requires \"voice_token_zone\" in the "
                           "http block",
                           conf->role == NGX_VOICE_ROLE_INCOMING_CALL
                           ? "voice_incoming_call" : "voice_media_stream");
        return NGX_CONF_ERROR;
    }

    if (conf->signature && conf->auth_token.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_twilio_auth_token\" is required while "
                           "\"voice_signature\" is on");
        return NGX_CONF_ERROR;
    }

    /*
     * The merge runs with the location's own configuration in cf->ctx,
     * so a role inherited from the server or http level takes effect in
     * every location that has no other content handler.
     */

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (explicit && clcf->handler
        && clcf->handler != ngx_voice_webhook_handler
        && clcf->handler != ngx_voice_media_stream_handler)
    {
        /* log-safe: the location name, from nginx.conf */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" conflicts with another content handler "
                           "in location \"%V\"",
                           conf->role == NGX_VOICE_ROLE_INCOMING_CALL
                           ? "voice_incoming_call" : "voice_media_stream",
                           &clcf->name);
        return NGX_CONF_ERROR;
    }

    if (conf->role == NGX_VOICE_ROLE_INCOMING_CALL) {
        if (clcf->handler == NULL) {
            clcf->handler = ngx_voice_webhook_handler;
        }

        return ngx_voice_merge_webhook(cf, conf);
    }

    if (clcf->handler == NULL) {
        clcf->handler = ngx_voice_media_stream_handler;
    }

    return ngx_voice_merge_media_stream(cf, conf);
}


static char *
ngx_voice_merge_media_stream(ngx_conf_t *cf, ngx_voice_loc_conf_t *conf)
{
    char                    *rv;
    ngx_voice_loc_conf_t   **stream;
    ngx_voice_main_conf_t   *vmcf;

    if (conf->buffer_size < 2 * conf->max_message_size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_buffer_size\" must be at least twice "
                           "\"voice_max_message_size\"");
        return NGX_CONF_ERROR;
    }

    if (conf->idle_timeout < 3) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_idle_timeout\" is too small");
        return NGX_CONF_ERROR;
    }

    rv = ngx_voice_openai_merge(cf, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_voice_module);

    stream = ngx_array_push(&vmcf->streams);
    if (stream == NULL) {
        return NGX_CONF_ERROR;
    }

    *stream = conf;

    if (ngx_voice_session_build(cf, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (conf->session_update.len + conf->greeting_item.len + 1024
        > conf->buffer_size)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the session (instructions, tools) takes %uz "
                           "bytes: \"voice_buffer_size\" %uz cannot "
                           "hold it", conf->session_update.len
                                      + conf->greeting_item.len,
                           conf->buffer_size);
        return NGX_CONF_ERROR;
    }

    /* derived here, never inherited: an inner voice_public_url counts */
    conf->sig_host = conf->stream_host.data ? conf->stream_host
                                            : conf->public_host;

    if (!conf->signature) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"voice_signature\" is off: media stream "
                           "upgrades are not authenticated");

    } else if (conf->sig_host.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_stream_url\" or \"voice_public_url\" "
                           "is required while \"voice_signature\" is on");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_voice_merge_webhook(ngx_conf_t *cf, ngx_voice_loc_conf_t *conf)
{
    u_char     *p;
    ngx_str_t   scheme, host, port, path;

    if (!conf->signature) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"voice_signature\" is off: webhook requests "
                           "are not authenticated");
    }

    if (conf->public_url.data == NULL) {
        if (conf->signature) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"voice_public_url\" is required while "
                               "\"voice_signature\" is on");
            return NGX_CONF_ERROR;
        }

    } else {
        (void) ngx_voice_parse_url(&conf->public_url, &scheme, &host, &port,
                                   &path);

        /*
         * Twilio's backend signs with the port or without it, so the
         * URL is tried as configured and with the port the other way.
         */

        conf->sig_prefixes[0] = conf->public_url;

        p = ngx_pnalloc(cf->pool, conf->public_url.len + sizeof(":443"));
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        conf->sig_prefixes[1].data = p;
        p = ngx_cpymem(p, scheme.data, scheme.len);
        p = ngx_cpymem(p, "://", 3);
        p = ngx_cpymem(p, host.data, host.len);

        if (port.len == 0) {
            if (scheme.len == 5) {
                p = ngx_cpymem(p, ":443", 4);

            } else {
                p = ngx_cpymem(p, ":80", 3);
            }
        }

        conf->sig_prefixes[1].len = p - conf->sig_prefixes[1].data;
        conf->nsig_prefixes = 2;
    }

    if (conf->stream_url.data) {
        conf->stream_base = conf->stream_url;

    } else if (conf->public_host.data) {
        /* Twilio streams only to port 443, so no port is carried over */

        p = ngx_pnalloc(cf->pool, sizeof("wss:///media-stream") - 1
                                  + conf->public_host.len);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        conf->stream_base.data = p;
        p = ngx_cpymem(p, "wss://", 6);
        p = ngx_cpymem(p, conf->public_host.data, conf->public_host.len);
        p = ngx_cpymem(p, "/media-stream", sizeof("/media-stream") - 1);
        conf->stream_base.len = p - conf->stream_base.data;
    }

    if (ngx_voice_twiml_init(cf->pool, &conf->twiml, &conf->say,
                             &conf->fallback_say)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_voice_set_role(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_voice_loc_conf_t  *vlcf = conf;

    if (vlcf->role != NGX_CONF_UNSET_UINT) {
        return (vlcf->role == cmd->offset) ? "is duplicate"
               : "conflicts with another voice role in the same block";
    }

    vlcf->role = cmd->offset;

    return NGX_CONF_OK;
}


static char *
ngx_voice_set_public_url(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_voice_loc_conf_t  *vlcf = conf;

    ngx_str_t  *value, scheme, host, port, path;

    if (vlcf->public_url.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_voice_parse_url(&value[1], &scheme, &host, &port, &path)
        != NGX_OK
        || !((scheme.len == 5 && ngx_strncmp(scheme.data, "https", 5) == 0)
             || (scheme.len == 4 && ngx_strncmp(scheme.data, "http", 4) == 0)))
    {
        /* log-safe: the directive argument, from nginx.conf */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"voice_public_url\" \"%V\": "
                           "http(s)://host[:port] expected", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (path.len > 1 || (path.len == 1 && path.data[0] != '/')) {
        /* log-safe: the directive argument, from nginx.conf */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_public_url\" \"%V\" must not have a "
                           "path: the request URI is appended to it",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    /* a lone trailing "/" would double the request URI's own */

    vlcf->public_url.data = value[1].data;
    vlcf->public_url.len = value[1].len - path.len;
    vlcf->public_host = host;

    return NGX_CONF_OK;
}


static char *
ngx_voice_set_stream_url(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_voice_loc_conf_t  *vlcf = conf;

    ngx_str_t  *value, scheme, host, port, path;

    if (vlcf->stream_url.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_voice_parse_url(&value[1], &scheme, &host, &port, &path)
        != NGX_OK
        || scheme.len != 3 || ngx_strncmp(scheme.data, "wss", 3) != 0)
    {
        /* log-safe: the directive argument, from nginx.conf */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"voice_stream_url\" \"%V\": "
                           "wss://host[/path] expected", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (ngx_strlchr(path.data, path.data + path.len, '?')
        || ngx_strlchr(path.data, path.data + path.len, '#'))
    {
        /* log-safe: the directive argument, from nginx.conf */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_stream_url\" \"%V\" must not have a "
                           "query string: Twilio drops it", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (port.len && !(port.len == 3 && ngx_strncmp(port.data, "443", 3) == 0))
    {
        /* log-safe: the directive argument, from nginx.conf */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_stream_url\" \"%V\" must not have a "
                           "port other than 443: Twilio streams only to "
                           "port 443", &value[1]);
        return NGX_CONF_ERROR;
    }

    vlcf->stream_url = value[1];
    vlcf->stream_host = host;

    return NGX_CONF_OK;
}


static char *
ngx_voice_set_allow_callers(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_voice_loc_conf_t  *vlcf = conf;

    ngx_str_t   *value, *caller;
    ngx_uint_t   i;

    if (vlcf->allow_callers == NGX_CONF_UNSET_PTR) {
        vlcf->allow_callers = ngx_array_create(cf->pool, 4,
                                               sizeof(ngx_str_t));
        if (vlcf->allow_callers == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (value[i].len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid empty caller in "
                               "\"voice_allow_callers\"");
            return NGX_CONF_ERROR;
        }

        caller = ngx_array_push(vlcf->allow_callers);
        if (caller == NULL) {
            return NGX_CONF_ERROR;
        }

        *caller = value[i];
    }

    return NGX_CONF_OK;
}


/*
 * Splits scheme://host[:port][path]; rejects user info, an empty host and
 * a port that is not a number.
 */
static ngx_int_t
ngx_voice_parse_url(ngx_str_t *url, ngx_str_t *scheme, ngx_str_t *host,
    ngx_str_t *port, ngx_str_t *path)
{
    u_char     *p, *end, *colon, *authority;
    ngx_int_t   n;

    p = url->data;
    end = url->data + url->len;

    colon = ngx_strlcasestrn(p, end, (u_char *) "://", 3 - 1);
    if (colon == NULL || colon == p) {
        return NGX_ERROR;
    }

    scheme->data = p;
    scheme->len = colon - p;

    authority = colon + 3;

    for (p = authority; p < end; p++) {
        if (*p == '/' || *p == '?' || *p == '#') {
            break;
        }

        if (*p == '@') {
            return NGX_ERROR;
        }
    }

    path->data = p;
    path->len = end - p;

    host->data = authority;
    host->len = p - authority;
    port->data = p;
    port->len = 0;

    colon = authority;

    if (authority < p && *authority == '[') {
        /* an IPv6 literal: its port follows the closing bracket */
        colon = ngx_strlchr(authority, p, ']');
        if (colon == NULL) {
            return NGX_ERROR;
        }
    }

    colon = ngx_strlchr(colon, p, ':');

    if (colon) {
        host->len = colon - authority;
        port->data = colon + 1;
        port->len = p - colon - 1;

        n = ngx_atoi(port->data, port->len);
        if (n < 1 || n > 65535) {
            return NGX_ERROR;
        }
    }

    if (host->len == 0) {
        return NGX_ERROR;
    }

    return NGX_OK;
}
