
/*
 * Copyright (C) ngx_voice authors
 *
 * The OpenAI leg, driven from nginx's event loop: name resolution through
 * nginx's resolver (or addresses resolved at configuration time), a
 * non-blocking connect to each address in turn, TLS with nginx's ngx_ssl
 * (SNI, certificate and host name checks, sessions reused across calls),
 * then the WebSocket client handshake.  voice_connect_timeout covers it
 * all.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_http.h>
#include <ngx_sha1.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include "ngx_voice_call.h"


#define NGX_VOICE_HANDSHAKE_MAX  4096
#define NGX_VOICE_WS_GUID  "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


static void ngx_voice_upstream_resolve_handler(ngx_resolver_ctx_t *ctx);
static void ngx_voice_upstream_connect(ngx_voice_call_t *call);
static void ngx_voice_upstream_connect_handler(ngx_event_t *ev);
static void ngx_voice_upstream_next(ngx_voice_call_t *call);
static void ngx_voice_upstream_drop(ngx_voice_call_t *call);
static void ngx_voice_upstream_ssl_init(ngx_voice_call_t *call);
static void ngx_voice_upstream_ssl_handshake(ngx_connection_t *c);
static ngx_int_t ngx_voice_upstream_verify(ngx_voice_call_t *call,
    ngx_connection_t *c);
static void ngx_voice_upstream_save_session(ngx_connection_t *c);
static ngx_int_t ngx_voice_upstream_create_request(ngx_voice_call_t *call);
static void ngx_voice_upstream_send_handler(ngx_event_t *ev);
static void ngx_voice_upstream_read_handshake(ngx_event_t *ev);
static ngx_int_t ngx_voice_upstream_parse_handshake(ngx_voice_call_t *call,
    u_char *end);
static ngx_int_t ngx_voice_upstream_header_is(u_char *line, u_char *end,
    const char *name, u_char **value);
static void ngx_voice_upstream_open(ngx_voice_call_t *call, u_char *pos,
    u_char *last);
static void ngx_voice_upstream_read_handler(ngx_event_t *ev);
static void ngx_voice_upstream_write_idle(ngx_event_t *ev);
static void ngx_voice_upstream_write_handler(ngx_event_t *ev);
static void ngx_voice_upstream_timeout(ngx_event_t *ev);
static void ngx_voice_upstream_fail(ngx_voice_call_t *call,
    const char *reason);
static void ngx_voice_upstream_done(ngx_connection_t *dc);


ngx_int_t
ngx_voice_upstream_start(ngx_voice_call_t *call)
{
    ngx_str_t                  host;
    ngx_resolver_ctx_t        *ctx, temp;
    ngx_voice_loc_conf_t      *conf;
    ngx_http_core_loc_conf_t  *clcf;

    conf = call->conf;

    call->connect_timer.handler = ngx_voice_upstream_timeout;
    call->connect_timer.data = call;
    call->connect_timer.log = call->log;
    call->connect_timer.cancelable = 1;
    ngx_add_timer(&call->connect_timer, conf->connect_timeout);

    if (conf->openai_naddrs) {
        call->addrs = conf->openai_addrs;
        call->naddrs = conf->openai_naddrs;
        ngx_voice_upstream_connect(call);
        return NGX_OK;
    }

    /* as proxy_pass with a variable: nginx's resolver, at run time */

    clcf = ngx_http_get_module_loc_conf(call->request, ngx_http_core_module);
    host = conf->openai_host;

    ngx_memzero(&temp, sizeof(ngx_resolver_ctx_t));
    temp.name = host;

    ctx = ngx_resolve_start(clcf->resolver, &temp);

    if (ctx == NULL) {
        ngx_voice_upstream_fail(call, "resolver failed");
        return NGX_OK;
    }

    if (ctx == NGX_NO_RESOLVER) {
        /* log-safe: the OpenAI host, from nginx.conf */
        ngx_log_error(NGX_LOG_ERR, call->log, 0,
                      "voice: no resolver defined to resolve %V, and it "
                      "could not be resolved at start", &host);
        ngx_voice_upstream_fail(call, "cannot resolve OpenAI");
        return NGX_OK;
    }

    ctx->name = host;
    ctx->handler = ngx_voice_upstream_resolve_handler;
    ctx->data = call;
    ctx->timeout = clcf->resolver_timeout;

    call->resolve = ctx;

    /* the handler may run before this returns */

    if (ngx_resolve_name(ctx) != NGX_OK) {
        call->resolve = NULL;
        ngx_voice_upstream_fail(call, "resolver failed");
    }

    return NGX_OK;
}


