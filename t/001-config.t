# Configuration: every mistake stops nginx with an [emerg] naming the
# directive; voice_signature off; secrets from env: and file:, which never
# reach the log; inheritance from http and server into locations.
use Test::Voice;
use File::Path ();

# Secret files for the file: blocks.  run_tests() clears only the servroot's
# conf/, logs/, html/ and temp directories, so these survive it.
my $dir = servroot() . '/secrets';
File::Path::make_path($dir);
my %files = (
    'auth-token.txt'  => "file-secret-2d8e4b6a0c\nsecond line, never used\n",
    'crlf-token.txt'  => "crlf-secret-5a7c9e1b3d\r\nsecond line\r\n",
    'empty.txt'       => '',
    'blank-first.txt' => "\nhidden-secret-4c6e8a0b2d\n",
    'too-long.txt'    => ('L' x 5000) . "\n",
    'newline.txt'     => "\n",
    'crlf-only.txt'   => "\r\n",
    'openai-key.txt'  => "sk-from-file-9b1d3f5a7c\n",
);
for my $name (keys %files) {
    open my $fh, '>', "$dir/$name" or die "$dir/$name: $!";
    print $fh $files{$name};
    close $fh;
}

run_tests();

__DATA__

=== TEST 1: voice_incoming_call without voice_token_zone
# The token zone: required by both roles, one per http{}, NAME:SIZE with
# SIZE at least 8 pages, only ttl= as a parameter, http context only.
--- http_config
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
--- config
location = /incoming-call { voice_incoming_call; }
--- must_die
--- error_log
[emerg]
"voice_incoming_call" requires "voice_token_zone" in the http block



=== TEST 2: voice_media_stream without voice_token_zone
--- http_config
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
--- config
location /media-stream/ { voice_media_stream; }
--- must_die
--- error_log
[emerg]
"voice_media_stream" requires "voice_token_zone" in the http block



=== TEST 3: two voice_token_zone in one http block (nginx -t fails too)
--- http_config
voice_token_zone voice_tokens:1m;
voice_token_zone other_tokens:1m;
--- must_die
--- config_test
--- error_log
[emerg]
"voice_token_zone" is duplicate
test failed



=== TEST 4: voice_token_zone with a size that is not a size
--- http_config
voice_token_zone voice_tokens:lots;
--- must_die
--- error_log
[emerg]
invalid "voice_token_zone" size "lots"



=== TEST 5: voice_token_zone smaller than 8 pages
--- http_config
voice_token_zone voice_tokens:31k;
--- must_die
--- error_log
[emerg]
"voice_token_zone" "voice_tokens:31k" is too small



=== TEST 6: voice_token_zone of exactly 8 pages (32k) is enough
--- http_config
voice_token_zone voice_tokens:32k ttl=5s;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
--- config
location = /incoming-call { voice_incoming_call; }
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- no_error_log
[warn]
[error]



=== TEST 7: voice_token_zone with a ttl that is not a time
--- http_config
voice_token_zone voice_tokens:1m ttl=soon;
--- must_die
--- error_log
[emerg]
invalid "voice_token_zone" ttl "ttl=soon"



=== TEST 8: voice_token_zone with ttl=0
--- http_config
voice_token_zone voice_tokens:1m ttl=0;
--- must_die
--- error_log
[emerg]
invalid "voice_token_zone" ttl "ttl=0"



=== TEST 9: voice_token_zone with an unknown parameter
--- http_config
voice_token_zone voice_tokens:1m max=10;
--- must_die
--- error_log
[emerg]
invalid "voice_token_zone" parameter "max=10"



=== TEST 10: voice_token_zone without NAME:
--- http_config
voice_token_zone 1m;
--- must_die
--- error_log
[emerg]
invalid "voice_token_zone" "1m": NAME:SIZE expected



=== TEST 11: voice_token_zone with an empty name
--- http_config
voice_token_zone :1m;
--- must_die
--- error_log
[emerg]
invalid "voice_token_zone" ":1m": NAME:SIZE expected



