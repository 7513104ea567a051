# What OpenAI is told, as the fake OpenAI (t/lib/fake-openai.js) saw it:
# the WebSocket handshake (Authorization, no OpenAI-Beta), the GA
# session.update field by field for each directive, the greeting, when
# session.update is sent (only once session.created AND a valid start are
# in), and that secrets never reach the error log, debug level included.
use Test::Voice;
use FindBin ();
use Encode ();

require "$FindBin::Bin/lib/voice-call.pl";

voice_setup();

# Files the configurations read at start: instructions and secrets.
sub write_file {
    my ($name, $bytes) = @_;
    open my $fh, '>:raw', "$main::VoiceDir/$name" or die $!;
    print $fh $bytes;
    close $fh;
    return "$main::VoiceDir/$name";
}
# every kind of character JSON must escape, and some it must not mangle
sub INSTRUCTIONS_FILE_TEXT () {
    "You are \"Ada\", a phone assistant.\n\tBe brief; back\\slash /slash\r\n"
    . "Control \x01\x1f chars. </script> \xc3\xbcn\xc3\xafc\xc3\xb8d\xc3\xa9 "
    . "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80\n"
}
$ENV{TEST_NGINX_INSTRUCTIONS} = write_file('instructions.txt', INSTRUCTIONS_FILE_TEXT);
$ENV{TEST_NGINX_LATIN1} = write_file('latin1.txt', "Caf\xe9 cr\xe8me\n");
$ENV{TEST_NGINX_KEY_FILE} = write_file('key.txt', "sk-from-file-SECRET-2\nsecond line\n");
$ENV{TEST_NGINX_MCP_FILE} = write_file('mcp.txt', "Bearer mcp-file-SECRET-4\n");

# --- helpers (package main: perl_check code calls them) ----------------------

# The default call of every block (--- twilio_script): it lives until
# OpenAI has been sent session.update (a delta has come back through it),
# then stops.
block_defaults(twilio_script => <<'S');
hello
ctl {"deltas": {"n": 1}}
wait mark
stop
wait_close 3000
S