static void
ngx_voice_upstream_resolve_handler(ngx_resolver_ctx_t *ctx)
{
    ngx_voice_call_t  *call = ctx->data;

    size_t             len;
    ngx_uint_t         i;
    ngx_addr_t        *addrs;
    ngx_connection_t  *dc;

    dc = call->request->connection;

    if (ctx->state) {
        /* log-safe: the OpenAI host, the resolver's own error text */
        ngx_log_error(NGX_LOG_ERR, call->log, 0,
                      "voice: %V could not be resolved (%i: %s)",
                      &ctx->name, ctx->state,
                      ngx_resolver_strerror(ctx->state));
        ngx_resolve_name_done(ctx);
        call->resolve = NULL;
        ngx_voice_upstream_fail(call, "cannot resolve OpenAI");
        goto done;
    }

    /* the resolver's memory is not ours to keep */

    addrs = ngx_pcalloc(call->request->pool,
                        ctx->naddrs * sizeof(ngx_addr_t));
    if (addrs == NULL) {
        goto failed;
    }

    for (i = 0; i < ctx->naddrs; i++) {
        len = ctx->addrs[i].socklen;

        addrs[i].sockaddr = ngx_palloc(call->request->pool, len);
        if (addrs[i].sockaddr == NULL) {
            goto failed;
        }

        ngx_memcpy(addrs[i].sockaddr, ctx->addrs[i].sockaddr, len);
        addrs[i].socklen = len;
        ngx_inet_set_port(addrs[i].sockaddr, call->conf->openai_port);

        addrs[i].name.data = ngx_pnalloc(call->request->pool,
                                         NGX_SOCKADDR_STRLEN);
        if (addrs[i].name.data == NULL) {
            goto failed;
        }

        addrs[i].name.len = ngx_sock_ntop(addrs[i].sockaddr, len,
                                          addrs[i].name.data,
                                          NGX_SOCKADDR_STRLEN, 1);
    }

    call->addrs = addrs;
    call->naddrs = ctx->naddrs;

    ngx_resolve_name_done(ctx);
    call->resolve = NULL;

    ngx_voice_upstream_connect(call);

    goto done;

failed:

    ngx_resolve_name_done(ctx);
    call->resolve = NULL;
    ngx_voice_upstream_fail(call, "out of memory");

done:

    ngx_voice_upstream_done(dc);
}


static void
ngx_voice_upstream_connect(ngx_voice_call_t *call)
{
    ngx_int_t          rc;
    ngx_addr_t        *addr;
    ngx_connection_t  *c;

    for ( ;; ) {

        if (call->addr >= call->naddrs) {
            ngx_voice_upstream_fail(call, "cannot connect to OpenAI");
            return;
        }

        addr = &call->addrs[call->addr];

        ngx_memzero(&call->pc, sizeof(ngx_peer_connection_t));

        call->pc.sockaddr = addr->sockaddr;
        call->pc.socklen = addr->socklen;
        call->pc.name = &addr->name;
        call->pc.get = ngx_event_get_peer;
        call->pc.log = call->log;
        call->pc.log_error = NGX_ERROR_ERR;

        rc = ngx_event_connect_peer(&call->pc);

        if (rc == NGX_ERROR) {
            ngx_voice_upstream_fail(call, "cannot connect to OpenAI");
            return;
        }

        if (rc == NGX_BUSY || rc == NGX_DECLINED) {
            call->addr++;
            continue;
        }

        break;
    }

    c = call->pc.connection;
    c->data = call;

    call->upstream_pool = ngx_create_pool(2048, call->log);
    if (call->upstream_pool == NULL) {
        ngx_voice_upstream_fail(call, "out of memory");
        return;
    }

    /* its own pool, as TLS sessions and buffers live with the connection */
    c->pool = call->upstream_pool;

    c->read->handler = ngx_voice_upstream_connect_handler;
    c->write->handler = ngx_voice_upstream_connect_handler;

    if (rc == NGX_AGAIN) {
        return;
    }

    ngx_voice_upstream_ssl_init(call);
}


