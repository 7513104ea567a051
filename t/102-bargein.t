# Barge-in, marks, DTMF and the OpenAI events the relay acts on, between
# the Twilio driver (t/lib/twilio-call.js, which echoes marks as told) and
# the fake OpenAI (t/lib/fake-openai.js, scripted in-band with ctl steps).
#
# Playback accounting (PROTOCOL.md 6.5): audio sent per item = bytes / 8
# ms; a mark echoed by Twilio advances audio played.  On speech_started
# with audio unplayed: Twilio gets clear, OpenAI a truncate of the playing
# item at min(sent, played + 50); late deltas of the interrupted response
# are dropped.  With everything played: neither.
#
# Every block runs with the call defaults of voice_setup() (see
# t/lib/Test/VoiceCall.pm); its call is a script (--- twilio_script).
use Test::Voice;
use FindBin ();

require "$FindBin::Bin/lib/voice-call.pl";

voice_setup();

# --- this file's words in --- twilio_script --------------------------------
#
#   speech_started          OpenAI says the caller started speaking
#   deltas NxBYTES ITEM RESP[, NxBYTES ITEM RESP ...]
#                           one ctl: OpenAI sends those audio deltas
add_block_preprocessor(sub {
    my $block = shift;
    my $script = $block->twilio_script // return;
    $script =~ s{^speech_started$}{ctl {"send": {"type": "input_audio_buffer.speech_started", "event_id": "evt_ss", "item_id": "item_user", "audio_start_ms": 1000}}}mg;
    $script =~ s{^deltas (.*)$}{
        'ctl [' . join(', ', map {
            my ($n, $bytes, $item, $resp) = /^(\d+)x(\d+) (\S+) (\S+)$/
                or die "bad deltas: $_\n";
            qq({"deltas": {"n": $n, "bytes": $bytes, "item_id": "$item", )
            . qq("response_id": "$resp"}})
        } split /\s*,\s*/, $1) . ']'
    }mge;
    $block->set_value(twilio_script => $script);
});

# --- helpers (package main: perl_check code calls them) ----------------------

sub truncates {
    my ($ev) = @_;
    return oa_msgs($ev, undef, 'conversation.item.truncate');
}

# The Twilio side's received messages after the first clear.
sub after_clear {
    my ($t) = @_;
    my @m = tw_recv($t);
    shift @m while @m and ($m[0]{event} // '') ne 'clear';
    shift @m;
    return @m;
}

run_tests();

__DATA__

=== TEST 1: barge-in: clear, truncate at min(sent, played + 50), late deltas dropped, marks of cleared audio ignored
Item A: 3 deltas of 1600 bytes (200 ms each); Twilio echoes the first mark
only; sent 600 ms, played 200 ms: audio_end_ms = min(600, 250) = 250.
Then late deltas of A's response (dropped) and item B: 2 deltas of 800
bytes, none echoed; Twilio now echoes A's two cleared marks (to be
ignored) and the caller speaks again: B is truncated at min(200, 0 + 50)
= 50.  Then late deltas of B's response (dropped) and item C (played).
--- twilio_call
echo_marks: 1
--- twilio_script
hello
deltas 3x1600 item_A resp_A
wait mark 3
speech_started
wait clear
echo_marks off
# A's late deltas (dropped), then B's (played)
deltas 2x160 item_A resp_A, 2x800 item_B resp_B
wait mark 2
sleep 200
# A's cleared marks come back now
echo_pending 2
speech_started
wait clear
# and B's
echo_pending all
# B's late deltas (dropped), then C's (played)
deltas 1x160 item_B resp_B, 1x160 item_C resp_C
wait mark
sleep 200
stop
wait_close 3000
--- perl_check
my ($t, $ev) = @{ $_[2] }{qw(t ev)};
my @clear = tw_recv($t, 'clear');
is(scalar @clear, 2, 'a clear per interruption');
is_deeply($clear[0], { event => 'clear', streamSid => $t->{stream_sid} },
          'clear, exactly');
