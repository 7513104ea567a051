# OpenAI's answer to the module's WebSocket handshake, byte for byte: a TLS
# server written here (IO::Socket::SSL with the test CA's certificate)
# answers each call's upgrade with the response of the block, the real
# Sec-WebSocket-Accept put in for "{ACCEPT}".
#
#   - what RFC 9110 and RFC 6455 allow is accepted: whitespace around a
#     value, any case, Connection as a list;
#   - what they do not is refused with a named [error] line, Twilio
#     closed with 1011: a status line "101abc", a bare LF ending a header
#     line, a Connection list without the token "upgrade".
#
# An accepted handshake is followed by session.created from this server;
# it then reads the module's first frame (masked, as a client's must be)
# and reports its type.
use Test::Voice;
use FindBin ();
use IO::Socket::SSL ();
use Digest::SHA ();
use MIME::Base64 ();
use JSON::PP ();

require "$FindBin::Bin/lib/voice-call.pl";

$ENV{TEST_NGINX_RAW_PORT} = Test::Voice::pick_port();

voice_setup();

# Serves one handshake with $response; the type of the module's first
# message (or "none") goes to the returned file.
sub serve_handshake {
    my ($response) = @_;
    no warnings 'once';
    my $dir = $Test::VoiceCall::VoiceDir // die;
    my $report = "$dir/raw-first-frame";
    unlink $report;
    my $l = IO::Socket::SSL->new(
        LocalAddr => '127.0.0.1', LocalPort => $ENV{TEST_NGINX_RAW_PORT},
        Listen => 4, ReuseAddr => 1,
        SSL_server => 1, SSL_cert_file => "$dir/certs/server.pem",
        SSL_key_file => "$dir/certs/server.key")
        or die "raw server: $! $IO::Socket::SSL::SSL_ERROR";
    my $pid = fork // die "fork: $!";
    if ($pid) {
        close $l;
        return ($pid, $report);
    }
    local $SIG{ALRM} = sub { POSIX::_exit(0) };
    alarm 15;
    my $c = $l->accept or POSIX::_exit(1);
    my $req = '';
    while ($req !~ /\r\n\r\n/) {
        my $n = sysread($c, $req, 4096, length $req) or POSIX::_exit(1);
    }
    my ($key) = $req =~ /^Sec-WebSocket-Key:\s*(\S+)\r$/mi;
    my $accept = MIME::Base64::encode_base64(Digest::SHA::sha1(
        $key . '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'), '');
    (my $r = $response) =~ s/\{ACCEPT\}/$accept/g;
    syswrite $c, $r;
    my $created = '{"type":"session.created","event_id":"evt_1","session":{}}';
    syswrite $c, "\x81" . chr(length $created) . $created;
    my $buf = '';
    my $type = 'none';
    while (sysread($c, $buf, 65536, length $buf)) {
        next if length $buf < 2;
        my $len = ord(substr $buf, 1, 1) & 0x7f;
        my $off = 2;
        if ($len == 126) { next if length $buf < 4; $len = unpack 'n', substr $buf, 2, 2; $off = 4 }
        next if length $buf < $off + 4 + $len;
        my @mask = unpack 'C4', substr $buf, $off, 4;
        my @p = unpack 'C*', substr $buf, $off + 4, $len;
        $p[$_] ^= $mask[$_ % 4] for 0 .. $#p;
        my $msg = eval { JSON::PP::decode_json(pack 'C*', @p) } // {};
        $type = $msg->{type} // 'not JSON';
        last;
    }
    open my $fh, '>', "$report.tmp" or POSIX::_exit(1);
    print $fh $type;
    close $fh;
    rename "$report.tmp", $report;
    POSIX::_exit(0);
}

# The call of a block: Twilio says hello; OpenAI is the server above.
sub call_with_response {
    my ($response) = @_;
    my ($pid, $report) = serve_handshake($response);
    my $t = twilio_call(steps => [{ send => 'connected' }, { send => 'start' },
                                  { wait_close => 3000 }]);
    waitpid $pid, 0;
    my $type = -e $report ? do { local (@ARGV, $/) = $report; <> } : 'no report';
    return ($t, $type);
}

