
/*
 * Copyright (C) ngx_voice authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <openssl/rand.h>
#include "ngx_voice.h"
#include "ngx_voice_token.h"


#define NGX_VOICE_TOKEN_DEFAULT_TTL  60000


/*
 * One token: the rbtree node overlays the first fields ("color" on), the
 * expiry queue links tokens oldest last, and "data" holds the token
 * followed by the call's fields.  A consumed token stays as a tombstone
 * until it expires, so a replay is told apart from a guess.
 */
typedef struct {
    u_char                       color;
    u_char                       used;
    u_char                       sid_len;
    u_char                       account_len;
    u_char                       from_len;
    u_char                       to_len;
    ngx_queue_t                  queue;
    ngx_msec_t                   expires;
    u_char                       data[1];
} ngx_voice_token_node_t;


typedef struct {
    ngx_rbtree_t                 rbtree;
    ngx_rbtree_node_t            sentinel;
    ngx_queue_t                  queue;
    ngx_uint_t                   count;
} ngx_voice_token_shctx_t;


typedef struct {
    ngx_voice_token_shctx_t     *sh;
    ngx_slab_pool_t             *shpool;
    ngx_msec_t                   ttl;
    time_t                       full_logged;
} ngx_voice_token_ctx_t;


static ngx_int_t ngx_voice_token_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_voice_token_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_voice_token_node_t *ngx_voice_token_lookup(
    ngx_voice_token_ctx_t *ctx, ngx_str_t *token, uint32_t hash);
static ngx_voice_token_node_t *ngx_voice_token_alloc(
    ngx_voice_token_ctx_t *ctx, size_t size);
static ngx_uint_t ngx_voice_token_expire(ngx_voice_token_ctx_t *ctx,
    ngx_uint_t n);
static void ngx_voice_token_delete(ngx_voice_token_ctx_t *ctx,
    ngx_voice_token_node_t *tn);
static ngx_int_t ngx_voice_token_copy_info(ngx_voice_token_op_t *op,
    ngx_voice_token_node_t *tn);
static ngx_int_t ngx_voice_token_is_wellformed(ngx_str_t *token);


static const char  *ngx_voice_token_status_texts[] = {
    "ok",
    "unknown",
    "expired",
    "already used",
    "zone full"
};


