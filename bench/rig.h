
/*
 * Copyright (C) ngx_voice authors
 *
 * The load rig: simulated Twilio callers, a stand-in for OpenAI Realtime
 * and a floor server, all in one libwebsockets context (see bench/README).
 */


#ifndef _RIG_H_INCLUDED_
#define _RIG_H_INCLUDED_


#include <libwebsockets.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>


#define RIG_FRAME_BYTES      160
#define RIG_FRAME_US         20000
#define RIG_FRAME_B64        216         /* base64 of 160 bytes */
#define RIG_HDR_BYTES        9           /* frame id at the payload's head */
#define RIG_HDR_B64          12
#define RIG_RING             2048        /* frames a call remembers: 41 s */
#define RIG_MARKS            512         /* marks waiting to be echoed */
#define RIG_MARK_NAME        40
#define RIG_MSG_MAX          (64 * 1024)
#define RIG_HIST_SUB         7
#define RIG_HIST_N           ((40 << RIG_HIST_SUB) + (1 << (RIG_HIST_SUB + 1)))
#define RIG_MAX_PIDS         64

#define RIG_SENT             0x01
#define RIG_RETURNED         0x02
#define RIG_WINDOW           0x04
#define RIG_LATE             0x08        /* a late delta of a cut response */


typedef struct rig_oa_s      rig_oa_t;
typedef struct rig_caller_s  rig_caller_t;


/* a log-linear histogram of microseconds, under 1 % wide */
typedef struct {
    uint64_t                 n;
    uint64_t                 count[RIG_HIST_N];
} rig_hist_t;


/* a growing buffer: one message being assembled, or messages to send */
typedef struct {
    unsigned char           *data;
    size_t                   len;
    size_t                   size;
} rig_buf_t;


typedef struct {
    uint32_t                 seq;
    uint32_t                 flags;
    int64_t                  sent_us;
} rig_frame_t;


typedef struct {
    char                     name[RIG_MARK_NAME];
    int64_t                  due_us;
} rig_mark_t;


typedef enum {
    RIG_CALL_IDLE = 0,
    RIG_CALL_WEBHOOK,
    RIG_CALL_UPGRADE,
    RIG_CALL_OPEN,
    RIG_CALL_CLOSING,
    RIG_CALL_DONE
} rig_call_state_e;


typedef enum {
    RIG_HANGUP_NONE = 0,
    RIG_HANGUP_CALLER,
    RIG_HANGUP_OPENAI
} rig_hangup_e;


struct rig_caller_s {
    uint32_t                 idx;
    rig_call_state_e         state;
    unsigned                 floor:1;       /* direct to the floor port */
    unsigned                 hello_sent:1;
    unsigned                 flowing:1;     /* audio has come back */
    unsigned                 stop_due:1;
    unsigned                 stop_sent:1;
    unsigned                 upgraded:1;
    unsigned                 closed_by_peer:1;

    struct lws              *http;
    struct lws              *ws;
    rig_oa_t                *oa;            /* its OpenAI leg at the rig */

    char                     call_sid[36];
    char                     stream_sid[36];
    char                     token[96];
    char                     path[128];
    char                     sig[40];
    char                     body[256];
    size_t                   body_len;
    rig_buf_t                http_rx;
    rig_buf_t                rx;

    int64_t                  next_us;       /* the next frame is due */
    int64_t                  hangup_us;     /* soak: when it hangs up */
    int64_t                  stop_us;       /* Twilio's stop is due */
    int64_t                  relaunch_us;   /* soak: the next call */
    int64_t                  dtmf_us;       /* soak: the next digit */
    rig_hangup_e             hangup;
    uint32_t                 seq;           /* frames sent */
    uint32_t                 msg_seq;       /* Twilio's sequenceNumber */
    unsigned                 dtmf_due;

    int64_t                  play_end_us;
    unsigned                 mark_head;
    unsigned                 nmarks;
    rig_mark_t               marks[RIG_MARKS];

    /* what this call did, for the info lines to be checked against */
    uint64_t                 msgs_sent;
    uint64_t                 msgs_recv;     /* close frame included */
    uint64_t                 clears;
    uint64_t                 dtmf_sent;
    unsigned                 peer_close_code;

    rig_frame_t              ring[RIG_RING];
};


struct rig_oa_s {
    struct lws              *wsi;
    rig_caller_t            *caller;
    unsigned                 floor:1;
    unsigned                 close_due:1;
    unsigned                 closing:1;
    uint32_t                 conn;
    uint32_t                 response;      /* response and item number */
    uint32_t                 appends;
    uint32_t                 next_barge;    /* appends until speech starts */
    uint32_t                 late_left;     /* deltas still of the old one */
    uint32_t                 out_seq;
    rig_buf_t                rx;
    rig_buf_t                out;           /* queued messages: len, data */
};


