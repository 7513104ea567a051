
/*
 * Copyright (C) ngx_voice authors
 *
 * RFC 6455 framing over buffers, no I/O, for both roles.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_sha1.h>
#include "ngx_voice_ws.h"


#define NGX_VOICE_WS_GUID  "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


#define NGX_VOICE_UTF8_REJECT  0xffffffff


static ngx_int_t ngx_voice_ws_read_header(ngx_voice_ws_parser_t *p,
    u_char **pos, u_char *last, ngx_voice_ws_event_t *ev);
static ngx_int_t ngx_voice_ws_check_header(ngx_voice_ws_parser_t *p,
    ngx_voice_ws_event_t *ev);
static void ngx_voice_ws_control_event(ngx_voice_ws_parser_t *p,
    ngx_voice_ws_event_t *ev);
static void ngx_voice_ws_error(ngx_voice_ws_event_t *ev, ngx_uint_t code,
    const char *reason);
static ngx_int_t ngx_voice_ws_close_code_valid(ngx_uint_t code);
static void ngx_voice_utf8_check(uint32_t *state, u_char *p, size_t len);
static ngx_int_t ngx_voice_ws_check_headers(u_char *p, u_char *end,
    u_char *key, ngx_log_t *log);
static ngx_int_t ngx_voice_ws_header_is(u_char *line, u_char *end,
    const char *name, ngx_str_t *value);
static ngx_uint_t ngx_voice_ws_has_token(ngx_str_t *list, const char *token);


void
ngx_voice_ws_parser_init(ngx_voice_ws_parser_t *p, ngx_uint_t server)
{
    ngx_memzero(p, sizeof(ngx_voice_ws_parser_t));
    p->server = server ? 1 : 0;
}


void
ngx_voice_ws_parse(ngx_voice_ws_parser_t *p, u_char **pos, u_char *last,
    ngx_voice_ws_event_t *ev)
{
    size_t  n;

    ngx_memzero(ev, sizeof(ngx_voice_ws_event_t));

    for ( ;; ) {

        if (!p->in_frame) {
            if (ngx_voice_ws_read_header(p, pos, last, ev) != NGX_OK) {
                return;
            }
        }

        if (p->opcode & 0x8) {

            /* a control frame is collected whole (at most 125 bytes) */

            n = ngx_min((size_t) p->left, (size_t) (last - *pos));
            ngx_memcpy(p->control + p->control_len, *pos, n);
            *pos += n;
            p->control_len += n;
            p->left -= n;

            if (p->left) {
                return;
            }

            p->in_frame = 0;
            ngx_voice_ws_control_event(p, ev);
            return;
        }

        n = ngx_min((size_t) ngx_min(p->left, (uint64_t) NGX_MAX_SIZE_T_VALUE),
                    (size_t) (last - *pos));

        if (n == 0 && p->left) {
            return;
        }

        ev->type = NGX_VOICE_WS_EV_DATA;
        ev->opcode = p->msg_opcode;
        ev->data = *pos;
        ev->len = n;
        ev->first = p->first_piece;

        if (p->masked) {
            ngx_voice_ws_mask(*pos, n, p->mask, p->mask_pos);
            p->mask_pos = (p->mask_pos + n) & 3;
        }

        *pos += n;
        p->left -= n;
        p->msg_len += n;

        if (n) {
            p->first_piece = 0;
        }

        if (p->msg_opcode == NGX_VOICE_WS_TEXT) {
            ngx_voice_utf8_check(&p->utf8, ev->data, n);

            if (p->utf8 == NGX_VOICE_UTF8_REJECT) {
                ngx_voice_ws_error(ev, NGX_VOICE_WS_CLOSE_BAD_DATA,
                                   "invalid UTF-8 in a text message");
                return;
            }
        }

        if (p->left == 0) {
            p->in_frame = 0;

            if (p->fin) {
                p->in_message = 0;
                ev->last = 1;

                if (p->msg_opcode == NGX_VOICE_WS_TEXT && p->utf8 != 0) {
                    ngx_voice_ws_error(ev, NGX_VOICE_WS_CLOSE_BAD_DATA,
                                       "truncated UTF-8 in a text message");
                    return;
                }
            }
        }

        if (n || ev->last) {
            return;
        }

        /* an empty non-final fragment: nothing to report, go on */

        ngx_memzero(ev, sizeof(ngx_voice_ws_event_t));
    }
}


