
/*
 * Copyright (C) ngx_voice authors
 *
 * A whole call, driven from its real entry points over connections
 * without sockets: ngx_voice_call_start() on a request made here, the
 * OpenAI leg opened with ngx_voice_call_on_upstream_ready(), and then
 * what each peer sends delivered by the connections' recv() and the
 * posted read events, as the event loop would.  What the module writes
 * goes out by the connections' send_chain(), as much as each peer's
 * window takes, and is read back as that peer would read it: whole
 * frames, each text message one JSON object of the kinds the protocol
 * allows, in an order the protocol allows.  Time passes when the input
 * says so, and the call's timers fire.
 *
 * The harness links with --wrap for two functions: ngx_voice_upstream_start
 * (the OpenAI leg would resolve and connect; the input says when it is
 * ready instead) and ngx_http_finalize_request (the request, made here,
 * is never handed to nginx's HTTP code: its release is checked instead).
 *
 * The input: a flags byte, then segments separated by 0xff bytes (which
 * UTF-8 never holds), each a control byte and a payload:
 *
 *     control & 0x03   0: the payload as one text message to the leg the
 *                         harness speaks for; 1: the same in fragments of
 *                         1 << k bytes; 2: the payload as raw bytes on
 *                         that leg; 3: action k2 (below)
 *     (control >> 2) & 0x07   k; for 0 and 2 a non-zero k lets each peer
 *                         read 32 << k more bytes afterwards
 *     (control >> 2) & 0x1f   k2
 *     (control >> 5) & 0x03   how the legs' recv() cut what the peers
 *                         send: all, 1, 7 or 100 bytes at a time (for
 *                         an action, the payload's fourth byte says)
 *     control & 0x80   afterwards both peers read all they were sent
 *
 * Each peer takes 64k (4k with small buffers), then what the input lets
 * it read.  The actions, with their payload a0 a1 a2 a3 ... (a1 | a2 << 8
 * is the base64 quanta of synthetic audio, a3 & 3 the recv() cut):
 *
 *      0, 1, 2   a ping, close or pong on the leg, with the payload
 *      3, 4      that leg's peer, or the other one, closes its socket
 *      5, 6      Twilio echoes its oldest mark, or all of them
 *      7, 8, 9   Twilio sends media, the digit a0, stop
 *      10        Twilio sends connected and start (another CallSid if a0
 *                is odd)
 *      11, 12    the OpenAI leg is ready (with the payload behind its 101),
 *                or fails to be set up
 *      13, 14    OpenAI sends session.created, session.updated
 *      15        OpenAI sends audio for item a0 % 6 of response
 *                (a0 >> 4) % 3, before its ids if a0 & 0x80
 *      16        OpenAI sends input_audio_buffer.speech_started
 *      17        1 << (a0 % 23) ms pass, and the timers fire
 *      18        the peers read a0 << (a1 % 12) more bytes
 *      others    a ping from the other leg's peer
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>
#include <yajl/yajl_tree.h>
#include "ngx_voice.h"
#include "ngx_voice_call_relay.h"
#include "ngx_voice_fuzz.h"


#define NGX_VOICE_FUZZ_TWILIO       0
#define NGX_VOICE_FUZZ_OPENAI       1

/* the flags byte */
#define NGX_VOICE_FUZZ_SMALL        0x01    /* 8k buffers, 4k messages */
#define NGX_VOICE_FUZZ_NO_DTMF      0x02
#define NGX_VOICE_FUZZ_GREETING     0x04
#define NGX_VOICE_FUZZ_READY        0x08    /* the OpenAI leg opens */
#define NGX_VOICE_FUZZ_CREATED      0x10    /* and says session.created */
#define NGX_VOICE_FUZZ_STARTED      0x20    /* Twilio's connected, start */
#define NGX_VOICE_FUZZ_UNLIMITED    0x40    /* the peers read everything */
#define NGX_VOICE_FUZZ_EARLY        0x80    /* the first bytes come along */

#define NGX_VOICE_FUZZ_CALL_SID     "CA0123456789abcdef0123456789abcdef"
#define NGX_VOICE_FUZZ_STREAM_SID   "MZ0123456789abcdef0123456789abcdef"

#define NGX_VOICE_FUZZ_WINDOW       65536
#define NGX_VOICE_FUZZ_MARKS        512
#define NGX_VOICE_FUZZ_MARK_MAX     64
#define NGX_VOICE_FUZZ_EVENTS       10000

#define NGX_VOICE_FUZZ_ALL          ((size_t) -1)


/* what a leg was sent, read back as its peer reads it */
typedef struct {
    ngx_voice_ws_parser_t        parser;
    ngx_voice_fuzz_buf_t         msg;
    unsigned                     closed:1;
    unsigned                     session:1;   /* session.update came */
} ngx_voice_fuzz_out_t;


/* a leg's socket, as far as the module sees it */
typedef struct {
    ngx_voice_fuzz_buf_t         in;          /* the peer sent */
    size_t                       in_pos;      /* the module read */
    size_t                       piece;       /* at most, per recv() */
    size_t                       window;      /* the peer takes now */
    unsigned                     eof:1;
    ngx_connection_t            *connection;
    ngx_voice_fuzz_out_t         out;
} ngx_voice_fuzz_sock_t;


typedef struct {
    ngx_pool_t                  *pool;
    ngx_uint_t                   flags;
    ngx_uint_t                   leg;         /* the input speaks for */
    ngx_http_request_t          *request;
    ngx_voice_call_t            *call;
    ngx_voice_upstream_t        *upstream;
    ngx_voice_fuzz_sock_t        sock[2];
    ngx_voice_call_info_t        info;        /* the token's */
    ngx_uint_t                   finalized;
    ngx_uint_t                   clear;       /* Twilio was told "clear" */

    /* marks sent to Twilio and not echoed yet, oldest first */
    u_char                       marks[NGX_VOICE_FUZZ_MARKS]
                                      [NGX_VOICE_FUZZ_MARK_MAX];
    size_t                       mark_len[NGX_VOICE_FUZZ_MARKS];
    ngx_uint_t                   mark_head;
    ngx_uint_t                   nmarks;
} ngx_voice_fuzz_call_t;


static void ngx_voice_fuzz_call_create(ngx_uint_t flags);
static ngx_connection_t *ngx_voice_fuzz_call_connection(ngx_uint_t leg,
    ngx_log_t *log);
static void ngx_voice_fuzz_call_ready(const u_char *early, size_t len);
static void ngx_voice_fuzz_call_segment(ngx_uint_t ctl, const u_char *data,
    size_t len);
static void ngx_voice_fuzz_call_action(ngx_uint_t action, const u_char *data,
    size_t len);
