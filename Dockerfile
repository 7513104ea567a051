# ngx_voice on Debian's stock nginx: the module is built against the
# nginx-dev tree of the same nginx release as the one installed in the
# image (the exact Debian version is carried from the build stage).
#
#   docker build -t ngx-voice .        (podman: add --format docker, or
#                                       HEALTHCHECK and STOPSIGNAL are lost)
#   docker run -p 5050:5050 -e TWILIO_AUTH_TOKEN=... -e OPENAI_API_KEY=... \
#       -e PUBLIC_URL=https://voice.example.com ngx-voice
#
# Configuration comes from the environment, checked by docker/entrypoint.sh
# (see README.md, "Docker and compose"); the voice_* configuration is
# conf/ngx_voice.conf, the file nginx.conf.example includes.

FROM debian:bookworm AS build

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        gcc make nginx nginx-dev libyajl-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY config Makefile ngx_voice_module.c ./
COPY src ./src
COPY util/check-build-deps ./util/
RUN make build \
 && dpkg-query -W -f='${Version}' nginx-dev >build/nginx-version


FROM debian:bookworm-slim

# the nginx the module was built against, to the Debian revision; curl
# for HEALTHCHECK
COPY --from=build /src/build/nginx-version /tmp/nginx-version
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        "nginx=$(cat /tmp/nginx-version)" libyajl2 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* /tmp/nginx-version \
 && mkdir -p /run/ngx-voice \
 && chmod 0755 /run/ngx-voice

COPY --from=build /src/build/ngx_voice_module.so /usr/lib/nginx/modules/
COPY conf/ngx_voice.conf /usr/share/ngx-voice/ngx_voice.conf
COPY docker/nginx.conf.template /usr/share/ngx-voice/nginx.conf.template
COPY docker/entrypoint.sh /usr/local/bin/ngx-voice-entrypoint

# the public port (Twilio's webhook and media stream, /health); the
# private one (METRICS_PORT, 9145: /health with calls_active, /metrics) is
# not exposed
ENV PORT=5050 METRICS_PORT=9145
EXPOSE 5050

# SIGTERM is nginx's fast shutdown, which cuts every call; SIGQUIT lets
# calls in progress run to their end (worker_shutdown_timeout 290s)
STOPSIGNAL SIGQUIT

# the module's own health (token zone, calls in all workers), on the
# private listener
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
    CMD curl -fsS -o /dev/null "http://127.0.0.1:${METRICS_PORT}/health" || exit 1

# the master stays root (it reads the configuration and the secrets); the
# workers run as www-data (user in the generated nginx.conf)
ENTRYPOINT ["/usr/local/bin/ngx-voice-entrypoint"]