=== TEST 12: voice_token_zone in a server block
--- config
voice_token_zone voice_tokens:1m;
--- must_die
--- error_log
[emerg]
"voice_token_zone" directive is not allowed here



=== TEST 13: signatures on and no voice_public_url
# What a webhook needs while signatures are on, and the URLs' shapes.
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
--- must_die
--- config_test
--- error_log
[emerg]
"voice_public_url" is required while "voice_signature" is on
test failed



=== TEST 14: signatures on and no voice_twilio_auth_token
--- http_config
voice_token_zone voice_tokens:1m;
voice_public_url https://voice.example.com;
--- config
location = /incoming-call { voice_incoming_call; }
--- must_die
--- error_log
[emerg]
"voice_twilio_auth_token" is required while "voice_signature" is on



=== TEST 15: voice_media_stream with signatures on and no auth token
--- http_config
voice_token_zone voice_tokens:1m;
voice_public_url https://voice.example.com;
--- config
location /media-stream/ { voice_media_stream; }
--- must_die
--- error_log
[emerg]
"voice_twilio_auth_token" is required while "voice_signature" is on



=== TEST 16: voice_media_stream with signatures on and neither voice_stream_url nor voice_public_url
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_openai_api_key sk-test;
--- config
location /media-stream/ { voice_media_stream; }
--- must_die
--- error_log
[emerg]
"voice_stream_url" or "voice_public_url" is required while "voice_signature" is on



=== TEST 17: voice_public_url with a path
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com/twilio;
--- config
location = /incoming-call { voice_incoming_call; }
--- must_die
--- error_log
[emerg]
"voice_public_url" "https://voice.example.com/twilio" must not have a path



=== TEST 18: voice_public_url with an ftp:// scheme
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url ftp://voice.example.com;
--- config
location = /incoming-call { voice_incoming_call; }
--- must_die
--- error_log
[emerg]
invalid "voice_public_url" "ftp://voice.example.com"