static void ngx_voice_fuzz_call_teardown(void);
static void ngx_voice_fuzz_call_run(void);
static void ngx_voice_fuzz_call_read_all(size_t bytes);
static void ngx_voice_fuzz_call_post(ngx_event_t *ev);
static void ngx_voice_fuzz_call_put(ngx_uint_t leg, const u_char *data,
    size_t len);
static void ngx_voice_fuzz_call_text(ngx_uint_t leg, const u_char *msg,
    size_t len, size_t fragment);
static void ngx_voice_fuzz_call_control(ngx_uint_t leg, ngx_uint_t opcode,
    const u_char *payload, size_t len);
static void ngx_voice_fuzz_call_twilio_start(ngx_uint_t same_sid);
static void ngx_voice_fuzz_call_echo(ngx_uint_t n);
static void ngx_voice_fuzz_call_base64(u_char *dst, size_t quanta);
static void ngx_voice_fuzz_call_twilio_handler(ngx_event_t *ev);
static void ngx_voice_fuzz_call_openai_handler(ngx_event_t *ev);
static void ngx_voice_fuzz_call_closed_handler(ngx_event_t *ev);
static ssize_t ngx_voice_fuzz_call_recv(ngx_connection_t *c, u_char *buf,
    size_t size);
static ssize_t ngx_voice_fuzz_call_send(ngx_connection_t *c, u_char *buf,
    size_t size);
static ngx_chain_t *ngx_voice_fuzz_call_send_chain(ngx_connection_t *c,
    ngx_chain_t *in, off_t limit);
static ngx_voice_fuzz_sock_t *ngx_voice_fuzz_call_sock(ngx_connection_t *c,
    ngx_uint_t *leg);
static void ngx_voice_fuzz_call_output(ngx_uint_t leg, u_char *data,
    size_t len);
static void ngx_voice_fuzz_call_message(ngx_uint_t leg, u_char *msg,
    size_t len);
static void ngx_voice_fuzz_call_to_twilio(yajl_val root);
static void ngx_voice_fuzz_call_to_openai(ngx_voice_fuzz_out_t *out,
    u_char *msg, size_t len, yajl_val root);
static const char *ngx_voice_fuzz_call_string(yajl_val root, const char *k1,
    const char *k2);


static ngx_voice_fuzz_call_t  ngx_voice_fuzz_c;

static ngx_msec_t  ngx_voice_fuzz_start_msec;

static size_t  ngx_voice_fuzz_pieces[] = { 0, 1, 7, 100 };

static u_char  ngx_voice_fuzz_mask[4] = { 0x37, 0xfa, 0x21, 0x3d };

static u_char  ngx_voice_fuzz_session_update[] =
    "{\"type\":\"session.update\",\"session\":{\"type\":\"realtime\","
    "\"model\":\"gpt-realtime\",\"output_modalities\":[\"audio\"],"
    "\"audio\":{\"input\":{\"format\":{\"type\":\"audio/pcmu\"},"
    "\"turn_detection\":{\"type\":\"server_vad\"}},"
    "\"output\":{\"format\":{\"type\":\"audio/pcmu\"},"
    "\"voice\":\"marin\"}},\"instructions\":\"Be brief.\"}}";

static u_char  ngx_voice_fuzz_created[] =
    "{\"type\":\"session.created\",\"event_id\":\"event_1\","
    "\"session\":{\"type\":\"realtime\",\"id\":\"sess_1\","
    "\"model\":\"gpt-realtime\"}}";

static u_char  ngx_voice_fuzz_updated[] =
    "{\"type\":\"session.updated\",\"event_id\":\"event_2\","
    "\"session\":{\"type\":\"realtime\",\"id\":\"sess_1\"}}";

static u_char  ngx_voice_fuzz_speech[] =
    "{\"type\":\"input_audio_buffer.speech_started\","
    "\"event_id\":\"event_4\",\"audio_start_ms\":1000,"
    "\"item_id\":\"item_u\"}";

static u_char  ngx_voice_fuzz_greeting[] =
    "{\"type\":\"conversation.item.create\",\"item\":{\"type\":\"message\","
    "\"role\":\"user\",\"content\":[{\"type\":\"input_text\","
    "\"text\":\"Greet the caller.\"}]}}";


/* the harnesses of the Twilio and the OpenAI leg */
int
ngx_voice_fuzz_call(const u_char *data, size_t size, ngx_uint_t leg)
{
    u_char                 *early;
    size_t                  len;
    ngx_uint_t              flags, ctl, n;
    const u_char           *seg;
    ngx_buf_t              *b;
    ngx_voice_fuzz_in_t     in;
    ngx_voice_fuzz_call_t  *fc;

    fc = &ngx_voice_fuzz_c;

    if (ngx_voice_fuzz_start_msec == 0) {
        ngx_voice_fuzz_start_msec = ngx_current_msec;
    }

    in.pos = data;
    in.last = data + size;

    flags = ngx_voice_fuzz_byte(&in);

    if (leg == NGX_VOICE_FUZZ_OPENAI) {
        /* the OpenAI leg's input needs the call under way */
        flags |= NGX_VOICE_FUZZ_READY | NGX_VOICE_FUZZ_CREATED
                 | NGX_VOICE_FUZZ_STARTED;
    }

    ngx_memzero(fc, sizeof(ngx_voice_fuzz_call_t));
    fc->leg = leg;
    fc->flags = flags;

    ngx_current_msec = ngx_voice_fuzz_start_msec;

    ngx_voice_fuzz_call_create(flags);

    /* the first segment may come with the handshake, Twilio's or OpenAI's */

    seg = NULL;
    len = 0;

    if ((flags & NGX_VOICE_FUZZ_EARLY)
        && ngx_voice_fuzz_segment(&in, 0xff, &seg, &len) == NGX_OK
        && len > 0)
    {
        seg++;
        len--;
    }

    /* Twilio's: what nginx read behind the handshake, in r->header_in */

    if (leg == NGX_VOICE_FUZZ_TWILIO && len) {
        ngx_voice_fuzz_call_text(NGX_VOICE_FUZZ_TWILIO, seg, len, 0);
    }

    early = ngx_voice_fuzz_copy(fc->sock[0].in.data, fc->sock[0].in.len);

    b = fc->request->header_in;
    b->start = early;
    b->pos = early;
    b->last = early + fc->sock[0].in.len;
    b->end = b->last;
    fc->sock[0].in.len = 0;

    ngx_voice_fuzz_check(ngx_voice_call_start(fc->request, &fc->info)
                         == NGX_DONE);

    free(early);
    b->start = NULL;
    b->pos = NULL;
    b->last = NULL;
    b->end = NULL;

    /* what ngx_voice_call_start() made is the call to drive */
    fc->call = ngx_http_get_module_ctx(fc->request, ngx_voice_module);
    ngx_voice_fuzz_check(fc->call != NULL && fc->upstream != NULL);

    ngx_voice_fuzz_call_run();

    if ((flags & NGX_VOICE_FUZZ_STARTED) && !fc->finalized) {
        ngx_voice_fuzz_call_twilio_start(1);
        ngx_voice_fuzz_call_run();
    }

    if ((flags & NGX_VOICE_FUZZ_READY) && !fc->finalized) {
        ngx_voice_fuzz_call_ready(leg == NGX_VOICE_FUZZ_OPENAI ? seg : NULL,
                                  leg == NGX_VOICE_FUZZ_OPENAI ? len : 0);
        ngx_voice_fuzz_call_run();
    }

    while (!fc->finalized
           && ngx_voice_fuzz_segment(&in, 0xff, &seg, &len) == NGX_OK)
    {
        if (len == 0) {
            continue;
        }

        ctl = seg[0];

        n = ((ctl & 3) == 3) ? (len > 4 ? seg[4] : 0) : ctl >> 5;

        fc->sock[0].piece = ngx_voice_fuzz_pieces[n & 3];
        fc->sock[1].piece = fc->sock[0].piece;

        ngx_voice_fuzz_call_segment(ctl, seg + 1, len - 1);
        ngx_voice_fuzz_call_run();

        if (fc->finalized) {
            break;
        }

        if (ctl & 0x80) {
            ngx_voice_fuzz_call_read_all(NGX_VOICE_FUZZ_ALL);
            ngx_voice_fuzz_call_run();
        }

        if (fc->clear) {
            /* "clear" makes Twilio send back the marks it still had */
            fc->clear = 0;
            ngx_voice_fuzz_call_echo(NGX_VOICE_FUZZ_MARKS);
            ngx_voice_fuzz_call_run();
        }
    }

    ngx_voice_fuzz_call_teardown();

    return 0;
}


