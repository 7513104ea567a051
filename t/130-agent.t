# The phone agent: the model ends or transfers the call with its tools
# (voice_hangup, voice_transfer).  The fake OpenAI (t/lib/fake-openai.js)
# streams a whole function-call response as the Realtime API (GA) does
# (ctl action tool_call: response.created, the items, the argument deltas
# and .done, response.output_item.done, response.done with its status);
# the Twilio side (t/lib/twilio-call.js) holds or echoes the marks.
#
#   - session.update: end_call and transfer_call beside the MCP tools,
#     exactly; none when neither directive is set;
#   - a call in a "completed" response: a function_call_output, no
#     response.create, no more caller audio to OpenAI, the last words
#     played out (marks echoed, or their length + 2 s), then 1000 both
#     ways, reason "model hangup" / "model transfer to LABEL";
#   - the same call in a cancelled or incomplete response: nothing;
#   - bad arguments: a function_call_output with an error, then
#     response.create, and the call goes on.
#
# The call-action webhook that follows is t/131-action.t.
use Test::Voice;
use FindBin ();
use JSON::PP ();

require "$FindBin::Bin/lib/voice-call.pl";

# Before voice_setup(): the call defaults leave a block's http_config alone.
block_defaults(http_config => <<'HTTP');
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
voice_hangup on;
voice_transfer sales +15551234567 "the sales team, for new orders";
voice_transfer "a human" "sip:agent@pbx.example.com;transport=tls";
voice_call_action_url /call-action;
log_format voice 'call=$voice_call_sid reason="$voice_close_reason"';
HTTP

voice_setup(locations => "location = /call-action { voice_call_action; }\n");

# --- this file's words in --- twilio_script --------------------------------
#
#   tool NAME STATUS ARGS [audio=NxBYTES] [delay=MS]
#                           one ctl: OpenAI streams a response with a
#                           function call NAME (call_id call_1, item
#                           item_fc1, response resp_fc1) whose arguments
#                           are ARGS (the rest of the line, as sent), in a
#                           response.done of STATUS; audio=NxBYTES: an
#                           assistant audio item (item_bye) before it;
#                           delay: response.done that much later
#   deltas N                one ctl: N audio deltas of 160 bytes, item_more
add_block_preprocessor(sub {
    my $block = shift;
    my $script = $block->twilio_script // return;
    $script =~ s{^tool (\S+) (\S+)((?: \w+=\S+)*) (.*)$}{
        my ($name, $status, $opts, $args) = ($1, $2, $3, $4);
        my %tc = (name => $name, status => $status, arguments => $args,
                  call_id => 'call_1', item_id => 'item_fc1',
                  response_id => 'resp_fc1');
        for (split ' ', $opts) {
            my ($k, $v) = split /=/;
            if ($k eq 'audio') {
                my ($n, $bytes) = $v =~ /^(\d+)x(\d+)$/ or die "bad audio=$v\n";
                $tc{audio_before} = { n => 0 + $n, bytes => 0 + $bytes,
                                      item_id => 'item_bye' };
            } elsif ($k eq 'delay') {
                $tc{done_delay_ms} = 0 + $v;
            } else {
                die "bad tool option $k\n";
            }
        }
        'ctl ' . JSON::PP->new->canonical->encode({ tool_call => \%tc })
    }mge;
    $script =~ s{^deltas (\d+)$}{ctl {"deltas": {"n": $1, "bytes": 160, "item_id": "item_more", "response_id": "resp_more"}}}mg;
    $block->set_value(twilio_script => $script);
});

# --- helpers (package main: perl_check code calls them) ----------------------