# From perl_check's $_[2]: the transcript, the events of the fake for the
# call's connection, and the messages OpenAI got.
sub session_of {
    my ($ctx) = @_;
    my ($c) = oa_event($ctx->{ev}, 'connect');
    my $conn = $c ? $c->{conn} : -1;
    my @mine = grep { ($_->{conn} // 0) == $conn } @{ $ctx->{ev} };
    return ($ctx->{t}, \@mine, [oa_msgs_noctl(\@mine, $conn)]);
}

sub session_update {
    my ($msgs) = @_;
    my ($su) = grep { ($_->{type} // '') eq 'session.update' } @$msgs;
    return $su;
}

# Paths of every key named $key anywhere in a structure.
sub find_key {
    my ($v, $key, $path) = @_;
    $path //= '';
    if (ref $v eq 'HASH') {
        return ((exists $v->{$key} ? ("$path/$key") : ()),
                map { find_key($v->{$_}, $key, "$path/$_") } sort keys %$v);
    }
    if (ref $v eq 'ARRAY') {
        return map { find_key($v->[$_], $key, "$path/$_") } 0 .. $#$v;
    }
    return ();
}

sub u { Encode::decode_utf8($_[0]) }

run_tests();

__DATA__

=== TEST 1: the handshake and the default session.update, field by field
--- twilio_script
hello
media 3
ctl {"deltas": {"n": 1}}
wait mark
media 3
stop
wait_close 3000
--- perl_check
my ($t, $ev, $msgs) = session_of($_[2]);
my ($c) = oa_event($ev, 'connect');
my $h = $c->{headers};
is($c->{url}, '/v1/realtime?model=gpt-realtime&ctl=1', 'the configured path and query');
is($h->{authorization}, 'Bearer sk-test-key', 'Authorization: Bearer KEY');
ok(!exists $h->{'openai-beta'}, 'no OpenAI-Beta header') or diag $h->{'openai-beta'};
is($h->{'sec-websocket-version'}, '13', 'Sec-WebSocket-Version: 13');
like($h->{'sec-websocket-key'} // '', qr{^[A-Za-z0-9+/]{22}==$}, 'a 16-byte key');
is(lc($h->{upgrade} // ''), 'websocket', 'Upgrade: websocket');

is($msgs->[0]{type}, 'session.update', 'session.update comes first');
my $su = session_update($msgs);
is_deeply($su, {
    type => 'session.update',
    session => {
        type => 'realtime',
        output_modalities => ['audio'],
        audio => {
            input => { format => { type => 'audio/pcmu' },
                       turn_detection => { type => 'server_vad' } },
            output => { format => { type => 'audio/pcmu' }, voice => 'alloy' },
        },
    },
}, 'the default session.update, exactly') or diag explain $su;
is_deeply([find_key($su, 'temperature')], [], 'no temperature anywhere');
ok(!exists $su->{session}{model}, 'no model');
ok(!exists $su->{session}{tools}, 'no tools without voice_mcp_server');
my @types = map { $_->{type} } @$msgs;
is_deeply([grep { $_ ne 'input_audio_buffer.append' } @types], ['session.update'],
          'no greeting: nothing but session.update and audio')
    or diag explain \@types;
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 2: voice, and instructions with quotes, escapes and Unicode in nginx.conf
nginx's parser turns \" \\ \n \t into the characters; yajl must escape
them again.
--- stream_config
voice_voice marin;
voice_instructions "Say \"hi\" to O'Brien.\nLine two\tafter a tab \\ backslash — ünïcødé 日本語 😀 {\"json\": [1]}";
--- perl_check
my ($t, $ev, $msgs) = session_of($_[2]);
my $su = session_update($msgs);
is($su->{session}{audio}{output}{voice}, 'marin', 'voice_voice');
is($su->{session}{instructions},
   u("Say \"hi\" to O'Brien.\nLine two\tafter a tab \\ backslash \xe2\x80\x94 "
     . "\xc3\xbcn\xc3\xafc\xc3\xb8d\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e "
     . "\xf0\x9f\x98\x80 {\"json\": [1]}"),
   'instructions, character for character');
is_deeply([sort keys %{ $su->{session} }],
          [qw(audio instructions output_modalities type)], 'session keys');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 3: voice_instructions_file: the whole file, control characters escaped
--- stream_config
voice_instructions_file $TEST_NGINX_INSTRUCTIONS;
--- perl_check
my ($t, $ev, $msgs) = session_of($_[2]);
my $su = session_update($msgs);
ok(!exists $su->{unparsed}, 'session.update is valid JSON');
is($su->{session}{instructions}, u(INSTRUCTIONS_FILE_TEXT),
   'instructions are the file, byte for byte');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 4: an instructions file that is not UTF-8 is refused at start
A Latin-1 file ("Caf\xe9") would go out in an invalid text frame, which
OpenAI (and the fake, RFC 6455 8.1) answers by closing the session: nginx
refuses the configuration instead, naming the directive.
--- stream_config
voice_instructions_file $TEST_NGINX_LATIN1;
--- must_die
--- error_log
"voice_instructions" is not valid UTF-8



=== TEST 5: voice_turn_detection semantic_vad eagerness=low
--- stream_config
voice_turn_detection semantic_vad eagerness=low;
--- perl_check
my ($t, $ev, $msgs) = session_of($_[2]);
my $su = session_update($msgs);
is_deeply($su->{session}{audio}{input},
          { format => { type => 'audio/pcmu' },
            turn_detection => { type => 'semantic_vad', eagerness => 'low' } },
          'audio.input with semantic_vad, eagerness low')
    or diag explain $su->{session}{audio};
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 6: voice_turn_detection server_vad threshold, silence and prefix padding, as numbers
--- stream_config
voice_turn_detection server_vad threshold=0.6 silence_duration_ms=700 prefix_padding_ms=250;
--- perl_check
my ($t, $ev, $msgs) = session_of($_[2]);
my $su = session_update($msgs);
my $td = $su->{session}{audio}{input}{turn_detection};
is_deeply([sort keys %$td],
          [qw(prefix_padding_ms silence_duration_ms threshold type)], 'keys');
is($td->{type}, 'server_vad', 'type');
ok(JSON::PP->new->allow_nonref->encode($td->{threshold}) eq '0.6', 'threshold is the number 0.6');
ok(JSON::PP->new->allow_nonref->encode($td->{silence_duration_ms}) eq '700',
   'silence_duration_ms is the number 700');
ok(JSON::PP->new->allow_nonref->encode($td->{prefix_padding_ms}) eq '250',
   'prefix_padding_ms is the number 250');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 7: MCP servers: headers from env:, file: and literal, allowed_tools, require_approval never; the API key from env:
--- env
VOICE_TEST_MCP_TOKEN=Bearer mcp-env-SECRET-3
VOICE_TEST_OPENAI_KEY=sk-from-env-SECRET-1
--- stream_config
voice_openai_api_key env:VOICE_TEST_OPENAI_KEY;
voice_mcp_server label=todoist url=https://mcp.example.com/mcp
                 "header=Authorization: env:VOICE_TEST_MCP_TOKEN"
                 "header=X-Trace: literal-SECRET-5"
                 allowed_tools=add_task,list_tasks;
voice_mcp_server label=zapier url=https://zapier.example.com/api/mcp
                 "header=Authorization: file:$TEST_NGINX_MCP_FILE";
voice_mcp_server label=plain url=http://plain.example.com/mcp;
--- perl_check
# BUG: every header name arrives as NUL bytes ("Authorization" -> 13 x
# "\0", "X-Trace" -> 7 x "\0"): ngx_voice_set_mcp_server() wipes the whole
# "header=Name: value" argument with ngx_explicit_memzero() while
# h->name still points into it, and session.update is built later, at
# merge time.  (The values, copied by ngx_voice_secret_load, survive.)
my ($t, $ev, $msgs) = session_of($_[2]);
my ($c) = oa_event($ev, 'connect');
is($c->{headers}{authorization}, 'Bearer sk-from-env-SECRET-1', 'API key from env:');
my $su = session_update($msgs);
is_deeply($su->{session}{tools}, [
    { type => 'mcp', server_label => 'todoist',
      server_url => 'https://mcp.example.com/mcp',
      headers => { Authorization => 'Bearer mcp-env-SECRET-3',
                   'X-Trace' => 'literal-SECRET-5' },
      allowed_tools => ['add_task', 'list_tasks'],
      require_approval => 'never' },
    { type => 'mcp', server_label => 'zapier',
      server_url => 'https://zapier.example.com/api/mcp',
      headers => { Authorization => 'Bearer mcp-file-SECRET-4' },
      require_approval => 'never' },
    { type => 'mcp', server_label => 'plain',
      server_url => 'http://plain.example.com/mcp',
      require_approval => 'never' },
], 'tools, in order, exactly') or diag explain $su->{session}{tools};
is_deeply([find_key($su, 'temperature')], [], 'no temperature');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log eval
[qr/\[error\]/, qr/\[warn\]/, qr/SECRET/]



=== TEST 8: the API key from file: (its first line)
--- stream_config
voice_openai_api_key file:$TEST_NGINX_KEY_FILE;
--- perl_check
my ($t, $ev, $msgs) = session_of($_[2]);
my ($c) = oa_event($ev, 'connect');
is($c->{headers}{authorization}, 'Bearer sk-from-file-SECRET-2', 'API key from file:');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log eval
[qr/\[error\]/, qr/\[warn\]/, qr/SECRET/]



=== TEST 9: secrets never reach the error log, debug level, nor nginx's stderr
A whole call with audio both ways, a greeting, DTMF and an OpenAI error
event, with a literal API key and MCP header values.
--- stream_config
voice_openai_api_key sk-literal-SECRET-0;
voice_greeting "Say hello.";
voice_mcp_server label=todoist url=https://mcp.example.com/mcp
                 "header=Authorization: Bearer mcp-literal-SECRET-6";
--- twilio_script
hello
media 5
ctl {"deltas": {"n": 2}}
wait mark 2
dtmf 1
ctl {"send": {"type": "error", "error": {"type": "invalid_request_error", "code": "x", "message": "y"}}}
media 5
stop
wait_close 3000
--- perl_check
my ($t, $ev, $msgs) = session_of($_[2]);
my ($c) = oa_event($ev, 'connect');
is($c->{headers}{authorization}, 'Bearer sk-literal-SECRET-0', 'the key was used');
my $su = session_update($msgs);
# (by value: the header's name is the subject of TEST 7)
is_deeply([values %{ $su->{session}{tools}[0]{headers} }], ['Bearer mcp-literal-SECRET-6'],
          'the header was sent');
my $log = error_log_since_start();
cmp_ok(scalar(() = $log =~ /\[debug\]/g), '>', 100, 'the log is at debug level');
my @hits = grep { /SECRET/ } split /\n/, $log . stderr_since_start();
ok(!@hits, 'no secret in the error log or stderr') or diag $hits[0];
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log eval
[qr/\[error\]/, qr/SECRET/]



=== TEST 10: greeting on: item and response.create right after session.update, before the queued audio
session.created comes 300 ms late, so the caller's first audio is queued.
--- openai_query: &created_delay_ms=300
--- stream_config
voice_greeting "Greet the caller with 'Hey, what\'s up?' and \"smile\".";
--- twilio_script
hello
media 5
sleep 500
ctl {"deltas": {"n": 1}}
wait mark
stop
wait_close 3000
--- perl_check
my ($t, $ev, $msgs) = session_of($_[2]);
my @types = map { $_->{type} } @$msgs;
is_deeply([@types[0 .. 2]], ['session.update', 'conversation.item.create', 'response.create'],
          'session.update, the greeting item, response.create, first')
    or diag explain \@types;
is_deeply([@types[3 .. $#types]], [('input_audio_buffer.append') x 5],
          'then the queued audio, and nothing else');
is_deeply($msgs->[1], {
    type => 'conversation.item.create',
    item => { type => 'message', role => 'user',
              content => [{ type => 'input_text',
                            text => q{Greet the caller with 'Hey, what's up?' and "smile".} }] },
}, 'the greeting item, exactly') or diag explain $msgs->[1];
is_deeply($msgs->[2], { type => 'response.create' }, 'response.create');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 11: session.update waits for start (OpenAI is connected in parallel)
start comes 700 ms after the upgrade (2.5 s under memcheck, whose TLS
handshake on a loaded machine can take longer than 700 ms); the OpenAI
leg is open and session.created in long before.
--- stream_config
voice_greeting "Hello.";
--- twilio_script eval
"connected\nsleep " . ($ENV{TEST_NGINX_USE_VALGRIND} ? 2500 : 700) . "\nstart\n" . <<'S'
ctl {"deltas": {"n": 1}}
wait mark
stop
wait_close 3000
S
--- perl_check
my ($t, $ev, $msgs) = session_of($_[2]);
my ($start) = grep { ($_->{msg}{event} // '') eq 'start' } @{ $t->{sent} };
my ($c) = oa_event($ev, 'connect');
my ($created) = grep { $_->{ev} eq 'sent' && $_->{msg}{type} eq 'session.created' } @$ev;
my @m = grep { $_->{ev} eq 'message' } @$ev;
cmp_ok($c->{t}, '<', $start->{t}, 'OpenAI was connected before start');
cmp_ok($created->{t}, '<', $start->{t}, 'session.created was in before start');
cmp_ok($m[0]{t}, '>=', $start->{t}, 'OpenAI got nothing before start');
is($m[0]{msg}{type}, 'session.update', 'then session.update');
cmp_ok($m[0]{t} - $start->{t}, '<', 200, 'right after start');
--- error_log eval
[qr/voice: session ready \d+ms after the upgrade/,
 qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/]
--- no_error_log
[error]
[warn]



=== TEST 12: no start within voice_start_timeout: 1008, and OpenAI was told nothing
--- stream_config
voice_greeting "Hello.";
voice_start_timeout 1s;
--- twilio_script
connected
media 3
wait_close 3000
--- perl_check
my ($t, $ev, $msgs) = session_of($_[2]);
is($t->{close}{code}, 1008, 'Twilio side closed with 1008');
my $after = $t->{close}{t} - $t->{sent}[0]{t};
ok($after > 800 && $after < 2000, "after voice_start_timeout ($after ms)");
ok(scalar(oa_event($ev, 'connect')), 'OpenAI was connected');
is(scalar(@$msgs), 0, 'but got no message at all') or diag explain $msgs;
ok(scalar(oa_event($ev, 'close')), 'and was closed');
--- error_log eval
[qr/\[info\] .*voice: no Twilio start within voice_start_timeout/,
 qr/voice: call ended, CallSid CA\w+, .*Twilio close 1008/]
--- no_error_log
[error]
[warn]



=== TEST 13: an unknown voice: a warning at start, sent as configured
--- stream_config
voice_voice nova;
--- perl_check
my ($t, $ev, $msgs) = session_of($_[2]);
is(session_update($msgs)->{session}{audio}{output}{voice}, 'nova', 'voice as configured');
--- error_log eval
[qr/\[warn\] .*"voice_voice" "nova" is not a known Realtime voice/,
 qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/]
--- no_error_log
[error]



=== TEST 14: one session.update and one greeting per call, whatever is repeated
A second session.created from OpenAI and a second start from Twilio.
--- stream_config
voice_greeting "Hello.";
--- twilio_script
hello
ctl [{"send": {"type": "session.created", "event_id": "evt_sc2", "session": {"type": "realtime"}}}, {"deltas": {"n": 1}}]
wait mark
start
ctl {"deltas": {"n": 1}}
wait mark
stop
wait_close 3000
--- perl_check
my ($t, $ev, $msgs) = session_of($_[2]);
my @types = grep { $_ ne 'input_audio_buffer.append' } map { $_->{type} } @$msgs;
is_deeply(\@types, ['session.update', 'conversation.item.create', 'response.create'],
          'once each') or diag explain \@types;
is(scalar(tw_recv($t, 'media')), 2, 'the call went on');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]
