#!/bin/sh
# Fills the configuration from the environment (only PUBLIC_URL is
# substituted: secrets stay in the environment, read as env:NAME).
set -eu

: "${PUBLIC_URL:?PUBLIC_URL is not set}"
: "${TWILIO_AUTH_TOKEN:?TWILIO_AUTH_TOKEN is not set}"

envsubst '${PUBLIC_URL}' < /etc/nginx/ngx-voice.conf.template \
    > /etc/nginx/ngx-voice.conf

exec nginx -c /etc/nginx/ngx-voice.conf
