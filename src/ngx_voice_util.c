
/*
 * Copyright (C) ngx_voice authors
 *
 * Small helpers shared by the webhook and the media stream.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice_util.h"
#include "ngx_voice_ws.h"


static ngx_int_t ngx_voice_has_token(ngx_str_t *value, const char *token);


static ngx_str_t  ngx_voice_sid_none = ngx_string("-");


ngx_uint_t
ngx_voice_call_sid_is_valid(ngx_str_t *sid)
{
    size_t  i;
    u_char  c;

    if (sid == NULL || sid->len != 34
        || sid->data[0] != 'C' || sid->data[1] != 'A')
    {
        return 0;
    }

    for (i = 2; i < 34; i++) {
        c = sid->data[i];

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }

    return 1;
}


ngx_table_elt_t *
ngx_voice_find_header(ngx_http_request_t *r, ngx_str_t *name)
{
    return ngx_voice_header_with_token(r, name, NULL);
}


/*
 * The first request header line called "name" (case-insensitively) whose
 * comma-separated value lists "token", or any such line when "token" is
 * NULL: a header may come in several lines (RFC 9110 5.3).
 */
ngx_table_elt_t *
ngx_voice_header_with_token(ngx_http_request_t *r, ngx_str_t *name,
    const char *token)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == name->len
            && ngx_strncasecmp(h[i].key.data, name->data, name->len) == 0
            && (token == NULL || ngx_voice_has_token(&h[i].value, token)))
        {
            return &h[i];
        }
    }
}


/* a comma-separated header value contains "token" (case-insensitive) */
static ngx_int_t
ngx_voice_has_token(ngx_str_t *value, const char *token)
{
    u_char  *p, *end, *start, *last;
    size_t   len;

    len = ngx_strlen(token);
    p = value->data;
    end = value->data + value->len;

    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        start = p;

        while (p < end && *p != ',') {
            p++;
        }

        last = p;

        while (last > start && (last[-1] == ' ' || last[-1] == '\t')) {
            last--;
        }

        if ((size_t) (last - start) == len
            && ngx_strncasecmp(start, (u_char *) token, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


ngx_str_t *
ngx_voice_loggable_sid(ngx_str_t *sid)
{
    return ngx_voice_call_sid_is_valid(sid) ? sid : &ngx_voice_sid_none;
}


char *
ngx_voice_log_escape(u_char *buf, const u_char *src, size_t len)
{
    u_char        c, *p, *end;
    size_t        n;
    const u_char  *last;

    static u_char  hex[] = "0123456789abcdef";

    p = buf;

    /* room for the longest escape, the cut marker and the NUL */
    end = buf + NGX_VOICE_LOG_TEXT_MAX - sizeof("\\xNN...");

    /* an absent value is NULL with no length: no arithmetic on NULL */
    last = len ? src + len : src;

    while (src < last) {

        if (p >= end) {
            p = ngx_cpymem(p, "...", 3);
            break;
        }

        c = *src;

        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            *p++ = c;
            src++;
            continue;
        }

        if (c >= 0x80) {
            /* a whole valid UTF-8 character is kept as it is */
            n = (c >= 0xf0) ? 4 : (c >= 0xe0) ? 3 : 2;

            if ((size_t) (last - src) >= n
                && ngx_voice_utf8_valid((u_char *) src, n)
                && p + n < end)
            {
                p = ngx_cpymem(p, src, n);
                src += n;
                continue;
            }
        }

        *p++ = '\\';
        *p++ = 'x';
        *p++ = hex[c >> 4];
        *p++ = hex[c & 0xf];
        src++;
    }

    *p = '\0';

    return (char *) buf;
}
