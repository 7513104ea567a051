# Text a peer chose never makes a line of its own in the error log (issue
# 8, defect 2).  Every place where peer text can reach a log line gets one
# forged newline: "\nFORGED [alert] x" with a quote (and, where the peer can
# send one, a byte that is not UTF-8).  A place that logs the text must
# show it escaped (\x0a, \x22, \xff) inside its own line; a place that does
# not log it must not either.  In no case may a line start with "FORGED",
# or a line carry invalid UTF-8.
#
# The places (grep src/ for ngx_log_error/ngx_log_debug with %V/%s, and
# the "log-safe" markers util/check-style checks):
#   Twilio webhook: CallSid (logged only in Twilio's exact shape), From
#   call action webhook: DialCallStatus          (escaped)
#   Twilio: close reason (escaped), start fields (streamSid, callSid,
#     accountSid, mediaFormat, tracks, customParameters), stop fields,
#     an unknown event type, a DTMF digit, a mark name
#   OpenAI: close reason (escaped), error event code and message (escaped),
#     MCP approval request id (escaped), function call name (escaped), an
#     unknown event type, a response status, the status line of a refused
#     handshake
#
# The module on branch main already escapes these (since 6a8f3c5); built
# from 6a8f3c5^, TEST 9 fails as the issue describes: the approval id's
# newline starts a line "FORGED [alert] x" of its own (TEST 3, 7 and 8
# fail there too: the close reasons and error texts were logged raw).
#
# The escaped text has "[alert]" in it, so the blocks name "alert" in an
# error_log pattern, which turns off the harness's own [alert] check; each
# block checks instead that no line has the alert, crit or emerg level.
use Test::Voice;
use Test::VoiceCall;
use Encode ();

voice_setup();

# --- helpers (package main: perl_check code calls them) ----------------------

