
/*
 * Copyright (C) ngx_voice authors
 *
 * Streaming JSON with yajl's event parser: where in a message the parser
 * is, and yajl's allocator routed to per-call accounting.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_voice_json.h"


static int ngx_voice_json_null(void *ctx);
static int ngx_voice_json_boolean(void *ctx, int b);
static int ngx_voice_json_number(void *ctx, const char *s, size_t len);
static int ngx_voice_json_string(void *ctx, const unsigned char *s,
    size_t len);
static int ngx_voice_json_map_key(void *ctx, const unsigned char *s,
    size_t len);
static int ngx_voice_json_start_map(void *ctx);
static int ngx_voice_json_end_map(void *ctx);
static int ngx_voice_json_start_array(void *ctx);
static int ngx_voice_json_end_array(void *ctx);
static void ngx_voice_json_open(ngx_voice_json_path_t *path,
    ngx_uint_t array);
static void ngx_voice_json_close(ngx_voice_json_path_t *path);
static void *ngx_voice_json_malloc(void *ctx, size_t size);
static void *ngx_voice_json_realloc(void *ctx, void *ptr, size_t size);
static void ngx_voice_json_free_block(void *ctx, void *ptr);
static ngx_int_t ngx_voice_json_piece(ngx_voice_json_t *js, u_char *data,
    size_t len, ngx_uint_t first, ngx_uint_t last);
static ngx_int_t ngx_voice_json_parse(ngx_voice_json_t *js, u_char *data,
    size_t len);
static ngx_int_t ngx_voice_json_fast(ngx_voice_json_t *js, u_char *p,
    u_char *end);
static u_char *ngx_voice_json_fast_string(u_char *p, u_char *end);
static u_char *ngx_voice_json_fast_number(u_char *p, u_char *end);


/*
 * The fast path's subset of JSON: one object of objects, strings and
 * integers, no escapes, ASCII only.  A message outside it goes to yajl.
 */
#define NGX_VOICE_JSON_FAST_TOKENS  40
#define NGX_VOICE_JSON_FAST_DEPTH   4


typedef struct {
    u_char                       type;   /* { } k(ey) s(tring) n(umber) */
    u_char                      *data;
    size_t                       len;
} ngx_voice_json_token_t;


static yajl_callbacks  ngx_voice_json_callbacks = {
    ngx_voice_json_null,
    ngx_voice_json_boolean,
    NULL,
    NULL,
    ngx_voice_json_number,
    ngx_voice_json_string,
    ngx_voice_json_start_map,
    ngx_voice_json_map_key,
    ngx_voice_json_end_map,
    ngx_voice_json_start_array,
    ngx_voice_json_end_array
};


/*
 * One yajl handle for the whole stream: yajl 2.1 cannot reset a handle,
 * so messages are parsed as consecutive values.  yajl keeps its lexer
 * buffer and state stack on the heap and grows them with realloc, which
 * a pool cannot do; each block carries its size so the call can account
 * for what yajl holds.
 */
ngx_int_t
ngx_voice_json_init(ngx_voice_json_t *js,
    const ngx_voice_json_handler_t *handler, void *data, ngx_log_t *log)
{
    yajl_alloc_funcs  funcs;

    /* a replaced handle starts between messages, as a new one does */
    ngx_memzero(&js->path, sizeof(ngx_voice_json_path_t));
    js->values = 0;
    js->stopped = 0;
    js->staged = 0;
    js->failed = 0;
    js->trailing = 0;

    js->handler = handler;
    js->data = data;
    js->mem.log = log;

    funcs.malloc = ngx_voice_json_malloc;
    funcs.realloc = ngx_voice_json_realloc;
    funcs.free = ngx_voice_json_free_block;
    funcs.ctx = &js->mem;

    js->handle = yajl_alloc(&ngx_voice_json_callbacks, &funcs, js);
    if (js->handle == NULL) {
        return NGX_ERROR;
    }

    yajl_config(js->handle, yajl_allow_multiple_values, 1);

    return NGX_OK;
}


