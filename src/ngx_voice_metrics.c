
/*
 * Copyright (C) ngx_voice authors
 *
 * The metrics' names and the Prometheus text of them.  The label values
 * are a fixed set of codes, never text from a peer.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_voice_metrics.h"


#define NGX_VOICE_METRICS_MAX  8192


ngx_voice_metrics_t  *ngx_voice_metrics;

static ngx_atomic_t  *ngx_voice_metrics_own_calls;


/* in the order of ngx_voice_end_e; NGX_VOICE_END_NONE is "unknown" */
static const char  *ngx_voice_end_names[NGX_VOICE_END_REASONS] = {
    "unknown", "caller_hangup", "openai_closed", "openai_failed",
    "start_timeout", "idle_timeout", "max_duration", "protocol_error",
    "backpressure", "message_too_big", "shutdown", "model_hangup",
    "model_transfer", "internal_error"
};

static const char  *ngx_voice_webhook_names[NGX_VOICE_WEBHOOK_RESULTS] = {
    "ok", "bad_signature", "rejected_caller", "bad_request", "zone_full",
    "repeat"
};

static const char  *ngx_voice_upgrade_names[NGX_VOICE_UPGRADE_RESULTS] = {
    "ok", "bad_request", "bad_signature", "bad_token"
};

static const char  *ngx_voice_stage_names[NGX_VOICE_STAGES] = {
    "dns", "connect", "tls", "handshake", "http_status"
};

static const char  *ngx_voice_direction_names[NGX_VOICE_DIRECTIONS] = {
    "to_openai", "to_twilio"
};

/* the upper bounds of the set-up time buckets, in ms */
static const ngx_msec_t  ngx_voice_setup_bounds[NGX_VOICE_SETUP_BUCKETS] = {
    10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000
};


static u_char *ngx_voice_metrics_family(u_char *p, const char *name,
    const char *type, const char *help);
static u_char *ngx_voice_metrics_labelled(u_char *p, const char *name,
    const char *label, const char **values, ngx_atomic_t *counts,
    ngx_uint_t n);
static u_char *ngx_voice_metrics_setup_histogram(u_char *p);
static ngx_uint_t ngx_voice_metrics_pid_alive(ngx_atomic_uint_t pid);


void
ngx_voice_metrics_init_process(ngx_voice_metrics_t *m)
{
    ngx_uint_t                i;
    ngx_atomic_uint_t         pid;
    ngx_voice_worker_slot_t  *slot;

    ngx_voice_metrics = m;
    ngx_voice_metrics_own_calls = NULL;

    if (m == NULL) {
        return;
    }

    /* a free slot, or that of a process gone (a worker that crashed) */

    for (i = 0; i < NGX_VOICE_WORKER_SLOTS; i++) {
        slot = &m->workers[i];
        pid = slot->pid;

        if ((pid == 0 || !ngx_voice_metrics_pid_alive(pid))
            && ngx_atomic_cmp_set(&slot->pid, pid, (ngx_atomic_uint_t) ngx_pid))
        {
            slot->calls = 0;
            ngx_voice_metrics_own_calls = &slot->calls;
            return;
        }
    }

    ngx_voice_metrics_own_calls = &m->calls_unslotted;
}


void
ngx_voice_metrics_exit_process(void)
{
    ngx_voice_worker_slot_t  *slot;

    if (ngx_voice_metrics == NULL
        || ngx_voice_metrics_own_calls == &ngx_voice_metrics->calls_unslotted
        || ngx_voice_metrics_own_calls == NULL)
    {
        return;
    }

    slot = (ngx_voice_worker_slot_t *) ((u_char *) ngx_voice_metrics_own_calls
                                 - offsetof(ngx_voice_worker_slot_t, calls));
    slot->calls = 0;
    (void) ngx_atomic_cmp_set(&slot->pid, (ngx_atomic_uint_t) ngx_pid, 0);
}


void
ngx_voice_metrics_call(ngx_int_t n)
{
    if (ngx_voice_metrics_own_calls) {
        (void) ngx_atomic_fetch_add(ngx_voice_metrics_own_calls, n);
    }
}