=== TEST 19: voice_public_url with a query string
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com?account=1;
--- config
location = /incoming-call { voice_incoming_call; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"voice_public_url" "https:\/\/voice\.example\.com\?account=1"/



=== TEST 20: voice_public_url without a scheme
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url voice.example.com;
--- config
location = /incoming-call { voice_incoming_call; }
--- must_die
--- error_log
[emerg]
invalid "voice_public_url" "voice.example.com"



=== TEST 21: voice_public_url with user info
--- http_config
voice_token_zone voice_tokens:1m;
voice_public_url https://user:pass@voice.example.com;
--- must_die
--- error_log
[emerg]
invalid "voice_public_url"



=== TEST 22: voice_public_url with a port that is not one
--- http_config
voice_token_zone voice_tokens:1m;
voice_public_url https://voice.example.com:99999;
--- must_die
--- error_log
[emerg]
invalid "voice_public_url" "https://voice.example.com:99999"



=== TEST 23: voice_public_url with a lone trailing slash is the same URL
The request URI's own "/" follows it: the signed URL must not get "//".
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com/;
--- config
location = /incoming-call { voice_incoming_call; }
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



=== TEST 24: voice_stream_url that is not wss://
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
--- config
location = /incoming-call {
    voice_incoming_call;
    voice_stream_url https://streams.example.com/media;
}
--- must_die
--- error_log
[emerg]
invalid "voice_stream_url" "https://streams.example.com/media": wss://host[/path] expected



=== TEST 25: voice_stream_url with a query string
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
--- config
location = /incoming-call {
    voice_incoming_call;
    voice_stream_url wss://streams.example.com/media?call=1;
}
--- must_die
--- error_log
[emerg]
"voice_stream_url" "wss://streams.example.com/media?call=1" must not have a query string



=== TEST 26: voice_stream_url with a query string and no path
--- http_config
voice_token_zone voice_tokens:1m;
voice_stream_url wss://streams.example.com?call=1;
--- must_die
--- error_log
[emerg]
"voice_stream_url" "wss://streams.example.com?call=1" must not have a query string



=== TEST 27: voice_incoming_call twice in one location
# Roles and flags.
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
--- config
location = /incoming-call {
    voice_incoming_call;
    voice_incoming_call;
}
--- must_die
--- error_log
[emerg]
"voice_incoming_call" directive is duplicate



=== TEST 28: voice_incoming_call and voice_media_stream in one location
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
--- config
location /voice/ {
    voice_incoming_call;
    voice_media_stream;
}
--- must_die
--- error_log
[emerg]
"voice_media_stream" directive conflicts with another voice role



=== TEST 29: voice_signature with a value that is not on or off
--- http_config
voice_token_zone voice_tokens:1m;
voice_signature maybe;
--- must_die
--- error_log
[emerg]
invalid value "maybe" in "voice_signature" directive, it must be "on" or "off"



=== TEST 30: an empty caller in voice_allow_callers
--- http_config
voice_token_zone voice_tokens:1m;
--- config
voice_allow_callers +15551234567 "";
--- must_die
--- error_log
[emerg]
invalid empty caller in "voice_allow_callers"



=== TEST 31: voice_twilio_auth_token twice in one block
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token literal-secret-9b1c3e5d7f;
voice_twilio_auth_token literal-secret-9b1c3e5d7f;
--- must_die
--- error_log
[emerg]
"voice_twilio_auth_token" directive is duplicate
--- no_error_log
literal-secret-9b1c3e5d7f



=== TEST 32: voice_public_url twice in one block
--- http_config
voice_token_zone voice_tokens:1m;
voice_public_url https://voice.example.com;
voice_public_url https://voice.example.net;
--- must_die
--- error_log
[emerg]
"voice_public_url" directive is duplicate



=== TEST 33: env: naming a variable that is not set
# Secrets that cannot be loaded: the message names the directive and the
# variable or file, never any part of a secret.
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token env:VOICE_TEST_UNSET_VAR;
voice_public_url https://voice.example.com;
--- env
!VOICE_TEST_UNSET_VAR
OTHER_SECRET=other-secret-1a3c5e7f9b
--- must_die
--- error_log
[emerg]
"voice_twilio_auth_token": environment variable "VOICE_TEST_UNSET_VAR" is not set or empty
--- no_error_log
other-secret-1a3c5e7f9b



=== TEST 34: env: naming a variable that is empty
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token env:VOICE_TEST_EMPTY_VAR;
--- env
VOICE_TEST_EMPTY_VAR=
--- must_die
--- error_log
[emerg]
"voice_twilio_auth_token": environment variable "VOICE_TEST_EMPTY_VAR" is not set or empty



=== TEST 35: file: naming a file that does not exist
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token file:/nonexistent/voice-auth-token;
--- must_die
--- error_log eval
qr/\[emerg\] .*"voice_twilio_auth_token": cannot open secret file "\/nonexistent\/voice-auth-token" \(2: No such file or directory\)/



=== TEST 36: file: naming an empty file
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token file:$TEST_NGINX_SERVROOT/secrets/empty.txt;
--- must_die
--- error_log
[emerg]
"voice_twilio_auth_token": secret file "$TEST_NGINX_SERVROOT/secrets/empty.txt" has an empty first line



=== TEST 37: file: whose first line is empty: the second line is not used, nor shown
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token file:$TEST_NGINX_SERVROOT/secrets/blank-first.txt;
--- must_die
--- error_log
[emerg]
"voice_twilio_auth_token": secret file "$TEST_NGINX_SERVROOT/secrets/blank-first.txt" has an empty first line
--- no_error_log
hidden-secret-4c6e8a0b2d



=== TEST 38: file: whose first line is longer than 4096 bytes
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token file:$TEST_NGINX_SERVROOT/secrets/too-long.txt;
--- must_die
--- error_log
[emerg]
has a first line that is too long
--- no_error_log
LLLLLLLL



=== TEST 39: an empty literal auth token
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token "";
--- must_die
--- error_log
[emerg]
"voice_twilio_auth_token" must not be empty



=== TEST 40: "env:" with nothing after it
# BUG: `voice_twilio_auth_token env:;` is taken as the literal auth token
# "env:" and nginx -t passes; an empty variable name (e.g. a template that
# expanded to nothing) should be an [emerg] like any other secret error.
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token env:;
voice_public_url https://voice.example.com;
--- config
location = /incoming-call { voice_incoming_call; }
--- must_die
--- config_test
--- error_log
[emerg]
"voice_twilio_auth_token"



=== TEST 41: "file:" with nothing after it
# BUG: likewise `voice_twilio_auth_token file:;` becomes the literal auth
# token "file:" instead of an [emerg] about a missing path.
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token file:;
voice_public_url https://voice.example.com;
--- config
location = /incoming-call { voice_incoming_call; }
--- must_die
--- config_test
--- error_log
[emerg]
"voice_twilio_auth_token"



=== TEST 42: voice_signature off: a warning at start, an unsigned webhook works
# voice_signature off: for local development only.  nginx warns at start;
# no auth token or public URL is needed; the Stream URL's host is the
# request's host ($host), without a port.
--- http_config
voice_token_zone voice_tokens:1m;
voice_signature off;
--- config
location = /incoming-call { voice_incoming_call; }
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- more_headers
Content-Type: application/x-www-form-urlencoded
Host: dev.example.com
--- error_code: 200
--- response_headers
Content-Type: text/xml
--- response_body_like: ^<Response><Connect><Stream url="wss://dev\.example\.com/media-stream/[A-Za-z0-9_-]{43}"/></Connect></Response>$
--- error_log eval
[qr/\[warn\] .*"voice_signature" is off: webhook requests are not authenticated/,
 qr/\[info\] .*voice: incoming call CA0123456789abcdef0123456789abcdef, stream token minted/]
--- no_error_log
X-Twilio-Signature does not match
[error]



=== TEST 43: voice_signature off: any signature is ignored, the Host's port is dropped, its text escaped
--- http_config
voice_token_zone voice_tokens:1m;
voice_signature off;
--- config
location = /incoming-call { voice_incoming_call; }
--- request eval
["POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef",
 "POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef",
 "POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef"]
--- more_headers eval
["Content-Type: application/x-www-form-urlencoded\nHost: Dev.Example.com:8080\nX-Twilio-Signature: AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
 "Content-Type: application/x-www-form-urlencoded\nHost: dev.example.com\nX-Twilio-Signature: nonsense",
 "Content-Type: application/x-www-form-urlencoded\nHost: a\"b<c&d'.example.com"]
--- error_code eval
[200, 200, 200]
--- response_body_like eval
[qr{^<Response><Connect><Stream url="wss://dev\.example\.com/media-stream/[A-Za-z0-9_-]{43}"/></Connect></Response>$},
 qr{^<Response><Connect><Stream url="wss://dev\.example\.com/media-stream/[A-Za-z0-9_-]{43}"/></Connect></Response>$},
 qr{^<Response><Connect><Stream url="wss://a&quot;b&lt;c&amp;d&apos;\.example\.com/media-stream/[A-Za-z0-9_-]{43}"/></Connect></Response>$}]
--- error_log
"voice_signature" is off
--- no_error_log
X-Twilio-Signature does not match
[error]



=== TEST 44: voice_signature off: a request without any Host uses the server name
# BUG: with voice_signature off and no voice_public_url, an HTTP/1.0 request
# without a Host header gets <Stream url="wss:///media-stream/TOKEN"/> (an
# empty host); README says the fallback is https://$host, and $host is then
# the server_name ("localhost" here), so wss://localhost/media-stream/TOKEN.
--- http_config
voice_token_zone voice_tokens:1m;
voice_signature off;
--- config
location = /incoming-call { voice_incoming_call; }
--- raw_request eval
my $body = 'CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567';
"POST /incoming-call HTTP/1.0\r\nContent-Type: application/x-www-form-urlencoded\r\n"
. "Content-Length: " . length($body) . "\r\n\r\n$body"
--- error_code: 200
--- response_body_like: ^<Response><Connect><Stream url="wss://localhost/media-stream/[A-Za-z0-9_-]{43}"/></Connect></Response>$
--- error_log
"voice_signature" is off
--- no_error_log
[error]



=== TEST 45: voice_signature off with voice_public_url: its host, not the Host header
--- http_config
voice_token_zone voice_tokens:1m;
voice_signature off;
voice_public_url https://voice.example.com:8443;
--- config
location = /incoming-call { voice_incoming_call; }
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- more_headers
Content-Type: application/x-www-form-urlencoded
Host: attacker.example.com
--- error_code: 200
--- response_body_like: ^<Response><Connect><Stream url="wss://voice\.example\.com/media-stream/[A-Za-z0-9_-]{43}"/></Connect></Response>$
--- error_log
"voice_signature" is off
--- no_error_log
[error]



=== TEST 46: voice_signature on (the default) warns about nothing
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
--- config
location = /incoming-call { voice_incoming_call; }
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 403
--- error_log
voice: webhook request has no X-Twilio-Signature
--- no_error_log
"voice_signature" is off
[error]



=== TEST 47: voice_twilio_auth_token env:NAME
# Secrets that load: env: and file: (first line, without its line ending)
# sign webhooks, and no log line, debug level included, ever shows them.
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token env:MY_TOKEN;
voice_public_url https://voice.example.com;
--- config
location = /incoming-call { voice_incoming_call; }
--- env
MY_TOKEN=env-secret-7f3a9c1e5b
--- request eval
["POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567",
 "POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567",
 "POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567"]
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- twilio_sign: https://voice.example.com/incoming-call
--- twilio_token eval
["env-secret-7f3a9c1e5b", "12345", "env:MY_TOKEN"]
--- error_code eval
[200, 403, 403]
--- error_log
stream token minted
voice: webhook X-Twilio-Signature does not match
--- no_error_log
env-secret-7f3a9c1e5b
[error]



=== TEST 48: voice_twilio_auth_token file:PATH (the first line)
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token file:$TEST_NGINX_SERVROOT/secrets/auth-token.txt;
voice_public_url https://voice.example.com;
--- config
location = /incoming-call { voice_incoming_call; }
--- request eval
["POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567",
 "POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567",
 "POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567"]
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- twilio_sign: https://voice.example.com/incoming-call
--- twilio_token eval
["file-secret-2d8e4b6a0c", "file-secret-2d8e4b6a0c\nsecond line, never used", "12345"]
--- error_code eval
[200, 403, 403]
--- error_log
stream token minted
voice: webhook X-Twilio-Signature does not match
--- no_error_log
file-secret-2d8e4b6a0c
second line
[error]



=== TEST 49: file: with CRLF line endings: the "\r" is not part of the secret
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token file:$TEST_NGINX_SERVROOT/secrets/crlf-token.txt;
voice_public_url https://voice.example.com;
--- config
location = /incoming-call { voice_incoming_call; }
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- twilio_sign: https://voice.example.com/incoming-call
--- twilio_token: crlf-secret-5a7c9e1b3d
--- error_code: 200
--- error_log
stream token minted
--- no_error_log
crlf-secret-5a7c9e1b3d
[warn]
[error]



=== TEST 50: a literal auth token never reaches the log either
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token literal-secret-9b1c3e5d7f;
voice_public_url https://voice.example.com;
--- config
location = /incoming-call { voice_incoming_call; }
--- request eval
["POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567",
 "POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567"]
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- twilio_sign: https://voice.example.com/incoming-call
--- twilio_token eval
["literal-secret-9b1c3e5d7f", "literal-secret-9b1c3e5d7"]
--- error_code eval
[200, 403]
--- no_error_log
literal-secret-9b1c3e5d7
[error]



=== TEST 51: a secret survives an error elsewhere in the file without being shown
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token env:MY_TOKEN;
voice_public_url ftp://voice.example.com;
--- env
MY_TOKEN=env-secret-7f3a9c1e5b
--- must_die
--- error_log
[emerg]
invalid "voice_public_url"
--- no_error_log
env-secret-7f3a9c1e5b



=== TEST 52: no secret in the log when the configuration is read again, at debug level, on reload
# On a reload the master parses the configuration while logging to the
# running error log (debug level here): a secret must not show up there.
--- master_on
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token env:MY_TOKEN;
voice_public_url https://voice.example.com;
--- config
location = /incoming-call {
    voice_incoming_call;
    voice_fallback_say "before reload";
}
--- env
MY_TOKEN=env-secret-7f3a9c1e5b
--- perl_check
ok(nginx_reload(config => '
    location = /incoming-call {
        voice_incoming_call;
        voice_twilio_auth_token file:$TEST_NGINX_SERVROOT/secrets/auth-token.txt;
        voice_fallback_say "after reload";
    }'), 'reloaded with a file: secret');
my $body = 'CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567';
my $r = http_post('/incoming-call', $body,
                  headers => ['Content-Type' => 'application/x-www-form-urlencoded'],
                  twilio_sign => 'https://voice.example.com/incoming-call',
                  twilio_token => 'file-secret-2d8e4b6a0c');
is($r->{status}, 200, 'the new secret signs');
like($r->{body}, qr{<Say>after reload</Say></Response>$}, 'the new configuration answers');
--- error_log
reconfiguring
--- no_error_log
env-secret-7f3a9c1e5b
file-secret-2d8e4b6a0c
[error]



=== TEST 53: voice_public_url, auth token and voice_say given at http level
# Inheritance: http -> server -> location; an inner list replaces the outer
# one (as add_header does).
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token http-level-secret-3e5a;
voice_public_url https://voice.example.com;
voice_say "From the http block";
--- config
location = /incoming-call { voice_incoming_call; }
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- twilio_sign: https://voice.example.com/incoming-call
--- twilio_token: http-level-secret-3e5a
--- error_code: 200
--- response_body_like: ^<Response><Say>From the http block</Say><Connect><Stream url="wss://voice\.example\.com/media-stream/[A-Za-z0-9_-]{43}"/></Connect></Response>$
--- no_error_log
http-level-secret-3e5a
[warn]
[error]



=== TEST 54: the same at server level, and a location overriding some of it
--- http_config
voice_token_zone voice_tokens:1m;
--- config
voice_twilio_auth_token server-level-secret-8c2d;
voice_public_url https://voice.example.com;
voice_say "From the server block";
voice_fallback_say "Server fallback";
location = /incoming-call { voice_incoming_call; }
location = /other-call {
    voice_incoming_call;
    voice_public_url https://other.example.com;
    voice_say "From the location";
}
--- request eval
["POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567",
 "POST /other-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567",
 "POST /other-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567"]
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- twilio_sign eval
["https://voice.example.com/incoming-call",
 "https://other.example.com/other-call",
 "https://voice.example.com/other-call"]
--- twilio_token: server-level-secret-8c2d
--- error_code eval
[200, 200, 403]
--- response_body_like eval
[qr{^<Response><Say>From the server block</Say><Connect><Stream url="wss://voice\.example\.com/media-stream/[A-Za-z0-9_-]{43}"/></Connect><Say>Server fallback</Say></Response>$},
 qr{^<Response><Say>From the location</Say><Connect><Stream url="wss://other\.example\.com/media-stream/[A-Za-z0-9_-]{43}"/></Connect><Say>Server fallback</Say></Response>$},
 qr{403 Forbidden}]
--- error_log
voice: webhook X-Twilio-Signature does not match
--- no_error_log
server-level-secret-8c2d
[error]



=== TEST 55: voice_allow_callers in a location replaces the server's list
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
--- config
voice_allow_callers +15551234567 +15557654321;
location = /incoming-call { voice_incoming_call; }
location = /vip-call {
    voice_incoming_call;
    voice_allow_callers +15550000001;
}
--- request eval
["POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567",
 "POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15550000001",
 "POST /vip-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15550000001",
 "POST /vip-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567"]
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- twilio_sign eval
["https://voice.example.com/incoming-call", "https://voice.example.com/incoming-call",
 "https://voice.example.com/vip-call", "https://voice.example.com/vip-call"]
--- error_code eval
[200, 200, 200, 200]
--- response_body_like eval
[qr{^<Response><Connect><Stream url="wss://voice\.example\.com/media-stream/},
 qr{^<Response><Reject/></Response>$},
 qr{^<Response><Connect><Stream url="wss://voice\.example\.com/media-stream/},
 qr{^<Response><Reject/></Response>$}]
--- error_log
voice: caller is not in voice_allow_callers
--- no_error_log
[error]



=== TEST 56: each location has its own content handler; the others are untouched
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
--- config
location /calls/ { voice_incoming_call; }
location = /status { stub_status; }
location = /media-stream {
    voice_media_stream;
    voice_openai_api_key sk-test;
    voice_openai_url wss://127.0.0.1:1/v1/realtime;
}
--- request eval
["POST /calls/incoming\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567",
 "POST /calls/incoming\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567",
 "GET /status",
 "GET /media-stream"]
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- twilio_sign eval
["https://voice.example.com/calls/incoming", undef, undef, undef]
--- error_code eval
[200, 403, 200, 400]
--- response_body_like eval
[qr{^<Response><Connect><Stream url="wss://voice\.example\.com/media-stream/[A-Za-z0-9_-]{43}"/></Connect></Response>$},
 qr{403 Forbidden},
 qr{^Active connections: },
 qr{400 Bad Request}]
--- error_log
voice: webhook request has no X-Twilio-Signature
--- no_error_log
[error]



=== TEST 57: voice_signature off at http level, back on in one location
--- http_config
voice_token_zone voice_tokens:1m;
voice_signature off;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
--- config
location = /dev-call { voice_incoming_call; }
location = /incoming-call {
    voice_incoming_call;
    voice_signature on;
}
--- request eval
["POST /dev-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567",
 "POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567"]
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code eval
[200, 403]
--- error_log
"voice_signature" is off: webhook requests are not authenticated
voice: webhook request has no X-Twilio-Signature
--- no_error_log
[error]



=== TEST 58: voice_media_stream without voice_openai_api_key fails nginx -t, naming it
# Issue 8: without a key the module still connected to OpenAI and sent
# "Authorization: Bearer " with nothing after it.  Now a media stream
# location without a key (after inheritance) is an [emerg] that names the
# directive and where the location's voice_media_stream is.
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
voice_openai_url wss://127.0.0.1:1/v1/realtime;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
}
--- must_die
--- config_test
--- error_log eval
[qr/\[emerg\] .*"voice_openai_api_key" is required by "voice_media_stream" in \S+\/conf\/nginx\.conf:\d+/,
 'test failed']
--- perl_check
# the line named is the one of voice_media_stream
open my $fh, '<', servroot() . '/conf/nginx.conf' or die $!;
my @lines = <$fh>;
close $fh;
my ($line) = grep { $lines[$_ - 1] =~ /^\s*voice_media_stream;/ } 1 .. @lines;
my ($named) = (stderr_since_start() . error_log_since_start()) =~ /"voice_media_stream" in [^:\s]+:(\d+)/;
ok($line, 'voice_media_stream is in the written nginx.conf');
is($named, $line, 'the [emerg] names the line of voice_media_stream');



=== TEST 59: a key in a sibling location is not inherited by the media stream location
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
voice_openai_url wss://127.0.0.1:1/v1/realtime;
--- config
location /other/ {
    voice_openai_api_key sk-test-key;
    return 204;
}
location /media-stream/ { voice_media_stream; }
--- must_die
--- config_test
--- error_log eval
qr/\[emerg\] .*"voice_openai_api_key" is required by "voice_media_stream"/



=== TEST 60: a key at http level is inherited: nginx -t passes
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
voice_openai_url wss://127.0.0.1:1/v1/realtime;
voice_openai_api_key sk-http-level-3e5g7i9k;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ { voice_media_stream; }
--- config_test
--- no_error_log
voice_openai_api_key
sk-http-level-3e5g7i9k
[emerg]



=== TEST 61: a key at server level is inherited: nginx -t passes
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
voice_openai_url wss://127.0.0.1:1/v1/realtime;
--- config
voice_openai_api_key sk-server-level-4f6h8j0l;
location /media-stream/ { voice_media_stream; }
--- config_test
--- no_error_log
voice_openai_api_key
sk-server-level-4f6h8j0l
[emerg]



=== TEST 62: an env: key whose variable is empty fails the same way
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
voice_openai_url wss://127.0.0.1:1/v1/realtime;
voice_openai_api_key env:VOICE_TEST_EMPTY_KEY;
--- config
location /media-stream/ { voice_media_stream; }
--- env
VOICE_TEST_EMPTY_KEY=
--- must_die
--- config_test
--- error_log
[emerg]
"voice_openai_api_key": environment variable "VOICE_TEST_EMPTY_KEY" is not set or empty



=== TEST 63: an env: key whose variable is not set fails the same way
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
voice_openai_url wss://127.0.0.1:1/v1/realtime;
--- config
location /media-stream/ {
    voice_media_stream;
    voice_openai_api_key env:VOICE_TEST_UNSET_KEY;
}
--- env
!VOICE_TEST_UNSET_KEY
--- must_die
--- config_test
--- error_log
[emerg]
"voice_openai_api_key": environment variable "VOICE_TEST_UNSET_KEY" is not set or empty



=== TEST 64: a file: key naming an empty file fails the same way
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
voice_openai_url wss://127.0.0.1:1/v1/realtime;
--- config
location /media-stream/ {
    voice_media_stream;
    voice_openai_api_key file:$TEST_NGINX_SERVROOT/secrets/empty.txt;
}
--- must_die
--- config_test
--- error_log
[emerg]
"voice_openai_api_key": secret file "$TEST_NGINX_SERVROOT/secrets/empty.txt" has an empty first line



=== TEST 65: a file: key whose file is one newline fails the same way (the line ending is no key)
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
voice_openai_url wss://127.0.0.1:1/v1/realtime;
--- config
location /media-stream/ {
    voice_media_stream;
    voice_openai_api_key file:$TEST_NGINX_SERVROOT/secrets/newline.txt;
}
--- must_die
--- config_test
--- error_log
[emerg]
"voice_openai_api_key": secret file "$TEST_NGINX_SERVROOT/secrets/newline.txt" has an empty first line



=== TEST 66: a file: key whose file is one CRLF fails the same way
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
voice_openai_url wss://127.0.0.1:1/v1/realtime;
--- config
location /media-stream/ {
    voice_media_stream;
    voice_openai_api_key file:$TEST_NGINX_SERVROOT/secrets/crlf-only.txt;
}
--- must_die
--- config_test
--- error_log
[emerg]
"voice_openai_api_key": secret file "$TEST_NGINX_SERVROOT/secrets/crlf-only.txt" has an empty first line



=== TEST 67: an empty literal key fails the same way
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
voice_openai_url wss://127.0.0.1:1/v1/realtime;
--- config
location /media-stream/ {
    voice_media_stream;
    voice_openai_api_key "";
}
--- must_die
--- config_test
--- error_log
[emerg]
"voice_openai_api_key" must not be empty



=== TEST 68: a file: key with a key in it passes nginx -t, and is not shown
# The control for the blocks above: what fails them is the empty key.
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
voice_openai_url wss://127.0.0.1:1/v1/realtime;
--- config
location /media-stream/ {
    voice_media_stream;
    voice_openai_api_key file:$TEST_NGINX_SERVROOT/secrets/openai-key.txt;
}
--- config_test
--- no_error_log
sk-from-file-9b1d3f5a7c
voice_openai_api_key
[emerg]
