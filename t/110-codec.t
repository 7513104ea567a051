# The RFC 6455 codec on the Twilio side of a call (nginx is the WebSocket
# server): every protocol error ends the call with the right close code in
# the close frame sent to the Twilio client, an [info] line naming the
# error, the call's end line, and OpenAI closed with 1000; valid but unusual
# framing (fragments, interleaved pings, split UTF-8, bytes pipelined
# behind the handshake, one byte per TCP write) is relayed intact.
#
# The Twilio client is Perl's Protocol::WebSocket (masked frames, and
# hand-made bytes where a frame must be malformed), never the module's own
# codec; OpenAI is t/lib/fake-openai.js over real TLS with a test CA (see
# t/lib/Test/VoiceCall.pm).
#
# Blocks whose description starts with "# BUG:" show a defect of the module
# and fail until it is fixed; all other blocks pass.
use Test::Voice;
use Test::VoiceCall;
use MIME::Base64 ();

fake_openai_start();

# --- helpers (package main, for the perl_check sections) --------------------

sub http_conf {
    return "voice_token_zone tokens:1m;\n"
         . "voice_public_url https://voice.example.com;\n"
         . "voice_twilio_auth_token 12345;\n";
}

# stream_conf(max => voice_max_message_size, buffer => voice_buffer_size)
sub stream_conf {
    my (%o) = @_;
    return <<"EOF";
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:\$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime;
    voice_openai_api_key sk-test;
    voice_ssl_trusted_certificate \$TEST_NGINX_OPENAI_CA;
    voice_start_timeout 2s;
    voice_idle_timeout 3s;
    voice_max_message_size @{[ $o{max} // '4k' ]};
    voice_buffer_size @{[ $o{buffer} // '64k' ]};
}
EOF
}

sub b64 { MIME::Base64::encode_base64($_[0], '') }

# μ-law-ish audio of n bytes, base64 (every byte value, so nothing is lost
# to a transcoder unnoticed).
sub audio { b64(join '', map { chr(($_ * 7 + $_[1]) % 256) } 0 .. $_[0] - 1) }

# The input_audio_buffer.append audio the fake got on $conn, in order.
sub appended {
    my ($conn) = @_;
    return map { $_->{msg}{audio} }
           grep { $_->{ev} eq 'message'
                  and ($_->{msg}{type} // '') eq 'input_audio_buffer.append' }
           fake_conn_events($conn);
}

sub wait_appended {
    my ($conn, $n, $secs) = @_;
    fake_wait(sub { appended($conn) >= $n }, $secs // 5);
    return [appended($conn)];
}

# Ends a healthy call with stop; checks the normal close on both legs.
sub stop_ok {
    my ($call) = @_;
    my $ws = $call->{ws};
    $ws->send_text(stop_json($call->{call_sid}));
    my ($code) = $ws->recv_close(5);
    is($code, 1000, 'stop: Twilio gets close 1000');
    $ws->close(1000);
    ok($ws->wait_eof(5), 'stop: nginx closes the connection');
    like(wait_call_end($call) // '', qr/reason "Twilio stop"/, 'stop: call end line');
    my $c = fake_close_of(call_conn($call), 5);
    is($c && $c->{code}, 1000, 'stop: OpenAI gets close 1000');
}

# Bad-frame cases, [name, close code, log pattern, sub { send($ws) }]:
# one call per case, all set up first (connected + start, session.update
# seen at the fake), then each gets its bad bytes, then each is checked: a
# close frame with the code (answered by the client), the TCP connection
# closed, an [info] line matching the pattern, the call's end line with
# the code, and OpenAI closed with 1000.  The calls run side by side so
# that their close timers overlap.
sub bad_frames {
    my @cases = @_;
    my @calls;
    for my $case (@cases) {
        my $call = open_call();
        ok(start_call($call, wait => 1), "$case->[0]: call set up") or return;
        push @calls, $call;
    }
    $cases[$_][3]->($calls[$_]{ws}) for 0 .. $#cases;
    for my $i (0 .. $#cases) {
        my ($name, $code, $log_re) = @{$cases[$i]};
        my $call = $calls[$i];
        my $ws = $call->{ws};
        subtest $name => sub {
            my ($got) = $ws->recv_close(5);
            is($got, $code, "Twilio gets close $code");
            ok(!grep({ $_->{opcode} != 9 } @{$ws->{skipped} // []}),
               'nothing but pings before the close')
                or diag explain $ws->{skipped};
            $ws->close($got) if defined $got;
            ok($ws->wait_eof(5), 'nginx closes the TCP connection');
            my $end = wait_call_end($call);
            ok($end, 'call end line') or diag call_log($call);
            like($end // '', qr/Twilio close $code\//, 'end line has the close code');
            like(call_log($call), qr/\[info\] [^\n]*$log_re/, "[info] $log_re")
                or diag call_log($call);
            my $c = fake_close_of(call_conn($call), 5);
            is($c && $c->{code}, 1000, 'OpenAI gets close 1000');
        };
    }
}

run_tests();

__DATA__

=== TEST 1: frame header errors -> 1002
Unmasked, reserved bits, unknown opcodes, a length with its top bit set.
--- http_config eval: http_conf()
--- config eval: stream_conf()
--- perl_check
my $media = media_json(audio(160, 1));
bad_frames(
    ['unmasked text frame', 1002, 'unmasked frame from the client',
     sub { $_[0]->send_frame(type => 'text', payload => $media, masked => 0) }],
    ['RSV1 set', 1002, 'reserved bits set',
     sub { $_[0]->send_frame(type => 'text', payload => $media, rsv => [1, 0, 0]) }],
    ['RSV3 set', 1002, 'reserved bits set',
     sub { $_[0]->send_frame(type => 'text', payload => $media, rsv => [0, 0, 1]) }],
    ['opcode 3 (reserved data opcode)', 1002, 'unknown opcode',
     sub { $_[0]->send_frame(opcode => 3, payload => $media) }],
    ['opcode 0xB (reserved control opcode)', 1002, 'unknown opcode',
     sub { $_[0]->send_frame(opcode => 0xB, payload => 'x') }],
    # 0x81 0xFF: FIN + text, masked, 64-bit length 0x8000000000000005.
    ['64-bit length with the top bit set', 1002, 'top bit set',
     sub { $_[0]->send_raw("\x81\xff\x80" . "\0" x 6 . "\x05" . 'ABCD' . 'hello') }],
);
--- no_error_log
[error]
[warn]



=== TEST 2: control frame and fragmentation errors -> 1002
--- http_config eval: http_conf()
--- config eval: stream_conf()
--- perl_check
my $media = media_json(audio(160, 2));
bad_frames(
    ['fragmented ping (fin=0)', 1002, 'fragmented control frame',
     sub { $_[0]->send_frame(type => 'ping', payload => 'p', fin => 0) }],
    ['ping of 126 bytes', 1002, 'control frame longer than 125 bytes',
     sub { $_[0]->send_frame(type => 'ping', payload => 'x' x 126) }],
    ['pong of 200 bytes', 1002, 'control frame longer than 125 bytes',
     sub { $_[0]->send_frame(type => 'pong', payload => 'x' x 200) }],
    ['continuation without a message', 1002, 'continuation frame without a message',
     sub { $_[0]->send_frame(type => 'continuation', payload => $media) }],
    ['text frame inside a fragmented message', 1002,
     'new message inside a fragmented one', sub {
         $_[0]->send_frame(type => 'text', payload => substr($media, 0, 20), fin => 0);
         $_[0]->send_frame(type => 'text', payload => $media);
     }],
    ['binary frame inside a fragmented text message', 1002,
     'new message inside a fragmented one', sub {
         $_[0]->send_frame(type => 'text', payload => substr($media, 0, 20), fin => 0);
         $_[0]->send_frame(type => 'binary', payload => 'x');
     }],
);
--- no_error_log
[error]
[warn]



=== TEST 3: close frame errors -> 1002 (and 1007 for a reason that is not UTF-8)
--- http_config eval: http_conf()
--- config eval: stream_conf()
--- perl_check
bad_frames(
    ['close with a one-byte payload', 1002, 'close frame with a one-byte payload',
     sub { $_[0]->send_frame(type => 'close', payload => "\x03") }],
    (map { my $code = $_;
           ["close with code $code", 1002, 'invalid close code',
            sub { $_[0]->send_frame(type => 'close', payload => pack('n', $code)) }] }
     1005, 1006, 999, 1004, 2000),
    ['close reason that is not UTF-8', 1007, 'invalid UTF-8 in a close reason',
     sub { $_[0]->send_frame(type => 'close', payload => pack('n', 1000) . "\xc3\x28") }],
);
--- no_error_log
[error]
[warn]



=== TEST 4: message content errors: UTF-8 and JSON -> 1007, binary -> 1003
--- http_config eval: http_conf()
--- config eval: stream_conf()
--- perl_check
my %bad_utf8 = ('C3 28 (bad continuation)' => "\xc3\x28",
                'C0 AF (overlong)'          => "\xc0\xaf",
                'ED A0 80 (surrogate)'      => "\xed\xa0\x80",
                'F4 90 80 80 (> U+10FFFF)'  => "\xf4\x90\x80\x80",
                'FF'                        => "\xff");
my $mark = sub { '{"event":"mark","streamSid":"MZ1","mark":{"name":"' . $_[0] . '"}}' };
bad_frames(
    (map { my $json = $mark->($bad_utf8{$_});
           ["invalid UTF-8: $_", 1007, 'invalid UTF-8 in a text message',
            sub { $_[0]->send_text($json) }] } sort keys %bad_utf8),
    ['UTF-8 cut short at the end of the message', 1007,
     'truncated UTF-8 in a text message', sub {
         $_[0]->send_frame(type => 'text', payload => '{"event":"x","a":"', fin => 0);
         $_[0]->send_frame(type => 'continuation', payload => "\xe2\x82");
     }],
    ['invalid UTF-8 in the second fragment', 1007, 'invalid UTF-8 in a text message',
     sub {
         $_[0]->send_frame(type => 'text', payload => '{"event":"x","a":"', fin => 0);
         $_[0]->send_frame(type => 'continuation', payload => "\xed\xa0\x80\"}");
     }],
    ['text that is not JSON', 1007, 'not JSON',
     sub { $_[0]->send_text('hello, this is not JSON') }],
    ['a JSON array, not an object', 1007, 'not JSON',
     sub { $_[0]->send_text('[1,2,3]') }],
    ['two JSON objects in one message', 1007, 'not one JSON object',
     sub { $_[0]->send_text('{"event":"mark"}{"event":"mark"}') }],
    ['binary message', 1003, 'Twilio sent a binary message',
     sub { $_[0]->send_binary("\xff" x 160) }],
);
--- no_error_log
[error]
[warn]



=== TEST 5: messages over voice_max_message_size (4k) -> 1009
One frame, many small fragments adding up to more than 4k, a frame that
announces 2^40 bytes; a message of exactly 4096 bytes still goes through, 4097 bytes do not.
--- http_config eval: http_conf()
--- config eval: stream_conf()
--- perl_check
my $big = media_json(audio(4000, 3));     # ~5.4k of JSON
cmp_ok(length $big, '>', 4096, 'the message is over 4k');
bad_frames(
    ['one frame over 4k', 1009, 'larger than voice_max_message_size',
     sub { $_[0]->send_text($big) }],
    ['fragments adding up to over 4k', 1009, 'larger than voice_max_message_size',
     sub {
         my @parts = unpack '(a500)*', $big;
         $_[0]->send_frame(type => 'text', payload => shift @parts, fin => 0);
         $_[0]->send_frame(type => 'continuation', payload => $_, fin => 0)
             for @parts[0 .. $#parts - 1];
         $_[0]->send_frame(type => 'continuation', payload => $parts[-1]);
     }],
    # A frame that announces 2^40 bytes (64-bit length, mask of zeros) and
    # sends the first 5000 of them.
    ['a frame announcing 2^40 bytes', 1009, 'larger than voice_max_message_size',
     sub { $_[0]->send_raw("\x81\xff" . pack('Q>', 2**40) . "\0\0\0\0"
                           . substr($big, 0, 5000)) }],
);
# Exactly 4096 bytes, in one frame and in fragments, still go through.
my $call = open_call();
ok(start_call($call, wait => 1), 'call set up');
my $pad = 'A' x (4096 - length media_json(''));
my $exact = media_json($pad);
is(length $exact, 4096, 'a message of exactly 4096 bytes');
$call->{ws}->send_text($exact);
$call->{ws}->send_frame(type => 'text', payload => substr($exact, 0, 3000), fin => 0);
$call->{ws}->send_frame(type => 'continuation', payload => substr($exact, 3000));
is_deeply(wait_appended(call_conn($call), 2), [$pad, $pad],
          'a message of exactly the limit is relayed (whole and fragmented)');
stop_ok($call);
# One byte more is too big.
bad_frames(['4097 bytes', 1009, 'larger than voice_max_message_size',
            sub { $_[0]->send_text(media_json($pad . 'A')) }]);
--- no_error_log
[error]
[warn]



=== TEST 6: the close handshake started by the Twilio client
1000 is echoed, no payload is answered with 1000, a reason is fine, a close
between the fragments of a message is a close, nothing after it is
parsed; OpenAI gets close 1000 each time.
--- http_config eval: http_conf()
--- config eval: stream_conf()
--- perl_check
for my $case ([pack('n', 1000), 1000, 'close 1000'],
              ['', 1000, 'close without a payload'],
              [pack('n', 1001) . 'going away', 1001, 'close 1001 with a reason'],
              [pack('n', 4000) . "h\xc3\xa9", 4000, 'close 4000, UTF-8 reason'],
              [pack('n', 1000), 1000, 'close inside a fragmented message', 'fragment'],
              [pack('n', 1000), 1000, 'data after the close is ignored', 'after']) {
    my ($payload, $echo, $name, $extra) = @$case;
    subtest $name => sub {
        my $call = open_call();
        ok(start_call($call, wait => 1), 'call set up');
        my $ws = $call->{ws};
        $ws->send_frame(type => 'text', payload => '{"event":"me', fin => 0)
            if ($extra // '') eq 'fragment';
        $ws->send_frame(type => 'close', payload => $payload);
        $ws->send_raw(ws_frame(type => 'text', payload => 'not JSON') . "\x00garbage")
            if ($extra // '') eq 'after';
        my ($code) = $ws->recv_close(5);
        is($code, $echo, "nginx answers the close with $echo");
        ok($ws->wait_eof(5), 'then closes the TCP connection');
        my $end = wait_call_end($call);
        like($end // '', qr/reason "Twilio closed"/, 'call end line');
        my $c = fake_close_of(call_conn($call), 5);
        is($c && $c->{code}, 1000, 'OpenAI gets close 1000');
    };
}
--- error_log
voice: Twilio closed the WebSocket with 1000
voice: Twilio closed the WebSocket with 4000 "hé"
--- no_error_log
[error]
[warn]
bad WebSocket frame
not JSON



=== TEST 7: a message in many fragments with pings in between
The media payload reaches OpenAI verbatim; each ping is answered by a pong
with the same payload (up to 125 bytes); empty fragments are fine; an
unsolicited pong is ignored.
--- http_config eval: http_conf()
--- config eval: stream_conf()
--- perl_check
my $call = open_call();
ok(start_call($call, wait => 1), 'call set up');
my $ws = $call->{ws};
my $audio = audio(2400, 5);
my $msg = media_json($audio);
my @parts;
my $rest = $msg;
my $i = 0;
while (length $rest) {      # 1, 2, 3, ... 17, 1, 2, ... bytes per fragment
    push @parts, substr($rest, 0, 1 + $i++ % 17, '');
}
push @parts, '';            # and an empty final fragment
for my $n (0 .. $#parts) {
    $ws->send_frame(type => $n ? 'continuation' : 'text', payload => $parts[$n],
                    fin => $n == $#parts ? 1 : 0);
    $ws->send_ping("p$n") if $n % 10 == 0;
    $ws->send_frame(type => 'continuation', payload => '', fin => 0)
        if $n == 5;         # an empty fragment in the middle
}
# The largest ping allowed (125 bytes, every byte value), and an
# unsolicited pong, which is ignored.
my $big_ping = join '', map { chr(($_ * 37) % 256) } 0 .. 124;
$ws->send_ping($big_ping);
$ws->send_frame(type => 'pong', payload => 'unsolicited');
my @pongs;
while (my $f = $ws->recv_frame(1)) {
    push @pongs, $f->{payload} if $f->{opcode} == 10;
    last if @pongs == int($#parts / 10) + 2;
}
my $big = pop @pongs;
is_deeply(\@pongs, [map { "p$_" } grep { $_ % 10 == 0 } 0 .. $#parts],
          scalar(@parts) . ' fragments: every ping answered, same payload, in order');
ok(defined $big && $big eq $big_ping, 'a 125-byte ping is answered with the same 125 bytes');
is_deeply(wait_appended(call_conn($call), 1), [$audio],
          'the payload reaches OpenAI verbatim');
# A second, ordinary message on the same connection still works.
$ws->send_text(media_json(audio(160, 6)));
is_deeply(wait_appended(call_conn($call), 2), [$audio, audio(160, 6)],
          'the next message too');
stop_ok($call);
--- no_error_log
[error]
[warn]



=== TEST 8: valid UTF-8 split across fragments is accepted
A mark name with 2-, 3- and 4-byte characters, cut inside each of them.
--- http_config eval: http_conf()
--- config eval: stream_conf()
--- perl_check
my $call = open_call();
ok(start_call($call, wait => 1), 'call set up');
my $ws = $call->{ws};
my $json = qq({"event":"mark","streamSid":"MZ1","mark":{"name":"h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"}});
my $at = index $json, "\xc3";
my @cuts = ($at + 1, $at + 4, $at + 5, $at + 8, $at + 9, $at + 10);
my ($prev, @parts) = (0);
for my $c (@cuts) { push @parts, substr($json, $prev, $c - $prev); $prev = $c }
push @parts, substr($json, $prev);
for my $n (0 .. $#parts) {
    $ws->send_frame(type => $n ? 'continuation' : 'text', payload => $parts[$n],
                    fin => $n == $#parts ? 1 : 0);
}
$ws->send_text(media_json(audio(160, 7)));
is_deeply(wait_appended(call_conn($call), 1), [audio(160, 7)],
          'the call goes on: the next media is relayed');
ok(!defined $ws->recv_frame(0.3), 'no close frame');
stop_ok($call);
--- no_error_log
[error]
[warn]
bad WebSocket frame



=== TEST 9: the upgrade request and the first frames in one TCP write
connected, start and three media messages pipelined right behind the
handshake: none is lost, and they arrive in order.
--- http_config eval: http_conf()
--- config eval: stream_conf()
--- perl_check
my @audio = map { audio(160, 10 + $_) } 1 .. 3;
my $call = open_call(pipeline => sub {
    join '', map { ws_frame(type => 'text', payload => $_) }
        connected_json(), start_json($_[0]{call_sid}), map { media_json($_) } @audio;
});
my $conn = call_conn($call);
ok($conn, 'OpenAI leg opened');
is_deeply(wait_appended($conn, 3), \@audio, 'all three media messages relayed, in order');
stop_ok($call);
--- no_error_log
[error]
[warn]



=== TEST 10: frames split byte by byte across TCP writes
--- http_config eval: http_conf()
--- config eval: stream_conf()
--- timeout: 20
--- perl_check
my $call = open_call();
my $ws = $call->{ws};
my $bytes = join '', map { ws_frame(type => 'text', payload => $_) }
    connected_json(), start_json($call->{call_sid}), media_json(audio(160, 20));
$bytes .= ws_frame(type => 'ping', payload => 'byte-ping');
for my $b (split //, $bytes) {
    $ws->send_raw($b);
    Time::HiRes::sleep(0.0005);
}
my $f = $ws->recv_frame(5);
is_deeply([$f && $f->{opcode}, $f && $f->{payload}], [10, 'byte-ping'],
          'the ping, sent byte by byte, is answered');
is_deeply(wait_appended(call_conn($call), 1), [audio(160, 20)],
          length($bytes) . ' bytes, one per write: the media is relayed');
stop_ok($call);
--- no_error_log
[error]
[warn]



=== TEST 11: after a protocol error nginx stops reading and closes at once
# BUG: after a frame-level error (ngx_voice_ws_parse() reports
# NGX_VOICE_WS_EV_ERROR) the parser stays in its failed state and the
# Twilio connection is still read: the client's answering close frame is
# parsed as the same bad frame again (a second "sent a bad WebSocket
# frame" line), is never seen as a close, and the connection stays open
# until the 2 s close wait (NGX_VOICE_CLOSE_WAIT) runs out.  RFC 6455
# 7.1.7: an endpoint that fails the connection must not go on processing
# data, "including a responding Close frame", before closing it.
--- http_config eval: http_conf()
--- config eval: stream_conf()
--- perl_check
for my $case (['unmasked frame', 1002, sub { $_[0]->send_frame(type => 'text',
                   payload => media_json(audio(160, 30)), masked => 0) }],
              ['invalid UTF-8', 1007, sub { $_[0]->send_text("{\"a\":\"\xc3\x28\"}") }]) {
    my ($name, $code, $send) = @$case;
    my $call = open_call();
    ok(start_call($call, wait => 1), "$name: call set up");
    my $ws = $call->{ws};
    $send->($ws);
    my ($got) = $ws->recv_close(5);
    is($got, $code, "$name: close $code");
    $ws->close($got);
    my $t0 = Time::HiRes::time();
    ok($ws->wait_eof(5), "$name: connection closed");
    my $took = Time::HiRes::time() - $t0;
    cmp_ok($took, '<', 1, "$name: closed at once after the client's close "
                          . '(not after the 2 s close wait)');
    wait_call_end($call);
    my $n = () = call_log($call) =~ /sent a bad WebSocket frame/g;
    is($n, 1, "$name: the error is logged once (the client's close is not "
              . 'parsed as another bad frame)');
}



=== TEST 12: a 60k message (default voice_max_message_size 64k) in one frame
Larger than the 16k read buffer: the payload is parsed across reads and
still reaches OpenAI verbatim.
--- http_config eval: http_conf()
--- config eval: stream_conf(max => '64k', buffer => '256k')
--- perl_check
my $call = open_call();
ok(start_call($call, wait => 1), 'call set up');
my $audio = audio(45000, 40);
my $msg = media_json($audio);
ok(length($msg) > 60000 && length($msg) <= 65536, 'a message of ' . length($msg) . ' bytes');
$call->{ws}->send_text($msg);
$call->{ws}->send_text(media_json(audio(160, 41)));
is_deeply(wait_appended(call_conn($call), 2), [$audio, audio(160, 41)],
          'both messages relayed verbatim');
stop_ok($call);
--- no_error_log
[error]
[warn]



=== TEST 13: JSON members in another order: "media" before "event"
# BUG: JSON object members are unordered, but a media message whose
# "payload" comes before its "event" member takes the "deferred copy" path
# in ngx_voice_twilio_string(), which copies into call->scratch: scratch is
# never allocated (scratch_len is 0), so the callback cancels yajl and the
# call is ended with 1007 "invalid JSON" ("voice: Twilio sent a message
# that is not JSON").  The same path exists for OpenAI's "delta" before
# "item_id"/"response_id" (ngx_voice_realtime_string()).
--- http_config eval: http_conf()
--- config eval: stream_conf()
--- perl_check
my $call = open_call();
ok(start_call($call, wait => 1), 'call set up');
my $audio = audio(160, 50);
$call->{ws}->send_text('{"streamSid":"MZ1","media":{"payload":"' . $audio
                       . '"},"event":"media"}');
my $f = $call->{ws}->recv_frame(0.5);
ok(!($f && $f->{opcode} == 8), 'the call is not closed')
    or diag 'close ' . unpack('n', $f->{payload}) . ' ' . substr($f->{payload}, 2);
is_deeply(wait_appended(call_conn($call), 1, 2), [$audio], 'the payload is relayed');
--- no_error_log
not JSON
