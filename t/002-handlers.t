# Content-handler directives as nginx users expect them: location only (not
# in an `if` in a location), set by their own setter, never inherited;
# configuration errors at the line that caused them; numeric limits that
# state their bound; $voice_call_sid on the webhook once it is signed.
use Test::Voice;

# The line of conf/nginx.conf an error message points at holds $what.
sub line_has {
    my ($log, $what, $name) = @_;
    my ($file, $line) = $log =~ /\bin (\S+nginx\.conf):(\d+)/
        or return fail("$name: the message names a file and line");
    open my $fh, '<', $file or return fail("$name: $file: $!");
    my @lines = <$fh>;
    like($lines[$line - 1] // '', qr/\Q$what\E/,
         "$name: line $line of nginx.conf has $what");
}

run_tests();

__DATA__

=== TEST 1: voice_media_stream at server level is refused
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
--- config
voice_media_stream;
location /media-stream/ { }
--- must_die
--- config_test
--- error_log
[emerg]
"voice_media_stream" directive is not allowed here



=== TEST 2: voice_incoming_call at server level is refused
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
--- config
voice_incoming_call;
location = /incoming-call { }
--- must_die
--- config_test
--- error_log
[emerg]
"voice_incoming_call" directive is not allowed here



=== TEST 3: voice_media_stream at http level is refused
--- http_config
voice_token_zone voice_tokens:1m;
voice_media_stream;
--- config
location / { }
--- must_die
--- config_test
--- error_log
[emerg]
"voice_media_stream" directive is not allowed here



=== TEST 4: voice_incoming_call inside "if" in a location is refused
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
--- config
location = /incoming-call {
    if ($request_method = POST) {
        voice_incoming_call;
    }
}
--- must_die
--- config_test
--- error_log
[emerg]
"voice_incoming_call" directive is not allowed here



=== TEST 5: another content handler after voice_media_stream in the same location
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
--- config
location /media-stream/ {
    voice_media_stream;
    proxy_pass http://127.0.0.1:1;
}
--- must_die
--- config_test
--- error_log
[emerg]
"voice_media_stream" conflicts with another content handler in location "/media-stream/"



=== TEST 6: another content handler before voice_incoming_call in the same location
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
--- config
location = /incoming-call {
    stub_status;
    voice_incoming_call;
}
--- must_die
--- config_test
--- error_log
[emerg]
"voice_incoming_call" directive conflicts with another content handler in this location



=== TEST 7: a location nested in a stream location does not inherit the handler
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
voice_openai_url wss://127.0.0.1:1/v1/realtime;
voice_openai_api_key sk-test;
--- config
location /media-stream/ {
    voice_media_stream;
    location /media-stream/static/ { }
}
--- request eval
["GET /media-stream/abc", "GET /media-stream/static/nothing-here"]
--- error_code eval
[400, 404]
--- error_log eval
[qr/voice: media stream request is not a WebSocket upgrade/,
 qr{\[error\] .*open\(\) "\S+/media-stream/static/nothing-here" failed}]
--- no_error_log
[warn]



=== TEST 8: a bad voice_openai_url is reported at its own line
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
--- config
location /media-stream/ {
    voice_media_stream;
    voice_openai_api_key sk-test;
    voice_openai_url https://api.openai.example/v1/realtime;
}
location /other/ { }
--- must_die
--- config_test
--- error_log
[emerg]
invalid "voice_openai_url" "https://api.openai.example/v1/realtime": wss:// URL expected
--- perl_check
line_has(stderr_since_start() . error_log_since_start(),
         'voice_openai_url https://api.openai.example', 'URL error');



=== TEST 9: a bad voice_openai_url given at http level is reported there too
--- http_config
voice_token_zone voice_tokens:1m;
voice_openai_url wss://:443/v1/realtime;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
--- config
location /media-stream/ { voice_media_stream; voice_openai_api_key sk-test; }
--- must_die
--- config_test
--- error_log
[emerg]
invalid "voice_openai_url" "wss://:443/v1/realtime"
--- perl_check
line_has(stderr_since_start() . error_log_since_start(),
         'voice_openai_url wss://:443', 'URL error');



