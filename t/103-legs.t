# The two legs of a call as an operator sees them:
#
#   - each OpenAI address gets its share of voice_connect_timeout, so an
#     address that swallows SYNs (a listener whose accept queue is full)
#     costs only its share and the next one is tried in time;
#   - every log line written for a call, on either leg, names its CallSid
#     (and StreamSid once known) in its context.
#
# A tiny DNS server (below) answers openai.test with 127.0.0.2 then
# 127.0.0.1; nginx's resolver keeps that order on a fresh answer.  On
# 127.0.0.2, at the fake OpenAI's port, listens a socket that is never
# accepted from, its backlog filled: Linux drops further SYNs to it.
use Test::Voice;
use FindBin ();
use IO::Socket::INET;
use Socket qw(:all);
use POSIX ();

require "$FindBin::Bin/lib/voice-call.pl";

voice_setup();

my $DnsPid;

# A one-question DNS server: A openai.test -> 127.0.0.2, 127.0.0.1.
sub start_dns {
    my $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                     Proto => 'udp')
        or die "dns: $!";
    my $port = $sock->sockport;
    my $pid = fork // die "fork: $!";
    if ($pid) {
        close $sock;
        return ($pid, $port);
    }
    while (1) {
        my $peer = $sock->recv(my $q, 512) // next;
        next if length $q < 17;
        my $id = substr $q, 0, 2;
        my $end = 12;
        $end += 1 + ord substr($q, $end, 1) while ord substr($q, $end, 1);
        my $question = substr $q, 12, $end + 5 - 12;
        my $type = unpack 'n', substr($q, $end + 1, 2);
        my @ips = $type == 1 ? ('127.0.0.2', '127.0.0.1') : ();
        my $answer = join '', map {
            pack('n n n N n', 0xc00c, 1, 1, 60, 4) . inet_aton($_)
        } @ips;
        $sock->send($id . pack('n n n n n', 0x8180, 1, scalar @ips, 0, 0)
                    . $question . $answer, 0, $peer);
    }
}

