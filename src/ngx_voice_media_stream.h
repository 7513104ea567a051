
/*
 * Copyright (C) ngx_voice authors
 *
 * GET /media-stream/TOKEN: Twilio's Media Stream WebSocket upgrade, every
 * check made before "101 Switching Protocols".
 */


#ifndef _NGX_VOICE_MEDIA_STREAM_H_INCLUDED_
#define _NGX_VOICE_MEDIA_STREAM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


ngx_int_t ngx_voice_media_stream_handler(ngx_http_request_t *r);


#endif /* _NGX_VOICE_MEDIA_STREAM_H_INCLUDED_ */