ngx_atomic_uint_t
ngx_voice_metrics_calls_active(void)
{
    ngx_uint_t                i;
    ngx_atomic_uint_t         pid, sum;
    ngx_voice_worker_slot_t  *slot;

    if (ngx_voice_metrics == NULL) {
        return 0;
    }

    sum = ngx_voice_metrics->calls_unslotted;

    for (i = 0; i < NGX_VOICE_WORKER_SLOTS; i++) {
        slot = &ngx_voice_metrics->workers[i];
        pid = slot->pid;

        if (pid && slot->calls
            && (pid == (ngx_atomic_uint_t) ngx_pid
                || ngx_voice_metrics_pid_alive(pid)))
        {
            sum += slot->calls;
        }
    }

    return sum;
}


static ngx_uint_t
ngx_voice_metrics_pid_alive(ngx_atomic_uint_t pid)
{
    return kill((ngx_pid_t) pid, 0) == 0 || ngx_errno == NGX_EPERM;
}


void
ngx_voice_metrics_setup(ngx_msec_t ms)
{
    ngx_uint_t  i;

    if (ngx_voice_metrics == NULL) {
        return;
    }

    for (i = 0; i < NGX_VOICE_SETUP_BUCKETS; i++) {
        if (ms <= ngx_voice_setup_bounds[i]) {
            (void) ngx_atomic_fetch_add(&ngx_voice_metrics->setup_buckets[i],
                                        1);
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&ngx_voice_metrics->setup_sum_ms, ms);
    (void) ngx_atomic_fetch_add(&ngx_voice_metrics->setup_count, 1);
}


ngx_buf_t *
ngx_voice_metrics_render(ngx_pool_t *pool)
{
    u_char               *p;
    ngx_buf_t            *b;
    ngx_voice_metrics_t  *m;

    m = ngx_voice_metrics;

    b = ngx_create_temp_buf(pool, NGX_VOICE_METRICS_MAX);
    if (b == NULL || m == NULL) {
        return b;
    }

    p = b->last;

    p = ngx_voice_metrics_family(p, "ngx_voice_calls_active", "gauge",
                                 "Calls in progress, in all workers.");
    p = ngx_sprintf(p, "ngx_voice_calls_active %uA\n",
                    ngx_voice_metrics_calls_active());

    p = ngx_voice_metrics_family(p, "ngx_voice_calls_total", "counter",
                                 "Calls ended, by reason.");
    p = ngx_voice_metrics_labelled(p, "ngx_voice_calls_total", "reason",
                                   ngx_voice_end_names, m->calls,
                                   NGX_VOICE_END_REASONS);

    p = ngx_voice_metrics_family(p, "ngx_voice_webhooks_total", "counter",
                                 "Call webhooks answered, by result.");
    p = ngx_voice_metrics_labelled(p, "ngx_voice_webhooks_total", "result",
                                   ngx_voice_webhook_names, m->webhooks,
                                   NGX_VOICE_WEBHOOK_RESULTS);

    p = ngx_voice_metrics_family(p, "ngx_voice_tokens_minted_total",
                                 "counter", "Media stream tokens minted.");
    p = ngx_sprintf(p, "ngx_voice_tokens_minted_total %uA\n",
                    m->tokens_minted);
    p = ngx_voice_metrics_family(p, "ngx_voice_tokens_consumed_total",
                                 "counter", "Media stream tokens used.");
    p = ngx_sprintf(p, "ngx_voice_tokens_consumed_total %uA\n",
                    m->tokens_consumed);
    p = ngx_voice_metrics_family(p, "ngx_voice_tokens_expired_total",
                                 "counter",
                                 "Media stream tokens that expired unused.");
    p = ngx_sprintf(p, "ngx_voice_tokens_expired_total %uA\n",
                    m->tokens_expired);
    p = ngx_voice_metrics_family(p, "ngx_voice_tokens_refused_total",
                                 "counter",
                                 "Upgrades whose token was unknown, used "
                                 "or expired.");
    p = ngx_sprintf(p, "ngx_voice_tokens_refused_total %uA\n",
                    m->tokens_refused);

    p = ngx_voice_metrics_family(p, "ngx_voice_upgrades_total", "counter",
                                 "Media stream upgrades, by result.");
    p = ngx_voice_metrics_labelled(p, "ngx_voice_upgrades_total", "result",
                                   ngx_voice_upgrade_names, m->upgrades,
                                   NGX_VOICE_UPGRADE_RESULTS);

    p = ngx_voice_metrics_family(p, "ngx_voice_upstream_failures_total",
                                 "counter",
                                 "OpenAI connections that failed, by stage.");
    p = ngx_voice_metrics_labelled(p, "ngx_voice_upstream_failures_total",
                                   "stage", ngx_voice_stage_names,
                                   m->upstream_failures, NGX_VOICE_STAGES);

    p = ngx_voice_metrics_setup_histogram(p);

    p = ngx_voice_metrics_family(p, "ngx_voice_frames_total", "counter",
                                 "WebSocket frames sent, by direction.");
    p = ngx_voice_metrics_labelled(p, "ngx_voice_frames_total", "direction",
                                   ngx_voice_direction_names, m->frames,
                                   NGX_VOICE_DIRECTIONS);

    p = ngx_voice_metrics_family(p, "ngx_voice_bytes_total", "counter",
                                 "WebSocket bytes sent, by direction.");
    p = ngx_voice_metrics_labelled(p, "ngx_voice_bytes_total", "direction",
                                   ngx_voice_direction_names, m->bytes,
                                   NGX_VOICE_DIRECTIONS);

    p = ngx_voice_metrics_family(p, "ngx_voice_barge_ins_total", "counter",
                                 "Times the caller talked over the model.");
    p = ngx_sprintf(p, "ngx_voice_barge_ins_total %uA\n", m->barge_ins);
    p = ngx_voice_metrics_family(p, "ngx_voice_dtmf_total", "counter",
                                 "Keypad digits passed to the model.");
    p = ngx_sprintf(p, "ngx_voice_dtmf_total %uA\n", m->dtmf);
    p = ngx_voice_metrics_family(p, "ngx_voice_openai_errors_total",
                                 "counter", "OpenAI error events.");
    p = ngx_sprintf(p, "ngx_voice_openai_errors_total %uA\n",
                    m->openai_errors);

    b->last = p;

    return b;
}


static u_char *
ngx_voice_metrics_family(u_char *p, const char *name, const char *type,
    const char *help)
{
    return ngx_sprintf(p, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
                       type);
}


static u_char *
ngx_voice_metrics_labelled(u_char *p, const char *name, const char *label,
    const char **values, ngx_atomic_t *counts, ngx_uint_t n)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        p = ngx_sprintf(p, "%s{%s=\"%s\"} %uA\n", name, label, values[i],
                        counts[i]);
    }

    return p;
}


