
/*
 * Copyright (C) ngx_voice authors
 *
 * X-Twilio-Signature: form bodies parsed as Twilio's libraries parse them,
 * HMAC-SHA1 over the URL variants Twilio's backend signs, and the
 * directives that say what that URL is.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include "ngx_voice_signature.h"


static size_t ngx_voice_form_decode(u_char *dst, u_char *src, size_t len);
static ngx_int_t ngx_voice_is_hex(u_char c);
static int ngx_libc_cdecl ngx_voice_param_cmp(const void *one,
    const void *two);
static ngx_int_t ngx_voice_params_equal(ngx_voice_param_t *a,
    ngx_voice_param_t *b);


ngx_int_t
ngx_voice_form_parse(ngx_pool_t *pool, u_char *body, size_t len,
    ngx_array_t *params)
{
    u_char             *p, *end, *amp, *eq, *dst;
    ngx_voice_param_t  *param;

    if (ngx_array_init(params, pool, 16, sizeof(ngx_voice_param_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (len == 0) {
        return NGX_OK;
    }

    /* decoding only shrinks, so one copy of the body holds every string */

    dst = ngx_pnalloc(pool, len);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    p = body;
    end = body + len;

    while (p < end) {

        amp = ngx_strlchr(p, end, '&');
        if (amp == NULL) {
            amp = end;
        }

        if (amp == p) {
            p++;
            continue;
        }

        eq = ngx_strlchr(p, amp, '=');
        if (eq == NULL) {
            eq = amp;
        }

        param = ngx_array_push(params);
        if (param == NULL) {
            return NGX_ERROR;
        }

        param->name.data = dst;
        param->name.len = ngx_voice_form_decode(dst, p, eq - p);
        dst += param->name.len;

        param->value.data = dst;
        param->value.len = (eq < amp)
                           ? ngx_voice_form_decode(dst, eq + 1, amp - eq - 1)
                           : 0;
        dst += param->value.len;

        p = amp + 1;
    }

    return NGX_OK;
}


ngx_str_t *
ngx_voice_form_get(ngx_array_t *params, const char *name)
{
    size_t              len;
    ngx_uint_t          i;
    ngx_voice_param_t  *param;

    len = ngx_strlen(name);
    param = params->elts;

    for (i = 0; i < params->nelts; i++) {
        if (param[i].name.len == len
            && ngx_strncmp(param[i].name.data, name, len) == 0)
        {
            return &param[i].value;
        }
    }

    return NULL;
}


