
/*
 * Copyright (C) ngx_voice authors
 */


#ifndef _NGX_VOICE_SECRET_H_INCLUDED_
#define _NGX_VOICE_SECRET_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * Resolves a secret given as a literal, "env:NAME" or "file:/path" (first
 * line) into "secret", allocated from cf->pool and wiped when that pool is
 * destroyed.  Errors name the directive and the source, never the value.
 */
char *ngx_voice_secret_load(ngx_conf_t *cf, ngx_str_t *directive,
    ngx_str_t *value, ngx_str_t *secret);

/* a stock-looking slot setter for ngx_str_t fields that hold secrets */
char *ngx_voice_conf_set_secret_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_VOICE_SECRET_H_INCLUDED_ */
