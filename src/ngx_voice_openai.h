
/*
 * Copyright (C) ngx_voice authors
 *
 * Configuration of the OpenAI leg: its URL, key, where to find it (an IP
 * literal, nginx's resolver at run time, or a name resolved once while
 * the configuration is read, as proxy_pass does), the TLS context and
 * the connect timeout.
 */


#ifndef _NGX_VOICE_OPENAI_H_INCLUDED_
#define _NGX_VOICE_OPENAI_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


typedef struct {
    ngx_str_t                   url;
    u_char                     *url_file;      /* where it was set */
    ngx_uint_t                  url_line;
    ngx_str_t                   api_key;       /* secret */
    ngx_msec_t                  connect_timeout;

    ngx_flag_t                  ssl_verify;
    ngx_uint_t                  ssl_verify_depth;
    ngx_str_t                   ssl_trusted_certificate;
    ngx_str_t                   ssl_name;
    ngx_flag_t                  ssl_session_reuse;

    /* derived at merge time */
    ngx_str_t                   host;          /* to resolve */
    ngx_str_t                   host_header;   /* host[:port] */
    ngx_str_t                   uri;           /* path?query */
    in_port_t                   port;
    ngx_addr_t                 *addrs;         /* NULL: resolve per call */
    ngx_uint_t                  naddrs;
    ngx_resolver_t             *resolver;
    ngx_msec_t                  resolver_timeout;

    ngx_ssl_t                  *ssl;
    ngx_str_t                   ssl_server_name; /* checked, and SNI */
    u_char                     *ssl_name_z;
    ngx_uint_t                  ssl_name_is_ip;
    ngx_ssl_session_t          *ssl_session;   /* per worker */
} ngx_voice_openai_conf_t;


void ngx_voice_openai_create_conf(ngx_voice_openai_conf_t *conf);
char *ngx_voice_openai_merge_conf(ngx_conf_t *cf,
    ngx_voice_openai_conf_t *prev, ngx_voice_openai_conf_t *conf);

/*
 * A media-stream location's: the URL resolved, TLS ready.  A default URL
 * reports its problems at "file":"line", the location's.
 */
char *ngx_voice_openai_init_conf(ngx_conf_t *cf,
    ngx_voice_openai_conf_t *conf, u_char *file, ngx_uint_t line);

/* voice_openai_url: checked where it is written (cmd->offset: the conf) */
char *ngx_voice_openai_set_url(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_VOICE_OPENAI_H_INCLUDED_ */
