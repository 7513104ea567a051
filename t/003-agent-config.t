# Configuration of the phone agent (voice_hangup, voice_transfer,
# voice_call_action_url, voice_call_action, voice_transfer_say,
# voice_transfer_time_limit) and of the transcript log: every mistake
# fails `nginx -t` with an [emerg] naming the directive.
#
# One case a block, run as `nginx -t`: --- agent holds the directives
# under test, put at the server level in front of the three locations of
# a call (webhook, media stream, call action); a block with its own
# --- config replaces them.  nginx -t must fail, unless the block says
# --- passes.
use Test::Voice;

Test::Voice::add_block_sections(qw(agent passes));

block_defaults(http_config => <<'HTTP', config_test => '');
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
HTTP

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(must_die => '') unless exists $block->{passes};
    return if exists $block->{config};
    my $agent = Test::Voice::value($block, 'agent') // '';
    $block->set_value(config => $agent . <<'CONF');
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:1/v1/realtime?model=gpt-realtime;
    voice_openai_api_key sk-test-key;
}
location = /call-action { voice_call_action; }
CONF
});

# The [emerg] of a destination voice_transfer refuses.
sub bad_destination {
    my ($dest) = @_;
    return [qr/\[emerg\] .*invalid "voice_transfer" destination "\Q$dest\E": an E\.164 number \(\+15551234567\) or a sip: URI without headers expected in \S+nginx\.conf:\d+/];
}

run_tests();

__DATA__

=== TEST 1: a complete agent configuration passes nginx -t, with the shortest and longest E.164 numbers and sip: URIs
--- agent
voice_hangup on;
voice_transfer sales +15551234567 "the sales team";
voice_transfer short +12;
voice_transfer longest +123456789012345;
voice_transfer "a human" "sip:agent@pbx.example.com;transport=tls";
voice_transfer upper SIP:alice@example.com;
voice_transfer "thirty-two bytes label ........." sip:b@example.com;
voice_call_action_url /call-action;
voice_transfer_say "Connecting you.";
voice_transfer_time_limit 30m;
voice_transcript_log logs/transcript.log;
voice_transcription_model whisper-1;
--- passes
--- no_error_log
[emerg]
[warn]



=== TEST 2: a sip: URI of 255 bytes passes
--- agent eval
"voice_hangup on;\nvoice_call_action_url /call-action;\n"
. 'voice_transfer long sip:' . ('a' x 239) . "\@example.com;\n"
--- passes
--- no_error_log
[emerg]



=== TEST 3: a destination without +
--- agent
voice_call_action_url /call-action;
voice_transfer sales 15551234567;
--- error_log eval: bad_destination('15551234567')



=== TEST 4: an E.164 number starting with 0
--- agent
voice_call_action_url /call-action;
voice_transfer sales +05551234567;
--- error_log eval: bad_destination('+05551234567')



=== TEST 5: an E.164 number of 16 digits
--- agent
voice_call_action_url /call-action;
voice_transfer sales +1234567890123456;
--- error_log eval: bad_destination('+1234567890123456')



=== TEST 6: a number of one digit
--- agent
voice_call_action_url /call-action;
voice_transfer sales +1;
--- error_log eval: bad_destination('+1')



=== TEST 7: a number with dashes
--- agent
voice_call_action_url /call-action;
voice_transfer sales +1555-123-4567;
--- error_log eval: bad_destination('+1555-123-4567')



=== TEST 8: a sip: URI with ?headers
--- agent
voice_call_action_url /call-action;
voice_transfer sales "sip:agent@pbx.example.com?X-Customer=1";
--- error_log eval: bad_destination('sip:agent@pbx.example.com?X-Customer=1')



=== TEST 9: a sip: URI with & (it would need escaping in TwiML: refused)
--- agent
voice_call_action_url /call-action;
voice_transfer sales "sip:a&b@pbx.example.com";
--- error_log eval: bad_destination('sip:a&b@pbx.example.com')



