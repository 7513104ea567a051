
/*
 * Copyright (C) ngx_voice authors
 *
 * The phone agent's configuration is spread over three locations of a
 * server: the webhook puts action= on <Connect>, the media stream offers
 * the tools, the call action dials what a label names.  Each is merged on
 * its own; this checks them together once all are merged.
 */


#ifndef _NGX_VOICE_AGENT_CONF_H_INCLUDED_
#define _NGX_VOICE_AGENT_CONF_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice.h"


/* a webhook, media stream or call action location, with its server */
ngx_int_t ngx_voice_agent_conf_add(ngx_conf_t *cf,
    ngx_voice_loc_conf_t *conf);

/* at postconfiguration: NGX_OK, or NGX_ERROR with an [emerg] logged */
ngx_int_t ngx_voice_agent_conf_check(ngx_conf_t *cf);


#endif /* _NGX_VOICE_AGENT_CONF_H_INCLUDED_ */
