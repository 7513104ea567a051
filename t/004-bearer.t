# voice_require_bearer: a location only a holder of a secret reaches, as
# a private MCP server is published for OpenAI's cloud (issue 11).  In the
# access phase a request passes only with "Authorization: Bearer SECRET"
# (the scheme case-insensitive, RFC 9110 11.1; the secret compared in
# constant time); anything else gets 401 with "WWW-Authenticate: Bearer"
# and never reaches the upstream.  The secret is loaded like the others
# (literal, env:NAME, file:path) and nginx -t fails when it is empty.
#
# The upstream is a real HTTP server on loopback (t/lib/sse-upstream.js,
# node's http module) that logs every request it gets and streams
# Server-Sent Events; nginx proxies to it as nginx.conf.example publishes
# an MCP server (proxy_http_version 1.1, proxy_buffering off).
use Test::Voice;
use FindBin ();
use File::Path ();
use IPC::Run ();
use IO::Select ();
use JSON::PP ();
use MIME::Base64 ();
use Time::HiRes ();

# The secret of every block, and a file holding it (first line only).
sub SECRET () { 'mcp-Bearer-SECRET-7f3a9c01d2e4b5a6c8' }
my $Dir = servroot() . '/bearer';
File::Path::make_path($Dir);
sub write_file {
    my ($name, $bytes) = @_;
    open my $fh, '>:raw', "$Dir/$name" or die "$Dir/$name: $!";
    print $fh $bytes;
    close $fh;
    return "$Dir/$name";
}
$ENV{TEST_NGINX_SECRET_FILE} = write_file('secret.txt',
                                          SECRET . "\nsecond-line-not-secret\n");
$ENV{TEST_NGINX_EMPTY_FILE} = write_file('empty.txt', "\nSECRET-on-line-two\n");

# --- the upstream ------------------------------------------------------------

my $UpLog = "$Dir/upstream.log";
{
    open my $fh, '>', $UpLog or die $!;
    close $fh;
}
$ENV{TEST_NGINX_UPSTREAM_PORT} = Test::Voice::pick_port();
my $Up = IPC::Run::start(
    ['node', "$FindBin::Bin/lib/sse-upstream.js",
     $ENV{TEST_NGINX_UPSTREAM_PORT}, $UpLog],
    '<', \undef, '>', "$Dir/upstream.stdout", '2>', "$Dir/upstream.stderr");
{
    my $deadline = Time::HiRes::time() + 10;
    until (-s $UpLog) {
        die "t/lib/sse-upstream.js did not start\n"
            if Time::HiRes::time() > $deadline or !$Up->pumpable;
        Time::HiRes::sleep(0.02);
    }
}
my $ParentPid = $$;
END { local $?; $Up->kill_kill if $$ == $ParentPid and $Up and $Up->pumpable }

# What the upstream logged after position $pos (a byte offset of its log).
sub up_pos { -s $UpLog || 0 }
sub up_events {
    my ($pos) = @_;
    open my $fh, '<', $UpLog or die $!;
    seek $fh, $pos // 0, 0;
    my @ev;
    while (my $line = <$fh>) {
        last unless $line =~ /\n\z/;
        push @ev, JSON::PP::decode_json($line);
    }
    return @ev;
}
sub up_requests { grep { $_->{ev} eq 'request' } up_events(@_) }

# --- helpers (package main: perl_check code calls them) ----------------------

# GET $path with an Authorization header (none when $auth is undef).
sub get_with {
    my ($path, $auth, %o) = @_;
    return http_get($path, %o,
                    headers => [defined $auth ? ('Authorization' => $auth) : ()]);
}

# The secret with byte $i replaced by another byte of the same class.
sub one_byte_off {
    my ($i) = @_;
    my $s = SECRET;
    my $c = substr $s, $i, 1;
    substr($s, $i, 1) = $c eq 'a' ? 'b' : $c =~ /\d/ ? ($c + 1) % 10 : 'a';
    return $s;
}

# Each case: [what, Authorization header or undef, path, expected status].
sub check_cases {
    my ($path, @cases) = @_;
    my $pos = up_pos();
    my @passed;
    for my $c (@cases) {
        my ($what, $auth, $status) = @$c;
        my $r = get_with($path, $auth);
        is($r->{status}, $status, "$what: $status");
        if ($status == 401) {
            is($r->{headers}{'www-authenticate'}, 'Bearer',
               "$what: WWW-Authenticate: Bearer");
        } else {
            ok(!exists $r->{headers}{'www-authenticate'},
               "$what: no WWW-Authenticate");
            is($r->{body}, "upstream got GET $path\n", "$what: the upstream answered");
            push @passed, $path;
        }
    }
    # only what passed reached the upstream
    my @got = map { $_->{url} } up_requests($pos);
    is_deeply(\@got, \@passed, 'the upstream got the accepted requests only')
        or diag explain \@got;
}

