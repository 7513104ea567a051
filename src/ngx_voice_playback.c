
/*
 * Copyright (C) ngx_voice authors
 *
 * Playback accounting and barge-in, as OpenAI's own Twilio transport
 * does it: audio sent per assistant item is bytes/8 ms; each media
 * message is followed by a uniquely named mark, and Twilio's echo of a
 * mark advances the audio played.  On an interruption the playing item
 * is truncated at min(sent, played + 50 ms), never past what was sent.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice_call.h"


#define NGX_VOICE_PLAYED_SLACK_MS  50


static ngx_voice_item_t *ngx_voice_playback_item(ngx_voice_call_t *call,
    ngx_str_t *item_id);
static size_t ngx_voice_base64_decoded_len(u_char *s, size_t len);


ngx_int_t
ngx_voice_playback_audio(ngx_voice_call_t *call, ngx_str_t *item_id,
    ngx_str_t *response_id, u_char *delta, size_t len)
{
    u_char                *p;
    ngx_int_t              rc;
    ngx_voice_item_t      *item;
    ngx_voice_mark_t      *mark;
    ngx_voice_playback_t  *pb;
    u_char                 name[64];

    pb = &call->playback;

    if (pb->dropped_len && response_id->len == pb->dropped_len
        && ngx_memcmp(response_id->data, pb->dropped, pb->dropped_len) == 0)
    {
        /* a late delta of the response the caller interrupted */
        call->dropped_deltas++;
        return NGX_OK;
    }

    if (!call->started || len == 0) {
        return NGX_OK;
    }

    item = ngx_voice_playback_item(call, item_id);

    rc = ngx_voice_twilio_media(call, delta, len);

    if (rc == NGX_OK) {
        item->sent += ngx_voice_base64_decoded_len(delta, len);
    }

    if (rc == NGX_OK && pb->nmarks == NGX_VOICE_MARKS) {
        /*
         * All marks are out: this audio goes without one of its own, and
         * the newest mark, if it is this item's, now ends after it
         */
        mark = &pb->marks[(pb->mark_head + pb->nmarks - 1) % NGX_VOICE_MARKS];

        if (mark->item == (ngx_uint_t) (item - pb->items)) {
            mark->end = item->sent;
        }

        goto response;
    }

    if (rc == NGX_OK) {
        pb->seq++;
        p = ngx_sprintf(name, "g%ui:m%ui", pb->generation, pb->seq);

        rc = ngx_voice_twilio_mark(call, name, p - name);
    }

    if (rc == NGX_BUSY) {
        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      "voice: Twilio is not reading, voice_buffer_size "
                      "%uz reached", call->conf->buffer_size);
        ngx_voice_call_set_reason(call, "Twilio is not reading");
        ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_ERROR,
                           NGX_VOICE_WS_CLOSE_NORMAL, NULL);
        return NGX_ERROR;
    }

    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    mark = &pb->marks[(pb->mark_head + pb->nmarks) % NGX_VOICE_MARKS];
    mark->seq = pb->seq;
    mark->item = item - pb->items;
    mark->end = item->sent;
    pb->nmarks++;

response:

    if (response_id->len <= NGX_VOICE_ID_MAX) {
        ngx_memcpy(pb->response, response_id->data, response_id->len);
        pb->response_len = response_id->len;
    }

    return NGX_OK;
}


void
ngx_voice_playback_mark_echoed(ngx_voice_call_t *call, ngx_str_t *name)
{
    u_char                *p, *last;
    ngx_int_t              gen, seq;
    ngx_voice_mark_t      *mark;
    ngx_voice_item_t      *item;
    ngx_voice_playback_t  *pb;

    pb = &call->playback;

    if (name->len < 4 || name->data[0] != 'g') {
        return;
    }

    last = name->data + name->len;
    p = ngx_strlchr(name->data, last, ':');

    if (p == NULL || last - p < 3 || p[1] != 'm') {
        return;
    }

    gen = ngx_atoi(name->data + 1, p - name->data - 1);
    seq = ngx_atoi(p + 2, last - p - 2);

    if (gen == NGX_ERROR || seq == NGX_ERROR
        || (ngx_uint_t) gen != pb->generation)
    {
        /* a mark of audio that was cleared */
        return;
    }

    while (pb->nmarks) {
        mark = &pb->marks[pb->mark_head];

        if (mark->seq > (ngx_uint_t) seq) {
            break;
        }

        if (mark->item < pb->nitems) {
            item = &pb->items[mark->item];
            item->played = ngx_max(item->played, mark->end);
        }

        pb->mark_head = (pb->mark_head + 1) % NGX_VOICE_MARKS;
        pb->nmarks--;
    }
}


