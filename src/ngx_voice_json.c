
/*
 * Copyright (C) ngx_voice authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_voice_json.h"


static void *ngx_voice_json_malloc(void *ctx, size_t size);
static void *ngx_voice_json_realloc(void *ctx, void *ptr, size_t size);
static void ngx_voice_json_free(void *ctx, void *ptr);


/*
 * yajl keeps its lexer buffer and state stack on the heap and grows them
 * with realloc, which a pool cannot do; each block carries its size so
 * the call can account for what yajl holds.
 */
void
ngx_voice_json_alloc_funcs(yajl_alloc_funcs *funcs, ngx_voice_json_mem_t *mem)
{
    funcs->malloc = ngx_voice_json_malloc;
    funcs->realloc = ngx_voice_json_realloc;
    funcs->free = ngx_voice_json_free;
    funcs->ctx = mem;
}


static void *
ngx_voice_json_malloc(void *ctx, size_t size)
{
    ngx_voice_json_mem_t  *mem = ctx;

    size_t  *p;

    p = ngx_alloc(sizeof(size_t) + size, mem->log);
    if (p == NULL) {
        return NULL;
    }

    *p = size;
    mem->used += size;
    mem->peak = ngx_max(mem->peak, mem->used);

    return p + 1;
}


static void *
ngx_voice_json_realloc(void *ctx, void *ptr, size_t size)
{
    ngx_voice_json_mem_t  *mem = ctx;

    size_t  *p, old;

    if (ptr == NULL) {
        return ngx_voice_json_malloc(ctx, size);
    }

    p = (size_t *) ptr - 1;
    old = *p;

    p = realloc(p, sizeof(size_t) + size);
    if (p == NULL) {
        ngx_log_error(NGX_LOG_EMERG, mem->log, ngx_errno,
                      "realloc(%uz) failed", size);
        return NULL;
    }

    *p = size;
    mem->used = mem->used - old + size;
    mem->peak = ngx_max(mem->peak, mem->used);

    return p + 1;
}


static void
ngx_voice_json_free(void *ctx, void *ptr)
{
    ngx_voice_json_mem_t  *mem = ctx;

    size_t  *p;

    if (ptr == NULL) {
        return;
    }

    p = (size_t *) ptr - 1;
    mem->used -= *p;

    ngx_free(p);
}


void
ngx_voice_json_open(ngx_voice_json_path_t *path, ngx_uint_t array)
{
    path->depth++;

    if (path->depth <= NGX_VOICE_JSON_DEPTH) {
        path->key_len[path->depth] = 0;

        if (array) {
            path->array |= (ngx_uint_t) 1 << path->depth;

        } else {
            path->array &= ~((ngx_uint_t) 1 << path->depth);
        }
    }
}


void
ngx_voice_json_close(ngx_voice_json_path_t *path)
{
    if (path->depth) {
        path->depth--;
    }
}


void
ngx_voice_json_key(ngx_voice_json_path_t *path, const u_char *key, size_t len)
{
    if (path->depth == 0 || path->depth > NGX_VOICE_JSON_DEPTH) {
        return;
    }

    if (len > NGX_VOICE_JSON_KEY) {
        /* no key this module looks for is that long */
        path->key_len[path->depth] = 0;
        return;
    }

    ngx_memcpy(path->key[path->depth], key, len);
    path->key_len[path->depth] = len;
}


ngx_int_t
ngx_voice_json_at(ngx_voice_json_path_t *path, const char *k1,
    const char *k2, const char *k3)
{
    size_t       len;
    ngx_uint_t   n, i;
    const char  *keys[3];

    keys[0] = k1;
    keys[1] = k2;
    keys[2] = k3;

    n = k3 ? 3 : k2 ? 2 : 1;

    if (path->depth != n) {
        return 0;
    }

    for (i = 1; i <= n; i++) {
        if (path->array & ((ngx_uint_t) 1 << i)) {
            return 0;
        }

        len = ngx_strlen(keys[i - 1]);

        if (path->key_len[i] != len
            || ngx_memcmp(path->key[i], keys[i - 1], len) != 0)
        {
            return 0;
        }
    }

    return 1;
}


size_t
ngx_voice_json_escaped_len(u_char *src, size_t len)
{
    size_t  n;

    for (n = len; len; len--, src++) {
        if (*src == '"' || *src == '\\') {
            n++;

        } else if (*src < 0x20) {
            n += sizeof("\\u00XX") - 2;
        }
    }

    return n;
}


u_char *
ngx_voice_json_escape(u_char *dst, u_char *src, size_t len)
{
    static u_char  hex[] = "0123456789abcdef";

    for ( /* void */ ; len; len--, src++) {
        if (*src == '"' || *src == '\\') {
            *dst++ = '\\';
            *dst++ = *src;

        } else if (*src < 0x20) {
            dst = ngx_cpymem(dst, "\\u00", 4);
            *dst++ = hex[*src >> 4];
            *dst++ = hex[*src & 0xf];

        } else {
            *dst++ = *src;
        }
    }

    return dst;
}
