# The call-action webhook: `location = /call-action { voice_call_action; }`.
#
# The webhook's TwiML puts <Connect action="<voice_public_url>/call-action">
# when voice_call_action_url is set; Twilio requests that URL (signed like
# every webhook) when the stream ends, and runs the TwiML it gets:
#
#   the model hung up             <Hangup/>
#   the model transferred (LABEL) [voice_transfer_say] <Dial action=same
#                                 [timeLimit]> <Number>|<Sip> of exactly
#                                 LABEL's configured destination
#   that <Dial> ended             completed: <Hangup/>; else the fallback
#   anything else (OpenAI failed, voice_fallback_say, <Hangup/>
#   no record, an unknown call)
#
# The record is in the token zone, so any worker answers, the same way
# each time within the ttl.  Calls are whole calls through nginx (the fake
# OpenAI's tool_call ctl, see t/130-agent.t); every signature is made by
# the `twilio` npm package.
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
voice_transfer sales +15551234567;
voice_transfer "a human" "sip:agent@pbx.example.com;transport=tls";
voice_call_action_url /call-action;
voice_transfer_say "Connecting you to a person. Please hold & wait.";
voice_transfer_time_limit 10m;
voice_fallback_say "Sorry, we could not connect you.";
HTTP

voice_setup();

# Every block with the call defaults gets the action location too.
add_block_preprocessor(sub {
    my $block = shift;
    my $config = Test::Voice::value($block, 'config') // return;
    return if $config =~ /voice_call_action;/;
    $block->set_value(config => $config . <<'CONF');
location = /call-action {
    voice_call_action;
    add_header X-Pid $pid always;
}
CONF
});

# --- this file's words in --- twilio_script --------------------------------
#
#   tool NAME ARGS          one ctl: OpenAI calls NAME with ARGS (the rest
#                           of the line) in a completed response
add_block_preprocessor(sub {
    my $block = shift;
    my $script = $block->twilio_script // return;
    $script =~ s{^tool (\S+) (.*)$}{
        'ctl ' . JSON::PP->new->canonical->encode({ tool_call => {
            name => $1, arguments => $2, status => 'completed',
            call_id => 'call_1', item_id => 'item_fc1',
            response_id => 'resp_fc1' } })
    }mge;
    $block->set_value(twilio_script => $script);
});

# --- helpers (package main: perl_check code calls them) ----------------------

sub form_escape {
    my ($s) = @_;
    $s =~ s/([^A-Za-z0-9_.~-])/sprintf '%%%02X', ord $1/ge;
    return $s;
}

