
/*
 * Copyright (C) ngx_voice authors
 *
 * POST /incoming-call: Twilio's call webhook.  Checks the signature over
 * the form body, applies the caller allowlist, mints a single-use token
 * and answers TwiML that opens a Media Stream carrying that token.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice.h"
#include "ngx_voice_metrics.h"
#include "ngx_voice_signature.h"
#include "ngx_voice_token.h"
#include "ngx_voice_twiml.h"
#include "ngx_voice_util.h"
#include "ngx_voice_variables.h"
#include "ngx_voice_webhook.h"


/*
 * Repeated webhooks of one call are logged once a second per worker, with
 * how many came: a replay flood must not flood the log too.
 */
typedef struct {
    ngx_uint_t                   level;
    const char                  *what;
    time_t                       logged;
    ngx_uint_t                   count;
} ngx_voice_webhook_repeats_t;


static ngx_int_t ngx_voice_webhook_is_form(ngx_http_request_t *r);
static void ngx_voice_webhook_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_voice_webhook_process(ngx_http_request_t *r);
static ngx_int_t ngx_voice_webhook_read_body(ngx_http_request_t *r,
    ngx_str_t *body);
static ngx_int_t ngx_voice_webhook_verify(ngx_http_request_t *r,
    ngx_voice_loc_conf_t *vlcf, ngx_array_t *params);
static ngx_int_t ngx_voice_webhook_set_call_sid(ngx_http_request_t *r,
    ngx_str_t *sid);
static ngx_int_t ngx_voice_webhook_caller_allowed(
    ngx_voice_webhook_conf_t *wcf, ngx_str_t *from);
static ngx_int_t ngx_voice_webhook_mint(ngx_http_request_t *r,
    ngx_voice_loc_conf_t *vlcf, ngx_array_t *params);
static void ngx_voice_webhook_minted_handler(ngx_voice_token_op_t *op);
static ngx_int_t ngx_voice_webhook_minted(ngx_http_request_t *r,
    ngx_voice_token_op_t *op);
static void ngx_voice_webhook_info(ngx_voice_call_info_t *info,
    ngx_array_t *params);
static void ngx_voice_webhook_log_repeat(ngx_http_request_t *r,
    ngx_voice_webhook_repeats_t *repeats, ngx_str_t *sid);
static ngx_int_t ngx_voice_webhook_sig_prefixes(ngx_conf_t *cf,
    ngx_voice_webhook_conf_t *conf, ngx_voice_signature_conf_t *scf);
static ngx_int_t ngx_voice_webhook_stream_base(ngx_conf_t *cf,
    ngx_voice_webhook_conf_t *conf, ngx_voice_signature_conf_t *scf);
static ngx_int_t ngx_voice_webhook_action_url(ngx_conf_t *cf,
    ngx_voice_webhook_conf_t *conf, ngx_voice_signature_conf_t *scf);


static ngx_str_t  ngx_voice_twiml_reject =
    ngx_string(NGX_VOICE_TWIML_REJECT);
static ngx_str_t  ngx_voice_twiml_hangup_only =
    ngx_string(NGX_VOICE_TWIML_HANGUP);

static ngx_voice_webhook_repeats_t  ngx_voice_webhook_retried =
    { NGX_LOG_INFO, "its stream is not open yet: the same TwiML", 0, 0 };

static ngx_voice_webhook_repeats_t  ngx_voice_webhook_answered =
    { NGX_LOG_WARN, "its stream was opened already: <Hangup/>", 0, 0 };


ngx_int_t
ngx_voice_webhook_handler(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "voice: webhook handler");

    rc = ngx_voice_webhook_read_form(r, ngx_voice_webhook_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        ngx_voice_metric_inc(webhooks[NGX_VOICE_WEBHOOK_BAD_REQUEST]);
    }

    return rc;
}