=== TEST 10: an OpenAI host that cannot be resolved is reported at the URL's line
No resolver and a name that does not resolve: a warning (calls will fail),
naming the line of voice_openai_url, not the end of the http block.
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
voice_openai_url wss://openai.invalid/v1/realtime;
--- config
location /media-stream/ { voice_media_stream; voice_openai_api_key sk-test; }
--- config_test
--- error_log
[warn]
host "openai.invalid" of "voice_openai_url" could not be resolved
--- perl_check
line_has(stderr_since_start() . error_log_since_start(),
         'voice_openai_url wss://openai.invalid', 'resolve warning');



=== TEST 11: voice_idle_timeout states its bound
--- http_config
voice_token_zone voice_tokens:1m;
--- config
location /media-stream/ { voice_idle_timeout 2ms; }
--- must_die
--- config_test
--- error_log
[emerg]
"voice_idle_timeout" must be at least 3ms



=== TEST 12: voice_connect_timeout, voice_start_timeout, voice_max_call_duration of 0
--- http_config
voice_token_zone voice_tokens:1m;
--- config
location /a/ { voice_start_timeout 0; }
--- must_die
--- config_test
--- error_log
[emerg]
"voice_start_timeout" must be at least 1ms



=== TEST 13: voice_max_message_size states its bound
--- http_config
voice_token_zone voice_tokens:1m;
--- config
location /a/ { voice_max_message_size 100; }
--- must_die
--- config_test
--- error_log
[emerg]
"voice_max_message_size" must be at least 1024 bytes



=== TEST 14: voice_ssl_verify_depth states its range
--- http_config
voice_token_zone voice_tokens:1m;
--- config
location /a/ { voice_ssl_verify_depth 0; }
--- must_die
--- config_test
--- error_log
[emerg]
"voice_ssl_verify_depth" must be between 1 and 100



=== TEST 15: $voice_call_sid on the webhook, once its signature checked out
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
log_format calls 'call=$voice_call_sid status=$status';
--- config
location = /incoming-call {
    voice_incoming_call;
    access_log logs/calls.log calls;
}
--- request eval
["POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567",
 "POST /incoming-call\nCallSid=CAffffffffffffffffffffffffffffffff&From=%2B15551234567"]
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- twilio_sign eval
["https://voice.example.com/incoming-call", undef]
--- error_code eval
[200, 403]
--- perl_check
my $log = '';
for (1 .. 50) {
    $log = Test::Voice::read_from(servroot() . '/logs/calls.log', 0);
    last if ($log =~ tr/\n//) >= 2;
    Time::HiRes::sleep(0.05);
}
is($log, "call=CA0123456789abcdef0123456789abcdef status=200\n"
         . "call=- status=403\n",
   'the signed webhook logs its CallSid, the forged one does not');
--- no_error_log
[error]



=== TEST 16: an "if" block inside a signed webhook location keeps its role
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
--- config
location = /incoming-call {
    voice_incoming_call;
    if ($request_method = POST) { set $voice_test 1; }
}
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like: ^<Response><Connect><Stream url="wss://voice\.example\.com/media-stream/[A-Za-z0-9_-]{43}"/></Connect></Response>$
--- no_error_log
[warn]
[error]



=== TEST 17: limit_except inside a webhook location keeps its role
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
--- config
location = /incoming-call {
    voice_incoming_call;
    limit_except POST { deny all; }
}
--- request eval
["POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567",
 "GET /incoming-call"]
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- twilio_sign eval
["https://voice.example.com/incoming-call", undef]
--- error_code eval
[200, 403]
--- response_body_like eval
[qr{^<Response><Connect><Stream url="wss://voice\.example\.com/media-stream/[A-Za-z0-9_-]{43}"/></Connect></Response>$},
 qr{403 Forbidden}]



=== TEST 18: voice_max_message_size given where no media stream is: no buffer check there
voice_buffer_size must be at least twice voice_max_message_size only where
a media stream is served, with the values it has there.
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
voice_max_message_size 200k;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_buffer_size 1m;
    voice_openai_url wss://127.0.0.1:1/v1/realtime;
    voice_openai_api_key sk-test;
}
--- config_test
--- no_error_log
[emerg]



=== TEST 19: a media stream whose buffer is too small for its messages, at its line
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
voice_max_message_size 200k;
--- config
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:1/v1/realtime;
    voice_openai_api_key sk-test;
}
--- must_die
--- config_test
--- error_log
"voice_buffer_size" must be at least twice "voice_max_message_size"
--- perl_check
line_has(stderr_since_start() . error_log_since_start(),
         'voice_media_stream', 'buffer check');
