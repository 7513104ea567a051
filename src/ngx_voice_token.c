
/*
 * Copyright (C) ngx_voice authors
 *
 * The shared-memory token zone.  One node per CallSid, found both by its
 * token (the media-stream upgrade) and by its CallSid (the webhook):
 * a CallSid never holds more than one live token, so a replayed webhook
 * gets the same answer and takes no more room, and the zone's capacity is
 * bounded by the distinct signed CallSids, which only Twilio makes.  The
 * node is also where later per-call records can live.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <openssl/rand.h>
#include "ngx_voice.h"
#include "ngx_voice_metrics.h"
#include "ngx_voice_token.h"


#define NGX_VOICE_TOKEN_DEFAULT_TTL  60000


/*
 * A call's node: in the token tree, in the CallSid tree, and in the
 * expiry queue (oldest last).  "data" holds the token, then the CallSid,
 * AccountSid, From and To.  A consumed token stays until it expires, so
 * a replay is told apart from a guess and a repeated webhook from a
 * first one.
 */
typedef struct {
    ngx_rbtree_node_t            by_token;
    ngx_rbtree_node_t            by_call;
    ngx_queue_t                  queue;
    ngx_msec_t                   expires;
    ngx_msec_t                   live_until;  /* bounds a lost call */
    u_char                       used;
    u_char                       live;        /* its call is running */
    u_char                       outcome_len;
    u_char                       outcome[NGX_VOICE_OUTCOME_MAX];
    u_char                       sid_len;
    u_char                       account_len;
    u_char                       from_len;
    u_char                       to_len;
    u_char                       data[1];
} ngx_voice_token_node_t;


typedef struct {
    ngx_rbtree_t                 tokens;
    ngx_rbtree_node_t            tokens_sentinel;
    ngx_rbtree_t                 calls;
    ngx_rbtree_node_t            calls_sentinel;
    ngx_queue_t                  queue;
    ngx_uint_t                   count;
    ngx_voice_metrics_t          metrics;    /* for /metrics, here too */
} ngx_voice_token_shctx_t;


typedef struct {
    ngx_voice_token_shctx_t     *sh;
    ngx_slab_pool_t             *shpool;
    ngx_msec_t                   ttl;
    time_t                       full_logged;
} ngx_voice_token_ctx_t;


#define ngx_voice_token_sid(tn)  ((tn)->data + NGX_VOICE_TOKEN_LEN)


static ngx_int_t ngx_voice_token_make(ngx_voice_token_op_t *op);
static ngx_uint_t ngx_voice_token_alive(ngx_voice_token_node_t *tn);
static ngx_uint_t ngx_voice_token_sweepable(ngx_voice_token_node_t *tn);
static void ngx_voice_token_refresh(ngx_voice_token_ctx_t *ctx,
    ngx_voice_token_node_t *tn);
static ngx_int_t ngx_voice_token_repeat(ngx_voice_token_ctx_t *ctx,
    ngx_voice_token_op_t *op, ngx_voice_token_node_t *tn);
static ngx_int_t ngx_voice_token_insert(ngx_voice_token_ctx_t *ctx,
    ngx_voice_token_op_t *op, uint32_t call_hash);
