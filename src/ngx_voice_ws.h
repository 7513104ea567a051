
/*
 * Copyright (C) ngx_voice authors
 *
 * RFC 6455 framing over buffers, no I/O, for both roles: the server side
 * (Twilio's stream: masked frames in, unmasked out) and the client side
 * (OpenAI: unmasked in, masked out with fresh random keys).
 */


#ifndef _NGX_VOICE_WS_H_INCLUDED_
#define _NGX_VOICE_WS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_VOICE_WS_CONT            0x0
#define NGX_VOICE_WS_TEXT            0x1
#define NGX_VOICE_WS_BINARY          0x2
#define NGX_VOICE_WS_CLOSE           0x8
#define NGX_VOICE_WS_PING            0x9
#define NGX_VOICE_WS_PONG            0xa

#define NGX_VOICE_WS_CLOSE_NORMAL       1000
#define NGX_VOICE_WS_CLOSE_GOING        1001
#define NGX_VOICE_WS_CLOSE_PROTOCOL     1002
#define NGX_VOICE_WS_CLOSE_UNSUPPORTED  1003
#define NGX_VOICE_WS_CLOSE_NO_STATUS    1005
#define NGX_VOICE_WS_CLOSE_ABNORMAL     1006
#define NGX_VOICE_WS_CLOSE_BAD_DATA     1007
#define NGX_VOICE_WS_CLOSE_POLICY       1008
#define NGX_VOICE_WS_CLOSE_TOO_BIG      1009
#define NGX_VOICE_WS_CLOSE_ERROR        1011

#define NGX_VOICE_WS_CONTROL_MAX     125
#define NGX_VOICE_WS_HEADER_MAX      14

/* a Sec-WebSocket-Key (16 bytes) and a Sec-WebSocket-Accept, in base64 */
#define NGX_VOICE_WS_KEY_LEN         24
#define NGX_VOICE_WS_ACCEPT_LEN      28


/* what one call of ngx_voice_ws_parse() found */
typedef enum {
    NGX_VOICE_WS_EV_AGAIN = 0,      /* the buffer is used up */
    NGX_VOICE_WS_EV_DATA,           /* a piece of a text/binary message */
    NGX_VOICE_WS_EV_CONTROL,        /* a whole ping, pong or close */
    NGX_VOICE_WS_EV_ERROR           /* close with ev->code */
} ngx_voice_ws_ev_type_e;


typedef struct {
    ngx_voice_ws_ev_type_e       type;
    ngx_uint_t                   opcode;    /* message or control opcode */
    u_char                      *data;      /* unmasked in place */
    size_t                       len;
    unsigned                     first:1;   /* first piece of a message */
    unsigned                     last:1;    /* last piece of a message */
    ngx_uint_t                   code;      /* close code (received/error) */
    const char                  *reason;    /* why, for an error */
} ngx_voice_ws_event_t;


typedef struct {
    unsigned                     server:1;  /* expects masked frames */
    unsigned                     in_frame:1;
    unsigned                     fin:1;
    unsigned                     masked:1;
    unsigned                     in_message:1;
    unsigned                     first_piece:1;

    ngx_uint_t                   opcode;        /* current frame */
    ngx_uint_t                   msg_opcode;    /* current message */

    u_char                       hdr[NGX_VOICE_WS_HEADER_MAX];
    size_t                       hdr_len;

    uint64_t                     left;          /* payload bytes to come */
    u_char                       mask[4];
    ngx_uint_t                   mask_pos;

    uint64_t                     msg_len;       /* so far */
    uint32_t                     utf8;          /* validator state */

    u_char                       control[NGX_VOICE_WS_CONTROL_MAX];
    size_t                       control_len;
} ngx_voice_ws_parser_t;


void ngx_voice_ws_parser_init(ngx_voice_ws_parser_t *p, ngx_uint_t server);

/*
 * Consumes bytes from [*pos, last) and reports the next event, advancing
 * *pos.  Payload is unmasked in place, so data events point into the
 * caller's buffer and nothing is copied except control frames.
 */
void ngx_voice_ws_parse(ngx_voice_ws_parser_t *p, u_char **pos, u_char *last,
    ngx_voice_ws_event_t *ev);

/*
 * Writes a frame header for a payload of "len" bytes; with "mask" set
 * (client role) the key is written too and the caller masks the payload
 * with ngx_voice_ws_mask().  Returns the end of the header.
 */
u_char *ngx_voice_ws_write_header(u_char *dst, ngx_uint_t opcode,
    ngx_uint_t fin, uint64_t len, u_char *mask);

void ngx_voice_ws_mask(u_char *data, size_t len, u_char *mask,
    ngx_uint_t offset);

/* copies [src, src + len) to dst masked; dst may be src */
void ngx_voice_ws_mask_copy(u_char *dst, u_char *src, size_t len,
    u_char *mask, ngx_uint_t offset);

/* whole UTF-8 text (RFC 3629) */
ngx_int_t ngx_voice_utf8_valid(u_char *p, size_t len);

/*
 * The server's answer to a client handshake with "key", [start, end) up
 * to and with its empty line: NGX_OK; NGX_DECLINED: a status other than
 * 101; NGX_ERROR: not a valid 101 for that key.  Each failure is logged.
 */
ngx_int_t ngx_voice_ws_parse_response(u_char *start, u_char *end,
    u_char *key, ngx_log_t *log);

/* Sec-WebSocket-Accept (NGX_VOICE_WS_ACCEPT_LEN bytes) for a key */
void ngx_voice_ws_accept(u_char *key, size_t len, u_char *accept);

/* close payload: code (network order) then reason, at most 125 bytes */
size_t ngx_voice_ws_close_payload(u_char *dst, ngx_uint_t code,
    const char *reason);


#endif /* _NGX_VOICE_WS_H_INCLUDED_ */
