#!/bin/bash
# ngx_voice image: the nginx configuration from the environment, then nginx
# in the foreground (PID 1: `docker stop`/`podman stop`/Fly send it SIGQUIT,
# the Dockerfile's STOPSIGNAL).
#
# No value reaches nginx syntax unchecked:
#   TWILIO_AUTH_TOKEN, OPENAI_API_KEY  required; never written anywhere:
#                       read by the master as env:NAME (conf/ngx_voice.conf)
#   INSTRUCTIONS        any text (default: a concise phone assistant), or
#   INSTRUCTIONS_FILE   a file mounted into the container; either is read
#                       by voice_instructions_file, never parsed as nginx
#   PUBLIC_URL          required: https://host[:port], no path
#   VOICE               a voice name (default alloy)
#   PORT                the public port (default 5050)
#   METRICS_PORT        the private /health and /metrics port (default 9145)
#   ALLOWED_NUMBERS     optional: E.164 numbers, space or comma separated
#                       (voice_allow_callers; others get <Reject/>)
#   GREETING            optional: the AI speaks first (voice_greeting);
#                       letters, digits, spaces and . , ! ? ' : ( ) -
#   RESOLVER            optional: nameserver addresses (default: those of
#                       /etc/resolv.conf)
#   OPENAI_URL          optional: wss://host[:port]/path?query of another
#                       Realtime endpoint (voice_openai_url; default
#                       OpenAI's), e.g. a stand-in in a test
#   OPENAI_CA_FILE      optional: the CA certificates (PEM) that endpoint is
#                       checked against (default: the system's)
# A value that does not match its pattern stops the container with one
# line naming the variable, and exit code 78 (EX_CONFIG).
#
# With arguments, the configuration is written and the arguments are run
# instead of nginx (e.g. `nginx -t -c /run/ngx-voice/nginx.conf`).
set -euo pipefail

# byte-wise character classes in the patterns below (not exported)
LC_ALL=C

SHARE=/usr/share/ngx-voice
RUN_DIR=/run/ngx-voice
MODULE=/usr/lib/nginx/modules/ngx_voice_module.so
CONF=$RUN_DIR/nginx.conf

fail() {
    echo "ngx-voice: $*; not starting" >&2
    exit 78
}

# the value in quotes, or as the shell would quote it if it holds control
# characters (a newline shown as \n)
shown() {
    local v=${1:0:80}
    if [[ $v =~ [[:cntrl:]] ]]; then
        printf '%q' "$v"
    else
        printf '"%s"' "$v"
    fi
}

check() {
    local name=$1 re=$2 what=$3
    local value=${!name}
    [[ $value =~ $re ]] ||
        fail "$name must be $what, got $(shown "$value")"
}

for name in TWILIO_AUTH_TOKEN OPENAI_API_KEY; do
    [ -n "${!name:-}" ] ||
        fail "$name is not set (a secret: pass it in the environment," \
             "e.g. docker run -e $name=... or fly secrets set $name=...)"
done

[ -n "${PUBLIC_URL:-}" ] ||
    fail "PUBLIC_URL is not set (where Twilio reaches this server," \
         "e.g. https://voice.example.com)"

label='[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?'
check PUBLIC_URL "^https?://($label\\.)*$label(:[1-9][0-9]{0,4})?\$" \
    "https://host[:port] with no path or trailing slash"

VOICE=${VOICE:-alloy}
check VOICE '^[a-z][a-z0-9_-]{0,31}$' \
    "a voice name such as alloy or marin (lower-case letters, digits, - _)"

port_re='^[1-9][0-9]{0,4}$'
PORT=${PORT:-5050}
check PORT "$port_re" "a port number"
METRICS_PORT=${METRICS_PORT:-9145}
check METRICS_PORT "$port_re" "a port number"
[ "$PORT" -le 65535 ] || fail "PORT must be at most 65535, got $PORT"
[ "$METRICS_PORT" -le 65535 ] ||
    fail "METRICS_PORT must be at most 65535, got $METRICS_PORT"
[ "$PORT" != "$METRICS_PORT" ] ||
    fail "PORT and METRICS_PORT must differ (both $PORT)"

session=""

if [ -n "${ALLOWED_NUMBERS:-}" ]; then
    check ALLOWED_NUMBERS '^[[:space:],]*\+[1-9][0-9]{1,14}([[:space:],]+\+[1-9][0-9]{1,14})*[[:space:],]*$' \
        "E.164 numbers (+15551234567) separated by spaces or commas"
    numbers=$(echo $ALLOWED_NUMBERS | tr ',' ' ')
    session="        voice_allow_callers  $(echo $numbers);"
fi

if [ -n "${GREETING:-}" ]; then
    check GREETING "^[A-Za-z0-9 .,!?':()-]{1,500}\$" \
        "up to 500 letters, digits, spaces and . , ! ? ' : ( ) -"
    session="$session${session:+$'\n'}        voice_greeting  \"$GREETING\";"
fi

if [ -n "${OPENAI_URL:-}" ]; then
    check OPENAI_URL "^wss://($label\\.)*$label(:[1-9][0-9]{0,4})?(/[A-Za-z0-9._~/-]*)?(\\?[A-Za-z0-9._~=&%-]*)?\$" \
        "wss://host[:port]/path?query (letters, digits, . _ ~ / - = & %)"
    session="$session${session:+$'\n'}        voice_openai_url  $OPENAI_URL;"
fi

