
/*
 * Copyright (C) ngx_voice authors
 *
 * Twilio's side of a call, as Twilio does it: the signed webhook, the
 * signed upgrade to the Stream URL of the TwiML, connected and start, a
 * 160-byte frame every 20 ms, each mark echoed once the audio before it
 * has played (8 bytes a millisecond), the playback queue dropped on clear
 * (with its marks echoed), stop.
 */


#define _GNU_SOURCE
#include <string.h>
#include <stdlib.h>
#include <openssl/evp.h>
#include "rig.h"


#define RIG_PUBLIC_HOST  "voice.example.com"
#define RIG_AUTH_TOKEN   "12345"
#define RIG_CALLER_FROM  "+15550100001"
#define RIG_CALLER_TO    "+15550199999"
#define RIG_STOP_DRAIN   400000      /* us from the last frame to stop */


static int rig_caller_cb(struct lws *wsi, enum lws_callback_reasons reason,
    void *user, void *in, size_t len);
static int rig_caller_webhook(rig_caller_t *c);
static int rig_caller_upgrade(rig_caller_t *c);
static int rig_caller_connect(rig_caller_t *c, rig_call_state_e state,
    int port, const char *path, const char *method, struct lws **pwsi);
static int rig_caller_headers(rig_caller_t *c, struct lws *wsi, void *in,
    size_t len);
static int rig_caller_twiml(rig_caller_t *c);
static int rig_caller_write(rig_caller_t *c, struct lws *wsi);
static int rig_caller_media(rig_caller_t *c, struct lws *wsi, int64_t now);
static int rig_caller_message(rig_caller_t *c, const char *msg, size_t len);
static void rig_caller_returned(rig_caller_t *c, const char *payload,
    size_t len, int64_t now);
static void rig_caller_failed(rig_caller_t *c, const char *why);
static void rig_caller_closed(rig_caller_t *c);
static void rig_frame_final(rig_frame_t *f, int64_t cut_from);


const struct lws_protocols  rig_caller_protocol = {
    "rig-caller", rig_caller_cb, 0, 8192, 0, NULL, 0
};


int
rig_caller_launch(rig_caller_t *c, int floor)
{
    rig_buf_t  rx, http_rx;
    uint32_t   idx;

    idx = c->idx;
    rx = c->rx;
    http_rx = c->http_rx;

    memset(c, 0, sizeof(rig_caller_t));

    c->idx = idx;
    c->rx = rx;
    c->rx.len = 0;
    c->http_rx = http_rx;
    c->http_rx.len = 0;
    c->floor = floor;

    memcpy(c->call_sid, "CA", 2);
    rig_hex(c->call_sid + 2, 32);
    memcpy(c->stream_sid, "MZ", 2);
    rig_hex(c->stream_sid + 2, 32);

    if (floor) {
        snprintf(c->path, sizeof(c->path), "/floor");
        return rig_caller_upgrade(c);
    }

    rig.calls_started++;

    return rig_caller_webhook(c);
}


/* POST /incoming-call, signed over the URL and the sorted parameters */
static int
rig_caller_webhook(rig_caller_t *c)
{
    int   n;
    char  acct[36], data[512];

    memcpy(acct, "AC", 2);
    rig_hex(acct + 2, 32);
    acct[34] = '\0';

    c->body_len = snprintf(c->body, sizeof(c->body),
                           "AccountSid=%s&CallSid=%s&From=%%2B%s&To=%%2B%s",
                           acct, c->call_sid, RIG_CALLER_FROM + 1,
                           RIG_CALLER_TO + 1);

    n = snprintf(data, sizeof(data),
                 "https://" RIG_PUBLIC_HOST "/incoming-call"
                 "AccountSid%sCallSid%sFrom%sTo%s",
                 acct, c->call_sid, RIG_CALLER_FROM, RIG_CALLER_TO);

    if (rig_sign(RIG_AUTH_TOKEN, data, n, c->sig) != 0) {
        return -1;
    }

    return rig_caller_connect(c, RIG_CALL_WEBHOOK, rig.nginx_port,
                              "/incoming-call", "POST", &c->http);
}


