# The token zone (voice_token_zone), seen from the wire: the webhook mints a
# token into the Stream URL of its TwiML, the Media Stream upgrade consumes
# it.  Tokens are unique and URL-safe, single use, expire after the ttl, are
# shared by all workers, survive a reload, and a full zone answers 503
# without corrupting anything.
#
# Every signature is made by the real `twilio` npm package (sign_twilio).
# The OpenAI side points at a closed local port (voice_openai_url), so an
# accepted stream is closed at once with 1011 and nothing leaves the host;
# the [error] line of that refused connect is the only [error] expected.
use Test::Voice;

# Unless a block says otherwise: a 1m token zone, OpenAI at a closed port,
# voice_public_url https://voice.example.com, auth token 12345, and the
# webhook and media stream locations.
block_defaults(http_config => <<'HTTP', config => <<'CONF');
voice_token_zone tokens:1m;
voice_openai_url wss://127.0.0.1:1/v1/realtime;
voice_openai_api_key sk-test-key;
HTTP
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
location = /incoming-call { voice_incoming_call; }
location /media-stream/ { voice_media_stream; }
CONF

# --- helpers (run in package main, so perl_check code can call them) --------

# (subs, not variables: perl_check code is compiled under `use strict`
# elsewhere and sees subs of package main, not this file's lexicals)
sub AUTH_TOKEN ()  { '12345' }
sub WEBHOOK_URL () { 'https://voice.example.com/incoming-call' }
sub STREAM_BASE () { 'wss://voice.example.com/media-stream' }

# X-Twilio-Signature of a webhook body, by the twilio package.
sub sign_webhook { sign_twilio(AUTH_TOKEN, WEBHOOK_URL, $_[0]) }

# A call webhook body as Twilio posts it, with example values only.
sub call_body {
    my ($n) = @_;
    my $sid = sprintf 'CA%032x', $n // int rand 0xffffffff;
    return "AccountSid=AC0123456789abcdef0123456789abcdef&CallSid=$sid"
         . '&CallStatus=ringing&Direction=inbound'
         . '&From=%2B15551234567&To=%2B15557654321';
}

# POSTs a signed webhook (sign once, send many: pass $sig) and returns the
# response; {token} is the last path segment of the TwiML's Stream URL.
sub webhook {
    my (%o) = @_;
    my $body = $o{body} // call_body();
    my $sig = $o{sig} // sign_webhook($body);
    my $r = http_post('/incoming-call', $body, port => $o{port}, headers => [
        'Host' => 'voice.example.com',
        'Content-Type' => 'application/x-www-form-urlencoded',
        'X-Twilio-Signature' => $sig]);
    ($r->{token}) = ($r->{body} // '') =~
        m{<Stream url="\Q${\ STREAM_BASE}\E/([^"]*)"/>};
    return $r;
}

