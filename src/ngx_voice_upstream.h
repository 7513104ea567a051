
/*
 * Copyright (C) ngx_voice authors
 *
 * The OpenAI leg until its WebSocket is open, driven from nginx's event
 * loop: resolve, connect to each address in turn, TLS, then the client
 * handshake.  It reports to its owner through two handlers; all events
 * of its connection go through one dispatcher, as ngx_http_upstream's
 * do, to u->read_event_handler or u->write_event_handler, which the
 * owner takes over once the WebSocket is open.
 */


#ifndef _NGX_VOICE_UPSTREAM_H_INCLUDED_
#define _NGX_VOICE_UPSTREAM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_http.h>
#include "ngx_voice_openai.h"
#include "ngx_voice_ws.h"


/* where setting up the leg failed */
typedef enum {
    NGX_VOICE_UPSTREAM_DNS = 0,
    NGX_VOICE_UPSTREAM_CONNECT,
    NGX_VOICE_UPSTREAM_TLS,
    NGX_VOICE_UPSTREAM_HANDSHAKE,
    NGX_VOICE_UPSTREAM_HTTP_STATUS
} ngx_voice_upstream_stage_e;


typedef struct ngx_voice_upstream_s  ngx_voice_upstream_t;

typedef void (*ngx_voice_upstream_handler_pt)(ngx_voice_upstream_t *u);


struct ngx_voice_upstream_s {
    ngx_voice_openai_conf_t       *conf;
    ngx_http_request_t            *request;   /* its pool, posted requests */
    ngx_log_t                     *log;

    ngx_peer_connection_t          peer;
    ngx_pool_t                    *pool;      /* the connection's */
    ngx_resolver_ctx_t            *resolve;
    ngx_addr_t                    *addrs;
    ngx_uint_t                     naddrs;
    ngx_uint_t                     addr;      /* the one being tried */
    ngx_buf_t                     *handshake;
    u_char                         ws_key[NGX_VOICE_WS_KEY_LEN];

    ngx_msec_t                     deadline;  /* of voice_connect_timeout */
    char                          *action;    /* of the log, given back */
    ngx_event_t                    timer;

    ngx_voice_upstream_handler_pt  read_event_handler;
    ngx_voice_upstream_handler_pt  write_event_handler;

    /*
     * The WebSocket is open on u->peer.connection; [pos, last) are bytes
     * OpenAI sent behind its 101.  The owner sets the event handlers.
     */
    void                         (*ready)(ngx_voice_upstream_t *u,
                                          u_char *pos, u_char *last);

    /* the leg could not be set up; it is already closed */
    void                         (*failed)(ngx_voice_upstream_t *u,
                                           ngx_voice_upstream_stage_e stage,
                                           const char *reason);
    void                          *data;      /* the owner */

    unsigned                       request_sent:1;
};


/* "conf", "request", "log", "ready", "failed" and "data" set before */
void ngx_voice_upstream_start(ngx_voice_upstream_t *u);

/* ends whatever is under way and closes the connection; idempotent */
void ngx_voice_upstream_close(ngx_voice_upstream_t *u);


#endif /* _NGX_VOICE_UPSTREAM_H_INCLUDED_ */