/* the WebSocket to the Stream URL (or to the floor) */
static int
rig_caller_upgrade(rig_caller_t *c)
{
    int   n;
    char  url[256];

    if (!c->floor) {
        n = snprintf(url, sizeof(url), "wss://" RIG_PUBLIC_HOST "%s",
                     c->path);

        if (rig_sign(RIG_AUTH_TOKEN, url, n, c->sig) != 0) {
            return -1;
        }
    }

    return rig_caller_connect(c, RIG_CALL_UPGRADE,
                              c->floor ? rig.floor_port : rig.nginx_port,
                              c->path, NULL, &c->ws);
}


/* a connection of this call's: the webhook (POST) or its WebSocket */
static int
rig_caller_connect(rig_caller_t *c, rig_call_state_e state, int port,
    const char *path, const char *method, struct lws **pwsi)
{
    struct lws_client_connect_info  i;

    c->state = state;

    memset(&i, 0, sizeof(i));
    i.context = rig.ctx;
    i.vhost = rig.client_vh;
    i.address = rig.host;
    i.port = port;
    i.path = path;
    i.host = RIG_PUBLIC_HOST;
    i.method = method;
    i.ietf_version_or_minus_one = -1;
    i.local_protocol_name = rig_caller_protocol.name;
    i.userdata = c;
    i.pwsi = pwsi;

    /* a failure may have been reported already, through the callback */

    if (lws_client_connect_via_info(&i) == NULL && c->state == state) {
        rig_caller_failed(c, method ? "webhook connect" : "upgrade connect");
        return -1;
    }

    return 0;
}


static int
rig_caller_cb(struct lws *wsi, enum lws_callback_reasons reason,
    void *user, void *in, size_t len)
{
    int            n;
    char           buf[LWS_PRE + 4096], *p;
    size_t         mlen;
    const char    *msg;
    unsigned char  body[LWS_PRE + 256];
    rig_caller_t  *c = user;

    if (c == NULL) {
        return 0;
    }

    switch (reason) {

    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        rig_caller_failed(c, in ? (const char *) in : "connection error");
        return 0;

    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        return rig_caller_headers(c, wsi, in, len);

    case LWS_CALLBACK_CLIENT_HTTP_WRITEABLE:
        if (c->state != RIG_CALL_WEBHOOK || c->body_len == 0) {
            return 0;
        }

        memcpy(body + LWS_PRE, c->body, c->body_len);
        lws_client_http_body_pending(wsi, 0);

        if (lws_write(wsi, body + LWS_PRE, c->body_len, LWS_WRITE_HTTP_FINAL)
            != (int) c->body_len)
        {
            return -1;
        }

        c->body_len = 0;
        return 0;

    case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP:
        if (c->state == RIG_CALL_WEBHOOK
            && lws_http_client_http_response(wsi) != 200)
        {
            rig_caller_failed(c, "webhook status");
            return -1;
        }

        return 0;

    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP:
        p = buf + LWS_PRE;
        n = sizeof(buf) - LWS_PRE;

        if (lws_http_client_read(wsi, &p, &n) < 0) {
            return -1;
        }

        return 0;

    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP_READ:
        if (rig_buf_add(&c->http_rx, in, len) != 0) {
            return -1;
        }

        return 0;

    case LWS_CALLBACK_COMPLETED_CLIENT_HTTP:
        if (c->state != RIG_CALL_WEBHOOK) {
            return 0;
        }

        c->http = NULL;

        if (rig_caller_twiml(c) != 0) {
            rig_caller_failed(c, "no Stream URL in the TwiML");
            return -1;
        }

        (void) rig_caller_upgrade(c);

        /* the webhook's connection is done with */
        return -1;

    case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
        if (c->state == RIG_CALL_WEBHOOK && wsi == c->http) {
            rig_caller_failed(c, "webhook closed");
        }

        return 0;

    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        c->state = RIG_CALL_OPEN;
        c->upgraded = 1;
        c->ws = wsi;

        if (!c->floor) {
            rig.calls_upgraded++;
        }

        /* calls start spread over the 20 ms, on the tick's 1 ms grid */
        c->next_us = rig.tick_us + 1000 * (1 + (c->idx * 7) % 20);
        c->play_end_us = 0;

        lws_callback_on_writable(wsi);
        return 0;

    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return rig_caller_write(c, wsi);

    case LWS_CALLBACK_CLIENT_RECEIVE:
        n = rig_message(wsi, &c->rx, in, len, &msg, &mlen);

        return n == 1 ? rig_caller_message(c, msg, mlen) : n;

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        c->msgs_recv++;

        if (len >= 2) {
            c->peer_close_code = ((unsigned char *) in)[0] << 8
                                 | ((unsigned char *) in)[1];
        }

        if (!c->stop_sent) {
            c->closed_by_peer = 1;
        }

        return 0;

    case LWS_CALLBACK_CLIENT_CLOSED:
        if (wsi == c->ws) {
            rig_caller_closed(c);
        }

        return 0;

    default:
        return 0;
    }
}


