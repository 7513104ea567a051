# ngx_voice on Debian's stock nginx: build the module against the
# nginx-dev tree of the same release, then ship it beside that nginx.
#
#   docker build -t ngx-voice .
#   docker run -p 5050:5050 -e TWILIO_AUTH_TOKEN=... -e OPENAI_API_KEY=... \
#       -e PUBLIC_URL=https://voice.example.com ngx-voice

FROM debian:bookworm AS build

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        gcc make nginx nginx-dev libyajl-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY config Makefile ngx_voice_module.c ./
COPY src ./src
COPY util ./util
RUN make build


FROM debian:bookworm-slim

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        nginx libyajl2 ca-certificates gettext-base \
 && rm -rf /var/lib/apt/lists/*

COPY --from=build /src/build/ngx_voice_module.so /usr/lib/nginx/modules/
COPY docker/nginx.conf.template /etc/nginx/ngx-voice.conf.template
COPY docker/entrypoint.sh /usr/local/bin/ngx-voice-entrypoint

EXPOSE 5050
ENTRYPOINT ["/usr/local/bin/ngx-voice-entrypoint"]
