
/*
 * Copyright (C) ngx_voice authors
 *
 * The load rig's main: options, the libwebsockets context with its three
 * vhosts (callers, the OpenAI stand-in on TLS, the floor), the 1 ms tick
 * that paces every caller, the phases of a run and its one JSON line.
 *
 * A bench run: the floor (callers straight to the floor port), then the
 * same number of calls through nginx; once all of them have audio coming
 * back and a warm-up has passed, the measured window, a drain for the
 * frames still on their way, and the hang-ups.  A soak keeps the calls
 * coming and going for its whole time instead.
 */


#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include "rig.h"


#define RIG_TICK_US        1000
#define RIG_SETUP_TIMEOUT  30000000
#define RIG_END_TIMEOUT    15000000


enum {
    RIG_P_FLOOR_SETUP = 0,
    RIG_P_FLOOR_WARM,
    RIG_P_FLOOR_WINDOW,
    RIG_P_FLOOR_END,
    RIG_P_SETUP,
    RIG_P_WARM,
    RIG_P_WINDOW,
    RIG_P_DRAIN,
    RIG_P_END,
    RIG_P_SOAK,
    RIG_P_SOAK_END
};


rig_t  rig;

static const char  *rig_detail_file;
static pid_t        rig_at_end_pid;
static int64_t      rig_progress_us;
static long         rig_rss_trend[64];
static unsigned     rig_rss_n;
static double       rig_worker_cpu0;
static double       rig_cpu0;
static int          rig_timer_fd = -1;
static uint64_t     rig_busy0;
static uint64_t     rig_all0;


static int rig_options(int argc, char **argv);
static int rig_context(void);
static struct lws_vhost *rig_vhost(const char *name, int port,
    const struct lws_protocols *protocols, const char *cert);
static int rig_tick_start(void);
static int rig_tick_cb(struct lws *wsi, enum lws_callback_reasons reason,
    void *user, void *in, size_t len);
static void rig_tick(void);
static void rig_launch(int64_t now, int floor);
static void rig_soak_launch(int64_t now);
static void rig_phase(int64_t now);
static int rig_setup_done(int64_t now);
static void rig_hangup_all(void);
static int rig_all_done(void);
static void rig_window_start(int64_t now);
static void rig_window_end(int64_t now);
static void rig_progress(int64_t now);
static void rig_finish(int rc);
static void rig_output(void);
static void rig_output_detail(void);
static double rig_self_cpu_ms(void);
static int rig_machine_jiffies(uint64_t *busy, uint64_t *all);
static double rig_workers_cpu_ms(void);
static long rig_workers_rss_kb(void);
static pid_t rig_spawn(const char *cmd);
static void rig_reap(pid_t *pid);
static void rig_usage(void);


int
main(int argc, char **argv)
{
    unsigned  i;

    signal(SIGPIPE, SIG_IGN);
    srandom((unsigned) getpid() ^ (unsigned) rig_now());

    if (rig_options(argc, argv) != 0) {
        rig_usage();
        return 2;
    }

    rig.ncallers = rig.calls;
    rig.callers = calloc(rig.ncallers, sizeof(rig_caller_t));

    if (rig.callers == NULL) {
        fprintf(stderr, "rig: out of memory\n");
        return 1;
    }

    for (i = 0; i < rig.ncallers; i++) {
        rig.callers[i].idx = i;
    }

    if (rig.calls_file) {
        rig.calls_fp = fopen(rig.calls_file, "w");

        if (rig.calls_fp == NULL) {
            fprintf(stderr, "rig: %s: %s\n", rig.calls_file,
                    strerror(errno));
            return 1;
        }
    }

    lws_set_log_level(rig.verbose ? LLL_ERR | LLL_WARN | LLL_NOTICE
                                  : LLL_ERR, NULL);

    if (rig_context() != 0) {
        return 1;
    }

    rig.rss_idle_kb = rig_workers_rss_kb();

    if (rig.soak) {
        rig.phase = RIG_P_SOAK;
        rig_window_start(rig_now());

    } else {
        rig.phase = rig.floor_seconds ? RIG_P_FLOOR_SETUP : RIG_P_SETUP;
    }

    if (rig_tick_start() != 0) {
        return 1;
    }

    rig.phase_us = rig_now();
    rig.launch_us = rig.phase_us;
    rig_progress_us = rig.phase_us;

    for ( ;; ) {
        /* with an event library this runs its loop until the run ends */
        if (lws_service(rig.ctx, 0) < 0) {
            break;
        }
    }

    fprintf(stderr, "rig: the event loop stopped\n");

    return 1;
}