static int
rig_caller_headers(rig_caller_t *c, struct lws *wsi, void *in, size_t len)
{
    char             clen[16];
    unsigned char  **p, *end;

    p = (unsigned char **) in;
    end = *p + len;

    if (c->floor) {
        return 0;
    }

    if (lws_add_http_header_by_name(wsi,
                                    (const unsigned char *)
                                    "x-twilio-signature:",
                                    (const unsigned char *) c->sig,
                                    (int) strlen(c->sig), p, end))
    {
        return -1;
    }

    if (c->state != RIG_CALL_WEBHOOK) {
        return 0;
    }

    snprintf(clen, sizeof(clen), "%zu", c->body_len);

    if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
                                     (const unsigned char *)
                                     "application/x-www-form-urlencoded",
                                     33, p, end)
        || lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH,
                                        (const unsigned char *) clen,
                                        (int) strlen(clen), p, end)
        || lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
                                        (const unsigned char *) "close",
                                        5, p, end))
    {
        return -1;
    }

    lws_client_http_body_pending(wsi, 1);
    lws_callback_on_writable(wsi);

    return 0;
}


/* the token is the last path segment of <Stream url="..."> */
static int
rig_caller_twiml(rig_caller_t *c)
{
    static const char  pfx[] = "<Stream url=\"wss://" RIG_PUBLIC_HOST;

    char  *p, *q, *last;

    if (rig_buf_add(&c->http_rx, "", 1) != 0) {
        return -1;
    }

    p = strstr((char *) c->http_rx.data, pfx);
    if (p == NULL) {
        return -1;
    }

    p += sizeof(pfx) - 1;
    last = (char *) c->http_rx.data + c->http_rx.len;

    q = memchr(p, '"', last - p);
    if (q == NULL || (size_t) (q - p) >= sizeof(c->path)) {
        return -1;
    }

    memcpy(c->path, p, q - p);
    c->path[q - p] = '\0';
    c->http_rx.len = 0;

    return 0;
}


