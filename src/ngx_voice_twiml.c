
/*
 * Copyright (C) ngx_voice authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_voice_twiml.h"


static u_char *ngx_voice_twiml_say(u_char *p, ngx_str_t *text);


size_t
ngx_voice_xml_escaped_len(u_char *src, size_t len)
{
    size_t  n;

    for (n = len; len; len--, src++) {
        switch (*src) {
        case '&':
            n += sizeof("&amp;") - 2;
            break;
        case '<':
        case '>':
            n += sizeof("&lt;") - 2;
            break;
        case '"':
        case '\'':
            n += sizeof("&quot;") - 2;
            break;
        }
    }

    return n;
}


u_char *
ngx_voice_xml_escape(u_char *dst, u_char *src, size_t len)
{
    for ( /* void */ ; len; len--, src++) {
        switch (*src) {
        case '&':
            dst = ngx_cpymem(dst, "&amp;", sizeof("&amp;") - 1);
            break;
        case '<':
            dst = ngx_cpymem(dst, "&lt;", sizeof("&lt;") - 1);
            break;
        case '>':
            dst = ngx_cpymem(dst, "&gt;", sizeof("&gt;") - 1);
            break;
        case '"':
            dst = ngx_cpymem(dst, "&quot;", sizeof("&quot;") - 1);
            break;
        case '\'':
            dst = ngx_cpymem(dst, "&apos;", sizeof("&apos;") - 1);
            break;
        default:
            *dst++ = *src;
        }
    }

    return dst;
}


ngx_int_t
ngx_voice_twiml_init(ngx_pool_t *pool, ngx_voice_twiml_t *twiml,
    ngx_str_t *say, ngx_str_t *fallback_say, ngx_str_t *action)
{
    u_char  *p;
    size_t   len;

    static u_char  say_open[] = "<Say>";
    static u_char  say_close[] = "</Say>";
    static u_char  head[] = "<Response>";
    static u_char  connect[] = "<Connect>";
    static u_char  connect_action[] = "<Connect action=\"";
    static u_char  stream[] = "<Stream url=\"";
    static u_char  stream_end[] = "\"/></Connect>";
    static u_char  tail[] = "</Response>";

    len = sizeof(head) - 1 + sizeof(connect_action) - 1 + sizeof("\">") - 1
          + sizeof(stream) - 1
          + ngx_voice_xml_escaped_len(action->data, action->len);

    if (say->len) {
        len += sizeof(say_open) - 1 + sizeof(say_close) - 1
               + ngx_voice_xml_escaped_len(say->data, say->len);
    }

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    twiml->head.data = p;
    p = ngx_cpymem(p, head, sizeof(head) - 1);
    p = ngx_voice_twiml_say(p, say);

    if (action->len) {
        /* Twilio requests it when <Connect> ends: the call's outcome */
        p = ngx_cpymem(p, connect_action, sizeof(connect_action) - 1);
        p = ngx_voice_xml_escape(p, action->data, action->len);
        p = ngx_cpymem(p, "\">", 2);

    } else {
        p = ngx_cpymem(p, connect, sizeof(connect) - 1);
    }

    p = ngx_cpymem(p, stream, sizeof(stream) - 1);
    twiml->head.len = p - twiml->head.data;

    len = sizeof(stream_end) - 1 + sizeof(tail) - 1;

    if (fallback_say->len) {
        len += sizeof(say_open) - 1 + sizeof(say_close) - 1
               + ngx_voice_xml_escaped_len(fallback_say->data,
                                           fallback_say->len);
    }

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    twiml->tail.data = p;
    p = ngx_cpymem(p, stream_end, sizeof(stream_end) - 1);
    p = ngx_voice_twiml_say(p, fallback_say);
    p = ngx_cpymem(p, tail, sizeof(tail) - 1);
    twiml->tail.len = p - twiml->tail.data;

    return NGX_OK;
}


