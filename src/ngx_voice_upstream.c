
/*
 * Copyright (C) ngx_voice authors
 *
 * The OpenAI leg, driven from nginx's event loop: name resolution through
 * nginx's resolver (or addresses resolved at configuration time), a
 * non-blocking connect to each address in turn, TLS with nginx's ngx_ssl
 * (SNI, certificate and host name checks, sessions reused across calls),
 * then the WebSocket client handshake.  voice_connect_timeout covers it
 * all; each connect attempt gets its share of what is left of it, so an
 * address that swallows SYNs does not use up the others' time.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_http.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include "ngx_voice_peer.h"
#include "ngx_voice_upstream.h"
#include "ngx_voice_ws.h"


#define NGX_VOICE_HANDSHAKE_MAX  4096

#if (NGX_VOICE_HANDSHAKE_MAX > NGX_VOICE_IN_BUFFER)
#error "the bytes behind the 101 go on from the worker's read buffer"
#endif


static void ngx_voice_upstream_handler(ngx_event_t *ev);
static void ngx_voice_upstream_resolve(ngx_voice_upstream_t *u);
static void ngx_voice_upstream_resolve_handler(ngx_resolver_ctx_t *ctx);
static ngx_int_t ngx_voice_upstream_copy_addrs(ngx_voice_upstream_t *u,
    ngx_resolver_ctx_t *ctx);
static void ngx_voice_upstream_connect(ngx_voice_upstream_t *u);
static void ngx_voice_upstream_connected(ngx_voice_upstream_t *u);
static void ngx_voice_upstream_next(ngx_voice_upstream_t *u);
static void ngx_voice_upstream_drop(ngx_voice_upstream_t *u);
static void ngx_voice_upstream_ssl_init(ngx_voice_upstream_t *u);
static void ngx_voice_upstream_ssl_handshake(ngx_connection_t *c);
static ngx_int_t ngx_voice_upstream_ssl_handshaked(ngx_voice_upstream_t *u,
    ngx_connection_t *c);
static ngx_int_t ngx_voice_upstream_verify(ngx_voice_upstream_t *u,
    ngx_connection_t *c);
static void ngx_voice_upstream_save_session(ngx_connection_t *c);
static ngx_int_t ngx_voice_upstream_create_request(ngx_voice_upstream_t *u);
static void ngx_voice_upstream_send_request(ngx_voice_upstream_t *u);
static void ngx_voice_upstream_read_handshake(ngx_voice_upstream_t *u);
static void ngx_voice_upstream_open(ngx_voice_upstream_t *u, u_char *pos,
    u_char *last);
static void ngx_voice_upstream_dummy_handler(ngx_voice_upstream_t *u);
static void ngx_voice_upstream_timeout(ngx_event_t *ev);
static void ngx_voice_upstream_fail(ngx_voice_upstream_t *u,
    ngx_voice_upstream_stage_e stage, const char *reason);
static ngx_voice_upstream_stage_e ngx_voice_upstream_stage(
    ngx_voice_upstream_t *u);


void
ngx_voice_upstream_start(ngx_voice_upstream_t *u)
{
    ngx_voice_openai_conf_t  *conf;

    conf = u->conf;

    u->read_event_handler = ngx_voice_upstream_dummy_handler;
    u->write_event_handler = ngx_voice_upstream_dummy_handler;

    u->deadline = ngx_current_msec + conf->connect_timeout;

    u->timer.handler = ngx_voice_upstream_timeout;
    u->timer.data = u;
    u->timer.log = u->log;
    u->timer.cancelable = 1;
    ngx_add_timer(&u->timer, conf->connect_timeout);

    if (conf->addrs) {
        u->addrs = conf->addrs;
        u->naddrs = conf->naddrs;
        ngx_voice_upstream_connect(u);
        return;
    }

    ngx_voice_upstream_resolve(u);
}


/*
 * Every event of the connection comes here, as to ngx_http_upstream's
 * handler: the write or the read handler of the moment, then the posted
 * requests of the Twilio connection, taken first, as the call and its
 * request may be gone by then.
 */
