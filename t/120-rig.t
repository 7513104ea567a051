# The load rig (bench/) as a test peer: libwebsockets plays Twilio's side
# (signed webhook, signed upgrade, 20 ms frames, marks echoed as the audio
# plays, clear) and OpenAI's (a TLS stand-in that speaks the caller's
# audio back and barges in every second), an implementation independent
# of the module's own WebSocket code.  5 calls for 3 s through nginx: every
# frame comes back to its own call, none is lost, the late deltas of an
# interrupted response are the only ones dropped, and nginx logs one
# "call ended" line per call and nothing at [alert] or worse.
use strict;
use warnings;
use Test::More;
use Cwd ();
use File::Basename ();
use File::Spec ();
use File::Temp ();
use JSON::PP ();

my $root = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/..');

plan skip_all => 'pkg-config libwebsockets not found (util/install-deps test)'
    unless system('pkg-config --exists libwebsockets 2>/dev/null') == 0;

# the nginx and module of this run of the suite (ASan builds included),
# as ordinary processes
local $ENV{BENCH_RT} = 0;
# (absolute: the rig's nginx runs with its own prefix)
local $ENV{NGINX} = File::Spec->rel2abs($ENV{TEST_NGINX_BINARY})
    if $ENV{TEST_NGINX_BINARY};
local $ENV{MODULE} = File::Spec->rel2abs($ENV{TEST_NGINX_MODULE})
    if $ENV{TEST_NGINX_MODULE};

my $out = File::Temp::tempdir('voice-rig-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $t0 = time;
my $line = `$root/bench/run --calls 5 --seconds 3 --floor-seconds 1 --out $out -- --barge-ms 1000 2>$out/run.stderr`;
my $rc = $? >> 8;

is($rc, 0, 'bench/run exits 0') or diag(slurp("$out/run.stderr"));
my $r = eval { JSON::PP::decode_json($line) } // {};
ok(%$r, 'one JSON line') or diag("output: $line");

my @keys = qw(calls seconds frames_sent frames_returned lost
              dropped_by_barge_in added_p50_ms added_p99_ms
              cpu_ms_per_call_s rss_kb_per_call rig_cpu_pct
              rig_send_lag_p99_ms);
is(join(' ', sort keys %$r), join(' ', sort @keys), 'exactly the keys');

is($r->{calls}, 5, '5 calls');
# 5 calls x 3 s x 50 frames a second, give or take the tick's edges
cmp_ok($r->{frames_sent}, '>=', 740, 'frames sent in the window');
cmp_ok($r->{frames_sent}, '<=', 760, 'and no more');
cmp_ok($r->{frames_returned}, '>', 0, 'frames returned');
is($r->{lost}, 0, 'no frame lost');
is($r->{frames_returned} + $r->{dropped_by_barge_in}, $r->{frames_sent},
   'every frame returned or dropped by a barge-in');
cmp_ok($r->{dropped_by_barge_in}, '>', 0, 'barge-ins dropped late deltas');
cmp_ok($r->{cpu_ms_per_call_s}, '>', 0, 'worker CPU measured');

my $d = eval { JSON::PP::decode_json(slurp("$out/detail.json")) } // {};
is($d->{calls_upgraded}, 5, 'the rig upgraded 5 calls');
is($d->{misrouted}, 0, 'no frame came back to another call');
is($d->{errors}, 0, 'no message the rig did not expect');
cmp_ok($d->{clears}, '>', 0, 'clears received');
is($d->{clears}, $d->{truncates}, 'one truncate per clear');
is($d->{openai_legs_open}, 0, 'every OpenAI leg closed');

my $log = slurp("$out/error.log");
my @ended = $log =~ /voice: call ended, CallSid (CA[0-9a-f]{32}),/g;
is(scalar @ended, 5, 'five "call ended" lines');
my @bad = $log =~ /^(.*\[(?:alert|crit|emerg|error)\].*)$/mg;
ok(!@bad, 'no [error] or worse in the log') or diag(join "\n", @bad[0 .. 4]);
cmp_ok(time - $t0, '<=', 30, 'the smoke run is short');

done_testing();

sub slurp {
    my ($f) = @_;
    open my $fh, '<', $f or return '';
    local $/;
    return scalar <$fh>;
}
