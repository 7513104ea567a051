# Self-test of t/lib/Test/Voice.pm with stock nginx only (no ngx_voice).
use Test::Voice;
use FindBin ();
use IPC::Run ();

# A node backend (the `ws` package from t/node_modules) that nginx proxies
# to, so the HTTP and WebSocket clients can be checked against real servers:
# /chunked answers with a chunked body; a WebSocket greets with the
# X-Twilio-Signature it got, echoes, sends a fragmented message on
# "fragments" and closes with 4000 "bye" on "close".
my $backend_js = <<'JS';
const http = require('http');
const { WebSocketServer } = require('ws');
const server = http.createServer((req, res) => {
  if (req.url !== '/chunked') { res.writeHead(404); res.end(); return; }
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.write('hello, ');
  setTimeout(() => res.end('chunked world'), 50);
});
new WebSocketServer({ server }).on('connection', (ws, req) => {
  ws.send('hello ' + (req.headers['x-twilio-signature'] || '-'));
  ws.on('message', (data, isBinary) => {
    const s = data.toString();
    if (s === 'fragments') {
      ws.send('frag1', { fin: false });
      ws.send('frag2', { fin: true });
    } else if (s === 'close') {
      ws.close(4000, 'bye');
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
});
server.listen(+process.argv[1], '127.0.0.1', () => console.log('ready'));
JS

$ENV{TEST_NGINX_BACKEND_PORT} = Test::Voice::pick_port();
$ENV{NODE_PATH} = "$FindBin::Bin/node_modules";
my $backend_out = '';
my $backend = IPC::Run::start(
    ['node', '-e', $backend_js, $ENV{TEST_NGINX_BACKEND_PORT}],
    '<', \undef, '>', \$backend_out, '2>', \my $backend_err,
    IPC::Run::timeout(10));
$backend->pump until $backend_out =~ /ready/;
END { local $?; $backend->kill_kill if $backend and $backend->pumpable }

run_tests();

__DATA__

=== TEST 1: a plain request, status, headers and body
--- no_module
--- config
location /t {
    add_header X-Foo bar;
    return 200 "hello";
}
--- request
GET /t
--- error_code: 200
--- response_headers
X-Foo: bar
Content-Length: 5
!X-Bar
--- response_headers_like
Server: ^nginx/\d
--- response_body chomp
hello



=== TEST 2: a 404
--- no_module
--- request
GET /nothing-here
--- error_code: 404
--- response_body_like: <title>404 Not Found</title>



=== TEST 3: POST body, more_headers and the Content-Length the harness adds
--- no_module
--- config
location /t {
    return 200 "$request_method $content_length $http_x_test $http_connection\n";
}
--- request
POST /t
a=1&b=2
--- more_headers
X-Test: yes
--- timeout: 3s
--- wait: 0.05
--- response_body
POST 7 yes close



=== TEST 3b: --- check eval gives a code ref, called after the request
--- no_module
--- config
location /t { return 200 "ok"; }
--- request
GET /t
--- check eval
sub {
    my ($block, $responses) = @_;
    is($responses->[0]{body}, 'ok', 'check sees the responses');
    like($block->name, qr/^TEST 3b:/, 'and the block');
}



=== TEST 4: several requests, checked pairwise
--- no_module
--- config
location /a { return 200 "A"; }
location /b { return 403; }
--- request eval
["GET /a", "GET /b", "HEAD /a"]
--- error_code eval
[200, 403, 200]
--- response_body_like eval
[qr/^A$/, qr/403 Forbidden/, qr/^$/]
--- response_headers eval
["Content-Length: 1", "!X-Nothing", "Content-Length: 1"]



=== TEST 5: raw_request in packets (array ref from eval)
--- no_module
--- config
location /t { return 200 "$request_uri $http_host"; }
--- raw_request eval
["GET /t?x=1 HTTP/1.1\r\nHo", "st: example.org\r\nConnection: close\r\n\r\n"]
--- raw_request_middle_delay: 0.1
--- response_body: /t?x=1 example.org



=== TEST 6: HTTP/1.0 raw request, no Connection: close needed
--- no_module
--- config
location /t { return 200 "$server_protocol"; }
--- raw_request eval
"GET /t HTTP/1.0\r\n\r\n"
--- response_body: HTTP/1.0



=== TEST 7: $TEST_NGINX_ variables are expanded
--- no_module
--- config
location /t { return 200 "$TEST_NGINX_SERVER_PORT $TEST_NGINX_BACKEND_PORT"; }
--- request
GET /t
--- response_body: $TEST_NGINX_PORT $TEST_NGINX_BACKEND_PORT



=== TEST 8: error_log and no_error_log, as lines
--- no_module
--- config
rewrite_log on;
location /t {
    rewrite ^/t$ /u;
}
location /u { return 200; }
--- request
GET /t
--- error_log
"^/t$" matches "/t"
--- no_error_log
[error]
[warn]



=== TEST 9: error_log and no_error_log, as eval'd patterns
--- no_module
--- config
rewrite_log on;
location /t {
    rewrite ^/t$ /u;
}
location /u { return 200; }
--- request
GET /t
--- error_log eval
[qr/\[notice\] .*"\^\/t\$" matches "\/t"/, 'rewritten data: "/u"']
--- no_error_log eval
qr/\[(?:error|warn)\]/



=== TEST 10: must_die on an unknown directive
--- no_module
--- config
foo_bar_baz on;
--- must_die
--- error_log
[emerg]
unknown directive "foo_bar_baz"



=== TEST 11: must_die with config_test runs nginx -t
--- no_module
--- http_config
server_tokens maybe;
--- must_die
--- config_test
--- error_log
invalid value "maybe"
configuration file
test failed



=== TEST 12: config_test alone expects nginx -t to pass
--- no_module
--- config_test
--- error_log
syntax is ok
test is successful



=== TEST 13: --- env reaches nginx (and !NAME removes a variable)
--- no_module
--- env
VOICE_HARNESS_SECRET=s3cret $TEST_NGINX_PORT
!HOME
--- perl_check
open my $fh, '<', '/proc/' . nginx_pid() . '/environ' or die $!;
my %env = map { split /=/, $_, 2 } split /\0/, do { local $/; <$fh> };
is($env{VOICE_HARNESS_SECRET}, 's3cret ' . server_port(), 'env var set');
ok(!exists $env{HOME}, 'HOME unset');
is($env{ASAN_OPTIONS},
   $ENV{ASAN_OPTIONS} // 'detect_leaks=0:detect_odr_violation=0:abort_on_error=0',
   'ASAN_OPTIONS, unless set, has a default');



=== TEST 14: sign_twilio / validate_twilio give Twilio's published vector
--- no_module
--- perl_check
my $url = 'https://mycompany.com/myapp.php?foo=1&bar=2';
my $body = 'CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234'
         . '&From=%2B14158675309&To=%2B18005551212';
my %params = (CallSid => 'CA1234567890ABCDE', Caller => '+14158675309',
              Digits => '1234', From => '+14158675309', To => '+18005551212');
is(sign_twilio('12345', $url, $body), 'RSOYDt4T1cUTdK1PDd93/VVr8B8=', 'signature of a form body');
is(sign_twilio('12345', $url, \%params), 'RSOYDt4T1cUTdK1PDd93/VVr8B8=', 'signature of params');
is(sign_twilio(undef, $url, $body), 'RSOYDt4T1cUTdK1PDd93/VVr8B8=', 'default token 12345');
isnt(sign_twilio('12345', $url, undef), 'RSOYDt4T1cUTdK1PDd93/VVr8B8=', 'url only differs');
ok(validate_twilio('12345', 'RSOYDt4T1cUTdK1PDd93/VVr8B8=', $url, $body), 'validates');
ok(validate_twilio('12345', 'RSOYDt4T1cUTdK1PDd93/VVr8B8=',
                   'https://mycompany.com:443/myapp.php?foo=1&bar=2', \%params),
   'validates with the port added');
ok(!validate_twilio('54321', 'RSOYDt4T1cUTdK1PDd93/VVr8B8=', $url, $body), 'wrong token');
ok(!validate_twilio('12345', 'RSOYDt4T1cUTdK1PDd93/VVr8B8=', $url, $body . '&X=1'),
   'extra parameter');
my $t0 = Test::Voice::now();
sign_twilio('12345', $url, "n=$_") for 1 .. 200;
cmp_ok(Test::Voice::now() - $t0, '<', 5, '200 signatures, one node process');



=== TEST 15: --- twilio_sign adds X-Twilio-Signature over the form body
--- no_module
--- config
location /voice { return 200 "$http_x_twilio_signature"; }
--- request
POST /voice?foo=1&bar=2
CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- twilio_sign
https://mycompany.com/myapp.php?foo=1&bar=2
--- response_body: RSOYDt4T1cUTdK1PDd93/VVr8B8=



=== TEST 16: --- twilio_token, --- twilio_sign_params_empty, URL expansion
--- no_module
--- config
location /stream { return 200 "$http_x_twilio_signature"; }
--- request
GET /stream
--- twilio_sign: wss://localhost:$TEST_NGINX_SERVER_PORT/stream
--- twilio_token: other-token
--- twilio_sign_params_empty
--- response_body eval
sign_twilio('other-token', 'wss://localhost:' . server_port() . '/stream', undef)



=== TEST 17: http_get / http_post, a chunked body, a read timeout
--- no_module
--- config
location /t { return 200 "$request_method $request_body_file$content_length"; }
location /chunked {
    proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT;
    proxy_http_version 1.1;
}
--- perl_check
my $r = http_get('/t');
is($r->{status}, 200, 'http_get status');
is($r->{body}, 'GET ', 'http_get body');
$r = http_post('/t', 'x=1', headers => ['X-A' => 'b']);
is($r->{body}, 'POST 3', 'http_post body');
$r = http_get('/chunked');
is($r->{headers}{'transfer-encoding'}, 'chunked', 'chunked response');
is($r->{body}, 'hello, chunked world', 'chunked body decoded');
like($r->{raw}, qr/\r\n0\r\n\r\n\z/, 'raw keeps the chunks');
$r = http_request("GET /t HTTP/1.1\r\nHost: localhost\r\n", timeout => 0.3);
like($r->{error}, qr/timeout/, 'incomplete request times out');
ok(!defined $r->{status}, 'no status on timeout');



=== TEST 18: nginx_reload with a new config
--- no_module
--- master_on
--- config
location /t { return 200 "v1"; }
--- request
GET /t
--- response_body: v1
--- perl_check
ok(nginx_reload(config => 'location /t { return 200 "v2 $TEST_NGINX_PORT"; }'),
   'reloaded');
is(http_get('/t')->{body}, 'v2 ' . server_port(), 'new config served');
ok(!nginx_reload(config => 'bogus_directive;'), 'a bad config does not load');
is(http_get('/t')->{body}, 'v2 ' . server_port(), 'old config still served');
--- error_log
reconfiguring
[emerg]
unknown directive "bogus_directive"



=== TEST 19: two workers with reuseport both serve requests; reload
--- no_module
--- workers: 2
--- master_on
--- config
listen 127.0.0.1:$TEST_NGINX_SERVER_PORT reuseport;
location /t {
    add_header X-Pid $pid;
    return 200;
}
--- perl_check
my %pids;
$pids{ http_get('/t')->{headers}{'x-pid'} // 'none' }++ for 1 .. 200;
ok(!$pids{none}, 'all requests answered');
cmp_ok(scalar(keys %pids), '>', 1, 'more than one worker answered')
    or diag explain \%pids;
ok(nginx_reload(), 'reloaded');
my %new;
$new{ http_get('/t')->{headers}{'x-pid'} // 'none' }++ for 1 .. 50;
ok(!grep({ $pids{$_} } keys %new), 'new workers after reload');
--- no_error_log
[error]



=== TEST 20: ws_connect: a real handshake, frames, fragments, close
--- no_module
--- config
location /ws {
    proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT;
    proxy_http_version 1.1;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection "upgrade";
    proxy_pass_request_headers on;
}
location /no-ws { return 403; }
--- perl_check
my $url = 'wss://example.com/ws';
my $ws = ws_connect('/ws', twilio_sign => $url);
isa_ok($ws, 'Test::Voice::WS');
is($ws->response->{status}, 101, 'status 101');
my $f = $ws->recv_frame(5);
is($f->{payload}, 'hello ' . sign_twilio(undef, $url, undef), 'greeting, signed URL');
is($f->{opcode}, 1, 'text frame');
ok(!$f->{masked}, 'server frames are not masked');
$ws->send_text("héllo");
is($ws->recv_frame(5)->{payload}, "h\xc3\xa9llo", 'echo (UTF-8 on the wire)');
$ws->send_frame(type => 'binary', payload => "\0\1\2" x 30000);
$f = $ws->recv_frame(5);
is_deeply([$f->{opcode}, length $f->{payload}], [2, 90000], 'large binary echo');
$ws->send_frame(type => 'text', payload => 'frag', fin => 0);
$ws->send_frame(opcode => 0, payload => 'ments', fin => 1);
my @frames = ($ws->recv_frame(5), $ws->recv_frame(5));
is_deeply([map { [$_->{opcode}, $_->{fin}, $_->{payload}] } @frames],
          [[1, 0, 'frag1'], [0, 1, 'frag2']], 'fragmented message, frame by frame');
ok(!defined $ws->recv_frame(0.2), 'nothing more (timeout)');
$ws->send_text('close');
is_deeply([$ws->recv_close(5)], [4000, 'bye'], 'server close code and reason');
$ws->close(4000, 'bye');
ok($ws->wait_eof(5), 'connection closed');

$ws = ws_connect('/ws', headers => ['X-Twilio-Signature' => 'abc']);
is($ws->recv_frame(5)->{payload}, 'hello abc', 'extra headers');
$ws->close(1000);
is_deeply([$ws->recv_close(5)], [1000, ''], 'close handshake');

my $res = ws_connect('/no-ws');
is(ref $res, 'HASH', 'no upgrade: the HTTP response');
is($res->{status}, 403, 'its status');



=== TEST 21: a wrong expectation fails (runs a generated .t)
--- no_module
--- perl_check
# Lines of the generated file start with "@" here so that this file's own
# parser does not take them for blocks or sections.
my $t = <<'T';
@use Test::Voice;
@run_tests();
@__DATA__
@=== TEST 1: wrong status
@--- no_module
@--- request
@GET /
@--- error_code: 201
@=== TEST 2: wrong body and header
@--- no_module
@--- config
@location /t { return 200 "a"; }
@--- request
@GET /t
@--- response_body: b
@--- response_headers
@Content-Length: 2
@=== TEST 3: log patterns
@--- no_module
@--- request
@GET /nothing-here
@--- error_log
@this is never logged
@--- no_error_log
@[error]
@=== TEST 4: a typo in a section name
@--- no_module
@--- respone_body
@x
@=== TEST 5: a worker dies
@--- no_module
@--- master_on
@--- perl_check
@my ($w) = Test::Voice::child_pids(nginx_pid());
@kill 'KILL', $w;
@sleep 1;
@=== TEST 6: must_die, but the config is fine
@--- no_module
@--- config_test
@--- must_die
@=== TEST 7: perl_check dies
@--- no_module
@--- perl_check
@die "oops\n";
@=== TEST 8: this one passes
@--- no_module
@--- config
@location / { return 200; }
@--- request
@GET /
@--- error_code: 200
T
$t =~ s/^@//mg;
my $dir = servroot() . '/meta';
mkdir $dir;
open my $fh, '>', "$dir/meta.pl" or die $!;    # not *.t: prove -r t/ runs those
print $fh $t;
close $fh;
local $ENV{TEST_NGINX_SERVROOT} = "$dir/servroot";
local $ENV{TEST_NGINX_PORT};
delete $ENV{TEST_NGINX_PORT};
my $out = `$^X -I$FindBin::Bin/lib $dir/meta.pl 2>&1`;
isnt($?, 0, 'the generated test file fails');
for my $re (qr/not ok \d+ - TEST 1: wrong status - status code ok/,
            qr/not ok \d+ - TEST 2: wrong body and header - response_body/,
            qr/not ok \d+ - TEST 2: wrong body and header - header Content-Length ok/,
            qr/not ok \d+ - TEST 3: log patterns - error_log - pattern "this is never logged"/,
            qr/not ok \d+ - TEST 3: log patterns - no_error_log - pattern "\[error\]"/,
            qr/not ok \d+ - TEST 4: .* - unknown section\(s\): respone_body/,
            qr/not ok \d+ - TEST 5: a worker dies - nginx ran cleanly/,
            qr/exited on signal 9/,
            qr/not ok \d+ - TEST 6: .* - nginx -t failed as expected/,
            qr/not ok \d+ - TEST 7: perl_check dies - --- perl_check died/,
            qr/failed; config: .*failed-1\.conf/,
            qr/\nok \d+ - TEST 8: this one passes - status code ok/) {
    like($out, $re, "reported: $re");
}
my $not_ok = () = $out =~ /^not ok/mg;
is($not_ok, 9, 'exactly the wrong expectations fail') or diag $out;



=== TEST 22: block preprocessors, block_defaults, extra sections and a runner (a generated .t)
--- no_module
--- perl_check
my $t = <<'T';
@use Test::Voice;
@block_defaults(config => 'location /t { return 200 "default"; }',
@               request => 'GET /t');
@Test::Voice::add_block_sections('greeting');
@add_block_preprocessor(sub {
@    my $block = shift;
@    return unless defined $block->greeting;
@    $block->set_value(response_body => $block->greeting);
@});
@Test::Voice::add_block_runner(sub {
@    my ($block, $name) = @_;
@    return { runner_saw => $name };
@});
@run_tests();
@__DATA__
@=== TEST 1: the default config and request
@--- no_module
@--- response_body: default
@=== TEST 2: a block's own config wins
@--- no_module
@--- config
@location /t { return 200 "mine"; }
@--- response_body: mine
@=== TEST 3: an empty section is the block's own too
@--- no_module
@--- config
@--- error_code: 404
@=== TEST 4: a preprocessor turns a section of its own into expectations
@--- no_module
@--- config
@location /t { return 200 "hi"; }
@--- greeting: hi
@=== TEST 5: the runner's result is perl_check's third argument
@--- no_module
@--- perl_check
@is($_[2]{runner_saw}, 'TEST 5: the runner\'s result is perl_check\'s third argument', 'runner result');
@=== TEST 6: a section nobody declared is still a typo
@--- no_module
@--- greting: hi
T
$t =~ s/^@//mg;
my $dir = servroot() . '/meta2';
mkdir $dir;
open my $fh, '>', "$dir/meta.pl" or die $!;
print $fh $t;
close $fh;
local $ENV{TEST_NGINX_SERVROOT} = "$dir/servroot";
local $ENV{TEST_NGINX_PORT};
delete $ENV{TEST_NGINX_PORT};
my $out = `$^X -I$FindBin::Bin/lib $dir/meta.pl 2>&1`;
for my $re (qr/^ok \d+ - TEST 1: .* - response_body - response is expected/m,
            qr/\nok \d+ - TEST 2: .* - response_body - response is expected/,
            qr/\nok \d+ - TEST 3: .* - status code ok/,
            qr/\nok \d+ - TEST 4: .* - response_body - response is expected/,
            qr/\nok \d+ - runner result/,
            qr/not ok \d+ - TEST 6: .* - unknown section\(s\): greting/) {
    like($out, $re, "reported: $re");
}
my $not_ok = () = $out =~ /^not ok/mg;
is($not_ok, 1, 'only the typo fails') or diag $out;