static void
ngx_voice_upstream_connect_handler(ngx_event_t *ev)
{
    int                err;
    socklen_t          len;
    ngx_connection_t  *c, *dc;
    ngx_voice_call_t  *call;

    c = ev->data;
    call = c->data;
    dc = call->request->connection;

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        /* log-safe: pc.name: the address nginx resolved */
        ngx_log_error(NGX_LOG_ERR, call->log, err,
                      "voice: connect() to OpenAI at %V failed",
                      call->pc.name);
        ngx_voice_upstream_next(call);
        ngx_voice_upstream_done(dc);
        return;
    }

    ngx_voice_upstream_ssl_init(call);
    ngx_voice_upstream_done(dc);
}


/* the next resolved address, if any */
static void
ngx_voice_upstream_next(ngx_voice_call_t *call)
{
    ngx_voice_upstream_drop(call);

    call->addr++;

    ngx_voice_upstream_connect(call);
}


/* the connection of one attempt, with its TLS state and pool */
static void
ngx_voice_upstream_drop(ngx_voice_call_t *call)
{
    ngx_connection_t  *c;

    c = call->pc.connection;

    if (c) {
        if (c->ssl) {
            c->ssl->no_wait_shutdown = 1;
            (void) ngx_ssl_shutdown(c);
        }

        ngx_close_connection(c);
        call->pc.connection = NULL;
    }

    if (call->upstream_pool) {
        ngx_destroy_pool(call->upstream_pool);
        call->upstream_pool = NULL;
    }
}


static void
ngx_voice_upstream_ssl_init(ngx_voice_call_t *call)
{
    ngx_int_t              rc;
    ngx_connection_t      *c;
    ngx_voice_loc_conf_t  *conf;

    c = call->pc.connection;
    conf = call->conf;

    if (ngx_ssl_create_connection(conf->ssl, c,
                                  NGX_SSL_BUFFER|NGX_SSL_CLIENT)
        != NGX_OK)
    {
        ngx_voice_upstream_fail(call, "TLS setup failed");
        return;
    }

    c->sendfile = 0;

    /* SNI, but not for an IP literal (RFC 6066) */

    if (!conf->ssl_name_is_ip
        && SSL_set_tlsext_host_name(c->ssl->connection,
                                    (char *) conf->ssl_name_z)
           == 0)
    {
        ngx_ssl_error(NGX_LOG_ERR, call->log, 0,
                      "SSL_set_tlsext_host_name(\"%s\") failed",
                      conf->ssl_name_z);
        ngx_voice_upstream_fail(call, "TLS setup failed");
        return;
    }

    if (conf->ssl_session_reuse) {
        if (conf->ssl_session
            && ngx_ssl_set_session(c, conf->ssl_session) != NGX_OK)
        {
            ngx_voice_upstream_fail(call, "TLS setup failed");
            return;
        }

        c->ssl->save_session = ngx_voice_upstream_save_session;
    }

    c->log->action = "SSL handshaking to OpenAI";

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        c->ssl->handler = ngx_voice_upstream_ssl_handshake;
        return;
    }

    ngx_voice_upstream_ssl_handshake(c);
}


static void
ngx_voice_upstream_ssl_handshake(ngx_connection_t *c)
{
    ngx_connection_t  *dc;
    ngx_voice_call_t  *call;

    call = c->data;
    dc = call->request->connection;

    c->log->action = "relaying a voice call";

    if (!c->ssl->handshaked) {
        /* log-safe: pc.name: the address nginx resolved */
        ngx_log_error(NGX_LOG_ERR, call->log, 0,
                      "voice: TLS handshake with OpenAI at %V failed",
                      call->pc.name);

        if (call->addr + 1 < call->naddrs) {
            /* another address may answer: the connect timer still runs */
            ngx_voice_upstream_next(call);
            goto done;
        }

        ngx_voice_upstream_fail(call, "TLS handshake failed");
        goto done;
    }

    if (call->conf->ssl_verify && ngx_voice_upstream_verify(call, c) != NGX_OK)
    {
        ngx_voice_upstream_fail(call, "TLS verification failed");
        goto done;
    }

    if (ngx_voice_upstream_create_request(call) != NGX_OK) {
        ngx_voice_upstream_fail(call, "out of memory");
        goto done;
    }

    c->read->handler = ngx_voice_upstream_read_handshake;
    c->write->handler = ngx_voice_upstream_send_handler;

    ngx_voice_upstream_send_handler(c->write);
    return;

done:

    ngx_voice_upstream_done(dc);
}