static ngx_int_t
ngx_voice_ws_read_header(ngx_voice_ws_parser_t *p, u_char **pos,
    u_char *last, ngx_voice_ws_event_t *ev)
{
    size_t    need, i;
    u_char   *h;
    uint64_t  len;

    need = 2;

    for ( ;; ) {
        while (p->hdr_len < need) {
            if (*pos == last) {
                return NGX_AGAIN;
            }

            p->hdr[p->hdr_len++] = *(*pos)++;
        }

        if (need > 2) {
            break;
        }

        if (ngx_voice_ws_check_header(p, ev) != NGX_OK) {
            return NGX_ERROR;
        }

        len = p->hdr[1] & 0x7f;
        need = 2 + (len == 126 ? 2 : len == 127 ? 8 : 0) + (p->masked ? 4 : 0);

        if (need == 2) {
            break;
        }
    }

    h = p->hdr + 2;
    len = p->hdr[1] & 0x7f;

    if (len == 126) {
        len = ((uint64_t) h[0] << 8) | h[1];
        h += 2;

    } else if (len == 127) {
        if (h[0] & 0x80) {
            ngx_voice_ws_error(ev, NGX_VOICE_WS_CLOSE_PROTOCOL,
                               "frame length has its top bit set");
            return NGX_ERROR;
        }

        len = 0;

        for (i = 0; i < 8; i++) {
            len = (len << 8) | h[i];
        }

        h += 8;
    }

    if (p->masked) {
        ngx_memcpy(p->mask, h, 4);
    }

    p->left = len;
    p->mask_pos = 0;
    p->hdr_len = 0;
    p->in_frame = 1;
    p->control_len = 0;

    if (p->opcode == NGX_VOICE_WS_TEXT || p->opcode == NGX_VOICE_WS_BINARY) {
        p->in_message = 1;
        p->msg_opcode = p->opcode;
        p->msg_len = 0;
        p->utf8 = 0;
        p->first_piece = 1;
    }

    return NGX_OK;
}


/* the rules that the first two bytes of a frame already decide */
static ngx_int_t
ngx_voice_ws_check_header(ngx_voice_ws_parser_t *p, ngx_voice_ws_event_t *ev)
{
    ngx_uint_t  opcode, masked;

    if (p->hdr[0] & 0x70) {
        ngx_voice_ws_error(ev, NGX_VOICE_WS_CLOSE_PROTOCOL,
                           "reserved bits set without an extension");
        return NGX_ERROR;
    }

    opcode = p->hdr[0] & 0x0f;
    masked = (p->hdr[1] & 0x80) ? 1 : 0;

    p->fin = (p->hdr[0] & 0x80) ? 1 : 0;
    p->opcode = opcode;
    p->masked = masked;

    if (masked != p->server) {
        ngx_voice_ws_error(ev, NGX_VOICE_WS_CLOSE_PROTOCOL,
                           p->server ? "unmasked frame from the client"
                                     : "masked frame from the server");
        return NGX_ERROR;
    }

    switch (opcode) {

    case NGX_VOICE_WS_CLOSE:
    case NGX_VOICE_WS_PING:
    case NGX_VOICE_WS_PONG:

        if (!p->fin) {
            ngx_voice_ws_error(ev, NGX_VOICE_WS_CLOSE_PROTOCOL,
                               "fragmented control frame");
            return NGX_ERROR;
        }

        if ((p->hdr[1] & 0x7f) > NGX_VOICE_WS_CONTROL_MAX) {
            ngx_voice_ws_error(ev, NGX_VOICE_WS_CLOSE_PROTOCOL,
                               "control frame longer than 125 bytes");
            return NGX_ERROR;
        }

        return NGX_OK;

    case NGX_VOICE_WS_CONT:

        if (!p->in_message) {
            ngx_voice_ws_error(ev, NGX_VOICE_WS_CLOSE_PROTOCOL,
                               "continuation frame without a message");
            return NGX_ERROR;
        }

        return NGX_OK;

    case NGX_VOICE_WS_TEXT:
    case NGX_VOICE_WS_BINARY:

        if (p->in_message) {
            ngx_voice_ws_error(ev, NGX_VOICE_WS_CLOSE_PROTOCOL,
                               "new message inside a fragmented one");
            return NGX_ERROR;
        }

        return NGX_OK;

    default:
        ngx_voice_ws_error(ev, NGX_VOICE_WS_CLOSE_PROTOCOL,
                           "unknown opcode");
        return NGX_ERROR;
    }
}


