
/*
 * Copyright (C) ngx_voice authors
 *
 * Small helpers shared by the webhook and the media stream.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice.h"


static ngx_int_t ngx_voice_call_sid_is_valid(ngx_str_t *sid);
static ngx_int_t ngx_voice_has_token(ngx_str_t *value, const char *token);


static ngx_str_t  ngx_voice_sid_none = ngx_string("-");


static ngx_int_t
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


/* peer text for a log line: control characters would forge new lines */
void
ngx_voice_log_safe(u_char *p, size_t len)
{
    for ( /* void */ ; len; len--, p++) {
        if (*p < 0x20 || *p == 0x7f) {
            *p = '?';
        }
    }
}
