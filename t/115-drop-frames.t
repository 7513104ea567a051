# Defect 4 of issue 8, "a close frame inside half a frame": when OpenAI
# stops reading, the module's output queue to it (whole WebSocket frames
# in 16 KiB chunks, a frame may span two) stops draining; after
# voice_idle_timeout nginx logs "OpenAI is not reading", drops what waits
# and closes the OpenAI leg with 1011.  TLS takes a whole chunk at a time,
# so the queue left behind may start in the middle of a frame: what is
# dropped must keep frame boundaries, or the close frame lands inside the
# cut frame's payload and OpenAI never sees 1011 (README, "Flow control
# and bad input": "the frame partly handed to the socket is completed").
#
# The fake OpenAI (t/lib/fake-openai.js over real TLS) stops reading its
# socket ({"pause": true}) so the kernel buffers fill; the Twilio side
# floods media until nginx logs the line, then the fake reads again
# (SIGUSR2) within the 2 s nginx waits for the close handshake, and must
# find whole frames, then a close frame 1011, nothing after it, and no
# error in its `ws` parser.  Its own frame parser reports how the bytes
# after TLS were framed (the "wire" line).  Audio of several sizes makes
# the frames straddle the chunks at different points.  Before the fix the
# fake typically found a frame that never ended (the close frame's bytes
# taken as its payload), no close frame, and 1006 when nginx gave up.
#
# The Twilio side here is a Perl WebSocket client (Test::Voice's
# ws_connect): it writes megabytes without waiting (non-blocking), which
# t/lib/twilio-call.js cannot do without recording every message in its
# transcript.  The webhook and the upgrade are signed by the twilio
# package (sign_twilio).
use Test::Voice;
use Test::VoiceCall;
use IO::Select ();
use JSON::PP ();
use MIME::Base64 ();
use Time::HiRes ();
use Protocol::WebSocket::Frame;

voice_setup(stream_config => <<'EOF');
voice_buffer_size 64k;
voice_max_message_size 16k;
voice_idle_timeout 2s;
EOF

# --- helpers (package main, for the perl_check sections) --------------------

our $JSON = JSON::PP->new->canonical;

sub b64 { MIME::Base64::encode_base64($_[0], '') }

# The fake OpenAI's pid (its "ready" line), for SIGUSR2: read before any
# call fills its log.
my ($ready) = grep { $_->{ev} eq 'ready' and $_->{fake} eq 'main' }
              fake_events({});
our $FakePid = $ready->{pid} or die "the fake's ready line has no pid\n";

# log_watch(qr//) gives a sub that tells whether the error log got a line
# matching since log_watch was called; it reads only what is new (the
# debug log of a flood is large).
sub log_watch {
    my ($re) = @_;
    my $file = servroot() . '/logs/error.log';
    open my $fh, '<', $file or die "$file: $!";
    seek $fh, 0, 2;
    my $tail = '';
    return sub {
        while (sysread $fh, my $buf, 1 << 20) {
            $tail .= $buf;
            return 1 if $tail =~ $re;
            $tail = substr $tail, rindex($tail, "\n") + 1;
        }
        return 0;
    };
}

# A Twilio media message as a masked client frame.
sub media_frame {
    my ($stream_sid, $seq, $audio) = @_;
    my $msg = '{"event":"media","sequenceNumber":"' . $seq
        . '","media":{"track":"inbound","chunk":"' . $seq
        . '","timestamp":"' . ($seq * 20) . '","payload":"' . b64($audio)
        . '"},"streamSid":"' . $stream_sid . '"}';
    return Protocol::WebSocket::Frame->new(buffer => $msg, masked => 1,
                                           max_payload_size => 0)->to_bytes;
}