# Mints one token; dies (the perl_check fails) if the webhook did not.
sub mint {
    my $r = webhook(@_);
    die "webhook answered $r->{status}: $r->{body}\n"
        unless ($r->{status} // 0) == 200 and defined $r->{token};
    return wantarray ? ($r->{token}, $r) : $r->{token};
}

# Opens the Media Stream for $token (signed over its wss:// URL, no params)
# on a new connection.  Returns a Test::Voice::WS after a 101 (its
# Sec-WebSocket-Accept checked by the harness), else the HTTP response.
sub consume {
    my ($token, %o) = @_;
    my $path = $o{path} // "/media-stream/$token";
    return ws_connect($path, port => $o{port},
        twilio_token => AUTH_TOKEN,
        twilio_sign => "wss://voice.example.com$path");
}

sub status_of { my ($r) = @_; ref $r eq 'Test::Voice::WS' ? 101 : $r->{status} // 'none' }

# Headers of a consume() result, whichever it was.
sub headers_of { my ($r) = @_; ref $r eq 'Test::Voice::WS' ? $r->response->{headers} : $r->{headers} }

# How many error.log lines since nginx started match $re.
sub log_count {
    my ($re) = @_;
    return scalar grep { $_ =~ $re } split /\n/, error_log_since_start();
}

# An accepted stream whose OpenAI side cannot be reached (here: a closed
# port) is closed with 1011.
sub check_closed_1011 {
    my ($ws, $what) = @_;
    my ($code) = $ws->recv_close(5);
    is($code, 1011, "$what: close frame 1011 after the 101");
    $ws->close($code) if defined $code;       # the client's half of the close handshake
    ok($ws->wait_eof(5), "$what: then the connection is closed");
}

# error.log lines (any level, debug included) that contain one of @tokens.
sub lines_with_tokens {
    my (@tokens) = @_;
    my @lines = split /\n/, error_log_since_start();
    return grep { my $l = $_; grep { index($l, $_) >= 0 } @tokens } @lines;
}

run_tests();

__DATA__

=== TEST 1: 1,000 calls mint 1,000 distinct 43-character URL-safe tokens
# Calls with consecutive CallSids: distinct tokens come from the random
# generator, not from the call's fields.
--- perl_check
my (%seen, @bad, @failed);
for my $i (1 .. 1000) {
    my $r = webhook(body => call_body($i));
    if (($r->{status} // 0) != 200 or !defined $r->{token}) {
        push @failed, "$i: " . ($r->{status} // $r->{error});
        next;
    }
    is($r->{headers}{'content-type'}, 'text/xml', 'TwiML content type') if $i == 1;
    like($r->{body}, qr{^<Response><Connect><Stream url="wss://voice\.example\.com/media-stream/[^"]+"/></Connect></Response>\s*$},
         'the TwiML of the first answer') if $i == 1;
    push @bad, $r->{token} unless $r->{token} =~ /\A[A-Za-z0-9_-]{43}\z/;
    $seen{$r->{token}}++;
}
is(scalar @failed, 0, 'all 1,000 webhooks answered 200 with a Stream URL')
    or diag explain [@failed[0 .. ($#failed < 4 ? $#failed : 4)]];
is(scalar @bad, 0, 'every token is 43 characters of [A-Za-z0-9_-]')
    or diag explain [@bad[0 .. ($#bad < 4 ? $#bad : 4)]];
is(scalar keys %seen, 1000, '1,000 distinct tokens');
is(scalar(lines_with_tokens(keys %seen)), 0, 'no minted token in error.log, debug level included');
is(log_count(qr/\[info\] .*voice: incoming call CA[0-9a-f]{32}, stream token minted/), 1000,
   'one info line per minted token, naming the CallSid');
--- no_error_log eval
[qr/\[warn\].*voice: media stream upgrade rejected/, '[error]', 'webhook repeated']



=== TEST 2: single use: the first upgrade gets 101, a replay 403 "already used"
--- perl_check
my $token = mint();
my $ws = consume($token);
is(status_of($ws), 101, 'first use: 101 Switching Protocols');
check_closed_1011($ws, 'first use') if ref $ws eq 'Test::Voice::WS';
my $r = consume($token);
is(status_of($r), 403, 'second use: 403');
is(log_count(qr/\[warn\] .*voice: media stream upgrade rejected: token already used/), 1,
   'one [warn] line: token already used');
$r = consume($token);
is(status_of($r), 403, 'third use: still 403');
is(log_count(qr/token already used/), 2, 'and another [warn] line');
is(log_count(qr/\[info\] .*voice: media stream accepted for call CA[0-9a-f]{32}/), 1,
   'exactly one accepted stream, logged with its CallSid');
--- no_error_log eval
[qr/\[error\](?!.* to OpenAI )/, 'token unknown', 'token expired']



=== TEST 3: malformed paths are refused before any lookup, unknown tokens after it
# Each path is signed correctly.  The path rule is one rule: the location's
# prefix, a 43-character token, at most one trailing "/"; anything else is
# 403 before the store is asked; a well-formed token the store does not
# know is 403 "token unknown".  No refusal spends the real token.
--- perl_check
my $good = mint();
my $slashed = mint();
my @c = ('A' .. 'Z', 'a' .. 'z', 0 .. 9, '-', '_');
my $random = join '', map { $c[rand @c] } 1 .. 43;
my %malformed = (
    'too short'              => '/media-stream/abc',
    'one char short'         => '/media-stream/' . substr($good, 1),
    'one char long'          => "/media-stream/${good}A",
    'with a dot'             => '/media-stream/' . substr($good, 0, 20) . '.' . substr($good, 21),
    'empty last segment'     => '/media-stream/',
    'two trailing slashes'   => "/media-stream/$good//",
    'a segment after it'     => "/media-stream/$good/x",
    'a segment before it'    => "/media-stream/x/$good",
    'the token percent-encoded' => '/media-stream/%41' . substr($good, 1),
);
my $rule = 0;
for my $name (sort keys %malformed) {
    my $r = consume(undef, path => $malformed{$name});
    is(status_of($r), 403, "$name: 403");
    is(log_count(qr/\[warn\] .*voice: media stream upgrade rejected: the path is not the location's prefix followed by a token/),
       ++$rule, "$name: a [warn] line names the path rule");
}
is(log_count(qr/token unknown/), 0, 'none of them reached the store');
my $r = consume(undef, path => "/media-stream/$random");
is(status_of($r), 403, 'an unknown well-formed token: 403');
is(log_count(qr/\[warn\] .*voice: media stream upgrade rejected: token unknown/), 1,
   'a [warn] line says token unknown');
$r = consume(undef, path => "/media-stream/$random/");
is(status_of($r), 403, 'the same with one trailing slash: 403 unknown too');
is(log_count(qr/token unknown/), 2, 'and says so');
my $ws = consume($good);
is(status_of($ws), 101, 'the real token, untouched by all that, still gets 101');
my $ws2 = consume(undef, path => "/media-stream/$slashed/");
is(status_of($ws2), 101, 'a token with one trailing slash is the other accepted form: 101');
is(log_count(qr/\[info\] .*voice: media stream accepted for call/), 2, 'both accepted streams logged');
--- no_error_log eval
[qr/\[error\](?!.* to OpenAI )/, 'token already used', 'token expired']



=== TEST 4: expiry: after the ttl a token is refused as expired; within it, accepted
--- http_config
voice_token_zone tokens:1m ttl=1s;
voice_openai_url wss://127.0.0.1:1/v1/realtime;
voice_openai_api_key sk-test-key;
--- perl_check
my $late = mint();
my $prompt = mint();
is(status_of(consume($prompt)), 101, 'consumed within the ttl: 101');
Time::HiRes::sleep(1.5);
my $r = consume($late);
is(status_of($r), 403, 'consumed 1.5 s after minting (ttl=1s): 403');
is(log_count(qr/\[warn\] .*voice: media stream upgrade rejected: token expired/), 1,
   'a [warn] line says token expired');
my $fresh = mint();
is(status_of(consume($fresh)), 101, 'a token minted after that works');
--- no_error_log eval
[qr/\[error\](?!.* to OpenAI )/, 'token unknown', 'token already used']



=== TEST 5: cross-worker consume: a token minted by one worker is consumed by another
# Two workers share the port (reuseport), each new connection goes to
# either; X-Pid tells which worker answered the webhook and the upgrade.
# The test fails unless both directions were seen, so it proves sharing.
--- workers: 2
--- master_on
--- config
listen 127.0.0.1:$TEST_NGINX_SERVER_PORT reuseport;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
location = /incoming-call {
    voice_incoming_call;
    add_header X-Pid $pid always;
}
location /media-stream/ {
    voice_media_stream;
    add_header X-Pid $pid always;
}
--- perl_check
my (%cross, %pids, @not101, $replay_checked);
for my $i (1 .. 400) {
    my ($token, $r) = mint();
    my $minted_by = $r->{headers}{'x-pid'} // 'none';
    my $ws = consume($token);
    my $consumed_by = headers_of($ws)->{'x-pid'} // 'none';
    push @not101, status_of($ws) unless status_of($ws) == 101;
    $pids{$_}++ for $minted_by, $consumed_by;
    if ($minted_by ne $consumed_by) {
        $cross{"$minted_by>$consumed_by"}++;
        # The replay refused by the minting worker too: the "used" mark is
        # shared, not only the token.
        unless ($replay_checked) {
            for (1 .. 50) {
                my $again = consume($token);
                next unless (headers_of($again)->{'x-pid'} // '') eq $minted_by;
                is(status_of($again), 403,
                   'the worker that minted it refuses the replay of a token consumed elsewhere');
                $replay_checked = 1;
                last;
            }
        }
    }
    last if keys %cross >= 2 and $replay_checked and $i >= 20;
}
is(scalar @not101, 0, 'every fresh token got 101') or diag explain \@not101;
ok(!$pids{none}, 'every answer carries X-Pid');
is(scalar keys %pids, 2, 'two distinct worker PIDs answered') or diag explain \%pids;
is(scalar keys %cross, 2, 'minted by A and consumed by B, and the other way round')
    or diag explain \%cross;
ok($replay_checked, 'a replay reached the minting worker');
--- no_error_log eval
[qr/\[error\](?!.* to OpenAI )/, 'token unknown', 'token expired']



=== TEST 6: zone full: 503 and an [error] line, the zone stays consistent
# 32k is the smallest zone (8 pages).  Once full, webhooks get 503; tokens
# minted before are still consumed normally.
--- http_config
voice_token_zone tokens:32k ttl=60s;
voice_openai_url wss://127.0.0.1:1/v1/realtime;
voice_openai_api_key sk-test-key;
--- perl_check
my (@tokens, $full, %other);
for my $i (1 .. 5000) {
    my $r = webhook(body => call_body(600000 + $i));
    if ($r->{status} == 200) { push @tokens, $r->{token}; next }
    if ($r->{status} == 503) { $full = $r; last }
    $other{$r->{status} // 'none'}++;
    last;
}
ok($full, 'the zone filled up and a webhook got 503')
    or diag explain \%other;
cmp_ok(scalar @tokens, '>=', 20, 'but only after a reasonable number of tokens')
    or diag scalar @tokens;
note(scalar(@tokens) . ' tokens fit in 32k');
unlike($full->{body} // '', qr/<Stream/, 'the 503 carries no Stream URL');
my $full_lines = log_count(qr/\[error\] .*voice: could not allocate token in voice_token_zone "tokens": zone is full/);
ok($full_lines >= 1 && $full_lines <= 2, 'an [error] line says the zone is full (at most one a second)')
    or diag $full_lines;
is(webhook(body => call_body(699999))->{status}, 503, 'the next call: 503 again');
# A call whose token is in the zone is still answered: its retry needs no
# new room.
my $first = webhook(body => call_body(600001));
is($first->{status}, 200, 'a retry of the first call is still answered 200');
is($first->{token}, $tokens[0], 'with its own token');
# The tokens minted before are intact: first, middle and last all work once.
for my $t (@tokens[0, $#tokens / 2, -1]) {
    is(status_of(consume($t)), 101, 'a token minted before the zone filled: 101');
    is(status_of(consume($t)), 403, 'and it is still single use');
}
is(log_count(qr/token already used/), 3, 'replays logged as already used');
--- no_error_log eval
['[alert]', '[crit]', '[emerg]', 'token unknown']



=== TEST 7: zone full, then expired tokens are evicted and webhooks succeed again
--- http_config
voice_token_zone tokens:32k ttl=2s;
voice_openai_url wss://127.0.0.1:1/v1/realtime;
voice_openai_api_key sk-test-key;
--- perl_check
# Signed ahead, so filling the zone takes well under the ttl.
my @signed = map { my $b = call_body(700000 + $_); [$b, sign_webhook($b)] } 1 .. 1200;
my ($n, $status) = (0, 200);
my $t0 = Test::Voice::now();
while ($status == 200 and $n < 600) {
    $status = webhook(body => $signed[$n][0], sig => $signed[$n][1])->{status} // 'none';
    $n++ if $status == 200;
}
my $took = Test::Voice::now() - $t0;
is($status, 503, "the zone filled up after $n tokens (in ${\ sprintf '%.2f', $took} s)");
cmp_ok($took, '<', 1.8, 'within the ttl, so nothing had expired yet');
Time::HiRes::sleep(2.3);
my $token = mint();
is(status_of(consume($token)), 101, 'after the ttl, a webhook succeeds again and its token works');
my $m = 1;
$status = 200;
while ($status == 200 and $m < 600) {
    $status = webhook(body => $signed[600 + $m][0], sig => $signed[600 + $m][1])->{status} // 'none';
    $m++ if $status == 200;
}
is($status, 503, 'filling the zone again ends in 503');
cmp_ok($m, '>=', $n, "all $n places came back ($m tokens this time): the expired tokens were evicted");
--- error_log eval
qr/\[error\] .*voice: could not allocate token in voice_token_zone "tokens": zone is full/
--- no_error_log eval
['[alert]', '[crit]']



=== TEST 8: tokens survive nginx -s reload (one worker)
--- master_on
--- perl_check
my $kept = mint();
my $used = mint();
is(status_of(consume($used)), 101, 'one token consumed before the reload');
ok(nginx_reload(), 'reloaded');
is(status_of(consume($kept)), 101, 'a token minted before the reload: 101 after it');
is(status_of(consume($used)), 403, 'a token used before the reload is still used');
is(log_count(qr/\[warn\] .*token already used/), 1, 'logged as already used, not unknown');
--- error_log
reconfiguring
--- no_error_log eval
[qr/\[error\](?!.* to OpenAI )/, 'token unknown']



=== TEST 9: tokens survive a reload with two workers (reuseport)
--- workers: 2
--- master_on
--- config
listen 127.0.0.1:$TEST_NGINX_SERVER_PORT reuseport;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
location = /incoming-call { voice_incoming_call; add_header X-Pid $pid always; }
location /media-stream/ { voice_media_stream; add_header X-Pid $pid always; }
--- perl_check
my (@tokens, %old);
for (1 .. 20) {
    my ($t, $r) = mint();
    push @tokens, $t;
    $old{$r->{headers}{'x-pid'} // 'none'}++;
}
is(scalar keys %old, 2, 'both old workers minted tokens') or diag explain \%old;
ok(nginx_reload(), 'reloaded');
my (%new, @status);
for my $t (@tokens) {
    my $ws = consume($t);
    push @status, status_of($ws);
    $new{headers_of($ws)->{'x-pid'} // 'none'}++;
}
is_deeply(\@status, [(101) x 20], 'all 20 tokens minted before the reload: 101 after it');
ok(!grep({ $old{$_} } keys %new), 'consumed by the new workers only') or diag explain \%new;
--- error_log
reconfiguring
--- no_error_log eval
[qr/\[error\](?!.* to OpenAI )/, 'token unknown', 'token already used']



=== TEST 10: concurrent upgrades with one token: exactly one 101, across two workers
# Eight connections send the same (valid) upgrade at once, 20 times over;
# the consume is atomic under the zone's lock, so exactly one wins each time.
--- workers: 2
--- master_on
--- config
listen 127.0.0.1:$TEST_NGINX_SERVER_PORT reuseport;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
location = /incoming-call { voice_incoming_call; }
location /media-stream/ { voice_media_stream; add_header X-Pid $pid always; }
--- perl_check
my (@wins, %pids);
for my $round (1 .. 20) {
    my $token = mint();
    my $path = "/media-stream/$token";
    my $req = "GET $path HTTP/1.1\r\nHost: voice.example.com\r\nUpgrade: websocket\r\n"
            . "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            . "Sec-WebSocket-Version: 13\r\nX-Twilio-Signature: "
            . sign_twilio(AUTH_TOKEN, "wss://voice.example.com$path", undef) . "\r\n\r\n";
    my @socks = map { IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                          PeerPort => server_port(), Proto => 'tcp') or die $! } 1 .. 8;
    syswrite $_, $req for @socks;
    my %status;
    for my $s (@socks) {
        my $r = Test::Voice::read_response($s, 5, 0);
        $status{$r->{status} // 'none'}++;
        $pids{$r->{headers}{'x-pid'} // 'none'}++;
        close $s;
    }
    push @wins, ($status{101} // 0) . ' x 101, ' . ($status{403} // 0) . ' x 403';
}
is_deeply(\@wins, [('1 x 101, 7 x 403') x 20], 'each round: one 101 and seven 403');
is(scalar(grep { $_ ne 'none' } keys %pids), 2, 'both workers answered') or diag explain \%pids;
is(log_count(qr/\[warn\] .*token already used/), 140, 'the 140 losers logged as already used');
--- no_error_log eval
[qr/\[error\](?!.* to OpenAI )/, 'token unknown', 'token expired']



=== TEST 11: # BUG: a refused upgrade writes the still-valid token into error.log
# Issue 2: "A CallSid is written to a log only if it matches ^CA[0-9a-f]{32}$;
# the token and the auth token never."  The module's [warn] line for an
# upgrade without a signature carries nginx's request context (request:
# "GET /media-stream/TOKEN ..."), so a token that is still unspent, and is
# accepted right after, is in the log at warn level.
--- perl_check
my $token = mint();
my $r = ws_connect("/media-stream/$token");      # no signature
is(status_of($r), 403, 'no signature: 403');
my @leaks = grep { !/\[debug\]/ } lines_with_tokens($token);
is(scalar @leaks, 0, 'the unspent token is in no log line (debug aside)')
    or diag($leaks[0]);
is(status_of(consume($token)), 101, 'the token was still valid');
--- error_log
no X-Twilio-Signature
--- no_error_log eval
[qr/\[error\](?!.* to OpenAI )/]