static void
ngx_voice_upstream_handler(ngx_event_t *ev)
{
    ngx_connection_t      *c, *dc;
    ngx_voice_upstream_t  *u;

    c = ev->data;
    u = c->data;
    dc = u->request->connection;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, u->log, 0,
                   "voice: OpenAI %s event", ev->write ? "write" : "read");

    if (ev->write) {
        u->write_event_handler(u);

    } else {
        u->read_event_handler(u);
    }

    ngx_http_run_posted_requests(dc);
}


/* as proxy_pass with a variable: nginx's resolver, at run time */
static void
ngx_voice_upstream_resolve(ngx_voice_upstream_t *u)
{
    ngx_resolver_ctx_t       *ctx, temp;
    ngx_voice_openai_conf_t  *conf;

    conf = u->conf;

    if (conf->resolver == NULL) {
        /* log-safe: names from the configuration */
        ngx_log_error(NGX_LOG_ERR, u->log, 0,
                      "voice: no resolver defined to resolve %V, and it "
                      "could not be resolved at start", &conf->host);
        ngx_voice_upstream_fail(u, NGX_VOICE_UPSTREAM_DNS,
                                "cannot resolve OpenAI");
        return;
    }

    ngx_memzero(&temp, sizeof(ngx_resolver_ctx_t));
    temp.name = conf->host;

    ctx = ngx_resolve_start(conf->resolver, &temp);

    if (ctx == NULL || ctx == NGX_NO_RESOLVER) {
        ngx_voice_upstream_fail(u, NGX_VOICE_UPSTREAM_DNS, "resolver failed");
        return;
    }

    ctx->name = conf->host;
    ctx->handler = ngx_voice_upstream_resolve_handler;
    ctx->data = u;
    ctx->timeout = conf->resolver_timeout;

    u->resolve = ctx;

    /* log-safe: names from the configuration */
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, u->log, 0,
                   "voice: resolving %V", &conf->host);

    /* the handler may run before this returns */

    if (ngx_resolve_name(ctx) != NGX_OK) {
        u->resolve = NULL;
        ngx_voice_upstream_fail(u, NGX_VOICE_UPSTREAM_DNS, "resolver failed");
    }
}


static void
ngx_voice_upstream_resolve_handler(ngx_resolver_ctx_t *ctx)
{
    ngx_voice_upstream_t  *u = ctx->data;

    ngx_connection_t  *dc;

    dc = u->request->connection;

    u->resolve = NULL;

    if (ctx->state) {
        /* log-safe: constant text; names from the configuration */
        ngx_log_error(NGX_LOG_ERR, u->log, 0,
                      "voice: %V could not be resolved (%i: %s)",
                      &ctx->name, ctx->state,
                      ngx_resolver_strerror(ctx->state));
        ngx_resolve_name_done(ctx);
        ngx_voice_upstream_fail(u, NGX_VOICE_UPSTREAM_DNS,
                                "cannot resolve OpenAI");
        goto done;
    }

    if (ngx_voice_upstream_copy_addrs(u, ctx) != NGX_OK) {
        ngx_resolve_name_done(ctx);
        ngx_voice_upstream_fail(u, NGX_VOICE_UPSTREAM_DNS, "out of memory");
        goto done;
    }

    ngx_resolve_name_done(ctx);

    ngx_voice_upstream_connect(u);

done:

    ngx_http_run_posted_requests(dc);
}


