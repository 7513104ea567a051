
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
#include "ngx_voice.h"
#include "ngx_voice_secret.h"
#include "ngx_voice_ws.h"


#define ngx_voice_gen_str(g, s)                                              \
    yajl_gen_string(g, (const unsigned char *) s, sizeof(s) - 1)

#define ngx_voice_gen_ngx_str(g, s)                                          \
    yajl_gen_string(g, (const unsigned char *) (s)->data, (s)->len)


static void ngx_voice_session_turn_detection(yajl_gen g,
    ngx_voice_turn_detection_t *td);
static void ngx_voice_session_tools(yajl_gen g, ngx_array_t *servers);
static ngx_int_t ngx_voice_session_take(ngx_conf_t *cf, yajl_gen g,
    ngx_str_t *out);
static ngx_int_t ngx_voice_session_parse_int(ngx_str_t *value,
    ngx_int_t *n);
static void ngx_voice_session_wipe(void *data);


static const char  *ngx_voice_voices[] = {
    "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse",
    "marin", "cedar", NULL
};


char *
ngx_voice_set_turn_detection(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_voice_loc_conf_t  *vlcf = conf;

    ngx_str_t                   *value, v;
    ngx_uint_t                   i, semantic;
    ngx_voice_turn_detection_t  *td;

    if (vlcf->turn_detection != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    td = ngx_pcalloc(cf->pool, sizeof(ngx_voice_turn_detection_t));
    if (td == NULL) {
        return NGX_CONF_ERROR;
    }

    td->silence_duration_ms = -1;
    td->prefix_padding_ms = -1;

    if (ngx_strcmp(value[1].data, "server_vad") == 0) {
        semantic = 0;

    } else if (ngx_strcmp(value[1].data, "semantic_vad") == 0) {
        semantic = 1;

    } else {
        /* log-safe: the directive argument, from nginx.conf */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"voice_turn_detection\" type \"%V\": "
                           "server_vad or semantic_vad expected", &value[1]);
        return NGX_CONF_ERROR;
    }

    td->type = value[1];

    for (i = 2; i < cf->args->nelts; i++) {

        if (semantic && ngx_strncmp(value[i].data, "eagerness=", 10) == 0) {
            v.data = value[i].data + 10;
            v.len = value[i].len - 10;

            if (ngx_strcmp(v.data, "low") != 0
                && ngx_strcmp(v.data, "medium") != 0
                && ngx_strcmp(v.data, "high") != 0
                && ngx_strcmp(v.data, "auto") != 0)
            {
                goto invalid;
            }

            td->eagerness = v;
            continue;
        }

        if (!semantic && ngx_strncmp(value[i].data, "threshold=", 10) == 0) {
            v.data = value[i].data + 10;
            v.len = value[i].len - 10;

            /* 0, 1, or 0.d... */
            if (!(v.len == 1 && (v.data[0] == '0' || v.data[0] == '1'))
                && !(v.len > 2 && v.data[0] == '0' && v.data[1] == '.'
                     && ngx_atoi(v.data + 2, v.len - 2) != NGX_ERROR)
                && !(v.len > 2 && v.data[0] == '1' && v.data[1] == '.'
                     && ngx_atoi(v.data + 2, v.len - 2) == 0))
            {
                goto invalid;
            }

            td->threshold = v;
            continue;
        }

        if (!semantic
            && ngx_strncmp(value[i].data, "silence_duration_ms=", 20) == 0)
        {
            v.data = value[i].data + 20;
            v.len = value[i].len - 20;

            if (ngx_voice_session_parse_int(&v, &td->silence_duration_ms)
                != NGX_OK)
            {
                goto invalid;
            }

            continue;
        }

        if (!semantic
            && ngx_strncmp(value[i].data, "prefix_padding_ms=", 18) == 0)
        {
            v.data = value[i].data + 18;
            v.len = value[i].len - 18;

            if (ngx_voice_session_parse_int(&v, &td->prefix_padding_ms)
                != NGX_OK)
            {
                goto invalid;
            }

            continue;
        }

        goto invalid;
    }

    vlcf->turn_detection = td;

    return NGX_CONF_OK;

invalid:

    /* log-safe: the directive arguments, from nginx.conf */
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid \"voice_turn_detection\" parameter \"%V\" "
                       "for %V", &value[i], &value[1]);
    return NGX_CONF_ERROR;
}


/*
 * voice_mcp_server label=NAME url=URL ["header=Name: value"]...
 *                  [allowed_tools=a,b];
 */