static void
ngx_voice_ws_control_event(ngx_voice_ws_parser_t *p, ngx_voice_ws_event_t *ev)
{
    uint32_t  utf8;

    if (p->masked) {
        ngx_voice_ws_mask(p->control, p->control_len, p->mask, 0);
    }

    ev->type = NGX_VOICE_WS_EV_CONTROL;
    ev->opcode = p->opcode;
    ev->data = p->control;
    ev->len = p->control_len;
    ev->first = 1;
    ev->last = 1;

    if (p->opcode != NGX_VOICE_WS_CLOSE) {
        return;
    }

    if (p->control_len == 0) {
        ev->code = NGX_VOICE_WS_CLOSE_NO_STATUS;
        return;
    }

    if (p->control_len == 1) {
        ngx_voice_ws_error(ev, NGX_VOICE_WS_CLOSE_PROTOCOL,
                           "close frame with a one-byte payload");
        return;
    }

    ev->code = ((ngx_uint_t) p->control[0] << 8) | p->control[1];

    if (!ngx_voice_ws_close_code_valid(ev->code)) {
        ngx_voice_ws_error(ev, NGX_VOICE_WS_CLOSE_PROTOCOL,
                           "invalid close code");
        return;
    }

    utf8 = 0;
    ngx_voice_utf8_check(&utf8, p->control + 2, p->control_len - 2);

    if (utf8 != 0) {
        ngx_voice_ws_error(ev, NGX_VOICE_WS_CLOSE_BAD_DATA,
                           "invalid UTF-8 in a close reason");
        return;
    }

    ev->data = p->control + 2;
    ev->len = p->control_len - 2;
}


static void
ngx_voice_ws_error(ngx_voice_ws_event_t *ev, ngx_uint_t code,
    const char *reason)
{
    ev->type = NGX_VOICE_WS_EV_ERROR;
    ev->code = code;
    ev->reason = reason;
}


static ngx_int_t
ngx_voice_ws_close_code_valid(ngx_uint_t code)
{
    if (code >= 3000 && code <= 4999) {
        return 1;
    }

    switch (code) {
    case 1000: case 1001: case 1002: case 1003:
    case 1007: case 1008: case 1009: case 1010: case 1011:
    case 1012: case 1013: case 1014:
        return 1;
    }

    return 0;
}


u_char *
ngx_voice_ws_write_header(u_char *dst, ngx_uint_t opcode, ngx_uint_t fin,
    uint64_t len, u_char *mask)
{
    ngx_uint_t  i, masked;

    masked = mask ? 0x80 : 0;

    *dst++ = (u_char) ((fin ? 0x80 : 0) | opcode);

    if (len < 126) {
        *dst++ = (u_char) (masked | len);

    } else if (len <= 0xffff) {
        *dst++ = (u_char) (masked | 126);
        *dst++ = (u_char) (len >> 8);
        *dst++ = (u_char) len;

    } else {
        *dst++ = (u_char) (masked | 127);

        for (i = 8; i > 0; i--) {
            *dst++ = (u_char) (len >> ((i - 1) * 8));
        }
    }

    if (mask) {
        dst = ngx_cpymem(dst, mask, 4);
    }

    return dst;
}


/*
 * A word at a time: the key, turned to start at "offset", twice over in
 * a 64-bit word (the same bytes in memory on either byte order); the
 * tail byte by byte.
 */
void
ngx_voice_ws_mask(u_char *data, size_t len, u_char *mask, ngx_uint_t offset)
{
    ngx_voice_ws_mask_copy(data, data, len, mask, offset);
}