# error.log entries (a line, with the lines that continue it) since nginx
# started that contain $s.
sub log_entries_with {
    my ($s) = @_;
    my @entries;
    for (split /\n/, error_log_since_start()) {
        if (!@entries or m{^\d{4}/\d\d/\d\d [\d:]+ \[}) { push @entries, $_ }
        else { $entries[-1] .= "\n$_" }
    }
    return grep { index($_, $s) >= 0 } @entries;
}

block_defaults(env => 'MCP_SECRET=' . SECRET, config => <<'CONF');
location /mcp/ {
    voice_require_bearer env:MCP_SECRET;
    proxy_pass http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT;
    proxy_http_version 1.1;
    proxy_buffering off;
    proxy_read_timeout 1h;
}
location /public/ {
    proxy_pass http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT;
}
CONF

run_tests();

__DATA__

=== TEST 1: env:NAME: 401 with WWW-Authenticate: Bearer unless the secret is right
A request without a token is an [info] line; wrong secrets are [warn]
lines, at most one a second with the count since the last one; none
reaches the upstream.  Wrong secrets of the right length (one byte
off at the start, in the middle, at the end) are refused as a wrong length
is.  The scheme is case-insensitive (RFC 9110 11.1); any other scheme is
refused.
--- perl_check
my $s = SECRET;
check_cases('/mcp/tools',
    ['no Authorization', undef, 401],
    ['a wrong secret', 'Bearer wrong', 401],
    ['first byte off', 'Bearer ' . one_byte_off(0), 401],
    ['a middle byte off', 'Bearer ' . one_byte_off(length($s) >> 1), 401],
    ['last byte off', 'Bearer ' . one_byte_off(length($s) - 1), 401],
    ['the secret and one more byte', "Bearer ${s}x", 401],
    ['the secret less its last byte', 'Bearer ' . substr($s, 0, -1), 401],
    ['Basic with the secret as password',
     'Basic ' . MIME::Base64::encode_base64("user:$s", ''), 401],
    ['Basic with the secret', "Basic $s", 401],
    ['the secret without a scheme', $s, 401],
    ['Bearer and no secret', 'Bearer', 401],
    ['the scheme glued to the secret', "Bearer$s", 401],
    ['the right secret', "Bearer $s", 200],
    ['the scheme in lower case', "bearer $s", 200],
    ['the scheme in upper case', "BEARER $s", 200],
);
# a location without the directive is not affected
my $r = get_with('/public/page', undef);
is($r->{status}, 200, 'a location without voice_require_bearer: 200');
is($r->{body}, "upstream got GET /public/page\n", 'from the upstream');
# one more wrong secret a second later: the line that follows a quiet
# second carries the count of every refusal since the last line
Time::HiRes::sleep(1.1);
is(get_with('/mcp/tools', 'Bearer wrong-again')->{status}, 401,
   'a wrong secret a second later: 401');
my $log = error_log_since_start();
is(scalar(() = $log =~ /\[info\].*voice: no bearer token for a voice_require_bearer location/g),
   1, 'one [info] line for the request without Authorization');
my @wrong = $log =~ /\[warn\].*voice: wrong bearer token for a voice_require_bearer location \((\d+) such since the last line\)/g;
ok(@wrong >= 2 && @wrong <= 3,
   'wrong secrets: at most one [warn] line a second (' . scalar(@wrong) . ')');
is($wrong[0], 1, 'the first line counts its own refusal');
my $sum = 0;
$sum += $_ for @wrong;
is($sum, 12, 'the counts add up to every wrong Authorization (11 + 1)');
--- no_error_log
[error]



=== TEST 2: the right secret reaches the upstream, and SSE streams event by event
The upstream sends "data: one" at once, "data: two" 300 ms later, and
"data: three" only when the test releases it (a request straight to the
upstream): the client reads the first two events before the upstream
has even written the last.  The body is then exactly the three events.
--- perl_check
my $pos = up_pos();
my $sock = Test::Voice::connect_to();
Test::Voice::write_all($sock, "GET /mcp/sse?stream=s1 HTTP/1.1\r\nHost: localhost\r\n"
    . 'Authorization: Bearer ' . SECRET . "\r\nAccept: text/event-stream\r\n"
    . "Connection: close\r\n\r\n");
my $buf = '';
# reads until $re matches what came so far, or 10 s; true if it did
my $read_until = sub {
    my ($re) = @_;
    my $deadline = Time::HiRes::time() + 10;
    while ($buf !~ $re) {
        my $left = $deadline - Time::HiRes::time();
        return 0 if $left <= 0;
        next unless IO::Select->new($sock)->can_read($left);
        my $n = sysread $sock, $buf, 65536, length $buf;
        return 0 unless $n;
    }
    return 1;
};
ok($read_until->(qr/\r\n\r\n.*data: one\n\n/s), 'the first event arrived');
my ($head) = $buf =~ /^(.*?)\r\n\r\n/s;
like($head, qr{^HTTP/1\.1 200 }, 'status 200');
like($head, qr{\r\nContent-Type: text/event-stream\r\n}i, 'Content-Type: text/event-stream');
ok($read_until->(qr/data: two\n\n/), 'the second event arrived');
my @sent = map { $_->{data} } grep { $_->{ev} eq 'sent' } up_events($pos);
is_deeply(\@sent, [qw(one two)],
          'both arrived while the upstream had not sent the last event yet');
# let the upstream finish
my $rel = http_get('/release/s1', port => $ENV{TEST_NGINX_UPSTREAM_PORT});
is($rel->{status}, 204, 'released');
my $deadline = Time::HiRes::time() + 10;
while (Time::HiRes::time() < $deadline) {
    last unless IO::Select->new($sock)->can_read($deadline - Time::HiRes::time());
    my $n = sysread $sock, $buf, 65536, length $buf;
    last unless $n;
}
close $sock;
my ($h, $rest) = split /\r\n\r\n/, $buf, 2;
like($h, qr/\r\nTransfer-Encoding: chunked/i, 'streamed chunked');
my ($body, $complete) = Test::Voice::decode_chunked($rest);
ok($complete, 'the response ended properly (last chunk)');
is($body, "data: one\n\ndata: two\n\ndata: three\n\n", 'the three events, exactly');
my @req = grep { $_->{url} =~ /stream=s1/ } up_requests($pos);
is(scalar @req, 1, 'one request reached the upstream');
--- no_error_log
[warn]
[error]



=== TEST 3: the secret is in no line nginx writes for refused requests, debug level included
Requests with wrong secrets, one byte off, and none: the configured secret
appears nowhere in error.log (the log is at debug level: nginx has
--with-debug) nor on stderr.  A request that carries the secret makes
nginx's own debug lines echo the request headers (nginx core, "http
header:" and the proxy module's request dump): those are the only lines
that hold it, all at debug level, none written by the module.
--- perl_check
my $s = SECRET;
get_with('/mcp/x', $_) for undef, 'Bearer wrong', 'Bearer ' . one_byte_off(3),
    'Basic ' . MIME::Base64::encode_base64("user:$s", '');
my $log = error_log_since_start();
cmp_ok(scalar(() = $log =~ /\[debug\]/g), '>', 50, 'the log is at debug level');
is(scalar(log_entries_with($s)), 0, 'the secret is in no line after refusals')
    or diag explain [log_entries_with($s)];
is(index(stderr_since_start(), $s), -1, 'nor on stderr');
is(get_with('/mcp/x', "Bearer $s")->{status}, 200, 'the right secret: 200');
my @with = log_entries_with($s);
my @other = grep { !/^\S+ \S+ \[debug\] \d+#\d+: \*\d+ http (?:proxy )?header:/ } @with;
is(scalar @other, 0, "only nginx's debug echo of the request headers holds it")
    or diag explain \@other;
ok(!grep({ /voice/ } @with), 'no line of the module holds it');
--- no_error_log
[error]



=== TEST 4: file:path: the first line of the file, without its line ending
--- config
location /mcp/ {
    voice_require_bearer file:$TEST_NGINX_SECRET_FILE;
    proxy_pass http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT;
}
--- perl_check
check_cases('/mcp/f',
    ['no Authorization', undef, 401],
    ['the second line of the file', 'Bearer second-line-not-secret', 401],
    ['the first line with its newline escaped', 'Bearer ' . SECRET . '\n', 401],
    ['the first line', 'Bearer ' . SECRET, 200],
);
--- no_error_log
[error]



=== TEST 5: a literal secret in nginx.conf
--- config
location /mcp/ {
    voice_require_bearer literal-Secret-42;
    proxy_pass http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT;
}
--- perl_check
check_cases('/mcp/l',
    ['another case', 'Bearer literal-secret-42', 401],
    ['the literal', 'Bearer literal-Secret-42', 200],
);
--- no_error_log
[error]



=== TEST 6: an empty environment variable fails nginx -t, naming it
--- env
MCP_SECRET=
--- config_test
--- must_die
--- error_log
[emerg]
"voice_require_bearer": environment variable "MCP_SECRET" is not set or empty



=== TEST 7: an unset environment variable fails nginx -t
--- env
!MCP_SECRET
--- config_test
--- must_die
--- error_log
[emerg]
"voice_require_bearer": environment variable "MCP_SECRET" is not set or empty



=== TEST 8: an empty literal fails nginx -t
--- config
location /a/ { voice_require_bearer ""; }
--- config_test
--- must_die
--- error_log
[emerg]
"voice_require_bearer" must not be empty



=== TEST 9: a bare env: fails nginx -t
--- config
location /a/ { voice_require_bearer env:; }
--- config_test
--- must_die
--- error_log
[emerg]
"voice_require_bearer": "env:" needs a variable name



=== TEST 10: a secret file with an empty first line fails nginx -t
--- config
location /a/ { voice_require_bearer file:$TEST_NGINX_EMPTY_FILE; }
--- config_test
--- must_die
--- error_log eval
qr/\[emerg\] .*"voice_require_bearer": secret file "\Q$ENV{TEST_NGINX_EMPTY_FILE}\E" has an empty first line/



=== TEST 11: a missing secret file fails nginx -t
--- config
location /a/ { voice_require_bearer file:/nonexistent/ngx-voice-secret; }
--- config_test
--- must_die
--- error_log
[emerg]
"voice_require_bearer": cannot open secret file "/nonexistent/ngx-voice-secret"



=== TEST 12: twice in a location fails nginx -t
--- config
location /a/ {
    voice_require_bearer env:MCP_SECRET;
    voice_require_bearer env:MCP_SECRET;
}
--- config_test
--- must_die
--- error_log
[emerg]
"voice_require_bearer" directive is duplicate



=== TEST 13: no argument fails nginx -t
--- config
location /a/ { voice_require_bearer; }
--- config_test
--- must_die
--- error_log
[emerg]
invalid number of arguments in "voice_require_bearer" directive



=== TEST 14: two arguments fail nginx -t
--- config
location /a/ { voice_require_bearer env:MCP_SECRET other; }
--- config_test
--- must_die
--- error_log
[emerg]
invalid number of arguments in "voice_require_bearer" directive



=== TEST 15: at server level it fails nginx -t (a location only directive)
A server-wide secret would also guard the webhook and the media stream,
which Twilio calls without it (README, voice_require_bearer).
--- config
voice_require_bearer env:MCP_SECRET;
location /mcp/ { proxy_pass http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT; }
--- config_test
--- must_die
--- error_log
[emerg]
"voice_require_bearer" directive is not allowed here



=== TEST 15b: nested locations inherit it; an inner directive replaces it
--- config
location /mcp/ {
    voice_require_bearer env:MCP_SECRET;
    proxy_pass http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT;
    location /mcp/inner/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT;
    }
    location /mcp/other/ {
        voice_require_bearer literal-other-secret;
        proxy_pass http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT;
    }
}
--- perl_check
check_cases('/mcp/x',
    ['no Authorization', undef, 401],
    ['the secret', 'Bearer ' . SECRET, 200]);
check_cases('/mcp/inner/y',
    ['nested, no Authorization', undef, 401],
    ['nested, the outer secret', 'Bearer ' . SECRET, 200]);
check_cases('/mcp/other/z',
    ['an inner directive replaces it: the outer secret', 'Bearer ' . SECRET, 401],
    ['the inner secret', 'Bearer literal-other-secret', 200]);
--- no_error_log
[error]



=== TEST 16: other access checks still apply: deny all wins over the right secret
--- config
location /mcp/ {
    voice_require_bearer env:MCP_SECRET;
    deny all;
    proxy_pass http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT;
}
--- perl_check
my $pos = up_pos();
is(get_with('/mcp/d', 'Bearer ' . SECRET)->{status}, 403, 'denied: 403');
is(scalar(up_requests($pos)), 0, 'nothing reached the upstream');
--- error_log
access forbidden by rule