ngx_int_t
ngx_voice_token_mint(ngx_voice_token_op_t *op)
{
    size_t                   size;
    u_char                  *p;
    uint32_t                 hash;
    ngx_str_t                raw;
    ngx_voice_call_info_t   *info;
    ngx_voice_token_ctx_t   *ctx;
    ngx_voice_token_node_t  *tn;
    u_char                   rnd[NGX_VOICE_TOKEN_BYTES];

    ctx = op->zone->data;
    info = &op->info;

    if (info->call_sid.len > NGX_VOICE_TOKEN_FIELD_MAX
        || info->account_sid.len > NGX_VOICE_TOKEN_FIELD_MAX
        || info->from.len > NGX_VOICE_TOKEN_FIELD_MAX
        || info->to.len > NGX_VOICE_TOKEN_FIELD_MAX)
    {
        return NGX_ERROR;
    }

    /* the random part is made outside the lock */

    if (RAND_bytes(rnd, NGX_VOICE_TOKEN_BYTES) != 1) {
        ngx_log_error(NGX_LOG_ALERT, op->log, 0, "RAND_bytes() failed");
        return NGX_ERROR;
    }

    raw.data = rnd;
    raw.len = NGX_VOICE_TOKEN_BYTES;

    op->token.data = op->buf;
    ngx_encode_base64url(&op->token, &raw);

    ngx_explicit_memzero(rnd, sizeof(rnd));

    hash = ngx_crc32_short(op->token.data, op->token.len);

    size = offsetof(ngx_rbtree_node_t, color)
           + offsetof(ngx_voice_token_node_t, data)
           + NGX_VOICE_TOKEN_LEN
           + info->call_sid.len + info->account_sid.len
           + info->from.len + info->to.len;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (ngx_voice_token_lookup(ctx, &op->token, hash) != NULL) {
        /* 256 random bits never collide; refuse rather than overwrite */
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        ngx_log_error(NGX_LOG_ALERT, op->log, 0, "voice: token collision");
        return NGX_ERROR;
    }

    tn = ngx_voice_token_alloc(ctx, size);

    if (tn == NULL) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);

        op->status = NGX_VOICE_TOKEN_FULL;

        if (ctx->full_logged != ngx_time()) {
            ctx->full_logged = ngx_time();
            /* log-safe: the zone name, from nginx.conf */
            ngx_log_error(NGX_LOG_ERR, op->log, 0,
                          "voice: could not allocate token in "
                          "voice_token_zone \"%V\": zone is full",
                          &op->zone->shm.name);
        }

        return NGX_OK;
    }

    tn->used = 0;
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

    ((ngx_rbtree_node_t *) ((u_char *) tn
                            - offsetof(ngx_rbtree_node_t, color)))->key = hash;

    ngx_rbtree_insert(&ctx->sh->rbtree,
                      (ngx_rbtree_node_t *) ((u_char *) tn
                                   - offsetof(ngx_rbtree_node_t, color)));
    ngx_queue_insert_head(&ctx->sh->queue, &tn->queue);
    ctx->sh->count++;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

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

    tn = ngx_voice_token_lookup(ctx, &op->token, hash);

    if (tn == NULL) {
        op->status = NGX_VOICE_TOKEN_UNKNOWN;
        rc = NGX_OK;

    } else if ((ngx_msec_int_t) (tn->expires - ngx_current_msec) <= 0) {
        ngx_voice_token_delete(ctx, tn);
        op->status = NGX_VOICE_TOKEN_EXPIRED;
        rc = NGX_OK;

    } else if (tn->used) {
        op->status = NGX_VOICE_TOKEN_USED;
        rc = NGX_OK;

    } else {
        rc = ngx_voice_token_copy_info(op, tn);

        if (rc == NGX_OK) {
            tn->used = 1;
            op->status = NGX_VOICE_TOKEN_OK;
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
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


static ngx_int_t
ngx_voice_token_is_wellformed(ngx_str_t *token)
{
    size_t  i;
    u_char  c;

    if (token->len != NGX_VOICE_TOKEN_LEN) {
        return 0;
    }

    for (i = 0; i < token->len; i++) {
        c = token->data[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
              || (c >= '0' && c <= '9') || c == '-' || c == '_'))
        {
            return 0;
        }
    }

    return 1;
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

    src = tn->data + NGX_VOICE_TOKEN_LEN;

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
ngx_voice_token_lookup(ngx_voice_token_ctx_t *ctx, ngx_str_t *token,
    uint32_t hash)
{
    ngx_int_t                rc;
    ngx_rbtree_node_t       *node, *sentinel;
    ngx_voice_token_node_t  *tn;

    node = ctx->sh->rbtree.root;
    sentinel = ctx->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        tn = (ngx_voice_token_node_t *) &node->color;

        rc = ngx_memcmp(token->data, tn->data, NGX_VOICE_TOKEN_LEN);

        if (rc == 0) {
            return tn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/*
 * Expired tokens make room first; a live token is never evicted, since a
 * caller is waiting on it.
 */
static ngx_voice_token_node_t *
ngx_voice_token_alloc(ngx_voice_token_ctx_t *ctx, size_t size)
{
    ngx_rbtree_node_t  *node;

    (void) ngx_voice_token_expire(ctx, 2);

    node = ngx_slab_alloc_locked(ctx->shpool, size);

    if (node == NULL && ngx_voice_token_expire(ctx, 0) > 0) {
        node = ngx_slab_alloc_locked(ctx->shpool, size);
    }

    if (node == NULL) {
        return NULL;
    }

    return (ngx_voice_token_node_t *) &node->color;
}


/*
 * Frees up to n expired tokens from the oldest; with n = 0 (the zone is
 * full) every expired or already consumed token.
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
                /* the queue is in minting order: the rest are younger */
                break;
            }

            if (!tn->used) {
                /* a live token: a caller is waiting on it */
                q = prev;
                continue;
            }

            /* a full zone sweeps consumed tokens too: nobody waits */
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
    ngx_rbtree_node_t  *node;

    node = (ngx_rbtree_node_t *) ((u_char *) tn
                                  - offsetof(ngx_rbtree_node_t, color));

    ngx_queue_remove(&tn->queue);
    ngx_rbtree_delete(&ctx->sh->rbtree, node);
    ngx_slab_free_locked(ctx->shpool, node);
    ctx->sh->count--;
}


static void
ngx_voice_token_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t       **p;
    ngx_voice_token_node_t   *tn, *tnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else { /* node->key == temp->key */

            tn = (ngx_voice_token_node_t *) &node->color;
            tnt = (ngx_voice_token_node_t *) &temp->color;

            p = (ngx_memcmp(tn->data, tnt->data, NGX_VOICE_TOKEN_LEN) < 0)
                ? &temp->left : &temp->right;
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

    ngx_rbtree_init(&ctx->sh->rbtree, &ctx->sh->sentinel,
                    ngx_voice_token_rbtree_insert_value);
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
        /* log-safe: the directive argument, from nginx.conf */
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
        /* log-safe: the directive argument, from nginx.conf */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"voice_token_zone\" size \"%V\"", &s);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        /* log-safe: the directive argument, from nginx.conf */
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
                /* log-safe: the directive argument, from nginx.conf */
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"voice_token_zone\" ttl \"%V\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        /* log-safe: the directive argument, from nginx.conf */
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
        /* log-safe: the zone name, from nginx.conf */
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