static ngx_int_t
ngx_voice_upstream_verify(ngx_voice_call_t *call, ngx_connection_t *c)
{
    long                   rc;
    X509                  *cert;
    ngx_voice_loc_conf_t  *conf;

    conf = call->conf;

    rc = SSL_get_verify_result(c->ssl->connection);

    if (rc != X509_V_OK) {
        /* log-safe: OpenSSL's own error text */
        ngx_log_error(NGX_LOG_ERR, call->log, 0,
                      "voice: OpenAI SSL certificate verify error: (%l:%s)",
                      rc, X509_verify_cert_error_string(rc));
        return NGX_ERROR;
    }

    if (!conf->ssl_name_is_ip) {
        if (ngx_ssl_check_host(c, &conf->ssl_name) != NGX_OK) {
            /* log-safe: voice_ssl_name, from nginx.conf */
            ngx_log_error(NGX_LOG_ERR, call->log, 0,
                          "voice: OpenAI SSL certificate does not match "
                          "\"%V\"", &conf->ssl_name);
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
        /* log-safe: voice_ssl_name, from nginx.conf */
        ngx_log_error(NGX_LOG_ERR, call->log, 0,
                      "voice: OpenAI SSL certificate does not match "
                      "\"%V\"", &conf->ssl_name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the newest session of this location, for the next call's handshake */
static void
ngx_voice_upstream_save_session(ngx_connection_t *c)
{
    ngx_ssl_session_t     *session;
    ngx_voice_call_t      *call;
    ngx_voice_loc_conf_t  *conf;

    call = c->data;
    conf = call->conf;

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
ngx_voice_upstream_create_request(ngx_voice_call_t *call)
{
    size_t                 len;
    ngx_buf_t             *b;
    ngx_str_t              key, raw;
    ngx_voice_loc_conf_t  *conf;
    u_char                 rnd[16];

    conf = call->conf;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        return NGX_ERROR;
    }

    raw.data = rnd;
    raw.len = sizeof(rnd);
    key.data = call->ws_key;
    ngx_encode_base64(&key, &raw);

    len = sizeof("GET  HTTP/1.1\r\n") - 1 + conf->openai_uri.len
          + sizeof("Host: \r\n") - 1 + conf->openai_host_header.len
          + sizeof("Authorization: Bearer \r\n") - 1 + conf->openai_key.len
          + sizeof("Upgrade: websocket\r\n") - 1
          + sizeof("Connection: Upgrade\r\n") - 1
          + sizeof("Sec-WebSocket-Key: \r\n") - 1 + key.len
          + sizeof("Sec-WebSocket-Version: 13\r\n\r\n") - 1;

    b = ngx_create_temp_buf(call->upstream_pool, len);
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
                          &conf->openai_uri, &conf->openai_host_header,
                          &conf->openai_key, &key);

    call->handshake = b;

    return NGX_OK;
}


static void
ngx_voice_upstream_send_handler(ngx_event_t *ev)
{
    ssize_t            n;
    ngx_buf_t         *b;
    ngx_connection_t  *c, *dc;
    ngx_voice_call_t  *call;

    c = ev->data;
    call = c->data;
    dc = call->request->connection;
    b = call->handshake;

    while (b->pos < b->last) {
        n = c->send(c, b->pos, b->last - b->pos);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_voice_upstream_fail(call, "cannot send to OpenAI");
            }

            goto done;
        }

        if (n == NGX_ERROR) {
            ngx_log_error(NGX_LOG_ERR, call->log, 0,
                          "voice: sending the handshake to OpenAI failed");
            ngx_voice_upstream_fail(call, "cannot send to OpenAI");
            goto done;
        }

        b->pos += n;
    }

    /* the request held the API key: it does not outlive its sending */

    ngx_explicit_memzero(b->start, b->end - b->start);

    b = ngx_create_temp_buf(call->upstream_pool, NGX_VOICE_HANDSHAKE_MAX);
    if (b == NULL) {
        ngx_voice_upstream_fail(call, "out of memory");
        goto done;
    }

    call->handshake = b;
    call->request_sent = 1;

    /* nothing more to write until the WebSocket is open */
    c->write->handler = ngx_voice_upstream_write_idle;

    ngx_voice_upstream_read_handshake(c->read);
    return;

done:

    ngx_voice_upstream_done(dc);
}


static void
ngx_voice_upstream_read_handshake(ngx_event_t *ev)
{
    u_char            *p, *end;
    ssize_t            n;
    ngx_buf_t         *b;
    ngx_connection_t  *c, *dc;
    ngx_voice_call_t  *call;

    c = ev->data;
    call = c->data;
    dc = call->request->connection;
    b = call->handshake;

    if (!call->request_sent) {
        /* the answer can only come after the whole request */
        goto done;
    }

    for ( ;; ) {

        if (b->last == b->end) {
            ngx_log_error(NGX_LOG_ERR, call->log, 0,
                          "voice: OpenAI handshake response headers are "
                          "larger than %d bytes", NGX_VOICE_HANDSHAKE_MAX);
            ngx_voice_upstream_fail(call, "bad handshake");
            goto done;
        }

        n = c->recv(c, b->last, b->end - b->last);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                ngx_voice_upstream_fail(call, "cannot read from OpenAI");
            }

            goto done;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_log_error(NGX_LOG_ERR, call->log, 0,
                          "voice: OpenAI closed the connection during "
                          "the WebSocket handshake");
            ngx_voice_upstream_fail(call, "bad handshake");
            goto done;
        }

        p = (b->last - b->pos > 3) ? b->last - 3 : b->pos;
        b->last += n;

        end = ngx_strlcasestrn(p, b->last, (u_char *) "\r\n\r\n", 4 - 1);

        if (end == NULL) {
            continue;
        }

        end += 4;

        if (ngx_voice_upstream_parse_handshake(call, end) != NGX_OK) {
            ngx_voice_upstream_fail(call, "handshake refused");
            goto done;
        }

        ngx_voice_upstream_open(call, end, b->last);
        return;
    }

