# Webhook floods (issue 8): nginx's own limit_req in front of the call
# webhook, as nginx.conf.example and conf/ngx_voice.conf set it up.  The
# blocks include the shipped conf/ngx_voice.conf itself and take the
# http-level lines (limit_req_zone, and the real_ip ones of TEST 2) from
# nginx.conf.example, so what is tested is what a user copies.
#
# A flood of unsigned POST /incoming-call from one client (127.0.0.2: the
# client socket is bound to it; Linux's loopback answers any 127/8
# address) gets the module's 403 for the first requests (1 + burst), then
# nginx's 503 before the module runs, while signed calls from another
# client (127.0.0.1) at the same time all get their TwiML.  Behind a proxy
# (Fly's Fly-Client-IP header, trusted only from the proxy's address) the
# limit is per real client, and a client that is not the proxy cannot
# choose its key with the header.
use Test::Voice;
use Cwd ();
use File::Basename ();
use IO::Socket::INET;
use Time::HiRes ();

my $Root = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/..');
$ENV{TEST_NGINX_VOICE_CONF} = "$Root/conf/ngx_voice.conf";

# --- what the example says ---------------------------------------------------

sub slurp {
    open my $fh, '<', $_[0] or die "$_[0]: $!";
    local $/;
    return scalar <$fh>;
}
my $example = slurp("$Root/nginx.conf.example");
my $shared = slurp($ENV{TEST_NGINX_VOICE_CONF});

# statements of the example, comments left out
(my $code = $example) =~ s/#.*$//mg;
my ($zone_line) = $code =~ /^\s*(limit_req_zone\s[^;]*;)/m
    or die "nginx.conf.example has no limit_req_zone\n";
my @realip = $code =~ /^\s*((?:set_real_ip_from|real_ip_header)\s[^;]*;)/mg;
our ($Rate) = $zone_line =~ /\brate=(\d+)r\/s/ or die "no rate in '$zone_line'\n";
our ($Burst) = $shared =~ /^\s*limit_req\s[^;]*\bburst=(\d+)[^;]*\bnodelay;/m
    or die "conf/ngx_voice.conf: no limit_req ... burst=N nodelay\n";
our $Status = $code =~ /limit_req_status\s+(\d+)/ ? $1 : 503;
our ($RealIpHeader) = map { /real_ip_header\s+(\S+);/ ? $1 : () } @realip;

$ENV{TEST_NGINX_LIMIT_ZONE} = $zone_line;
# the proxy's addresses of the example replaced by the test's proxy
$ENV{TEST_NGINX_REAL_IP} = join "\n", "set_real_ip_from 127.0.0.1;",
    grep { !/set_real_ip_from/ } @realip;

# The test nginx may lack the realip module (the ASan build has only the
# default modules).
our $HasRealIp = `$Test::Voice::Binary -V 2>&1` =~ /--with-http_realip_module/;

block_defaults(http_config => <<'HTTP', config => <<'CONF', env => <<'ENV');
voice_token_zone voice_tokens:1m ttl=60s;
$TEST_NGINX_LIMIT_ZONE
HTTP
voice_public_url https://voice.example.com;
include $TEST_NGINX_VOICE_CONF;
CONF
TWILIO_AUTH_TOKEN=12345
OPENAI_API_KEY=sk-test-key
ENV

# --- helpers (package main, for the perl_check sections) --------------------

# POST /incoming-call from $from (a local address), signed by the twilio
# package when $signed; more headers in @h.  The response hash.
sub webhook_from {
    my ($from, $sid, $signed, @h) = @_;
    my $body = "CallSid=$sid&From=%2B15551234567&To=%2B15557654321";
    my $req = Test::Voice::build_request(method => 'POST',
        uri => '/incoming-call', body => $body,
        headers => ['Content-Type: application/x-www-form-urlencoded', @h],
        $signed ? (twilio_sign => 'https://voice.example.com/incoming-call')
                : ());
    my $sock = IO::Socket::INET->new(LocalAddr => $from,
        PeerAddr => '127.0.0.1', PeerPort => server_port(), Proto => 'tcp',
        Timeout => 10) or return { error => "connect from $from: $!" };
    Test::Voice::write_all($sock, $req);
    my $r = Test::Voice::read_response($sock, 10, 0);
    close $sock;
    return $r;
}

my $n = 0;
sub sid { sprintf 'CA%032x', ++$n + int rand 1e9 }

sub stream_twiml {
    return qr{^<Response><Connect[^>]*><Stream url="wss://voice\.example\.com/media-stream/[A-Za-z0-9_-]{43}"/></Connect>.*</Response>$}s;
}