/* the resolver's memory is not ours to keep */
static ngx_int_t
ngx_voice_upstream_copy_addrs(ngx_voice_upstream_t *u,
    ngx_resolver_ctx_t *ctx)
{
    size_t       len;
    ngx_uint_t   i;
    ngx_pool_t  *pool;
    ngx_addr_t  *addrs;

    pool = u->request->pool;

    addrs = ngx_pcalloc(pool, ctx->naddrs * sizeof(ngx_addr_t));
    if (addrs == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < ctx->naddrs; i++) {
        len = ctx->addrs[i].socklen;

        addrs[i].sockaddr = ngx_palloc(pool, len);
        if (addrs[i].sockaddr == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(addrs[i].sockaddr, ctx->addrs[i].sockaddr, len);
        addrs[i].socklen = len;
        ngx_inet_set_port(addrs[i].sockaddr, u->conf->port);

        addrs[i].name.data = ngx_pnalloc(pool, NGX_SOCKADDR_STRLEN);
        if (addrs[i].name.data == NULL) {
            return NGX_ERROR;
        }

        addrs[i].name.len = ngx_sock_ntop(addrs[i].sockaddr, len,
                                          addrs[i].name.data,
                                          NGX_SOCKADDR_STRLEN, 1);
    }

    u->addrs = addrs;
    u->naddrs = ctx->naddrs;

    return NGX_OK;
}


static void
ngx_voice_upstream_connect(ngx_voice_upstream_t *u)
{
    ngx_int_t               rc;
    ngx_msec_t              left, share;
    ngx_addr_t             *addr;
    ngx_connection_t       *c;
    ngx_peer_connection_t  *pc;

    pc = &u->peer;

    for ( ;; ) {

        if (u->addr >= u->naddrs) {
            ngx_voice_upstream_fail(u, NGX_VOICE_UPSTREAM_CONNECT,
                                    "cannot connect to OpenAI");
            return;
        }

        addr = &u->addrs[u->addr];

        ngx_memzero(pc, sizeof(ngx_peer_connection_t));

        pc->sockaddr = addr->sockaddr;
        pc->socklen = addr->socklen;
        pc->name = &addr->name;
        pc->get = ngx_event_get_peer;
        pc->log = u->log;
        pc->log_error = NGX_ERROR_ERR;

        /* log-safe: a leg's own name or an address */
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, u->log, 0,
                       "voice: connecting to OpenAI at %V", pc->name);

        rc = ngx_event_connect_peer(pc);

        if (rc == NGX_ERROR) {
            ngx_voice_upstream_fail(u, NGX_VOICE_UPSTREAM_CONNECT,
                                    "cannot connect to OpenAI");
            return;
        }

        if (rc == NGX_BUSY || rc == NGX_DECLINED) {
            u->addr++;
            continue;
        }

        break;
    }

    c = pc->connection;
    c->data = u;

    u->pool = ngx_create_pool(2048, u->log);
    if (u->pool == NULL) {
        ngx_voice_upstream_fail(u, NGX_VOICE_UPSTREAM_CONNECT,
                                "out of memory");
        return;
    }

    /* its own pool, as TLS sessions and buffers live with the connection */
    c->pool = u->pool;

    c->read->handler = ngx_voice_upstream_handler;
    c->write->handler = ngx_voice_upstream_handler;

    u->read_event_handler = ngx_voice_upstream_connected;
    u->write_event_handler = ngx_voice_upstream_connected;

    if (rc == NGX_AGAIN) {
        /* this address's share of the time left; the others get theirs */
        left = u->deadline - ngx_current_msec;

        if ((ngx_msec_int_t) left <= 0) {
            left = 1;
        }

        share = left / (u->naddrs - u->addr);
        ngx_add_timer(c->write, ngx_max(share, 1));
        return;
    }

    ngx_voice_upstream_ssl_init(u);
}


static void
ngx_voice_upstream_connected(ngx_voice_upstream_t *u)
{
    int                err;
    socklen_t          len;
    ngx_connection_t  *c;

    c = u->peer.connection;

    if (c->close) {
        /*
         * worker_shutdown_timeout: the Twilio leg gets the same event and
         * ends the call, which drops this connection; not an OpenAI fault
         */
        c->close = 0;
        c->error = 0;
        return;
    }

    if (c->write->timedout) {
        /* log-safe: a leg's own name or an address */
        ngx_log_error(NGX_LOG_ERR, u->log, NGX_ETIMEDOUT,
                      "voice: connect() to OpenAI at %V timed out",
                      u->peer.name);
        ngx_voice_upstream_next(u);
        return;
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        /* log-safe: a leg's own name or an address */
        ngx_log_error(NGX_LOG_ERR, u->log, err,
                      "voice: connect() to OpenAI at %V failed",
                      u->peer.name);
        ngx_voice_upstream_next(u);
        return;
    }

    ngx_voice_upstream_ssl_init(u);
}