static void
ngx_voice_fuzz_call_create(ngx_uint_t flags)
{
    ngx_log_t               *log;
    ngx_pool_t              *pool;
    ngx_connection_t        *c;
    ngx_http_log_ctx_t      *ctx;
    ngx_http_request_t      *r;
    ngx_voice_loc_conf_t    *vlcf;
    ngx_voice_fuzz_call_t   *fc;
    ngx_voice_call_conf_t   *cc;

    fc = &ngx_voice_fuzz_c;

    pool = ngx_voice_fuzz_pool();
    fc->pool = pool;

    vlcf = ngx_pcalloc(pool, sizeof(ngx_voice_loc_conf_t));
    r = ngx_pcalloc(pool, sizeof(ngx_http_request_t));
    ctx = ngx_pcalloc(pool, sizeof(ngx_http_log_ctx_t));
    log = ngx_palloc(pool, sizeof(ngx_log_t));

    if (vlcf == NULL || r == NULL || ctx == NULL || log == NULL) {
        abort();
    }

    /* the location's configuration, as merged */

    cc = &vlcf->call;
    cc->start_timeout = 10000;
    cc->idle_timeout = 60000;
    cc->max_call_duration = 60 * 60 * 1000;
    cc->buffer_size = (flags & NGX_VOICE_FUZZ_SMALL) ? 8192 : 256 * 1024;
    cc->max_message_size = (flags & NGX_VOICE_FUZZ_SMALL) ? 4096
                                                          : 64 * 1024;
    cc->dtmf = (flags & NGX_VOICE_FUZZ_NO_DTMF) ? 0 : 1;

    vlcf->role = NGX_VOICE_ROLE_MEDIA_STREAM;
    vlcf->session.session_update.data = ngx_voice_fuzz_session_update;
    vlcf->session.session_update.len =
                                    sizeof(ngx_voice_fuzz_session_update) - 1;

    if (flags & NGX_VOICE_FUZZ_GREETING) {
        vlcf->session.greeting_item.data = ngx_voice_fuzz_greeting;
        vlcf->session.greeting_item.len = sizeof(ngx_voice_fuzz_greeting) - 1;
    }

    vlcf->openai.connect_timeout = 10000;

    /* the request the 101 answered, and the Twilio connection */

    *log = *ngx_voice_fuzz_log;
    log->handler = NULL;
    log->data = ctx;

    c = ngx_voice_fuzz_call_connection(NGX_VOICE_FUZZ_TWILIO, log);

    ctx->connection = c;
    ctx->request = r;
    ctx->current_request = r;

    ngx_voice_module.ctx_index = 0;

    r->ctx = ngx_pcalloc(pool, sizeof(void *));
    r->main_conf = ngx_pcalloc(pool, sizeof(void *));
    r->loc_conf = ngx_pcalloc(pool, sizeof(void *));
    r->header_in = ngx_calloc_buf(pool);

    if (r->ctx == NULL || r->main_conf == NULL || r->loc_conf == NULL
        || r->header_in == NULL)
    {
        abort();
    }

    /* no token zone: no tool that writes an outcome is configured */
    r->main_conf[0] = ngx_pcalloc(pool, sizeof(ngx_voice_main_conf_t));
    if (r->main_conf[0] == NULL) {
        abort();
    }

    r->loc_conf[0] = vlcf;
    r->connection = c;
    r->main = r;
    r->pool = pool;
    r->count = 1;
    r->http_version = NGX_HTTP_VERSION_11;
    ngx_str_set(&r->uri, "/media-stream/token");

    c->data = r;

    fc->request = r;

    /* what the token recorded: the call ngx_voice_call_start() copies */

    ngx_str_set(&fc->info.call_sid, NGX_VOICE_FUZZ_CALL_SID);
    ngx_str_set(&fc->info.account_sid, "AC123");
    ngx_str_set(&fc->info.from, "+14158675309");
    ngx_str_set(&fc->info.to, "+18005551212");

    /* a small window with small buffers: backpressure comes sooner */

    fc->sock[0].window = (flags & NGX_VOICE_FUZZ_UNLIMITED)
                         ? NGX_VOICE_FUZZ_ALL
                         : (flags & NGX_VOICE_FUZZ_SMALL)
                           ? NGX_VOICE_FUZZ_WINDOW / 16
                           : NGX_VOICE_FUZZ_WINDOW;
    fc->sock[1].window = fc->sock[0].window;

    /* Twilio's frames come to us unmasked, OpenAI's masked */
    ngx_voice_ws_parser_init(&fc->sock[0].out.parser, 0);
    ngx_voice_ws_parser_init(&fc->sock[1].out.parser, 1);
}


