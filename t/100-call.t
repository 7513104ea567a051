# A whole call through nginx: Twilio's side played by t/lib/twilio-call.js
# (the `ws` and `twilio` npm packages), OpenAI's by t/lib/fake-openai.js on
# real TLS with a CA made here (t/lib/voice-call.pl).  What each side
# received is compared with what the other sent, byte for byte.
#
#   - audio both ways, verbatim and in order, the audio queued before
#     session.update included, and the 2 s cap of that queue;
#   - how a call ends: Twilio stop or close, OpenAI close or drop, 401,
#     TLS verification, refused connect, DNS failure, handshake timeout;
#   - what start may not carry (another CallSid, another mediaFormat);
#   - upgrades refused before any OpenAI connection (signature, token);
#   - $voice_call_sid, $voice_stream_sid, $voice_close_reason;
#   - 50 concurrent calls on two workers.
use Test::Voice;
use FindBin ();

require "$FindBin::Bin/lib/voice-call.pl";

voice_setup();

# --- helpers (package main: perl_check code calls them) ----------------------

# The driver's transcript has no problem of its own (failed waits etc.);
# with closed_ok, sends after nginx closed the stream are no problem.
sub driver_ok {
    my ($t, $what, %o) = @_;
    my @e = tw_errors($t);
    @e = grep { !/^send on a closed socket/ } @e if $o{closed_ok};
    ok(!@e, "$what: the Twilio side ran its steps")
        or diag join "\n", @e;
}

