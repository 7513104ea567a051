
/*
 * Copyright (C) ngx_voice authors
 *
 * POST /call-action: signed like every webhook, answered from the
 * outcome the call left in the zone, so any worker answers it, and the
 * same way each time (Twilio retries):
 *
 *   "hangup"           <Hangup/>
 *   "transfer:LABEL"   [voice_transfer_say] <Dial> to exactly LABEL's
 *                      configured destination, with an action back here
 *   a Dial that ended  <Hangup/> if it completed, else the fallback
 *   anything else      voice_fallback_say then <Hangup/> (the stream
 *                      ended for another reason, or no record is left)
 *
 * No request can produce a <Dial> to anything not configured.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice.h"
#include "ngx_voice_call_action.h"
#include "ngx_voice_util.h"


static void ngx_voice_call_action_body(ngx_http_request_t *r);
static ngx_int_t ngx_voice_call_action_process(ngx_http_request_t *r);
static ngx_int_t ngx_voice_call_action_dialed(ngx_http_request_t *r,
    ngx_str_t *sid, ngx_str_t *status);
static ngx_int_t ngx_voice_call_action_transfer(ngx_http_request_t *r,
    ngx_str_t *sid, ngx_str_t *label);
static ngx_int_t ngx_voice_call_action_fallback(ngx_http_request_t *r);


ngx_int_t
ngx_voice_call_action_handler(ngx_http_request_t *r)
{
    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "voice: call action handler");

    return ngx_voice_webhook_read_form(r, ngx_voice_call_action_body);
}


static void
ngx_voice_call_action_body(ngx_http_request_t *r)
{
    ngx_http_finalize_request(r, ngx_voice_call_action_process(r));
}


static ngx_int_t
ngx_voice_call_action_process(ngx_http_request_t *r)
{
    ngx_int_t               rc;
    ngx_str_t              *sid, *dialed, outcome, label;
    ngx_array_t             params;
    ngx_voice_main_conf_t  *vmcf;
    u_char                  buf[NGX_VOICE_OUTCOME_MAX];

    static ngx_str_t  hangup = ngx_string(NGX_VOICE_TWIML_HANGUP);

    rc = ngx_voice_webhook_signed_form(r, &params);
    if (rc != NGX_OK) {
        return rc;
    }

    sid = ngx_voice_form_get(&params, "CallSid");

    dialed = ngx_voice_form_get(&params, "DialCallStatus");

    if (dialed) {
        return ngx_voice_call_action_dialed(r, sid, dialed);
    }

    vmcf = ngx_http_get_module_main_conf(r, ngx_voice_module);

    if (ngx_voice_token_get_outcome(vmcf->token_zone, sid, &outcome, buf)
        != NGX_OK)
    {
        /* log-safe: a CallSid of Twilio's exact shape, else "-" */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "voice: call action for call %V: no outcome "
                      "recorded, the fallback", ngx_voice_loggable_sid(sid));
        return ngx_voice_call_action_fallback(r);
    }

    if (outcome.len == sizeof("hangup") - 1
        && ngx_strncmp(outcome.data, "hangup", outcome.len) == 0)
    {
        /* log-safe: a CallSid of Twilio's exact shape, else "-" */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "voice: call action for call %V: hangup",
                      ngx_voice_loggable_sid(sid));
        return ngx_voice_webhook_send(r, &hangup);
    }

    if (outcome.len > sizeof("transfer:") - 1
        && ngx_strncmp(outcome.data, "transfer:",
                       sizeof("transfer:") - 1)
           == 0)
    {
        label.data = outcome.data + sizeof("transfer:") - 1;
        label.len = outcome.len - (sizeof("transfer:") - 1);

        return ngx_voice_call_action_transfer(r, sid, &label);
    }

    return ngx_voice_call_action_fallback(r);
}


/* a transfer's <Dial> ended: the caller hears the fallback if it failed */
static ngx_int_t
ngx_voice_call_action_dialed(ngx_http_request_t *r, ngx_str_t *sid,
    ngx_str_t *status)
{
    u_char  text[NGX_VOICE_LOG_TEXT_MAX];

    static ngx_str_t  hangup = ngx_string(NGX_VOICE_TWIML_HANGUP);

    /* log-safe: a CallSid of Twilio's exact shape, else "-" */
    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "voice: transfer of call %V ended: \"%s\"",
                  ngx_voice_loggable_sid(sid),
                  ngx_voice_log_escape(text, status->data, status->len));

    if (status->len == sizeof("completed") - 1
        && ngx_strncmp(status->data, "completed", status->len) == 0)
    {
        return ngx_voice_webhook_send(r, &hangup);
    }

    return ngx_voice_call_action_fallback(r);
}


static ngx_int_t
ngx_voice_call_action_transfer(ngx_http_request_t *r, ngx_str_t *sid,
    ngx_str_t *label)
{
    u_char                  *p;
    ngx_str_t                twiml;
    ngx_voice_transfer_t    *t;
    ngx_voice_loc_conf_t    *vlcf;
    ngx_voice_twiml_dial_t   dial;

    vlcf = ngx_http_get_module_loc_conf(r, ngx_voice_module);

    /* the destination comes from this configuration, never the record */

    t = ngx_voice_session_transfer(&vlcf->session, label);

    if (t == NULL) {
        /* log-safe: a CallSid of Twilio's exact shape, else "-" */
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "voice: call action for call %V: no voice_transfer "
                      "here for its label, the fallback",
                      ngx_voice_loggable_sid(sid));
        return ngx_voice_call_action_fallback(r);
    }

    /* log-safe: a CallSid of Twilio's exact shape, else "-" */
    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "voice: call action for call %V: transfer to \"%V\"",
                  ngx_voice_loggable_sid(sid), &t->label);

    /* the <Dial>'s action comes back here, to the URL Twilio signs */

    if (vlcf->webhook.nsig_prefixes) {
        p = ngx_pnalloc(r->pool, vlcf->webhook.sig_prefixes[0].len
                                 + r->uri.len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        dial.action.data = p;
        p = ngx_cpymem(p, vlcf->webhook.sig_prefixes[0].data,
                       vlcf->webhook.sig_prefixes[0].len);
        p = ngx_cpymem(p, r->uri.data, r->uri.len);
        dial.action.len = p - dial.action.data;

    } else {
        dial.action = r->uri;
    }

    dial.say = vlcf->webhook.transfer_say;
    dial.time_limit = vlcf->webhook.transfer_time_limit;
    dial.destination = t->destination;
    dial.sip = t->sip;

    if (ngx_voice_twiml_dial(r->pool, &dial, &twiml) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_voice_webhook_send(r, &twiml);
}


static ngx_int_t
ngx_voice_call_action_fallback(ngx_http_request_t *r)
{
    ngx_str_t              twiml;
    ngx_voice_loc_conf_t  *vlcf;

    vlcf = ngx_http_get_module_loc_conf(r, ngx_voice_module);

    if (ngx_voice_twiml_hangup(r->pool, &vlcf->webhook.fallback_say, &twiml)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_voice_webhook_send(r, &twiml);
}
