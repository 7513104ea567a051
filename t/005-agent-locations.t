# The phone agent's three locations of one server, checked together by
# `nginx -t` (each is merged on its own, so only a check across them sees
# these): a media stream offering end_call or transfer_call needs
#   - every webhook location of its server to put action= on <Connect>
#     (voice_call_action_url): else Twilio plays the fallback and hangs
#     up, and the transfer is lost;
#   - a voice_call_action location in its server;
#   - that location's voice_transfer list to be its own: a label must dial
#     what the model was offered.
# Set at server level, all three share them, which is what passes.
# Also: voice_status, like the other roles, conflicts with another
# content handler in its location.
use Test::Voice;

block_defaults(http_config => <<'HTTP');
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
voice_openai_api_key sk-test-key;
HTTP

run_tests();

__DATA__

=== TEST 1: tools in the stream location only: the webhook puts no action= on <Connect>
--- config
location = /incoming-call { voice_incoming_call; }
location = /call-action { voice_call_action; }
location /media-stream/ {
    voice_media_stream;
    voice_hangup on;
    voice_call_action_url /call-action;
}
--- must_die
--- config_test
--- error_log eval
qr/\[emerg\] .*"voice_hangup" or "voice_transfer" in location "\/media-stream\/" \(\S+:\d+\) needs "voice_call_action_url" in the webhook location "\/incoming-call" of the same server: set them at server level/



=== TEST 2: no voice_call_action location in the server
--- config
voice_hangup on;
voice_call_action_url /call-action;
location = /incoming-call { voice_incoming_call; }
location /media-stream/ { voice_media_stream; }
--- must_die
--- config_test
--- error_log eval
qr/\[emerg\] .*"voice_hangup" or "voice_transfer" in location "\/media-stream\/" \(\S+:\d+\) needs a "voice_call_action" location in the same server/



=== TEST 3: the stream offers a label the action location would dial elsewhere
--- config
voice_call_action_url /call-action;
voice_transfer sales +15551230000;
location = /incoming-call { voice_incoming_call; }
location = /call-action { voice_call_action; }
location /media-stream/ {
    voice_media_stream;
    voice_transfer sales +15559990000;
}
--- must_die
--- config_test
--- error_log eval
qr/\[emerg\] .*"voice_transfer" of location "\/media-stream\/" \(\S+:\d+\) and of the call action location "\/call-action" differ/



=== TEST 4: a label only the stream offers
--- config
voice_call_action_url /call-action;
location = /incoming-call { voice_incoming_call; }
location = /call-action { voice_call_action; }
location /media-stream/ {
    voice_media_stream;
    voice_transfer sales +15551230000;
}
--- must_die
--- config_test
--- error_log eval
qr/\[emerg\] .*"voice_transfer" of location "\/media-stream\/" .* and of the call action location "\/call-action" differ/



=== TEST 5: set at server level, the three agree: nginx -t passes and the TwiML has action=
--- config
voice_hangup on;
voice_transfer sales +15551230000;
voice_transfer "a human" sip:desk@pbx.example.com;
voice_call_action_url /call-action;
location = /incoming-call { voice_incoming_call; }
location = /call-action { voice_call_action; }
location /media-stream/ { voice_media_stream; }
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- more_headers
Host: voice.example.com
Content-Type: application/x-www-form-urlencoded
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like: ^<Response><Connect action="https://voice\.example\.com/call-action"><Stream url="wss://voice\.example\.com/media-stream/[A-Za-z0-9_-]{43}"/></Connect></Response>



=== TEST 6: another server's locations do not count, either way
The second server has the tools and all three locations; the first has
none of them: both pass.
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ { voice_media_stream; }
}
server {
    listen 127.0.0.1:$TEST_NGINX_SERVER_PORT;
    server_name agent.example.com;
    voice_hangup on;
    voice_call_action_url /call-action;
    location = /incoming-call { voice_incoming_call; }
    location = /call-action { voice_call_action; }
    location /media-stream/ { voice_media_stream; }
--- request
GET /nothing
--- error_code: 404



=== TEST 7: voice_status and proxy_pass in one location
--- config
location = /metrics { voice_status; proxy_pass http://127.0.0.1:1; }
--- must_die
--- config_test
--- error_log eval
qr/\[emerg\] .*"voice_status" conflicts with another content handler in location "\/metrics"/
