package Test::VoiceCall;

# The one call-helper stack of the ngx_voice suite (t/1*.t): a test CA made
# with the openssl CLI, the fake OpenAI Realtime server (t/lib/fake-openai.js)
# on real TLS, the Twilio side (t/lib/twilio-call.js: the `ws` package, or
# frames built by hand for the codec tests), and the block sections that
# script a call.  Reference documentation is the POD at the end.
#
#   use Test::Voice;
#   use Test::VoiceCall;        # or: require "$FindBin::Bin/lib/voice-call.pl"
#   voice_setup();              # before run_tests()

use strict;
use warnings;
use Exporter 'import';
use Carp ();
use Cwd ();
use File::Basename ();
use File::Path ();
use IPC::Run ();
use JSON::PP ();
use MIME::Base64 ();
use Test::More ();
use Time::HiRes ();
use Test::Voice ();

our @EXPORT = qw(
    voice_setup make_certs start_fake sh_ok
    fake_pos fake_events fake_wait
    oa_msgs oa_msgs_noctl is_ctl oa_sent oa_event conn_of
    twilio_calls twilio_call tw_recv tw_sent_audio tw_errors
    call_ended_lines
    twilio_steps openai_labels fake_close_of wait_call_ended new_call_sid
    call_stack_log
);

our (%Fake, $VoiceDir);
my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;
my $Lib = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/..');
my $NodePath = Cwd::abs_path("$Lib/..") . '/node_modules';
my $ParentPid = $$;

# voice_setup(%file_defaults) settings, for the block sections.
my (%StreamDefaults, %CallDefaults, $Registered);

sub sh_ok {
    my ($cmd) = @_;
    my $out = `$cmd 2>&1`;
    die "failed: $cmd\n$out" if $?;
    return $out;
}