/* what is due: the greeting messages, frames, mark echoes, digits, stop */
static int
rig_caller_write(rig_caller_t *c, struct lws *wsi)
{
    int          n;
    char         msg[512];
    int64_t      now;
    rig_mark_t  *m;

    if (c->state != RIG_CALL_OPEN || c->stop_sent) {
        /* after stop, Twilio sends nothing more */
        return 0;
    }

    now = rig_now();

    if (!c->hello_sent) {
        c->hello_sent = 1;

        n = snprintf(msg, sizeof(msg),
                     "{\"event\":\"connected\",\"protocol\":\"Call\","
                     "\"version\":\"1.0.0\"}");

        if (rig_send(wsi, msg, n) != 0) {
            return -1;
        }

        n = snprintf(msg, sizeof(msg),
                     "{\"event\":\"start\",\"sequenceNumber\":\"%u\","
                     "\"start\":{\"accountSid\":\"AC%032u\","
                     "\"streamSid\":\"%s\",\"callSid\":\"%s\","
                     "\"tracks\":[\"inbound\"],\"mediaFormat\":"
                     "{\"encoding\":\"audio/x-mulaw\",\"sampleRate\":8000,"
                     "\"channels\":1},\"customParameters\":{}},"
                     "\"streamSid\":\"%s\"}",
                     ++c->msg_seq, 0, c->stream_sid, c->call_sid,
                     c->stream_sid);

        if (rig_send(wsi, msg, n) != 0) {
            return -1;
        }

        c->msgs_sent += 2;
    }

    while (c->hangup != RIG_HANGUP_CALLER && c->next_us <= now) {
        if (rig_caller_media(c, wsi, now) != 0) {
            return -1;
        }
    }

    while (c->nmarks && c->marks[c->mark_head].due_us <= now) {
        m = &c->marks[c->mark_head];

        n = snprintf(msg, sizeof(msg),
                     "{\"event\":\"mark\",\"sequenceNumber\":\"%u\","
                     "\"streamSid\":\"%s\",\"mark\":{\"name\":\"%s\"}}",
                     ++c->msg_seq, c->stream_sid, m->name);

        if (rig_send(wsi, msg, n) != 0) {
            return -1;
        }

        c->msgs_sent++;
        c->mark_head = (c->mark_head + 1) % RIG_MARKS;
        c->nmarks--;
    }

    for ( /* void */ ; c->dtmf_due; c->dtmf_due--) {
        c->msg_seq++;

        n = snprintf(msg, sizeof(msg),
                     "{\"event\":\"dtmf\",\"streamSid\":\"%s\","
                     "\"sequenceNumber\":\"%u\",\"dtmf\":"
                     "{\"track\":\"inbound_track\",\"digit\":\"%u\"}}",
                     c->stream_sid, c->msg_seq, c->msg_seq % 10);

        if (rig_send(wsi, msg, n) != 0) {
            return -1;
        }

        c->msgs_sent++;
        c->dtmf_sent++;
        rig.dtmf_sent++;
    }

    if (c->stop_due && !c->stop_sent) {
        c->stop_sent = 1;

        n = snprintf(msg, sizeof(msg),
                     "{\"event\":\"stop\",\"sequenceNumber\":\"%u\","
                     "\"stop\":{\"accountSid\":\"AC%032u\","
                     "\"callSid\":\"%s\"},\"streamSid\":\"%s\"}",
                     ++c->msg_seq, 0, c->call_sid, c->stream_sid);

        if (rig_send(wsi, msg, n) != 0) {
            return -1;
        }

        c->msgs_sent++;
    }

    return 0;
}


static int
rig_caller_media(rig_caller_t *c, struct lws *wsi, int64_t now)
{
    int            n;
    char           msg[512], id[RIG_HDR_B64 + 4];
    uint32_t       seq;
    rig_frame_t   *f;
    unsigned char  hdr[RIG_HDR_BYTES];

    seq = c->seq++;

    rig_frame_header(hdr, c->idx, seq);
    EVP_EncodeBlock((unsigned char *) id, hdr, RIG_HDR_BYTES);

    n = snprintf(msg, sizeof(msg),
                 "{\"event\":\"media\",\"sequenceNumber\":\"%u\","
                 "\"media\":{\"track\":\"inbound\",\"chunk\":\"%u\","
                 "\"timestamp\":\"%u\",\"payload\":\"%s%s\"},"
                 "\"streamSid\":\"%s\"}",
                 ++c->msg_seq, seq + 1, seq * 20, id, rig_frame_b64_tail(),
                 c->stream_sid);

    if (rig_send(wsi, msg, n) != 0) {
        return -1;
    }

    c->msgs_sent++;

    /* the frame a ring ago is done with: counted, whatever became of it */

    f = &c->ring[seq % RIG_RING];
    rig_frame_final(f, 0);

    f->seq = seq;
    f->flags = RIG_SENT;
    f->sent_us = now;

    if (rig.window_open) {
        if (c->floor) {
            rig_hist_add(&rig.floor_lag, now - c->next_us);

        } else {
            f->flags |= RIG_WINDOW;
            rig_hist_add(&rig.lag, now - c->next_us);
        }
    }

    c->next_us += RIG_FRAME_US;

    return 0;
}