static ngx_connection_t *
ngx_voice_fuzz_call_connection(ngx_uint_t leg, ngx_log_t *log)
{
    ngx_event_t            *rev, *wev;
    ngx_connection_t       *c;
    ngx_voice_fuzz_call_t  *fc;

    fc = &ngx_voice_fuzz_c;

    c = ngx_pcalloc(fc->pool, sizeof(ngx_connection_t));
    rev = ngx_pcalloc(fc->pool, sizeof(ngx_event_t));
    wev = ngx_pcalloc(fc->pool, sizeof(ngx_event_t));

    if (c == NULL || rev == NULL || wev == NULL) {
        abort();
    }

    c->read = rev;
    c->write = wev;
    c->log = log;
    c->pool = fc->pool;
    c->number = 1 + leg;

    /* not a socket of ours: ngx_close_connection() closes no descriptor */
    c->fd = (ngx_socket_t) 1000;
    c->shared = 1;

    c->recv = ngx_voice_fuzz_call_recv;
    c->send = ngx_voice_fuzz_call_send;
    c->send_chain = ngx_voice_fuzz_call_send_chain;
    c->tcp_nodelay = NGX_TCP_NODELAY_DISABLED;

    rev->data = c;
    rev->log = log;
    wev->data = c;
    wev->log = log;
    wev->write = 1;
    wev->ready = 1;

    rev->handler = (leg == NGX_VOICE_FUZZ_TWILIO)
                   ? ngx_voice_fuzz_call_twilio_handler
                   : ngx_voice_fuzz_call_openai_handler;
    wev->handler = rev->handler;

    fc->sock[leg].connection = c;

    return c;
}


/* the OpenAI leg's handshake checked out: [early, +len) came behind it */
static void
ngx_voice_fuzz_call_ready(const u_char *early, size_t len)
{
    u_char                 *p;
    ngx_connection_t       *c;
    ngx_voice_fuzz_call_t  *fc;

    fc = &ngx_voice_fuzz_c;

    if (fc->sock[1].connection || fc->call->closing || fc->finalized) {
        /* opened once; a call that ends drops a leg being set up */
        return;
    }

    ngx_voice_fuzz_check(fc->upstream == &fc->call->upstream);

    c = ngx_voice_fuzz_call_connection(NGX_VOICE_FUZZ_OPENAI,
                                       fc->call->log);
    c->data = fc->upstream;

    fc->upstream->peer.connection = c;

    if (fc->flags & NGX_VOICE_FUZZ_CREATED) {
        ngx_voice_fuzz_call_text(NGX_VOICE_FUZZ_OPENAI,
                                 ngx_voice_fuzz_created,
                                 sizeof(ngx_voice_fuzz_created) - 1, 0);
    }

    if (len) {
        ngx_voice_fuzz_call_text(NGX_VOICE_FUZZ_OPENAI, early, len, 0);
    }

    /* what came with the 101 is handed over in a block of its own */

    p = ngx_voice_fuzz_copy(fc->sock[1].in.data, fc->sock[1].in.len);
    len = fc->sock[1].in.len;
    fc->sock[1].in.len = 0;

    ngx_voice_call_on_upstream_ready(fc->upstream, p, p + len);

    free(p);
}


static void
ngx_voice_fuzz_call_segment(ngx_uint_t ctl, const u_char *data, size_t len)
{
    ngx_uint_t              k, leg;
    ngx_voice_fuzz_call_t  *fc;

    fc = &ngx_voice_fuzz_c;

    leg = fc->leg;
    k = (ctl >> 2) & 7;

    switch (ctl & 3) {

    case 0:
        ngx_voice_fuzz_call_text(leg, data, len, 0);
        break;

    case 1:
        ngx_voice_fuzz_call_text(leg, data, len, (size_t) 1 << k);
        return;

    case 2:
        ngx_voice_fuzz_call_put(leg, data, len);
        break;

    default:
        ngx_voice_fuzz_call_action((ctl >> 2) & 0x1f, data, len);
        return;
    }

    if (k) {
        ngx_voice_fuzz_call_run();
        ngx_voice_fuzz_call_read_all((size_t) 32 << k);
    }
}


