
/*
 * Copyright (C) ngx_voice authors
 *
 * One WebSocket endpoint of a call over one connection, the same code for
 * both legs: reading and parsing frames, answering pings and closes, and
 * writing frames into a bounded chain of reused chunks that is flushed
 * with as few send()/SSL_write() calls as the event loop allows.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <openssl/rand.h>
#include "ngx_voice_call.h"


static ngx_int_t ngx_voice_peer_control(ngx_voice_peer_t *peer,
    ngx_voice_ws_event_t *ev);
static ngx_int_t ngx_voice_peer_write(ngx_voice_peer_t *peer, u_char *data,
    size_t len, ngx_uint_t mask);
static ngx_buf_t *ngx_voice_peer_chunk(ngx_voice_peer_t *peer);


ngx_int_t
ngx_voice_peer_init(ngx_voice_peer_t *peer, ngx_voice_call_t *call,
    ngx_connection_t *c, ngx_uint_t client, const char *name,
    ngx_voice_peer_data_pt data)
{
    peer->connection = c;
    peer->call = call;
    peer->client = client ? 1 : 0;
    peer->name = name;
    peer->data = data;
    peer->last_out = &peer->out;
    peer->last_recv = ngx_current_msec;
    peer->last_send = ngx_current_msec;

    ngx_voice_ws_parser_init(&peer->parser, !client);

    peer->in = ngx_create_temp_buf(call->request->pool, NGX_VOICE_IN_BUFFER);
    if (peer->in == NULL) {
        return NGX_ERROR;
    }

    peer->open = 1;

    return NGX_OK;
}


/*
 * Reads until the socket (or TLS) has nothing more.  Returns NGX_AGAIN
 * when it has, NGX_DONE when the peer closed (a close frame or EOF),
 * NGX_ERROR when the call was ended.
 */
