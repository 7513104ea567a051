# The RFC 6455 codec on the Twilio side of a call (nginx is the WebSocket
# server): every protocol error ends the call with the right close code in
# the close frame sent to the Twilio client, an [info] line naming the
# error, the call's end line, and OpenAI closed with 1000; valid but unusual
# framing (fragments, interleaved pings, split UTF-8, bytes pipelined
# behind the handshake, one byte per TCP write) is relayed intact.
#
# The Twilio client is t/lib/twilio-call.js with its raw engine: frames
# built by hand (malformed where the case says so), the server's frames
# decoded by the `ws` package's Receiver, never the module's own codec;
# OpenAI is t/lib/fake-openai.js over real TLS with a test CA (see
# t/lib/Test/VoiceCall.pm).
#
# A bad-frame case is a block: the frames (--- twilio_script, after
# "setup": connected, start, and OpenAI has the session) and what must
# follow (--- expect_twilio_close, the [info] line and the end line).
# Every block also expects, unless it says otherwise: the Twilio side gets
# nothing but pings before the close, OpenAI is closed with 1000, and
# neither [error] nor [warn] is logged.
use Test::Voice;
use Test::VoiceCall;
use JSON::PP ();
use MIME::Base64 ();

voice_setup(twilio_call => { engine => 'raw' }, stream_config => <<'EOF');
voice_start_timeout 2s;
voice_idle_timeout 3s;
voice_max_message_size 4k;
voice_buffer_size 64k;
EOF

block_defaults(expect_twilio       => "messages: 0\npong: 0",
               expect_openai_close => 1000,
               no_error_log        => "[error]\n[warn]");

# --- helpers (package main, for the perl_check sections) --------------------

sub b64 { MIME::Base64::encode_base64($_[0], '') }

# audio of n bytes, base64 (every byte value, so nothing is lost to a
# transcoder unnoticed)
sub audio { b64(join '', map { chr(($_ * 7 + $_[1]) % 256) } 0 .. $_[0] - 1) }

