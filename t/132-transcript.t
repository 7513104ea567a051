# The transcript log: `voice_transcript_log PATH`.
#
# Input transcription is turned on in session.update; the module writes one
# JSON line per utterance, from conversation.item.input_audio_transcription.
# completed (the caller) and response.output_audio_transcript.done (the
# model), with the ids that give their order (conversation.item.added
# carries previous_item_id).  The model's words are written once it is
# known whether the caller heard them whole: a barge-in adds interrupted,
# played_ms and generated_ms (8 bytes of audio are 1 ms).  The file is
# made with mode 0600, reopened on `nginx -s reopen`; a line is at most
# 4 KiB ("cut":true).  The fake OpenAI sends the events (ctl actions
# item_added, transcript, deltas; see t/lib/fake-openai.js).
use Test::Voice;
use FindBin ();
use Encode ();
use JSON::PP ();

require "$FindBin::Bin/lib/voice-call.pl";

# Before voice_setup(): the call defaults leave a block's http_config alone.
block_defaults(http_config => <<'HTTP');
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
voice_transcript_log logs/transcript.log;
HTTP

voice_setup();

# A file made before nginx starts, readable by all.
our $Existing = servroot() . '/voice/existing.log';
{
    open my $fh, '>', $Existing or die "$Existing: $!";
    close $fh;
    chmod 0644, $Existing;
}
$ENV{TEST_NGINX_EXISTING} = $Existing;

# --- this file's words in --- twilio_script --------------------------------
#
#   added ID PREV [assistant]   conversation.item.added: item ID after PREV
#                               (null: the first), a user item unless said
#   caller ID TEXT              the caller's transcript of item ID
#   model ID TEXT               the model's transcript of item ID
#                               (response resp_ID)
#   deltas NxBYTES ID           N audio deltas of BYTES bytes of item ID
#                               (response resp_ID)
#   speech_started              OpenAI: the caller started speaking
add_block_preprocessor(sub {
    my $block = shift;
    my $script = $block->twilio_script // return;
    my $json = JSON::PP->new->canonical;
    my $ctl = sub { 'ctl ' . $json->encode($_[0]) };
    $script =~ s{^added (\S+) (\S+)( assistant)?$}{
        $ctl->({ item_added => { id => $1, role => $3 ? 'assistant' : 'user',
                                 previous_item_id => $2 eq 'null' ? undef : $2 } })
    }mge;
    $script =~ s{^(caller|model) (\S+) (.*)$}{
        $ctl->({ transcript => { who => $1 eq 'model' ? 'assistant' : 'caller',
                                 item_id => $2, response_id => "resp_$2",
                                 text => Encode::decode_utf8($3) } })
    }mge;
    $script =~ s{^deltas (\d+)x(\d+) (\S+)$}{
        $ctl->({ deltas => { n => 0 + $1, bytes => 0 + $2, item_id => $3,
                             response_id => "resp_$3" } })
    }mge;
    $script =~ s{^speech_started$}{ctl {"send": {"type": "input_audio_buffer.speech_started", "event_id": "evt_ss", "item_id": "item_next", "audio_start_ms": 1000}}}mg;
    $block->set_value(twilio_script => $script);
});

# --- helpers (package main: perl_check code calls them) ----------------------

sub transcript_path { servroot() . '/logs/transcript.log' }

# The raw lines of call $sid in $path (default logs/transcript.log),
# waiting up to 3 s (9 under memcheck) for $n of them.
sub raw_lines {
    my ($sid, $n, $path) = @_;
    $path //= transcript_path();
    my @l;
    for (1 .. ($ENV{TEST_NGINX_USE_VALGRIND} ? 180 : 60)) {
        my $all = -e $path ? Test::Voice::read_from($path, 0) : '';
        @l = grep { index($_, qq{"call_sid":"$sid"}) >= 0 } split /\n/, $all;
        last if @l >= $n;
        Time::HiRes::sleep(0.05);
    }
    return @l;
}

