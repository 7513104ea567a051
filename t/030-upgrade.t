# The Media Stream upgrade (voice_media_stream), checked before 101, with
# raw requests so every header is under the test's control:
#   1. the request: HTTP/1.1 and not a subrequest (400), GET (405), a
#      WebSocket upgrade with a 24-character key (400), version 13 (426),
#      no query string (403);
#   2. X-Twilio-Signature over wss://HOST + path, no params (403);
#   3. the token, the last path segment, consumed once (403).
# A refused upgrade must not spend the token: every refusal below is
# followed by a good upgrade with the same token, which must get 101.
#
# Signatures are made by the real `twilio` npm package (sign_twilio).  The
# OpenAI side points at a closed local port (voice_openai_url), so an
# accepted stream is closed at once with 1011 and nothing leaves the host;
# the [error] line of that refused connect is the only [error] expected.
use Test::Voice;
use Protocol::WebSocket::Frame;

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

# --- helpers (package main, so perl_check code can call them) ---------------

sub AUTH_TOKEN ()  { '12345' }
sub WEBHOOK_URL () { 'https://voice.example.com/incoming-call' }
sub RFC_KEY ()     { 'dGhlIHNhbXBsZSBub25jZQ==' }      # RFC 6455, 1.3
sub RFC_ACCEPT ()  { 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=' }

sub call_body {
    my $sid = sprintf 'CA%032x', int rand 0xffffffff;
    return "AccountSid=AC0123456789abcdef0123456789abcdef&CallSid=$sid"
         . '&From=%2B15551234567&To=%2B15557654321';
}

# Mints a token with a signed webhook and returns it; mint_base() returns
# the TwiML's Stream URL base too.
sub mint { (mint_base())[0] }

sub mint_base {
    my $body = call_body();
    my $r = http_post('/incoming-call', $body, headers => [
        'Host' => 'voice.example.com',
        'Content-Type' => 'application/x-www-form-urlencoded',
        'X-Twilio-Signature' => sign_twilio(AUTH_TOKEN, WEBHOOK_URL, $body)]);
    my ($base, $token) = ($r->{body} // '') =~
        m{<Stream url="(wss://[^"]*)/([A-Za-z0-9_-]{43})"/>}
        or die "no token minted: $r->{status} $r->{body}\n";
    return ($token, $base);
}

# The raw bytes of an upgrade request.  Options: token, path, query (added
# to the request target only), method, proto, host, set => {Header => value
# or undef to leave it out}, add => ["Header: value", ...], and the
# signature: sign_url (default wss://voice.example.com + path), sign_params
# (default none), sig (a literal value), no_sig.
sub upgrade {
    my (%o) = @_;
    my $path = $o{path} // "/media-stream/$o{token}";
    my @h = (
        Host                    => $o{host} // 'voice.example.com',
        Upgrade                 => 'websocket',
        Connection              => 'Upgrade',
        'Sec-WebSocket-Key'     => RFC_KEY,
        'Sec-WebSocket-Version' => '13',
    );
    unless ($o{no_sig}) {
        push @h, 'X-Twilio-Signature' => $o{sig} // sign_twilio(AUTH_TOKEN,
            $o{sign_url} // "wss://voice.example.com$path", $o{sign_params});
    }
    my $set = $o{set} // {};
    my $head = '';
    while (my ($k, $v) = splice @h, 0, 2) {
        $v = $set->{$k} if exists $set->{$k};
        $head .= "$k: $v\r\n" if defined $v;
    }
    $head .= "$_\r\n" for @{$o{add} // []};
    return sprintf("%s %s%s %s\r\n", $o{method} // 'GET', $path,
                   $o{query} // '', $o{proto} // 'HTTP/1.1') . $head . "\r\n";
}

# Sends bytes (or packets, `delay` apart) on a new connection and reads the
# responses: until EOF, or until `n` (default 1) non-101 responses are whole
# (a keep-alive connection stays open after them).  After a 101 it reads the
# frames until EOF, answering a close frame, or stops at the 101's header
# with head_only.  Returns a list of
# {status, reason, headers (lower-case names), head (raw), body, frames
# (the bytes after a 101)}, plus {eof} and {timeout} on the last one.
sub exchange {
    my ($packets, %o) = @_;
    my @packets = ref $packets ? @$packets : ($packets);
    my $want = $o{n} // 1;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => server_port(), Proto => 'tcp', Timeout => 5)
        or die "connect: $!\n";
    local $SIG{PIPE} = 'IGNORE';
    for my $i (0 .. $#packets) {
        Time::HiRes::sleep($o{delay} // 0.02) if $i;
        my $data = $packets[$i];
        while (length $data) {
            my $n = syswrite $sock, $data;
            last unless $n;
            substr($data, 0, $n, '');
        }
    }
    my ($buf, $eof, $timeout, $replied) = ('', 0, 0, 0);
    my $deadline = Time::HiRes::time() + ($o{timeout} // 5);
    my @res;
    while (1) {
        @res = parse_responses($buf, $eof);
        last if $eof;
        my @whole = grep { $_->{complete} && $_->{status} != 101 } @res;
        last if @whole >= $want and @whole == @res;
        if (@res and $res[-1]{status} == 101) {
            last if $o{head_only};
            # The close handshake: answer the server's close frame with one
            # of our own (masked, same code), then the server ends the TCP
            # connection.
            my ($close) = grep { $_->{opcode} == 8 } frames_of($res[-1]{frames});
            if ($close and !$replied++) {
                syswrite $sock, Protocol::WebSocket::Frame->new(type => 'close',
                    buffer => substr($close->{payload}, 0, 2), masked => 1)->to_bytes;
            }
        }
        my $left = $deadline - Time::HiRes::time();
        if ($left <= 0) { $timeout = 1; last }
        next unless IO::Select->new($sock)->can_read($left);
        my $n = sysread $sock, $buf, 65536, length $buf;
        $eof = 1 unless $n;
    }
    close $sock;
    push @res, {} unless @res;
    @{$res[-1]}{qw(eof timeout)} = ($eof, $timeout);
    return @res;
}

sub parse_responses {
    my ($buf, $eof) = @_;
    my @res;
    while (length $buf) {
        my $end = index $buf, "\r\n\r\n";
        last if $end < 0;
        my $head = substr $buf, 0, $end;
        $buf = substr $buf, $end + 4;
        my ($line, @lines) = split /\r\n/, $head;
        my ($status, $reason) = $line =~ m{^HTTP/1\.1 (\d{3}) ?(.*)$}
            or return (@res, { status => 'garbage', head => $line });
        my %h;
        for (@lines) {
            my ($k, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
            $h{lc $k} = exists $h{lc $k} ? "$h{lc $k}, $v" : $v;
        }
        my $r = { status => $status, reason => $reason, headers => \%h,
                  head => $head };
        push @res, $r;
        if ($status == 101) {           # the rest are WebSocket frames
            @$r{qw(frames complete)} = ($buf, $eof);
            last;
        }
        if (($h{'transfer-encoding'} // '') =~ /chunked/i) {     # e.g. SSI
            my $end = index $buf, "\r\n0\r\n\r\n";
            $r->{complete} = $end >= 0;
            $r->{body} = $end >= 0 ? substr($buf, 0, $end + 7) : $buf;
            $buf = $end >= 0 ? substr($buf, $end + 7) : '';
            next;
        }
        my $len = $h{'content-length'} // 0;
        $r->{body} = substr $buf, 0, $len;
        $r->{complete} = length($buf) >= $len;
        $buf = length($buf) > $len ? substr($buf, $len) : '';
    }
    return @res;
}

# The frames after a 101, decoded by Protocol::WebSocket::Frame.
sub frames_of {
    my ($bytes) = @_;
    my $f = Protocol::WebSocket::Frame->new(max_payload_size => 0);
    $f->append($bytes);
    my @frames;
    while (defined(my $payload = $f->next_bytes)) {
        push @frames, { opcode => $f->opcode, fin => $f->fin,
                        masked => $f->masked, payload => $payload };
    }
    return @frames;
}

# Checks a response is the 101 the module gives today: the handshake, then
# one close frame 1011 and the end of the connection.
sub is_accepted {
    my ($r, $what) = @_;
    is($r->{status}, 101, "$what: 101") or do { diag($r->{head} // 'no response'); return };
    is($r->{headers}{upgrade}, 'websocket', "$what: Upgrade: websocket");
    is(lc($r->{headers}{connection} // ''), 'upgrade', "$what: Connection: upgrade");
    my @frames = frames_of($r->{frames});
    is(scalar @frames, 1, "$what: one frame after the 101");
    is_deeply([map { [$_->{opcode}, $_->{fin}, $_->{masked}] } @frames], [[8, 1, 0]],
              "$what: a close frame, final, not masked");
    is(unpack('n', $frames[0]{payload} // ''), 1011, "$what: close code 1011") if @frames;
    ok($r->{eof} && !$r->{timeout}, "$what: then the connection is closed");
}

# A good upgrade for $token, on a new connection: must be 101.
sub still_valid {
    my ($token, $what) = @_;
    my ($r) = exchange(upgrade(token => $token), head_only => 1);
    is($r->{status}, 101, "$what: the token was not spent (a good upgrade gets 101)")
        or diag($r->{head} // 'no response');
}

# Reading error.log from a point on, debug lines left out.
sub log_mark { -s servroot() . '/logs/error.log' || 0 }
sub log_from {
    my ($mark) = @_;
    open my $fh, '<', servroot() . '/logs/error.log' or return '';
    seek $fh, $mark, 0;
    local $/;
    return join "\n", grep { !/\[debug\]/ } split /\n/, <$fh> // '';
}

# Runs one refusal case: a fresh token, the bad request, the expected status,
# headers and single log line, then the same token upgraded properly.
sub refused {
    my (%c) = @_;
    my $token = mint();
    my $mark = log_mark();
    my ($r) = exchange(upgrade(token => $token, %{$c{req}}));
    is($r->{status}, $c{status}, "$c{name}: $c{status}")
        or diag($r->{head} // 'no response');
    for my $k (sort keys %{$c{headers} // {}}) {
        is($r->{headers}{lc $k}, $c{headers}{$k}, "$c{name}: $k: $c{headers}{$k}");
    }
    ok(!exists $r->{headers}{'sec-websocket-accept'}, "$c{name}: no Sec-WebSocket-Accept");
    my $log = log_from($mark);
    if ($c{log}) {
        my @lines = grep { /voice: / } split /\n/, $log;
        is(scalar @lines, 1, "$c{name}: one voice log line") or diag($log);
        like($lines[0] // '', $c{log}, "$c{name}: it says why");
    }
    still_valid($token, $c{name});
}

# --- redaction (issue 8): a token is cut to its first 4 characters + "..."

# Every error.log line from a point on, debug lines too.
sub log_lines_from {
    my ($mark) = @_;
    open my $fh, '<', servroot() . '/logs/error.log' or return ();
    seek $fh, $mark, 0;
    local $/;
    return split /\n/, <$fh> // '';
}

# The access log from a point on (the harness's "combined" format: $request).
sub access_mark { -s servroot() . '/logs/access.log' || 0 }
sub access_from {
    my ($mark) = @_;
    open my $fh, '<', servroot() . '/logs/access.log' or return '';
    seek $fh, $mark, 0;
    local $/;
    return <$fh> // '';
}

# A path (or request target) as the module leaves it in the request line:
# each run of 43 or more base64url characters cut to its first 4 and "...".
sub redacted {
    my ($s) = @_;
    $s =~ s/([A-Za-z0-9_-]{43,})/substr($1, 0, 4) . '...'/ge;
    return $s;
}

# The log lines since $mark that show a secret: lines above debug level,
# and the module's own lines ("voice: ...") at any level.  (nginx's own
# debug lines, written before the module's handler runs or from r->uri,
# still carry it: README, "Known limits".)
sub leaks {
    my ($mark, @secrets) = @_;
    return grep { my $l = $_; ($l !~ /\[debug\]/ or $l =~ /voice: /)
                              and grep { index($l, $_) >= 0 } @secrets }
           log_lines_from($mark);
}

# One refused upgrade: a fresh token, the request (path with T standing for
# the token, the signature over exactly that path unless told otherwise),
# 403 and one [warn] line matching $why whose request context carries the
# redacted path; the token in no line of the error or access log; then the
# token opens a stream.
sub refused_redacted {
    my (%c) = @_;
    my $token = mint();
    (my $path = $c{path}) =~ s/T/$token/g;
    (my $query = $c{query} // '') =~ s/T/$token/g;
    my $mark = log_mark();
    my $amark = access_mark();
    my %req = (path => $path, query => $query, %{$c{req} // {}});
    my ($r) = exchange(upgrade(%req));
    is($r->{status}, 403, "$c{name}: 403") or diag($r->{head} // 'no response');
    my @warn = grep { /\[warn\] .*voice: / } log_lines_from($mark);
    is(scalar @warn, 1, "$c{name}: one [warn] line") or diag(join "\n", @warn);
    like($warn[0] // '', $c{why}, "$c{name}: it says why");
    my $line = redacted("GET $path$query HTTP/1.1");
    like($warn[0] // '', qr/, request: "\Q$line\E", host: "voice\.example\.com"$/,
         "$c{name}: its request is $line");
    my @leaks = leaks($mark, $token);
    is(scalar @leaks, 0, "$c{name}: the token is in no log line")
        or diag($leaks[0]);
    # (the access log line is written as the request is freed)
    my $access = '';
    for (1 .. 50) {
        $access = access_from($amark);
        last if $access =~ /"GET [^\n]* 403 /;
        Time::HiRes::sleep(0.02);
    }
    like($access, qr/"\Q$line\E" 403 /, "$c{name}: the access log has the redacted request");
    unlike($access, qr/\Q$token\E/, "$c{name}: and not the token");
    still_valid($token, $c{name});
}

run_tests();

__DATA__

=== TEST 1: a good upgrade: 101, the RFC 6455 accept value, then close 1011
--- perl_check
my $token = mint();
my ($r) = exchange(upgrade(token => $token));
is_accepted($r, 'good upgrade');
# nginx writes no reason phrase for a 1xx it has no text for; RFC 9112
# allows an empty one, so only the code is checked.
like($r->{head}, qr{\AHTTP/1\.1 101 [^\r\n]*\r\n}, 'the status line');
is($r->{headers}{'sec-websocket-accept'}, RFC_ACCEPT, "Sec-WebSocket-Accept for RFC 6455's key");
ok(!exists $r->{headers}{$_}, "no $_ on a 101") for 'content-length', 'transfer-encoding';
($r) = exchange(upgrade(token => $token));
is($r->{status}, 403, 'the same request again: 403 (the token was used)');
--- error_log eval
[qr/\[info\] .*voice: media stream accepted for call CA[0-9a-f]{32}/,
 qr/\[warn\] .*voice: media stream upgrade rejected: token already used/]
--- no_error_log eval
[qr/\[error\](?!.* to OpenAI )/, 'token unknown']



=== TEST 2: the request checks (400/405/426/403), none of which spends the token
--- perl_check
my $not_upgrade = qr/\[info\] .*voice: media stream request is not a WebSocket upgrade/;
my $bad_key = qr/\[info\] .*voice: media stream upgrade has no valid Sec-WebSocket-Key/;
refused(name => 'HTTP/1.0', req => { proto => 'HTTP/1.0' }, status => 400,
        log => qr/\[info\] .*voice: media stream upgrade needs HTTP\/1\.1/);
refused(name => 'missing Upgrade', req => { set => { Upgrade => undef } },
        status => 400, log => $not_upgrade);
refused(name => 'Upgrade: h2c', req => { set => { Upgrade => 'h2c' } },
        status => 400, log => $not_upgrade);
refused(name => 'Upgrade: websocket2', req => { set => { Upgrade => 'websocket2' } },
        status => 400, log => $not_upgrade);
refused(name => 'missing Connection', req => { set => { Connection => undef } },
        status => 400, log => $not_upgrade);
refused(name => 'Connection: keep-alive', req => { set => { Connection => 'keep-alive' } },
        status => 400, log => $not_upgrade);
refused(name => 'Connection: upgraded', req => { set => { Connection => 'upgraded' } },
        status => 400, log => $not_upgrade);
refused(name => 'missing key', req => { set => { 'Sec-WebSocket-Key' => undef } },
        status => 400, log => $bad_key);
refused(name => 'key of 23 characters', req => { set => { 'Sec-WebSocket-Key' => substr(RFC_KEY, 1) } },
        status => 400, log => $bad_key);
refused(name => 'key of 25 characters', req => { set => { 'Sec-WebSocket-Key' => RFC_KEY . 'A' } },
        status => 400, log => $bad_key);
refused(name => 'version 8', req => { set => { 'Sec-WebSocket-Version' => '8' } },
        status => 426, headers => { 'Sec-WebSocket-Version' => '13' },
        log => qr/\[info\] .*voice: media stream upgrade has an unsupported Sec-WebSocket-Version/);
refused(name => 'no version', req => { set => { 'Sec-WebSocket-Version' => undef } },
        status => 426, headers => { 'Sec-WebSocket-Version' => '13' });
refused(name => 'query string ?token=x', req => { query => '?token=x' }, status => 403,
        log => qr/\[warn\] .*voice: media stream upgrade rejected: query string in the request/);
refused(name => 'empty query string', req => { query => '?' }, status => 403,
        log => qr/\[warn\] .*query string in the request/);
refused(name => 'POST', req => { method => 'POST', add => ['Content-Length: 0'] },
        status => 405, headers => { Allow => 'GET' });
refused(name => 'HEAD', req => { method => 'HEAD' }, status => 405,
        headers => { Allow => 'GET' });
--- no_error_log eval
[qr/\[error\](?!.* to OpenAI )/, 'token already used', 'token unknown']



=== TEST 3: header variants a real client may send are accepted
--- perl_check
my %variants = (
    'Connection: keep-alive, Upgrade' => { Connection => 'keep-alive, Upgrade' },
    'Connection: upgrade (lower case)' => { Connection => 'upgrade' },
    'Connection: Upgrade , keep-alive' => { Connection => 'Upgrade , keep-alive' },
    'Upgrade: WebSocket (mixed case)' => { Upgrade => 'WebSocket' },
);
for my $name (sort keys %variants) {
    my ($r) = exchange(upgrade(token => mint(), set => $variants{$name}));
    is_accepted($r, $name);
}
# A key other than the RFC's gets its own accept value.
my $key = 'x3JJHMbDL1EzLkh9GBhXDw==';
my ($r) = exchange(upgrade(token => mint(), set => { 'Sec-WebSocket-Key' => $key }));
is($r->{headers}{'sec-websocket-accept'},
   MIME::Base64::encode_base64(Digest::SHA::sha1($key . '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'), ''),
   'the accept value follows the key (base64 of SHA-1 of key + GUID)');
--- error_log eval
qr/\[info\] .*voice: media stream accepted/
--- no_error_log eval
[qr/\[warn\].*voice: media stream upgrade rejected/, qr/\[error\](?!.* to OpenAI )/]



=== TEST 4: the checks run in the documented order
# Each request fails two checks; the status and the log line show which
# ran first.
--- perl_check
my @order = (
    ['HTTP/1.0 before the method', { proto => 'HTTP/1.0', method => 'POST' }, 400, qr/needs HTTP\/1\.1/],
    ['the method before the headers', { method => 'POST', add => ['Content-Length: 0'],
                                        set => { Upgrade => undef } }, 405, undef],
    ['Upgrade before the version', { set => { Upgrade => undef, 'Sec-WebSocket-Version' => '8' } },
     400, qr/not a WebSocket upgrade/],
    ['the key before the version', { set => { 'Sec-WebSocket-Key' => 'short', 'Sec-WebSocket-Version' => '8' } },
     400, qr/no valid Sec-WebSocket-Key/],
    ['the version before the query', { query => '?x=1', set => { 'Sec-WebSocket-Version' => '8' } },
     426, qr/unsupported Sec-WebSocket-Version/],
    ['the query before the signature', { query => '?x=1', no_sig => 1 }, 403, qr/query string/],
    ['the path rule before the signature', { path => '/media-stream/unknown', no_sig => 1 },
     403, qr/not the location's prefix followed by a token/],
    ['the signature before the token', { path => '/media-stream/' . ('u' x 43), no_sig => 1 },
     403, qr/no X-Twilio-Signature/],
);
for my $c (@order) {
    my ($name, $req, $status, $log) = @$c;
    my $token = mint();
    my $mark = log_mark();
    my ($r) = exchange(upgrade(token => $token, %$req));
    is($r->{status}, $status, "$name: $status");
    like(log_from($mark), $log, "$name: logged") if $log;
    still_valid($token, $name);
}
--- no_error_log eval
[qr/\[error\](?!.* to OpenAI )/, 'token unknown']



=== TEST 5: a subrequest to the media stream location is refused (400), token kept
--- config
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
location = /incoming-call { voice_incoming_call; }
location /media-stream/ { voice_media_stream; }
location = /ssi {
    default_type text/html;
    ssi on;
    return 200 '<!--# include virtual="/media-stream/$arg_t" -->';
}
--- perl_check
my $token = mint();
my $mark = log_mark();
# The main request carries every upgrade header and a good signature, so
# only "is a subrequest" can refuse the included one.
my $req = upgrade(token => $token);
$req =~ s{^GET /media-stream/\S+ }{GET /ssi?t=$token };
my ($r) = exchange($req);
is($r->{status}, 200, 'the main request is answered 200, not upgraded');
like($r->{body}, qr/400 Bad Request/, 'with the 400 page of the subrequest included');
like(log_from($mark), qr/\[info\] .*voice: media stream upgrade needs HTTP\/1\.1.*subrequest: "\/media-stream\//,
     'the subrequest is refused by the first check');
still_valid($token, 'after the subrequest');
--- no_error_log eval
[qr/\[error\](?!.* to OpenAI )/, 'token already used']



=== TEST 6: the signature: what is refused (403, token kept) and what is accepted
--- perl_check
my $mismatch = qr/\[warn\] .*voice: media stream upgrade rejected: X-Twilio-Signature does not match/;
refused(name => 'no signature', req => { no_sig => 1 }, status => 403,
        log => qr/\[warn\] .*voice: media stream upgrade rejected: no X-Twilio-Signature/);
refused(name => 'empty signature', req => { sig => '' }, status => 403);
refused(name => 'garbage signature', req => { sig => 'x' x 28 }, status => 403, log => $mismatch);
my $t = 'T' x 43;   # stands for the token in the URLs below
my %bad = (
    'signed over https://'          => 'https://voice.example.com/media-stream/T',
    'signed over ws://'             => 'ws://voice.example.com/media-stream/T',
    'signed with :80'               => 'wss://voice.example.com:80/media-stream/T',
    'signed with :8443'             => 'wss://voice.example.com:8443/media-stream/T',
    'signed over another host'      => 'wss://other.example.com/media-stream/T',
    'signed over the webhook URL'   => WEBHOOK_URL,
    'signed over the path without the token' => 'wss://voice.example.com/media-stream',
);
for my $name (sort keys %bad) {
    my $token = mint();
    (my $url = $bad{$name}) =~ s{/T$}{/$token};
    refused(name => $name, req => { sign_url => $url }, status => 403, log => $mismatch);
}
refused(name => 'signed with the webhook body as params',
        req => { sign_params => call_body() }, status => 403, log => $mismatch);
refused(name => 'signed with another auth token',
        req => { sig => sign_twilio('54321', 'wss://voice.example.com/media-stream/' . mint(), undef) },
        status => 403);
# A signature made for one token's URL does not open another token.
my ($ta, $tb) = (mint(), mint());
my ($r) = exchange(upgrade(token => $ta,
    sig => sign_twilio(AUTH_TOKEN, "wss://voice.example.com/media-stream/$tb", undef)));
is($r->{status}, 403, "token A with token B's signature: 403");
still_valid($ta, 'token A');
still_valid($tb, 'token B');

# The URL is never taken from the request's Host: a client cannot choose
# the host it signs over.
my $token = mint();
($r) = exchange(upgrade(token => $token, host => 'evil.example.com',
    sign_url => "wss://evil.example.com/media-stream/$token"));
is($r->{status}, 403, 'Host: evil.example.com and signed over it: 403');
($r) = exchange(upgrade(token => $token, host => 'evil.example.com',
    add => ['X-Forwarded-Host: evil.example.com', 'X-Forwarded-Proto: https']));
is($r->{status}, 101, 'Host: evil.example.com, signed over voice_public_url\'s host: 101');

# The four URL variants Twilio's backend may sign: {as is, "/" toggled}
# x {no port, :443}.
for my $v (['as is', ''], ['with :443', ':443']) {
    for my $slash (['', ''], ['and a trailing /', '/']) {
        my $token = mint();
        my ($r) = exchange(upgrade(token => $token,
            sign_url => "wss://voice.example.com$v->[1]/media-stream/$token$slash->[1]"));
        is($r->{status}, 101, "signed $v->[0] $slash->[0]: 101");
    }
}
--- no_error_log eval
[qr/\[error\](?!.* to OpenAI )/, 'token unknown', 'token already used']



=== TEST 7: voice_stream_url: the TwiML uses its host and the signature is over it
--- config
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
location = /incoming-call {
    voice_stream_url wss://streams.example.com/media-stream;
    voice_incoming_call;
}
location /media-stream/ {
    voice_stream_url wss://streams.example.com/media-stream;
    voice_media_stream;
}
--- perl_check
my ($token, $base) = mint_base();
is($base, 'wss://streams.example.com/media-stream', 'the Stream URL in the TwiML uses voice_stream_url');
my ($r) = exchange(upgrade(token => $token,
    sign_url => "wss://voice.example.com/media-stream/$token"));
is($r->{status}, 403, "signed over voice_public_url's host: 403");
($r) = exchange(upgrade(token => $token, host => 'streams.example.com',
    sign_url => "wss://streams.example.com/media-stream/$token"));
is_accepted($r, "signed over the voice_stream_url host");
--- error_log eval
[qr/\[warn\] .*X-Twilio-Signature does not match/,
 qr/\[info\] .*voice: media stream accepted/]
--- no_error_log eval
[qr/\[error\](?!.* to OpenAI )/, 'token unknown']



=== TEST 8: voice_stream_url set once at server level serves both locations
--- config
voice_public_url https://voice.example.com;
voice_stream_url wss://streams.example.com/media-stream;
voice_twilio_auth_token 12345;
location = /incoming-call { voice_incoming_call; }
location /media-stream/ { voice_media_stream; }
--- perl_check
my ($token, $base) = mint_base();
is($base, 'wss://streams.example.com/media-stream', 'the Stream URL uses voice_stream_url');
my ($r) = exchange(upgrade(token => $token,
    sign_url => "wss://streams.example.com:443/media-stream/$token/"));
is($r->{status}, 101, 'signed over its host (with :443 and a trailing /): 101');
--- no_error_log eval
[qr/\[warn\].*voice: media stream upgrade rejected/, qr/\[error\](?!.* to OpenAI )/]



=== TEST 8b: a port in voice_public_url is not part of the Stream URL or its signature
--- config
voice_public_url https://voice.example.com:8443;
voice_twilio_auth_token 12345;
location = /incoming-call { voice_incoming_call; }
location /media-stream/ { voice_media_stream; }
--- perl_check
my $body = call_body();
my $r = http_post('/incoming-call', $body, headers => [
    'Content-Type' => 'application/x-www-form-urlencoded',
    'X-Twilio-Signature' => sign_twilio(AUTH_TOKEN, 'https://voice.example.com:8443/incoming-call', $body)]);
my ($base, $token) = $r->{body} =~ m{<Stream url="(wss://[^"]*)/([A-Za-z0-9_-]{43})"/>};
is($base, 'wss://voice.example.com/media-stream', 'the Stream URL has no port (Twilio streams to 443)');
($r) = exchange(upgrade(token => $token,
    sign_url => "wss://voice.example.com:8443/media-stream/$token"));
is($r->{status}, 403, 'signed with :8443: 403');
($r) = exchange(upgrade(token => $token));
is($r->{status}, 101, 'signed over the Stream URL as given: 101');
--- error_log eval
qr/\[warn\] .*X-Twilio-Signature does not match/
--- no_error_log eval
[qr/\[error\](?!.* to OpenAI )/, 'token unknown']



=== TEST 9: voice_signature off on the media location: no signature needed
--- config
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_signature off;
    voice_media_stream;
}
--- perl_check
my ($r) = exchange(upgrade(token => mint(), no_sig => 1));
is_accepted($r, 'no signature');
($r) = exchange(upgrade(token => mint(), sig => 'x' x 28));
is($r->{status}, 101, 'a wrong signature is ignored too');
my $token = mint();
exchange(upgrade(token => $token, no_sig => 1));
($r) = exchange(upgrade(token => $token, no_sig => 1));
is($r->{status}, 403, 'the token is still single use');
--- error_log eval
[qr/\[warn\] .*"voice_signature" is off: media stream upgrades are not authenticated/,
 qr/\[warn\] .*token already used/]
--- no_error_log eval
[qr/\[error\](?!.* to OpenAI )/, qr/\[(?:warn|info)\].*X-Twilio-Signature/]



=== TEST 10: the upgrade request in small packets, and pipelined behind refusals
--- perl_check
# Packets of 7 bytes, so names, values and CRLFs are all cut somewhere.
my $req = upgrade(token => mint());
my ($r) = exchange([unpack '(a7)*', $req], delay => 0.01);
is_accepted($r, 'request in 7-byte packets');
# The headers, then the end of the header block alone.
$req = upgrade(token => mint());
($r) = exchange([substr($req, 0, -2), "\r\n"], delay => 0.2);
is_accepted($r, 'final CRLF late');
# A client frame right behind the request, in the same packet.
my $frame = Protocol::WebSocket::Frame->new(buffer => '{"event":"connected"}',
                                            masked => 1)->to_bytes;
($r) = exchange(upgrade(token => mint()) . $frame);
is_accepted($r, 'request and a frame in one packet');
# A refusal that keeps the connection alive, then a good upgrade on it.
my $token = mint();
my @r = exchange(upgrade(token => $token, query => '?token=x')
                 . upgrade(token => $token), n => 2);
is_deeply([map { $_->{status} } @r], [403, 101],
          'pipelined: 403 (query), then 101 for the same token');
is_accepted($r[-1], 'the pipelined upgrade') if @r == 2;
# A 426 closes the connection (nothing behind it is read as a request),
# and the token is still unspent.
$token = mint();
@r = exchange(upgrade(token => $token, set => { 'Sec-WebSocket-Version' => '8' })
              . upgrade(token => $token), n => 2);
is_deeply([map { $_->{status} } @r], [426],
          'pipelined behind a 426: only the 426 is answered');
like($r[0]{head} // '', qr/^Connection: .*upgrade/mi,
     'the 426 carries the upgrade connection option') if @r;
($r) = exchange(upgrade(token => $token));
is_accepted($r, 'the token refused with 426 is unspent');
--- no_error_log eval
[qr/\[error\](?!.* to OpenAI )/, 'token unknown', 'token already used']



=== TEST 11: bad input never crashes: 4xx, no [alert], nginx answers the next request
--- perl_check
my $token = mint();
my $encoded = join '', map { sprintf '%%%02X', ord } split //, $token;
my @cases = (
    ['a 7,000-byte path (signed)', { path => '/media-stream/' . ('A' x 7000) }],
    ['a 10,000-byte path', { path => '/media-stream/' . ('A' x 10000) }],
    ['the path /media-stream/ (signed)', { path => '/media-stream/' }],
    ['the path /media-stream//', { path => '/media-stream//' }],
    ['the token percent-encoded (signed)', { path => "/media-stream/$encoded" }],
    ['%2F before the token', { path => "/media-stream/x%2F$token" }],
    ['%00 in the path', { path => "/media-stream/%00$token" }],
    ['dot segments', { path => "/media-stream/../media-stream/x/.." }],
    ['an 8k header line', { add => ['X-Padding: ' . ('p' x 8192)] }],
    ['an 8k signature', { sig => 'A' x 8000 }],
    ['an 8k key', { set => { 'Sec-WebSocket-Key' => 'k' x 8000 } }],
    ['an 8k Connection header', { set => { Connection => (', ' x 4000) . 'keep-alive' } }],
    ['an empty Connection header', { set => { Connection => '' } }],
    ['an empty Upgrade header', { set => { Upgrade => '' } }],
    ['NUL bytes in headers', { set => { Upgrade => "web\0socket", Connection => "Up\0grade" } }],
    ['a version of 8k digits', { set => { 'Sec-WebSocket-Version' => '1' x 8000 } }],
    ['a signature of invalid base64', { sig => '!!!!' x 7 }],
);
for my $c (@cases) {
    my ($name, $req) = @$c;
    my ($r) = exchange(upgrade(token => $token, %$req));
    like($r->{status} // 'none', qr/^4\d\d$/, "$name: a 4xx ($r->{status})");
    my ($ok) = exchange(upgrade(token => mint()));
    is($ok->{status}, 101, "$name: the next upgrade gets 101");
}
still_valid($token, 'after all of that');
--- no_error_log eval
['[alert]', '[crit]', qr/\[error\](?!.* to OpenAI )/, 'token already used']



=== TEST 12: # BUG: a refused method (405) logs no line
# README, voice_media_stream: "Each refusal logs one line saying which check
# failed."  The 405 for POST/HEAD logs nothing (every other refusal does).
--- perl_check
my $token = mint();
my $mark = log_mark();
my ($r) = exchange(upgrade(token => $token, method => 'POST', add => ['Content-Length: 0']));
is($r->{status}, 405, 'POST: 405');
my @lines = grep { /voice: / } split /\n/, log_from($mark);
is(scalar @lines, 1, 'one voice log line saying the method was refused') or diag(log_from($mark));
--- no_error_log eval
[qr/\[error\](?!.* to OpenAI )/]



=== TEST 13: # BUG: the 426 has no "Upgrade: websocket" header
# RFC 9110, 15.5.22: "The server MUST send an Upgrade header field in a 426
# response to indicate the required protocol(s)."
--- perl_check
my ($r) = exchange(upgrade(token => mint(), set => { 'Sec-WebSocket-Version' => '8' }));
is($r->{status}, 426, 'version 8: 426');
is($r->{headers}{'sec-websocket-version'}, '13', 'Sec-WebSocket-Version: 13');
is($r->{headers}{upgrade}, 'websocket', 'Upgrade: websocket') or diag($r->{head});
--- error_log
unsupported Sec-WebSocket-Version
--- no_error_log eval
[qr/\[error\](?!.* to OpenAI )/]



=== TEST 14: # BUG: a 24-character Sec-WebSocket-Key that is not base64 of 16 bytes is accepted
# RFC 6455, 4.2.1: the key is "a base64-encoded value that, when decoded, is
# 16 bytes in length"; otherwise the server "MUST stop processing the
# client's handshake and return ... (such as 400 Bad Request)".  The module
# checks only the length, answers 101 and so spends the token.
--- perl_check
for my $key ('!!!!!!!!!!!!!!!!!!!!!!==',       # not base64 at all
             'AAAAAAAAAAAAAAAAAAAAAAAA') {     # base64 of 18 bytes
    my $token = mint();
    my ($r) = exchange(upgrade(token => $token, set => { 'Sec-WebSocket-Key' => $key }));
    is($r->{status}, 400, "key '$key': 400");
    still_valid($token, "key '$key'");
}
--- no_error_log eval
[qr/\[error\](?!.* to OpenAI )/]



=== TEST 15: # BUG: Connection split over two header lines is refused
# RFC 9110, 5.3: a list-based field such as Connection may be sent as
# several field lines, which mean the same as one line joined with commas.
# "Connection: keep-alive" + "Connection: Upgrade" is a valid upgrade; the
# module reads only the first line and answers 400.
--- perl_check
my ($r) = exchange(upgrade(token => mint(), set => { Connection => 'keep-alive' },
                           add => ['Connection: Upgrade']));
is($r->{status}, 101, 'Connection: keep-alive + Connection: Upgrade: 101');
--- no_error_log eval
[qr/\[error\](?!.* to OpenAI )/]



=== TEST 16: the two accepted paths: the prefix, a token, and at most one "/"
# Issue 8: the path is exactly the location's prefix and a 43-character
# token, with at most one trailing "/".  The signature check always took
# "/media-stream/TOKEN/", but the token was then read as the empty last
# segment, so such a call could never succeed.  Both forms are accepted,
# and even the accepted stream's log lines carry the token cut short.
--- perl_check
my $mark = log_mark();
my ($plain, $slashed) = (mint(), mint());
my ($r) = exchange(upgrade(token => $plain));
is_accepted($r, '/media-stream/TOKEN');
($r) = exchange(upgrade(path => "/media-stream/$slashed/"));
is_accepted($r, '/media-stream/TOKEN/');
my @accepted = grep { /\[info\] .*voice: media stream accepted for call CA[0-9a-f]{32}/ }
               log_lines_from($mark);
is(scalar @accepted, 2, 'two [info] lines: media stream accepted');
like($accepted[0] // '', qr/, request: "GET \/media-stream\/\Q${\ substr($plain, 0, 4)}\E\.\.\. HTTP\/1\.1"/,
     'the first names its request with the token cut to 4 characters and "..."');
like($accepted[1] // '', qr/, request: "GET \/media-stream\/\Q${\ substr($slashed, 0, 4)}\E\.\.\.\/ HTTP\/1\.1"/,
     'the second too, its trailing "/" kept');
my @leaks = leaks($mark, $plain, $slashed);
is(scalar @leaks, 0, 'neither token is in a log line') or diag($leaks[0]);
for my $t ($plain, $slashed) {
    ($r) = exchange(upgrade(path => "/media-stream/$t/"));
    is($r->{status}, 403, 'each token is spent: the other form of its path gets 403');
}
--- error_log eval
qr/\[warn\] .*voice: media stream upgrade rejected: token already used/
--- no_error_log eval
[qr/\[error\](?!.* to OpenAI )/, 'token unknown', qr/not the location's prefix/]



=== TEST 17: a path other than prefix + token [+ "/"]: 403, the token in no log line, and not spent
# Issue 8: "GET /media-stream/TOKEN/x" was refused with a [warn] line whose
# request context carried the whole token, which still opened a stream
# afterwards.  Each request below is signed over its own path, so only the
# path rule (or the query check) refuses it; the [warn] line's request, and
# the access log's, show the token as its first 4 characters and "...".
--- perl_check
my $rule = qr/voice: media stream upgrade rejected: the path is not the location's prefix followed by a token/;
my $query = qr/voice: media stream upgrade rejected: query string in the request/;
refused_redacted(name => 'TOKEN/x', path => '/media-stream/T/x', why => $rule);
refused_redacted(name => 'TOKEN//', path => '/media-stream/T//', why => $rule);
refused_redacted(name => 'x/TOKEN', path => '/media-stream/x/T', why => $rule);
refused_redacted(name => 'x/TOKEN/', path => '/media-stream/x/T/', why => $rule);
refused_redacted(name => '/TOKEN (empty segment before it)', path => '/media-stream//T', why => $rule);
refused_redacted(name => 'TOKEN.json', path => '/media-stream/T.json', why => $rule);
refused_redacted(name => 'TOKEN-x (a longer run)', path => '/media-stream/T-x', why => $rule);
refused_redacted(name => 'TOKEN/TOKEN', path => '/media-stream/T/T', why => $rule);
refused_redacted(name => 'TOKEN?x=1', path => '/media-stream/T', query => '?x=1', why => $query);
refused_redacted(name => 'TOKEN?t=TOKEN', path => '/media-stream/T', query => '?t=T', why => $query);
refused_redacted(name => 'TOKEN/?', path => '/media-stream/T/', query => '?', why => $query);
# the signature and token checks log through the same request context
refused_redacted(name => 'TOKEN/ with a wrong signature', path => '/media-stream/T/',
                 req => { sig => 'x' x 28 },
                 why => qr/voice: media stream upgrade rejected: X-Twilio-Signature does not match/);
refused_redacted(name => 'TOKEN without a signature', path => '/media-stream/T',
                 req => { no_sig => 1 },
                 why => qr/voice: media stream upgrade rejected: no X-Twilio-Signature/);
--- no_error_log eval
[qr/\[error\](?!.* to OpenAI )/, 'token unknown', 'token already used']



=== TEST 18: anything token-shaped in the path is cut, whatever it is; shorter runs are kept
# Not only the real token: every run of 43 or more base64url characters in
# the request line, wherever it is.  A run of 42 is not token-shaped.
--- perl_check
my @c = ('A' .. 'Z', 'a' .. 'z', 0 .. 9, '-', '_');
my $rnd = sub { join '', map { $c[rand @c] } 1 .. $_[0] };
my ($t43, $t60, $t42, $q43) = ($rnd->(43), $rnd->(60), $rnd->(42), $rnd->(43));
my @cases = (
    ['a 43-character segment, then more', "/media-stream/$t43/x", undef],
    ['a 60-character segment in the middle', "/media-stream/a/$t60/b", undef],
    ['a 43-character run in the query', "/media-stream/x", "?a=$q43"],
);
for my $c (@cases) {
    my ($name, $path, $q) = @$c;
    my $mark = log_mark();
    my ($r) = exchange(upgrade(path => $path, query => $q // ''));
    is($r->{status}, 403, "$name: 403");
    my ($warn) = grep { /\[warn\] .*voice: / } log_lines_from($mark);
    my $line = redacted("GET $path" . ($q // '') . ' HTTP/1.1');
    like($warn // '', qr/, request: "\Q$line\E"/, "$name: the request is $line");
    is(scalar(leaks($mark, $t43, $t60, $q43)), 0, "$name: the run is in no log line");
}
my $mark = log_mark();
my ($r) = exchange(upgrade(path => "/media-stream/$t42"));
is($r->{status}, 403, '42 characters: 403 (not a token)');
my ($warn) = grep { /\[warn\] .*voice: / } log_lines_from($mark);
like($warn // '', qr/, request: "GET \/media-stream\/\Q$t42\E HTTP\/1\.1"/,
     '42 characters are not token-shaped: kept as they are');
--- no_error_log eval
[qr/\[error\]/, 'token unknown']