ngx_int_t
ngx_voice_webhook_read_form(ngx_http_request_t *r,
    ngx_http_client_body_handler_pt post)
{
    ngx_int_t                  rc;
    ngx_table_elt_t           *allow;
    ngx_http_core_loc_conf_t  *clcf;

    if (!(r->method & NGX_HTTP_POST)) {
        allow = ngx_list_push(&r->headers_out.headers);
        if (allow == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        allow->hash = 1;
        ngx_str_set(&allow->key, "Allow");
        ngx_str_set(&allow->value, "POST");

        return NGX_HTTP_NOT_ALLOWED;
    }

    if (!ngx_voice_webhook_is_form(r)) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "voice: webhook body is not "
                      "application/x-www-form-urlencoded");
        return NGX_HTTP_UNSUPPORTED_MEDIA_TYPE;
    }

    /*
     * The signature covers every byte of the body, so the body must fit
     * in memory: one that would spill into a temporary file is refused.
     */

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (r->headers_in.content_length_n
        > (off_t) clcf->client_body_buffer_size)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "voice: webhook body of %O bytes is larger than "
                      "client_body_buffer_size %uz",
                      r->headers_in.content_length_n,
                      clcf->client_body_buffer_size);
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    rc = ngx_http_read_client_request_body(r, post);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/* the media type, compared case-insensitively, parameters ignored */
static ngx_int_t
ngx_voice_webhook_is_form(ngx_http_request_t *r)
{
    u_char     *p, *end;
    ngx_str_t  *type;

    static u_char  form[] = "application/x-www-form-urlencoded";

    if (r->headers_in.content_type == NULL) {
        return 0;
    }

    type = &r->headers_in.content_type->value;

    end = ngx_strlchr(type->data, type->data + type->len, ';');
    if (end == NULL) {
        end = type->data + type->len;
    }

    while (end > type->data && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }

    p = type->data;

    return (size_t) (end - p) == sizeof(form) - 1
           && ngx_strncasecmp(p, form, sizeof(form) - 1) == 0;
}


static void
ngx_voice_webhook_body_handler(ngx_http_request_t *r)
{
    ngx_http_finalize_request(r, ngx_voice_webhook_process(r));
}


static ngx_int_t
ngx_voice_webhook_process(ngx_http_request_t *r)
{
    ngx_int_t              rc;
    ngx_str_t             *from, *sid;
    ngx_array_t            params;
    ngx_voice_loc_conf_t  *vlcf;

    vlcf = ngx_http_get_module_loc_conf(r, ngx_voice_module);

    rc = ngx_voice_webhook_signed_form(r, &params);
    if (rc != NGX_OK) {
        if (rc == NGX_HTTP_FORBIDDEN) {
            ngx_voice_metric_inc(webhooks[NGX_VOICE_WEBHOOK_BAD_SIGNATURE]);

        } else {
            ngx_voice_metric_inc(webhooks[NGX_VOICE_WEBHOOK_BAD_REQUEST]);
        }

        return rc;
    }

    sid = ngx_voice_form_get(&params, "CallSid");
    from = ngx_voice_form_get(&params, "From");

    if (!ngx_voice_webhook_caller_allowed(&vlcf->webhook, from)) {
        ngx_voice_metric_inc(webhooks[NGX_VOICE_WEBHOOK_REJECTED_CALLER]);

        /* log-safe: a CallSid of Twilio's exact shape, else "-" */
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "voice: caller is not in voice_allow_callers, "
                      "rejecting call %V", ngx_voice_loggable_sid(sid));

        return ngx_voice_webhook_send(r, &ngx_voice_twiml_reject);
    }

    return ngx_voice_webhook_mint(r, vlcf, &params);
}


/* the parameters of a signed request that names its call */
ngx_int_t
ngx_voice_webhook_signed_form(ngx_http_request_t *r, ngx_array_t *params)
{
    ngx_int_t              rc;
    ngx_str_t              body, *sid;
    ngx_voice_loc_conf_t  *vlcf;

    vlcf = ngx_http_get_module_loc_conf(r, ngx_voice_module);

    rc = ngx_voice_webhook_read_body(r, &body);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_voice_form_parse(r->pool, body.data, body.len, params)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_voice_webhook_verify(r, vlcf, params);
    if (rc != NGX_OK) {
        return rc;
    }

    sid = ngx_voice_form_get(params, "CallSid");

    if (sid == NULL || sid->len == 0) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "voice: webhook request has no CallSid");
        return NGX_HTTP_BAD_REQUEST;
    }

    if (ngx_voice_webhook_set_call_sid(r, sid) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_OK;
}