void
ngx_voice_ws_mask_copy(u_char *dst, u_char *src, size_t len, u_char *mask,
    ngx_uint_t offset)
{
    size_t    i;
    uint32_t  k;
    uint64_t  m, w;
    u_char    key[4];

    for (i = 0; i < 4; i++) {
        key[i] = mask[(offset + i) & 3];
    }

    ngx_memcpy(&k, key, 4);
    m = ((uint64_t) k << 32) | k;

    while (len >= 8) {
        ngx_memcpy(&w, src, 8);
        w ^= m;
        ngx_memcpy(dst, &w, 8);

        src += 8;
        dst += 8;
        len -= 8;
    }

    for (i = 0; i < len; i++) {
        dst[i] = src[i] ^ key[i & 3];
    }
}


ngx_int_t
ngx_voice_utf8_valid(u_char *p, size_t len)
{
    uint32_t  state;

    state = 0;
    ngx_voice_utf8_check(&state, p, len);

    return state == 0;
}


size_t
ngx_voice_ws_close_payload(u_char *dst, ngx_uint_t code, const char *reason)
{
    size_t  len;

    dst[0] = (u_char) (code >> 8);
    dst[1] = (u_char) code;

    len = reason ? ngx_strlen(reason) : 0;
    len = ngx_min(len, NGX_VOICE_WS_CONTROL_MAX - 2);

    ngx_memcpy(dst + 2, reason, len);

    return 2 + len;
}


/*
 * The server's answer to our handshake, [start, end) up to and with its
 * empty line: NGX_OK; NGX_DECLINED: a status other than 101; NGX_ERROR.
 */
ngx_int_t
ngx_voice_ws_parse_response(u_char *start, u_char *end, u_char *key,
    ngx_log_t *log)
{
    ngx_int_t  status;

    /* "HTTP/1.1 " three digits, then a space or the end of the line */
    if (end - start < 14 || ngx_strncmp(start, "HTTP/1.1 ", 9) != 0
        || (start[12] != ' ' && start[12] != '\r'))
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "voice: OpenAI answered the WebSocket handshake "
                      "with something that is not HTTP/1.1");
        return NGX_ERROR;
    }

    status = ngx_atoi(start + 9, 3);

    if (status != 101) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "voice: OpenAI refused the WebSocket handshake "
                      "with status %i", status);
        return NGX_DECLINED;
    }

    return ngx_voice_ws_check_headers(start, end, key, log);
}


/* Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 4.2.2) */
void
ngx_voice_ws_accept(u_char *key, size_t len, u_char *accept)
{
    ngx_str_t   digest, out;
    ngx_sha1_t  sha1;
    u_char      hash[20];

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, key, len);
    ngx_sha1_update(&sha1, NGX_VOICE_WS_GUID, sizeof(NGX_VOICE_WS_GUID) - 1);
    ngx_sha1_final(hash, &sha1);

    digest.data = hash;
    digest.len = sizeof(hash);
    out.data = accept;
    ngx_encode_base64(&out, &digest);
}


/*
 * Upgrade, Connection and the Sec-WebSocket-Accept our key asks for.
 * Every line ends in CRLF (RFC 9112 2.2 lets a recipient accept a bare LF,
 * but a WebSocket server that sends one is not one we know); values are
 * compared without the whitespace around them (RFC 9110 5.5).
 */
