
/*
 * Copyright (C) ngx_voice authors
 *
 * The WebSocket decoder in one role, held against itself and against a
 * reference.  The input is cut at points the fuzzer chooses; each piece
 * goes to ngx_voice_ws_parse() in a heap block of its own size.  What the
 * parser reports is written down as a transcript (whole messages, control
 * frames, the error that ends the stream, the part of a message the input
 * ended in), which must be the same for the whole input, for the cut one
 * and for a plain frame-by-frame decoder written from RFC 6455.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_voice_ws.h"
#include "ngx_voice_fuzz.h"


#define NGX_VOICE_FUZZ_CUTS  15


static void ngx_voice_fuzz_put_entry(ngx_voice_fuzz_buf_t *b, u_char type,
    ngx_uint_t opcode, ngx_uint_t code, const u_char *data, size_t len);
static void ngx_voice_fuzz_ws_module(const u_char *data, size_t len,
    size_t *cuts, ngx_uint_t ncuts, ngx_uint_t server,
    ngx_voice_fuzz_buf_t *out);
static void ngx_voice_fuzz_ws_reference(const u_char *d, size_t len,
    ngx_uint_t server, ngx_voice_fuzz_buf_t *out);
static ngx_uint_t ngx_voice_fuzz_close_code_valid(ngx_uint_t code);
static void ngx_voice_fuzz_ws_compare(const char *what,
    ngx_voice_fuzz_buf_t *a, ngx_voice_fuzz_buf_t *b);
static void ngx_voice_fuzz_ws_encode(const u_char *data, size_t len,
    ngx_uint_t server);
static int ngx_libc_cdecl ngx_voice_fuzz_cmp_size(const void *one,
    const void *two);


int
ngx_voice_fuzz_ws(const u_char *data, size_t size, ngx_uint_t server)
{
    size_t                cuts[NGX_VOICE_FUZZ_CUTS];
    ngx_uint_t            i, n, ncuts;
    ngx_voice_fuzz_in_t   in;
    ngx_voice_fuzz_buf_t  whole, cut, ref;

    in.pos = data;
    in.last = data + size;

    n = ngx_voice_fuzz_byte(&in) % (NGX_VOICE_FUZZ_CUTS + 1);

    for (i = 0; i < n; i++) {
        cuts[i] = ngx_voice_fuzz_byte(&in);
        cuts[i] |= ngx_voice_fuzz_byte(&in) << 8;
    }

    data = in.pos;
    size = in.last - in.pos;

    for (i = 0; i < n; i++) {
        cuts[i] %= size + 1;
    }

    ngx_qsort(cuts, n, sizeof(size_t), ngx_voice_fuzz_cmp_size);

    ncuts = 0;

    for (i = 0; i < n; i++) {
        if (cuts[i] != 0 && cuts[i] != size
            && (ncuts == 0 || cuts[ncuts - 1] != cuts[i]))
        {
            cuts[ncuts++] = cuts[i];
        }
    }

    ngx_memzero(&whole, sizeof(ngx_voice_fuzz_buf_t));
    ngx_memzero(&cut, sizeof(ngx_voice_fuzz_buf_t));
    ngx_memzero(&ref, sizeof(ngx_voice_fuzz_buf_t));

    ngx_voice_fuzz_ws_module(data, size, NULL, 0, server, &whole);
    ngx_voice_fuzz_ws_module(data, size, cuts, ncuts, server, &cut);
    ngx_voice_fuzz_ws_reference(data, size, server, &ref);

    ngx_voice_fuzz_ws_compare("cut", &whole, &cut);
    ngx_voice_fuzz_ws_compare("reference", &whole, &ref);

    free(whole.data);
    free(cut.data);
    free(ref.data);

    ngx_voice_fuzz_ws_encode(data, size, server);

    return 0;
}


/* type, opcode, code, length, bytes */
static void
ngx_voice_fuzz_put_entry(ngx_voice_fuzz_buf_t *b, u_char type,
    ngx_uint_t opcode, ngx_uint_t code, const u_char *data, size_t len)
{
    uint64_t  v;

    ngx_voice_fuzz_buf_add(b, &type, 1);
    v = opcode;
    ngx_voice_fuzz_buf_add(b, &v, sizeof(v));
    v = code;
    ngx_voice_fuzz_buf_add(b, &v, sizeof(v));
    v = len;
    ngx_voice_fuzz_buf_add(b, &v, sizeof(v));
    ngx_voice_fuzz_buf_add(b, data, len);
}


