# /health (voice_status health): a liveness check for Fly's check and the
# image's HEALTHCHECK (issue 10).  200 with
# {"status":"ok","version":"X.Y.Z","calls_active":N} and a line feed
# (src/ngx_voice_status.c), N the calls in progress in all workers; it does
# not fail on conditions that pass by themselves (a full token zone is a
# metric and a log line).  Like stub_status, the status locations answer
# GET and HEAD, and 405 to other methods.  voice_status needs the token
# zone (its counters live there) and takes "health" or nothing.
use Test::Voice;
use Test::VoiceCall;
use FindBin ();
use IO::Select ();
use JSON::PP ();
use Time::HiRes ();

# The version the module reports, as its source states it.
sub VERSION () {
    open my $fh, '<', "$FindBin::Bin/../src/ngx_voice_status.h" or die $!;
    local $/;
    return <$fh> =~ /#define NGX_VOICE_VERSION\s+"([^"]+)"/ ? $1 : die 'no version';
}

$ENV{TEST_NGINX_METRICS_PORT} = Test::Voice::pick_port();

# Before voice_setup(), so these come first (see t/140-metrics.t).
block_defaults(http_config => <<'HTTP');
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
voice_openai_api_key sk-test-key;
voice_ssl_trusted_certificate $TEST_NGINX_CA;

server {
    listen 127.0.0.1:$TEST_NGINX_METRICS_PORT;
    location = /health { voice_status health; }
    location = /metrics { voice_status; }
}
HTTP

voice_setup();

sub health {
    my (%o) = @_;
    return http_get('/health', port => $ENV{TEST_NGINX_METRICS_PORT}, %o);
}

# The body /health must answer with N calls active.
sub health_body { '{"status":"ok","version":"' . VERSION . '","calls_active":' . $_[0] . "}\n" }

sub metric {
    my ($name) = @_;
    my $r = http_get('/metrics', port => $ENV{TEST_NGINX_METRICS_PORT});
    return $r->{body} =~ /^\Q$name\E (\S+)$/m ? $1 : undef;
}

# Writes $bytes to the metrics listener and reads until it closes.
sub raw_exchange {
    my ($bytes) = @_;
    my $sock = Test::Voice::connect_to(port => $ENV{TEST_NGINX_METRICS_PORT});
    Test::Voice::write_all($sock, $bytes);
    my ($buf, $deadline) = ('', Time::HiRes::time() + 10);
    while (Time::HiRes::time() < $deadline) {
        last unless IO::Select->new($sock)->can_read($deadline - Time::HiRes::time());
        my $n = sysread $sock, $buf, 65536, length $buf;
        last unless $n;
    }
    close $sock;
    return $buf;
}

# A call webhook body as Twilio posts it.
sub call_body {
    my ($n) = @_;
    return sprintf('AccountSid=AC0123456789abcdef0123456789abcdef&CallSid=CA%032x', $n)
         . '&CallStatus=ringing&Direction=inbound&From=%2B15551234567&To=%2B15557654321';
}

run_tests();

__DATA__

=== TEST 1: GET /health: 200, application/json, the exact body
--- perl_check
like(VERSION, qr/^\d+\.\d+\.\d+$/, 'the source has a version X.Y.Z');
my $r = health();
is($r->{status}, 200, 'GET /health: 200');
is($r->{headers}{'content-type'}, 'application/json', 'Content-Type: application/json');
is($r->{body}, health_body(0), 'the body, byte for byte');
is($r->{headers}{'content-length'}, length $r->{body}, 'Content-Length is the body');
is_deeply(JSON::PP::decode_json($r->{body}),
          { status => 'ok', version => VERSION, calls_active => 0 }, 'valid JSON');
like($r->{body}, qr/"calls_active":0\}/, 'a JSON number, not a string');
--- no_error_log
[warn]
[error]



