
/*
 * Copyright (C) ngx_voice authors
 *
 * Playback accounting, as OpenAI's own Twilio transport does it: audio
 * sent per assistant item is bytes/8 ms; each media message is followed
 * by a uniquely named mark, and Twilio's echo of a mark advances the
 * audio played.  Pure bookkeeping: the owner sends the messages.
 */


#ifndef _NGX_VOICE_PLAYBACK_H_INCLUDED_
#define _NGX_VOICE_PLAYBACK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_VOICE_PLAYBACK_ID_MAX  64
#define NGX_VOICE_MARKS            256     /* at most */
#define NGX_VOICE_MARKS_FIRST      16      /* then doubled as needed */
#define NGX_VOICE_ITEMS            4

/* "g<generation>:m<seq>" */
#define NGX_VOICE_MARK_NAME_MAX    (2 * NGX_INT_T_LEN + 3)


/* an assistant item whose audio went to Twilio */
typedef struct {
    u_char                       id[NGX_VOICE_PLAYBACK_ID_MAX];
    size_t                       id_len;
    size_t                       sent;           /* audio bytes */
    size_t                       played;         /* echoed by a mark */
} ngx_voice_item_t;


typedef struct {
    ngx_uint_t                   seq;
    ngx_uint_t                   item;           /* index in items */
    size_t                       end;            /* item's sent bytes */
} ngx_voice_mark_t;


/* where an interrupted item is cut */
typedef struct {
    ngx_str_t                    item_id;
    ngx_msec_t                   audio_end_ms;
    ngx_msec_t                   sent_ms;
    ngx_msec_t                   played_ms;
} ngx_voice_truncation_t;


typedef struct {
    ngx_voice_item_t             items[NGX_VOICE_ITEMS];
    ngx_uint_t                   nitems;
    ngx_voice_mark_t            *marks;          /* a ring of nalloc */
    ngx_uint_t                   nalloc;
    ngx_pool_t                  *pool;           /* the call's */
    ngx_uint_t                   mark_head;      /* oldest unechoed */
    ngx_uint_t                   nmarks;
    ngx_uint_t                   seq;
    ngx_uint_t                   generation;
    u_char                       response[NGX_VOICE_PLAYBACK_ID_MAX];
    size_t                       response_len;   /* playing now */
    u_char                       dropped[NGX_VOICE_PLAYBACK_ID_MAX];
    size_t                       dropped_len;    /* response cut off */
} ngx_voice_playback_t;


/* a late delta of the response the caller interrupted */
ngx_uint_t ngx_voice_playback_is_dropped(ngx_voice_playback_t *pb,
    ngx_str_t *response_id);

/*
 * Counts the audio of a delta (base64) of an item as sent to Twilio.
 * Returns the name of the mark to send after it, written into "name"
 * (room for NGX_VOICE_MARK_NAME_MAX), or an empty string when all marks
 * are out.
 */
ngx_str_t ngx_voice_playback_sent(ngx_voice_playback_t *pb,
    ngx_str_t *item_id, ngx_str_t *response_id, u_char *delta, size_t len,
    u_char *name);

void ngx_voice_playback_echoed(ngx_voice_playback_t *pb, ngx_str_t *name);

/* how long the audio sent to Twilio and not yet played lasts */
ngx_msec_t ngx_voice_playback_unplayed_ms(ngx_voice_playback_t *pb);

/* audio sent to Twilio is not played yet (marks not echoed) */
#define ngx_voice_playback_is_playing(pb)  ((pb)->nmarks != 0)

/*
 * The caller talks over the assistant: where each pending item is to be
 * cut, the playing one at min(sent, played + 50 ms), the later ones at 0.
 * Starts a new generation, so marks of the cleared audio are ignored, and
 * drops the rest of the interrupted response.  Returns how many of "out"
 * (room for NGX_VOICE_ITEMS) it filled; the ids point into "pb" until the
 * next call.
 */
ngx_uint_t ngx_voice_playback_interrupt(ngx_voice_playback_t *pb,
    ngx_voice_truncation_t *out);


#endif /* _NGX_VOICE_PLAYBACK_H_INCLUDED_ */
