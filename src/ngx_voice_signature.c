
/*
 * Copyright (C) ngx_voice authors
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