# Twilio's request of the action URL for call $sid, as Twilio signs it;
# %o: params (more or undef to drop), signature (sent as is), sign_url,
# path.
sub action {
    my ($sid, %o) = @_;
    my %p = (AccountSid => 'AC' . ('0' x 32), ApiVersion => '2010-04-01',
             CallSid => $sid, CallStatus => 'in-progress',
             Direction => 'inbound', From => '+15551234567',
             To => '+15557654321', %{ $o{params} // {} });
    delete $p{$_} for grep { !defined $p{$_} } keys %p;
    my $body = join '&', map { "$_=" . form_escape($p{$_}) } sort keys %p;
    my @h = ('Content-Type: application/x-www-form-urlencoded');
    push @h, "X-Twilio-Signature: $o{signature}" if defined $o{signature};
    return http_post($o{path} // '/call-action', $body, headers => \@h,
                     exists $o{signature} ? ()
                     : (twilio_sign => $o{sign_url}
                                       // 'https://voice.example.com/call-action'));
}

# The follow-up of a transfer's <Dial>, with its DialCallStatus.
sub dialed {
    my ($sid, $status) = @_;
    return action($sid, params => {
        DialCallStatus => $status, DialCallSid => 'CA' . ('d' x 32),
        DialCallDuration => $status eq 'completed' ? '42' : undef });
}

sub twiml_ok {
    my ($r, $want, $name) = @_;
    is($r->{status}, 200, "$name: 200");
    is($r->{headers}{'content-type'}, 'text/xml', "$name: text/xml");
    is($r->{body}, $want, "$name: the TwiML, byte for byte");
}

sub FALLBACK () {
    '<Response><Say>Sorry, we could not connect you.</Say><Hangup/></Response>'
}

sub HANGUP () { '<Response><Hangup/></Response>' }

run_tests();

__DATA__

=== TEST 1: the webhook's TwiML: <Connect action="voice_public_url + voice_call_action_url">
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like: ^<Response><Connect action="https://voice\.example\.com/call-action"><Stream url="wss://voice\.example\.com/media-stream/[A-Za-z0-9_-]{43}"/></Connect><Say>Sorry, we could not connect you\.</Say></Response>$
--- no_error_log
[warn]
[error]



=== TEST 2: the action URL is XML-escaped in the attribute; without voice_hangup/voice_transfer it is still put
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
voice_call_action_url /call-action/a&b'c;
--- config
location = /incoming-call { voice_incoming_call; }
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like: ^<Response><Connect action="https://voice\.example\.com/call-action/a&amp;b&apos;c"><Stream url="wss://voice\.example\.com/media-stream/[A-Za-z0-9_-]{43}"/></Connect></Response>$
--- no_error_log
[warn]
[error]



=== TEST 3: no voice_call_action_url: a plain <Connect>
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
--- request
POST /incoming-call
CallSid=CA0123456789abcdef0123456789abcdef&From=%2B15551234567
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- twilio_sign: https://voice.example.com/incoming-call
--- error_code: 200
--- response_body_like: ^<Response><Connect><Stream url="wss://voice\.example\.com/media-stream/[A-Za-z0-9_-]{43}"/></Connect></Response>$
--- no_error_log
[warn]
[error]



=== TEST 4: after end_call: <Hangup/>, the same bytes when Twilio asks again
The call's own TwiML carried the action; the action request is signed
over it.
--- twilio_script
setup
tool end_call {}
wait_close 3000
--- expect_twilio_close: 1000 by server
--- perl_check
my $t = $_[2]{t};
like($t->{twiml}, qr{^<Response><Connect action="https://voice\.example\.com/call-action"><Stream }, 'the call\'s TwiML has the action');
my @r = map { action($t->{call_sid}) } 1 .. 3;
twiml_ok($r[0], HANGUP, 'the action');
is_deeply([map { $_->{body} } @r[1, 2]], [HANGUP, HANGUP], 'asked again: the same');
--- error_log eval
[qr/\[info\] .*voice: call action for call CA\w{32}: hangup, client: /]
--- no_error_log
[error]
[warn]



=== TEST 5: after transfer_call: the transfer Say, then <Dial> to exactly the label's number, with timeLimit and an action back here; asked again: the same bytes
--- twilio_script
setup
tool transfer_call {"destination":"sales"}
wait_close 3000
--- expect_twilio_close: 1000 by server
--- perl_check
my $sid = $_[2]{t}{call_sid};
my $want = '<Response><Say>Connecting you to a person. Please hold &amp; wait.</Say>'
         . '<Dial action="https://voice.example.com/call-action" timeLimit="600">'
         . '<Number>+15551234567</Number></Dial></Response>';
twiml_ok(action($sid), $want, 'the action');
my @again = map { action($sid)->{body} } 1 .. 2;
is_deeply(\@again, [$want, $want], 'asked again: the same, byte for byte');
--- error_log eval
qr/\[info\] .*voice: call action for call CA\w{32}: transfer to "sales", client: /
--- no_error_log
[error]
[warn]



=== TEST 6: the <Dial> ended: no-answer, busy, failed, canceled: the fallback Say, then <Hangup/>; completed: <Hangup/>
--- twilio_script
setup
tool transfer_call {"destination":"sales"}
wait_close 3000
--- expect_twilio_close: 1000 by server
--- perl_check
my $sid = $_[2]{t}{call_sid};
twiml_ok(dialed($sid, $_), FALLBACK, "DialCallStatus=$_") for qw(no-answer busy failed canceled);
twiml_ok(dialed($sid, 'completed'), HANGUP, 'DialCallStatus=completed');
like(action($sid)->{body}, qr{<Dial }, 'the record is still there: the action without DialCallStatus is the Dial again');
--- error_log eval
[qr/\[info\] .*voice: transfer of call CA\w{32} ended: "no-answer", client: /,
 qr/\[info\] .*voice: transfer of call CA\w{32} ended: "completed", client: /]
--- no_error_log
[error]
[warn]



=== TEST 7: a transfer to a sip: label, with no transfer Say and no time limit configured: <Sip>, exactly
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
voice_transfer sales +15551234567;
voice_transfer "a human" "sip:agent@pbx.example.com;transport=tls";
voice_call_action_url /call-action;
--- twilio_script
setup
tool transfer_call {"destination":"a human"}
wait_close 3000
--- expect_twilio_close: 1000 by server
--- perl_check
my $sid = $_[2]{t}{call_sid};
twiml_ok(action($sid),
         '<Response><Dial action="https://voice.example.com/call-action">'
         . '<Sip>sip:agent@pbx.example.com;transport=tls</Sip></Dial></Response>',
         'the action');
twiml_ok(dialed($sid, 'busy'), HANGUP, 'no voice_fallback_say: a failed Dial gets <Hangup/> alone');
--- error_log eval
qr/\[info\] .*voice: call action for call CA\w{32}: transfer to "a human", client: /
--- no_error_log
[error]
[warn]



=== TEST 8: the stream ended for another reason (OpenAI refused the session): the fallback Say, then <Hangup/>
--- openai_query: &status=401
--- twilio_script
hello
wait_close 5000
--- expect_twilio_close: 1011 by server
--- perl_check
twiml_ok(action($_[2]{t}{call_sid}), FALLBACK, 'the action');
--- error_log eval
[qr/\[info\] .*voice: call action for call CA\w{32}: no outcome recorded, the fallback, client: /,
 qr/\[error\] .*401/]
--- no_error_log
[warn]



=== TEST 9: the caller hung up (Twilio stop): the fallback too
--- twilio_script
setup
stop
wait_close 3000
--- expect_twilio_close: 1000 by server
--- perl_check
twiml_ok(action($_[2]{t}{call_sid}), FALLBACK, 'the action');
--- no_error_log
[error]
[warn]



=== TEST 10: an unknown CallSid gets the fallback; a request without CallSid 400
--- config
location = /call-action { voice_call_action; }
--- perl_check
twiml_ok(action('CA' . ('7' x 32)), FALLBACK, 'unknown call');
is(action(undef)->{status}, 400, 'no CallSid: 400');
--- error_log eval
qr/\[info\] .*voice: call action for call CA7{32}: no outcome recorded, the fallback, client: /
--- no_error_log
[error]
[warn]



=== TEST 11: a forged action request gets 403: no signature, a wrong one, one made for another URL, or with another token
--- twilio_script
setup
tool transfer_call {"destination":"sales"}
wait_close 3000
--- expect_twilio_close: 1000 by server
--- perl_check
my $sid = $_[2]{t}{call_sid};
my %r = (
    none => action($sid, signature => undef),
    wrong => action($sid, signature => 'AAAAAAAAAAAAAAAAAAAAAAAAAAA='),
    webhook_url => action($sid, sign_url => 'https://voice.example.com/incoming-call'),
);
{
    local $ENV{TEST_NGINX_TWILIO_TOKEN} = 'another-token';
    $r{other_token} = action($sid);
}
for (sort keys %r) {
    is($r{$_}{status}, 403, "$_: 403");
    unlike($r{$_}{body} // '', qr/Dial|Number|5551234567/, "$_: no Dial in the answer");
}
like(action($sid)->{body}, qr{<Number>\+15551234567</Number>}, 'the genuine one still gets the Dial');
--- error_log eval
[qr/\[warn\] .*voice: webhook request has no X-Twilio-Signature, call CA\w{32}, client: .*request: "POST \/call-action /,
 qr/\[warn\] .*voice: webhook X-Twilio-Signature does not match, call CA\w{32}, client: .*request: "POST \/call-action /]
--- no_error_log
[error]



=== TEST 12: the record lives the zone's ttl: after it, the fallback
--- http_config
voice_token_zone tokens:1m ttl=2s;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
voice_hangup on;
voice_call_action_url /call-action;
voice_fallback_say "Sorry, we could not connect you.";
--- twilio_script
setup
tool end_call {}
wait_close 3000
--- expect_twilio_close: 1000 by server
--- perl_check
my $sid = $_[2]{t}{call_sid};
twiml_ok(action($sid), HANGUP, 'within the ttl');
Time::HiRes::sleep(2.5);
twiml_ok(action($sid), FALLBACK, 'after it');
--- no_error_log
[error]
[warn]



=== TEST 13: a call that lasts longer than the ttl still leaves its record, for the ttl after its end
The token was consumed at the upgrade, 3 s before the model hangs up.
--- http_config
voice_token_zone tokens:1m ttl=1s;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
voice_hangup on;
voice_call_action_url /call-action;
voice_fallback_say "Sorry, we could not connect you.";
--- twilio_script
setup
sleep 3000
tool end_call {}
wait_close 3000
--- expect_twilio_close: 1000 by server
--- perl_check
twiml_ok(action($_[2]{t}{call_sid}), HANGUP, 'the action');
--- no_error_log
[error]
[warn]



=== TEST 14: a label the action location does not configure fails nginx -t
The stream location offers "ghost"; the action location, whose
configuration decides the destination, has no such label: the model
would be offered a transfer that can never be dialled (t/005 has the
other cases of the check across the agent's locations).
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
voice_call_action_url /call-action;
voice_fallback_say "Sorry, we could not connect you.";
--- stream_config
voice_transfer ghost +15550001111;
--- config_test
--- must_die
--- error_log eval
qr/\[emerg\] .*voice_transfer/



=== TEST 15: the action location takes POST only
--- config
location = /call-action { voice_call_action; }
--- request
GET /call-action
--- error_code: 405
--- response_headers
Allow: POST
--- no_error_log
[error]



=== TEST 16: two workers: the worker that did not run the call answers its action, the same way
The call runs in one worker (its "call ended" line names it); action
requests go to either worker (reuseport) until the other one answered.
--- workers: 2
--- master_on
--- config
listen 127.0.0.1:$TEST_NGINX_SERVER_PORT reuseport;
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime&ctl=1;
    voice_openai_api_key sk-test-key;
    voice_ssl_trusted_certificate $TEST_NGINX_CA;
}
location = /call-action {
    voice_call_action;
    add_header X-Pid $pid always;
}
--- twilio_script
setup
tool transfer_call {"destination":"sales"}
wait_close 3000
--- expect_twilio_close: 1000 by server
--- perl_check
my $sid = $_[2]{t}{call_sid};
my $line = wait_call_ended($sid);
my ($call_pid) = ($line // '') =~ /\[info\] (\d+)#/;
ok($call_pid, "the call ran in worker $call_pid");
my $want = '<Response><Say>Connecting you to a person. Please hold &amp; wait.</Say>'
         . '<Dial action="https://voice.example.com/call-action" timeLimit="600">'
         . '<Number>+15551234567</Number></Dial></Response>';
my (%by, %bodies);
for (1 .. 200) {
    my $r = action($sid);
    my $pid = $r->{headers}{'x-pid'} // 'none';
    $by{$pid}++;
    $bodies{$r->{body} // ''}++;
    last if keys %by >= 2 and $by{$call_pid};
}
ok(grep({ $_ ne $call_pid and $_ ne 'none' } keys %by),
   'another worker answered') or diag explain \%by;
is_deeply([keys %bodies], [$want], 'every worker: the same Dial') or diag explain \%bodies;
--- no_error_log
[error]
[warn]
