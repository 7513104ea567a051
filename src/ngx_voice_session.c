
/*
 * Copyright (C) ngx_voice authors
 *
 * The OpenAI session a location asks for: its directives (turn detection,
 * MCP servers, instructions from a file) and the GA session.update text,
 * built once per location at configuration time with yajl's generator,
 * so instructions of any content are escaped properly and no call spends
 * time on it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <yajl/yajl_gen.h>
#include "ngx_voice_secret.h"
#include "ngx_voice_session.h"
#include "ngx_voice_ws.h"


#define ngx_voice_gen_str(g, s)                                              \
    yajl_gen_string(g, (const unsigned char *) s, sizeof(s) - 1)

#define ngx_voice_gen_ngx_str(g, s)                                          \
    yajl_gen_string(g, (const unsigned char *) (s)->data, (s)->len)


static ngx_int_t ngx_voice_session_td_param(ngx_voice_turn_detection_t *td,
    ngx_uint_t semantic, ngx_str_t *value);
static ngx_int_t ngx_voice_session_threshold(ngx_str_t *v);
static ngx_int_t ngx_voice_session_param(ngx_str_t *value, const char *name,
    ngx_str_t *v);
static char *ngx_voice_session_mcp_param(ngx_conf_t *cf,
    ngx_voice_mcp_server_t *srv, ngx_str_t *value);
static char *ngx_voice_session_mcp_header(ngx_conf_t *cf,
    ngx_voice_mcp_server_t *srv, ngx_str_t *value);
static char *ngx_voice_session_mcp_tools(ngx_conf_t *cf,
    ngx_voice_mcp_server_t *srv, ngx_str_t *list);
static ngx_int_t ngx_voice_session_read_file(ngx_conf_t *cf,
    ngx_str_t *name, ngx_str_t *out);
static ngx_int_t ngx_voice_session_check_text(ngx_conf_t *cf,
    ngx_voice_session_conf_t *conf);
static void ngx_voice_session_gen_update(yajl_gen g,
    ngx_voice_session_conf_t *conf);
static void ngx_voice_session_gen_audio(yajl_gen g,
    ngx_voice_session_conf_t *conf);
static void ngx_voice_session_gen_greeting(yajl_gen g,
    ngx_voice_session_conf_t *conf);
static void ngx_voice_session_turn_detection(yajl_gen g,
    ngx_voice_turn_detection_t *td);
static void ngx_voice_session_tools(yajl_gen g, ngx_array_t *servers);
static void ngx_voice_session_end_call_tool(yajl_gen g);
static void ngx_voice_session_transfer_tool(yajl_gen g,
    ngx_array_t *transfers);
static void ngx_voice_session_transfer_descriptions(yajl_gen g,
    ngx_array_t *transfers);
static ngx_int_t ngx_voice_session_destination(ngx_str_t *dest,
    ngx_uint_t *sip);
static ngx_int_t ngx_voice_session_take(ngx_conf_t *cf, yajl_gen g,
    ngx_str_t *out);
static void ngx_voice_session_wipe(void *data);


static const char  *ngx_voice_voices[] = {
    "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse",
    "marin", "cedar", NULL
};


void
ngx_voice_session_create_conf(ngx_voice_session_conf_t *conf)
{
    /*
     * set by ngx_pcalloc():
     *
     *     conf->voice = { 0, NULL };
     *     conf->instructions = { 0, NULL };
     *     conf->greeting = { 0, NULL };
     *     conf->session_update = { 0, NULL };
     *     conf->greeting_item = { 0, NULL };
     */

    conf->turn_detection = NGX_CONF_UNSET_PTR;
    conf->mcp_servers = NGX_CONF_UNSET_PTR;
    conf->hangup = NGX_CONF_UNSET;
    conf->transfers = NGX_CONF_UNSET_PTR;
}