/* the next resolved address, if any */
static void
ngx_voice_upstream_next(ngx_voice_upstream_t *u)
{
    ngx_voice_upstream_drop(u);

    u->addr++;

    ngx_voice_upstream_connect(u);
}


/* the connection of one attempt, with its TLS state and pool */
static void
ngx_voice_upstream_drop(ngx_voice_upstream_t *u)
{
    ngx_connection_t  *c;

    c = u->peer.connection;

    if (c) {
        if (c->ssl) {
            if (!c->ssl->handshaked) {
                c->log->action = u->action;
            }

            c->ssl->no_wait_shutdown = 1;
            (void) ngx_ssl_shutdown(c);
        }

        ngx_close_connection(c);
        u->peer.connection = NULL;
    }

    if (u->pool) {
        ngx_destroy_pool(u->pool);
        u->pool = NULL;
    }
}


static void
ngx_voice_upstream_ssl_init(ngx_voice_upstream_t *u)
{
    ngx_int_t                 rc;
    ngx_connection_t         *c;
    ngx_voice_openai_conf_t  *conf;

    c = u->peer.connection;
    conf = u->conf;

    /*
     * No NGX_SSL_BUFFER: the peer's output chunks already hold whole
     * frames, written as they are, a chunk an SSL_write(), without
     * nginx's 16 KiB buffer for each call and a copy into it
     */

    if (ngx_ssl_create_connection(conf->ssl, c, NGX_SSL_CLIENT) != NGX_OK)
    {
        ngx_voice_upstream_fail(u, NGX_VOICE_UPSTREAM_TLS,
                                "TLS setup failed");
        return;
    }

    c->sendfile = 0;

    /* SNI, but not for an IP literal (RFC 6066) */

    if (!conf->ssl_name_is_ip
        && SSL_set_tlsext_host_name(c->ssl->connection,
                                    (char *) conf->ssl_name_z)
           == 0)
    {
        ngx_ssl_error(NGX_LOG_ERR, u->log, 0,
                      "SSL_set_tlsext_host_name(\"%s\") failed",
                      conf->ssl_name_z);
        ngx_voice_upstream_fail(u, NGX_VOICE_UPSTREAM_TLS,
                                "TLS setup failed");
        return;
    }

    if (conf->ssl_session_reuse) {
        if (conf->ssl_session
            && ngx_ssl_set_session(c, conf->ssl_session) != NGX_OK)
        {
            ngx_voice_upstream_fail(u, NGX_VOICE_UPSTREAM_TLS,
                                    "TLS setup failed");
            return;
        }

        c->ssl->save_session = ngx_voice_upstream_save_session;
    }

    /* the log is the call's, shared with Twilio: its action comes back */
    u->action = c->log->action;
    c->log->action = "SSL handshaking to OpenAI";

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        /* nginx's handshake handler calls ours when it is done */
        c->ssl->handler = ngx_voice_upstream_ssl_handshake;
        return;
    }

    if (ngx_voice_upstream_ssl_handshaked(u, c) == NGX_OK) {
        ngx_voice_upstream_send_request(u);
    }
}


/* called by nginx's TLS handshake handler, not through ours */
static void
ngx_voice_upstream_ssl_handshake(ngx_connection_t *c)
{
    ngx_connection_t      *dc;
    ngx_voice_upstream_t  *u;

    u = c->data;
    dc = u->request->connection;

    if (ngx_voice_upstream_ssl_handshaked(u, c) == NGX_OK) {
        ngx_voice_upstream_send_request(u);
    }

    ngx_http_run_posted_requests(dc);
}


