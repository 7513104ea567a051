# /metrics (voice_status): the Prometheus text format 0.0.4, aggregated
# over all workers in the token zone's shared memory (issue 10).  Every
# block runs two workers behind one reuseport listener, so calls, webhooks
# and scrapes spread over both; the metrics are served on a private
# listener of their own, as nginx.conf.example does.  Each block starts a
# fresh nginx (fresh counters), does known things, scrapes, and checks
# every number exactly.
#
# What the module counts as a frame, and which bytes (src/ngx_voice_peer.c,
# ngx_voice_peer_queue; src/ngx_voice_call_end.c, add_counts): every
# WebSocket frame nginx queues for a leg -- data frames and the control
# frames it sends (ping, pong, close) -- and for each the bytes of the
# whole frame: its header (2, 4 or 10 bytes, plus the 4-byte mask key on
# the OpenAI leg, where nginx is the client and masks) and its payload.
# The HTTP handshakes are not frames.  A call adds its counts to the shared
# totals about once a second and at its end, so a worker that ends a call
# has added exactly that call's frames.
use Test::Voice;
use Test::VoiceCall;
use FindBin ();
use IO::Socket::INET ();
use IPC::Run ();
use JSON::PP ();
use MIME::Base64 ();
use Time::HiRes ();

workers(2);
master_on();

$ENV{TEST_NGINX_METRICS_PORT} = Test::Voice::pick_port();

# Before voice_setup(): these defaults go in first, and VoiceCall's own
# (a call's default http_config and config) only where a block has none.
block_defaults(http_config => <<'HTTP', config => <<'CONF');
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
voice_openai_api_key sk-test-key;
voice_ssl_trusted_certificate $TEST_NGINX_CA;

# the private listener: never on the public webhook server
server {
    listen 127.0.0.1:$TEST_NGINX_METRICS_PORT reuseport;
    location = /metrics { voice_status; add_header X-Pid $pid always; }
    location = /health { voice_status health; add_header X-Pid $pid always; }
}
HTTP
listen 127.0.0.1:$TEST_NGINX_SERVER_PORT reuseport;
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&ctl=1;
    add_header X-Pid $pid always;
}
CONF

voice_setup();

# A fake OpenAI of our own that also logs the size of every frame it gets
# (t/lib/frame-sizes.js): the bytes of a call, as they were on the wire.
{
    my $port = Test::Voice::pick_port();
    my $log = "$Test::VoiceCall::VoiceDir/fake-sizes.log";
    my $certs = "$Test::VoiceCall::VoiceDir/certs";
    open my $fh, '>', $log or die "$log: $!";
    close $fh;
    local $ENV{FAKE_OPENAI_LOG} = $log;
    local $ENV{NODE_PATH} = "$FindBin::Bin/node_modules";
    my $h = IPC::Run::start(
        ['node', "$FindBin::Bin/lib/fake-openai.js", $port, "$certs/server.pem",
         "$certs/server.key", "$FindBin::Bin/lib/frame-sizes.js"],
        '<', \undef, '>', "$Test::VoiceCall::VoiceDir/fake-sizes.stdout",
        '2>', "$Test::VoiceCall::VoiceDir/fake-sizes.stderr");
    my $deadline = Time::HiRes::time() + 10;
    until (-s $log) {
        die "fake-openai.js (sizes) did not start\n"
            if Time::HiRes::time() > $deadline or !$h->pumpable;
        Time::HiRes::sleep(0.02);
    }
    # known to fake_events() and stopped at the end like the others
    $Test::VoiceCall::Fake{sizes} = { h => $h, port => $port, log => $log };
    $ENV{TEST_NGINX_OPENAI_SIZES_PORT} = $port;
}

# --- the metrics, as the issue names them --------------------------------------

sub REASONS () { qw(unknown caller_hangup openai_closed openai_failed
                 start_timeout idle_timeout max_duration protocol_error
                 backpressure message_too_big shutdown model_hangup
                 model_transfer internal_error) }
sub WEBHOOK () { qw(ok bad_signature rejected_caller bad_request zone_full repeat) }
sub UPGRADE () { qw(ok bad_request bad_signature bad_token) }
sub STAGES () { qw(dns connect tls handshake http_status) }
sub DIRS () { qw(to_openai to_twilio) }
sub LE () { qw(0.010 0.025 0.050 0.100 0.250 0.500 1.000 2.500 5.000 10.000 +Inf) }

# name => type, in the order they are served
sub FAMILIES () {
    (ngx_voice_calls_active => 'gauge',
     ngx_voice_calls_total => 'counter',
     ngx_voice_webhooks_total => 'counter',
     ngx_voice_tokens_minted_total => 'counter',
     ngx_voice_tokens_consumed_total => 'counter',
     ngx_voice_tokens_expired_total => 'counter',
     ngx_voice_tokens_refused_total => 'counter',
     ngx_voice_upgrades_total => 'counter',
     ngx_voice_upstream_failures_total => 'counter',
     ngx_voice_call_setup_seconds => 'histogram',
     ngx_voice_frames_total => 'counter',
     ngx_voice_bytes_total => 'counter',
     ngx_voice_barge_ins_total => 'counter',
     ngx_voice_dtmf_total => 'counter',
     ngx_voice_openai_errors_total => 'counter');
}

