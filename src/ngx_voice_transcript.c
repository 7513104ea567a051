
/*
 * Copyright (C) ngx_voice authors
 *
 * The transcript log.  Transcripts are personal data: the log is off by
 * default, and its file is made readable by its owner only.  Lines go
 * into a per-worker buffer, written out when it is full, a second after
 * the first line in it, before nginx reopens the file, and at exit.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include "ngx_voice_json.h"
#include "ngx_voice_transcript.h"


#define NGX_VOICE_TRANSCRIPT_BUFFER  65536
#define NGX_VOICE_TRANSCRIPT_FLUSH   1000


struct ngx_voice_transcript_file_s {
    ngx_open_file_t              *file;
    u_char                       *start;     /* the buffer, per worker */
    u_char                       *pos;
    u_char                       *end;
    ngx_event_t                   timer;
    ino_t                         private_ino;  /* the file made 0600 */
    dev_t                         private_dev;
    time_t                        error_logged;   /* write errors, last */
};


static ngx_voice_transcript_file_t *ngx_voice_transcript_open(ngx_conf_t *cf,
    ngx_str_t *name);
static ngx_int_t ngx_voice_transcript_precreate(ngx_conf_t *cf,
    ngx_str_t *name);
static u_char *ngx_voice_transcript_format(u_char *p, u_char *last,
    ngx_voice_transcript_line_t *line);
static void ngx_voice_transcript_flush(ngx_open_file_t *file,
    ngx_log_t *log);
static void ngx_voice_transcript_flush_timer(ngx_event_t *ev);


void
ngx_voice_transcript_create_conf(ngx_voice_transcript_conf_t *conf)
{
    conf->file = NGX_CONF_UNSET_PTR;
}


char *
ngx_voice_transcript_merge_conf(ngx_conf_t *cf,
    ngx_voice_transcript_conf_t *prev, ngx_voice_transcript_conf_t *conf)
{
    ngx_conf_merge_ptr_value(conf->file, prev->file, NULL);

    return NGX_CONF_OK;
}


char *
ngx_voice_transcript_set_log(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_voice_transcript_conf_t  *tcf;

    ngx_str_t  *value;

    tcf = (ngx_voice_transcript_conf_t *) ((u_char *) conf + cmd->offset);

    if (tcf->file != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        tcf->file = NULL;
        return NGX_CONF_OK;
    }

    tcf->file = ngx_voice_transcript_open(cf, &value[1]);

    return tcf->file ? NGX_CONF_OK : NGX_CONF_ERROR;
}


/* one buffer per file, whatever the locations that write to it */
static ngx_voice_transcript_file_t *
ngx_voice_transcript_open(ngx_conf_t *cf, ngx_str_t *name)
{
    ngx_open_file_t              *file;
    ngx_voice_transcript_file_t  *tf;

    file = ngx_conf_open_file(cf->cycle, name);
    if (file == NULL) {
        return NULL;
    }

    if (file->data) {
        if (file->flush != ngx_voice_transcript_flush) {
            /* log-safe: configuration text */
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"voice_transcript_log\" \"%V\" is also "
                               "another log's file", name);
            return NULL;
        }

        return file->data;
    }

    if (ngx_voice_transcript_precreate(cf, &file->name) != NGX_OK) {
        return NULL;
    }

    tf = ngx_pcalloc(cf->pool, sizeof(ngx_voice_transcript_file_t));
    if (tf == NULL) {
        return NULL;
    }

    tf->start = ngx_pnalloc(cf->pool, NGX_VOICE_TRANSCRIPT_BUFFER);
    if (tf->start == NULL) {
        return NULL;
    }

    tf->file = file;
    tf->pos = tf->start;
    tf->end = tf->start + NGX_VOICE_TRANSCRIPT_BUFFER;

    tf->timer.handler = ngx_voice_transcript_flush_timer;
    tf->timer.data = tf;
    tf->timer.log = &cf->cycle->new_log;
    tf->timer.cancelable = 1;

    file->flush = ngx_voice_transcript_flush;
    file->data = tf;

    return tf;
}


/* a new file is made with mode 0600 before nginx opens it */
static ngx_int_t
ngx_voice_transcript_precreate(ngx_conf_t *cf, ngx_str_t *name)
{
    ngx_fd_t  fd;

    fd = ngx_open_file(name->data, NGX_FILE_APPEND, NGX_FILE_CREATE_OR_OPEN,
                       S_IRUSR|S_IWUSR);

    if (fd == NGX_INVALID_FILE) {
        /* log-safe: configuration text */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"voice_transcript_log\": cannot open \"%V\"",
                           name);
        return NGX_ERROR;
    }

    (void) ngx_close_file(fd);

    return NGX_OK;
}


ngx_int_t
ngx_voice_transcript_write(ngx_voice_transcript_file_t *tf,
    ngx_voice_transcript_line_t *line, ngx_log_t *log)
{
    if (tf->end - tf->pos < NGX_VOICE_TRANSCRIPT_LINE_MAX) {
        ngx_voice_transcript_flush(tf->file, log);
    }

    tf->pos = ngx_voice_transcript_format(tf->pos,
                                          tf->pos
                                          + NGX_VOICE_TRANSCRIPT_LINE_MAX,
                                          line);

    if (!tf->timer.timer_set) {
        /* the cycle's log: the call's goes with its connection */
        tf->timer.log = ngx_cycle->log;
        ngx_add_timer(&tf->timer, NGX_VOICE_TRANSCRIPT_FLUSH);
    }

    return NGX_OK;
}


