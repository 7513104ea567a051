
/*
 * Copyright (C) ngx_voice authors
 *
 * voice_transcript_log: one JSON line per utterance, written through a
 * per-worker buffer into a file opened (and reopened on "nginx -s
 * reopen") by nginx's own open-file machinery, readable by its owner only.
 */


#ifndef _NGX_VOICE_TRANSCRIPT_H_INCLUDED_
#define _NGX_VOICE_TRANSCRIPT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* a line longer than this is cut, with "cut":true */
#define NGX_VOICE_TRANSCRIPT_LINE_MAX  4096


typedef struct ngx_voice_transcript_file_s  ngx_voice_transcript_file_t;


typedef struct {
    ngx_voice_transcript_file_t  *file;       /* NULL: off */
} ngx_voice_transcript_conf_t;


typedef struct {
    ngx_str_t                    *call_sid;
    ngx_str_t                    *item_id;
    ngx_str_t                    *previous_item_id;
    ngx_uint_t                    assistant;
    ngx_str_t                    *text;
    ngx_uint_t                    interrupted;
    ngx_msec_t                    played_ms;
    ngx_msec_t                    generated_ms;
} ngx_voice_transcript_line_t;


void ngx_voice_transcript_create_conf(ngx_voice_transcript_conf_t *conf);
char *ngx_voice_transcript_merge_conf(ngx_conf_t *cf,
    ngx_voice_transcript_conf_t *prev, ngx_voice_transcript_conf_t *conf);

/* voice_transcript_log path | off (cmd->offset: the conf) */
char *ngx_voice_transcript_set_log(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* buffers one line; NGX_ERROR only when it could not be written at all */
ngx_int_t ngx_voice_transcript_write(ngx_voice_transcript_file_t *file,
    ngx_voice_transcript_line_t *line, ngx_log_t *log);


#endif /* _NGX_VOICE_TRANSCRIPT_H_INCLUDED_ */
