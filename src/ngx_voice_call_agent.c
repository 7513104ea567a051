
/*
 * Copyright (C) ngx_voice authors
 *
 * The phone agent.  end_call and transfer_call act only from a response
 * that completed; their arguments are checked against the configuration
 * (the model names a label, never a number), and anything wrong is told
 * to the model, which goes on.  A valid one is answered, caller audio
 * stops going to OpenAI, the outcome is written to the zone before
 * anything is closed (the call-action webhook reads it, in any worker),
 * and the model's last words play out before both legs close with 1000.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <yajl/yajl_tree.h>
#include "ngx_voice.h"
#include "ngx_voice_call_agent.h"
#include "ngx_voice_json.h"
#include "ngx_voice_call_end.h"
#include "ngx_voice_util.h"


/* how long after its audio the model's last words are waited for */
#define NGX_VOICE_DRAIN_SLACK  2000


static ngx_int_t ngx_voice_call_agent_outcome(ngx_voice_call_t *call,
    ngx_voice_tool_call_t *tc, ngx_str_t *outcome, const char **error);
static ngx_int_t ngx_voice_call_agent_label(ngx_voice_call_t *call,
    ngx_voice_tool_call_t *tc, ngx_str_t *label, const char **error);
static ngx_int_t ngx_voice_call_agent_refuse(ngx_voice_call_t *call,
    ngx_voice_tool_call_t *tc, const char *error);
static ngx_int_t ngx_voice_call_agent_end(ngx_voice_call_t *call,
    ngx_voice_tool_call_t *tc, ngx_str_t *outcome);
static void ngx_voice_call_agent_drained(ngx_event_t *ev);
static ngx_uint_t ngx_voice_call_agent_was_cut(ngx_voice_call_t *call,
    ngx_voice_call_said_t *said);
static ngx_voice_call_said_t *ngx_voice_call_free_said(
    ngx_voice_call_t *call);
static ngx_uint_t ngx_voice_call_agent_is(ngx_voice_tool_call_t *tc,
    const char *name);


ngx_int_t
ngx_voice_call_agent_tool(ngx_voice_call_t *call, ngx_voice_tool_call_t *tc)
{
    ngx_str_t    outcome;
    const char  *error;
    u_char       text[NGX_VOICE_LOG_TEXT_MAX];

    if (call->agent_ending || call->closing) {
        return NGX_OK;
    }

    error = NULL;

    if (ngx_voice_call_agent_outcome(call, tc, &outcome, &error) != NGX_OK) {
        /* log-safe: constant text */
        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      "voice: the model's %s call refused: %s",
                      ngx_voice_log_escape(text, tc->name, tc->name_len),
                      error);

        return ngx_voice_call_agent_refuse(call, tc, error);
    }

    return ngx_voice_call_agent_end(call, tc, &outcome);
}


/* "hangup" or "transfer:LABEL", or why not */
static ngx_int_t
ngx_voice_call_agent_outcome(ngx_voice_call_t *call,
    ngx_voice_tool_call_t *tc, ngx_str_t *outcome, const char **error)
{
    u_char     *p;
    ngx_str_t   label;

    if (tc->too_long) {
        *error = "the arguments are too long";
        return NGX_ERROR;
    }

    if (ngx_voice_call_agent_is(tc, "end_call") && call->session->hangup) {
        ngx_str_set(outcome, "hangup");

        /* no arguments, but they still must be one JSON object */
        return ngx_voice_call_agent_label(call, tc, NULL, error);
    }

    if (!ngx_voice_call_agent_is(tc, "transfer_call")
        || call->session->transfers == NULL)
    {
        *error = "there is no such tool";
        return NGX_ERROR;
    }

    if (ngx_voice_call_agent_label(call, tc, &label, error) != NGX_OK) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(call->outcome, "transfer:", sizeof("transfer:") - 1);
    p = ngx_cpymem(p, label.data, label.len);

    outcome->data = call->outcome;
    outcome->len = p - call->outcome;

    return NGX_OK;
}


/*
 * The arguments, parsed with yajl: a JSON object, whose "destination" (if
 * "label" is asked for) is one of the configured labels.
 */
