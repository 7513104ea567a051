
/*
 * Copyright (C) ngx_voice authors
 *
 * ngx_voice: a Twilio Voice <-> OpenAI Realtime gateway inside nginx.
 * This file holds the module definition, its directives and the
 * configuration's create/merge; each part of the location configuration
 * is created and merged next to the code that uses it, in src/.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice.h"
#include "ngx_voice_agent_conf.h"
#include "ngx_voice_bearer.h"
#include "ngx_voice_call_action.h"
#include "ngx_voice_media_stream.h"
#include "ngx_voice_metrics.h"
#include "ngx_voice_secret.h"
#include "ngx_voice_status.h"
#include "ngx_voice_token.h"
#include "ngx_voice_variables.h"


/* a lower (and upper, unless 0) bound, stated in the error */
typedef struct {
    ngx_conf_post_handler_pt     post_handler;
    ngx_int_t                    low;
    ngx_int_t                    high;
} ngx_voice_conf_bounds_t;


static ngx_int_t ngx_voice_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_voice_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_voice_init_process(ngx_cycle_t *cycle);
static void ngx_voice_exit_process(ngx_cycle_t *cycle);
static void *ngx_voice_create_main_conf(ngx_conf_t *cf);
static void *ngx_voice_create_loc_conf(ngx_conf_t *cf);
static char *ngx_voice_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_voice_merge_unnamed(ngx_conf_t *cf,
    ngx_voice_loc_conf_t *prev, ngx_voice_loc_conf_t *conf);
static char *ngx_voice_merge_role(ngx_conf_t *cf,
    ngx_voice_loc_conf_t *conf);
static char *ngx_voice_merge_webhook(ngx_conf_t *cf,
    ngx_voice_loc_conf_t *conf);
static char *ngx_voice_merge_agent(ngx_conf_t *cf,
    ngx_voice_loc_conf_t *conf);
static char *ngx_voice_merge_media_stream(ngx_conf_t *cf,
    ngx_voice_loc_conf_t *conf);
static char *ngx_voice_merge_handler(ngx_conf_t *cf,
    ngx_voice_loc_conf_t *conf);
static char *ngx_voice_merge_status(ngx_conf_t *cf,
    ngx_voice_loc_conf_t *conf);
