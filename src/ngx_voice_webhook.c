
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
#include "ngx_voice_signature.h"
#include "ngx_voice_token.h"
#include "ngx_voice_twiml.h"


static ngx_int_t ngx_voice_webhook_is_form(ngx_http_request_t *r);
static void ngx_voice_webhook_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_voice_webhook_process(ngx_http_request_t *r);
static ngx_int_t ngx_voice_webhook_read_body(ngx_http_request_t *r,
    ngx_str_t *body);
static ngx_int_t ngx_voice_webhook_verify(ngx_http_request_t *r,
    ngx_voice_loc_conf_t *vlcf, ngx_array_t *params);
static ngx_int_t ngx_voice_webhook_caller_allowed(ngx_voice_loc_conf_t *vlcf,
    ngx_str_t *from);
static ngx_int_t ngx_voice_webhook_mint(ngx_http_request_t *r,
    ngx_voice_loc_conf_t *vlcf, ngx_array_t *params);
static void ngx_voice_webhook_minted_handler(ngx_voice_token_op_t *op);
static ngx_int_t ngx_voice_webhook_minted(ngx_http_request_t *r,
    ngx_voice_token_op_t *op);
static void ngx_voice_webhook_info(ngx_voice_call_info_t *info,
    ngx_array_t *params);
static ngx_int_t ngx_voice_webhook_send(ngx_http_request_t *r,
    ngx_str_t *twiml);


static ngx_str_t  ngx_voice_twiml_reject =
    ngx_string(NGX_VOICE_TWIML_REJECT);


ngx_int_t
ngx_voice_webhook_handler(ngx_http_request_t *r)
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

    rc = ngx_http_read_client_request_body(r, ngx_voice_webhook_body_handler);

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
    ngx_str_t              body, *from, *sid;
    ngx_array_t            params;
    ngx_voice_loc_conf_t  *vlcf;

    vlcf = ngx_http_get_module_loc_conf(r, ngx_voice_module);

    rc = ngx_voice_webhook_read_body(r, &body);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_voice_form_parse(r->pool, body.data, body.len, &params)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_voice_webhook_verify(r, vlcf, &params);
    if (rc != NGX_OK) {
        return rc;
    }

    sid = ngx_voice_form_get(&params, "CallSid");

    if (sid == NULL || sid->len == 0) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "voice: webhook request has no CallSid");
        return NGX_HTTP_BAD_REQUEST;
    }

    from = ngx_voice_form_get(&params, "From");

    if (!ngx_voice_webhook_caller_allowed(vlcf, from)) {
        /* log-safe: ngx_voice_loggable_sid(): Twilio's shape or "-" */
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "voice: caller is not in voice_allow_callers, "
                      "rejecting call %V", ngx_voice_loggable_sid(sid));

        return ngx_voice_webhook_send(r, &ngx_voice_twiml_reject);
    }

    return ngx_voice_webhook_mint(r, vlcf, &params);
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
    u_char           *p;
    ngx_int_t         rc;
    ngx_str_t        *sid, urls[2];
    ngx_uint_t        i;
    ngx_table_elt_t  *h;

    static ngx_str_t  header = ngx_string("X-Twilio-Signature");

    if (!vlcf->signature) {
        return NGX_OK;
    }

    sid = ngx_voice_loggable_sid(ngx_voice_form_get(params, "CallSid"));

    h = ngx_voice_find_header(r, &header);

    if (h == NULL) {
        /* log-safe: sid is ngx_voice_loggable_sid()'s */
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "voice: webhook request has no X-Twilio-Signature, "
                      "call %V", sid);
        return NGX_HTTP_FORBIDDEN;
    }

    /* the signed URL is the public URL followed by the raw request URI */

    for (i = 0; i < vlcf->nsig_prefixes; i++) {
        p = ngx_pnalloc(r->pool, vlcf->sig_prefixes[i].len
                                 + r->unparsed_uri.len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        urls[i].data = p;
        p = ngx_cpymem(p, vlcf->sig_prefixes[i].data,
                       vlcf->sig_prefixes[i].len);
        p = ngx_cpymem(p, r->unparsed_uri.data, r->unparsed_uri.len);
        urls[i].len = p - urls[i].data;
    }

    rc = ngx_voice_signature_check(r->pool, &vlcf->auth_token, urls,
                                   vlcf->nsig_prefixes, params, &h->value);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        /* log-safe: sid is ngx_voice_loggable_sid()'s */
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "voice: webhook X-Twilio-Signature does not match, "
                      "call %V", sid);
        return NGX_HTTP_FORBIDDEN;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_voice_webhook_caller_allowed(ngx_voice_loc_conf_t *vlcf, ngx_str_t *from)
{
    ngx_str_t   *caller;
    ngx_uint_t   i;

    if (vlcf->allow_callers == NULL) {
        return 1;
    }

    if (from == NULL || from->len == 0) {
        return 0;
    }

    caller = vlcf->allow_callers->elts;

    for (i = 0; i < vlcf->allow_callers->nelts; i++) {
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

    if (op->status != NGX_VOICE_TOKEN_OK) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    vlcf = ngx_http_get_module_loc_conf(r, ngx_voice_module);

    base = vlcf->stream_base;

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

    if (ngx_voice_twiml_connect(r->pool, &vlcf->twiml, &base, &op->token,
                                &twiml)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* log-safe: ngx_voice_loggable_sid(): Twilio's shape or "-" */
    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "voice: incoming call %V, stream token minted",
                  ngx_voice_loggable_sid(&op->info.call_sid));

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


static ngx_int_t
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
