
/*
 * Copyright (C) ngx_voice authors
 *
 * Function calls and transcripts of the OpenAI leg.
 * response.function_call_arguments.done comes for interrupted and
 * cancelled responses too, so a function call is taken from its
 * response.output_item.done and acted on only when response.done says
 * "completed": a caller who interrupts the model is not hung up on.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_voice_realtime_items.h"


static ngx_uint_t ngx_voice_realtime_same(ngx_str_t *s, u_char *buf,
    size_t len);
static void ngx_voice_realtime_keep(u_char *dst, size_t *dst_len,
    ngx_str_t *src, size_t size);


void
ngx_voice_realtime_remember_call(ngx_voice_realtime_t *rt)
{
    ngx_voice_tool_call_t     *tc;
    ngx_voice_realtime_msg_t  *msg;

    msg = &rt->msg;

    if (msg->item_type.len != sizeof("function_call") - 1
        || ngx_strncmp(msg->item_type.data, "function_call",
                       sizeof("function_call") - 1) != 0
        || msg->response_id.len == 0 || msg->item_call_id.len == 0)
    {
        /* conversation.item.done names it too, without its response */
        return;
    }

    if (rt->ncalls == NGX_VOICE_TOOL_CALLS) {
        ngx_log_error(NGX_LOG_WARN, rt->peer.log, 0,
                      "voice: more than %d function calls in a response, "
                      "the rest ignored", NGX_VOICE_TOOL_CALLS);
        return;
    }

    if (rt->calls == NULL) {
        /* most calls make none: the list is not kept in every call */
        rt->calls = ngx_palloc(rt->peer.pool,
                               NGX_VOICE_TOOL_CALLS
                               * sizeof(ngx_voice_tool_call_t));
        if (rt->calls == NULL) {
            ngx_log_error(NGX_LOG_ERR, rt->peer.log, 0,
                          "voice: no memory for a function call, ignored");
            return;
        }
    }

    tc = &rt->calls[rt->ncalls++];

    ngx_voice_realtime_keep(tc->response_id, &tc->response_id_len,
                            &msg->response_id, sizeof(tc->response_id));
    ngx_voice_realtime_keep(tc->call_id, &tc->call_id_len,
                            &msg->item_call_id, sizeof(tc->call_id));
    ngx_voice_realtime_keep(tc->name, &tc->name_len, &msg->item_name,
                            sizeof(tc->name));
    ngx_voice_realtime_keep(tc->arguments, &tc->arguments_len,
                            &msg->item_arguments, sizeof(tc->arguments));

    tc->too_long = msg->arguments_too_long || msg->item_name.len == 0;
}


ngx_int_t
ngx_voice_realtime_calls_done(ngx_voice_realtime_t *rt)
{
    ngx_uint_t                 i, n, completed;
    ngx_voice_tool_call_t      done[NGX_VOICE_TOOL_CALLS];
    ngx_voice_realtime_msg_t  *msg;

    msg = &rt->msg;

    completed = (msg->response_status.len == sizeof("completed") - 1
                 && ngx_strncmp(msg->response_status.data, "completed",
                                sizeof("completed") - 1)
                    == 0);

    /*
     * One response runs at a time: the list is emptied at each end, and
     * a call of another response (its id not this one's) is dropped.
     */

    n = 0;

    for (i = 0; i < rt->ncalls; i++) {

        if (completed
            && ngx_voice_realtime_same(&msg->response_ref,
                                       rt->calls[i].response_id,
                                       rt->calls[i].response_id_len))
        {
            done[n++] = rt->calls[i];

        } else {
            ngx_log_debug0(NGX_LOG_DEBUG_HTTP, rt->peer.log, 0,
                           "voice: function call of a response that "
                           "did not complete dropped");
        }
    }

    rt->ncalls = 0;

    for (i = 0; i < n; i++) {
        if (rt->handler->tool_call(rt, &done[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


void
ngx_voice_realtime_remember_order(ngx_voice_realtime_t *rt)
{
    ngx_voice_item_order_t    *o;
    ngx_voice_realtime_msg_t  *msg;

    msg = &rt->msg;

    if (!rt->transcripts || msg->approval_id.len == 0) {
        return;
    }

    o = &rt->order[rt->norder++ % NGX_VOICE_ITEM_ORDER];

    ngx_voice_realtime_keep(o->item_id, &o->item_id_len, &msg->approval_id,
                            sizeof(o->item_id));
    ngx_voice_realtime_keep(o->previous, &o->previous_len,
                            &msg->previous_item_id, sizeof(o->previous));
}


ngx_int_t
ngx_voice_realtime_transcript(ngx_voice_realtime_t *rt, ngx_uint_t assistant)
{
    ngx_str_t                  previous;
    ngx_uint_t                 i;
    ngx_voice_item_order_t    *o;
    ngx_voice_realtime_msg_t  *msg;

    msg = &rt->msg;

    if (!rt->transcripts || msg->item_id.len == 0) {
        return NGX_OK;
    }

    previous.len = 0;
    previous.data = NULL;

    for (i = 0; i < NGX_VOICE_ITEM_ORDER; i++) {
        o = &rt->order[i];

        if (ngx_voice_realtime_same(&msg->item_id, o->item_id,
                                    o->item_id_len))
        {
            previous.data = o->previous;
            previous.len = o->previous_len;
            break;
        }
    }

    return rt->handler->transcript(rt, assistant, &msg->item_id, &previous,
                                   &msg->transcript);
}


static ngx_uint_t
ngx_voice_realtime_same(ngx_str_t *s, u_char *buf, size_t len)
{
    return s->len == len && len && ngx_memcmp(s->data, buf, len) == 0;
}


/* a bounded copy into a fixed buffer */
static void
ngx_voice_realtime_keep(u_char *dst, size_t *dst_len, ngx_str_t *src,
    size_t size)
{
    *dst_len = ngx_min(src->len, size);
    ngx_memcpy(dst, src->data, *dst_len);
}