ngx_int_t
ngx_voice_peer_read(ngx_voice_peer_t *peer)
{
    size_t             high;
    ssize_t            n;
    ngx_int_t          rc;
    ngx_buf_t         *b;
    ngx_connection_t  *c;
    ngx_voice_call_t  *call;
    ngx_voice_peer_t  *other;

    c = peer->connection;
    b = peer->in;
    call = peer->call;

    other = (peer == &call->twilio) ? &call->openai : &call->twilio;
    high = call->conf->buffer_size / 2;

    for ( ;; ) {

        if (peer->eof || peer->close_received || peer->failed || call->done)
        {
            return NGX_DONE;
        }

        /*
         * Backpressure: what this side says goes to the other one; while
         * the other has half its buffer waiting, this side is not read
         * (its socket fills, TCP slows it down) until the other drains.
         */

        if (other->pending > high && !call->closing
            && other->open && !other->eof)
        {
            if (ngx_voice_call_flush(call, other) == NGX_ERROR) {
                /* after_io() ends the call for the lost leg */
                other->eof = 1;
            }

            if (other->pending > high && !other->eof) {
                peer->throttled = 1;
                return NGX_AGAIN;
            }
        }

        b->pos = b->start;
        b->last = b->start;

        n = c->recv(c, b->last, b->end - b->last);

        if (n == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        if (n == NGX_ERROR || n == 0) {
            peer->eof = 1;
            return NGX_DONE;
        }

        peer->last_recv = ngx_current_msec;
        peer->ping_sent = 0;

        rc = ngx_voice_peer_feed(peer, b->pos, b->pos + n);

        if (rc != NGX_OK) {
            return rc;
        }
    }
}


/* parses bytes already read; the parser consumes all of them */
ngx_int_t
ngx_voice_peer_feed(ngx_voice_peer_t *peer, u_char *pos, u_char *last)
{
    ngx_int_t             rc;
    ngx_voice_ws_event_t  ev;

    while (pos < last) {

        if (peer->close_received || peer->call->done) {
            /* nothing may follow a close frame */
            return NGX_DONE;
        }

        ngx_voice_ws_parse(&peer->parser, &pos, last, &ev);

        switch (ev.type) {

        case NGX_VOICE_WS_EV_AGAIN:
            break;

        case NGX_VOICE_WS_EV_ERROR:

            /*
             * RFC 6455 7.1.7: after failing the connection nothing more is
             * read from it, not even a close frame in reply
             */
            peer->failed = 1;

            /* log-safe: the peer name, and a constant reason of the codec */
            ngx_log_error((peer->client ? NGX_LOG_ERR : NGX_LOG_INFO),
                          peer->call->log, 0,
                          "voice: %s sent a bad WebSocket frame: %s",
                          peer->name, ev.reason);

            ngx_voice_call_set_reason(peer->call, "%s: %s", peer->name,
                                      ev.reason);
            ngx_voice_call_end(peer->call,
                               peer->client ? NGX_VOICE_WS_CLOSE_ERROR
                                            : ev.code,
                               peer->client ? ev.code
                                            : NGX_VOICE_WS_CLOSE_NORMAL,
                               NULL);
            return NGX_ERROR;

        case NGX_VOICE_WS_EV_CONTROL:
            rc = ngx_voice_peer_control(peer, &ev);
            if (rc != NGX_OK) {
                return rc;
            }

            break;

        default: /* NGX_VOICE_WS_EV_DATA */

            if (peer->call->closing) {
                /* the call is ending: what still arrives is dropped */
                break;
            }

            if (ev.first) {
                peer->frames_in++;
            }

            if (ev.opcode != NGX_VOICE_WS_TEXT) {
                /* log-safe: peer->name is "Twilio" or "OpenAI" */
                ngx_log_error((peer->client ? NGX_LOG_ERR : NGX_LOG_INFO),
                              peer->call->log, 0,
                              "voice: %s sent a binary message", peer->name);

                ngx_voice_call_set_reason(peer->call,
                                          "%s: binary message", peer->name);
                ngx_voice_call_end(peer->call,
                                   peer->client ? NGX_VOICE_WS_CLOSE_ERROR
                                                : 1003,
                                   peer->client ? 1003
                                                : NGX_VOICE_WS_CLOSE_NORMAL,
                                   NULL);

                /* the frames behind it are still parsed, for the close */
                break;
            }

            if (peer->data(peer, &ev) != NGX_OK && !peer->call->closing) {
                return NGX_ERROR;
            }

            break;
        }
    }

    return NGX_OK;
}


/*
 * Feeds a piece of a message to the peer's JSON parser.  NGX_OK; NGX_ERROR
 * when a handler ended the call; NGX_DECLINED when it is not one JSON
 * object, which the side reports in its own terms.
 */
ngx_int_t
ngx_voice_peer_json(ngx_voice_peer_t *peer, ngx_voice_ws_event_t *ev)
{
    ngx_int_t  rc;

    rc = ngx_voice_json_feed(&peer->json, ev->data, ev->len, ev->first,
                             ev->last);

    if (peer->call->closing || peer->call->done) {
        return NGX_ERROR;
    }

    return (rc == NGX_OK) ? NGX_OK : NGX_DECLINED;
}


static ngx_int_t
ngx_voice_peer_control(ngx_voice_peer_t *peer, ngx_voice_ws_event_t *ev)
{
    ngx_int_t  rc;

    switch (ev->opcode) {

    case NGX_VOICE_WS_PING:
        rc = ngx_voice_peer_frame(peer, NGX_VOICE_WS_PONG, ev->len);

        if (rc == NGX_DECLINED) {
            /* our close is out: no pong after it */
            return NGX_OK;
        }

        if (rc != NGX_OK
            || ngx_voice_peer_append(peer, ev->data, ev->len) != NGX_OK)
        {
            ngx_voice_call_set_reason(peer->call, "%s is not reading",
                                      peer->name);
            ngx_voice_call_end(peer->call, NGX_VOICE_WS_CLOSE_ERROR,
                               NGX_VOICE_WS_CLOSE_ERROR, NULL);
            return NGX_ERROR;
        }

        return NGX_OK;

    case NGX_VOICE_WS_PONG:
        peer->ping_sent = 0;
        return NGX_OK;

    default: /* NGX_VOICE_WS_CLOSE */

        peer->close_received = 1;
        peer->peer_close_code = ev->code;

        /* the reason is the peer's: it is logged as text, and only once */
        ngx_voice_log_safe(ev->data, ev->len);

        /* log-safe: the reason went through ngx_voice_log_safe() */
        ngx_log_error(NGX_LOG_INFO, peer->call->log, 0,
                      "voice: %s closed the WebSocket with %ui \"%*s\"",
                      peer->name, ev->code, ngx_min(ev->len, 64), ev->data);

        if (!peer->close_sent) {
            /* echo the code, as RFC 6455 5.5.1 asks */
            (void) ngx_voice_peer_close(peer,
                                        ev->code == NGX_VOICE_WS_CLOSE_NO_STATUS
                                        ? NGX_VOICE_WS_CLOSE_NORMAL : ev->code,
                                        NULL);
        }

        return NGX_DONE;
    }
}


/*
 * Starts a frame of "len" payload bytes; the payload follows through
 * ngx_voice_peer_append().  NGX_BUSY: the peer has not taken what it was
 * sent and the buffer limit is reached; NGX_DECLINED: already closed.
 */
ngx_int_t
ngx_voice_peer_frame(ngx_voice_peer_t *peer, ngx_uint_t opcode, size_t len)
{
    u_char  *p;
    u_char   hdr[NGX_VOICE_WS_HEADER_MAX];

    if (peer->close_sent || !peer->open) {
        return NGX_DECLINED;
    }

    if (peer->pending + len + NGX_VOICE_WS_HEADER_MAX
        > peer->call->conf->buffer_size)
    {
        return NGX_BUSY;
    }

    if (peer->client) {
        /* a fresh unpredictable key for every frame (RFC 6455 5.3) */
        if (RAND_bytes(peer->mask, 4) != 1) {
            return NGX_ERROR;
        }
    }

    p = ngx_voice_ws_write_header(hdr, opcode, 1, len,
                                  peer->client ? peer->mask : NULL);
    peer->mask_pos = 0;
    peer->frames_out++;

    return ngx_voice_peer_write(peer, hdr, p - hdr, 0);
}


ngx_int_t
ngx_voice_peer_append(ngx_voice_peer_t *peer, u_char *data, size_t len)
{
    return ngx_voice_peer_write(peer, data, len, peer->client);
}


/* a whole text frame */
ngx_int_t
ngx_voice_peer_text(ngx_voice_peer_t *peer, u_char *data, size_t len)
{
    ngx_int_t  rc;

    rc = ngx_voice_peer_frame(peer, NGX_VOICE_WS_TEXT, len);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_voice_peer_append(peer, data, len);
}


ngx_int_t
ngx_voice_peer_close(ngx_voice_peer_t *peer, ngx_uint_t code,
    const char *reason)
{
    size_t     len;
    ngx_int_t  rc;
    u_char     payload[NGX_VOICE_WS_CONTROL_MAX];

    if (peer->close_sent || !peer->open) {
        return NGX_OK;
    }

    len = ngx_voice_ws_close_payload(payload, code, reason);

    /* a close frame is small and always fits: the limit is not applied */

    if (peer->client && RAND_bytes(peer->mask, 4) != 1) {
        return NGX_ERROR;
    }

    {
        u_char   hdr[NGX_VOICE_WS_HEADER_MAX];
        u_char  *p;

        p = ngx_voice_ws_write_header(hdr, NGX_VOICE_WS_CLOSE, 1, len,
                                      peer->client ? peer->mask : NULL);
        peer->mask_pos = 0;

        rc = ngx_voice_peer_write(peer, hdr, p - hdr, 0);

        if (rc == NGX_OK) {
            rc = ngx_voice_peer_write(peer, payload, len, peer->client);
        }
    }

    peer->close_sent = 1;
    peer->close_code = code;
    peer->frames_out++;

    return rc;
}


ngx_int_t
ngx_voice_peer_ping(ngx_voice_peer_t *peer)
{
    ngx_int_t  rc;

    rc = ngx_voice_peer_frame(peer, NGX_VOICE_WS_PING, 0);

    if (rc == NGX_OK) {
        peer->ping_sent = 1;
    }

    return rc;
}


/*
 * Sends what is queued.  NGX_OK: all sent; NGX_AGAIN: the rest waits for
 * the write event; NGX_ERROR: the connection failed.
 */
ngx_int_t
ngx_voice_peer_flush(ngx_voice_peer_t *peer)
{
    size_t             pending;
    ngx_chain_t       *cl, *ln;
    ngx_connection_t  *c;

    c = peer->connection;

    if (c == NULL || peer->eof) {
        return NGX_ERROR;
    }

    /* TLS may hold bytes of ours in its own buffer (NGX_SSL_BUFFERED) */

    if ((peer->out || c->buffered) && c->write->ready) {

        if (peer->out) {
            /* with NGX_SSL_BUFFER, TLS sends its buffer on a flush */
            ln = (ngx_chain_t *) ((u_char *) peer->last_out
                                  - offsetof(ngx_chain_t, next));
            ln->buf->flush = 1;
        }

        cl = c->send_chain(c, peer->out, 0);

        if (cl == NGX_CHAIN_ERROR) {
            peer->eof = 1;
            return NGX_ERROR;
        }

        /* links sent whole go back to the free list for the next frames */

        while (peer->out && peer->out != cl) {
            ln = peer->out;
            peer->out = ln->next;

            ln->buf->pos = ln->buf->start;
            ln->buf->last = ln->buf->start;
            ln->buf->flush = 0;
            ln->next = peer->free;
            peer->free = ln;
        }

        if (peer->out == NULL) {
            peer->last_out = &peer->out;
        }

        pending = 0;

        for (ln = peer->out; ln; ln = ln->next) {
            pending += ln->buf->last - ln->buf->pos;
        }

        if (pending < peer->pending) {
            peer->last_send = ngx_current_msec;
        }

        peer->pending = pending;
    }

    if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    return (peer->out || c->buffered) ? NGX_AGAIN : NGX_OK;
}


/*
 * Drops the frames not yet started on the wire: the first link may be
 * partly sent, and is kept so the stream stays well framed.
 */
void
ngx_voice_peer_discard(ngx_voice_peer_t *peer)
{
    size_t        pending;
    ngx_chain_t  *cl, *ln;

    cl = peer->out;

    if (cl == NULL || cl->buf->pos != cl->buf->start) {
        /* a frame is cut mid-way: nothing can be dropped safely */
        return;
    }

    while (cl) {
        ln = cl;
        cl = cl->next;

        ln->buf->pos = ln->buf->start;
        ln->buf->last = ln->buf->start;
        ln->buf->flush = 0;
        ln->next = peer->free;
        peer->free = ln;
    }

    pending = peer->pending;
    peer->out = NULL;
    peer->last_out = &peer->out;
    peer->pending = 0;

    /* log-safe: peer->name is "Twilio" or "OpenAI" */
    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, peer->call->log, 0,
                   "voice: dropped %uz bytes for %s", pending, peer->name);
}


