
/*
 * Copyright (C) ngx_voice authors
 *
 * X-Twilio-Signature: form bodies, the HMAC over the URL Twilio requested,
 * and the configuration that says which URLs those are.
 */


#ifndef _NGX_VOICE_SIGNATURE_H_INCLUDED_
#define _NGX_VOICE_SIGNATURE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* base64 of an HMAC-SHA1 digest */
#define NGX_VOICE_SIGNATURE_LEN  28


typedef struct {
    ngx_str_t                    name;
    ngx_str_t                    value;
} ngx_voice_param_t;


/* what Twilio signs, and with what */
typedef struct {
    ngx_flag_t                   enabled;         /* voice_signature */
    ngx_str_t                    auth_token;      /* secret */
    ngx_str_t                    public_url;      /* scheme://host[:port] */
    ngx_str_t                    public_host;     /* host, no port */
    ngx_str_t                    stream_url;      /* wss://host[/path] */
    ngx_str_t                    stream_host;     /* its host, no port */

    /* derived at merge time, never inherited */
    ngx_str_t                    stream_sig_host; /* host of the wss:// */
} ngx_voice_signature_conf_t;


/*
 * Parses an application/x-www-form-urlencoded body into an array of
 * ngx_voice_param_t, decoding "+" and %XX (an invalid escape is kept as
 * it is, as Twilio's libraries' parsers do).  The strings point into
 * memory from "pool".
 */
ngx_int_t ngx_voice_form_parse(ngx_pool_t *pool, u_char *body, size_t len,
    ngx_array_t *params);

/* the first value of "name", or NULL */
ngx_str_t *ngx_voice_form_get(ngx_array_t *params, const char *name);

/*
 * Checks "signature" against HMAC-SHA1(key, url + sorted params) for each
 * of the "nurls" URL variants; "params" may be NULL (a signed URL alone).
 * Returns NGX_OK on a match, NGX_DECLINED on none, NGX_ERROR.
 */
ngx_int_t ngx_voice_signature_check(ngx_pool_t *pool, ngx_str_t *key,
    ngx_str_t *urls, ngx_uint_t nurls, ngx_array_t *params,
    ngx_str_t *signature);


void ngx_voice_signature_create_conf(ngx_voice_signature_conf_t *conf);
char *ngx_voice_signature_merge_conf(ngx_conf_t *cf,
    ngx_voice_signature_conf_t *prev, ngx_voice_signature_conf_t *conf);

/* voice_public_url and voice_stream_url (cmd->offset: the conf) */
char *ngx_voice_signature_set_public_url(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_voice_signature_set_stream_url(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/*
 * Splits scheme://host[:port][path]; rejects user info, an empty host and
 * a port that is not a number.
 */
ngx_int_t ngx_voice_parse_url(ngx_str_t *url, ngx_str_t *scheme,
    ngx_str_t *host, ngx_str_t *port, ngx_str_t *path);


#endif /* _NGX_VOICE_SIGNATURE_H_INCLUDED_ */