my @tr = truncates($ev);
is_deeply(\@tr, [{ type => 'conversation.item.truncate', item_id => 'item_A',
                   content_index => 0, audio_end_ms => 250 },
                 { type => 'conversation.item.truncate', item_id => 'item_B',
                   content_index => 0, audio_end_ms => 50 }],
          'item A truncated at 250 ms, then item B at 50 ms') or diag explain \@tr;
my @new = map { $_->{delta} }
          grep { $_->{response_id} eq 'resp_B' && $_->{item_id} eq 'item_B' }
          oa_sent($ev, undef, 'response.output_audio.delta');
my @c = map { $_->{delta} } grep { $_->{response_id} eq 'resp_C' }
        oa_sent($ev, undef, 'response.output_audio.delta');
my @played = map { $_->{media}{payload} } grep { $_->{event} eq 'media' } after_clear($t);
is_deeply(\@played, [@new[0, 1], @c],
          'after the first clear: B\'s first two deltas, then C; no late delta');
my @marks = map { $_->{mark}{name} } tw_recv($t, 'mark');
is(scalar @marks, 6, 'a mark per media');
my %seen;
ok(!grep({ $seen{$_}++ } @marks), 'mark names are unique') or diag "@marks";
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*interruptions 2, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 2: speech_started with every mark echoed, or before any audio: no clear, no truncate
--- twilio_script
hello
# nothing sent yet
speech_started
deltas 3x1600 item_A resp_A
# all echoed at once
wait mark 3
speech_started
# still relayed
deltas 1x160 item_B resp_B
wait mark 1
stop
wait_close 3000
--- expect_twilio
clear: 0
media: 4
--- perl_check
is(scalar(truncates($_[2]{ev})), 0, 'no truncate');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*interruptions 0, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 3: marks across items: A fully played, B partly: truncate B only
A: 2 deltas of 800 bytes (100 ms); B: 3 of 1600 (200 ms).  Twilio echoes
A's two marks and B's first: B sent 600, played 200: 250.
--- twilio_call
echo_marks: 3
--- twilio_script
hello
deltas 2x800 item_A resp_A, 3x1600 item_B resp_B
wait mark 5
speech_started
wait clear
stop
wait_close 3000
--- perl_check
is_deeply([truncates($_[2]{ev})],
          [{ type => 'conversation.item.truncate', item_id => 'item_B',
             content_index => 0, audio_end_ms => 250 }],
          'one truncate, of item B at 250 ms') or diag explain [truncates($_[2]{ev})];
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*interruptions 1, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 4: audio_end_ms is what was sent when less than played + 50: 20
One 160-byte delta (20 ms), no echo: min(20, 0 + 50) = 20.
--- twilio_call
echo_marks: 0
--- twilio_script
hello
deltas 1x160 item_1 resp_1
wait mark 1
speech_started
wait clear
stop
wait_close 3000
--- perl_check
my @tr = truncates($_[2]{ev});
is(scalar @tr, 1, 'one truncate (20)');
is($tr[0]{audio_end_ms}, 20, 'audio_end_ms 20');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*interruptions 1, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 5: played advances with each echo: 450
Three 1600-byte deltas, two echoed: min(600, 400 + 50) = 450.
--- twilio_call
echo_marks: 2
--- twilio_script
hello
deltas 3x1600 item_2 resp_2
wait mark 3
speech_started
wait clear
stop
wait_close 3000
--- perl_check
my @tr = truncates($_[2]{ev});
is(scalar @tr, 1, 'one truncate (450)');
is($tr[0]{audio_end_ms}, 450, 'audio_end_ms 450');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*interruptions 1, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 6: nothing echoed: played + 50, though more was sent: 50
A 1-byte delta then 7999 bytes, none echoed: min(1000, 50) = 50.
--- twilio_call
echo_marks: off
--- twilio_script
hello
deltas 1x1 item_3 resp_3, 1x7999 item_3 resp_3
wait mark 2
speech_started
wait clear
stop
wait_close 3000
--- perl_check
my @tr = truncates($_[2]{ev});
is(scalar @tr, 1, 'one truncate (50)');
is($tr[0]{audio_end_ms}, 50, 'audio_end_ms 50');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*interruptions 1, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 7: DTMF: a user text item, then response.create at once when no response is in progress
--- twilio_script
hello
deltas 1x160 item_A resp_A
wait mark
dtmf 5
sleep 300
stop
wait_close 3000
--- expect_openai
session.update
CTL
item:The caller pressed 5.
response.create
--- perl_check
my $ev = $_[2]{ev};
my ($item) = oa_msgs($ev, undef, 'conversation.item.create');
is_deeply($item, { type => 'conversation.item.create',
                   item => { type => 'message', role => 'user',
                             content => [{ type => 'input_text',
                                           text => 'The caller pressed 5.' }] } },
          'the item, exactly');