=== TEST 10: a sip: URI with a quote
--- agent
voice_call_action_url /call-action;
voice_transfer sales "sip:agent@pbx.example.com;x=\"y\"";
--- error_log eval: bad_destination('sip:agent@pbx.example.com;x="y"')



=== TEST 11: a sip: URI with a space
--- agent
voice_call_action_url /call-action;
voice_transfer sales "sip:agent @pbx.example.com";
--- error_log eval: bad_destination('sip:agent @pbx.example.com')



=== TEST 12: sip: alone
--- agent
voice_call_action_url /call-action;
voice_transfer sales sip:;
--- error_log eval: bad_destination('sip:')



=== TEST 13: a sip: URI of 256 bytes
--- agent eval
"voice_call_action_url /call-action;\n"
. 'voice_transfer long sip:' . ('a' x 240) . "\@example.com;\n"
--- error_log eval: bad_destination('sip:' . ('a' x 240) . '@example.com')



=== TEST 14: tel: and sips: are not destinations
--- agent
voice_call_action_url /call-action;
voice_transfer sales tel:+15551234567;
--- error_log eval: bad_destination('tel:+15551234567')



=== TEST 15: sips:
--- agent
voice_call_action_url /call-action;
voice_transfer sales sips:agent@pbx.example.com;
--- error_log eval: bad_destination('sips:agent@pbx.example.com')



=== TEST 16: a label of 33 bytes
--- agent
voice_call_action_url /call-action;
voice_transfer "thirty-three bytes label ........" +15551234567;
--- error_log eval
qr/\[emerg\] .*invalid "voice_transfer" label "thirty-three bytes label \.{8}": 1 to 32 bytes expected in /



=== TEST 17: an empty label
--- agent
voice_call_action_url /call-action;
voice_transfer "" +15551234567;
--- error_log eval
qr/\[emerg\] .*invalid "voice_transfer" label "": 1 to 32 bytes expected in /



=== TEST 18: the same label twice
--- agent
voice_call_action_url /call-action;
voice_transfer sales +15551234567;
voice_transfer sales +15557654321;
--- error_log eval
qr/\[emerg\] .*"voice_transfer" label "sales" is duplicate in /



=== TEST 19: a label that is not UTF-8
--- agent eval
"voice_call_action_url /call-action;\nvoice_transfer caf\xe9 +15551234567;\n"
--- error_log eval
qr/\[emerg\] .*"voice_transfer" parameter 1 is not valid UTF-8 in /



=== TEST 20: voice_transfer with a label only
--- agent
voice_call_action_url /call-action;
voice_transfer sales;
--- error_log eval
qr/\[emerg\] .*invalid number of arguments in "voice_transfer" directive in /



=== TEST 21: voice_hangup without voice_call_action_url: nginx -t names it
--- agent
voice_hangup on;
--- error_log eval
qr/\[emerg\] .*"voice_call_action_url" is required by "voice_hangup" and "voice_transfer" in \S+nginx\.conf:\d+/



=== TEST 22: voice_transfer without voice_call_action_url: nginx -t names it
--- agent
voice_transfer sales +15551234567;
--- error_log eval
qr/\[emerg\] .*"voice_call_action_url" is required by "voice_hangup" and "voice_transfer" in \S+nginx\.conf:\d+/



=== TEST 23: voice_hangup off needs no action URL
--- agent
voice_hangup off;
--- passes
--- no_error_log
[emerg]



=== TEST 24: voice_hangup with a value that is not on or off
--- agent
voice_call_action_url /call-action;
voice_hangup yes;
--- error_log eval
qr/\[emerg\] .*invalid value "yes" in "voice_hangup" directive, it must be "on" or "off" in /



=== TEST 25: voice_call_action_url that is not a path
--- agent
voice_call_action_url call-action;
--- error_log eval
qr/\[emerg\] .*invalid "voice_call_action_url" "call-action": a path such as \/call-action expected in /