void
ngx_voice_json_free(ngx_voice_json_t *js)
{
    if (js->handle) {
        yajl_free(js->handle);
        js->handle = NULL;
    }

    if (js->stage) {
        ngx_free(js->stage);
        js->stage = NULL;
        js->mem.used -= NGX_VOICE_JSON_STAGE;
    }
}


/*
 * yajl 2.1 lexes a string cut between two calls again from its start on
 * each call: a message fed a byte at a time (one-byte frames, or a peer
 * that drips bytes) would cost the square of its length.  Pieces smaller
 * than the stage are gathered first, so each call gets at least that
 * much; a whole message or a big piece, the usual case, goes straight to
 * yajl without a copy.
 */
ngx_int_t
ngx_voice_json_feed(ngx_voice_json_t *js, u_char *data, size_t len,
    ngx_uint_t first, ngx_uint_t last)
{
    ngx_int_t  rc;

    if (first) {
        js->values = 0;
        js->trailing = 0;
    }

    if (js->failed) {
        /* as yajl does after an error or a cancel */
        return NGX_DECLINED;
    }

    rc = ngx_voice_json_piece(js, data, len, first, last);

    if (rc == NGX_OK && last
        && (js->values != 1 || js->path.depth != 0 || js->trailing))
    {
        rc = NGX_DECLINED;
    }

    if (rc != NGX_OK) {
        /*
         * yajl may hold a part of what follows the message (an object
         * still open, a token cut at its end): nothing more is parsed
         */
        js->failed = 1;
    }

    return rc;
}


static ngx_int_t
ngx_voice_json_piece(ngx_voice_json_t *js, u_char *data, size_t len,
    ngx_uint_t first, ngx_uint_t last)
{
    ngx_int_t  rc;

    if (first && last && js->staged == 0) {

        /* a whole message, the usual case: the hot shapes go fast */

        rc = ngx_voice_json_fast(js, data, data + len);

        if (rc != NGX_AGAIN) {
            return rc;
        }
    }

    if (js->staged && (last || js->staged + len >= NGX_VOICE_JSON_STAGE)) {
        rc = ngx_voice_json_flush(js);

        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (last || len >= NGX_VOICE_JSON_STAGE) {
        return ngx_voice_json_parse(js, data, len);
    }

    if (js->stage == NULL) {
        js->stage = ngx_alloc(NGX_VOICE_JSON_STAGE, js->mem.log);
        if (js->stage == NULL) {
            return NGX_ERROR;
        }

        js->mem.used += NGX_VOICE_JSON_STAGE;
    }

    ngx_memcpy(js->stage + js->staged, data, len);
    js->staged += len;

    return NGX_OK;
}


ngx_int_t
ngx_voice_json_flush(ngx_voice_json_t *js)
{
    size_t  len;

    len = js->staged;
    js->staged = 0;

    return len ? ngx_voice_json_parse(js, js->stage, len) : NGX_OK;
}


static ngx_int_t
ngx_voice_json_parse(ngx_voice_json_t *js, u_char *data, size_t len)
{
    u_char       *p, *last;
    yajl_status   st;

    js->ended = 0;

    st = yajl_parse(js->handle, data, len);

    if (st != yajl_status_ok) {
        return (st == yajl_status_client_canceled && js->stopped)
               ? NGX_ABORT : NGX_DECLINED;
    }

    if (js->values) {

        /*
         * After the message's object only whitespace: anything else is
         * not one object, even a token yajl keeps to finish later (a
         * number, a string, a literal cut at the end), which it would
         * take as the start of the next message.
         */

        last = data + len;

        for (p = data + (js->ended ? js->end_offset : 0); p < last; p++) {
            if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
                js->trailing = 1;
                break;
            }
        }
    }

    return NGX_OK;
}


#define ngx_voice_json_fast_ws(p, end)                                       \
    while (p < end && *p <= ' '                                              \
           && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))          \
    {                                                                        \
        p++;                                                                 \
    }

#define ngx_voice_json_fast_token(t_, d_, l_)                                \
    if (n == NGX_VOICE_JSON_FAST_TOKENS) {                                   \
        return NGX_AGAIN;                                                    \
    }                                                                        \
    tokens[n].type = t_;                                                     \
    tokens[n].data = d_;                                                     \
    tokens[n].len = l_;                                                      \
    n++


