
/*
 * Copyright (C) ngx_voice authors
 *
 * Small helpers shared by both legs: request headers, and what may reach
 * a log line.
 */


#ifndef _NGX_VOICE_UTIL_H_INCLUDED_
#define _NGX_VOICE_UTIL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* the buffer ngx_voice_log_escape() writes into, its NUL included */
#define NGX_VOICE_LOG_TEXT_MAX  256


/* the first request header called "name", case-insensitively */
ngx_table_elt_t *ngx_voice_find_header(ngx_http_request_t *r,
    ngx_str_t *name);
ngx_table_elt_t *ngx_voice_header_with_token(ngx_http_request_t *r,
    ngx_str_t *name, const char *token);

/*
 * A CallSid for the log: itself when it has Twilio's exact shape
 * (CA + 32 hex digits), else "-", so nothing a client chose is logged.
 */
ngx_str_t *ngx_voice_loggable_sid(ngx_str_t *sid);
ngx_uint_t ngx_voice_call_sid_is_valid(ngx_str_t *sid);

/*
 * Text a peer chose, made safe for one log line: control bytes, quotes,
 * backslashes and bytes that are not UTF-8 become \xNN; text that does
 * not fit in "buf" (NGX_VOICE_LOG_TEXT_MAX bytes) is cut and ends in
 * "...".  Returns "buf", NUL-terminated, for a "%s" of the log call.
 */
char *ngx_voice_log_escape(u_char *buf, const u_char *src, size_t len);


#endif /* _NGX_VOICE_UTIL_H_INCLUDED_ */
