
/*
 * Copyright (C) ngx_voice authors
 *
 * The call after "101 Switching Protocols".  The relay to OpenAI is not
 * built yet (it is the media-stream issue): until it is, an accepted
 * stream is closed at once with 1011, which lets Twilio go on with any
 * TwiML after <Connect> (voice_fallback_say).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice.h"


ngx_int_t
ngx_voice_call_start(ngx_http_request_t *r)
{
    ngx_buf_t    *b;
    ngx_chain_t   out;

    static u_char  close_frame[] = {
        0x88, 0x0d, 0x03, 0xf3,                     /* FIN|close, 1011 */
        'n', 'o', 't', ' ', 'r', 'e', 'l', 'a', 'y', 'e', 'd'
    };

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = close_frame;
    b->last = close_frame + sizeof(close_frame);
    b->memory = 1;
    b->last_buf = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
