
/*
 * Copyright (C) ngx_voice authors
 *
 * GET /media-stream/TOKEN: Twilio's Media Stream WebSocket upgrade.
 * Everything is checked before "101 Switching Protocols", cheapest first,
 * so a malformed request never uses up a token: the request itself, the
 * path (the location's prefix and a token), X-Twilio-Signature, then the
 * single-use token.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice.h"
#include "ngx_voice_call.h"
#include "ngx_voice_media_stream.h"
#include "ngx_voice_metrics.h"
#include "ngx_voice_signature.h"
#include "ngx_voice_token.h"
#include "ngx_voice_util.h"


/* nginx has no stock page for 426, so the answer is made here */
#define NGX_VOICE_UPGRADE_REQUIRED  426


static ngx_int_t ngx_voice_media_redact(ngx_http_request_t *r);
static ngx_int_t ngx_voice_media_check_request(ngx_http_request_t *r);
static ngx_int_t ngx_voice_media_key_valid(ngx_str_t *key);
static ngx_int_t ngx_voice_media_check_signature(ngx_http_request_t *r,
    ngx_voice_loc_conf_t *vlcf);
static ngx_int_t ngx_voice_media_check_path(ngx_http_request_t *r,
    ngx_str_t *token);
static ngx_int_t ngx_voice_media_check_token(ngx_http_request_t *r,
    ngx_voice_token_op_t *op);
static void ngx_voice_media_token_handler(ngx_voice_token_op_t *op);
static ngx_int_t ngx_voice_media_token_result(ngx_http_request_t *r,
    ngx_voice_token_op_t *op);
static ngx_int_t ngx_voice_media_upgrade_required(ngx_http_request_t *r);
static ngx_int_t ngx_voice_media_accept(ngx_http_request_t *r,
    ngx_voice_token_op_t *op);
static ngx_int_t ngx_voice_media_add_header(ngx_http_request_t *r,
    const char *key, ngx_str_t *value);


static ngx_str_t  ngx_voice_upgrade = ngx_string("Upgrade");
static ngx_str_t  ngx_voice_connection = ngx_string("Connection");
static ngx_str_t  ngx_voice_ws_key = ngx_string("Sec-WebSocket-Key");
static ngx_str_t  ngx_voice_ws_version = ngx_string("Sec-WebSocket-Version");
static ngx_str_t  ngx_voice_twilio_signature =
    ngx_string("X-Twilio-Signature");


ngx_int_t
ngx_voice_media_stream_handler(ngx_http_request_t *r)
{
    ngx_int_t              rc;
    ngx_voice_token_op_t  *op;
    ngx_voice_loc_conf_t  *vlcf;

    if (ngx_voice_media_redact(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* after the redaction: no debug line shows the token */
    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "voice: media stream handler");

    rc = ngx_voice_media_check_request(r);

    if (rc != NGX_OK) {
        ngx_voice_metric_inc(upgrades[NGX_VOICE_UPGRADE_BAD_REQUEST]);

        return (rc == NGX_VOICE_UPGRADE_REQUIRED)
               ? ngx_voice_media_upgrade_required(r) : rc;
    }

    op = ngx_pcalloc(r->pool, sizeof(ngx_voice_token_op_t));
    if (op == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_voice_media_check_path(r, &op->token);
    if (rc != NGX_OK) {
        ngx_voice_metric_inc(upgrades[NGX_VOICE_UPGRADE_BAD_TOKEN]);
        return rc;
    }

    vlcf = ngx_http_get_module_loc_conf(r, ngx_voice_module);

    rc = ngx_voice_media_check_signature(r, vlcf);
    if (rc != NGX_OK) {
        ngx_voice_metric_inc(upgrades[NGX_VOICE_UPGRADE_BAD_SIGNATURE]);
        return rc;
    }

    op->handler = ngx_voice_media_token_handler;
    op->data = r;

    rc = ngx_voice_media_check_token(r, op);

    if (rc == NGX_AGAIN) {
        /* a store that answers later calls the handler */
        r->main->count++;
        return NGX_DONE;
    }

    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_voice_media_accept(r, op);
}


static void
ngx_voice_media_token_handler(ngx_voice_token_op_t *op)
{
    ngx_int_t            rc;
    ngx_http_request_t  *r = op->data;

    rc = ngx_voice_media_token_result(r, op);

    if (rc == NGX_OK) {
        rc = ngx_voice_media_accept(r, op);
    }

    ngx_http_finalize_request(r, rc);
}


/* (1) a WebSocket upgrade request as RFC 6455 and Twilio make it */
static ngx_int_t
ngx_voice_media_check_request(ngx_http_request_t *r)
{
    ngx_table_elt_t   *h, *allow, *version;
    ngx_connection_t  *c;

    c = r->connection;

    if (r != r->main || r->http_version != NGX_HTTP_VERSION_11) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "voice: media stream upgrade needs HTTP/1.1");
        return NGX_HTTP_BAD_REQUEST;
    }

    if (r->method != NGX_HTTP_GET) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "voice: media stream upgrade must be a GET");

        allow = ngx_list_push(&r->headers_out.headers);
        if (allow == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        allow->hash = 1;
        ngx_str_set(&allow->key, "Allow");
        ngx_str_set(&allow->value, "GET");

        return NGX_HTTP_NOT_ALLOWED;
    }

    /* nginx keeps neither header in r->headers_in for HTTP/1.1 */

    h = ngx_voice_find_header(r, &ngx_voice_upgrade);

    if (h == NULL
        || h->value.len != sizeof("websocket") - 1
        || ngx_strncasecmp(h->value.data, (u_char *) "websocket",
                           sizeof("websocket") - 1) != 0
        || ngx_voice_header_with_token(r, &ngx_voice_connection, "upgrade")
           == NULL)
    {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "voice: media stream request is not a WebSocket "
                      "upgrade");
        return NGX_HTTP_BAD_REQUEST;
    }

    if (r->headers_in.content_length_n > 0 || r->headers_in.chunked) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "voice: media stream upgrade has a body");
        return NGX_HTTP_BAD_REQUEST;
    }

    h = ngx_voice_find_header(r, &ngx_voice_ws_key);

    if (h == NULL || !ngx_voice_media_key_valid(&h->value)) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "voice: media stream upgrade has no valid "
                      "Sec-WebSocket-Key");
        return NGX_HTTP_BAD_REQUEST;
    }

    h = ngx_voice_find_header(r, &ngx_voice_ws_version);

    if (h == NULL || h->value.len != 2
        || ngx_strncmp(h->value.data, "13", 2) != 0)
    {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "voice: media stream upgrade has an unsupported "
                      "Sec-WebSocket-Version");

        version = ngx_list_push(&r->headers_out.headers);
        if (version == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        version->hash = 1;
        ngx_str_set(&version->key, "Sec-WebSocket-Version");
        ngx_str_set(&version->value, "13");

        return NGX_VOICE_UPGRADE_REQUIRED;
    }

    /* Twilio drops query strings from Stream URLs: one is never Twilio */

    if (r->args.len || ngx_strlchr(r->unparsed_uri.data,
                                   r->unparsed_uri.data + r->unparsed_uri.len,
                                   '?'))
    {
        ngx_log_error(NGX_LOG_WARN, c->log, 0,
                      "voice: media stream upgrade rejected: "
                      "query string in the request");
        return NGX_HTTP_FORBIDDEN;
    }

    return NGX_OK;
}