static ngx_int_t
ngx_voice_call_agent_label(ngx_voice_call_t *call,
    ngx_voice_tool_call_t *tc, ngx_str_t *label, const char **error)
{
    char                  args[NGX_VOICE_TOOL_ARGS_MAX + 1];
    yajl_val              root, dest;
    ngx_int_t             rc;
    ngx_str_t             name;
    ngx_voice_transfer_t *t;

    static const char    *path[] = { "destination", NULL };

    ngx_memcpy(args, tc->arguments, tc->arguments_len);
    args[tc->arguments_len] = '\0';

    root = yajl_tree_parse(tc->arguments_len ? args : "{}", NULL, 0);

    if (root == NULL || !YAJL_IS_OBJECT(root)) {
        *error = "the arguments are not a JSON object";
        rc = NGX_ERROR;
        goto done;
    }

    if (label == NULL) {
        rc = NGX_OK;
        goto done;
    }

    dest = yajl_tree_get(root, path, yajl_t_string);

    if (dest == NULL) {
        *error = "\"destination\" must be a string";
        rc = NGX_ERROR;
        goto done;
    }

    name.data = (u_char *) YAJL_GET_STRING(dest);
    name.len = ngx_strlen(name.data);

    t = ngx_voice_session_transfer(call->session, &name);

    if (t == NULL) {
        *error = "\"destination\" is not one of the destinations offered";
        rc = NGX_ERROR;
        goto done;
    }

    /* the configuration's label, which outlives the parsed arguments */
    *label = t->label;
    rc = NGX_OK;

done:

    if (root) {
        yajl_tree_free(root);
    }

    return rc;
}


/* the model is told what went wrong, and asked to go on */
static ngx_int_t
ngx_voice_call_agent_refuse(ngx_voice_call_t *call,
    ngx_voice_tool_call_t *tc, const char *error)
{
    u_char     *p;
    size_t      len;
    ngx_str_t   output;
    u_char      buf[1024];

    /* the texts are constants, well within the buffer once escaped */
    len = ngx_min(ngx_strlen(error), (sizeof(buf) - 16) / 6);

    p = ngx_cpymem(buf, "{\"error\":\"", sizeof("{\"error\":\"") - 1);
    p = ngx_voice_json_escape(p, (u_char *) error, len);
    p = ngx_cpymem(p, "\"}", 2);

    output.data = buf;
    output.len = p - buf;

    return ngx_voice_realtime_tool_output(&call->openai, tc, &output, 1);
}


static ngx_int_t
ngx_voice_call_agent_end(ngx_voice_call_t *call, ngx_voice_tool_call_t *tc,
    ngx_str_t *outcome)
{
    ngx_msec_t  unplayed;

    static ngx_str_t  ok = ngx_string("{\"ok\":true}");

    if (ngx_voice_realtime_tool_output(&call->openai, tc, &ok, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    /*
     * nothing the caller says or presses now starts a new response, and
     * no other response is played or asked for
     */
    call->agent_ending = 1;
    call->openai.ending = 1;

    /* written before anything is closed: Twilio asks for it right after */
    (void) ngx_voice_token_set_outcome(call->zone, &call->info.call_sid,
                                       outcome, call->log);

    if (outcome->data[0] == 'h') {
        ngx_voice_call_set_reason(call, NGX_VOICE_END_MODEL_HANGUP,
                                  "model hangup");

    } else {
        /* "transfer:LABEL" */
        ngx_voice_call_set_reason(call, NGX_VOICE_END_MODEL_TRANSFER,
                                  "model transfer to %*s",
                                  outcome->len - (sizeof("transfer:") - 1),
                                  outcome->data + sizeof("transfer:") - 1);
    }

    /* log-safe: names from the configuration */
    ngx_log_error(NGX_LOG_INFO, call->log, 0,
                  "voice: the model ends the call: %V", outcome);

    unplayed = ngx_voice_playback_unplayed_ms(&call->playback);

    if (!ngx_voice_playback_is_playing(&call->playback)) {
        ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_NORMAL,
                           NGX_VOICE_WS_CLOSE_NORMAL, NULL);
        return NGX_ERROR;
    }

    /* its last words play out first, within their length and 2 s more */
    ngx_voice_call_timer(call, &call->drain_timer,
                         ngx_voice_call_agent_drained,
                         unplayed + NGX_VOICE_DRAIN_SLACK);

    return NGX_OK;
}


void
ngx_voice_call_agent_played(ngx_voice_call_t *call)
{
    if (ngx_voice_playback_is_playing(&call->playback)) {
        return;
    }

    /* all that was said was heard: nothing of it can be cut any more */

    ngx_voice_call_write_all_said(call);

    if (call->agent_ending && !call->closing) {
        if (call->drain_timer.timer_set) {
            ngx_del_timer(&call->drain_timer);
        }

        ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_NORMAL,
                           NGX_VOICE_WS_CLOSE_NORMAL, NULL);
    }
}


static void
ngx_voice_call_agent_drained(ngx_event_t *ev)
{
    ngx_voice_call_t  *call = ev->data;

    if (call->closing) {
        return;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, call->log, 0,
                   "voice: the model's last words did not all play back");

    ngx_voice_call_end(call, NGX_VOICE_WS_CLOSE_NORMAL,
                       NGX_VOICE_WS_CLOSE_NORMAL, NULL);

    /* ngx_voice_call_end() posted the write event: the legs close there */
}