static int
rig_options(int argc, char **argv)
{
    int    o;
    char  *p, *end;
    static const struct option  opts[] = {
        { "host", required_argument, NULL, 'H' },
        { "nginx-port", required_argument, NULL, 'n' },
        { "openai-port", required_argument, NULL, 'o' },
        { "floor-port", required_argument, NULL, 'f' },
        { "cert", required_argument, NULL, 'c' },
        { "key", required_argument, NULL, 'k' },
        { "calls", required_argument, NULL, 'N' },
        { "seconds", required_argument, NULL, 's' },
        { "floor-seconds", required_argument, NULL, 'F' },
        { "warmup-ms", required_argument, NULL, 'w' },
        { "drain-ms", required_argument, NULL, 'd' },
        { "barge-ms", required_argument, NULL, 'b' },
        { "late-deltas", required_argument, NULL, 'l' },
        { "ramp", required_argument, NULL, 'r' },
        { "pids", required_argument, NULL, 'p' },
        { "at-start", required_argument, NULL, 'A' },
        { "at-end", required_argument, NULL, 'E' },
        { "soak", required_argument, NULL, 'S' },
        { "soak-min", required_argument, NULL, 'm' },
        { "soak-max", required_argument, NULL, 'M' },
        { "soak-warmup", required_argument, NULL, 'W' },
        { "dtmf-ms", required_argument, NULL, 'D' },
        { "calls-file", required_argument, NULL, 'C' },
        { "detail", required_argument, NULL, 'J' },
        { "verbose", no_argument, NULL, 'v' },
        { NULL, 0, NULL, 0 }
    };

    rig.host = "127.0.0.1";
    rig.calls = 100;
    rig.seconds = 20;
    rig.floor_seconds = 5;
    rig.warmup_ms = 2000;
    rig.drain_ms = 1000;
    rig.barge_ms = 4000;
    rig.late_deltas = 3;
    rig.ramp = 200;
    rig.soak_min_s = 20;
    rig.soak_max_s = 90;
    rig.soak_warmup_s = 60;
    rig.dtmf_ms = 15000;

    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'H': rig.host = optarg; break;
        case 'n': rig.nginx_port = atoi(optarg); break;
        case 'o': rig.openai_port = atoi(optarg); break;
        case 'f': rig.floor_port = atoi(optarg); break;
        case 'c': rig.cert = optarg; break;
        case 'k': rig.key = optarg; break;
        case 'N': rig.calls = atoi(optarg); break;
        case 's': rig.seconds = atoi(optarg); break;
        case 'F': rig.floor_seconds = atoi(optarg); break;
        case 'w': rig.warmup_ms = atoi(optarg); break;
        case 'd': rig.drain_ms = atoi(optarg); break;
        case 'b': rig.barge_ms = atoi(optarg); break;
        case 'l': rig.late_deltas = atoi(optarg); break;
        case 'r': rig.ramp = atoi(optarg); break;
        case 'A': rig.at_start = optarg; break;
        case 'E': rig.at_end = optarg; break;
        case 'S': rig.soak = atoi(optarg); break;
        case 'm': rig.soak_min_s = atoi(optarg); break;
        case 'M': rig.soak_max_s = atoi(optarg); break;
        case 'W': rig.soak_warmup_s = atoi(optarg); break;
        case 'D': rig.dtmf_ms = atoi(optarg); break;
        case 'C': rig.calls_file = optarg; break;
        case 'J': rig_detail_file = optarg; break;
        case 'v': rig.verbose = 1; break;

        case 'p':
            for (p = optarg; *p && rig.npids < RIG_MAX_PIDS; p = end) {
                rig.pids[rig.npids++] = (pid_t) strtol(p, &end, 10);

                if (*end == ',') {
                    end++;

                } else if (*end != '\0') {
                    return -1;
                }
            }

            break;

        default:
            return -1;
        }
    }

    if (rig.calls == 0 || rig.ramp == 0 || rig.nginx_port <= 0
        || rig.openai_port <= 0 || rig.floor_port <= 0 || rig.cert == NULL
        || rig.key == NULL || (rig.seconds == 0 && rig.soak == 0)
        || rig.soak_max_s < rig.soak_min_s || rig.dtmf_ms < 2)
    {
        return -1;
    }

    return 0;
}


