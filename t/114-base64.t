# Audio strings must be base64 in whole 4-character quanta, "=" only as
# the last quantum's padding (issue 8, defect 5).  The module copies them
# verbatim into fixed JSON templates and counts their decoded length for
# barge-in; before the fix "=", "==" or "A=" made that length wrap below
# zero, so a delta of "=" followed by speech_started sent a
# conversation.item.truncate with audio_end_ms 50 for audio never sent.
#   - from OpenAI: the OpenAI leg is closed with 1007, Twilio with 1011;
#   - from Twilio: Twilio is closed with 1007, OpenAI with 1000;
#   - padded strings ("AA==", "AAA=") are whole quanta and relay as ever.
#
# With TEST_NGINX_MODULE=/work/main/build/ngx_voice_module.so (before the
# fix) TEST 1, 3 and 4 fail: the strings are relayed, and the "=" delta
# ends in a truncate with audio_end_ms 50.
use Test::Voice;
use Test::VoiceCall;

voice_setup();

# --- helpers (package main: perl_check code calls them) ----------------------

# A response.output_audio.delta with this delta string, the ids before it
# (the usual order, relayed straight away) or after it (held until the
# event ends): both paths check it.
sub delta_event {
    my ($delta, $ids_last) = @_;
    my $d = '"delta":' . JSON::PP->new->allow_nonref->encode($delta);
    my $ids = '"response_id":"resp_1","item_id":"item_1",'
            . '"output_index":0,"content_index":0';
    return '{"type":"response.output_audio.delta",'
         . ($ids_last ? "$d,$ids" : "$ids,$d") . '}';
}

# A script line making the fake OpenAI send these events as they are
# (texts, so that "type" stays first: the module reads a delta only once
# it knows the event's type).
sub ctl_send {
    return 'ctl ' . JSON::PP->new->canonical->encode([map { { send => $_ } } @_]);
}

# Runs a call with these script lines after "setup", then waits for its
# end line and OpenAI's close.  Returns {t, ev, end (the "call ended"
# line), oa_close (the code the fake got, or 'none')}.
sub call_with {
    my ($script, %opt) = @_;
    my $pos = fake_pos();
    my @steps = twilio_steps("setup\n$script", \%opt);
    my $t = twilio_call(%opt, steps => \@steps);
    my $end = wait_call_ended($t->{call_sid});
    my @ev = fake_wait($pos, sub { fake_close_of(\@_, $t->{conn}) });
    my $c = fake_close_of(\@ev, $t->{conn});
    return { t => $t, ev => \@ev, end => $end // '',
             oa_close => $c ? $c->{code} : 'none' };
}

sub log_count {
    my ($re) = @_;
    return scalar grep { $_ =~ $re } split /\n/, error_log_since_start();
}

run_tests();

__DATA__

=== TEST 1: from OpenAI, a delta that is not whole base64 quanta: OpenAI closed 1007, Twilio 1011
# Each string is sent twice, with the ids before the delta and after it.
--- timeout: 60
--- perl_check
my @bad = ('=', '==', '===', 'A=', 'AA=', 'AAA', 'A', 'AAAAA', 'A===', '====',
           'AA=A', 'AAA=AAAA', "AA\n=");
my $n = 0;
for my $delta (@bad) {
    for my $ids_last (0, 1) {
        my $what = sprintf 'delta %s, ids %s', JSON::PP->new->allow_nonref->encode($delta),
                           $ids_last ? 'after it' : 'before it';
        my $c = call_with(ctl_send(delta_event($delta, $ids_last))
                          . "\nwait_close 5000");
        my $t = $c->{t};
        $n++;
        is($t->{close}{code}, 1011, "$what: Twilio gets 1011");
        is($c->{oa_close}, 1007, "$what: OpenAI gets 1007");
        is(scalar(tw_recv($t, 'media')), 0, "$what: no media reached Twilio");
        like($c->{end}, qr/Twilio close 1011\/\d+, OpenAI close 1007\/\d+, reason "OpenAI: delta is not base64"/,
             "$what: the call's end line says why");
        is(log_count(qr/\[error\] .*voice: OpenAI audio delta is not base64/), $n,
           "$what: an [error] line names the error");
    }
}
--- no_error_log eval
[qr/\[(?:alert|crit)\]/, 'OpenAI sent a bad WebSocket frame']



