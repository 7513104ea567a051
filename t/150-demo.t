# make demo's call (demo/run), run as a newcomer runs it, and checked from
# what it shows: the timeline it prints (every event, in causal order, the
# barge-in's truncate point), nginx's line for the call against what the
# two peers counted, demo/call.wav (2 channels, 8 kHz, what each side heard
# on one time axis) and demo/call.png.
#
# The run is real: Debian's nginx (or TEST_NGINX_BINARY) with the module
# (TEST_NGINX_MODULE) and conf/ngx_voice.conf, t/lib/fake-openai.js with
# demo/openai-demo.js on TLS, demo/caller.js as Twilio; audio synthesized
# by espeak-ng.  Its outputs go to t/servroot-150-demo (DEMO_OUT), not to
# demo/.  One call of about 13 s.
use strict;
use warnings;
use Test::More;
use FindBin ();
use File::Path ();
use IPC::Run ();
use POSIX ();

# (make valgrind runs t/1*.t: demo/run starts nginx itself, not under
# memcheck, and its call is paced in real time)
plan skip_all => 'demo/run does not run nginx under valgrind'
    if $ENV{TEST_NGINX_USE_VALGRIND};

my $top = "$FindBin::Bin/..";
my $out = "$FindBin::Bin/servroot-150-demo";
File::Path::remove_tree($out);
File::Path::make_path($out);

my ($stdout, $stderr) = ('', '');
my $shown;
sub show { diag("demo/run printed:\n$stdout\n$stderr") unless $shown++ }
my $ok = do {
    local $ENV{DEMO_OUT} = $out;
    IPC::Run::run(["$top/demo/run"], '<', \undef, '>', \$stdout,
                  '2>', \$stderr, IPC::Run::timeout(180));
};
ok($ok, 'demo/run exits 0') or diag("exit $?"), show();
unlike($stdout . $stderr, qr/AddressSanitizer|LeakSanitizer|runtime error:/,
       'no sanitizer report');
unlike($stdout, qr/warnings and errors|MISSING|UNEXPECTED/,
       'no warning or error in nginx\'s log, nothing missing');

# --- the timeline ------------------------------------------------------------

