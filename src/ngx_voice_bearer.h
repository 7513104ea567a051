
/*
 * Copyright (C) ngx_voice authors
 *
 * voice_require_bearer: a location that only a holder of a secret
 * reaches, e.g. a private MCP server published for OpenAI's cloud.
 */


#ifndef _NGX_VOICE_BEARER_H_INCLUDED_
#define _NGX_VOICE_BEARER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* the access phase handler, installed at postconfiguration */
ngx_int_t ngx_voice_bearer_init(ngx_conf_t *cf);


#endif /* _NGX_VOICE_BEARER_H_INCLUDED_ */