static void
ngx_voice_fuzz_ws_module(const u_char *data, size_t len, size_t *cuts,
    ngx_uint_t ncuts, ngx_uint_t server, ngx_voice_fuzz_buf_t *out)
{
    size_t                 from, to, events;
    u_char                *copy, *pos, *last, *start;
    ngx_uint_t             i, open, opcode;
    ngx_voice_fuzz_buf_t   msg;
    ngx_voice_ws_event_t   ev;
    ngx_voice_ws_parser_t  p;

    ngx_voice_ws_parser_init(&p, server);
    ngx_memzero(&msg, sizeof(ngx_voice_fuzz_buf_t));

    open = 0;
    opcode = 0;
    events = 0;
    from = 0;

    for (i = 0; i <= ncuts; i++) {
        to = (i < ncuts) ? cuts[i] : len;

        copy = ngx_voice_fuzz_copy(data + from, to - from);
        pos = copy;
        last = copy + (to - from);

        for ( ;; ) {
            start = pos;

            ngx_voice_ws_parse(&p, &pos, last, &ev);

            ngx_voice_fuzz_check(pos >= start && pos <= last);

            if (ev.type == NGX_VOICE_WS_EV_AGAIN) {
                ngx_voice_fuzz_check(pos == last);
                break;
            }

            /* each event takes a byte at least, but a final empty frame */
            ngx_voice_fuzz_check(++events <= len + 1);

            if (ev.type == NGX_VOICE_WS_EV_ERROR) {
                ngx_voice_fuzz_check(ev.reason != NULL);
                ngx_voice_fuzz_check(ev.code == NGX_VOICE_WS_CLOSE_PROTOCOL
                                     || ev.code
                                        == NGX_VOICE_WS_CLOSE_BAD_DATA);

                ngx_voice_fuzz_put_entry(out, 'E', 0, ev.code, NULL, 0);

                free(copy);
                free(msg.data);
                return;
            }

            if (ev.type == NGX_VOICE_WS_EV_CONTROL) {
                ngx_voice_fuzz_check(ev.opcode == NGX_VOICE_WS_CLOSE
                                     || ev.opcode == NGX_VOICE_WS_PING
                                     || ev.opcode == NGX_VOICE_WS_PONG);
                ngx_voice_fuzz_check(ev.len <= NGX_VOICE_WS_CONTROL_MAX);
                ngx_voice_fuzz_check(ev.data >= p.control
                                     && ev.data + ev.len
                                        <= p.control + p.control_len);

                ngx_voice_fuzz_put_entry(out, 'C', ev.opcode, ev.code,
                                         ev.data, ev.len);
                continue;
            }

            /* a piece of a message: within what this call consumed */

            ngx_voice_fuzz_check(ev.type == NGX_VOICE_WS_EV_DATA);
            ngx_voice_fuzz_check(ev.opcode == NGX_VOICE_WS_TEXT
                                 || ev.opcode == NGX_VOICE_WS_BINARY);
            ngx_voice_fuzz_check(ev.data >= start
                                 && ev.data + ev.len <= pos);
            ngx_voice_fuzz_check(ev.len > 0 || ev.last);
            ngx_voice_fuzz_check(ev.first == !open);

            if (ev.first) {
                open = 1;
                opcode = ev.opcode;
                msg.len = 0;
            }

            ngx_voice_fuzz_check(ev.opcode == opcode);

            ngx_voice_fuzz_buf_add(&msg, ev.data, ev.len);

            ngx_voice_fuzz_check(p.msg_len == msg.len);

            if (ev.last) {
                ngx_voice_fuzz_put_entry(out, 'M', opcode, 0, msg.data,
                                         msg.len);
                open = 0;
            }
        }

        free(copy);
        from = to;
    }

    if (open && msg.len) {
        ngx_voice_fuzz_put_entry(out, 'P', opcode, 0, msg.data, msg.len);
    }

    free(msg.data);
}


