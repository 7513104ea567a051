# The shared counters across the lives of worker processes:
#
#   - a reload that fails after the new zone was made (a resized
#     voice_token_zone, then a listen that cannot bind) leaves the running
#     workers and the ones the master starts later on the zone in use: a
#     worker that is killed and started again serves /health, /metrics and
#     calls (each worker takes the zone of its own cycle);
#   - ngx_voice_calls_active counts the calls of the workers alive: the
#     calls of a worker that died are not counted for ever.
use Test::Voice;
use FindBin ();
use IO::Socket::INET ();

require "$FindBin::Bin/lib/voice-call.pl";

voice_setup();

# the workers of the master, by their "start worker process" lines
sub worker_pids { Test::Voice::child_pids(nginx_pid()) }

sub health {
    my $r = http_get('/health');
    return ($r->{status} // 0, $r->{body} // '');
}

# waits until the master has started $n workers other than @gone
sub wait_workers {
    my ($n, @gone) = @_;
    my %gone = map { $_ => 1 } @gone;
    for (1 .. 100) {
        my @w = grep { !$gone{$_} } worker_pids();
        return @w if @w >= $n;
        Time::HiRes::sleep(0.05);
    }
    return;
}

add_block_preprocessor(sub {
    my ($block) = @_;
    my $config = $block->config // '';
    $block->set_value(config => $config . <<'CONF')
location = /health  { voice_status health; }
location = /metrics { voice_status; }
CONF
        unless $config =~ /voice_status/;
});

run_tests();

__DATA__

=== TEST 1: a failed reload with a resized zone, then a worker killed: the new worker serves
The reload makes a 2m zone, then fails on a port that is taken; the master
keeps the 1m zone.  The worker it starts after a SIGKILL must use that one.
--- master_on
--- perl_check
my $taken = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 1, ReuseAddr => 0) or die $!;
my $port = $taken->sockport;
my ($code) = health();
is($code, 200, 'health before the reload');
ok(!nginx_reload(http_config => <<"HTTP"), 'the reload fails');
voice_token_zone tokens:2m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
server { listen 127.0.0.1:$port; }
HTTP
my @old = worker_pids();
is(scalar @old, 1, 'one worker still runs');
kill 'KILL', @old;
my @new = wait_workers(1, @old);
is(scalar @new, 1, 'the master started another');
my $body;
($code, $body) = health();
is($code, 200, 'the new worker answers /health');
like($body, qr/^\{"status":"ok","version":"[^"]+","calls_active":0\}$/, 'with no call');
my $m = http_get('/metrics');
is($m->{status}, 200, 'and /metrics');
like($m->{body} // '', qr/^ngx_voice_calls_active 0$/m, 'calls_active 0');
my $t = twilio_call(steps => [twilio_steps("setup\nstop\nwait_close 3000")]);
is_deeply([tw_errors($t)], [], 'and a call');
is($t->{close}{code}, 1000, 'which ends normally');
unlike(error_log_since_start(), qr/exited on signal (?!9\b)/,
       'no worker died but the one killed');
--- error_log eval
[qr/\[emerg\] .*bind\(\) to 127\.0\.0\.1:\d+ failed/,
 qr/\[alert\] .*worker process \d+ exited on signal 9/]



=== TEST 2: the calls of a worker that died are not counted
A call runs in one of two workers; that worker is killed with SIGKILL.  The
gauge counted it while it ran, and counts nothing of it after.
--- master_on
--- workers: 2
--- config
listen 127.0.0.1:$TEST_NGINX_SERVER_PORT reuseport;
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&ctl=1;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- perl_check
my ($during, $after, $killed);
my $sid = new_call_sid();
my $t = twilio_call(call_sid => $sid, closed_ok => 1, steps => [twilio_steps(<<'S')],
setup
sync running
wait_close 5000
S
    on_sync => sub {
        # each worker answers /health the same: the gauge is shared
        $during = join ',', map { (health())[1] =~ /"calls_active":(\d+)/ ? $1 : '?' } 1 .. 4;
        ($killed) = call_stack_log($sid) =~ /^\S+ \S+ \[\w+\] (\d+)#/m;
        kill 'KILL', $killed if $killed;
        wait_workers(2, $killed);
        $after = join ',', map { (health())[1] =~ /"calls_active":(\d+)/ ? $1 : '?' } 1 .. 4;
        return;
    });
ok($killed, "the call ran in worker $killed");
is($during, '1,1,1,1', 'while it ran, every worker counted 1');
is($after, '0,0,0,0', 'after its worker died, 0');
like(http_get('/metrics')->{body} // '', qr/^ngx_voice_calls_active 0$/m,
     '/metrics says 0 too');
--- error_log eval
qr/\[alert\] .*worker process \d+ exited on signal 9/