# The same, each checked to be UTF-8 and one JSON object, decoded.
sub lines {
    my @raw = raw_lines(@_);
    my @j;
    for my $raw (@raw) {
        my $ok = eval { Encode::decode('UTF-8', my $copy = $raw, Encode::FB_CROAK); 1 };
        ok($ok, 'a line of valid UTF-8') or diag $raw;
        my $j = eval { JSON::PP->new->utf8->decode($raw) };
        ok(ref $j eq 'HASH', 'a line of one JSON object') or diag "$@: $raw";
        push @j, $j;
    }
    return @j;
}

# A line's fields, without the time (checked by its own regex).
sub fields {
    my ($j) = @_;
    my %f = %$j;
    like(delete $f{time}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$/,
         'time in ISO 8601');
    return \%f;
}

sub session_update_of {
    my ($ctx) = @_;
    return (oa_msgs($ctx->{ev}, $ctx->{conn}, 'session.update'))[0];
}

sub mode_of { sprintf '%04o', (stat $_[0])[2] & 07777 }

# A call in which the caller says $text (a line of the transcript log).
sub call_saying {
    my ($text) = @_;
    return twilio_call(steps => [
        { send => 'connected' }, { send => 'start' }, { await_session => 1 },
        { ctl => [{ transcript => { who => 'caller', item_id => 'item_u1',
                                    text => $text } }] },
        { sleep => 200 }, { send => 'stop' }, { wait_close => 3000 }]);
}

# nginx -s reopen: USR1 to the master, then wait until it and its worker
# have reopened the transcript log (their debug lines "reopen file"; the
# "reopening logs" notice comes before): a file renamed before the worker
# reopened would be made by the worker, which may not write in logs/.
sub reopen {
    my $re = qr/reopen file "[^"]*\/transcript\.log"/;
    my $before = () = error_log_since_start() =~ /$re/g;
    kill 'USR1', nginx_pid() or return 0;
    for (1 .. 200) {
        my $n = () = error_log_since_start() =~ /$re/g;
        return 1 if $n >= $before + 2;
        Time::HiRes::sleep(0.05);
    }
    return 0;
}

run_tests();

__DATA__

=== TEST 1: session.update turns input transcription on, with the default model
--- twilio_script
setup
stop
wait_close 3000
--- perl_check
my $su = session_update_of($_[2]);
is_deeply($su->{session}{audio}{input}, {
    format => { type => 'audio/pcmu' },
    transcription => { model => 'gpt-4o-mini-transcribe' },
    turn_detection => { type => 'server_vad' },
}, 'audio.input.transcription.model gpt-4o-mini-transcribe') or diag explain $su;
ok(!exists $su->{session}{tools}, 'nothing else added');
--- expect_twilio_close: 1000 by server
--- no_error_log
[error]
[warn]



=== TEST 2: voice_transcription_model
--- stream_config
voice_transcription_model whisper-1;
--- twilio_script
setup
stop
wait_close 3000
--- perl_check
my $su = session_update_of($_[2]);
is_deeply($su->{session}{audio}{input}{transcription}, { model => 'whisper-1' },
          'the configured model');
--- no_error_log
[error]
[warn]



=== TEST 3: a turn: the caller's words, then the model's (played in full), one line each, exactly
--- twilio_script
setup
added item_u1 null
caller item_u1 Hello, I would like to order a pizza.
added item_a1 item_u1 assistant
deltas 2x800 item_a1
model item_a1 Sure! Which size?
wait mark 2
sleep 200
stop
wait_close 3000
--- perl_check
my $sid = $_[2]{t}{call_sid};
my @raw = raw_lines($sid, 2);
is(scalar @raw, 2, 'two lines');
like($raw[0], qr/^\{"time":"[^"]+","call_sid":"\Q$sid\E","item_id":"item_u1","previous_item_id":null,"who":"caller","text":"Hello, I would like to order a pizza\."\}$/,
     'the caller\'s line, exactly');
like($raw[1], qr/^\{"time":"[^"]+","call_sid":"\Q$sid\E","item_id":"item_a1","previous_item_id":"item_u1","who":"assistant","text":"Sure! Which size\?"\}$/,
     'the model\'s line, exactly: not interrupted');
my @j = lines($sid, 2);
fields($_) for @j;
--- no_error_log
[error]
[warn]