/* RFC 6455 5.2, 5.4, 5.5 and 8.1, one frame after the other */
static void
ngx_voice_fuzz_ws_reference(const u_char *d, size_t len, ngx_uint_t server,
    ngx_voice_fuzz_buf_t *out)
{
    size_t                i, k, hdr, avail;
    u_char                b0, b1, mask[4], *payload;
    uint64_t              plen;
    ngx_uint_t            fin, op, masked, in_msg, msg_op, code, st;
    ngx_voice_fuzz_buf_t  msg;

    ngx_memzero(&msg, sizeof(ngx_voice_fuzz_buf_t));

    i = 0;
    in_msg = 0;
    msg_op = 0;
    st = NGX_VOICE_FUZZ_UTF8_VALID;

    while (len - i >= 2) {
        b0 = d[i];
        b1 = d[i + 1];

        fin = b0 >> 7;
        op = b0 & 0x0f;
        masked = b1 >> 7;
        plen = b1 & 0x7f;

        if ((b0 & 0x70)                               /* no extension */
            || masked != server                       /* 5.1 */
            || (op >= 3 && op <= 7) || op >= 0xb      /* unknown */
            || (op >= 8 && (!fin || plen > 125))      /* 5.5 */
            || (op == 0 && !in_msg)                   /* 5.4 */
            || ((op == 1 || op == 2) && in_msg))
        {
            goto protocol;
        }

        hdr = 2 + (plen == 126 ? 2 : plen == 127 ? 8 : 0) + (masked ? 4 : 0);

        if (len - i < hdr) {
            break;
        }

        if (plen == 126) {
            plen = ((uint64_t) d[i + 2] << 8) | d[i + 3];

        } else if (plen == 127) {
            plen = 0;

            for (k = 0; k < 8; k++) {
                plen = (plen << 8) | d[i + 2 + k];
            }

            if (plen >> 63) {
                goto protocol;
            }
        }

        if (masked) {
            memcpy(mask, d + i + hdr - 4, 4);
        }

        i += hdr;

        avail = (plen < len - i) ? (size_t) plen : len - i;

        payload = ngx_voice_fuzz_copy(d + i, avail);

        for (k = 0; masked && k < avail; k++) {
            payload[k] ^= mask[k % 4];
        }

        if (op >= 8) {

            if (avail < plen) {
                free(payload);
                break;
            }

            i += avail;

            if (op != 8) {
                ngx_voice_fuzz_put_entry(out, 'C', op, 0, payload, avail);
                free(payload);
                continue;
            }

            if (avail == 0) {
                ngx_voice_fuzz_put_entry(out, 'C', op, 1005, NULL, 0);
                free(payload);
                continue;
            }

            code = (avail >= 2) ? (ngx_uint_t) (payload[0] << 8 | payload[1])
                                : 0;

            if (avail == 1 || !ngx_voice_fuzz_close_code_valid(code)) {
                free(payload);
                goto protocol;
            }

            if (ngx_voice_fuzz_utf8(payload + 2, avail - 2)
                != NGX_VOICE_FUZZ_UTF8_VALID)
            {
                free(payload);
                goto bad_data;
            }

            ngx_voice_fuzz_put_entry(out, 'C', op, code, payload + 2,
                                     avail - 2);
            free(payload);
            continue;
        }

        if (op != 0) {
            in_msg = 1;
            msg_op = op;
            msg.len = 0;
        }

        ngx_voice_fuzz_buf_add(&msg, payload, avail);
        free(payload);

        i += avail;

        if (msg_op == 1) {
            st = ngx_voice_fuzz_utf8(msg.data, msg.len);

            if (st == NGX_VOICE_FUZZ_UTF8_INVALID) {
                goto bad_data;
            }
        }

        if (avail < plen) {
            break;
        }

        if (fin) {
            if (msg_op == 1 && st != NGX_VOICE_FUZZ_UTF8_VALID) {
                goto bad_data;
            }

            ngx_voice_fuzz_put_entry(out, 'M', msg_op, 0, msg.data, msg.len);
            in_msg = 0;
        }
    }

    if (in_msg && msg.len) {
        ngx_voice_fuzz_put_entry(out, 'P', msg_op, 0, msg.data, msg.len);
    }

    free(msg.data);
    return;

protocol:

    ngx_voice_fuzz_put_entry(out, 'E', 0, 1002, NULL, 0);
    free(msg.data);
    return;

bad_data:

    ngx_voice_fuzz_put_entry(out, 'E', 0, 1007, NULL, 0);
    free(msg.data);
}