# One call: webhook, upgrade, start, the session up, the fake paused, then
# media of @sizes (bytes of audio, in turn) written as fast as nginx takes
# them until nginx logs that OpenAI is not reading; then the fake reads
# again and the Twilio side waits for its close frame.  Returns what each
# side saw.
sub drop_call {
    my (@sizes) = @_;
    my %r;
    my $sid = new_call_sid();
    my $stream_sid = 'MZ' . substr(new_call_sid(), 2);
    my $body = "CallSid=$sid&From=%2B15551234567&To=%2B15557654321";
    my $res = http_post('/incoming-call', $body, headers => [
        'Content-Type' => 'application/x-www-form-urlencoded'],
        twilio_sign => 'https://voice.example.com/incoming-call');
    my ($token) = ($res->{body} // '') =~ m{/media-stream/([A-Za-z0-9_-]{43})"}
        or return { error => "no TwiML: $res->{status} $res->{body}" };
    my $pos = fake_pos();
    my $ws = ws_connect("/media-stream/$token", twilio_sign =>
                        "wss://voice.example.com/media-stream/$token");
    return { error => "no upgrade: $ws->{status}" } if ref $ws eq 'HASH';
    $ws->send_text('{"event":"connected","protocol":"Call","version":"1.0.0"}');
    $ws->send_text($JSON->encode({ event => 'start', sequenceNumber => '1',
        streamSid => $stream_sid,
        start => { accountSid => 'AC' . substr(new_call_sid(), 2),
                   streamSid => $stream_sid, callSid => $sid,
                   tracks => ['inbound'], customParameters => {},
                   mediaFormat => { encoding => 'audio/x-mulaw',
                                    sampleRate => 8000, channels => 1 } } }));
    # the session is up once OpenAI got this audio
    my $tag = b64(join '', map { chr int rand 256 } 1 .. 120);
    $ws->send_raw(media_frame($stream_sid, 2, MIME::Base64::decode_base64($tag)));
    my @ev = fake_wait($pos, sub { defined conn_of(\@_, $tag) }, 10);
    my $conn = $r{conn} = conn_of(\@ev, $tag);
    return { error => 'no session' } unless defined $conn;
    $ws->send_raw(media_frame($stream_sid, 3,
                  'FAKECTL ' . $JSON->encode([{ pause => JSON::PP::true }])));
    fake_wait($pos, sub { oa_event(\@_, 'paused', $conn) }, 10)
        or return { error => 'the fake did not pause' };

    # the flood: random audio, a fresh frame each time, never blocking
    my $noise = join '', map { chr int rand 256 } 1 .. 65536;
    my $sock = $ws->socket;
    my $seen = log_watch(qr/OpenAI is not reading/);
    $sock->blocking(0);
    my ($out, $seq, $deadline, $next_look) = ('', 3, Time::HiRes::time() + 20, 0);
    $r{flood} = 0;
    while (1) {
        my $now = Time::HiRes::time();
        if ($now >= $next_look) {
            last if $seen->();
            $next_look = $now + 0.05;
        }
        return { %r, error => 'no "OpenAI is not reading" within 20 s' }
            if $now > $deadline;
        while (length $out < 262144) {
            my $n = $sizes[$seq % @sizes];
            $out .= media_frame($stream_sid, ++$seq,
                                substr($noise, int rand(65536 - $n), $n));
        }
        next unless IO::Select->new($sock)->can_write(0.05);
        my $n = syswrite $sock, $out;
        next unless $n;
        $r{flood} += $n;
        substr($out, 0, $n, '');
    }
    $r{logged_t} = Time::HiRes::time();
    kill 'USR2', $FakePid;
    $sock->blocking(1);

    # Twilio: its close frame (nginx read what was sent before it)
    my ($code, $reason) = $ws->recv_close(10);
    $r{twilio_close} = defined $code ? "$code $reason" : 'none';
    $ws->close($code) if defined $code;
    $r{twilio_eof} = $ws->wait_eof(10);

    $r{ended} = wait_call_ended($sid, 10);
    @ev = fake_wait($pos, sub { oa_event(\@_, 'wire', $conn)
                                and oa_event(\@_, 'close', $conn) }, 10);
    @ev = grep { ($_->{conn} // -1) == $conn } @ev;
    ($r{wire}) = oa_event(\@ev, 'wire');
    ($r{close}) = oa_event(\@ev, 'close');
    $r{errors} = [map { "$_->{error} ($_->{code})" } oa_event(\@ev, 'error')];
    ($r{resumed}) = oa_event(\@ev, 'resumed');
    $r{messages} = () = oa_event(\@ev, 'message');
    $r{messages} += $_->{count} for oa_event(\@ev, 'quieted');
    $r{pings} = () = oa_event(\@ev, 'ping');
    return \%r;
}

# The checks of one call.
sub dropped_ok {
    my ($r, $what) = @_;
    ok(!$r->{error}, "$what: the call ran") or diag $r->{error};
    my $log = error_log_since_start();
    like($log, qr/\[error\] .*voice: OpenAI is not reading: \d+ ms since it took data, \d+ ms since it sent any \(voice_idle_timeout\)/,
         "$what: [error] OpenAI is not reading");
    unlike($log, qr/voice_buffer_size \d+ reached/,
           "$what: backpressure kept the queue within voice_buffer_size");
    # (a debug line: checked where the binary logs at debug level)
    like($log, qr/voice: dropped [1-9]\d* bytes for OpenAI/,
         "$what: queued frames were dropped")
        if $log =~ /\[debug\]/;
    is($r->{resumed} && $r->{resumed}{by}, 'signal',
       "$what: the fake read again once the line was logged");
    my $w = $r->{wire} // {};
    note "$what: flood $r->{flood} bytes; " . $JSON->encode($w)
        . ' ws close ' . ($r->{close} ? $r->{close}{code} : 'none');
    # whole frames, then the close frame, nothing after it
    is($w->{partial}, 0, "$what: OpenAI's connection did not end inside a frame");
    is($w->{bad}, undef, "$what: every frame header on the wire is valid");
    is($w->{close_code}, 1011, "$what: then a close frame 1011 on the wire");
    is($w->{after_close}, 0, "$what: nothing after the close frame");
    is($w->{frames}, $r->{messages} + $r->{pings} + 1,
       "$what: every frame reached the fake's ws parser");
    is_deeply($r->{errors}, [], "$what: no error in the fake's ws parser");
    is($r->{close} && $r->{close}{code}, 1011, "$what: ws saw close 1011");
    is($r->{twilio_close}, '1011 peer not reading', "$what: Twilio gets close 1011");
    ok($r->{twilio_eof}, "$what: nginx ends the Twilio connection");
    like($r->{ended} // '', qr/Twilio close 1011\/1011, OpenAI close 1011\/1011, reason "OpenAI is not reading"/,
         "$what: the call ended line");
}

run_tests();

__DATA__

=== TEST 1: audio of 160 bytes (Twilio's 20 ms): many small frames
--- openai_query: &quiet=200
--- timeout: 40
--- perl_check
dropped_ok(drop_call(160), '160');
--- no_error_log
[alert]
[crit]



=== TEST 2: audio of 3000 bytes: frames of about 4 KiB
--- openai_query: &quiet=200
--- timeout: 40
--- perl_check
dropped_ok(drop_call(3000), '3000');
--- no_error_log
[alert]
[crit]



=== TEST 3: audio of 7000 bytes: frames of about 9.4 KiB, most span two chunks
--- openai_query: &quiet=200
--- timeout: 40
--- perl_check
dropped_ok(drop_call(7000), '7000');
--- no_error_log
[alert]
[crit]



=== TEST 4: audio of 11500 bytes: frames just under voice_max_message_size
--- openai_query: &quiet=200
--- timeout: 40
--- perl_check
dropped_ok(drop_call(11500), '11500');
--- no_error_log
[alert]
[crit]



=== TEST 5: audio of 1000, 9000 and 4000 bytes in turn
--- openai_query: &quiet=200
--- timeout: 40
--- perl_check
dropped_ok(drop_call(1000, 9000, 4000), 'mixed');
--- no_error_log
[alert]
[crit]
