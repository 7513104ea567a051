
/*
 * Copyright (C) ngx_voice authors
 *
 * Playback accounting and where barge-in cuts, as OpenAI's own Twilio
 * transport does it.  On an interruption the playing item is truncated
 * at min(sent, played + 50 ms), never past what was sent.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_voice_json.h"
#include "ngx_voice_playback.h"


#define NGX_VOICE_PLAYED_SLACK_MS  50


static ngx_voice_item_t *ngx_voice_playback_item(ngx_voice_playback_t *pb,
    ngx_str_t *item_id);


ngx_uint_t
ngx_voice_playback_is_dropped(ngx_voice_playback_t *pb,
    ngx_str_t *response_id)
{
    return pb->dropped_len && response_id->len == pb->dropped_len
           && ngx_memcmp(response_id->data, pb->dropped, pb->dropped_len)
              == 0;
}


ngx_str_t
ngx_voice_playback_sent(ngx_voice_playback_t *pb, ngx_str_t *item_id,
    ngx_str_t *response_id, u_char *delta, size_t len, u_char *name)
{
    ngx_str_t          mark_name;
    ngx_voice_item_t  *item;
    ngx_voice_mark_t  *mark;

    item = ngx_voice_playback_item(pb, item_id);
    item->sent += ngx_voice_json_base64_len(delta, len);

    if (response_id->len <= NGX_VOICE_PLAYBACK_ID_MAX) {
        ngx_memcpy(pb->response, response_id->data, response_id->len);
        pb->response_len = response_id->len;
    }

    mark_name.data = name;
    mark_name.len = 0;

    if (pb->nmarks == NGX_VOICE_MARKS) {
        /*
         * All marks are out: this audio goes without one of its own, and
         * the newest mark, if it is this item's, now ends after it
         */
        mark = &pb->marks[(pb->mark_head + pb->nmarks - 1) % NGX_VOICE_MARKS];

        if (mark->item == (ngx_uint_t) (item - pb->items)) {
            mark->end = item->sent;
        }

        return mark_name;
    }

    pb->seq++;

    mark = &pb->marks[(pb->mark_head + pb->nmarks) % NGX_VOICE_MARKS];
    mark->seq = pb->seq;
    mark->item = item - pb->items;
    mark->end = item->sent;
    pb->nmarks++;

    mark_name.len = ngx_sprintf(name, "g%ui:m%ui", pb->generation, pb->seq)
                    - name;

    return mark_name;
}


void
ngx_voice_playback_echoed(ngx_voice_playback_t *pb, ngx_str_t *name)
{
    u_char            *p, *last;
    ngx_int_t          gen, seq;
    ngx_voice_mark_t  *mark;
    ngx_voice_item_t  *item;

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


ngx_uint_t
ngx_voice_playback_interrupt(ngx_voice_playback_t *pb,
    ngx_voice_truncation_t *out)
{
    ngx_uint_t              i, n, first;
    ngx_voice_item_t       *item;
    ngx_voice_truncation_t  *t;

    if (pb->nmarks == 0) {
        /* nothing is playing: nothing to cut */
        return 0;
    }

    first = pb->marks[pb->mark_head].item;
    n = 0;

    for (i = first; i < pb->nitems; i++) {
        item = &pb->items[i];
        t = &out[n++];

        t->item_id.data = item->id;
        t->item_id.len = item->id_len;

        /* 8 bytes of 8 kHz mu-law are one millisecond */
        t->sent_ms = item->sent / 8;
        t->played_ms = item->played / 8;

        t->audio_end_ms = (i == first)
                          ? ngx_min(t->sent_ms,
                                    t->played_ms + NGX_VOICE_PLAYED_SLACK_MS)
                          : 0;
    }

    /* marks of the cleared audio come back: the new generation skips them */

    pb->generation++;
    pb->nmarks = 0;
    pb->mark_head = 0;
    pb->nitems = 0;

    ngx_memcpy(pb->dropped, pb->response, pb->response_len);
    pb->dropped_len = pb->response_len;

    return n;
}


ngx_msec_t
ngx_voice_playback_unplayed_ms(ngx_voice_playback_t *pb)
{
    size_t      bytes;
    ngx_uint_t  i;

    bytes = 0;

    for (i = 0; i < pb->nitems; i++) {
        if (pb->items[i].sent > pb->items[i].played) {
            bytes += pb->items[i].sent - pb->items[i].played;
        }
    }

    return bytes / 8;
}


static ngx_voice_item_t *
ngx_voice_playback_item(ngx_voice_playback_t *pb, ngx_str_t *item_id)
{
    ngx_uint_t         i;
    ngx_voice_item_t  *item;
    ngx_voice_mark_t  *mark;

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

    item->id_len = ngx_min(item_id->len, NGX_VOICE_PLAYBACK_ID_MAX);
    ngx_memcpy(item->id, item_id->data, item->id_len);
    item->sent = 0;
    item->played = 0;

    return item;
}
