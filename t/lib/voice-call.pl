# Shared by t/100-call.t, t/101-session.t and t/102-bargein.t: a test CA
# made with the openssl CLI, the fake OpenAI Realtime server
# (t/lib/fake-openai.js) on real TLS, and the Twilio-side driver
# (t/lib/twilio-call.js, on the `ws` package, not our codec).
#
#   require "$FindBin::Bin/lib/voice-call.pl";
#   voice_setup();          # before run_tests()
#
# voice_setup() makes the certificates, starts two fakes and sets:
#   TEST_NGINX_CA              the test CA's certificate (PEM)
#   TEST_NGINX_OPENAI_PORT     fake with a cert from that CA (SANs
#                              IP:127.0.0.1, DNS:localhost, DNS:openai.test)
#   TEST_NGINX_OPENAI_BAD_PORT fake with a cert from another CA
#   TEST_NGINX_CLOSED_PORT     a port where nothing listens
# Both fakes append what they see to files (FAKE_OPENAI_LOG) that
# fake_pos()/fake_events() read per block.

use strict;
use warnings;
use FindBin ();
use IPC::Run ();
use JSON::PP ();
use Time::HiRes ();
use File::Path ();
use MIME::Base64 ();

our (%Fake, $VoiceDir);
my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

sub sh_ok {
    my ($cmd) = @_;
    my $out = `$cmd 2>&1`;
    die "failed: $cmd\n$out" if $?;
    return $out;
}

# A CA, a server certificate it signed, and a second CA with its own
# server certificate (same SANs) that the first CA does not vouch for.
sub make_certs {
    my ($dir) = @_;
    File::Path::make_path($dir);
    my $san = 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:openai.test';
    for my $ca (qw(ca other-ca)) {
        sh_ok("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -sha256"
              . " -subj '/CN=ngx_voice $ca' -keyout $dir/$ca.key"
              . " -out $dir/$ca.pem -addext basicConstraints=critical,CA:TRUE"
              . " -addext keyUsage=critical,keyCertSign,cRLSign");
    }
    for (['server', 'ca'], ['other', 'other-ca']) {
        my ($name, $ca) = @$_;
        sh_ok("openssl req -newkey rsa:2048 -nodes -subj '/CN=openai.test'"
              . " -keyout $dir/$name.key -out $dir/$name.csr");
        open my $fh, '>', "$dir/$name.ext" or die $!;
        print $fh "$san\nbasicConstraints=CA:FALSE\n"
                . "extendedKeyUsage=serverAuth\n";
        close $fh;
        sh_ok("openssl x509 -req -in $dir/$name.csr -CA $dir/$ca.pem"
              . " -CAkey $dir/$ca.key -CAcreateserial -days 2 -sha256"
              . " -extfile $dir/$name.ext -out $dir/$name.pem");
    }
    return $dir;
}

sub start_fake {
    my ($name, $cert, $key) = @_;
    my $port = Test::Voice::pick_port();
    my $log = "$VoiceDir/fake-$name.log";
    open my $fh, '>', $log or die "$log: $!";
    close $fh;
    local $ENV{FAKE_OPENAI_LOG} = $log;
    local $ENV{NODE_PATH} = "$FindBin::Bin/node_modules";
    # stdout to a file: a pipe nobody reads would block node once full.
    my $h = IPC::Run::start(
        ['node', "$FindBin::Bin/lib/fake-openai.js", $port, $cert, $key],
        '<', \undef, '>', "$VoiceDir/fake-$name.stdout",
        '2>', "$VoiceDir/fake-$name.stderr");
    my $deadline = Time::HiRes::time() + 10;
    until (-s $log) {
        die "fake-openai.js ($name) did not start\n"
            if Time::HiRes::time() > $deadline or !$h->pumpable;
        Time::HiRes::sleep(0.02);
    }
    $Fake{$name} = { h => $h, port => $port, log => $log };
    return $port;
}

sub voice_setup {
    $VoiceDir = Test::Voice::servroot() . '/voice';
    File::Path::remove_tree($VoiceDir);
    make_certs("$VoiceDir/certs");
    my $c = "$VoiceDir/certs";
    $ENV{TEST_NGINX_CA} = "$c/ca.pem";
    $ENV{TEST_NGINX_OPENAI_PORT} =
        start_fake('main', "$c/server.pem", "$c/server.key");
    $ENV{TEST_NGINX_OPENAI_BAD_PORT} =
        start_fake('bad', "$c/other.pem", "$c/other.key");
    $ENV{TEST_NGINX_CLOSED_PORT} = Test::Voice::pick_port();
}

END {
    local $?;
    for (values %Fake) {
        $_->{h}->kill_kill if $_->{h} and $_->{h}->pumpable;
    }
}

# --- what the fake OpenAI saw -------------------------------------------------

# A position in the fakes' logs; fake_events($pos) gives what came after.
sub fake_pos {
    return { map { $_ => -s $Fake{$_}{log} || 0 } keys %Fake };
}

