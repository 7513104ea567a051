# Deploys that keep calls: nginx's graceful shutdown, as a reload
# (`nginx -s reload`) or a stop (`nginx -s quit`, the SIGQUIT that
# fly.toml's kill_signal and the image's STOPSIGNAL send), lets a call in
# progress run to its end in the old worker: audio still flows both ways,
# the call ends when the caller hangs up, and only then does the old
# worker (and, on quit, nginx) exit.  New calls after a reload go to the
# new workers.  When worker_shutdown_timeout passes first, the call is
# ended cleanly instead of cut: close 1001 to Twilio (which then plays
# voice_fallback_say or asks voice_call_action, whose answer is the
# fallback) after which nginx reads Twilio's close reply and ends the TCP
# connection with a FIN, 1001 to OpenAI, a [warn] line naming the call and
# the usual "call ended" line.
#
# Blocks that stop nginx run an nginx of their own (the block's
# nginx.conf, on another port, in servroot/own), as the harness's nginx
# must outlive its block.  The Twilio side is t/lib/twilio-call.js with its
# raw engine (it sees whether the connection ended with a FIN or a reset),
# OpenAI is t/lib/fake-openai.js over real TLS.  See t/lib/Test/VoiceCall.pm.
use Test::Voice;
use Test::VoiceCall;
use File::Path ();
use IPC::Run ();

voice_setup(twilio_call => { engine => 'raw' });

# --- helpers (package main, for the perl_check sections) --------------------