char *
ngx_voice_set_mcp_server(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_voice_loc_conf_t  *vlcf = conf;

    u_char                  *p, *start, *end;
    ngx_str_t               *value, v, *tool, name;
    ngx_uint_t               i;
    ngx_voice_header_t      *h;
    ngx_voice_mcp_server_t  *srv;

    if (vlcf->mcp_servers == NGX_CONF_UNSET_PTR) {
        vlcf->mcp_servers = ngx_array_create(cf->pool, 2,
                                             sizeof(ngx_voice_mcp_server_t));
        if (vlcf->mcp_servers == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    srv = ngx_array_push(vlcf->mcp_servers);
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

        if (ngx_strncmp(value[i].data, "label=", 6) == 0) {
            srv->label.data = value[i].data + 6;
            srv->label.len = value[i].len - 6;
            continue;
        }

        if (ngx_strncmp(value[i].data, "url=", 4) == 0) {
            srv->url.data = value[i].data + 4;
            srv->url.len = value[i].len - 4;

            if (ngx_strncmp(srv->url.data, "https://", 8) != 0
                && ngx_strncmp(srv->url.data, "http://", 7) != 0)
            {
                /* log-safe: the URL, from nginx.conf */
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"voice_mcp_server\" url \"%V\"",
                                   &srv->url);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "header=", 7) == 0) {
            start = value[i].data + 7;
            end = value[i].data + value[i].len;

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

            name.data = (u_char *) "voice_mcp_server header";
            name.len = sizeof("voice_mcp_server header") - 1;

            if (ngx_voice_secret_load(cf, &name, &v, &h->value)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            /* the argument itself may hold a literal secret */
            ngx_explicit_memzero(value[i].data, value[i].len);

            continue;
        }

        if (ngx_strncmp(value[i].data, "allowed_tools=", 14) == 0) {
            srv->allowed_tools = ngx_array_create(cf->pool, 4,
                                                  sizeof(ngx_str_t));
            if (srv->allowed_tools == NULL) {
                return NGX_CONF_ERROR;
            }

            start = value[i].data + 14;
            end = value[i].data + value[i].len;

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

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"voice_mcp_server\" parameter; "
                           "label=, url=, header= or allowed_tools= "
                           "expected");
        return NGX_CONF_ERROR;
    }

    if (srv->label.len == 0 || srv->url.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_mcp_server\" must have \"label=\" "
                           "and \"url=\"");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


char *
ngx_voice_set_instructions_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_voice_loc_conf_t  *vlcf = conf;

    off_t             size;
    ssize_t           n;
    ngx_str_t        *value, name;
    ngx_file_t        file;
    ngx_file_info_t   fi;

    if (vlcf->instructions.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = name;
    file.log = cf->log;

    file.fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (file.fd == NGX_INVALID_FILE) {
        /* log-safe: the path, from nginx.conf */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"voice_instructions_file\": cannot open \"%V\"",
                           &name);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR) {
        (void) ngx_close_file(file.fd);
        return NGX_CONF_ERROR;
    }

    size = ngx_file_size(&fi);

    if (size > 1024 * 1024) {
        (void) ngx_close_file(file.fd);
        /* log-safe: the path, from nginx.conf */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_instructions_file\" \"%V\" is larger "
                           "than 1m", &name);
        return NGX_CONF_ERROR;
    }

    vlcf->instructions.data = ngx_pnalloc(cf->pool, (size_t) size + 1);
    if (vlcf->instructions.data == NULL) {
        (void) ngx_close_file(file.fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_file(&file, vlcf->instructions.data, (size_t) size, 0);

    (void) ngx_close_file(file.fd);

    if (n != (ssize_t) size) {
        /* log-safe: the path, from nginx.conf */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_instructions_file\": cannot read \"%V\"",
                           &name);
        return NGX_CONF_ERROR;
    }

    vlcf->instructions.len = (size_t) n;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_voice_session_build(ngx_conf_t *cf, ngx_voice_loc_conf_t *conf)
{
    yajl_gen                     g;
    ngx_int_t                    rc;
    ngx_uint_t                   i;
    ngx_voice_turn_detection_t   def;

    for (i = 0; ngx_voice_voices[i]; i++) {
        if (ngx_strlen(ngx_voice_voices[i]) == conf->voice.len
            && ngx_strncmp(ngx_voice_voices[i], conf->voice.data,
                           conf->voice.len) == 0)
        {
            break;
        }
    }

    if (ngx_voice_voices[i] == NULL) {
        /* log-safe: the voice name, from nginx.conf */
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

    g = yajl_gen_alloc(NULL);
    if (g == NULL) {
        return NGX_ERROR;
    }

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

    ngx_voice_gen_str(g, "audio");
    yajl_gen_map_open(g);

    ngx_voice_gen_str(g, "input");
    yajl_gen_map_open(g);
    ngx_voice_gen_str(g, "format");
    yajl_gen_map_open(g);
    ngx_voice_gen_str(g, "type");
    ngx_voice_gen_str(g, "audio/pcmu");
    yajl_gen_map_close(g);

    if (conf->turn_detection == NULL) {
        ngx_memzero(&def, sizeof(def));
        ngx_str_set(&def.type, "server_vad");
        def.silence_duration_ms = -1;
        def.prefix_padding_ms = -1;
        conf->turn_detection = &def;
    }

    ngx_voice_session_turn_detection(g, conf->turn_detection);

    if (conf->turn_detection == &def) {
        conf->turn_detection = NULL;
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

    if (conf->instructions.data) {
        ngx_voice_gen_str(g, "instructions");
        ngx_voice_gen_ngx_str(g, &conf->instructions);
    }

    if (conf->mcp_servers && conf->mcp_servers->nelts) {
        ngx_voice_session_tools(g, conf->mcp_servers);
    }

    yajl_gen_map_close(g);
    yajl_gen_map_close(g);

    if (ngx_voice_session_take(cf, g, &conf->session_update) != NGX_OK) {
        yajl_gen_free(g);
        return NGX_ERROR;
    }

    if (conf->greeting.len == 0) {
        yajl_gen_free(g);
        return NGX_OK;
    }

    yajl_gen_reset(g, NULL);

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

    rc = ngx_voice_session_take(cf, g, &conf->greeting_item);

    yajl_gen_free(g);

    return rc;
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

    ngx_voice_gen_str(g, "tools");
    yajl_gen_array_open(g);

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

    yajl_gen_array_close(g);
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


static ngx_int_t
ngx_voice_session_parse_int(ngx_str_t *value, ngx_int_t *n)
{
    *n = ngx_atoi(value->data, value->len);

    return (*n == NGX_ERROR) ? NGX_ERROR : NGX_OK;
}


static void
ngx_voice_session_wipe(void *data)
{
    ngx_str_t  *s = data;

    ngx_explicit_memzero(s->data, s->len);
}
