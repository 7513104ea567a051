
/*
 * Copyright (C) ngx_voice authors
 *
 * $voice_call_sid, $voice_stream_sid and $voice_close_reason, for
 * log_format.
 */


#ifndef _NGX_VOICE_VARIABLES_H_INCLUDED_
#define _NGX_VOICE_VARIABLES_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/*
 * What the variables show.  The module's request context (the webhook's,
 * or the call's) starts with this, so the variables read either.
 */
typedef struct {
    ngx_str_t                    call_sid;       /* once authenticated */
    ngx_str_t                    stream_sid;
    ngx_str_t                    close_reason;
} ngx_voice_vars_t;


ngx_int_t ngx_voice_add_variables(ngx_conf_t *cf);


#endif /* _NGX_VOICE_VARIABLES_H_INCLUDED_ */
