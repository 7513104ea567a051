
/*
 * Copyright (C) ngx_voice authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_voice_secret.h"


#define NGX_VOICE_SECRET_MAX  4096


static char *ngx_voice_secret_from_env(ngx_conf_t *cf, ngx_str_t *directive,
    ngx_str_t *name, ngx_str_t *secret);
static char *ngx_voice_secret_from_file(ngx_conf_t *cf,
    ngx_str_t *directive, ngx_str_t *path, ngx_str_t *secret);
static char *ngx_voice_secret_store(ngx_conf_t *cf, u_char *data, size_t len,
    ngx_str_t *secret);
static void ngx_voice_secret_wipe(void *data);


char *
ngx_voice_secret_load(ngx_conf_t *cf, ngx_str_t *directive, ngx_str_t *value,
    ngx_str_t *secret)
{
    ngx_str_t  rest;

    if (value->len >= 4 && ngx_strncmp(value->data, "env:", 4) == 0) {
        rest.data = value->data + 4;
        rest.len = value->len - 4;
        return ngx_voice_secret_from_env(cf, directive, &rest, secret);
    }

    if (value->len >= 5 && ngx_strncmp(value->data, "file:", 5) == 0) {
        rest.data = value->data + 5;
        rest.len = value->len - 5;
        return ngx_voice_secret_from_file(cf, directive, &rest, secret);
    }

    if (value->len == 0) {
        /* log-safe: the directive name, from the module */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must not be empty", directive);
        return NGX_CONF_ERROR;
    }

    return ngx_voice_secret_store(cf, value->data, value->len, secret);
}


char *
ngx_voice_conf_set_secret_slot(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t  *field, *value;

    field = (ngx_str_t *) (p + cmd->offset);

    if (field->data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    return ngx_voice_secret_load(cf, &cmd->name, &value[1], field);
}


static char *
ngx_voice_secret_from_env(ngx_conf_t *cf, ngx_str_t *directive,
    ngx_str_t *name, ngx_str_t *secret)
{
    char    *v;
    u_char  *cname;

    if (name->len == 0) {
        /* log-safe: the directive name, from the module */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\": \"env:\" needs a variable name",
                           directive);
        return NGX_CONF_ERROR;
    }

    cname = ngx_pnalloc(cf->temp_pool, name->len + 1);
    if (cname == NULL) {
        return NGX_CONF_ERROR;
    }

    (void) ngx_cpystrn(cname, name->data, name->len + 1);

    /* configuration is read by the master, which still has its environment */
    v = getenv((char *) cname);

    if (v == NULL || *v == '\0') {
        /* log-safe: the directive and variable names, from nginx.conf */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\": environment variable \"%V\" is not set "
                           "or empty", directive, name);
        return NGX_CONF_ERROR;
    }

    return ngx_voice_secret_store(cf, (u_char *) v, ngx_strlen(v), secret);
}


static char *
ngx_voice_secret_from_file(ngx_conf_t *cf, ngx_str_t *directive,
    ngx_str_t *path, ngx_str_t *secret)
{
    char        *rv;
    size_t       len;
    ssize_t      n;
    ngx_fd_t     fd;
    ngx_str_t    name;
    ngx_file_t        file;
    ngx_file_info_t   fi;
    u_char            buf[NGX_VOICE_SECRET_MAX + 1];

    if (path->len == 0) {
        /* log-safe: the directive name, from the module */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\": \"file:\" needs a path", directive);
        return NGX_CONF_ERROR;
    }

    name = *path;

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        /* log-safe: the directive name and the path, from nginx.conf */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"%V\": cannot open secret file \"%V\"",
                           directive, &name);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR || !ngx_is_file(&fi)) {
        (void) ngx_close_file(fd);
        /* log-safe: the directive name and the path, from nginx.conf */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\": secret file \"%V\" is not a regular "
                           "file", directive, &name);
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.fd = fd;
    file.name = name;
    file.log = cf->log;

    n = ngx_read_file(&file, buf, NGX_VOICE_SECRET_MAX + 1, 0);

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        /* log-safe: the path, from nginx.conf */
        ngx_conf_log_error(NGX_LOG_ALERT, cf, ngx_errno,
                           ngx_close_file_n " \"%V\" failed", &name);
    }

    if (n == NGX_ERROR) {
        ngx_explicit_memzero(buf, sizeof(buf));
        return NGX_CONF_ERROR;
    }

    /* the secret is the first line, without its line ending */

    for (len = 0; len < (size_t) n; len++) {
        if (buf[len] == '\n' || buf[len] == '\r') {
            break;
        }
    }

    if (len == 0 || len > NGX_VOICE_SECRET_MAX) {
        ngx_explicit_memzero(buf, sizeof(buf));
        /* log-safe: the directive name and the path, from nginx.conf */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\": secret file \"%V\" %s", directive, &name,
                           len ? "has a first line that is too long"
                               : "has an empty first line");
        return NGX_CONF_ERROR;
    }

    rv = ngx_voice_secret_store(cf, buf, len, secret);

    ngx_explicit_memzero(buf, sizeof(buf));

    return rv;
}


static char *
ngx_voice_secret_store(ngx_conf_t *cf, u_char *data, size_t len,
    ngx_str_t *secret)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    secret->data = ngx_pnalloc(cf->pool, len);
    if (secret->data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(secret->data, data, len);
    secret->len = len;

    cln->handler = ngx_voice_secret_wipe;
    cln->data = secret;

    return NGX_CONF_OK;
}


static void
ngx_voice_secret_wipe(void *data)
{
    ngx_str_t  *secret = data;

    ngx_explicit_memzero(secret->data, secret->len);
}
