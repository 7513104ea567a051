
/*
 * Copyright (C) ngx_voice authors
 *
 * voice_require_bearer SECRET: in the access phase, a request passes
 * only with "Authorization: Bearer SECRET", compared in constant time;
 * anything else gets 401 with WWW-Authenticate.  The secret is loaded
 * like the others (literal, env:, file:) and never logged.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <openssl/crypto.h>
#include "ngx_voice.h"
#include "ngx_voice_bearer.h"


static ngx_int_t ngx_voice_bearer_handler(ngx_http_request_t *r);
static void ngx_voice_bearer_log_refusal(ngx_http_request_t *r,
    ngx_uint_t wrong);
static ngx_int_t ngx_voice_bearer_matches(ngx_str_t *value,
    ngx_str_t *secret);


ngx_int_t
ngx_voice_bearer_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_voice_bearer_handler;

    return NGX_OK;
}


static ngx_int_t
ngx_voice_bearer_handler(ngx_http_request_t *r)
{
    ngx_table_elt_t       *h;
    ngx_voice_loc_conf_t  *vlcf;

    vlcf = ngx_http_get_module_loc_conf(r, ngx_voice_module);

    if (vlcf->bearer.len == 0) {
        return NGX_DECLINED;
    }

    h = r->headers_in.authorization;

    if (h && ngx_voice_bearer_matches(&h->value, &vlcf->bearer)) {
        return NGX_OK;
    }

    ngx_voice_bearer_log_refusal(r, h != NULL);

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "WWW-Authenticate");
    ngx_str_set(&h->value, "Bearer");

    return NGX_HTTP_UNAUTHORIZED;
}


/*
 * A request without credentials is the usual first step of a client
 * (info, as auth_basic logs nothing); a wrong secret is a warning, at
 * most one a second per worker with the count, as a public endpoint can
 * be flooded with them.
 */
static void
ngx_voice_bearer_log_refusal(ngx_http_request_t *r, ngx_uint_t wrong)
{
    static time_t      logged;
    static ngx_uint_t  count;

    if (!wrong) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "voice: no bearer token for a voice_require_bearer "
                      "location");
        return;
    }

    count++;

    if (logged == ngx_time()) {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "voice: wrong bearer token for a voice_require_bearer "
                  "location (%ui such since the last line)", count);

    logged = ngx_time();
    count = 0;
}


/* "Bearer SECRET", the scheme case-insensitive (RFC 9110 11.1) */
static ngx_int_t
ngx_voice_bearer_matches(ngx_str_t *value, ngx_str_t *secret)
{
    u_char  *p, *end;

    p = value->data;
    end = value->data + value->len;

    if (value->len < sizeof("Bearer ") - 1
        || ngx_strncasecmp(p, (u_char *) "Bearer ", sizeof("Bearer ") - 1)
           != 0)
    {
        return 0;
    }

    for (p += sizeof("Bearer ") - 1; p < end && *p == ' '; p++) {
        /* void */
    }

    if ((size_t) (end - p) != secret->len) {
        return 0;
    }

    return CRYPTO_memcmp(p, secret->data, secret->len) == 0;
}
