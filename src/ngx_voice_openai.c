
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
#include "ngx_voice.h"


static ngx_int_t ngx_voice_openai_addrs(ngx_conf_t *cf,
    ngx_voice_loc_conf_t *conf, ngx_url_t *u);
static ngx_int_t ngx_voice_openai_is_ip(ngx_conf_t *cf, ngx_str_t *host,
    ngx_addr_t *addr);
static char *ngx_voice_openai_ssl(ngx_conf_t *cf, ngx_voice_loc_conf_t *conf);


char *
ngx_voice_openai_merge(ngx_conf_t *cf, ngx_voice_loc_conf_t *conf)
{
    u_char     *p;
    ngx_url_t   u;

    if (conf->openai_url.len < sizeof("wss://") - 1 + 1
        || ngx_strncasecmp(conf->openai_url.data, (u_char *) "wss://", 6)
           != 0)
    {
        /* log-safe: the URL from nginx.conf */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"voice_openai_url\" \"%V\": "
                           "wss:// URL expected", &conf->openai_url);
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url.data = conf->openai_url.data + 6;
    u.url.len = conf->openai_url.len - 6;
    u.default_port = 443;
    u.uri_part = 1;
    u.no_resolve = 1;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.host.len == 0) {
        /* log-safe: the URL from nginx.conf, nginx's parse error */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"voice_openai_url\" \"%V\"%s%s",
                           &conf->openai_url, u.err ? ": " : "",
                           u.err ? u.err : "");
        return NGX_CONF_ERROR;
    }

    conf->openai_host = u.host;
    conf->openai_port = u.port;

    if (u.uri.len == 0) {
        ngx_str_set(&conf->openai_uri, "/");

    } else {
        conf->openai_uri = u.uri;
    }

    if (u.port == 443) {
        conf->openai_host_header = u.host;

    } else {
        p = ngx_pnalloc(cf->pool, u.host.len + sizeof(":65535"));
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        conf->openai_host_header.data = p;
        conf->openai_host_header.len = ngx_sprintf(p, "%V:%d", &u.host,
                                                   (int) u.port)
                                       - p;
    }

    if (ngx_voice_openai_addrs(cf, conf, &u) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (conf->openai_key.len == 0) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"voice_openai_api_key\" is not set: "
                           "media streams will be closed with 1011");
    }

    return ngx_voice_openai_ssl(cf, conf);
}


static ngx_int_t
ngx_voice_openai_addrs(ngx_conf_t *cf, ngx_voice_loc_conf_t *conf,
    ngx_url_t *u)
{
    ngx_url_t                  ru;
    ngx_addr_t                *addr;
    ngx_http_core_loc_conf_t  *clcf;

    addr = ngx_pcalloc(cf->pool, sizeof(ngx_addr_t));
    if (addr == NULL) {
        return NGX_ERROR;
    }

    if (ngx_voice_openai_is_ip(cf, &u->host, addr) == NGX_OK) {
        ngx_inet_set_port(addr->sockaddr, u->port);

        addr->name.data = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN);
        if (addr->name.data == NULL) {
            return NGX_ERROR;
        }

        addr->name.len = ngx_sock_ntop(addr->sockaddr, addr->socklen,
                                       addr->name.data, NGX_SOCKADDR_STRLEN,
                                       1);
        conf->openai_addrs = addr;
        conf->openai_naddrs = 1;
        return NGX_OK;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->resolver && clcf->resolver->connections.nelts) {
        /* names are resolved per call, honouring their TTLs */
        return NGX_OK;
    }

    ngx_memzero(&ru, sizeof(ngx_url_t));
    ru.url = u->url;
    ru.default_port = 443;
    ru.uri_part = 1;

    if (ngx_parse_url(cf->pool, &ru) != NGX_OK || ru.naddrs == 0) {
        /* log-safe: the host from nginx.conf, nginx's parse error */
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "host \"%V\" of \"voice_openai_url\" could not "
                           "be resolved%s%s; configure a \"resolver\" or "
                           "calls will be closed with 1011",
                           &u->host, ru.err ? ": " : "",
                           ru.err ? ru.err : "");
        return NGX_OK;
    }

    conf->openai_addrs = ru.addrs;
    conf->openai_naddrs = ru.naddrs;

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
ngx_voice_openai_ssl(ngx_conf_t *cf, ngx_voice_loc_conf_t *conf)
{
    ngx_addr_t           addr;
    ngx_str_t            name;
    ngx_pool_cleanup_t  *cln;

    if (conf->ssl_name.len == 0) {
        conf->ssl_name = conf->openai_host;
    }

    name = conf->ssl_name;

    if (name.len > 2 && name.data[0] == '[' && name.data[name.len - 1] == ']')
    {
        name.data++;
        name.len -= 2;
    }

    conf->ssl_name_z = ngx_pnalloc(cf->pool, name.len + 1);
    if (conf->ssl_name_z == NULL) {
        return NGX_CONF_ERROR;
    }

    (void) ngx_cpystrn(conf->ssl_name_z, name.data, name.len + 1);

    conf->ssl_name_is_ip = (ngx_parse_addr(cf->pool, &addr, name.data,
                                           name.len)
                            == NGX_OK);

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
