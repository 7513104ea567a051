# The life of a call after the upgrade: timers (voice_start_timeout,
# voice_idle_timeout with its pings both ways, voice_max_call_duration),
# nginx reloads (calls in progress finish in the old worker;
# worker_shutdown_timeout closes them with 1001), a Twilio client that
# stops reading while OpenAI floods audio (voice_buffer_size), Twilio going
# away without a close frame, and many calls abandoned at random points.
# Every call must end with its "voice: call ended" line and OpenAI closed.
#
# The Twilio side is t/lib/twilio-call.js with its raw engine (it answers
# pings unless auto_pong is false); OpenAI is t/lib/fake-openai.js over
# real TLS (it logs the pings it gets; ?nopong=1 stops answering them;
# ?flood=N sends N audio deltas at once).  See t/lib/Test/VoiceCall.pm.
use Test::Voice;
use Test::VoiceCall;
use JSON::PP ();
use MIME::Base64 ();
use Protocol::WebSocket::Frame;

voice_setup(twilio_call => { engine => 'raw' }, stream_config => <<'EOF');
voice_start_timeout 2s;
voice_idle_timeout 3s;
EOF

# --- helpers (package main, for the perl_check sections) --------------------

sub b64 { MIME::Base64::encode_base64($_[0], '') }

# memcheck makes everything slower: timing bounds get wider under it
sub slow () { $ENV{TEST_NGINX_USE_VALGRIND} ? 1 : 0 }

sub appended {
    my ($ev, $conn) = @_;
    return map { $_->{audio} }
           oa_msgs_noctl($ev, $conn, 'input_audio_buffer.append');
}

# Seconds from the transcript's time $from to $to (ms since the epoch).
sub secs { defined $_[1] ? ($_[1] - $_[0]) / 1000 : 99 }

