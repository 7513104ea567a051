
/*
 * Copyright (C) ngx_voice authors
 *
 * Configuration of the OpenAI leg: its URL, where to find it (an IP
 * literal, nginx's resolver at run time, or a name resolved once while
 * the configuration is read, as proxy_pass does) and the TLS context.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_voice_openai.h"


#define NGX_VOICE_OPENAI_DEFAULT_URL                                         \
    "wss://api.openai.com/v1/realtime?model=gpt-realtime"


static ngx_int_t ngx_voice_openai_parse_url(ngx_conf_t *cf,
    ngx_voice_openai_conf_t *conf, ngx_str_t *url);
static ngx_int_t ngx_voice_openai_addrs(ngx_conf_t *cf,
    ngx_voice_openai_conf_t *conf);
static ngx_int_t ngx_voice_openai_is_ip(ngx_conf_t *cf, ngx_str_t *host,
    ngx_addr_t *addr);
static char *ngx_voice_openai_ssl(ngx_conf_t *cf,
    ngx_voice_openai_conf_t *conf);
static ngx_int_t ngx_voice_openai_ssl_name(ngx_conf_t *cf,
    ngx_voice_openai_conf_t *conf);


void
ngx_voice_openai_create_conf(ngx_voice_openai_conf_t *conf)
{
    /*
     * set by ngx_pcalloc():
     *
     *     conf->url = { 0, NULL };
     *     conf->api_key = { 0, NULL };
     *     conf->ssl_trusted_certificate = { 0, NULL };
     *     conf->ssl_name = { 0, NULL };
     *     conf->addrs = NULL;
     *     conf->ssl = NULL;
     */

    conf->connect_timeout = NGX_CONF_UNSET_MSEC;
    conf->ssl_verify = NGX_CONF_UNSET;
    conf->ssl_verify_depth = NGX_CONF_UNSET_UINT;
    conf->ssl_session_reuse = NGX_CONF_UNSET;
}


char *
ngx_voice_openai_merge_conf(ngx_conf_t *cf, ngx_voice_openai_conf_t *prev,
    ngx_voice_openai_conf_t *conf)
{
    ngx_str_t  url;

    if (conf->url.data == NULL) {
        if (prev->url.data == NULL) {
            /* the default, parsed once at the outermost level */
            ngx_str_set(&url, NGX_VOICE_OPENAI_DEFAULT_URL);

            if (ngx_voice_openai_parse_url(cf, prev, &url) != NGX_OK) {
                return NGX_CONF_ERROR;
            }
        }

        conf->url = prev->url;
        conf->url_file = prev->url_file;
        conf->url_line = prev->url_line;
        conf->host = prev->host;
        conf->host_header = prev->host_header;
        conf->uri = prev->uri;
        conf->port = prev->port;
    }

    ngx_conf_merge_str_value(conf->api_key, prev->api_key, "");
    ngx_conf_merge_msec_value(conf->connect_timeout, prev->connect_timeout,
                              10000);
    ngx_conf_merge_value(conf->ssl_verify, prev->ssl_verify, 1);
    ngx_conf_merge_uint_value(conf->ssl_verify_depth,
                              prev->ssl_verify_depth, 4);
    ngx_conf_merge_str_value(conf->ssl_trusted_certificate,
                             prev->ssl_trusted_certificate, "");
    ngx_conf_merge_str_value(conf->ssl_name, prev->ssl_name, "");
    ngx_conf_merge_value(conf->ssl_session_reuse, prev->ssl_session_reuse, 1);

    return NGX_CONF_OK;
}


char *
ngx_voice_openai_set_url(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_voice_openai_conf_t  *ocf;

    ngx_str_t  *value;

    ocf = (ngx_voice_openai_conf_t *) ((u_char *) conf + cmd->offset);

    if (ocf->url.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_voice_openai_parse_url(cf, ocf, &value[1]) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* what needs the merged configuration reports at this line */
    ocf->url_file = cf->conf_file->file.name.data;
    ocf->url_line = cf->conf_file->line;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_voice_openai_parse_url(ngx_conf_t *cf, ngx_voice_openai_conf_t *conf,
    ngx_str_t *url)
{
    u_char     *p;
    ngx_url_t   u;

    if (url->len < sizeof("wss://") - 1 + 1
        || ngx_strncasecmp(url->data, (u_char *) "wss://", 6) != 0)
    {
        /* log-safe: configuration text */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"voice_openai_url\" \"%V\": "
                           "wss:// URL expected", url);
        return NGX_ERROR;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url.data = url->data + 6;
    u.url.len = url->len - 6;
    u.default_port = 443;
    u.uri_part = 1;
    u.no_resolve = 1;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.host.len == 0) {
        /* log-safe: configuration text; constant text */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"voice_openai_url\" \"%V\"%s%s",
                           url, u.err ? ": " : "", u.err ? u.err : "");
        return NGX_ERROR;
    }

    conf->url = *url;
    conf->host = u.host;
    conf->port = u.port;

    if (u.uri.len == 0) {
        ngx_str_set(&conf->uri, "/");

    } else {
        conf->uri = u.uri;
    }

    if (u.port == 443) {
        conf->host_header = u.host;
        return NGX_OK;
    }

    p = ngx_pnalloc(cf->pool, u.host.len + sizeof(":65535"));
    if (p == NULL) {
        return NGX_ERROR;
    }

    conf->host_header.data = p;
    conf->host_header.len = ngx_sprintf(p, "%V:%d", &u.host, (int) u.port)
                            - p;

    return NGX_OK;
}