/* the whole body in one piece of memory */
static ngx_int_t
ngx_voice_webhook_read_body(ngx_http_request_t *r, ngx_str_t *body)
{
    u_char       *p;
    size_t        len;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    body->data = NULL;
    body->len = 0;

    if (r->request_body == NULL) {
        return NGX_OK;
    }

    if (r->request_body->temp_file) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "voice: webhook body was buffered to a temporary "
                      "file (client_body_buffer_size); it must fit in "
                      "memory to be signed");
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
        }

        len += b->last - b->pos;
    }

    if (len == 0) {
        return NGX_OK;
    }

    cl = r->request_body->bufs;

    if (cl->next == NULL) {
        body->data = cl->buf->pos;
        body->len = len;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    body->data = p;
    body->len = len;

    for ( /* void */ ; cl; cl = cl->next) {
        p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_voice_webhook_verify(ngx_http_request_t *r, ngx_voice_loc_conf_t *vlcf,
    ngx_array_t *params)
{
    u_char                    *p;
    ngx_int_t                  rc;
    ngx_str_t                 *sid, urls[2];
    ngx_uint_t                 i;
    ngx_table_elt_t           *h;
    ngx_voice_webhook_conf_t  *wcf;

    static ngx_str_t  header = ngx_string("X-Twilio-Signature");

    if (!vlcf->signature.enabled) {
        return NGX_OK;
    }

    sid = ngx_voice_loggable_sid(ngx_voice_form_get(params, "CallSid"));

    h = ngx_voice_find_header(r, &header);

    if (h == NULL) {
        /* log-safe: a CallSid of Twilio's exact shape, else "-" */
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "voice: webhook request has no X-Twilio-Signature, "
                      "call %V", sid);
        return NGX_HTTP_FORBIDDEN;
    }

    /* the signed URL is the public URL followed by the raw request URI */

    wcf = &vlcf->webhook;

    for (i = 0; i < wcf->nsig_prefixes; i++) {
        p = ngx_pnalloc(r->pool, wcf->sig_prefixes[i].len
                                 + r->unparsed_uri.len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        urls[i].data = p;
        p = ngx_cpymem(p, wcf->sig_prefixes[i].data,
                       wcf->sig_prefixes[i].len);
        p = ngx_cpymem(p, r->unparsed_uri.data, r->unparsed_uri.len);
        urls[i].len = p - urls[i].data;
    }

    rc = ngx_voice_signature_check(r->pool, &vlcf->signature.auth_token,
                                   urls, wcf->nsig_prefixes, params,
                                   &h->value);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        /* log-safe: a CallSid of Twilio's exact shape, else "-" */
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "voice: webhook X-Twilio-Signature does not match, "
                      "call %V", sid);
        return NGX_HTTP_FORBIDDEN;
    }

    return NGX_OK;
}


/* $voice_call_sid, once the signature checked out (or is off) */
static ngx_int_t
ngx_voice_webhook_set_call_sid(ngx_http_request_t *r, ngx_str_t *sid)
{
    ngx_voice_vars_t  *vars;

    vars = ngx_pcalloc(r->pool, sizeof(ngx_voice_vars_t));
    if (vars == NULL) {
        return NGX_ERROR;
    }

    vars->call_sid = *sid;

    ngx_http_set_ctx(r, vars, ngx_voice_module);

    return NGX_OK;
}