static void
rig_usage(void)
{
    fprintf(stderr,
        "usage: voice-rig --nginx-port P --openai-port P --floor-port P\n"
        "           --cert PEM --key PEM [--calls N] [--seconds S]\n"
        "           [--floor-seconds S] [--warmup-ms MS] [--drain-ms MS]\n"
        "           [--barge-ms MS] [--late-deltas N] [--ramp CALLS/S]\n"
        "           [--pids PID,...] [--at-start CMD] [--at-end CMD]\n"
        "           [--detail FILE] [--calls-file FILE]\n"
        "           [--soak S --soak-min S --soak-max S --soak-warmup S\n"
        "            --dtmf-ms MS] [--verbose]\n");
}


/* a vhost on the loopback; with a certificate, on TLS */
static struct lws_vhost *
rig_vhost(const char *name, int port, const struct lws_protocols *protocols,
    const char *cert)
{
    struct lws_vhost                 *vh;
    struct lws_context_creation_info  info;

    memset(&info, 0, sizeof(info));
    info.vhost_name = name;
    info.port = port;
    info.iface = port == CONTEXT_PORT_NO_LISTEN ? NULL : rig.host;
    info.protocols = protocols;

    if (cert) {
        info.ssl_cert_filepath = cert;
        info.ssl_private_key_filepath = rig.key;
        info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    }

    vh = lws_create_vhost(rig.ctx, &info);

    if (vh == NULL) {
        fprintf(stderr, "rig: the %s vhost cannot listen on %d\n", name,
                port);
    }

    return vh;
}


static const struct lws_protocols  rig_tick_protocol = {
    "rig-tick", rig_tick_cb, 0, 0, 0, NULL, 0
};


static int
rig_context(void)
{
    struct lws_context_creation_info  info;
    static struct lws_protocols       client[3], openai[2], floor[2];

    client[0] = rig_caller_protocol;
    client[1] = rig_tick_protocol;
    openai[0] = rig_openai_protocol;
    floor[0] = rig_floor_protocol;

    /*
     * libev (epoll): lws's own poll() loop costs a scan of every socket
     * per wake-up, and rounds waits under 1 ms down to busy polling
     */

    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT
                   | LWS_SERVER_OPTION_EXPLICIT_VHOSTS
                   | LWS_SERVER_OPTION_LIBEV;

    rig.ctx = lws_create_context(&info);
    if (rig.ctx == NULL) {
        fprintf(stderr, "rig: lws_create_context failed\n");
        return -1;
    }

    rig.client_vh = rig_vhost("callers", CONTEXT_PORT_NO_LISTEN, client,
                              NULL);

    if (rig.client_vh == NULL
        || rig_vhost("openai", rig.openai_port, openai, rig.cert) == NULL
        || rig_vhost("floor", rig.floor_port, floor, NULL) == NULL)
    {
        return -1;
    }

    return 0;
}