/* input_audio_buffer.speech_started: the caller talks over the assistant */
ngx_int_t
ngx_voice_playback_interrupt(ngx_voice_call_t *call)
{
    ngx_int_t              rc;
    ngx_uint_t             i, first;
    ngx_msec_t             sent, played, end;
    ngx_voice_item_t      *item;
    ngx_voice_playback_t  *pb;

    pb = &call->playback;

    if (pb->nmarks == 0) {
        /* nothing is playing: nothing to cut */
        return NGX_OK;
    }

    rc = ngx_voice_twilio_clear(call);

    if (rc != NGX_OK && rc != NGX_DECLINED) {
        ngx_voice_call_set_reason(call, "Twilio is not reading");
        ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_ERROR,
                           NGX_VOICE_WS_CLOSE_NORMAL, NULL);
        return NGX_ERROR;
    }

    first = pb->marks[pb->mark_head].item;

    for (i = first; i < pb->nitems; i++) {
        item = &pb->items[i];

        /* 8 bytes of 8 kHz mu-law are one millisecond */
        sent = item->sent / 8;
        played = item->played / 8;

        end = (i == first) ? ngx_min(sent, played + NGX_VOICE_PLAYED_SLACK_MS)
                           : 0;

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, call->log, 0,
                       "voice: truncate at %M ms (sent %M, played %M)",
                       end, sent, played);

        if (ngx_voice_realtime_truncate(call, item, end) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    /* marks of the cleared audio come back: the new generation skips them */

    pb->generation++;
    pb->nmarks = 0;
    pb->mark_head = 0;
    pb->nitems = 0;

    ngx_memcpy(pb->dropped, pb->response, pb->response_len);
    pb->dropped_len = pb->response_len;

    call->interruptions++;

    return NGX_OK;
}


static ngx_voice_item_t *
ngx_voice_playback_item(ngx_voice_call_t *call, ngx_str_t *item_id)
{
    ngx_uint_t             i;
    ngx_voice_item_t      *item;
    ngx_voice_mark_t      *mark;
    ngx_voice_playback_t  *pb;

    pb = &call->playback;

    if (pb->nitems) {
        item = &pb->items[pb->nitems - 1];

        if (item->id_len == item_id->len
            && ngx_memcmp(item->id, item_id->data, item_id->len) == 0)
        {
            return item;
        }
    }

    if (pb->nitems == NGX_VOICE_ITEMS) {
        /* the oldest item has long been played; marks shift with it */

        ngx_memmove(&pb->items[0], &pb->items[1],
                    (NGX_VOICE_ITEMS - 1) * sizeof(ngx_voice_item_t));
        pb->nitems--;

        for (i = 0; i < pb->nmarks; i++) {
            mark = &pb->marks[(pb->mark_head + i) % NGX_VOICE_MARKS];
            mark->item = mark->item ? mark->item - 1 : NGX_VOICE_ITEMS;
        }
    }

    item = &pb->items[pb->nitems++];

    item->id_len = ngx_min(item_id->len, NGX_VOICE_ID_MAX);
    ngx_memcpy(item->id, item_id->data, item->id_len);
    item->sent = 0;
    item->played = 0;

    return item;
}


static size_t
ngx_voice_base64_decoded_len(u_char *s, size_t len)
{
    size_t  n;

    n = len / 4 * 3;

    if (len >= 1 && s[len - 1] == '=') {
        n--;
    }

    if (len >= 2 && s[len - 2] == '=') {
        n--;
    }

    return n;
}