my @lines = map {
    my ($ms, $who, $text) = /^\s*(\d+)  (caller|nginx |openai)  (.*)$/;
    defined $ms ? { ms => $ms, who => $who =~ s/ //r, text => $text } : ()
} split /\n/, $stdout;
my @ms = map { $_->{ms} } @lines;
is_deeply(\@ms, [sort { $a <=> $b } @ms], 'the timeline is in time order')
    or show();

# Each event: its line (exactly one unless told), its time and captures.
my %ev;
sub event {
    my ($name, $who, $re, $nth) = @_;
    my @m = grep { $_->{who} eq $who && $_->{text} =~ $re } @lines;
    if ($nth) {
        ok(@m >= $nth, "timeline: $name") or show();
        @m = ($m[$nth - 1] // ());
    } else {
        is(scalar @m, 1, "timeline: $name") or show();
    }
    return unless @m;
    my @cap = $m[0]{text} =~ $re;
    $ev{$name} = { ms => $m[0]{ms}, cap => \@cap };
}

event(webhook => 'caller',
      qr{^webhook: POST /incoming-call, signed \(X-Twilio-Signature\)$});
event(twiml => 'nginx', qr{^webhook answered 200: TwiML <Connect><Stream }
      . qr{url="wss://voice\.demo\.test/media-stream/…"> }
      . qr{\(a single-use token\)$});
event(upgrade => 'nginx', qr{^upgrade: GET /media-stream/… }
      . qr{\(signed wss:// URL\) -> 101 Switching Protocols$});
event(start => 'caller',
      qr{^connected, start \(CallSid (CA[0-9a-f]{32}), }
      . qr{StreamSid (MZ[0-9a-f]{32})\)$});
event(openai => 'openai', qr{^nginx opened its TLS WebSocket: GET }
      . qr{/v1/realtime\?model=gpt-realtime, Authorization: Bearer …$});
event(session => 'openai',
      qr{^session\.update received, session\.updated sent \(voice marin\)$});
event(audio_in => 'openai', qr{^first audio from the caller: }
      . qr{input_audio_buffer\.append \((\d+) ms\)$});
event(say1 => 'caller', qr{^starts saying sentence 1 \((\d+) ms of speech\)$});
event(vad1 => 'openai', qr{^input_audio_buffer\.speech_started }
      . qr{\(audio_start_ms \d+\)$}, 1);
event(stop1 => 'openai', qr{^input_audio_buffer\.speech_stopped }
      . qr{\(audio_end_ms \d+\), committed$}, 1);
event(resp1 => 'openai', qr{^response resp_1: (\d+) ms of synthesized reply});
event(audio_out => 'caller', qr{^first audio from OpenAI \(media, \d+ ms\), }
      . qr{played at 8 bytes/ms, marks echoed$});
event(say2 => 'caller', qr{^speaks again over the reply, (\d+) ms of it still }
      . qr{queued \(sentence 2, (\d+) ms\): barge-in$});
event(vad2 => 'openai', qr{^input_audio_buffer\.speech_started }
      . qr{\(audio_start_ms \d+\)$}, 2);
event(clear => 'caller', qr{^clear from nginx: ([\d.]+) ms of queued audio }
      . qr{dropped \(([\d.]+) ms played in all\), (\d+) marks sent back$});
event(cancel => 'openai', qr{^response resp_1 cancelled by the caller's }
      . qr{speech after (\d+) ms sent$});
event(truncate => 'openai', qr{^conversation\.item\.truncate item_reply_1 }
      . qr{audio_end_ms=(\d+) \(of (\d+) ms sent\)});
event(stop2 => 'openai', qr{^input_audio_buffer\.speech_stopped }
      . qr{\(audio_end_ms \d+\), committed$}, 2);
event(resp2 => 'openai', qr{^response resp_2: (\d+) ms of synthesized reply});
event(audio2 => 'caller', qr{^first audio of the next reply$});
event(done2 => 'openai', qr{^response resp_2 done \((\d+) ms sent\)$});
event(hangup => 'caller', qr{^hang-up: stop, close 1000$});
event(closed => 'caller', qr{^Media Stream closed \(1000\)$});
event(oa_closed => 'openai', qr{^nginx closed the OpenAI WebSocket \(1000\)$});
is(scalar(grep { $_->{text} =~ /^response resp_\d+:/ } @lines), 2,
   'two responses, no more');
is(scalar(grep { $_->{text} =~ /^input_audio_buffer\.speech_/ } @lines), 4,
   'two turns of the caller (started, stopped), no more');

# what caused what: each event no earlier than its cause
my @causal = (
    [qw(webhook twiml)], [qw(twiml upgrade)], [qw(upgrade start)],
    [qw(twiml openai)], [qw(openai session)], [qw(session audio_in)],
    [qw(say1 vad1)], [qw(vad1 stop1)], [qw(stop1 resp1)],
    [qw(resp1 audio_out)], [qw(audio_out say2)], [qw(say2 vad2)],
    [qw(vad2 clear)], [qw(vad2 truncate)], [qw(vad2 cancel)],
    [qw(clear stop2)], [qw(truncate stop2)], [qw(stop2 resp2)],
    [qw(resp2 audio2)], [qw(resp2 done2)], [qw(done2 hangup)],
    [qw(hangup closed)], [qw(hangup oa_closed)],
);
for (@causal) {
    my ($a, $b) = @$_;
    next unless $ev{$a} and $ev{$b};
    cmp_ok($ev{$a}{ms}, '<=', $ev{$b}{ms}, "$a before $b");
}

# The barge-in: the caller spoke while the reply was still queued; nginx
# cut the item at min(sent, played + 50 ms), played being what the marks
# echoed so far: whole deltas of 100 ms, so the cut ends in 50, is at most
# what was sent, and at most 50 ms (plus one delta the caller was still
# playing) from what the caller had really heard at the clear.
SKIP: {
    skip 'no barge-in in the timeline', 7
        unless $ev{say2} and $ev{clear} and $ev{truncate} and $ev{cancel};
    my ($queued) = @{ $ev{say2}{cap} };
    my ($dropped, $played, $marks) = @{ $ev{clear}{cap} };
    my ($end, $sent) = @{ $ev{truncate}{cap} };
    cmp_ok($queued, '>', 0, 'the caller spoke over queued audio');
    cmp_ok($dropped, '>', 0, 'clear dropped queued audio');
    is($end % 100, 50, "audio_end_ms ($end) is the marks echoed + 50 ms");
    cmp_ok($end, '<=', $sent, "audio_end_ms ($end) <= what was sent ($sent)");
    cmp_ok($played - ($end - 50), '>=', 0,
           'no mark came back before its audio played');
    cmp_ok($played - ($end - 50), '<', 200,
           "audio_end_ms ($end) within a delta of what was heard ($played)");
    is($ev{cancel}{cap}[0], $sent,
       'the truncate came after the last delta of the cut response');
    # every delta of 100 ms had its mark: those of the audio dropped (one
    # partly played) came back with the clear
    is($marks, POSIX::ceil($dropped / 100) , 'one mark per delta dropped');
}

# --- nginx's line for the call, and what the peers counted -------------------

my ($call_sid, $stream_sid) = @{ $ev{start}{cap} // [] };
my @info = grep { /voice: call ended/ } split /\n/, $stdout;
is(scalar @info, 1, 'one "call ended" line') or show();
my $info = $info[0] // '';
my $info_re = qr{\[info\] \d+#\d+: \*\d+ voice: call ended, }
     . qr{CallSid \Q$call_sid\E, StreamSid \Q$stream_sid\E, }
     . qr{duration \d+ms, setup \d+ms, }
     . qr{frames from Twilio \d+, to Twilio \d+, from OpenAI \d+, }
     . qr{to OpenAI \d+, interruptions 1, Twilio close 1000/1000, }
     . qr{OpenAI close 1000/1000, reason "Twilio stop" while relaying a }
     . qr{voice call, client: 127\.0\.0\.1, } if $call_sid;
like($info, qr/$info_re/, 'the call\'s [info] line') if $call_sid;
my ($ftw_in, $ftw_out, $foa_in, $foa_out) = $info =~
    /frames\ from\ Twilio\ (\d+),\ to\ Twilio\ (\d+),
     \ from\ OpenAI\ (\d+),\ to\ OpenAI\ (\d+)/x;
my ($ctw_in, $ctw_out, $tw_pings, $coa_in, $coa_out, $oa_pings) = $stdout =~
    /counted \ by \ the \ peers: \ from \ Twilio \ (\d+),
     \ to \ Twilio \ (\d+) \ \+ \ close (?: \ \+ \ (\d+) \ pings)?,
     \ from \ OpenAI \ (\d+), \ to \ OpenAI \ (\d+) \ \+ \ close
     (?: \ \+ \ (\d+) \ pings)?/x;
ok(defined $ctw_in, 'the peers\' counts are printed') or show();
is($ftw_in // "none", $ctw_in,
   'frames from Twilio: the messages the caller sent');
is($ftw_out // "none", $ctw_out + 1 + ($tw_pings // 0),
   'frames to Twilio: the messages the caller got, its close and pings');
is($foa_in // "none", $coa_in,
   'frames from OpenAI: the messages the stand-in sent');
is($foa_out // "none", $coa_out + 1 + ($oa_pings // 0),
   'frames to OpenAI: the messages the stand-in got, the close and pings');

# --- demo/call.wav -----------------------------------------------------------

sub slurp {
    my ($file) = @_;
    open my $fh, '<:raw', $file or return '';
    local $/;
    return <$fh> // '';
}

my $wav = slurp("$out/call.wav");
is(substr($wav, 0, 4) . substr($wav, 8, 4), 'RIFFWAVE', 'call.wav is a WAV');
my (%fmt, $data);
for (my $p = 12; $p + 8 <= length $wav;) {
    my ($id, $len) = unpack 'a4 V', substr($wav, $p, 8);
    if ($id eq 'fmt ') {
        @fmt{qw(format channels rate byterate align bits)} =
            unpack 'v v V V v v', substr($wav, $p + 8, 16);
    } elsif ($id eq 'data') {
        $data = substr($wav, $p + 8, $len);
    }
    $p += 8 + $len + ($len & 1);
}
is_deeply([@fmt{qw(format channels rate bits)}], [1, 2, 8000, 16],
          'call.wav: PCM, 2 channels, 8 kHz, 16 bits');
$data //= '';
my @s = unpack 's<*', $data;
my (@left, @right);
for (my $i = 0; $i + 1 < @s; $i += 2) {
    push @left, $s[$i];
    push @right, $s[$i + 1];
}
cmp_ok(scalar @left, '>', 0, 'call.wav has samples');
cmp_ok(@left / 8, '>=', $ev{hangup}{ms} // 1e9,
       'call.wav lasts until the hang-up');

# The loudest sample of a channel between two times (ms from the webhook).
sub peak {
    my ($ch, $from, $to) = @_;
    my $max = 0;
    for my $i (int($from * 8) .. int($to * 8) - 1) {
        last if $i > $#$ch;
        my $v = abs($ch->[$i] // 0);
        $max = $v if $v > $max;
    }
    return $max;
}

my ($silent, $loud) = (256, 4000);
SKIP: {
    skip 'events missing', 8
        unless $ev{audio_out} and $ev{clear} and $ev{audio2} and $ev{done2}
        and $ev{say1} and $ev{say2};
    my %t = map { $_ => $ev{$_}{ms} } keys %ev;
    my ($len1) = @{ $ev{say1}{cap} };
    my ($len2) = @{ $ev{say2}{cap} }[1];
    # left: what the caller heard
    cmp_ok(peak(\@left, 0, $t{audio_out} - 20), '<=', $silent,
           'left: silence before the first audio from OpenAI');
    cmp_ok(peak(\@left, $t{audio_out}, $t{say2}), '>=', $loud,
           'left: the reply, until the barge-in');
    cmp_ok(peak(\@left, $t{clear} + 40, $t{audio2} - 20), '<=', $silent,
           'left: silence from the clear to the next reply');
    cmp_ok(peak(\@left, $t{audio2}, $t{hangup}), '>=', $loud,
           'left: the next reply');
    # right: what OpenAI heard
    cmp_ok(peak(\@right, 0, $t{say1} - 60), '<=', $silent,
           'right: silence before the caller speaks');
    cmp_ok(peak(\@right, $t{say1}, $t{say1} + $len1), '>=', $loud,
           'right: sentence 1, when the caller said it');
    cmp_ok(peak(\@right, $t{say1} + $len1 + 60, $t{say2} - 60), '<=',
           $silent, 'right: silence while the caller listens');
    cmp_ok(peak(\@right, $t{say2}, $t{say2} + $len2), '>=', $loud,
           'right: sentence 2, over the reply');
}

# --- demo/call.png -----------------------------------------------------------

my $png = slurp("$out/call.png");
is(substr($png, 0, 8), "\x89PNG\r\n\x1a\n", 'call.png is a PNG');
is_deeply([unpack 'N N', substr($png, 16, 8)], [1200, 600],
          'call.png: 1200x600');

done_testing();