static void
ngx_voice_fuzz_call_action(ngx_uint_t action, const u_char *data,
    size_t len)
{
    u_char                 *p, *msg;
    size_t                  quanta, n;
    ngx_uint_t              a0, a1, a2;
    ngx_voice_fuzz_call_t  *fc;

    fc = &ngx_voice_fuzz_c;

    a0 = len > 0 ? data[0] : 0;
    a1 = len > 1 ? data[1] : 0;
    a2 = len > 2 ? data[2] : 0;

    /*
     * Up to 24k of base64: frames larger than an output chunk.  yajl
     * lexes a string again from its start for each piece it is given, so
     * cut in 1 or 7 byte pieces it is kept to 2k, for speed.
     */
    quanta = 1 + ((a1 | a2 << 8) % 6144);

    if (fc->sock[0].piece == 1 || fc->sock[0].piece == 7) {
        quanta = 1 + quanta % 512;
    }

    switch (action) {

    case 0:
        ngx_voice_fuzz_call_control(fc->leg, NGX_VOICE_WS_PING, data, len);
        break;

    case 1:
        ngx_voice_fuzz_call_control(fc->leg, NGX_VOICE_WS_CLOSE, data, len);
        break;

    case 2:
        ngx_voice_fuzz_call_control(fc->leg, NGX_VOICE_WS_PONG, data, len);
        break;

    case 3:
    case 4:
        /* the peer (3) or the other one (4) closes its TCP connection */
        n = (action == 3) ? fc->leg : !fc->leg;

        fc->sock[n].eof = 1;

        if (fc->sock[n].connection) {
            ngx_voice_fuzz_call_post(fc->sock[n].connection->read);
        }

        break;

    case 5:
        ngx_voice_fuzz_call_echo(1);
        break;

    case 6:
        ngx_voice_fuzz_call_echo(NGX_VOICE_FUZZ_MARKS);
        break;

    case 7:
        /* caller audio */
        msg = ngx_voice_fuzz_alloc(256 + 4 * quanta);

        p = ngx_sprintf(msg, "{\"event\":\"media\",\"sequenceNumber\":\"4\","
                             "\"media\":{\"track\":\"inbound\","
                             "\"chunk\":\"2\",\"timestamp\":\"5\","
                             "\"payload\":\"");
        ngx_voice_fuzz_call_base64(p, quanta);
        p += 4 * quanta;
        p = ngx_sprintf(p, "\"},\"streamSid\":\"%s\"}",
                        NGX_VOICE_FUZZ_STREAM_SID);

        ngx_voice_fuzz_call_text(NGX_VOICE_FUZZ_TWILIO, msg, p - msg, 0);
        free(msg);
        break;

    case 8:
        msg = ngx_voice_fuzz_alloc(256);

        p = ngx_sprintf(msg, "{\"event\":\"dtmf\",\"streamSid\":\"%s\","
                             "\"sequenceNumber\":\"5\",\"dtmf\":"
                             "{\"track\":\"inbound_track\",\"digit\":\"%c\"}}",
                        NGX_VOICE_FUZZ_STREAM_SID,
                        "0123456789*#ABCDx"[a0 % 17]);

        ngx_voice_fuzz_call_text(NGX_VOICE_FUZZ_TWILIO, msg, p - msg, 0);
        free(msg);
        break;

    case 9:
        msg = ngx_voice_fuzz_alloc(256);

        p = ngx_sprintf(msg, "{\"event\":\"stop\",\"sequenceNumber\":\"5\","
                             "\"stop\":{\"accountSid\":\"AC123\","
                             "\"callSid\":\"%s\"},\"streamSid\":\"%s\"}",
                        NGX_VOICE_FUZZ_CALL_SID, NGX_VOICE_FUZZ_STREAM_SID);

        ngx_voice_fuzz_call_text(NGX_VOICE_FUZZ_TWILIO, msg, p - msg, 0);
        free(msg);
        break;

    case 10:
        ngx_voice_fuzz_call_twilio_start(!(a0 & 1));
        break;

    case 11:
        ngx_voice_fuzz_call_ready(data, len);
        break;

    case 12:
        if (fc->sock[1].connection == NULL && !fc->call->closing) {
            ngx_voice_call_on_upstream_failed(fc->upstream,
                                              NGX_VOICE_UPSTREAM_CONNECT,
                                              "connection refused");
        }

        break;

    case 13:
        ngx_voice_fuzz_call_text(NGX_VOICE_FUZZ_OPENAI,
                                 ngx_voice_fuzz_created,
                                 sizeof(ngx_voice_fuzz_created) - 1, 0);
        break;

    case 14:
        ngx_voice_fuzz_call_text(NGX_VOICE_FUZZ_OPENAI,
                                 ngx_voice_fuzz_updated,
                                 sizeof(ngx_voice_fuzz_updated) - 1, 0);
        break;

    case 15:
        /* the model speaks: item and response ids the input picks */
        msg = ngx_voice_fuzz_alloc(256 + 4 * quanta);

        p = ngx_sprintf(msg, "{\"type\":\"response.output_audio.delta\","
                             "\"event_id\":\"event_3\",");

        if (a0 & 0x80) {
            /* the delta before the ids: it waits for them */
            p = ngx_sprintf(p, "\"delta\":\"");
            ngx_voice_fuzz_call_base64(p, quanta);
            p += 4 * quanta;
            p = ngx_sprintf(p, "\",\"response_id\":\"resp_%ui\","
                               "\"item_id\":\"item_%ui\"}",
                            (a0 >> 4) % 3, a0 % 6);

        } else {
            p = ngx_sprintf(p, "\"response_id\":\"resp_%ui\","
                               "\"item_id\":\"item_%ui\",\"output_index\":0,"
                               "\"content_index\":0,\"delta\":\"",
                            (a0 >> 4) % 3, a0 % 6);
            ngx_voice_fuzz_call_base64(p, quanta);
            p += 4 * quanta;
            p = ngx_sprintf(p, "\"}");
        }

        ngx_voice_fuzz_call_text(NGX_VOICE_FUZZ_OPENAI, msg, p - msg, 0);
        free(msg);
        break;

    case 16:
        ngx_voice_fuzz_call_text(NGX_VOICE_FUZZ_OPENAI,
                                 ngx_voice_fuzz_speech,
                                 sizeof(ngx_voice_fuzz_speech) - 1, 0);
        break;

    case 17:
        /* time passes, up to 70 minutes, and the timers fire */
        ngx_current_msec += (ngx_msec_t) 1 << (a0 % 23);
        ngx_event_expire_timers();
        break;

    case 18:
        /* the peers read this much more */
        ngx_voice_fuzz_call_read_all((size_t) a0 << (a1 % 12));
        break;

    default:
        ngx_voice_fuzz_call_control(!fc->leg, NGX_VOICE_WS_PING, data, len);
        break;
    }
}


/* what nginx would do to a request that ends without finalizing */
static void
ngx_voice_fuzz_call_teardown(void)
{
    ngx_uint_t               leg;
    ngx_http_cleanup_t      *cln;
    ngx_voice_fuzz_call_t   *fc;

    fc = &ngx_voice_fuzz_c;

    if (!fc->finalized) {
        /* the request's cleanups: a client abort, or shutdown */

        for (cln = fc->request->cleanup; cln; cln = cln->next) {
            if (cln->handler) {
                cln->handler(cln->data);
            }
        }

        ngx_voice_fuzz_check(fc->call->done);
    }

    /* every timer of the call is gone with it */

    ngx_voice_fuzz_check(ngx_event_timer_rbtree.root
                         == ngx_event_timer_rbtree.sentinel);

    /* the release frees the JSON parsers; no matter, it is idempotent */

    ngx_voice_twilio_free(&fc->call->twilio);
    ngx_voice_realtime_free(&fc->call->openai);

    ngx_voice_fuzz_pool_done(fc->pool);

    for (leg = 0; leg < 2; leg++) {
        free(fc->sock[leg].in.data);
        free(fc->sock[leg].out.msg.data);
    }
}


/* the posted events, as the event loop runs them */
static void
ngx_voice_fuzz_call_run(void)
{
    ngx_uint_t    n;
    ngx_queue_t  *q;
    ngx_event_t  *ev;

    for (n = 0; !ngx_queue_empty(&ngx_posted_events); n++) {

        /* a handler that posts itself for ever is a finding too */
        ngx_voice_fuzz_check(n < NGX_VOICE_FUZZ_EVENTS);

        q = ngx_queue_head(&ngx_posted_events);
        ev = ngx_queue_data(q, ngx_event_t, queue);

        ngx_delete_posted_event(ev);

        ev->handler(ev);
    }
}


/* the peers read: their windows grow, and writing goes on */
static void
ngx_voice_fuzz_call_read_all(size_t bytes)
{
    ngx_uint_t              leg;
    ngx_voice_fuzz_sock_t  *s;

    for (leg = 0; leg < 2; leg++) {
        s = &ngx_voice_fuzz_c.sock[leg];

        if (s->window != NGX_VOICE_FUZZ_ALL) {
            s->window = (bytes == NGX_VOICE_FUZZ_ALL
                         || s->window + bytes < s->window)
                        ? NGX_VOICE_FUZZ_ALL - 1
                        : s->window + bytes;
        }

        if (s->connection && !s->connection->write->ready) {
            ngx_voice_fuzz_call_post(s->connection->write);
        }
    }
}