/*
 * {"time":..,"call_sid":..,"item_id":..,"previous_item_id":..,"who":..,
 *  "text":..[,"interrupted":true,"played_ms":..,"generated_ms":..]
 *  [,"cut":true]}, cut to fit in [p, last)
 */
static u_char *
ngx_voice_transcript_format(u_char *p, u_char *last,
    ngx_voice_transcript_line_t *line)
{
    u_char  *text, *end;
    size_t   room, n;

    p = ngx_sprintf(p, "{\"time\":\"%V\",\"call_sid\":\"",
                    &ngx_cached_http_log_iso8601);
    p = ngx_voice_json_escape(p, line->call_sid->data,
                              ngx_min(line->call_sid->len, 64));
    p = ngx_cpymem(p, "\",\"item_id\":\"", sizeof("\",\"item_id\":\"") - 1);
    p = ngx_voice_json_escape(p, line->item_id->data,
                              ngx_min(line->item_id->len, 64));

    if (line->previous_item_id->len) {
        p = ngx_cpymem(p, "\",\"previous_item_id\":\"",
                       sizeof("\",\"previous_item_id\":\"") - 1);
        p = ngx_voice_json_escape(p, line->previous_item_id->data,
                                  ngx_min(line->previous_item_id->len, 64));
        p = ngx_cpymem(p, "\"", 1);

    } else {
        p = ngx_cpymem(p, "\",\"previous_item_id\":null",
                       sizeof("\",\"previous_item_id\":null") - 1);
    }

    p = ngx_sprintf(p, ",\"who\":\"%s\",\"text\":\"",
                    line->assistant ? "assistant" : "caller");

    /* the text takes what is left, escaped; the rest of the line is small */

    end = last - 128;
    text = line->text->data;
    n = line->text->len;

    while (n && p < end) {
        room = (end - p) / 6;

        if (room == 0) {
            break;
        }

        room = ngx_min(room, n);

        /* a cut never splits a UTF-8 character */
        while (room < n && room && (text[room] & 0xc0) == 0x80) {
            room--;
        }

        if (room == 0) {
            break;
        }

        p = ngx_voice_json_escape(p, text, room);
        text += room;
        n -= room;
    }

    p = ngx_cpymem(p, "\"", 1);

    if (line->interrupted) {
        p = ngx_sprintf(p, ",\"interrupted\":true,\"played_ms\":%M,"
                           "\"generated_ms\":%M",
                        line->played_ms, line->generated_ms);
    }

    if (n) {
        p = ngx_cpymem(p, ",\"cut\":true", sizeof(",\"cut\":true") - 1);
    }

    p = ngx_cpymem(p, "}\n", 2);

    return p;
}


static void
ngx_voice_transcript_flush(ngx_open_file_t *file, ngx_log_t *log)
{
    ssize_t                       n;
    size_t                        len;
    ngx_file_info_t               fi;
    ngx_voice_transcript_file_t  *tf;

    tf = file->data;

    if (tf->timer.timer_set) {
        ngx_del_timer(&tf->timer);
    }

    len = tf->pos - tf->start;

    if (len == 0) {
        return;
    }

    tf->pos = tf->start;

    if (file->fd == NGX_INVALID_FILE) {
        return;
    }

    /*
     * Reopened, nginx made the new file with its own mode.  The file is
     * told by its inode: a new descriptor may have an old one's number.
     * One that is private already is left alone (the master may own it).
     */

    if (ngx_fd_info(file->fd, &fi) == NGX_FILE_ERROR) {
        /* log-safe: names from the configuration */
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      ngx_fd_info_n " \"%V\" failed", &file->name);

    } else if (fi.st_ino != tf->private_ino
               || fi.st_dev != tf->private_dev)
    {
        if (ngx_file_access(&fi) != (S_IRUSR|S_IWUSR)
            && fchmod(file->fd, S_IRUSR|S_IWUSR) == -1)
        {
            /* log-safe: names from the configuration */
            ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                          "fchmod(\"%V\") failed", &file->name);
        }

        tf->private_ino = fi.st_ino;
        tf->private_dev = fi.st_dev;
    }

    n = ngx_write_fd(file->fd, tf->start, len);

    if ((size_t) n == len) {
        return;
    }

    /* a full disk fails every flush: one line a minute, as access_log */

    if (ngx_time() - tf->error_logged < 60) {
        return;
    }

    tf->error_logged = ngx_time();

    if (n == -1) {
        /* log-safe: names from the configuration */
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      ngx_write_fd_n " to \"%V\" failed", &file->name);

    } else if ((size_t) n != len) {
        /* log-safe: names from the configuration */
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      ngx_write_fd_n " to \"%V\" was incomplete: %z of %uz",
                      &file->name, n, len);
    }
}


static void
ngx_voice_transcript_flush_timer(ngx_event_t *ev)
{
    ngx_voice_transcript_file_t  *tf = ev->data;

    ngx_voice_transcript_flush(tf->file, ev->log);
}