# Every sample of a scrape, each 0 (the histogram's _sum as "0.000").
sub all_zero {
    my %s = (ngx_voice_calls_active => 0);
    $s{qq(ngx_voice_calls_total{reason="$_"})} = 0 for REASONS;
    $s{qq(ngx_voice_webhooks_total{result="$_"})} = 0 for WEBHOOK;
    $s{"ngx_voice_tokens_${_}_total"} = 0 for qw(minted consumed expired refused);
    $s{qq(ngx_voice_upgrades_total{result="$_"})} = 0 for UPGRADE;
    $s{qq(ngx_voice_upstream_failures_total{stage="$_"})} = 0 for STAGES;
    $s{qq(ngx_voice_call_setup_seconds_bucket{le="$_"})} = 0 for LE;
    $s{ngx_voice_call_setup_seconds_sum} = '0.000';
    $s{ngx_voice_call_setup_seconds_count} = 0;
    for my $d (DIRS) {
        $s{qq(ngx_voice_frames_total{direction="$d"})} = 0;
        $s{qq(ngx_voice_bytes_total{direction="$d"})} = 0;
    }
    $s{"ngx_voice_${_}_total"} = 0 for qw(barge_ins dtmf openai_errors);
    return %s;
}

# GET /metrics on the private listener: (response, {sample => value},
# {family => help}, {family => type}, [lines not understood]).
sub scrape {
    my ($path) = @_;
    my $r = http_get($path // '/metrics', port => $ENV{TEST_NGINX_METRICS_PORT});
    my (%v, %help, %type, @bad);
    for (split /\n/, $r->{body} // '') {
        if (/^# HELP (\S+) (\S.*)$/) { $help{$1} = $2 }
        elsif (/^# TYPE (\S+) (\S+)$/) { $type{$1} = $2 }
        elsif (/^([a-z_]+(?:\{[a-z_]+="[^"]*"\})?) (\S+)$/) {
            push @bad, "$_ (twice)" if exists $v{$1};
            $v{$1} = $2;
        }
        else { push @bad, $_ }
    }
    return ($r, \%v, \%help, \%type, \@bad);
}

# The samples of a scrape, and what a test expects: the differences.
sub samples_are {
    my ($got, $want, $name) = @_;
    my @diff;
    for my $k (sort keys %{ { %$got, %$want } }) {
        my ($g, $w) = ($got->{$k}, $want->{$k});
        push @diff, sprintf('%s: got %s, expected %s', $k, $g // 'none', $w // 'none')
            unless defined $g and defined $w and $g eq $w;
    }
    ok(!@diff, $name) or diag join "\n", @diff;
}

# promtool check metrics on a body: (ok, output); undef without promtool.
sub promtool_check {
    my ($body) = @_;
    chomp(my $promtool = `command -v promtool 2>/dev/null`);
    return undef unless $promtool;
    my ($out, $err);
    IPC::Run::run([$promtool, 'check', 'metrics'], '<', \$body, '>', \$out,
                  '2>', \$err);
    return ($? == 0, "$out$err");
}

# --- a Twilio side in Perl, for the calls whose frames are counted -------------
#
# t/lib/twilio-call.js keeps the messages it got, not the frames: this one
# keeps every frame nginx sent (opcode and payload), so its bytes can be
# added up as they were on the wire.

my $JSON = JSON::PP->new->canonical;

sub call_body {
    my ($sid) = @_;
    return "AccountSid=AC0123456789abcdef0123456789abcdef&CallSid=$sid"
         . '&CallStatus=ringing&Direction=inbound'
         . '&From=%2B15551234567&To=%2B15557654321';
}

# The signed webhook, then the signed upgrade to the TwiML's Stream URL:
# {ws, call_sid, stream_sid, pid (of the worker that took the stream),
# frames => []}.
sub perl_call {
    my $sid = new_call_sid();
    my $r = http_post('/incoming-call', call_body($sid),
        headers => ['Host' => 'voice.example.com',
                    'Content-Type' => 'application/x-www-form-urlencoded'],
        twilio_sign => 'https://voice.example.com/incoming-call');
    my ($url) = ($r->{body} // '') =~ /<Stream url="([^"]+)"/
        or die "webhook answered $r->{status}: $r->{body}\n";
    my ($path) = $url =~ m{^wss://[^/]+(/\S+)$};
    my $ws = ws_connect($path, twilio_sign => $url);
    die "upgrade answered $ws->{status}\n" unless ref $ws eq 'Test::Voice::WS';
    return { ws => $ws, call_sid => $sid, seq => 0, frames => [],
             stream_sid => 'MZ' . substr(new_call_sid(), 2),
             pid => $ws->response->{headers}{'x-pid'} };
}

sub tw_send {
    my ($c, $msg) = @_;
    $c->{ws}->send_text($JSON->encode($msg));
}

sub tw_hello {
    my ($c) = @_;
    tw_send($c, { event => 'connected', protocol => 'Call', version => '1.0.0' });
    tw_send($c, { event => 'start', sequenceNumber => ++$c->{seq} . '',
                  streamSid => $c->{stream_sid},
                  start => { accountSid => 'AC0123456789abcdef0123456789abcdef',
                             streamSid => $c->{stream_sid},
                             callSid => $c->{call_sid}, tracks => ['inbound'],
                             mediaFormat => { encoding => 'audio/x-mulaw',
                                              sampleRate => 8000, channels => 1 },
                             customParameters => {} } });
}

sub tw_media {
    my ($c, $audio) = @_;
    tw_send($c, { event => 'media', sequenceNumber => ++$c->{seq} . '',
                  streamSid => $c->{stream_sid},
                  media => { track => 'inbound', chunk => $c->{seq} . '',
                             timestamp => '0',
                             payload => MIME::Base64::encode_base64($audio, '') } });
}

# A command for the fake OpenAI, in-band (see t/lib/fake-openai.js, ctl=1).
sub tw_ctl {
    my ($c, @actions) = @_;
    tw_media($c, 'FAKECTL ' . $JSON->encode(\@actions));
}

# Reads frames until $done->($c) or a close frame (kept too) or 10 s.
sub tw_read {
    my ($c, $done) = @_;
    my $deadline = Time::HiRes::time() + 10;
    while (!$done->($c)) {
        my $left = $deadline - Time::HiRes::time();
        return 0 if $left <= 0;
        my $f = $c->{ws}->recv_frame($left) or return 0;
        $f->{msg} = eval { JSON::PP::decode_json($f->{payload}) }
            if $f->{opcode} == 1;
        push @{ $c->{frames} }, $f;
        return 1 if $f->{opcode} == 8;
    }
    return 1;
}

sub tw_events {
    my ($c, $event) = @_;
    return grep { $_->{msg} and ($_->{msg}{event} // '') eq $event } @{ $c->{frames} };
}

# Bytes of a frame on the wire: header (2, 4 or 10), mask key, payload.
sub wire_size {
    my ($len, $masked) = @_;
    return 2 + ($len > 65535 ? 8 : $len > 125 ? 2 : 0) + ($masked ? 4 : 0) + $len;
}

# The frames the sizes fake logged for connection $conn since $pos.
sub oa_frames {
    my ($pos, $conn) = @_;
    return grep { $_->{fake} eq 'sizes' and $_->{ev} eq 'frame'
                  and $_->{conn} == $conn } fake_events($pos);
}

run_tests();

__DATA__

=== TEST 1: a fresh nginx: every metric, named as the issue names them, all 0, and promtool agrees
Content-Type is the text format's (0.0.4); each family has its # HELP and
# TYPE, in that order, before its samples; the labels are exactly the
documented codes; the histogram's buckets are cumulative and end in +Inf.
Both workers answer, with the same numbers (one set of counters).
--- perl_check
my ($r, $v, $help, $type, $bad) = scrape();
is($r->{status}, 200, 'GET /metrics: 200');
is($r->{headers}{'content-type'}, 'text/plain; version=0.0.4',
   'Content-Type: text/plain; version=0.0.4');
is($r->{headers}{'content-length'}, length $r->{body}, 'Content-Length is the body');
is_deeply($bad, [], 'every line is a HELP, a TYPE or a sample');
my %fam = FAMILIES();
is_deeply($type, \%fam, 'the families and their types, exactly');
is_deeply([sort keys %$help], [sort keys %fam], 'a # HELP for each');
ok(!grep({ !length } values %$help), 'no empty help text');
samples_are($v, { all_zero() }, 'every sample, and only those, all 0');
# the order of the text: HELP, TYPE, then the family's samples
my $cur = '';
my @misplaced;
for (split /\n/, $r->{body}) {
    if (/^# HELP (\S+)/) { $cur = $1; next }
    if (/^# TYPE (\S+)/) { push @misplaced, $_ unless $1 eq $cur; next }
    my ($name) = /^([a-z_]+)/;
    push @misplaced, $_ unless $name =~ /^\Q$cur\E(?:_bucket|_sum|_count)?$/;
}
is_deeply(\@misplaced, [], 'each sample under its own family, TYPE after HELP');
like($r->{body}, qr/\n\z/, 'the body ends with a line feed');
my ($ok, $out) = promtool_check($r->{body});
SKIP: {
    skip 'promtool is not installed (Debian: prometheus)', 1 unless defined $ok;
    ok($ok, 'promtool check metrics passes') or diag $out;
}
# both workers answer, the same
my %by_pid;
for (1 .. 100) {
    my $s = http_get('/metrics', port => $ENV{TEST_NGINX_METRICS_PORT});
    $by_pid{$s->{headers}{'x-pid'} // 'none'} //= $s->{body};
    last if keys %by_pid >= 2;
}
is(scalar(keys %by_pid), 2, 'both workers answered /metrics') or diag explain [keys %by_pid];
my @bodies = values %by_pid;
is($bodies[0], $bodies[-1], 'with the same text');
--- no_error_log
[warn]
[error]



=== TEST 2: a call with known traffic: its frames and bytes, each way, exactly
The caller sends N = 12 media messages of 160 bytes of audio, 100 ms
apart (the call outlives a once-a-second flush); OpenAI then sends M = 5
audio deltas of 800 bytes; the caller stops.  Mid-call, a second after
the last caller frame, the totals are what OpenAI has got so far, and
calls_active is 1; at the end, the totals are exactly what each peer got:
frames counted as the peers saw them, bytes added up from their payloads
(the header and, on the OpenAI leg, the mask key included).
--- config
listen 127.0.0.1:$TEST_NGINX_SERVER_PORT reuseport;
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_SIZES_PORT/v1/realtime?model=gpt-realtime&ctl=1;
    add_header X-Pid $pid always;
}
--- perl_check
my ($N, $B, $M, $D) = (12, 160, 5, 800);
my $pos = fake_pos();
my $c = perl_call();
tw_hello($c);
my @ev = fake_wait($pos, sub { grep { $_->{ev} eq 'message'
    and $_->{msg}{type} eq 'session.update' } @_ }, 10);
my ($su) = grep { $_->{ev} eq 'message' and $_->{msg}{type} eq 'session.update' } @ev;
ok($su, 'OpenAI got session.update') or return;
my $conn = $su->{conn};
for my $i (1 .. $N) {
    tw_media($c, join '', map { chr int rand 256 } 1 .. $B);
    Time::HiRes::sleep(0.1);
}
@ev = fake_wait($pos, sub { grep({ $_->{ev} eq 'frame' and $_->{conn} == $conn } @_) >= 1 + $N }, 10);
# a quiet second: the call's counts are flushed while it runs
Time::HiRes::sleep(1.5);
my @oa = oa_frames($pos, $conn);
is(scalar @oa, 1 + $N, 'OpenAI got session.update and the N appends');
my (undef, $mid) = scrape();
is($mid->{'ngx_voice_calls_active'}, 1, 'mid-call: calls_active 1');
is($mid->{'ngx_voice_frames_total{direction="to_openai"}'}, scalar @oa,
   'mid-call: the frames OpenAI got so far are counted');
my $oa_bytes = 0;
$oa_bytes += wire_size($_->{len}, 1) for @oa;
is($mid->{'ngx_voice_bytes_total{direction="to_openai"}'}, $oa_bytes,
   'mid-call: their bytes');
is($mid->{'ngx_voice_frames_total{direction="to_twilio"}'}, 0,
   'mid-call: nothing went to Twilio yet');
# OpenAI talks: M deltas, each relayed as a media message (and marks)
tw_ctl($c, { deltas => { n => $M, bytes => $D } });
ok(tw_read($c, sub { tw_events($_[0], 'media') >= $M }), "Twilio got $M media messages");
tw_send($c, { event => 'stop', sequenceNumber => ++$c->{seq} . '',
              streamSid => $c->{stream_sid}, stop => { callSid => $c->{call_sid} } });
ok(tw_read($c, sub { 0 }), 'then a close frame');
my $close = $c->{frames}[-1];
is($close->{opcode}, 8, 'the last frame is the close');
$c->{ws}->close(unpack 'n', $close->{payload});
ok($c->{ws}->wait_eof(5), 'the connection ended');
ok(wait_call_ended($c->{call_sid}), 'the call ended');
@ev = fake_wait($pos, sub { grep { $_->{fake} eq 'sizes' and $_->{ev} eq 'close' } @_ }, 5);
@oa = oa_frames($pos, $conn);
my @msgs = map { $_->{msg} } grep { $_->{fake} eq 'sizes' and $_->{ev} eq 'message'
                                    and $_->{conn} == $conn } @ev;
is(scalar(grep { $_->{type} eq 'input_audio_buffer.append' } @msgs), $N + 1,
   'OpenAI got N + 1 appends (the audio and the ctl)');
is_deeply([map { $_->{type} } grep { $_->{type} ne 'input_audio_buffer.append' } @msgs],
          ['session.update'], 'and session.update, nothing else');
is(scalar(grep { $_->{opcode} == 8 } @oa), 1, 'and a close frame');
# what the script sent, in bytes: each audio append is the fixed template
# around the base64 of B bytes
my $append_len = length('{"type":"input_audio_buffer.append","audio":""}') + 4 * int(($B + 2) / 3);
is(scalar(grep { $_->{opcode} == 1 and $_->{len} == $append_len } @oa), $N,
   "N appends of $append_len bytes (B = $B bytes of audio each)");
is(scalar @oa, $N + 3, 'N + 3 frames to OpenAI in all');
my @tw = @{ $c->{frames} };
is(scalar(tw_events($c, 'media')), $M, "$M media messages to Twilio");
ok(!grep({ $_->{masked} } @tw), 'nginx masks nothing it sends Twilio');
# and each delta reached Twilio as the fixed template around its base64
my $media_len = length('{"event":"media","streamSid":"' . $c->{stream_sid}
                       . '","media":{"payload":""}}') + 4 * int(($D + 2) / 3);
is(scalar(grep { length $_->{payload} == $media_len } tw_events($c, 'media')), $M,
   "M media messages of $media_len bytes (D = $D bytes of audio each)");
note(scalar(@tw) . ' frames to Twilio: ' . join ' ', map { $_->{msg} ? $_->{msg}{event} : "op$_->{opcode}" } @tw);
my ($tw_bytes, $oa_total) = (0, 0);
$tw_bytes += wire_size(length $_->{payload}, 0) for @tw;
$oa_total += wire_size($_->{len}, 1) for @oa;
my (undef, $v) = scrape();
is($v->{'ngx_voice_frames_total{direction="to_twilio"}'}, scalar @tw,
   'frames to Twilio: as many as Twilio got');
is($v->{'ngx_voice_bytes_total{direction="to_twilio"}'}, $tw_bytes,
   "bytes to Twilio: what Twilio got ($tw_bytes)");
is($v->{'ngx_voice_frames_total{direction="to_openai"}'}, scalar @oa,
   'frames to OpenAI: as many as OpenAI got');
is($v->{'ngx_voice_bytes_total{direction="to_openai"}'}, $oa_total,
   "bytes to OpenAI: what OpenAI got ($oa_total)");
is($v->{'ngx_voice_calls_active'}, 0, 'calls_active 0 after');
is($v->{'ngx_voice_calls_total{reason="caller_hangup"}'}, 1, 'one call, ended by the caller');
--- no_error_log
[warn]
[error]



=== TEST 3: calls, refusals and upstream failures, counted exactly, by code
Eleven calls at once, spread over the two workers: four that Twilio stops
(one plain, one with a barge-in, one with a DTMF digit, one after an
OpenAI error event), one that OpenAI closes, one without a start message
(voice_start_timeout), and five whose OpenAI leg fails at each stage (DNS,
connect, TLS, the WebSocket handshake, and an HTTP status); then the
refusals: a webhook with a bad signature, from a caller not allowed,
without CallSid, with GET, and repeated (unused, then consumed); upgrades
with a bad signature, an unknown token, a replayed one, a malformed one,
and without Upgrade.  Then every sample is checked.
--- config
listen 127.0.0.1:$TEST_NGINX_SERVER_PORT reuseport;
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&ctl=1;
}
location = /incoming-screened {
    voice_incoming_call;
    voice_allow_callers +15550001111;
}
location = /incoming-short {
    voice_incoming_call;
    voice_stream_url wss://voice.example.com/ms-short;
}
location /ms-short/ {
    voice_media_stream;
    voice_start_timeout 1s;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime;
}
location = /incoming-dns {
    voice_incoming_call;
    voice_stream_url wss://voice.example.com/ms-dns;
}
location /ms-dns/ {
    voice_media_stream;
    resolver 127.0.0.1:1 ipv6=off;
    resolver_timeout 1s;
    voice_openai_url wss://openai.test:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime;
}
location = /incoming-connect {
    voice_incoming_call;
    voice_stream_url wss://voice.example.com/ms-connect;
}
location /ms-connect/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_CLOSED_PORT/v1/realtime?model=gpt-realtime;
}
location = /incoming-tls {
    voice_incoming_call;
    voice_stream_url wss://voice.example.com/ms-tls;
}
location /ms-tls/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_BAD_PORT/v1/realtime?model=gpt-realtime;
}
location = /incoming-handshake {
    voice_incoming_call;
    voice_stream_url wss://voice.example.com/ms-handshake;
}
location /ms-handshake/ {
    voice_media_stream;
    voice_connect_timeout 1s;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&hang=1;
}
location = /incoming-status {
    voice_incoming_call;
    voice_stream_url wss://voice.example.com/ms-status;
}
location /ms-status/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&status=401;
}
--- timeout: 30
--- perl_check
my $pos = fake_pos();
my @calls = (
    # [what, webhook path, script, options]
    ['stopped by Twilio', '/incoming-call', <<'S'],
setup
ctl {"deltas": {"n": 1}}
wait mark
stop
wait_close 3000
S
    ['a barge-in', '/incoming-call', <<'S', echo_marks => 'off'],
setup
ctl {"deltas": {"n": 3, "bytes": 1600, "item_id": "item_A", "response_id": "resp_A"}}
wait media 3
ctl {"send": {"type": "input_audio_buffer.speech_started", "event_id": "evt_ss", "item_id": "item_user", "audio_start_ms": 1000}}
wait clear
stop
wait_close 3000
S
    ['a DTMF digit', '/incoming-call', <<'S'],
setup
dtmf 5
stop
wait_close 3000
S
    ['an OpenAI error event', '/incoming-call', <<'S'],
setup
ctl {"send": {"type": "error", "event_id": "evt_err", "error": {"type": "invalid_request_error", "code": "test_code", "message": "a test error"}}}
sync log:voice: OpenAI error "test_code"
stop
wait_close 3000
S
    ['closed by OpenAI', '/incoming-call', <<'S'],
setup
ctl {"close": 1000, "reason": "bye"}
wait_close 3000
S
    ['no start message', '/incoming-short', <<'S'],
connected
wait_close 4000
S
    map { ["OpenAI fails at $_", "/incoming-$_", "hello\nwait_close 5000\n"] }
        qw(dns connect tls handshake status),
);
my @sc = map {
    my ($what, $path, $script, %o) = @$_;
    my %s = (call_sid => new_call_sid(), stream_sid => 'MZ' . substr(new_call_sid(), 2),
             webhook_path => $path, %o);
    $s{steps} = [twilio_steps($script, {%s})];
    \%s;
} @calls;
my @t = twilio_calls(\@sc, timeout => 60);
for my $i (0 .. $#t) {
    is($t[$i]{upgrade_status}, 101, "$calls[$i][0]: 101");
    my @e = grep { !/^send on a closed socket/ } tw_errors($t[$i]);
    ok(!@e, "$calls[$i][0]: the Twilio side ran its script") or diag join "\n", @e;
    ok(wait_call_ended($t[$i]{call_sid}), "$calls[$i][0]: the call ended");
}
my %pids = map { /^\S+ \S+ \[\w+\] (\d+)#/ ? ($1 => 1) : () }
           grep { /voice: media stream accepted/ } split /\n/, error_log_since_start();
note('the calls were taken by ' . scalar(keys %pids) . ' worker(s)');
my @ev = fake_wait($pos, sub {
    my %closed = map { ("$_->{fake} $_->{conn}" => 1) } oa_event(\@_, 'close');
    !grep { !$closed{"$_->{fake} $_->{conn}"} && ($_->{url} // '') !~ /hang=1/ }
        oa_event(\@_, 'connect');
}, 10);

# --- the refusals ---
my $hook = sub {
    my ($path, $body, %o) = @_;
    return http_post($path, $body, headers => [
        'Host' => 'voice.example.com',
        'Content-Type' => 'application/x-www-form-urlencoded',
        defined $o{sig} ? ('X-Twilio-Signature' => $o{sig}) : ()],
        defined $o{sig} ? () : (twilio_sign => "https://voice.example.com$path"));
};
is($hook->('/incoming-call', call_body(new_call_sid()), sig => 'bm90IGEgc2lnbmF0dXJl')->{status},
   403, 'webhook with a bad signature: 403');
my $r = $hook->('/incoming-screened', call_body(new_call_sid()));
is($r->{body}, '<Response><Reject/></Response>', 'a caller not allowed: <Reject/>');
is($hook->('/incoming-call', 'AccountSid=AC0123456789abcdef0123456789abcdef&From=%2B15551234567')->{status},
   400, 'a signed webhook without CallSid: 400');
is(http_get('/incoming-call')->{status}, 405, 'GET on the webhook: 405');
my $x = new_call_sid();
my $r1 = $hook->('/incoming-call', call_body($x));
my ($tx) = ($r1->{body} // '') =~ m{/media-stream/([^"]+)"};
ok($tx, 'a webhook for a new call: a token');
my $r2 = $hook->('/incoming-call', call_body($x));
is(($r2->{body} =~ m{/media-stream/([^"]+)"})[0], $tx, 'repeated while unused: the same token');
is($hook->('/incoming-call', call_body($t[0]{call_sid}))->{body}, '<Response><Hangup/></Response>',
   'repeated once the stream was opened: <Hangup/>');
my $up = sub {
    my ($token, %o) = @_;
    my $ws = ws_connect("/media-stream/$token", %o,
        $o{headers} ? () : (twilio_sign => "wss://voice.example.com/media-stream/$token"));
    return ref $ws eq 'Test::Voice::WS' ? 101 : $ws->{status};
};
is($up->($tx, headers => ['X-Twilio-Signature' => 'bm90IGEgc2lnbmF0dXJl']), 403,
   'upgrade with a bad signature: 403');
is($up->('A' x 43), 403, 'upgrade with an unknown token: 403');
is($up->($t[0]{token}), 403, 'a replayed token: 403');
is($up->('short'), 403, 'a malformed token: 403');
is(http_get("/media-stream/$tx")->{status}, 400, 'no Upgrade: 400');

# --- the numbers ---
my ($res, $v, $help, $type, $bad) = scrape();
my %want = (all_zero(),
    'ngx_voice_calls_total{reason="caller_hangup"}' => 4,
    'ngx_voice_calls_total{reason="openai_closed"}' => 1,
    'ngx_voice_calls_total{reason="start_timeout"}' => 1,
    'ngx_voice_calls_total{reason="openai_failed"}' => 5,
    'ngx_voice_webhooks_total{result="ok"}' => 12,
    'ngx_voice_webhooks_total{result="bad_signature"}' => 1,
    'ngx_voice_webhooks_total{result="rejected_caller"}' => 1,
    'ngx_voice_webhooks_total{result="bad_request"}' => 2,
    'ngx_voice_webhooks_total{result="repeat"}' => 2,
    'ngx_voice_tokens_minted_total' => 12,
    'ngx_voice_tokens_consumed_total' => 11,
    # the unknown and the replayed token; the malformed one is refused by
    # its shape, before any lookup
    'ngx_voice_tokens_refused_total' => 2,
    'ngx_voice_upgrades_total{result="ok"}' => 11,
    'ngx_voice_upgrades_total{result="bad_request"}' => 1,
    'ngx_voice_upgrades_total{result="bad_signature"}' => 1,
    'ngx_voice_upgrades_total{result="bad_token"}' => 3,
    (map { (qq(ngx_voice_upstream_failures_total{stage="$_"}) => 1) } STAGES),
    'ngx_voice_barge_ins_total' => 1,
    'ngx_voice_dtmf_total' => 1,
    'ngx_voice_openai_errors_total' => 1,
    # five sessions were set up (the five calls that reached OpenAI and
    # sent start)
    'ngx_voice_call_setup_seconds_count' => 5,
    'ngx_voice_call_setup_seconds_bucket{le="+Inf"}' => 5,
);
# the histogram: cumulative, ending at the count; its sum as served
my @buckets = map { $v->{qq(ngx_voice_call_setup_seconds_bucket{le="$_"})} // -1 } LE;
ok(!grep({ $buckets[$_] < $buckets[$_ - 1] } 1 .. $#buckets), 'the buckets are cumulative')
    or diag "@buckets";
my @le = LE;
$want{qq(ngx_voice_call_setup_seconds_bucket{le="$le[$_]"})} = $buckets[$_] for 0 .. $#le - 1;
my $sum = $v->{ngx_voice_call_setup_seconds_sum} // '';
like($sum, qr/^\d+\.\d{3}$/, 'the sum in seconds, to the ms');
ok($sum > 0 && $sum < 5 * 10, "the sum is in range ($sum s)");
$want{ngx_voice_call_setup_seconds_sum} = $sum;
# frames: as many as the peers got (bytes are counted in TEST 2)
my $oa_frames = grep { $_->{ev} eq 'message' or $_->{ev} eq 'ping'
                       or ($_->{ev} eq 'close' and $_->{code} != 1006) } @ev;
my $tw_frames = 0;
for my $t (@t) {
    $tw_frames += @{ $t->{received} } + @{ $t->{frames} };
    $tw_frames++ if $t->{close} and $t->{close}{code} != 1006;
}
$want{'ngx_voice_frames_total{direction="to_openai"}'} = $oa_frames;
$want{'ngx_voice_frames_total{direction="to_twilio"}'} = $tw_frames;
for my $d (DIRS) {
    my ($f, $b) = map { $v->{qq(ngx_voice_${_}_total{direction="$d"})} // 0 } qw(frames bytes);
    ok($b >= 6 * $f, "bytes $d ($b) at least 6 a frame ($f frames)");
    $want{qq(ngx_voice_bytes_total{direction="$d"})} = $b;
}
samples_are($v, \%want, 'every sample, exactly');
my ($ok, $out) = promtool_check($res->{body});
SKIP: {
    skip 'promtool is not installed (Debian: prometheus)', 1 unless defined $ok;
    ok($ok, 'promtool check metrics passes') or diag $out;
}

# --- a reload keeps them, and they go on from there ---
ok(nginx_reload(), 'reloaded');
my (undef, $after) = scrape();
samples_are($after, $v, 'after the reload: the same numbers');
my $r3 = $hook->('/incoming-call', call_body(new_call_sid()));
is($r3->{status}, 200, 'a webhook to the new workers: 200');
my (undef, $next) = scrape();
samples_are($next, { %$v, 'ngx_voice_webhooks_total{result="ok"}' => 13,
                     'ngx_voice_tokens_minted_total' => 13 },
            'and they count on from there');



=== TEST 4: tokens that expire unused are counted once, however they are found
ttl=1s.  Three calls get tokens; a fourth is answered (its stream
opened, OpenAI unreachable).  After the ttl: the first token is tried
(refused, expired), the second call's webhook comes again (a fresh token:
its old one expired unused), and a new call's webhook sweeps the rest.
Three tokens expired unused; the consumed one's record expiring is not a
token expiring.
--- http_config
voice_token_zone tokens:1m ttl=1s;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
voice_openai_api_key sk-test-key;
server {
    listen 127.0.0.1:$TEST_NGINX_METRICS_PORT reuseport;
    location = /metrics { voice_status; }
}
--- config
listen 127.0.0.1:$TEST_NGINX_SERVER_PORT reuseport;
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_CLOSED_PORT/v1/realtime;
}
--- perl_check
my $mint = sub {
    my ($sid) = @_;
    my $r = http_post('/incoming-call', call_body($sid),
        headers => ['Host' => 'voice.example.com',
                    'Content-Type' => 'application/x-www-form-urlencoded'],
        twilio_sign => 'https://voice.example.com/incoming-call');
    return ($r->{body} // '') =~ m{/media-stream/([^"]+)"} ? $1 : "none ($r->{status})";
};
my $up = sub {
    my ($token) = @_;
    return ws_connect("/media-stream/$token",
                      twilio_sign => "wss://voice.example.com/media-stream/$token");
};
my @sid = map { new_call_sid() } 1 .. 5;
my @tok = map { $mint->($_) } @sid[0 .. 2];
my $ws = $up->($mint->($sid[3]));
is(ref $ws, 'Test::Voice::WS', 'the fourth call: 101');
my ($code) = $ws->recv_close(5);
is($code, 1011, 'OpenAI unreachable: 1011');
$ws->close($code);
my @close = @{ $ws->{skipped} // [] };
ok($ws->wait_eof(5), 'closed');
ok(wait_call_ended($sid[3]), 'that call ended');
Time::HiRes::sleep(1.3);
my $r = $up->($tok[0]);
is(ref $r eq 'Test::Voice::WS' ? 101 : $r->{status}, 403, 'the first token, expired: 403');
my $again = $mint->($sid[1]);
like($again, qr/^[\w-]{43}$/, "the second call's webhook again: a token");
isnt($again, $tok[1], 'a fresh one');
like($mint->($sid[4]), qr/^[\w-]{43}$/, 'a new call: a token');
my ($res, $v) = scrape();
my %want = (all_zero(),
    'ngx_voice_webhooks_total{result="ok"}' => 6,
    'ngx_voice_tokens_minted_total' => 6,
    'ngx_voice_tokens_consumed_total' => 1,
    'ngx_voice_tokens_expired_total' => 3,
    'ngx_voice_tokens_refused_total' => 1,
    'ngx_voice_upgrades_total{result="ok"}' => 1,
    'ngx_voice_upgrades_total{result="bad_token"}' => 1,
    'ngx_voice_upstream_failures_total{stage="connect"}' => 1,
    'ngx_voice_calls_total{reason="openai_failed"}' => 1,
    # the close frame, and nothing else, went to Twilio
    'ngx_voice_frames_total{direction="to_twilio"}' => 1,
);
$want{'ngx_voice_bytes_total{direction="to_twilio"}'} =
    $v->{'ngx_voice_bytes_total{direction="to_twilio"}'};
samples_are($v, \%want, 'every sample, exactly');
--- no_error_log
[alert]



=== TEST 5: calls_active counts the calls of both workers
Pairs of calls, held up together (a sync step) until a pair lands on the
two workers: with both up, calls_active is 2 (in /metrics and /health,
whichever worker answers), and 0 once they have ended.
--- timeout: 60
--- perl_check
my $script = "setup\nsync up\nstop\nwait_close 3000\n";
my ($split, $tries, @bad) = (0, 0);
while (!$split and $tries++ < 12) {
    my @sc = map { { call_sid => new_call_sid(),
                     steps => [twilio_steps($script)] } } 1 .. 2;
    my %up;
    twilio_calls(\@sc, on_sync => sub {
        my ($sync, $release) = @_;
        $up{$sync->{call}} = 1;
        return 'hold' if keys %up < 2;
        # both calls are up: which workers took them?
        my $log = error_log_since_start();
        my @pids = map {
            my $sid = $sc[$_]{call_sid};
            $log =~ /(\d+)#\d+: \*\d+ voice: media stream accepted for call \Q$sid\E/ ? $1 : 'none';
        } 0 .. 1;
        my %seen;
        for (1 .. 60) {
            my $s = http_get('/metrics', port => $ENV{TEST_NGINX_METRICS_PORT});
            my $h = http_get('/health', port => $ENV{TEST_NGINX_METRICS_PORT});
            my ($n) = $s->{body} =~ /^ngx_voice_calls_active (\S+)$/m;
            push @bad, "metrics from $s->{headers}{'x-pid'}: $n" unless ($n // '') eq '2';
            push @bad, "health from $h->{headers}{'x-pid'}: $h->{body}"
                unless $h->{body} =~ /"calls_active":2\}/;
            $seen{$s->{headers}{'x-pid'}}++;
            $seen{$h->{headers}{'x-pid'}}++;
            last if keys %seen >= 2;
        }
        push @bad, 'only one worker answered the scrapes' if keys %seen < 2;
        if ($pids[0] ne $pids[1] and $pids[0] ne 'none' and $pids[1] ne 'none') {
            $split = 1;
            note("calls on workers @pids, try $tries");
        }
        $release->(1 - $sync->{call});
        return undef;
    });
    wait_call_ended($_->{call_sid}) for @sc;
}
ok($split, 'a pair of calls was taken by the two workers');
is_deeply(\@bad, [], 'with both up, every scrape said calls_active 2');
my (undef, $v) = scrape();
is($v->{ngx_voice_calls_active}, 0, 'then 0');
--- no_error_log
[warn]
[error]



=== TEST 6: each way a call ends is counted under its own code, none as "unknown"
Calls at once: the caller closes without stop, drops the connection,
sends an unmasked frame, a message over voice_max_message_size, stays
silent and deaf to pings (voice_idle_timeout), talks past
voice_max_call_duration; OpenAI drops its connection.
--- config
listen 127.0.0.1:$TEST_NGINX_SERVER_PORT reuseport;
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&ctl=1;
}
location = /incoming-limits {
    voice_incoming_call;
    voice_stream_url wss://voice.example.com/ms-limits;
}
location /ms-limits/ {
    voice_media_stream;
    voice_max_message_size 1k;
    voice_buffer_size 4k;
    voice_idle_timeout 1500ms;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime;
}
location = /incoming-short {
    voice_incoming_call;
    voice_stream_url wss://voice.example.com/ms-short;
}
location /ms-short/ {
    voice_media_stream;
    voice_max_call_duration 1s;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime;
}
--- timeout: 30
--- perl_check
my @calls = (
    # [code, webhook path, script, options]
    ['caller_hangup', '/incoming-call', "setup\nclose 1000\nwait_close 3000\n"],
    ['caller_hangup', '/incoming-call', "setup\nreset\n"],
    ['protocol_error', '/incoming-call', "setup\nframe text unmasked payload=media\nwait_close 3000\n"],
    ['message_too_big', '/incoming-limits', "setup\nmedia 1 bytes=2000\nwait_close 3000\n"],
    ['idle_timeout', '/incoming-limits', "setup\nwait_close 6000\n", auto_pong => JSON::PP::false],
    ['max_duration', '/incoming-short', "setup\nmedia 30 interval=100 until_close\nwait_close 3000\n"],
    ['openai_closed', '/incoming-call', "setup\nctl {\"terminate\": true}\nwait_close 3000\n"],
);
my @sc = map {
    my ($code, $path, $script, %o) = @$_;
    my %s = (call_sid => new_call_sid(), stream_sid => 'MZ' . substr(new_call_sid(), 2),
             webhook_path => $path, %o);
    $s{steps} = [twilio_steps($script, {%s})];
    \%s;
} @calls;
my @t = twilio_calls(\@sc, timeout => 60);
my %want = (all_zero());
for my $i (0 .. $#t) {
    is($t[$i]{upgrade_status}, 101, "call $i ($calls[$i][0]): 101");
    my $line = wait_call_ended($t[$i]{call_sid});
    ok($line, "call $i ($calls[$i][0]): ended") and note($line =~ /(reason "[^"]*")/);
    $want{qq(ngx_voice_calls_total{reason="$calls[$i][0]"})}++;
}
my (undef, $v) = scrape();
my @keys = grep { /^ngx_voice_calls_(?:total|active)/ } keys %want;
my %got = map { $_ => $v->{$_} } @keys;
my %exp = map { $_ => $want{$_} } @keys;
samples_are(\%got, \%exp, 'calls_total by code, exactly; calls_active 0');
--- no_error_log
[alert]



=== TEST 7: a reload with a call up: the old worker's call still counts, then ends as "shutdown"
worker_shutdown_timeout 1s: the call in the old worker is counted in
calls_active while the new workers answer /health and /metrics, then is
closed by the shutdown (1001) and counted under "shutdown".
--- main_config
worker_shutdown_timeout 1s;
--- timeout: 20
--- perl_check
my ($during, $health);
my $t = twilio_call(steps => [twilio_steps(<<'S')],
setup
sync reload
sync up
media 40 interval=100 until_close
wait_close 5000
S
    on_sync => sub {
        my (undef, $v) = scrape();
        $during = $v->{ngx_voice_calls_active};
        $health = http_get('/health', port => $ENV{TEST_NGINX_METRICS_PORT})->{body};
        undef;
    }, timeout => 30);
is($during, 1, 'after the reload, the call in the old worker is counted');
like($health, qr/"calls_active":1\}/, 'in /health too');
is($t->{close}{code}, 1001, 'worker_shutdown_timeout closed it with 1001');
ok(wait_call_ended($t->{call_sid}), 'the call ended');
my (undef, $v) = scrape();
is($v->{ngx_voice_calls_active}, 0, 'calls_active 0');
is($v->{'ngx_voice_calls_total{reason="shutdown"}'}, 1, 'counted under "shutdown"');
is($v->{'ngx_voice_upgrades_total{result="ok"}'}, 1, 'the upgrade before the reload is still counted');
--- no_error_log
[alert]



=== TEST 8: a reload that fails after the zone was set up: a worker forked later still counts
The reload asks for a zone of another size and a listener on a port that
is taken, so it fails after the new zone was made (and freed again); the
old configuration stays.  A worker the master forks after that (here: it
replaces one that was killed) must count in the zone of the configuration
that runs -- not in the freed one, which crashed it.
--- workers: 1
--- perl_check
my $busy = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                 Proto => 'tcp', Listen => 5, ReuseAddr => 1) or die $!;
my $busy_port = $busy->sockport;
my $webhook = sub {
    my $r = http_post('/incoming-call', call_body(new_call_sid()),
        headers => ['Host' => 'voice.example.com',
                    'Content-Type' => 'application/x-www-form-urlencoded'],
        twilio_sign => 'https://voice.example.com/incoming-call');
    return $r->{status};
};
is($webhook->(), 200, 'a webhook: 200');
(my $http = $_[0]->http_config) =~ s/tokens:1m/tokens:2m/ or die;
(my $conf = $_[0]->config) =~ s/^(listen .*)$/$1\nlisten 127.0.0.1:$busy_port;/m or die;
ok(!nginx_reload(http_config => $http, config => $conf), 'the reload fails');
my $deadline = Time::HiRes::time() + 10;
Time::HiRes::sleep(0.1) until error_log_since_start() =~ /still could not bind\(\)/
                               or Time::HiRes::time() > $deadline;
like(error_log_since_start(), qr/\[emerg\] .*still could not bind\(\)/,
     'nginx gave up on the new configuration');
my ($worker) = Test::Voice::child_pids(nginx_pid());
kill 'KILL', $worker;
$deadline = Time::HiRes::time() + 10;
Time::HiRes::sleep(0.05) until grep({ $_ != $worker } Test::Voice::child_pids(nginx_pid()))
                               or Time::HiRes::time() > $deadline;
Time::HiRes::sleep(0.2);
is($webhook->(), 200, 'a webhook to the new worker: 200');
my (undef, $v) = scrape();
is($v->{'ngx_voice_webhooks_total{result="ok"}'}, 2, 'both webhooks counted, in the zone that runs');
is($v->{ngx_voice_tokens_minted_total}, 2, 'both tokens too');
close $busy;
--- error_log eval
[qr/\[alert\] .*worker process \d+ exited on signal 9/,
 qr/\[emerg\] .*bind\(\) to 127\.0\.0\.1:\d+ failed/]
--- no_error_log eval
[qr/exited on signal (?!9)/]