/* bytes from a peer arrive on its socket */
static void
ngx_voice_fuzz_call_put(ngx_uint_t leg, const u_char *data, size_t len)
{
    ngx_voice_fuzz_sock_t  *s;

    if (len == 0) {
        return;
    }

    s = &ngx_voice_fuzz_c.sock[leg];

    ngx_voice_fuzz_buf_add(&s->in, data, len);

    if (s->connection) {
        ngx_voice_fuzz_call_post(s->connection->read);
    }
}


/* the event loop reports a socket ready; a closed one reports nothing */
static void
ngx_voice_fuzz_call_post(ngx_event_t *ev)
{
    if (ev->closed) {
        return;
    }

    ev->ready = 1;
    ngx_post_event(ev, &ngx_posted_events);
}


/* a text message, as frames of "fragment" bytes (0: one frame) */
static void
ngx_voice_fuzz_call_text(ngx_uint_t leg, const u_char *msg, size_t len,
    size_t fragment)
{
    u_char      *frames, *p, *payload;
    size_t       n, size;
    ngx_uint_t   opcode;

    if (fragment == 0 || fragment > len) {
        fragment = ngx_max(len, 1);
    }

    size = len + (len / fragment + 1) * NGX_VOICE_WS_HEADER_MAX;

    frames = ngx_voice_fuzz_alloc(size);

    p = frames;
    opcode = NGX_VOICE_WS_TEXT;

    do {
        n = ngx_min(fragment, len);

        p = ngx_voice_ws_write_header(p, opcode, n == len, n,
                                      leg == NGX_VOICE_FUZZ_TWILIO
                                      ? ngx_voice_fuzz_mask : NULL);
        payload = p;
        p = ngx_cpymem(p, msg, n);

        if (leg == NGX_VOICE_FUZZ_TWILIO) {
            ngx_voice_ws_mask(payload, n, ngx_voice_fuzz_mask, 0);
        }

        msg += n;
        len -= n;
        opcode = NGX_VOICE_WS_CONT;

    } while (len);

    ngx_voice_fuzz_call_put(leg, frames, p - frames);

    free(frames);
}


static void
ngx_voice_fuzz_call_control(ngx_uint_t leg, ngx_uint_t opcode,
    const u_char *payload, size_t len)
{
    u_char  *p;
    u_char   frame[NGX_VOICE_WS_HEADER_MAX + NGX_VOICE_WS_CONTROL_MAX];

    len = ngx_min(len, NGX_VOICE_WS_CONTROL_MAX);

    p = ngx_voice_ws_write_header(frame, opcode, 1, len,
                                  leg == NGX_VOICE_FUZZ_TWILIO
                                  ? ngx_voice_fuzz_mask : NULL);
    ngx_memcpy(p, payload, len);

    if (leg == NGX_VOICE_FUZZ_TWILIO) {
        ngx_voice_ws_mask(p, len, ngx_voice_fuzz_mask, 0);
    }

    ngx_voice_fuzz_call_put(leg, frame, p + len - frame);
}


/* Twilio's first two messages, for this call's CallSid or another */
static void
ngx_voice_fuzz_call_twilio_start(ngx_uint_t same_sid)
{
    u_char  *p;
    u_char   msg[512];

    p = ngx_sprintf(msg, "{\"event\":\"connected\",\"protocol\":\"Call\","
                         "\"version\":\"1.0.0\"}");

    ngx_voice_fuzz_call_text(NGX_VOICE_FUZZ_TWILIO, msg, p - msg, 0);

    p = ngx_sprintf(msg, "{\"event\":\"start\",\"sequenceNumber\":\"1\","
                         "\"start\":{\"accountSid\":\"AC123\","
                         "\"streamSid\":\"%s\",\"callSid\":\"%s\","
                         "\"tracks\":[\"inbound\"],\"mediaFormat\":"
                         "{\"encoding\":\"audio/x-mulaw\",\"sampleRate\":8000,"
                         "\"channels\":1},\"customParameters\":"
                         "{\"FirstName\":\"Jane\"}},\"streamSid\":\"%s\"}",
                    NGX_VOICE_FUZZ_STREAM_SID,
                    same_sid ? NGX_VOICE_FUZZ_CALL_SID
                             : "CA00000000000000000000000000000000",
                    NGX_VOICE_FUZZ_STREAM_SID);

    ngx_voice_fuzz_call_text(NGX_VOICE_FUZZ_TWILIO, msg, p - msg, 0);
}


/* Twilio plays the oldest "n" marks it was sent and echoes them */
static void
ngx_voice_fuzz_call_echo(ngx_uint_t n)
{
    u_char                 *p;
    ngx_voice_fuzz_call_t  *fc;
    u_char                  msg[256];

    fc = &ngx_voice_fuzz_c;

    while (n-- && fc->nmarks) {
        p = ngx_sprintf(msg, "{\"event\":\"mark\",\"sequenceNumber\":\"4\","
                             "\"streamSid\":\"%s\",\"mark\":{\"name\":\"",
                        NGX_VOICE_FUZZ_STREAM_SID);
        p = ngx_cpymem(p, fc->marks[fc->mark_head],
                       fc->mark_len[fc->mark_head]);
        p = ngx_cpymem(p, "\"}}", 3);

        fc->mark_head = (fc->mark_head + 1) % NGX_VOICE_FUZZ_MARKS;
        fc->nmarks--;

        ngx_voice_fuzz_call_text(NGX_VOICE_FUZZ_TWILIO, msg, p - msg, 0);
    }
}


static void
ngx_voice_fuzz_call_base64(u_char *dst, size_t quanta)
{
    while (quanta--) {
        dst = ngx_cpymem(dst, "f39/", 4);
    }
}


/* ngx_http_request_handler(), for the Twilio connection */
static void
ngx_voice_fuzz_call_twilio_handler(ngx_event_t *ev)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    c = ev->data;
    r = c->data;

    if (ev->write) {
        r->write_event_handler(r);

    } else {
        r->read_event_handler(r);
    }

    ngx_http_run_posted_requests(c);
}


/* ngx_voice_upstream_handler(), for the OpenAI connection */
static void
ngx_voice_fuzz_call_openai_handler(ngx_event_t *ev)
{
    ngx_connection_t      *c;
    ngx_voice_upstream_t  *u;

    c = ev->data;
    u = c->data;

    if (ev->write) {
        u->write_event_handler(u);

    } else {
        u->read_event_handler(u);
    }

    ngx_http_run_posted_requests(u->request->connection);
}


static void
ngx_voice_fuzz_call_closed_handler(ngx_event_t *ev)
{
    ngx_voice_fuzz_fail(__FILE__, __LINE__, "an event of a closed request");
}