static char *ngx_voice_set_handler(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_voice_set_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_voice_check_msec(ngx_conf_t *cf, void *post, void *data);
static char *ngx_voice_check_size(ngx_conf_t *cf, void *post, void *data);
static char *ngx_voice_check_num(ngx_conf_t *cf, void *post, void *data);
static char *ngx_voice_bounds_error(ngx_conf_t *cf,
    ngx_voice_conf_bounds_t *b, const char *unit);


/* by role: the content handler, and the directive that sets it */
static ngx_http_handler_pt  ngx_voice_role_handlers[] = {
    NULL,
    ngx_voice_webhook_handler,
    ngx_voice_media_stream_handler,
    ngx_voice_call_action_handler,
    ngx_voice_status_handler
};

static const char  *ngx_voice_role_names[] = {
    NULL,
    "voice_incoming_call",
    "voice_media_stream",
    "voice_call_action",
    "voice_status"
};


static ngx_voice_conf_bounds_t  ngx_voice_msec_positive =
    { ngx_voice_check_msec, 1, 0 };

/* a third of it is the ping interval */
static ngx_voice_conf_bounds_t  ngx_voice_idle_bounds =
    { ngx_voice_check_msec, 3, 0 };

/* a Twilio media message of 20 ms is about 400 bytes */
static ngx_voice_conf_bounds_t  ngx_voice_message_bounds =
    { ngx_voice_check_size, 1024, 0 };

static ngx_voice_conf_bounds_t  ngx_voice_buffer_bounds =
    { ngx_voice_check_size, 2048, 0 };

static ngx_voice_conf_bounds_t  ngx_voice_depth_bounds =
    { ngx_voice_check_num, 1, 100 };


#define NGX_VOICE_ANY_CONF                                                   \
    (NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF)

static ngx_command_t  ngx_voice_commands[] = {

    { ngx_string("voice_token_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_voice_token_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    /* content handlers: in a location only, never inherited */

    { ngx_string("voice_incoming_call"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_voice_set_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_VOICE_ROLE_INCOMING_CALL,
      NULL },

    { ngx_string("voice_media_stream"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_voice_set_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_VOICE_ROLE_MEDIA_STREAM,
      NULL },

    { ngx_string("voice_call_action"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_voice_set_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_VOICE_ROLE_CALL_ACTION,
      NULL },

    { ngx_string("voice_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_voice_set_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_VOICE_ROLE_STATUS,
      NULL },

    /* what Twilio signs: src/ngx_voice_signature.c */

    { ngx_string("voice_signature"),
      NGX_VOICE_ANY_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, signature.enabled),
      NULL },

    { ngx_string("voice_twilio_auth_token"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE1,
      ngx_voice_conf_set_secret_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, signature.auth_token),
      NULL },

    { ngx_string("voice_public_url"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE1,
      ngx_voice_signature_set_public_url,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, signature),
      NULL },

    { ngx_string("voice_stream_url"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE1,
      ngx_voice_signature_set_stream_url,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, signature),
      NULL },

    /* the webhook's answer: src/ngx_voice_webhook.c */

    { ngx_string("voice_allow_callers"),
      NGX_VOICE_ANY_CONF|NGX_CONF_1MORE,
      ngx_voice_webhook_set_allow_callers,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, webhook),
      NULL },

    { ngx_string("voice_say"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, webhook.say),
      NULL },

    { ngx_string("voice_fallback_say"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, webhook.fallback_say),
      NULL },

    { ngx_string("voice_call_action_url"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE1,
      ngx_voice_webhook_set_action_url,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, webhook),
      NULL },

    { ngx_string("voice_transfer_say"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, webhook.transfer_say),
      NULL },

    { ngx_string("voice_transfer_time_limit"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, webhook.transfer_time_limit),
      NULL },

    /* the OpenAI leg: src/ngx_voice_openai.c */

    { ngx_string("voice_openai_url"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE1,
      ngx_voice_openai_set_url,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, openai),
      NULL },

    { ngx_string("voice_openai_api_key"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE1,
      ngx_voice_conf_set_secret_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, openai.api_key),
      NULL },

    { ngx_string("voice_ssl_trusted_certificate"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, openai.ssl_trusted_certificate),
      NULL },

    { ngx_string("voice_ssl_verify"),
      NGX_VOICE_ANY_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, openai.ssl_verify),
      NULL },

    { ngx_string("voice_ssl_verify_depth"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, openai.ssl_verify_depth),
      &ngx_voice_depth_bounds },

    { ngx_string("voice_ssl_name"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, openai.ssl_name),
      NULL },

    { ngx_string("voice_ssl_session_reuse"),
      NGX_VOICE_ANY_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, openai.ssl_session_reuse),
      NULL },

    { ngx_string("voice_connect_timeout"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, openai.connect_timeout),
      &ngx_voice_msec_positive },

    /* a call's limits: src/ngx_voice_call.c */

    { ngx_string("voice_start_timeout"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, call.start_timeout),
      &ngx_voice_msec_positive },

    { ngx_string("voice_idle_timeout"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, call.idle_timeout),
      &ngx_voice_idle_bounds },

    { ngx_string("voice_max_call_duration"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, call.max_call_duration),
      &ngx_voice_msec_positive },

    { ngx_string("voice_buffer_size"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, call.buffer_size),
      &ngx_voice_buffer_bounds },

    { ngx_string("voice_max_message_size"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, call.max_message_size),
      &ngx_voice_message_bounds },

    { ngx_string("voice_dtmf"),
      NGX_VOICE_ANY_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, call.dtmf),
      NULL },

    /* the OpenAI session: src/ngx_voice_session.c */

    { ngx_string("voice_voice"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, session.voice),
      NULL },

    { ngx_string("voice_instructions"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, session.instructions),
      NULL },

    { ngx_string("voice_instructions_file"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE1,
      ngx_voice_session_set_instructions_file,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, session),
      NULL },

    { ngx_string("voice_turn_detection"),
      NGX_VOICE_ANY_CONF|NGX_CONF_1MORE,
      ngx_voice_session_set_turn_detection,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, session),
      NULL },

    { ngx_string("voice_mcp_server"),
      NGX_VOICE_ANY_CONF|NGX_CONF_2MORE,
      ngx_voice_session_set_mcp_server,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, session),
      NULL },

    { ngx_string("voice_greeting"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, session.greeting),
      NULL },

    { ngx_string("voice_hangup"),
      NGX_VOICE_ANY_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, session.hangup),
      NULL },

    { ngx_string("voice_transfer"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE23,
      ngx_voice_session_set_transfer,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, session),
      NULL },

    { ngx_string("voice_transcription_model"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, session.transcription_model),
      NULL },

    /* a private upstream published behind a secret: ngx_voice_bearer.c */

    { ngx_string("voice_require_bearer"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_voice_conf_set_secret_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, bearer),
      NULL },

    /* the transcript log: src/ngx_voice_transcript.c */

    { ngx_string("voice_transcript_log"),
      NGX_VOICE_ANY_CONF|NGX_CONF_TAKE1,
      ngx_voice_transcript_set_log,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_voice_loc_conf_t, transcript),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_voice_module_ctx = {
    ngx_voice_preconfiguration,            /* preconfiguration */
    ngx_voice_postconfiguration,           /* postconfiguration */

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
    ngx_voice_init_process,                /* init process */
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


/* the counters of the zone of this cycle */
static ngx_int_t
ngx_voice_init_process(ngx_cycle_t *cycle)
{
    ngx_voice_main_conf_t  *vmcf;

    vmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_voice_module);

    ngx_voice_metrics_init_process(vmcf && vmcf->token_zone
                                   ? ngx_voice_token_metrics(vmcf->token_zone)
                                   : NULL);

    return NGX_OK;
}