static ngx_int_t
ngx_voice_upstream_ssl_handshaked(ngx_voice_upstream_t *u,
    ngx_connection_t *c)
{
    c->log->action = u->action;

    if (!c->ssl->handshaked) {
        /* log-safe: a leg's own name or an address */
        ngx_log_error(NGX_LOG_ERR, u->log, 0,
                      "voice: TLS handshake with OpenAI at %V failed",
                      u->peer.name);

        if (u->addr + 1 < u->naddrs) {
            /* another address may answer: the connect timer still runs */
            ngx_voice_upstream_next(u);
            return NGX_DECLINED;
        }

        ngx_voice_upstream_fail(u, NGX_VOICE_UPSTREAM_TLS,
                                "TLS handshake failed");
        return NGX_ERROR;
    }

    if (u->conf->ssl_verify && ngx_voice_upstream_verify(u, c) != NGX_OK) {
        ngx_voice_upstream_fail(u, NGX_VOICE_UPSTREAM_TLS,
                                "TLS verification failed");
        return NGX_ERROR;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, u->log, 0,
                   "voice: TLS with OpenAI established");

    if (ngx_voice_upstream_create_request(u) != NGX_OK) {
        ngx_voice_upstream_fail(u, NGX_VOICE_UPSTREAM_HANDSHAKE,
                                "out of memory");
        return NGX_ERROR;
    }

    c->read->handler = ngx_voice_upstream_handler;
    c->write->handler = ngx_voice_upstream_handler;

    u->read_event_handler = ngx_voice_upstream_read_handshake;
    u->write_event_handler = ngx_voice_upstream_send_request;

    return NGX_OK;
}