static ngx_int_t
ngx_voice_ws_check_headers(u_char *p, u_char *end, u_char *key,
    ngx_log_t *log)
{
    u_char      *line, *eol;
    ngx_str_t    value;
    const char  *missing;
    ngx_uint_t   upgrade, connection, accept;
    u_char       expected[NGX_VOICE_WS_ACCEPT_LEN];

    ngx_voice_ws_accept(key, NGX_VOICE_WS_KEY_LEN, expected);

    upgrade = 0;
    connection = 0;
    accept = 0;

    /* the status line's end; the caller found the empty line */
    line = ngx_strlchr(p, end, '\n');

    while (line && ++line < end) {
        eol = ngx_strlchr(line, end, '\n');

        if (eol == NULL || eol == line || eol[-1] != '\r') {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "voice: OpenAI WebSocket handshake has a header "
                          "line not ended by CRLF");
            return NGX_ERROR;
        }

        eol--;

        if (ngx_voice_ws_header_is(line, eol, "Upgrade", &value)) {
            upgrade = (value.len == 9
                       && ngx_strncasecmp(value.data, (u_char *) "websocket",
                                          9)
                          == 0);

        } else if (ngx_voice_ws_header_is(line, eol, "Connection", &value)) {
            connection = ngx_voice_ws_has_token(&value, "upgrade");

        } else if (ngx_voice_ws_header_is(line, eol, "Sec-WebSocket-Accept",
                                          &value))
        {
            accept = (value.len == NGX_VOICE_WS_ACCEPT_LEN
                      && ngx_memcmp(value.data, expected,
                                    NGX_VOICE_WS_ACCEPT_LEN)
                         == 0);
        }

        line = eol + 1;
    }

    missing = !accept ? "a wrong Sec-WebSocket-Accept"
              : !upgrade ? "no Upgrade: websocket"
              : !connection ? "no Connection: upgrade"
              : NULL;

    if (missing) {
        /* log-safe: one of the constant strings above */
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "voice: OpenAI WebSocket handshake has %s", missing);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* "Name: value" with the name compared case-insensitively, value trimmed */
static ngx_int_t
ngx_voice_ws_header_is(u_char *line, u_char *end, const char *name,
    ngx_str_t *value)
{
    size_t   len;
    u_char  *p;

    len = ngx_strlen(name);

    if ((size_t) (end - line) <= len || line[len] != ':'
        || ngx_strncasecmp(line, (u_char *) name, len) != 0)
    {
        return 0;
    }

    for (p = line + len + 1; p < end && (*p == ' ' || *p == '\t'); p++) {
        /* void */
    }

    while (end > p && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }

    value->data = p;
    value->len = end - p;

    return 1;
}


/* a comma-separated list (RFC 9110 5.6.1) holds the token, any case */
static ngx_uint_t
ngx_voice_ws_has_token(ngx_str_t *list, const char *token)
{
    size_t   len;
    u_char  *p, *last, *start, *stop;

    len = ngx_strlen(token);
    p = list->data;
    last = p + list->len;

    while (p < last) {
        start = p;

        while (p < last && *p != ',') {
            p++;
        }

        stop = p++;

        while (start < stop && (*start == ' ' || *start == '\t')) {
            start++;
        }

        while (stop > start && (stop[-1] == ' ' || stop[-1] == '\t')) {
            stop--;
        }

        if ((size_t) (stop - start) == len
            && ngx_strncasecmp(start, (u_char *) token, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/*
 * An incremental UTF-8 check (RFC 3629: no overlongs, no surrogates,
 * nothing past U+10FFFF).  The state packs the continuation bytes still
 * due and the range the next one must fall in; 0 is "between characters".
 */
static void
ngx_voice_utf8_check(uint32_t *state, u_char *p, size_t len)
{
    u_char    c;
    uint32_t  st, rem, lo, hi;
    uint64_t  w;

    st = *state;

    if (st == NGX_VOICE_UTF8_REJECT) {
        return;
    }

    rem = st & 0xff;
    lo = (st >> 8) & 0xff;
    hi = (st >> 16) & 0xff;

    while (len) {

        if (rem == 0) {

            /*
             * Between characters: ASCII, most of what peers send (all of
             * the base64 audio), is passed over 8 bytes at a time.
             */

            while (len >= 8) {
                ngx_memcpy(&w, p, 8);

                if (w & 0x8080808080808080ULL) {
                    break;
                }

                p += 8;
                len -= 8;
            }

            if (len == 0) {
                break;
            }
        }

        c = *p++;
        len--;

        if (rem == 0) {
            if (c < 0x80) {
                continue;
            }

            lo = 0x80;
            hi = 0xbf;

            if (c >= 0xc2 && c <= 0xdf) {
                rem = 1;

            } else if (c >= 0xe0 && c <= 0xef) {
                rem = 2;

                if (c == 0xe0) {
                    lo = 0xa0;

                } else if (c == 0xed) {
                    hi = 0x9f;
                }

            } else if (c >= 0xf0 && c <= 0xf4) {
                rem = 3;

                if (c == 0xf0) {
                    lo = 0x90;

                } else if (c == 0xf4) {
                    hi = 0x8f;
                }

            } else {
                *state = NGX_VOICE_UTF8_REJECT;
                return;
            }

            continue;
        }

        if (c < lo || c > hi) {
            *state = NGX_VOICE_UTF8_REJECT;
            return;
        }

        rem--;
        lo = 0x80;
        hi = 0xbf;
    }

    *state = rem ? (rem | (lo << 8) | (hi << 16)) : 0;
}