=== TEST 4: the caller's transcript comes after the model's response: the ids still give the order
The model's words are written when they have played; the caller's when
their transcription is done, later.
--- twilio_script
setup
added item_u1 null
added item_a1 item_u1 assistant
deltas 1x800 item_a1
model item_a1 Good morning!
wait mark
sleep 200
caller item_u1 Hi.
added item_u2 item_a1
caller item_u2 Bye now.
sleep 200
stop
wait_close 3000
--- perl_check
my $sid = $_[2]{t}{call_sid};
my @f = map { fields($_) } lines($sid, 3);
is_deeply(\@f, [
    { call_sid => $sid, item_id => 'item_a1', previous_item_id => 'item_u1',
      who => 'assistant', text => 'Good morning!' },
    { call_sid => $sid, item_id => 'item_u1', previous_item_id => undef,
      who => 'caller', text => 'Hi.' },
    { call_sid => $sid, item_id => 'item_u2', previous_item_id => 'item_a1',
      who => 'caller', text => 'Bye now.' },
], 'in the order they came, each with the item before it') or diag explain \@f;
--- no_error_log
[error]
[warn]



=== TEST 5: barge-in after the model's transcript came: interrupted, played_ms 200, generated_ms 600
3 deltas of 1600 bytes (600 ms) sent; Twilio echoed the first mark (200
ms) when the caller spoke.
--- twilio_call
echo_marks: 1
--- twilio_script
setup
added item_a1 null assistant
deltas 3x1600 item_a1
model item_a1 Our opening hours are nine to five, Monday to Friday.
wait mark 3
speech_started
wait clear
sleep 200
stop
wait_close 3000
--- perl_check
my $sid = $_[2]{t}{call_sid};
my @raw = raw_lines($sid, 1);
is(scalar @raw, 1, 'one line');
like($raw[0], qr/^\{"time":"[^"]+","call_sid":"\Q$sid\E","item_id":"item_a1","previous_item_id":null,"who":"assistant","text":"Our opening hours are nine to five, Monday to Friday\.","interrupted":true,"played_ms":200,"generated_ms":600\}$/,
     'interrupted, played 200 of 600 ms, exactly');
is(scalar(lines($sid, 1)), 1, 'valid JSON');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*interruptions 1, /
--- no_error_log
[error]
[warn]



=== TEST 6: barge-in while the model still spoke: its transcript comes after the cut, and says so
The response is cut before it is done: response.output_audio_transcript.
done arrives after speech_started (and the clear).
--- twilio_call
echo_marks: 1
--- twilio_script
setup
added item_a1 null assistant
deltas 3x1600 item_a1
wait mark 3
speech_started
wait clear
model item_a1 Our opening hours are nine to five,
sleep 300
stop
wait_close 3000
--- perl_check
my $sid = $_[2]{t}{call_sid};
my @f = map { fields($_) } lines($sid, 1);
is_deeply(\@f, [
    { call_sid => $sid, item_id => 'item_a1', previous_item_id => undef,
      who => 'assistant', text => 'Our opening hours are nine to five,',
      interrupted => JSON::PP::true, played_ms => 200, generated_ms => 600 },
], 'interrupted, played 200 of 600 ms') or diag explain \@f;
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*interruptions 1, /
--- no_error_log
[error]
[warn]



=== TEST 7: two answers in a row, the first not played out when the caller speaks: both lines say how much was played
Item A: 3 deltas of 1600 bytes (600 ms), its transcript; then item B (a
new response): 2 deltas of 1600 bytes (400 ms), its transcript.  Twilio
echoed one mark: A played 200 of 600 ms, B 0 of 400.
--- twilio_call
echo_marks: 1
--- twilio_script
setup
added item_A null assistant
deltas 3x1600 item_A
model item_A The first answer.
added item_B item_A assistant
deltas 2x1600 item_B
model item_B And a second one.
wait mark 5
speech_started
wait clear
sleep 300
stop
wait_close 3000
--- perl_check
my $sid = $_[2]{t}{call_sid};
my @f = map { fields($_) } lines($sid, 2);
is_deeply(\@f, [
    { call_sid => $sid, item_id => 'item_A', previous_item_id => undef,
      who => 'assistant', text => 'The first answer.',
      interrupted => JSON::PP::true, played_ms => 200, generated_ms => 600 },
    { call_sid => $sid, item_id => 'item_B', previous_item_id => 'item_A',
      who => 'assistant', text => 'And a second one.',
      interrupted => JSON::PP::true, played_ms => 0, generated_ms => 400 },
], 'both cut, each with its own played and generated ms') or diag explain \@f;
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*interruptions 1, /
--- no_error_log
[error]
[warn]