/*
 * A whole message in the fast path's subset is cut into tokens in one
 * pass, then the tokens are handed to the same callbacks yajl would call,
 * in the same order, with the same values: the handlers and the path see
 * no difference.  Nothing is reported before the whole message is known
 * to be in the subset, so anything else (escapes, non-ASCII bytes,
 * fractions, true/false/null, arrays, deep nesting, more tokens, bad
 * JSON) goes to yajl whole: NGX_AGAIN.  Otherwise NGX_OK; NGX_ABORT: a
 * handler stopped it; NGX_DECLINED: a callback refused it.
 *
 * The UTF-8 of text frames is checked once, strictly (RFC 3629), by the
 * WebSocket parser before any of this; yajl's own check of strings is
 * laxer (it lets overlongs and surrogates through), and in the subset
 * every byte is ASCII.
 */
static ngx_int_t
ngx_voice_json_fast(ngx_voice_json_t *js, u_char *p, u_char *end)
{
    int                      ok;
    u_char                  *q;
    ngx_uint_t               n, i, depth;
    ngx_voice_json_token_t  *t;
    ngx_voice_json_token_t   tokens[NGX_VOICE_JSON_FAST_TOKENS];

    n = 0;
    depth = 0;

    ngx_voice_json_fast_ws(p, end);

    if (p == end || *p != '{') {
        return NGX_AGAIN;
    }

    goto open;

    for ( ;; ) {

        /* after a value: a comma and the next key, or the end of an object */

        ngx_voice_json_fast_ws(p, end);

        if (p == end) {
            return NGX_AGAIN;
        }

        if (*p == '}') {
            p++;
            ngx_voice_json_fast_token('}', NULL, 0);

            if (--depth == 0) {
                break;
            }

            continue;
        }

        if (*p++ != ',') {
            return NGX_AGAIN;
        }

    key:

        ngx_voice_json_fast_ws(p, end);

        if (p == end || *p != '"') {
            return NGX_AGAIN;
        }

        q = ngx_voice_json_fast_string(++p, end);
        if (q == NULL) {
            return NGX_AGAIN;
        }

        ngx_voice_json_fast_token('k', p, q - p);
        p = q + 1;

        ngx_voice_json_fast_ws(p, end);

        if (p == end || *p++ != ':') {
            return NGX_AGAIN;
        }

        ngx_voice_json_fast_ws(p, end);

        if (p == end) {
            return NGX_AGAIN;
        }

        if (*p == '"') {
            q = ngx_voice_json_fast_string(++p, end);
            if (q == NULL) {
                return NGX_AGAIN;
            }

            ngx_voice_json_fast_token('s', p, q - p);
            p = q + 1;
            continue;
        }

        if (*p == '{') {

        open:

            if (++depth > NGX_VOICE_JSON_FAST_DEPTH) {
                return NGX_AGAIN;
            }

            p++;
            ngx_voice_json_fast_token('{', NULL, 0);

            ngx_voice_json_fast_ws(p, end);

            if (p < end && *p == '}') {
                /* an empty object: its end is read as after a value */
                continue;
            }

            goto key;
        }

        q = ngx_voice_json_fast_number(p, end);
        if (q == NULL) {
            return NGX_AGAIN;
        }

        ngx_voice_json_fast_token('n', p, q - p);
        p = q;
    }

    ngx_voice_json_fast_ws(p, end);

    if (p != end) {
        /* more than one value: yajl says so */
        return NGX_AGAIN;
    }

    /* the message is in the subset: what yajl would report, in order */

    for (i = 0; i < n; i++) {
        t = &tokens[i];

        switch (t->type) {

        case '{':
            ok = ngx_voice_json_start_map(js);
            break;

        case '}':
            ok = ngx_voice_json_end_map(js);
            break;

        case 'k':
            ok = ngx_voice_json_map_key(js, t->data, t->len);
            break;

        case 's':
            ok = ngx_voice_json_string(js, t->data, t->len);
            break;

        default: /* 'n' */
            ok = ngx_voice_json_number(js, (const char *) t->data, t->len);
            break;
        }

        if (!ok) {
            return js->stopped ? NGX_ABORT : NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/*
 * The closing quote of a string with no escapes, no control characters
 * and ASCII only, 8 bytes at a time: NULL for anything else.
 */
static u_char *
ngx_voice_json_fast_string(u_char *p, u_char *end)
{
    uint64_t  w, q, b, hit;

#define NGX_VOICE_JSON_ONES  0x0101010101010101ULL
#define NGX_VOICE_JSON_HIGH  0x8080808080808080ULL

    while (end - p >= 8) {
        ngx_memcpy(&w, p, 8);

        /* a byte that is '"', '\\', below 0x20 or above 0x7f */

        q = w ^ (NGX_VOICE_JSON_ONES * '"');
        b = w ^ (NGX_VOICE_JSON_ONES * '\\');

        hit = (((q - NGX_VOICE_JSON_ONES) & ~q)
               | ((b - NGX_VOICE_JSON_ONES) & ~b)
               | ((w - NGX_VOICE_JSON_ONES * 0x20) & ~w)
               | w)
              & NGX_VOICE_JSON_HIGH;

        if (hit) {
#if (NGX_HAVE_LITTLE_ENDIAN && (__GNUC__ || __clang__))
            /*
             * The lowest byte flagged is one of them: a borrow only runs
             * from a byte that is one to the bytes above it.
             */
            p += __builtin_ctzll(hit) >> 3;

            return (*p == '"') ? p : NULL;
#else
            /* found in this word, byte by byte below */
            break;
#endif
        }

        p += 8;
    }

#undef NGX_VOICE_JSON_ONES
#undef NGX_VOICE_JSON_HIGH

    for ( /* void */ ; p < end; p++) {

        if (*p == '"') {
            return p;
        }

        if (*p == '\\' || *p < 0x20 || *p >= 0x80) {
            return NULL;
        }
    }

    return NULL;
}


/* the end of an integer as JSON writes it (no leading zero): or NULL */
static u_char *
ngx_voice_json_fast_number(u_char *p, u_char *end)
{
    if (p < end && *p == '-') {
        p++;
    }

    if (p == end || *p < '0' || *p > '9') {
        return NULL;
    }

    if (*p++ == '0') {
        /* "0" alone */

    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    /* a fraction, an exponent, a digit after "0" or the end: yajl's */

    if (p == end || *p == '.' || *p == 'e' || *p == 'E'
        || (*p >= '0' && *p <= '9'))
    {
        return NULL;
    }

    return p;
}


/* a scalar is only allowed inside the message's object */
static int
ngx_voice_json_null(void *ctx)
{
    ngx_voice_json_t  *js = ctx;

    return js->path.depth > 0;
}


static int
ngx_voice_json_boolean(void *ctx, int b)
{
    return ngx_voice_json_null(ctx);
}


static int
ngx_voice_json_number(void *ctx, const char *s, size_t len)
{
    ngx_voice_json_t  *js = ctx;

    if (js->path.depth == 0) {
        return 0;
    }

    if (js->handler->number == NULL) {
        return 1;
    }

    js->stopped = !js->handler->number(js->data, &js->path,
                                       (const u_char *) s, len);

    return !js->stopped;
}


static int
ngx_voice_json_string(void *ctx, const unsigned char *s, size_t len)
{
    ngx_voice_json_t  *js = ctx;

    if (js->path.depth == 0) {
        return 0;
    }

    js->stopped = !js->handler->string(js->data, &js->path, s, len);

    return !js->stopped;
}


static int
ngx_voice_json_map_key(void *ctx, const unsigned char *s, size_t len)
{
    ngx_voice_json_t  *js = ctx;

    ngx_voice_json_path_t  *path;

    path = &js->path;

    if (path->depth == 0 || path->depth > NGX_VOICE_JSON_DEPTH) {
        return 1;
    }

    if (len > NGX_VOICE_JSON_KEY) {
        /* no key this module looks for is that long */
        path->key_len[path->depth] = 0;
        return 1;
    }

    ngx_memcpy(path->key[path->depth], s, len);
    path->key_len[path->depth] = len;

    return 1;
}


static int
ngx_voice_json_start_map(void *ctx)
{
    ngx_voice_json_t  *js = ctx;

    if (js->path.depth == 0) {
        js->handler->begin(js->data);
    }

    ngx_voice_json_open(&js->path, 0);

    return 1;
}


static int
ngx_voice_json_end_map(void *ctx)
{
    ngx_voice_json_t  *js = ctx;

    ngx_voice_json_close(&js->path);

    if (js->path.depth) {
        return 1;
    }

    js->values++;

    /* where in yajl's piece the message ends (the fast path ignores it) */
    js->ended = 1;
    js->end_offset = yajl_get_bytes_consumed(js->handle);

    js->stopped = (js->handler->end(js->data) != NGX_OK);

    return !js->stopped;
}


static int
ngx_voice_json_start_array(void *ctx)
{
    ngx_voice_json_t  *js = ctx;

    if (js->path.depth == 0) {
        /* a message is an object */
        return 0;
    }

    ngx_voice_json_open(&js->path, 1);

    return 1;
}


static int
ngx_voice_json_end_array(void *ctx)
{
    ngx_voice_json_t  *js = ctx;

    ngx_voice_json_close(&js->path);

    return 1;
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
ngx_voice_json_free_block(void *ctx, void *ptr)
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


static void
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


static void
ngx_voice_json_close(ngx_voice_json_path_t *path)
{
    if (path->depth) {
        path->depth--;
    }
}


/*
 * Audio goes verbatim into fixed JSON templates: anything but base64
 * there would let a peer write JSON of its choosing to the other one.
 * It is whole quanta of 4 characters, "=" only as the padding of the
 * last one, so its length in bytes is known exactly.
 */
ngx_int_t
ngx_voice_json_is_base64(const u_char *s, size_t len)
{
    size_t       i, pad;
    ngx_uint_t   bad;

    /* 1 for every byte that is not in the alphabet (RFC 4648 4) */
    static const u_char  not_b64[256] = {
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 0,      /* + / */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1,      /* 0-9 */
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,      /* A-O */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1,      /* P-Z */
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,      /* a-o */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1,      /* p-z */
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
    };

    if (len % 4) {
        return 0;
    }

    pad = 0;

    if (len && s[len - 1] == '=') {
        pad = (s[len - 2] == '=') ? 2 : 1;
    }

    len -= pad;

    /* no early exit: a quantum at a time, the table looked up once a byte */

    bad = 0;

    for (i = 0; i + 4 <= len; i += 4) {
        bad |= not_b64[s[i]] | not_b64[s[i + 1]] | not_b64[s[i + 2]]
               | not_b64[s[i + 3]];
    }

    for ( /* void */ ; i < len; i++) {
        bad |= not_b64[s[i]];
    }

    return bad == 0;
}


/* the bytes whole base64 quanta (ngx_voice_json_is_base64) decode to */
size_t
ngx_voice_json_base64_len(const u_char *s, size_t len)
{
    size_t  n;

    if (len < 4) {
        return 0;
    }

    n = len / 4 * 3;

    if (s[len - 1] == '=') {
        n -= (s[len - 2] == '=') ? 2 : 1;
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


void
ngx_voice_json_copy(ngx_str_t *dst, u_char *buf, size_t size,
    const u_char *s, size_t len)
{
    if (len > size) {
        dst->len = 0;
        return;
    }

    ngx_memcpy(buf, s, len);
    dst->data = buf;
    dst->len = len;
}


ngx_int_t
ngx_voice_json_scratch(u_char **buf, ngx_pool_t *pool, size_t max,
    size_t len, ngx_log_t *log, const char *who)
{
    if (len > max) {
        /* log-safe: constant text */
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "voice: a %s string of %uz bytes is longer than "
                      "voice_max_message_size %uz", who, len, max);
        return NGX_DECLINED;
    }

    if (*buf == NULL) {
        *buf = ngx_pnalloc(pool, max);

        if (*buf == NULL) {
            /* log-safe: constant text */
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "voice: no memory for a %s string of %uz bytes",
                          who, len);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}