static ssize_t
ngx_voice_fuzz_call_recv(ngx_connection_t *c, u_char *buf, size_t size)
{
    size_t                  n;
    ngx_voice_fuzz_sock_t  *s;

    s = ngx_voice_fuzz_call_sock(c, NULL);

    n = s->in.len - s->in_pos;

    if (n == 0) {
        s->in_pos = 0;
        s->in.len = 0;
        c->read->ready = 0;

        if (s->eof) {
            c->read->eof = 1;
            return 0;
        }

        return NGX_AGAIN;
    }

    n = ngx_min(n, size);

    if (s->piece) {
        n = ngx_min(n, s->piece);
    }

    ngx_memcpy(buf, s->in.data + s->in_pos, n);
    s->in_pos += n;

    return n;
}


static ssize_t
ngx_voice_fuzz_call_send(ngx_connection_t *c, u_char *buf, size_t size)
{
    ngx_voice_fuzz_fail(__FILE__, __LINE__, "send() on a leg");
}


/* as much as the peer's window takes; the rest waits for a write event */
static ngx_chain_t *
ngx_voice_fuzz_call_send_chain(ngx_connection_t *c, ngx_chain_t *in,
    off_t limit)
{
    size_t                  n;
    ngx_buf_t              *b;
    ngx_uint_t              leg;
    ngx_voice_fuzz_sock_t  *s;

    s = ngx_voice_fuzz_call_sock(c, &leg);

    ngx_voice_fuzz_check(c->write->ready);

    if (s->eof) {
        /* the peer is gone: the write fails as on a reset connection */
        return NGX_CHAIN_ERROR;
    }

    for ( /* void */ ; in; in = in->next) {
        b = in->buf;

        ngx_voice_fuzz_check(b->start <= b->pos && b->pos <= b->last
                             && b->last <= b->end && !b->in_file);

        if (b->pos == b->last) {
            continue;
        }

        /*
         * A chunk that does not continue a frame starts one: output may
         * be dropped from there on (ngx_voice_peer_discard())
         */

        if (b->pos == b->start && b->tag == NULL) {
            ngx_voice_fuzz_check(!s->out.parser.in_frame
                                 && s->out.parser.hdr_len == 0);
        }

        n = b->last - b->pos;

        if (s->window != NGX_VOICE_FUZZ_ALL) {
            n = ngx_min(n, s->window);
            s->window -= n;
        }

        ngx_voice_fuzz_call_output(leg, b->pos, n);

        b->pos += n;

        if (b->pos < b->last) {
            c->write->ready = 0;
            return in;
        }
    }

    return NULL;
}


static ngx_voice_fuzz_sock_t *
ngx_voice_fuzz_call_sock(ngx_connection_t *c, ngx_uint_t *leg)
{
    ngx_uint_t  i;

    for (i = 0; i < 2; i++) {
        if (ngx_voice_fuzz_c.sock[i].connection == c) {
            if (leg) {
                *leg = i;
            }

            return &ngx_voice_fuzz_c.sock[i];
        }
    }

    ngx_voice_fuzz_fail(__FILE__, __LINE__, "a connection of no leg");
}


/* what a leg was sent, parsed as its peer parses it */
static void
ngx_voice_fuzz_call_output(ngx_uint_t leg, u_char *data, size_t len)
{
    u_char                *copy, *pos, *last;
    ngx_voice_ws_event_t   ev;
    ngx_voice_fuzz_out_t  *out;

    out = &ngx_voice_fuzz_c.sock[leg].out;

    copy = ngx_voice_fuzz_copy(data, len);
    pos = copy;
    last = copy + len;

    while (pos < last) {

        ngx_voice_ws_parse(&out->parser, &pos, last, &ev);

        switch (ev.type) {

        case NGX_VOICE_WS_EV_AGAIN:
            break;

        case NGX_VOICE_WS_EV_ERROR:
            fprintf(stderr, "ngx_voice fuzz: %s was sent a bad frame: %s\n",
                    leg ? "OpenAI" : "Twilio", ev.reason);
            ngx_voice_fuzz_fail(__FILE__, __LINE__, "a frame sent");

        case NGX_VOICE_WS_EV_CONTROL:

            /* nothing follows a close frame */
            ngx_voice_fuzz_check(!out->closed);

            if (ev.opcode == NGX_VOICE_WS_CLOSE) {
                out->closed = 1;
            }

            break;

        default: /* NGX_VOICE_WS_EV_DATA */

            ngx_voice_fuzz_check(!out->closed);
            ngx_voice_fuzz_check(ev.opcode == NGX_VOICE_WS_TEXT);

            ngx_voice_fuzz_buf_add(&out->msg, ev.data, ev.len);

            if (ev.last) {
                ngx_voice_fuzz_call_message(leg, out->msg.data,
                                            out->msg.len);
                out->msg.len = 0;
            }

            break;
        }
    }

    free(copy);
}


/* one JSON object of a kind the protocol allows, in an order it allows */
static void
ngx_voice_fuzz_call_message(ngx_uint_t leg, u_char *msg, size_t len)
{
    char      *text;
    yajl_val   root;
    char       err[128];

    /* yajl_tree takes a C string: a NUL would hide what follows it */
    ngx_voice_fuzz_check(memchr(msg, '\0', len) == NULL);

    text = ngx_voice_fuzz_alloc(len + 1);

    ngx_memcpy(text, msg, len);
    text[len] = '\0';

    root = yajl_tree_parse(text, err, sizeof(err));

    if (root == NULL || !YAJL_IS_OBJECT(root)) {
        fprintf(stderr, "ngx_voice fuzz: %s was sent no JSON object (%s): "
                "%.*s\n", leg ? "OpenAI" : "Twilio", err, (int) len, msg);
        ngx_voice_fuzz_fail(__FILE__, __LINE__, "a message sent");
    }

    if (leg == NGX_VOICE_FUZZ_TWILIO) {
        ngx_voice_fuzz_call_to_twilio(root);

    } else {
        ngx_voice_fuzz_call_to_openai(&ngx_voice_fuzz_c.sock[leg].out,
                                      msg, len, root);
    }

    yajl_tree_free(root);
    free(text);
}