# A CA, a server certificate (RSA) and an ECDSA (P-256) one it signed, and
# a second CA with its own server certificate (same SANs) that the first CA
# does not vouch for.
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
    for (['server', 'ca', 'rsa:2048'], ['other', 'other-ca', 'rsa:2048'],
         ['ec', 'ca', 'ec -pkeyopt ec_paramgen_curve:prime256v1'])
    {
        my ($name, $ca, $key) = @$_;
        sh_ok("openssl req -newkey $key -nodes -subj '/CN=openai.test'"
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
    local $ENV{NODE_PATH} = $NodePath;
    # stdout to a file: a pipe nobody reads would block node once full.
    my $h = IPC::Run::start(
        ['node', "$Lib/fake-openai.js", $port, $cert, $key],
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

# voice_setup(stream_config => "directives;", twilio_call => {options},
#             locations => "more locations of every call block's server")
# makes the certificates, starts two fakes and sets:
#   TEST_NGINX_CA              the test CA's certificate (PEM)
#   TEST_NGINX_OPENAI_PORT     fake with a cert from that CA (SANs
#                              IP:127.0.0.1, DNS:localhost, DNS:openai.test)
#   TEST_NGINX_OPENAI_BAD_PORT fake with a cert from another CA
#   TEST_NGINX_OPENAI_EC_PORT  fake with an ECDSA (P-256) cert from the CA
#   TEST_NGINX_CLOSED_PORT     a port where nothing listens
# and gives every block of the file the default http_config and config of
# a call (see the POD); stream_config and twilio_call are the file's own
# defaults for those sections.
sub voice_setup {
    my (%o) = @_;
    $StreamDefaults{stream_config} = $o{stream_config} // '';
    $StreamDefaults{locations} = $o{locations} // '';
    %CallDefaults = %{ $o{twilio_call} // {} };
    $VoiceDir = Test::Voice::servroot() . '/voice';
    File::Path::remove_tree($VoiceDir);
    make_certs("$VoiceDir/certs");
    my $c = "$VoiceDir/certs";
    $ENV{TEST_NGINX_CA} = "$c/ca.pem";
    $ENV{TEST_NGINX_OPENAI_PORT} =
        start_fake('main', "$c/server.pem", "$c/server.key");
    $ENV{TEST_NGINX_OPENAI_BAD_PORT} =
        start_fake('bad', "$c/other.pem", "$c/other.key");
    $ENV{TEST_NGINX_OPENAI_EC_PORT} =
        start_fake('ec', "$c/ec.pem", "$c/ec.key");
    $ENV{TEST_NGINX_CLOSED_PORT} = Test::Voice::pick_port();
    register_sections();
}

END {
    local $?;
    if ($$ == $ParentPid) {
        for (values %Fake) {
            $_->{h}->kill_kill if $_->{h} and $_->{h}->pumpable;
        }
    }
}

# --- what the fake OpenAI saw ------------------------------------------------

# A position in the fakes' logs; fake_events($pos) gives what came after.
sub fake_pos {
    return { map { $_ => -s $Fake{$_}{log} || 0 } keys %Fake };
}

# Events since $pos, in time order, each with {fake => 'main'|'bad'|'ec'}.
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

# What OpenAI got on $conn (all when undef) as short labels, the audio
# left out: the message type, CTL for the driver's control messages,
# item:TEXT for a user text item.
sub openai_labels {
    my ($events, $conn) = @_;
    my @l;
    for my $m (oa_msgs($events, $conn)) {
        my $type = $m->{type} // '?';
        if (is_ctl($m)) { push @l, 'CTL' }
        elsif ($type eq 'input_audio_buffer.append') { }
        elsif ($type eq 'conversation.item.create'
               and ($m->{item}{type} // '') eq 'message') {
            push @l, 'item:' . ($m->{item}{content}[0]{text} // '?');
        }
        else { push @l, $type }
    }
    return @l;
}

# The fake's close event of $conn among $events, or undef.
sub fake_close_of {
    my ($events, $conn) = @_;
    return undef unless defined $conn;
    return (grep { $_->{ev} eq 'close' and $_->{conn} == $conn } @$events)[0];
}

# --- the Twilio side -----------------------------------------------------------

# A CallSid of Twilio's shape (CA + 32 lowercase hex).
sub new_call_sid {
    my ($prefix) = @_;
    return ($prefix // 'CA')
        . join '', map { sprintf '%04x', int rand 0x10000 } 1 .. 8;
}

# twilio_call(%scenario) runs one call with t/lib/twilio-call.js and returns
# its transcript; twilio_calls(\@scenarios, %opts) runs them concurrently in
# one node process and returns the transcripts.  Scenario fields are
# described at the top of twilio-call.js; port defaults to nginx's.
#
# The driver's syncs ({"sync": ...} steps) are answered here.  Built in:
# "await_session" waits until OpenAI got the sync's tag audio (the
# transcript's {conn} is then the fake's connection of the call),
# "reload" runs nginx_reload(), "log:REGEX" waits for a log line.  Other
# labels go to on_sync => sub { my ($sync, $release) = @_; ... }
# ($sync = {sync, call (index), conn if known, ...}); the call goes on
# when it returns, unless it returns 'hold': then $release->($call_index
# [, $error]) lets it go on later.
sub twilio_calls {
    my ($calls, %o) = @_;
    # the waits of a script are upper bounds: longer under memcheck
    my $scale = $ENV{TEST_NGINX_USE_VALGRIND} ? 3 : 1;
    my $in = $JSON->encode({ calls => [map {
        { port => Test::Voice::server_port(), wait_scale => $scale, %$_ }
    } @$calls] }) . "\n";
    my ($out, $err, $result) = ('', '');
    my $pos = fake_pos();
    my %conn;
    my $release = sub {
        my ($i, $error) = @_;
        $in .= $JSON->encode({ go => $i, defined $error ? (error => $error)
                                                        : () }) . "\n";
    };
    local $ENV{NODE_PATH} = $NodePath;
    my $h = IPC::Run::start(['node', "$Lib/twilio-call.js", '-'],
                            '<', \$in, '>', \$out, '2>', \$err,
                            IPC::Run::timeout($o{timeout} // 60));
    my $ok = eval {
        while (!$result) {
            my $more = $h->pumpable;
            if ($more) { $h->pump }
            else { $h->finish }     # the rest of its output
            while (!$result and $out =~ s/^(.*)\n//) {
                my $line = $1;
                my $m = eval { $JSON->decode($line) };
                if (!$m) {
                    Test::More::diag("twilio-call.js: $line");
                } elsif (exists $m->{sync}) {
                    my ($r, $error);
                    $m->{conn} //= $conn{$m->{call}};
                    if ($m->{sync} eq 'await_session') {
                        ($conn{$m->{call}}, $error) =
                            await_session($pos, $m->{tag});
                    } elsif ($m->{sync} eq 'reload') {
                        $error = 'nginx_reload() failed'
                            unless Test::Voice::nginx_reload();
                    } elsif ($m->{sync} =~ /^log:(.*)$/s) {
                        $error = wait_log($1);
                    } elsif ($o{on_sync}) {
                        $r = eval { $o{on_sync}->($m, $release) };
                        $error = "on_sync died: $@" if $@;
                    }
                    $release->($m->{call}, $error)
                        unless defined $r and $r eq 'hold';
                } else {
                    $result = $m;
                }
            }
            last unless $more;
        }
        1;
    };
    my $died = $@;
    eval { $h->finish; 1 } or $h->kill_kill;
    die "twilio-call.js failed ($?): $died$err\n" unless $ok and $result;
    Test::More::diag("twilio-call.js stderr: $err") if $err =~ /\S/;
    my @t = @{ $result->{calls} };
    $t[$_]{conn} //= $conn{$_} for grep { defined $conn{$_} } 0 .. $#t;
    return @t;
}

sub twilio_call {
    my (%scenario) = @_;
    my $on_sync = delete $scenario{on_sync};
    my $timeout = delete $scenario{timeout};
    my ($t) = twilio_calls([\%scenario], on_sync => $on_sync,
                           timeout => $timeout);
    return $t;
}

# Waits up to 10 s for a line matching $re in this block's error.log;
# undef, or an error.
sub wait_log {
    my ($re) = @_;
    my $deadline = Time::HiRes::time() + 10;
    until (Test::Voice::error_log_since_start() =~ /$re/) {
        return "no log line matching /$re/ within 10 s"
            if Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.05);
    }
    return undef;
}

# Waits until OpenAI got an append of $tag: (conn) or (undef, error).
sub await_session {
    my ($pos, $tag) = @_;
    my $secs = $ENV{TEST_NGINX_USE_VALGRIND} ? 20 : 5;
    my @ev = fake_wait($pos, sub { defined conn_of(\@_, $tag) }, $secs);
    my $conn = conn_of(\@ev, $tag);
    return defined $conn ? ($conn)
                         : (undef, "OpenAI did not get the call's audio "
                                   . "within ${secs}s (no session?)");
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

# The "call ended" line of CallSid $sid in this block's log, waiting up to
# $secs (5) for it; undef if there is none.
sub wait_call_ended {
    my ($sid, $secs) = @_;
    my $deadline = Time::HiRes::time() + ($secs // 5);
    while (1) {
        my ($line) = grep { /voice: call ended, CallSid \Q$sid\E,/ }
                     call_ended_lines(Test::Voice::error_log_since_start());
        return $line if defined $line or Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.02);
    }
}

# The error.log lines of the call whose "media stream accepted" line names
# $sid (same worker pid and connection number).
sub call_stack_log {
    my ($sid) = @_;
    my $log = Test::Voice::error_log_since_start();
    my ($id) = $log =~
        /(\d+#\d+: \*\d+) voice: media stream accepted for call \Q$sid\E\b/;
    return $log unless defined $id;
    return join '', grep { index($_, "$id ") >= 0 } split /^/, $log;
}

# --- the twilio_script language ------------------------------------------------

my %Opcode = (continuation => 0, text => 1, binary => 2, close => 8,
              ping => 9, pong => 10);

# A payload expression: terms joined by ".", each an atom with an optional
# "x N" repeat; atoms: "..." (escapes \xHH \n \r \t \0 \\ \"), hex:HEX,
# code:N (a close code, 2 bytes), media or media:N (a media message of this
# call with N, default 160, bytes of random audio).  Returns the bytes.
sub payload_of {
    my ($expr, $ctx) = @_;
    my $bytes = '';
    my $s = $expr;
    $s =~ s/^\s+//;
    while (length $s) {
        my $atom;
        if ($s =~ s/^"((?:[^"\\]|\\.)*)"//) {
            ($atom = $1) =~ s{\\(x([0-9a-fA-F]{2})|.)}{
                defined $2 ? chr hex $2
                : { n => "\n", r => "\r", t => "\t", 0 => "\0" }->{$1} // $1
            }ge;
        } elsif ($s =~ s/^hex:([0-9a-fA-F]+)//) {
            $atom = pack 'H*', $1;
        } elsif ($s =~ s/^code:(\d+)//) {
            $atom = pack 'n', $1;
        } elsif ($s =~ s/^media(?::(\d+))?//) {
            $atom = media_json($ctx, $1 // 160);
        } else {
            die "bad payload at '$s' (in '$expr')\n";
        }
        $atom x= $1 if $s =~ s/^\s*x\s*(\d+)//;
        $bytes .= $atom;
        $s =~ s/^\s+//;
        last unless length $s;
        $s =~ s/^\.\s*// or die "'.' expected at '$s' (in '$expr')\n";
    }
    return $bytes;
}

sub media_json {
    my ($ctx, $n) = @_;
    my $audio = MIME::Base64::encode_base64(
        join('', map { chr int rand 256 } 1 .. $n), '');
    return '{"event":"media","sequenceNumber":"' . ++$ctx->{seq}
         . '","media":{"track":"inbound","chunk":"1","timestamp":"0",'
         . '"payload":"' . $audio . '"},"streamSid":"'
         . $ctx->{stream_sid} . '"}';
}

sub b64 { MIME::Base64::encode_base64($_[0], '') }

# "key=value" options and bare flags of a step line.
sub step_opts {
    my ($rest) = @_;
    my (%o, @words);
    for (split ' ', $rest // '') {
        if (/^(\w+)=(.*)$/) { $o{$1} = $2 }
        else { push @words, $_ }
    }
    return (\%o, @words);
}

sub num_or_word { $_[0] =~ /^\d+$/ ? 0 + $_[0] : $_[0] }

# twilio_steps($script, {call_sid, stream_sid}): the twilio-call.js steps
# of a twilio_script section (see the POD).
sub twilio_steps {
    my ($script, $ctx) = @_;
    $ctx //= {};
    $ctx->{stream_sid} //= 'MZ' . substr(new_call_sid(), 2);
    my @steps;
    for my $line (split /\n/, $script // '') {
        $line =~ s/^\s+|\s+$//g;
        next if $line eq '' or $line =~ /^#/;
        my ($verb, $rest) = split ' ', $line, 2;
        $rest //= '';
        my $bad = sub { die "twilio_script: $_[0]: '$line'\n" };
        if ($verb eq 'hello' or $verb eq 'setup') {
            push @steps, { send => 'connected' }, { send => 'start' };
            push @steps, { await_session => 1 } if $verb eq 'setup';
        } elsif ($verb =~ /^(?:connected|stop)$/) {
            push @steps, { send => $verb };
        } elsif ($verb eq 'start') {
            my ($o) = step_opts($rest);
            my %st = (send => 'start');
            for my $k (keys %$o) {
                $st{$k} = $o->{$k} =~ /^[{\[]/ ? $JSON->decode($o->{$k})
                                                : $o->{$k};
            }
            push @steps, \%st;
        } elsif ($verb eq 'media') {
            my ($o, @w) = step_opts($rest);
            my %st = (send => 'media');
            $st{count} = 0 + shift @w if @w and $w[0] =~ /^\d+$/;
            $st{until_close} = JSON::PP::true if grep { $_ eq 'until_close' } @w;
            $st{bytes} = 0 + $o->{bytes} if defined $o->{bytes};
            $st{interval_ms} = 0 + $o->{interval} if defined $o->{interval};
            $st{payload} = $o->{payload} if defined $o->{payload};
            push @steps, \%st;
        } elsif ($verb eq 'mark') {
            push @steps, { send => 'mark', name => $rest };
        } elsif ($verb eq 'dtmf') {
            push @steps, { send => 'dtmf', digit => $rest };
        } elsif ($verb eq 'json') {
            push @steps, { send => 'json', msg => $JSON->decode($rest) };
        } elsif ($verb eq 'raw') {
            push @steps, { send => 'raw', text => $rest };
        } elsif ($verb eq 'binary') {
            push @steps, { send => 'binary',
                           payload_b64 => b64(payload_of($rest, $ctx)) };
        } elsif ($verb eq 'ctl') {
            my $a = $JSON->decode($rest);
            push @steps, { ctl => ref $a eq 'ARRAY' ? $a : [$a] };
        } elsif ($verb eq 'wait') {
            my %st;
            if ($rest =~ /^\{/) {
                my ($pattern, $n) = JSON::PP->new->utf8->decode_prefix($rest);
                $st{wait} = $pattern;
                $rest = substr $rest, $n;
            } else {
                ($st{wait}{event}, $rest) = split ' ', $rest, 2;
            }
            my ($o, @w) = step_opts($rest);
            $st{count} = 0 + $w[0] if @w;
            $st{timeout_ms} = 0 + $o->{timeout} if defined $o->{timeout};
            push @steps, \%st;
        } elsif ($verb eq 'wait_close') {
            push @steps, { wait_close => length $rest ? 0 + $rest : 0 };
        } elsif ($verb eq 'echo_marks' or $verb eq 'echo_pending') {
            push @steps, { $verb => num_or_word($rest) };
        } elsif ($verb eq 'sleep') {
            push @steps, { sleep => 0 + $rest };
        } elsif ($verb eq 'close') {
            my ($code, $reason) = split ' ', $rest, 2;
            push @steps, { close => defined $code ? 0 + $code : undef,
                           defined $reason
                           ? (reason_b64 => b64($reason =~ /^"/
                                                ? payload_of($reason, $ctx)
                                                : $reason))
                           : () };
        } elsif ($verb eq 'wait_frame') {
            my ($o, $type, $n) = step_opts($rest);
            push @steps, { wait_frame => $type, count => 0 + ($n // 1),
                           defined $o->{timeout}
                           ? (timeout_ms => 0 + $o->{timeout}) : () };
        } elsif ($verb =~ /^(?:terminate|reset|pause|resume|await_session)$/) {
            push @steps, { $verb => JSON::PP::true };
        } elsif ($verb eq 'sync') {
            push @steps, { sync => $rest };
        } elsif ($verb eq 'chunked') {
            my ($o, @w) = step_opts($rest);
            push @steps, { chunked => 0 + ($w[0] // 0),
                           interval_ms => 0 + ($o->{interval} // 0) };
        } elsif ($verb eq 'bytes') {
            push @steps, { bytes_b64 => b64(payload_of($rest, $ctx)) };
        } elsif ($verb eq 'ping' or $verb eq 'pong') {
            my ($opts, $payload) = $rest =~ /^(.*?)(?:payload=(.*)|("(?:.*)))?$/
                or $bad->('bad line');
            $payload //= $3;
            my ($o, @w) = step_opts($opts);
            my %st = ($verb => defined $payload ? payload_of($payload, $ctx)
                                                : '');
            $st{count} = 0 + $o->{count} if defined $o->{count};
            $st{interval_ms} = 0 + $o->{interval} if defined $o->{interval};
            $st{until_close} = JSON::PP::true if grep { $_ eq 'until_close' } @w;
            push @steps, \%st;
        } elsif ($verb eq 'frame') {
            my ($opts, $payload) = $rest =~ /^(.*?)(?:\s*payload=(.*))?$/;
            my ($o, @w) = step_opts($opts);
            my %f;
            for my $w (@w) {
                if (exists $Opcode{$w}) { $f{opcode} = $Opcode{$w} }
                elsif ($w =~ /^(?:0x[0-9a-fA-F]+|\d+)$/) { $f{opcode} = oct $w }
                elsif ($w eq 'unmasked') { $f{masked} = JSON::PP::false }
                else { $bad->("unknown word '$w'") }
            }
            $bad->('no opcode') unless defined $f{opcode};
            $f{fin} = 0 + $o->{fin} if defined $o->{fin};
            $f{rsv} = [map { 0 + $_ } split /,/, $o->{rsv}] if $o->{rsv};
            $f{mask_hex} = $o->{mask} if defined $o->{mask};
            $f{length} = 0 + $o->{length} if defined $o->{length};
            $f{split} = 0 + $o->{split} if defined $o->{split};
            $f{payload_b64} = b64(payload_of($payload // '""', $ctx));
            push @steps, { frame => \%f };
        } elsif ($verb =~ /^\{/) {          # a step as twilio-call.js takes it
            push @steps, $JSON->decode($line);
        } else {
            $bad->('unknown step');
        }
    }
    return @steps;
}

# The twilio_call section: "key: value" lines (value JSON or a bare word),
# or a flag alone ("closed_ok").
sub call_options {
    my ($text) = @_;
    my %o;
    for my $line (split /\n/, $text // '') {
        $line =~ s/^\s+|\s+$//g;
        next if $line eq '' or $line =~ /^#/;
        my ($k, $v) = $line =~ /^(\w+)\s*(?::\s*(.*))?$/
            or die "twilio_call: bad line '$line'\n";
        $o{$k} = !defined $v ? 1
               : $v =~ /^(?:[\[{"]|-?\d|true$|false$|null$)/ ? $JSON->decode($v)
               : $v;
    }
    return %o;
}

# --- the block sections ---------------------------------------------------------

my $DefaultHttpConfig = <<'EOF';
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
EOF

my $DefaultUrl = 'wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime'
               . '?model=gpt-realtime&ctl=1';

# Directives started in a piece of nginx.conf (first words of statements).
sub directives_of {
    my ($text) = @_;
    my %d;
    $d{$1} = 1 while ($text // '') =~ /(?:^|;)\s*([a-z_]+)\s/mg;
    return \%d;
}

# The config of a call block: the webhook location and the media stream
# location with the default directives, less those stream_config sets.
sub call_config {
    my ($block) = @_;
    my $mine = Test::Voice::value($block, 'stream_config') // '';
    my $query = Test::Voice::value($block, 'openai_query') // '';
    $query =~ s/^\s+|\s+$//g;
    my $set = directives_of($mine);
    my @lines = ('voice_media_stream;',
                 "voice_openai_url $DefaultUrl$query;",
                 'voice_openai_api_key sk-test-key;',
                 'voice_ssl_trusted_certificate $TEST_NGINX_CA;',
                 split /\n/, $StreamDefaults{stream_config});
    @lines = grep { !/^\s*([a-z_]+)\s/ || !$set->{$1} } @lines;
    my $body = join '', map { "    $_\n" } grep { /\S/ } @lines,
                                                           split /\n/, $mine;
    return "location = /incoming-call { voice_incoming_call; }\n"
         . "location /media-stream/ {\n$body}\n"
         . $StreamDefaults{locations};
}

sub register_sections {
    return if $Registered++;
    Test::Voice::add_block_sections(qw(
        stream_config openai_query twilio_script twilio_call
        expect_upgrade expect_twilio_close expect_twilio expect_openai
        expect_openai_close
    ));
    Test::Voice::add_block_preprocessor(sub {
        my ($block) = @_;
        $block->set_value(http_config => $DefaultHttpConfig)
            unless exists $block->{http_config};
        $block->set_value(config => call_config($block))
            unless exists $block->{config};
    });
    Test::Voice::add_block_runner(\&run_script_block);
}

# Runs a block's twilio_script and checks its expect_* sections; returns
# {t (transcript), ev (the fakes' events since the call began), conn (the
# fake's connection of the call), pos} for perl_check.
sub run_script_block {
    my ($block, $name) = @_;
    my $v = sub { Test::Voice::value($block, $_[0]) };
    return undef unless defined $v->('twilio_script');
    my %opt = (%CallDefaults, call_options($v->('twilio_call')));
    my $closed_ok = delete $opt{closed_ok};
    $opt{call_sid} //= new_call_sid();
    $opt{stream_sid} //= 'MZ' . substr(new_call_sid(), 2);
    my $script = $v->('twilio_script');
    my @steps = ref $script eq 'ARRAY'
        ? map { ref $_ ? $_ : twilio_steps($_, \%opt) } @$script
        : twilio_steps($script, { %opt });
    my $pos = fake_pos();
    my $t = twilio_call(%opt, steps => \@steps,
                        timeout => $Test::Voice::Timeout + 60);

    # Let the call end on both sides before anything is checked: its end
    # line, and every OpenAI leg opened since it began closed.
    wait_call_ended($t->{call_sid})
        if ($t->{upgrade_status} // 0) == 101;
    my @ev = fake_wait($pos, sub {
        my %closed = map { ("$_->{fake} $_->{conn}" => 1) }
                     oa_event(\@_, 'close');
        !grep { !$closed{"$_->{fake} $_->{conn}"} } oa_event(\@_, 'connect');
    });
    my $conn = $t->{conn} // settle_conn($t, \@ev);

    my @e = tw_errors($t);
    @e = grep { !/^send on a closed socket/ } @e if $closed_ok;
    Test::More::ok(!@e, "$name - the Twilio side ran its script")
        or Test::More::diag(join("\n", @e) . "\nhow it ended: "
            . JSON::PP->new->canonical->encode({
                  map { $_ => $t->{$_} } qw(upgrade_t close_frame close syncs)
              }) . ', ' . scalar(@{ $t->{received} // [] })
            . ' messages received');
    check_expectations($block, $name, $t, \@ev, $conn);
    return { t => $t, ev => \@ev, conn => $conn, pos => $pos };
}

# The fake's connection of a call: known from an await_session, from its
# audio, or the only connection there was.
sub settle_conn {
    my ($t, $ev) = @_;
    for my $audio (tw_sent_audio($t)) {
        my $c = conn_of($ev, $audio);
        return $c if defined $c;
    }
    my @c = oa_event($ev, 'connect');
    return @c == 1 ? $c[0]{conn} : undef;
}

sub check_expectations {
    my ($block, $name, $t, $ev, $conn) = @_;
    my $v = sub {
        my $x = Test::Voice::expand_vars(Test::Voice::value($block, $_[0]),
                                         "$name --- $_[0]");
        $x =~ s/^\s+|\s+$//g if defined $x and !ref $x;
        return $x;
    };
    my $close = $v->('expect_twilio_close');
    my $upgrade = $v->('expect_upgrade') // (defined $close ? 101 : undef);
    Test::More::is($t->{upgrade_status}, $upgrade,
                   "$name - upgrade answered $upgrade")
        if defined $upgrade;
    if (defined $close) {
        my ($code, $by) = $close =~ /^(\d+|none)(?:\s+by\s+(server|client))?$/
            or die "$name: bad expect_twilio_close '$close'\n";
        my $got = $t->{close} ? $t->{close}{code} : 'none';
        Test::More::is($got, $code, "$name - the Twilio side got close $code")
            or Test::More::diag(JSON::PP->new->canonical->encode(
                   { close => $t->{close}, close_frame => $t->{close_frame} }));
        Test::More::is($t->{close}{by}, $by, "$name - closed by the $by")
            if defined $by;
        if ($t->{engine} eq 'raw' and $t->{close_frame}) {
            my $after = ($t->{close}{t} // 0) - $t->{close_frame}{t};
            Test::More::ok($after >= 0 && $after < 5000,
                           "$name - then nginx closed the TCP connection "
                           . "(${after} ms after its close frame)");
        }
    }
    if (defined(my $exp = $v->('expect_twilio'))) {
        for my $line (grep { /\S/ } split /\n/, $exp) {
            my ($k, $n) = $line =~ /^\s*([\w.*]+)\s*:\s*(\d+)\s*$/
                or die "$name: bad expect_twilio line '$line'\n";
            my $got = $k eq 'messages' ? @{ $t->{received} }
                    : $k =~ /^(?:ping|pong)$/
                        ? grep { $_->{type} eq $k } @{ $t->{frames} }
                    : $k =~ /^(?:text|binary)$/
                        ? grep { exists $_->{msg}{$k} } @{ $t->{received} }
                    : scalar tw_recv($t, $k);
            Test::More::is(0 + $got, $n, "$name - the Twilio side got $n $k");
        }
    }
    if (defined(my $exp = $v->('expect_openai'))) {
        my @want = grep { /\S/ } map { s/^\s+|\s+$//gr } split /\n/, $exp;
        @want = () if "@want" eq 'nothing';
        my @got = defined $conn ? openai_labels($ev, $conn) : ();
        Test::More::is_deeply(\@got, \@want, "$name - what OpenAI got")
            or Test::More::diag(Test::More::explain(\@got));
    }
    if (defined(my $exp = $v->('expect_openai_close'))) {
        my $c = fake_close_of($ev, $conn);
        Test::More::is($c ? $c->{code} : 'none', $exp,
                       "$name - the OpenAI side got close $exp");
    }
}

1;
__END__

=head1 NAME

Test::VoiceCall - whole calls through nginx: fake OpenAI, Twilio driver,
and the block sections that script them

=head1 SYNOPSIS

    use Test::Voice;
    use Test::VoiceCall;

    voice_setup();
    run_tests();

    __DATA__

    === TEST 1: a call, stopped by Twilio
    --- twilio_script
    setup
    media 3
    ctl {"deltas": {"n": 1}}
    wait mark
    stop
    wait_close 3000
    --- expect_twilio_close: 1000 by server
    --- expect_openai_close: 1000
    --- error_log
    reason "Twilio stop"

C<require "$FindBin::Bin/lib/voice-call.pl"> is the same as C<use
Test::VoiceCall> (in package main).

=head1 DEFAULTS

voice_setup() gives every block without an C<http_config> a token zone,
C<voice_public_url https://voice.example.com> and auth token 12345, and
every block without a C<config> the two locations of a call:
C<location = /incoming-call> and C<location /media-stream/> with
C<voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&ctl=1>,
C<voice_openai_api_key sk-test-key> and the test CA.  Sections:

=over

=item stream_config

More directives in the media stream location; one that names a default
directive (voice_openai_url, voice_openai_api_key,
voice_ssl_trusted_certificate, or one of voice_setup's stream_config)
replaces it.

=item openai_query

Appended to the default OpenAI URL: C<&status=401>, C<&hang=1>,
C<&created_delay_ms=300>, C<&nopong=1>, C<&flood=N&size=S> (see
t/lib/fake-openai.js).

=back

voice_setup(stream_config => "...", twilio_call => {...}) sets the file's
own defaults for those.

=head1 SCRIPTING A CALL

=over

=item twilio_script

One step a line (C<#> starts a comment); a line starting with C<{> is a
step as t/lib/twilio-call.js takes it.  An C<eval> giving an array ref of
step hashes and script strings works too.

    hello                   connected, start
    setup                   connected, start, await_session
    connected | stop
    start [call_sid=CA..] [stream_sid=MZ..] [media_format={...}] [start={...}]
    media [N] [bytes=B] [interval=MS] [payload=BASE64] [until_close]
    mark NAME | dtmf DIGIT
    json {...}              a message as given
    raw TEXT                a text message as given ($STREAM_SID, $CALL_SID)
    binary PAYLOAD          a binary message
    ctl ACTIONS             a command for the fake OpenAI (JSON, see
                            t/lib/fake-openai.js), in-band
    wait EVENT|{...} [N] [timeout=MS]   N more received messages matching
    wait_close [MS]
    echo_marks auto|off|N | echo_pending N|all | sleep MS
    close [CODE [REASON|"..."]] | terminate (FIN) | reset (RST)
    wait_frame ping|pong [N] [timeout=MS]   N more control frames
    await_session           a media message, then wait until OpenAI got it
    sync reload             nginx_reload() (needs --- master_on)
    sync log:REGEX          wait (up to 10 s) for a line in error.log
    sync LABEL              wait for the test (twilio_call's on_sync)
    frame TYPE|OPCODE [fin=0] [unmasked] [rsv=1,0,0] [mask=HEX]
          [length=N] [split=N] [payload=PAYLOAD]
    bytes PAYLOAD
    ping|pong [count=N] [interval=MS] [until_close] ["..." | payload=PAYLOAD]
    chunked N [interval=MS] | pause | resume

PAYLOAD: terms joined by C<.>, each C<"..."> (escapes C<\xHH \n \r \t \0
\\ \">), C<hex:HEX>, C<code:N> (2 bytes), C<media> or C<media:N> (a media
message of this call with N bytes of audio), optionally followed by C<x
N>.  C<frame>, C<bytes>, C<chunked>, C<pause>, C<resume> and C<reset> use
the raw engine (frames built by hand; the server's decoded by ws's
Receiver).

=item twilio_call

Options of the call, C<key: value> lines (a JSON value or a word): those
of t/lib/twilio-call.js (C<engine: raw>, C<echo_marks: 1>, C<auto_pong:
false>, C<upgrade_delay_ms: 1600>, C<token: ...>, C<signature: ...>,
C<pipeline: [...]> ...) and C<closed_ok> (sends after nginx closed the
stream are no problem).

=back

After the script the harness waits for the call's "call ended" line and
OpenAI's close, and checks that the Twilio side ran its script; then:

=over

=item expect_upgrade: STATUS

=item expect_twilio_close: CODE [by server|by client]

The close code the Twilio side got (C<none> if the connection did not
close); implies C<expect_upgrade: 101>.  With the raw engine, once nginx
sent a close frame it must also end the TCP connection within 5 s.

=item expect_twilio

C<KEY: N> lines: how many messages of Twilio event KEY the Twilio side
got; C<messages> (all), C<text> (not JSON), C<binary>, C<ping> and C<pong>
(control frames) count those.

=item expect_openai

What OpenAI got, in order, one label a line (see openai_labels(): the
type, C<CTL> for a ctl, C<item:TEXT> for a user text item; audio appends
left out); C<nothing> for none.

=item expect_openai_close: CODE

=back

perl_check then gets C<$_[2]> = {t => transcript, ev => the fakes' events
since the call began, conn => the fake's connection, pos => fake_pos()}.

=head1 HELPERS

voice_setup, twilio_call(%scenario), twilio_calls(\@scenarios, on_sync =>
sub, timeout => s), twilio_steps($script, \%ctx), fake_pos, fake_events,
fake_wait, fake_close_of, oa_msgs, oa_msgs_noctl, oa_sent, oa_event,
conn_of, is_ctl, openai_labels, tw_recv, tw_sent_audio, tw_errors,
call_ended_lines, wait_call_ended($sid), call_stack_log($sid),
new_call_sid, make_certs, start_fake.

=cut
