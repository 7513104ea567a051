
/*
 * Copyright (C) ngx_voice authors
 *
 * POST /incoming-call: Twilio's call webhook, answered with TwiML that
 * opens a Media Stream carrying a single-use token.
 */


#ifndef _NGX_VOICE_WEBHOOK_H_INCLUDED_
#define _NGX_VOICE_WEBHOOK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice_signature.h"
#include "ngx_voice_twiml.h"


typedef struct {
    ngx_array_t                 *allow_callers;   /* of ngx_str_t */
    ngx_str_t                    say;
    ngx_str_t                    fallback_say;
    ngx_str_t                    action_path;     /* voice_call_action_url */
    ngx_str_t                    transfer_say;
    time_t                       transfer_time_limit;

    /* derived at merge time for a webhook location */
    ngx_str_t                    sig_prefixes[2]; /* public URL variants */
    ngx_uint_t                   nsig_prefixes;
    ngx_str_t                    stream_base;     /* empty: from $host */
    ngx_str_t                    action_url;      /* as Twilio requests it */
    ngx_voice_twiml_t            twiml;
} ngx_voice_webhook_conf_t;


void ngx_voice_webhook_create_conf(ngx_voice_webhook_conf_t *conf);
char *ngx_voice_webhook_merge_conf(ngx_conf_t *cf,
    ngx_voice_webhook_conf_t *prev, ngx_voice_webhook_conf_t *conf);

/* a webhook location's: the signed URL variants, the TwiML parts */
char *ngx_voice_webhook_init_conf(ngx_conf_t *cf,
    ngx_voice_webhook_conf_t *conf, ngx_voice_signature_conf_t *scf);

/* voice_allow_callers (cmd->offset: the conf) */
char *ngx_voice_webhook_set_allow_callers(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* voice_call_action_url /path (cmd->offset: the conf) */
char *ngx_voice_webhook_set_action_url(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

ngx_int_t ngx_voice_webhook_handler(ngx_http_request_t *r);

/*
 * What the call-action webhook shares with the call webhook: the form body
 * in memory, parsed, and its X-Twilio-Signature checked.  NGX_OK, NGX_DONE
 * (the body is being read: "post" is called with it), or an HTTP status.
 */
ngx_int_t ngx_voice_webhook_read_form(ngx_http_request_t *r,
    ngx_http_client_body_handler_pt post);
ngx_int_t ngx_voice_webhook_signed_form(ngx_http_request_t *r,
    ngx_array_t *params);

/* 200 text/xml with this TwiML */
ngx_int_t ngx_voice_webhook_send(ngx_http_request_t *r, ngx_str_t *twiml);


#endif /* _NGX_VOICE_WEBHOOK_H_INCLUDED_ */