/*
 * (2) Twilio signs "wss://" + the public host + the path, with no
 * parameters; its backend is inconsistent about the trailing slash and
 * the port, so {as is, "/" toggled} x {no port, ":443"} are tried.
 */
static ngx_int_t
ngx_voice_media_check_signature(ngx_http_request_t *r,
    ngx_voice_loc_conf_t *vlcf)
{
    u_char           *p;
    size_t            len, plen;
    ngx_int_t         rc;
    ngx_str_t         urls[4], *path, *host;
    ngx_uint_t        i, port, slash;
    ngx_table_elt_t  *h;

    if (!vlcf->signature.enabled) {
        return NGX_OK;
    }

    h = ngx_voice_find_header(r, &ngx_voice_twilio_signature);

    if (h == NULL) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "voice: media stream upgrade rejected: "
                      "no X-Twilio-Signature");
        return NGX_HTTP_FORBIDDEN;
    }

    path = &r->unparsed_uri;
    plen = path->len;

    if (plen > 1 && path->data[plen - 1] == '/') {
        plen--;
    }

    host = &vlcf->signature.stream_sig_host;
    len = sizeof("wss://:443/") - 1 + host->len + plen;

    for (i = 0; i < 4; i++) {
        port = i & 1;
        slash = i >> 1;

        p = ngx_pnalloc(r->pool, len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        urls[i].data = p;
        p = ngx_cpymem(p, "wss://", 6);
        p = ngx_cpymem(p, host->data, host->len);

        if (port) {
            p = ngx_cpymem(p, ":443", 4);
        }

        p = ngx_cpymem(p, path->data, plen);

        if (slash) {
            *p++ = '/';
        }

        urls[i].len = p - urls[i].data;
    }

    rc = ngx_voice_signature_check(r->pool, &vlcf->signature.auth_token,
                                   urls, 4, NULL, &h->value);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "voice: media stream upgrade rejected: "
                      "X-Twilio-Signature does not match");
        return NGX_HTTP_FORBIDDEN;
    }

    return NGX_OK;
}


/*
 * The path is the location's prefix followed by a token, and at most one
 * "/": anything else is refused before any lookup.
 */
static ngx_int_t
ngx_voice_media_check_path(ngx_http_request_t *r, ngx_str_t *token)
{
    ngx_str_t                  prefix;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    prefix = clcf->name;

#if (NGX_PCRE)
    if (clcf->regex) {
        prefix.len = 0;
    }
#endif

    if (clcf->exact_match) {
        prefix.len = 0;
    }

    if (ngx_voice_token_from_path(&prefix, &r->unparsed_uri, token)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "voice: media stream upgrade rejected: the path is "
                      "not the location's prefix followed by a token");
        return NGX_HTTP_FORBIDDEN;
    }

    return NGX_OK;
}


