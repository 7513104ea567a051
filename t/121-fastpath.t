# The checks the hot path makes, kept by its fast paths (issue 12): a whole
# message in the JSON fast path's subset, one that falls back to yajl
# (escapes, non-ASCII text, whitespace, another member order), invalid
# UTF-8 anywhere in a message whose ASCII is checked 8 bytes at a time,
# and a message with anything after its object, all as a Twilio client
# sees them: relayed audio, or the close code and the log lines.
#
# The Twilio client is t/lib/twilio-call.js with its raw engine (frames
# built by hand); OpenAI is t/lib/fake-openai.js over real TLS (see
# t/lib/Test/VoiceCall.pm and t/110-codec.t, whose conventions these
# blocks follow).
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

sub audio { b64(join '', map { chr(($_ * 7 + $_[1]) % 256) } 0 .. $_[0] - 1) }

# The input_audio_buffer.append audio OpenAI got on $conn, in order.
sub appended {
    my ($ev, $conn) = @_;
    return map { $_->{audio} }
           oa_msgs_noctl($ev, $conn, 'input_audio_buffer.append');
}

sub frame_step {
    my (%f) = @_;
    $f{payload_b64} = b64(delete $f{payload} // '');
    return { frame => \%f };
}

run_tests();

__DATA__

=== TEST 1: hot messages in and out of the fast path's subset, all relayed in order
Whole media messages: compact; with whitespace; an escaped slash and a
\u escape in the payload (yajl's, unescaped); é across an 8-byte word of
the UTF-8 check; "media" before "event"; a number and an empty object.
--- perl_check
my $sid = 'MZ' . substr(new_call_sid(), 2);
my ($p1, $p2, $p5, $p6) = (audio(160, 1), audio(160, 2), audio(161, 5),
                           audio(32, 6));
my @msgs = (
    '{"event":"media","media":{"payload":"' . $p1 . '"},"streamSid":"'
        . $sid . '"}',
    " {\n\t\"event\" : \"media\" ,\r\n \"media\" : { \"payload\" : \"" . $p2
        . "\" } , \"streamSid\" : \"$sid\" }  ",
    '{"event":"media","media":{"payload":"ab\/\/cd+\/"},"streamSid":"'
        . $sid . '"}',
    '{"event":"media","media":{"payload":"\u0041BCD"},"streamSid":"'
        . $sid . '"}',
    '{"event":"media","media":{"track":"aaaa' . "\xc3\xa9"
        . '","payload":"' . $p5 . '"},"streamSid":"' . $sid . '"}',
    '{"media":{"chunk":7,"x":{},"payload":"' . $p6
        . '"},"streamSid":"' . $sid . '","event":"media"}');
my $pos = fake_pos();
my $t = twilio_call(engine => 'raw', stream_sid => $sid, steps => [
    twilio_steps('setup'),
    (map { frame_step(opcode => 1, payload => $_) } @msgs),
    twilio_steps("await_session\nstop\nwait_close 3000")]);
is_deeply([tw_errors($t)], [], 'the Twilio side ran its steps');
my @ev = fake_wait($pos, sub { fake_close_of(\@_, $t->{conn}) });
my @want = ($p1, $p2, 'ab//cd+/', 'ABCD', $p5, $p6);
my %want = map { $_ => 1 } @want;
is_deeply([grep { $want{$_} } appended(\@ev, $t->{conn})], \@want,
          'every message relayed, unescaped, in order');
is($t->{close}{code}, 1000, 'stop: Twilio gets close 1000');
is((fake_close_of(\@ev, $t->{conn}) // {})->{code}, 1000,
   'stop: OpenAI gets close 1000');



=== TEST 2: invalid UTF-8 (overlong C0 AF) as the first byte of an 8-byte word -> 1007
--- twilio_script
setup
frame text payload="{\"event\":\"media\",\"media\":{\"track\":\"" . "a" x 5 . "\xc0\xaf\",\"payload\":\"AAAA\"},\"streamSid\":\"MZ1\"}"
wait_close 5000
--- expect_twilio_close: 1007 by server
--- error_log eval
[qr/\[info\] .*invalid UTF-8 in a text message/,
 qr/voice: call ended, .*Twilio close 1007\//]



=== TEST 3: invalid UTF-8 (FF) as the last byte of an 8-byte word -> 1007
--- twilio_script
setup
frame text payload="{\"event\":\"media\",\"media\":{\"track\":\"" . "a" x 4 . "\xff\",\"payload\":\"AAAA\"},\"streamSid\":\"MZ1\"}"
wait_close 5000
--- expect_twilio_close: 1007 by server
--- error_log eval
[qr/\[info\] .*invalid UTF-8 in a text message/,
 qr/voice: call ended, .*Twilio close 1007\//]



=== TEST 4: a bad continuation across two 8-byte words (C3 then 28) -> 1007
--- twilio_script
setup
frame text payload="{\"event\":\"media\",\"media\":{\"track\":\"" . "a" x 4 . "\xc3\x28\",\"payload\":\"AAAA\"},\"streamSid\":\"MZ1\"}"
wait_close 5000
--- expect_twilio_close: 1007 by server
--- error_log eval
[qr/\[info\] .*invalid UTF-8 in a text message/,
 qr/voice: call ended, .*Twilio close 1007\//]



=== TEST 5: a surrogate (ED A0 80) after 200 ASCII bytes -> 1007
yajl's own check of strings lets surrogates through: the WebSocket
parser's check is the one that counts.
--- twilio_script
setup
frame text payload="{\"event\":\"media\",\"media\":{\"track\":\"" . "a" x 200 . "\xed\xa0\x80\",\"payload\":\"AAAA\"},\"streamSid\":\"MZ1\"}"
wait_close 5000
--- expect_twilio_close: 1007 by server
--- error_log eval
[qr/\[info\] .*invalid UTF-8 in a text message/,
 qr/voice: call ended, .*Twilio close 1007\//]



=== TEST 6: a number after the message's object -> 1007
(Failed before the fix: yajl kept the number for the next message and the
call went on until the idle timeout.)
--- twilio_script
setup
frame text payload="{\"event\":\"mark\",\"streamSid\":\"MZ1\",\"mark\":{\"name\":\"a\"}} 5"
wait_close 5000
--- expect_twilio_close: 1007 by server
--- error_log eval
[qr/\[info\] .*voice: Twilio sent a message that is not JSON, or not one JSON object/,
 qr/voice: call ended, .*Twilio close 1007\//]



=== TEST 7: a string begun after the message's object -> 1007
--- twilio_script
setup
frame text payload="{\"event\":\"mark\",\"streamSid\":\"MZ1\",\"mark\":{\"name\":\"a\"}}\n\"abc"
wait_close 5000
--- expect_twilio_close: 1007 by server
--- error_log eval
[qr/\[info\] .*voice: Twilio sent a message that is not JSON, or not one JSON object/,
 qr/voice: call ended, .*Twilio close 1007\//]



=== TEST 8: a control character in a string of an otherwise hot message -> 1007
--- twilio_script
setup
frame text payload="{\"event\":\"media\",\"media\":{\"track\":\"in\x01bound\",\"payload\":\"AAAA\"},\"streamSid\":\"MZ1\"}"
wait_close 5000
--- expect_twilio_close: 1007 by server
--- error_log eval
[qr/\[info\] .*not JSON/, qr/voice: call ended, .*Twilio close 1007\//]



=== TEST 9: a payload that is not base64, in the fast path's subset -> 1007
--- twilio_script
setup
frame text payload="{\"event\":\"media\",\"media\":{\"payload\":\"AAA*\"},\"streamSid\":\"MZ1\"}"
wait_close 5000
--- expect_twilio_close: 1007 by server
--- error_log eval
[qr/\[info\] .*voice: Twilio media payload is not base64/,
 qr/voice: call ended, .*Twilio close 1007\//]