is_deeply([oa_msgs($ev, undef, 'response.create')], [{ type => 'response.create' }],
          'response.create, exactly');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 8: DTMF during a response waits for its response.done; a response.create sent counts as in progress
--- twilio_script
hello
ctl [{"send": {"type": "response.created", "event_id": "evt_rc", "response": {"id": "resp_1", "object": "realtime.response", "status": "in_progress", "output": []}}}, {"deltas": {"n": 1, "bytes": 160, "item_id": "item_A", "response_id": "resp_1"}}]
# response.created is in
wait mark
# waits for resp_1
dtmf 7
sleep 300
# response.done -> response.create
ctl {"send": {"type": "response.done", "event_id": "evt_rd", "response": {"id": "resp_1", "object": "realtime.response", "status": "completed", "output": []}}}
sleep 300
# that response is done too
ctl {"send": {"type": "response.done", "event_id": "evt_rd", "response": {"id": "resp_1", "object": "realtime.response", "status": "completed", "output": []}}}
sleep 300
# -> response.create at once
dtmf #
# waits for that response
dtmf *
sleep 300
# response.done -> response.create
ctl {"send": {"type": "response.done", "event_id": "evt_rd", "response": {"id": "resp_1", "object": "realtime.response", "status": "completed", "output": []}}}
sleep 300
stop
wait_close 3000
--- expect_openai
session.update
CTL
item:The caller pressed 7.
CTL
response.create
CTL
item:The caller pressed #.
response.create
item:The caller pressed *.
CTL
response.create
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 9: voice_dtmf off: digits are ignored
--- stream_config
voice_dtmf off;
--- twilio_script
hello
deltas 1x160 item_A resp_A
wait mark
dtmf 5
dtmf #
sleep 300
stop
wait_close 3000
--- expect_twilio_close: 1000
--- expect_openai
session.update
CTL
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 10: an OpenAI error event: a [warn] line with its code and message, the call goes on
--- twilio_script
hello
ctl [{"send": {"type": "error", "event_id": "evt_e1", "error": {"type": "invalid_request_error", "code": "invalid_value", "message": "Audio content of 13600ms is already shorter than 55960ms", "param": null, "event_id": "evt_client_7"}}}, {"send": {"type": "error", "event_id": "evt_e2", "error": {"type": "server_error", "code": null, "message": "The server had an error", "param": null, "event_id": null}}}, {"deltas": {"n": 2, "bytes": 160, "item_id": "item_A", "response_id": "resp_A"}}]
wait mark 2
media 3
stop
wait_close 3000
--- expect_twilio_close: 1000
--- expect_twilio
media: 2
--- perl_check
is(scalar(oa_msgs_noctl($_[2]{ev}, undef, 'input_audio_buffer.append')), 3,
   'audio still relayed to OpenAI');
--- error_log eval
[qr/\[warn\] .*voice: OpenAI error "invalid_value": Audio content of 13600ms is already shorter than 55960ms/,
 qr/\[warn\] .*voice: OpenAI error "": The server had an error/,
 qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/]
--- no_error_log
[error]