/* media, mark or clear, for the stream that started (error 31924) */
static void
ngx_voice_fuzz_call_to_twilio(yajl_val root)
{
    size_t                  len;
    ngx_str_t              *sid;
    const char             *event, *s;
    ngx_voice_fuzz_call_t  *fc;

    fc = &ngx_voice_fuzz_c;

    event = ngx_voice_fuzz_call_string(root, "event", NULL);
    s = ngx_voice_fuzz_call_string(root, "streamSid", NULL);

    ngx_voice_fuzz_check(event != NULL && s != NULL);

    sid = &fc->call->twilio.stream_sid;

    ngx_voice_fuzz_check(fc->call->twilio.started && sid->len != 0
                         && strlen(s) == sid->len
                         && ngx_memcmp(s, sid->data, sid->len) == 0);

    if (strcmp(event, "media") == 0) {
        s = ngx_voice_fuzz_call_string(root, "media", "payload");

        ngx_voice_fuzz_check(s != NULL && *s != '\0'
                             && ngx_voice_fuzz_base64_decode((u_char *) s,
                                                             strlen(s), NULL)
                                > 0);
        return;
    }

    if (strcmp(event, "mark") == 0) {
        s = ngx_voice_fuzz_call_string(root, "mark", "name");
        ngx_voice_fuzz_check(s != NULL);

        len = strlen(s);

        /* the module's names, "g<generation>:m<seq>" */
        ngx_voice_fuzz_check(len > 0 && len <= NGX_VOICE_MARK_NAME_MAX
                             && strspn(s, "gm:0123456789") == len);

        if (fc->nmarks == NGX_VOICE_FUZZ_MARKS) {
            fc->mark_head = (fc->mark_head + 1) % NGX_VOICE_FUZZ_MARKS;
            fc->nmarks--;
        }

        len = ngx_min(len, NGX_VOICE_FUZZ_MARK_MAX);

        ngx_memcpy(fc->marks[(fc->mark_head + fc->nmarks)
                             % NGX_VOICE_FUZZ_MARKS], s, len);
        fc->mark_len[(fc->mark_head + fc->nmarks) % NGX_VOICE_FUZZ_MARKS] =
                                                                          len;
        fc->nmarks++;
        return;
    }

    ngx_voice_fuzz_check(strcmp(event, "clear") == 0);

    fc->clear = 1;
}


/*
 * The client events the relay sends; session.update before what would
 * be taken for another session's (audio, digits, the greeting), while a
 * truncation or a denial answers OpenAI's own events at any time
 */
static void
ngx_voice_fuzz_call_to_openai(ngx_voice_fuzz_out_t *out, u_char *msg,
    size_t len, yajl_val root)
{
    yajl_val     v;
    const char  *type, *s;
    const char  *ms[] = { "audio_end_ms", NULL };
    const char  *ci[] = { "content_index", NULL };
    const char  *ap[] = { "item", "approve", NULL };

    type = ngx_voice_fuzz_call_string(root, "type", NULL);
    ngx_voice_fuzz_check(type != NULL);

    if (strcmp(type, "session.update") == 0) {
        ngx_voice_fuzz_check(!out->session);
        ngx_voice_fuzz_check(len == sizeof(ngx_voice_fuzz_session_update) - 1
                             && ngx_memcmp(msg,
                                           ngx_voice_fuzz_session_update,
                                           len)
                                == 0);
        out->session = 1;
        return;
    }

    if (strcmp(type, "input_audio_buffer.append") == 0) {

        /* before session.update OpenAI would take audio as PCM16 */
        ngx_voice_fuzz_check(out->session);

        s = ngx_voice_fuzz_call_string(root, "audio", NULL);

        ngx_voice_fuzz_check(s != NULL && *s != '\0'
                             && ngx_voice_fuzz_base64_decode((u_char *) s,
                                                             strlen(s), NULL)
                                > 0);
        return;
    }

    if (strcmp(type, "response.create") == 0) {
        /* the greeting's, or a digit's */
        ngx_voice_fuzz_check(out->session);
        return;
    }

    if (strcmp(type, "conversation.item.truncate") == 0) {
        ngx_voice_fuzz_check(ngx_voice_fuzz_call_string(root, "item_id",
                                                        NULL)
                             != NULL);

        v = yajl_tree_get(root, ms, yajl_t_number);
        ngx_voice_fuzz_check(v != NULL && YAJL_IS_INTEGER(v)
                             && YAJL_GET_INTEGER(v) >= 0);

        v = yajl_tree_get(root, ci, yajl_t_number);
        ngx_voice_fuzz_check(v != NULL && YAJL_IS_INTEGER(v)
                             && YAJL_GET_INTEGER(v) == 0);
        return;
    }

    ngx_voice_fuzz_check(strcmp(type, "conversation.item.create") == 0);

    s = ngx_voice_fuzz_call_string(root, "item", "type");
    ngx_voice_fuzz_check(s != NULL);

    if (strcmp(s, "message") == 0) {
        /* the greeting, or a digit: they wait for the session */
        ngx_voice_fuzz_check(out->session);
        return;
    }

    /* a tool's approval request, always denied */

    ngx_voice_fuzz_check(strcmp(s, "mcp_approval_response") == 0);
    ngx_voice_fuzz_check(ngx_voice_fuzz_call_string(root, "item",
                                                    "approval_request_id")
                         != NULL);

    v = yajl_tree_get(root, ap, yajl_t_false);
    ngx_voice_fuzz_check(v != NULL);
}


static const char *
ngx_voice_fuzz_call_string(yajl_val root, const char *k1, const char *k2)
{
    yajl_val     v;
    const char  *path[3];

    path[0] = k1;
    path[1] = k2;
    path[2] = NULL;

    v = yajl_tree_get(root, path, yajl_t_string);

    return v ? YAJL_GET_STRING(v) : NULL;
}


/*
 * Link-time stand-ins (-Wl,--wrap): the OpenAI leg's set-up, which the
 * input replaces, and the request's finalization, which is checked and
 * stops the call here.
 */

void __wrap_ngx_voice_upstream_start(ngx_voice_upstream_t *u);
void __wrap_ngx_http_finalize_request(ngx_http_request_t *r, ngx_int_t rc);


void
__wrap_ngx_voice_upstream_start(ngx_voice_upstream_t *u)
{
    ngx_voice_fuzz_check(ngx_voice_fuzz_c.upstream == NULL);

    ngx_voice_fuzz_c.upstream = u;
}


void
__wrap_ngx_http_finalize_request(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_connection_t       *c;
    ngx_voice_call_t       *call;
    ngx_voice_fuzz_call_t  *fc;

    fc = &ngx_voice_fuzz_c;

    /* once, with the request held since the take-over */

    ngx_voice_fuzz_check(r == fc->request && rc == NGX_DONE);
    ngx_voice_fuzz_check(!fc->finalized && r->count == 2);

    call = ngx_http_get_module_ctx(r, ngx_voice_module);
    ngx_voice_fuzz_check(call != NULL && call->done);

    fc->finalized = 1;
    r->count--;

    /* the request and its connection would be closed and freed now */

    c = r->connection;

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    c->read->closed = 1;
    c->write->closed = 1;
    c->read->handler = ngx_voice_fuzz_call_closed_handler;
    c->write->handler = ngx_voice_fuzz_call_closed_handler;
}
