# The call webhook: `location = /incoming-call { voice_incoming_call; }`.
#
# Every signature here is made by the real `twilio` npm package (through
# --- twilio_sign or sign_twilio()), or is one of Twilio's published test
# vectors (PROTOCOL.md 1.4): the module is checked against Twilio's own
# algorithm, never against a copy of its own code.  The auth token is the
# harness default, 12345, unless a block says otherwise.
#
# One case a block: a request (--- request, signed over --- twilio_sign)
# and what must come back (--- error_code, --- response_body_like) and be
# logged.  Unless a block says otherwise: the token zone, auth token 12345
# and voice_public_url https://voice.example.com; the webhook location; a
# form Content-Type.
use Test::Voice;

block_defaults(http_config => <<'HTTP', config => <<'CONF',
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com;
HTTP
location = /incoming-call { voice_incoming_call; }
CONF
               more_headers => 'Content-Type: application/x-www-form-urlencoded');

# The TwiML of an accepted call: a Stream URL on $host (default
# voice.example.com) with a fresh token.
sub stream_twiml {
    my $host = quotemeta($_[0] // 'voice.example.com');
    return qr{^<Response><Connect><Stream url="wss://$host/media-stream/[A-Za-z0-9_-]{43}"/></Connect></Response>$}s;
}

# nginx's own error page with $text in it: no TwiML, so no token.
sub not_twiml {
    my $text = quotemeta $_[0];
    return qr{\A(?!.*<Response).*$text}s;
}

# Two webhook locations with an IPv6 literal public URL, with a port and
# without.
sub ipv6_locations {
    return <<'CONF';
location = /incoming-call {
    voice_incoming_call;
    voice_public_url https://[2001:db8::1]:8443;
}
location = /incoming-call-443 {
    voice_incoming_call;
    voice_public_url https://[2001:db8::1];
}
CONF
}

# The Stream token in a TwiML answer, or undef.
sub token_of {
    my ($body) = @_;
    return ($body // '') =~ m{/media-stream/([A-Za-z0-9_-]{43})"} ? $1 : undef;
}

# The error log of the current block so far, once nginx has finished
# writing what it logs around a response.
sub log_now {
    Time::HiRes::sleep(0.2);
    return error_log_since_start();
}

run_tests();

__DATA__

=== TEST 1: a webhook signed by the twilio library gets Stream TwiML
# A genuine webhook: 200 text/xml, a fresh 256-bit token in the Stream URL,
# one info line naming the call, and the token itself never in the log.
--- request
POST /incoming-call
AccountSid=AC0123456789abcdef0123456789abcdef&ApiVersion=2010-04-01&CallSid=CA0123456789abcdef0123456789abcdef&CallStatus=ringing&Called=%2B15557654321&Caller=%2B15551234567&Direction=inbound&From=%2B15551234567&To=%2B15557654321
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_headers
Content-Type: text/xml
--- response_body_like eval: stream_twiml()
--- perl_check
my $r = $_[1][0];
is($r->{headers}{'content-length'}, length $r->{body}, 'Content-Length is the body length');
my $token = token_of($r->{body});
ok($token, 'a token in the Stream URL');
my $log = log_now();
like($log, qr/\[info\] .*voice: incoming call CA0123456789abcdef0123456789abcdef, stream token minted/,
     'one info line names the call');
ok(index($log, $token) < 0, 'the minted token is not in the error log');
--- no_error_log
[warn]
[error]



=== TEST 2: a retried webhook gets the same TwiML; two calls get two tokens
# Twilio retries a webhook it got no answer to: the call keeps one token
# (not a second one per retry), and the retry is logged as such.
--- request eval
["POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567&To=%2B15557654321",
 "POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567&To=%2B15557654321",
 "POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdee&From=%2B15551234567&To=%2B15557654321"]
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code eval
[200, 200, 200]
--- perl_check
my ($t1, $t2, $t3) = map { token_of($_->{body}) } @{$_[1]};
ok($t1 && $t2 && $t3, 'all answers carry a token');
is($_[1][1]{body}, $_[1][0]{body}, 'the retry gets the same TwiML, byte for byte');
isnt($t1, $t3, 'another call gets another token');
my $log = log_now();
ok(index($log, $t1) < 0 && index($log, $t3) < 0, 'no token is logged');
like($log, qr/\[info\] .*voice: webhook repeated for call CA0123456789abcdef0123456789abcdef, its stream is not open yet: the same TwiML/,
     'the retry is logged at info, naming the call');
--- no_error_log
[warn]
[error]



=== TEST 3: one parameter value changed after signing
# Tampering: whatever part of the signed data changes, the answer is 403
# with nginx's own error page (no TwiML, so no token) and one [warn] line.
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15550000001&To=%2B15557654321
--- more_headers eval
"Content-Type: application/x-www-form-urlencoded\n"
. "X-Twilio-Signature: " . sign_twilio(undef, 'https://voice.example.com/incoming-call',
    'CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567&To=%2B15557654321')
--- error_code: 403
--- response_body_like eval: not_twiml('<title>403 Forbidden</title>')
--- error_log
[warn]
voice: webhook X-Twilio-Signature does not match, call CA0123456789abcdef0123456789abcdef
--- no_error_log
stream token minted
[error]



=== TEST 4: a parameter added after signing
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567&To=%2B15557654321&Digits=1
--- more_headers eval
"Content-Type: application/x-www-form-urlencoded\n"
. "X-Twilio-Signature: " . sign_twilio(undef, 'https://voice.example.com/incoming-call',
    'CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567&To=%2B15557654321')
--- error_code: 403
--- response_body_like eval: not_twiml('<title>403 Forbidden</title>')
--- error_log
voice: webhook X-Twilio-Signature does not match
--- no_error_log
stream token minted
[error]



=== TEST 5: a parameter removed after signing
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&To=%2B15557654321
--- more_headers eval
"Content-Type: application/x-www-form-urlencoded\n"
. "X-Twilio-Signature: " . sign_twilio(undef, 'https://voice.example.com/incoming-call',
    'CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567&To=%2B15557654321')
--- error_code: 403
--- response_body_like eval: not_twiml('<title>403 Forbidden</title>')
--- error_log
voice: webhook X-Twilio-Signature does not match
--- no_error_log
stream token minted
[error]



=== TEST 6: signed with another auth token
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567&To=%2B15557654321
--- twilio_sign: https://voice.example.com/incoming-call
--- twilio_token: 54321
--- error_code: 403
--- response_body_like eval: not_twiml('<title>403 Forbidden</title>')
--- error_log
voice: webhook X-Twilio-Signature does not match
--- no_error_log
stream token minted
[error]



=== TEST 7: a signature made for another host
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: https://attacker.example.com/incoming-call
--- error_code: 403
--- response_body_like eval: not_twiml('<title>403 Forbidden</title>')
--- error_log
voice: webhook X-Twilio-Signature does not match
--- no_error_log
stream token minted
[error]



=== TEST 8: a signature made for another path
--- config
location = /incoming-call { voice_incoming_call; }
location = /other-hook { voice_incoming_call; }
--- request
POST /other-hook
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 403
--- response_body_like eval: not_twiml('<title>403 Forbidden</title>')
--- error_log
voice: webhook X-Twilio-Signature does not match
--- no_error_log
stream token minted
[error]



=== TEST 9: a signature made without the query
--- request
POST /incoming-call?x=1
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 403
--- response_body_like eval: not_twiml('<title>403 Forbidden</title>')
--- error_log
voice: webhook X-Twilio-Signature does not match
--- no_error_log
stream token minted
[error]



=== TEST 10: a signature made for another scheme (http)
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: http://voice.example.com/incoming-call
--- error_code: 403
--- response_body_like eval: not_twiml('<title>403 Forbidden</title>')
--- error_log
voice: webhook X-Twilio-Signature does not match
--- no_error_log
stream token minted
[error]



=== TEST 11: Host and X-Forwarded-* are not the signed URL (a client controls them): signed over them, 403
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- more_headers
Content-Type: application/x-www-form-urlencoded
Host: attacker.example.com
X-Forwarded-Proto: https
X-Forwarded-Host: attacker.example.com
--- twilio_sign: https://attacker.example.com/incoming-call
--- error_code: 403
--- response_body_like eval: not_twiml('<title>403 Forbidden</title>')
--- error_log
voice: webhook X-Twilio-Signature does not match
--- no_error_log
[error]



=== TEST 12: Host and X-Forwarded-* are not the signed URL: signed over voice_public_url, 200
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- more_headers
Content-Type: application/x-www-form-urlencoded
Host: attacker.example.com
X-Forwarded-Proto: https
X-Forwarded-Host: attacker.example.com
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- no_error_log
[error]



=== TEST 13: no X-Twilio-Signature header at all
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567&To=%2B15557654321
--- error_code: 403
--- response_body_like eval: not_twiml('<title>403 Forbidden</title>')
--- error_log
[warn]
voice: webhook request has no X-Twilio-Signature, call CA0123456789abcdef0123456789abcdef
--- no_error_log
stream token minted
[error]



=== TEST 14: an empty signature
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- more_headers
Content-Type: application/x-www-form-urlencoded
X-Twilio-Signature: 
--- error_code: 403
--- response_body_like eval: not_twiml('<title>403 Forbidden</title>')
--- error_log eval
qr/\[warn\].*?voice: webhook .*?X-Twilio-Signature/
--- no_error_log
stream token minted
[error]



=== TEST 15: a truncated signature (27 of its 28 characters)
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- more_headers eval
"Content-Type: application/x-www-form-urlencoded\n"
. "X-Twilio-Signature: " . substr(sign_twilio(undef, 'https://voice.example.com/incoming-call',
            'CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567'), 0, 27)
--- error_code: 403
--- response_body_like eval: not_twiml('<title>403 Forbidden</title>')
--- error_log eval
qr/\[warn\].*?voice: webhook .*?X-Twilio-Signature/
--- no_error_log
stream token minted
[error]



=== TEST 16: a garbage signature
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- more_headers
Content-Type: application/x-www-form-urlencoded
X-Twilio-Signature: AAAAAAAAAAAAAAAAAAAAAAAAAAA=
--- error_code: 403
--- response_body_like eval: not_twiml('<title>403 Forbidden</title>')
--- error_log eval
qr/\[warn\].*?voice: webhook .*?X-Twilio-Signature/
--- no_error_log
stream token minted
[error]



=== TEST 17: https public URL, request signed with :443 added
# Port variants: Twilio signs the public URL with or without its port, so
# the module tries it as configured, with the port removed and (without a
# port) with the scheme's default port added -- and nothing else.
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567&To=%2B15557654321
--- twilio_sign: https://voice.example.com:443/incoming-call
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- error_log
stream token minted
--- no_error_log
[warn]
[error]



=== TEST 18: https public URL: :80 is not a variant of it
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: https://voice.example.com:80/incoming-call
--- error_code: 403
--- error_log
voice: webhook X-Twilio-Signature does not match
--- no_error_log
stream token minted
[error]



=== TEST 19: https public URL: another port is not a variant of it
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: https://voice.example.com:8443/incoming-call
--- error_code: 403
--- error_log
voice: webhook X-Twilio-Signature does not match
--- no_error_log
stream token minted
[error]



=== TEST 20: public URL with :8443, signed with that port
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com:8443;
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: https://voice.example.com:8443/incoming-call
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- no_error_log
[warn]
[error]



=== TEST 21: public URL with :8443, signed without any port
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com:8443;
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- no_error_log
[warn]
[error]



=== TEST 22: public URL with :8443, signed with :443: refused
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com:8443;
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: https://voice.example.com:443/incoming-call
--- error_code: 403
--- error_log
voice: webhook X-Twilio-Signature does not match
--- no_error_log
stream token minted
[error]



=== TEST 23: public URL with :8443, signed with :9443: refused
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com:8443;
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: https://voice.example.com:9443/incoming-call
--- error_code: 403
--- error_log
voice: webhook X-Twilio-Signature does not match
--- no_error_log
stream token minted
[error]



=== TEST 24: http public URL, signed as is
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url http://voice.example.com;
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: http://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- no_error_log
[error]



=== TEST 25: http public URL, signed with :80
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url http://voice.example.com;
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: http://voice.example.com:80/incoming-call
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- no_error_log
[error]



=== TEST 26: http public URL, signed as https: refused
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url http://voice.example.com;
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 403
--- response_body_like eval: not_twiml('<title>403 Forbidden</title>')
--- error_log
voice: webhook X-Twilio-Signature does not match
--- no_error_log
[error]



=== TEST 27: http public URL, signed with :443: refused
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url http://voice.example.com;
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: http://voice.example.com:443/incoming-call
--- error_code: 403
--- response_body_like eval: not_twiml('<title>403 Forbidden</title>')
--- error_log
voice: webhook X-Twilio-Signature does not match
--- no_error_log
[error]



=== TEST 28: an IPv6 literal public URL with a port, signed with it
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
--- config eval: ipv6_locations()
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: https://[2001:db8::1]:8443/incoming-call
--- error_code: 200
--- response_body_like eval: stream_twiml('[2001:db8::1]')
--- no_error_log
[error]



=== TEST 29: an IPv6 literal public URL with a port, signed without it
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
--- config eval: ipv6_locations()
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: https://[2001:db8::1]/incoming-call
--- error_code: 200
--- response_body_like eval: stream_twiml('[2001:db8::1]')
--- no_error_log
[error]



=== TEST 30: an IPv6 literal public URL without a port, signed as is
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
--- config eval: ipv6_locations()
--- request
POST /incoming-call-443
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: https://[2001:db8::1]/incoming-call-443
--- error_code: 200
--- response_body_like eval: stream_twiml('[2001:db8::1]')
--- no_error_log
[error]



=== TEST 31: an IPv6 literal public URL without a port, signed with :443
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
--- config eval: ipv6_locations()
--- request
POST /incoming-call-443
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: https://[2001:db8::1]:443/incoming-call-443
--- error_code: 200
--- response_body_like eval: stream_twiml('[2001:db8::1]')
--- no_error_log
[error]



=== TEST 32: an IPv6 literal public URL: another address is refused
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
--- config eval: ipv6_locations()
--- request
POST /incoming-call-443
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: https://[2001:db8::2]/incoming-call-443
--- error_code: 403
--- response_body_like: 403 Forbidden
--- error_log
voice: webhook X-Twilio-Signature does not match
--- no_error_log
[error]



=== TEST 33: vector: base case, RSOYDt4T1cUTdK1PDd93/VVr8B8=
# Twilio's published vectors (twilio-python and twilio-node test suites,
# PROTOCOL.md 1.4): auth token 12345, fixed signatures, the raw query
# string "?foo=1&bar=2" part of the signed URL.
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://mycompany.com;
--- config
location = /myapp.php { voice_incoming_call; }
--- request
POST /myapp.php?foo=1&bar=2
CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212
--- more_headers
Content-Type: application/x-www-form-urlencoded
X-Twilio-Signature: RSOYDt4T1cUTdK1PDd93/VVr8B8=
--- error_code: 200
--- response_body_like eval: stream_twiml('mycompany.com')
--- error_log
voice: incoming call -, stream token minted
--- no_error_log
[warn]
[error]
CA1234567890ABCDE



=== TEST 34: vector: the :443 variant, kvajT1Ptam85bY51eRf/AJRuM3w=
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://mycompany.com;
--- config
location = /myapp.php { voice_incoming_call; }
--- request
POST /myapp.php?foo=1&bar=2
CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212
--- more_headers
Content-Type: application/x-www-form-urlencoded
X-Twilio-Signature: kvajT1Ptam85bY51eRf/AJRuM3w=
--- error_code: 200
--- response_body_like eval: stream_twiml('mycompany.com')
--- error_log
stream token minted
--- no_error_log
[warn]
[error]



=== TEST 35: vector: http with :80, 0ZXoZLH/DfblKGATFgpif+LLRf4=
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url http://mycompany.com;
--- config
location = /myapp.php { voice_incoming_call; }
--- request
POST /myapp.php?foo=1&bar=2
CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212
--- more_headers
Content-Type: application/x-www-form-urlencoded
X-Twilio-Signature: 0ZXoZLH/DfblKGATFgpif+LLRf4=
--- error_code: 200
--- error_log
stream token minted
--- no_error_log
[warn]
[error]



=== TEST 36: vector: http with :1234, Zmvh+3yNM1Phv2jhDCwEM3q5ebU=
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url http://mycompany.com:1234;
--- config
location = /myapp.php { voice_incoming_call; }
--- request
POST /myapp.php?foo=1&bar=2
CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212
--- more_headers
Content-Type: application/x-www-form-urlencoded
X-Twilio-Signature: Zmvh+3yNM1Phv2jhDCwEM3q5ebU=
--- error_code: 200
--- response_body_like eval: stream_twiml('mycompany.com')
--- error_log
stream token minted
--- no_error_log
[warn]
[error]



=== TEST 37: vector: https :1234 validated with the port removed (RSOYDt...)
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://mycompany.com:1234;
--- config
location = /myapp.php { voice_incoming_call; }
--- request
POST /myapp.php?foo=1&bar=2
CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212
--- more_headers
Content-Type: application/x-www-form-urlencoded
X-Twilio-Signature: RSOYDt4T1cUTdK1PDd93/VVr8B8=
--- error_code: 200
--- error_log
stream token minted
--- no_error_log
[warn]
[error]



=== TEST 38: vector: multi-value Digits, IK+Dwps556ElfBT0I3Rgjkr1wJU=: valid, but no CallSid
The signature is right (no warning, not 403); the request lacks CallSid,
so the module answers 400 after checking it.
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://mycompany.com;
--- config
location = /myapp.php { voice_incoming_call; }
--- request
POST /myapp.php?foo=1&bar=2
Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234
--- more_headers
Content-Type: application/x-www-form-urlencoded
X-Twilio-Signature: IK+Dwps556ElfBT0I3Rgjkr1wJU=
--- error_code: 400
--- response_body_like eval: not_twiml('<title>400 Bad Request</title>')
--- error_log
[info]
voice: webhook request has no CallSid
--- no_error_log
does not match
[warn]
[error]



=== TEST 39: vector: the query string is signed raw (reordered query: 403)
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://mycompany.com;
--- config
location = /myapp.php { voice_incoming_call; }
--- request
POST /myapp.php?bar=2&foo=1
CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212
--- more_headers
Content-Type: application/x-www-form-urlencoded
X-Twilio-Signature: RSOYDt4T1cUTdK1PDd93/VVr8B8=
--- error_code: 403
--- error_log
voice: webhook X-Twilio-Signature does not match, call -
--- no_error_log
stream token minted
[error]



=== TEST 40: the raw query string is signed, escapes and "+" untouched
--- request
POST /incoming-call?name=Jos%C3%A9+M&x=a%2Bb&empty=&flag
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: https://voice.example.com/incoming-call?name=Jos%C3%A9+M&x=a%2Bb&empty=&flag
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- no_error_log
[warn]
[error]



=== TEST 41: an absolute-form request line: signed over voice_public_url, 200
--- request
POST http://attacker.example.com/incoming-call?x=1
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: https://voice.example.com/incoming-call?x=1
--- error_code: 200
--- no_error_log
[error]



=== TEST 42: an absolute-form request line: its host is not the signed URL
--- request
POST http://attacker.example.com/incoming-call?x=1
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: http://attacker.example.com/incoming-call?x=1
--- error_code: 403
--- error_log
voice: webhook X-Twilio-Signature does not match
--- no_error_log
[error]



=== TEST 43: a name repeated with different values
# Form decoding as Twilio's libraries see it: repeated names (sorted,
# duplicates dropped), "+" and %XX, UTF-8, invalid escapes left as they are.
# The twilio library parses each body with Node's querystring and signs
# the result; the module must reach the same string to accept it.
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&Digits=5678&From=%2B15551234567&Digits=1234&Digits=0
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- no_error_log
[warn]
[error]



=== TEST 44: a name repeated with the same value (an exact duplicate pair)
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&Digits=1234&From=%2B15551234567&Digits=1234
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- no_error_log
[warn]
[error]



=== TEST 45: CallSid twice, the same value
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- no_error_log
[warn]
[error]



=== TEST 46: "+" and %XX decoding: spaces, %2B, %26, %3D, %25, lowercase hex
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2b15551234567&CallerName=Jane+Q.%20Doe&Note=a%26b%3Dc+%2B+d&Percent=100%25&Key%20With+Space=x
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- no_error_log
[warn]
[error]



=== TEST 47: the same body with a "+" taken literally would not verify
The harness signs the decoded values; a module that did not turn "+" into
a space would compute another string.  Proven here by the oracle itself.
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&CallerName=Jane+Doe
--- more_headers eval
"Content-Type: application/x-www-form-urlencoded\n"
. "X-Twilio-Signature: " . sign_twilio(undef, 'https://voice.example.com/incoming-call',
    { CallSid => 'CA0123456789abcdef0123456789abcdef', CallerName => 'Jane+Doe' })
--- error_code: 403
--- error_log
voice: webhook X-Twilio-Signature does not match
--- no_error_log
stream token minted
[error]



=== TEST 48: UTF-8 values, percent-encoded
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567&CallerName=Jos%C3%A9+M%C3%BCller&FromCity=S%C3%A3o+Paulo&Emoji=%F0%9F%93%9E
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- no_error_log
[warn]
[error]



=== TEST 49: UTF-8 values, raw
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567&CallerName=José Müller
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- no_error_log
[warn]
[error]



=== TEST 50: invalid escapes (%ZZ, a lone %, %4 at the end) are kept as they are
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567&Bad=%ZZ&Lone=50%&Mixed=%ZZ%C3%A9%2&Tail=%4
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- no_error_log
[warn]
[error]



=== TEST 51: a name without "=", empty pairs and an empty value
--- request
POST /incoming-call
&CallSid=CA0123456789abcdef0123456789abcdef&&Flag&Empty=&From=%2B15551234567&
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- no_error_log
[warn]
[error]



=== TEST 52: an empty body with a valid signature: 400, not 500
--- request
POST /incoming-call

--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 400
--- response_body_like eval: not_twiml('<title>400 Bad Request</title>')
--- error_log eval
qr/\[info\].*?voice: webhook request has no CallSid/
--- no_error_log
stream token minted
[warn]
[error]



=== TEST 53: an empty CallSid with a valid signature: 400, not 500
--- request
POST /incoming-call
CallSid=&From=%2B15551234567
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 400
--- response_body_like eval: not_twiml('<title>400 Bad Request</title>')
--- error_log eval
qr/\[info\].*?voice: webhook request has no CallSid/
--- no_error_log
stream token minted
[warn]
[error]



=== TEST 54: the header name is case-insensitive; an HTTP/1.0 request without Host works
--- raw_request eval
my $body = 'CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567';
my $sig = sign_twilio(undef, 'https://voice.example.com/incoming-call', $body);
"POST /incoming-call HTTP/1.0\r\nx-twilio-signature: $sig\r\n"
. "content-type: application/x-www-form-urlencoded\r\n"
. "Content-Length: " . length($body) . "\r\n\r\n$body"
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- error_log
stream token minted
--- no_error_log
[warn]
[error]



=== TEST 55: GET: 405 with Allow: POST
--- request
GET /incoming-call
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 405
--- response_headers
Allow: POST
--- response_body_like: 405 Not Allowed
--- no_error_log
stream token minted
[warn]
[error]



=== TEST 56: PUT: 405 with Allow: POST
--- request
PUT /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 405
--- response_headers
Allow: POST
--- response_body_like: 405 Not Allowed
--- no_error_log
stream token minted
[warn]
[error]



=== TEST 57: HEAD: 405 with Allow: POST
--- request
HEAD /incoming-call
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 405
--- response_headers
Allow: POST
--- response_body_like: ^$
--- no_error_log
stream token minted
[warn]
[error]



=== TEST 58: text/plain: 415
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- more_headers
Content-Type: text/plain
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 415
--- response_body_like: 415 Unsupported Media Type
--- error_log eval
qr/\[info\].*?voice: webhook body is not application\/x-www-form-urlencoded/
--- no_error_log
stream token minted
[warn]
[error]



=== TEST 59: application/json: 415
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- more_headers
Content-Type: application/json
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 415
--- response_body_like: 415 Unsupported Media Type
--- error_log eval
qr/\[info\].*?voice: webhook body is not application\/x-www-form-urlencoded/
--- no_error_log
stream token minted
[warn]
[error]



=== TEST 60: multipart/form-data: 415
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- more_headers
Content-Type: multipart/form-data; boundary=x
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 415
--- response_body_like: 415 Unsupported Media Type
--- error_log eval
qr/\[info\].*?voice: webhook body is not application\/x-www-form-urlencoded/
--- no_error_log
stream token minted
[warn]
[error]



=== TEST 61: a media type that only starts like the form type: 415
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- more_headers
Content-Type: application/x-www-form-urlencodedX
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 415
--- response_body_like: 415 Unsupported Media Type
--- error_log eval
qr/\[info\].*?voice: webhook body is not application\/x-www-form-urlencoded/
--- no_error_log
stream token minted
[warn]
[error]



=== TEST 62: no Content-Type: 415
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- more_headers
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 415
--- response_body_like: 415 Unsupported Media Type
--- error_log eval
qr/\[info\].*?voice: webhook body is not application\/x-www-form-urlencoded/
--- no_error_log
stream token minted
[warn]
[error]



=== TEST 63: the media type with a charset parameter
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- more_headers
Content-Type: application/x-www-form-urlencoded; charset=utf-8
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- no_error_log
[warn]
[error]



=== TEST 64: the media type in mixed case
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- more_headers
Content-Type: Application/X-WWW-Form-URLEncoded
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- no_error_log
[warn]
[error]



=== TEST 65: the media type, a space and a parameter
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- more_headers
Content-Type: application/x-www-form-urlencoded ; charset=UTF-8
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- no_error_log
[warn]
[error]



=== TEST 66: a body over client_max_body_size: 413
--- config
client_max_body_size 1k;
location = /incoming-call { voice_incoming_call; }
--- request eval
"POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567&Pad=" . ('x' x 2000)
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 413
--- response_body_like eval: not_twiml('413 Request Entity Too Large')
--- error_log
client intended to send too large body
--- no_error_log
stream token minted
[warn]



=== TEST 67: a body over client_body_buffer_size (but within client_max_body_size): 413
--- config
client_max_body_size 1m;
client_body_buffer_size 1k;
location = /incoming-call { voice_incoming_call; }
--- request eval
"POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567&Pad=" . ('x' x 2000)
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 413
--- response_body_like eval: not_twiml('413 Request Entity Too Large')
--- error_log
[info]
larger than client_body_buffer_size
--- no_error_log
stream token minted
buffered to a temporary file
[warn]
[error]



=== TEST 68: a body of exactly client_body_buffer_size still fits: 200
--- config
client_max_body_size 1m;
client_body_buffer_size 1k;
location = /incoming-call { voice_incoming_call; }
--- request eval
my $b = "CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567&Pad=";
"POST /incoming-call\n" . $b . ('x' x (1024 - length $b))
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- no_error_log
[warn]
[error]



=== TEST 69: a chunked body that fits, in several chunks and packets: 200
--- raw_request eval
my $body = 'CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567'
         . '&To=%2B15557654321&CallerName=Jos%C3%A9+M%C3%BCller';
my $sig = sign_twilio(undef, 'https://voice.example.com/incoming-call', $body);
my @parts = (substr($body, 0, 20), substr($body, 20, 30), substr($body, 50));
my @chunks = map { sprintf("%x\r\n%s\r\n", length, $_) } @parts;
["POST /incoming-call HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
 . "Content-Type: application/x-www-form-urlencoded\r\n"
 . "X-Twilio-Signature: $sig\r\nTransfer-Encoding: chunked\r\n\r\n" . $chunks[0],
 $chunks[1],
 $chunks[2] . "0\r\n\r\n"]
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- error_log
voice: incoming call CA0123456789abcdef0123456789abcdef, stream token minted
--- no_error_log
[warn]
[error]



=== TEST 70: a chunked body over client_body_buffer_size: 413
--- config
client_max_body_size 1m;
client_body_buffer_size 1k;
location = /incoming-call { voice_incoming_call; }
--- raw_request eval
my $body = 'CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567&Pad='
         . ('x' x 2000);
my $sig = sign_twilio(undef, 'https://voice.example.com/incoming-call', $body);
"POST /incoming-call HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
. "Content-Type: application/x-www-form-urlencoded\r\n"
. "X-Twilio-Signature: $sig\r\nTransfer-Encoding: chunked\r\n\r\n"
. join('', map { sprintf("%x\r\n%s\r\n", length, $_) } unpack '(a500)*', $body)
. "0\r\n\r\n"
--- error_code: 413
--- response_body_like eval: not_twiml('413 Request Entity Too Large')
--- error_log
voice: webhook body was buffered to a temporary file
--- no_error_log
stream token minted
[error]



=== TEST 71: a body arriving in several packets (Content-Length): 200
--- raw_request eval
my $body = 'CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567'
         . '&To=%2B15557654321&Pad=' . ('y' x 3000);
my $sig = sign_twilio(undef, 'https://voice.example.com/incoming-call', $body);
["POST /incoming-call HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
 . "Content-Type: application/x-www-form-urlencoded\r\n"
 . "X-Twilio-Signature: $sig\r\nContent-Length: " . length($body) . "\r\n\r\n",
 substr($body, 0, 1000), substr($body, 1000, 1500), substr($body, 2500)]
--- raw_request_middle_delay: 0.1
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- error_log
voice: incoming call CA0123456789abcdef0123456789abcdef, stream token minted
--- no_error_log
[warn]
[error]



=== TEST 72: keep-alive: after a 415, 405 or 403 with a body, the next request is served
The refused request's body must be read and discarded, not taken for the
next request on the connection.
--- config
location = /incoming-call { voice_incoming_call; }
location = /ping { return 200 "pong"; }
--- perl_check
my $body = 'CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567';
my $sig = sign_twilio(undef, 'https://voice.example.com/incoming-call', $body);
my $req = sub {
    my ($method, $type, $signature, $conn) = @_;
    "$method /incoming-call HTTP/1.1\r\nHost: localhost\r\nConnection: $conn\r\n"
    . "Content-Type: $type\r\nX-Twilio-Signature: $signature\r\n"
    . "Content-Length: " . length($body) . "\r\n\r\n$body";
};
for my $first (['POST', 'text/plain', $sig, 415],
               ['PUT', 'application/x-www-form-urlencoded', $sig, 405],
               ['POST', 'application/x-www-form-urlencoded', 'A' x 27 . '=', 403],
               ['POST', 'application/x-www-form-urlencoded', $sig, 200]) {
    my $status = pop @$first;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => server_port())
        or die "connect: $!";
    print $s $req->(@$first, 'keep-alive'),
             $req->('POST', 'application/x-www-form-urlencoded', $sig, 'close');
    local $/;
    my $all = <$s>;
    my @st = $all =~ m{(?:^|</Response>)HTTP/1\.1 (\d{3}) }mg;
    is("@st", "$status 200", "$first->[0] $first->[1] ($status), then a signed webhook (200)");
    like($all, qr{<Stream url="wss://voice\.example\.com/media-stream/[A-Za-z0-9_-]{43}"/></Connect></Response>\z},
         'the second answer is the TwiML');
}
--- no_error_log
[error]
client sent invalid method



=== TEST 73: allowlist: allowed, not allowed, missing From
# voice_allow_callers: listed callers get the Stream, anyone else (or no
# From at all) a bare <Reject/> -- still 200 text/xml, so Twilio rejects
# the call without answering it.
--- config
location = /incoming-call {
    voice_incoming_call;
    voice_allow_callers +15551234567 +15557654321;
}
--- request eval
["POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15557654321&To=%2B15550001111",
 "POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15559999999&To=%2B15550001111",
 "POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&To=%2B15550001111",
 "POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=&To=%2B15550001111",
 "POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B155512345678&To=%2B15550001111"]
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code eval
[200, 200, 200, 200, 200]
--- response_headers
Content-Type: text/xml
--- response_body_like eval
[qr{^<Response><Connect><Stream url="wss://voice\.example\.com/media-stream/[A-Za-z0-9_-]{43}"/></Connect></Response>$},
 qr{^<Response><Reject/></Response>$}, qr{^<Response><Reject/></Response>$},
 qr{^<Response><Reject/></Response>$}, qr{^<Response><Reject/></Response>$}]
--- perl_check
is($_[1][$_]{body}, '<Response><Reject/></Response>', "request $_: exactly a bare Reject")
    for 1 .. 4;
my $log = log_now();
my $minted = () = $log =~ /stream token minted/g;
is($minted, 1, 'one token minted, for the allowed caller only');
my $rejected = () = $log =~ /\[warn\] .*voice: caller is not in voice_allow_callers, rejecting call CA0123456789abcdef0123456789abcdef/g;
is($rejected, 4, 'each rejection is logged');
--- no_error_log
[error]
15559999999



=== TEST 74: allowlist: the directive is repeatable, the lists add up
--- config
location = /incoming-call {
    voice_incoming_call;
    voice_allow_callers +15551234567;
    voice_allow_callers +15557654321;
}
--- request eval
["POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567",
 "POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15557654321",
 "POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15550000000"]
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code eval
[200, 200, 200]
--- response_body_like eval
[qr{<Stream url="wss://voice\.example\.com/media-stream/}, qr{<Stream url="wss://voice\.example\.com/media-stream/},
 qr{^<Response><Reject/></Response>$}]
--- error_log
voice: caller is not in voice_allow_callers
--- no_error_log
[error]



=== TEST 75: voice_say before <Connect>, voice_fallback_say after it, both escaped
# TwiML: every configured text is XML-escaped; the Stream URL base comes
# from voice_stream_url, or voice_public_url's host without its port.
--- config
location = /incoming-call {
    voice_incoming_call;
    voice_say "Hi & <welcome> \"friend\"";
    voice_fallback_say "Sorry, it's <down> & out";
}
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_headers
Content-Type: text/xml
--- response_body_like: ^<Response><Say>Hi &amp; &lt;welcome&gt; &quot;friend&quot;</Say><Connect><Stream url="wss://voice\.example\.com/media-stream/[A-Za-z0-9_-]{43}"/></Connect><Say>Sorry, it&apos;s &lt;down&gt; &amp; out</Say></Response>$
--- no_error_log
[warn]
[error]



=== TEST 76: voice_stream_url is used as given, XML-escaped (& -> &amp;)
--- config
location = /incoming-call {
    voice_incoming_call;
    voice_stream_url wss://streams.example.com/a&b;
}
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like: ^<Response><Connect><Stream url="wss://streams\.example\.com/a&amp;b/[A-Za-z0-9_-]{43}"/></Connect></Response>$
--- no_error_log
[warn]
[error]



=== TEST 77: voice_stream_url with a trailing slash gets no second one
--- config
location = /incoming-call {
    voice_incoming_call;
    voice_stream_url wss://streams.example.com/ws/;
}
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like: ^<Response><Connect><Stream url="wss://streams\.example\.com/ws/[A-Za-z0-9_-]{43}"/></Connect></Response>$
--- no_error_log
[warn]
[error]



=== TEST 78: the default Stream URL drops voice_public_url's port
--- http_config
voice_token_zone voice_tokens:1m;
voice_twilio_auth_token 12345;
voice_public_url https://voice.example.com:8443;
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- twilio_sign: https://voice.example.com:8443/incoming-call
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- no_error_log
[warn]
[error]



=== TEST 79: a CallSid with markup never reaches the log
# Log hygiene: only a CallSid of Twilio's exact shape (CA + 32 lowercase
# hex) is ever written to the log; anything else a client sent is "-".
--- request
POST /incoming-call
CallSid=CA%3Cscript%3Ealert(1)%3C%2Fscript%3E&From=%2B15551234567
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- error_log
voice: incoming call -, stream token minted
--- no_error_log
<script>
script%3E
alert(1)
[warn]
[error]



=== TEST 80: a CallSid in upper-case hex never reaches the log
--- request
POST /incoming-call
CallSid=CA0123456789ABCDEF0123456789ABCDEF&From=%2B15551234567
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- error_log
voice: incoming call -, stream token minted
--- no_error_log
CA0123456789ABCDEF
[warn]
[error]



=== TEST 81: a CallSid with a newline and a forged log line never reaches the log
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef%0A2026%2F01%2F01+00%3A00%3A00+%5Bemerg%5D+forged&From=%2B15551234567
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- error_log
voice: incoming call -, stream token minted
--- no_error_log
forged
[warn]
[error]



=== TEST 82: a CallSid one character too long never reaches the log
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef0&From=%2B15551234567
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like eval: stream_twiml()
--- error_log
voice: incoming call -, stream token minted
--- no_error_log
CA0123456789abcdef0123456789abcdef0
[warn]
[error]



=== TEST 83: ... nor through a missing signature
--- config
location = /incoming-call {
    voice_incoming_call;
    voice_allow_callers +15551234567;
}
--- request
POST /incoming-call
CallSid=CA%3Cscript%3E&From=%2B15551234567
--- error_code: 403
--- error_log
voice: webhook request has no X-Twilio-Signature, call -
--- no_error_log
<script>
script%3E
[error]



=== TEST 84: ... nor through a refused signature
--- config
location = /incoming-call {
    voice_incoming_call;
    voice_allow_callers +15551234567;
}
--- request
POST /incoming-call
CallSid=CA%3Cscript%3E&From=%2B15551234567
--- twilio_sign: https://attacker.example.com/incoming-call
--- error_code: 403
--- error_log
voice: webhook X-Twilio-Signature does not match, call -
--- no_error_log
<script>
script%3E
[error]



=== TEST 85: ... nor through an allowlist rejection
--- config
location = /incoming-call {
    voice_incoming_call;
    voice_allow_callers +15551234567;
}
--- request
POST /incoming-call
CallSid=CA%3Cscript%3E&From=%2B15550000000
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- error_log
voice: caller is not in voice_allow_callers, rejecting call -
--- no_error_log
<script>
script%3E
[error]



=== TEST 86: a field over 255 bytes is refused with 400, nothing minted
--- request eval
"POST /incoming-call\nCallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567&To=" . ('5' x 256)
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 400
--- response_body_like: \A(?!.*<Response).*400 Bad Request
--- error_log
[info]
voice: webhook field longer than 255 bytes
--- no_error_log
stream token minted
[warn]
[error]