=== TEST 2: HEAD: the headers of GET, no body; POST, PUT, DELETE: 405 (as stub_status)
Both status locations, so a HEALTHCHECK with `curl -I` or a HEAD check works.
--- perl_check
my $p = $ENV{TEST_NGINX_METRICS_PORT};
for my $loc (qw(/health /metrics)) {
    my $get = http_get($loc, port => $p);
    my $head = http_request("HEAD $loc HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                            port => $p);
    is($head->{status}, 200, "HEAD $loc: 200");
    is($head->{headers}{'content-type'}, $get->{headers}{'content-type'},
       "HEAD $loc: the Content-Type of GET");
    is($head->{headers}{'content-length'}, $get->{headers}{'content-length'},
       "HEAD $loc: the Content-Length of GET");
    is($head->{body}, '', "HEAD $loc: no body");
    is($head->{raw} =~ /\r\n\r\n(.*)\z/s ? $1 : 'none', '', "HEAD $loc: nothing after the headers");
    for my $m (qw(POST PUT DELETE)) {
        my $r = http_request("$m $loc HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                             . "Content-Length: 5\r\n\r\nhello", port => $p);
        is($r->{status}, 405, "$m $loc: 405");
    }
}
# the connection stays usable after a 405 with a body (it was discarded)
my $raw = raw_exchange("POST /health HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello"
                       . "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
like($raw, qr{^HTTP/1\.1 405 }, 'POST then GET on one connection: 405 first');
like($raw, qr{</html>\r\nHTTP/1\.1 200 OK\r\n.*\r\n\r\n\Q${\ health_body(0)}\E\z}s,
     'then 200 and the health body');
--- no_error_log
[warn]
[error]



=== TEST 3: a full token zone: webhooks get 503, /health still 200, /metrics counts it
A 32k zone (the smallest) filled with distinct signed CallSids, as in
t/020-token.t: the full zone is an [error] line and a metric, not a
reason to fail the liveness check.
--- http_config
voice_token_zone tokens:32k ttl=60s;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
server {
    listen 127.0.0.1:$TEST_NGINX_METRICS_PORT;
    location = /health { voice_status health; }
    location = /metrics { voice_status; }
}
--- config
location = /incoming-call { voice_incoming_call; }
--- perl_check
my ($ok, $full) = (0, 0);
for my $i (1 .. 5000) {
    my $body = call_body(800000 + $i);
    my $r = http_post('/incoming-call', $body, headers => [
        'Host' => 'voice.example.com',
        'Content-Type' => 'application/x-www-form-urlencoded'],
        twilio_sign => 'https://voice.example.com/incoming-call');
    if ($r->{status} == 200) { $ok++; next }
    is($r->{status}, 503, 'the zone is full: 503');
    $full++;
    last;
}
cmp_ok($ok, '>=', 20, "$ok tokens fit first");
# two more refused
for my $i (1 .. 2) {
    my $r = http_post('/incoming-call', call_body(900000 + $i), headers => [
        'Host' => 'voice.example.com',
        'Content-Type' => 'application/x-www-form-urlencoded'],
        twilio_sign => 'https://voice.example.com/incoming-call');
    $full++ if $r->{status} == 503;
}
is($full, 3, 'three webhooks got 503');
my $h = health();
is($h->{status}, 200, '/health: still 200');
is($h->{body}, health_body(0), 'with its usual body');
is(metric('ngx_voice_webhooks_total{result="zone_full"}'), 3, 'zone_full counts the 503s');
is(metric('ngx_voice_webhooks_total{result="ok"}'), $ok, 'ok counts the tokens');
is(metric('ngx_voice_tokens_minted_total'), $ok, 'as minted does');
--- error_log eval
qr/\[error\] .*voice: could not allocate token in voice_token_zone "tokens": zone is full/
--- no_error_log
[warn]



=== TEST 4: calls_active is 1 while a call is up, in /health and /metrics, then 0
--- perl_check
my @during;
my $t = twilio_call(steps => [twilio_steps("setup\nsync up\nstop\nwait_close 3000\n")],
                    on_sync => sub { @during = (health()->{body}, metric('ngx_voice_calls_active')); undef });
is($t->{close}{code}, 1000, 'the call ran and was closed with 1000');
is($during[0], health_body(1), 'during the call: /health says calls_active 1');
is($during[1], 1, 'and /metrics too');
ok(wait_call_ended($t->{call_sid}), 'the call ended');
is(health()->{body}, health_body(0), 'after it: 0');
is(metric('ngx_voice_calls_active'), 0, 'in /metrics too');
--- no_error_log
[warn]
[error]



=== TEST 5: voice_status without voice_token_zone fails nginx -t, naming it
--- http_config
--- config
location = /metrics { voice_status; }
--- config_test
--- must_die
--- error_log eval
qr/\[emerg\] .*"voice_status" requires "voice_token_zone" in the http block in \S+nginx\.conf:\d+/



=== TEST 6: voice_status health without voice_token_zone fails nginx -t too
--- http_config
--- config
location = /health { voice_status health; }
--- config_test
--- must_die
--- error_log eval
qr/\[emerg\] .*"voice_status" requires "voice_token_zone"/



=== TEST 7: voice_status with another argument fails nginx -t
--- config
location = /health { voice_status healthy; }
--- config_test
--- must_die
--- error_log
[emerg]
invalid "voice_status" parameter "healthy": "health" or none expected



=== TEST 8: voice_status with two arguments fails nginx -t
--- config
location = /health { voice_status health health; }
--- config_test
--- must_die
--- error_log
[emerg]
invalid number of arguments in "voice_status" directive



=== TEST 9: voice_status at server level fails nginx -t
--- config
voice_status health;
--- config_test
--- must_die
--- error_log
[emerg]
"voice_status" directive is not allowed here



=== TEST 10: voice_status beside another voice role fails nginx -t
--- config
location = /health { voice_status health; voice_incoming_call; }
--- config_test
--- must_die
--- error_log
[emerg]
"voice_incoming_call" directive conflicts with another voice role in the same block



=== TEST 11: voice_status twice in a location fails nginx -t
--- config
location = /health { voice_status health; voice_status health; }
--- config_test
--- must_die
--- error_log
[emerg]
"voice_status" directive is duplicate