/*
 * Cumulative buckets in seconds, as Prometheus wants them.  A set-up is
 * added to its bucket before the count (ngx_voice_metrics_setup()), and
 * the count is read first here: no bucket is ever shown above it.
 */
static u_char *
ngx_voice_metrics_setup_histogram(u_char *p)
{
    ngx_uint_t            i;
    ngx_atomic_uint_t     sum, count, ms;
    ngx_voice_metrics_t  *m;

    m = ngx_voice_metrics;

    count = m->setup_count;
    ngx_memory_barrier();
    ms = m->setup_sum_ms;

    p = ngx_voice_metrics_family(p, "ngx_voice_call_setup_seconds",
                                 "histogram",
                                 "From the 101 to session.updated.");
    sum = 0;

    for (i = 0; i < NGX_VOICE_SETUP_BUCKETS; i++) {
        sum += m->setup_buckets[i];
        sum = ngx_min(sum, count);
        p = ngx_sprintf(p, "ngx_voice_call_setup_seconds_bucket"
                           "{le=\"%ui.%03ui\"} %uA\n",
                        ngx_voice_setup_bounds[i] / 1000,
                        ngx_voice_setup_bounds[i] % 1000, sum);
    }

    p = ngx_sprintf(p, "ngx_voice_call_setup_seconds_bucket{le=\"+Inf\"} %uA\n"
                       "ngx_voice_call_setup_seconds_sum %uA.%03uA\n"
                       "ngx_voice_call_setup_seconds_count %uA\n",
                    count, ms / 1000, ms % 1000, count);

    return p;
}
