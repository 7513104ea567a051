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
#
# Every block runs with the call defaults of voice_setup() (see
# t/lib/Test/VoiceCall.pm): the token zone, the webhook location and the
# media stream location talking to the fake; stream_config and
# openai_query say what a block changes.  A block whose call is a script
# (--- twilio_script) states what each side must see (--- expect_*); the
# others drive their calls from perl_check.
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

# The fake's close came within a second of the Twilio side's (TESTs 2-4).
sub at_once {
    my ($ctx) = @_;
    my $close = fake_close_of($ctx->{ev}, $ctx->{conn}) // {};
    cmp_ok(($close->{t} // 1e15) - $ctx->{t}{close}{t}, '<', 1000,
           'the OpenAI leg is closed at once');
}

# No OpenAI connection was made for this block's call (upgrade refused).
sub no_connection {
    my ($ctx) = @_;
    Time::HiRes::sleep(0.3);
    is(scalar(oa_event([fake_events($ctx->{pos})], 'connect')), 0,
       'the fake OpenAI saw no connection');
}

run_tests();

__DATA__

=== TEST 1: a full call, byte-exact both ways, early audio queued
Audio sent before session.update (OpenAI answers the handshake with
session.created only after 300 ms here) is queued, then sent right after
session.update; then live audio and assistant deltas of every size
(1 byte to 40000 bytes) both ways.
--- openai_query: &created_delay_ms=300
--- twilio_script
hello
# before session.update
media 20
sleep 500
media 30 interval=5
ctl [{"deltas": {"n": 1, "bytes": 1}}, {"deltas": {"n": 1, "bytes": 2}}, {"deltas": {"n": 3, "bytes": 160}}, {"deltas": {"n": 2, "bytes": 8000}}, {"deltas": {"n": 1, "bytes": 40000}}]
wait mark 8
media 5 interval=20
stop
wait_close 3000
--- expect_twilio_close: 1000
--- expect_openai_close: 1000
--- perl_check
my ($t, $ev) = @{ $_[2] }{qw(t ev)};
my $conn = check_byte_exact($t, $ev, 'call');
my @msgs = oa_msgs($ev, $conn);
is($msgs[0]{type}, 'session.update', 'session.update is the first message');
my ($su) = grep { $_->{ev} eq 'message' && $_->{msg}{type} eq 'session.update' } @$ev;
my @media = grep { ($_->{msg}{event} // '') eq 'media' } @{ $t->{sent} };
cmp_ok($su->{t}, '>=', $media[19]{t},
       'the first 20 media were sent before session.update went out');
is(scalar(oa_msgs_noctl($ev, $conn, 'input_audio_buffer.append')), 55,
   'none of them lost');
--- error_log eval
[qr/\[info\] .*voice: session ready \d+ms after the upgrade/,
 qr/\[info\] .*voice: call ended, CallSid CA[0-9a-f]{32}, StreamSid MZ[0-9a-f]{32}, .*reason "Twilio stop"/]
--- no_error_log
[error]
[warn]



=== TEST 2: Twilio stop closes the OpenAI leg with 1000, at once
--- twilio_script
hello
media 3
ctl {"deltas": {"n": 1, "bytes": 160}}
wait mark
stop
wait_close 3000
--- expect_twilio_close: 1000
--- expect_openai_close: 1000
--- perl_check
at_once($_[2]);
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 3: Twilio closing the WebSocket closes the OpenAI leg with 1000, at once
--- twilio_script
hello
media 3
ctl {"deltas": {"n": 1, "bytes": 160}}
wait mark
close 1000 bye
wait_close 3000
--- expect_twilio_close: 1000
--- expect_openai_close: 1000
--- perl_check
at_once($_[2]);
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio closed"/
--- no_error_log
[error]
[warn]



=== TEST 4: Twilio's TCP connection dropping closes the OpenAI leg with 1000, at once
--- twilio_script
hello
media 3
ctl {"deltas": {"n": 1, "bytes": 160}}
wait mark
terminate
--- expect_twilio_close: 1006
--- expect_openai_close: 1000
--- perl_check
at_once($_[2]);
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio gone"/
--- no_error_log
[error]
[warn]



=== TEST 5: OpenAI closing the session with 1000 closes Twilio with 1011
--- twilio_script
hello
media 2
ctl {"close": 1000, "reason": "session over"}
wait_close 3000
--- expect_twilio_close: 1011 by server
--- error_log eval
[qr/\[error\] .*voice: OpenAI closed the session with 1000/,
 qr/voice: call ended, CallSid CA\w+, .*reason "OpenAI closed"/]
--- no_error_log
[warn]



=== TEST 6: OpenAI closing the session with 4000 closes Twilio with 1011
--- twilio_script
hello
media 2
ctl {"close": 4000, "reason": "beta_api_shape_disabled"}
wait_close 3000
--- expect_twilio_close: 1011 by server
--- error_log eval
[qr/\[error\] .*voice: OpenAI closed the session with 4000/,
 qr/voice: call ended, CallSid CA\w+, .*reason "OpenAI closed"/]
--- no_error_log
[warn]



=== TEST 7: OpenAI dropping TCP closes Twilio with 1011
--- twilio_script
hello
media 2
ctl {"terminate": true}
wait_close 3000
--- expect_twilio_close: 1011 by server
--- error_log eval
[qr/\[error\] .*voice: OpenAI connection closed/,
 qr/voice: call ended, CallSid CA\w+, .*reason "OpenAI gone"/]
--- no_error_log
[warn]



=== TEST 8: OpenAI refuses the handshake with 401: Twilio closed with 1011
--- openai_query: &status=401
--- stream_config
voice_openai_api_key sk-wrong-key;
--- twilio_call
closed_ok
--- twilio_script
hello
media 2
wait_close 3000
--- expect_twilio_close: 1011 by server
--- perl_check
my $ev = $_[2]{ev};
is(scalar(oa_event($ev, 'connect')), 1, 'the fake saw the handshake');
is(scalar(oa_event($ev, 'message')), 0, 'and no message');
--- error_log eval
[qr/\[error\] .*voice: OpenAI refused the WebSocket handshake with status 401/,
 qr/voice: call ended, CallSid CA\w+, .*Twilio close 1011/]
--- no_error_log
[warn]



=== TEST 9: a server certificate from another CA: TLS verification fails, 1011
--- stream_config
voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_BAD_PORT/v1/realtime?model=gpt-realtime;
--- twilio_call
closed_ok
--- twilio_script
hello
wait_close 3000
--- expect_twilio_close: 1011 by server
--- perl_check
is(scalar(oa_event($_[2]{ev}, 'connect')), 0,
   'no WebSocket handshake was sent to the untrusted server');
--- error_log eval
[qr/\[error\] .*voice: OpenAI SSL certificate verify error: \(21:unable to verify the first certificate\)/,
 qr/voice: call ended, CallSid CA\w+, .*Twilio close 1011/]
--- no_error_log
[warn]



=== TEST 10: voice_ssl_verify off: the same server is accepted, the call works
--- stream_config
voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_BAD_PORT/v1/realtime?model=gpt-realtime&ctl=1;
voice_ssl_verify off;
--- twilio_script
hello
media 5
ctl {"deltas": {"n": 2, "bytes": 800}}
wait mark 2
stop
wait_close 3000
--- expect_twilio_close: 1000
--- perl_check
my ($t, $ev) = @{ $_[2] }{qw(t ev)};
ok(scalar(grep { $_->{fake} eq 'bad' } @$ev), 'the other-CA server was used');
check_byte_exact($t, $ev, 'verify off');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 11: nothing listens on the OpenAI port: connect refused, 1011
--- stream_config
voice_openai_url wss://127.0.0.1:$TEST_NGINX_CLOSED_PORT/v1/realtime?model=gpt-realtime;
--- twilio_call
closed_ok
--- twilio_script
hello
wait_close 3000
--- expect_twilio_close: 1011 by server
--- error_log eval
[qr/\[error\] .*voice: connect\(\) to OpenAI at 127\.0\.0\.1:$ENV{TEST_NGINX_CLOSED_PORT}\S* failed \(111: Connection refused\)/,
 qr/voice: call ended, CallSid CA\w+, .*Twilio close 1011/]
--- no_error_log
[warn]



=== TEST 12: the OpenAI host name does not resolve: 1011
nginx's resolver at a port where nothing answers; resolver_timeout 1s.
--- stream_config
resolver 127.0.0.1:1 ipv6=off;
resolver_timeout 1s;
voice_openai_url wss://openai.test:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime;
--- twilio_call
closed_ok
--- twilio_script
hello
wait_close 4000
--- expect_twilio_close: 1011 by server
--- perl_check
is(scalar(oa_event($_[2]{ev}, 'connect')), 0, 'no connection');
--- error_log eval
[qr/\[error\] .*voice: openai\.test could not be resolved/,
 qr/voice: call ended, CallSid CA\w+, .*Twilio close 1011/]
--- no_error_log
[warn]



=== TEST 13: the OpenAI handshake never completes: 1011 after voice_connect_timeout
--- openai_query: &hang=1
--- stream_config
voice_connect_timeout 1s;
--- twilio_call
closed_ok
--- twilio_script
hello
media 3
wait_close 4000
--- expect_twilio_close: 1011 by server
--- perl_check
my $t = $_[2]{t};
my ($start) = grep { $_->{msg}{event} eq 'start' } @{ $t->{sent} };
my $after = $t->{close}{t} - $start->{t};
ok($after > 800 && $after < 2500, "closed after about 1 s ($after ms)");
--- error_log eval
[qr/\[error\] .*voice: OpenAI connection not established within voice_connect_timeout/,
 qr/voice: call ended, CallSid CA\w+, .*Twilio close 1011/]
--- no_error_log
[warn]



=== TEST 14: start with another CallSid than the token's: 1008, nothing sent to OpenAI
--- twilio_call
closed_ok
--- twilio_script
connected
start call_sid=CA00000000000000000000000000000000
media 3
wait_close 3000
--- expect_twilio_close: 1008 by server
--- perl_check
my $ev = $_[2]{ev};
is(scalar(oa_event($ev, 'message')), 0,
   'OpenAI got no session.update and no audio');
# the OpenAI leg may still have been in its TLS handshake: then the fake
# saw no WebSocket at all; if it did, it saw it closed
is(scalar(oa_event($ev, 'close')), scalar(oa_event($ev, 'connect')),
   'the OpenAI leg, if open, was closed');
--- error_log eval
[qr/\[warn\] .*voice: Twilio start callSid does not match/,
 qr/voice: call ended, CallSid CA\w+, .*Twilio close 1008/]
--- no_error_log
[error]



=== TEST 15: start with another mediaFormat encoding (audio/x-alaw): 1008
--- twilio_call
closed_ok
--- twilio_script
connected
start media_format={"encoding":"audio/x-alaw","sampleRate":8000,"channels":1}
media 2
wait_close 3000
--- expect_twilio_close: 1008 by server
--- perl_check
is(scalar(oa_event($_[2]{ev}, 'message')), 0, 'OpenAI got nothing');
--- error_log eval
[qr/voice: Twilio start has an unsupported mediaFormat/,
 qr/voice: call ended, CallSid CA\w+, .*Twilio close 1008/]
--- no_error_log
[error]



=== TEST 16: start with another mediaFormat sampleRate (16000): 1008
--- twilio_call
closed_ok
--- twilio_script
connected
start media_format={"encoding":"audio/x-mulaw","sampleRate":16000,"channels":1}
media 2
wait_close 3000
--- expect_twilio_close: 1008 by server
--- perl_check
is(scalar(oa_event($_[2]{ev}, 'message')), 0, 'OpenAI got nothing');
--- error_log eval
[qr/voice: Twilio start has an unsupported mediaFormat/,
 qr/voice: call ended, CallSid CA\w+, .*Twilio close 1008/]
--- no_error_log
[error]



=== TEST 17: start with another mediaFormat channels (2): 1008
--- twilio_call
closed_ok
--- twilio_script
connected
start media_format={"encoding":"audio/x-mulaw","sampleRate":8000,"channels":2}
media 2
wait_close 3000
--- expect_twilio_close: 1008 by server
--- perl_check
is(scalar(oa_event($_[2]{ev}, 'message')), 0, 'OpenAI got nothing');
--- error_log eval
[qr/voice: Twilio start has an unsupported mediaFormat/,
 qr/voice: call ended, CallSid CA\w+, .*Twilio close 1008/]
--- no_error_log
[error]



=== TEST 18: a bad signature on the upgrade: 403, no OpenAI connection
--- twilio_call
signature: AAAAAAAAAAAAAAAAAAAAAAAAAAA=
--- twilio_script
hello
--- expect_upgrade: 403
--- perl_check
no_connection($_[2]);
--- error_log eval
qr/\[warn\] .*signature/i
--- no_error_log eval
[qr/\[error\]/, qr/voice: call ended/]



=== TEST 19: no signature on the upgrade: 403, no OpenAI connection
--- twilio_call
no_signature
--- twilio_script
hello
--- expect_upgrade: 403
--- perl_check
no_connection($_[2]);
--- error_log eval
qr/\[warn\] .*signature/i
--- no_error_log eval
[qr/\[error\]/, qr/voice: call ended/]



=== TEST 20: an upgrade signed for another host: 403, no OpenAI connection
--- twilio_call
sign_host: evil.example.com
--- twilio_script
hello
--- expect_upgrade: 403
--- perl_check
no_connection($_[2]);
--- error_log eval
qr/\[warn\] .*signature/i
--- no_error_log eval
[qr/\[error\]/, qr/voice: call ended/]



=== TEST 21: a token used twice: the second upgrade gets 403, no second OpenAI connection
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



=== TEST 22: an expired token: 403, no OpenAI connection
--- http_config
voice_token_zone tokens:1m ttl=1s;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- twilio_call
upgrade_delay_ms: 1600
--- twilio_script
hello
--- expect_upgrade: 403
--- perl_check
is($_[2]{t}{webhook_status}, 200, 'minted');
no_connection($_[2]);
--- error_log eval
qr/\[warn\] .*token/i
--- no_error_log eval
[qr/\[error\]/, qr/voice: call ended/]



=== TEST 23: $voice_call_sid, $voice_stream_sid, $voice_close_reason in an access log
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
log_format voice 'call=$voice_call_sid stream=$voice_stream_sid reason="$voice_close_reason" status=$status';
--- stream_config
access_log logs/voice.log voice;
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



=== TEST 24: 50 concurrent calls on two workers, all byte-exact
--- workers: 2
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



=== TEST 25: at most 2 s of early audio is queued; the oldest is dropped and counted
OpenAI's session.created comes 2.5 s late; the caller sends 150 frames
(3 s) at once meanwhile.
--- openai_query: &created_delay_ms=2500
--- twilio_script
hello
media 150
# queued too, the newest
ctl {"deltas": {"n": 1}}
wait mark timeout=8000
stop
wait_close 3000
--- perl_check
my ($t, $ev) = @{ $_[2] }{qw(t ev)};
my @sent = tw_sent_audio($t);
my @got = map { $_->{audio} } oa_msgs_noctl($ev, undef, 'input_audio_buffer.append');
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



=== TEST 26: keys in any order: OpenAI's delta before its response_id and item_id
JSON objects are unordered; the relay parses them as they stream, so a
value that comes before the keys telling what it is must be kept aside.
(Failed before 1240493: the call ended, OpenAI got 1007, Twilio 1011,
"voice: OpenAI sent a message that is not one JSON object" was logged:
the deferred copy had no scratch buffer.)
--- twilio_script
hello
ctl [{"deltas": {"n": 2, "bytes": 160, "order": "delta_first"}}, {"deltas": {"n": 1, "bytes": 160}}]
wait mark 3
stop
wait_close 3000
--- expect_twilio_close: 1000
--- perl_check
my ($t, $ev) = @{ $_[2] }{qw(t ev)};
my @deltas = map { $_->{delta} } oa_sent($ev, undef, 'response.output_audio.delta');
my @media = map { $_->{media}{payload} } tw_recv($t, 'media');
is_deeply(\@media, \@deltas, 'OpenAI delta before its ids relayed in order');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 27: keys in any order: Twilio's media payload before "event"
(Failed before 1240493 with 1007 "invalid JSON", "voice: Twilio sent a
message that is not JSON": the same missing scratch buffer.)
--- twilio_script
hello
ctl {"deltas": {"n": 1}}
wait mark
media
raw {"media":{"payload":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn+AgYKDhIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2enw==","track":"inbound","chunk":"2","timestamp":"20"},"event":"media","sequenceNumber":"3","streamSid":"$STREAM_SID"}
media
stop
wait_close 3000
--- expect_twilio_close: 1000
--- perl_check
my ($t, $ev) = @{ $_[2] }{qw(t ev)};
my @got = map { $_->{audio} } oa_msgs_noctl($ev, undef, 'input_audio_buffer.append');
my @sent = tw_sent_audio($t);
is_deeply(\@got, [$sent[0], 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn+AgYKDhIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2enw==', $sent[1]],
          'Twilio payload before "event" relayed in order');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]
Twilio sent a message that is not JSON



=== TEST 28: host name verification: voice_ssl_name must be in the certificate
The certificate has IP:127.0.0.1, DNS:localhost and DNS:openai.test.
--- stream_config
voice_ssl_name api.openai.com;
--- twilio_call
closed_ok
--- twilio_script
hello
wait_close 3000
--- expect_twilio_close: 1011 by server
--- perl_check
is(scalar(oa_event($_[2]{ev}, 'connect')), 0, 'no WebSocket handshake was sent');
--- error_log eval
[qr/\[error\] .*voice: OpenAI SSL certificate does not match "api\.openai\.com"/,
 qr/voice: call ended, CallSid CA\w+, .*Twilio close 1011/]
--- no_error_log
[warn]



=== TEST 29: voice_ssl_name openai.test: SNI sent, name verified, the call works
And with an IP literal and no voice_ssl_name, no SNI (RFC 6066).
--- master_on
--- stream_config
voice_ssl_name openai.test;
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
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 30: a dropped event larger than voice_max_message_size, then audio
The relay stops parsing the big event and takes the next one with a fresh
parser: the delta that follows still reaches Twilio.
--- twilio_script
hello
media 2
ctl [{"big": 200000}, {"sleep": 200}, {"deltas": {"n": 1, "bytes": 160}}]
wait mark
stop
wait_close 3000
--- expect_twilio_close: 1000
--- expect_twilio
media: 1
--- no_error_log
[error]



=== TEST 31: an ECDSA (P-256) server certificate from the test CA: the call works
--- stream_config
voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_EC_PORT/v1/realtime?model=gpt-realtime&ctl=1;
--- twilio_script
hello
media 5
ctl {"deltas": {"n": 2, "bytes": 800}}
wait mark 2
stop
wait_close 3000
--- expect_twilio_close: 1000
--- expect_openai_close: 1000
--- perl_check
my ($t, $ev) = @{ $_[2] }{qw(t ev)};
ok(scalar(grep { $_->{fake} eq 'ec' } @$ev), 'the ECDSA server was used');
check_byte_exact($t, $ev, 'ECDSA');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 32: wrong call expectations fail, each naming what was wrong (a generated .t)
--- timeout: 60
--- perl_check
# Lines of the generated file start with "@" here so that this file's own
# parser does not take them for blocks or sections.
my $t = <<'T';
@use Test::Voice;
@use Test::VoiceCall;
@voice_setup();
@run_tests();
@__DATA__
@=== TEST 1: wrong expectations of a call
@--- twilio_script
@setup
@stop
@wait_close 3000
@--- expect_twilio_close: 1011 by client
@--- expect_openai_close: 1006
@--- expect_twilio
@media: 3
@--- expect_openai
@session.update
@response.create
@=== TEST 2: a refused upgrade taken for a good one
@--- twilio_call
@no_signature
@--- twilio_script
@hello
@--- expect_upgrade: 101
@=== TEST 3: a script step that fails
@--- twilio_script
@hello
@wait mark timeout=300
@=== TEST 4: a step that does not exist
@--- twilio_script
@hullo
@=== TEST 5: this one passes
@--- twilio_script
@setup
@stop
@wait_close 3000
@--- expect_twilio_close: 1000 by server
@--- expect_openai_close: 1000
@--- expect_twilio
@messages: 0
@--- expect_openai
@session.update
T
$t =~ s/^@//mg;
my $dir = servroot() . '/meta';
mkdir $dir;
open my $fh, '>', "$dir/meta.pl" or die $!;    # not *.t: prove -r t/ runs those
print $fh $t;
close $fh;
local $ENV{TEST_NGINX_SERVROOT} = "$dir/servroot";
local $ENV{TEST_NGINX_PORT};
delete $ENV{TEST_NGINX_PORT};
my $out = `$^X -I$FindBin::Bin/lib $dir/meta.pl 2>&1`;
isnt($?, 0, 'the generated test file fails');
for my $re (qr/not ok \d+ - TEST 1: .* - the Twilio side got close 1011/,
            qr/not ok \d+ - TEST 1: .* - closed by the client/,
            qr/not ok \d+ - TEST 1: .* - the Twilio side got 3 media/,
            qr/not ok \d+ - TEST 1: .* - what OpenAI got/,
            qr/not ok \d+ - TEST 1: .* - the OpenAI side got close 1006/,
            qr/not ok \d+ - TEST 2: .* - upgrade answered 101/,
            qr/not ok \d+ - TEST 3: .* - the Twilio side ran its script/,
            qr/got 0 of 1 matching messages/,
            qr/not ok \d+ - TEST 4: .* - block runner died/,
            qr/twilio_script: unknown step: 'hullo'/,
            qr/\nok \d+ - TEST 5: .* - what OpenAI got/) {
    like($out, $re, "reported: $re");
}
my $not_ok = () = $out =~ /^not ok/mg;
is($not_ok, 8, 'exactly the wrong expectations fail') or diag $out;