=== TEST 2: from OpenAI, padded deltas are whole quanta: relayed as they are
--- twilio_script eval
"setup\n" . join("\n", map { ctl_send(delta_event(@$_)) }
                 ['AA=='], ['AAA='], ['+/8=', 1], ['AAAA'])
    . "\n" . <<'S'
wait media 4
stop
wait_close 3000
S
--- expect_twilio_close: 1000 by server
--- expect_openai_close: 1000
--- perl_check
is_deeply([map { $_->{media}{payload} } tw_recv($_[2]{t}, 'media')],
          ['AA==', 'AAA=', '+/8=', 'AAAA'], 'the four payloads, as sent, in order');
--- no_error_log eval
[qr/\[error\]/, 'not base64']



=== TEST 3: a delta "=" then speech_started: no truncate of audio that was never sent
# Before the fix "=" counted as 2^64 - 1 bytes sent, so the barge-in cut
# the item at min(sent, played + 50) = 50 ms.  Now the "=" closes the
# OpenAI leg and nothing is truncated.
--- twilio_call
echo_marks: 0
--- twilio_script eval
"setup\n" . ctl_send(delta_event('='),
    '{"type":"input_audio_buffer.speech_started","audio_start_ms":100,"item_id":"item_in"}')
    . "\nwait_close 5000\n"
--- expect_twilio_close: 1011 by server
--- expect_openai_close: 1007
--- perl_check
my ($t, $ev, $conn) = @{ $_[2] }{qw(t ev conn)};
my @tr = oa_msgs($ev, $conn, 'conversation.item.truncate');
is(scalar @tr, 0, 'no conversation.item.truncate') or diag explain \@tr;
is(scalar(tw_recv($t, 'clear')), 0, 'no clear to Twilio');
is(scalar(tw_recv($t, 'media')), 0, 'no media to Twilio');
--- error_log eval
[qr/\[error\] .*voice: OpenAI audio delta is not base64/,
 qr/voice: call ended, .*interruptions 0, .*reason "OpenAI: delta is not base64"/]
--- no_error_log eval
[qr/\[(?:alert|crit)\]/]



=== TEST 4: from Twilio, a media payload that is not whole base64 quanta: Twilio closed 1007, OpenAI 1000
--- timeout: 60
--- perl_check
my @bad = ('A=', '=', '==', 'A', 'AAA', 'AAAAA', 'AA=A', 'A===', '====', 'AAA=AAAA');
my $n = 0;
for my $payload (@bad) {
    my $what = "payload \"$payload\"";
    my $c = call_with("media payload=$payload\nwait_close 5000");
    my ($t, $ev) = @$c{qw(t ev)};
    $n++;
    is($t->{close}{code}, 1007, "$what: Twilio gets 1007");
    is($t->{close}{by}, 'server', "$what: from nginx");
    is($c->{oa_close}, 1000, "$what: OpenAI gets 1000");
    ok(!grep({ ($_->{audio} // '') eq $payload }
             oa_msgs($ev, $t->{conn}, 'input_audio_buffer.append')),
       "$what: OpenAI did not get it");
    like($c->{end}, qr/Twilio close 1007\/\d+, OpenAI close 1000\/\d+, reason "Twilio: payload is not base64"/,
         "$what: the call's end line says why");
    is(log_count(qr/\[info\] .*voice: Twilio media payload is not base64/), $n,
       "$what: an [info] line names the error");
}
--- no_error_log eval
[qr/\[(?:alert|crit|error)\]/]



=== TEST 5: from Twilio, padded payloads are whole quanta: relayed as they are
--- twilio_script
setup
media payload=AA==
media payload=AAA=
media payload=+/8=
media payload=AAAA
sleep 300
stop
wait_close 3000
--- expect_twilio_close: 1000 by server
--- expect_openai_close: 1000
--- perl_check
my ($ev, $conn) = @{ $_[2] }{qw(ev conn)};
my @audio = map { $_->{audio} } oa_msgs_noctl($ev, $conn, 'input_audio_buffer.append');
is_deeply([@audio[-4 .. -1]], ['AA==', 'AAA=', '+/8=', 'AAAA'],
          'OpenAI got the four payloads, as sent, in order') or diag explain \@audio;
--- no_error_log eval
[qr/\[error\]/, 'not base64']
