# The memory of a call (issue 12): what the relay reads goes through one
# read buffer per worker (16 KiB), and what it writes through output
# chunks (4 KiB) the worker lends to a peer while it has something queued;
# the OpenAI leg's TLS send buffer is one chunk.  These calls show on the
# wire that nothing of that is seen from outside:
#
#   - messages larger than the read buffer, from many calls at once on one
#     worker, so that their reads interleave; frames larger than a chunk
#     both ways; every byte relayed to its own call, in order;
#   - a burst from OpenAI many times the read buffer, then silence: the
#     worker reads until the socket has nothing more (edge-triggered
#     epoll), so the call gets all of it with nothing else to wake it;
#   - a call that ends with chunks still queued (its Twilio side stopped
#     reading) gives them back, and the next call on the worker, which
#     takes them, relays byte-exact.
#
# OpenAI is t/lib/fake-openai.js over real TLS, Twilio's side
# t/lib/twilio-call.js (see t/lib/Test/VoiceCall.pm).
use Test::Voice;
use Test::VoiceCall;
use JSON::PP ();

voice_setup();

# --- helpers (package main, for the perl_check sections) --------------------

# What one call of twilio_calls() did both ways, against the fake's log:
# the caller's audio as OpenAI got it, OpenAI's deltas as the caller got
# them.  Returns a problem, or undef.
sub call_problem {
    my ($t, $ev, $seen, $n_sent, $n_deltas) = @_;
    my @e = tw_errors($t);
    return "errors: @e" if @e;
    my @sent = tw_sent_audio($t);
    my $conn = conn_of($ev, $sent[0] // '');
    return 'no OpenAI connection with its audio' unless defined $conn;
    return "OpenAI connection $conn seen twice" if $seen->{$conn}++;
    my @got = map { $_->{audio} }
              oa_msgs_noctl($ev, $conn, 'input_audio_buffer.append');
    my @deltas = map { $_->{delta} }
                 oa_sent($ev, $conn, 'response.output_audio.delta');
    my @media = map { $_->{media}{payload} } tw_recv($t, 'media');
    return 'sent ' . @sent . " frames, not $n_sent" if @sent != $n_sent;
    return 'OpenAI got ' . @got . ' of ' . @sent . ' frames, or others'
        if "@got" ne "@sent";
    return 'OpenAI sent ' . @deltas . " deltas, not $n_deltas"
        if @deltas != $n_deltas;
    return 'Twilio got ' . @media . ' media for ' . @deltas . ' deltas, '
           . 'or other bytes' if "@media" ne "@deltas";
    return 'close ' . ($t->{close}{code} // 'none')
        if ($t->{close}{code} // 0) != 1000;
    return undef;
}

run_tests();

__DATA__

=== TEST 1: 12 calls at once on one worker, messages larger than the read buffer and than a chunk both ways, byte-exact
Once its session is ready, each caller sends frames of 12,000 bytes of
audio (16,000 base64 characters: a Twilio message over the 16 KiB read
buffer, an append to OpenAI of four chunks and four TLS records) between
frames of 160, and
OpenAI answers with deltas of 30,000 bytes (a 40 kB message, three reads
and more; a media message of ten chunks); all calls at once, so that the
reads of one call come between those of the others.
--- workers: 1
--- timeout: 90
--- perl_check
my $pos = fake_pos();
my @t = twilio_calls([map { { timeout_ms => 40000, steps => [
    twilio_steps('setup'),
    { send => 'media', count => 5, interval_ms => 5 },
    { send => 'media', count => 3, bytes => 12000, interval_ms => 5 },
    { ctl => [{ deltas => { n => 4, bytes => 30000, interval_ms => 5 } }] },
    { send => 'media', count => 3, bytes => 12000, interval_ms => 5 },
    { send => 'media', count => 4, interval_ms => 5 },
    { wait => { event => 'mark' }, count => 4, timeout_ms => 30000 },
    { send => 'stop' },
    { wait_close => 10000 },
] } } 1 .. 12], timeout => 90);
my @ev = fake_wait($pos, sub { 12 <= grep { $_->{ev} eq 'close' } @_ }, 20);
my ($ok, %seen) = (0);
for my $i (0 .. $#t) {
    my $p = call_problem($t[$i], \@ev, \%seen, 16, 4);
    $ok++ unless defined $p;
    diag "call $i: $p" if defined $p;
}
is($ok, 12, 'all 12 calls byte-exact both ways, each on its own OpenAI leg');
my @ended = call_ended_lines(error_log_since_start());
is(scalar(grep { /reason "Twilio stop"/ } @ended), 12,
   '12 "call ended" lines, each for Twilio\'s stop');
--- no_error_log
[error]
[warn]
[alert]



=== TEST 2: 60 deltas of 30,000 bytes at once (2.4 MB), then silence: all reach Twilio
OpenAI sends them as soon as the session is updated and then nothing
more, and the caller sends nothing while it waits: the only thing that
can move them is the read event of that burst.  A relay that stopped
reading before the socket said EAGAIN, without keeping the event ready
or posting it, would stall with bytes left in the kernel (or in TLS) that
no new event announces.
--- openai_query: &flood=60&size=40000
--- timeout: 60
--- twilio_script
setup
wait media 60 timeout=30000
stop
wait_close 5000
--- expect_twilio
media: 60
mark: 60
--- expect_twilio_close: 1000 by server
--- expect_openai_close: 1000
--- perl_check
my ($t, $ev) = @{ $_[2] }{qw(t ev)};
my ($flood) = grep { $_->{ev} eq 'flooded' } @$ev;
is($flood->{count} // 0, 60, 'the fake sent 60 deltas at once');
is(scalar(grep { ($_->{media}{payload} // '') eq 'f39/' x 10000 }
          tw_recv($t, 'media')),
   60, 'each media message carries its delta whole');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 3: a call ends with output still queued; the next call on the worker takes the chunks and relays byte-exact
The first caller stops reading while OpenAI sends 4.8 MB of deltas: once
the kernel's socket buffers are full, half of voice_buffer_size (64k)
waits in chunks, OpenAI is no longer read, and after voice_idle_timeout
the call ends with those chunks queued.
The second call, on the same worker, gets the chunks back from it.
--- workers: 1
--- stream_config
voice_buffer_size 64k;
voice_max_message_size 16k;
voice_idle_timeout 3s;
--- timeout: 60
--- perl_check
my $pos = fake_pos();
my $a = twilio_call(engine => 'raw', keep_payloads => JSON::PP::false,
                    steps => [twilio_steps(<<'S')]);
pause
setup
ctl {"deltas": {"n": 600, "bytes": 6000}}
sync log:Twilio is not reading
terminate
S
is_deeply([tw_errors($a)], [], 'the first Twilio side ran its steps');
like(wait_call_ended($a->{call_sid}) // '', qr/reason "Twilio is not reading"/,
     'the first call ended: Twilio is not reading');
my @ev = fake_wait($pos, sub { grep { $_->{ev} eq 'close' } @_ }, 10);
ok(scalar(grep { $_->{ev} eq 'close' } @ev), 'its OpenAI leg closed');
$pos = fake_pos();
my @t = twilio_calls([{ timeout_ms => 20000, steps => [
    twilio_steps('setup'),
    { send => 'media', count => 9, interval_ms => 5 },
    { send => 'media', count => 2, bytes => 6000 },
    { ctl => [{ deltas => { n => 6, bytes => 4000 } }] },
    { wait => { event => 'mark' }, count => 6, timeout_ms => 15000 },
    { send => 'stop' },
    { wait_close => 10000 },
] }], timeout => 40);
@ev = fake_wait($pos, sub { grep { $_->{ev} eq 'close' } @_ }, 10);
my %seen;
is(call_problem($t[0], \@ev, \%seen, 12, 6), undef,
   'the second call: byte-exact both ways');
like(wait_call_ended($t[0]{call_sid}) // '',
     qr/from OpenAI 8, .*reason "Twilio stop"/,
     'its end line: session.created, session.updated and 6 deltas from OpenAI');
--- no_error_log
[alert]
[crit]