# Events since $pos, in time order, each with {fake => 'main'|'bad'}.
sub fake_events {
    my ($pos) = @_;
    my @ev;
    for my $name (sort keys %Fake) {
        open my $fh, '<', $Fake{$name}{log} or die $!;
        seek $fh, $pos->{$name} // 0, 0;
        while (my $line = <$fh>) {
            last unless $line =~ /\n\z/;       # a line still being written
            my $e = eval { $JSON->decode($line) } or next;
            $e->{fake} = $name;
            $e->{seq} = scalar @ev;     # file order breaks ties in time
            push @ev, $e;
        }
    }
    return sort { $a->{t} <=> $b->{t} or $a->{seq} <=> $b->{seq} } @ev;
}

# Polls until $cond->(@events) is true or $timeout (s) passes; returns the
# events either way.
sub fake_wait {
    my ($pos, $cond, $timeout) = @_;
    my $deadline = Time::HiRes::time() + ($timeout // 5);
    while (1) {
        my @ev = fake_events($pos);
        return @ev if $cond->(@ev) or Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.05);
    }
}

# The messages the module sent to the fake on connection $conn (all
# connections when undef), in order; only those of type $type if given.
sub oa_msgs {
    my ($events, $conn, $type) = @_;
    return map { $_->{msg} }
           grep { $_->{ev} eq 'message'
                  and (!defined $conn or $_->{conn} == $conn)
                  and (!defined $type or ($_->{msg}{type} // '') eq $type) }
           @$events;
}

# Same, without the in-band control appends of t/lib/twilio-call.js.
sub oa_msgs_noctl {
    my ($events, $conn, $type) = @_;
    return grep { !is_ctl($_) } oa_msgs($events, $conn, $type);
}

sub is_ctl {
    my ($m) = @_;
    return ($m->{type} // '') eq 'input_audio_buffer.append'
        && MIME::Base64::decode_base64($m->{audio} // '') =~ /^FAKECTL /;
}

# What the fake sent on a connection (all when undef), type filter optional.
sub oa_sent {
    my ($events, $conn, $type) = @_;
    return map { $_->{msg} }
           grep { $_->{ev} eq 'sent'
                  and (!defined $conn or $_->{conn} == $conn)
                  and (!defined $type or ($_->{msg}{type} // '') eq $type) }
           @$events;
}

sub oa_event {
    my ($events, $ev, $conn) = @_;
    return grep { $_->{ev} eq $ev and (!defined $conn or $_->{conn} == $conn) }
           @$events;
}

# The connection whose appends include audio $payload (base64).
sub conn_of {
    my ($events, $payload) = @_;
    for (@$events) {
        return $_->{conn} if $_->{ev} eq 'message'
            and ($_->{msg}{type} // '') eq 'input_audio_buffer.append'
            and ($_->{msg}{audio} // '') eq $payload;
    }
    return undef;
}

# --- the Twilio side -----------------------------------------------------------

# twilio_call(%scenario) runs one call with t/lib/twilio-call.js and returns
# its transcript; twilio_calls(\@scenarios) runs them concurrently in one
# node process and returns the transcripts.  Scenario fields are described
# at the top of twilio-call.js; port defaults to nginx's.
sub twilio_calls {
    my ($calls, %o) = @_;
    my $in = $JSON->encode({ calls => [map {
        { port => Test::Voice::server_port(), %$_ }
    } @$calls] });
    my ($out, $err) = ('', '');
    local $ENV{NODE_PATH} = "$FindBin::Bin/node_modules";
    my $ok = IPC::Run::run(['node', "$FindBin::Bin/lib/twilio-call.js", '-'],
                           '<', \$in, '>', \$out, '2>', \$err,
                           IPC::Run::timeout($o{timeout} // 60));
    die "twilio-call.js failed ($?): $err\n" unless $ok and length $out;
    Test::More::diag("twilio-call.js stderr: $err") if $err =~ /\S/;
    return @{ $JSON->decode($out)->{calls} };
}

sub twilio_call {
    my (%scenario) = @_;
    my ($t) = twilio_calls([\%scenario]);
    return $t;
}

# Messages the driver received (optionally of one event), from a transcript.
sub tw_recv {
    my ($t, $event) = @_;
    return map { $_->{msg} }
           grep { ref $_->{msg} eq 'HASH'
                  and (!defined $event or ($_->{msg}{event} // '') eq $event) }
           @{ $t->{received} };
}

# Audio payloads the driver sent (without the control messages).
sub tw_sent_audio {
    my ($t) = @_;
    return map { $_->{msg}{media}{payload} }
           grep { ($_->{msg}{event} // '') eq 'media' and !$_->{ctl} }
           @{ $t->{sent} };
}

# The transcript's own problems (failed waits, errors), as a list.
sub tw_errors {
    my ($t) = @_;
    return @{ $t->{errors} // [] };
}

# "call ended" info lines of the error log.
sub call_ended_lines {
    my ($log) = @_;
    return grep { /voice: call ended, CallSid/ } split /\n/, $log;
}

1;
