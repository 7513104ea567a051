
/*
 * Copyright (C) ngx_voice authors
 *
 * The media stream's path: the token in it, and the request line with
 * tokens cut out for the log.  The input is a location prefix, a NUL and
 * a path (without a NUL, the path, under "/media-stream/").
 * ngx_voice_token_from_path() must accept exactly the paths that are the
 * prefix, a "/" when the prefix has none at its end, 43 base64url
 * characters and at most one "/" (any path whose last segment is a token,
 * for an empty prefix), and give those 43 characters.
 * ngx_voice_token_redact() must write what a plain rewrite writes: no
 * run of 43 base64url characters is left, and nothing grows.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_voice_token.h"
#include "ngx_voice_fuzz.h"


static ngx_uint_t ngx_voice_fuzz_token_char(u_char c);
static ngx_uint_t ngx_voice_fuzz_is_token(const u_char *p);
static size_t ngx_voice_fuzz_token_at(const u_char *prefix, size_t plen,
    const u_char *path, size_t len);
static size_t ngx_voice_fuzz_redact(u_char *dst, const u_char *src,
    size_t len);


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    ngx_voice_fuzz_init();

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char        *pre, *path, *out, *ref;
    size_t         plen, len, n, m, at, i, run;
    ngx_int_t      rc;
    ngx_str_t      prefix, p, token;
    const u_char  *nul;

    nul = memchr(data, '\0', size);

    if (nul) {
        plen = nul - data;
        pre = ngx_voice_fuzz_copy(data, plen);
        len = size - plen - 1;
        path = ngx_voice_fuzz_copy(nul + 1, len);

    } else {
        plen = sizeof("/media-stream/") - 1;
        pre = ngx_voice_fuzz_copy((u_char *) "/media-stream/", plen);
        len = size;
        path = ngx_voice_fuzz_copy(data, len);
    }

    prefix.data = pre;
    prefix.len = plen;
    p.data = path;
    p.len = len;

    rc = ngx_voice_token_from_path(&prefix, &p, &token);

    at = ngx_voice_fuzz_token_at(pre, plen, path, len);

    if (at == (size_t) -1) {
        ngx_voice_fuzz_check(rc == NGX_DECLINED);

    } else {
        ngx_voice_fuzz_check(rc == NGX_OK);
        ngx_voice_fuzz_check(token.data == path + at
                             && token.len == NGX_VOICE_TOKEN_LEN);
    }

    /* the path as a request line for the log */

    out = ngx_voice_fuzz_alloc(len);
    ref = ngx_voice_fuzz_alloc(len);

    n = ngx_voice_token_redact(out, path, len);
    m = ngx_voice_fuzz_redact(ref, path, len);

    ngx_voice_fuzz_check(n <= len && n == m);
    ngx_voice_fuzz_check(n == 0 || memcmp(out, ref, n) == 0);

    for (i = 0, run = 0; i < n; i++) {
        run = ngx_voice_fuzz_token_char(out[i]) ? run + 1 : 0;
        ngx_voice_fuzz_check(run < NGX_VOICE_TOKEN_LEN);
    }

    free(out);
    free(ref);
    free(pre);
    free(path);

    return 0;
}


static ngx_uint_t
ngx_voice_fuzz_token_char(u_char c)
{
    return c != '\0'
           && strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                     "0123456789-_", c) != NULL;
}


static ngx_uint_t
ngx_voice_fuzz_is_token(const u_char *p)
{
    size_t  i;

    for (i = 0; i < NGX_VOICE_TOKEN_LEN; i++) {
        if (!ngx_voice_fuzz_token_char(p[i])) {
            return 0;
        }
    }

    return 1;
}


/*
 * Where the token of "path" starts, trying each shape the path may have:
 * prefix [/] TOKEN [/], or for an empty prefix ANY / TOKEN [/]; -1 if
 * none fits.
 */
static size_t
ngx_voice_fuzz_token_at(const u_char *prefix, size_t plen,
    const u_char *path, size_t len)
{
    size_t      base, tail;
    ngx_uint_t  slash;

    for (tail = 0; tail <= 1; tail++) {

        if (len < NGX_VOICE_TOKEN_LEN + tail + 1) {
            continue;
        }

        if (tail && path[len - 1] != '/') {
            continue;
        }

        base = len - tail - NGX_VOICE_TOKEN_LEN;

        if (!ngx_voice_fuzz_is_token(path + base) || path[base - 1] != '/') {
            continue;
        }

        if (plen == 0) {
            return base;
        }

        /* the location's prefix, and the "/" after it */

        slash = (prefix[plen - 1] != '/');

        if (base == plen + slash && memcmp(path, prefix, plen) == 0) {
            return base;
        }
    }

    return (size_t) -1;
}


/* every run of 43 or more token characters becomes its first 4 and "..." */
static size_t
ngx_voice_fuzz_redact(u_char *dst, const u_char *src, size_t len)
{
    size_t  i, j, n;

    n = 0;
    i = 0;

    while (i < len) {
        for (j = i; j < len && ngx_voice_fuzz_token_char(src[j]); j++) {
            /* void */
        }

        if (j - i >= NGX_VOICE_TOKEN_LEN) {
            memcpy(dst + n, src + i, 4);
            memcpy(dst + n + 4, "...", 3);
            n += 7;
            i = j;
            continue;
        }

        if (j == i) {
            dst[n++] = src[i++];
            continue;
        }

        memcpy(dst + n, src + i, j - i);
        n += j - i;
        i = j;
    }

    return n;
}