/*
 * The tick: a timerfd firing every millisecond on an absolute grid, in the
 * event loop as a raw file; lws's own timers wake on whole milliseconds of
 * epoll_wait and would add up to 1 ms to every send
 */
static int
rig_tick_start(void)
{
    struct timespec        now;
    struct itimerspec      its;
    lws_sock_file_fd_type  fd;

    rig_timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);

    if (rig_timer_fd == -1) {
        fprintf(stderr, "rig: timerfd_create: %s\n", strerror(errno));
        return -1;
    }

    clock_gettime(CLOCK_MONOTONIC, &now);

    rig.tick_us = (int64_t) now.tv_sec * 1000000 + now.tv_nsec / 1000
                  + RIG_TICK_US;

    its.it_value.tv_sec = rig.tick_us / 1000000;
    its.it_value.tv_nsec = (rig.tick_us % 1000000) * 1000;
    its.it_interval.tv_sec = 0;
    its.it_interval.tv_nsec = RIG_TICK_US * 1000;

    if (timerfd_settime(rig_timer_fd, TFD_TIMER_ABSTIME, &its, NULL) != 0) {
        fprintf(stderr, "rig: timerfd_settime: %s\n", strerror(errno));
        return -1;
    }

    fd.filefd = rig_timer_fd;

    if (lws_adopt_descriptor_vhost(rig.client_vh, LWS_ADOPT_RAW_FILE_DESC, fd,
                                   rig_tick_protocol.name, NULL)
        == NULL)
    {
        fprintf(stderr, "rig: the tick's timerfd cannot be adopted\n");
        return -1;
    }

    return 0;
}


static int
rig_tick_cb(struct lws *wsi, enum lws_callback_reasons reason,
    void *user, void *in, size_t len)
{
    uint64_t  n;

    (void) wsi;
    (void) user;
    (void) in;
    (void) len;

    if (reason != LWS_CALLBACK_RAW_RX_FILE) {
        return 0;
    }

    if (read(rig_timer_fd, &n, sizeof(n)) != sizeof(n)) {
        return 0;
    }

    /* the grid point of the latest expiry; the ones missed are skipped */
    rig.tick_us += (int64_t) (n - 1) * RIG_TICK_US;

    rig_tick();

    rig.tick_us += RIG_TICK_US;

    return 0;
}


/* every millisecond: calls to start, what each call has due, the phase */
static void
rig_tick(void)
{
    unsigned  i;
    int64_t   now;

    now = rig_now();

    if (rig.phase == RIG_P_FLOOR_SETUP || rig.phase == RIG_P_SETUP) {
        rig_launch(now, rig.phase == RIG_P_FLOOR_SETUP);

    } else if (rig.phase == RIG_P_SOAK) {
        rig_soak_launch(now);
    }

    for (i = 0; i < rig.ncallers; i++) {
        rig_caller_tick(&rig.callers[i], now);
    }

    rig_phase(now);

    if (rig.verbose || rig.soak) {
        rig_progress(now);
    }
}


static void
rig_launch(int64_t now, int floor)
{
    while (rig.launched < rig.ncallers && rig.launch_us <= now) {
        (void) rig_caller_launch(&rig.callers[rig.launched++], floor);
        rig.launch_us += 1000000 / rig.ramp;
    }
}


/* a soak: a call that ended is followed by a new one, soon */
static void
rig_soak_launch(int64_t now)
{
    unsigned       i, n;
    rig_caller_t  *c;

    n = 0;

    for (i = 0; i < rig.ncallers; i++) {
        c = &rig.callers[i];

        if (c->state != RIG_CALL_IDLE && c->state != RIG_CALL_DONE) {
            continue;
        }

        if (c->relaunch_us == 0) {
            c->relaunch_us = now + (c->state == RIG_CALL_IDLE
                                    ? (int64_t) i * 1000000 / rig.ramp
                                    : random() % 500000);
            continue;
        }

        if (c->relaunch_us > now || n++ > rig.ramp / 100 + 1) {
            continue;
        }

        if (rig_caller_launch(c, 0) != 0) {
            continue;
        }

        c->hangup_us = now + 1000000 * (int64_t) rig.soak_min_s
                       + random() % (1000000 * (int64_t)
                                     (rig.soak_max_s - rig.soak_min_s + 1));
        c->dtmf_us = now + (int64_t) rig.dtmf_ms * (500 + random() % 1000);
    }
}