done:

    ngx_voice_upstream_done(dc);
}


static ngx_int_t
ngx_voice_upstream_parse_handshake(ngx_voice_call_t *call, u_char *end)
{
    u_char      *p, *line, *eol, *value;
    ngx_str_t    expected, digest;
    ngx_int_t    status;
    ngx_uint_t   upgrade, connection, accept;
    ngx_sha1_t   sha1;
    u_char       hash[20], b64[28];

    p = call->handshake->pos;

    if (end - p < 12 || ngx_strncmp(p, "HTTP/1.1 ", 9) != 0) {
        ngx_log_error(NGX_LOG_ERR, call->log, 0,
                      "voice: OpenAI answered the WebSocket handshake "
                      "with something that is not HTTP/1.1");
        return NGX_ERROR;
    }

    status = ngx_atoi(p + 9, 3);

    if (status != NGX_HTTP_SWITCHING_PROTOCOLS) {
        ngx_log_error(NGX_LOG_ERR, call->log, 0,
                      "voice: OpenAI refused the WebSocket handshake "
                      "with status %i", status);
        return NGX_ERROR;
    }

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, call->ws_key, sizeof(call->ws_key));
    ngx_sha1_update(&sha1, NGX_VOICE_WS_GUID, sizeof(NGX_VOICE_WS_GUID) - 1);
    ngx_sha1_final(hash, &sha1);

    digest.data = hash;
    digest.len = sizeof(hash);
    expected.data = b64;
    ngx_encode_base64(&expected, &digest);

    upgrade = 0;
    connection = 0;
    accept = 0;

    line = ngx_strlchr(p, end, '\n');

    while (line && ++line < end) {
        eol = ngx_strlchr(line, end, '\r');
        if (eol == NULL) {
            break;
        }

        if (ngx_voice_upstream_header_is(line, eol, "Upgrade", &value)) {
            upgrade = (eol - value == 9
                       && ngx_strncasecmp(value, (u_char *) "websocket", 9)
                          == 0);

        } else if (ngx_voice_upstream_header_is(line, eol, "Connection",
                                                &value))
        {
            connection = (ngx_strlcasestrn(value, eol, (u_char *) "upgrade",
                                           7 - 1)
                          != NULL);

        } else if (ngx_voice_upstream_header_is(line, eol,
                                                "Sec-WebSocket-Accept",
                                                &value))
        {
            accept = ((size_t) (eol - value) == expected.len
                      && ngx_memcmp(value, expected.data, expected.len) == 0);
        }

        line = ngx_strlchr(line, end, '\n');
    }

    if (!upgrade || !connection || !accept) {
        ngx_log_error(NGX_LOG_ERR, call->log, 0,
                      "voice: OpenAI WebSocket handshake has %s",
                      !accept ? "a wrong Sec-WebSocket-Accept"
                              : "no Upgrade: websocket");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* "Name: value" with the name compared case-insensitively */
static ngx_int_t
ngx_voice_upstream_header_is(u_char *line, u_char *end, const char *name,
    u_char **value)
{
    size_t   len;
    u_char  *p;

    len = ngx_strlen(name);

    if ((size_t) (end - line) <= len || line[len] != ':'
        || ngx_strncasecmp(line, (u_char *) name, len) != 0)
    {
        return 0;
    }

    for (p = line + len + 1; p < end && (*p == ' ' || *p == '\t'); p++) {
        /* void */
    }

    while (end > p && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }

    *value = p;

    return 1;
}


static void
ngx_voice_upstream_open(ngx_voice_call_t *call, u_char *pos, u_char *last)
{
    ngx_connection_t  *c, *dc;

    dc = call->request->connection;

    c = call->pc.connection;

    if (call->connect_timer.timer_set) {
        ngx_del_timer(&call->connect_timer);
    }

    if (ngx_voice_realtime_init(call) != NGX_OK) {
        ngx_voice_upstream_fail(call, "out of memory");
        ngx_voice_upstream_done(dc);
        return;
    }

    c->read->handler = ngx_voice_upstream_read_handler;
    c->write->handler = ngx_voice_upstream_write_handler;

    if (c->tcp_nodelay == NGX_TCP_NODELAY_UNSET) {
        (void) ngx_tcp_nodelay(c);
    }

    ngx_voice_call_upstream_ready(call);

    /* OpenAI may have sent session.created with its 101 */

    if (pos < last) {
        /* a close among them is seen by the read below */
        (void) ngx_voice_peer_feed(&call->openai, pos, last);
    }

    if (c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);
    }

    ngx_voice_call_peer_event(&call->openai);
    ngx_voice_upstream_done(dc);
}


