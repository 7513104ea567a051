
/*
 * Copyright (C) ngx_voice authors
 *
 * OpenAI's answer to the WebSocket handshake, up to its empty line.
 * ngx_voice_ws_parse_response() takes the input as a response to a fixed
 * key and must accept it only when it is a 101 whose header lines include
 * "Sec-WebSocket-Accept: <the key's>" and "Upgrade: websocket".  Then a
 * valid response is built around the input (its bits choose the names'
 * case, the spaces, the order and extra header lines) and must be
 * accepted, and refused with a wrong accept value or another status.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_voice_ws.h"
#include "ngx_voice_fuzz.h"


static ngx_int_t ngx_voice_fuzz_response(ngx_uint_t status,
    u_char *accept);
static ngx_uint_t ngx_voice_fuzz_has_header(const u_char *p, size_t len,
    const char *name, const u_char *value, size_t vlen);
static u_char *ngx_voice_fuzz_header(u_char *p, const char *name,
    const char *value, size_t vlen, ngx_uint_t bits);


/* RFC 6455 1.3 */
static u_char  ngx_voice_fuzz_key[] = "dGhlIHNhbXBsZSBub25jZQ==";
static u_char  ngx_voice_fuzz_accept[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

static ngx_uint_t  ngx_voice_fuzz_bits;
static const u_char  *ngx_voice_fuzz_extra;
static size_t  ngx_voice_fuzz_extra_len;


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    u_char  accept[NGX_VOICE_WS_ACCEPT_LEN];

    ngx_voice_fuzz_init();

    ngx_voice_ws_accept(ngx_voice_fuzz_key, NGX_VOICE_WS_KEY_LEN, accept);

    ngx_voice_fuzz_check(memcmp(accept, ngx_voice_fuzz_accept,
                                NGX_VOICE_WS_ACCEPT_LEN) == 0);

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char     *copy;
    ngx_int_t   rc;
    u_char      wrong[NGX_VOICE_WS_ACCEPT_LEN];

    copy = ngx_voice_fuzz_copy(data, size);

    rc = ngx_voice_ws_parse_response(copy, copy + size, ngx_voice_fuzz_key,
                                     ngx_voice_fuzz_log);

    ngx_voice_fuzz_check(rc == NGX_OK || rc == NGX_DECLINED
                         || rc == NGX_ERROR);

    if (rc == NGX_OK) {
        ngx_voice_fuzz_check(size >= 12
                             && memcmp(copy, "HTTP/1.1 101", 12) == 0);
        ngx_voice_fuzz_check(ngx_voice_fuzz_has_header(copy, size,
                                 "Sec-WebSocket-Accept",
                                 ngx_voice_fuzz_accept,
                                 NGX_VOICE_WS_ACCEPT_LEN));
        ngx_voice_fuzz_check(ngx_voice_fuzz_has_header(copy, size,
                                 "Upgrade", (u_char *) "websocket", 9));
    }

    if (rc == NGX_DECLINED) {
        ngx_voice_fuzz_check(size >= 12
                             && memcmp(copy, "HTTP/1.1 ", 9) == 0
                             && memcmp(copy, "HTTP/1.1 101", 12) != 0);
    }

    free(copy);

    /* a valid answer, as the input shapes it */

    ngx_voice_fuzz_bits = size ? data[0] : 0;
    ngx_voice_fuzz_extra = size ? data + 1 : data;
    ngx_voice_fuzz_extra_len = size ? size - 1 : 0;

    ngx_voice_fuzz_check(ngx_voice_fuzz_response(101, ngx_voice_fuzz_accept)
                         == NGX_OK);

    ngx_memcpy(wrong, ngx_voice_fuzz_accept, NGX_VOICE_WS_ACCEPT_LEN);
    wrong[size % NGX_VOICE_WS_ACCEPT_LEN] ^= 0x20;

    ngx_voice_fuzz_check(ngx_voice_fuzz_response(101, wrong)
                         == NGX_ERROR);

    ngx_voice_fuzz_check(ngx_voice_fuzz_response(200, ngx_voice_fuzz_accept)
                         == NGX_DECLINED);

    return 0;
}