/* the TLS sessions each worker kept for reuse go with it */
static void
ngx_voice_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                 i;
    ngx_voice_main_conf_t     *vmcf;
    ngx_voice_openai_conf_t  **stream;

    ngx_voice_metrics_exit_process();

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


static ngx_int_t
ngx_voice_postconfiguration(ngx_conf_t *cf)
{
    if (ngx_voice_agent_conf_check(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_voice_bearer_init(cf);
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
                       sizeof(ngx_voice_openai_conf_t *))
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
     *     conf->role = NGX_VOICE_ROLE_NONE;
     *     conf->role_file = NULL;
     */

    ngx_voice_signature_create_conf(&conf->signature);
    ngx_voice_webhook_create_conf(&conf->webhook);
    ngx_voice_openai_create_conf(&conf->openai);
    ngx_voice_call_create_conf(&conf->call);
    ngx_voice_session_create_conf(&conf->session);
    ngx_voice_transcript_create_conf(&conf->transcript);

    return conf;
}


static char *
ngx_voice_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_voice_loc_conf_t *prev = parent;
    ngx_voice_loc_conf_t *conf = child;

    if (ngx_voice_signature_merge_conf(cf, &prev->signature, &conf->signature)
        != NGX_CONF_OK
        || ngx_voice_webhook_merge_conf(cf, &prev->webhook, &conf->webhook)
           != NGX_CONF_OK
        || ngx_voice_openai_merge_conf(cf, &prev->openai, &conf->openai)
           != NGX_CONF_OK
        || ngx_voice_call_merge_conf(cf, &prev->call, &conf->call)
           != NGX_CONF_OK
        || ngx_voice_session_merge_conf(cf, &prev->session, &conf->session)
           != NGX_CONF_OK
        || ngx_voice_transcript_merge_conf(cf, &prev->transcript,
                                           &conf->transcript)
           != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    ngx_conf_merge_str_value(conf->bearer, prev->bearer, "");

    if (ngx_voice_merge_unnamed(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    switch (conf->role) {

    case NGX_VOICE_ROLE_INCOMING_CALL:
        return ngx_voice_merge_webhook(cf, conf);

    case NGX_VOICE_ROLE_MEDIA_STREAM:
        return ngx_voice_merge_media_stream(cf, conf);

    case NGX_VOICE_ROLE_CALL_ACTION:
        return ngx_voice_merge_webhook(cf, conf);

    case NGX_VOICE_ROLE_STATUS:
        return ngx_voice_merge_status(cf, conf);

    default: /* NGX_VOICE_ROLE_NONE */
        return NGX_CONF_OK;
    }
}


/*
 * An "if" or "limit_except" block inside a handler location is a location
 * of its own, with no name, that serves the same requests: as proxy_pass
 * does, it takes the role of the location it is in.
 */
static char *
ngx_voice_merge_unnamed(ngx_conf_t *cf, ngx_voice_loc_conf_t *prev,
    ngx_voice_loc_conf_t *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (!clcf->noname || conf->role != NGX_VOICE_ROLE_NONE) {
        return NGX_CONF_OK;
    }

    conf->role = prev->role;
    conf->role_file = prev->role_file;
    conf->role_line = prev->role_line;

    if (clcf->lmt_excpt && clcf->handler == NULL
        && conf->role != NGX_VOICE_ROLE_NONE)
    {
        clcf->handler = ngx_voice_role_handlers[conf->role];
    }

    return NGX_CONF_OK;
}


/* what every content handler needs, checked once everything is merged */
static char *
ngx_voice_merge_role(ngx_conf_t *cf, ngx_voice_loc_conf_t *conf)
{
    const char             *name;
    ngx_voice_main_conf_t  *vmcf;

    name = ngx_voice_role_names[conf->role];

    if (ngx_voice_merge_handler(cf, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_voice_module);

    if (vmcf->token_zone == NULL) {
        /* log-safe: configuration file names and units; configuration text */
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"%s\" requires \"voice_token_zone\" in the http "
                      "block in %s:%ui", name, conf->role_file,
                      conf->role_line);
        return NGX_CONF_ERROR;
    }

    if (conf->signature.enabled && conf->signature.auth_token.len == 0) {
        /* log-safe: configuration file names and units */
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"voice_twilio_auth_token\" is required while "
                      "\"voice_signature\" is on in %s:%ui",
                      conf->role_file, conf->role_line);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_voice_merge_webhook(ngx_conf_t *cf, ngx_voice_loc_conf_t *conf)
{
    if (ngx_voice_merge_role(cf, conf) != NGX_CONF_OK
        || ngx_voice_merge_agent(cf, conf) != NGX_CONF_OK
        || ngx_voice_agent_conf_add(cf, conf) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return ngx_voice_webhook_init_conf(cf, &conf->webhook, &conf->signature);
}


static char *
ngx_voice_merge_media_stream(ngx_conf_t *cf, ngx_voice_loc_conf_t *conf)
{
    size_t                     len;
    ngx_voice_main_conf_t     *vmcf;
    ngx_voice_openai_conf_t  **stream;

    if (ngx_voice_merge_role(cf, conf) != NGX_CONF_OK
        || ngx_voice_merge_agent(cf, conf) != NGX_CONF_OK
        || ngx_voice_agent_conf_add(cf, conf) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (conf->openai.api_key.len == 0) {
        /* an empty key would still open a connection, to be refused */
        /* log-safe: configuration file names and units */
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"voice_openai_api_key\" is required by "
                      "\"voice_media_stream\" in %s:%ui",
                      conf->role_file, conf->role_line);
        return NGX_CONF_ERROR;
    }

    if (ngx_voice_openai_init_conf(cf, &conf->openai, conf->role_file,
                                   conf->role_line)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_voice_module);

    stream = ngx_array_push(&vmcf->streams);
    if (stream == NULL) {
        return NGX_CONF_ERROR;
    }

    *stream = &conf->openai;

    /* the caller's words are transcribed only for a transcript log */
    conf->session.transcribe = (conf->transcript.file != NULL);

    if (ngx_voice_session_build(cf, &conf->session) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (conf->call.buffer_size < 2 * conf->call.max_message_size) {
        /* log-safe: configuration file names and units */
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"voice_buffer_size\" must be at least twice "
                      "\"voice_max_message_size\" in %s:%ui",
                      conf->role_file, conf->role_line);
        return NGX_CONF_ERROR;
    }

    len = conf->session.session_update.len + conf->session.greeting_item.len;

    if (len + 1024 > conf->call.buffer_size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the session (instructions, tools) takes %uz "
                           "bytes: \"voice_buffer_size\" %uz cannot "
                           "hold it", len, conf->call.buffer_size);
        return NGX_CONF_ERROR;
    }

    if (!conf->signature.enabled) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"voice_signature\" is off: media stream "
                           "upgrades are not authenticated");

    } else if (conf->signature.stream_sig_host.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_stream_url\" or \"voice_public_url\" "
                           "is required while \"voice_signature\" is on");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * The model's hang-up and transfer end the stream; without an action URL
 * Twilio would go on to the fallback <Say> and hang up.
 */
static char *
ngx_voice_merge_agent(ngx_conf_t *cf, ngx_voice_loc_conf_t *conf)
{
    if ((conf->session.hangup || conf->session.transfers)
        && conf->webhook.action_path.len == 0)
    {
        /* log-safe: configuration file names and units */
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"voice_call_action_url\" is required by "
                      "\"voice_hangup\" and \"voice_transfer\" in %s:%ui",
                      conf->role_file, conf->role_line);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* a content handler set after ours, e.g. proxy_pass, replaced it */
static char *
ngx_voice_merge_handler(ngx_conf_t *cf, ngx_voice_loc_conf_t *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler != ngx_voice_role_handlers[conf->role]
        && !(clcf->noname && clcf->handler == NULL))
    {
        /* an "if" block keeps its location's handler: it has none */
        /* log-safe: configuration file names and units; configuration text */
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"%s\" conflicts with another content handler in "
                      "location \"%V\" in %s:%ui",
                      ngx_voice_role_names[conf->role], &clcf->name,
                      conf->role_file, conf->role_line);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* /health and /metrics live in the token zone's shared memory */
static char *
ngx_voice_merge_status(ngx_conf_t *cf, ngx_voice_loc_conf_t *conf)
{
    ngx_voice_main_conf_t  *vmcf;

    if (ngx_voice_merge_handler(cf, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_voice_module);

    if (vmcf->token_zone == NULL) {
        /* log-safe: configuration file names and units */
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"voice_status\" requires \"voice_token_zone\" in the "
                      "http block in %s:%ui", conf->role_file,
                      conf->role_line);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* voice_status [health] */
static char *
ngx_voice_set_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_voice_loc_conf_t  *vlcf = conf;

    ngx_str_t  *value;

    value = cf->args->elts;

    if (cf->args->nelts == 2) {
        if (ngx_strcmp(value[1].data, "health") != 0) {
            /* log-safe: configuration text */
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"voice_status\" parameter \"%V\": "
                               "\"health\" or none expected", &value[1]);
            return NGX_CONF_ERROR;
        }

        vlcf->status_health = 1;
    }

    return ngx_voice_set_handler(cf, cmd, conf);
}


/* as proxy_pass does: the location's content handler, set here */
static char *
ngx_voice_set_handler(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_voice_loc_conf_t  *vlcf = conf;

    ngx_http_handler_pt        handler;
    ngx_http_core_loc_conf_t  *clcf;

    if (vlcf->role != NGX_VOICE_ROLE_NONE) {
        return (vlcf->role == cmd->offset) ? "is duplicate"
               : "conflicts with another voice role in the same block";
    }

    handler = ngx_voice_role_handlers[cmd->offset];

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler && clcf->handler != handler) {
        return "conflicts with another content handler in this location";
    }

    clcf->handler = handler;

    vlcf->role = cmd->offset;
    vlcf->role_file = cf->conf_file->file.name.data;
    vlcf->role_line = cf->conf_file->line;

    return NGX_CONF_OK;
}


static char *
ngx_voice_check_msec(ngx_conf_t *cf, void *post, void *data)
{
    ngx_msec_t  *value = data;

    ngx_voice_conf_bounds_t  *b = post;

    if (*value < (ngx_msec_t) b->low
        || (b->high && *value > (ngx_msec_t) b->high))
    {
        return ngx_voice_bounds_error(cf, b, "ms");
    }

    return NGX_CONF_OK;
}


static char *
ngx_voice_check_size(ngx_conf_t *cf, void *post, void *data)
{
    size_t  *value = data;

    ngx_voice_conf_bounds_t  *b = post;

    if (*value < (size_t) b->low || (b->high && *value > (size_t) b->high)) {
        return ngx_voice_bounds_error(cf, b, " bytes");
    }

    return NGX_CONF_OK;
}


static char *
ngx_voice_check_num(ngx_conf_t *cf, void *post, void *data)
{
    ngx_int_t  *value = data;

    ngx_voice_conf_bounds_t  *b = post;

    if (*value < b->low || (b->high && *value > b->high)) {
        return ngx_voice_bounds_error(cf, b, "");
    }

    return NGX_CONF_OK;
}


static char *
ngx_voice_bounds_error(ngx_conf_t *cf, ngx_voice_conf_bounds_t *b,
    const char *unit)
{
    ngx_str_t  *value;

    value = cf->args->elts;

    if (b->high) {
        /* log-safe: configuration file names and units; configuration text */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must be between %i%s and %i%s",
                           &value[0], b->low, unit, b->high, unit);

    } else {
        /* log-safe: configuration file names and units; configuration text */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must be at least %i%s",
                           &value[0], b->low, unit);
    }

    return NGX_CONF_ERROR;
}
