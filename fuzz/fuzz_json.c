
/*
 * Copyright (C) ngx_voice authors
 *
 * The JSON fast path against yajl.  Up to three messages (the input cut
 * at NUL bytes, after a first byte that says which callback stops the
 * parse) go to one stream whole, as a one-frame message comes, which the
 * fast path takes when it is in its subset; and to a second stream in two
 * pieces, which yajl always parses.  Both streams must give the same
 * callbacks, with the same paths and values, in the same order, and the
 * same result for every message; and a stream that failed or was
 * stopped must parse nothing more.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_voice_json.h"
#include "ngx_voice_fuzz.h"


#define NGX_VOICE_FUZZ_JSON_MESSAGES  3


typedef struct {
    ngx_voice_fuzz_buf_t         log;       /* the callbacks, written out */
    ngx_uint_t                   calls;
    ngx_uint_t                   stop_at;   /* 0: never */
    ngx_uint_t                   stop_end;  /* the end callback fails */
} ngx_voice_fuzz_json_rec_t;


static void ngx_voice_fuzz_json_begin(void *data);
static int ngx_voice_fuzz_json_string(void *data,
    ngx_voice_json_path_t *path, const u_char *s, size_t len);
static int ngx_voice_fuzz_json_number(void *data,
    ngx_voice_json_path_t *path, const u_char *s, size_t len);
static ngx_int_t ngx_voice_fuzz_json_end(void *data);
static int ngx_voice_fuzz_json_value(ngx_voice_fuzz_json_rec_t *rec,
    u_char type, ngx_voice_json_path_t *path, const u_char *s, size_t len);


static ngx_voice_json_handler_t  ngx_voice_fuzz_json_handler = {
    ngx_voice_fuzz_json_begin,
    ngx_voice_fuzz_json_string,
    ngx_voice_fuzz_json_number,
    ngx_voice_fuzz_json_end
};


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    ngx_voice_fuzz_init();

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                     *msg, *sep;
    size_t                      len, cut;
    ngx_int_t                   rc1, rc2;
    ngx_uint_t                  i, done;
    ngx_voice_json_t            whole, pieces;
    ngx_voice_fuzz_json_rec_t   rec1, rec2;
    const u_char               *p, *last;

    if (size == 0) {
        return 0;
    }

    ngx_memzero(&rec1, sizeof(rec1));
    ngx_memzero(&rec2, sizeof(rec2));
    ngx_memzero(&whole, sizeof(whole));
    ngx_memzero(&pieces, sizeof(pieces));

    rec1.stop_at = data[0] % 32;
    rec1.stop_end = (data[0] & 0x20) ? 1 : 0;
    rec2.stop_at = rec1.stop_at;
    rec2.stop_end = rec1.stop_end;

    ngx_voice_fuzz_check(ngx_voice_json_init(&whole,
                                             &ngx_voice_fuzz_json_handler,
                                             &rec1, ngx_voice_fuzz_log)
                         == NGX_OK);
    ngx_voice_fuzz_check(ngx_voice_json_init(&pieces,
                                             &ngx_voice_fuzz_json_handler,
                                             &rec2, ngx_voice_fuzz_log)
                         == NGX_OK);

    p = data + 1;
    last = data + size;
    done = 0;

    for (i = 0; i < NGX_VOICE_FUZZ_JSON_MESSAGES && p <= last; i++) {

        sep = memchr(p, '\0', last - p);
        len = (sep ? (const u_char *) sep : last) - p;

        /* a heap copy of exactly the message: ASan sees a read past it */
        msg = ngx_voice_fuzz_copy(p, len);

        rc1 = ngx_voice_json_feed(&whole, msg, len, 1, 1);

        cut = len / 2;

        rc2 = ngx_voice_json_feed(&pieces, msg, cut, 1, 0);

        if (rc2 == NGX_OK) {
            rc2 = ngx_voice_json_feed(&pieces, msg + cut, len - cut, 0, 1);
        }

        free(msg);

        ngx_voice_fuzz_check(rc1 == rc2);
        ngx_voice_fuzz_check(rec1.log.len == rec2.log.len);
        ngx_voice_fuzz_check(rec1.log.len == 0
                             || ngx_memcmp(rec1.log.data, rec2.log.data,
                                           rec1.log.len)
                                == 0);

        if (done) {
            /* after a failure or a stop, nothing more is parsed */
            ngx_voice_fuzz_check(rc1 == NGX_DECLINED);
        }

        if (rc1 != NGX_OK) {
            done = 1;
        }

        p += len + 1;
    }

    ngx_voice_json_free(&whole);
    ngx_voice_json_free(&pieces);

    ngx_voice_fuzz_check(whole.mem.used == 0 && pieces.mem.used == 0);

    free(rec1.log.data);
    free(rec2.log.data);

    return 0;
}


static void
ngx_voice_fuzz_json_begin(void *data)
{
    ngx_voice_fuzz_json_rec_t  *rec = data;

    ngx_voice_fuzz_buf_add(&rec->log, "B", 1);
}


static int
ngx_voice_fuzz_json_string(void *data, ngx_voice_json_path_t *path,
    const u_char *s, size_t len)
{
    return ngx_voice_fuzz_json_value(data, 'S', path, s, len);
}


static int
ngx_voice_fuzz_json_number(void *data, ngx_voice_json_path_t *path,
    const u_char *s, size_t len)
{
    return ngx_voice_fuzz_json_value(data, 'N', path, s, len);
}


static ngx_int_t
ngx_voice_fuzz_json_end(void *data)
{
    ngx_voice_fuzz_json_rec_t  *rec = data;

    ngx_voice_fuzz_buf_add(&rec->log, "E", 1);

    return rec->stop_end ? NGX_ERROR : NGX_OK;
}


/* the value, its path as the handlers see it, and whether to go on */
static int
ngx_voice_fuzz_json_value(ngx_voice_fuzz_json_rec_t *rec, u_char type,
    ngx_voice_json_path_t *path, const u_char *s, size_t len)
{
    size_t      n;
    ngx_uint_t  i;

    ngx_voice_fuzz_buf_add(&rec->log, &type, 1);
    ngx_voice_fuzz_buf_add(&rec->log, &path->depth, sizeof(path->depth));
    ngx_voice_fuzz_buf_add(&rec->log, &path->array, sizeof(path->array));

    for (i = 1; i <= ngx_min(path->depth, NGX_VOICE_JSON_DEPTH); i++) {
        n = path->key_len[i];
        ngx_voice_fuzz_buf_add(&rec->log, &n, sizeof(n));
        ngx_voice_fuzz_buf_add(&rec->log, path->key[i], n);
    }

    /* the same answers of the inline path check */
    i = ngx_voice_json_at(path, "media", "payload", NULL) * 4
        + ngx_voice_json_at(path, "type", NULL, NULL) * 2
        + ngx_voice_json_at(path, "start", "mediaFormat", "encoding");
    ngx_voice_fuzz_buf_add(&rec->log, &i, sizeof(i));

    ngx_voice_fuzz_buf_add(&rec->log, &len, sizeof(len));
    ngx_voice_fuzz_buf_add(&rec->log, s, len);

    return ++rec->calls != rec->stop_at;
}