char *
ngx_voice_openai_init_conf(ngx_conf_t *cf, ngx_voice_openai_conf_t *conf,
    u_char *file, ngx_uint_t line)
{
    if (conf->url_file == NULL) {
        /* the default URL: its problems are the location's */
        conf->url_file = file;
        conf->url_line = line;
    }

    if (ngx_voice_openai_addrs(cf, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return ngx_voice_openai_ssl(cf, conf);
}


static ngx_int_t
ngx_voice_openai_addrs(ngx_conf_t *cf, ngx_voice_openai_conf_t *conf)
{
    ngx_url_t                  ru;
    ngx_addr_t                *addr;
    ngx_http_core_loc_conf_t  *clcf;

    addr = ngx_pcalloc(cf->pool, sizeof(ngx_addr_t));
    if (addr == NULL) {
        return NGX_ERROR;
    }

    if (ngx_voice_openai_is_ip(cf, &conf->host, addr) == NGX_OK) {
        ngx_inet_set_port(addr->sockaddr, conf->port);

        addr->name.data = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN);
        if (addr->name.data == NULL) {
            return NGX_ERROR;
        }

        addr->name.len = ngx_sock_ntop(addr->sockaddr, addr->socklen,
                                       addr->name.data, NGX_SOCKADDR_STRLEN,
                                       1);
        conf->addrs = addr;
        conf->naddrs = 1;
        return NGX_OK;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->resolver && clcf->resolver->connections.nelts) {
        /* names are resolved per call, honouring their TTLs */
        conf->resolver = clcf->resolver;
        conf->resolver_timeout = clcf->resolver_timeout;
        return NGX_OK;
    }

    ngx_memzero(&ru, sizeof(ngx_url_t));
    ru.url.data = conf->url.data + 6;
    ru.url.len = conf->url.len - 6;
    ru.default_port = 443;
    ru.uri_part = 1;

    if (ngx_parse_url(cf->pool, &ru) == NGX_OK && ru.naddrs) {
        conf->addrs = ru.addrs;
        conf->naddrs = ru.naddrs;
        return NGX_OK;
    }

    /* a warning, at the line that named the host */

    /* log-safe: configuration file names and units */
    ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                  "host \"%V\" of \"voice_openai_url\" could not "
                  "be resolved%s%s; configure a \"resolver\" or "
                  "calls will be closed with 1011 in %s:%ui",
                  &conf->host, ru.err ? ": " : "", ru.err ? ru.err : "",
                  conf->url_file, conf->url_line);

    return NGX_OK;
}


static ngx_int_t
ngx_voice_openai_is_ip(ngx_conf_t *cf, ngx_str_t *host, ngx_addr_t *addr)
{
    ngx_str_t  h;

    h = *host;

    if (h.len > 2 && h.data[0] == '[' && h.data[h.len - 1] == ']') {
        h.data++;
        h.len -= 2;
    }

    return ngx_parse_addr(cf->pool, addr, h.data, h.len);
}


static char *
ngx_voice_openai_ssl(ngx_conf_t *cf, ngx_voice_openai_conf_t *conf)
{
    ngx_pool_cleanup_t  *cln;

    if (ngx_voice_openai_ssl_name(cf, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    conf->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (conf->ssl == NULL) {
        return NGX_CONF_ERROR;
    }

    conf->ssl->log = cf->log;

    if (ngx_ssl_create(conf->ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(conf->ssl);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = conf->ssl;

    if (conf->ssl_verify) {
        if (conf->ssl_trusted_certificate.len) {
            if (ngx_ssl_trusted_certificate(cf, conf->ssl,
                                            &conf->ssl_trusted_certificate,
                                            conf->ssl_verify_depth)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

        } else {
            /* a stock install verifies api.openai.com with no directive */

            if (SSL_CTX_set_default_verify_paths(conf->ssl->ctx) != 1) {
                ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0,
                              "SSL_CTX_set_default_verify_paths() failed");
                return NGX_CONF_ERROR;
            }

            SSL_CTX_set_verify_depth(conf->ssl->ctx,
                                     (int) conf->ssl_verify_depth);
        }
    }

    if (ngx_ssl_client_session_cache(cf, conf->ssl, conf->ssl_session_reuse)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* the name checked in the certificate and sent as SNI */
static ngx_int_t
ngx_voice_openai_ssl_name(ngx_conf_t *cf, ngx_voice_openai_conf_t *conf)
{
    ngx_str_t   name;
    ngx_addr_t  addr;

    /* derived per location: an inner voice_openai_url has its own host */
    conf->ssl_server_name = conf->ssl_name.len ? conf->ssl_name : conf->host;

    name = conf->ssl_server_name;

    if (name.len > 2 && name.data[0] == '[' && name.data[name.len - 1] == ']')
    {
        name.data++;
        name.len -= 2;
    }

    conf->ssl_name_z = ngx_pnalloc(cf->pool, name.len + 1);
    if (conf->ssl_name_z == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_cpystrn(conf->ssl_name_z, name.data, name.len + 1);

    conf->ssl_name_is_ip = (ngx_parse_addr(cf->pool, &addr, name.data,
                                           name.len)
                            == NGX_OK);

    return NGX_OK;
}
