
/*
 * Copyright (C) ngx_voice authors
 *
 * The OpenAI session a location asks for: its directives and the
 * session.update text (and the greeting), built once at configuration
 * time.
 */


#ifndef _NGX_VOICE_SESSION_H_INCLUDED_
#define _NGX_VOICE_SESSION_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef struct {
    ngx_str_t                    type;            /* server_vad, ... */
    ngx_str_t                    eagerness;
    ngx_str_t                    threshold;
    ngx_int_t                    silence_duration_ms;
    ngx_int_t                    prefix_padding_ms;
} ngx_voice_turn_detection_t;


typedef struct {
    ngx_str_t                    name;
    ngx_str_t                    value;           /* may be a secret */
} ngx_voice_header_t;


typedef struct {
    ngx_str_t                    label;
    ngx_str_t                    url;
    ngx_array_t                  headers;         /* ngx_voice_header_t */
    ngx_array_t                 *allowed_tools;   /* ngx_str_t */
} ngx_voice_mcp_server_t;


/* voice_transfer LABEL DESTINATION ["description"] */
typedef struct {
    ngx_str_t                    label;           /* what the model sees */
    ngx_str_t                    destination;     /* E.164 or sip: */
    ngx_str_t                    description;
    ngx_uint_t                   sip;
} ngx_voice_transfer_t;


typedef struct {
    ngx_str_t                    voice;
    ngx_str_t                    instructions;
    ngx_str_t                    greeting;
    ngx_voice_turn_detection_t  *turn_detection;
    ngx_array_t                 *mcp_servers;     /* ngx_voice_mcp_server_t */
    ngx_flag_t                   hangup;          /* the end_call tool */
    ngx_array_t                 *transfers;       /* ngx_voice_transfer_t */
    ngx_str_t                    transcription_model;
    ngx_uint_t                   transcribe;      /* a transcript log is on */

    /* built for a media-stream location; may hold secrets */
    ngx_str_t                    session_update;
    ngx_str_t                    greeting_item;
} ngx_voice_session_conf_t;


void ngx_voice_session_create_conf(ngx_voice_session_conf_t *conf);
char *ngx_voice_session_merge_conf(ngx_conf_t *cf,
    ngx_voice_session_conf_t *prev, ngx_voice_session_conf_t *conf);

/* session.update and the greeting item, for a media-stream location */
ngx_int_t ngx_voice_session_build(ngx_conf_t *cf,
    ngx_voice_session_conf_t *conf);

/* the directives (cmd->offset: the conf) */
char *ngx_voice_session_set_turn_detection(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_voice_session_set_mcp_server(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_voice_session_set_instructions_file(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_voice_session_set_transfer(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* the transfer a label names, or NULL */
ngx_voice_transfer_t *ngx_voice_session_transfer(
    ngx_voice_session_conf_t *conf, ngx_str_t *label);


#endif /* _NGX_VOICE_SESSION_H_INCLUDED_ */