# A listener on 127.0.0.2 that never accepts, its queue filled.
my @Swallow;
sub swallow_syns {
    my ($port) = @_;
    socket(my $l, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
    setsockopt($l, SOL_SOCKET, SO_REUSEADDR, 1);
    bind($l, pack_sockaddr_in($port, inet_aton('127.0.0.2')))
        or die "bind 127.0.0.2:$port: $!";
    listen($l, 0) or die "listen: $!";
    push @Swallow, $l;
    for (1 .. 3) {          # fills the accept queue; later SYNs are dropped
        socket(my $c, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
        my $flags = fcntl($c, POSIX::F_GETFL(), 0);
        fcntl($c, POSIX::F_SETFL(), $flags | POSIX::O_NONBLOCK());
        connect($c, pack_sockaddr_in($port, inet_aton('127.0.0.2')));
        push @Swallow, $c;
    }
    Time::HiRes::sleep(0.2);
}

(my $dns_pid, $ENV{TEST_NGINX_DNS_PORT}) = start_dns();
$DnsPid = $dns_pid;
swallow_syns($ENV{TEST_NGINX_OPENAI_PORT});

END { kill 'KILL', $DnsPid if $DnsPid }

sub hello { ({ send => 'connected' }, { send => 'start' }) }

run_tests();

__DATA__

=== TEST 1: the first address swallows SYNs; the second is tried within voice_connect_timeout
4 s for two addresses: the first gets 2 s, then the second the rest.
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    resolver 127.0.0.1:$TEST_NGINX_DNS_PORT ipv6=off;
    resolver_timeout 2s;
    voice_connect_timeout 4s;
    voice_openai_url wss://openai.test:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- perl_check
my $pos = fake_pos();
my $t = twilio_call(timeout_ms => 8000, steps => [
    hello(),
    { send => 'media', count => 5 },
    { sleep => 3000 },
    { send => 'stop' },
    { wait_close => 6000 },
]);
is($t->{upgrade_status}, 101, 'upgraded');
is($t->{close}{code}, 1000, 'the call ended normally: Twilio stop, 1000');
my @ev = fake_wait($pos, sub { grep { $_->{ev} eq 'close' } @_ }, 5);
my ($connect) = oa_event(\@ev, 'connect');
ok($connect, 'the second address (127.0.0.1) was reached');
my @su = oa_msgs(\@ev, undef, 'session.update');
is(scalar @su, 1, 'the session was set up on it');
my ($start) = grep { ($_->{msg}{event} // '') eq 'start' } @{ $t->{sent} };
my $after = $connect->{t} - $start->{t};
ok($after > 1500 && $after < 3800,
   "connected after the first address's share, within the budget ($after ms)");
--- timeout: 20
--- error_log eval
[qr/\[error\] .*voice: connect\(\) to OpenAI at 127\.0\.0\.2:\d+ timed out/,
 qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/]
--- no_error_log
OpenAI connection not established



=== TEST 2: every line of a call names it, on both legs
The Twilio leg's lines (stop, close), the OpenAI leg's (an error event, its
close), and the end line: each carries ", CallSid: CA…" and, once start has
come, ", StreamSid: MZ…" after nginx's own context.
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&ctl=1;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- perl_check
my $t = twilio_call(steps => [
    hello(),
    { ctl => [{ send => { type => 'error',
                          error => { code => 'x_test', message => 'boom' } } }] },
    { sleep => 300 },
    { send => 'stop' },
    { wait_close => 3000 },
]);
is($t->{close}{code}, 1000, 'the call ended with Twilio stop');
my ($sid, $stream) = ($t->{call_sid}, $t->{stream_sid});
my $log = error_log_since_start();
my @lines = grep { /voice: (?:OpenAI error|Twilio stopped|Twilio closed|OpenAI closed|call ended|session ready)/ } split /\n/, $log;
cmp_ok(scalar @lines, '>=', 5, 'the call logged its lines') or diag $log;
for (@lines) {
    my ($what) = /(voice: [^,"]+)/;
    like($_, qr/, client: 127\.0\.0\.1, server: localhost, request: "GET \/media-stream\/\S+\.\.\. HTTP\/1\.1"/,
         "$what: nginx's context");
    like($_, qr/, CallSid: \Q$sid\E, StreamSid: \Q$stream\E$/,
         "$what: CallSid and StreamSid in the context");
}
--- error_log eval
[qr/\[warn\] .*voice: OpenAI error "x_test": boom/,
 qr/voice: call ended, CallSid CA\w+/]



=== TEST 3: the OpenAI leg's own failures name the call too, before start
Nothing listens on the OpenAI port: nginx's connect fails on the shared log;
start never comes, so there is no StreamSid yet.
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_CLOSED_PORT/v1/realtime?model=gpt-realtime;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- perl_check
my $t = twilio_call(steps => [{ send => 'connected' }, { wait_close => 3000 }]);
is($t->{close}{code}, 1011, 'Twilio gets 1011');
my $sid = $t->{call_sid};
my ($line) = grep { /voice: connect\(\) to OpenAI/ } split /\n/,
                  error_log_since_start();
like($line // '', qr/, CallSid: \Q$sid\E$/, 'the connect error names the call');
--- error_log eval
qr/\[error\] .*voice: connect\(\) to OpenAI at 127\.0\.0\.1:\d+ failed/



=== TEST 4: an "if" block inside a media-stream location keeps the location's role
An "if" in a location is a location of its own with no name; like
proxy_pass, the stream endpoint serves it too, with the same settings.
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
    if ($request_method = GET) { set $voice_test 1; }
}
--- perl_check
my $pos = fake_pos();
my $t = twilio_call(steps => [hello(), { send => 'media', count => 3 },
                              { sleep => 300 }, { send => 'stop' },
                              { wait_close => 3000 }]);
is($t->{upgrade_status}, 101, 'upgraded');
is($t->{close}{code}, 1000, 'the call ended with Twilio stop');
my @ev = fake_wait($pos, sub { grep { $_->{ev} eq 'close' } @_ });
is(scalar(oa_msgs(\@ev, undef, 'session.update')), 1,
   'the session was set up with the location\'s settings');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]



=== TEST 5: a media-stream location nested in another, with its own voice_openai_url
The inner location's host is the one checked in the certificate and sent
as SNI, not the outer one's.
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_stream_url wss://voice.example.com/v1/media-stream;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /v1/ {
    voice_media_stream;
    voice_openai_url wss://openai.example.invalid/v1/realtime;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
    resolver 127.0.0.1:$TEST_NGINX_DNS_PORT ipv6=off;

    location /v1/media-stream/ {
        voice_media_stream;
        voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime;
    }
}
--- perl_check
my $pos = fake_pos();
my $t = twilio_call(steps => [
    hello(), { sleep => 300 }, { send => 'stop' }, { wait_close => 3000 }]);
is($t->{upgrade_status}, 101, 'upgraded');
is($t->{close}{code}, 1000, 'the call ended with Twilio stop, not 1011');
my @ev = fake_wait($pos, sub { grep { $_->{ev} eq 'close' } @_ });
my ($c) = oa_event(\@ev, 'connect');
ok($c, 'the inner URL was reached');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