static int
rig_caller_message(rig_caller_t *c, const char *msg, size_t len)
{
    size_t       n;
    int64_t      now;
    const char  *ev, *v;
    rig_mark_t  *m;

    c->msgs_recv++;
    now = rig_now();

    ev = rig_json_str(msg, len, "event", &n);
    if (ev == NULL) {
        rig.errors++;
        return 0;
    }

    if (n == 5 && memcmp(ev, "media", 5) == 0) {
        v = rig_json_str(msg, len, "payload", &n);
        if (v == NULL) {
            rig.errors++;
            return 0;
        }

        rig_caller_returned(c, v, n, now);

        /* 8 bytes of 8 kHz mu-law play for 1 ms */

        if (c->play_end_us < now) {
            c->play_end_us = now;
        }

        c->play_end_us += (int64_t) (n / 4 * 3 - (n && v[n - 1] == '=')
                                     - (n > 1 && v[n - 2] == '='))
                          * 125;
        return 0;
    }

    if (n == 4 && memcmp(ev, "mark", 4) == 0) {
        v = rig_json_str(msg, len, "name", &n);

        if (v == NULL || n >= RIG_MARK_NAME) {
            rig.errors++;
            return 0;
        }

        if (c->nmarks == RIG_MARKS) {
            rig.mark_overflow++;
            return 0;
        }

        m = &c->marks[(c->mark_head + c->nmarks) % RIG_MARKS];
        memcpy(m->name, v, n);
        m->name[n] = '\0';
        m->due_us = c->play_end_us > now ? c->play_end_us : now;
        c->nmarks++;
        return 0;
    }

    if (n == 5 && memcmp(ev, "clear", 5) == 0) {
        unsigned  i;

        /* the queue is dropped; Twilio echoes its marks at once */

        c->clears++;
        rig.clears++;
        c->play_end_us = now;

        for (i = 0; i < c->nmarks; i++) {
            c->marks[(c->mark_head + i) % RIG_MARKS].due_us = now;
        }

        if (c->nmarks) {
            lws_callback_on_writable(c->ws);
        }

        return 0;
    }

    rig.errors++;

    return 0;
}


static void
rig_caller_returned(rig_caller_t *c, const char *payload, size_t len,
    int64_t now)
{
    uint32_t      call, seq;
    rig_frame_t  *f;

    if (rig_frame_id(payload, len, &call, &seq) != 0 || call != c->idx) {
        rig.misrouted++;
        return;
    }

    c->flowing = 1;

    f = &c->ring[seq % RIG_RING];

    if (f->seq != seq || !(f->flags & RIG_SENT)) {
        rig.stale++;
        return;
    }

    if (f->flags & RIG_RETURNED) {
        rig.duplicates++;
        return;
    }

    f->flags |= RIG_RETURNED;

    if (!(f->flags & RIG_WINDOW) && !(rig.window_open && c->floor)) {
        return;
    }

    rig_hist_add(c->floor ? &rig.floor_lat : &rig.lat, now - f->sent_us);
}


/* soak and teardown: the tick's view of one call */
void
rig_caller_tick(rig_caller_t *c, int64_t now)
{
    int  need;

    if (c->state != RIG_CALL_OPEN || c->stop_sent) {
        return;
    }

    need = !c->hello_sent;

    if (c->hangup != RIG_HANGUP_CALLER && c->next_us <= now) {
        need = 1;
    }

    if (c->nmarks && c->marks[c->mark_head].due_us <= now) {
        need = 1;
    }

    if (c->dtmf_us && now >= c->dtmf_us) {
        c->dtmf_us += (int64_t) rig.dtmf_ms * (500 + random() % 1000);
        c->dtmf_due++;
        need = 1;
    }

    if (c->hangup_us && now >= c->hangup_us && c->hangup == RIG_HANGUP_NONE) {
        rig_caller_hangup(c, random() % 2 ? RIG_HANGUP_CALLER
                                          : RIG_HANGUP_OPENAI);
    }

    if (c->hangup == RIG_HANGUP_CALLER && !c->stop_sent && now >= c->stop_us)
    {
        c->stop_due = 1;
        need = 1;
    }

    if (need) {
        lws_callback_on_writable(c->ws);
    }
}