/* RFC 6455 7.4 and the IANA registry: what an endpoint may send */
static ngx_uint_t
ngx_voice_fuzz_close_code_valid(ngx_uint_t code)
{
    return (code >= 1000 && code <= 1003)
           || (code >= 1007 && code <= 1014)
           || (code >= 3000 && code <= 4999);
}


static void
ngx_voice_fuzz_ws_compare(const char *what, ngx_voice_fuzz_buf_t *a,
    ngx_voice_fuzz_buf_t *b)
{
    size_t  i;

    if (a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len)
                                            == 0))
    {
        return;
    }

    for (i = 0; i < a->len && i < b->len && a->data[i] == b->data[i]; i++) {
        /* void */
    }

    fprintf(stderr, "ngx_voice fuzz: transcripts differ (whole input and %s)"
            " at byte %zu of %zu/%zu: entry types '%c' and '%c'\n",
            what, i, a->len, b->len, a->len ? a->data[0] : '-',
            b->len ? b->data[0] : '-');

    ngx_voice_fuzz_fail(__FILE__, __LINE__, what);
}


/*
 * The input as the payload of one frame the other role writes, read
 * back: ngx_voice_ws_write_header() and ngx_voice_ws_mask() agree with
 * the parser at every length.
 */
static void
ngx_voice_fuzz_ws_encode(const u_char *data, size_t len, ngx_uint_t server)
{
    u_char                *frame, *pos, *last, *p;
    size_t                 hlen, got;
    ngx_voice_ws_event_t   ev;
    ngx_voice_ws_parser_t  parser;
    u_char                 mask[4] = { 0x5a, 0x00, 0xff, 0x81 };

    frame = ngx_voice_fuzz_alloc(NGX_VOICE_WS_HEADER_MAX + len);

    /* a server writes what a client parses, and the reverse */

    p = ngx_voice_ws_write_header(frame, NGX_VOICE_WS_BINARY, 1, len,
                                  server ? NULL : mask);
    hlen = p - frame;

    ngx_voice_fuzz_check(hlen == (len < 126 ? 2 : len <= 0xffff ? 4 : 10)
                                 + (server ? 0 : 4));

    memcpy(p, data, len);

    if (!server) {
        ngx_voice_ws_mask(p, len, mask, 0);
    }

    ngx_voice_ws_parser_init(&parser, !server);

    pos = frame;
    last = frame + hlen + len;
    got = 0;

    do {
        ngx_voice_ws_parse(&parser, &pos, last, &ev);

        ngx_voice_fuzz_check(ev.type == NGX_VOICE_WS_EV_DATA);
        ngx_voice_fuzz_check(ev.len == len - got);
        ngx_voice_fuzz_check(len == 0 || memcmp(ev.data, data, len) == 0);

        got += ev.len;

    } while (!ev.last);

    ngx_voice_fuzz_check(pos == last);

    free(frame);
}


static int ngx_libc_cdecl
ngx_voice_fuzz_cmp_size(const void *one, const void *two)
{
    const size_t  *a = one, *b = two;

    return (*a > *b) - (*a < *b);
}