static void
rig_phase(int64_t now)
{
    int64_t   in;
    unsigned  i;

    in = now - rig.phase_us;

    switch (rig.phase) {

    case RIG_P_FLOOR_SETUP:
    case RIG_P_SETUP:
        if (rig_setup_done(now)) {
            rig.phase++;
            rig.phase_us = now;
        }

        break;

    case RIG_P_FLOOR_WARM:
    case RIG_P_WARM:
        if (in >= (int64_t) rig.warmup_ms * 1000) {
            rig.phase++;
            rig.phase_us = now;

            if (rig.phase == RIG_P_WINDOW) {
                rig_window_start(now);

            } else {
                rig.window_open = 1;
            }
        }

        break;

    case RIG_P_FLOOR_WINDOW:
        if (in >= (int64_t) rig.floor_seconds * 1000000) {
            rig.window_open = 0;
            rig.phase = RIG_P_FLOOR_END;
            rig.phase_us = now;
            rig_hangup_all();
        }

        break;

    case RIG_P_FLOOR_END:
        if (rig_all_done() || in > RIG_END_TIMEOUT) {
            rig.launched = 0;
            rig.phase = RIG_P_SETUP;
            rig.phase_us = now;
            rig.launch_us = now;
        }

        break;

    case RIG_P_WINDOW:
        if (in >= (int64_t) rig.seconds * 1000000) {
            rig_window_end(now);
            rig.phase = RIG_P_DRAIN;
            rig.phase_us = now;
        }

        break;

    case RIG_P_DRAIN:
        if (in >= (int64_t) rig.drain_ms * 1000) {
            rig_reap(&rig.at_start_pid);
            rig_reap(&rig_at_end_pid);

            /* what has not come back by now is lost */
            for (i = 0; i < rig.ncallers; i++) {
                rig_caller_finalize(&rig.callers[i], 0);
            }

            rig.phase = RIG_P_END;
            rig.phase_us = now;
            rig_hangup_all();
        }

        break;

    case RIG_P_END:
    case RIG_P_SOAK_END:
        if (rig.phase == RIG_P_SOAK_END) {
            /* calls still being set up hang up once they are open */
            rig_hangup_all();
        }

        if (rig_all_done()) {
            rig_finish(0);
        }

        if (in > RIG_END_TIMEOUT) {
            fprintf(stderr, "rig: calls or OpenAI legs (%llu) still open "
                    "%d s after the hang-ups\n",
                    (unsigned long long) rig.oa_open,
                    RIG_END_TIMEOUT / 1000000);
            rig_finish(1);
        }

        break;

    case RIG_P_SOAK:
        if (rig.rss_warm_kb == 0
            && in >= (int64_t) rig.soak_warmup_s * 1000000)
        {
            rig.rss_warm_kb = rig_workers_rss_kb();
        }

        if (in >= (int64_t) rig.soak * 1000000) {
            rig_window_end(now);
            rig.phase = RIG_P_SOAK_END;
            rig.phase_us = now;
            rig_hangup_all();
        }

        break;
    }
}