=== TEST 26: voice_call_action_url as an absolute URL
--- agent
voice_call_action_url https://voice.example.com/call-action;
--- error_log eval
qr/\[emerg\] .*invalid "voice_call_action_url" "https:\/\/voice\.example\.com\/call-action": a path such as \/call-action expected in /



=== TEST 27: voice_call_action_url with a query string
--- agent
voice_call_action_url /call-action?x=1;
--- error_log eval
qr/\[emerg\] .*invalid "voice_call_action_url" "\/call-action\?x=1": a path such as \/call-action expected in /



=== TEST 28: voice_call_action_url with a fragment
--- agent
voice_call_action_url /call-action#x;
--- error_log eval
qr/\[emerg\] .*invalid "voice_call_action_url" "\/call-action#x": a path such as \/call-action expected in /



=== TEST 29: voice_call_action_url with a quote
--- agent
voice_call_action_url "/call-\"action";
--- error_log eval
qr/\[emerg\] .*invalid "voice_call_action_url" "\/call-"action": a path such as \/call-action expected in /



=== TEST 30: voice_call_action_url twice
--- agent
voice_call_action_url /call-action;
voice_call_action_url /other;
--- error_log eval
qr/\[emerg\] .*"voice_call_action_url" directive is duplicate in /



=== TEST 31: voice_call_action outside a location
--- agent
voice_call_action;
--- error_log eval
qr/\[emerg\] .*"voice_call_action" directive is not allowed here in /



=== TEST 32: voice_call_action with an argument
--- config
location = /call-action { voice_call_action on; }
--- error_log eval
qr/\[emerg\] .*invalid number of arguments in "voice_call_action" directive in /



=== TEST 33: voice_call_action and voice_incoming_call in one location
--- config
location = /call-action { voice_call_action; voice_incoming_call; }
--- error_log eval
qr/\[emerg\] .*"voice_incoming_call" directive conflicts with another voice role in the same block in /



=== TEST 34: voice_call_action twice in one location
--- config
location = /call-action { voice_call_action; voice_call_action; }
--- error_log eval
qr/\[emerg\] .*"voice_call_action" directive is duplicate in /



=== TEST 35: voice_call_action and proxy_pass in one location
--- config
location = /call-action { voice_call_action; proxy_pass http://127.0.0.1:1; }
--- error_log eval
qr/\[emerg\] .*"voice_call_action" conflicts with another content handler in location "\/call-action" in /



=== TEST 36: voice_call_action without voice_token_zone
--- http_config
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /call-action { voice_call_action; }
--- error_log eval
qr/\[emerg\] .*"voice_call_action" requires "voice_token_zone" in the http block in \S+nginx\.conf:\d+/



=== TEST 37: voice_call_action without voice_twilio_auth_token
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
--- config
location = /call-action { voice_call_action; }
--- error_log eval
qr/\[emerg\] .*"voice_twilio_auth_token" is required while "voice_signature" is on in \S+nginx\.conf:\d+/



=== TEST 38: voice_transfer_time_limit that is not a time
--- agent
voice_call_action_url /call-action;
voice_transfer_time_limit soon;
--- error_log eval
qr/\[emerg\] .*"voice_transfer_time_limit" directive invalid value in /



=== TEST 39: voice_transcript_log in a directory that does not exist
--- agent
voice_transcript_log /nonexistent-ngx-voice-dir/transcript.log;
--- error_log eval
qr/\[emerg\] .*"voice_transcript_log": cannot open "\/nonexistent-ngx-voice-dir\/transcript\.log" \(2: No such file or directory\) in /



=== TEST 40: voice_transcript_log twice
--- agent
voice_transcript_log logs/a.log;
voice_transcript_log logs/b.log;
--- error_log eval
qr/\[emerg\] .*"voice_transcript_log" directive is duplicate in /



=== TEST 41: voice_transcript_log off twice is duplicate too
--- agent
voice_transcript_log off;
voice_transcript_log off;
--- error_log eval
qr/\[emerg\] .*"voice_transcript_log" directive is duplicate in /