static ngx_int_t ngx_voice_token_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_voice_token_insert_token(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static void ngx_voice_token_insert_call(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_int_t ngx_voice_token_cmp_token(ngx_rbtree_node_t *a,
    ngx_rbtree_node_t *b);
static ngx_int_t ngx_voice_token_cmp_call(ngx_rbtree_node_t *a,
    ngx_rbtree_node_t *b);
static void ngx_voice_token_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel,
    ngx_int_t (*cmp)(ngx_rbtree_node_t *a, ngx_rbtree_node_t *b));
static ngx_voice_token_node_t *ngx_voice_token_find_token(
    ngx_voice_token_ctx_t *ctx, ngx_str_t *token, uint32_t hash);
static ngx_voice_token_node_t *ngx_voice_token_find_call(
    ngx_voice_token_ctx_t *ctx, ngx_str_t *sid, uint32_t hash);
static ngx_voice_token_node_t *ngx_voice_token_alloc(
    ngx_voice_token_ctx_t *ctx, size_t size);
static ngx_uint_t ngx_voice_token_expire(ngx_voice_token_ctx_t *ctx,
    ngx_uint_t n);
static void ngx_voice_token_delete(ngx_voice_token_ctx_t *ctx,
    ngx_voice_token_node_t *tn);
static ngx_int_t ngx_voice_token_copy_info(ngx_voice_token_op_t *op,
    ngx_voice_token_node_t *tn);
static ngx_int_t ngx_voice_token_is_wellformed(ngx_str_t *token);
static ngx_uint_t ngx_voice_token_char(u_char c);


static const char  *ngx_voice_token_status_texts[] = {
    "ok",
    "unknown",
    "expired",
    "already used",
    "zone full",
    "repeated"
};


/*
 * The token of a call: a new one, or the one its CallSid already holds
 * while that is unused (a webhook Twilio retried, or one replayed: the
 * same answer either way), or NGX_VOICE_TOKEN_USED once it was consumed.
 */
ngx_int_t
ngx_voice_token_mint(ngx_voice_token_op_t *op)
{
    uint32_t                 hash;
    ngx_int_t                rc;
    ngx_voice_call_info_t   *info;
    ngx_voice_token_ctx_t   *ctx;
    ngx_voice_token_node_t  *tn;

    ctx = op->zone->data;
    info = &op->info;

    if (info->call_sid.len == 0
        || info->call_sid.len > NGX_VOICE_TOKEN_FIELD_MAX
        || info->account_sid.len > NGX_VOICE_TOKEN_FIELD_MAX
        || info->from.len > NGX_VOICE_TOKEN_FIELD_MAX
        || info->to.len > NGX_VOICE_TOKEN_FIELD_MAX)
    {
        return NGX_ERROR;
    }

    /* the random part is made outside the lock */

    if (ngx_voice_token_make(op) != NGX_OK) {
        return NGX_ERROR;
    }

    hash = ngx_crc32_short(info->call_sid.data, info->call_sid.len);

    ngx_shmtx_lock(&ctx->shpool->mutex);

    tn = ngx_voice_token_find_call(ctx, &info->call_sid, hash);

    if (tn && ngx_voice_token_alive(tn)) {
        rc = ngx_voice_token_repeat(ctx, op, tn);
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return rc;
    }

    if (tn) {
        /* its record is over: the call gets a fresh one */
        if (!tn->used) {
            ngx_voice_metric_inc(tokens_expired);
        }

        ngx_voice_token_delete(ctx, tn);
    }

    rc = ngx_voice_token_insert(ctx, op, hash);

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (rc == NGX_OK && op->status == NGX_VOICE_TOKEN_OK) {
        ngx_voice_metric_inc(tokens_minted);
    }

    if (rc == NGX_OK && op->status == NGX_VOICE_TOKEN_FULL
        && ctx->full_logged != ngx_time())
    {
        ctx->full_logged = ngx_time();
        /* log-safe: names from the configuration */
        ngx_log_error(NGX_LOG_ERR, op->log, 0,
                      "voice: could not allocate token in "
                      "voice_token_zone \"%V\": zone is full",
                      &op->zone->shm.name);
    }

    return rc;
}


/* 32 random bytes, base64url */
static ngx_int_t
ngx_voice_token_make(ngx_voice_token_op_t *op)
{
    ngx_str_t  raw;
    u_char     rnd[NGX_VOICE_TOKEN_BYTES];

    if (RAND_bytes(rnd, NGX_VOICE_TOKEN_BYTES) != 1) {
        ngx_log_error(NGX_LOG_ALERT, op->log, 0, "RAND_bytes() failed");
        return NGX_ERROR;
    }

    raw.data = rnd;
    raw.len = NGX_VOICE_TOKEN_BYTES;

    op->token.data = op->buf;
    ngx_encode_base64url(&op->token, &raw);

    ngx_explicit_memzero(rnd, sizeof(rnd));

    return NGX_OK;
}


/* the CallSid holds a live node: its token again, or "used" */
static ngx_int_t
ngx_voice_token_repeat(ngx_voice_token_ctx_t *ctx, ngx_voice_token_op_t *op,
    ngx_voice_token_node_t *tn)
{
    if (tn->used) {
        op->status = NGX_VOICE_TOKEN_USED;
        return NGX_OK;
    }

    ngx_memcpy(op->buf, tn->data, NGX_VOICE_TOKEN_LEN);
    op->token.data = op->buf;
    op->token.len = NGX_VOICE_TOKEN_LEN;
    op->status = NGX_VOICE_TOKEN_REPEAT;

    return NGX_OK;
}


/* a new node for the call; NGX_OK with op->status FULL when no room */
static ngx_int_t
ngx_voice_token_insert(ngx_voice_token_ctx_t *ctx, ngx_voice_token_op_t *op,
    uint32_t call_hash)
{
    u_char                  *p;
    size_t                   size;
    uint32_t                 hash;
    ngx_voice_call_info_t   *info;
    ngx_voice_token_node_t  *tn;

    info = &op->info;

    hash = ngx_crc32_short(op->token.data, op->token.len);

    if (ngx_voice_token_find_token(ctx, &op->token, hash) != NULL) {
        /* 256 random bits never collide; refuse rather than overwrite */
        ngx_log_error(NGX_LOG_ALERT, op->log, 0, "voice: token collision");
        return NGX_ERROR;
    }

    size = offsetof(ngx_voice_token_node_t, data) + NGX_VOICE_TOKEN_LEN
           + info->call_sid.len + info->account_sid.len
           + info->from.len + info->to.len;

    tn = ngx_voice_token_alloc(ctx, size);

    if (tn == NULL) {
        op->status = NGX_VOICE_TOKEN_FULL;
        return NGX_OK;
    }

    tn->used = 0;
    tn->live = 0;
    tn->live_until = 0;
    tn->outcome_len = 0;
    tn->sid_len = (u_char) info->call_sid.len;
    tn->account_len = (u_char) info->account_sid.len;
    tn->from_len = (u_char) info->from.len;
    tn->to_len = (u_char) info->to.len;
    tn->expires = ngx_current_msec + ctx->ttl;

    p = ngx_cpymem(tn->data, op->token.data, NGX_VOICE_TOKEN_LEN);
    p = ngx_cpymem(p, info->call_sid.data, info->call_sid.len);
    p = ngx_cpymem(p, info->account_sid.data, info->account_sid.len);
    p = ngx_cpymem(p, info->from.data, info->from.len);
    (void) ngx_cpymem(p, info->to.data, info->to.len);

    tn->by_token.key = hash;
    tn->by_call.key = call_hash;

    ngx_rbtree_insert(&ctx->sh->tokens, &tn->by_token);
    ngx_rbtree_insert(&ctx->sh->calls, &tn->by_call);
    ngx_queue_insert_head(&ctx->sh->queue, &tn->queue);
    ctx->sh->count++;

    op->status = NGX_VOICE_TOKEN_OK;

    return NGX_OK;
}


ngx_int_t
ngx_voice_token_consume(ngx_voice_token_op_t *op)
{
    ngx_int_t                rc;
    uint32_t                 hash;
    ngx_voice_token_ctx_t   *ctx;
    ngx_voice_token_node_t  *tn;

    ctx = op->zone->data;

    if (!ngx_voice_token_is_wellformed(&op->token)) {
        op->status = NGX_VOICE_TOKEN_UNKNOWN;
        return NGX_OK;
    }

    hash = ngx_crc32_short(op->token.data, op->token.len);

    ngx_shmtx_lock(&ctx->shpool->mutex);

    tn = ngx_voice_token_find_token(ctx, &op->token, hash);

    if (tn == NULL) {
        op->status = NGX_VOICE_TOKEN_UNKNOWN;
        rc = NGX_OK;

    } else if (!ngx_voice_token_alive(tn)) {
        if (!tn->used) {
            ngx_voice_metric_inc(tokens_expired);
        }

        ngx_voice_token_delete(ctx, tn);
        op->status = NGX_VOICE_TOKEN_EXPIRED;
        rc = NGX_OK;

    } else if (tn->used) {
        op->status = NGX_VOICE_TOKEN_USED;
        rc = NGX_OK;

    } else {
        rc = ngx_voice_token_copy_info(op, tn);

        if (rc == NGX_OK) {
            /*
             * a repeated webhook of the call answers "used" while it
             * runs and the ttl after, when Twilio may ask for its outcome
             */
            tn->used = 1;
            tn->live = 1;
            tn->live_until = ngx_current_msec + op->live_ms;
            ngx_voice_token_refresh(ctx, tn);

            op->status = NGX_VOICE_TOKEN_OK;
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (rc == NGX_OK) {
        if (op->status == NGX_VOICE_TOKEN_OK) {
            ngx_voice_metric_inc(tokens_consumed);

        } else {
            ngx_voice_metric_inc(tokens_refused);
        }
    }

    return rc;
}


ngx_int_t
ngx_voice_token_set_outcome(ngx_shm_zone_t *zone, ngx_str_t *call_sid,
    ngx_str_t *outcome, ngx_log_t *log)
{
    uint32_t                 hash;
    ngx_int_t                rc;
    ngx_voice_token_op_t     op;
    ngx_voice_token_ctx_t   *ctx;
    ngx_voice_token_node_t  *tn;

    ctx = zone->data;

    if (outcome->len > NGX_VOICE_OUTCOME_MAX || call_sid->len == 0
        || call_sid->len > NGX_VOICE_TOKEN_FIELD_MAX)
    {
        return NGX_ERROR;
    }

    ngx_memzero(&op, sizeof(ngx_voice_token_op_t));
    op.zone = zone;
    op.log = log;
    op.info.call_sid = *call_sid;

    /* a node of its own, if the call's token is gone: an unusable token */

    if (ngx_voice_token_make(&op) != NGX_OK) {
        return NGX_ERROR;
    }

    hash = ngx_crc32_short(call_sid->data, call_sid->len);

    ngx_shmtx_lock(&ctx->shpool->mutex);

    tn = ngx_voice_token_find_call(ctx, call_sid, hash);

    if (tn == NULL) {
        rc = ngx_voice_token_insert(ctx, &op, hash);

        if (rc == NGX_OK && op.status == NGX_VOICE_TOKEN_OK) {
            tn = ngx_voice_token_find_call(ctx, call_sid, hash);
        }
    }

    if (tn) {
        tn->used = 1;
        tn->outcome_len = (u_char) outcome->len;
        ngx_memcpy(tn->outcome, outcome->data, outcome->len);
        ngx_voice_token_refresh(ctx, tn);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (tn == NULL) {
        /* log-safe: names from the configuration */
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "voice: no room in voice_token_zone \"%V\" for the "
                      "outcome of the call", &zone->shm.name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_voice_token_get_outcome(ngx_shm_zone_t *zone, ngx_str_t *call_sid,
    ngx_str_t *outcome, u_char *buf)
{
    uint32_t                 hash;
    ngx_int_t                rc;
    ngx_voice_token_ctx_t   *ctx;
    ngx_voice_token_node_t  *tn;

    ctx = zone->data;

    if (call_sid->len == 0 || call_sid->len > NGX_VOICE_TOKEN_FIELD_MAX) {
        return NGX_DECLINED;
    }

    hash = ngx_crc32_short(call_sid->data, call_sid->len);

    rc = NGX_DECLINED;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    tn = ngx_voice_token_find_call(ctx, call_sid, hash);

    if (tn && tn->outcome_len && ngx_voice_token_alive(tn)) {
        ngx_memcpy(buf, tn->outcome, tn->outcome_len);
        outcome->data = buf;
        outcome->len = tn->outcome_len;
        rc = NGX_OK;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


ngx_voice_metrics_t *
ngx_voice_token_metrics(ngx_shm_zone_t *zone)
{
    ngx_voice_token_ctx_t  *ctx;

    ctx = zone->data;

    return &ctx->sh->metrics;
}


void
ngx_voice_token_call_ended(ngx_shm_zone_t *zone, ngx_str_t *call_sid)
{
    uint32_t                 hash;
    ngx_voice_token_ctx_t   *ctx;
    ngx_voice_token_node_t  *tn;

    ctx = zone->data;

    if (call_sid->len == 0 || call_sid->len > NGX_VOICE_TOKEN_FIELD_MAX) {
        return;
    }

    hash = ngx_crc32_short(call_sid->data, call_sid->len);

    ngx_shmtx_lock(&ctx->shpool->mutex);

    tn = ngx_voice_token_find_call(ctx, call_sid, hash);

    if (tn && tn->live) {
        tn->live = 0;
        ngx_voice_token_refresh(ctx, tn);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/* its ttl has not passed, or its call still runs (within its bound) */
static ngx_uint_t
ngx_voice_token_alive(ngx_voice_token_node_t *tn)
{
    if ((ngx_msec_int_t) (tn->expires - ngx_current_msec) > 0) {
        return 1;
    }

    return tn->live
           && (ngx_msec_int_t) (tn->live_until - ngx_current_msec) > 0;
}


/*
 * What a full zone may take before its time: a consumed token whose call
 * has ended and left no outcome (a repeated webhook then gets a fresh
 * token rather than <Hangup/>, and the action the fallback, as it would
 * after the ttl).
 */
static ngx_uint_t
ngx_voice_token_sweepable(ngx_voice_token_node_t *tn)
{
    return tn->used && !tn->live && tn->outcome_len == 0;
}


/* lives the ttl from now: the expiry queue stays in order */
static void
ngx_voice_token_refresh(ngx_voice_token_ctx_t *ctx,
    ngx_voice_token_node_t *tn)
{
    tn->expires = ngx_current_msec + ctx->ttl;
    ngx_queue_remove(&tn->queue);
    ngx_queue_insert_head(&ctx->sh->queue, &tn->queue);
}


const char *
ngx_voice_token_status_text(ngx_voice_token_status_e status)
{
    if ((size_t) status
        >= sizeof(ngx_voice_token_status_texts) / sizeof(char *))
    {
        return "invalid";
    }

    return ngx_voice_token_status_texts[status];
}


ngx_int_t
ngx_voice_token_from_path(ngx_str_t *prefix, ngx_str_t *path,
    ngx_str_t *token)
{
    u_char  *p, *end;
    size_t   n;

    p = path->data;
    end = path->data + path->len;

    if (end > p && end[-1] == '/') {
        end--;
    }

    if ((size_t) (end - p) < NGX_VOICE_TOKEN_LEN + 1) {
        return NGX_DECLINED;
    }

    token->data = end - NGX_VOICE_TOKEN_LEN;
    token->len = NGX_VOICE_TOKEN_LEN;

    if (token->data[-1] != '/' || !ngx_voice_token_is_wellformed(token)) {
        return NGX_DECLINED;
    }

    if (prefix->len == 0) {
        return NGX_OK;
    }

    /* what comes before the token is the prefix, and a "/" */

    n = token->data - p;

    if (prefix->data[prefix->len - 1] == '/') {
        return (n == prefix->len && ngx_memcmp(p, prefix->data, n) == 0)
               ? NGX_OK : NGX_DECLINED;
    }

    return (n == prefix->len + 1
            && ngx_memcmp(p, prefix->data, prefix->len) == 0)
           ? NGX_OK : NGX_DECLINED;
}


size_t
ngx_voice_token_redact(u_char *dst, u_char *src, size_t len)
{
    u_char  *p, *end, *run;
    size_t   n;

    p = dst;
    end = src + len;

    while (src < end) {

        if (!ngx_voice_token_char(*src)) {
            *p++ = *src++;
            continue;
        }

        for (run = src; src < end && ngx_voice_token_char(*src); src++) {
            /* void */
        }

        n = src - run;

        if (n >= NGX_VOICE_TOKEN_LEN) {
            p = ngx_cpymem(p, run, 4);
            p = ngx_cpymem(p, "...", 3);

        } else {
            p = ngx_cpymem(p, run, n);
        }
    }

    return p - dst;
}


static ngx_int_t
ngx_voice_token_is_wellformed(ngx_str_t *token)
{
    size_t  i;

    if (token->len != NGX_VOICE_TOKEN_LEN) {
        return 0;
    }

    for (i = 0; i < token->len; i++) {
        if (!ngx_voice_token_char(token->data[i])) {
            return 0;
        }
    }

    return 1;
}


/* base64url, the alphabet of tokens */
static ngx_uint_t
ngx_voice_token_char(u_char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
           || (c >= '0' && c <= '9') || c == '-' || c == '_';
}


static ngx_int_t
ngx_voice_token_copy_info(ngx_voice_token_op_t *op, ngx_voice_token_node_t *tn)
{
    u_char                 *p, *src;
    ngx_voice_call_info_t  *info;

    info = &op->info;

    p = ngx_pnalloc(op->pool, tn->sid_len + tn->account_len + tn->from_len
                              + tn->to_len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    src = ngx_voice_token_sid(tn);

    info->call_sid.data = p;
    info->call_sid.len = tn->sid_len;
    p = ngx_cpymem(p, src, tn->sid_len);
    src += tn->sid_len;

    info->account_sid.data = p;
    info->account_sid.len = tn->account_len;
    p = ngx_cpymem(p, src, tn->account_len);
    src += tn->account_len;

    info->from.data = p;
    info->from.len = tn->from_len;
    p = ngx_cpymem(p, src, tn->from_len);
    src += tn->from_len;

    info->to.data = p;
    info->to.len = tn->to_len;
    (void) ngx_cpymem(p, src, tn->to_len);

    return NGX_OK;
}


static ngx_voice_token_node_t *
ngx_voice_token_find_token(ngx_voice_token_ctx_t *ctx, ngx_str_t *token,
    uint32_t hash)
{
    ngx_int_t                rc;
    ngx_rbtree_node_t       *node, *sentinel;
    ngx_voice_token_node_t  *tn;

    node = ctx->sh->tokens.root;
    sentinel = ctx->sh->tokens.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        tn = ngx_rbtree_data(node, ngx_voice_token_node_t, by_token);

        rc = ngx_memcmp(token->data, tn->data, NGX_VOICE_TOKEN_LEN);

        if (rc == 0) {
            return tn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static ngx_voice_token_node_t *
ngx_voice_token_find_call(ngx_voice_token_ctx_t *ctx, ngx_str_t *sid,
    uint32_t hash)
{
    ngx_int_t                rc;
    ngx_rbtree_node_t       *node, *sentinel;
    ngx_voice_token_node_t  *tn;

    node = ctx->sh->calls.root;
    sentinel = ctx->sh->calls.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        tn = ngx_rbtree_data(node, ngx_voice_token_node_t, by_call);

        rc = ngx_memn2cmp(sid->data, ngx_voice_token_sid(tn), sid->len,
                          tn->sid_len);

        if (rc == 0) {
            return tn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/*
 * Expired nodes make room first, then consumed ones; a live token is
 * never evicted, since a caller is waiting on it.
 */
static ngx_voice_token_node_t *
ngx_voice_token_alloc(ngx_voice_token_ctx_t *ctx, size_t size)
{
    ngx_voice_token_node_t  *tn;

    (void) ngx_voice_token_expire(ctx, 2);

    tn = ngx_slab_alloc_locked(ctx->shpool, size);

    if (tn == NULL && ngx_voice_token_expire(ctx, 0) > 0) {
        tn = ngx_slab_alloc_locked(ctx->shpool, size);
    }

    return tn;
}


/*
 * Frees up to n expired nodes from the oldest; with n = 0 (the zone is
 * full) every expired one and every sweepable one.  A node whose call
 * still runs is moved to the front with a fresh ttl instead.
 */
static ngx_uint_t
ngx_voice_token_expire(ngx_voice_token_ctx_t *ctx, ngx_uint_t n)
{
    ngx_uint_t               freed;
    ngx_queue_t             *q, *prev;
    ngx_voice_token_node_t  *tn;

    freed = 0;
    q = ngx_queue_last(&ctx->sh->queue);

    while (q != ngx_queue_sentinel(&ctx->sh->queue)) {

        prev = ngx_queue_prev(q);
        tn = ngx_queue_data(q, ngx_voice_token_node_t, queue);

        if ((ngx_msec_int_t) (tn->expires - ngx_current_msec) > 0) {

            if (n) {
                /* the queue is in expiry order: the rest live longer */
                break;
            }

            if (!ngx_voice_token_sweepable(tn)) {
                q = prev;
                continue;
            }

        } else if (ngx_voice_token_alive(tn)) {
            /* a running call: seen again a ttl from now */
            ngx_voice_token_refresh(ctx, tn);
            q = prev;
            continue;

        } else if (!tn->used) {
            ngx_voice_metric_inc(tokens_expired);
        }

        ngx_voice_token_delete(ctx, tn);
        freed++;

        if (n && freed == n) {
            break;
        }

        q = prev;
    }

    return freed;
}


static void
ngx_voice_token_delete(ngx_voice_token_ctx_t *ctx, ngx_voice_token_node_t *tn)
{
    ngx_queue_remove(&tn->queue);
    ngx_rbtree_delete(&ctx->sh->tokens, &tn->by_token);
    ngx_rbtree_delete(&ctx->sh->calls, &tn->by_call);
    ngx_slab_free_locked(ctx->shpool, tn);
    ctx->sh->count--;
}


static void
ngx_voice_token_insert_token(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_voice_token_insert_value(temp, node, sentinel,
                                 ngx_voice_token_cmp_token);
}


static void
ngx_voice_token_insert_call(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_voice_token_insert_value(temp, node, sentinel,
                                 ngx_voice_token_cmp_call);
}


static ngx_int_t
ngx_voice_token_cmp_token(ngx_rbtree_node_t *a, ngx_rbtree_node_t *b)
{
    ngx_voice_token_node_t  *ta, *tb;

    ta = ngx_rbtree_data(a, ngx_voice_token_node_t, by_token);
    tb = ngx_rbtree_data(b, ngx_voice_token_node_t, by_token);

    return ngx_memcmp(ta->data, tb->data, NGX_VOICE_TOKEN_LEN);
}


static ngx_int_t
ngx_voice_token_cmp_call(ngx_rbtree_node_t *a, ngx_rbtree_node_t *b)
{
    ngx_voice_token_node_t  *ta, *tb;

    ta = ngx_rbtree_data(a, ngx_voice_token_node_t, by_call);
    tb = ngx_rbtree_data(b, ngx_voice_token_node_t, by_call);

    return ngx_memn2cmp(ngx_voice_token_sid(ta), ngx_voice_token_sid(tb),
                        ta->sid_len, tb->sid_len);
}


static void
ngx_voice_token_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel,
    ngx_int_t (*cmp)(ngx_rbtree_node_t *a, ngx_rbtree_node_t *b))
{
    ngx_rbtree_node_t  **p;

    for ( ;; ) {

        if (node->key != temp->key) {
            p = (node->key < temp->key) ? &temp->left : &temp->right;

        } else {
            p = (cmp(node, temp) < 0) ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static ngx_int_t
ngx_voice_token_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_voice_token_ctx_t  *octx = data;

    size_t                  len;
    ngx_voice_token_ctx_t  *ctx;

    ctx = shm_zone->data;

    if (octx) {
        /* reload: keep every token minted by the old workers */
        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;
        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    ctx->sh = ngx_slab_alloc(ctx->shpool, sizeof(ngx_voice_token_shctx_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->shpool->data = ctx->sh;

    ngx_memzero(&ctx->sh->metrics, sizeof(ngx_voice_metrics_t));

    ngx_rbtree_init(&ctx->sh->tokens, &ctx->sh->tokens_sentinel,
                    ngx_voice_token_insert_token);
    ngx_rbtree_init(&ctx->sh->calls, &ctx->sh->calls_sentinel,
                    ngx_voice_token_insert_call);
    ngx_queue_init(&ctx->sh->queue);
    ctx->sh->count = 0;

    len = sizeof(" in voice_token_zone \"\"") + shm_zone->shm.name.len;

    ctx->shpool->log_ctx = ngx_slab_alloc(ctx->shpool, len);
    if (ctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->shpool->log_ctx, " in voice_token_zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone is reported by the webhook, once a second */
    ctx->shpool->log_nomem = 0;

    return NGX_OK;
}


char *
ngx_voice_token_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_voice_main_conf_t  *vmcf = conf;

    u_char                 *p;
    ssize_t                 size;
    ngx_str_t              *value, name, s;
    ngx_int_t               ttl;
    ngx_uint_t              i;
    ngx_shm_zone_t         *shm_zone;
    ngx_voice_token_ctx_t  *ctx;

    if (vmcf->token_zone) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_token_zone\" is duplicate: only one "
                           "token zone is allowed per http block");
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    p = (u_char *) ngx_strchr(value[1].data, ':');

    if (p == NULL || p == value[1].data) {
        /* log-safe: configuration text */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"voice_token_zone\" \"%V\": "
                           "NAME:SIZE expected", &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data;
    name.len = p - value[1].data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR) {
        /* log-safe: configuration text */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"voice_token_zone\" size \"%V\"", &s);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        /* log-safe: configuration text */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_token_zone\" \"%V\" is too small, "
                           "at least %uz bytes are needed",
                           &value[1], 8 * ngx_pagesize);
        return NGX_CONF_ERROR;
    }

    ttl = NGX_VOICE_TOKEN_DEFAULT_TTL;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "ttl=", 4) == 0) {

            s.data = value[i].data + 4;
            s.len = value[i].len - 4;

            ttl = ngx_parse_time(&s, 0);

            if (ttl == NGX_ERROR || ttl == 0) {
                /* log-safe: configuration text */
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"voice_token_zone\" ttl \"%V\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        /* log-safe: configuration text */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"voice_token_zone\" parameter \"%V\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_voice_token_ctx_t));
    if (ctx == NULL) {
        return NGX_CONF_ERROR;
    }

    ctx->ttl = (ngx_msec_t) ttl;

    shm_zone = ngx_shared_memory_add(cf, &name, size, &ngx_voice_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        /* log-safe: configuration text */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_token_zone\" \"%V\" is already declared",
                           &name);
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_voice_token_init_zone;
    shm_zone->data = ctx;

    vmcf->token_zone = shm_zone;

    return NGX_CONF_OK;
}
