package Test::VoiceCall;

# Helpers for tests that run whole calls (t/110-codec.t, t/111-lifecycle.t):
#
#   fake_openai_start(script => 't/lib/x.js')
#       makes a test CA and a server certificate (SAN IP:127.0.0.1,
#       DNS:localhost) with the openssl CLI, starts t/lib/fake-openai.js on
#       a free port and waits for its "ready" line; sets
#       $ENV{TEST_NGINX_OPENAI_PORT} and $ENV{TEST_NGINX_OPENAI_CA} for the
#       blocks' config.  Killed at exit.
#   fake_events()            every JSON line the fake printed so far
#   fake_wait($pred, $secs)  pumps the fake until $pred->(@events) is true;
#                            returns that value (undef on timeout)
#   fake_conn_events($conn)  the events of one upstream connection
#   fake_close_of($conn, $secs)  the fake's close event for $conn, or undef
#   mint_call()              signed webhook -> {token, call_sid}
#   open_call(%o)            mint + signed upgrade (to prefix . /media-stream/
#                            TOKEN, prefix default '') -> a call hash:
#       {ws (Test::Voice::WS), token, call_sid, log_off, conn_after}; with
#       pipeline => $bytes (or a sub that gets the minted call and returns
#       them) the bytes go out in the same write() as the upgrade request.
#   call_conn($call)         the fake's connection number for this call
#   start_call($call, wait => 1)  connected + start, optionally waits for
#                            session.update at the fake
#   connected_json, start_json($call_sid), media_json($payload), stop_json
#   ws_frame(%a)             the bytes of one client frame (as send_frame)
#   call_log($call)          this call's error.log lines
#   wait_call_end($call, $secs)  waits for "voice: call ended, CallSid ..."
#                            and returns that line
#   reply_close($ws, $code)  answers the server's close (masked, same code)
#
# Self-contained: uses only Test::Voice's exported helpers, Protocol::
# WebSocket and IPC::Run; does not change Test::Voice or fake-openai.js.

use strict;
use warnings;
use Exporter 'import';
use Cwd ();
use Digest::SHA ();
use File::Basename ();
use File::Temp ();
use IO::Select;
use IO::Socket::INET;
use IPC::Run ();
use JSON::PP ();
use MIME::Base64 ();
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes ();
use Protocol::WebSocket::Frame;
use Test::Voice ();

our @EXPORT = qw(
    fake_openai_start fake_events fake_wait fake_conn_events fake_close_of
    fake_max_conn mint_call open_call call_conn start_call
    connected_json start_json media_json stop_json ws_frame
    call_log wait_call_end reply_close log_size
    AUTH_TOKEN PUBLIC_URL
);

sub AUTH_TOKEN () { '12345' }
sub PUBLIC_URL () { 'https://voice.example.com' }

my $Root = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/../../..');
my ($Fake, $FakeOut, $FakeErr, $FakeDir, @Events) = (undef, '', '');
my $ParentPid = $$;

sub now () { Time::HiRes::time() }

sub run_openssl {
    my @cmd = ('openssl', @_);
    my $err = '';
    IPC::Run::run(\@cmd, '<', \undef, '>', \my $out, '2>', \$err)
        or die "@cmd failed: $err\n";
}

sub fake_openai_start {
    my (%o) = @_;
    $FakeDir = File::Temp::tempdir('voice-fake-XXXXXX', TMPDIR => 1,
                                   CLEANUP => 1);
    my $d = $FakeDir;
    run_openssl(qw(req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1
                   -nodes -days 2 -subj), '/CN=ngx_voice test CA',
                '-addext', 'basicConstraints=critical,CA:TRUE',
                '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
                '-keyout', "$d/ca.key", '-out', "$d/ca.pem");
    run_openssl(qw(req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1
                   -nodes -subj /CN=localhost),
                '-keyout', "$d/server.key", '-out', "$d/server.csr");
    open my $ext, '>', "$d/ext.cnf" or die $!;
    print $ext "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
             . "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n";
    close $ext;
    run_openssl(qw(x509 -req -days 2 -CAcreateserial),
                '-in', "$d/server.csr", '-CA', "$d/ca.pem",
                '-CAkey', "$d/ca.key", '-extfile', "$d/ext.cnf",
                '-out', "$d/server.pem");

    my $port = Test::Voice::pick_port();
    local $ENV{NODE_PATH} = "$Root/t/node_modules";
    $Fake = IPC::Run::start(
        ['node', "$Root/t/lib/fake-openai.js", $port, "$d/server.pem",
         "$d/server.key", $o{script} ? ($o{script}) : ()],
        '<', \undef, '>', \$FakeOut, '2>', \$FakeErr);
    my $deadline = now() + 10;
    while (!grep { $_->{ev} eq 'ready' } fake_events()) {
        die "fake-openai.js did not start: $FakeErr\n"
            if now() > $deadline or !$Fake->pumpable;
        Time::HiRes::sleep(0.02);
    }
    $ENV{TEST_NGINX_OPENAI_PORT} = $port;
    $ENV{TEST_NGINX_OPENAI_CA} = "$d/ca.pem";
    return $port;
}