# The caller's audio sent after the sync $label that OpenAI did not get
# (on its connection $conn), as of the fake's events $ev.
sub lost_after {
    my ($t, $label, $ev, $conn) = @_;
    my %got = map { ($_->{audio} // '') => 1 }
              oa_msgs($ev, $conn, 'input_audio_buffer.append');
    my $since = $t->{syncs}{$label};
    my @sent = map { $_->{msg}{media}{payload} }
               grep { ($_->{msg}{event} // '') eq 'media' and !$_->{ctl}
                      and $_->{t} >= $since } @{ $t->{sent} };
    return (scalar @sent, scalar grep { !$got{$_} } @sent);
}

# Waits up to $secs (5) for $cond->(); its last value.
sub wait_for {
    my ($cond, $secs) = @_;
    my $deadline = Test::Voice::now() + ($secs // 5);
    my $v;
    Time::HiRes::sleep(0.05)
        until ($v = $cond->()) or Test::Voice::now() > $deadline;
    return $v;
}

sub slurp {
    my ($file) = @_;
    open my $fh, '<:raw', $file or return '';
    local $/;
    return <$fh> // '';
}

# The worker pid of the call $sid in $log (its "media stream accepted" line).
sub worker_in {
    my ($log, $sid) = @_;
    return $log =~ /\[\w+\] (\d+)#\d+: \*\d+ voice: media stream accepted for call \Q$sid\E\b/
        ? $1 : undef;
}

sub worker_of { worker_in(error_log_since_start(), $_[0]) }

# The "call ended" line of $sid in $log.
sub ended_in {
    my ($log, $sid) = @_;
    return (grep { /voice: call ended, CallSid \Q$sid\E,/ } split /\n/, $log)[0];
}

# Lines no clean run leaves (as the harness checks for its own nginx).
sub bad_lines {
    my ($log) = @_;
    return grep { /\[(?:alert|crit|emerg)\]|Sanitizer|runtime error:/ }
           split /\n/, $log;
}

sub port_open {
    my ($port) = @_;
    return !!IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                   Timeout => 1);
}

my %NginxEnv = (ASAN_OPTIONS => 'detect_leaks=0:detect_odr_violation=0',
                UBSAN_OPTIONS => 'print_stacktrace=1', %ENV);

# An nginx of the block's own nginx.conf on a port of its own, in
# servroot/own: {h, dir, port, log (error.log), pid (the master)}.
sub own_nginx {
    my $dir = servroot() . '/own';
    File::Path::remove_tree($dir);
    File::Path::make_path("$dir/conf", "$dir/logs");
    my $port = Test::Voice::pick_port();
    my $conf = slurp(servroot() . '/conf/nginx.conf');
    my $old = server_port();
    $conf =~ s/127\.0\.0\.1:$old\b/127.0.0.1:$port/g or die "no listen\n";
    open my $fh, '>', "$dir/conf/nginx.conf" or die $!;
    print $fh $conf;
    close $fh;
    my $h = IPC::Run::start(
        [$Test::Voice::Binary, '-p', "$dir/", '-c', 'conf/nginx.conf'],
        init => sub { %ENV = %NginxEnv },
        '<', '/dev/null', '>>', "$dir/logs/stdout.log",
        '2>>', "$dir/logs/stderr.log");
    my $n = { h => $h, dir => $dir, port => $port,
              log => "$dir/logs/error.log", pid => $h->{KIDS}[0]{PID} };
    # (no connection to find out: the worker's connection slots are
    # still taken in their order, see openai_leg_first())
    wait_for(sub { slurp($n->{log}) =~ /start worker process/ })
        or die "own nginx did not start:\n" . slurp("$dir/logs/stderr.log");
    return $n;
}

# `nginx -s quit` for it, as an operator (or a container stop) does.
sub own_quit {
    my ($n) = @_;
    my $out = IPC::Run::run(
        [$Test::Voice::Binary, '-p', "$n->{dir}/", '-c', 'conf/nginx.conf',
         '-s', 'quit'],
        init => sub { %ENV = %NginxEnv },
        '<', '/dev/null', '>', \my $o, '2>&1');
    return $out;
}

# Its exit status once it has exited (within $secs), else undef.
sub own_exit {
    my ($n, $secs) = @_;
    return undef unless Test::Voice::wait_exit($n->{h}, $secs);
    $n->{h}->finish;
    return $n->{h}->full_result(0);
}

sub own_kill {
    my ($n) = @_;
    return unless $n and $n->{h}->pumpable;
    kill 'KILL', Test::Voice::child_pids($n->{pid}), $n->{pid};
    $n->{h}->kill_kill;
}

# Makes the OpenAI connection of the next call come before its Twilio
# connection in nginx's connection array, the order in which
# worker_shutdown_timeout visits them.  In a worker that has not had a
# connection yet, two idle connections take the first two free slots in
# order; closed one after the other, they leave them to be taken again
# last-freed-first: the webhook's connection takes the higher and gives
# it back, the upgrade takes it again, the OpenAI leg the lower.
sub openai_leg_first {
    my ($port) = @_;
    my @s = map { IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                        PeerPort => $port) or die $! } 1, 2;
    for (@s) {
        Time::HiRes::sleep(0.2);
        close $_;
    }
    Time::HiRes::sleep(0.2);
}

# Which leg of call $sid nginx's shutdown timer visited first, from the
# debug log $log: "Twilio" or "OpenAI".
sub visited_first {
    my ($log, $sid) = @_;
    my ($tw) = $log =~ /\*(\d+) voice: media stream accepted for call \Q$sid\E\b/
        or return '?';
    my ($oa) = $log =~ /\*$tw connect to 127\.0\.0\.1:\d+, fd:\d+ #(\d+)/
        or return '?';
    my ($first) = grep { $_ == $tw || $_ == $oa }
                  $log =~ /\*(\d+) shutdown timeout/g;
    return !defined $first ? '?' : $first == $tw ? 'Twilio' : 'OpenAI';
}

# A signed POST to the call action location, as Twilio makes it when the
# stream ended.
sub call_action {
    my ($sid) = @_;
    my $body = "AccountSid=AC0123456789abcdef0123456789abcdef&CallSid=$sid"
             . '&CallStatus=in-progress';
    return http_post('/call-action', $body,
        twilio_sign => 'https://voice.example.com/call-action',
        headers => ['Content-Type' => 'application/x-www-form-urlencoded']);
}

run_tests();

__DATA__

=== TEST 1: nginx -s reload: the call goes on in the old worker, audio both ways, new calls in the new worker
After the reload the caller's media still reaches OpenAI and the model's
audio still reaches the caller, through the old worker (which has logged
"gracefully shutting down").  A call made then is served by a new worker.
The call ends normally when the caller hangs up; then the old worker exits.
--- master_on
--- timeout: 30
--- perl_check
my ($old, $new);
my $sid = new_call_sid();
my $pos = fake_pos();
my $t = twilio_call(engine => 'raw', call_sid => $sid, steps => [twilio_steps(<<'S')],
setup
media 5 interval=20
sync before
sync reload
media 10 interval=20
ctl {"deltas": {"n": 2}}
wait media 2
sync after
stop
wait_close 3000
S
    on_sync => sub {
        my ($s) = @_;
        if ($s->{sync} eq 'before') {
            $old = worker_of($sid);
            return;
        }
        like(error_log_since_start(), qr/\[notice\] $old#\d+: gracefully shutting down/,
             'the old worker was told to quit');
        ok(kill(0, $old), 'and is still there');
        my $npos = fake_pos();
        $new = twilio_call(engine => 'raw', steps => [twilio_steps("setup\nstop\nwait_close 3000")]);
        is_deeply([tw_errors($new)], [], 'a call made after the reload');
        is($new->{close}{code}, 1000, 'it ends normally');
        my $nw = worker_of($new->{call_sid});
        ok($nw && $nw != $old, "it is served by a new worker ($nw, not $old)");
        like(wait_call_ended($new->{call_sid}) // '',
             qr/^\S+ \S+ \[info\] $nw#\d+: .*reason "Twilio stop"/,
             'its end line, from the new worker');
        return;
    });
ok($old, "the call ran in worker $old");
is_deeply([tw_errors($t)], [], 'the call ran its steps, the reload included');
my @ev = fake_wait($pos, sub { fake_close_of(\@_, $t->{conn}) });
is_deeply([lost_after($t, 'reload', \@ev, $t->{conn})], [10, 0],
          'the 10 media sent after the reload all reached OpenAI');
my ($stop) = grep { ($_->{msg}{event} // '') eq 'stop' } @{ $t->{sent} };
is(scalar(tw_recv($t, 'media')), 2, 'the model audio sent after the reload reached the caller');
ok($t->{close_frame} && $t->{close_frame}{t} >= $stop->{t},
   'nginx closed the stream only after the caller hung up');
is($t->{close}{code}, 1000, 'with 1000');
ok(!$t->{close}{reset}, 'and a FIN, not a reset');
is((fake_close_of(\@ev, $t->{conn}) // {})->{code}, 1000, 'OpenAI got close 1000');
like(wait_call_ended($sid) // '',
     qr/^\S+ \S+ \[info\] $old#\d+: .*Twilio close 1000\/1000, OpenAI close 1000\/1000, reason "Twilio stop"/,
     'the end line, from the old worker');
ok(wait_for(sub { error_log_since_start() =~ /worker process $old exited with code 0/ }),
   'then the old worker exits');
--- no_error_log eval
[qr/\[(?:warn|error)\]/, 'shutting down and worker_shutdown_timeout']



=== TEST 2: nginx -s quit: the call goes on until the caller hangs up, then nginx exits
nginx stops listening at once, but the call keeps relaying both ways;
nginx exits (status 0, nothing left open) only after it ended normally.
--- master_on
--- timeout: 30
--- perl_check
my $n = own_nginx();
my $sid = new_call_sid();
my $pos = fake_pos();
my $t = eval { twilio_call(engine => 'raw', call_sid => $sid, port => $n->{port}, steps => [twilio_steps(<<'S')],
setup
media 5 interval=20
sync quit
media 10 interval=20
ctl {"deltas": {"n": 2}}
wait media 2
sync during
stop
wait_close 3000
S
    on_sync => sub {
        my ($s) = @_;
        if ($s->{sync} eq 'quit') {
            ok(own_quit($n), 'nginx -s quit');
            ok(wait_for(sub { slurp($n->{log}) =~ /gracefully shutting down/ }),
               'the worker is shutting down');
            return;
        }
        ok(kill(0, $n->{pid}), 'nginx is still running');
        ok(!port_open($n->{port}), 'but no longer accepts connections');
        return;
    }) };
my $err = $@;
my $status = own_exit($n, 10);
own_kill($n);
die $err if $err;
my $log = slurp($n->{log});
is_deeply([tw_errors($t)], [], 'the call ran its steps, the quit included');
my @ev = fake_wait($pos, sub { fake_close_of(\@_, $t->{conn}) });
is_deeply([lost_after($t, 'quit', \@ev, $t->{conn})], [10, 0],
          'the 10 media sent after the quit all reached OpenAI');
is(scalar(tw_recv($t, 'media')), 2, 'the model audio sent after the quit reached the caller');
my ($stop) = grep { ($_->{msg}{event} // '') eq 'stop' } @{ $t->{sent} };
ok($t->{close_frame} && $t->{close_frame}{t} >= $stop->{t},
   'nginx closed the stream only after the caller hung up');
is($t->{close}{code}, 1000, 'with 1000');
is((fake_close_of(\@ev, $t->{conn}) // {})->{code}, 1000, 'OpenAI got close 1000');
like(ended_in($log, $sid) // '',
     qr/Twilio close 1000\/1000, OpenAI close 1000\/1000, reason "Twilio stop"/,
     'the end line');
is($status, 0, 'then nginx exits, status 0');
like($log, qr/\[notice\] \d+#\d+: exit\n(?:.*\n)*.*\[notice\] \d+#\d+: exit\n/,
     'the worker and the master exited');
unlike($log, qr/\[(?:warn|error)\]/, 'no [warn] or [error] line');
is_deeply([bad_lines($log . slurp("$n->{dir}/logs/stderr.log"))], [],
          'no [alert] (an open socket left), [crit], [emerg] or sanitizer report');



=== TEST 3: worker_shutdown_timeout 2s after a reload, the Twilio leg visited first: close 1001 to both legs, a [warn] line
The caller keeps talking; 2 s after the reload the old worker ends the
call: Twilio gets close 1001 (and then plays voice_fallback_say), answers
it, and nginx then ends the TCP connection with a FIN; OpenAI gets 1001
and its close reply is read too.  The webhook's connection is closed
before the upgrade, so nginx's shutdown timer visits the Twilio
connection first.
--- master_on
--- main_config
worker_shutdown_timeout 2s;
--- config
voice_fallback_say "We are updating the service. Please call again.";
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&ctl=1;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- timeout: 30
--- perl_check
my $sid = new_call_sid();
my $pos = fake_pos();
my $t = twilio_call(engine => 'raw', call_sid => $sid, upgrade_delay_ms => 300,
                    steps => [twilio_steps(<<'S')]);
setup
media 3 interval=20
sync reload
media 400 interval=20 until_close
wait_close 3000
S
is_deeply([tw_errors($t)], [], 'the call ran its steps');
like($t->{twiml}, qr{</Connect><Say>We are updating the service\. Please call again\.</Say></Response>$},
     'the TwiML: Twilio says voice_fallback_say when the stream ends');
my $took = ($t->{close_frame}{t} // 0) - $t->{syncs}{reload};
ok($took >= 1500 && $took < 5000, "the stream closed about 2 s after the reload ($took ms)");
is($t->{close_frame}{code}, 1001, 'Twilio got close 1001 (going away)');
is($t->{close}{by}, 'server', 'from nginx');
ok(!$t->{close}{reset}, 'nginx ended the connection with a FIN, not a reset');
my @ev = fake_wait($pos, sub { fake_close_of(\@_, $t->{conn}) });
is((fake_close_of(\@ev, $t->{conn}) // {})->{code}, 1001, 'OpenAI got close 1001');
my $line = wait_call_ended($sid) // '';
like($line, qr/\[info\] .*Twilio close 1001\/1001, OpenAI close 1001\/1001, reason "nginx is shutting down"/,
     'the end line: both close replies read');
my $w = worker_of($sid);
my $log = error_log_since_start();
is(visited_first($log, $sid), 'Twilio', 'the shutdown timer visited the Twilio leg first');
like($log,
     qr/\[warn\] $w#\d+: \*\d+ voice: call ended: nginx is shutting down and worker_shutdown_timeout has passed while relaying a voice call, client: 127\.0\.0\.1, .*CallSid: \Q$sid\E\b/,
     'the [warn] line names the call');
ok(wait_for(sub { error_log_since_start() =~ /worker process $w exited with code 0/ }),
   'the old worker exits');
--- no_error_log
[error]



=== TEST 4: nginx -s quit with worker_shutdown_timeout 2s (the Fly.io stop, shortened), the OpenAI leg visited first: the call is closed cleanly, nginx exits
The call does not end by itself; 2 s after the quit nginx ends it: 1001
to Twilio (close reply read, then a FIN), 1001 to OpenAI, the [warn] line,
and nginx exits with status 0, no socket left open.  This time the
shutdown timer visits the OpenAI connection first.
--- master_on
--- main_config
worker_shutdown_timeout 2s;
--- config
voice_fallback_say "We are updating the service. Please call again.";
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&ctl=1;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- timeout: 30
--- perl_check
my $n = own_nginx();
my $sid = new_call_sid();
my $pos = fake_pos();
my $quit;
openai_leg_first($n->{port});
my $t = eval { twilio_call(engine => 'raw', call_sid => $sid, port => $n->{port},
                           upgrade_delay_ms => 300, steps => [twilio_steps(<<'S')],
setup
media 3 interval=20
sync quit
media 400 interval=20 until_close
wait_close 3000
S
    on_sync => sub {
        $quit = Test::Voice::now();
        ok(own_quit($n), 'nginx -s quit');
        return;
    }) };
my $err = $@;
my $status = own_exit($n, 10);
own_kill($n);
die $err if $err;
my $log = slurp($n->{log});
is_deeply([tw_errors($t)], [], 'the call ran its steps');
like($t->{twiml}, qr{</Connect><Say>We are updating the service\. Please call again\.</Say></Response>$},
     'the TwiML: Twilio says voice_fallback_say when the stream ends');
my $took = ($t->{close_frame}{t} // 0) / 1000 - $quit;
ok($took >= 1.5 && $took < 5, "the stream closed about 2 s after the quit ($took s)");
is($t->{close_frame}{code}, 1001, 'Twilio got close 1001 (going away)');
is($t->{close}{by}, 'server', 'from nginx');
ok(!$t->{close}{reset}, 'a FIN, not a reset');
my @ev = fake_wait($pos, sub { fake_close_of(\@_, $t->{conn}) });
is((fake_close_of(\@ev, $t->{conn}) // {})->{code}, 1001, 'OpenAI got close 1001');
like(ended_in($log, $sid) // '',
     qr/\[info\] .*Twilio close 1001\/1001, OpenAI close 1001\/1001, reason "nginx is shutting down"/,
     'the end line');
is(visited_first($log, $sid), 'OpenAI', 'the shutdown timer visited the OpenAI leg first');
like($log, qr/\[warn\] \d+#\d+: \*\d+ voice: call ended: nginx is shutting down and worker_shutdown_timeout has passed while relaying a voice call, client: 127\.0\.0\.1, .*CallSid: \Q$sid\E\b/,
     'the [warn] line names the call');
is($status, 0, 'nginx exits, status 0');
is_deeply([bad_lines($log . slurp("$n->{dir}/logs/stderr.log"))], [],
          'no [alert] (an open socket left), [crit], [emerg] or sanitizer report');
unlike($log, qr/\[error\]/, 'no [error] line');



=== TEST 5: a call ended by worker_shutdown_timeout: Twilio's request to the call action, served by a new worker, gets the fallback
With <Connect action>, Twilio asks the action location when the stream
ends rather than going on with the TwiML.  The old worker recorded the
call's end in the zone, which survives the reload; a new worker answers
voice_fallback_say then <Hangup/>.  /metrics counts it as a shutdown.
--- master_on
--- main_config
worker_shutdown_timeout 2s;
--- config
voice_fallback_say "We are updating the service. Please call again.";
voice_call_action_url /call-action;
location = /incoming-call { voice_incoming_call; }
location = /call-action { voice_call_action; }
location = /metrics { voice_status; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&ctl=1;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- timeout: 30
--- perl_check
my $sid = new_call_sid();
my $t = twilio_call(engine => 'raw', call_sid => $sid, steps => [twilio_steps(<<'S')]);
setup
sync reload
media 400 interval=20 until_close
wait_close 3000
S
is_deeply([tw_errors($t)], [], 'the call ran its steps');
like($t->{twiml}, qr{^<Response><Connect action="https://voice\.example\.com/call-action"><Stream url="wss://voice\.example\.com/media-stream/[A-Za-z0-9_-]{43}"/></Connect><Say>We are updating the service\. Please call again\.</Say></Response>$},
     'the TwiML: Twilio asks the action location when the stream ends');
is($t->{close_frame}{code}, 1001, 'Twilio got close 1001');
like(wait_call_ended($sid) // '', qr/reason "nginx is shutting down"/, 'the end line');
my $w = worker_of($sid);
my $r = call_action($sid);
is($r->{status}, 200, 'the call action: 200');
is($r->{body}, '<Response><Say>We are updating the service. Please call again.</Say><Hangup/></Response>',
   'the fallback, then <Hangup/>');
like(error_log_since_start(),
     qr/\[info\] (?!$w#)\d+#\d+: \*\d+ voice: call action for call \Q$sid\E: no outcome recorded, the fallback/,
     'answered by a new worker');
my $m = http_get('/metrics')->{body} // '';
like($m, qr/^ngx_voice_calls_total\{reason="shutdown"\} 1$/m, 'counted as a shutdown in /metrics');
like($m, qr/^ngx_voice_calls_active 0$/m, 'and no longer active');
--- no_error_log
[error]



=== TEST 6: worker_shutdown_timeout while the OpenAI leg still waits for its handshake: the call is ended, not an OpenAI failure
The fake accepts TLS but never answers the WebSocket handshake (hang=1);
voice_connect_timeout is long.  The caller, started, keeps talking; 2 s
after the reload the Twilio leg gets 1001, the OpenAI connection is
dropped, and the log says shutdown, not an OpenAI failure.
--- master_on
--- main_config
worker_shutdown_timeout 2s;
--- stream_config
voice_connect_timeout 20s;
voice_start_timeout 20s;
--- openai_query: &hang=1
--- timeout: 30
--- twilio_script
hello
media 3 interval=20
sync reload
media 400 interval=20 until_close
wait_close 3000
--- expect_twilio_close: 1001 by server
--- expect_openai
nothing
--- error_log eval
[qr/\[warn\] .*voice: call ended: nginx is shutting down and worker_shutdown_timeout has passed while relaying a voice call, .*CallSid: CA/,
 qr/\[info\] .*voice: call ended, .*Twilio close 1001\/1001, OpenAI close 0\/0, reason "nginx is shutting down"/]
--- no_error_log
[error]
--- perl_check
my ($t, $ev) = @{ $_[2] }{qw(t ev)};
ok(!$t->{close}{reset}, 'nginx ended the connection with a FIN, not a reset');
my @c = oa_event($ev, 'connect');
is(scalar @c, 1, 'the OpenAI leg had connected (TLS)');