void
ngx_voice_peer_free(ngx_voice_peer_t *peer)
{
    ngx_voice_json_free(&peer->json);
}


static ngx_int_t
ngx_voice_peer_write(ngx_voice_peer_t *peer, u_char *data, size_t len,
    ngx_uint_t mask)
{
    size_t      n;
    ngx_buf_t  *b;

    while (len) {
        b = ngx_voice_peer_chunk(peer);
        if (b == NULL) {
            return NGX_ERROR;
        }

        n = ngx_min(len, (size_t) (b->end - b->last));

        ngx_memcpy(b->last, data, n);

        if (mask) {
            ngx_voice_ws_mask(b->last, n, peer->mask, peer->mask_pos);
            peer->mask_pos = (peer->mask_pos + n) & 3;
        }

        b->last += n;
        data += n;
        len -= n;
        peer->pending += n;
    }

    return NGX_OK;
}


/* the chunk at the end of the queue with room left, reused or new */
static ngx_buf_t *
ngx_voice_peer_chunk(ngx_voice_peer_t *peer)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (peer->out) {
        cl = (ngx_chain_t *) ((u_char *) peer->last_out
                              - offsetof(ngx_chain_t, next));
        b = cl->buf;

        if (b->last < b->end) {
            return b;
        }
    }

    if (peer->out == NULL) {
        /* the peer is judged on how long it leaves data waiting */
        peer->last_send = ngx_current_msec;
    }

    if (peer->free) {
        cl = peer->free;
        peer->free = cl->next;

    } else {
        cl = ngx_alloc_chain_link(peer->call->request->pool);
        if (cl == NULL) {
            return NULL;
        }

        cl->buf = ngx_create_temp_buf(peer->call->request->pool,
                                      NGX_VOICE_OUT_CHUNK);
        if (cl->buf == NULL) {
            return NULL;
        }
    }

    cl->next = NULL;
    *peer->last_out = cl;
    peer->last_out = &cl->next;

    return cl->buf;
}