static ngx_int_t
ngx_voice_webhook_caller_allowed(ngx_voice_webhook_conf_t *wcf,
    ngx_str_t *from)
{
    ngx_str_t   *caller;
    ngx_uint_t   i;

    if (wcf->allow_callers == NULL) {
        return 1;
    }

    if (from == NULL || from->len == 0) {
        return 0;
    }

    caller = wcf->allow_callers->elts;

    for (i = 0; i < wcf->allow_callers->nelts; i++) {
        if (caller[i].len == from->len
            && ngx_memcmp(caller[i].data, from->data, from->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_voice_webhook_mint(ngx_http_request_t *r, ngx_voice_loc_conf_t *vlcf,
    ngx_array_t *params)
{
    ngx_int_t               rc;
    ngx_voice_token_op_t   *op;
    ngx_voice_main_conf_t  *vmcf;

    vmcf = ngx_http_get_module_main_conf(r, ngx_voice_module);

    op = ngx_pcalloc(r->pool, sizeof(ngx_voice_token_op_t));
    if (op == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    op->zone = vmcf->token_zone;
    op->pool = r->pool;
    op->log = r->connection->log;
    op->handler = ngx_voice_webhook_minted_handler;
    op->data = r;

    ngx_voice_webhook_info(&op->info, params);

    if (op->info.call_sid.len > NGX_VOICE_TOKEN_FIELD_MAX
        || op->info.account_sid.len > NGX_VOICE_TOKEN_FIELD_MAX
        || op->info.from.len > NGX_VOICE_TOKEN_FIELD_MAX
        || op->info.to.len > NGX_VOICE_TOKEN_FIELD_MAX)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "voice: webhook field longer than %d bytes",
                      NGX_VOICE_TOKEN_FIELD_MAX);
        return NGX_HTTP_BAD_REQUEST;
    }

    rc = ngx_voice_token_mint(op);

    if (rc == NGX_AGAIN) {
        /* a store that answers later calls the handler */
        r->main->count++;
        return NGX_DONE;
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_voice_webhook_minted(r, op);
}


static void
ngx_voice_webhook_minted_handler(ngx_voice_token_op_t *op)
{
    ngx_http_request_t  *r = op->data;

    ngx_http_finalize_request(r, ngx_voice_webhook_minted(r, op));
}


/* the TwiML answer once the store has the token */
static ngx_int_t
ngx_voice_webhook_minted(ngx_http_request_t *r, ngx_voice_token_op_t *op)
{
    u_char                    *p;
    ngx_str_t                  twiml, base, *host;
    ngx_voice_loc_conf_t      *vlcf;
    ngx_http_core_srv_conf_t  *cscf;

    switch (op->status) {

    case NGX_VOICE_TOKEN_OK:
        ngx_voice_metric_inc(webhooks[NGX_VOICE_WEBHOOK_OK]);
        /* log-safe: a CallSid of Twilio's exact shape, else "-" */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "voice: incoming call %V, stream token minted",
                      ngx_voice_loggable_sid(&op->info.call_sid));
        break;

    case NGX_VOICE_TOKEN_REPEAT:
        /* Twilio retried, or it is a replay: the same answer */
        ngx_voice_metric_inc(webhooks[NGX_VOICE_WEBHOOK_REPEAT]);
        ngx_voice_webhook_log_repeat(r, &ngx_voice_webhook_retried,
                                     &op->info.call_sid);
        break;

    case NGX_VOICE_TOKEN_USED:
        /* the call is answered already: <Reject/> no longer applies */
        ngx_voice_metric_inc(webhooks[NGX_VOICE_WEBHOOK_REPEAT]);
        ngx_voice_webhook_log_repeat(r, &ngx_voice_webhook_answered,
                                     &op->info.call_sid);
        return ngx_voice_webhook_send(r, &ngx_voice_twiml_hangup_only);

    default: /* NGX_VOICE_TOKEN_FULL */
        ngx_voice_metric_inc(webhooks[NGX_VOICE_WEBHOOK_ZONE_FULL]);
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    vlcf = ngx_http_get_module_loc_conf(r, ngx_voice_module);

    base = vlcf->webhook.stream_base;

    if (base.len == 0) {
        /* voice_signature off and no voice_public_url: $host */

        host = &r->headers_in.server;

        if (host->len == 0) {
            cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);
            host = &cscf->server_name;
        }

        p = ngx_pnalloc(r->pool, sizeof("wss:///media-stream") - 1
                                 + host->len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        base.data = p;
        p = ngx_cpymem(p, "wss://", 6);
        p = ngx_cpymem(p, host->data, host->len);
        p = ngx_cpymem(p, "/media-stream", sizeof("/media-stream") - 1);
        base.len = p - base.data;
    }

    if (ngx_voice_twiml_connect(r->pool, &vlcf->webhook.twiml, &base,
                                &op->token, &twiml)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_voice_webhook_send(r, &twiml);
}


static void
ngx_voice_webhook_info(ngx_voice_call_info_t *info, ngx_array_t *params)
{
    ngx_str_t  *v;

    static ngx_str_t  empty = ngx_null_string;

    v = ngx_voice_form_get(params, "CallSid");
    info->call_sid = v ? *v : empty;

    v = ngx_voice_form_get(params, "AccountSid");
    info->account_sid = v ? *v : empty;

    v = ngx_voice_form_get(params, "From");
    info->from = v ? *v : empty;

    v = ngx_voice_form_get(params, "To");
    info->to = v ? *v : empty;
}


static void
ngx_voice_webhook_log_repeat(ngx_http_request_t *r,
    ngx_voice_webhook_repeats_t *repeats, ngx_str_t *sid)
{
    repeats->count++;

    if (repeats->logged == ngx_time()) {
        return;
    }

    /* log-safe: a CallSid of Twilio's exact shape, else "-"; constant text */
    ngx_log_error(repeats->level, r->connection->log, 0,
                  "voice: webhook repeated for call %V, %s "
                  "(%ui such since the last line)",
                  ngx_voice_loggable_sid(sid), repeats->what,
                  repeats->count);

    repeats->logged = ngx_time();
    repeats->count = 0;
}


ngx_int_t
ngx_voice_webhook_send(ngx_http_request_t *r, ngx_str_t *twiml)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = twiml->len;
    ngx_str_set(&r->headers_out.content_type, "text/xml");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = twiml->data;
    b->last = twiml->data + twiml->len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


void
ngx_voice_webhook_create_conf(ngx_voice_webhook_conf_t *conf)
{
    /*
     * set by ngx_pcalloc():
     *
     *     conf->say = { 0, NULL };
     *     conf->fallback_say = { 0, NULL };
     *     conf->nsig_prefixes = 0;
     *     conf->stream_base = { 0, NULL };
     *     conf->twiml = { ... };
     */

    conf->allow_callers = NGX_CONF_UNSET_PTR;
    conf->transfer_time_limit = NGX_CONF_UNSET;
}


char *
ngx_voice_webhook_merge_conf(ngx_conf_t *cf, ngx_voice_webhook_conf_t *prev,
    ngx_voice_webhook_conf_t *conf)
{
    ngx_conf_merge_ptr_value(conf->allow_callers, prev->allow_callers, NULL);

    if (conf->say.data == NULL) {
        conf->say = prev->say;
    }

    if (conf->fallback_say.data == NULL) {
        conf->fallback_say = prev->fallback_say;
    }

    ngx_conf_merge_str_value(conf->action_path, prev->action_path, "");
    ngx_conf_merge_str_value(conf->transfer_say, prev->transfer_say, "");
    ngx_conf_merge_sec_value(conf->transfer_time_limit,
                             prev->transfer_time_limit, 0);

    return NGX_CONF_OK;
}


char *
ngx_voice_webhook_init_conf(ngx_conf_t *cf, ngx_voice_webhook_conf_t *conf,
    ngx_voice_signature_conf_t *scf)
{
    if (!scf->enabled) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"voice_signature\" is off: webhook requests "
                           "are not authenticated");
    }

    if (scf->public_url.data == NULL && scf->enabled) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_public_url\" is required while "
                           "\"voice_signature\" is on");
        return NGX_CONF_ERROR;
    }

    if (ngx_voice_webhook_sig_prefixes(cf, conf, scf) != NGX_OK
        || ngx_voice_webhook_stream_base(cf, conf, scf) != NGX_OK
        || ngx_voice_webhook_action_url(cf, conf, scf) != NGX_OK
        || ngx_voice_twiml_init(cf->pool, &conf->twiml, &conf->say,
                                &conf->fallback_say, &conf->action_url)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * Twilio's backend signs with the port or without it, so the URL is tried
 * as configured and with the port the other way.
 */
static ngx_int_t
ngx_voice_webhook_sig_prefixes(ngx_conf_t *cf, ngx_voice_webhook_conf_t *conf,
    ngx_voice_signature_conf_t *scf)
{
    u_char     *p;
    ngx_str_t   scheme, host, port, path;

    if (scf->public_url.data == NULL) {
        return NGX_OK;
    }

    (void) ngx_voice_parse_url(&scf->public_url, &scheme, &host, &port,
                               &path);

    conf->sig_prefixes[0] = scf->public_url;

    p = ngx_pnalloc(cf->pool, scf->public_url.len + sizeof(":443"));
    if (p == NULL) {
        return NGX_ERROR;
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

    return NGX_OK;
}


/* Twilio streams only to port 443, so no port is carried over */
static ngx_int_t
ngx_voice_webhook_stream_base(ngx_conf_t *cf, ngx_voice_webhook_conf_t *conf,
    ngx_voice_signature_conf_t *scf)
{
    u_char  *p;

    if (scf->stream_url.data) {
        conf->stream_base = scf->stream_url;
        return NGX_OK;
    }

    if (scf->public_host.data == NULL) {
        /* voice_signature off: $host, per request */
        return NGX_OK;
    }

    p = ngx_pnalloc(cf->pool, sizeof("wss:///media-stream") - 1
                              + scf->public_host.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    conf->stream_base.data = p;
    p = ngx_cpymem(p, "wss://", 6);
    p = ngx_cpymem(p, scf->public_host.data, scf->public_host.len);
    p = ngx_cpymem(p, "/media-stream", sizeof("/media-stream") - 1);
    conf->stream_base.len = p - conf->stream_base.data;

    return NGX_OK;
}


/*
 * The URL Twilio requests when <Connect> ends: the public URL and the
 * path, so that its signature matches; a path alone (relative to the
 * webhook's URL) when there is no public URL.
 */
static ngx_int_t
ngx_voice_webhook_action_url(ngx_conf_t *cf, ngx_voice_webhook_conf_t *conf,
    ngx_voice_signature_conf_t *scf)
{
    u_char  *p;

    if (conf->action_path.len == 0 || scf->public_url.data == NULL) {
        conf->action_url = conf->action_path;
        return NGX_OK;
    }

    p = ngx_pnalloc(cf->pool, scf->public_url.len + conf->action_path.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    conf->action_url.data = p;
    p = ngx_cpymem(p, scf->public_url.data, scf->public_url.len);
    p = ngx_cpymem(p, conf->action_path.data, conf->action_path.len);
    conf->action_url.len = p - conf->action_url.data;

    return NGX_OK;
}


char *
ngx_voice_webhook_set_action_url(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_voice_webhook_conf_t  *wcf;

    u_char     *p;
    ngx_str_t  *value;

    wcf = (ngx_voice_webhook_conf_t *) ((u_char *) conf + cmd->offset);

    if (wcf->action_path.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (p = value[1].data; p < value[1].data + value[1].len; p++) {
        if (*p <= 0x20 || *p >= 0x7f || *p == '?' || *p == '#'
            || *p == '"' || *p == '<' || *p == '>')
        {
            break;
        }
    }

    if (value[1].len == 0 || value[1].data[0] != '/'
        || p != value[1].data + value[1].len)
    {
        /* log-safe: configuration text */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"voice_call_action_url\" \"%V\": a "
                           "path such as /call-action expected", &value[1]);
        return NGX_CONF_ERROR;
    }

    wcf->action_path = value[1];

    return NGX_CONF_OK;
}


char *
ngx_voice_webhook_set_allow_callers(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_voice_webhook_conf_t  *wcf;

    ngx_str_t   *value, *caller;
    ngx_uint_t   i;

    wcf = (ngx_voice_webhook_conf_t *) ((u_char *) conf + cmd->offset);

    if (wcf->allow_callers == NGX_CONF_UNSET_PTR) {
        wcf->allow_callers = ngx_array_create(cf->pool, 4,
                                              sizeof(ngx_str_t));
        if (wcf->allow_callers == NULL) {
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

        caller = ngx_array_push(wcf->allow_callers);
        if (caller == NULL) {
            return NGX_CONF_ERROR;
        }

        *caller = value[i];
    }

    return NGX_CONF_OK;
}
