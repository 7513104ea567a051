
/*
 * Copyright (C) ngx_voice authors
 *
 * The checks on peer text: ngx_voice_json_is_base64() and
 * ngx_voice_json_base64_len() against a plain decoder,
 * ngx_voice_utf8_valid() against a plain validator and against the
 * WebSocket decoder's own check of the same text cut in two frames,
 * ngx_voice_log_escape() (bounded, NUL-terminated, no control byte, no
 * quote, valid UTF-8, and read back to the input or a prefix of it) and
 * ngx_voice_json_escape() (read back by yajl to the input).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <yajl/yajl_tree.h>
#include "ngx_voice_json.h"
#include "ngx_voice_util.h"
#include "ngx_voice_ws.h"
#include "ngx_voice_fuzz.h"


static void ngx_voice_fuzz_base64(const u_char *data, size_t size);
static void ngx_voice_fuzz_utf8_frames(const u_char *data, size_t size,
    ngx_uint_t valid);
static void ngx_voice_fuzz_log_escape(const u_char *data, size_t size);
static void ngx_voice_fuzz_json_escape(const u_char *data, size_t size);


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    ngx_voice_fuzz_init();

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char      *copy;
    ngx_uint_t   valid;

    copy = ngx_voice_fuzz_copy(data, size);

    ngx_voice_fuzz_base64(copy, size);

    valid = (ngx_voice_fuzz_utf8(copy, size) == NGX_VOICE_FUZZ_UTF8_VALID);

    ngx_voice_fuzz_check(!ngx_voice_utf8_valid(copy, size) == !valid);

    ngx_voice_fuzz_utf8_frames(copy, size, valid);
    ngx_voice_fuzz_log_escape(copy, size);

    if (valid) {
        ngx_voice_fuzz_json_escape(copy, size);
    }

    free(copy);

    return 0;
}


static void
ngx_voice_fuzz_base64(const u_char *data, size_t size)
{
    u_char     *dst;
    ssize_t     n;
    ngx_str_t   in, out;

    n = ngx_voice_fuzz_base64_decode(data, size, NULL);

    ngx_voice_fuzz_check(!ngx_voice_json_is_base64(data, size) == (n < 0));

    if (n < 0) {
        return;
    }

    ngx_voice_fuzz_check(ngx_voice_json_base64_len(data, size)
                         == (size_t) n);

    /* nginx's decoder agrees on what it decodes to */

    dst = ngx_voice_fuzz_alloc(n + 1);

    in.data = (u_char *) data;
    in.len = size;
    out.data = dst;

    ngx_voice_fuzz_check(ngx_decode_base64(&out, &in) == NGX_OK);
    ngx_voice_fuzz_check(out.len == (size_t) n);

    free(dst);
}


/* the text as a text message of two frames, to a client */
static void
ngx_voice_fuzz_utf8_frames(const u_char *data, size_t size,
    ngx_uint_t valid)
{
    u_char                *buf, *p, *pos, *last;
    size_t                 cut;
    ngx_uint_t             error;
    ngx_voice_ws_event_t   ev;
    ngx_voice_ws_parser_t  parser;

    cut = size ? data[0] % (size + 1) : 0;

    buf = ngx_voice_fuzz_alloc(size + 2 * NGX_VOICE_WS_HEADER_MAX);

    p = ngx_voice_ws_write_header(buf, NGX_VOICE_WS_TEXT, 0, cut, NULL);
    p = ngx_cpymem(p, data, cut);
    p = ngx_voice_ws_write_header(p, NGX_VOICE_WS_CONT, 1, size - cut, NULL);
    p = ngx_cpymem(p, data + cut, size - cut);

    ngx_voice_ws_parser_init(&parser, 0);

    pos = buf;
    last = p;
    error = 0;

    while (pos < last) {
        ngx_voice_ws_parse(&parser, &pos, last, &ev);

        if (ev.type == NGX_VOICE_WS_EV_ERROR) {
            ngx_voice_fuzz_check(ev.code == NGX_VOICE_WS_CLOSE_BAD_DATA);
            error = 1;
            break;
        }
    }

    ngx_voice_fuzz_check(error == !valid);

    free(buf);
}


static void
ngx_voice_fuzz_log_escape(const u_char *data, size_t size)
{
    u_char  *buf, *back, *p, *end, c;
    size_t   len, n;

    buf = ngx_voice_fuzz_alloc(NGX_VOICE_LOG_TEXT_MAX);
    back = ngx_voice_fuzz_alloc(NGX_VOICE_LOG_TEXT_MAX);

    ngx_voice_fuzz_check(ngx_voice_log_escape(buf, data, size)
                         == (char *) buf);

    len = strnlen((char *) buf, NGX_VOICE_LOG_TEXT_MAX);

    ngx_voice_fuzz_check(len < NGX_VOICE_LOG_TEXT_MAX);
    ngx_voice_fuzz_check(ngx_voice_fuzz_utf8(buf, len)
                         == NGX_VOICE_FUZZ_UTF8_VALID);

    /* read back: "\xNN" is a byte, anything else itself */

    n = 0;
    p = buf;
    end = buf + len;

    while (p < end) {
        c = *p;

        ngx_voice_fuzz_check(c >= 0x20 && c != 0x7f && c != '"');

        if (c == '\\') {
            ngx_voice_fuzz_check(end - p >= 4 && p[1] == 'x'
                                 && isxdigit(p[2]) && isxdigit(p[3]));

            back[n++] = (u_char) ((ngx_hextoi(p + 2, 1) << 4)
                                  | ngx_hextoi(p + 3, 1));
            p += 4;
            continue;
        }

        back[n++] = c;
        p++;
    }

    if (n == size && memcmp(back, data, n) == 0) {
        goto done;
    }

    /* cut: a prefix of the input, then "...", and not much room left */

    ngx_voice_fuzz_check(4 * size + 8 > NGX_VOICE_LOG_TEXT_MAX);
    ngx_voice_fuzz_check(len >= 3 + (NGX_VOICE_LOG_TEXT_MAX - 16)
                         && memcmp(buf + len - 3, "...", 3) == 0);
    ngx_voice_fuzz_check(n >= 3 && n - 3 < size
                         && memcmp(back, data, n - 3) == 0);

done:

    free(buf);
    free(back);
}


static void
ngx_voice_fuzz_json_escape(const u_char *data, size_t size)
{
    u_char    *buf, *p;
    yajl_val   v;
    char       err[128];

    buf = ngx_voice_fuzz_alloc(6 * size + 3);

    buf[0] = '"';
    p = ngx_voice_json_escape(buf + 1, (u_char *) data, size);
    ngx_voice_fuzz_check((size_t) (p - buf - 1) <= 6 * size);

    *p++ = '"';
    *p = '\0';

    /* a NUL of the input is escaped: none ends the string early */
    ngx_voice_fuzz_check(strlen((char *) buf) == (size_t) (p - buf));

    v = yajl_tree_parse((char *) buf, err, sizeof(err));

    ngx_voice_fuzz_check(v != NULL && YAJL_IS_STRING(v));
    ngx_voice_fuzz_check(strlen(YAJL_GET_STRING(v)) <= size);
    ngx_voice_fuzz_check(memchr(data, '\0', size) != NULL
                         || (strlen(YAJL_GET_STRING(v)) == size
                             && memcmp(YAJL_GET_STRING(v), data, size)
                                == 0));

    yajl_tree_free(v);
    free(buf);
}
