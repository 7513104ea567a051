
/*
 * Copyright (C) ngx_voice authors
 */


#ifndef _NGX_VOICE_TOKEN_H_INCLUDED_
#define _NGX_VOICE_TOKEN_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* 32 random bytes, base64url without padding */
#define NGX_VOICE_TOKEN_BYTES  32
#define NGX_VOICE_TOKEN_LEN    43

/* the longest field stored with a token (CallSid, From, ...) */
#define NGX_VOICE_TOKEN_FIELD_MAX  255

/* the longest outcome of a call ("hangup", "transfer:LABEL") */
#define NGX_VOICE_OUTCOME_MAX      64


typedef enum {
    NGX_VOICE_TOKEN_OK = 0,
    NGX_VOICE_TOKEN_UNKNOWN,
    NGX_VOICE_TOKEN_EXPIRED,
    NGX_VOICE_TOKEN_USED,
    NGX_VOICE_TOKEN_FULL,
    NGX_VOICE_TOKEN_REPEAT       /* mint: the call's unused token again */
} ngx_voice_token_status_e;


/* what the webhook learnt about the call, kept with its token */
typedef struct {
    ngx_str_t                    call_sid;
    ngx_str_t                    account_sid;
    ngx_str_t                    from;
    ngx_str_t                    to;
} ngx_voice_call_info_t;


typedef struct ngx_voice_token_op_s  ngx_voice_token_op_t;

typedef void (*ngx_voice_token_handler_pt)(ngx_voice_token_op_t *op);


/*
 * One mint or consume.  The interface is asynchronous because a store
 * shared by several hosts is the next one to implement it.  The
 * shared-memory store answers at once: the call
 * returns NGX_OK with op->status set and op->handler is not called.  A
 * store that answers later (one shared by several hosts) returns NGX_AGAIN
 * and calls op->handler exactly once when op->status is known; callers
 * must handle both.  NGX_ERROR means no answer (allocation failure).
 */
struct ngx_voice_token_op_s {
    ngx_shm_zone_t              *zone;
    ngx_pool_t                  *pool;     /* consume: the record goes here */
    ngx_log_t                   *log;

    ngx_str_t                    token;    /* mint: out; consume: in */
    ngx_voice_call_info_t        info;     /* mint: in; consume: out */

    ngx_voice_token_status_e     status;
    ngx_msec_t                   live_ms;  /* consume: the call's longest */
    ngx_voice_token_handler_pt   handler;
    void                        *data;

    u_char                       buf[NGX_VOICE_TOKEN_LEN];
};


ngx_int_t ngx_voice_token_mint(ngx_voice_token_op_t *op);
ngx_int_t ngx_voice_token_consume(ngx_voice_token_op_t *op);

const char *ngx_voice_token_status_text(ngx_voice_token_status_e status);

/*
 * The token of a media-stream path, which is exactly "prefix" (the
 * location's; a "/" is added when it has none at its end) followed by a
 * token and at most one "/".  An empty prefix (a regex or exact location)
 * takes the last path segment.  NGX_OK, or NGX_DECLINED for any other
 * path.
 */
ngx_int_t ngx_voice_token_from_path(ngx_str_t *prefix, ngx_str_t *path,
    ngx_str_t *token);

/*
 * Copies "len" bytes of "src" (a request line) into "dst" with every
 * token-shaped run (43 or more base64url characters) cut to its first 4
 * and "...": a token is a credential until it is used.  Returns the new
 * length, never more than "len".
 */
size_t ngx_voice_token_redact(u_char *dst, u_char *src, size_t len);

/*
 * The outcome of a call ("hangup", "transfer:LABEL"), kept beside its
 * token for the ttl, for the call-action webhook, which any worker
 * answers.  Set: NGX_OK or NGX_ERROR (no room, logged).  Get: NGX_OK with
 * "outcome" pointing into "buf" (NGX_VOICE_OUTCOME_MAX bytes), or
 * NGX_DECLINED when the call has none.
 */
/*
 * The call whose token was consumed has ended: its record (the "used"
 * answer to a repeated webhook, its outcome) lives the ttl from now.
 * Until then it is never reclaimed.
 */
void ngx_voice_token_call_ended(ngx_shm_zone_t *zone, ngx_str_t *call_sid);

/* the zone's counters (ngx_voice_metrics_t), of this cycle */
struct ngx_voice_metrics_s *ngx_voice_token_metrics(ngx_shm_zone_t *zone);

ngx_int_t ngx_voice_token_set_outcome(ngx_shm_zone_t *zone,
    ngx_str_t *call_sid, ngx_str_t *outcome, ngx_log_t *log);
ngx_int_t ngx_voice_token_get_outcome(ngx_shm_zone_t *zone,
    ngx_str_t *call_sid, ngx_str_t *outcome, u_char *buf);

/* "voice_token_zone NAME:SIZE [ttl=TIME]" */
char *ngx_voice_token_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);


#endif /* _NGX_VOICE_TOKEN_H_INCLUDED_ */