# A media message as its JSON text.
sub media_text {
    my ($payload, $stream_sid) = @_;
    return '{"event":"media","media":{"payload":"' . $payload
         . '"},"streamSid":"' . ($stream_sid // 'MZ1') . '"}';
}

# The input_audio_buffer.append audio OpenAI got on $conn, in order.
sub appended {
    my ($ev, $conn) = @_;
    return map { $_->{audio} }
           oa_msgs_noctl($ev, $conn, 'input_audio_buffer.append');
}

# The audio of every media message the Twilio side sent, as a message or
# as hand-made frames.
sub sent_audio {
    my ($t) = @_;
    my @a;
    for my $s (@{ $t->{sent} }) {
        my $m = $s->{msg};
        if (!$m and $s->{frame} and $s->{frame}{opcode} == 1) {
            $m = eval { JSON::PP::decode_json(
                MIME::Base64::decode_base64($s->{frame}{payload_b64})) };
        }
        push @a, $m->{media}{payload}
            if ref $m eq 'HASH' and ($m->{event} // '') eq 'media'
               and !$s->{ctl};
    }
    return @a;
}

sub frame_step {
    my (%f) = @_;
    $f{payload_b64} = b64(delete $f{payload} // '');
    return { frame => \%f };
}

run_tests();

__DATA__

=== TEST 1: an unmasked text frame -> 1002
--- twilio_script
setup
frame text unmasked payload=media
wait_close 5000
--- expect_twilio_close: 1002 by server
--- error_log eval
[qr/\[info\] .*voice: Twilio sent a bad WebSocket frame: unmasked frame from the client/,
 qr/voice: call ended, .*Twilio close 1002\//]



=== TEST 2: RSV1 set -> 1002
--- twilio_script
setup
frame text rsv=1,0,0 payload=media
wait_close 5000
--- expect_twilio_close: 1002 by server
--- error_log eval
[qr/\[info\] .*reserved bits set/, qr/voice: call ended, .*Twilio close 1002\//]



=== TEST 3: RSV3 set -> 1002
--- twilio_script
setup
frame text rsv=0,0,1 payload=media
wait_close 5000
--- expect_twilio_close: 1002 by server
--- error_log eval
[qr/\[info\] .*reserved bits set/, qr/voice: call ended, .*Twilio close 1002\//]



=== TEST 4: opcode 3 (a reserved data opcode) -> 1002
--- twilio_script
setup
frame 3 payload=media
wait_close 5000
--- expect_twilio_close: 1002 by server
--- error_log eval
[qr/\[info\] .*unknown opcode/, qr/voice: call ended, .*Twilio close 1002\//]



=== TEST 5: opcode 0xB (a reserved control opcode) -> 1002
--- twilio_script
setup
frame 0xB payload="x"
wait_close 5000
--- expect_twilio_close: 1002 by server
--- error_log eval
[qr/\[info\] .*unknown opcode/, qr/voice: call ended, .*Twilio close 1002\//]



=== TEST 6: a 64-bit length with the top bit set -> 1002
FIN + text, masked, length 0x8000000000000005, mask "ABCD", "hello".
--- twilio_script
setup
bytes hex:81ff8000000000000005 . "ABCD" . "hello"
wait_close 5000
--- expect_twilio_close: 1002 by server
--- error_log eval
[qr/\[info\] .*top bit set/, qr/voice: call ended, .*Twilio close 1002\//]



=== TEST 7: a fragmented ping (fin=0) -> 1002
--- twilio_script
setup
frame ping fin=0 payload="p"
wait_close 5000
--- expect_twilio_close: 1002 by server
--- error_log eval
[qr/\[info\] .*fragmented control frame/, qr/voice: call ended, .*Twilio close 1002\//]



=== TEST 8: a ping of 126 bytes -> 1002
--- twilio_script
setup
frame ping payload="x" x 126
wait_close 5000
--- expect_twilio_close: 1002 by server
--- error_log eval
[qr/\[info\] .*control frame longer than 125 bytes/,
 qr/voice: call ended, .*Twilio close 1002\//]



=== TEST 9: a pong of 200 bytes -> 1002
--- twilio_script
setup
frame pong payload="x" x 200
wait_close 5000
--- expect_twilio_close: 1002 by server
--- error_log eval
[qr/\[info\] .*control frame longer than 125 bytes/,
 qr/voice: call ended, .*Twilio close 1002\//]



=== TEST 10: a continuation without a message -> 1002
--- twilio_script
setup
frame continuation payload=media
wait_close 5000
--- expect_twilio_close: 1002 by server
--- error_log eval
[qr/\[info\] .*continuation frame without a message/,
 qr/voice: call ended, .*Twilio close 1002\//]



=== TEST 11: a text frame inside a fragmented message -> 1002
--- twilio_script
setup
frame text fin=0 payload="{\"event\":\"media\",\"me"
frame text payload=media
wait_close 5000
--- expect_twilio_close: 1002 by server
--- error_log eval
[qr/\[info\] .*new message inside a fragmented one/,
 qr/voice: call ended, .*Twilio close 1002\//]



=== TEST 12: a binary frame inside a fragmented text message -> 1002
--- twilio_script
setup
frame text fin=0 payload="{\"event\":\"media\",\"me"
frame binary payload="x"
wait_close 5000
--- expect_twilio_close: 1002 by server
--- error_log eval
[qr/\[info\] .*new message inside a fragmented one/,
 qr/voice: call ended, .*Twilio close 1002\//]



=== TEST 13: a close frame with a one-byte payload -> 1002
--- twilio_script
setup
frame close payload="\x03"
wait_close 5000
--- expect_twilio_close: 1002 by server
--- error_log eval
[qr/\[info\] .*close frame with a one-byte payload/,
 qr/voice: call ended, .*Twilio close 1002\//]



=== TEST 14: a close frame with code 1005 -> 1002
--- twilio_script
setup
frame close payload=code:1005
wait_close 5000
--- expect_twilio_close: 1002 by server
--- error_log eval
[qr/\[info\] .*invalid close code/, qr/voice: call ended, .*Twilio close 1002\//]



=== TEST 15: a close frame with code 1006 -> 1002
--- twilio_script
setup
frame close payload=code:1006
wait_close 5000
--- expect_twilio_close: 1002 by server
--- error_log eval
[qr/\[info\] .*invalid close code/, qr/voice: call ended, .*Twilio close 1002\//]



=== TEST 16: a close frame with code 999 -> 1002
--- twilio_script
setup
frame close payload=code:999
wait_close 5000
--- expect_twilio_close: 1002 by server
--- error_log eval
[qr/\[info\] .*invalid close code/, qr/voice: call ended, .*Twilio close 1002\//]



=== TEST 17: a close frame with code 1004 -> 1002
--- twilio_script
setup
frame close payload=code:1004
wait_close 5000
--- expect_twilio_close: 1002 by server
--- error_log eval
[qr/\[info\] .*invalid close code/, qr/voice: call ended, .*Twilio close 1002\//]



=== TEST 18: a close frame with code 2000 -> 1002
--- twilio_script
setup
frame close payload=code:2000
wait_close 5000
--- expect_twilio_close: 1002 by server
--- error_log eval
[qr/\[info\] .*invalid close code/, qr/voice: call ended, .*Twilio close 1002\//]



=== TEST 19: a close reason that is not UTF-8 -> 1007
--- twilio_script
setup
frame close payload=code:1000 . "\xc3\x28"
wait_close 5000
--- expect_twilio_close: 1007 by server
--- error_log eval
[qr/\[info\] .*invalid UTF-8 in a close reason/,
 qr/voice: call ended, .*Twilio close 1007\//]



=== TEST 20: invalid UTF-8 in a text message: C3 28 (bad continuation) -> 1007
--- twilio_script
setup
frame text payload="{\"event\":\"mark\",\"streamSid\":\"MZ1\",\"mark\":{\"name\":\"\xc3\x28\"}}"
wait_close 5000
--- expect_twilio_close: 1007 by server
--- error_log eval
[qr/\[info\] .*invalid UTF-8 in a text message/,
 qr/voice: call ended, .*Twilio close 1007\//]



=== TEST 21: invalid UTF-8 in a text message: C0 AF (overlong) -> 1007
--- twilio_script
setup
frame text payload="{\"event\":\"mark\",\"streamSid\":\"MZ1\",\"mark\":{\"name\":\"\xc0\xaf\"}}"
wait_close 5000
--- expect_twilio_close: 1007 by server
--- error_log eval
[qr/\[info\] .*invalid UTF-8 in a text message/,
 qr/voice: call ended, .*Twilio close 1007\//]



=== TEST 22: invalid UTF-8 in a text message: ED A0 80 (surrogate) -> 1007
--- twilio_script
setup
frame text payload="{\"event\":\"mark\",\"streamSid\":\"MZ1\",\"mark\":{\"name\":\"\xed\xa0\x80\"}}"
wait_close 5000
--- expect_twilio_close: 1007 by server
--- error_log eval
[qr/\[info\] .*invalid UTF-8 in a text message/,
 qr/voice: call ended, .*Twilio close 1007\//]



=== TEST 23: invalid UTF-8 in a text message: F4 90 80 80 (> U+10FFFF) -> 1007
--- twilio_script
setup
frame text payload="{\"event\":\"mark\",\"streamSid\":\"MZ1\",\"mark\":{\"name\":\"\xf4\x90\x80\x80\"}}"
wait_close 5000
--- expect_twilio_close: 1007 by server
--- error_log eval
[qr/\[info\] .*invalid UTF-8 in a text message/,
 qr/voice: call ended, .*Twilio close 1007\//]



=== TEST 24: invalid UTF-8 in a text message: FF -> 1007
--- twilio_script
setup
frame text payload="{\"event\":\"mark\",\"streamSid\":\"MZ1\",\"mark\":{\"name\":\"\xff\"}}"
wait_close 5000
--- expect_twilio_close: 1007 by server
--- error_log eval
[qr/\[info\] .*invalid UTF-8 in a text message/,
 qr/voice: call ended, .*Twilio close 1007\//]



=== TEST 25: UTF-8 cut short at the end of the message -> 1007
--- twilio_script
setup
frame text fin=0 payload="{\"event\":\"x\",\"a\":\""
frame continuation payload="\xe2\x82"
wait_close 5000
--- expect_twilio_close: 1007 by server
--- error_log eval
[qr/\[info\] .*truncated UTF-8 in a text message/,
 qr/voice: call ended, .*Twilio close 1007\//]



=== TEST 26: invalid UTF-8 in the second fragment -> 1007
--- twilio_script
setup
frame text fin=0 payload="{\"event\":\"x\",\"a\":\""
frame continuation payload="\xed\xa0\x80\"}"
wait_close 5000
--- expect_twilio_close: 1007 by server
--- error_log eval
[qr/\[info\] .*invalid UTF-8 in a text message/,
 qr/voice: call ended, .*Twilio close 1007\//]



=== TEST 27: text that is not JSON -> 1007
--- twilio_script
setup
frame text payload="hello, this is not JSON"
wait_close 5000
--- expect_twilio_close: 1007 by server
--- error_log eval
[qr/\[info\] .*not JSON/, qr/voice: call ended, .*Twilio close 1007\//]



=== TEST 28: a JSON array, not an object -> 1007
--- twilio_script
setup
frame text payload="[1,2,3]"
wait_close 5000
--- expect_twilio_close: 1007 by server
--- error_log eval
[qr/\[info\] .*not JSON/, qr/voice: call ended, .*Twilio close 1007\//]



=== TEST 29: two JSON objects in one message -> 1007
--- twilio_script
setup
frame text payload="{\"event\":\"mark\"}{\"event\":\"mark\"}"
wait_close 5000
--- expect_twilio_close: 1007 by server
--- error_log eval
[qr/\[info\] .*not one JSON object/, qr/voice: call ended, .*Twilio close 1007\//]



=== TEST 30: a binary message -> 1003
--- twilio_script
setup
frame binary payload="\xff" x 160
wait_close 5000
--- expect_twilio_close: 1003 by server
--- error_log eval
[qr/\[info\] .*Twilio sent a binary message/,
 qr/voice: call ended, .*Twilio close 1003\//]



=== TEST 31: one frame over voice_max_message_size (4k) -> 1009
A media message of 4000 bytes of audio: about 5.5k of JSON.
--- twilio_script
setup
frame text payload=media:4000
wait_close 5000
--- expect_twilio_close: 1009 by server
--- error_log eval
[qr/\[info\] .*larger than voice_max_message_size/,
 qr/voice: call ended, .*Twilio close 1009\//]
--- perl_check
my ($f) = grep { $_->{frame} } @{ $_[2]{t}{sent} };
cmp_ok(length MIME::Base64::decode_base64($f->{frame}{payload_b64}), '>', 4096,
       'the message is over 4k');



=== TEST 32: fragments of 500 bytes adding up to over 4k -> 1009
--- twilio_script
setup
frame text split=500 payload=media:4000
wait_close 5000
--- expect_twilio_close: 1009 by server
--- error_log eval
[qr/\[info\] .*larger than voice_max_message_size/,
 qr/voice: call ended, .*Twilio close 1009\//]



=== TEST 33: a frame announcing 2^40 bytes (5000 of them sent) -> 1009
FIN + text, 64-bit length 2^40, a mask of zeros.
--- twilio_script
setup
bytes hex:81ff0000010000000000 . hex:00000000 . "A" x 5000
wait_close 5000
--- expect_twilio_close: 1009 by server
--- error_log eval
[qr/\[info\] .*larger than voice_max_message_size/,
 qr/voice: call ended, .*Twilio close 1009\//]



=== TEST 34: a message of exactly voice_max_message_size (4096 bytes) still goes through
Whole, and in two fragments (3000 + 1096 bytes).
--- perl_check
my $sid = 'MZ' . substr(new_call_sid(), 2);
# The payload is whole base64 quanta; JSON whitespace makes up the rest.
my $room = 4096 - length media_text('', $sid);
my $pad = 'A' x ($room - $room % 4);
my $exact = media_text($pad, $sid);
$exact =~ s/^\{/'{' . ' ' x ($room % 4)/e;
is(length $exact, 4096, 'a message of exactly 4096 bytes');
my $pos = fake_pos();
my $t = twilio_call(engine => 'raw', stream_sid => $sid, steps => [
    twilio_steps('setup'),
    frame_step(opcode => 1, payload => $exact),
    frame_step(opcode => 1, split => 3000, payload => $exact),
    twilio_steps("await_session\nstop\nwait_close 3000")]);
is_deeply([tw_errors($t)], [], 'the Twilio side ran its steps');
my @ev = fake_wait($pos, sub { fake_close_of(\@_, $t->{conn}) });
is_deeply([grep { $_ eq $pad } appended(\@ev, $t->{conn})], [$pad, $pad],
          'a message of exactly the limit is relayed (whole and fragmented)');
is_deeply([appended(\@ev, $t->{conn})], [sent_audio($t)],
          'and everything else, in order');
is($t->{close}{code}, 1000, 'stop: Twilio gets close 1000');
like(wait_call_ended($t->{call_sid}) // '', qr/reason "Twilio stop"/,
     'stop: call end line');
is((fake_close_of(\@ev, $t->{conn}) // {})->{code}, 1000,
   'stop: OpenAI gets close 1000');



=== TEST 35: one byte more (4097) -> 1009
--- twilio_script
setup
frame text payload="{\"event\":\"media\",\"media\":{\"payload\":\"" . "A" x 4039 . "\"},\"streamSid\":\"MZ1\"}"
wait_close 5000
--- expect_twilio_close: 1009 by server
--- error_log eval
[qr/\[info\] .*larger than voice_max_message_size/,
 qr/voice: call ended, .*Twilio close 1009\//]
--- perl_check
my ($f) = grep { $_->{frame} } @{ $_[2]{t}{sent} };
is(length MIME::Base64::decode_base64($f->{frame}{payload_b64}), 4097,
   'the message is 4097 bytes');



=== TEST 36: every bad-frame case above at once, their close timers overlapping
TESTs 1 to 33 and 35, side by side in one nginx: each gets its close code,
its end line, and its OpenAI leg closed with 1000.
--- timeout: 60
--- perl_check
my @cases = grep { defined $_->{twilio_script} and $_->{expect_twilio_close}
                   and $_->{expect_twilio_close}[0] =~ /^10(?:0[2379])\b/ }
            grep { $_->name =~ /^TEST (\d+):/ and $1 < 36 } blocks();
is(scalar @cases, 34, '34 cases');
my @scenarios = map {
    my %o = (engine => 'raw', call_sid => new_call_sid(),
             stream_sid => 'MZ' . substr(new_call_sid(), 2));
    +{ %o, timeout_ms => 20000,
       steps => [twilio_steps($_->{twilio_script}[0], { %o })] }
} @cases;
my $pos = fake_pos();
my @t = twilio_calls(\@scenarios, timeout => 60);
my @ev = fake_wait($pos, sub { my @c = @_;
    !grep { !fake_close_of(\@c, $_->{conn}) } @t }, 10);
for my $i (0 .. $#cases) {
    my ($name) = $cases[$i]->name =~ /^(TEST \d+)/;
    my ($code) = $cases[$i]{expect_twilio_close}[0] =~ /^(\d+)/;
    my $t = $t[$i];
    is_deeply([tw_errors($t), $t->{close}{code}, $t->{close}{by}],
              [$code, 'server'], "$name: the Twilio side gets close $code");
    like(wait_call_ended($t->{call_sid}) // '', qr/Twilio close $code\//,
         "$name: its end line");
    is((fake_close_of(\@ev, $t->{conn}) // {})->{code}, 1000,
       "$name: OpenAI gets close 1000");
}



=== TEST 37: the Twilio client closes with 1000: echoed, OpenAI closed with 1000
--- twilio_script
setup
close 1000
--- expect_twilio_close: 1000 by client
--- error_log eval
[qr/\[info\] .*voice: Twilio closed the WebSocket with 1000/,
 qr/voice: call ended, .*reason "Twilio closed"/]
--- no_error_log
[error]
[warn]
bad WebSocket frame
not JSON



=== TEST 38: a close frame without a payload is answered with 1000
--- twilio_script
setup
close
--- expect_twilio_close: 1000 by client
--- error_log eval
qr/voice: call ended, .*reason "Twilio closed"/
--- no_error_log
[error]
[warn]
bad WebSocket frame
not JSON



=== TEST 39: close 1001 with a reason
--- twilio_script
setup
close 1001 going away
--- expect_twilio_close: 1001 by client
--- error_log eval
[qr/voice: Twilio closed the WebSocket with 1001 "going away"/,
 qr/voice: call ended, .*reason "Twilio closed"/]
--- no_error_log
[error]
[warn]
bad WebSocket frame
not JSON



=== TEST 40: close 4000 with a UTF-8 reason
--- twilio_script
setup
close 4000 "h\xc3\xa9"
--- expect_twilio_close: 4000 by client
--- error_log eval
[qr/voice: Twilio closed the WebSocket with 4000 "h\xc3\xa9"/,
 qr/voice: call ended, .*reason "Twilio closed"/]
--- no_error_log
[error]
[warn]
bad WebSocket frame
not JSON



=== TEST 41: a close between the fragments of a message is a close
--- twilio_script
setup
frame text fin=0 payload="{\"event\":\"me"
close 1000
--- expect_twilio_close: 1000 by client
--- error_log eval
qr/voice: call ended, .*reason "Twilio closed"/
--- no_error_log
[error]
[warn]
bad WebSocket frame
not JSON



=== TEST 42: data after the close is ignored
A text frame that is not JSON and garbage bytes follow the close frame.
nginx answers the close with 1000 and ignores the rest.  A peer that
sends after its own close (RFC 6455 5.5.1 forbids it) may see a reset
instead of the reply: bytes that reach a socket nginx has closed make the
kernel answer with a reset, which can overtake the close frame in flight.
--- twilio_script
setup
close 1000
frame text payload="not JSON"
bytes "\x00garbage"
--- expect_upgrade: 101
--- perl_check
my $c = $_[2]{t}{close} // {};
ok(($c->{code} // 0) == 1000 && ($c->{by} // '') eq 'client'
   || $c->{reset},
   'the Twilio side got close 1000, or a reset for what it sent after its close')
    or diag explain $c;
--- error_log eval
qr/voice: call ended, .*reason "Twilio closed"/
--- no_error_log
[error]
[warn]
bad WebSocket frame
not JSON



=== TEST 43: a message in many fragments with pings in between
The media payload reaches OpenAI verbatim; each ping is answered by a pong
with the same payload (up to 125 bytes); empty fragments are fine; an
unsolicited pong is ignored.
--- perl_check
my $sid = 'MZ' . substr(new_call_sid(), 2);
my $audio = audio(2400, 5);
my $msg = media_text($audio, $sid);
my (@parts, @steps);
my $i = 0;
while (length $msg) {       # 1, 2, 3, ... 17, 1, 2, ... bytes per fragment
    push @parts, substr($msg, 0, 1 + $i++ % 17, '');
}
push @parts, '';            # and an empty final fragment
for my $n (0 .. $#parts) {
    push @steps, frame_step(opcode => $n ? 0 : 1, payload => $parts[$n],
                            fin => $n == $#parts ? 1 : 0);
    push @steps, { ping => "p$n" } if $n % 10 == 0;
    push @steps, frame_step(opcode => 0, payload => '', fin => 0)
        if $n == 5;         # an empty fragment in the middle
}
# The largest ping allowed (125 bytes, every byte value), and an
# unsolicited pong, which is ignored.
my $big_ping = join '', map { chr(($_ * 37) % 256) } 0 .. 124;
my $pings = int($#parts / 10) + 2;
my $pos = fake_pos();
my $t = twilio_call(engine => 'raw', stream_sid => $sid, steps => [
    twilio_steps('setup'), @steps,
    frame_step(opcode => 9, payload => $big_ping),
    { pong => 'unsolicited' },
    { wait_frame => 'pong', count => $pings },
    frame_step(opcode => 1, payload => media_text(audio(160, 6), $sid)),
    twilio_steps("await_session\nstop\nwait_close 3000")]);
is_deeply([tw_errors($t)], [], 'the Twilio side ran its steps');
my @pongs = map { MIME::Base64::decode_base64($_->{payload_b64}) }
            grep { $_->{type} eq 'pong' } @{ $t->{frames} };
my $big = pop @pongs;
is_deeply(\@pongs, [map { "p$_" } grep { $_ % 10 == 0 } 0 .. $#parts],
          scalar(@parts) . ' fragments: every ping answered, same payload, in order');
ok(defined $big && $big eq $big_ping, 'a 125-byte ping is answered with the same 125 bytes');
my @ev = fake_wait($pos, sub { fake_close_of(\@_, $t->{conn}) });
my @got = appended(\@ev, $t->{conn});
my @sent = sent_audio($t);
is_deeply([@got[1, 2]], [$audio, audio(160, 6)],
          'the payload reaches OpenAI verbatim, then the next message');
is_deeply(\@got, [$sent[0], $audio, @sent[1 .. $#sent]], 'nothing else');
is($t->{close}{code}, 1000, 'stop: Twilio gets close 1000');
ok($t->{close}{t} - $t->{close_frame}{t} < 5000, 'stop: nginx closes the connection');
like(wait_call_ended($t->{call_sid}) // '', qr/reason "Twilio stop"/,
     'stop: call end line');
is((fake_close_of(\@ev, $t->{conn}) // {})->{code}, 1000,
   'stop: OpenAI gets close 1000');



=== TEST 44: valid UTF-8 split across fragments is accepted
A mark name with 2-, 3- and 4-byte characters, cut inside each of them;
the call goes on: the media sent next is relayed, and no close comes
before stop.
--- twilio_script
setup
frame text fin=0 payload="{\"event\":\"mark\",\"streamSid\":\"MZ1\",\"mark\":{\"name\":\"h\xc3"
frame continuation fin=0 payload="\xa9 \xe2"
frame continuation fin=0 payload="\x82"
frame continuation fin=0 payload="\xac \xf0"
frame continuation fin=0 payload="\x9f"
frame continuation fin=0 payload="\x98"
frame continuation payload="\x80\"}}"
await_session
sleep 300
stop
wait_close 3000
--- expect_twilio_close: 1000 by server
--- error_log eval
qr/voice: call ended, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]
bad WebSocket frame



=== TEST 45: the upgrade request and the first frames in one TCP write
connected, start and three media messages pipelined right behind the
handshake: none is lost, and they arrive in order.
--- twilio_call
pipeline: [{"send": "connected"}, {"send": "start"}, {"send": "media", "count": 3}]
--- twilio_script
await_session
stop
wait_close 3000
--- expect_twilio_close: 1000 by server
--- error_log eval
qr/voice: call ended, .*reason "Twilio stop"/
--- perl_check
my ($t, $ev, $conn) = @{ $_[2] }{qw(t ev conn)};
my @sent = sent_audio($t);
is(scalar @sent, 4, 'three pipelined media messages and one more');
is_deeply([appended($ev, $conn)], \@sent, 'all relayed, in order');



=== TEST 46: frames split byte by byte across TCP writes
connected, start, a media message and a ping, one byte a write.
--- timeout: 20
--- twilio_script
chunked 1 interval=1
connected
start
media
ping "byte-ping"
chunked 0
wait_frame pong
await_session
stop
wait_close 3000
--- expect_twilio_close: 1000 by server
--- error_log eval
qr/voice: call ended, .*reason "Twilio stop"/
--- expect_twilio
messages: 0
pong: 1
--- perl_check
my ($t, $ev, $conn) = @{ $_[2] }{qw(t ev conn)};
is(MIME::Base64::decode_base64($t->{frames}[0]{payload_b64}), 'byte-ping',
   'the ping, sent byte by byte, is answered');
is_deeply([appended($ev, $conn)], [sent_audio($t)],
          'the media, sent byte by byte, is relayed');



=== TEST 47: after a protocol error (unmasked frame) nginx stops reading and closes at once
RFC 6455 7.1.7: an endpoint that fails the connection must not go on
processing data, "including a responding Close frame", before closing it:
the client's answering close is not parsed as another bad frame, and the
connection is closed at once, not after the 2 s close wait.
--- twilio_script
setup
frame text unmasked payload=media
wait_close 5000
--- expect_twilio_close: 1002 by server
--- perl_check
my $t = $_[2]{t};
my $took = $t->{close}{t} - $t->{close_frame}{t};
cmp_ok($took, '<', 1000, "closed at once after the client's close ($took ms)");
my $n = () = error_log_since_start() =~ /sent a bad WebSocket frame/g;
is($n, 1, 'the error is logged once');



=== TEST 48: after a protocol error (invalid UTF-8) nginx stops reading and closes at once
--- twilio_script
setup
frame text payload="{\"a\":\"\xc3\x28\"}"
wait_close 5000
--- expect_twilio_close: 1007 by server
--- perl_check
my $t = $_[2]{t};
my $took = $t->{close}{t} - $t->{close_frame}{t};
cmp_ok($took, '<', 1000, "closed at once after the client's close ($took ms)");
my $n = () = error_log_since_start() =~ /sent a bad WebSocket frame/g;
is($n, 1, 'the error is logged once');



=== TEST 49: a 60k message (voice_max_message_size 64k) in one frame
Larger than the 16k read buffer: the payload is parsed across reads and
still reaches OpenAI verbatim.
--- stream_config
voice_max_message_size 64k;
voice_buffer_size 256k;
--- twilio_script
setup
frame text payload=media:45000
media
await_session
stop
wait_close 3000
--- expect_twilio_close: 1000 by server
--- error_log eval
qr/voice: call ended, .*reason "Twilio stop"/
--- perl_check
my ($t, $ev, $conn) = @{ $_[2] }{qw(t ev conn)};
my ($f) = grep { $_->{frame} } @{ $t->{sent} };
my $len = length MIME::Base64::decode_base64($f->{frame}{payload_b64});
ok($len > 60000 && $len <= 65536, "a message of $len bytes");
my @sent = sent_audio($t);
is(scalar @sent, 4, 'four media messages');
is_deeply([appended($ev, $conn)], \@sent, 'all relayed verbatim');



=== TEST 50: JSON members in another order: "media" before "event"
JSON object members are unordered: a media message whose "payload" comes
before its "event" takes the deferred-copy path of the streaming parser.
--- twilio_script
setup
raw {"streamSid":"MZ1","media":{"payload":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="},"event":"media"}
await_session
--- expect_openai_close: 1000
--- no_error_log
not JSON
--- perl_check
my ($t, $ev, $conn) = @{ $_[2] }{qw(t ev conn)};
ok(!grep({ $_->{t} < $t->{syncs}{await_session} } $t->{close_frame} // ()),
   'the call is not closed');
is((appended($ev, $conn))[1],
   'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=', 'the payload is relayed');
