
/*
 * Copyright (C) ngx_voice authors
 *
 * GET /health answers 200 with {"status":"ok","version":..,
 * "calls_active":N}: a liveness check, which does not fail on conditions
 * that pass by themselves (a full token zone is a metric and a log line).
 * GET /metrics answers the Prometheus text format 0.0.4, aggregated over
 * all workers in the token zone's shared memory.  Call volume is business
 * data: serve these on a private listener.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice.h"
#include "ngx_voice_metrics.h"
#include "ngx_voice_status.h"


static ngx_int_t ngx_voice_status_send(ngx_http_request_t *r, ngx_buf_t *b,
    const char *type);


ngx_int_t
ngx_voice_status_handler(ngx_http_request_t *r)
{
    ngx_int_t              rc;
    ngx_buf_t             *b;
    ngx_voice_loc_conf_t  *vlcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    vlcf = ngx_http_get_module_loc_conf(r, ngx_voice_module);

    if (vlcf->status_health) {
        b = ngx_create_temp_buf(r->pool, 128);
        if (b == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        b->last = ngx_sprintf(b->last,
                              "{\"status\":\"ok\",\"version\":\"%s\","
                              "\"calls_active\":%uA}\n",
                              NGX_VOICE_VERSION,
                              ngx_voice_metrics_calls_active());

        return ngx_voice_status_send(r, b, "application/json");
    }

    b = ngx_voice_metrics_render(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_voice_status_send(r, b, "text/plain; version=0.0.4");
}


static ngx_int_t
ngx_voice_status_send(ngx_http_request_t *r, ngx_buf_t *b, const char *type)
{
    ngx_int_t    rc;
    ngx_chain_t  out;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
    r->headers_out.content_type.data = (u_char *) type;
    r->headers_out.content_type.len = ngx_strlen(type);
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
