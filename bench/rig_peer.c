
/*
 * Copyright (C) ngx_voice authors
 *
 * The far ends: a stand-in for OpenAI Realtime over TLS (session.created,
 * session.updated, each input_audio_buffer.append answered with a
 * response.output_audio.delta of the same audio, speech_started every few
 * seconds followed by a new response), and the floor: a plain port that
 * speaks Twilio's side directly (each media answered with media + mark).
 */


#define _GNU_SOURCE
#include <string.h>
#include <stdlib.h>
#include "rig.h"


static int rig_openai_cb(struct lws *wsi, enum lws_callback_reasons reason,
    void *user, void *in, size_t len);
static int rig_floor_cb(struct lws *wsi, enum lws_callback_reasons reason,
    void *user, void *in, size_t len);
static int rig_peer_rx(rig_oa_t *oa, struct lws *wsi, void *in, size_t len,
    int (*handler)(rig_oa_t *oa, const char *msg, size_t len));
static int rig_openai_message(rig_oa_t *oa, const char *msg, size_t len);
static int rig_openai_append(rig_oa_t *oa, const char *msg, size_t len);
static int rig_floor_message(rig_oa_t *oa, const char *msg, size_t len);
static uint32_t rig_openai_barge_after(void);
static void rig_peer_free(rig_oa_t *oa);


const struct lws_protocols  rig_openai_protocol = {
    "rig-openai", rig_openai_cb, sizeof(rig_oa_t), 8192, 0, NULL, 0
};


const struct lws_protocols  rig_floor_protocol = {
    "rig-floor", rig_floor_cb, sizeof(rig_oa_t), 8192, 0, NULL, 0
};


static int
rig_openai_cb(struct lws *wsi, enum lws_callback_reasons reason,
    void *user, void *in, size_t len)
{
    int        n;
    char       msg[256];
    rig_oa_t  *oa = user;

    switch (reason) {

    case LWS_CALLBACK_ESTABLISHED:
        oa->wsi = wsi;
        oa->conn = ++rig.oa_conns;
        oa->response = 1;
        oa->next_barge = rig_openai_barge_after();
        rig.oa_open++;

        n = snprintf(msg, sizeof(msg),
                     "{\"type\":\"session.created\",\"event_id\":\"evt_%u_0\","
                     "\"session\":{\"type\":\"realtime\","
                     "\"model\":\"gpt-realtime\"}}", oa->conn);

        if (rig_queue(&oa->out, msg, n) != 0) {
            return -1;
        }

        lws_callback_on_writable(wsi);
        return 0;

    case LWS_CALLBACK_RECEIVE:
        return rig_peer_rx(oa, wsi, in, len, rig_openai_message);

    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (oa->closing) {
            /*
             * our close frame is out: lws waits for nginx's, unless a
             * callback returns -1 again, which drops the connection
             */
            return 0;
        }

        if (rig_queue_flush(wsi, &oa->out) != 0) {
            return -1;
        }

        if (!oa->close_due) {
            return 0;
        }

        oa->closing = 1;
        lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL,
                         (unsigned char *) "bye", 3);
        return -1;

    case LWS_CALLBACK_CLOSED:
        rig.oa_open--;
        rig_peer_free(oa);
        return 0;

    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}


static int
rig_peer_rx(rig_oa_t *oa, struct lws *wsi, void *in, size_t len,
    int (*handler)(rig_oa_t *oa, const char *msg, size_t len))
{
    int          rc;
    size_t       n;
    const char  *msg;

    if (oa->closing) {
        return 0;
    }

    rc = rig_message(wsi, &oa->rx, in, len, &msg, &n);

    if (rc == 1) {
        rc = handler(oa, msg, n);
    }

    if (oa->out.len || oa->close_due) {
        lws_callback_on_writable(wsi);
    }

    return rc;
}


static int
rig_openai_message(rig_oa_t *oa, const char *msg, size_t len)
{
    int          n;
    char         out[256];
    size_t       tlen;
    const char  *type;

    type = rig_json_str(msg, len, "type", &tlen);
    if (type == NULL) {
        rig.errors++;
        return 0;
    }

#define rig_is(s)  (tlen == sizeof(s) - 1 && memcmp(type, s, tlen) == 0)

    if (rig_is("input_audio_buffer.append")) {
        return rig_openai_append(oa, msg, len);
    }

    if (rig_is("session.update")) {
        rig.sessions_updated++;

        n = snprintf(out, sizeof(out),
                     "{\"type\":\"session.updated\",\"event_id\":\"evt_%u_1\","
                     "\"session\":{\"type\":\"realtime\","
                     "\"model\":\"gpt-realtime\"}}", oa->conn);

        return rig_queue(&oa->out, out, n);
    }

    if (rig_is("conversation.item.truncate")) {
        rig.truncates++;
        return 0;
    }

    if (rig_is("conversation.item.create")) {
        if (memmem(msg, len, "The caller pressed", 18)) {
            rig.dtmf_seen++;
        }

        return 0;
    }

    if (rig_is("response.create")) {
        return 0;
    }

#undef rig_is

    rig.errors++;

    return 0;
}


/*
 * The model "speaks" the caller's audio back.  Every few seconds the
 * caller starts speaking over it: speech_started, then a few deltas of
 * the interrupted response still on their way (the relay drops them by
 * design), then a new response.
 */
