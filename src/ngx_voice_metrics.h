
/*
 * Copyright (C) ngx_voice authors
 *
 * Counters for /metrics, in the shared memory of the voice_token_zone:
 * every worker adds to the same totals, and they survive a reload as the
 * tokens do.  Per-request counters are atomic adds; a call keeps its own
 * frame counts and adds them about once a second and at its end.
 */


#ifndef _NGX_VOICE_METRICS_H_INCLUDED_
#define _NGX_VOICE_METRICS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef enum {
    NGX_VOICE_WEBHOOK_OK = 0,
    NGX_VOICE_WEBHOOK_BAD_SIGNATURE,
    NGX_VOICE_WEBHOOK_REJECTED_CALLER,
    NGX_VOICE_WEBHOOK_BAD_REQUEST,
    NGX_VOICE_WEBHOOK_ZONE_FULL,
    NGX_VOICE_WEBHOOK_REPEAT,
    NGX_VOICE_WEBHOOK_RESULTS
} ngx_voice_webhook_result_e;


typedef enum {
    NGX_VOICE_UPGRADE_OK = 0,
    NGX_VOICE_UPGRADE_BAD_REQUEST,
    NGX_VOICE_UPGRADE_BAD_SIGNATURE,
    NGX_VOICE_UPGRADE_BAD_TOKEN,
    NGX_VOICE_UPGRADE_RESULTS
} ngx_voice_upgrade_result_e;


#define NGX_VOICE_DIRECTIONS      2    /* to OpenAI, to Twilio */
#define NGX_VOICE_TO_OPENAI       0
#define NGX_VOICE_TO_TWILIO       1
#define NGX_VOICE_STAGES          5    /* ngx_voice_upstream_stage_e */
#define NGX_VOICE_END_REASONS     14   /* ngx_voice_end_e */
#define NGX_VOICE_SETUP_BUCKETS   10
#define NGX_VOICE_WORKER_SLOTS    128  /* live workers, old and new */


/*
 * The calls of one worker process: a gauge kept per process, so the
 * calls of a worker that died are not counted for ever.
 */
typedef struct {
    ngx_atomic_t                 pid;
    ngx_atomic_t                 calls;
} ngx_voice_worker_slot_t;


typedef struct ngx_voice_metrics_s {
    ngx_voice_worker_slot_t      workers[NGX_VOICE_WORKER_SLOTS];
    ngx_atomic_t                 calls_unslotted; /* more workers than slots */
    ngx_atomic_t                 calls[NGX_VOICE_END_REASONS];
    ngx_atomic_t                 webhooks[NGX_VOICE_WEBHOOK_RESULTS];
    ngx_atomic_t                 tokens_minted;
    ngx_atomic_t                 tokens_consumed;
    ngx_atomic_t                 tokens_expired;
    ngx_atomic_t                 tokens_refused;
    ngx_atomic_t                 upgrades[NGX_VOICE_UPGRADE_RESULTS];
    ngx_atomic_t                 upstream_failures[NGX_VOICE_STAGES];
    ngx_atomic_t                 setup_buckets[NGX_VOICE_SETUP_BUCKETS];
    ngx_atomic_t                 setup_count;
    ngx_atomic_t                 setup_sum_ms;
    ngx_atomic_t                 frames[NGX_VOICE_DIRECTIONS];
    ngx_atomic_t                 bytes[NGX_VOICE_DIRECTIONS];
    ngx_atomic_t                 barge_ins;
    ngx_atomic_t                 dtmf;
    ngx_atomic_t                 openai_errors;
} ngx_voice_metrics_t;


/* this process's view of the zone's counters; NULL without a zone */
extern ngx_voice_metrics_t  *ngx_voice_metrics;


#define ngx_voice_metric_add(field, n)                                       \
    do {                                                                     \
        if (ngx_voice_metrics) {                                             \
            (void) ngx_atomic_fetch_add(&ngx_voice_metrics->field, n);       \
        }                                                                    \
    } while (0)

#define ngx_voice_metric_inc(field)  ngx_voice_metric_add(field, 1)


/*
 * A worker takes the counters of the cycle it runs (a failed reload
 * leaves the master's pointers to a zone that was freed) and a slot for
 * its calls.
 */
void ngx_voice_metrics_init_process(ngx_voice_metrics_t *m);
void ngx_voice_metrics_exit_process(void);

/* a call of this worker began (+1) or ended (-1) */
void ngx_voice_metrics_call(ngx_int_t n);

/* calls in progress in the workers alive */
ngx_atomic_uint_t ngx_voice_metrics_calls_active(void);


/* a call set up in "ms" from the 101 to session.updated */
void ngx_voice_metrics_setup(ngx_msec_t ms);

/* Prometheus text format 0.0.4, into a buffer from "pool" */
ngx_buf_t *ngx_voice_metrics_render(ngx_pool_t *pool);


#endif /* _NGX_VOICE_METRICS_H_INCLUDED_ */