# Every audio payload Twilio sent arrived at OpenAI verbatim and in order
# (the in-band control messages aside), and every delta OpenAI sent arrived
# at Twilio verbatim, in order, each followed by its mark.  Returns the
# fake's connection number of the call.
sub check_byte_exact {
    my ($t, $events, $what) = @_;
    my @sent = tw_sent_audio($t);
    my $conn = conn_of($events, $sent[0] // '');
    ok(defined $conn, "$what: OpenAI got the call's audio") or return;
    my @got = map { $_->{audio} }
              oa_msgs_noctl($events, $conn, 'input_audio_buffer.append');
    is(scalar @got, scalar @sent, "$what: as many appends as media sent");
    ok(join("\n", @got) eq join("\n", @sent),
       "$what: caller audio verbatim and in order");
    for (oa_msgs($events, $conn, 'input_audio_buffer.append')) {
        my @keys = sort keys %$_;
        is("@keys", 'audio type', "$what: append has type and audio only")
            or last;
    }

    my @deltas = map { $_->{delta} }
                 oa_sent($events, $conn, 'response.output_audio.delta');
    my @rx = map { $_->{msg} } @{ $t->{received} };
    my (@media, $bad_pair);
    for my $i (0 .. $#rx) {
        next unless ($rx[$i]{event} // '') eq 'media';
        push @media, $rx[$i]{media}{payload};
        $bad_pair //= "media $i not followed by a mark"
            unless ($rx[$i + 1]{event} // '') eq 'mark';
    }
    is(scalar @media, scalar @deltas, "$what: as many media as deltas");
    ok(join("\n", @media) eq join("\n", @deltas),
       "$what: assistant audio verbatim and in order");
    ok(!$bad_pair, "$what: a mark after every media") or diag $bad_pair;
    my @marks = map { $_->{mark}{name} } tw_recv($t, 'mark');
    my %seen;
    ok(!grep({ $seen{$_}++ } @marks), "$what: mark names are unique");
    my @wrong = grep { ($_->{streamSid} // '') ne $t->{stream_sid} }
                tw_recv($t);
    ok(!@wrong, "$what: every message carries the streamSid");
    return $conn;
}

# A call whose OpenAI leg fails: Twilio is closed with $code.
sub check_twilio_closed {
    my ($t, $code, $what) = @_;
    is($t->{upgrade_status}, 101, "$what: upgraded");
    is($t->{close}{code}, $code, "$what: Twilio side closed with $code")
        or diag explain $t->{close};
    is($t->{close}{by}, 'server', "$what: by nginx");
}

# The standard start of a call.
sub hello { ({ send => 'connected' }, { send => 'start' }) }

run_tests();

__DATA__

=== TEST 1: a full call, byte-exact both ways, early audio queued
Audio sent before session.update (OpenAI answers the handshake with
session.created only after 300 ms here) is queued, then sent right after
session.update; then live audio and assistant deltas of every size
(1 byte to 40000 bytes) both ways.
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&ctl=1&created_delay_ms=300;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- perl_check
my $pos = fake_pos();
my $t = twilio_call(steps => [
    hello(),
    { send => 'media', count => 20 },                  # before session.update
    { sleep => 500 },
    { send => 'media', count => 30, interval_ms => 5 },
    { ctl => [{ deltas => { n => 1, bytes => 1 } },
              { deltas => { n => 1, bytes => 2 } },
              { deltas => { n => 3, bytes => 160 } },
              { deltas => { n => 2, bytes => 8000 } },
              { deltas => { n => 1, bytes => 40000 } }] },
    { wait => { event => 'mark' }, count => 8 },
    { send => 'media', count => 5, interval_ms => 20 },
    { send => 'stop' },
    { wait_close => 3000 },
]);
driver_ok($t, 'call');
my @ev = fake_wait($pos, sub { grep { $_->{ev} eq 'close' } @_ });
my $conn = check_byte_exact($t, \@ev, 'call');

my @msgs = oa_msgs(\@ev, $conn);
is($msgs[0]{type}, 'session.update', 'session.update is the first message');
my ($su) = grep { $_->{ev} eq 'message' && $_->{msg}{type} eq 'session.update' } @ev;
my @media = grep { ($_->{msg}{event} // '') eq 'media' } @{ $t->{sent} };
cmp_ok($su->{t}, '>=', $media[19]{t},
       'the first 20 media were sent before session.update went out');
is(scalar(oa_msgs_noctl(\@ev, $conn, 'input_audio_buffer.append')), 55,
   'none of them lost');
is($t->{close}{code}, 1000, 'Twilio stop: Twilio side closed with 1000');
my ($close) = oa_event(\@ev, 'close', $conn);
is($close->{code}, 1000, 'Twilio stop: OpenAI side closed with 1000');
--- error_log eval
[qr/\[info\] .*voice: session ready \d+ms after the upgrade/,
 qr/\[info\] .*voice: call ended, CallSid CA[0-9a-f]{32}, StreamSid MZ[0-9a-f]{32}, .*reason "Twilio stop"/]
--- no_error_log
[error]
[warn]



=== TEST 2: Twilio stop, Twilio closing, or Twilio's TCP connection dropping, closes the OpenAI leg with 1000
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&ctl=1;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- perl_check
my %end = (stop => [{ send => 'stop' }, { wait_close => 3000 }],
           close => [{ close => 1000, reason => 'bye' }, { wait_close => 3000 }],
           drop => [{ terminate => 1 }]);
for my $how ('stop', 'close', 'drop') {
    my $pos = fake_pos();
    my $t = twilio_call(steps => [
        hello(), { send => 'media', count => 3 },
        { ctl => [{ deltas => { n => 1, bytes => 160 } }] },
        { wait => { event => 'mark' } },
        @{ $end{$how} },
    ]);
    driver_ok($t, $how);
    my @ev = fake_wait($pos, sub { grep { $_->{ev} eq 'close' } @_ });
    my $conn = conn_of(\@ev, (tw_sent_audio($t))[0]);
    my ($close) = oa_event(\@ev, 'close', $conn);
    is($close->{code}, 1000, "Twilio $how: OpenAI closed with 1000");
    is($t->{close}{code}, $how eq 'drop' ? 1006 : 1000,
       "Twilio $how: the Twilio side's close");
    cmp_ok($close->{t} - $t->{close}{t}, '<', 1000, "Twilio $how: at once");
}
--- error_log eval
[qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/,
 qr/voice: call ended, CallSid CA\w+, .*reason "Twilio closed"/,
 qr/voice: call ended, CallSid CA\w+, .*reason "Twilio gone"/]
--- no_error_log
[error]
[warn]



=== TEST 3: OpenAI closing the session, or dropping TCP, closes Twilio with 1011
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&ctl=1;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- perl_check
for my $how ([close => { close => 1000, reason => 'session over' }],
             [close4000 => { close => 4000, reason => 'beta_api_shape_disabled' }],
             [drop => { terminate => 1 }]) {
    my ($name, $action) = @$how;
    my $t = twilio_call(steps => [
        hello(), { send => 'media', count => 2 },
        { ctl => [$action] },
        { wait_close => 3000 },
    ]);
    driver_ok($t, $name);
    check_twilio_closed($t, 1011, "OpenAI $name");
}
--- error_log eval
[qr/\[error\] .*voice: OpenAI closed the session with 1000/,
 qr/\[error\] .*voice: OpenAI closed the session with 4000/,
 qr/\[error\] .*voice: OpenAI connection closed/,
 qr/voice: call ended, CallSid CA\w+, .*reason "OpenAI closed"/,
 qr/voice: call ended, CallSid CA\w+, .*reason "OpenAI gone"/]
--- no_error_log
[warn]



=== TEST 4: OpenAI refuses the handshake with 401: Twilio closed with 1011
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&status=401;
    voice_openai_api_key sk-wrong-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- perl_check
my $pos = fake_pos();
my $t = twilio_call(steps => [hello(), { send => 'media', count => 2 },
                              { wait_close => 3000 }]);
driver_ok($t, '401', closed_ok => 1);
check_twilio_closed($t, 1011, '401');
my @ev = fake_events($pos);
is(scalar(oa_event(\@ev, 'connect')), 1, 'the fake saw the handshake');
is(scalar(oa_event(\@ev, 'message')), 0, 'and no message');
--- error_log eval
[qr/\[error\] .*voice: OpenAI refused the WebSocket handshake with status 401/,
 qr/voice: call ended, CallSid CA\w+, .*Twilio close 1011/]
--- no_error_log
[warn]



=== TEST 5: a server certificate from another CA: TLS verification fails, 1011
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_BAD_PORT/v1/realtime?model=gpt-realtime;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- perl_check
my $pos = fake_pos();
my $t = twilio_call(steps => [hello(), { wait_close => 3000 }]);
driver_ok($t, 'verify', closed_ok => 1);
check_twilio_closed($t, 1011, 'TLS verify failure');
my @ev = fake_events($pos);
is(scalar(oa_event(\@ev, 'connect')), 0,
   'no WebSocket handshake was sent to the untrusted server');
--- error_log eval
[qr/\[error\] .*voice: OpenAI SSL certificate verify error: \(21:unable to verify the first certificate\)/,
 qr/voice: call ended, CallSid CA\w+, .*Twilio close 1011/]
--- no_error_log
[warn]



=== TEST 6: voice_ssl_verify off: the same server is accepted, the call works
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_BAD_PORT/v1/realtime?model=gpt-realtime&ctl=1;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
    voice_ssl_verify off;
}
--- perl_check
my $pos = fake_pos();
my $t = twilio_call(steps => [
    hello(), { send => 'media', count => 5 },
    { ctl => [{ deltas => { n => 2, bytes => 800 } }] },
    { wait => { event => 'mark' }, count => 2 },
    { send => 'stop' }, { wait_close => 3000 }]);
driver_ok($t, 'verify off');
my @ev = fake_wait($pos, sub { grep { $_->{ev} eq 'close' } @_ });
ok(scalar(grep { $_->{fake} eq 'bad' } @ev), 'the other-CA server was used');
check_byte_exact($t, \@ev, 'verify off');
is($t->{close}{code}, 1000, 'closed normally');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 7: nothing listens on the OpenAI port: connect refused, 1011
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_CLOSED_PORT/v1/realtime?model=gpt-realtime;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- perl_check
my $t = twilio_call(steps => [hello(), { wait_close => 3000 }]);
driver_ok($t, 'refused', closed_ok => 1);
check_twilio_closed($t, 1011, 'connect refused');
--- error_log eval
[qr/\[error\] .*voice: connect\(\) to OpenAI at 127\.0\.0\.1:$ENV{TEST_NGINX_CLOSED_PORT}\S* failed \(111: Connection refused\)/,
 qr/voice: call ended, CallSid CA\w+, .*Twilio close 1011/]
--- no_error_log
[warn]



=== TEST 8: the OpenAI host name does not resolve: 1011
nginx's resolver at a port where nothing answers; resolver_timeout 1s.
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    resolver 127.0.0.1:1 ipv6=off;
    resolver_timeout 1s;
    voice_openai_url wss://openai.test:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- perl_check
my $pos = fake_pos();
my $t = twilio_call(steps => [hello(), { wait_close => 4000 }]);
driver_ok($t, 'dns', closed_ok => 1);
check_twilio_closed($t, 1011, 'DNS failure');
is(scalar(oa_event([fake_events($pos)], 'connect')), 0, 'no connection');
--- error_log eval
[qr/\[error\] .*voice: openai\.test could not be resolved/,
 qr/voice: call ended, CallSid CA\w+, .*Twilio close 1011/]
--- no_error_log
[warn]



=== TEST 9: the OpenAI handshake never completes: 1011 after voice_connect_timeout
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&hang=1;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
    voice_connect_timeout 1s;
}
--- perl_check
my $t = twilio_call(steps => [hello(), { send => 'media', count => 3 },
                              { wait_close => 4000 }]);
driver_ok($t, 'hang', closed_ok => 1);
check_twilio_closed($t, 1011, 'handshake timeout');
my ($start) = grep { $_->{msg}{event} eq 'start' } @{ $t->{sent} };
my $after = $t->{close}{t} - $start->{t};
ok($after > 800 && $after < 2500, "closed after about 1 s ($after ms)");
--- error_log eval
[qr/\[error\] .*voice: OpenAI connection not established within voice_connect_timeout/,
 qr/voice: call ended, CallSid CA\w+, .*Twilio close 1011/]
--- no_error_log
[warn]



=== TEST 10: start with another CallSid than the token's: 1008, nothing sent to OpenAI
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- perl_check
my $pos = fake_pos();
my $t = twilio_call(steps => [
    { send => 'connected' },
    { send => 'start', call_sid => 'CA' . ('0' x 32) },
    { send => 'media', count => 3 },
    { wait_close => 3000 }]);
driver_ok($t, 'mismatch', closed_ok => 1);
check_twilio_closed($t, 1008, 'CallSid mismatch');
my @ev = fake_wait($pos, sub { grep { $_->{ev} eq 'close' } @_ }, 1);
is(scalar(oa_event(\@ev, 'message')), 0,
   'OpenAI got no session.update and no audio');
# the OpenAI leg may still have been in its TLS handshake: then the fake
# saw no WebSocket at all; if it did, it saw it closed
is(scalar(oa_event(\@ev, 'close')), scalar(oa_event(\@ev, 'connect')),
   'the OpenAI leg, if open, was closed');
--- error_log eval
[qr/\[warn\] .*voice: Twilio start callSid does not match/,
 qr/voice: call ended, CallSid CA\w+, .*Twilio close 1008/]
--- no_error_log
[error]



=== TEST 11: start with another mediaFormat: 1008
encoding, sampleRate and channels, one call each.
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- perl_check
my $pos = fake_pos();
my @formats = (
    { encoding => 'audio/x-alaw', sampleRate => 8000, channels => 1 },
    { encoding => 'audio/x-mulaw', sampleRate => 16000, channels => 1 },
    { encoding => 'audio/x-mulaw', sampleRate => 8000, channels => 2 },
);
my @t = twilio_calls([map { { steps => [
    { send => 'connected' }, { send => 'start', media_format => $_ },
    { send => 'media', count => 2 }, { wait_close => 3000 }] } } @formats]);
for my $i (0 .. $#t) {
    driver_ok($t[$i], "format $i", closed_ok => 1);
    check_twilio_closed($t[$i], 1008, "mediaFormat $i");
}
my @ev = fake_wait($pos, sub { 3 == grep { $_->{ev} eq 'close' } @_ }, 1);
is(scalar(oa_event(\@ev, 'message')), 0, 'OpenAI got nothing');
--- error_log eval
[qr/voice: Twilio start has an unsupported mediaFormat/,
 qr/voice: call ended, CallSid CA\w+, .*Twilio close 1008/]
--- no_error_log
[error]



=== TEST 12: a bad or missing signature on the upgrade: 403, no OpenAI connection
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- perl_check
my $pos = fake_pos();
my @t = twilio_calls([
    { signature => 'AAAAAAAAAAAAAAAAAAAAAAAAAAA=', steps => [hello()] },
    { no_signature => 1, steps => [hello()] },
    { sign_host => 'evil.example.com', steps => [hello()] },
]);
is($_->{upgrade_status}, 403, 'refused with 403') for @t;
Time::HiRes::sleep(0.3);
is(scalar(oa_event([fake_events($pos)], 'connect')), 0,
   'the fake OpenAI saw no connection');
--- error_log eval
qr/\[warn\] .*signature/i
--- no_error_log eval
[qr/\[error\]/, qr/voice: call ended/]



=== TEST 13: a token used twice: the second upgrade gets 403, no second OpenAI connection
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&ctl=1;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- perl_check
my $pos = fake_pos();
my $t1 = twilio_call(steps => [hello(),
    { ctl => [{ deltas => { n => 1 } }] }, { wait => { event => 'mark' } },
    { send => 'stop' }, { wait_close => 3000 }]);
is($t1->{upgrade_status}, 101, 'first use: 101');
fake_wait($pos, sub { grep { $_->{ev} eq 'close' } @_ });
my $pos2 = fake_pos();
my $t2 = twilio_call(token => $t1->{token}, call_sid => $t1->{call_sid},
                     steps => [hello()]);
is($t2->{upgrade_status}, 403, 'second use: 403');
Time::HiRes::sleep(0.3);
is(scalar(oa_event([fake_events($pos)], 'connect')), 1,
   'the fake OpenAI saw one connection only');
--- error_log eval
[qr/\[warn\] .*token/i, qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/]
--- no_error_log
[error]



=== TEST 14: an expired token: 403, no OpenAI connection
--- http_config
voice_token_zone tokens:1m ttl=1s;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- perl_check
my $pos = fake_pos();
my $t = twilio_call(upgrade_delay_ms => 1600, steps => [hello()]);
is($t->{webhook_status}, 200, 'minted');
is($t->{upgrade_status}, 403, 'used after its ttl: 403');
Time::HiRes::sleep(0.3);
is(scalar(oa_event([fake_events($pos)], 'connect')), 0,
   'the fake OpenAI saw no connection');
--- error_log eval
qr/\[warn\] .*token/i
--- no_error_log eval
[qr/\[error\]/, qr/voice: call ended/]



=== TEST 15: $voice_call_sid, $voice_stream_sid, $voice_close_reason in an access log
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
log_format voice 'call=$voice_call_sid stream=$voice_stream_sid reason="$voice_close_reason" status=$status';
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    access_log logs/voice.log voice;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&ctl=1;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- perl_check
my @t = (
    twilio_call(steps => [hello(), { send => 'stop' }, { wait_close => 3000 }]),
    twilio_call(steps => [hello(), { ctl => [{ close => 1000 }] }, { wait_close => 3000 }]),
    twilio_call(steps => [{ send => 'connected' },
                          { send => 'start', call_sid => 'CA' . ('1' x 32) },
                          { wait_close => 3000 }]),
);
my $log = '';
for (1 .. 50) {
    $log = Test::Voice::read_from(servroot() . '/logs/voice.log', 0);
    my $n = () = $log =~ /\n/g;
    last if $n == 3;
    Time::HiRes::sleep(0.05);
}
my @lines = split /\n/, $log;
is(scalar @lines, 3, 'one access log line per call') or diag $log;
like($lines[0], qr/^call=\Q$t[0]{call_sid}\E stream=\Q$t[0]{stream_sid}\E reason="Twilio stop" status=101$/,
     'Twilio stop');
like($lines[1], qr/^call=\Q$t[1]{call_sid}\E stream=\Q$t[1]{stream_sid}\E reason="OpenAI closed" status=101$/,
     'OpenAI closed');
like($lines[2], qr/^call=\Q$t[2]{call_sid}\E stream=-? reason="callSid mismatch" status=101$/,
     'mismatch: the token\'s CallSid, no stream yet');
--- error_log eval
qr/voice: call ended/
--- no_error_log
[crit]



=== TEST 16: 50 concurrent calls on two workers, all byte-exact
--- workers: 2
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&ctl=1;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- timeout: 60
--- perl_check
my $pos = fake_pos();
my @t = twilio_calls([map { { timeout_ms => 20000, steps => [
    hello(),
    { send => 'media', count => 25, interval_ms => 20 },
    { ctl => [{ deltas => { n => 5, bytes => 800, interval_ms => 20 } }] },
    { send => 'media', count => 25, interval_ms => 20 },
    { wait => { event => 'mark' }, count => 5, timeout_ms => 20000 },
    { send => 'stop' },
    { wait_close => 10000 },
] } } 1 .. 50], timeout => 60);
my @ev = fake_wait($pos, sub { 50 <= grep { $_->{ev} eq 'close' } @_ }, 10);
my ($ok, %conns) = (0);
for my $i (0 .. $#t) {
    my $t = $t[$i];
    my @sent = tw_sent_audio($t);
    my $conn = conn_of(\@ev, $sent[0] // '');
    my @got = defined $conn ? map { $_->{audio} }
        oa_msgs_noctl(\@ev, $conn, 'input_audio_buffer.append') : ();
    my @deltas = defined $conn ? map { $_->{delta} }
        oa_sent(\@ev, $conn, 'response.output_audio.delta') : ();
    my @media = map { $_->{media}{payload} } tw_recv($t, 'media');
    my @e = tw_errors($t);
    my $good = !@e && defined $conn && !$conns{$conn}++
        && @sent == 50 && "@got" eq "@sent"
        && @deltas == 5 && "@media" eq "@deltas"
        && ($t->{close}{code} // 0) == 1000;
    $ok++ if $good;
    diag "call $i: errors @e; conn " . ($conn // 'none') . "; sent "
         . @sent . ", got " . @got . "; deltas " . @deltas . ", media "
         . @media . "; close " . ($t->{close}{code} // 'none')
        unless $good;
}
is($ok, 50, 'all 50 calls complete, audio byte-exact both ways');
my @pids = map { /\[info\] (\d+)#/ ? $1 : () } call_ended_lines(error_log_since_start());
is(scalar @pids, 50, '50 "call ended" lines');
my %pids = map { $_ => 1 } @pids;
note 'calls per worker: ' . join ', ', map { my $p = $_; "$p: " . grep { $_ == $p } @pids } keys %pids;
--- no_error_log
[error]
[warn]



=== TEST 17: at most 2 s of early audio is queued; the oldest is dropped and counted
OpenAI's session.created comes 2.5 s late; the caller sends 150 frames
(3 s) at once meanwhile.
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&ctl=1&created_delay_ms=2500;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- perl_check
my $pos = fake_pos();
my $t = twilio_call(steps => [hello(), { send => 'media', count => 150 },
    { ctl => [{ deltas => { n => 1 } }] },      # queued too, the newest
    { wait => { event => 'mark' }, timeout_ms => 8000 },
    { send => 'stop' }, { wait_close => 3000 }]);
driver_ok($t, 'queue');
my @sent = tw_sent_audio($t);
my @ev = fake_wait($pos, sub { grep { $_->{ev} eq 'close' } @_ });
my @got = map { $_->{audio} } oa_msgs_noctl(\@ev, undef, 'input_audio_buffer.append');
my $n = @got;
ok($n >= 90 && $n <= 100, "about 2 s of 20 ms frames kept ($n)");
ok("@got" eq "@sent[150 - $n .. 149]", 'the newest ones, in order');
my ($line) = grep { /caller audio frames dropped/ } split /\n/, error_log_since_start();
my $dropped = 150 - $n;
like($line // '', qr/voice: $dropped caller audio frames dropped/,
     'the number dropped is logged');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 18: keys in any order: OpenAI's delta before its response_id and item_id
JSON objects are unordered; the relay parses them as they stream, so a
value that comes before the keys telling what it is must be kept aside.
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&ctl=1;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- perl_check
# (Failed before 1240493: the call ended, OpenAI got 1007, Twilio 1011,
# "voice: OpenAI sent a message that is not one JSON object" was logged:
# the deferred copy had no scratch buffer.)
my $pos = fake_pos();
my $t = twilio_call(steps => [
    hello(),
    { ctl => [{ deltas => { n => 2, bytes => 160, order => 'delta_first' } },
              { deltas => { n => 1, bytes => 160 } }] },
    { wait => { event => 'mark' }, count => 3 },
    { send => 'stop' }, { wait_close => 3000 }]);
driver_ok($t, 'OpenAI key order');
my @ev = fake_wait($pos, sub { grep { $_->{ev} eq 'close' } @_ });
my @deltas = map { $_->{delta} } oa_sent(\@ev, undef, 'response.output_audio.delta');
my @media = map { $_->{media}{payload} } tw_recv($t, 'media');
is_deeply(\@media, \@deltas, 'OpenAI delta before its ids relayed in order');
is($t->{close}{code}, 1000, 'the call ends normally');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 19: keys in any order: Twilio's media payload before "event"
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&ctl=1;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- perl_check
# (Failed before 1240493 with 1007 "invalid JSON", "voice: Twilio sent a
# message that is not JSON": the same missing scratch buffer.)
my $pos = fake_pos();
my $payload = MIME::Base64::encode_base64(join('', map { chr int rand 256 } 1 .. 160), '');
my $t = twilio_call(steps => [
    hello(),
    { ctl => [{ deltas => { n => 1 } }] }, { wait => { event => 'mark' } },
    { send => 'media', count => 1 },
    { send => 'raw', text => qq({"media":{"payload":"$payload","track":"inbound","chunk":"2","timestamp":"20"},"event":"media","sequenceNumber":"3","streamSid":"\$STREAM_SID"}) },
    { send => 'media', count => 1 },
    { send => 'stop' }, { wait_close => 3000 }]);
driver_ok($t, 'Twilio key order');
my @ev = fake_wait($pos, sub { grep { $_->{ev} eq 'close' } @_ });
my @got = map { $_->{audio} } oa_msgs_noctl(\@ev, undef, 'input_audio_buffer.append');
my @sent = tw_sent_audio($t);
is_deeply(\@got, [$sent[0], $payload, $sent[1]],
          'Twilio payload before "event" relayed in order');
is($t->{close}{code}, 1000, 'the call ends normally');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]
Twilio sent a message that is not JSON



=== TEST 20: host name verification: voice_ssl_name must be in the certificate
The certificate has IP:127.0.0.1, DNS:localhost and DNS:openai.test.
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
    voice_ssl_name api.openai.com;
}
--- perl_check
my $pos = fake_pos();
my $t = twilio_call(steps => [hello(), { wait_close => 3000 }]);
driver_ok($t, 'wrong name', closed_ok => 1);
check_twilio_closed($t, 1011, 'a name the certificate does not have');
is(scalar(oa_event([fake_events($pos)], 'connect')), 0,
   'no WebSocket handshake was sent');
--- error_log eval
[qr/\[error\] .*voice: OpenAI SSL certificate does not match "api\.openai\.com"/,
 qr/voice: call ended, CallSid CA\w+, .*Twilio close 1011/]
--- no_error_log
[warn]



=== TEST 21: voice_ssl_name openai.test: SNI sent, name verified, the call works
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&ctl=1;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
    voice_ssl_name openai.test;
}
--- perl_check
my $pos = fake_pos();
my $t = twilio_call(steps => [hello(), { send => 'media', count => 3 },
    { ctl => [{ deltas => { n => 1 } }] }, { wait => { event => 'mark' } },
    { send => 'stop' }, { wait_close => 3000 }]);
driver_ok($t, 'ssl_name');
my @ev = fake_wait($pos, sub { grep { $_->{ev} eq 'close' } @_ });
my ($c) = oa_event(\@ev, 'connect');
is($c->{sni}, 'openai.test', 'SNI is voice_ssl_name');
is(scalar(oa_msgs_noctl(\@ev, undef, 'input_audio_buffer.append')), 3, 'audio relayed');
is($t->{close}{code}, 1000, 'closed normally');

# and with an IP literal and no voice_ssl_name, no SNI (RFC 6066)
$pos = fake_pos();
ok(nginx_reload(config => <<'CONF'), 'reloaded without voice_ssl_name');
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
CONF
$t = twilio_call(steps => [hello(), { send => 'stop' }, { wait_close => 3000 }]);
@ev = fake_wait($pos, sub { grep { $_->{ev} eq 'close' } @_ });
($c) = oa_event(\@ev, 'connect');
is($c->{sni}, undef, 'no SNI for an IP literal');
is($t->{close}{code}, 1000, 'IP SAN verified, closed normally');
--- master_on
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 22: a dropped event larger than voice_max_message_size, then audio
The relay stops parsing the big event and takes the next one with a fresh
parser: the delta that follows still reaches Twilio.
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&ctl=1;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- perl_check
my $t = twilio_call(steps => [
    { send => 'connected' }, { send => 'start' }, { send => 'media', count => 2 },
    { ctl => [{ big => 200000 },
              { sleep => 200 },
              { deltas => { n => 1, bytes => 160 } }] },
    { wait => { event => 'mark' } },
    { send => 'stop' }, { wait_close => 3000 },
]);
my @m = tw_recv($t, 'media');
is(scalar @m, 1, 'the delta after the dropped event reached Twilio');
is($t->{close}{code}, 1000, 'closed normally') or diag explain $t->{close};
--- no_error_log
[error]
