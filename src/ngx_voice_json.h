
/*
 * Copyright (C) ngx_voice authors
 *
 * Streaming JSON with yajl's event parser: where in a message the parser
 * is (the keys of the open objects), and yajl's allocator routed to
 * per-call accounting.  Nothing builds a JSON tree.
 */


#ifndef _NGX_VOICE_JSON_H_INCLUDED_
#define _NGX_VOICE_JSON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <yajl/yajl_parse.h>
#include <yajl/yajl_gen.h>


#define NGX_VOICE_JSON_DEPTH  8
#define NGX_VOICE_JSON_KEY    32
#define NGX_VOICE_JSON_STAGE  1024


typedef struct {
    ngx_uint_t                   depth;        /* open containers */
    ngx_uint_t                   array;        /* bit per level: array */
    size_t                       key_len[NGX_VOICE_JSON_DEPTH + 1];
    u_char                       key[NGX_VOICE_JSON_DEPTH + 1]
                                    [NGX_VOICE_JSON_KEY];
} ngx_voice_json_path_t;


typedef struct {
    size_t                       used;         /* bytes held by yajl now */
    size_t                       peak;
    ngx_log_t                   *log;
} ngx_voice_json_mem_t;


/* what a side of the call does with the values of its messages */
typedef struct {
    void                       (*begin)(void *data);
    int                        (*string)(void *data,
                                         ngx_voice_json_path_t *path,
                                         const u_char *s, size_t len);
    int                        (*number)(void *data,
                                         ngx_voice_json_path_t *path,
                                         const u_char *s, size_t len);
    ngx_int_t                  (*end)(void *data);
} ngx_voice_json_handler_t;


/* one stream of messages, each one JSON object, parsed as it arrives */
typedef struct {
    yajl_handle                      handle;
    ngx_voice_json_path_t            path;
    ngx_voice_json_mem_t             mem;
    ngx_uint_t                       values;   /* in this message */
    ngx_uint_t                       stopped;  /* by a handler */
    ngx_uint_t                       failed;   /* nothing more parses */
    ngx_uint_t                       trailing; /* more after the object */
    ngx_uint_t                       ended;    /* in yajl's piece, at: */
    size_t                           end_offset;
    u_char                          *stage;    /* small pieces, gathered */
    size_t                           staged;
    const ngx_voice_json_handler_t  *handler;
    void                            *data;
} ngx_voice_json_t;


ngx_int_t ngx_voice_json_init(ngx_voice_json_t *js,
    const ngx_voice_json_handler_t *handler, void *data, ngx_log_t *log);
void ngx_voice_json_free(ngx_voice_json_t *js);

/*
 * Feeds a piece of a message.  NGX_OK; NGX_DECLINED: not JSON, or (with
 * "last") not exactly one object; NGX_ABORT: a handler stopped it (and
 * no more of this stream is parsed); NGX_ERROR: no memory.  Small pieces
 * may be gathered and parsed later: handlers run by the end of the
 * message, or by ngx_voice_json_flush().
 */
ngx_int_t ngx_voice_json_feed(ngx_voice_json_t *js, u_char *data,
    size_t len, ngx_uint_t first, ngx_uint_t last);

/* parses what feed() gathered of the message so far; same results */
ngx_int_t ngx_voice_json_flush(ngx_voice_json_t *js);

/*
 * Whether the value being parsed sits at keys k1[.k2[.k3]] from the top
 * object (unused keys NULL), and nowhere deeper.
 */
#define ngx_voice_json_at(path, k1, k2, k3)                                  \
    ngx_voice_json_at_keys(path, k1, k2, k3)

/*
 * Inline: called with constant keys, the lengths and the NULLs fold, and
 * a value at another depth costs a comparison.
 */
static ngx_inline ngx_int_t
ngx_voice_json_key_is(ngx_voice_json_path_t *path, ngx_uint_t i,
    const char *key)
{
    size_t  len;

    len = ngx_strlen(key);

    return path->key_len[i] == len && ngx_memcmp(path->key[i], key, len) == 0;
}


static ngx_inline ngx_int_t
ngx_voice_json_at_keys(ngx_voice_json_path_t *path, const char *k1,
    const char *k2, const char *k3)
{
    ngx_uint_t  n;

    n = k3 ? 3 : k2 ? 2 : 1;

    /* at that depth, in objects only (the bits of levels 1 to n) */

    if (path->depth != n
        || (path->array & ((((ngx_uint_t) 1 << (n + 1)) - 1) & ~1)))
    {
        return 0;
    }

    return ngx_voice_json_key_is(path, 1, k1)
           && (k2 == NULL || ngx_voice_json_key_is(path, 2, k2))
           && (k3 == NULL || ngx_voice_json_key_is(path, 3, k3));
}

/* base64 in whole quanta, "=" only as the last one's padding */
ngx_int_t ngx_voice_json_is_base64(const u_char *s, size_t len);
size_t ngx_voice_json_base64_len(const u_char *s, size_t len);

/* JSON string escaping for the few strings put into fixed templates */
u_char *ngx_voice_json_escape(u_char *dst, u_char *src, size_t len);

/* a bounded copy of a value; one too long for "buf" is kept empty */
void ngx_voice_json_copy(ngx_str_t *dst, u_char *buf, size_t size,
    const u_char *s, size_t len);

/*
 * The buffer of a string that must wait for the end of its message (the
 * field that says what to do with it comes after it), allocated on first
 * need and holding up to "max".  NGX_OK; NGX_DECLINED: longer than "max";
 * NGX_ERROR: no memory.  Either failure is logged, naming "who".
 */
ngx_int_t ngx_voice_json_scratch(u_char **buf, ngx_pool_t *pool, size_t max,
    size_t len, ngx_log_t *log, const char *who);


#endif /* _NGX_VOICE_JSON_H_INCLUDED_ */