END {
    local $?;
    if ($$ == $ParentPid and $Fake) {
        eval { $Fake->kill_kill(grace => 1) };
    }
}

# Reads what the fake printed (without blocking) into @Events.
sub fake_events {
    return @Events unless $Fake;
    eval { $Fake->pump_nb } if $Fake->pumpable;
    while ($FakeOut =~ s/^(.*)\n//) {
        my $line = $1;
        my $ev = eval { JSON::PP::decode_json($line) };
        push @Events, $ev // { ev => 'garbage', line => $line };
    }
    return @Events;
}

sub fake_wait {
    my ($pred, $secs) = @_;
    my $deadline = now() + ($secs // 5);
    while (1) {
        my $r = $pred->(fake_events());
        return $r if $r;
        return undef if now() > $deadline;
        Time::HiRes::sleep(0.01);
    }
}

sub fake_max_conn {
    my $max = 0;
    for (fake_events()) { $max = $_->{conn} if ($_->{conn} // 0) > $max }
    return $max;
}

sub fake_conn_events {
    my ($conn) = @_;
    return grep { ($_->{conn} // -1) == $conn } fake_events();
}

sub fake_close_of {
    my ($conn, $secs) = @_;
    return fake_wait(sub {
        (grep { $_->{ev} eq 'close' and $_->{conn} == $conn } @_)[0] }, $secs);
}

sub log_size { -s (Test::Voice::servroot() . '/logs/error.log') || 0 }

# --- messages ----------------------------------------------------------------

sub connected_json {
    '{"event":"connected","protocol":"Call","version":"1.0.0"}';
}

sub start_json {
    my ($call_sid, $stream) = @_;
    $stream //= 'MZ1';
    return '{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC1",'
         . '"streamSid":"' . $stream . '","callSid":"' . $call_sid . '",'
         . '"tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw",'
         . '"sampleRate":8000,"channels":1}},"streamSid":"' . $stream . '"}';
}

sub media_json {
    my ($payload, $stream) = @_;
    $stream //= 'MZ1';
    return '{"event":"media","media":{"payload":"' . $payload
         . '"},"streamSid":"' . $stream . '"}';
}

sub stop_json {
    my ($call_sid) = @_;
    return '{"event":"stop","sequenceNumber":"5","stop":{"accountSid":"AC1",'
         . '"callSid":"' . $call_sid . '"},"streamSid":"MZ1"}';
}

# The bytes of one frame as the Perl client sends it (masked by default).
sub ws_frame {
    my (%a) = @_;
    my %f = (buffer => $a{payload} // '', masked => $a{masked} // 1,
             fin => $a{fin} // 1, max_payload_size => 0);
    if (defined $a{opcode}) { $f{opcode} = $a{opcode} }
    else                    { $f{type} = $a{type} // 'text' }
    $f{rsv} = $a{rsv} if $a{rsv};
    return Protocol::WebSocket::Frame->new(%f)->to_bytes;
}

# --- a call ------------------------------------------------------------------

sub mint_call {
    my $sid = 'CA' . join '', map { sprintf '%08x', int rand 0xffffffff } 1 .. 4;
    my $body = "CallSid=$sid&AccountSid=AC1&From=%2B15551234567"
             . '&To=%2B15557654321';
    my $r = Test::Voice::http_post('/incoming-call', $body, headers => [
        'Content-Type' => 'application/x-www-form-urlencoded',
        'X-Twilio-Signature' =>
            Test::Voice::sign_twilio(AUTH_TOKEN, PUBLIC_URL . '/incoming-call',
                                     $body)]);
    my ($token) = ($r->{body} // '') =~
        m{<Stream url="wss://voice\.example\.com/media-stream/([A-Za-z0-9_-]+)"}
        or die "no token minted: " . ($r->{status} // '-') . " "
               . ($r->{body} // $r->{error} // '') . "\n";
    return { token => $token, call_sid => $sid };
}

sub open_call {
    my (%o) = @_;
    my $call = mint_call();
    $call->{log_off} = log_size();
    $call->{conn_after} = fake_max_conn();
    my $path = ($o{prefix} // '') . "/media-stream/$call->{token}";
    my $sig = Test::Voice::sign_twilio(AUTH_TOKEN,
                                       "wss://voice.example.com$path", '');
    if (defined $o{pipeline}) {
        my $bytes = ref $o{pipeline} eq 'CODE' ? $o{pipeline}->($call)
                                               : $o{pipeline};
        $call->{ws} = pipelined_upgrade($path, $sig, $bytes);
    } else {
        my $ws = Test::Voice::ws_connect($path,
            headers => { 'X-Twilio-Signature' => $sig });
        die "upgrade refused: " . ($ws->{status} // $ws->{error}) . "\n"
            unless ref $ws eq 'Test::Voice::WS';
        $call->{ws} = $ws;
    }
    setsockopt($call->{ws}->socket, IPPROTO_TCP, TCP_NODELAY, 1);
    return $call;
}

# The upgrade request and the first frames in one write().
sub pipelined_upgrade {
    my ($path, $sig, $frames) = @_;
    my $key = MIME::Base64::encode_base64(
        join('', map { chr int rand 256 } 1 .. 16), '');
    my $req = "GET $path HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            . "Connection: Upgrade\r\nSec-WebSocket-Key: $key\r\n"
            . "Sec-WebSocket-Version: 13\r\nX-Twilio-Signature: $sig\r\n\r\n";
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => Test::Voice::server_port(), Proto => 'tcp', Timeout => 5)
        or die "connect: $!\n";
    Test::Voice::write_all($sock, $req . $frames) or die "write: $!\n";
    my $res = Test::Voice::read_response($sock, 5, 0);
    die "upgrade refused: " . ($res->{status} // $res->{error}) . "\n"
        unless ($res->{status} // 0) == 101;
    my $accept = MIME::Base64::encode_base64(Digest::SHA::sha1(
        $key . '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'), '');
    die "bad Sec-WebSocket-Accept\n"
        unless ($res->{headers}{'sec-websocket-accept'} // '') eq $accept;
    return bless { sock => $sock, response => $res,
                   buf => delete $res->{leftover} // '' }, 'Test::Voice::WS';
}

sub call_conn {
    my ($call, $secs) = @_;
    return $call->{conn} if $call->{conn};
    my $ev = fake_wait(sub {
        (grep { $_->{ev} eq 'connect' and $_->{conn} > $call->{conn_after} }
         @_)[0] }, $secs // 5) or return undef;
    return $call->{conn} = $ev->{conn};
}

# connected + start; wait => 1 also waits for session.update at the fake.
sub start_call {
    my ($call, %o) = @_;
    $call->{ws}->send_text(connected_json());
    $call->{ws}->send_text(start_json($call->{call_sid}));
    return 1 unless $o{wait};
    my $conn = call_conn($call) or return 0;
    return fake_wait(sub {
        grep { $_->{ev} eq 'message' and $_->{conn} == $conn
               and ($_->{msg}{type} // '') eq 'session.update' } @_ }, 5)
        ? 1 : 0;
}

# The error.log lines of this call's connection (from the worker's pid and
# the connection number on its "media stream accepted" line).
sub call_log {
    my ($call) = @_;
    my $log = Test::Voice::read_from(
        Test::Voice::servroot() . '/logs/error.log', $call->{log_off});
    $call->{log_id} //= $1 if $log =~
        /(\d+#\d+: \*\d+) voice: media stream accepted for call \Q$call->{call_sid}\E\b/;
    return $log unless defined $call->{log_id};
    return join '', grep { index($_, "$call->{log_id} ") >= 0 }
                    split /^/, $log;
}

sub wait_call_end {
    my ($call, $secs) = @_;
    my $deadline = now() + ($secs // 5);
    while (1) {
        my ($line) = call_log($call) =~
            /^(.*voice: call ended, CallSid \Q$call->{call_sid}\E.*)$/m;
        return $line if defined $line;
        return undef if now() > $deadline;
        Time::HiRes::sleep(0.02);
    }
}

sub reply_close {
    my ($ws, $code) = @_;
    return $ws->close($code);
}

1;