=== TEST 11: an mcp_approval_request is denied (require_approval is "never"), with a [warn]
--- stream_config
voice_mcp_server label=todoist url=https://mcp.example.com/mcp;
--- twilio_script
hello
ctl [{"send": {"type": "response.output_item.done", "event_id": "evt_oid", "response_id": "resp_1", "output_index": 0, "item": {"type": "mcp_approval_request", "id": "mcpr_abc123", "server_label": "todoist", "name": "add_task", "arguments": "{\"content\":\"buy milk\"}"}}}, {"deltas": {"n": 1, "bytes": 160, "item_id": "item_A", "response_id": "resp_1"}}]
wait mark
sleep 200
stop
wait_close 3000
--- expect_twilio_close: 1000
--- perl_check
my @items = grep { ($_->{item}{type} // '') eq 'mcp_approval_response' }
            oa_msgs($_[2]{ev}, undef, 'conversation.item.create');
is(scalar @items, 1, 'one approval response');
my $it = $items[0]{item} // {};
is($it->{approval_request_id}, 'mcpr_abc123', 'for the request');
ok(defined $it->{approve} && !$it->{approve} && JSON::PP::is_bool($it->{approve}),
   'approve: false');
like($it->{id} // '', qr/^\S+$/, 'with an item id');
--- error_log eval
[qr/\[warn\] .*voice: denied MCP approval request "mcpr_abc123"/,
 qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/]
--- no_error_log
[error]



=== TEST 12: one denial per approval request, though conversation.item.done follows response.output_item.done
The GA server finalizes an output item with both events.  (Until
ngx_voice_realtime_deny_approval() remembered the last id denied, both
were taken for the request: two mcp_approval_response items for one
request.)
--- stream_config
voice_mcp_server label=todoist url=https://mcp.example.com/mcp;
--- twilio_script
hello
ctl [{"send": {"type": "response.output_item.done", "event_id": "evt_1", "response_id": "resp_1", "output_index": 0, "item": {"type": "mcp_approval_request", "id": "mcpr_twice", "server_label": "todoist", "name": "add_task", "arguments": "{}"}}}, {"send": {"type": "conversation.item.done", "event_id": "evt_2", "previous_item_id": null, "item": {"type": "mcp_approval_request", "id": "mcpr_twice", "server_label": "todoist", "name": "add_task", "arguments": "{}"}}}, {"deltas": {"n": 1, "bytes": 160, "item_id": "item_A", "response_id": "resp_1"}}]
wait mark
sleep 200
stop
wait_close 3000
--- perl_check
my @items = grep { ($_->{item}{type} // '') eq 'mcp_approval_response' }
            oa_msgs($_[2]{ev}, undef, 'conversation.item.create');
is(scalar @items, 1, 'one approval response for one request') or diag explain \@items;
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]



=== TEST 13: a digit pressed before the session is set up is not lost
OpenAI's session.created comes 500 ms late; the caller presses 3 at once:
the digit is sent after session.update, like the caller's audio of the
same moment.
--- openai_query: &created_delay_ms=500
--- twilio_script
hello
dtmf 3
deltas 1x160 item_A resp_A
wait mark
sleep 300
stop
wait_close 3000
--- perl_check
my @l = openai_labels($_[2]{ev});
is($l[0], 'session.update', 'session.update first');
my ($i) = grep { $l[$_] eq 'item:The caller pressed 3.' } 0 .. $#l;
ok(defined $i, 'the digit is sent after session.update') or diag explain \@l;
ok(defined $i && grep({ $_ eq 'response.create' } @l[$i .. $#l]),
   'then response.create');
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]



=== TEST 14: audio OpenAI sends before session.updated is not played
Until session.updated the session may still be in its default format
(PCM16): such audio is noise on a phone line.  session.updated comes
800 ms late; item A's two deltas come before it and are dropped, item B's
after it is relayed.
--- openai_query: &updated_delay_ms=800
--- twilio_script
hello
deltas 2x160 item_A resp_A
sleep 1200
deltas 1x160 item_B resp_B
wait mark
stop
wait_close 3000
--- expect_twilio
media: 1
mark: 1
--- error_log eval
qr/voice: call ended, CallSid CA\w+, .*reason "Twilio stop"/
--- no_error_log
[error]
[warn]
