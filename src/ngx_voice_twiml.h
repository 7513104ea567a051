
/*
 * Copyright (C) ngx_voice authors
 */


#ifndef _NGX_VOICE_TWIML_H_INCLUDED_
#define _NGX_VOICE_TWIML_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_VOICE_TWIML_REJECT  "<Response><Reject/></Response>"
#define NGX_VOICE_TWIML_HANGUP  "<Response><Hangup/></Response>"


/* the parts of the <Connect><Stream> answer fixed by configuration */
typedef struct {
    ngx_str_t                    head;    /* up to the Stream URL */
    ngx_str_t                    tail;    /* after the Stream URL */
} ngx_voice_twiml_t;


/* the escaped length of "len" bytes of XML text or attribute value */
size_t ngx_voice_xml_escaped_len(u_char *src, size_t len);
u_char *ngx_voice_xml_escape(u_char *dst, u_char *src, size_t len);

/* what a transfer answers with */
typedef struct {
    ngx_str_t                    say;
    ngx_str_t                    action;  /* the call-action URL again */
    time_t                       time_limit;       /* 0: none */
    ngx_str_t                    destination;
    ngx_uint_t                   sip;
} ngx_voice_twiml_dial_t;


/*
 * Builds head and tail once, at configuration time; with an "action" URL
 * (may be empty), <Connect action="..."> makes Twilio request it when the
 * stream ends.
 */
ngx_int_t ngx_voice_twiml_init(ngx_pool_t *pool, ngx_voice_twiml_t *twiml,
    ngx_str_t *say, ngx_str_t *fallback_say, ngx_str_t *action);

/* <Response>[<Say>say</Say>]<Hangup/></Response> */
ngx_int_t ngx_voice_twiml_hangup(ngx_pool_t *pool, ngx_str_t *say,
    ngx_str_t *out);

/* <Response>[<Say>]<Dial action=..><Number>|<Sip>..</Dial></Response> */
ngx_int_t ngx_voice_twiml_dial(ngx_pool_t *pool, ngx_voice_twiml_dial_t *dial,
    ngx_str_t *out);

/* head + escaped(base) ["/"] + token + tail */
ngx_int_t ngx_voice_twiml_connect(ngx_pool_t *pool, ngx_voice_twiml_t *twiml,
    ngx_str_t *base, ngx_str_t *token, ngx_str_t *out);


#endif /* _NGX_VOICE_TWIML_H_INCLUDED_ */