/* all calls launched and audio coming back on each, or a failed run */
static int
rig_setup_done(int64_t now)
{
    unsigned       i, flowing, failed;
    rig_caller_t  *c;

    if (rig.launched < rig.ncallers) {
        return 0;
    }

    flowing = 0;
    failed = 0;

    for (i = 0; i < rig.ncallers; i++) {
        c = &rig.callers[i];
        flowing += c->flowing && c->state == RIG_CALL_OPEN;
        failed += c->state == RIG_CALL_DONE;
    }

    if (flowing == rig.ncallers) {
        return 1;
    }

    if (failed || now - rig.phase_us > RIG_SETUP_TIMEOUT) {
        fprintf(stderr, "rig: %u of %u calls set up, %u failed%s\n",
                flowing, rig.ncallers, failed,
                failed ? "" : ", timed out");
        rig_hangup_all();
        rig.phase = RIG_P_END;
        rig.phase_us = now;
        rig.errors++;
    }

    return 0;
}


static void
rig_hangup_all(void)
{
    unsigned  i;

    for (i = 0; i < rig.ncallers; i++) {
        rig_caller_hangup(&rig.callers[i], RIG_HANGUP_CALLER);
    }
}


/*
 * Every call over and, but between the floor and the relay, every OpenAI
 * leg closed by nginx
 */
static int
rig_all_done(void)
{
    unsigned  i;

    if (rig.phase != RIG_P_FLOOR_END && rig.oa_open) {
        return 0;
    }

    for (i = 0; i < rig.ncallers; i++) {
        if (rig.callers[i].state != RIG_CALL_DONE
            && rig.callers[i].state != RIG_CALL_IDLE)
        {
            return 0;
        }
    }

    return 1;
}


static void
rig_window_start(int64_t now)
{
    rig.window_open = 1;
    rig.win_start_us = now;
    rig_cpu0 = rig_self_cpu_ms();
    rig_worker_cpu0 = rig_workers_cpu_ms();
    (void) rig_machine_jiffies(&rig_busy0, &rig_all0);

    if (rig.at_start) {
        rig.at_start_pid = rig_spawn(rig.at_start);
    }
}


static void
rig_window_end(int64_t now)
{
    uint64_t  busy, all;

    rig.window_open = 0;
    rig.win_end_us = now;
    rig.rig_cpu_ms = rig_self_cpu_ms() - rig_cpu0;
    rig.worker_cpu_ms = rig_workers_cpu_ms() - rig_worker_cpu0;
    rig.rss_kb = rig_workers_rss_kb();

    if (rig_machine_jiffies(&busy, &all) == 0 && all > rig_all0) {
        /* of all cores: 100 % is every core busy */
        rig.machine_busy_pct = 100.0 * (busy - rig_busy0) / (all - rig_all0);
    }

    /* a tracer started with the window stops with it */

    if (rig.at_start_pid > 0) {
        kill(rig.at_start_pid, SIGINT);
    }

    if (rig.at_end) {
        rig_at_end_pid = rig_spawn(rig.at_end);
    }
}


static void
rig_progress(int64_t now)
{
    unsigned  i, open;

    if (now - rig_progress_us < 10000000) {
        return;
    }

    rig_progress_us = now;
    open = 0;

    if (rig_rss_n < sizeof(rig_rss_trend) / sizeof(rig_rss_trend[0])) {
        rig_rss_trend[rig_rss_n++] = rig_workers_rss_kb();
    }

    for (i = 0; i < rig.ncallers; i++) {
        open += rig.callers[i].state == RIG_CALL_OPEN;
    }

    fprintf(stderr, "rig: +%llds phase %d, %u calls open, %llu started, "
            "%llu ended, %llu failed, OpenAI legs %llu, worker RSS %ld kB\n",
            (long long) ((now - rig.phase_us) / 1000000), rig.phase, open,
            (unsigned long long) rig.calls_started,
            (unsigned long long) rig.calls_ended,
            (unsigned long long) rig.calls_failed,
            (unsigned long long) rig.oa_open, rig_rss_trend[rig_rss_n - 1]);
}