sub FORGE ()   { qq{\nFORGED [alert] x"} }
sub ESCAPED () { '\x0aFORGED [alert] x\x22' }

# A script line making the fake OpenAI send these texts as they are.
sub ctl_send {
    return 'ctl ' . JSON::PP->new->ascii->canonical->encode([map { { send => $_ } } @_]);
}

sub json_str { JSON::PP->new->ascii->allow_nonref->encode($_[0]) }

# The block's error.log, checked for forged lines: none starts with
# "FORGED", none has the alert, crit or emerg level, all are UTF-8; and
# each pattern of @want matches a line.
sub forged_ok {
    my ($what, @want) = @_;
    my @lines = split /\n/, error_log_since_start();
    my @forged = grep { /^FORGED/ } @lines;
    is(scalar @forged, 0, "$what: no line starts with FORGED") or diag($forged[0]);
    my @levels = grep { m{^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(?:alert|crit|emerg)\]} } @lines;
    is(scalar @levels, 0, "$what: no [alert], [crit] or [emerg] line") or diag($levels[0]);
    my @bad = grep { !eval { Encode::decode('UTF-8', my $c = $_, Encode::FB_CROAK); 1 } } @lines;
    is(scalar @bad, 0, "$what: every line is UTF-8") or diag($bad[0]);
    # (nginx's debug lines may go on over several lines: a response header)
    my @stray = grep { !m{^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[} and /FORGED/ } @lines;
    is(scalar @stray, 0, "$what: FORGED is in no line that goes on an entry")
        or diag($stray[0]);
    for my $re (@want) {
        my @hit = grep { $_ =~ $re } @lines;
        is(scalar @hit, 1, "$what: one line matches $re");
    }
}

# The end of a module's line: the text nginx adds after it.
sub EOL () { qr/(?: while [A-Za-z ]+)?, client: / }

# A signed webhook (or call action) POST of these form parameters.
sub signed_post {
    my ($path, $body, %o) = @_;
    return http_post($path, $body, headers => [
        'Host' => 'voice.example.com',
        'Content-Type' => 'application/x-www-form-urlencoded',
        'X-Twilio-Signature' => $o{sig}
            // sign_twilio(undef, "https://voice.example.com$path", $body)]);
}

sub form_escape {
    my ($s) = @_;
    $s =~ s/([^A-Za-z0-9_.~-])/sprintf '%%%02X', ord $1/ge;
    return $s;
}

run_tests();

__DATA__

=== TEST 1: webhook: a CallSid with a newline is logged as "-", From never
--- config
location = /incoming-call { voice_incoming_call; }
location = /allow { voice_allow_callers +15550000000; voice_incoming_call; }
--- perl_check
my $sid = form_escape('CA0123456789abcdef0123456789abcdef' . FORGE);
my $from = form_escape('+1555' . FORGE);
my $body = "CallSid=$sid&From=$from";
my $r = signed_post('/incoming-call', $body);
is($r->{status}, 200, 'a signed webhook with it: 200');
$r = signed_post('/incoming-call', $body, sig => 'x' x 28);
is($r->{status}, 403, 'a wrongly signed one: 403');
$r = signed_post('/allow', $body);
like($r->{body}, qr/<Reject\/>/, 'a caller not allowed: Reject');
forged_ok('webhook',
    qr/\[info\] .*voice: incoming call -, stream token minted/,
    qr/\[warn\] .*voice: webhook X-Twilio-Signature does not match, call -,/,
    qr/\[warn\] .*voice: caller is not in voice_allow_callers, rejecting call -,/);
--- no_error_log
FORGED



=== TEST 2: call action: DialCallStatus is escaped, a byte that is not UTF-8 too
--- config
location = /call-action { voice_call_action; }
location = /dev-action { voice_signature off; voice_call_action; }
--- perl_check
my $sid = 'CA0123456789abcdef0123456789abcdef';
my $r = signed_post('/call-action', "CallSid=$sid&DialCallStatus=" . form_escape('busy' . FORGE));
is($r->{status}, 200, 'signed: 200');
unlike($r->{body}, qr/<Dial/, 'no Dial');
$r = http_post('/dev-action', "CallSid=$sid&DialCallStatus=busy%FF%0AFORGED%20%5Balert%5D%20x%22%5C",
               headers => ['Content-Type' => 'application/x-www-form-urlencoded']);
is($r->{status}, 200, 'unsigned (voice_signature off), with %FF: 200');
forged_ok('call action',
    qr/\[info\] .*voice: transfer of call \Q$sid\E ended: "busy\Q${\ ESCAPED}\E"${\ EOL}/,
    qr/\[info\] .*voice: transfer of call \Q$sid\E ended: "busy\\xff\\x0aFORGED \[alert\] x\\x22\\x5c"${\ EOL}/);
--- error_log eval
qr/\\x0aFORGED \[alert\] x\\x22/



=== TEST 3: Twilio's close reason is escaped
--- twilio_script eval
["setup",
 { close => 1000, reason_b64 => MIME::Base64::encode_base64(
       Encode::encode('UTF-8', 'bye' . FORGE . "\\ \x{e9}t\x{e9}"), '') },
 { wait_close => 3000 }]
--- expect_twilio_close: 1000 by client
--- expect_openai_close: 1000
--- perl_check
forged_ok('Twilio close reason',
    qr/\[info\] .*voice: Twilio closed the WebSocket with 1000 "bye\Q${\ ESCAPED}\E\\x5c \x{c3}\x{a9}t\x{c3}\x{a9}"${\ EOL}/);
--- error_log eval
qr/\\x0aFORGED \[alert\] x\\x22/



=== TEST 4: a Twilio close reason that is not UTF-8 is refused, never logged
--- twilio_call
engine: raw
--- twilio_script
setup
frame close payload=code:1000."bye\xff\nFORGED [alert] x"
wait_close 3000
--- expect_twilio_close: 1007 by server
--- perl_check
forged_ok('Twilio close reason, not UTF-8',
    qr/\[info\] .*voice: Twilio sent a bad WebSocket frame: invalid UTF-8 in a close reason${\ EOL}/);
--- no_error_log
FORGED



=== TEST 5: Twilio start fields: a forged streamSid, callSid or mediaFormat ends the call; the others are never logged
--- timeout: 30
--- perl_check
my @cases = (
    ['streamSid', { stream_sid => 'MZ' . FORGE },
     qr/\[info\] .*voice: Twilio start has no valid streamSid${\ EOL}/, qr/, StreamSid , .*reason "invalid streamSid"/],
    ['callSid', { call_sid => 'CA' . FORGE },
     qr/\[warn\] .*voice: Twilio start callSid does not match the call the token was minted for${\ EOL}/,
     qr/reason "callSid mismatch"/],
    ['mediaFormat', { media_format => { encoding => 'audio/x-mulaw' . FORGE, sampleRate => 8000, channels => 1 } },
     qr/\[info\] .*voice: Twilio start has an unsupported mediaFormat${\ EOL}/,
     qr/reason "unsupported mediaFormat"/],
    ['accountSid, tracks, customParameters',
     { start => { accountSid => 'AC' . FORGE, tracks => ['inbound' . FORGE],
                  customParameters => { 'k' . FORGE => 'v' . FORGE } } }, undef,
     qr/reason "Twilio stop"/],
);
for my $c (@cases) {
    my ($what, $start, $line, $reason) = @$c;
    my @end = $line ? ({ wait_close => 3000 })
                    : ({ sleep => 300 }, { send => 'stop' }, { wait_close => 3000 });
    my $t = twilio_call(steps => [{ send => 'connected' }, { send => 'start', %$start }, @end]);
    my $ended = wait_call_ended($t->{call_sid}) // '';
    is($t->{close}{code}, $line ? 1008 : 1000, "$what: Twilio close " . ($line ? '1008' : '1000'))
        or diag explain $t->{close};
    like($ended, $reason, "$what: the call ended, saying why");
    forged_ok("start $what", $line ? ($line) : ());
}
--- no_error_log
FORGED



=== TEST 6: Twilio events: an unknown type, a DTMF digit, a mark name, stop fields: never logged
--- twilio_script eval
["setup",
 { send => 'raw', text => '{"event":' . json_str('x' . FORGE) . ',"streamSid":"$STREAM_SID"}' },
 { send => 'raw', text => '{"event":"dtmf","streamSid":"$STREAM_SID","dtmf":{"track":"inbound_track","digit":' . json_str('5' . FORGE) . '}}' },
 { send => 'raw', text => '{"event":"mark","streamSid":"$STREAM_SID","mark":{"name":' . json_str('m' . FORGE) . '}}' },
 { send => 'raw', text => '{"event":' . json_str('media' . FORGE) . ',"streamSid":"$STREAM_SID","media":{"payload":"AAAA"}}' },
 { sleep => 200 },
 { send => 'raw', text => '{"event":"stop","streamSid":"$STREAM_SID","stop":{"callSid":' . json_str('CA' . FORGE) . ',"accountSid":' . json_str('AC' . FORGE) . '}}' },
 { wait_close => 3000 }]
--- expect_twilio_close: 1000 by server
--- expect_openai_close: 1000
--- perl_check
forged_ok('Twilio events', qr/voice: call ended, .*reason "Twilio stop"/);
--- no_error_log
FORGED



=== TEST 7: OpenAI's close reason is escaped
--- twilio_script eval
"setup\n" . 'ctl ' . JSON::PP->new->ascii->encode([{ close => 1000, reason => 'bye' . FORGE . "\\ \x{e9}" }]) . "\nwait_close 3000\n"
--- expect_twilio_close: 1011 by server
--- expect_openai_close: 1000
--- perl_check
forged_ok('OpenAI close reason',
    qr/\[info\] .*voice: OpenAI closed the WebSocket with 1000 "bye\Q${\ ESCAPED}\E\\x5c \x{c3}\x{a9}"${\ EOL}/);
--- error_log eval
qr/\\x0aFORGED \[alert\] x\\x22/



=== TEST 8: OpenAI's error event: code and message escaped, a long message cut with "..."
--- twilio_script eval
"setup\n" . ctl_send(
    '{"type":"error","event_id":"evt_1","error":{"type":"invalid_request_error","code":'
    . json_str('c' . FORGE) . ',"message":' . json_str('m' . FORGE . "\\") . '}}',
    '{"type":"error","error":{"code":"lone","message":"a\ud800b\udc00c\u0000d"}}',
    '{"type":"error","error":{"code":"long","message":' . json_str(('y' x 300) . FORGE) . '}}')
. "\nsleep 300\nstop\nwait_close 3000\n"
--- expect_twilio_close: 1000 by server
--- expect_openai_close: 1000
--- perl_check
forged_ok('OpenAI error',
    qr/\[warn\] .*voice: OpenAI error "c\Q${\ ESCAPED}\E": m\Q${\ ESCAPED}\E\\x5c${\ EOL}/,
    # yajl turns a lone \udc00 into bytes that are not UTF-8: escaped
    qr/\[warn\] .*voice: OpenAI error "lone": a.b\\xed\\xb0\\x80c\\x00d${\ EOL}/,
    qr/\[warn\] .*voice: OpenAI error "long": y{200,}\.\.\.${\ EOL}/);
--- error_log eval
qr/\\x0aFORGED \[alert\] x\\x22/



=== TEST 9: an MCP approval request id is escaped in the log, and sent back exactly
# The id is JSON-decoded, so "\n" in it is a real newline: the approval-
# denied line used to log it raw.  The denial that goes back to OpenAI
# carries the id as it came (JSON-escaped there).
--- twilio_script eval
"setup\n" . ctl_send(
    '{"type":"conversation.item.done","item":{"type":"mcp_approval_request","id":'
    . json_str('mcpr_1' . FORGE . "\\\x{e9}") . ',"server_label":"x","name":"tool","arguments":"{}"}}')
. "\nsleep 300\nstop\nwait_close 3000\n"
--- expect_twilio_close: 1000 by server
--- expect_openai_close: 1000
--- perl_check
my ($ev, $conn) = @{ $_[2] }{qw(ev conn)};
forged_ok('MCP approval id',
    qr/\[warn\] .*voice: denied MCP approval request "mcpr_1\Q${\ ESCAPED}\E\\x5c\x{c3}\x{a9}": require_approval is "never"${\ EOL}/);
my ($denial) = grep { ($_->{item}{type} // '') eq 'mcp_approval_response' }
               oa_msgs($ev, $conn, 'conversation.item.create');
ok($denial, 'OpenAI got the denial');
is($denial->{item}{approval_request_id}, 'mcpr_1' . FORGE . "\\\x{e9}",
   'naming the request by its exact id');
ok($denial->{item}{approve} eq '0' || !$denial->{item}{approve}, 'approve false');
--- error_log eval
qr/\\x0aFORGED \[alert\] x\\x22/



=== TEST 10: a function call's name is escaped
--- twilio_script eval
"setup\n" . ctl_send(
    '{"type":"response.output_item.done","response_id":"resp_1","item":{"type":"function_call","id":"item_f","call_id":"call_1","name":'
    . json_str('tool' . FORGE) . ',"arguments":"{}"}}',
    '{"type":"response.done","response":{"id":"resp_1","status":"completed"}}')
. "\nsleep 300\nstop\nwait_close 3000\n"
--- expect_twilio_close: 1000 by server
--- expect_openai_close: 1000
--- perl_check
my ($ev, $conn) = @{ $_[2] }{qw(ev conn)};
forged_ok('function call name',
    qr/\[info\] .*voice: the model's tool\Q${\ ESCAPED}\E call refused: there is no such tool${\ EOL}/);
my ($out) = grep { ($_->{item}{type} // '') eq 'function_call_output' }
            oa_msgs($ev, $conn, 'conversation.item.create');
is($out->{item}{call_id}, 'call_1', 'the refusal went back to OpenAI') if $out;
--- error_log eval
qr/\\x0aFORGED \[alert\] x\\x22/



=== TEST 11: OpenAI events never logged: an unknown type, a response status, ids
--- twilio_script eval
"setup\n" . ctl_send(
    '{"type":' . json_str('x' . FORGE) . ',"event_id":' . json_str('e' . FORGE) . '}',
    '{"type":"response.created","response":{"id":' . json_str('r' . FORGE) . ',"status":"in_progress"}}',
    '{"type":"response.done","response":{"id":' . json_str('r' . FORGE) . ',"status":' . json_str('s' . FORGE) . '}}',
    '{"type":"session.updated","session":{"id":' . json_str('sess' . FORGE) . '}}',
    '{"type":"response.output_audio_transcript.done","item_id":"i","transcript":' . json_str('t' . FORGE) . '}')
. "\nsleep 300\nstop\nwait_close 3000\n"
--- expect_twilio_close: 1000 by server
--- expect_openai_close: 1000
--- perl_check
forged_ok('OpenAI events', qr/voice: call ended, .*reason "Twilio stop"/);
--- no_error_log
FORGED



=== TEST 12: the status line of a refused OpenAI handshake is not logged, its number is
# The fake answers "HTTP/1.1 401 x\r\nFORGED [alert] x Refused".
--- openai_query: &status=401%20x%0D%0AFORGED%20%5Balert%5D%20x
--- twilio_script
hello
wait_close 5000
--- expect_twilio_close: 1011 by server
--- perl_check
forged_ok('refused handshake',
    qr/\[error\] .*voice: OpenAI refused the WebSocket handshake with status 401${\ EOL}/);
--- no_error_log
FORGED
