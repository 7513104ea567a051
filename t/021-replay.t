# Repeated webhooks (issue 8, defect 1).  Twilio's signature has no
# timestamp or nonce, so a signed POST /incoming-call can be replayed; each
# replay used to mint a new token, and a few thousand of them filled a 1m
# zone so that every real call got 503.  Now a CallSid holds at most one
# live token: a repeat while its token is unused gets the same TwiML (the
# same Stream URL), a repeat after its stream was opened gets
# <Response><Hangup/></Response>, and the repeats are logged at most once
# a second per worker, with how many came.  The zone's capacity is then
# bounded by distinct signed CallSids.
#
# Run with TEST_NGINX_MODULE=/work/main/build/ngx_voice_module.so (the
# module before the fix) every block fails: the replays get 503 once
# the zone is full, a retry gets another token, a repeat after the stream
# opened gets a new Stream URL, a repeat in a full zone gets 503.
#
# Signatures are made by the real `twilio` npm package (sign_twilio); the
# calls go through the fake OpenAI on real TLS (Test::VoiceCall).
use Test::Voice;
use Test::VoiceCall;
use IO::Select;
use IO::Socket::INET;

voice_setup();

# --- helpers (package main: perl_check code calls them) ----------------------

sub AUTH_TOKEN ()  { '12345' }
sub WEBHOOK_URL () { 'https://voice.example.com/incoming-call' }
sub HANGUP ()      { '<Response><Hangup/></Response>' }

# A call webhook body as Twilio posts it.
sub call_body {
    my ($sid) = @_;
    return "AccountSid=AC0123456789abcdef0123456789abcdef&CallSid=$sid"
         . '&CallStatus=ringing&Direction=inbound'
         . '&From=%2B15551234567&To=%2B15557654321';
}

# The bytes of one signed webhook request (keep-alive), signed once: a
# replay is these bytes again.
sub signed_request {
    my ($sid) = @_;
    my $body = call_body($sid);
    my $sig = sign_twilio(AUTH_TOKEN, WEBHOOK_URL, $body);
    return "POST /incoming-call HTTP/1.1\r\nHost: voice.example.com\r\n"
         . "Content-Type: application/x-www-form-urlencoded\r\n"
         . "X-Twilio-Signature: $sig\r\nContent-Length: " . length($body)
         . "\r\n\r\n$body";
}

# Sends raw requests pipelined on keep-alive connections (500 a
# connection, below nginx's keepalive_requests) and returns the responses
# in order: {status, head, body, pid (X-Pid, if any)}.
sub pipelined {
    my (@reqs) = @_;
    my @res;
    while (@reqs) {
        my @batch = splice @reqs, 0, 500;
        push @res, pipeline_one(\@batch);
    }
    return @res;
}

