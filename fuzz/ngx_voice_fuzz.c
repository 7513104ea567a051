
/*
 * Copyright (C) ngx_voice authors
 *
 * The support every harness links: nginx.c's globals, a once-only set-up
 * (time, page size, a cycle, a log, the timer tree and the posted events
 * queue) and the references.  Every log line the module writes goes
 * through a writer that fails the input when the line holds a control
 * byte: text a peer chose must reach the log escaped.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>
#include "ngx_voice_fuzz.h"


static void ngx_voice_fuzz_log_writer(ngx_log_t *log, ngx_uint_t level,
    u_char *buf, size_t len);
static ngx_int_t ngx_voice_fuzz_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);


/* nginx.c's, which the harnesses do not link */

static ngx_core_module_t  ngx_voice_fuzz_core_ctx = {
    ngx_string("core"),
    NULL,
    NULL
};


ngx_module_t  ngx_core_module = {
    NGX_MODULE_V1,
    &ngx_voice_fuzz_core_ctx,              /* module context */
    NULL,                                  /* module directives */
    NGX_CORE_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


ngx_log_t  *ngx_voice_fuzz_log;

static ngx_cycle_t  ngx_voice_fuzz_cycle;
static ngx_log_t    ngx_voice_fuzz_log_object;
static ngx_uint_t   ngx_voice_fuzz_print;


/*
 * UBSan's reports are recoverable in this build, so that a suppressions
 * file can let a long run past a known one; any other stops the run
 */
const char *__ubsan_default_options(void);


const char *
__ubsan_default_options(void)
{
    return "halt_on_error=1:print_stacktrace=1";
}


char **
ngx_set_environment(ngx_cycle_t *cycle, ngx_uint_t *last)
{
    return NULL;
}


ngx_pid_t
ngx_exec_new_binary(ngx_cycle_t *cycle, char *const *argv)
{
    return NGX_INVALID_PID;
}


ngx_cpuset_t *
ngx_get_cpu_affinity(ngx_uint_t n)
{
    return NULL;
}


void
ngx_voice_fuzz_init(void)
{
    ngx_uint_t  n;
    ngx_log_t  *log;

    ngx_pid = getpid();
    ngx_ncpu = 1;
    ngx_pagesize = getpagesize();
    ngx_cacheline_size = NGX_CPU_CACHE_LINE;

    for (n = ngx_pagesize; n >>= 1; ngx_pagesize_shift++) { /* void */ }

    ngx_time_init();

    /* the writer below has every line: none goes to stderr as well */
    ngx_use_stderr = 0;

    /* NGX_VOICE_FUZZ_LOG=1 prints the lines, to read a reproducer's run */
    ngx_voice_fuzz_print = (getenv("NGX_VOICE_FUZZ_LOG") != NULL);

    log = &ngx_voice_fuzz_log_object;

    /* every level, and the module's debug lines: all are formatted */
    log->log_level = NGX_LOG_DEBUG | NGX_LOG_DEBUG_HTTP;
    log->writer = ngx_voice_fuzz_log_writer;
    log->file = NULL;

    ngx_voice_fuzz_log = log;

    ngx_voice_fuzz_cycle.log = log;
    ngx_voice_fuzz_cycle.pool = ngx_create_pool(NGX_CYCLE_POOL_SIZE, log);
    if (ngx_voice_fuzz_cycle.pool == NULL) {
        abort();
    }

    ngx_cycle = &ngx_voice_fuzz_cycle;

    if (ngx_preinit_modules() != NGX_OK) {
        abort();
    }

    /* the end of the output filter chain: the Twilio leg's take-over */
    ngx_http_top_body_filter = ngx_voice_fuzz_body_filter;

    ngx_event_timer_init(log);
    ngx_queue_init(&ngx_posted_events);
}


/*
 * NGX_VOICE_FUZZ_SKIP="name ..." leaves out the checks of those names: a
 * finding that is known, and not fixed yet, need not stop a long run
 */
ngx_uint_t
ngx_voice_fuzz_skip(const char *name)
{
    static const char  *skip = (const char *) -1;

    if (skip == (const char *) -1) {
        skip = getenv("NGX_VOICE_FUZZ_SKIP");
    }

    return skip != NULL && strstr(skip, name) != NULL;
}


void
ngx_voice_fuzz_fail(const char *file, int line, const char *expr)
{
    fprintf(stderr, "ngx_voice fuzz: %s:%d: check failed: %s\n",
            file, line, expr);
    abort();
}


static void
ngx_voice_fuzz_log_writer(ngx_log_t *log, ngx_uint_t level, u_char *buf,
    size_t len)
{
    size_t  i;

    if (ngx_voice_fuzz_print) {
        (void) write(STDERR_FILENO, buf, len);
    }

    /* the line ends in the one linefeed nginx adds */

    ngx_voice_fuzz_check(len > 0 && buf[len - 1] == LF);

    for (i = 0; i + 1 < len; i++) {
        if (buf[i] < 0x20 || buf[i] == 0x7f) {
            fprintf(stderr, "ngx_voice fuzz: control byte 0x%02x at %zu "
                    "in a log line: %.*s\n", buf[i], i, (int) len, buf);
            ngx_voice_fuzz_fail(__FILE__, __LINE__, "log line");
        }
    }
}


static ngx_int_t
ngx_voice_fuzz_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    return NGX_OK;
}


ngx_pool_t *
ngx_voice_fuzz_pool(void)
{
    ngx_pool_t  *pool;

    ngx_event_timer_init(ngx_voice_fuzz_log);
    ngx_queue_init(&ngx_posted_events);

    pool = ngx_create_pool(4096, ngx_voice_fuzz_log);
    if (pool == NULL) {
        abort();
    }

    return pool;
}


