
/*
 * Copyright (C) ngx_voice authors
 *
 * One WebSocket endpoint over one connection, the same code for both
 * legs: reading and parsing frames, answering pings and closes, and
 * queueing whole frames into a bounded chain of reused chunks that is
 * written with as few send()/SSL_write() calls as the event loop allows.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <openssl/rand.h>
#include "ngx_voice_peer.h"
#include "ngx_voice_util.h"


static void ngx_voice_peer_discard_input(ngx_voice_peer_t *peer);
static ngx_int_t ngx_voice_peer_data(ngx_voice_peer_t *peer,
    ngx_voice_ws_event_t *ev);
static ngx_int_t ngx_voice_peer_control(ngx_voice_peer_t *peer,
    ngx_voice_ws_event_t *ev);
static void ngx_voice_peer_fail(ngx_voice_peer_t *peer, ngx_uint_t code,
    const char *what);
static ngx_int_t ngx_voice_peer_queue(ngx_voice_peer_t *peer,
    ngx_uint_t opcode, ngx_str_t *parts, ngx_uint_t nparts,
    ngx_uint_t limited);
static ngx_int_t ngx_voice_peer_reserve(ngx_voice_peer_t *peer,
    size_t size);
static void ngx_voice_peer_copy(ngx_voice_peer_t *peer, u_char *data,
    size_t len, ngx_uint_t mask);
static ngx_int_t ngx_voice_peer_mask_key(u_char *key);
static ngx_chain_t *ngx_voice_peer_next_chunk(ngx_voice_peer_t *peer);
static ngx_chain_t *ngx_voice_peer_last(ngx_voice_peer_t *peer);
static ngx_chain_t *ngx_voice_peer_chunk(ngx_log_t *log);
static void ngx_voice_peer_recycle(ngx_chain_t *ln);
static void ngx_voice_peer_cleanup(void *data);


/*
 * The tag of an output chunk that continues a frame begun in the chunk
 * before it.  Every other chunk starts at a frame boundary: a frame that
 * fits in a chunk but not in the room left in the last one starts a new
 * chunk.  So output can be dropped from any untagged chunk on, and the
 * stream stays well framed.
 */
static u_char  ngx_voice_peer_continued;


/*
 * The masking keys of the frames this worker sends: drawn from OpenSSL's
 * CSPRNG a block at a time (one RAND_bytes() for 1,024 frames instead of
 * one per frame), each key used once.  They are as unpredictable as keys
 * drawn one by one; a forked process (ngx_pid changed) draws its own.
 */
#define NGX_VOICE_MASK_KEYS  4096

static u_char     ngx_voice_peer_keys[NGX_VOICE_MASK_KEYS];
static size_t     ngx_voice_peer_keys_left;
static ngx_pid_t  ngx_voice_peer_keys_pid;


/*
 * The read buffer of every peer of the worker.  The parser is a stream
 * parser: what a read brings is parsed whole before the next read (a
 * paused peer is not read), and what a call must keep of a message cut
 * between two reads is kept by the parser (a frame header, a control
 * frame) or by the JSON layer (a small piece, a cut token), grown only
 * as needed and bounded by the message limit.  So nothing in this
 * buffer outlives the read that filled it, and a call has no input
 * buffer of its own.
 */
static u_char  ngx_voice_peer_in[NGX_VOICE_IN_BUFFER];


/*
 * Output chunks are the worker's, not a call's: a peer takes them while
 * it has something queued and gives each back once it is written, so a
 * call holds none between its writes (most of the time), and a chunk is
 * reused by the next peer that writes: no allocation per frame.  Up to
 * NGX_VOICE_SPARE_CHUNKS wait here; a burst beyond them is freed.
 */

#define NGX_VOICE_SPARE_CHUNKS  64

typedef struct {
    ngx_chain_t                      link;    /* first: freed through it */
    ngx_buf_t                        buf;
} ngx_voice_peer_chunk_t;

static ngx_chain_t  *ngx_voice_peer_spare;
static ngx_uint_t    ngx_voice_peer_nspare;