static void
rig_finish(int rc)
{
    unsigned  i;

    rig_reap(&rig.at_start_pid);
    rig_reap(&rig_at_end_pid);

    for (i = 0; i < rig.ncallers; i++) {
        rig_caller_finalize(&rig.callers[i], 0);
    }

    if (rig.calls_fp) {
        fclose(rig.calls_fp);
    }

    rig_output();

    if (rig_detail_file) {
        rig_output_detail();
    }

    if (rig.errors || rig.misrouted || rig.calls_failed) {
        rc = 1;
    }

    fflush(NULL);

    /* the sockets go with the process */
    _exit(rc);
}


static void
rig_output(void)
{
    double  secs, floor50, floor99;

    secs = (double) (rig.win_end_us - rig.win_start_us) / 1000000;

    if (secs <= 0) {
        secs = 1;
    }

    floor50 = rig_hist_pct(&rig.floor_lat, 50);
    floor99 = rig_hist_pct(&rig.floor_lat, 99);

    printf("{\"calls\":%u,\"seconds\":%u,\"frames_sent\":%llu,"
           "\"frames_returned\":%llu,\"lost\":%llu,"
           "\"dropped_by_barge_in\":%llu,\"added_p50_ms\":%.2f,"
           "\"added_p99_ms\":%.2f,\"cpu_ms_per_call_s\":%.3f,"
           "\"rss_kb_per_call\":%.1f,\"rig_cpu_pct\":%.1f,"
           "\"rig_send_lag_p99_ms\":%.2f}\n",
           rig.calls, rig.soak ? rig.soak : rig.seconds,
           (unsigned long long) rig.frames_sent,
           (unsigned long long) rig.frames_returned,
           (unsigned long long) rig.lost,
           (unsigned long long) rig.dropped_bb,
           (rig_hist_pct(&rig.lat, 50) - floor50) / 1000,
           (rig_hist_pct(&rig.lat, 99) - floor99) / 1000,
           rig.worker_cpu_ms / (rig.calls * secs),
           (double) (rig.rss_kb - rig.rss_idle_kb) / rig.calls,
           rig.rig_cpu_ms / (secs * 1000) * 100,
           rig_hist_pct(&rig.lag, 99) / 1000);
}


/* what lies behind the line, for bench/sweep and bench/soak */
static void
rig_output_detail(void)
{
    FILE     *f;
    unsigned  i;

    f = fopen(rig_detail_file, "w");
    if (f == NULL) {
        fprintf(stderr, "rig: %s: %s\n", rig_detail_file, strerror(errno));
        return;
    }

    fprintf(f,
            "{\"window_s\":%.3f,\"machine_busy_pct\":%.1f,"
            "\"relay_p50_ms\":%.3f,\"relay_p99_ms\":%.3f,"
            "\"relay_p999_ms\":%.3f,\"relay_max_ms\":%.3f,"
            "\"floor_p50_ms\":%.3f,\"floor_p99_ms\":%.3f,"
            "\"send_lag_p50_ms\":%.3f,\"floor_send_lag_p99_ms\":%.3f,"
            "\"worker_cpu_ms\":%.0f,\"rig_cpu_ms\":%.0f,"
            "\"rss_idle_kb\":%ld,\"rss_kb\":%ld,\"rss_warm_kb\":%ld,"
            "\"calls_started\":%llu,\"calls_upgraded\":%llu,"
            "\"calls_failed\":%llu,\"calls_ended\":%llu,"
            "\"hangups_caller\":%llu,\"hangups_openai\":%llu,"
            "\"barge_ins\":%llu,\"clears\":%llu,\"truncates\":%llu,"
            "\"dtmf_sent\":%llu,\"dtmf_seen\":%llu,"
            "\"sessions_updated\":%llu,\"openai_legs_open\":%llu,"
            "\"cut_by_hangup\":%llu,\"misrouted\":%llu,\"stale\":%llu,"
            "\"duplicates\":%llu,\"mark_overflow\":%llu,\"errors\":%llu,"
            "\"rss_trend_kb\":[",
            (double) (rig.win_end_us - rig.win_start_us) / 1000000,
            rig.machine_busy_pct,
            rig_hist_pct(&rig.lat, 50) / 1000,
            rig_hist_pct(&rig.lat, 99) / 1000,
            rig_hist_pct(&rig.lat, 99.9) / 1000,
            rig_hist_pct(&rig.lat, 100) / 1000,
            rig_hist_pct(&rig.floor_lat, 50) / 1000,
            rig_hist_pct(&rig.floor_lat, 99) / 1000,
            rig_hist_pct(&rig.lag, 50) / 1000,
            rig_hist_pct(&rig.floor_lag, 99) / 1000,
            rig.worker_cpu_ms, rig.rig_cpu_ms,
            rig.rss_idle_kb, rig.rss_kb, rig.rss_warm_kb,
            (unsigned long long) rig.calls_started,
            (unsigned long long) rig.calls_upgraded,
            (unsigned long long) rig.calls_failed,
            (unsigned long long) rig.calls_ended,
            (unsigned long long) rig.hangups_caller,
            (unsigned long long) rig.hangups_openai,
            (unsigned long long) rig.barge_ins,
            (unsigned long long) rig.clears,
            (unsigned long long) rig.truncates,
            (unsigned long long) rig.dtmf_sent,
            (unsigned long long) rig.dtmf_seen,
            (unsigned long long) rig.sessions_updated,
            (unsigned long long) rig.oa_open,
            (unsigned long long) rig.cut_by_hangup,
            (unsigned long long) rig.misrouted,
            (unsigned long long) rig.stale,
            (unsigned long long) rig.duplicates,
            (unsigned long long) rig.mark_overflow,
            (unsigned long long) rig.errors);

    for (i = 0; i < rig_rss_n; i++) {
        fprintf(f, "%s%ld", i ? "," : "", rig_rss_trend[i]);
    }

    fprintf(f, "]}\n");
    fclose(f);
}