void
ngx_voice_fuzz_pool_done(ngx_pool_t *pool)
{
    /*
     * timers, posted events and connections ngx_close_connection() put
     * on the cycle's free list may live in the pool
     */

    ngx_event_timer_init(ngx_voice_fuzz_log);
    ngx_queue_init(&ngx_posted_events);

    ngx_voice_fuzz_cycle.free_connections = NULL;
    ngx_voice_fuzz_cycle.free_connection_n = 0;

    ngx_destroy_pool(pool);
}


void *
ngx_voice_fuzz_alloc(size_t size)
{
    void  *p;

    p = malloc(size ? size : 1);
    if (p == NULL) {
        abort();
    }

    return p;
}


u_char *
ngx_voice_fuzz_copy(const u_char *data, size_t len)
{
    u_char  *p;

    p = ngx_voice_fuzz_alloc(len);

    if (len) {
        memcpy(p, data, len);
    }

    return p;
}


void
ngx_voice_fuzz_buf_add(ngx_voice_fuzz_buf_t *b, const void *data, size_t len)
{
    if (len == 0) {
        return;
    }

    if (b->len + len > b->size) {
        b->size = ngx_max(2 * b->size, b->len + len + 256);
        b->data = realloc(b->data, b->size);

        if (b->data == NULL) {
            abort();
        }
    }

    memcpy(b->data + b->len, data, len);
    b->len += len;
}


ngx_uint_t
ngx_voice_fuzz_byte(ngx_voice_fuzz_in_t *in)
{
    if (in->pos == in->last) {
        return 0;
    }

    return *in->pos++;
}


ngx_int_t
ngx_voice_fuzz_segment(ngx_voice_fuzz_in_t *in, u_char sep,
    const u_char **data, size_t *len)
{
    const u_char  *p;

    if (in->pos == in->last) {
        return NGX_DONE;
    }

    p = memchr(in->pos, sep, in->last - in->pos);

    if (p == NULL) {
        p = in->last;
    }

    *data = in->pos;
    *len = p - in->pos;

    in->pos = (p == in->last) ? p : p + 1;

    return NGX_OK;
}


/*
 * UTF-8 (RFC 3629) by code points: each sequence is decoded whole; one
 * cut by the end of the text is a valid prefix when some code point that
 * is not a surrogate, is at least the smallest its length may encode and
 * at most U+10FFFF starts with those bytes.
 */
ngx_uint_t
ngx_voice_fuzz_utf8(const u_char *p, size_t len)
{
    size_t    i, k, need, have;
    uint32_t  lo, hi, min, c;

    i = 0;

    while (i < len) {
        c = p[i];

        if (c < 0x80) {
            i++;
            continue;
        }

        if ((c & 0xe0) == 0xc0) {
            need = 1;
            lo = c & 0x1f;
            min = 0x80;

        } else if ((c & 0xf0) == 0xe0) {
            need = 2;
            lo = c & 0x0f;
            min = 0x800;

        } else if ((c & 0xf8) == 0xf0) {
            need = 3;
            lo = c & 0x07;
            min = 0x10000;

        } else {
            return NGX_VOICE_FUZZ_UTF8_INVALID;
        }

        have = ngx_min(need, len - i - 1);

        for (k = 1; k <= have; k++) {
            if ((p[i + k] & 0xc0) != 0x80) {
                return NGX_VOICE_FUZZ_UTF8_INVALID;
            }

            lo = (lo << 6) | (p[i + k] & 0x3f);
        }

        /* the code points these bytes may still begin */

        hi = lo;

        for ( /* void */ ; k <= need; k++) {
            lo = lo << 6;
            hi = (hi << 6) | 0x3f;
        }

        lo = ngx_max(lo, min);
        hi = ngx_min(hi, 0x10ffff);

        if (lo > hi || (lo >= 0xd800 && hi <= 0xdfff)) {
            return NGX_VOICE_FUZZ_UTF8_INVALID;
        }

        if (have < need) {
            return NGX_VOICE_FUZZ_UTF8_INCOMPLETE;
        }

        i += need + 1;
    }

    return NGX_VOICE_FUZZ_UTF8_VALID;
}


/*
 * Base64 (RFC 4648 4) in whole quanta, "=" only as the padding of the
 * last one: the decoded length, or -1.  The padding's unused bits are not
 * required to be zero.  "dst" may be NULL.
 */
ssize_t
ngx_voice_fuzz_base64_decode(const u_char *s, size_t len, u_char *dst)
{
    size_t    i, j, n, pad;
    uint32_t  v, d;
    u_char    c;

    static const char  alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    if (len % 4) {
        return -1;
    }

    n = 0;

    for (i = 0; i < len; i += 4) {
        v = 0;
        pad = 0;

        for (j = 0; j < 4; j++) {
            c = s[i + j];

            if (c == '=') {
                /* only in the last quantum, only at its end */
                if (i + 4 != len || j < 2) {
                    return -1;
                }

                pad++;
                v <<= 6;
                continue;
            }

            if (pad || c == '\0' || strchr(alphabet, c) == NULL) {
                return -1;
            }

            d = (const char *) memchr(alphabet, c, 64) - alphabet;
            v = (v << 6) | d;
        }

        if (dst) {
            dst[n] = (u_char) (v >> 16);

            if (pad < 2) {
                dst[n + 1] = (u_char) (v >> 8);
            }

            if (pad < 1) {
                dst[n + 2] = (u_char) v;
            }
        }

        n += 3 - pad;
    }

    return n;
}