=== TEST 8: quotes, backslashes, newlines, control characters and non-ASCII text: valid JSON, the text intact
--- twilio_script eval
my $text = "She said \"hi\" \\o/\nthen\ttabbed\r\x01\x1f \x{e9}t\x{e9} \x{65e5}\x{672c} \x{1f600} \x{2028}end";
my $ctl = JSON::PP->new->ascii->canonical->encode([
    { item_added => { id => 'item_u1', previous_item_id => undef, role => 'user' } },
    { transcript => { who => 'caller', item_id => 'item_u1', text => $text } },
    { transcript => { who => 'assistant', item_id => 'item_a1', response_id => 'resp_a1', text => $text } }]);
$main::Text = $text;
"setup\nctl $ctl\nsleep 300\nstop\nwait_close 3000\n"
--- perl_check
my $sid = $_[2]{t}{call_sid};
my @j = lines($sid, 2);
is(scalar @j, 2, 'two lines');
is($j[0]{text}, $main::Text, 'the caller\'s text, intact');
is($j[1]{text}, $main::Text, 'the model\'s text, intact');
my @raw = raw_lines($sid, 2);
unlike($raw[0], qr/[\x00-\x1f]/, 'no raw control character in the line');
--- no_error_log
[error]
[warn]



=== TEST 9: a transcript longer than 4 KiB: cut on a character boundary, marked "cut":true, still one JSON line
--- twilio_script eval
my $long = join '', map { "word$_ \x{e9}\x{65e5} " } 1 .. 600;     # ~8 KB
my $ctl = JSON::PP->new->ascii->canonical->encode([
    { transcript => { who => 'caller', item_id => 'item_u1', text => $long } },
    { transcript => { who => 'assistant', item_id => 'item_a1', response_id => 'resp_a1', text => "\x01" x 3000 } },
    { transcript => { who => 'caller', item_id => 'item_u2', text => 'x' x 3500 } }]);
$main::Long = $long;
"setup\nctl $ctl\nsleep 300\nstop\nwait_close 3000\n"
--- perl_check
my $sid = $_[2]{t}{call_sid};
my @raw = raw_lines($sid, 3);
my @j = lines($sid, 3);
is(scalar @j, 3, 'three lines');
for my $i (0 .. 2) {
    ok(length($raw[$i]) + 1 <= 4096, "line $i: at most 4 KiB with its newline (" . (length($raw[$i]) + 1) . ')');
}
ok($j[0]{cut}, 'the long caller text: "cut":true');
ok(length($j[0]{text}) > 1000, 'a good part of it is kept');
is(substr($main::Long, 0, length $j[0]{text}), $j[0]{text}, 'the start of the text, whole characters');
like($raw[0], qr/,"cut":true\}$/, 'the marker ends the line');
ok($j[1]{cut}, 'control characters (6 bytes each escaped): cut too');
like($j[1]{text}, qr/^\x01+$/, 'only whole escapes kept');
ok(!exists $j[2]{cut}, '3500 bytes of plain text fit: not cut');
is($j[2]{text}, 'x' x 3500, 'whole');
--- no_error_log
[error]
[warn]



=== TEST 10: a file nginx creates gets mode 0600, and one that existed with 0644 is made 0600 once written to
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
voice_transcript_log logs/private.log;
--- config eval
my $c = <<'C';
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&ctl=1;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
    voice_transcript_log $TEST_NGINX_EXISTING;
}
location /media-stream-2/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&ctl=1;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
C
$c
--- twilio_script
setup
caller item_u1 Hello.
sleep 200
stop
wait_close 3000
--- perl_check
my $sid = $_[2]{t}{call_sid};
my $new = servroot() . '/logs/private.log';
ok(-e $new, 'the http-level file exists');
is(mode_of($new), '0600', 'made by nginx with mode 0600');
is(scalar(raw_lines($sid, 1, $main::Existing)), 1, 'the line went to the location\'s file');
is(mode_of($main::Existing), '0600', 'the file that was 0644 is 0600 now');
--- no_error_log
[error]
[warn]



