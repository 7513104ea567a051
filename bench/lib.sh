# What bench/run and bench/soak share (sourced, not run): the build, a
# temporary directory with a CA and the stand-in's certificate, three free
# loopback ports, an nginx.conf and nginx itself, pinned away from the rig.
#
# The caller sets, before bench_setup:  name (for messages), workers, pin
# (1: workers on CPU 1.., the rig on CPU 0), out (a directory to keep the
# run's files in, or empty).  bench_setup sets TOP, NGINX, MODULE, RIG,
# tmp, port, oa_port, floor_port, rig_cpu (the chrt and taskset prefix for
# the rig); bench_start_nginx sets master and pids (the workers).  NGINX and
# MODULE in the environment name another nginx and module (the tests' ASan
# build); by default the stock /usr/sbin/nginx and build/.

say() { echo "$name: $*" >&2; }

bench_setup() {
    TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

    if [ -z "${MODULE:-}" ]; then
        make -C "$TOP" --no-print-directory -s build >&2
    fi
    make -C "$TOP" --no-print-directory -s "$TOP/build/voice-rig" >&2

    NGINX=${NGINX:-/usr/sbin/nginx}
    # nginx reads $NGINX itself (the listening sockets inherited on a binary
    # upgrade): a path there makes it log [emerg] and every run fail
    export -n NGINX
    MODULE=${MODULE:-$TOP/build/ngx_voice_module.so}
    RIG=$TOP/build/voice-rig

    tmp=$(mktemp -d /tmp/voice-bench.XXXXXX)
    chmod 755 "$tmp"
    master=
    trap bench_cleanup EXIT

    bench_certs
    read -r port oa_port floor_port < <(perl -MIO::Socket::INET -e '
        my @s = map { IO::Socket::INET->new(Listen => 1, ReuseAddr => 1,
                        LocalAddr => "127.0.0.1:0") or die $! } 1 .. 3;
        print join(" ", map { $_->sockport } @s), "\n"')

    # BENCH_RT=N (as root): nginx and the rig as SCHED_FIFO priority N, so
    # that on a machine shared with other jobs they run as soon as they
    # are ready (the kernel still leaves others 5 % of each core)
    pin_cpu=()
    rig_cpu=()
    if [ "${BENCH_RT:-0}" != 0 ]; then
        pin_cpu=(chrt -f "$BENCH_RT")
        rig_cpu=(chrt -f "$BENCH_RT")
    fi
    if [ "$pin" = 1 ] && [ "$(nproc)" -ge 2 ]; then
        pin_cpu+=(taskset -c 1)
        rig_cpu+=(taskset -c 0)
    fi
}

bench_cleanup() {
    local rc=$?
    bench_stop_nginx
    if [ -n "$out" ]; then
        mkdir -p "$out"
        cp -r "$tmp"/. "$out"/ 2>/dev/null || true
    fi
    rm -rf "$tmp"
    exit $rc
}

# a CA and the stand-in's certificate (IP SAN 127.0.0.1), as t/ does
bench_certs() {
    ossl() { openssl "$@" >/dev/null 2>&1 || { say "openssl $1 failed"; exit 1; }; }
    ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -days 2 -subj '/CN=ngx_voice bench CA' \
        -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign \
        -keyout "$tmp/ca.key" -out "$tmp/ca.pem"
    ossl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj /CN=127.0.0.1 -keyout "$tmp/server.key" -out "$tmp/server.csr"
    printf '%s\n' subjectAltName=IP:127.0.0.1 basicConstraints=CA:FALSE \
        extendedKeyUsage=serverAuth >"$tmp/ext.cnf"
    ossl x509 -req -days 2 -CAcreateserial -in "$tmp/server.csr" \
        -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -extfile "$tmp/ext.cnf" \
        -out "$tmp/server.pem"
}

bench_conf() {
    local affinity= masks=() i j cpu mask ncpu

    # workers on CPU 1, 2, ... (round robin), the rig on CPU 0
    ncpu=$(nproc)
    if [ "$pin" = 1 ] && [ "$ncpu" -ge 2 ]; then
        for ((i = 0; i < workers; i++)); do
            cpu=$(( 1 + i % (ncpu - 1) ))
            mask=1
            for ((j = 0; j < cpu; j++)); do mask="${mask}0"; done
            masks+=("$mask")
        done
        affinity="worker_cpu_affinity ${masks[*]};"
    fi

    cat >"$tmp/nginx.conf" <<EOF
load_module $MODULE;
worker_processes $workers;
$affinity
error_log $tmp/error.log info;
pid $tmp/nginx.pid;

events {
    worker_connections 16384;
}

http {
    access_log off;
    client_body_temp_path $tmp/body;
    proxy_temp_path $tmp/proxy;
    fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi;
    scgi_temp_path $tmp/scgi;

    voice_token_zone voice_tokens:8m;

    server {
        listen 127.0.0.1:$port backlog=4096;
        voice_public_url https://voice.example.com;
        voice_twilio_auth_token 12345;

        location = /incoming-call { voice_incoming_call; }
        location /media-stream/ {
            voice_media_stream;
            voice_openai_url wss://127.0.0.1:$oa_port/v1/realtime?model=gpt-realtime;
            voice_openai_api_key sk-bench;
            voice_ssl_trusted_certificate $tmp/ca.pem;
        }
    }
}
EOF
}

# bench_start_nginx [callgrind]: nginx in the foreground of a background
# job; with "callgrind", one process (master off) under valgrind
bench_start_nginx() {
    bench_conf

    if [ "${1:-}" = callgrind ]; then
        "${pin_cpu[@]}" valgrind --tool=callgrind \
            --callgrind-out-file="$tmp/callgrind.out" \
            "$NGINX" -p "$tmp" -c "$tmp/nginx.conf" -e "$tmp/error.log" \
            -g 'daemon off; master_process off;' \
            >"$tmp/valgrind.log" 2>&1 &
    else
        "${pin_cpu[@]}" "$NGINX" -p "$tmp" -c "$tmp/nginx.conf" \
            -e "$tmp/error.log" -g 'daemon off; master_process on;' \
            >"$tmp/nginx.stderr" 2>&1 &
    fi
    master=$!

    for _ in $(seq 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        kill -0 "$master" 2>/dev/null || break
        sleep 0.1
    done

    if ! kill -0 "$master" 2>/dev/null; then
        say "nginx did not start:"
        cat "$tmp"/nginx.stderr "$tmp"/valgrind.log "$tmp/error.log" \
            2>/dev/null | tail -20 >&2
        exit 1
    fi

    if [ "${1:-}" = callgrind ]; then
        pids=$master
        return
    fi

    for _ in $(seq 100); do
        pids=$(ps -o pid= --ppid "$master" | tr -s ' \n' '  ' |
               sed 's/^ //; s/ $//')
        [ "$(wc -w <<<"$pids")" -ge "$workers" ] && return
        sleep 0.1
    done

    say "nginx did not start $workers workers"
    exit 1
}

bench_stop_nginx() {
    [ -n "$master" ] || return 0
    if kill -0 "$master" 2>/dev/null; then
        kill -QUIT "$master" 2>/dev/null || true
        for _ in $(seq 300); do
            kill -0 "$master" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$master" 2>/dev/null || true
    fi
    wait "$master" 2>/dev/null || true
    master=
}

# lines at [alert], [crit] or [emerg], or a sanitizer's report on nginx's
# stderr (an ASan build): reported, and a failed run
bench_log_alerts() {
    local bad
    bad=$(cat "$tmp/error.log" "$tmp/nginx.stderr" 2>/dev/null |
          grep -cE '\[(alert|crit|emerg)\]|Sanitizer|runtime error:' || true)
    [ "${bad:-0}" = 0 ] && return 0
    say "$bad [alert]/[crit]/[emerg] or sanitizer lines from nginx:"
    cat "$tmp/error.log" "$tmp/nginx.stderr" 2>/dev/null |
        grep -E '\[(alert|crit|emerg)\]|Sanitizer|runtime error:' |
        head -5 >&2
    return 1
}