ngx_int_t
ngx_voice_twiml_connect(ngx_pool_t *pool, ngx_voice_twiml_t *twiml,
    ngx_str_t *base, ngx_str_t *token, ngx_str_t *out)
{
    u_char      *p;
    size_t       len;
    ngx_uint_t   slash;

    slash = (base->len == 0 || base->data[base->len - 1] != '/');

    len = twiml->head.len + ngx_voice_xml_escaped_len(base->data, base->len)
          + slash + ngx_voice_xml_escaped_len(token->data, token->len)
          + twiml->tail.len;

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    p = ngx_cpymem(p, twiml->head.data, twiml->head.len);
    p = ngx_voice_xml_escape(p, base->data, base->len);

    if (slash) {
        *p++ = '/';
    }

    p = ngx_voice_xml_escape(p, token->data, token->len);
    p = ngx_cpymem(p, twiml->tail.data, twiml->tail.len);

    out->len = p - out->data;

    return NGX_OK;
}


static u_char *
ngx_voice_twiml_say(u_char *p, ngx_str_t *text)
{
    if (text->len == 0) {
        /* "" switches off an inherited Say: an empty one is invalid */
        return p;
    }

    p = ngx_cpymem(p, "<Say>", sizeof("<Say>") - 1);
    p = ngx_voice_xml_escape(p, text->data, text->len);

    return ngx_cpymem(p, "</Say>", sizeof("</Say>") - 1);
}


/* [<Say>say</Say>]<Hangup/> */
ngx_int_t
ngx_voice_twiml_hangup(ngx_pool_t *pool, ngx_str_t *say, ngx_str_t *out)
{
    u_char  *p;
    size_t   len;

    static u_char  head[] = "<Response>";
    static u_char  tail[] = "<Hangup/></Response>";

    len = sizeof(head) - 1 + sizeof(tail) - 1
          + sizeof("<Say></Say>") - 1
          + ngx_voice_xml_escaped_len(say->data, say->len);

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    p = ngx_cpymem(p, head, sizeof(head) - 1);
    p = ngx_voice_twiml_say(p, say);
    p = ngx_cpymem(p, tail, sizeof(tail) - 1);
    out->len = p - out->data;

    return NGX_OK;
}


/*
 * [<Say>say</Say>]<Dial action="ACTION" [timeLimit="N"]><Number>+1...
 * </Number></Dial>, or <Sip> for a sip: destination
 */
ngx_int_t
ngx_voice_twiml_dial(ngx_pool_t *pool, ngx_voice_twiml_dial_t *dial,
    ngx_str_t *out)
{
    u_char      *p;
    size_t       len;
    const char  *noun;

    noun = dial->sip ? "Sip" : "Number";

    len = sizeof("<Response><Dial action=\"\" timeLimit=\"\">"
                 "<Number></Number></Dial></Response><Say></Say>") - 1
          + NGX_INT_T_LEN
          + ngx_voice_xml_escaped_len(dial->say.data, dial->say.len)
          + ngx_voice_xml_escaped_len(dial->action.data, dial->action.len)
          + ngx_voice_xml_escaped_len(dial->destination.data,
                                      dial->destination.len);

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    p = ngx_cpymem(p, "<Response>", sizeof("<Response>") - 1);
    p = ngx_voice_twiml_say(p, &dial->say);
    p = ngx_cpymem(p, "<Dial action=\"", sizeof("<Dial action=\"") - 1);
    p = ngx_voice_xml_escape(p, dial->action.data, dial->action.len);
    p = ngx_cpymem(p, "\"", 1);

    if (dial->time_limit) {
        p = ngx_sprintf(p, " timeLimit=\"%T\"", dial->time_limit);
    }

    p = ngx_sprintf(p, "><%s>", noun);
    p = ngx_voice_xml_escape(p, dial->destination.data,
                             dial->destination.len);
    p = ngx_sprintf(p, "</%s></Dial></Response>", noun);

    out->len = p - out->data;

    return NGX_OK;
}