sub pings_of {
    my ($t, $type) = @_;
    return grep { $_->{type} eq ($type // 'ping') } @{ $t->{frames} };
}

# A call that is stopped by Twilio ended normally on both legs.
sub stop_ok {
    my ($t, $ev, $what) = @_;
    is($t->{close}{code}, 1000, "$what: Twilio gets close 1000");
    ok($t->{close_frame} && $t->{close}{t} - $t->{close_frame}{t} < 5000,
       "$what: nginx closes the connection");
    like(wait_call_ended($t->{call_sid}) // '', qr/reason "Twilio stop"/,
         "$what: call end line");
    is((fake_close_of($ev, $t->{conn}) // {})->{code}, 1000,
       "$what: OpenAI gets close 1000");
}

sub vm_kb {     # a field of /proc/PID/status, in kB
    my ($pid, $field) = @_;
    open my $fh, '<', "/proc/$pid/status" or return undef;
    while (<$fh>) { return $1 if /^$field:\s+(\d+) kB/ }
    return undef;
}

# The worker pid of a call, from its log lines.
sub worker_of {
    my ($sid) = @_;
    return call_stack_log($sid) =~ /^\S+ \S+ \[\w+\] (\d+)#/m ? $1 : undef;
}

# Checks of a call closed for not starting in time (TESTs 1 to 3).
sub no_start_ok {
    my ($ctx) = @_;
    my ($t, $ev, $conn) = @$ctx{qw(t ev conn)};
    my $took = secs($t->{upgrade_t}, $t->{close_frame} && $t->{close_frame}{t});
    # memcheck makes the upgrade itself take a good part of the 2 s
    my $lo = slow() ? 0.5 : 1.5;
    ok($took > $lo && $took < 3.5, "after about 2s ($took)");
    ok(defined $conn && fake_close_of($ev, $conn), 'OpenAI leg closed');
}

run_tests();

__DATA__

=== TEST 1: no start within voice_start_timeout (2s) -> 1008: a client that sends nothing
The OpenAI leg was opened in parallel, but gets no session.update, and is
closed.
--- twilio_script
wait_close 5000
--- expect_twilio_close: 1008 by server
--- expect_openai
nothing
--- error_log eval
[qr/\[info\] .*voice: no Twilio start within voice_start_timeout/,
 qr/voice: call ended, .*Twilio close 1008\/.*reason "no start"/]
--- no_error_log
[error]
--- perl_check
no_start_ok($_[2]);



=== TEST 2: no start within voice_start_timeout -> 1008: a client that sends only "connected"
--- twilio_script
connected
wait_close 5000
--- expect_twilio_close: 1008 by server
--- expect_openai
nothing
--- error_log eval
[qr/\[info\] .*voice: no Twilio start within voice_start_timeout/,
 qr/voice: call ended, .*Twilio close 1008\/.*reason "no start"/]
--- no_error_log
[error]
--- perl_check
no_start_ok($_[2]);



=== TEST 3: no start within voice_start_timeout -> 1008: a client that only pings
Every 0.3s: the pings are answered, but do not count as a start.
--- twilio_script
ping count=20 interval=300 until_close "still here"
wait_close 5000
--- expect_twilio_close: 1008 by server
--- expect_openai
nothing
--- error_log eval
[qr/\[info\] .*voice: no Twilio start within voice_start_timeout/,
 qr/voice: call ended, .*Twilio close 1008\/.*reason "no start"/]
--- no_error_log
[error]
--- perl_check
my $pongs = pings_of($_[2]{t}, 'pong');
ok($pongs >= 4, "the pings were answered ($pongs pongs)");
no_start_ok($_[2]);



=== TEST 4: voice_idle_timeout (3s): a client that answers nginx's pings stays up; OpenAI is pinged too
After start the client sends nothing.  nginx pings it after a third of
the timeout; answering with pongs keeps it up well past 3s.  OpenAI,
which sends nothing after session.updated either, is pinged too (and its
pongs keep it alive).
--- timeout: 15
--- twilio_script
setup
sleep 5500
stop
wait_close 3000
--- expect_twilio_close: 1000 by server
--- expect_openai_close: 1000
--- error_log eval
qr/voice: call ended, .*reason "Twilio stop"/
--- no_error_log
[error]
--- perl_check
my ($t, $ev, $conn) = @{ $_[2] }{qw(t ev conn)};
my $t0 = $t->{syncs}{await_session};
my @pings = pings_of($t);
ok(@pings >= 2, 'the client that answers gets pings (' . scalar(@pings) . ')');
my $first = @pings ? secs($t0, $pings[0]{t}) : 99;
ok($first >= 0.9 && $first < 2.5, "first ping after idle/3 to 2*idle/3 of silence ($first s)");
ok(secs($t0, $t->{close_frame}{t}) > 5.5,
   'answering pongs keeps the call alive past 5s (closed on stop only)');
my @oa_pings = oa_event($ev, 'ping', $conn);
ok(@oa_pings >= 1, 'OpenAI, silent after session.updated, was pinged ('
                   . scalar(@oa_pings) . ')');



=== TEST 5: voice_idle_timeout (3s): a client that does not answer the pings is closed with 1011
--- timeout: 15
--- twilio_call
auto_pong: false
--- twilio_script
setup
wait_close 6000
--- expect_twilio_close: 1011 by server
--- expect_openai_close: 1000
--- error_log eval
[qr/\[info\] .*voice: Twilio sent nothing for \d+ ms \(voice_idle_timeout\)/,
 qr/voice: call ended, .*reason "Twilio idle"/]
--- no_error_log
[error]
--- perl_check
my $t = $_[2]{t};
ok(scalar(pings_of($t)), 'the silent client was pinged');
my $took = secs($t->{syncs}{await_session}, $t->{close_frame}{t});
ok($took >= 2.9 && $took < 4.6, "after idle to idle + idle/3 of silence ($took s)");



=== TEST 6: an OpenAI that neither sends nor answers pings -> the call ends
The fake stops answering pings (?nopong=1) and sends nothing after
session.updated; Twilio keeps sending media.  nginx ends the call after
about 3s: Twilio gets 1011, with an [error] line about OpenAI.
--- timeout: 15
--- openai_query: &nopong=1
--- twilio_script
setup
media 30 interval=200 until_close
wait_close 1000
--- expect_twilio_close: 1011 by server
--- error_log eval
[qr/\[error\] .*voice: OpenAI sent nothing for \d+ ms \(voice_idle_timeout\)/,
 qr/voice: call ended, .*reason "OpenAI idle"/]
--- perl_check
my ($t, $ev, $conn) = @{ $_[2] }{qw(t ev conn)};
my $took = secs($t->{syncs}{await_session}, $t->{close_frame}{t});
ok($took >= 2.5 && $took < 5, "after about 3s ($took s)");
ok(scalar(oa_event($ev, 'ping', $conn)), 'OpenAI was pinged');
ok(fake_close_of($ev, $conn), 'OpenAI leg closed');



=== TEST 7: voice_max_call_duration 2s -> both legs closed, Twilio 1000
The caller keeps talking; the call is cut at 2s.
--- timeout: 15
--- stream_config
voice_max_call_duration 2s;
--- twilio_script
setup
media 25 interval=200 until_close
wait_close 1000
--- expect_twilio_close: 1000 by server
--- expect_openai_close: 1000
--- error_log eval
[qr/\[info\] .*voice: voice_max_call_duration reached/,
 qr/voice: call ended, .*reason "max call duration"/]
--- no_error_log
[error]
--- perl_check
my ($t, $ev, $conn) = @{ $_[2] }{qw(t ev conn)};
my $took = secs($t->{upgrade_t}, $t->{close_frame}{t});
ok($took >= 1.9 && $took < 3, "at about 2s ($took s)");
ok(scalar(appended($ev, $conn)) >= 5, 'audio was relayed until then');



=== TEST 8: nginx -s reload during a call: the old worker keeps relaying
Media sent after the reload still reaches OpenAI through the old worker,
the call ends normally on stop, then the old worker exits; a new call is
served by the new worker.
--- master_on
--- timeout: 20
--- perl_check
my ($old, $before);
my $sid = new_call_sid();
my $pos = fake_pos();
my $t = twilio_call(engine => 'raw', call_sid => $sid, steps => [twilio_steps(<<'S')],
setup
media 5 interval=100
sync before
sync reload
media 15 interval=100
sync after
stop
wait_close 3000
S
    on_sync => sub {
        my ($s) = @_;
        my @ev = fake_events($pos);
        if ($s->{sync} eq 'before') {
            ok($old = worker_of($sid), "the call is in worker $old");
            $before = appended(\@ev, $s->{conn});
            return;
        }
        my $after = appended(\@ev, $s->{conn});
        ok($after >= $before + 10, "media after the reload relayed ($before -> $after)");
        ok(kill(0, $old), 'the old worker is still there');
        my $npos = fake_pos();
        my $new = twilio_call(engine => 'raw', steps => [twilio_steps(
            "setup\nstop\nwait_close 3000")]);
        is_deeply([tw_errors($new)], [], 'a new call after the reload');
        isnt(worker_of($new->{call_sid}), $old, 'it is served by a new worker');
        stop_ok($new, [fake_wait($npos, sub { fake_close_of(\@_, $new->{conn}) })],
                'new call');
        return;
    });
is_deeply([tw_errors($t)], [], 'the call ran its steps (reload included)');
my ($stop) = grep { ($_->{msg}{event} // '') eq 'stop' } @{ $t->{sent} };
ok(!$t->{close_frame} || $t->{close_frame}{t} >= $stop->{t},
   'no close during the reload (only after stop)');
stop_ok($t, [fake_wait($pos, sub { fake_close_of(\@_, $t->{conn}) })],
        'the call across the reload');
# (the master logs the exit once it has reaped the worker: wait for that)
my $deadline = Test::Voice::now() + 5;
Time::HiRes::sleep(0.05)
    until error_log_since_start() =~ /worker process $old exited/
          or Test::Voice::now() > $deadline;
like(error_log_since_start(), qr/worker process $old exited/,
     'the old worker exits once its call is over');
--- no_error_log
[error]



=== TEST 9: worker_shutdown_timeout 1s + reload -> both legs closed with 1001
--- master_on
--- main_config
worker_shutdown_timeout 1s;
--- timeout: 20
--- twilio_script
setup
media 3 interval=100
sync reload
media 40 interval=100 until_close
wait_close 1000
--- expect_twilio_close: 1001 by server
--- expect_openai_close: 1001
--- error_log eval
qr/voice: call ended, .*Twilio close 1001\/.*OpenAI close 1001\/.*reason "nginx is shutting down"/
--- perl_check
my $t = $_[2]{t};
my $took = secs($t->{syncs}{reload}, $t->{close_frame}{t});
ok($took < 2.5, "about 1s after the reload ($took s)");



=== TEST 10: a Twilio client that stops reading while OpenAI floods audio
The fake sends 2000 deltas of 8k (16 MB) at once; the client reads
nothing.  nginx must close the call with a log line once
voice_buffer_size (64k) is reached, and its memory must stay bounded; the
worker still serves the webhook and a new call afterwards.
--- openai_query: &flood=2000&size=8192
--- stream_config
voice_buffer_size 64k;
voice_max_message_size 16k;
--- timeout: 20
--- perl_check
my $pid = nginx_pid();
my $rss0 = vm_kb($pid, 'VmRSS');
my ($flood, $hwm);
my $pos = fake_pos();
my $t = twilio_call(engine => 'raw', keep_payloads => JSON::PP::false,
                    steps => [twilio_steps(<<'S')],
pause
setup
sync flooded
sync log:Twilio is not reading
sync measure
terminate
S
    on_sync => sub {
        my ($s) = @_;
        if ($s->{sync} eq 'flooded') {
            ($flood) = grep { $_->{ev} eq 'flooded' and $_->{conn} == $s->{conn} }
                       fake_wait($pos, sub { grep { $_->{ev} eq 'flooded' } @_ });
            return;
        }
        $hwm = vm_kb($pid, 'VmHWM');
        return;
    });
is_deeply([tw_errors($t)], [], 'the Twilio side ran its steps');
ok($flood, "the fake queued $flood->{bytes} bytes of deltas");
like(error_log_since_start(), qr/voice: Twilio is not reading/,
     'log line: Twilio is not reading');
# sanitizers and memcheck keep freed memory in quarantine: a wider bound
my $bound = (slow() || ($ENV{TEST_NGINX_BINARY} // '') =~ m{/asan/})
            ? 65536 : 8192;
cmp_ok($hwm - $rss0, '<', $bound, "nginx memory stayed bounded (peak +"
       . ($hwm - $rss0) . ' kB for ' . int($flood->{bytes} / 1024) . ' kB flooded)');
# The module pauses OpenAI (backpressure) and ends the call after
# voice_idle_timeout without progress; a close frame can only follow the
# audio the kernel already holds, so the client does not wait for it.
like(wait_call_ended($t->{call_sid}) // '', qr/reason "Twilio is not reading"/,
     'end line');
ok(fake_wait($pos, sub { fake_close_of(\@_, $t->{conn}) }), 'OpenAI leg closed');
my $body = 'CallSid=' . new_call_sid() . '&From=%2B15551234567';
my $r = http_post('/incoming-call', $body, headers => [
    'Content-Type' => 'application/x-www-form-urlencoded',
    'X-Twilio-Signature' => sign_twilio(undef,
        'https://voice.example.com/incoming-call', $body)]);
like($r->{body} // '', qr{/media-stream/[A-Za-z0-9_-]{20,}"}, 'the webhook still works');



=== TEST 11: Twilio goes away without a close frame (TCP FIN) -> OpenAI gets close 1000
After start and some audio.
--- twilio_script
setup
media 3 interval=100
terminate
--- expect_upgrade: 101
--- expect_openai_close: 1000
--- error_log eval
[qr/\[info\] .*voice: Twilio connection closed/,
 qr/voice: call ended, .*reason "Twilio gone"/]
--- no_error_log
[error]



=== TEST 12: Twilio goes away without a close frame (TCP RST) -> OpenAI gets close 1000
--- twilio_script
setup
media 3 interval=100
reset
--- expect_upgrade: 101
--- expect_openai_close: 1000
--- error_log eval
[qr/\[info\] .*voice: Twilio connection closed/,
 qr/voice: call ended, .*reason "Twilio gone"/]
--- no_error_log
[error]



=== TEST 13: 20 calls abandoned at random points
Before any frame, after connected, after start, mid-audio (half a frame
sent), after a close frame without waiting for the answer; by FIN or RST,
in random order once all 20 are in place.  Every call gets its end line,
every OpenAI leg is closed, nothing worse than [info] is logged, and nginx
still serves a full call.
--- timeout: 40
--- perl_check
srand(110111);
my @stages = qw(upgraded connected started mid-audio closing);
my (@calls, %by_stage);
for my $i (0 .. 19) {
    my $stage = $stages[int rand @stages];
    $by_stage{$stage}++;
    my @steps;
    push @steps, twilio_steps('connected') unless $stage eq 'upgraded';
    push @steps, twilio_steps("start\nawait_session")
        if $stage =~ /started|mid-audio|closing/;
    if ($stage eq 'mid-audio') {
        push @steps, twilio_steps('media ' . int(1 + rand 5));
        my $f = Protocol::WebSocket::Frame->new(buffer => '{"event":"media",'
            . '"media":{"payload":"' . b64('x' x 160) . '"}}', masked => 1)->to_bytes;
        push @steps, { bytes_b64 => b64(substr $f, 0, int(rand(length($f) - 1)) + 1) };
    }
    push @steps, twilio_steps('close 1000') if $stage eq 'closing';
    push @steps, { sync => 'staged' },
                 +{ (rand() < 0.5 ? 'reset' : 'terminate') => 1 };
    push @calls, { engine => 'raw', steps => \@steps, stage => $stage };
}
my $pos = fake_pos();
my @held;
my @t = twilio_calls(\@calls, timeout => 40, on_sync => sub {
    my ($s, $release) = @_;
    push @held, $s->{call};
    # each call's OpenAI leg is under way before it is abandoned
    fake_wait($pos, sub { @held <= grep { $_->{ev} eq 'connect' } @_ }, 5);
    if (@held == @calls) {
        $release->($_) for sort { rand() <=> 0.5 } @held;
    }
    return 'hold';
});
my @missing;
for my $i (0 .. $#t) {
    push @missing, "$calls[$i]{stage}: " . join(' ', tw_errors($t[$i]))
        if tw_errors($t[$i]);
    push @missing, "$calls[$i]{stage}: no end line"
        unless wait_call_ended($t[$i]{call_sid});
}
my @ev = fake_wait($pos, sub {
    my @c = map { $_->{conn} } grep { $_->{ev} eq 'connect' } @_;
    !grep { !fake_close_of(\@_, $_) } @c });
my @open = grep { !fake_close_of(\@ev, $_) }
           map { $_->{conn} } grep { $_->{ev} eq 'connect' } @ev;
push @missing, "OpenAI not closed (connection $_)" for @open;
note explain \%by_stage;
is_deeply(\@missing, [], 'all 20 calls: end line, OpenAI leg closed');
is(scalar(grep { $_->{ev} eq 'connect' } @ev), 20, 'one OpenAI leg each');
my $n = () = error_log_since_start() =~ /voice: call ended/g;
is($n, 20, '20 end lines, one per call');

$pos = fake_pos();
my $t = twilio_call(engine => 'raw', steps => [twilio_steps(
    "setup\nmedia\nsleep 200\nstop\nwait_close 3000")]);
is_deeply([tw_errors($t)], [], 'a new call afterwards');
@ev = fake_wait($pos, sub { fake_close_of(\@_, $t->{conn}) });
is(scalar(appended(\@ev, $t->{conn})), 2, 'relays audio');
stop_ok($t, \@ev, 'stop');
--- no_error_log
[error]
[warn]



=== TEST 14: the OpenAI leg stays in sync when the call ends mid-read
When a handler ends the call in the middle of a read (here the Twilio
buffer limit, hit while relaying an audio delta), the rest of the bytes
already read from OpenAI must not throw its WebSocket parser off: no
bogus framing error, and OpenAI's answer to the close 1000 is seen.
The client reads again only once the call has ended: read at once, the
megabytes the sockets hold may take it longer than the 2 s close timer
under load, and the end of the connection is then seen only when the
client next sends something (TEST 15 covers the end of such a call).
--- openai_query: &flood=2000&size=8192
--- stream_config
voice_buffer_size 64k;
voice_max_message_size 16k;
voice_idle_timeout 5s;
--- timeout: 20
--- twilio_call
keep_payloads: false
--- twilio_script
pause
setup
sync log:Twilio is not reading
sync log:voice: call ended
resume
wait_close 10000
--- expect_upgrade: 101
--- error_log eval
qr{voice: call ended, .*OpenAI close 1000/1000}
--- no_error_log
OpenAI sent a bad WebSocket frame
--- perl_check
ok($_[2]{t}{close}, 'the Twilio connection is closed');



=== TEST 15: a Twilio client that reads again only after the close timer is reset, not fed stale audio
The call ends for a Twilio client that stopped reading (as in TEST 14),
but the client reads again only after the 2 s close timer: nginx's socket
still holds megabytes of audio, with the close frame behind them or still
in the module's queue.  Closed with a FIN, the kernel went on offering all
of it for minutes: the client got hundreds of stale media messages and an
end without a close frame, or (under load) no end at all within 10 s.
The connection is reset instead: the client gets only what its own socket
already held, then the end, at once.
--- openai_query: &flood=2000&size=8192
--- stream_config
voice_buffer_size 64k;
voice_max_message_size 16k;
voice_idle_timeout 5s;
--- timeout: 30
--- twilio_call
keep_payloads: false
--- twilio_script
echo_marks off
pause
setup
sync log:Twilio is not reading
sleep 4000
resume
wait_close 10000
--- expect_upgrade: 101
--- perl_check
my $t = $_[2]{t};
is_deeply([tw_errors($t)], [], 'the Twilio side ran its steps');
my $sync = $t->{syncs}{'log:Twilio is not reading'};
ok($t->{close} && $sync && $t->{close}{t} - $sync < 4000 + 2000 * (1 + 2 * slow()),
   'the connection ended as soon as the client read again ('
   . ($t->{close} && $sync ? $t->{close}{t} - $sync - 4000 : '-') . ' ms)');
my $media = () = tw_recv($t, 'media');
cmp_ok($media, '<', 200,
       'no more audio than its own socket held reached the client');
like(wait_call_ended($t->{call_sid}) // '',
     qr{Twilio close 1011/0, OpenAI close 1000/1000, reason "Twilio is not reading"},
     'end line: no close reply from Twilio');
--- no_error_log
OpenAI sent a bad WebSocket frame