=== TEST 11: nothing is written when the directive is off, and session.update asks for no transcription
--- stream_config
voice_transcript_log off;
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- twilio_script
setup
added item_u1 null
caller item_u1 Hello.
added item_a1 item_u1 assistant
deltas 1x800 item_a1
model item_a1 Hi there.
wait mark
sleep 1300
stop
wait_close 3000
--- perl_check
my $sid = $_[2]{t}{call_sid};
my $su = session_update_of($_[2]);
ok($su, 'session.update sent');
ok(!exists $su->{session}{audio}{input}{transcription}, 'no input transcription');
is(scalar(raw_lines($sid, 1)), 0, 'no line of this call anywhere');
ok(!-e servroot() . '/off' && !-e servroot() . '/logs/off', 'no file named "off"');
my @files = grep { !/\/(?:error|access|stdout|stderr|transcript|private)\.log$|\/nginx\.pid$/ }
            glob(servroot() . '/logs/*');
is_deeply(\@files, [], 'no other file in logs/') or diag explain \@files;
--- no_error_log
[error]
[warn]



=== TEST 12: no voice_transcript_log at all: no transcription asked for
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- twilio_script
setup
caller item_u1 Hello.
sleep 200
stop
wait_close 3000
--- perl_check
my $su = session_update_of($_[2]);
is_deeply($su->{session}{audio}{input},
          { format => { type => 'audio/pcmu' }, turn_detection => { type => 'server_vad' } },
          'audio.input without transcription');
is(scalar(raw_lines($_[2]{t}{call_sid}, 1)), 0, 'nothing written');
--- no_error_log
[error]
[warn]



=== TEST 13: a line reaches the file within a second or so, while the call goes on
--- perl_check
my $seen;
my $t = twilio_call(steps => [
    { send => 'connected' }, { send => 'start' }, { await_session => 1 },
    { ctl => [{ transcript => { who => 'caller', item_id => 'item_u1',
                                text => 'Still here?' } }] },
    { sync => 'look' },
    { send => 'stop' }, { wait_close => 3000 }],
    on_sync => sub {
        $seen = [raw_lines($main::Sid, 1)];
        return undef;
    },
    call_sid => ($main::Sid = new_call_sid()));
is(scalar @$seen, 1, 'the line was in the file before the call ended');
--- no_error_log
[error]
[warn]



=== TEST 14: nginx -s reopen after the file was renamed: new lines go to a new file (mode 0600), the old one keeps its own
--- master_on
--- perl_check
my $path = transcript_path();
my $t1 = call_saying('before the reopen');
is(scalar(raw_lines($t1->{call_sid}, 1)), 1, 'the first call is written');
rename $path, "$path.1" or die $!;
ok(reopen(), 'nginx reopened its files');
my $t2 = call_saying('after the reopen');
is(scalar(raw_lines($t2->{call_sid}, 1)), 1, 'the second call goes to the new file');
is(scalar(raw_lines($t2->{call_sid}, 0, "$path.1")), 0, 'not to the old one');
is(scalar(raw_lines($t1->{call_sid}, 1, "$path.1")), 1, 'which keeps the first call');
is(mode_of($path), '0600', 'the new file is 0600');
--- no_error_log
[error]
[warn]



=== TEST 15: four reopens in a row with no line in between: the newest file is 0600 too
Each reopen moves the descriptors of nginx's three files around (error.log,
access.log, the transcript log); after four, the transcript log's is
the number it had when it was last written to.
--- master_on
--- perl_check
my $path = transcript_path();
my $t1 = call_saying('first file');
is(scalar(raw_lines($t1->{call_sid}, 1)), 1, 'the first call is written');
for my $n (1 .. 4) {
    rename $path, "$path.$n" or die $!;
    ok(reopen(), "reopen $n");
}
my $t2 = call_saying('after four reopens');
is(scalar(raw_lines($t2->{call_sid}, 1)), 1, 'the second call is written');
is(mode_of($path), '0600', 'to a file of mode 0600');
--- no_error_log
[error]
[warn]