typedef struct {
    /* options */
    const char              *host;
    int                      nginx_port;
    int                      openai_port;
    int                      floor_port;
    const char              *cert;
    const char              *key;
    unsigned                 calls;
    unsigned                 seconds;
    unsigned                 floor_seconds;
    unsigned                 warmup_ms;
    unsigned                 drain_ms;
    unsigned                 barge_ms;      /* 0: no barge-ins */
    unsigned                 late_deltas;
    unsigned                 ramp;          /* calls started per second */
    unsigned                 soak;          /* soak seconds, 0: a bench run */
    unsigned                 soak_min_s;
    unsigned                 soak_max_s;
    unsigned                 soak_warmup_s;
    unsigned                 dtmf_ms;
    const char              *calls_file;
    const char              *at_start;
    const char              *at_end;
    pid_t                    pids[RIG_MAX_PIDS];
    unsigned                 npids;
    unsigned                 verbose;

    struct lws_context      *ctx;
    struct lws_vhost        *client_vh;
    int64_t                  tick_us;       /* the tick's grid point */

    rig_caller_t            *callers;
    unsigned                 ncallers;
    unsigned                 launched;
    int64_t                  launch_us;
    uint32_t                 oa_conns;

    /* the phase of the run */
    int                      phase;
    int64_t                  phase_us;
    int64_t                  win_start_us;
    int64_t                  win_end_us;
    int                      window_open;   /* frames sent now count */

    /* measured */
    rig_hist_t               lat;
    rig_hist_t               floor_lat;
    rig_hist_t               lag;
    rig_hist_t               floor_lag;
    uint64_t                 frames_sent;
    uint64_t                 frames_returned;
    uint64_t                 lost;
    uint64_t                 dropped_bb;
    uint64_t                 cut_by_hangup;
    uint64_t                 misrouted;
    uint64_t                 duplicates;
    uint64_t                 stale;
    uint64_t                 mark_overflow;
    uint64_t                 errors;
    double                   rig_cpu_ms;
    double                   worker_cpu_ms;
    double                   machine_busy_pct;
    long                     rss_idle_kb;
    long                     rss_kb;
    long                     rss_warm_kb;   /* soak */
    pid_t                    at_start_pid;

    /* counts for the soak's checks */
    uint64_t                 calls_started;
    uint64_t                 calls_upgraded;
    uint64_t                 calls_failed;
    uint64_t                 calls_ended;
    uint64_t                 hangups_caller;
    uint64_t                 hangups_openai;
    uint64_t                 barge_ins;
    uint64_t                 clears;
    uint64_t                 truncates;
    uint64_t                 dtmf_sent;
    uint64_t                 dtmf_seen;
    uint64_t                 sessions_updated;
    uint64_t                 oa_open;
    FILE                    *calls_fp;
} rig_t;


extern rig_t  rig;


/* rig_caller.c: Twilio's side of a call */
extern const struct lws_protocols  rig_caller_protocol;
int rig_caller_launch(rig_caller_t *c, int floor);
void rig_caller_tick(rig_caller_t *c, int64_t now);
void rig_caller_hangup(rig_caller_t *c, rig_hangup_e side);
void rig_caller_finalize(rig_caller_t *c, int64_t cut_from);

/* rig_peer.c: the OpenAI stand-in and the floor */
extern const struct lws_protocols  rig_openai_protocol;
extern const struct lws_protocols  rig_floor_protocol;
void rig_oa_close(rig_oa_t *oa);

/* rig_util.c */
int64_t rig_now(void);
void rig_frame_header(unsigned char *hdr, uint32_t call, uint32_t seq);
int rig_frame_id(const char *b64, size_t len, uint32_t *call, uint32_t *seq);
const char *rig_frame_b64_tail(void);
int rig_sign(const char *key, const char *data, size_t len, char *out);
const char *rig_json_str(const char *msg, size_t len, const char *key,
    size_t *vlen);
int rig_buf_add(rig_buf_t *b, const void *data, size_t len);
int rig_message(struct lws *wsi, rig_buf_t *b, void *in, size_t len,
    const char **msg, size_t *n);
int rig_queue(rig_buf_t *q, const char *msg, size_t len);
int rig_queue_flush(struct lws *wsi, rig_buf_t *q);
int rig_send(struct lws *wsi, const char *msg, size_t len);
void rig_hist_add(rig_hist_t *h, int64_t us);
double rig_hist_pct(rig_hist_t *h, double pct);
long rig_proc_cpu_ms(pid_t pid);
long rig_proc_rss_kb(pid_t pid);
void rig_hex(char *out, size_t n);


#endif /* _RIG_H_INCLUDED_ */