static double
rig_self_cpu_ms(void)
{
    struct rusage  ru;

    getrusage(RUSAGE_SELF, &ru);

    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000.0
           + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000.0;
}


/* the machine's busy and total time, from the "cpu" line of /proc/stat */
static int
rig_machine_jiffies(uint64_t *busy, uint64_t *all)
{
    int                 n;
    FILE               *f;
    unsigned long long  v[8];

    f = fopen("/proc/stat", "r");
    if (f == NULL) {
        return -1;
    }

    n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu",
               &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose(f);

    if (n != 8) {
        return -1;
    }

    /* user nice system idle iowait irq softirq steal */
    *all = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
    *busy = *all - v[3] - v[4];

    return 0;
}


static double
rig_workers_cpu_ms(void)
{
    long      ms;
    double    sum;
    unsigned  i;

    sum = 0;

    for (i = 0; i < rig.npids; i++) {
        ms = rig_proc_cpu_ms(rig.pids[i]);

        if (ms < 0) {
            fprintf(stderr, "rig: no CPU time for pid %d\n",
                    (int) rig.pids[i]);
            rig.errors++;
            continue;
        }

        sum += ms;
    }

    return sum;
}


static long
rig_workers_rss_kb(void)
{
    long      kb, sum;
    unsigned  i;

    sum = 0;

    for (i = 0; i < rig.npids; i++) {
        kb = rig_proc_rss_kb(rig.pids[i]);

        if (kb >= 0) {
            sum += kb;
        }
    }

    return sum;
}


static pid_t
rig_spawn(const char *cmd)
{
    pid_t  pid;

    pid = fork();

    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *) NULL);
        _exit(127);
    }

    if (pid < 0) {
        fprintf(stderr, "rig: fork: %s\n", strerror(errno));
        rig.errors++;
    }

    return pid;
}


static void
rig_reap(pid_t *pid)
{
    int  status;

    if (*pid <= 0) {
        return;
    }

    while (waitpid(*pid, &status, 0) < 0 && errno == EINTR) {
        /* void */
    }

    *pid = 0;
}
