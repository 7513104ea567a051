
/*
 * Copyright (C) ngx_voice authors
 *
 * One WebSocket endpoint over one connection, in either role.  It knows
 * nothing of calls: it reports the pieces of text messages and the peer's
 * faults through a handler table its owner fills, as ngx_http_upstream_t
 * takes input_filter and finalize_request.
 */


#ifndef _NGX_VOICE_PEER_H_INCLUDED_
#define _NGX_VOICE_PEER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include "ngx_voice_ws.h"


/* one read buffer for every peer of the worker (see ngx_voice_peer_read) */
#define NGX_VOICE_IN_BUFFER     16384
/*
 * Output is queued in chunks of this size, lent by the worker while a
 * peer has something queued.  A frame that fits in a chunk starts in a
 * fresh one rather than spanning two, so dropping a queue (a peer not
 * reading) can cut between whole frames: OpenAI's audio deltas are
 * several KiB, and with 4 KiB chunks every one spanned chunks and nothing
 * could be dropped (t/115-drop-frames.t).
 */
#define NGX_VOICE_OUT_CHUNK     16384


typedef struct ngx_voice_peer_s  ngx_voice_peer_t;


typedef struct {
    /*
     * A piece of a text message.  NGX_OK goes on; NGX_ERROR stops the
     * reading (the owner has reported why).
     */
    ngx_int_t                  (*message)(ngx_voice_peer_t *peer,
                                          ngx_voice_ws_event_t *ev);

    /*
     * The peer broke the protocol, or did not take what it was sent: the
     * owner closes the connection with "code".  "text" is the close
     * frame's reason (may be NULL), "reason" says what happened.
     */
    void                       (*failed)(ngx_voice_peer_t *peer,
                                         ngx_uint_t code, const char *text,
                                         const char *reason);

    /* backpressure: true while the owner cannot take what it would say */
    ngx_uint_t                 (*paused)(ngx_voice_peer_t *peer);
} ngx_voice_peer_handler_t;


struct ngx_voice_peer_s {
    ngx_connection_t                *connection;
    ngx_pool_t                      *pool;
    ngx_log_t                       *log;
    const char                      *name;
    ngx_uint_t                       log_level;    /* of the peer's faults */
    size_t                           limit;        /* output bytes queued */

    const ngx_voice_peer_handler_t  *handler;
    void                            *data;         /* the owner */

    ngx_voice_ws_parser_t            parser;

    ngx_chain_t                     *out;
    ngx_chain_t                    **last_out;
    ngx_chain_t                     *free;
    size_t                           pending;

    u_char                           mask[4];
    ngx_uint_t                       mask_pos;

    ngx_msec_t                       last_recv;
    ngx_msec_t                       last_send;

    ngx_uint_t                       frames_in;
    ngx_uint_t                       frames_out;
    off_t                            bytes_out;

    ngx_uint_t                       close_code;       /* sent */
    ngx_uint_t                       peer_close_code;  /* received */

    unsigned                         masking:1;    /* client role */
    unsigned                         open:1;
    unsigned                         close_sent:1;
    unsigned                         close_received:1;
    unsigned                         eof:1;
    unsigned                         ping_sent:1;
    unsigned                         failed:1;     /* protocol error */
    unsigned                         paused:1;     /* backpressure */
    unsigned                         drop_data:1;  /* the owner is done */
    unsigned                         fresh_chunk:1;
    unsigned                         out_taken:1;  /* the first chunk */
    unsigned                         frame_begun:1;
};


ngx_int_t ngx_voice_peer_init(ngx_voice_peer_t *peer, ngx_connection_t *c,
    ngx_uint_t masking);

/*
 * Reads and parses until the socket has nothing more.  NGX_AGAIN: wait
 * for the next read event (or for the owner to resume a paused peer);
 * NGX_DONE: the peer closed (close frame or EOF) or failed; NGX_ERROR:
 * the message handler stopped the reading.
 */
ngx_int_t ngx_voice_peer_read(ngx_voice_peer_t *peer);

/* parses bytes that were read elsewhere (e.g. behind a handshake) */
ngx_int_t ngx_voice_peer_feed(ngx_voice_peer_t *peer, u_char *pos,
    u_char *last);

/*
 * The worker's read buffer (NGX_VOICE_IN_BUFFER bytes), for bytes that
 * are parsed at once and not kept: it is the next read's.
 */
u_char *ngx_voice_peer_read_buffer(void);

/*
 * Queues one whole frame whose payload is the concatenation of "parts",
 * or nothing at all.  NGX_OK: queued, or dropped as our close frame is
 * already out; NGX_ERROR: the peer is not reading (the output limit is
 * reached) or there is no memory, and the failed handler has been told.
 */
ngx_int_t ngx_voice_peer_send(ngx_voice_peer_t *peer, ngx_uint_t opcode,
    ngx_str_t *parts, ngx_uint_t nparts);
ngx_int_t ngx_voice_peer_send_text(ngx_voice_peer_t *peer, u_char *data,
    size_t len);
ngx_int_t ngx_voice_peer_close(ngx_voice_peer_t *peer, ngx_uint_t code,
    const char *text);
ngx_int_t ngx_voice_peer_ping(ngx_voice_peer_t *peer);

/*
 * Writes what is queued to the socket.  NGX_OK: all written; NGX_AGAIN:
 * the rest waits for the write event; NGX_ERROR: the connection failed.
 */
ngx_int_t ngx_voice_peer_write_queued(ngx_voice_peer_t *peer);

/* drops queued frames that no byte of has been written yet */
void ngx_voice_peer_discard(ngx_voice_peer_t *peer);

/* the close handshake is over, or cannot happen any more */
ngx_uint_t ngx_voice_peer_is_done(ngx_voice_peer_t *peer);

/*
 * The peer ended: a close frame received, or its connection lost.  The
 * owner looks at close_received and eof to say which.
 */
#define ngx_voice_peer_closed(peer)                                          \
    ((peer)->close_received || (peer)->eof)


#endif /* _NGX_VOICE_PEER_H_INCLUDED_ */