static int
rig_openai_append(rig_oa_t *oa, const char *msg, size_t len)
{
    int            n, late;
    char           out[512];
    size_t         alen;
    uint32_t       call, seq;
    const char    *audio;
    rig_frame_t   *f;
    rig_caller_t  *c;

    audio = rig_json_str(msg, len, "audio", &alen);

    if (audio == NULL || alen > 300) {
        rig.errors++;
        return 0;
    }

    c = NULL;

    if (rig_frame_id(audio, alen, &call, &seq) == 0 && call < rig.ncallers) {
        c = &rig.callers[call];

        if (c->oa != oa && c->state == RIG_CALL_OPEN && !c->floor) {
            c->oa = oa;
            oa->caller = c;
        }
    }

    if (oa->next_barge && ++oa->appends >= oa->next_barge) {
        oa->appends = 0;
        oa->next_barge = rig_openai_barge_after();
        oa->late_left = rig.late_deltas;
        rig.barge_ins++;

        n = snprintf(out, sizeof(out),
                     "{\"type\":\"input_audio_buffer.speech_started\","
                     "\"event_id\":\"evt_%u_%u\",\"audio_start_ms\":%u,"
                     "\"item_id\":\"item_u_%u_%u\"}",
                     oa->conn, ++oa->out_seq, seq * 20, oa->conn,
                     oa->response);

        if (rig_queue(&oa->out, out, n) != 0) {
            return -1;
        }

        if (oa->late_left == 0) {
            oa->response++;
        }
    }

    late = 0;

    if (oa->late_left) {
        /* this delta is a late one of the interrupted response */

        late = 1;

        if (c && oa->caller == c) {
            f = &c->ring[seq % RIG_RING];

            if (f->seq == seq) {
                f->flags |= RIG_LATE;
            }
        }
    }

    n = snprintf(out, sizeof(out),
                 "{\"type\":\"response.output_audio.delta\","
                 "\"event_id\":\"evt_%u_%u\",\"response_id\":\"resp_%u_%u\","
                 "\"item_id\":\"item_%u_%u\",\"output_index\":0,"
                 "\"content_index\":0,\"delta\":\"%.*s\"}",
                 oa->conn, ++oa->out_seq, oa->conn, oa->response, oa->conn,
                 oa->response, (int) alen, audio);

    if (late && --oa->late_left == 0) {
        oa->response++;
    }

    return rig_queue(&oa->out, out, n);
}


/* appends until the next barge-in: the period, give or take a half */
static uint32_t
rig_openai_barge_after(void)
{
    uint32_t  frames;

    if (rig.barge_ms == 0) {
        return 0;
    }

    frames = rig.barge_ms / 20;

    return frames / 2 + (uint32_t) (random() % (frames + 1));
}


/* the soak ends a call from OpenAI's side */
void
rig_oa_close(rig_oa_t *oa)
{
    oa->close_due = 1;
    lws_callback_on_writable(oa->wsi);
}


static int
rig_floor_cb(struct lws *wsi, enum lws_callback_reasons reason,
    void *user, void *in, size_t len)
{
    rig_oa_t  *oa = user;

    switch (reason) {

    case LWS_CALLBACK_ESTABLISHED:
        oa->wsi = wsi;
        oa->floor = 1;
        return 0;

    case LWS_CALLBACK_RECEIVE:
        return rig_peer_rx(oa, wsi, in, len, rig_floor_message);

    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (rig_queue_flush(wsi, &oa->out) != 0) {
            return -1;
        }

        if (oa->close_due) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
            return -1;
        }

        return 0;

    case LWS_CALLBACK_CLOSED:
        rig_peer_free(oa);
        return 0;

    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}


static int
rig_floor_message(rig_oa_t *oa, const char *msg, size_t len)
{
    int          n;
    char         out[512];
    size_t       elen, plen, slen;
    const char  *ev, *payload, *sid;

    ev = rig_json_str(msg, len, "event", &elen);
    if (ev == NULL) {
        rig.errors++;
        return 0;
    }

    if (elen == 4 && memcmp(ev, "stop", 4) == 0) {
        oa->close_due = 1;
        return 0;
    }

    if (elen != 5 || memcmp(ev, "media", 5) != 0) {
        return 0;
    }

    payload = rig_json_str(msg, len, "payload", &plen);
    sid = rig_json_str(msg, len, "streamSid", &slen);

    if (payload == NULL || sid == NULL || plen > 300 || slen > 64) {
        rig.errors++;
        return 0;
    }

    n = snprintf(out, sizeof(out),
                 "{\"event\":\"media\",\"streamSid\":\"%.*s\","
                 "\"media\":{\"payload\":\"%.*s\"}}",
                 (int) slen, sid, (int) plen, payload);

    if (rig_queue(&oa->out, out, n) != 0) {
        return -1;
    }

    n = snprintf(out, sizeof(out),
                 "{\"event\":\"mark\",\"streamSid\":\"%.*s\","
                 "\"mark\":{\"name\":\"f%u\"}}",
                 (int) slen, sid, ++oa->out_seq);

    return rig_queue(&oa->out, out, n);
}


static void
rig_peer_free(rig_oa_t *oa)
{
    if (oa->caller && oa->caller->oa == oa) {
        oa->caller->oa = NULL;
    }

    oa->caller = NULL;

    free(oa->rx.data);
    free(oa->out.data);
    memset(&oa->rx, 0, sizeof(rig_buf_t));
    memset(&oa->out, 0, sizeof(rig_buf_t));
}
