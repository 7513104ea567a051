use Test::Voice;
use Test::VoiceCall;
fake_openai_start();
run_tests();
__DATA__
=== TEST 1: smoke
--- http_config
voice_token_zone tokens:1m;
voice_public_url https://voice.example.com;
voice_twilio_auth_token 12345;
--- config
location = /incoming-call { voice_incoming_call; }
location /media-stream/ {
    voice_media_stream;
    voice_openai_url wss://127.0.0.1:$TEST_NGINX_OPENAI_PORT/v1/realtime?model=gpt-realtime;
    voice_openai_api_key sk-test;
    voice_ssl_trusted_certificate $TEST_NGINX_OPENAI_CA;
    voice_start_timeout 2s;
    voice_idle_timeout 3s;
}
--- perl_check
my $call = open_call();
ok(start_call($call, wait => 1), 'session.update');
$call->{ws}->send_text(media_json('AAAA'));
my $conn = call_conn($call);
ok(fake_wait(sub { grep { $_->{ev} eq 'message' && $_->{conn}==$conn && ($_->{msg}{type}//'') eq 'input_audio_buffer.append' } @_ }), 'append');
$call->{ws}->send_text(stop_json($call->{call_sid}));
my @c = $call->{ws}->recv_close(3);
is($c[0], 1000, 'close');
$call->{ws}->close(1000);
ok($call->{ws}->wait_eof(3), 'eof');
diag wait_call_end($call);
diag explain [fake_conn_events($conn)];
