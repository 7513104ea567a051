
/*
 * Copyright (C) ngx_voice authors
 *
 * $voice_call_sid, $voice_stream_sid and $voice_close_reason, for
 * log_format.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice.h"
#include "ngx_voice_util.h"
#include "ngx_voice_variables.h"


static ngx_int_t ngx_voice_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


enum {
    NGX_VOICE_VAR_CALL_SID = 0,
    NGX_VOICE_VAR_STREAM_SID,
    NGX_VOICE_VAR_CLOSE_REASON
};


static ngx_http_variable_t  ngx_voice_vars[] = {

    { ngx_string("voice_call_sid"), NULL, ngx_voice_variable,
      NGX_VOICE_VAR_CALL_SID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("voice_stream_sid"), NULL, ngx_voice_variable,
      NGX_VOICE_VAR_STREAM_SID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("voice_close_reason"), NULL, ngx_voice_variable,
      NGX_VOICE_VAR_CLOSE_REASON, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_voice_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_voice_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_voice_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ngx_str_t         *s;
    ngx_voice_vars_t  *vars;

    /* the webhook's context or the call's: both start with the vars */
    vars = ngx_http_get_module_ctx(r, ngx_voice_module);

    if (vars == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    switch (data) {

    case NGX_VOICE_VAR_CALL_SID:
        /* only a CallSid of Twilio's shape reaches a log */
        s = ngx_voice_loggable_sid(&vars->call_sid);
        break;

    case NGX_VOICE_VAR_STREAM_SID:
        s = &vars->stream_sid;
        break;

    default: /* NGX_VOICE_VAR_CLOSE_REASON */
        s = &vars->close_reason;
        break;
    }

    if (s->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = s->data;
    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
