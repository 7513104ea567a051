
/*
 * Copyright (C) ngx_voice authors
 *
 * What the fuzz harnesses share: the globals nginx.c would give them (they
 * link every object of an nginx tree but nginx.o, which holds main()), a
 * once-only set-up of the time, the log, the cycle and the event timers,
 * and plain references the harnesses hold the module's code against.
 */


#ifndef _NGX_VOICE_FUZZ_H_INCLUDED_
#define _NGX_VOICE_FUZZ_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>


/* an invariant of the code under test: its failure is a finding */
#define ngx_voice_fuzz_check(expr)                                           \
    if (!(expr)) {                                                           \
        ngx_voice_fuzz_fail(__FILE__, __LINE__, #expr);                      \
    }


/* what ngx_voice_fuzz_utf8() finds */
#define NGX_VOICE_FUZZ_UTF8_VALID       0
#define NGX_VOICE_FUZZ_UTF8_INCOMPLETE  1   /* a prefix of valid text */
#define NGX_VOICE_FUZZ_UTF8_INVALID     2


/* bytes that grow */
typedef struct {
    u_char                      *data;
    size_t                       len;
    size_t                       size;
} ngx_voice_fuzz_buf_t;


/* the input, read from the front */
typedef struct {
    const u_char                *pos;
    const u_char                *last;
} ngx_voice_fuzz_in_t;


extern ngx_log_t  *ngx_voice_fuzz_log;


void ngx_voice_fuzz_init(void);
void ngx_voice_fuzz_fail(const char *file, int line, const char *expr)
    __attribute__((noreturn));
ngx_uint_t ngx_voice_fuzz_skip(const char *name);

/* a pool for one input, with the timers and posted events reset */
ngx_pool_t *ngx_voice_fuzz_pool(void);
void ngx_voice_fuzz_pool_done(ngx_pool_t *pool);

/* malloc() that does not fail: the harness gives up instead */
void *ngx_voice_fuzz_alloc(size_t size);

/* a heap copy of exactly "len" bytes: ASan sees a byte read past it */
u_char *ngx_voice_fuzz_copy(const u_char *data, size_t len);

void ngx_voice_fuzz_buf_add(ngx_voice_fuzz_buf_t *b, const void *data,
    size_t len);

ngx_uint_t ngx_voice_fuzz_byte(ngx_voice_fuzz_in_t *in);

/* [*pos, end of segment): up to the next "sep" byte, which is skipped */
ngx_int_t ngx_voice_fuzz_segment(ngx_voice_fuzz_in_t *in, u_char sep,
    const u_char **data, size_t *len);

/* references, written from the RFCs and not from the module */
ngx_uint_t ngx_voice_fuzz_utf8(const u_char *p, size_t len);
ssize_t ngx_voice_fuzz_base64_decode(const u_char *s, size_t len,
    u_char *dst);

/* the WebSocket decoder in one role (ngx_voice_fuzz_ws.c) */
int ngx_voice_fuzz_ws(const u_char *data, size_t size, ngx_uint_t server);

/* a call, the input speaking for one leg (ngx_voice_fuzz_call.c) */
int ngx_voice_fuzz_call(const u_char *data, size_t size, ngx_uint_t leg);


#endif /* _NGX_VOICE_FUZZ_H_INCLUDED_ */