# A flood of $count unsigned webhooks (from $from, headers from
# $flood_headers->($i)) with a signed call (from $call_from, headers
# @call_headers) after every $every of them.  Returns (\%statuses of the
# flood, [responses of the calls], seconds it took).
sub flood {
    my (%o) = @_;
    my (%st, @calls);
    my $t0 = Time::HiRes::time();
    for my $i (1 .. $o{count}) {
        my $r = webhook_from($o{from}, sid(), 0, $o{flood_headers}->($i));
        $st{$r->{status} // $r->{error} // 'none'}++;
        $st{sample} //= $r->{body} if ($r->{status} // 0) == $Status;
        push @calls, webhook_from($o{call_from}, sid(), 1,
                                  @{ $o{call_headers} // [] })
            if $i % $o{every} == 0;
    }
    return (\%st, \@calls, Time::HiRes::time() - $t0);
}

# Checks of a flood by one client key ($who) while calls went through.
sub flood_ok {
    my ($st, $calls, $secs, $count, $who, $log_client) = @_;
    my $passed = $st->{403} // 0;
    # 1 + burst at once, then $Rate a second (one more for a part second)
    my $most = 1 + $Burst + int($secs * $Rate) + 1;
    ok($passed >= 1 + $Burst && $passed <= $most,
       "$who: $passed of $count reached the webhook (1 + burst $Burst,"
       . " then $Rate/s for " . sprintf('%.1f', $secs) . ' s: at most'
       . " $most)");
    is($st->{$Status}, $count - $passed, "$who: all the others got $Status");
    is(join(',', sort grep { !/^(?:403|$Status|sample)$/ } keys %$st), '',
       "$who: no other answer");
    like($st->{sample} // '', qr{\A(?!.*<Response).*<title>$Status }s,
         "$who: the refusal is nginx's own error page, no TwiML");
    my @bad = grep { ($_->{status} // 0) != 200
                     || ($_->{body} // '') !~ stream_twiml() } @$calls;
    is(scalar @bad, 0, scalar(@$calls) . ' signed calls from another client'
       . ' at the same time all got 200 and a Stream URL')
        or diag explain [map { "$_->{status} $_->{body}" } @bad];
    my $log = error_log_since_start();
    my @limited = $log =~ /^.*\[error\] .*limiting requests, excess: [\d.]+ by zone "voice_webhooks", client: (\S+),.*$/mg;
    is(scalar @limited, $count - $passed, "$who: one [error] line per refused request");
    is(join(',', sort keys %{{ map { $_ => 1 } @limited }}), $log_client,
       "$who: the lines name the client $log_client only");
    my $refused = () = $log =~ /\[warn\] .*voice: webhook request has no X-Twilio-Signature/g;
    is($refused, $passed, "$who: the module saw only the requests limit_req let through");
    my $minted = () = $log =~ /voice: incoming call CA[0-9a-f]{32}, stream token minted/g;
    is($minted, scalar @$calls, 'a token for each signed call, none for the flood');
}

run_tests();

__DATA__

=== TEST 1: unsigned flood from 127.0.0.2; signed calls from 127.0.0.1 go through
400 requests, a signed call after every 40th; then, a second later, the
flooding client is let through again (a rate, not a ban).
--- timeout: 60
--- perl_check
my ($st, $calls, $secs) = flood(count => 400, every => 40, from => '127.0.0.2',
                                flood_headers => sub { () },
                                call_from => '127.0.0.1');
flood_ok($st, $calls, $secs, 400, '127.0.0.2', '127.0.0.2');
Time::HiRes::sleep(1.2);
my $r = webhook_from('127.0.0.2', sid(), 0);
is($r->{status}, 403, 'a second later 127.0.0.2 reaches the webhook again');
my $body = webhook_from('127.0.0.2', sid(), 1);
like($body->{body} // '', stream_twiml(), '... and a signed call from it gets TwiML');
--- no_error_log
[alert]
[crit]



=== TEST 2: behind the proxy (real_ip_header of the example): limited per real client
Requests come from the proxy (127.0.0.1, trusted); the flood is one
client by its header, the calls another.  A client that is not the proxy
(127.0.0.2) cannot spread its flood over many keys with the header.
--- http_config eval
# (without the realip module the block is skipped: nginx must still start)
"voice_token_zone voice_tokens:1m ttl=60s;\n$ENV{TEST_NGINX_LIMIT_ZONE}\n"
. ($main::HasRealIp ? $ENV{TEST_NGINX_REAL_IP} : '')
--- timeout: 60
--- perl_check
SKIP: {
    skip 'the nginx binary has no realip module', 12 unless $main::HasRealIp;
    my $h = $main::RealIpHeader;
    my ($st, $calls, $secs) = flood(count => 300, every => 30, from => '127.0.0.1',
        flood_headers => sub { ("$h: 203.0.113.7") },
        call_from => '127.0.0.1', call_headers => ["$h: 198.51.100.9"]);
    flood_ok($st, $calls, $secs, 300, 'client 203.0.113.7 behind the proxy',
             '203.0.113.7');
    # not the proxy: the header is not trusted, the key is the address
    my $pos = length error_log_since_start();
    my %st2;
    for my $i (1 .. 100) {
        my $r = webhook_from('127.0.0.2', sid(), 0, "$h: 192.0.2.$i");
        $st2{$r->{status} // 'none'}++;
    }
    is(join(',', sort keys %st2), "403,$main::Status", 'it gets 403 or '
       . $main::Status);
    cmp_ok($st2{$main::Status} // 0, '>=', 100 - 1 - $main::Burst - 2,
           'a client that is not the proxy is limited whatever its header says');
    my @clients = substr(error_log_since_start(), $pos)
                  =~ /limiting requests, .* client: (\S+),/g;
    is(join(',', sort keys %{{ map { $_ => 1 } @clients }}), '127.0.0.2',
       'keyed on its address');
}
--- no_error_log
[alert]
[crit]