run_tests();

__DATA__

=== TEST 1: whitespace around values, any case, Connection as a list: accepted
--- stream_config
voice_openai_url wss://127.0.0.1:$TEST_NGINX_RAW_PORT/v1/realtime?model=gpt-realtime;
--- perl_check
my ($t, $type) = call_with_response(
    "HTTP/1.1 101 Switching Protocols\r\n"
  . "upgrade: \tWebSocket \t\r\n"
  . "CONNECTION: keep-alive , Upgrade\t\r\n"
  . "Sec-WebSocket-Accept:  {ACCEPT} \r\n\r\n");
is($type, 'session.update', 'the module took the answer and sent session.update');
--- error_log eval
qr/\[info\] .*voice: media stream accepted/
--- no_error_log eval
[qr/voice: OpenAI WebSocket handshake has/, 'not HTTP/1.1']



=== TEST 2: a status line "HTTP/1.1 101abc" is refused
--- stream_config
voice_openai_url wss://127.0.0.1:$TEST_NGINX_RAW_PORT/v1/realtime?model=gpt-realtime;
--- perl_check
my ($t, $type) = call_with_response(
    "HTTP/1.1 101abc Switching Protocols\r\nUpgrade: websocket\r\n"
  . "Connection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n");
is($type, 'none', 'nothing was sent on the refused connection');
is($t->{close}{code}, 1011, 'Twilio gets 1011');
--- error_log eval
qr/\[error\] .*voice: OpenAI answered the WebSocket handshake with something that is not HTTP\/1\.1/



=== TEST 3: a header line ended by a bare LF is refused
--- stream_config
voice_openai_url wss://127.0.0.1:$TEST_NGINX_RAW_PORT/v1/realtime?model=gpt-realtime;
--- perl_check
my ($t, $type) = call_with_response(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\n"
  . "Connection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n");
is($type, 'none', 'nothing was sent on the refused connection');
is($t->{close}{code}, 1011, 'Twilio gets 1011');
--- error_log eval
qr/\[error\] .*voice: OpenAI WebSocket handshake has a header line not ended by CRLF/



=== TEST 4: Connection without the token "upgrade" is refused
Neither "keep-alive, upgraded" nor "noupgrade" names the token.
--- stream_config
voice_openai_url wss://127.0.0.1:$TEST_NGINX_RAW_PORT/v1/realtime?model=gpt-realtime;
--- perl_check
for my $value ('keep-alive, upgraded', 'noupgrade') {
    my ($t, $type) = call_with_response(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
      . "Connection: $value\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n");
    is($type, 'none', "Connection: $value: nothing sent");
    is($t->{close}{code}, 1011, "Connection: $value: Twilio gets 1011");
}
my @lines = grep { /voice: OpenAI WebSocket handshake has no Connection: upgrade/ }
            split /\n/, error_log_since_start();
is(scalar @lines, 2, 'an [error] line each');
--- error_log eval
qr/\[error\] .*voice: OpenAI WebSocket handshake has no Connection: upgrade/



=== TEST 5: a wrong accept value and a missing Upgrade are named
--- stream_config
voice_openai_url wss://127.0.0.1:$TEST_NGINX_RAW_PORT/v1/realtime?model=gpt-realtime;
--- perl_check
my ($t) = call_with_response(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
  . "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
is($t->{close}{code}, 1011, 'a wrong accept: Twilio gets 1011');
($t) = call_with_response(
    "HTTP/1.1 101 Switching Protocols\r\n"
  . "Connection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n");
is($t->{close}{code}, 1011, 'no Upgrade: Twilio gets 1011');
--- error_log eval
[qr/\[error\] .*voice: OpenAI WebSocket handshake has a wrong Sec-WebSocket-Accept/,
 qr/\[error\] .*voice: OpenAI WebSocket handshake has no Upgrade: websocket/]