/* (3) the token, consumed once */
static ngx_int_t
ngx_voice_media_check_token(ngx_http_request_t *r, ngx_voice_token_op_t *op)
{
    ngx_int_t               rc;
    ngx_voice_loc_conf_t   *vlcf;
    ngx_voice_main_conf_t  *vmcf;

    vmcf = ngx_http_get_module_main_conf(r, ngx_voice_module);

    op->zone = vmcf->token_zone;
    op->pool = r->pool;
    op->log = r->connection->log;

    /* the longest the call's record is kept as running: a lost call */
    vlcf = ngx_http_get_module_loc_conf(r, ngx_voice_module);
    op->live_ms = vlcf->call.max_call_duration + 60000;

    rc = ngx_voice_token_consume(op);

    if (rc == NGX_AGAIN) {
        return NGX_AGAIN;
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_voice_media_token_result(r, op);
}


static ngx_int_t
ngx_voice_media_token_result(ngx_http_request_t *r, ngx_voice_token_op_t *op)
{
    if (op->status != NGX_VOICE_TOKEN_OK) {
        /* log-safe: constant text */
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "voice: media stream upgrade rejected: token %s",
                      ngx_voice_token_status_text(op->status));
        ngx_voice_metric_inc(upgrades[NGX_VOICE_UPGRADE_BAD_TOKEN]);
        return NGX_HTTP_FORBIDDEN;
    }

    ngx_voice_metric_inc(upgrades[NGX_VOICE_UPGRADE_OK]);

    /* log-safe: a CallSid of Twilio's exact shape, else "-" */
    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "voice: media stream accepted for call %V",
                  ngx_voice_loggable_sid(&op->info.call_sid));

    return NGX_OK;
}


/*
 * The token is a credential until it is used: the request line, which
 * nginx puts into every log line of the request and $request, keeps only
 * the first characters of anything token-shaped.
 */
static ngx_int_t
ngx_voice_media_redact(ngx_http_request_t *r)
{
    u_char  *line;

    if (r->request_line.len == 0) {
        return NGX_OK;
    }

    line = ngx_pnalloc(r->pool, r->request_line.len);
    if (line == NULL) {
        return NGX_ERROR;
    }

    r->request_line.len = ngx_voice_token_redact(line, r->request_line.data,
                                                 r->request_line.len);
    r->request_line.data = line;

    return NGX_OK;
}


/* RFC 6455 4.2.1: the key is the base64 of 16 bytes */
static ngx_int_t
ngx_voice_media_key_valid(ngx_str_t *key)
{
    ngx_str_t  decoded;
    u_char     buf[NGX_VOICE_WS_KEY_LEN];

    if (key->len != NGX_VOICE_WS_KEY_LEN
        || key->data[22] != '=' || key->data[23] != '=')
    {
        return 0;
    }

    decoded.data = buf;

    if (ngx_decode_base64(&decoded, key) != NGX_OK) {
        return 0;
    }

    return decoded.len == 16;
}


static ngx_int_t
ngx_voice_media_upgrade_required(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    static ngx_str_t  websocket = ngx_string("websocket");
    static ngx_str_t  upgrade = ngx_string("upgrade");

    /*
     * RFC 9110 15.5.22 and 7.8: a 426 names the protocol to upgrade to,
     * with the "upgrade" connection option beside it
     */
    if (ngx_voice_media_add_header(r, "Upgrade", &websocket) != NGX_OK
        || ngx_voice_media_add_header(r, "Connection", &upgrade) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->keepalive = 0;
    r->headers_out.status = NGX_VOICE_UPGRADE_REQUIRED;
    ngx_str_set(&r->headers_out.status_line, "426 Upgrade Required");
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    return ngx_http_send_special(r, NGX_HTTP_LAST);
}


static ngx_int_t
ngx_voice_media_accept(ngx_http_request_t *r, ngx_voice_token_op_t *op)
{
    ngx_int_t         rc;
    ngx_str_t         accept;
    ngx_table_elt_t  *key;

    static ngx_str_t  websocket = ngx_string("websocket");

    key = ngx_voice_find_header(r, &ngx_voice_ws_key);

    accept.data = ngx_pnalloc(r->pool, NGX_VOICE_WS_ACCEPT_LEN);
    if (accept.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_voice_ws_accept(key->value.data, key->value.len, accept.data);
    accept.len = NGX_VOICE_WS_ACCEPT_LEN;

    if (ngx_voice_media_add_header(r, "Upgrade", &websocket) != NGX_OK
        || ngx_voice_media_add_header(r, "Sec-WebSocket-Accept", &accept)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS;
    ngx_str_set(&r->headers_out.status_line, "101 Switching Protocols");
    r->headers_out.content_length_n = -1;
    r->keepalive = 0;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    return ngx_voice_call_start(r, &op->info);
}


static ngx_int_t
ngx_voice_media_add_header(ngx_http_request_t *r, const char *key,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value = *value;

    return NGX_OK;
}