char *
ngx_voice_session_merge_conf(ngx_conf_t *cf, ngx_voice_session_conf_t *prev,
    ngx_voice_session_conf_t *conf)
{
    ngx_conf_merge_str_value(conf->voice, prev->voice, "alloy");
    ngx_conf_merge_str_value(conf->greeting, prev->greeting, "");
    ngx_conf_merge_ptr_value(conf->turn_detection, prev->turn_detection,
                             NULL);
    ngx_conf_merge_ptr_value(conf->mcp_servers, prev->mcp_servers, NULL);
    ngx_conf_merge_value(conf->hangup, prev->hangup, 0);
    ngx_conf_merge_ptr_value(conf->transfers, prev->transfers, NULL);
    ngx_conf_merge_str_value(conf->transcription_model,
                             prev->transcription_model,
                             "gpt-4o-mini-transcribe");

    if (conf->instructions.data == NULL) {
        conf->instructions = prev->instructions;
    }

    return NGX_CONF_OK;
}


char *
ngx_voice_session_set_turn_detection(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_voice_session_conf_t  *scf;

    ngx_str_t                   *value;
    ngx_uint_t                   i, semantic;
    ngx_voice_turn_detection_t  *td;

    scf = (ngx_voice_session_conf_t *) ((u_char *) conf + cmd->offset);

    if (scf->turn_detection != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "server_vad") == 0) {
        semantic = 0;

    } else if (ngx_strcmp(value[1].data, "semantic_vad") == 0) {
        semantic = 1;

    } else {
        /* log-safe: configuration text */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"voice_turn_detection\" type \"%V\": "
                           "server_vad or semantic_vad expected", &value[1]);
        return NGX_CONF_ERROR;
    }

    td = ngx_pcalloc(cf->pool, sizeof(ngx_voice_turn_detection_t));
    if (td == NULL) {
        return NGX_CONF_ERROR;
    }

    td->type = value[1];
    td->silence_duration_ms = -1;
    td->prefix_padding_ms = -1;

    for (i = 2; i < cf->args->nelts; i++) {
        if (ngx_voice_session_td_param(td, semantic, &value[i]) != NGX_OK) {
            /* log-safe: configuration text */
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"voice_turn_detection\" parameter "
                               "\"%V\" for %V", &value[i], &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    scf->turn_detection = td;

    return NGX_CONF_OK;
}


/* eagerness= applies to semantic_vad, the others to server_vad */
static ngx_int_t
ngx_voice_session_td_param(ngx_voice_turn_detection_t *td,
    ngx_uint_t semantic, ngx_str_t *value)
{
    ngx_str_t  v;

    if (semantic) {
        if (!ngx_voice_session_param(value, "eagerness=", &v)) {
            return NGX_ERROR;
        }

        if (ngx_strcmp(v.data, "low") != 0
            && ngx_strcmp(v.data, "medium") != 0
            && ngx_strcmp(v.data, "high") != 0
            && ngx_strcmp(v.data, "auto") != 0)
        {
            return NGX_ERROR;
        }

        td->eagerness = v;
        return NGX_OK;
    }

    if (ngx_voice_session_param(value, "threshold=", &v)) {
        td->threshold = v;
        return ngx_voice_session_threshold(&v);
    }

    if (ngx_voice_session_param(value, "silence_duration_ms=", &v)) {
        td->silence_duration_ms = ngx_atoi(v.data, v.len);
        return td->silence_duration_ms == NGX_ERROR ? NGX_ERROR : NGX_OK;
    }

    if (ngx_voice_session_param(value, "prefix_padding_ms=", &v)) {
        td->prefix_padding_ms = ngx_atoi(v.data, v.len);
        return td->prefix_padding_ms == NGX_ERROR ? NGX_ERROR : NGX_OK;
    }

    return NGX_ERROR;
}


/* 0, 1, 0.d... or 1.0...: a JSON number between 0 and 1 */
static ngx_int_t
ngx_voice_session_threshold(ngx_str_t *v)
{
    if (v->len == 1 && (v->data[0] == '0' || v->data[0] == '1')) {
        return NGX_OK;
    }

    if (v->len > 2 && v->data[0] == '0' && v->data[1] == '.'
        && ngx_atoi(v->data + 2, v->len - 2) != NGX_ERROR)
    {
        return NGX_OK;
    }

    if (v->len > 2 && v->data[0] == '1' && v->data[1] == '.'
        && ngx_atoi(v->data + 2, v->len - 2) == 0)
    {
        return NGX_OK;
    }

    return NGX_ERROR;
}


/* "name=value": true, with the value in "v" */
static ngx_int_t
ngx_voice_session_param(ngx_str_t *value, const char *name, ngx_str_t *v)
{
    size_t  len;

    len = ngx_strlen(name);

    if (value->len < len || ngx_strncmp(value->data, name, len) != 0) {
        return 0;
    }

    v->data = value->data + len;
    v->len = value->len - len;

    return 1;
}


/*
 * voice_mcp_server label=NAME url=URL ["header=Name: value"]...
 *                  [allowed_tools=a,b];
 */
char *
ngx_voice_session_set_mcp_server(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_voice_session_conf_t  *scf;

    char                    *rv;
    ngx_str_t               *value;
    ngx_uint_t               i;
    ngx_voice_mcp_server_t  *srv;

    scf = (ngx_voice_session_conf_t *) ((u_char *) conf + cmd->offset);

    if (scf->mcp_servers == NGX_CONF_UNSET_PTR) {
        scf->mcp_servers = ngx_array_create(cf->pool, 2,
                                            sizeof(ngx_voice_mcp_server_t));
        if (scf->mcp_servers == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    srv = ngx_array_push(scf->mcp_servers);
    if (srv == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(srv, sizeof(ngx_voice_mcp_server_t));

    if (ngx_array_init(&srv->headers, cf->pool, 2,
                       sizeof(ngx_voice_header_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        /* everything here goes into a JSON text frame */
        if (!ngx_voice_utf8_valid(value[i].data, value[i].len)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"voice_mcp_server\" parameter %ui is not "
                               "valid UTF-8", i);
            return NGX_CONF_ERROR;
        }

        rv = ngx_voice_session_mcp_param(cf, srv, &value[i]);
        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    if (srv->label.len == 0 || srv->url.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_mcp_server\" must have \"label=\" "
                           "and \"url=\"");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_voice_session_mcp_param(ngx_conf_t *cf, ngx_voice_mcp_server_t *srv,
    ngx_str_t *value)
{
    ngx_str_t  v;

    if (ngx_voice_session_param(value, "label=", &v)) {
        srv->label = v;
        return NGX_CONF_OK;
    }

    if (ngx_voice_session_param(value, "url=", &v)) {
        if (ngx_strncmp(v.data, "https://", 8) != 0
            && ngx_strncmp(v.data, "http://", 7) != 0)
        {
            /* log-safe: configuration text */
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"voice_mcp_server\" url \"%V\"", &v);
            return NGX_CONF_ERROR;
        }

        srv->url = v;
        return NGX_CONF_OK;
    }

    if (ngx_voice_session_param(value, "header=", &v)) {
        return ngx_voice_session_mcp_header(cf, srv, value);
    }

    if (ngx_voice_session_param(value, "allowed_tools=", &v)) {
        return ngx_voice_session_mcp_tools(cf, srv, &v);
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid \"voice_mcp_server\" parameter; "
                       "label=, url=, header= or allowed_tools= expected");
    return NGX_CONF_ERROR;
}


/* "header=Name: value"; the value may be a secret, env: or file: */
static char *
ngx_voice_session_mcp_header(ngx_conf_t *cf, ngx_voice_mcp_server_t *srv,
    ngx_str_t *value)
{
    u_char              *p, *start, *end;
    ngx_str_t            v, name;
    ngx_voice_header_t  *h;

    start = value->data + sizeof("header=") - 1;
    end = value->data + value->len;

    p = ngx_strlchr(start, end, ':');
    if (p == NULL || p == start) {
        /* the value is not echoed: it may be a secret */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"voice_mcp_server\" header: "
                           "\"header=Name: value\" expected");
        return NGX_CONF_ERROR;
    }

    h = ngx_array_push(&srv->headers);
    if (h == NULL) {
        return NGX_CONF_ERROR;
    }

    /* the argument is wiped below: the name needs its own copy */
    h->name.len = p - start;
    h->name.data = ngx_pnalloc(cf->pool, h->name.len);
    if (h->name.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(h->name.data, start, h->name.len);

    for (p++; p < end && *p == ' '; p++) { /* void */ }

    v.data = p;
    v.len = end - p;

    ngx_str_set(&name, "voice_mcp_server header");

    if (ngx_voice_secret_load(cf, &name, &v, &h->value) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    /* the argument itself may hold a literal secret */
    ngx_explicit_memzero(value->data, value->len);

    return NGX_CONF_OK;
}


/* "allowed_tools=a,b" */
static char *
ngx_voice_session_mcp_tools(ngx_conf_t *cf, ngx_voice_mcp_server_t *srv,
    ngx_str_t *list)
{
    u_char     *p, *start, *end;
    ngx_str_t  *tool;

    srv->allowed_tools = ngx_array_create(cf->pool, 4, sizeof(ngx_str_t));
    if (srv->allowed_tools == NULL) {
        return NGX_CONF_ERROR;
    }

    start = list->data;
    end = list->data + list->len;

    while (start < end) {
        p = ngx_strlchr(start, end, ',');
        if (p == NULL) {
            p = end;
        }

        if (p > start) {
            tool = ngx_array_push(srv->allowed_tools);
            if (tool == NULL) {
                return NGX_CONF_ERROR;
            }

            tool->data = start;
            tool->len = p - start;
        }

        start = p + 1;
    }

    return NGX_CONF_OK;
}


/* voice_transfer LABEL DESTINATION ["description"] */
char *
ngx_voice_session_set_transfer(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_voice_session_conf_t  *scf;

    ngx_str_t             *value;
    ngx_uint_t             i;
    ngx_voice_transfer_t  *t;

    scf = (ngx_voice_session_conf_t *) ((u_char *) conf + cmd->offset);

    if (scf->transfers == NGX_CONF_UNSET_PTR) {
        scf->transfers = ngx_array_create(cf->pool, 2,
                                          sizeof(ngx_voice_transfer_t));
        if (scf->transfers == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        if (!ngx_voice_utf8_valid(value[i].data, value[i].len)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"voice_transfer\" parameter %ui is not "
                               "valid UTF-8", i);
            return NGX_CONF_ERROR;
        }
    }

    if (value[1].len == 0 || value[1].len > 32) {
        /* log-safe: configuration text */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"voice_transfer\" label \"%V\": "
                           "1 to 32 bytes expected", &value[1]);
        return NGX_CONF_ERROR;
    }

    t = scf->transfers->elts;

    for (i = 0; i < scf->transfers->nelts; i++) {
        if (t[i].label.len == value[1].len
            && ngx_memcmp(t[i].label.data, value[1].data, value[1].len) == 0)
        {
            /* log-safe: configuration text */
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"voice_transfer\" label \"%V\" is "
                               "duplicate", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    t = ngx_array_push(scf->transfers);
    if (t == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(t, sizeof(ngx_voice_transfer_t));

    t->label = value[1];
    t->destination = value[2];

    if (ngx_voice_session_destination(&t->destination, &t->sip) != NGX_OK) {
        /* log-safe: configuration text */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"voice_transfer\" destination \"%V\": "
                           "an E.164 number (+15551234567) or a sip: URI "
                           "without headers expected", &value[2]);
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts == 4) {
        t->description = value[3];
    }

    return NGX_CONF_OK;
}


/* ^\+[1-9][0-9]{1,14}$, or sip:user@host with no ?headers */
static ngx_int_t
ngx_voice_session_destination(ngx_str_t *dest, ngx_uint_t *sip)
{
    size_t   i;
    u_char  *p;

    p = dest->data;

    if (dest->len >= 3 && dest->len <= 16 && p[0] == '+'
        && p[1] >= '1' && p[1] <= '9')
    {
        for (i = 2; i < dest->len; i++) {
            if (p[i] < '0' || p[i] > '9') {
                return NGX_ERROR;
            }
        }

        *sip = 0;
        return NGX_OK;
    }

    if (dest->len < sizeof("sip:a") || dest->len > 255
        || ngx_strncasecmp(p, (u_char *) "sip:", 4) != 0)
    {
        return NGX_ERROR;
    }

    for (i = 4; i < dest->len; i++) {
        /* no headers, nothing that needs escaping, nothing invisible */
        if (p[i] <= 0x20 || p[i] >= 0x7f || p[i] == '?' || p[i] == '<'
            || p[i] == '>' || p[i] == '"' || p[i] == '&' || p[i] == '\'')
        {
            return NGX_ERROR;
        }
    }

    *sip = 1;
    return NGX_OK;
}


ngx_voice_transfer_t *
ngx_voice_session_transfer(ngx_voice_session_conf_t *conf, ngx_str_t *label)
{
    ngx_uint_t             i;
    ngx_voice_transfer_t  *t;

    if (conf->transfers == NULL) {
        return NULL;
    }

    t = conf->transfers->elts;

    for (i = 0; i < conf->transfers->nelts; i++) {
        if (t[i].label.len == label->len
            && ngx_memcmp(t[i].label.data, label->data, label->len) == 0)
        {
            return &t[i];
        }
    }

    return NULL;
}


char *
ngx_voice_session_set_instructions_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_voice_session_conf_t  *scf;

    ngx_str_t  *value, name;

    scf = (ngx_voice_session_conf_t *) ((u_char *) conf + cmd->offset);

    if (scf->instructions.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_voice_session_read_file(cf, &name, &scf->instructions) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* a whole file of at most 1m, read while the configuration is */
static ngx_int_t
ngx_voice_session_read_file(ngx_conf_t *cf, ngx_str_t *name, ngx_str_t *out)
{
    off_t             size;
    ssize_t           n;
    ngx_file_t        file;
    ngx_file_info_t   fi;

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = *name;
    file.log = cf->log;

    file.fd = ngx_open_file(name->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (file.fd == NGX_INVALID_FILE) {
        /* log-safe: configuration text */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"voice_instructions_file\": cannot open \"%V\"",
                           name);
        return NGX_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR) {
        /* log-safe: configuration text */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"voice_instructions_file\": cannot stat \"%V\"",
                           name);
        (void) ngx_close_file(file.fd);
        return NGX_ERROR;
    }

    size = ngx_file_size(&fi);

    if (size > 1024 * 1024) {
        (void) ngx_close_file(file.fd);
        /* log-safe: configuration text */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_instructions_file\" \"%V\" is larger "
                           "than 1m", name);
        return NGX_ERROR;
    }

    out->data = ngx_pnalloc(cf->pool, (size_t) size + 1);
    if (out->data == NULL) {
        (void) ngx_close_file(file.fd);
        return NGX_ERROR;
    }

    n = ngx_read_file(&file, out->data, (size_t) size, 0);

    (void) ngx_close_file(file.fd);

    if (n != (ssize_t) size) {
        /* log-safe: configuration text */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_instructions_file\": cannot read \"%V\"",
                           name);
        return NGX_ERROR;
    }

    out->len = (size_t) n;

    return NGX_OK;
}


ngx_int_t
ngx_voice_session_build(ngx_conf_t *cf, ngx_voice_session_conf_t *conf)
{
    yajl_gen   g;
    ngx_int_t  rc;

    if (ngx_voice_session_check_text(cf, conf) != NGX_OK) {
        return NGX_ERROR;
    }

    g = yajl_gen_alloc(NULL);
    if (g == NULL) {
        return NGX_ERROR;
    }

    ngx_voice_session_gen_update(g, conf);

    rc = ngx_voice_session_take(cf, g, &conf->session_update);

    if (rc == NGX_OK && conf->greeting.len) {
        yajl_gen_reset(g, NULL);
        ngx_voice_session_gen_greeting(g, conf);
        rc = ngx_voice_session_take(cf, g, &conf->greeting_item);
    }

    yajl_gen_free(g);

    return rc;
}


/* OpenAI takes text frames only: what goes into them must be UTF-8 */
static ngx_int_t
ngx_voice_session_check_text(ngx_conf_t *cf, ngx_voice_session_conf_t *conf)
{
    ngx_uint_t  i;

    for (i = 0; ngx_voice_voices[i]; i++) {
        if (ngx_strlen(ngx_voice_voices[i]) == conf->voice.len
            && ngx_strncmp(ngx_voice_voices[i], conf->voice.data,
                           conf->voice.len) == 0)
        {
            break;
        }
    }

    if (ngx_voice_voices[i] == NULL) {
        /* log-safe: configuration text */
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"voice_voice\" \"%V\" is not a known Realtime "
                           "voice (alloy, ash, ballad, coral, echo, sage, "
                           "shimmer, verse, marin, cedar)", &conf->voice);
    }

    if (!ngx_voice_utf8_valid(conf->instructions.data,
                              conf->instructions.len))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_instructions\" is not valid UTF-8: "
                           "OpenAI takes text frames only");
        return NGX_ERROR;
    }

    if (!ngx_voice_utf8_valid(conf->voice.data, conf->voice.len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_voice\" is not valid UTF-8");
        return NGX_ERROR;
    }

    if (!ngx_voice_utf8_valid(conf->greeting.data, conf->greeting.len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_greeting\" is not valid UTF-8");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the GA shape: {"type":"session.update","session":{...}} */
static void
ngx_voice_session_gen_update(yajl_gen g, ngx_voice_session_conf_t *conf)
{
    yajl_gen_map_open(g);
    ngx_voice_gen_str(g, "type");
    ngx_voice_gen_str(g, "session.update");
    ngx_voice_gen_str(g, "session");
    yajl_gen_map_open(g);

    ngx_voice_gen_str(g, "type");
    ngx_voice_gen_str(g, "realtime");

    ngx_voice_gen_str(g, "output_modalities");
    yajl_gen_array_open(g);
    ngx_voice_gen_str(g, "audio");
    yajl_gen_array_close(g);

    ngx_voice_session_gen_audio(g, conf);

    if (conf->instructions.data) {
        ngx_voice_gen_str(g, "instructions");
        ngx_voice_gen_ngx_str(g, &conf->instructions);
    }

    if ((conf->mcp_servers && conf->mcp_servers->nelts) || conf->hangup
        || conf->transfers)
    {
        ngx_voice_gen_str(g, "tools");
        yajl_gen_array_open(g);

        if (conf->mcp_servers) {
            ngx_voice_session_tools(g, conf->mcp_servers);
        }

        if (conf->hangup) {
            ngx_voice_session_end_call_tool(g);
        }

        if (conf->transfers) {
            ngx_voice_session_transfer_tool(g, conf->transfers);
        }

        yajl_gen_array_close(g);
    }

    yajl_gen_map_close(g);
    yajl_gen_map_close(g);
}


/* mu-law both ways: Twilio's own format, no transcoding */
static void
ngx_voice_session_gen_audio(yajl_gen g, ngx_voice_session_conf_t *conf)
{
    ngx_voice_turn_detection_t  def;

    ngx_voice_gen_str(g, "audio");
    yajl_gen_map_open(g);

    ngx_voice_gen_str(g, "input");
    yajl_gen_map_open(g);
    ngx_voice_gen_str(g, "format");
    yajl_gen_map_open(g);
    ngx_voice_gen_str(g, "type");
    ngx_voice_gen_str(g, "audio/pcmu");
    yajl_gen_map_close(g);

    if (conf->transcribe) {
        /* the caller's words, for the transcript */
        ngx_voice_gen_str(g, "transcription");
        yajl_gen_map_open(g);
        ngx_voice_gen_str(g, "model");
        ngx_voice_gen_ngx_str(g, &conf->transcription_model);
        yajl_gen_map_close(g);
    }

    if (conf->turn_detection) {
        ngx_voice_session_turn_detection(g, conf->turn_detection);

    } else {
        ngx_memzero(&def, sizeof(def));
        ngx_str_set(&def.type, "server_vad");
        def.silence_duration_ms = -1;
        def.prefix_padding_ms = -1;
        ngx_voice_session_turn_detection(g, &def);
    }

    yajl_gen_map_close(g);

    ngx_voice_gen_str(g, "output");
    yajl_gen_map_open(g);
    ngx_voice_gen_str(g, "format");
    yajl_gen_map_open(g);
    ngx_voice_gen_str(g, "type");
    ngx_voice_gen_str(g, "audio/pcmu");
    yajl_gen_map_close(g);
    ngx_voice_gen_str(g, "voice");
    ngx_voice_gen_ngx_str(g, &conf->voice);
    yajl_gen_map_close(g);

    yajl_gen_map_close(g);
}


/* a user message asking for the greeting */
static void
ngx_voice_session_gen_greeting(yajl_gen g, ngx_voice_session_conf_t *conf)
{
    yajl_gen_map_open(g);
    ngx_voice_gen_str(g, "type");
    ngx_voice_gen_str(g, "conversation.item.create");
    ngx_voice_gen_str(g, "item");
    yajl_gen_map_open(g);
    ngx_voice_gen_str(g, "type");
    ngx_voice_gen_str(g, "message");
    ngx_voice_gen_str(g, "role");
    ngx_voice_gen_str(g, "user");
    ngx_voice_gen_str(g, "content");
    yajl_gen_array_open(g);
    yajl_gen_map_open(g);
    ngx_voice_gen_str(g, "type");
    ngx_voice_gen_str(g, "input_text");
    ngx_voice_gen_str(g, "text");
    ngx_voice_gen_ngx_str(g, &conf->greeting);
    yajl_gen_map_close(g);
    yajl_gen_array_close(g);
    yajl_gen_map_close(g);
    yajl_gen_map_close(g);
}


static void
ngx_voice_session_turn_detection(yajl_gen g, ngx_voice_turn_detection_t *td)
{
    ngx_voice_gen_str(g, "turn_detection");
    yajl_gen_map_open(g);

    ngx_voice_gen_str(g, "type");
    ngx_voice_gen_ngx_str(g, &td->type);

    if (td->eagerness.len) {
        ngx_voice_gen_str(g, "eagerness");
        ngx_voice_gen_ngx_str(g, &td->eagerness);
    }

    if (td->threshold.len) {
        ngx_voice_gen_str(g, "threshold");
        yajl_gen_number(g, (const char *) td->threshold.data,
                        td->threshold.len);
    }

    if (td->silence_duration_ms >= 0) {
        ngx_voice_gen_str(g, "silence_duration_ms");
        yajl_gen_integer(g, td->silence_duration_ms);
    }

    if (td->prefix_padding_ms >= 0) {
        ngx_voice_gen_str(g, "prefix_padding_ms");
        yajl_gen_integer(g, td->prefix_padding_ms);
    }

    yajl_gen_map_close(g);
}


static void
ngx_voice_session_tools(yajl_gen g, ngx_array_t *servers)
{
    ngx_str_t               *tool;
    ngx_uint_t               i, j;
    ngx_voice_header_t      *h;
    ngx_voice_mcp_server_t  *srv;

    srv = servers->elts;

    for (i = 0; i < servers->nelts; i++) {
        yajl_gen_map_open(g);

        ngx_voice_gen_str(g, "type");
        ngx_voice_gen_str(g, "mcp");
        ngx_voice_gen_str(g, "server_label");
        ngx_voice_gen_ngx_str(g, &srv[i].label);
        ngx_voice_gen_str(g, "server_url");
        ngx_voice_gen_ngx_str(g, &srv[i].url);

        if (srv[i].headers.nelts) {
            ngx_voice_gen_str(g, "headers");
            yajl_gen_map_open(g);

            h = srv[i].headers.elts;

            for (j = 0; j < srv[i].headers.nelts; j++) {
                ngx_voice_gen_ngx_str(g, &h[j].name);
                ngx_voice_gen_ngx_str(g, &h[j].value);
            }

            yajl_gen_map_close(g);
        }

        if (srv[i].allowed_tools) {
            ngx_voice_gen_str(g, "allowed_tools");
            yajl_gen_array_open(g);

            tool = srv[i].allowed_tools->elts;

            for (j = 0; j < srv[i].allowed_tools->nelts; j++) {
                ngx_voice_gen_ngx_str(g, &tool[j]);
            }

            yajl_gen_array_close(g);
        }

        /* a caller cannot approve a tool call by voice */
        ngx_voice_gen_str(g, "require_approval");
        ngx_voice_gen_str(g, "never");

        yajl_gen_map_close(g);
    }
}


static void
ngx_voice_session_end_call_tool(yajl_gen g)
{
    yajl_gen_map_open(g);

    ngx_voice_gen_str(g, "type");
    ngx_voice_gen_str(g, "function");
    ngx_voice_gen_str(g, "name");
    ngx_voice_gen_str(g, "end_call");
    ngx_voice_gen_str(g, "description");
    ngx_voice_gen_str(g, "Ends the phone call. Use it when the caller says "
                         "goodbye or asks to end the call, after saying a "
                         "short goodbye.");

    ngx_voice_gen_str(g, "parameters");
    yajl_gen_map_open(g);
    ngx_voice_gen_str(g, "type");
    ngx_voice_gen_str(g, "object");
    ngx_voice_gen_str(g, "properties");
    yajl_gen_map_open(g);
    yajl_gen_map_close(g);
    ngx_voice_gen_str(g, "additionalProperties");
    yajl_gen_bool(g, 0);
    yajl_gen_map_close(g);

    yajl_gen_map_close(g);
}


/* the model sees the labels, never a number */
static void
ngx_voice_session_transfer_tool(yajl_gen g, ngx_array_t *transfers)
{
    ngx_uint_t             i;
    ngx_voice_transfer_t  *t;

    t = transfers->elts;

    yajl_gen_map_open(g);

    ngx_voice_gen_str(g, "type");
    ngx_voice_gen_str(g, "function");
    ngx_voice_gen_str(g, "name");
    ngx_voice_gen_str(g, "transfer_call");
    ngx_voice_gen_str(g, "description");
    ngx_voice_gen_str(g, "Transfers the caller to a person. Use it when the "
                         "caller asks for one of the destinations, after "
                         "telling them they are being transferred.");

    ngx_voice_gen_str(g, "parameters");
    yajl_gen_map_open(g);
    ngx_voice_gen_str(g, "type");
    ngx_voice_gen_str(g, "object");
    ngx_voice_gen_str(g, "properties");
    yajl_gen_map_open(g);
    ngx_voice_gen_str(g, "destination");
    yajl_gen_map_open(g);
    ngx_voice_gen_str(g, "type");
    ngx_voice_gen_str(g, "string");

    ngx_voice_gen_str(g, "enum");
    yajl_gen_array_open(g);

    for (i = 0; i < transfers->nelts; i++) {
        ngx_voice_gen_ngx_str(g, &t[i].label);
    }

    yajl_gen_array_close(g);

    ngx_voice_session_transfer_descriptions(g, transfers);

    yajl_gen_map_close(g);
    yajl_gen_map_close(g);
    ngx_voice_gen_str(g, "required");
    yajl_gen_array_open(g);
    ngx_voice_gen_str(g, "destination");
    yajl_gen_array_close(g);
    ngx_voice_gen_str(g, "additionalProperties");
    yajl_gen_bool(g, 0);
    yajl_gen_map_close(g);

    yajl_gen_map_close(g);
}


/* "label: description; ..." for the labels that have one */
static void
ngx_voice_session_transfer_descriptions(yajl_gen g, ngx_array_t *transfers)
{
    u_char                *p;
    size_t                 len;
    ngx_uint_t             i;
    ngx_voice_transfer_t  *t;
    u_char                 buf[2048];

    t = transfers->elts;
    p = buf;

    for (i = 0; i < transfers->nelts; i++) {
        len = t[i].label.len + t[i].description.len + 4;

        if (t[i].description.len == 0 || p + len > buf + sizeof(buf)) {
            continue;
        }

        if (p > buf) {
            p = ngx_cpymem(p, "; ", 2);
        }

        p = ngx_cpymem(p, t[i].label.data, t[i].label.len);
        p = ngx_cpymem(p, ": ", 2);
        p = ngx_cpymem(p, t[i].description.data, t[i].description.len);
    }

    if (p == buf) {
        return;
    }

    ngx_voice_gen_str(g, "description");
    yajl_gen_string(g, buf, p - buf);
}


/*
 * Copies the generated text into cf->pool, to be wiped with it: it may
 * hold MCP header secrets.
 */
static ngx_int_t
ngx_voice_session_take(ngx_conf_t *cf, yajl_gen g, ngx_str_t *out)
{
    size_t                len;
    const unsigned char  *buf;
    ngx_pool_cleanup_t   *cln;

    if (yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    out->data = ngx_pnalloc(cf->pool, len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, buf, len);
    out->len = len;

    cln->handler = ngx_voice_session_wipe;
    cln->data = out;

    ngx_explicit_memzero((void *) buf, len);
    yajl_gen_clear(g);

    return NGX_OK;
}


static void
ngx_voice_session_wipe(void *data)
{
    ngx_str_t  *s = data;

    ngx_explicit_memzero(s->data, s->len);
}
