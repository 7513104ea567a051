# The life of a call after the upgrade: timers (voice_start_timeout,
# voice_idle_timeout with its pings both ways, voice_max_call_duration),
# nginx reloads (calls in progress finish in the old worker;
# worker_shutdown_timeout closes them with 1001), a Twilio client that
# stops reading while OpenAI floods audio (voice_buffer_size), Twilio going
# away without a close frame, and many calls abandoned at random points.
# Every call must end with its "voice: call ended" line and OpenAI closed.
#
# OpenAI is t/lib/fake-openai.js over real TLS with the hook
# t/lib/fake-openai-lifecycle.js (logs the pings it gets; ?nopong=1 stops
# answering them; ?flood=N sends N audio deltas at once).
#
# Blocks whose description starts with "# BUG:" show a defect of the module
# and fail until it is fixed; all other blocks pass.
use Test::Voice;
use Test::VoiceCall;
use FindBin ();
use MIME::Base64 ();
use Socket qw(SOL_SOCKET SO_LINGER);

fake_openai_start(script => "$FindBin::Bin/lib/fake-openai-lifecycle.js");

# --- helpers (package main, for the perl_check sections) --------------------

sub http_conf {
    return "voice_token_zone tokens:1m;\n"
         . "voice_public_url https://voice.example.com;\n"
         . "voice_twilio_auth_token 12345;\n";
}