static ngx_int_t
ngx_voice_upstream_verify(ngx_voice_upstream_t *u, ngx_connection_t *c)
{
    long                      rc;
    X509                     *cert;
    ngx_voice_openai_conf_t  *conf;

    conf = u->conf;

    rc = SSL_get_verify_result(c->ssl->connection);

    if (rc != X509_V_OK) {
        /* log-safe: constant text */
        ngx_log_error(NGX_LOG_ERR, u->log, 0,
                      "voice: OpenAI SSL certificate verify error: (%l:%s)",
                      rc, X509_verify_cert_error_string(rc));
        return NGX_ERROR;
    }

    if (!conf->ssl_name_is_ip) {
        if (ngx_ssl_check_host(c, &conf->ssl_server_name) != NGX_OK) {
            /* log-safe: names from the configuration */
            ngx_log_error(NGX_LOG_ERR, u->log, 0,
                          "voice: OpenAI SSL certificate does not match "
                          "\"%V\"", &conf->ssl_server_name);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    /* an IP literal is checked against the certificate's IP SANs */

    cert = SSL_get_peer_certificate(c->ssl->connection);
    if (cert == NULL) {
        return NGX_ERROR;
    }

    rc = X509_check_ip_asc(cert, (char *) conf->ssl_name_z, 0);
    X509_free(cert);

    if (rc != 1) {
        /* log-safe: names from the configuration */
        ngx_log_error(NGX_LOG_ERR, u->log, 0,
                      "voice: OpenAI SSL certificate does not match "
                      "\"%V\"", &conf->ssl_server_name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the newest session of this location, for the next call's handshake */
static void
ngx_voice_upstream_save_session(ngx_connection_t *c)
{
    ngx_ssl_session_t        *session;
    ngx_voice_upstream_t     *u;
    ngx_voice_openai_conf_t  *conf;

    u = c->data;
    conf = u->conf;

    session = ngx_ssl_get_session(c);
    if (session == NULL) {
        return;
    }

    if (conf->ssl_session) {
        ngx_ssl_free_session(conf->ssl_session);
    }

    conf->ssl_session = session;
}


static ngx_int_t
ngx_voice_upstream_create_request(ngx_voice_upstream_t *u)
{
    size_t                    len;
    ngx_buf_t                *b;
    ngx_str_t                 key, raw;
    ngx_voice_openai_conf_t  *conf;
    u_char                    rnd[16];

    conf = u->conf;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        return NGX_ERROR;
    }

    raw.data = rnd;
    raw.len = sizeof(rnd);
    key.data = u->ws_key;
    ngx_encode_base64(&key, &raw);

    len = sizeof("GET  HTTP/1.1\r\n") - 1 + conf->uri.len
          + sizeof("Host: \r\n") - 1 + conf->host_header.len
          + sizeof("Authorization: Bearer \r\n") - 1 + conf->api_key.len
          + sizeof("Upgrade: websocket\r\n") - 1
          + sizeof("Connection: Upgrade\r\n") - 1
          + sizeof("Sec-WebSocket-Key: \r\n") - 1 + key.len
          + sizeof("Sec-WebSocket-Version: 13\r\n\r\n") - 1;

    b = ngx_create_temp_buf(u->pool, len);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last = ngx_sprintf(b->last, "GET %V HTTP/1.1\r\n"
                                   "Host: %V\r\n"
                                   "Authorization: Bearer %V\r\n"
                                   "Upgrade: websocket\r\n"
                                   "Connection: Upgrade\r\n"
                                   "Sec-WebSocket-Key: %V\r\n"
                                   "Sec-WebSocket-Version: 13\r\n\r\n",
                          &conf->uri, &conf->host_header,
                          &conf->api_key, &key);

    u->handshake = b;

    return NGX_OK;
}


static void
ngx_voice_upstream_send_request(ngx_voice_upstream_t *u)
{
    ssize_t            n;
    ngx_buf_t         *b;
    ngx_connection_t  *c;

    c = u->peer.connection;
    b = u->handshake;

    while (b->pos < b->last) {
        n = c->send(c, b->pos, b->last - b->pos);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_voice_upstream_fail(u, NGX_VOICE_UPSTREAM_HANDSHAKE,
                                        "cannot send to OpenAI");
            }

            return;
        }

        if (n == NGX_ERROR) {
            ngx_log_error(NGX_LOG_ERR, u->log, 0,
                          "voice: sending the handshake to OpenAI failed");
            ngx_voice_upstream_fail(u, NGX_VOICE_UPSTREAM_HANDSHAKE,
                                    "cannot send to OpenAI");
            return;
        }

        b->pos += n;
    }

    /* the request held the API key: it does not outlive its sending */

    ngx_explicit_memzero(b->start, b->end - b->start);

    b = ngx_create_temp_buf(u->pool, NGX_VOICE_HANDSHAKE_MAX);
    if (b == NULL) {
        ngx_voice_upstream_fail(u, NGX_VOICE_UPSTREAM_HANDSHAKE,
                                "out of memory");
        return;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, u->log, 0,
                   "voice: WebSocket handshake sent to OpenAI");

    u->handshake = b;
    u->request_sent = 1;

    /* nothing more to write until the WebSocket is open */
    u->write_event_handler = ngx_voice_upstream_dummy_handler;

    ngx_voice_upstream_read_handshake(u);
}


static void
ngx_voice_upstream_read_handshake(ngx_voice_upstream_t *u)
{
    u_char            *p, *end;
    ssize_t            n;
    ngx_int_t          rc;
    ngx_buf_t         *b;
    ngx_connection_t  *c;

    c = u->peer.connection;
    b = u->handshake;

    if (!u->request_sent) {
        /* the answer can only come after the whole request */
        return;
    }

    for ( ;; ) {

        if (b->last == b->end) {
            ngx_log_error(NGX_LOG_ERR, u->log, 0,
                          "voice: OpenAI handshake response headers are "
                          "larger than %d bytes", NGX_VOICE_HANDSHAKE_MAX);
            ngx_voice_upstream_fail(u, NGX_VOICE_UPSTREAM_HANDSHAKE,
                                    "bad handshake");
            return;
        }

        n = c->recv(c, b->last, b->end - b->last);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                ngx_voice_upstream_fail(u, NGX_VOICE_UPSTREAM_HANDSHAKE,
                                        "cannot read from OpenAI");
            }

            return;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_log_error(NGX_LOG_ERR, u->log, 0,
                          "voice: OpenAI closed the connection during "
                          "the WebSocket handshake");
            ngx_voice_upstream_fail(u, NGX_VOICE_UPSTREAM_HANDSHAKE,
                                    "bad handshake");
            return;
        }

        p = (b->last - b->pos > 3) ? b->last - 3 : b->pos;
        b->last += n;

        end = ngx_strlcasestrn(p, b->last, (u_char *) "\r\n\r\n", 4 - 1);

        if (end == NULL) {
            continue;
        }

        end += 4;

        rc = ngx_voice_ws_parse_response(b->pos, end, u->ws_key, u->log);

        if (rc != NGX_OK) {
            ngx_voice_upstream_fail(u,
                                    rc == NGX_DECLINED
                                    ? NGX_VOICE_UPSTREAM_HTTP_STATUS
                                    : NGX_VOICE_UPSTREAM_HANDSHAKE,
                                    "handshake refused");
            return;
        }

        ngx_voice_upstream_open(u, end, b->last);
        return;
    }
}