ngx_int_t
ngx_voice_peer_init(ngx_voice_peer_t *peer, ngx_connection_t *c,
    ngx_uint_t masking)
{
    ngx_pool_cleanup_t  *cln;

    /* the chunks still queued go back to the worker with the pool */

    cln = ngx_pool_cleanup_add(peer->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_voice_peer_cleanup;
    cln->data = peer;

    peer->connection = c;
    peer->masking = masking ? 1 : 0;
    peer->last_out = &peer->out;
    peer->last_recv = ngx_current_msec;
    peer->last_send = ngx_current_msec;

    /* a client masks what it sends and reads unmasked frames */
    ngx_voice_ws_parser_init(&peer->parser, !masking);

    peer->open = 1;

    return NGX_OK;
}


/*
 * What a peer sends after its close frame (or after a frame we refused)
 * is read and thrown away: bytes left unread in the socket would make the
 * kernel answer our close() with a reset, which can destroy our close
 * frame on its way.  Bounded per event; the close timer bounds the rest.
 */
static void
ngx_voice_peer_discard_input(ngx_voice_peer_t *peer)
{
    ssize_t            n;
    ngx_uint_t         i;
    ngx_connection_t  *c;

    c = peer->connection;

    for (i = 0; i < 64; i++) {
        n = c->recv(c, ngx_voice_peer_in,
                    sizeof(ngx_voice_peer_in));

        if (n == NGX_AGAIN) {
            return;
        }

        if (n == NGX_ERROR || n == 0) {
            peer->eof = 1;
            return;
        }
    }
}


ngx_int_t
ngx_voice_peer_read(ngx_voice_peer_t *peer)
{
    ssize_t            n;
    ngx_int_t          rc;
    ngx_connection_t  *c;

    c = peer->connection;

    /*
     * Reads until the socket has nothing more (recv() says NGX_AGAIN and
     * clears the ready flag), as an edge-triggered event needs; each read
     * is parsed whole before the next one reuses the buffer.
     */

    for ( ;; ) {

        if (peer->eof) {
            return NGX_DONE;
        }

        if (peer->close_received || peer->failed) {
            ngx_voice_peer_discard_input(peer);
            return NGX_DONE;
        }

        /*
         * Backpressure: what this side says goes to the other one; while
         * the owner cannot take it, this side is not read (its socket
         * fills, TCP slows it down) until the owner resumes it.
         */

        if (!peer->drop_data && peer->handler->paused(peer)) {
            peer->paused = 1;
            return NGX_AGAIN;
        }

        n = c->recv(c, ngx_voice_peer_in, NGX_VOICE_IN_BUFFER);

        if (n == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        if (n == NGX_ERROR || n == 0) {
            peer->eof = 1;
            return NGX_DONE;
        }

        peer->last_recv = ngx_current_msec;
        peer->ping_sent = 0;

        rc = ngx_voice_peer_feed(peer, ngx_voice_peer_in,
                                 ngx_voice_peer_in + n);

        if (rc != NGX_OK) {
            return rc;
        }

        /*
         * The recv() that came back short has seen the socket empty
         * (ngx_ssl_recv() read until SSL_read() wanted more, and
         * ngx_unix_recv() trusts a short read with EPOLLRDHUP) and has
         * cleared "ready": another call would only fail with EAGAIN.
         * Edge-triggered epoll reports the next bytes.
         */

        if (!c->read->ready) {
            return NGX_AGAIN;
        }
    }
}


u_char *
ngx_voice_peer_read_buffer(void)
{
    return ngx_voice_peer_in;
}


ngx_int_t
ngx_voice_peer_feed(ngx_voice_peer_t *peer, u_char *pos, u_char *last)
{
    ngx_int_t             rc;
    ngx_voice_ws_event_t  ev;

    while (pos < last) {

        if (peer->close_received || peer->failed) {
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
            ngx_voice_peer_fail(peer, ev.code, ev.reason);
            return NGX_DONE;

        case NGX_VOICE_WS_EV_CONTROL:
            rc = ngx_voice_peer_control(peer, &ev);
            if (rc != NGX_OK) {
                return rc;
            }

            break;

        default: /* NGX_VOICE_WS_EV_DATA */

            rc = ngx_voice_peer_data(peer, &ev);
            if (rc != NGX_OK) {
                return rc;
            }

            break;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_voice_peer_data(ngx_voice_peer_t *peer, ngx_voice_ws_event_t *ev)
{
    if (peer->drop_data) {
        /* the call is ending: what still arrives is dropped */
        return NGX_OK;
    }

    if (ev->first) {
        peer->frames_in++;
    }

    if (ev->opcode != NGX_VOICE_WS_TEXT) {
        /* the frames behind it are still parsed, for the close */
        peer->drop_data = 1;
        ngx_voice_peer_fail(peer, NGX_VOICE_WS_CLOSE_UNSUPPORTED,
                            "binary message");
        return NGX_OK;
    }

    if (peer->handler->message(peer, ev) != NGX_OK && !peer->drop_data) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* logs the peer's fault and reports it to the owner */
static void
ngx_voice_peer_fail(ngx_voice_peer_t *peer, ngx_uint_t code,
    const char *what)
{
    u_char  *p;
    u_char   reason[128];

    /* log-safe: a leg's own name or an address; constant text */
    ngx_log_error(peer->log_level, peer->log, 0,
                  "voice: %s sent %s%s", peer->name,
                  code == NGX_VOICE_WS_CLOSE_UNSUPPORTED
                  ? "a " : "a bad WebSocket frame: ", what);

    p = ngx_snprintf(reason, sizeof(reason) - 1, "%s: %s", peer->name, what);
    *p = '\0';

    peer->handler->failed(peer, code, NULL, (char *) reason);
}


static ngx_int_t
ngx_voice_peer_control(ngx_voice_peer_t *peer, ngx_voice_ws_event_t *ev)
{
    ngx_str_t  payload;
    u_char     text[NGX_VOICE_LOG_TEXT_MAX];

    switch (ev->opcode) {

    case NGX_VOICE_WS_PING:
        payload.data = ev->data;
        payload.len = ev->len;

        return ngx_voice_peer_send(peer, NGX_VOICE_WS_PONG, &payload, 1);

    case NGX_VOICE_WS_PONG:
        peer->ping_sent = 0;
        return NGX_OK;

    default: /* NGX_VOICE_WS_CLOSE */

        peer->close_received = 1;
        peer->peer_close_code = ev->code;

        /* the reason is the peer's text: escaped for the log */
        /* log-safe: a leg's own name or an address */
        ngx_log_error(NGX_LOG_INFO, peer->log, 0,
                      "voice: %s closed the WebSocket with %ui \"%s\"",
                      peer->name, ev->code,
                      ngx_voice_log_escape(text, ev->data, ev->len));

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


ngx_int_t
ngx_voice_peer_send(ngx_voice_peer_t *peer, ngx_uint_t opcode,
    ngx_str_t *parts, ngx_uint_t nparts)
{
    ngx_int_t  rc;
    u_char     reason[128];

    rc = ngx_voice_peer_queue(peer, opcode, parts, nparts, 1);

    if (rc == NGX_OK || rc == NGX_DECLINED) {
        /* declined: our close is out, nothing more goes */
        return NGX_OK;
    }

    if (rc == NGX_BUSY) {
        /* log-safe: a leg's own name or an address */
        ngx_log_error(peer->log_level, peer->log, 0,
                      "voice: %s is not reading, voice_buffer_size %uz "
                      "reached", peer->name, peer->limit);

        (void) ngx_snprintf(reason, sizeof(reason), "%s is not reading%Z",
                            peer->name);

    } else {
        (void) ngx_snprintf(reason, sizeof(reason), "%s: out of memory%Z",
                            peer->name);
    }

    peer->handler->failed(peer, NGX_VOICE_WS_CLOSE_ERROR, NULL,
                          (char *) reason);

    return NGX_ERROR;
}


ngx_int_t
ngx_voice_peer_send_text(ngx_voice_peer_t *peer, u_char *data, size_t len)
{
    ngx_str_t  part;

    part.data = data;
    part.len = len;

    return ngx_voice_peer_send(peer, NGX_VOICE_WS_TEXT, &part, 1);
}


ngx_int_t
ngx_voice_peer_close(ngx_voice_peer_t *peer, ngx_uint_t code,
    const char *text)
{
    ngx_int_t  rc;
    ngx_str_t  part;
    u_char     payload[NGX_VOICE_WS_CONTROL_MAX];

    if (peer->close_sent || !peer->open) {
        return NGX_OK;
    }

    part.data = payload;
    part.len = ngx_voice_ws_close_payload(payload, code, text);

    /* a close frame is small and always goes: the limit is not applied */

    rc = ngx_voice_peer_queue(peer, NGX_VOICE_WS_CLOSE, &part, 1, 0);

    peer->close_sent = 1;
    peer->close_code = code;

    return rc;
}


ngx_int_t
ngx_voice_peer_ping(ngx_voice_peer_t *peer)
{
    ngx_int_t  rc;

    rc = ngx_voice_peer_queue(peer, NGX_VOICE_WS_PING, NULL, 0, 1);

    if (rc == NGX_OK) {
        peer->ping_sent = 1;
    }

    return rc;
}


/* a whole frame, or nothing: room for all of it is made first */
static ngx_int_t
ngx_voice_peer_queue(ngx_voice_peer_t *peer, ngx_uint_t opcode,
    ngx_str_t *parts, ngx_uint_t nparts, ngx_uint_t limited)
{
    u_char      *p;
    size_t       len;
    ngx_uint_t   i;
    u_char       hdr[NGX_VOICE_WS_HEADER_MAX];

    if (peer->close_sent || !peer->open) {
        return NGX_DECLINED;
    }

    len = 0;

    for (i = 0; i < nparts; i++) {
        len += parts[i].len;
    }

    if (limited && peer->pending + len + NGX_VOICE_WS_HEADER_MAX > peer->limit)
    {
        return NGX_BUSY;
    }

    if (peer->masking) {
        /* a fresh unpredictable key for every frame (RFC 6455 5.3) */
        if (ngx_voice_peer_mask_key(peer->mask) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    p = ngx_voice_ws_write_header(hdr, opcode, 1, len,
                                  peer->masking ? peer->mask : NULL);

    if (ngx_voice_peer_reserve(peer, (p - hdr) + len) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the chunks this frame goes on to are tagged as continuing it */
    peer->frame_begun = 0;

    ngx_voice_peer_copy(peer, hdr, p - hdr, 0);

    peer->mask_pos = 0;

    for (i = 0; i < nparts; i++) {
        ngx_voice_peer_copy(peer, parts[i].data, parts[i].len,
                            peer->masking);
    }

    peer->frames_out++;
    peer->bytes_out += (p - hdr) + len;

    return NGX_OK;
}


static ngx_int_t
ngx_voice_peer_mask_key(u_char *key)
{
    u_char  *p;

    if (ngx_voice_peer_keys_left < 4
        || ngx_voice_peer_keys_pid != ngx_pid)
    {
        if (RAND_bytes(ngx_voice_peer_keys, NGX_VOICE_MASK_KEYS) != 1) {
            ngx_voice_peer_keys_left = 0;
            return NGX_ERROR;
        }

        ngx_voice_peer_keys_left = NGX_VOICE_MASK_KEYS;
        ngx_voice_peer_keys_pid = ngx_pid;
    }

    p = ngx_voice_peer_keys + NGX_VOICE_MASK_KEYS - ngx_voice_peer_keys_left;

    ngx_memcpy(key, p, 4);

    /* a key is not left behind for anyone to find again */
    ngx_memzero(p, 4);

    ngx_voice_peer_keys_left -= 4;

    return NGX_OK;
}


/*
 * Enough chunks for a frame of "size" bytes, allocated before any of it is
 * written; a frame that fits in a chunk is not split across two.
 */
static ngx_int_t
ngx_voice_peer_reserve(ngx_voice_peer_t *peer, size_t size)
{
    size_t        room, tail;
    ngx_chain_t  *cl;

    cl = ngx_voice_peer_last(peer);
    tail = cl ? (size_t) (cl->buf->end - cl->buf->last) : 0;

    /* a frame that fits in a chunk starts one if the tail cannot take it */
    peer->fresh_chunk = (size <= NGX_VOICE_OUT_CHUNK && tail < size);

    room = peer->fresh_chunk ? 0 : tail;

    for (cl = peer->free; cl; cl = cl->next) {
        room += NGX_VOICE_OUT_CHUNK;
    }

    while (room < size) {
        cl = ngx_voice_peer_chunk(peer->log);
        if (cl == NULL) {
            return NGX_ERROR;
        }

        cl->next = peer->free;
        peer->free = cl;
        room += NGX_VOICE_OUT_CHUNK;
    }

    return NGX_OK;
}


/* appends part of a frame; the room is there (ngx_voice_peer_reserve) */
static void
ngx_voice_peer_copy(ngx_voice_peer_t *peer, u_char *data, size_t len,
    ngx_uint_t mask)
{
    size_t        n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    while (len) {
        cl = ngx_voice_peer_last(peer);

        if (cl == NULL || cl->buf->last == cl->buf->end
            || peer->fresh_chunk)
        {
            cl = ngx_voice_peer_next_chunk(peer);
        }

        b = cl->buf;
        n = ngx_min(len, (size_t) (b->end - b->last));

        if (mask) {
            ngx_voice_ws_mask_copy(b->last, data, n, peer->mask,
                                   peer->mask_pos);
            peer->mask_pos = (peer->mask_pos + n) & 3;

        } else {
            ngx_memcpy(b->last, data, n);
        }

        b->last += n;
        data += n;
        len -= n;
        peer->pending += n;
        peer->frame_begun = 1;
    }
}


/* a free chunk at the end of the queue, tagged if it continues a frame */
static ngx_chain_t *
ngx_voice_peer_next_chunk(ngx_voice_peer_t *peer)
{
    ngx_chain_t  *cl;

    if (peer->out == NULL) {
        /* the peer is judged on how long it leaves data waiting */
        peer->last_send = ngx_current_msec;
    }

    cl = peer->free;
    peer->free = cl->next;
    cl->next = NULL;

    cl->buf->tag = peer->frame_begun
                   ? (ngx_buf_tag_t) &ngx_voice_peer_continued : NULL;

    peer->fresh_chunk = 0;

    *peer->last_out = cl;
    peer->last_out = &cl->next;

    return cl;
}


/* the link at the end of the queue, or NULL */
static ngx_chain_t *
ngx_voice_peer_last(ngx_voice_peer_t *peer)
{
    if (peer->out == NULL) {
        return NULL;
    }

    return (ngx_chain_t *) ((u_char *) peer->last_out
                            - offsetof(ngx_chain_t, next));
}


ngx_int_t
ngx_voice_peer_write_queued(ngx_voice_peer_t *peer)
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
            ngx_voice_peer_last(peer)->buf->flush = 1;
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
            ngx_voice_peer_recycle(ln);
        }

        if (peer->out == NULL) {
            peer->last_out = &peer->out;
        }

        /*
         * A chunk send_chain() left may be partly taken: by TLS, which
         * then wants the same bytes again (SSL_write() retried), even if
         * none shows as written; it is not dropped (discard).  Only TLS
         * without nginx's send buffer (the OpenAI leg) does that: plain
         * TCP, or a buffered TLS copy, took nothing of what is left.
         */
        peer->out_taken = (peer->out != NULL && c->ssl
                           && c->ssl->buffer == 0);

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
 * Drops the frames not yet started on the wire.  The first chunk may be
 * partly written (or taken by TLS): it is kept, with the chunks that
 * continue a frame begun in it, so the peer gets whole frames only, and
 * a close frame after them.
 */
void
ngx_voice_peer_discard(ngx_voice_peer_t *peer)
{
    size_t        pending;
    ngx_chain_t  *keep, *cl, *ln;

    keep = peer->out;

    if (keep == NULL) {
        return;
    }

    if (keep->buf->pos == keep->buf->start && !peer->out_taken
        && keep->buf->tag != (ngx_buf_tag_t) &ngx_voice_peer_continued)
    {
        /* nothing of it is out, and it starts a frame */
        keep = NULL;

    } else {
        while (keep->next
               && keep->next->buf->tag
                  == (ngx_buf_tag_t) &ngx_voice_peer_continued)
        {
            keep = keep->next;
        }
    }

    cl = keep ? keep->next : peer->out;

    if (keep) {
        keep->next = NULL;
        peer->last_out = &keep->next;

    } else {
        peer->out = NULL;
        peer->last_out = &peer->out;
    }

    while (cl) {
        ln = cl;
        cl = cl->next;
        ngx_voice_peer_recycle(ln);
    }

    pending = 0;

    for (ln = peer->out; ln; ln = ln->next) {
        pending += ln->buf->last - ln->buf->pos;
    }

    /* log-safe: a leg's own name or an address */
    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, peer->log, 0,
                   "voice: dropped %uz bytes for %s, %uz kept",
                   peer->pending - pending, peer->name, pending);

    peer->pending = pending;
}


/* a chunk of the worker's spares, or a new one */
static ngx_chain_t *
ngx_voice_peer_chunk(ngx_log_t *log)
{
    ngx_chain_t             *cl;
    ngx_voice_peer_chunk_t  *ch;

    cl = ngx_voice_peer_spare;

    if (cl) {
        ngx_voice_peer_spare = cl->next;
        ngx_voice_peer_nspare--;
        cl->next = NULL;
        return cl;
    }

    ch = ngx_alloc(sizeof(ngx_voice_peer_chunk_t) + NGX_VOICE_OUT_CHUNK, log);
    if (ch == NULL) {
        return NULL;
    }

    ngx_memzero(&ch->buf, sizeof(ngx_buf_t));

    ch->buf.start = (u_char *) &ch[1];
    ch->buf.pos = ch->buf.start;
    ch->buf.last = ch->buf.start;
    ch->buf.end = ch->buf.start + NGX_VOICE_OUT_CHUNK;
    ch->buf.temporary = 1;

    ch->link.buf = &ch->buf;
    ch->link.next = NULL;

    return &ch->link;
}


/* a chunk written, dropped or left by its peer goes back to the worker */
static void
ngx_voice_peer_recycle(ngx_chain_t *ln)
{
    if (ngx_voice_peer_nspare >= NGX_VOICE_SPARE_CHUNKS) {
        ngx_free(ln);
        return;
    }

    ln->buf->pos = ln->buf->start;
    ln->buf->last = ln->buf->start;
    ln->buf->flush = 0;
    ln->buf->tag = NULL;
    ln->next = ngx_voice_peer_spare;
    ngx_voice_peer_spare = ln;
    ngx_voice_peer_nspare++;
}


static void
ngx_voice_peer_cleanup(void *data)
{
    ngx_voice_peer_t  *peer = data;

    ngx_chain_t  *cl, *ln;

    for (cl = peer->out; cl; /* void */) {
        ln = cl;
        cl = cl->next;
        ngx_voice_peer_recycle(ln);
    }

    for (cl = peer->free; cl; /* void */) {
        ln = cl;
        cl = cl->next;
        ngx_voice_peer_recycle(ln);
    }

    peer->out = NULL;
    peer->last_out = &peer->out;
    peer->free = NULL;
    peer->pending = 0;
}


ngx_uint_t
ngx_voice_peer_is_done(ngx_voice_peer_t *peer)
{
    if (!peer->open || peer->eof || peer->connection == NULL) {
        return 1;
    }

    if (peer->failed) {
        /* our close frame out, no reply awaited */
        return peer->out == NULL && !peer->connection->buffered;
    }

    if (!peer->close_sent) {
        /* no close was asked for this leg: Twilio, when it went away */
        return peer->close_received;
    }

    return peer->out == NULL && !peer->connection->buffered
           && peer->close_received;
}