# The function_call_output items OpenAI got on the call's connection.
sub outputs {
    my ($ctx) = @_;
    return map { $_->{item} }
           grep { ($_->{item}{type} // '') eq 'function_call_output' }
           oa_msgs($ctx->{ev}, $ctx->{conn}, 'conversation.item.create');
}

# The session.update OpenAI got.
sub session_update_of {
    my ($ctx) = @_;
    return (oa_msgs($ctx->{ev}, $ctx->{conn}, 'session.update'))[0];
}

# The audio OpenAI got (appends, without the driver's control messages).
sub appended {
    my ($ctx) = @_;
    return map { $_->{audio} }
           oa_msgs_noctl($ctx->{ev}, $ctx->{conn}, 'input_audio_buffer.append');
}

# The last $n audio payloads the Twilio side sent.
sub last_sent_audio {
    my ($t, $n) = @_;
    my @a = tw_sent_audio($t);
    return @a[@a - $n .. $#a];
}

# When (ms since the epoch) the Twilio side received its last message of
# event $event, and when it sent its last mark echo.
sub last_received_t {
    my ($t, $event) = @_;
    my @r = grep { ref $_->{msg} eq 'HASH' and ($_->{msg}{event} // '') eq $event }
            @{ $t->{received} };
    return @r ? $r[-1]{t} : undef;
}

sub last_echo_t {
    my ($t) = @_;
    my @e = grep { ($_->{msg}{event} // '') eq 'mark' } @{ $t->{sent} };
    return @e ? $e[-1]{t} : undef;
}

# The error reported to the model, checked as the JSON it must be.
sub refused_ok {
    my ($ctx, $error) = @_;
    my @o = outputs($ctx);
    is(scalar @o, 1, 'one function_call_output') or diag explain \@o;
    is($o[0]{call_id}, 'call_1', 'it answers the call');
    my $out = eval { JSON::PP->new->decode($o[0]{output} // '') };
    is_deeply($out, { error => $error }, 'its output is {"error": ...}, valid JSON')
        or diag "output: " . ($o[0]{output} // 'none');
    my ($msg) = grep { ($_->{item}{type} // '') eq 'function_call_output' }
                oa_msgs($ctx->{ev}, $ctx->{conn}, 'conversation.item.create');
    is_deeply([sort keys %$msg], ['item', 'type'], 'nothing else in the event');
    is_deeply([sort keys %{ $msg->{item} }], ['call_id', 'output', 'type'],
              'nor in its item');
}

# The access log line (log_format voice) of call $sid.
sub access_line {
    my ($sid) = @_;
    for (1 .. 100) {
        my $log = Test::Voice::read_from(servroot() . '/logs/voice.log', 0);
        my @l = grep { /^call=\Q$sid\E / } split /\n/, $log;
        return $l[0] if @l;
        Time::HiRes::sleep(0.05);
    }
    return undef;
}

run_tests();

__DATA__

=== TEST 1: voice_hangup on: session.update has the end_call tool, exactly
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
voice_hangup on;
voice_call_action_url /call-action;
--- twilio_script
setup
stop
wait_close 3000
--- perl_check
my $su = session_update_of($_[2]);
is_deeply($su->{session}{tools}, [
    { type => 'function', name => 'end_call',
      description => 'Ends the phone call. Use it when the caller says '
                     . 'goodbye or asks to end the call, after saying a short goodbye.',
      parameters => { type => 'object', properties => {},
                      additionalProperties => JSON::PP::false } },
], 'one tool, end_call, exactly') or diag explain $su->{session}{tools};
ok(!exists $su->{session}{audio}{input}{transcription},
   'no input transcription without a transcript log');
is_deeply([sort keys %{ $su->{session} }], [qw(audio output_modalities tools type)],
          'nothing else added to the session');
--- expect_twilio_close: 1000 by server
--- no_error_log
[error]
[warn]



=== TEST 2: hangup, two transfers and an MCP server: MCP tools first, then end_call, then transfer_call with the labels only
The model sees the labels ("a human"), never a destination; the
descriptions of the labels that have one.
--- stream_config
voice_mcp_server label=todoist url=https://mcp.example.com/mcp;
--- twilio_script
setup
stop
wait_close 3000
--- perl_check
my $su = session_update_of($_[2]);
my $false = JSON::PP::false;
is_deeply($su->{session}{tools}, [
    { type => 'mcp', server_label => 'todoist',
      server_url => 'https://mcp.example.com/mcp', require_approval => 'never' },
    { type => 'function', name => 'end_call',
      description => 'Ends the phone call. Use it when the caller says '
                     . 'goodbye or asks to end the call, after saying a short goodbye.',
      parameters => { type => 'object', properties => {},
                      additionalProperties => $false } },
    { type => 'function', name => 'transfer_call',
      description => 'Transfers the caller to a person. Use it when the '
                     . 'caller asks for one of the destinations, after telling '
                     . 'them they are being transferred.',
      parameters => {
          type => 'object',
          properties => { destination => {
              type => 'string', enum => ['sales', 'a human'],
              description => 'sales: the sales team, for new orders' } },
          required => ['destination'],
          additionalProperties => $false } },
], 'MCP, end_call, transfer_call, exactly') or diag explain $su->{session}{tools};
my $text = JSON::PP->new->canonical->encode($su);
unlike($text, qr/5551234567|pbx\.example\.com|sip:/, 'no destination in session.update');
--- expect_twilio_close: 1000 by server
--- no_error_log
[error]
[warn]



=== TEST 3: voice_transfer without voice_hangup: transfer_call alone
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
voice_hangup off;
voice_transfer support +442071234567;
voice_call_action_url /call-action;
--- twilio_script
setup
stop
wait_close 3000
--- perl_check
my $su = session_update_of($_[2]);
is_deeply([map { $_->{name} } @{ $su->{session}{tools} }], ['transfer_call'],
          'one tool, transfer_call');
is_deeply($su->{session}{tools}[0]{parameters}{properties},
          { destination => { type => 'string', enum => ['support'] } },
          'one label, no description when none is configured');
--- expect_twilio_close: 1000 by server
--- no_error_log
[error]
[warn]



=== TEST 4: neither directive (an action URL alone, voice_hangup off): no tools at all
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
voice_hangup off;
voice_call_action_url /call-action;
--- twilio_script
setup
stop
wait_close 3000
--- perl_check
my $su = session_update_of($_[2]);
ok($su, 'session.update sent');
ok(!exists $su->{session}{tools}, 'no tools key') or diag explain $su->{session}{tools};
--- expect_twilio_close: 1000 by server
--- no_error_log
[error]
[warn]



=== TEST 5: end_call in a completed response: answered, caller audio stops, the goodbye plays out, then 1000 both ways
The model says goodbye (3 deltas of 200 ms), then calls end_call.  The
Twilio side holds the marks: nothing closes until they are echoed; the
caller's audio sent meanwhile does not reach OpenAI.
--- stream_config
access_log logs/voice.log voice;
--- twilio_call
echo_marks: off
--- twilio_script
setup
media 2
tool end_call completed audio=3x1600 {}
wait mark 3
sync log:\[info\] .*voice: the model ends the call: hangup while
media 3
sleep 500
echo_pending all
wait_close 3000
--- expect_twilio_close: 1000 by server
--- expect_openai_close: 1000
--- expect_twilio
media: 3
mark: 3
clear: 0
--- expect_openai
session.update
CTL
conversation.item.create
--- perl_check
my $ctx = $_[2];
my $t = $ctx->{t};
is_deeply([outputs($ctx)],
          [{ type => 'function_call_output', call_id => 'call_1',
             output => '{"ok":true}' }],
          'function_call_output {"ok":true} for call_1');
my %got = map { $_ => 1 } appended($ctx);
my @sent = tw_sent_audio($t);
my @early = @sent[1, 2];
my @late = last_sent_audio($t, 3);
is(scalar(grep { $got{$_} } @early), 2, 'the audio before the tool call reached OpenAI');
is(scalar(grep { $got{$_} } @late), 0, 'the audio after it did not');
my $echo = last_echo_t($t);
ok($t->{close}{t} >= $echo, 'closed after the last mark was echoed')
    or diag "close $t->{close}{t}, echo $echo";
my $line = access_line($t->{call_sid});
is($line, qq{call=$t->{call_sid} reason="model hangup"}, '$voice_close_reason');
--- error_log eval
[qr/\[info\] .*voice: call ended, CallSid CA\w+, .*Twilio close 1000\/\d+, OpenAI close 1000\/\d+, reason "model hangup"/,
 qr/\[info\] .*voice: the model ends the call: hangup while /]
--- no_error_log
[error]
[warn]



=== TEST 6: end_call with nothing playing: the call ends at once, after the function_call_output
--- twilio_script
setup
tool end_call completed {}
wait_close 3000
--- expect_twilio_close: 1000 by server
--- expect_openai_close: 1000
--- expect_openai
session.update
CTL
conversation.item.create
--- perl_check
my $ctx = $_[2];
is_deeply([outputs($ctx)],
          [{ type => 'function_call_output', call_id => 'call_1',
             output => '{"ok":true}' }], 'answered before the close');
my @ev = grep { ($_->{conn} // 0) == $ctx->{conn} } @{ $ctx->{ev} };
my ($done) = grep { $_->{ev} eq 'sent' and $_->{msg}{type} eq 'response.done' } @ev;
my $ms = $ctx->{t}{close}{t} - $done->{t};
my $scale = $ENV{TEST_NGINX_USE_VALGRIND} ? 3 : 1;
ok($ms < 1500 * $scale, "Twilio closed right after response.done (${ms} ms)");
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "model hangup"/
--- no_error_log
[error]
[warn]



=== TEST 7: the marks are never echoed: the call closes after the unplayed audio + 2 s, not never
400 ms of goodbye unplayed: the close comes about 2.4 s after it was sent.
--- twilio_call
echo_marks: off
--- twilio_script
setup
tool end_call completed audio=2x1600 {}
wait mark 2
wait_close 8000
--- expect_twilio_close: 1000 by server
--- expect_openai_close: 1000
--- perl_check
my $t = $_[2]{t};
my $ms = $t->{close}{t} - last_received_t($t, 'mark');
my $scale = $ENV{TEST_NGINX_USE_VALGRIND} ? 3 : 1;
ok($ms >= 2300 && $ms <= 5000 * $scale, "closed 2.4 s after the last audio (${ms} ms)");
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*Twilio close 1000\/\d+, OpenAI close 1000\/\d+, reason "model hangup"/
--- no_error_log
[error]
[warn]



=== TEST 8: the response.done comes later: until then the call goes on (the arguments' .done acts on nothing)
--- twilio_call
echo_marks: off
--- twilio_script
setup
tool end_call completed audio=1x800 delay=1500 {}
wait mark
media 2
sleep 300
sync log:\[info\] .*voice: the model ends the call: hangup while
media 2
sleep 200
echo_pending all
wait_close 3000
--- expect_twilio_close: 1000 by server
--- expect_openai_close: 1000
--- perl_check
my $ctx = $_[2];
my %got = map { $_ => 1 } appended($ctx);
my @sent = tw_sent_audio($ctx->{t});
is(scalar(grep { $got{$_} } @sent[1, 2]), 2, 'audio before response.done reached OpenAI');
is(scalar(grep { $got{$_} } @sent[3, 4]), 0, 'audio after it did not');
is(scalar(outputs($ctx)), 1, 'one function_call_output');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "model hangup"/
--- no_error_log
[error]
[warn]



=== TEST 9: end_call in a cancelled response (the caller interrupted): nothing happens, the call goes on
--- twilio_script
setup
tool end_call cancelled audio=1x800 {}
wait mark
deltas 1
wait mark
media 3
deltas 1
wait mark
stop
wait_close 3000
--- expect_twilio_close: 1000 by server
--- expect_openai_close: 1000
--- expect_twilio
media: 3
--- expect_openai
session.update
CTL
CTL
CTL
--- perl_check
my $ctx = $_[2];
my %got = map { $_ => 1 } appended($ctx);
is(scalar(grep { $got{$_} } last_sent_audio($ctx->{t}, 3)), 3,
   'the caller\'s audio still goes to OpenAI');
is(scalar(outputs($ctx)), 0, 'no function_call_output');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]
the model ends the call



=== TEST 10: end_call in an incomplete response: nothing happens either
--- twilio_script
setup
tool end_call incomplete audio=1x800 {}
wait mark
deltas 1
wait mark
media 3
deltas 1
wait mark
stop
wait_close 3000
--- expect_twilio_close: 1000 by server
--- expect_openai
session.update
CTL
CTL
CTL
--- perl_check
my $ctx = $_[2];
my %got = map { $_ => 1 } appended($ctx);
is(scalar(grep { $got{$_} } last_sent_audio($ctx->{t}, 3)), 3,
   'the caller\'s audio still goes to OpenAI');
is(scalar(outputs($ctx)), 0, 'no function_call_output');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]
the model ends the call



=== TEST 11: transfer_call to a configured label: answered, then closed like a hang-up, reason "model transfer to sales"
--- stream_config
access_log logs/voice.log voice;
--- twilio_call
echo_marks: off
--- twilio_script
setup
tool transfer_call completed audio=2x800 {"destination":"sales"}
wait mark 2
sync log:\[info\] .*voice: the model ends the call: transfer:sales while
media 2
sleep 300
echo_pending all
wait_close 3000
--- expect_twilio_close: 1000 by server
--- expect_openai_close: 1000
--- expect_openai
session.update
CTL
conversation.item.create
--- perl_check
my $ctx = $_[2];
my $t = $ctx->{t};
is_deeply([outputs($ctx)],
          [{ type => 'function_call_output', call_id => 'call_1',
             output => '{"ok":true}' }], 'answered, no response.create');
my %got = map { $_ => 1 } appended($ctx);
is(scalar(grep { $got{$_} } last_sent_audio($t, 2)), 0, 'no caller audio after it');
ok($t->{close}{t} >= last_echo_t($t), 'closed once the last words played');
my $line = access_line($t->{call_sid});
is($line, qq{call=$t->{call_sid} reason="model transfer to sales"}, '$voice_close_reason');
--- error_log eval
qr/\[info\] .*voice: call ended, CallSid CA\w+, .*Twilio close 1000\/\d+, OpenAI close 1000\/\d+, reason "model transfer to sales"/
--- no_error_log
[error]
[warn]



=== TEST 12: transfer_call to a label with a space, arguments of exactly 1024 bytes
--- twilio_script eval
my $args = '{"destination":"a human","note":"' . ('x' x 989) . '"}';
die length($args) unless length($args) == 1024;
"setup\ntool transfer_call completed $args\nwait_close 3000\n"
--- expect_twilio_close: 1000 by server
--- expect_openai_close: 1000
--- perl_check
is_deeply([map { $_->{output} } outputs($_[2])], ['{"ok":true}'], 'accepted');
--- error_log eval
[qr/\[info\] .*voice: the model ends the call: transfer:a human while/,
 qr/voice: call ended, CallSid CA\w+, .*reason "model transfer to a human"/]
--- no_error_log
[error]
[warn]



=== TEST 13: transfer_call with an unknown label: an error output, response.create, and the call goes on
A destination the model made up (a number) is refused like any unknown
label.
--- twilio_script
setup
tool transfer_call completed {"destination":"+15557654321"}
sync log:\[info\] .*the model's transfer_call call refused
media 2
deltas 1
wait mark
stop
wait_close 3000
--- expect_twilio_close: 1000 by server
--- expect_openai
session.update
CTL
conversation.item.create
response.create
CTL
--- perl_check
refused_ok($_[2], '"destination" is not one of the destinations offered');
my %got = map { $_ => 1 } appended($_[2]);
is(scalar(grep { $got{$_} } last_sent_audio($_[2]{t}, 2)), 2, 'the caller\'s audio still goes to OpenAI');
--- error_log eval
[qr/\[info\] .*voice: the model's transfer_call call refused: "destination" is not one of the destinations offered while /,
 qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/]
--- no_error_log
[error]
[warn]
the model ends the call



=== TEST 14: transfer_call arguments that are not JSON
--- twilio_script
setup
tool transfer_call completed destination=sales
sync log:the model's transfer_call call refused
deltas 1
wait mark
stop
wait_close 3000
--- expect_twilio_close: 1000 by server
--- expect_openai
session.update
CTL
conversation.item.create
response.create
CTL
--- perl_check
refused_ok($_[2], 'the arguments are not a JSON object');
--- error_log eval
[qr/\[info\] .*voice: the model's transfer_call call refused: the arguments are not a JSON object/,
 qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/]
--- no_error_log
[error]
[warn]
the model ends the call



=== TEST 15: transfer_call arguments of 1025 bytes (a valid label in them): too long
--- twilio_script eval
my $args = '{"destination":"a human","note":"' . ('x' x 990) . '"}';
die length($args) unless length($args) == 1025;
<<"S"
setup
tool transfer_call completed $args
sync log:the model's transfer_call call refused
deltas 1
wait mark
stop
wait_close 3000
S
--- expect_twilio_close: 1000 by server
--- expect_openai
session.update
CTL
conversation.item.create
response.create
CTL
--- perl_check
refused_ok($_[2], 'the arguments are too long');
--- error_log eval
[qr/\[info\] .*voice: the model's transfer_call call refused: the arguments are too long/,
 qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/]
--- no_error_log
[error]
[warn]
the model ends the call



=== TEST 16: transfer_call with a destination of the wrong type
--- twilio_script
setup
tool transfer_call completed {"destination":["sales"]}
sync log:the model's transfer_call call refused
deltas 1
wait mark
stop
wait_close 3000
--- expect_twilio_close: 1000 by server
--- expect_openai
session.update
CTL
conversation.item.create
response.create
CTL
--- perl_check
refused_ok($_[2], '"destination" must be a string');
--- error_log eval
[qr/\[info\] .*voice: the model's transfer_call call refused: "destination" must be a string/,
 qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/]
--- no_error_log
[error]
[warn]
the model ends the call



=== TEST 17: end_call whose arguments are a JSON array: refused, the call goes on
--- twilio_script
setup
tool end_call completed []
sync log:the model's end_call call refused
deltas 1
wait mark
stop
wait_close 3000
--- expect_twilio_close: 1000 by server
--- expect_openai
session.update
CTL
conversation.item.create
response.create
CTL
--- perl_check
refused_ok($_[2], 'the arguments are not a JSON object');
--- error_log eval
[qr/\[info\] .*voice: the model's end_call call refused: the arguments are not a JSON object/,
 qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/]
--- no_error_log
[error]
[warn]
the model ends the call



=== TEST 18: a function the session does not have (and transfer_call where no voice_transfer is set): no such tool
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
voice_hangup on;
voice_call_action_url /call-action;
--- twilio_script
setup
tool delete_everything completed {}
sync log:the model's delete_everything call refused
tool transfer_call completed {"destination":"sales"}
sync log:the model's transfer_call call refused
deltas 1
wait mark
stop
wait_close 3000
--- expect_twilio_close: 1000 by server
--- expect_openai
session.update
CTL
conversation.item.create
response.create
CTL
conversation.item.create
response.create
CTL
--- perl_check
my @o = outputs($_[2]);
is_deeply([map { JSON::PP->new->decode($_->{output}) } @o],
          [{ error => 'there is no such tool' }, { error => 'there is no such tool' }],
          'both refused: there is no such tool');
--- error_log eval
[qr/\[info\] .*voice: the model's delete_everything call refused: there is no such tool/,
 qr/\[info\] .*voice: the model's transfer_call call refused: there is no such tool/,
 qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/]
--- no_error_log
[error]
[warn]
the model ends the call



=== TEST 19: a digit pressed during a response whose call is refused: one response.create after it, and the next digit waits for that response
The digit's response.create waits for response.done; the refusal's
response.create then answers both (two would be an OpenAI error), and
counts as in progress: the next digit does not start another.
--- twilio_script
setup
tool transfer_call completed delay=1000 {"destination":"nowhere"}
sleep 300
dtmf 5
sync log:the model's transfer_call call refused
dtmf 7
sleep 300
stop
wait_close 3000
--- expect_twilio_close: 1000 by server
--- expect_openai
session.update
CTL
item:The caller pressed 5.
conversation.item.create
response.create
item:The caller pressed 7.
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 20: a digit pressed during the goodbye after end_call: OpenAI is told nothing more
--- twilio_call
echo_marks: off
--- twilio_script
setup
tool end_call completed audio=2x800 {}
wait mark 2
sync log:the model ends the call: hangup
dtmf 5
sleep 300
echo_pending all
wait_close 3000
--- expect_twilio_close: 1000 by server
--- expect_openai_close: 1000
--- expect_openai
session.update
CTL
conversation.item.create
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "model hangup"/
--- no_error_log
[error]
[warn]



=== TEST 21: a digit pressed during the response that ends the call: no response.create after the function_call_output
The digit's response.create waits for the response to be done, and then
the call is ending: it is not sent.
--- twilio_call
echo_marks: off
--- twilio_script
setup
tool end_call completed audio=1x800 delay=1000 {}
sleep 300
dtmf 5
sync log:the model ends the call: hangup
sleep 300
echo_pending all
wait_close 3000
--- expect_twilio_close: 1000 by server
--- expect_openai_close: 1000
--- expect_openai
session.update
CTL
item:The caller pressed 5.
conversation.item.create
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "model hangup"/
--- no_error_log
[error]
[warn]