# stream_conf($extra directives, $extra query for the OpenAI URL)
sub stream_conf {
    my ($extra, $query) = @_;
    return <<"EOF";
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:\$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime@{[ $query // '' ]};
    voice_openai_api_key sk-test;
    voice_ssl_trusted_certificate \$TEST_NGINX_OPENAI_CA;
    voice_start_timeout 2s;
    voice_idle_timeout 3s;
    @{[ $extra // '' ]}
}
EOF
}

sub now { Time::HiRes::time() }

sub audio { MIME::Base64::encode_base64(chr($_[0] % 256) x 160, '') }

sub appended {
    my ($conn) = @_;
    return map { $_->{msg}{audio} }
           grep { $_->{ev} eq 'message'
                  and ($_->{msg}{type} // '') eq 'input_audio_buffer.append' }
           fake_conn_events($conn);
}

sub fake_saw {     # messages of a type the fake got on $conn
    my ($conn, $type) = @_;
    return grep { $_->{ev} eq 'message' and ($_->{msg}{type} // '') eq $type }
           fake_conn_events($conn);
}

# Reads $ws for $secs: answers pings unless no_pong, sends a media message
# every `media` seconds if asked; returns the frames seen, each with {at}
# (seconds since the call); stops at a close frame or EOF.
sub converse {
    my ($call, $secs, %o) = @_;
    my $ws = $call->{ws};
    my ($end, $next, @frames) = (now() + $secs, now() + ($o{media} // 0));
    while (now() < $end and !$ws->{eof}) {
        if ($o{media} and now() >= $next) {
            $ws->send_text(media_json(audio($call->{seq}++)));
            $next += $o{media};
        }
        my $f = $ws->recv_frame(0.05) or next;
        $f->{at} = now();
        push @frames, $f;
        $ws->send_frame(type => 'pong', payload => $f->{payload})
            if $f->{opcode} == 9 and !$o{no_pong};
        last if $f->{opcode} == 8;
    }
    return @frames;
}

sub close_code_of { my ($f) = @_; $f && length $f->{payload} >= 2 ? unpack('n', $f->{payload}) : undef }

# Ends a healthy call with stop; checks the normal close on both legs.
sub stop_ok {
    my ($call, $what) = @_;
    $what //= 'stop';
    my $ws = $call->{ws};
    $ws->send_text(stop_json($call->{call_sid}));
    my ($code) = $ws->recv_close(5);
    is($code, 1000, "$what: Twilio gets close 1000");
    $ws->close(1000);
    ok($ws->wait_eof(5), "$what: nginx closes the connection");
    like(wait_call_end($call) // '', qr/reason "Twilio stop"/, "$what: call end line");
    my $c = fake_close_of(call_conn($call), 5);
    is($c && $c->{code}, 1000, "$what: OpenAI gets close 1000");
}

sub vm_kb {     # a field of /proc/PID/status, in kB
    my ($pid, $field) = @_;
    open my $fh, '<', "/proc/$pid/status" or return undef;
    while (<$fh>) { return $1 if /^$field:\s+(\d+) kB/ }
    return undef;
}

run_tests();

__DATA__

=== TEST 1: no start within voice_start_timeout (2s) -> 1008
One client sends nothing, one only "connected", one only pings (every
0.3s, which are answered but do not count as a start).  OpenAI's leg was
opened in parallel, but gets no session.update, and is closed.
--- http_config eval: http_conf()
--- config eval: stream_conf()
--- perl_check
my @calls = (open_call(), open_call(), open_call());
my $t0 = now();
call_conn($_) for @calls;
$calls[1]{ws}->send_text(connected_json());
my (%close, $pongs);
my $next_ping = now();
while (keys %close < 3 and now() < $t0 + 5) {
    if (!$close{2} and now() >= $next_ping) {
        $calls[2]{ws}->send_ping('still here');
        $next_ping += 0.3;
    }
    for my $i (grep { !$close{$_} } 0 .. 2) {
        my $f = $calls[$i]{ws}->recv_frame(0.02) or next;
        $pongs++ if $f->{opcode} == 10;
        $close{$i} = [close_code_of($f), now() - $t0] if $f->{opcode} == 8;
    }
}
ok($pongs >= 4, "the pings were answered ($pongs pongs)");
for my $i (0 .. 2) {
    my $call = $calls[$i];
    my ($code, $took) = @{$close{$i} // [undef, 99]};
    is($code, 1008, "call $i: close 1008");
    # memcheck makes the upgrade itself take a good part of the 2 s
    my $lo = $ENV{TEST_NGINX_USE_VALGRIND} ? 0.5 : 1.5;
    ok($took > $lo && $took < 3.5, "call $i: after about 2s ($took)");
    $call->{ws}->close(1008);
    ok($call->{ws}->wait_eof(3), "call $i: connection closed");
    like(call_log($call), qr/\[info\] [^\n]*voice: no Twilio start within voice_start_timeout/,
         "call $i: log line");
    like(wait_call_end($call) // '', qr/Twilio close 1008\/.*reason "no start"/,
         "call $i: end line");
    my $c = fake_close_of(call_conn($call), 5);
    ok($c, "call $i: OpenAI leg closed");
    is(scalar fake_saw(call_conn($call), 'session.update'), 0,
       "call $i: OpenAI never got session.update");
}
--- no_error_log
[error]



=== TEST 2: voice_idle_timeout (3s) on the Twilio side; pings both ways
After start both clients send nothing.  nginx pings each after a third of
the timeout; the one that answers with pongs stays up well past 3s, the
one that does not is closed after about 3s with a log line.  OpenAI, which
sends nothing after session.updated either, is pinged too (and its pongs
keep it alive).
--- http_config eval: http_conf()
--- config eval: stream_conf()
--- timeout: 15
--- perl_check
my ($alive, $dead) = (open_call(), open_call());
ok(start_call($_, wait => 1), 'call set up') for $alive, $dead;
my $t0 = now();
my (@a, @d);
while (now() < $t0 + 5.5) {
    push @a, converse($alive, 0.05);
    next if $dead->{ws}{eof} or grep { $_->{opcode} == 8 } @d;
    push @d, converse($dead, 0.05, no_pong => 1);
    $dead->{ws}->close(1011) if grep { $_->{opcode} == 8 } @d;   # answer the close
}
my @pings = grep { $_->{opcode} == 9 } @a;
ok(@pings >= 2, 'the client that answers gets pings (' . scalar(@pings) . ')');
my $first = @pings ? $pings[0]{at} - $t0 : 99;
ok($first >= 0.9 && $first < 2.5, "first ping after idle/3 to 2*idle/3 of silence ($first s)");
ok(!grep({ $_->{opcode} == 8 } @a), 'answering pongs keeps the call alive past 5s');
ok(!$alive->{ws}{eof}, 'its connection is still open');
my @oa_pings = grep { $_->{ev} eq 'ping' } fake_conn_events(call_conn($alive));
ok(@oa_pings >= 1, 'OpenAI, silent after session.updated, was pinged ('
                   . scalar(@oa_pings) . ')');
stop_ok($alive, 'the live call');

my ($close) = grep { $_->{opcode} == 8 } @d;
ok(grep({ $_->{opcode} == 9 } @d), 'the silent client was pinged too');
is(close_code_of($close), 1011, 'the silent client is closed with 1011');
my $took = $close ? $close->{at} - $t0 : 99;
ok($took >= 2.9 && $took < 4.6, "after idle to idle + idle/3 of silence ($took s)");
ok($dead->{ws}->wait_eof(3), 'its connection is closed');
like(call_log($dead), qr/\[info\] [^\n]*voice: Twilio sent nothing for \d+ ms \(voice_idle_timeout\)/,
     'log line for the idle client');
like(wait_call_end($dead) // '', qr/reason "Twilio idle"/, 'its end line');
is((fake_close_of(call_conn($dead), 5) // {})->{code}, 1000, 'its OpenAI leg closed with 1000');
--- no_error_log
[error]



=== TEST 3: an OpenAI that neither sends nor answers pings -> the call ends
The fake stops answering pings (?nopong=1) and sends nothing after
session.updated; Twilio keeps sending media.  nginx ends the call after
about 3s: Twilio gets 1011, with an [error] line about OpenAI.
--- http_config eval: http_conf()
--- config eval: stream_conf('', '&nopong=1')
--- timeout: 15
--- perl_check
my $call = open_call();
ok(start_call($call, wait => 1), 'call set up');
my $t0 = now();
my @frames = converse($call, 6, media => 0.2);
my ($close) = grep { $_->{opcode} == 8 } @frames;
is(close_code_of($close), 1011, 'Twilio gets close 1011');
my $took = $close ? $close->{at} - $t0 : 99;
ok($took >= 2.5 && $took < 5, "after about 3s ($took s)");
$call->{ws}->close(1011);
ok($call->{ws}->wait_eof(5), 'connection closed');
ok(scalar(grep { $_->{ev} eq 'ping' } fake_conn_events(call_conn($call))),
   'OpenAI was pinged');
like(call_log($call), qr/\[error\] [^\n]*voice: OpenAI sent nothing for \d+ ms \(voice_idle_timeout\)/,
     'log line');
like(wait_call_end($call) // '', qr/reason "OpenAI idle"/, 'end line');
ok(fake_close_of(call_conn($call), 5), 'OpenAI leg closed');
--- error_log
voice: OpenAI sent nothing for



=== TEST 4: voice_max_call_duration 2s -> both legs closed, Twilio 1000
The caller keeps talking; the call is cut at 2s.
--- http_config eval: http_conf()
--- config eval: stream_conf('voice_max_call_duration 2s;')
--- timeout: 15
--- perl_check
my $t0 = now();
my $call = open_call();
ok(start_call($call, wait => 1), 'call set up');
my @frames = converse($call, 5, media => 0.2);
my ($close) = grep { $_->{opcode} == 8 } @frames;
is(close_code_of($close), 1000, 'Twilio gets close 1000');
my $took = $close ? $close->{at} - $t0 : 99;
ok($took >= 1.9 && $took < 3, "at about 2s ($took s)");
$call->{ws}->close(1000);
ok($call->{ws}->wait_eof(3), 'connection closed');
ok(scalar(appended(call_conn($call))) >= 5, 'audio was relayed until then');
like(call_log($call), qr/\[info\] [^\n]*voice: voice_max_call_duration reached/, 'log line');
like(wait_call_end($call) // '', qr/reason "max call duration"/, 'end line');
is((fake_close_of(call_conn($call), 5) // {})->{code}, 1000, 'OpenAI gets close 1000');
--- no_error_log
[error]



=== TEST 5: nginx -s reload during a call: the old worker keeps relaying
Media sent after the reload still reaches OpenAI through the old worker,
the call ends normally on stop, then the old worker exits; a new call is
served by the new worker.
--- master_on
--- http_config eval: http_conf()
--- config eval: stream_conf()
--- timeout: 20
--- perl_check
my $call = open_call();
ok(start_call($call, wait => 1), 'call set up');
converse($call, 0.5, media => 0.1);
call_log($call) =~ /^\S+ \S+ \[\w+\] (\d+)#/m;
my $old = $1;
ok($old, "the call is in worker $old");
ok(nginx_reload(), 'reloaded');
my $before = () = appended(call_conn($call));
my @frames = converse($call, 1.5, media => 0.1);
ok(!grep({ $_->{opcode} == 8 } @frames), 'no close during the reload');
my $after = () = appended(call_conn($call));
ok($after >= $before + 10, "media after the reload relayed ($before -> $after)");
ok(kill(0, $old), 'the old worker is still there');

my $new = open_call();
ok(start_call($new, wait => 1), 'a new call after the reload');
call_log($new) =~ /^\S+ \S+ \[\w+\] (\d+)#/m;
isnt($1, $old, 'it is served by a new worker');
stop_ok($new, 'new call');

stop_ok($call, 'the call across the reload');
my $deadline = now() + 5;
Time::HiRes::sleep(0.05) while kill(0, $old) and now() < $deadline;
like(error_log_since_start(), qr/worker process $old exited/,
     'the old worker exits once its call is over');
--- no_error_log
[error]



=== TEST 6: worker_shutdown_timeout 1s + reload -> both legs closed with 1001
# BUG: when worker_shutdown_timeout fires, nginx sets c->close and calls
# the read handler of every connection.  For the Twilio connection that is
# ngx_http_request_handler(), which sees c->close and terminates the
# request itself (ngx_http_terminate_request) before
# r->read_event_handler could run, so the c->close branch of
# ngx_voice_call_twilio_read_handler() is never reached: only the cleanup
# handler runs, which sends 1001 to OpenAI but closes the Twilio TCP
# connection with no close frame at all.  End line: "Twilio close 0/0,
# OpenAI close 1001/0, reason "request terminated"".
--- master_on
--- main_config
worker_shutdown_timeout 1s;
--- http_config eval: http_conf()
--- config eval: stream_conf()
--- timeout: 20
--- perl_check
my $call = open_call();
ok(start_call($call, wait => 1), 'call set up');
converse($call, 0.3, media => 0.1);
ok(nginx_reload(), 'reloaded');
my $t0 = now();
my @frames = converse($call, 4, media => 0.1);
my ($close) = grep { $_->{opcode} == 8 } @frames;
is(close_code_of($close), 1001, 'Twilio gets close 1001');
my $took = $close ? $close->{at} - $t0 : 99;
ok($took < 2.5, "about 1s after the reload ($took s)");
$call->{ws}->close(1001) if $close;
ok($call->{ws}->wait_eof(3), 'connection closed');
is((fake_close_of(call_conn($call), 5) // {})->{code}, 1001, 'OpenAI gets close 1001');
like(wait_call_end($call) // '', qr/Twilio close 1001\/.*OpenAI close 1001\/.*reason "nginx is shutting down"/,
     'end line');



=== TEST 7: a Twilio client that stops reading while OpenAI floods audio
The fake sends 2000 deltas of 8k (16 MB) at once; the client reads
nothing.  nginx must close the call with a log line once
voice_buffer_size (64k) is reached, and its memory must stay bounded; the
worker still serves the webhook and a new call afterwards.
--- http_config eval: http_conf()
--- config eval: stream_conf("voice_buffer_size 64k;\nvoice_max_message_size 16k;", '&flood=2000&size=8192')
--- timeout: 20
--- perl_check
my $pid = nginx_pid();
my $rss0 = vm_kb($pid, 'VmRSS');
my $call = open_call();
setsockopt($call->{ws}->socket, SOL_SOCKET, Socket::SO_RCVBUF(), 4096);
ok(start_call($call, wait => 1), 'call set up');
my $flood = fake_wait(sub { (grep { $_->{ev} eq 'flooded' and $_->{conn} == call_conn($call) } @_)[0] }, 5);
ok($flood, "the fake queued $flood->{bytes} bytes of deltas");
my $deadline = now() + 6;
Time::HiRes::sleep(0.05)
    until call_log($call) =~ /Twilio is not reading/ or now() > $deadline;
like(call_log($call), qr/voice: Twilio is not reading/,
     'log line: Twilio is not reading');
my $hwm = vm_kb($pid, 'VmHWM');
# sanitizers and memcheck keep freed memory in quarantine: a wider bound
my $bound = ($ENV{TEST_NGINX_USE_VALGRIND}
             || ($ENV{TEST_NGINX_BINARY} // '') =~ m{/asan/}) ? 65536 : 8192;
cmp_ok($hwm - $rss0, '<', $bound, "nginx memory stayed bounded (peak +"
       . ($hwm - $rss0) . ' kB for ' . int($flood->{bytes} / 1024) . ' kB flooded)');
# The module pauses OpenAI (backpressure) and ends the call after
# voice_idle_timeout without progress; a close frame can only follow the
# audio the kernel already holds, so the client may not see it in time.
# (the kernel holds megabytes of audio for the client by then: draining
# them here would only measure Perl's frame decoder)
like(wait_call_end($call) // '', qr/reason "Twilio is not reading"/, 'end line');
ok(fake_close_of(call_conn($call), 5), 'OpenAI leg closed');
is(mint_call()->{token} =~ /^[A-Za-z0-9_-]{20,}$/ ? 1 : 0, 1, 'the webhook still works');



=== TEST 8: Twilio goes away without a close frame -> OpenAI gets close 1000
TCP FIN after start and some audio; then a TCP RST.
--- http_config eval: http_conf()
--- config eval: stream_conf()
--- perl_check
for my $rst (0, 1) {
    my $how = $rst ? 'RST' : 'FIN';
    my $call = open_call();
    ok(start_call($call, wait => 1), "$how: call set up");
    converse($call, 0.3, media => 0.1);
    setsockopt($call->{ws}->socket, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) if $rst;
    $call->{ws}->disconnect;
    my $c = fake_close_of(call_conn($call), 5);
    is($c && $c->{code}, 1000, "$how: OpenAI gets close 1000");
    like(call_log($call), qr/\[info\] [^\n]*voice: Twilio connection closed/, "$how: log line");
    like(wait_call_end($call) // '', qr/reason "Twilio gone"/, "$how: end line");
}
--- no_error_log
[error]



=== TEST 9: 20 calls abandoned at random points
Before any frame, after connected, after start, mid-audio (half a frame
sent), after a close frame without waiting for the answer; by FIN or RST.
Every call gets its end line, every OpenAI leg is closed, nothing worse
than [info] is logged, and nginx still serves a full call.
--- http_config eval: http_conf()
--- config eval: stream_conf()
--- timeout: 30
--- perl_check
srand(110111);
my @stages = qw(upgraded connected started mid-audio closing);
my @calls;
for my $i (0 .. 19) {
    my $call = open_call();
    my $stage = $stages[int rand @stages];
    $call->{stage} = $stage;
    my $ws = $call->{ws};
    call_conn($call);
    $ws->send_text(connected_json()) unless $stage eq 'upgraded';
    start_call($call, wait => 1) if $stage =~ /started|mid-audio|closing/;
    if ($stage eq 'mid-audio') {
        $ws->send_text(media_json(audio($_))) for 1 .. int(1 + rand 5);
        my $f = ws_frame(type => 'text', payload => media_json(audio(99)));
        $ws->send_raw(substr $f, 0, int(rand(length $f - 1)) + 1);
    }
    $ws->close(1000) if $stage eq 'closing';
    push @calls, $call;
}
for my $call (sort { rand() <=> 0.5 } @calls) {
    setsockopt($call->{ws}->socket, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) if rand() < 0.5;
    $call->{ws}->disconnect;
}
my (%by_stage, @missing);
for my $call (@calls) {
    $by_stage{$call->{stage}}++;
    my $end = wait_call_end($call, 5);
    my $c = fake_close_of(call_conn($call), 5);
    push @missing, "$call->{stage}: " . (!$end ? 'no end line' : 'OpenAI not closed')
        unless $end and $c;
}
note explain \%by_stage;
is_deeply(\@missing, [], 'all 20 calls: end line, OpenAI leg closed');
my $n = () = error_log_since_start() =~ /voice: call ended/g;
is($n, 20, '20 end lines, one per call');

my $call = open_call();
ok(start_call($call, wait => 1), 'a new call afterwards');
$call->{ws}->send_text(media_json(audio(7)));
ok(fake_wait(sub { appended(call_conn($call)) >= 1 }, 5), 'relays audio');
stop_ok($call);
--- no_error_log
[error]
[warn]



=== TEST 10: the OpenAI leg stays in sync when the call ends mid-read
# BUG: when a handler ends the call in the middle of a read (here the
# Twilio buffer limit, hit while relaying an audio delta),
# ngx_voice_peer_feed() returns NGX_ERROR and ngx_voice_peer_read() drops
# the rest of the bytes already read from OpenAI.  The WebSocket parser
# then resumes at a wrong offset: nginx logs a bogus "[error] voice:
# OpenAI sent a bad WebSocket frame: reserved bits set without an
# extension", never sees OpenAI's answer to its close 1000 (end line
# "OpenAI close 1000/0") and waits for the close timer instead.
--- http_config eval: http_conf()
--- config eval: stream_conf("voice_buffer_size 64k;\nvoice_max_message_size 16k;", '&flood=2000&size=8192')
--- timeout: 20
--- perl_check
my $call = open_call();
ok(start_call($call, wait => 1), 'call set up');
my $deadline = now() + 6;
Time::HiRes::sleep(0.05)
    until call_log($call) =~ /Twilio is not reading/ or now() > $deadline;
ok($call->{ws}->wait_eof(10), 'the Twilio connection is closed');
my $end = wait_call_end($call) // '';
unlike(call_log($call), qr/OpenAI sent a bad WebSocket frame/,
       'no bogus framing error from OpenAI');
like($end, qr{OpenAI close 1000/1000}, "OpenAI's answering close was seen");
--- no_error_log
OpenAI sent a bad WebSocket frame