static void
ngx_voice_upstream_open(ngx_voice_upstream_t *u, u_char *pos, u_char *last)
{
    u_char            *in;
    size_t             n;
    ngx_connection_t  *c;

    c = u->peer.connection;

    /*
     * The handshake buffer is not kept for the call: the bytes behind the
     * 101 go on from the worker's read buffer, parsed before it is read
     * into again.
     */

    n = last - pos;
    in = ngx_voice_peer_read_buffer();
    ngx_memcpy(in, pos, n);

    ngx_pfree(u->pool, u->handshake->start);
    u->handshake = NULL;

    if (u->timer.timer_set) {
        ngx_del_timer(&u->timer);
    }

    if (c->tcp_nodelay == NGX_TCP_NODELAY_UNSET) {
        (void) ngx_tcp_nodelay(c);
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, u->log, 0,
                   "voice: OpenAI WebSocket open");

    u->read_event_handler = ngx_voice_upstream_dummy_handler;
    u->write_event_handler = ngx_voice_upstream_dummy_handler;

    u->ready(u, in, in + n);
}


/* nothing to do for this event but to keep it armed */
static void
ngx_voice_upstream_dummy_handler(ngx_voice_upstream_t *u)
{
    ngx_connection_t  *c;

    c = u->peer.connection;

    if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
        ngx_voice_upstream_fail(u, ngx_voice_upstream_stage(u),
                                "cannot write to OpenAI");
    }
}


static void
ngx_voice_upstream_timeout(ngx_event_t *ev)
{
    ngx_voice_upstream_t  *u = ev->data;

    ngx_connection_t  *dc;

    dc = u->request->connection;

    ngx_log_error(NGX_LOG_ERR, u->log, NGX_ETIMEDOUT,
                  "voice: OpenAI connection not established within "
                  "voice_connect_timeout");

    ngx_voice_upstream_fail(u, ngx_voice_upstream_stage(u),
                            "OpenAI timed out");

    ngx_http_run_posted_requests(dc);
}


/* how far the set-up got, for a failure that can come at any stage */
static ngx_voice_upstream_stage_e
ngx_voice_upstream_stage(ngx_voice_upstream_t *u)
{
    ngx_connection_t  *c;

    c = u->peer.connection;

    if (c == NULL) {
        return u->addrs ? NGX_VOICE_UPSTREAM_CONNECT : NGX_VOICE_UPSTREAM_DNS;
    }

    if (c->ssl == NULL) {
        return NGX_VOICE_UPSTREAM_CONNECT;
    }

    if (!c->ssl->handshaked) {
        return NGX_VOICE_UPSTREAM_TLS;
    }

    return NGX_VOICE_UPSTREAM_HANDSHAKE;
}


static void
ngx_voice_upstream_fail(ngx_voice_upstream_t *u,
    ngx_voice_upstream_stage_e stage, const char *reason)
{
    ngx_voice_upstream_close(u);

    u->failed(u, stage, reason);
}


void
ngx_voice_upstream_close(ngx_voice_upstream_t *u)
{
    if (u->resolve) {
        ngx_resolve_name_done(u->resolve);
        u->resolve = NULL;
    }

    if (u->timer.timer_set) {
        ngx_del_timer(&u->timer);
    }

    ngx_voice_upstream_drop(u);
}