static void
ngx_voice_upstream_read_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c, *dc;
    ngx_voice_call_t  *call;

    c = ev->data;
    call = c->data;
    dc = call->request->connection;

    ngx_voice_call_peer_event(&call->openai);
    ngx_voice_upstream_done(dc);
}


static void
ngx_voice_upstream_write_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c, *dc;
    ngx_voice_call_t  *call;

    c = ev->data;
    call = c->data;
    dc = call->request->connection;

    ngx_voice_call_peer_write(&call->openai);
    ngx_voice_upstream_done(dc);
}


static void
ngx_voice_upstream_write_idle(ngx_event_t *ev)
{
    ngx_connection_t  *c;

    c = ev->data;

    if (ngx_handle_write_event(ev, 0) != NGX_OK) {
        ngx_voice_upstream_fail(c->data, "cannot write to OpenAI");
    }
}


static void
ngx_voice_upstream_timeout(ngx_event_t *ev)
{
    ngx_voice_call_t  *call = ev->data;

    ngx_connection_t  *dc;

    dc = call->request->connection;

    ngx_log_error(NGX_LOG_ERR, call->log, NGX_ETIMEDOUT,
                  "voice: OpenAI connection not established within "
                  "voice_connect_timeout");

    ngx_voice_upstream_fail(call, "OpenAI timed out");
    ngx_voice_upstream_done(dc);
}


static void
ngx_voice_upstream_fail(ngx_voice_call_t *call, const char *reason)
{
    ngx_voice_call_set_reason(call, "%s", reason);
    ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_ERROR, 0,
                       "AI service unavailable");
}


/*
 * Events on this leg end like those of a request's own peers; "dc" is the
 * Twilio connection, taken before the event was handled, as the call and
 * its request may be gone by now.
 */
static void
ngx_voice_upstream_done(ngx_connection_t *dc)
{
    ngx_http_run_posted_requests(dc);
}


void
ngx_voice_upstream_close(ngx_voice_call_t *call)
{
    if (call->resolve) {
        ngx_resolve_name_done(call->resolve);
        call->resolve = NULL;
    }

    if (call->connect_timer.timer_set) {
        ngx_del_timer(&call->connect_timer);
    }

    ngx_voice_upstream_drop(call);

    call->openai.connection = NULL;
    call->openai.eof = 1;
}
