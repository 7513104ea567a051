
/*
 * Copyright (C) ngx_voice authors
 *
 * The webhook's form body and X-Twilio-Signature.  The input is a body,
 * optionally followed by a NUL and a signature to check.  The parameters
 * ngx_voice_form_parse() finds must be those a plain parser finds; the
 * signature ngx_voice_signature_check() accepts must be the one
 * HMAC-SHA1 over a URL and the parameters sorted and deduplicated gives,
 * computed here with OpenSSL directly, for each URL variant and only
 * those.  The published vectors (../shared/PROTOCOL.md 1.4) are checked
 * once at start.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include "ngx_voice_signature.h"
#include "ngx_voice_fuzz.h"


#define NGX_VOICE_FUZZ_URLS  3


typedef struct {
    u_char                      *data;
    size_t                       len;
} ngx_voice_fuzz_str_t;


typedef struct {
    ngx_voice_fuzz_str_t         name;
    ngx_voice_fuzz_str_t         value;
} ngx_voice_fuzz_param_t;


static ngx_uint_t ngx_voice_fuzz_form_reference(u_char *body, size_t len,
    ngx_voice_fuzz_param_t *params);
static size_t ngx_voice_fuzz_form_decode(u_char *dst, u_char *src,
    size_t len);
static int ngx_libc_cdecl ngx_voice_fuzz_param_cmp(const void *one,
    const void *two);
static void ngx_voice_fuzz_sign(ngx_str_t *url,
    ngx_voice_fuzz_param_t *params, ngx_uint_t n, u_char *sig);
static void ngx_voice_fuzz_form_vectors(void);


static ngx_str_t  ngx_voice_fuzz_key = ngx_string("12345");

static ngx_str_t  ngx_voice_fuzz_urls[NGX_VOICE_FUZZ_URLS] = {
    ngx_string("https://mycompany.com/myapp.php?foo=1&bar=2"),
    ngx_string("https://mycompany.com:443/myapp.php?foo=1&bar=2"),
    ngx_string("wss://voice.example.test/media-stream/"
               "tok_2vDq6kI0x8mL0iX4w0Vg5pQ9sYbN3rTcUaFeHjKlMn4")
};


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    ngx_voice_fuzz_init();
    ngx_voice_fuzz_form_vectors();

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                  *body, *copy, *nul;
    size_t                   len;
    ngx_str_t                sig, *v;
    ngx_int_t                rc;
    ngx_uint_t               i, j, n, match;
    ngx_pool_t              *pool;
    ngx_array_t              params;
    ngx_voice_param_t       *p;
    ngx_voice_fuzz_param_t  *ref;
    u_char                   sigs[NGX_VOICE_FUZZ_URLS]
                                 [NGX_VOICE_SIGNATURE_LEN];

    pool = ngx_voice_fuzz_pool();

    nul = memchr(data, '\0', size);
    len = nul ? (size_t) (nul - data) : size;

    /* the body in a block of its own size, kept to compare with */

    body = ngx_voice_fuzz_copy(data, len);
    copy = ngx_voice_fuzz_copy(data, len);

    ngx_voice_fuzz_check(ngx_voice_form_parse(pool, body, len, &params)
                         == NGX_OK);

    ngx_voice_fuzz_check(len == 0 || memcmp(body, copy, len) == 0);

    ref = ngx_voice_fuzz_alloc((len / 2 + 1) * sizeof(ngx_voice_fuzz_param_t));

    n = ngx_voice_fuzz_form_reference(copy, len, ref);

    ngx_voice_fuzz_check(params.nelts == n);

    p = params.elts;

    for (i = 0; i < n; i++) {
        ngx_voice_fuzz_check(p[i].name.len == ref[i].name.len
                             && p[i].value.len == ref[i].value.len);
        ngx_voice_fuzz_check(p[i].name.len == 0
                             || memcmp(p[i].name.data, ref[i].name.data,
                                       p[i].name.len) == 0);
        ngx_voice_fuzz_check(p[i].value.len == 0
                             || memcmp(p[i].value.data, ref[i].value.data,
                                       p[i].value.len) == 0);
    }

    v = ngx_voice_form_get(&params, "CallSid");

    for (i = 0; i < n; i++) {
        if (ref[i].name.len == 7 && memcmp(ref[i].name.data, "CallSid", 7)
                                    == 0)
        {
            break;
        }
    }

    ngx_voice_fuzz_check((v == NULL) == (i == n));
    ngx_voice_fuzz_check(v == NULL || v == &p[i].value);

    /* each URL's own signature is accepted, a changed one is not */

    for (i = 0; i < NGX_VOICE_FUZZ_URLS; i++) {
        ngx_voice_fuzz_sign(&ngx_voice_fuzz_urls[i], ref, n, sigs[i]);

        sig.data = sigs[i];
        sig.len = NGX_VOICE_SIGNATURE_LEN;

        rc = ngx_voice_signature_check(pool, &ngx_voice_fuzz_key,
                                       &ngx_voice_fuzz_urls[i], 1, &params,
                                       &sig);
        ngx_voice_fuzz_check(rc == NGX_OK);
    }

    sig.data = sigs[0];
    sig.len = NGX_VOICE_SIGNATURE_LEN;
    sigs[0][3] ^= 0x01;

    rc = ngx_voice_signature_check(pool, &ngx_voice_fuzz_key,
                                   ngx_voice_fuzz_urls, NGX_VOICE_FUZZ_URLS,
                                   &params, &sig);
    ngx_voice_fuzz_check(rc == NGX_DECLINED);

    sigs[0][3] ^= 0x01;

    /* the input's signature: accepted exactly when a variant signs so */

    if (nul) {
        sig.data = nul + 1;
        sig.len = size - len - 1;

        match = 0;

        for (i = 0; i < NGX_VOICE_FUZZ_URLS; i++) {
            if (sig.len == NGX_VOICE_SIGNATURE_LEN
                && memcmp(sig.data, sigs[i], sig.len) == 0)
            {
                match = 1;
            }
        }

        rc = ngx_voice_signature_check(pool, &ngx_voice_fuzz_key,
                                       ngx_voice_fuzz_urls,
                                       NGX_VOICE_FUZZ_URLS, &params, &sig);
        ngx_voice_fuzz_check(rc == (match ? NGX_OK : NGX_DECLINED));
    }

    /* a signed URL alone, as the media stream's upgrade is signed */

    for (j = 0; j < NGX_VOICE_FUZZ_URLS; j++) {
        ngx_voice_fuzz_sign(&ngx_voice_fuzz_urls[j], NULL, 0, sigs[j]);
    }

    sig.data = sigs[2];
    sig.len = NGX_VOICE_SIGNATURE_LEN;

    rc = ngx_voice_signature_check(pool, &ngx_voice_fuzz_key,
                                   ngx_voice_fuzz_urls, NGX_VOICE_FUZZ_URLS,
                                   NULL, &sig);
    ngx_voice_fuzz_check(rc == NGX_OK);

    for (i = 0; i < n; i++) {
        free(ref[i].name.data);
    }

    free(ref);
    free(body);
    free(copy);

    ngx_voice_fuzz_pool_done(pool);

    return 0;
}