ngx_int_t
ngx_voice_signature_check(ngx_pool_t *pool, ngx_str_t *key, ngx_str_t *urls,
    ngx_uint_t nurls, ngx_array_t *params, ngx_str_t *signature)
{
    u_char             *buf, *p, *msg;
    size_t              max_url, suffix;
    ngx_int_t           rc;
    ngx_str_t           digest, encoded;
    ngx_uint_t          i, n;
    unsigned int        md_len;
    ngx_voice_param_t  *param, *sorted;
    u_char              md[EVP_MAX_MD_SIZE];
    u_char              b64[NGX_VOICE_SIGNATURE_LEN];

    if (signature->len != NGX_VOICE_SIGNATURE_LEN) {
        return NGX_DECLINED;
    }

    max_url = 0;

    for (i = 0; i < nurls; i++) {
        max_url = ngx_max(max_url, urls[i].len);
    }

    /* params sorted by name, then value, with duplicates dropped */

    n = params ? params->nelts : 0;
    suffix = 0;
    sorted = NULL;

    if (n) {
        sorted = ngx_palloc(pool, n * sizeof(ngx_voice_param_t));
        if (sorted == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(sorted, params->elts, n * sizeof(ngx_voice_param_t));
        ngx_qsort(sorted, n, sizeof(ngx_voice_param_t), ngx_voice_param_cmp);

        for (i = 0; i < n; i++) {
            suffix += sorted[i].name.len + sorted[i].value.len;
        }
    }

    /*
     * The URL variants differ only in front, so the shared suffix is laid
     * out once and each URL is copied to end right where it starts.
     */

    buf = ngx_pnalloc(pool, max_url + suffix);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    p = buf + max_url;
    param = sorted;

    for (i = 0; i < n; i++) {
        if (i > 0 && ngx_voice_params_equal(&param[i], &param[i - 1])) {
            continue;
        }

        p = ngx_cpymem(p, param[i].name.data, param[i].name.len);
        p = ngx_cpymem(p, param[i].value.data, param[i].value.len);
    }

    suffix = p - (buf + max_url);

    rc = NGX_DECLINED;

    for (i = 0; i < nurls; i++) {
        msg = buf + max_url - urls[i].len;
        ngx_memcpy(msg, urls[i].data, urls[i].len);

        if (HMAC(EVP_sha1(), key->data, (int) key->len, msg,
                 urls[i].len + suffix, md, &md_len)
            == NULL)
        {
            return NGX_ERROR;
        }

        digest.data = md;
        digest.len = md_len;
        encoded.data = b64;
        ngx_encode_base64(&encoded, &digest);

        if (encoded.len == NGX_VOICE_SIGNATURE_LEN
            && CRYPTO_memcmp(encoded.data, signature->data,
                             NGX_VOICE_SIGNATURE_LEN) == 0)
        {
            rc = NGX_OK;
        }
    }

    ngx_explicit_memzero(md, sizeof(md));

    return rc;
}


static size_t
ngx_voice_form_decode(u_char *dst, u_char *src, size_t len)
{
    u_char  *d, *end, c, hi, lo;

    d = dst;
    end = src + len;

    while (src < end) {
        c = *src++;

        if (c == '+') {
            *d++ = ' ';
            continue;
        }

        if (c == '%' && end - src >= 2) {
            hi = src[0];
            lo = src[1];

            if (ngx_voice_is_hex(hi) && ngx_voice_is_hex(lo)) {
                hi = (hi >= 'a') ? hi - 'a' + 10
                     : (hi >= 'A') ? hi - 'A' + 10 : hi - '0';
                lo = (lo >= 'a') ? lo - 'a' + 10
                     : (lo >= 'A') ? lo - 'A' + 10 : lo - '0';
                *d++ = (u_char) ((hi << 4) | lo);
                src += 2;
                continue;
            }
        }

        *d++ = c;
    }

    return d - dst;
}


/* not isxdigit(): no locale may change what a form escape is */
static ngx_int_t
ngx_voice_is_hex(u_char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
           || (c >= 'A' && c <= 'F');
}


static int ngx_libc_cdecl
ngx_voice_param_cmp(const void *one, const void *two)
{
    ngx_int_t                 rc;
    const ngx_voice_param_t  *a = one, *b = two;

    rc = ngx_memn2cmp(a->name.data, b->name.data, a->name.len, b->name.len);

    if (rc != 0) {
        return (int) rc;
    }

    return (int) ngx_memn2cmp(a->value.data, b->value.data,
                              a->value.len, b->value.len);
}


static ngx_int_t
ngx_voice_params_equal(ngx_voice_param_t *a, ngx_voice_param_t *b)
{
    return a->name.len == b->name.len
           && a->value.len == b->value.len
           && ngx_memcmp(a->name.data, b->name.data, a->name.len) == 0
           && ngx_memcmp(a->value.data, b->value.data, a->value.len) == 0;
}


void
ngx_voice_signature_create_conf(ngx_voice_signature_conf_t *conf)
{
    /*
     * set by ngx_pcalloc():
     *
     *     conf->auth_token = { 0, NULL };
     *     conf->public_url = { 0, NULL };
     *     conf->public_host = { 0, NULL };
     *     conf->stream_url = { 0, NULL };
     *     conf->stream_host = { 0, NULL };
     *     conf->stream_sig_host = { 0, NULL };
     */

    conf->enabled = NGX_CONF_UNSET;
}


char *
ngx_voice_signature_merge_conf(ngx_conf_t *cf,
    ngx_voice_signature_conf_t *prev, ngx_voice_signature_conf_t *conf)
{
    ngx_conf_merge_value(conf->enabled, prev->enabled, 1);
    ngx_conf_merge_str_value(conf->auth_token, prev->auth_token, "");

    if (conf->public_url.data == NULL) {
        conf->public_url = prev->public_url;
        conf->public_host = prev->public_host;
    }

    if (conf->stream_url.data == NULL) {
        conf->stream_url = prev->stream_url;
        conf->stream_host = prev->stream_host;
    }

    /* derived here, never inherited: an inner voice_public_url counts */
    conf->stream_sig_host = conf->stream_host.data ? conf->stream_host
                                                   : conf->public_host;

    return NGX_CONF_OK;
}


char *
ngx_voice_signature_set_public_url(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_voice_signature_conf_t  *scf;

    ngx_str_t  *value, scheme, host, port, path;

    scf = (ngx_voice_signature_conf_t *) ((u_char *) conf + cmd->offset);

    if (scf->public_url.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_voice_parse_url(&value[1], &scheme, &host, &port, &path)
        != NGX_OK
        || !((scheme.len == 5 && ngx_strncmp(scheme.data, "https", 5) == 0)
             || (scheme.len == 4 && ngx_strncmp(scheme.data, "http", 4) == 0)))
    {
        /* log-safe: configuration text */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"voice_public_url\" \"%V\": "
                           "http(s)://host[:port] expected", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (path.len > 1 || (path.len == 1 && path.data[0] != '/')) {
        /* log-safe: configuration text */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_public_url\" \"%V\" must not have a "
                           "path: the request URI is appended to it",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    /* a lone trailing "/" would double the request URI's own */

    scf->public_url.data = value[1].data;
    scf->public_url.len = value[1].len - path.len;
    scf->public_host = host;

    return NGX_CONF_OK;
}


char *
ngx_voice_signature_set_stream_url(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_voice_signature_conf_t  *scf;

    ngx_str_t  *value, scheme, host, port, path;

    scf = (ngx_voice_signature_conf_t *) ((u_char *) conf + cmd->offset);

    if (scf->stream_url.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_voice_parse_url(&value[1], &scheme, &host, &port, &path)
        != NGX_OK
        || scheme.len != 3 || ngx_strncmp(scheme.data, "wss", 3) != 0)
    {
        /* log-safe: configuration text */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"voice_stream_url\" \"%V\": "
                           "wss://host[/path] expected", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (ngx_strlchr(path.data, path.data + path.len, '?')
        || ngx_strlchr(path.data, path.data + path.len, '#'))
    {
        /* log-safe: configuration text */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_stream_url\" \"%V\" must not have a "
                           "query string: Twilio drops it", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (port.len && !(port.len == 3 && ngx_strncmp(port.data, "443", 3) == 0))
    {
        /* log-safe: configuration text */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_stream_url\" \"%V\" must not have a "
                           "port other than 443: Twilio streams only to "
                           "port 443", &value[1]);
        return NGX_CONF_ERROR;
    }

    scf->stream_url = value[1];
    scf->stream_host = host;

    return NGX_CONF_OK;
}


ngx_int_t
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