void
ngx_voice_call_agent_cut(ngx_voice_call_t *call, ngx_voice_truncation_t *cut,
    ngx_uint_t n)
{
    ngx_uint_t              i;
    ngx_voice_call_cut_t   *c;
    ngx_voice_call_said_t  *said;

    if (call->transcript == NULL) {
        return;
    }

    /* kept for the transcript of an item that comes after the cut */

    for (i = 0; i < n; i++) {
        c = &call->cuts[call->ncuts++ % NGX_VOICE_CALL_CUTS];
        c->item_id_len = ngx_min(cut[i].item_id.len, NGX_VOICE_ID_MAX);
        ngx_memcpy(c->item_id, cut[i].item_id.data, c->item_id_len);
        c->played_ms = cut[i].played_ms;
        c->sent_ms = cut[i].sent_ms;
    }

    /*
     * Each utterance held is written, oldest first: with the cut of its
     * own item, or whole if its item was not cut (it had played out).
     */

    while ((said = ngx_voice_call_oldest_said(call)) != NULL) {

        for (i = 0; i < n; i++) {
            if (cut[i].item_id.len == said->item_id_len
                && ngx_memcmp(cut[i].item_id.data, said->item_id,
                              said->item_id_len)
                   == 0)
            {
                break;
            }
        }

        ngx_voice_call_write_said(call, said, i < n ? &cut[i] : NULL);
    }
}


ngx_int_t
ngx_voice_call_agent_transcript(ngx_voice_call_t *call, ngx_uint_t assistant,
    ngx_str_t *item_id, ngx_str_t *previous, ngx_str_t *text)
{
    ngx_voice_call_said_t        *said;
    ngx_voice_transcript_line_t   line;

    if (call->transcript == NULL || text->len == 0) {
        return NGX_OK;
    }

    if (!assistant) {
        ngx_memzero(&line, sizeof(ngx_voice_transcript_line_t));
        line.call_sid = &call->info.call_sid;
        line.item_id = item_id;
        line.previous_item_id = previous;
        line.assistant = 0;
        line.text = text;

        (void) ngx_voice_transcript_write(call->transcript, &line, call->log);
        return NGX_OK;
    }

    /* the model's words wait until it is known whether they were cut */

    said = ngx_voice_call_free_said(call);

    if (said->text == NULL) {
        said->text = ngx_pnalloc(call->request->pool,
                                 NGX_VOICE_TRANSCRIPT_LINE_MAX);
        if (said->text == NULL) {
            return NGX_OK;
        }
    }

    said->item_id_len = ngx_min(item_id->len, NGX_VOICE_ID_MAX);
    ngx_memcpy(said->item_id, item_id->data, said->item_id_len);
    said->previous_len = ngx_min(previous->len, NGX_VOICE_ID_MAX);
    ngx_memcpy(said->previous, previous->data, said->previous_len);
    said->text_len = ngx_min(text->len, NGX_VOICE_TRANSCRIPT_LINE_MAX);
    ngx_memcpy(said->text, text->data, said->text_len);
    said->seq = call->said_seq++;
    said->pending = 1;

    if (ngx_voice_call_agent_was_cut(call, said)) {
        return NGX_OK;
    }

    if (!ngx_voice_playback_is_playing(&call->playback)) {
        ngx_voice_call_write_all_said(call);
    }

    return NGX_OK;
}


/*
 * A place for one more utterance: more than the playback tracks cannot
 * all be playing, so the oldest is then written as heard whole.
 */
static ngx_voice_call_said_t *
ngx_voice_call_free_said(ngx_voice_call_t *call)
{
    ngx_uint_t              i;
    ngx_voice_call_said_t  *said;

    for (i = 0; i < NGX_VOICE_ITEMS; i++) {
        if (!call->said[i].pending) {
            return &call->said[i];
        }
    }

    said = ngx_voice_call_oldest_said(call);
    ngx_voice_call_write_said(call, said, NULL);

    return said;
}


/* the transcript of an item cut before it came: written as cut */
static ngx_uint_t
ngx_voice_call_agent_was_cut(ngx_voice_call_t *call,
    ngx_voice_call_said_t *said)
{
    ngx_uint_t              i;
    ngx_voice_call_cut_t   *c;
    ngx_voice_truncation_t  cut;

    for (i = 0; i < NGX_VOICE_CALL_CUTS && i < call->ncuts; i++) {
        c = &call->cuts[i];

        if (c->item_id_len == said->item_id_len
            && ngx_memcmp(c->item_id, said->item_id, c->item_id_len) == 0)
        {
            ngx_memzero(&cut, sizeof(ngx_voice_truncation_t));
            cut.item_id.data = c->item_id;
            cut.item_id.len = c->item_id_len;
            cut.played_ms = c->played_ms;
            cut.sent_ms = c->sent_ms;

            ngx_voice_call_write_said(call, said, &cut);
            return 1;
        }
    }

    return 0;
}


static ngx_uint_t
ngx_voice_call_agent_is(ngx_voice_tool_call_t *tc, const char *name)
{
    size_t  len;

    len = ngx_strlen(name);

    return tc->name_len == len && ngx_memcmp(tc->name, name, len) == 0;
}