sub pipeline_one {
    my ($batch) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => server_port(), Proto => 'tcp') or die "connect: $!\n";
    $sock->blocking(0);
    local $SIG{PIPE} = 'IGNORE';
    my $sel = IO::Select->new($sock);
    my ($out, $in, @res) = (join('', @$batch), '');
    my $deadline = Time::HiRes::time() + 60;
    while (@res < @$batch and Time::HiRes::time() < $deadline) {
        my ($r, $w) = IO::Select->select($sel, length $out ? $sel : undef,
                                         undef, 1);
        if ($w and @$w) {
            my $n = syswrite $sock, $out;
            substr($out, 0, $n, '') if $n;
        }
        if ($r and @$r) {
            my $n = sysread $sock, $in, 65536, length $in;
            last if defined $n and $n == 0;
        }
        while ((my $end = index $in, "\r\n\r\n") >= 0) {
            my $head = substr $in, 0, $end;
            my ($len) = $head =~ /^Content-Length:\s*(\d+)/mi;
            last if length($in) < $end + 4 + ($len // 0);
            my ($status) = $head =~ m{^HTTP/1\.1 (\d{3})};
            my ($pid) = $head =~ /^X-Pid:\s*(\d+)/mi;
            push @res, { status => $status, head => $head, pid => $pid,
                         body => substr($in, $end + 4, $len // 0) };
            substr($in, 0, $end + 4 + ($len // 0), '');
        }
    }
    close $sock;
    return @res;
}

# How many of each status in a list of responses, e.g. {200 => 5000}.
sub statuses {
    my %n;
    $n{$_->{status} // 'none'}++ for @_;
    return \%n;
}

# The Stream URL token of a TwiML answer.
sub token_of {
    my ($twiml) = @_;
    my ($t) = ($twiml // '') =~
        m{^<Response><Connect><Stream url="wss://voice\.example\.com/media-stream/([A-Za-z0-9_-]{43})"/></Connect></Response>$};
    return $t;
}

# The counts of the "webhook repeated" lines for $sid of one kind
# ("open" while the token is unused, "used" after), in log order.
sub repeat_counts {
    my ($sid, $kind) = @_;
    my $what = $kind eq 'open'
        ? qr/\[info\] .*voice: webhook repeated for call \Q$sid\E, its stream is not open yet: the same TwiML/
        : qr/\[warn\] .*voice: webhook repeated for call \Q$sid\E, its stream was opened already: <Hangup\/>/;
    return map { /\((\d+) such since the last line\)/ ? $1 : 'no count' }
           grep { $_ =~ $what } split /\n/, error_log_since_start();
}

sub minted_lines {
    my ($sid) = @_;
    return scalar grep { /\[info\] .*voice: incoming call \Q$sid\E, stream token minted/ }
                  split /\n/, error_log_since_start();
}

sub sum { my $s = 0; $s += $_ for @_; $s }

# A short real call: the fake OpenAI sends one audio delta, which must
# come back to Twilio as media, then Twilio stops.  %o: twilio_call's
# options (token, call_sid ...).
sub real_call {
    my (%o) = @_;
    my @steps = twilio_steps(<<'S', \%o);
setup
ctl {"deltas": {"n": 1}}
wait media
stop
wait_close 3000
S
    return twilio_call(%o, steps => \@steps);
}

# Checks what real_call() returned: a whole call, relayed both ways.
sub call_ok {
    my ($t, $what) = @_;
    is_deeply([tw_errors($t)], [], "$what: the Twilio side ran its script");
    is($t->{upgrade_status}, 101, "$what: the stream opened (101)");
    ok(defined $t->{conn}, "$what: OpenAI got the caller's audio");
    is(scalar(tw_recv($t, 'media')), 1, "$what: OpenAI's audio came back as media");
    is($t->{close}{code}, 1000, "$what: Twilio got close 1000 after its stop");
    like(wait_call_ended($t->{call_sid}) // '', qr/reason "Twilio stop"/,
         "$what: the call ended normally");
}

run_tests();

__DATA__

=== TEST 1: one signed webhook replayed 5,000 times: one token, one answer, a quiet log; a real call still goes through
# 5,000 replays of the same bytes, pipelined, against the default 1m zone
# (before the fix about 4,000 filled it and the rest got 503).
--- perl_check
my $sid = new_call_sid();
my $req = signed_request($sid);
my $t0 = Time::HiRes::time();
my @res = pipelined(($req) x 5000);
my $took = Time::HiRes::time() - $t0;
note(sprintf '5,000 replays in %.2f s', $took);
is_deeply(statuses(@res), { 200 => 5000 }, 'all 5,000 replays answered 200');
my %bodies;
$bodies{$_->{body}}++ for @res;
is(scalar keys %bodies, 1, 'with byte-identical answers')
    or diag explain [keys %bodies];
my ($twiml) = sort { $bodies{$b} <=> $bodies{$a} } keys %bodies;
my $token = token_of($twiml);
ok($token, 'the answer is a TwiML <Connect><Stream> with a 43-character token')
    or diag($twiml);
is(minted_lines($sid), 1, 'one "stream token minted" [info] line for the CallSid');
my @counts = repeat_counts($sid, 'open');
cmp_ok(scalar @counts, '>=', 1, 'the repeats are logged');
cmp_ok(scalar @counts, '<=', int($took) + 2,
       scalar(@counts) . " repeat lines in ${\ sprintf '%.2f', $took} s: at most one a second");
is($counts[0], 1, 'the first repeat is logged at once, counting itself');
ok(!grep({ !/^\d+$/ or $_ < 1 } @counts), 'each repeat line carries a count')
    or diag explain \@counts;
# The repeats after the last line are counted by the next one: a replay a
# second later logs them all, so the counts add up to every repeat.
Time::HiRes::sleep(1.1);
my ($again) = pipelined($req);
is($again->{body}, $twiml, 'a replay a second later: the same TwiML');
@counts = repeat_counts($sid, 'open');
is(sum(@counts), 5000, 'the counts of the repeat lines add up to the 5,000 repeats')
    or diag explain \@counts;
# A real call with another CallSid: webhook, upgrade with its token, the
# OpenAI session, audio both ways, stop.
my $t = real_call();
is($t->{webhook_status}, 200, 'a real call afterwards: webhook 200');
isnt($t->{token}, $token, 'with a token of its own');
call_ok($t, 'the real call');
# And the replayed call itself can still be answered: its one token works.
my $t2 = real_call(token => $token, call_sid => $sid);
call_ok($t2, 'the replayed call, with the token of the replays');
--- no_error_log eval
[qr/\[error\]/, 'zone is full', 'webhook repeated for call -']



=== TEST 2: a Twilio-style retry: the same CallSid twice gets the same TwiML, and one token
# Twilio retries a webhook that timed out, with the same parameters and
# signature; the answer must be the same Stream URL, so either request's
# TwiML opens the call.
--- perl_check
my $sid = new_call_sid();
my $body = call_body($sid);
my @r = map {
    http_post('/incoming-call', $body, headers => [
        'Host' => 'voice.example.com',
        'Content-Type' => 'application/x-www-form-urlencoded',
        'X-Twilio-Signature' => sign_twilio(AUTH_TOKEN, WEBHOOK_URL, $body)])
} 1 .. 2;
is_deeply([map { $_->{status} } @r], [200, 200], 'both answered 200');
is($r[1]{headers}{'content-type'}, 'text/xml', 'the retry is TwiML');
ok(token_of($r[0]{body}), 'the first carries a Stream URL');
is($r[1]{body}, $r[0]{body}, 'the retry gets the same TwiML, byte for byte');
is(minted_lines($sid), 1, 'one token minted');
is_deeply([repeat_counts($sid, 'open')], [1],
          'one [info] line for the retry, counting 1');
my $t = real_call(token => token_of($r[1]{body}), call_sid => $sid);
call_ok($t, "the retry's Stream URL");
--- no_error_log eval
[qr/\[error\]/, qr/\[warn\].*webhook repeated/]



=== TEST 3: once the stream is open, a repeated webhook gets <Hangup/> and a rate-limited [warn]
# The call is answered already, so <Reject/> no longer applies and the
# same Stream URL would only be refused: the module answers Hangup, during
# the call and after it (the record outlives the token).
--- perl_check
my $sid = new_call_sid();
my $req = signed_request($sid);
my ($first) = pipelined($req);
my $token = token_of($first->{body});
ok($token, 'the webhook answered a Stream URL');
my @during;
my $t = twilio_call(token => $token, call_sid => $sid,
    steps => [twilio_steps(<<'S', { call_sid => $sid })],
setup
sync repeat
ctl {"deltas": {"n": 1}}
wait media
stop
wait_close 3000
S
    on_sync => sub { @during = pipelined(($req) x 300); return });
call_ok($t, 'the call');
is_deeply(statuses(@during), { 200 => 300 }, '300 repeats during the call: 200');
my %bodies;
$bodies{$_->{body}}++ for @during;
is_deeply([keys %bodies], [HANGUP], 'each exactly <Response><Hangup/></Response>');
like($during[0]{head} // '', qr/^Content-Type: text\/xml\r?$/mi, 'as text/xml');
my @after = pipelined(($req) x 5);
is_deeply([map { $_->{body} } @after], [(HANGUP) x 5], 'after the call too');
is(minted_lines($sid), 1, 'still one token minted');
my @counts = repeat_counts($sid, 'used');
cmp_ok(scalar @counts, '>=', 1, 'the repeats are logged at [warn]');
cmp_ok(scalar @counts, '<=', 6, 'at most one line a second (' . scalar(@counts) . ')');
is($counts[0], 1, 'the first at once, counting itself');
Time::HiRes::sleep(1.1);
my ($late) = pipelined($req);
is($late->{body}, HANGUP, 'a repeat a second later: Hangup');
is(sum(repeat_counts($sid, 'used')), 306, 'the [warn] counts add up to the 306 repeats')
    or diag explain [repeat_counts($sid, 'used')];
is(scalar(repeat_counts($sid, 'open')), 0, 'no repeat was answered with the Stream URL');
--- no_error_log eval
[qr/\[error\]/]



=== TEST 4: with two workers (reuseport) a retry is idempotent whichever worker answers
# Each worker counts and logs its own repeats; the record is in the shared
# zone, so both answer the same TwiML before the stream opens and Hangup
# after it.  The test fails unless both workers answered both ways.
--- workers: 2
--- master_on
--- config
listen 127.0.0.1:$TEST_NGINX_SERVER_PORT reuseport;
location = /incoming-call {
    voice_incoming_call;
    add_header X-Pid $pid always;
}
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&ctl=1;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
--- perl_check
my $sid = new_call_sid();
my $req = signed_request($sid);
# one request a connection: the kernel spreads connections, not requests
my (%pids, %bodies);
for (1 .. 200) {
    my ($r) = pipelined($req);
    $pids{$r->{pid} // 'none'}++;
    $bodies{$r->{body}}++;
    last if keys %pids >= 2 and $_ >= 10;
}
is(scalar(grep { $_ ne 'none' } keys %pids), 2, 'both workers answered the webhook')
    or diag explain \%pids;
is(scalar keys %bodies, 1, 'all with the same TwiML') or diag explain \%bodies;
my ($twiml) = keys %bodies;
my $token = token_of($twiml);
ok($token, 'a Stream URL');
is(minted_lines($sid), 1, 'one token minted, by one of them');
my $t = real_call(token => $token, call_sid => $sid);
call_ok($t, 'the call');
my (%hpids, %hbodies);
for (1 .. 200) {
    my ($r) = pipelined($req);
    $hpids{$r->{pid} // 'none'}++;
    $hbodies{$r->{body}}++;
    last if keys %hpids >= 2 and $_ >= 10;
}
is(scalar(grep { $_ ne 'none' } keys %hpids), 2, 'both workers answered after the stream opened')
    or diag explain \%hpids;
is_deeply([keys %hbodies], [HANGUP], 'all with Hangup');
--- no_error_log eval
[qr/\[error\]/]



=== TEST 5: the 1m zone still fills up with distinct CallSids: 503, and the calls in it are still answered
# What bounds the zone now is distinct signed CallSids, which only Twilio
# makes.  A replay of a CallSid already in the zone needs no room: it is
# answered even while the zone is full.
--- perl_check
my @sids = map { new_call_sid() } 1 .. 6000;
my @reqs = map { signed_request($_) } @sids;
my @res = pipelined(@reqs);
my $ok = 0;
$ok++ while $ok < @res and $res[$ok]{status} == 200;
my @rest = map { $_->{status} } @res[$ok .. $#res];
cmp_ok($ok, '>=', 1000, "$ok distinct calls fit in 1m");
ok(@rest && !grep({ $_ != 503 } @rest), 'then every new CallSid got 503')
    or diag explain statuses(@res[$ok .. $#res]);
note("$ok calls fit in 1m; " . scalar(@rest) . ' got 503');
like($res[-1]{body} // '', qr/503/, 'the nginx 503 page, no Stream URL');
my ($kept) = pipelined($reqs[0]);
is($kept->{status}, 200, 'a repeat of the first call, with the zone full: 200');
is($kept->{body}, $res[0]{body}, 'its same TwiML');
my ($last) = pipelined($reqs[$ok - 1]);
is($last->{body}, $res[$ok - 1]{body}, 'the last call admitted too');
my $t = real_call(token => token_of($res[0]{body}), call_sid => $sids[0]);
call_ok($t, 'the first call');
--- error_log eval
qr/\[error\] .*voice: could not allocate token in voice_token_zone "tokens": zone is full/
--- no_error_log eval
[qr/\[error\](?!.*zone is full)/]
