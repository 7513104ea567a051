
/*
 * Copyright (C) ngx_voice authors
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


#endif /* _NGX_VOICE_SIGNATURE_H_INCLUDED_ */
