
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
static ngx_int_t ngx_voice_playback_grow(ngx_voice_playback_t *pb);
static void ngx_voice_playback_cleanup(void *data);


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

    if (pb->nmarks == pb->nalloc && ngx_voice_playback_grow(pb) != NGX_OK) {
        /*
         * All marks are out: this audio goes without one of its own, and
         * the newest mark, if it is this item's, now ends after it
         */
        if (pb->nmarks == 0) {
            return mark_name;
        }

        mark = &pb->marks[(pb->mark_head + pb->nmarks - 1) % pb->nalloc];

        if (mark->item == (ngx_uint_t) (item - pb->items)) {
            mark->end = item->sent;
        }

        return mark_name;
    }

    pb->seq++;

    mark = &pb->marks[(pb->mark_head + pb->nmarks) % pb->nalloc];
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

        pb->mark_head = (pb->mark_head + 1) % pb->nalloc;
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
            mark = &pb->marks[(pb->mark_head + i) % pb->nalloc];
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


/*
 * Marks out at once are few while audio plays as it comes, and many when
 * a response comes faster than it plays: the ring starts small and is
 * doubled as needed, up to NGX_VOICE_MARKS.  NGX_DECLINED: it is full.
 */
static ngx_int_t
ngx_voice_playback_grow(ngx_voice_playback_t *pb)
{
    ngx_uint_t           i, n;
    ngx_voice_mark_t    *marks;
    ngx_pool_cleanup_t  *cln;

    if (pb->nalloc == NGX_VOICE_MARKS || pb->pool == NULL) {
        return NGX_DECLINED;
    }

    if (pb->marks == NULL) {
        cln = ngx_pool_cleanup_add(pb->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }

        cln->handler = ngx_voice_playback_cleanup;
        cln->data = pb;
    }

    n = pb->nalloc ? pb->nalloc * 2 : NGX_VOICE_MARKS_FIRST;

    marks = ngx_alloc(n * sizeof(ngx_voice_mark_t), pb->pool->log);
    if (marks == NULL) {
        return NGX_ERROR;
    }

    /* the ring unrolled, oldest first */

    for (i = 0; i < pb->nmarks; i++) {
        marks[i] = pb->marks[(pb->mark_head + i) % pb->nalloc];
    }

    if (pb->marks) {
        ngx_free(pb->marks);
    }

    pb->marks = marks;
    pb->nalloc = n;
    pb->mark_head = 0;

    return NGX_OK;
}


static void
ngx_voice_playback_cleanup(void *data)
{
    ngx_voice_playback_t  *pb = data;

    if (pb->marks) {
        ngx_free(pb->marks);
        pb->marks = NULL;
    }

    pb->nalloc = 0;
    pb->nmarks = 0;
}