if [ -n "${OPENAI_CA_FILE:-}" ]; then
    check OPENAI_CA_FILE '^/[A-Za-z0-9._/-]{1,200}$' \
        "an absolute path (letters, digits, . _ / -)"
    [ -f "$OPENAI_CA_FILE" ] && [ -r "$OPENAI_CA_FILE" ] ||
        fail "OPENAI_CA_FILE \"$OPENAI_CA_FILE\" is not a readable file"
    session="$session${session:+$'\n'}        voice_ssl_trusted_certificate  $OPENAI_CA_FILE;"
fi

ip4='([0-9]{1,3}\.){3}[0-9]{1,3}'
ip6='[0-9A-Fa-f]{0,4}(:[0-9A-Fa-f]{0,4}){2,7}'
if [ -n "${RESOLVER:-}" ]; then
    check RESOLVER "^[[:space:]]*($ip4|$ip6)([[:space:]]+($ip4|$ip6))*[[:space:]]*\$" \
        "IPv4 or IPv6 addresses separated by spaces"
    servers=$RESOLVER
else
    servers=$(sed -n 's/^[[:space:]]*nameserver[[:space:]]\{1,\}\([^[:space:]]*\).*/\1/p' \
        /etc/resolv.conf 2>/dev/null || true)
fi

# global IPv6: an address of scope 00 in /proc/net/if_inet6
ipv6=no
if [ -r /proc/net/if_inet6 ] &&
   awk '$4 == "00" { found = 1 } END { exit !found }' /proc/net/if_inet6
then
    ipv6=yes
fi

resolver=""
for s in $servers; do
    if [[ $s =~ ^$ip4$ ]]; then
        resolver="$resolver $s"
    elif [[ $s =~ ^$ip6$ ]]; then
        resolver="$resolver [$s]"
    fi                          # anything else (a scope id): skipped
done
if [ -n "$resolver" ]; then
    resolver="        resolver $resolver$([ $ipv6 = yes ] || echo ' ipv6=off');"
fi

listen6="" metrics_listen6=""
if [ -e /proc/net/if_inet6 ]; then
    listen6="        listen  [::]:$PORT;"
    metrics_listen6="        listen  [::]:$METRICS_PORT;"
fi

realip=""
if [ -n "${FLY_APP_NAME:-}" ]; then
    realip="    set_real_ip_from  172.16.0.0/12;
    set_real_ip_from  fdaa::/16;
    real_ip_header    Fly-Client-IP;"
fi

mkdir -p "$RUN_DIR/tmp"

if [ -n "${INSTRUCTIONS_FILE:-}" ]; then
    [ -z "${INSTRUCTIONS:-}" ] ||
        fail "set INSTRUCTIONS or INSTRUCTIONS_FILE, not both"
    [ -f "$INSTRUCTIONS_FILE" ] && [ -r "$INSTRUCTIONS_FILE" ] ||
        fail "INSTRUCTIONS_FILE $(shown "$INSTRUCTIONS_FILE") is not a" \
             "readable file"
    cp "$INSTRUCTIONS_FILE" "$RUN_DIR/instructions.txt"
else
    printf '%s' "${INSTRUCTIONS:-You are a helpful and concise phone assistant.}" \
        >"$RUN_DIR/instructions.txt"
fi
[ "$(stat -c %s "$RUN_DIR/instructions.txt")" -le 1048576 ] ||
    fail "the instructions must be at most 1 MiB"

# Each placeholder by a line of its own (awk: no value is ever a regular
# expression or a replacement pattern).
awk -v MODULE="$MODULE" -v USER=www-data -v RUN_DIR="$RUN_DIR" \
    -v SHARE="$SHARE" -v PORT="$PORT" -v METRICS_PORT="$METRICS_PORT" \
    -v PUBLIC_URL="$PUBLIC_URL" -v VOICE="$VOICE" \
    -v LISTEN6="$listen6" -v METRICS_LISTEN6="$metrics_listen6" \
    -v SESSION="$session" -v RESOLVER="$resolver" -v REALIP="$realip" '
    BEGIN {
        n = split("MODULE USER RUN_DIR SHARE PORT METRICS_PORT PUBLIC_URL " \
                  "VOICE LISTEN6 METRICS_LISTEN6 SESSION RESOLVER REALIP", k)
        v["MODULE"] = MODULE; v["USER"] = USER; v["RUN_DIR"] = RUN_DIR
        v["SHARE"] = SHARE; v["PORT"] = PORT; v["METRICS_PORT"] = METRICS_PORT
        v["PUBLIC_URL"] = PUBLIC_URL; v["VOICE"] = VOICE
        v["LISTEN6"] = LISTEN6; v["METRICS_LISTEN6"] = METRICS_LISTEN6
        v["SESSION"] = SESSION; v["RESOLVER"] = RESOLVER; v["REALIP"] = REALIP
    }
    {
        out = ""
        line = $0
        while (match(line, /@[A-Z_0-9]+@/)) {
            name = substr(line, RSTART + 1, RLENGTH - 2)
            if (!(name in v)) {
                print "ngx-voice: unknown placeholder @" name "@" > "/dev/stderr"
                exit 70
            }
            out = out substr(line, 1, RSTART - 1) v[name]
            line = substr(line, RSTART + RLENGTH)
        }
        print out line
    }' "$SHARE/nginx.conf.template" >"$CONF.tmp"
mv -f "$CONF.tmp" "$CONF"

if [ $# -gt 0 ]; then
    exec "$@"
fi

echo "ngx-voice: port $PORT (metrics $METRICS_PORT), public URL $PUBLIC_URL," \
     "voice $VOICE" >&2
exec /usr/sbin/nginx -e stderr -c "$CONF"