static ngx_int_t
ngx_voice_fuzz_response(ngx_uint_t status, u_char *accept)
{
    u_char      *buf, *p, c;
    size_t       i, j;
    ngx_int_t    rc;
    ngx_uint_t   bits, order, k;

    bits = ngx_voice_fuzz_bits;

    buf = ngx_voice_fuzz_alloc(256 + 3 * (ngx_voice_fuzz_extra_len + 16));

    p = ngx_sprintf(buf, "HTTP/1.1 %ui %s\r\n", status,
                    status == 101 ? "Switching Protocols" : "OK");

    /* the three headers in an order the bits choose, extra lines between */

    order = bits % 6;

    for (i = 0; i < 3; i++) {

        k = (order + i * (1 + order % 2)) % 3;

        if (ngx_voice_fuzz_extra_len && (bits & (1 << (3 + i)))) {
            /* the input's bytes as a header of its own */
            p = ngx_cpymem(p, "X-Extra-", 8);

            for (j = 0; j < ngx_voice_fuzz_extra_len; j++) {
                c = ngx_voice_fuzz_extra[j];
                *p++ = (c >= 0x20 && c < 0x7f) ? c : '.';
            }

            p = ngx_cpymem(p, "\r\n", 2);
        }

        switch (k) {

        case 0:
            p = ngx_voice_fuzz_header(p, "Upgrade", "websocket", 9, bits);
            break;

        case 1:
            p = ngx_voice_fuzz_header(p, "Connection",
                                      (bits & 0x40) ? "keep-alive, Upgrade"
                                                    : "Upgrade",
                                      (bits & 0x40) ? 19 : 7, bits);
            break;

        default:
            p = ngx_voice_fuzz_header(p, "Sec-WebSocket-Accept",
                                      (char *) accept,
                                      NGX_VOICE_WS_ACCEPT_LEN, bits);
            break;
        }
    }

    p = ngx_cpymem(p, "\r\n", 2);

    rc = ngx_voice_ws_parse_response(buf, p, ngx_voice_fuzz_key,
                                     ngx_voice_fuzz_log);

    free(buf);

    return rc;
}


/* "name:" OWS value OWS CR, the name in any case, after an LF */
static ngx_uint_t
ngx_voice_fuzz_has_header(const u_char *p, size_t len, const char *name,
    const u_char *value, size_t vlen)
{
    size_t  i, j, nlen;

    nlen = strlen(name);

    for (i = 0; i + 1 + nlen + 1 + vlen + 1 <= len; i++) {

        if (p[i] != '\n' || ngx_strncasecmp((u_char *) p + i + 1,
                                            (u_char *) name, nlen) != 0
            || p[i + 1 + nlen] != ':')
        {
            continue;
        }

        j = i + 1 + nlen + 1;

        while (j < len && (p[j] == ' ' || p[j] == '\t')) {
            j++;
        }

        if (len - j < vlen || ngx_strncasecmp((u_char *) p + j,
                                              (u_char *) value, vlen) != 0)
        {
            continue;
        }

        j += vlen;

        while (j < len && (p[j] == ' ' || p[j] == '\t')) {
            j++;
        }

        if (j < len && p[j] == '\r') {
            return 1;
        }
    }

    return 0;
}


static u_char *
ngx_voice_fuzz_header(u_char *p, const char *name, const char *value,
    size_t vlen, ngx_uint_t bits)
{
    size_t  i;

    for (i = 0; name[i]; i++) {
        /* header names are case-insensitive (RFC 9110 5.1) */
        *p++ = (bits & 0x80) ? ngx_tolower(name[i])
                             : (bits & 0x04) ? ngx_toupper(name[i])
                                             : (u_char) name[i];
    }

    *p++ = ':';

    if (bits & 0x01) {
        *p++ = ' ';
    }

    if (bits & 0x02) {
        *p++ = '\t';
    }

    p = ngx_cpymem(p, value, vlen);

    /* OWS after the value too (RFC 9110 5.5) */

    if ((bits & 0x02) && !ngx_voice_fuzz_skip("handshake-trailing-ows")) {
        *p++ = ' ';
    }

    return ngx_cpymem(p, "\r\n", 2);
}
