
/*
 * Copyright (C) ngx_voice authors
 *
 * The locations of one server that a call with tools passes through must
 * agree: a stream location offering end_call or transfer_call needs every
 * webhook location of its server to put action= on <Connect> (without it
 * Twilio plays the fallback and hangs up: the transfer would be lost),
 * a call action location to answer it, and that location's voice_transfer
 * list to be the stream's (a label must dial what the model was offered).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice.h"
#include "ngx_voice_agent_conf.h"


typedef struct {
    void                        *server;     /* its core srv conf */
    ngx_voice_loc_conf_t        *conf;
    ngx_str_t                    name;       /* the location's */
} ngx_voice_agent_loc_t;


static ngx_int_t ngx_voice_agent_conf_server(ngx_conf_t *cf,
    ngx_voice_agent_loc_t *stream, ngx_array_t *locs);
static ngx_uint_t ngx_voice_agent_conf_same_transfers(ngx_array_t *a,
    ngx_array_t *b);


ngx_int_t
ngx_voice_agent_conf_add(ngx_conf_t *cf, ngx_voice_loc_conf_t *conf)
{
    ngx_voice_agent_loc_t     *loc;
    ngx_voice_main_conf_t     *vmcf;
    ngx_http_core_loc_conf_t  *clcf;

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_voice_module);

    if (vmcf->agent_locs == NULL) {
        vmcf->agent_locs = ngx_array_create(cf->temp_pool, 8,
                                            sizeof(ngx_voice_agent_loc_t));
        if (vmcf->agent_locs == NULL) {
            return NGX_ERROR;
        }
    }

    loc = ngx_array_push(vmcf->agent_locs);
    if (loc == NULL) {
        return NGX_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    /* merging runs server by server with the server's context in cf */
    loc->server = ngx_http_conf_get_module_srv_conf(cf, ngx_http_core_module);
    loc->conf = conf;
    loc->name = clcf->name;

    return NGX_OK;
}


ngx_int_t
ngx_voice_agent_conf_check(ngx_conf_t *cf)
{
    ngx_int_t               rc;
    ngx_uint_t              i;
    ngx_array_t            *locs;
    ngx_voice_agent_loc_t  *loc;
    ngx_voice_main_conf_t  *vmcf;

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_voice_module);

    /* from the temp pool of this configuration: gone once it is read */
    locs = vmcf->agent_locs;
    vmcf->agent_locs = NULL;

    if (locs == NULL) {
        return NGX_OK;
    }

    loc = locs->elts;
    rc = NGX_OK;

    for (i = 0; i < locs->nelts; i++) {

        if (loc[i].conf->role == NGX_VOICE_ROLE_MEDIA_STREAM
            && (loc[i].conf->session.hangup || loc[i].conf->session.transfers)
            && ngx_voice_agent_conf_server(cf, &loc[i], locs) != NGX_OK)
        {
            rc = NGX_ERROR;
        }
    }

    return rc;
}


static ngx_int_t
ngx_voice_agent_conf_server(ngx_conf_t *cf, ngx_voice_agent_loc_t *stream,
    ngx_array_t *locs)
{
    ngx_uint_t              i, actions;
    ngx_voice_agent_loc_t  *loc;

    loc = locs->elts;
    actions = 0;

    for (i = 0; i < locs->nelts; i++) {

        if (loc[i].server != stream->server) {
            continue;
        }

        if (loc[i].conf->role == NGX_VOICE_ROLE_INCOMING_CALL
            && loc[i].conf->webhook.action_path.len == 0)
        {
            /* log-safe: configuration text, file names and units */
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"voice_hangup\" or \"voice_transfer\" in "
                          "location \"%V\" (%s:%ui) needs "
                          "\"voice_call_action_url\" in the webhook "
                          "location \"%V\" of the same server: set them at "
                          "server level", &stream->name,
                          stream->conf->role_file, stream->conf->role_line,
                          &loc[i].name);
            return NGX_ERROR;
        }

        if (loc[i].conf->role != NGX_VOICE_ROLE_CALL_ACTION) {
            continue;
        }

        actions++;

        if (!ngx_voice_agent_conf_same_transfers(
                 stream->conf->session.transfers,
                 loc[i].conf->session.transfers))
        {
            /* log-safe: configuration text, file names and units */
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"voice_transfer\" of location \"%V\" (%s:%ui) "
                          "and of the call action location \"%V\" differ: "
                          "a label must dial what the model was offered; "
                          "set them at server level", &stream->name,
                          stream->conf->role_file, stream->conf->role_line,
                          &loc[i].name);
            return NGX_ERROR;
        }
    }

    if (actions == 0) {
        /* log-safe: configuration text, file names and units */
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"voice_hangup\" or \"voice_transfer\" in location "
                      "\"%V\" (%s:%ui) needs a \"voice_call_action\" "
                      "location in the same server", &stream->name,
                      stream->conf->role_file, stream->conf->role_line);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the same labels, in the same order, to the same destinations */
static ngx_uint_t
ngx_voice_agent_conf_same_transfers(ngx_array_t *a, ngx_array_t *b)
{
    ngx_uint_t             i, na, nb;
    ngx_voice_transfer_t  *ta, *tb;

    na = a ? a->nelts : 0;
    nb = b ? b->nelts : 0;

    if (na != nb) {
        return 0;
    }

    if (na == 0 || a == b) {
        return 1;
    }

    ta = a->elts;
    tb = b->elts;

    for (i = 0; i < na; i++) {
        if (ta[i].label.len != tb[i].label.len
            || ta[i].destination.len != tb[i].destination.len
            || ngx_strncmp(ta[i].label.data, tb[i].label.data,
                           ta[i].label.len) != 0
            || ngx_strncmp(ta[i].destination.data, tb[i].destination.data,
                           ta[i].destination.len) != 0)
        {
            return 0;
        }
    }

    return 1;
}
