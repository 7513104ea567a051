
/*
 * Copyright (C) ngx_voice authors
 *
 * How a call gets going.  OpenAI would read audio sent before
 * session.update as PCM16, so until both session.created has come and
 * Twilio's start has checked out, caller audio waits here: up to 2 s of
 * it, as length-prefixed entries, the oldest dropped (and counted) past
 * that.  Digits wait too, and go right after session.update.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_voice_call_setup.h"


#define NGX_VOICE_QUEUE_MS    2000
#define NGX_VOICE_QUEUE_SIZE  32768
/* the first size, doubled as needed: more than the pool keeps (pfree) */
#define NGX_VOICE_QUEUE_MIN   4096


static ngx_int_t ngx_voice_call_send_session(ngx_voice_call_t *call);
static ngx_int_t ngx_voice_call_send_queued(ngx_voice_call_t *call);
static ngx_int_t ngx_voice_call_queue(ngx_voice_call_t *call,
    u_char *payload, size_t len);
static ngx_int_t ngx_voice_call_queue_grow(ngx_voice_call_t *call,
    size_t need);
static void ngx_voice_call_queue_drop(ngx_voice_call_t *call);


ngx_int_t
ngx_voice_call_start_checked(ngx_voice_call_t *call)
{
    call->started = 1;

    if (call->start_timer.timer_set) {
        ngx_del_timer(&call->start_timer);
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, call->log, 0,
                   "voice: Twilio start checked out");

    if (!call->session_created) {
        return NGX_OK;
    }

    return ngx_voice_call_send_session(call);
}


ngx_int_t
ngx_voice_call_session_created(ngx_voice_call_t *call)
{
    call->session_created = 1;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, call->log, 0,
                   "voice: OpenAI session created");

    if (!call->started) {
        return NGX_OK;
    }

    return ngx_voice_call_send_session(call);
}


ngx_int_t
ngx_voice_call_caller_audio(ngx_voice_call_t *call, u_char *payload,
    size_t len)
{
    if (!call->session_sent) {
        return ngx_voice_call_queue(call, payload, len);
    }

    return ngx_voice_realtime_append(&call->openai, payload, len);
}


ngx_int_t
ngx_voice_call_caller_digit(ngx_voice_call_t *call, u_char digit)
{
    if (call->session_sent) {
        return ngx_voice_realtime_dtmf(&call->openai, digit);
    }

    /* sent with the queued audio, right after session.update */

    if (call->ndigits < sizeof(call->digits)) {
        call->digits[call->ndigits++] = digit;
    }

    return NGX_OK;
}


/* session.update and the greeting, then what waited for them */
static ngx_int_t
ngx_voice_call_send_session(ngx_voice_call_t *call)
{
    ngx_uint_t  i;

    if (call->session_sent) {
        return NGX_OK;
    }

    if (ngx_voice_realtime_send_session(&call->openai,
                                        &call->session->session_update,
                                        &call->session->greeting_item)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    call->session_sent = 1;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, call->log, 0,
                   "voice: session.update sent");

    for (i = 0; i < call->ndigits; i++) {
        if (ngx_voice_realtime_dtmf(&call->openai, call->digits[i])
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    call->ndigits = 0;

    return ngx_voice_call_send_queued(call);
}


static ngx_int_t
ngx_voice_call_send_queued(ngx_voice_call_t *call)
{
    u_char     *p, *last;
    size_t      len;
    ngx_int_t   rc;
    ngx_buf_t  *q;

    q = call->queue;

    if (q == NULL) {
        return NGX_OK;
    }

    rc = NGX_OK;

    for (p = q->pos, last = q->last; p < last; p += len) {
        len = ((size_t) p[0] << 8) | p[1];
        p += 2;

        rc = ngx_voice_realtime_append(&call->openai, p, len);

        if (rc != NGX_OK) {
            break;
        }
    }

    if (call->queue_dropped) {
        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      "voice: %ui caller audio frames dropped while the "
                      "session was being set up", call->queue_dropped);
    }

    /* the queue serves the set-up only: its memory is not kept */

    if (q->start) {
        ngx_pfree(call->request->pool, q->start);
    }

    call->queue = NULL;
    call->queued_bytes = 0;

    return rc;
}


static ngx_int_t
ngx_voice_call_queue(ngx_voice_call_t *call, u_char *payload, size_t len)
{
    size_t      max;
    ngx_buf_t  *q;

    /* 8 bytes a millisecond, as base64: 4 characters for 3 bytes */
    max = NGX_VOICE_QUEUE_MS * 8 / 3 * 4;

    if (len > max || len > 0xffff) {
        call->queue_dropped++;
        return NGX_OK;
    }

    if (call->queue == NULL) {
        call->queue = ngx_calloc_buf(call->request->pool);
        if (call->queue == NULL) {
            return NGX_ERROR;
        }

        if (ngx_voice_call_queue_grow(call, len + 2) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    q = call->queue;

    /* the oldest audio goes once 2 s of it are queued */

    while (q->pos < q->last && call->queued_bytes + len > max) {
        ngx_voice_call_queue_drop(call);
    }

    if ((size_t) (q->end - q->last) < len + 2) {
        /* the free room is at the front: move what is kept there */
        q->last = ngx_movemem(q->start, q->pos, q->last - q->pos);
        q->pos = q->start;
    }

    if ((size_t) (q->end - q->last) < len + 2
        && (size_t) (q->end - q->start) < NGX_VOICE_QUEUE_SIZE
        && ngx_voice_call_queue_grow(call, len + 2) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* many tiny payloads: their length prefixes fill the buffer */

    while (q->pos < q->last && (size_t) (q->end - q->last) < len + 2) {
        ngx_voice_call_queue_drop(call);
        q->last = ngx_movemem(q->start, q->pos, q->last - q->pos);
        q->pos = q->start;
    }

    if (q->pos == q->last) {
        q->pos = q->start;
        q->last = q->start;
    }

    call->queued_bytes += len;

    *q->last++ = (u_char) (len >> 8);
    *q->last++ = (u_char) len;
    q->last = ngx_cpymem(q->last, payload, len);

    return NGX_OK;
}


/*
 * The set-up usually takes a few frames: the queue starts small and is
 * doubled as needed, up to NGX_VOICE_QUEUE_SIZE.
 */
static ngx_int_t
ngx_voice_call_queue_grow(ngx_voice_call_t *call, size_t need)
{
    u_char     *p;
    size_t      size, used;
    ngx_buf_t  *q;

    q = call->queue;
    used = q->last - q->pos;
    size = q->start ? (size_t) (q->end - q->start) : NGX_VOICE_QUEUE_MIN;

    while (size < NGX_VOICE_QUEUE_SIZE && size - used < need) {
        size *= 2;
    }

    size = ngx_min(size, NGX_VOICE_QUEUE_SIZE);

    p = ngx_pnalloc(call->request->pool, size);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (q->start) {
        ngx_memcpy(p, q->pos, used);
        ngx_pfree(call->request->pool, q->start);
    }

    q->start = p;
    q->pos = p;
    q->last = p + used;
    q->end = p + size;

    return NGX_OK;
}


static void
ngx_voice_call_queue_drop(ngx_voice_call_t *call)
{
    size_t      len;
    ngx_buf_t  *q;

    q = call->queue;

    len = ((size_t) q->pos[0] << 8) | q->pos[1];

    q->pos += 2 + len;
    call->queued_bytes -= len;
    call->queue_dropped++;
}