/*
 * The caller hangs up: no more audio, and stop once what is on its way
 * back has come (a real Twilio sends stop right away; the pause keeps
 * those frames out of the lost ones).  Or OpenAI's side ends the call.
 */
void
rig_caller_hangup(rig_caller_t *c, rig_hangup_e side)
{
    if (c->state != RIG_CALL_OPEN || c->hangup != RIG_HANGUP_NONE) {
        return;
    }

    if (side == RIG_HANGUP_OPENAI && c->oa == NULL) {
        side = RIG_HANGUP_CALLER;
    }

    c->hangup = side;

    if (side == RIG_HANGUP_CALLER) {
        rig.hangups_caller += !c->floor;
        c->stop_us = rig_now() + (c->floor ? 0 : RIG_STOP_DRAIN);
        return;
    }

    rig.hangups_openai++;
    rig_oa_close(c->oa);
}


static void
rig_caller_failed(rig_caller_t *c, const char *why)
{
    if (c->state == RIG_CALL_DONE || c->state == RIG_CALL_IDLE) {
        return;
    }

    if (!c->floor) {
        rig.calls_failed++;
    }

    fprintf(stderr, "rig: call %u (%s) failed: %s\n", c->idx, c->call_sid,
            why);

    c->http = NULL;
    c->ws = NULL;
    c->state = RIG_CALL_DONE;
}


static void
rig_caller_closed(rig_caller_t *c)
{
    int64_t  now;

    now = rig_now();

    c->state = RIG_CALL_DONE;
    c->ws = NULL;

    if (c->oa && c->oa->caller == c) {
        c->oa->caller = NULL;
    }

    c->oa = NULL;

    if (!c->upgraded) {
        return;
    }

    /* what was on its way when OpenAI's side ended the call is cut */

    rig_caller_finalize(c, c->hangup == RIG_HANGUP_OPENAI
                           || (c->closed_by_peer && !c->stop_sent)
                           ? now - 1000000 : 0);

    if (c->floor) {
        return;
    }

    rig.calls_ended++;

    if (rig.calls_fp) {
        fprintf(rig.calls_fp,
                "%s sent=%llu recv=%llu clears=%llu dtmf=%llu side=%s "
                "close=%u\n",
                c->call_sid, (unsigned long long) c->msgs_sent,
                (unsigned long long) c->msgs_recv,
                (unsigned long long) c->clears,
                (unsigned long long) c->dtmf_sent,
                c->hangup == RIG_HANGUP_CALLER ? "caller"
                : c->hangup == RIG_HANGUP_OPENAI ? "openai" : "none",
                c->peer_close_code);
    }
}


void
rig_caller_finalize(rig_caller_t *c, int64_t cut_from)
{
    unsigned  i;

    for (i = 0; i < RIG_RING; i++) {
        rig_frame_final(&c->ring[i], cut_from);
    }
}


/* a frame of the window is counted once: returned, dropped or lost */
static void
rig_frame_final(rig_frame_t *f, int64_t cut_from)
{
    if ((f->flags & (RIG_SENT | RIG_WINDOW)) != (RIG_SENT | RIG_WINDOW)) {
        return;
    }

    rig.frames_sent++;

    if (f->flags & RIG_RETURNED) {
        rig.frames_returned++;

    } else if (f->flags & RIG_LATE) {
        rig.dropped_bb++;

    } else if (cut_from && f->sent_us >= cut_from) {
        rig.cut_by_hangup++;

    } else {
        rig.lost++;
    }

    f->flags &= ~RIG_WINDOW;
}