/*
 * application/x-www-form-urlencoded as Twilio's libraries read it:
 * "&"-separated pairs, empty ones skipped, the name up to the first "=",
 * "+" a space, %XX a byte and any other "%" kept.
 */
static ngx_uint_t
ngx_voice_fuzz_form_reference(u_char *body, size_t len,
    ngx_voice_fuzz_param_t *params)
{
    u_char      *seg, *eq, *buf;
    size_t       i;
    ngx_uint_t   n;

    n = 0;
    seg = body;

    for (i = 0; i <= len; i++) {

        if (i < len && body[i] != '&') {
            continue;
        }

        if (body + i == seg) {
            seg++;
            continue;
        }

        for (eq = seg; eq < body + i && *eq != '='; eq++) {
            /* void */
        }

        buf = ngx_voice_fuzz_alloc(body + i - seg + 1);

        params[n].name.data = buf;
        params[n].name.len = ngx_voice_fuzz_form_decode(buf, seg, eq - seg);

        params[n].value.data = buf + params[n].name.len;
        params[n].value.len = (eq < body + i)
                              ? ngx_voice_fuzz_form_decode(
                                    params[n].value.data, eq + 1,
                                    body + i - eq - 1)
                              : 0;
        n++;

        seg = body + i + 1;
    }

    return n;
}


static size_t
ngx_voice_fuzz_form_decode(u_char *dst, u_char *src, size_t len)
{
    size_t   i, n;
    u_char   hex[3];
    char    *end;

    n = 0;

    for (i = 0; i < len; i++) {

        if (src[i] == '+') {
            dst[n++] = ' ';
            continue;
        }

        if (src[i] == '%' && len - i >= 3
            && isxdigit(src[i + 1]) && isxdigit(src[i + 2]))
        {
            hex[0] = src[i + 1];
            hex[1] = src[i + 2];
            hex[2] = '\0';
            dst[n++] = (u_char) strtoul((char *) hex, &end, 16);
            i += 2;
            continue;
        }

        dst[n++] = src[i];
    }

    return n;
}


/* byte order of the names, then of the values */
static int ngx_libc_cdecl
ngx_voice_fuzz_param_cmp(const void *one, const void *two)
{
    int                            rc;
    size_t                         n;
    const ngx_voice_fuzz_param_t  *a = one, *b = two;

    n = ngx_min(a->name.len, b->name.len);
    rc = n ? memcmp(a->name.data, b->name.data, n) : 0;

    if (rc == 0) {
        rc = (a->name.len > b->name.len) - (a->name.len < b->name.len);
    }

    if (rc) {
        return rc;
    }

    n = ngx_min(a->value.len, b->value.len);
    rc = n ? memcmp(a->value.data, b->value.data, n) : 0;

    if (rc == 0) {
        rc = (a->value.len > b->value.len) - (a->value.len < b->value.len);
    }

    return rc;
}


