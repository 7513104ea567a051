
/*
 * Copyright (C) ngx_voice authors
 *
 * voice_status: /health for liveness checks, /metrics for Prometheus.
 */


#ifndef _NGX_VOICE_STATUS_H_INCLUDED_
#define _NGX_VOICE_STATUS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_VOICE_VERSION  "0.5.0"


ngx_int_t ngx_voice_status_handler(ngx_http_request_t *r);


#endif /* _NGX_VOICE_STATUS_H_INCLUDED_ */