/* base64(HMAC-SHA1(key, url + name1 value1 name2 value2 ...)) */
static void
ngx_voice_fuzz_sign(ngx_str_t *url, ngx_voice_fuzz_param_t *params,
    ngx_uint_t n, u_char *sig)
{
    size_t                   len;
    u_char                  *msg, *p;
    ngx_str_t                digest, encoded;
    ngx_uint_t               i;
    unsigned int             md_len;
    ngx_voice_fuzz_param_t  *sorted;
    u_char                   md[EVP_MAX_MD_SIZE];

    sorted = ngx_voice_fuzz_alloc((n + 1) * sizeof(ngx_voice_fuzz_param_t));

    if (n) {
        memcpy(sorted, params, n * sizeof(ngx_voice_fuzz_param_t));
        qsort(sorted, n, sizeof(ngx_voice_fuzz_param_t),
              ngx_voice_fuzz_param_cmp);
    }

    len = url->len;

    for (i = 0; i < n; i++) {
        len += sorted[i].name.len + sorted[i].value.len;
    }

    msg = ngx_voice_fuzz_alloc(len + 1);

    p = ngx_cpymem(msg, url->data, url->len);

    for (i = 0; i < n; i++) {

        /* a repeated pair counts once */
        if (i > 0 && ngx_voice_fuzz_param_cmp(&sorted[i], &sorted[i - 1])
                     == 0)
        {
            continue;
        }

        p = ngx_cpymem(p, sorted[i].name.data, sorted[i].name.len);
        p = ngx_cpymem(p, sorted[i].value.data, sorted[i].value.len);
    }

    if (HMAC(EVP_sha1(), ngx_voice_fuzz_key.data,
             (int) ngx_voice_fuzz_key.len, msg, p - msg, md, &md_len)
        == NULL)
    {
        abort();
    }

    digest.data = md;
    digest.len = md_len;
    encoded.data = sig;
    ngx_encode_base64(&encoded, &digest);

    ngx_voice_fuzz_check(encoded.len == NGX_VOICE_SIGNATURE_LEN);

    free(msg);
    free(sorted);
}


/* ../shared/PROTOCOL.md 1.4: Twilio's own test vectors, token 12345 */
static void
ngx_voice_fuzz_form_vectors(void)
{
    ngx_str_t     sig, url;
    ngx_pool_t   *pool;
    ngx_uint_t    i;
    ngx_array_t   params;

    static struct {
        const char  *url;
        const char  *body;
        const char  *sig;
    }  vectors[] = {

        { "https://mycompany.com/myapp.php?foo=1&bar=2",
          "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234"
          "&From=%2B14158675309&To=%2B18005551212",
          "RSOYDt4T1cUTdK1PDd93/VVr8B8=" },

        { "https://mycompany.com:443/myapp.php?foo=1&bar=2",
          "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234"
          "&From=%2B14158675309&To=%2B18005551212",
          "kvajT1Ptam85bY51eRf/AJRuM3w=" },

        { "http://mycompany.com:80/myapp.php?foo=1&bar=2",
          "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234"
          "&From=%2B14158675309&To=%2B18005551212",
          "0ZXoZLH/DfblKGATFgpif+LLRf4=" },

        { "http://mycompany.com:1234/myapp.php?foo=1&bar=2",
          "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234"
          "&From=%2B14158675309&To=%2B18005551212",
          "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=" },

        { "https://mycompany.com/myapp.php?foo=1&bar=2",
          "Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234",
          "IK+Dwps556ElfBT0I3Rgjkr1wJU=" },

        { "https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256="
          "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620",
          "",
          "a9nBmqA0ju/hNViExpshrM61xv4=" },

        { "https://mycompany.com/myapp.php?foo=1&bar=2",
          "CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234"
          "&From=%2B12349013030&To=%2B18005551212",
          "0/KCTR6DLpKmkAf8muzZqo1nDgQ=" }
    };

    pool = ngx_voice_fuzz_pool();

    for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        url.data = (u_char *) vectors[i].url;
        url.len = strlen(vectors[i].url);
        sig.data = (u_char *) vectors[i].sig;
        sig.len = strlen(vectors[i].sig);

        ngx_voice_fuzz_check(ngx_voice_form_parse(pool,
                                                  (u_char *) vectors[i].body,
                                                  strlen(vectors[i].body),
                                                  &params)
                             == NGX_OK);

        ngx_voice_fuzz_check(ngx_voice_signature_check(pool,
                                                       &ngx_voice_fuzz_key,
                                                       &url, 1, &params,
                                                       &sig)
                             == NGX_OK);
    }

    ngx_voice_fuzz_pool_done(pool);
}
