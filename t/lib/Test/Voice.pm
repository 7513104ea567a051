package Test::Voice;

# A small Test::Nginx::Socket-style harness for the ngx_voice suite, built on
# Debian's Test::Base.  Reference documentation (sections, helpers,
# environment) is the POD at the end of this file.
#
# About `sub name () {`: `use Test::Base -Base` runs Spiffy's source filter
# over this file, which inserts `my $self = shift;` into every `sub name {`.
# The empty "prototype" opts a sub out of that (the filter removes it again),
# so every sub below takes a plain @_ -- the same convention as Test::Nginx.

use Test::Base -Base;

# eval_in_main($code, $label, @args): runs Perl code from a block in package
# main, where `use Test::Voice` put the helpers and Test::More's functions;
# returns what the code returns, with $@ set if it died.  Defined before any
# file-scoped lexical so the code sees nothing of ours but @_ (= @args).
sub eval_in_main () {
    (my $label = $_[1]) =~ tr/"\n/'/;
    local $Test::Voice::EvalSrc =
        sprintf qq{package main;\n#line 1 "%s"\n%s\n}, $label, $_[0];
    splice @_, 0, 2;
    return eval $Test::Voice::EvalSrc;
}

use Carp ();
use Cwd ();
use Digest::SHA ();
use File::Basename ();
use File::Copy ();
use File::Path ();
use File::Spec ();
use IO::Handle;
use IO::Select;
use IO::Socket::INET;
use IPC::Open2 ();
use IPC::Run ();
use JSON::PP ();
use MIME::Base64 ();
use Test::LongString ();
use Time::HiRes ();
use Protocol::WebSocket::Frame;
use Protocol::WebSocket::Handshake::Client;
use Protocol::WebSocket::Request;
# Test::Base passes on only part of Test::More; perl_check code may want these.
use Test::More import => [qw(note explain subtest BAIL_OUT)];

our @EXPORT = qw(
    run_tests workers master_on master_off log_level no_shuffle
    add_block_preprocessor block_defaults
    sign_twilio validate_twilio twilio_token
    http_request http_get http_post ws_connect
    server_port servroot html_dir nginx_pid nginx_reload
    error_log_since_start stderr_since_start
    note explain subtest BAIL_OUT
);

my $Root = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/../../..');

our $Binary = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
our $Module = File::Spec->rel2abs(
    $ENV{TEST_NGINX_MODULE} || "$Root/build/ngx_voice_module.so");
our $ServRoot = File::Spec->rel2abs($ENV{TEST_NGINX_SERVROOT} || do {
    (my $t = File::Basename::basename($0)) =~ s/\.t$//;
    "$Root/t/servroot-$t";
});
our $Port = $ENV{TEST_NGINX_PORT} || pick_port();
our $Node = $ENV{TEST_NGINX_NODE} || 'node';

my ($Workers, $MasterOn, $LogLevel) = (1, undef, 'debug');
my $ParentPid = $$;

# State of the nginx started for the current block.
my $Nginx;                      # IPC::Run harness
my $CurSpec;                    # what its nginx.conf was written from
my $ConfOf = '';                # the block conf/nginx.conf was written for
my ($ErrLogOff, $StderrOff) = (0, 0);   # log sizes when it was started
our $Timeout = 10;              # the block's --- timeout

my %KnownSections = map { $_ => 1 } qw(
    ONLY SKIP LAST
    main_config http_config config no_module env workers master_on master_off
    must_die config_test
    request raw_request raw_request_middle_delay more_headers timeout
    twilio_sign twilio_token twilio_sign_params_empty
    error_code response_headers response_headers_like
    response_body response_body_like
    error_log no_error_log wait perl_check check
);

# Extensions: block preprocessors (add_block_preprocessor), sections
# that a helper module handles (add_block_sections) and what runs them
# (add_block_runner).
my (@Preprocessors, @Runners);

# --- settings called from the .t file ---------------------------------------

sub workers ()     { $Workers = shift }
sub master_on ()   { $MasterOn = 1 }
sub master_off ()  { $MasterOn = 0 }
sub log_level ()   { $LogLevel = shift }
sub no_shuffle ()  { }      # blocks always run in order
sub server_port () { $Port }
sub servroot ()    { $ServRoot }
sub html_dir ()    { "$ServRoot/html" }
sub twilio_token () { $ENV{TEST_NGINX_TWILIO_TOKEN} || '12345' }

# add_block_preprocessor(sub { my $block = shift; ... }): as in
# Test::Nginx, called for every block, in the order added, before it runs;
# $block->set_value(name => value) gives it a section it lacks.
sub add_block_preprocessor () {
    my ($sub) = @_;
    Carp::croak('add_block_preprocessor needs a code ref')
        unless ref $sub eq 'CODE';
    push @Preprocessors, $sub;
}

# block_defaults(section => value, ...): the file's default sections; a
# block that has the section (even empty) keeps its own.
sub block_defaults () {
    my (%def) = @_;
    add_block_preprocessor(sub {
        my ($block) = @_;
        for my $sec (sort keys %def) {
            $block->set_value($sec, $def{$sec}) unless exists $block->{$sec};
        }
    });
}

# add_block_sections(names): sections a helper module handles (not typos).
sub add_block_sections () { $KnownSections{$_} = 1 for @_ }

# add_block_runner(sub { my ($block, $name) = @_; ... }): runs after the
# requests of every block (before perl_check/check); what the last runner
# returns is the third argument of perl_check and check.
sub add_block_runner () { push @Runners, $_[0] }

sub pick_port () {
    # Below the ephemeral range, so a client socket never holds it.
    for (1 .. 200) {
        my $port = 20000 + int rand 10000;
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
            LocalPort => $port, Proto => 'tcp', Listen => 1, ReuseAddr => 1)
            or next;
        close $s;
        return $port;
    }
    die "Test::Voice: no free port found\n";
}

sub now () { Time::HiRes::time() }

# Worker starts and shutdowns are logged at the notice level.
sub notices_logged () { $LogLevel =~ /^(?:debug|info|notice)$/ }

sub read_from () {
    my ($file, $offset) = @_;
    open my $fh, '<:raw', $file or return '';
    seek $fh, $offset, 0;
    local $/;
    my $data = <$fh>;
    return $data // '';
}

# From here on, error_log_since_start() and stderr_since_start() start.
sub mark_logs () {
    $ErrLogOff = -s "$ServRoot/logs/error.log" || 0;
    $StderrOff = -s "$ServRoot/logs/stderr.log" || 0;
}

sub error_log_since_start () {
    read_from("$ServRoot/logs/error.log", $ErrLogOff);
}

sub stderr_since_start () {
    read_from("$ServRoot/logs/stderr.log", $StderrOff);
}

# $TEST_NGINX_FOO -> its value, in strings and (nested) array refs.
sub expand_vars () {
    my ($v, $what) = @_;
    return [map { expand_vars($_, $what) } @$v] if ref $v eq 'ARRAY';
    return $v if !defined $v or ref $v;
    my %builtin = (
        TEST_NGINX_SERVER_PORT => $Port,
        TEST_NGINX_PORT        => $Port,
        TEST_NGINX_SERVROOT    => $ServRoot,
        TEST_NGINX_HTML_DIR    => html_dir(),
    );
    $v =~ s{\$(TEST_NGINX_[A-Z0-9_]+)}{
        $builtin{$1} // $ENV{$1}
            // die "$what: \$$1 is used but not set in the environment\n"
    }ge;
    return $v;
}

# --- nginx process -----------------------------------------------------------

sub write_config () {
    my ($spec) = @_;
    my $master = $spec->{master} ? 'on' : 'off';
    my $load = $spec->{no_module} ? '' : "load_module $Module;";
    # A block that writes its own `listen` (e.g. with reuseport) replaces ours.
    my $listen = $spec->{config} =~ /^\s*listen\s/m
        ? '' : "listen 127.0.0.1:$Port;";
    my $conf = <<"EOF";
# Written by t/lib/Test/Voice.pm for $spec->{name}
daemon off;
master_process $master;
worker_processes $spec->{workers};
error_log logs/error.log $LogLevel;
pid logs/nginx.pid;
lock_file logs/nginx.lock;
$load

$spec->{main_config}

events {
    worker_connections 1024;
}

http {
    access_log logs/access.log;
    # Debian's nginx has /var/lib/nginx/* compiled in; keep it all here.
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;

$spec->{http_config}

    server {
        $listen
        server_name localhost;

$spec->{config}
    }
}
EOF
    File::Path::make_path(map "$ServRoot/$_", qw(conf logs html));
    open my $fh, '>', "$ServRoot/conf/nginx.conf"
        or die "cannot write $ServRoot/conf/nginx.conf: $!\n";
    print $fh $conf;
    close $fh;
    $ConfOf = $spec->{name};
}

sub start_nginx () {
    my ($spec, @args) = @_;
    my %env = (ASAN_OPTIONS => 'detect_leaks=0:detect_odr_violation=0:abort_on_error=0',
               UBSAN_OPTIONS => 'print_stacktrace=1', %ENV);
    for (@{$spec->{env}}) {
        my ($k, $v) = @$_;
        if (defined $v) { $env{$k} = $v } else { delete $env{$k} }
    }
    my $logs = "$ServRoot/logs";
    mark_logs();
    $CurSpec = $spec;
    # TEST_NGINX_USE_VALGRIND=1: nginx runs under memcheck, each process
    # writing its own report, read by check_logs()
    my @valgrind = $ENV{TEST_NGINX_USE_VALGRIND}
        ? ('valgrind', '-q', '--leak-check=full', '--show-leak-kinds=definite',
           '--keep-debuginfo=yes',
           '--errors-for-leak-kinds=definite', '--num-callers=30',
           "--log-file=$logs/valgrind.%p.log")
        : ();
    unlink glob "$logs/valgrind.*.log";
    $Nginx = IPC::Run::start(
        [@valgrind, $Binary, '-p', "$ServRoot/", '-c', 'conf/nginx.conf',
         @args],
        init => sub { %ENV = %env },
        '<', '/dev/null', '>>', "$logs/stdout.log", '2>>', "$logs/stderr.log");
}

# Waits up to $secs for nginx to exit; true if it did.
sub wait_exit () {
    my ($h, $secs) = @_;
    my $deadline = now() + $secs;
    while ($h->pumpable) {          # with no pipes: "is the kid still alive"
        return 0 if now() > $deadline;
        Time::HiRes::sleep(0.02);
    }
    return 1;
}

sub nginx_pid () {
    # The IPC::Run kid is the master (daemon off).
    return $Nginx ? $Nginx->{KIDS}[0]{PID} : undef;
}

sub child_pids () {
    my ($ppid) = @_;
    my @pids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $line = <$fh> // next;
        push @pids, $1 if $line =~ /^(\d+) \(.*\) \S (\d+) / and $2 == $ppid;
    }
    return @pids;
}

# QUIT, then TERM after 3 s, then KILL (workers too) after 6 s; reaps.
# Returns {status => $?, early => nginx was already gone, killed => ...}.
sub stop_nginx () {
    my $h = $Nginx or return;
    my $pid = nginx_pid();
    undef $Nginx;
    my %r = (early => !$h->pumpable);
    unless ($r{early} or grep { kill($_, $pid); wait_exit($h, 3) } 'QUIT', 'TERM') {
        kill 'KILL', child_pids($pid), $pid;
        $r{killed} = 1;
    }
    $h->finish;
    $r{status} = $h->full_result(0);
    return \%r;
}

# The port is up when 127.0.0.1:$Port (or *:$Port) is in LISTEN state.
sub port_listening () {
    my $port = sprintf '%04X', $Port;
    open my $fh, '<', '/proc/net/tcp' or do {
        return !!IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                        PeerPort => $Port, Timeout => 0.2);
    };
    while (<$fh>) {
        my @f = split;
        return 1 if $f[3] eq '0A' and $f[1] =~ /^(?:0100007F|00000000):$port$/;
    }
    return 0;
}

sub nginx_reload () {
    my (%over) = @_;
    my $pid = nginx_pid() or Carp::croak('nginx_reload: nginx is not running');
    # A single-process nginx re-reads its config on HUP but then stops
    # accepting connections: reloading needs a master.
    Carp::croak('nginx_reload needs a master process (master_on, --- master_on)')
        unless $CurSpec->{master};
    my $old = $CurSpec->{workers};
    if (%over) {        # e.g. nginx_reload(config => '...'): rewrite first
        $over{$_} = expand_vars($over{$_}, 'nginx_reload') for keys %over;
        $CurSpec = { %$CurSpec, %over };
        write_config($CurSpec);
    }
    my $offset = -s "$ServRoot/logs/error.log" || 0;
    kill 'HUP', $pid;
    unless (notices_logged()) {
        Time::HiRes::sleep(1);
        return 1;
    }
    # Done when the new workers are forked and the old ones have begun to
    # shut down (which closes their listening sockets right away).
    my $deadline = now() + 3;
    while (now() < $deadline) {
        my $log = read_from("$ServRoot/logs/error.log", $offset);
        return 0 if $log =~ /\[emerg\]/;            # the old config stays
        my $started = () = $log =~ /start worker process \d+/g;
        my $stopping = () = $log =~ /gracefully shutting down/g;
        if ($started >= $CurSpec->{workers} and $stopping >= $old) {
            Time::HiRes::sleep(0.02);
            return 1;
        }
        Time::HiRes::sleep(0.02);
    }
    return 0;
}

# --- twilio signatures (node t/lib/twilio-sign.js --lines, kept running) ----

my ($SignerPid, $SignerIn, $SignerOut);

sub signer_call () {
    my ($req) = @_;
    local $SIG{PIPE} = 'IGNORE';
    unless ($SignerPid) {
        $SignerPid = IPC::Open2::open2($SignerOut, $SignerIn, $Node,
                                       "$Root/t/lib/twilio-sign.js", '--lines');
        $SignerIn->autoflush(1);
    }
    for (values %$req) {    # bytes -> characters, so JSON carries UTF-8 right
        utf8::decode($_) if defined and !ref and !utf8::is_utf8($_);
    }
    print {$SignerIn} JSON::PP->new->ascii->canonical->encode($req), "\n";
    my $line = <$SignerOut>;
    unless (defined $line) {
        stop_signer();
        die "t/lib/twilio-sign.js died (node installed? `cd t && npm install`?)\n";
    }
    my $r = JSON::PP::decode_json($line);
    die "t/lib/twilio-sign.js: $r->{error}\n" if defined $r->{error};
    return $r->{result};
}

sub stop_signer () {
    return unless $SignerPid;
    close $SignerIn;
    close $SignerOut;
    waitpid $SignerPid, 0;
    undef $SignerPid;
}

# sign_twilio($token, $url, $body): $body is a form-urlencoded string, a hash
# ref of parameters, or undef for {}; $token undef means twilio_token().
sub sign_twilio () {
    my ($token, $url, $body) = @_;
    my %req = (token => $token // twilio_token(), url => $url);
    if (ref $body eq 'HASH') { $req{params} = $body }
    elsif (defined $body)   { $req{body} = $body }
    return signer_call(\%req);
}

# validate_twilio($token, $signature, $url, $body_or_params): twilio's own
# validateRequest (tries the URL with and without the port, etc.).
sub validate_twilio () {
    my ($token, $sig, $url, $body) = @_;
    my %req = (mode => 'validate', token => $token // twilio_token(),
               signature => $sig // '', url => $url);
    $req{ref $body eq 'HASH' ? 'params' : 'body'} = $body if defined $body;
    return signer_call(\%req) ? 1 : 0;
}

# --- HTTP client -------------------------------------------------------------

sub connect_to () {
    my (%o) = @_;
    my %peer = (PeerAddr => '127.0.0.1', PeerPort => $o{port} // $Port,
                Proto => 'tcp', Timeout => $o{timeout} // $Timeout);
    return IO::Socket::INET->new(%peer) unless $o{ssl};
    require IO::Socket::SSL;
    return IO::Socket::SSL->new(%peer, SSL_verify_mode => 0,
                                SSL_hostname => $o{sni} // 'localhost');
}

sub write_all () {
    my ($sock, $data) = @_;
    utf8::encode($data) if utf8::is_utf8($data);
    while (length $data) {
        my $n = syswrite $sock, $data;
        return 0 unless $n;
        substr($data, 0, $n, '');
    }
    return 1;
}

# Returns (body, complete) for a chunked body.
sub decode_chunked () {
    my ($data) = @_;
    my ($body, $pos) = ('', 0);
    while (1) {
        my $nl = index $data, "\r\n", $pos;
        return ($body, 0) if $nl < 0;
        my ($size) = substr($data, $pos, $nl - $pos) =~ /^([0-9a-fA-F]+)/
            or return ($body, 0);
        $size = hex $size;
        $pos = $nl + 2;
        if ($size == 0) {       # last chunk, then trailers and an empty line
            my $done = substr($data, $pos, 2) eq "\r\n"
                || index($data, "\r\n\r\n", $pos) >= 0;
            return ($body, $done);
        }
        return ($body, 0) if length($data) < $pos + $size + 2;
        $body .= substr $data, $pos, $size;
        $pos += $size + 2;
    }
}

# Parses what has been read so far; undef if the header is still incomplete.
# {complete} tells whether the whole response is there (a 101 is complete at
# its header; bytes after it are returned in {leftover}).
sub parse_response () {
    my ($buf, $head, $eof) = @_;
    my $end = index $buf, "\r\n\r\n";
    if ($end < 0) {
        return $eof ? { complete => 1, headers => {},
                        error => 'connection closed before a full header' }
                    : undef;
    }
    my ($status_line, @lines) = split /\r\n/, substr($buf, 0, $end);
    my $rest = substr $buf, $end + 4;
    my ($proto, $status, $reason) =
        $status_line =~ m{^(HTTP/\d\.\d) +(\d{3})(?: (.*))?$}
        or return { complete => 1, headers => {},
                    error => "bad status line: $status_line" };
    # Skip interim responses such as 100 Continue.
    return parse_response($rest, $head, $eof) if $status =~ /^1/ and $status != 101;
    my %h;
    for (@lines) {
        my ($k, $v) = /^([^:]+?)\s*:\s*(.*?)\s*$/ or next;
        $k = lc $k;
        $h{$k} = exists $h{$k} ? "$h{$k}, $v" : $v;
    }
    my $r = { status => $status, reason => $reason // '', proto => $proto,
              headers => \%h, body => '' };
    my $te = $h{'transfer-encoding'} // '';
    if ($status == 101) {
        @$r{qw(complete leftover)} = (1, $rest);
    } elsif ($head or $status == 204 or $status == 304) {
        $r->{complete} = 1;
    } elsif ($te =~ /chunked/i) {
        my $done;
        ($r->{body}, $done) = decode_chunked($rest);
        $r->{complete} = $done || $eof;
        $r->{error} = 'truncated chunked body' if $eof and !$done;
    } elsif (defined(my $len = $h{'content-length'})) {
        $r->{body} = substr $rest, 0, $len;
        $r->{complete} = length($rest) >= $len || $eof;
        $r->{error} = 'truncated body' if length($rest) < $len and $eof;
    } else {
        $r->{body} = $rest;
        $r->{complete} = $eof;
    }
    return $r;
}

sub read_response () {
    my ($sock, $timeout, $head) = @_;
    my $deadline = now() + $timeout;
    my ($buf, $res) = ('');
    while (1) {
        $res = parse_response($buf, $head, 0);
        last if $res && $res->{complete};
        my $left = $deadline - now();
        if ($left <= 0) {
            $res ||= { headers => {} };
            $res->{error} = "timeout after ${timeout}s";
            last;
        }
        my $pending = $sock->can('pending') && $sock->pending;
        next unless $pending or IO::Select->new($sock)->can_read($left);
        my $n = sysread $sock, $buf, 65536, length $buf;
        next if !defined $n and $!{EINTR};
        if (!$n) {      # EOF or error (e.g. reset): take what there is
            my $err = defined $n ? undef : "read: $!";
            $res = parse_response($buf, $head, 1);
            $res->{error} //= $err if $err;
            last;
        }
    }
    $res->{raw} = $buf;
    return $res;
}

# http_request($bytes | [$packet, ...], timeout => s, delay => s, port => n,
# ssl => 1): sends the bytes (packets with `delay` between them, default
# 0.05 s) on a new connection and returns {status, reason, headers (lower-
# case names), body, raw, error}.
sub http_request () {
    my ($raw, %o) = @_;
    my @packets = ref $raw eq 'ARRAY' ? @$raw : ($raw);
    my $sock = connect_to(%o) or return { headers => {}, raw => '',
        error => 'connect to port ' . ($o{port} // $Port) . " failed: $!" };
    local $SIG{PIPE} = 'IGNORE';    # a server may answer and close early
    for my $i (0 .. $#packets) {
        Time::HiRes::sleep($o{delay} // 0.05) if $i;
        write_all($sock, $packets[$i]) or last;
    }
    my $res = read_response($sock, $o{timeout} // $Timeout,
                            ($packets[0] // '') =~ /^HEAD\s/);
    close $sock;
    return $res;
}

# headers => [Name => value, ...] | {Name => value} | ["Name: value", ...]
sub header_lines () {
    my ($h) = @_;
    return () unless $h;
    return map { "$_: $h->{$_}" } sort keys %$h if ref $h eq 'HASH';
    return @$h if !grep { !/:/ } @$h;
    my @pairs = @$h;
    my @lines;
    push @lines, join ': ', splice @pairs, 0, 2 while @pairs;
    return @lines;
}

# The request the harness sends for `--- request`, http_get and http_post.
sub build_request () {
    my (%a) = @_;
    my $body = $a{body} // '';
    utf8::encode($body) if utf8::is_utf8($body);
    my @h = header_lines($a{headers});
    my %has = map { /^\s*([^:\s]+)\s*:/ ? (lc $1 => 1) : () } @h;
    unshift @h, 'Connection: close' unless $has{connection};
    unshift @h, 'Host: localhost' unless $has{host};
    if (defined $a{twilio_sign}) {
        push @h, 'X-Twilio-Signature: ' . sign_twilio($a{twilio_token},
            $a{twilio_sign}, $a{twilio_sign_params_empty} ? undef : $body);
    }
    if (!$has{'content-length'} and !$has{'transfer-encoding'}
        and (length $body or $a{method} =~ /^(?:POST|PUT|PATCH)$/)) {
        push @h, 'Content-Length: ' . length $body;
    }
    return "$a{method} $a{uri} " . ($a{proto} // 'HTTP/1.1') . "\r\n"
        . join('', map { "$_\r\n" } @h) . "\r\n" . $body;
}

# http_get($uri, %opts) / http_post($uri, $body, %opts); opts as for
# http_request plus headers, twilio_sign (URL), twilio_token, proto.
sub http_get () {
    my ($uri, %o) = @_;
    return http_request(build_request(%o, method => 'GET', uri => $uri), %o);
}

sub http_post () {
    my ($uri, $body, %o) = @_;
    return http_request(
        build_request(%o, method => 'POST', uri => $uri, body => $body), %o);
}

# --- running the blocks ------------------------------------------------------

sub value () {
    my ($block, $sec) = @_;
    return $block->{$sec} ? $block->{$sec}[0] : undef;
}

sub block_spec () {
    my ($block, $name) = @_;
    my %s = (name => $name, no_module => exists $block->{no_module});
    for my $sec (qw(main_config http_config config)) {
        $s{$sec} = expand_vars(value($block, $sec) // '', "$name --- $sec");
    }
    ($s{workers} = value($block, 'workers') // $Workers) =~ s/\s+//g;
    $s{master} = exists $block->{master_on} ? 1
               : exists $block->{master_off} ? 0
               : $MasterOn // ($s{workers} > 1);
    for (split /\n/, expand_vars(value($block, 'env') // '', "$name --- env")) {
        next unless /\S/;
        if (/^\s*!\s*(\w+)\s*$/) { push @{$s{env}}, [$1, undef] }     # unset
        elsif (/^\s*(\w+)=(.*)$/) { push @{$s{env}}, [$1, $2] }
        else { die "$name: bad --- env line '$_' (NAME=value or !NAME)\n" }
    }
    return \%s;
}

# The raw requests of a block: a list of (bytes | [packets]).
sub block_requests () {
    my ($block, $name) = @_;
    if (defined(my $raw = value($block, 'raw_request'))) {
        return (expand_vars($raw, "$name --- raw_request"));
    }
    my $reqs = value($block, 'request') // return ();
    $reqs = expand_vars($reqs, "$name --- request");
    my @reqs = ref $reqs eq 'ARRAY' ? @$reqs : ($reqs);
    my $nth = sub {     # a section's value for request $i (pairwise arrays)
        my ($sec, $i) = @_;
        my $v = expand_vars(value($block, $sec), "$name --- $sec");
        return ref $v eq 'ARRAY' ? $v->[$i] : $v;
    };
    my @out;
    for my $i (0 .. $#reqs) {
        my ($first, $body) = split /\n/, $reqs[$i], 2;
        $first =~ s/^\s+|\s+$//g;
        my ($method, $uri, $proto) = split ' ', $first;
        die "$name: bad request line '$first'\n" unless defined $uri;
        ($body //= '') =~ s/\n\z//;     # the section's last newline isn't sent
        my ($sign, $token) = map { defined ? s/^\s+|\s+$//gr : undef }
                             $nth->('twilio_sign', $i), $nth->('twilio_token', $i);
        push @out, build_request(
            method => $method, uri => $uri, proto => $proto, body => $body,
            headers => [grep { /\S/ } split /\n/, $nth->('more_headers', $i) // ''],
            twilio_sign => $sign, twilio_token => $token,
            twilio_sign_params_empty => exists $block->{twilio_sign_params_empty});
    }
    return @out;
}

sub check_responses () {
    my ($block, $name, $responses) = @_;
    my $n = @$responses;
    for my $sec (qw(error_code response_headers response_headers_like
                    response_body response_body_like)) {
        next unless exists $block->{$sec};
        my $exp = expand_vars(value($block, $sec), "$name --- $sec");
        if (!$n) {
            Test::More::fail("$name - --- $sec needs a --- request");
            next;
        }
        if (ref $exp eq 'ARRAY' and @$exp != $n) {
            Test::More::fail("$name - --- $sec has " . @$exp
                             . " entries for $n requests");
            next;
        }
        for my $i (0 .. $n - 1) {
            my $e = ref $exp eq 'ARRAY' ? $exp->[$i] : $exp;
            my $t = $n > 1 ? "$name - req $i" : $name;
            check_response($sec, $e, $responses->[$i], $t);
        }
    }
}

sub check_response () {
    my ($sec, $e, $r, $t) = @_;
    my $h = $r->{headers} || {};
    Test::More::diag("$t: $r->{error}") if defined $r->{error} and !$r->{diagged}++;
    if ($sec eq 'error_code') {
        $e =~ s/\s+//g;
        Test::More::is($r->{status}, $e, "$t - status code ok");
    } elsif ($sec eq 'response_body') {
        Test::LongString::is_string($r->{body}, $e,
                                    "$t - response_body - response is expected");
    } elsif ($sec eq 'response_body_like') {
        chomp $e unless ref $e;
        my $re = ref $e eq 'Regexp' ? $e : qr/$e/s;
        Test::More::like($r->{body} // '', $re,
                         "$t - response_body_like - response is expected");
    } else {
        my $like = $sec eq 'response_headers_like';
        for my $line (ref $e eq 'HASH' ? header_lines($e) : split /\n/, $e) {
            next unless $line =~ /\S/;
            if ($line =~ /^\s*!\s*([^:\s]+)\s*$/) {
                my $k = $1;
                Test::More::ok(!exists $h->{lc $k}, "$t - header $k absent")
                    or Test::More::diag("$k: $h->{lc $k}");
            } elsif ($line =~ /^\s*([^:]+?)\s*:\s?(.*?)\s*$/) {
                my ($k, $v) = ($1, $2);
                if ($like) {
                    Test::More::ok(defined $h->{lc $k}, "$t - header $k present")
                        and Test::More::like($h->{lc $k}, qr/$v/, "$t - header $k like");
                } else {
                    Test::More::is($h->{lc $k}, $v, "$t - header $k ok");
                }
            } else {
                Test::More::fail("$t - bad --- $sec line: $line");
            }
        }
    }
}

# Strings (one per non-empty line) or qr// objects, from a section value.
sub log_patterns () {
    my ($v) = @_;
    return () unless defined $v;
    return map { log_patterns($_) } @$v if ref $v eq 'ARRAY';
    return $v if ref $v eq 'Regexp';
    return grep { /\S/ } split /\n/, $v;
}

sub check_logs () {
    my ($block, $name, $log, $stop) = @_;
    my @want = log_patterns(expand_vars(value($block, 'error_log'), $name));
    my @never = log_patterns(expand_vars(value($block, 'no_error_log'), $name));
    for my $p (@want) {
        my $found = ref $p ? $log =~ $p : index($log, $p) >= 0;
        Test::More::ok($found, "$name - error_log - pattern \"$p\" matches a line");
    }
    for my $p (@never) {
        my @hits = grep { ref $p ? $_ =~ $p : index($_, $p) >= 0 } split /\n/, $log;
        Test::More::ok(!@hits, "$name - no_error_log - pattern \"$p\" not found")
            or Test::More::diag("found: $hits[0]");
    }

    # Things no block may leave behind.
    my $must_die = exists $block->{must_die};
    my @bad = grep { /\b\w*Sanitizer\b|runtime error:/ } split /\n/, $log;
    for my $lvl (qw(alert crit emerg)) {
        next if $must_die or grep { "$_" =~ /\b$lvl\b/ } @want;
        push @bad, grep { /\[$lvl\]/ } split /\n/, $log;
    }
    push @bad, valgrind_errors() if $stop;
    if ($stop and !$must_die) {
        push @bad, 'nginx exited before the block ended' if $stop->{early};
        push @bad, 'nginx had to be killed' if $stop->{killed};
        my $st = $stop->{status} // 0;
        push @bad, sprintf('nginx exit status %d, signal %d', $st >> 8, $st & 127)
            if $st and !$stop->{killed};
    }
    Test::More::ok(!@bad, "$name - nginx ran cleanly (no crash, [alert], "
                   . "[crit], [emerg] or sanitizer report)")
        or Test::More::diag(join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]);
}

# memcheck's invalid accesses anywhere, and leaks of the module's memory
# (nginx itself leaves some config memory to the exit)
sub valgrind_errors () {
    my @bad;
    for my $f (glob "$ServRoot/logs/valgrind.*.log") {
        open my $fh, '<', $f or next;
        local $/ = '';
        while (my $rec = <$fh>) {
            next unless $rec =~ /Invalid (?:read|write|free)|uninitialised|
                                 Mismatched\ free|definitely\ lost/x;
            next if $rec =~ /definitely lost/ and $rec !~ /ngx_voice/;
            push @bad, "valgrind: $rec";
        }
    }
    return @bad;
}

sub run_checks () {
    my ($block, $name, $responses, $ctx) = @_;
    for my $sec (qw(perl_check check)) {
        next unless exists $block->{$sec};
        my $code = value($block, $sec);
        my $ok = ref $code eq 'CODE'
            ? eval { $code->($block, $responses, $ctx); 1 }
            : do { eval_in_main($code, "$name --- $sec", $block, $responses,
                                $ctx);
                   $@ eq '' };
        Test::More::fail("$name - --- $sec died") or Test::More::diag($@)
            unless $ok;
    }
}

sub parse_secs () {
    my ($v, $default) = @_;
    return $default unless defined $v;
    $v =~ /^\s*(\d+(?:\.\d*)?)\s*(ms|s)?\s*$/ or die "bad duration '$v'\n";
    return ($2 // '') eq 'ms' ? $1 / 1000 : $1;
}

sub run_block () {
    my ($block, $name) = @_;
    mark_logs();
    my @unknown = grep { !$KnownSections{$_} } @{$block->{_section_order}[0]};
    if (@unknown) {
        Test::More::fail("$name - unknown section(s): @unknown (a typo?)");
        return;
    }
    local $Timeout = parse_secs(value($block, 'timeout'), 10);
    my $spec = block_spec($block, $name);
    my @requests = block_requests($block, $name);
    write_config($spec);
    if (!$spec->{no_module} and !-f $Module) {
        Test::More::fail("$name - module $Module exists (run `make`)");
        return;
    }

    # Blocks where nginx is expected to fail.
    my $must_die = exists $block->{must_die};
    if ($must_die or exists $block->{config_test}) {
        my $test = exists $block->{config_test};
        start_nginx($spec, $test ? ('-t') : ());
        my $exited = wait_exit($Nginx, $test ? 10 : 5);
        my $stop = stop_nginx();
        my $st = $stop->{status} // 0;
        if ($must_die) {    # an error exit, not a crash
            Test::More::ok($exited && ($st >> 8) && !($st & 127), "$name - nginx "
                           . ($test ? '-t' : 'start') . ' failed as expected')
                or Test::More::diag($exited ? sprintf('exit status %d, signal %d',
                                                      $st >> 8, $st & 127)
                                            : 'nginx was still running');
        } else {
            Test::More::ok($exited && !$st, "$name - nginx -t succeeded");
        }
        check_logs($block, $name, stderr_since_start() . error_log_since_start());
        run_checks($block, $name, []);
        return;
    }

    start_nginx($spec);
    # Up = listening and, with a master, all workers forked.
    my $deadline = now() + ($ENV{TEST_NGINX_USE_VALGRIND} ? 60 : 5);
    my $up = sub {
        return 0 unless port_listening();
        return 1 unless $spec->{master} and notices_logged();
        my $n = () = error_log_since_start() =~ /start worker process \d+/g;
        return $n >= $spec->{workers};
    };
    Time::HiRes::sleep(0.01) while !$up->() and $Nginx->pumpable
                                   and now() < $deadline;
    unless (port_listening()) {
        my $stop = stop_nginx();
        Test::More::fail("$name - nginx started and listens on port $Port");
        check_logs($block, $name, stderr_since_start() . error_log_since_start(), $stop);
        return;
    }

    my $delay = parse_secs(value($block, 'raw_request_middle_delay'), 0.05);
    my @responses = map { http_request($_, delay => $delay) } @requests;
    check_responses($block, $name, \@responses);
    my $ctx;
    for my $runner (@Runners) {
        my $r = eval { $runner->($block, $name) };
        if ($@) {
            Test::More::fail("$name - block runner died");
            Test::More::diag($@);
        }
        $ctx = $r if defined $r;
    }
    run_checks($block, $name, \@responses, $ctx);
    Time::HiRes::sleep(parse_secs(value($block, 'wait'), 0));

    # Stop nginx before looking at the logs: they are then complete,
    # including what is written at exit (sanitizer reports too).
    my $stop = stop_nginx();
    check_logs($block, $name, error_log_since_start() . stderr_since_start(), $stop);
}

sub diag_failed_block () {
    my ($name, $seq) = @_;
    my $saved = 'none written';
    if ($ConfOf eq $name) {
        $saved = "$ServRoot/conf/failed-$seq.conf";
        File::Copy::copy("$ServRoot/conf/nginx.conf", $saved);
    }
    my @entries;    # lines not starting with a timestamp continue an entry
    for (split /\n/, error_log_since_start()) {
        if (!@entries or m{^\d{4}/\d\d/\d\d [\d:]+ \[}) { push @entries, $_ }
        else { $entries[-1] .= "\n$_" }
    }
    my @shown = $ENV{TEST_NGINX_VERBOSE} ? @entries
                                         : grep { !/^\S+ \S+ \[debug\]/ } @entries;
    splice @shown, 0, @shown - 50 if @shown > 50;
    Test::More::diag("$name failed; config: $saved; log: $ServRoot/logs/error.log\n"
        . 'error.log of this block (' . scalar(@entries) . ' entries; the last 50'
        . " non-debug ones; TEST_NGINX_VERBOSE=1 for all):\n" . join("\n", @shown));
    my $stderr = stderr_since_start();
    Test::More::diag("nginx stderr:\n$stderr") if $stderr =~ /\S/;
}

sub prepare_servroot () {
    File::Path::remove_tree(map { "$ServRoot/$_" }
        qw(conf logs html client_body_temp proxy_temp fastcgi_temp uwsgi_temp scgi_temp));
    File::Path::make_path(map { "$ServRoot/$_" } qw(conf logs html));
}

sub run_tests () {
    prepare_servroot();
    my @blocks = blocks();
    Test::More::plan(skip_all => 'no blocks') unless @blocks;
    my $tb = Test::More->builder;
    for my $block (@blocks) {
        my $name = $block->name;
        my $first = $tb->current_test;
        unless (eval { $_->($block) for @Preprocessors; 1 }) {
            Test::More::fail("$name - block preprocessor died");
            Test::More::diag($@);
            next;
        }
        unless (eval { run_block($block, $name); 1 }) {
            Test::More::fail("$name - harness error");
            Test::More::diag($@);
            stop_nginx();
        }
        my @results = ($tb->summary)[$first .. $tb->current_test - 1];
        diag_failed_block($name, $block->seq_num) if grep { !$_ } @results;
    }
    stop_signer();
    $tb->plan();    # marks the plan as handled, or Test::Base's END runs tests
    Test::More::done_testing();
}

END {
    local $?;       # keep the test's exit status
    if ($$ == $ParentPid) {
        stop_nginx();
        stop_signer();
    }
}

# --- `eval` sections run in package main (helpers available), loudly -------

package Test::Voice::Filter;
our @ISA = ('Test::Base::Filter');

sub eval () {
    my ($self, $code) = @_;
    my $name = $self->current_block->name;
    my @r = Test::Voice::eval_in_main($code, "$name (eval section)");
    die "$name: eval section failed: $@" if $@;
    return @r;
}

# --- WebSocket client --------------------------------------------------------

package Test::Voice;

# ws_connect($path, headers => [...], twilio_sign => $url, twilio_token,
# twilio_params, subprotocol, timeout, port): a Test::Voice::WS after a 101,
# otherwise the HTTP response hash (see http_request).
sub ws_connect () {
    my ($path, %o) = @_;
    my $port = $o{port} // $Port;
    my @headers = map { split /:\s*/, $_, 2 } header_lines($o{headers});
    if (defined $o{twilio_sign}) {
        push @headers, 'X-Twilio-Signature',
            sign_twilio($o{twilio_token}, $o{twilio_sign}, $o{twilio_params});
    }
    my $hs = Protocol::WebSocket::Handshake::Client->new(
        url => "ws://localhost:$port$path",
        req => Protocol::WebSocket::Request->new(headers => \@headers));
    my $key = MIME::Base64::encode_base64(
        join('', map { chr int rand 256 } 1 .. 16), '');
    $hs->req->key($key);
    $hs->req->subprotocol($o{subprotocol}) if defined $o{subprotocol};
    my $sock = connect_to(%o) or Carp::croak("ws_connect: connect failed: $!");
    local $SIG{PIPE} = 'IGNORE';
    write_all($sock, $hs->to_string);
    my $res = read_response($sock, $o{timeout} // $Timeout, 0);
    if (($res->{status} // 0) != 101) {
        close $sock;
        return $res;
    }
    my $accept = MIME::Base64::encode_base64(Digest::SHA::sha1(
        $key . '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'), '');
    my $got = $res->{headers}{'sec-websocket-accept'} // '';
    Carp::croak("ws_connect: Sec-WebSocket-Accept is '$got', expected '$accept'")
        unless $got eq $accept;
    # Frames the server sent right after its 101 came with the header.
    return bless { sock => $sock, response => $res,
                   buf => delete $res->{leftover} // '' }, 'Test::Voice::WS';
}

package Test::Voice::WS;

sub response () { $_[0]{response} }
sub socket ()   { $_[0]{sock} }

sub send_raw () {
    my ($self, $bytes) = @_;
    local $SIG{PIPE} = 'IGNORE';
    return Test::Voice::write_all($self->{sock}, $bytes);
}

# send_frame(type => 'text'|'binary'|'ping'|'pong'|'close'|'continuation'
# or opcode => n, payload => bytes, fin => 1, masked => 1, rsv => [1,0,0],
# mask => 32-bit int) or send_frame(raw => bytes).
sub send_frame () {
    my ($self, %a) = @_;
    return $self->send_raw($a{raw}) if defined $a{raw};
    my %f = (buffer => $a{payload} // '', masked => $a{masked} // 1,
             fin => $a{fin} // 1, max_payload_size => 0);
    if (defined $a{opcode}) { $f{opcode} = $a{opcode} }
    else                    { $f{type} = $a{type} // 'text' }
    $f{rsv} = $a{rsv} if $a{rsv};
    $f{mask} = $a{mask} if defined $a{mask};
    return $self->send_raw(Protocol::WebSocket::Frame->new(%f)->to_bytes);
}

sub send_text ()   { $_[0]->send_frame(type => 'text', payload => $_[1]) }
sub send_binary () { $_[0]->send_frame(type => 'binary', payload => $_[1]) }
sub send_ping ()   { $_[0]->send_frame(type => 'ping', payload => $_[1] // '') }

sub close () {
    my ($self, $code, $reason) = @_;
    my $payload = defined $code ? pack('n', $code) . ($reason // '') : '';
    return $self->send_frame(type => 'close', payload => $payload);
}

# One frame off the buffer, or undef if it isn't all there.  Decoded here
# rather than by Protocol::WebSocket::Frame, which joins fragments and hides
# fin/rsv/masking: tests want to see the server's frames as sent.
sub parse_frame () {
    my ($self) = @_;
    my $buf = \$self->{buf};
    return undef if length $$buf < 2;
    my ($b1, $b2) = unpack 'CC', $$buf;
    my ($off, $len) = (2, $b2 & 0x7f);
    if ($len == 126) {
        return undef if length $$buf < 4;
        ($len, $off) = (unpack('n', substr $$buf, 2, 2), 4);
    } elsif ($len == 127) {
        return undef if length $$buf < 10;
        ($len, $off) = (unpack('Q>', substr $$buf, 2, 8), 10);
    }
    my $mask;
    if ($b2 & 0x80) {
        return undef if length $$buf < $off + 4;
        $mask = substr $$buf, $off, 4;
        $off += 4;
    }
    return undef if length $$buf < $off + $len;
    my $payload = substr $$buf, $off, $len;
    substr($$buf, 0, $off + $len, '');
    $payload ^= substr($mask x (int($len / 4) + 1), 0, $len) if defined $mask;
    return { fin => $b1 >> 7, rsv => ($b1 >> 4) & 7, opcode => $b1 & 0x0f,
             masked => defined $mask ? 1 : 0, payload => $payload };
}

# recv_frame($timeout = 10): {opcode, payload, fin, rsv, masked} or undef on
# timeout or EOF ($ws->{eof} tells which).
sub recv_frame () {
    my ($self, $timeout) = @_;
    my $deadline = Test::Voice::now() + ($timeout // 10);
    while (1) {
        my $f = $self->parse_frame;
        return $f if $f;
        return undef if $self->{eof};
        my $left = $deadline - Test::Voice::now();
        return undef if $left <= 0;
        next unless IO::Select->new($self->{sock})->can_read($left);
        my $n = sysread $self->{sock}, $self->{buf}, 65536, length $self->{buf};
        next if !defined $n and $!{EINTR};
        $self->{eof} = 1 unless $n;
    }
}

# recv_close($timeout = 10): ($code, $reason) of the server's close frame
# (code undef if the frame had no payload), skipping other frames (kept in
# $ws->{skipped}); () on timeout/EOF.
sub recv_close () {
    my ($self, $timeout) = @_;
    my $deadline = Test::Voice::now() + ($timeout // 10);
    while (my $f = $self->recv_frame($deadline - Test::Voice::now())) {
        if ($f->{opcode} == 8) {
            return (undef, '') if length $f->{payload} < 2;
            return (unpack('n', $f->{payload}), substr($f->{payload}, 2));
        }
        push @{$self->{skipped}}, $f;
    }
    return ();
}

# wait_eof($timeout = 10): true once the server has closed the TCP
# connection (frames still arriving are kept in $ws->{skipped}).
sub wait_eof () {
    my ($self, $timeout) = @_;
    my $deadline = Test::Voice::now() + ($timeout // 10);
    while (!$self->{eof} and Test::Voice::now() < $deadline) {
        my $f = $self->recv_frame($deadline - Test::Voice::now());
        push @{$self->{skipped}}, $f if $f;
    }
    return $self->{eof} ? 1 : 0;
}

sub disconnect () { CORE::close($_[0]{sock}) }

1;
__END__

=head1 NAME

Test::Voice - Test::Nginx::Socket-style harness for the ngx_voice module

=head1 SYNOPSIS

    use Test::Voice;
    run_tests();
    __DATA__
    === TEST 1: hello
    --- config
    location /t { return 200 "hello"; }
    --- request
    GET /t
    --- response_body chomp
    hello

Run C<prove -I t/lib -r t/> from the repository root.  Each block gets a
fresh nginx (master_process off unless master_on()/workers(n) or the block's
C<--- master_on>/C<--- workers: n>), stopped before its logs are checked.
t/000-harness.t shows every section and helper in use.

=head1 SECTIONS

Config: main_config, http_config, config (its own C<listen> replaces the
default), no_module, env (C<NAME=value>; C<!NAME> unsets), workers,
master_on, master_off.  Failing nginx: must_die, config_test (C<nginx -t>).
Requests: request (C<METHOD URI [PROTO]>, then the body minus its last
newline; an C<eval> array ref = several requests), raw_request (an C<eval>
array ref = packets), raw_request_middle_delay, more_headers, timeout,
twilio_sign (URL), twilio_token, twilio_sign_params_empty.  Checks:
error_code, response_headers (C<Name: value>, C<!Name>),
response_headers_like, response_body, response_body_like, error_log,
no_error_log (lines, or C<eval> qr// / array ref), wait, perl_check (Perl,
C<@_ = ($block, \@responses, $runner_result)>), check (C<eval> giving a
code ref, called with the same).  Check
sections may be C<eval> array refs matched pairwise with several requests.
Every block also gets a "nginx ran cleanly" test.

=head1 SHARED DEFAULTS

As in Test::Nginx, a file states what its blocks share once and a block
states only what differs:

    add_block_preprocessor(sub {
        my $block = shift;
        $block->set_value(http_config => $HttpConfig)
            unless defined $block->http_config;
    });

Preprocessors run for every block, in the order added, before it runs
(after its C<eval> sections); C<< $block->set_value(name => value) >> gives
it a section.  C<< block_defaults(section => value, ...) >> is the common
case: each section a block lacks (a block with an empty section keeps it
empty) gets the file's value.

A helper module may handle sections of its own: it names them with
C<Test::Voice::add_block_sections(@names)> (other unknown sections still
fail the block as typos) and runs them with
C<Test::Voice::add_block_runner(sub { my ($block, $name) = @_; ... })>,
called after the block's requests; what it returns is the third argument
of perl_check and check.  t/lib/Test/VoiceCall.pm does so for whole calls
(C<twilio_script>, C<expect_twilio_close> ...; see its POD).

=head1 HELPERS

run_tests, add_block_preprocessor, block_defaults, workers, master_on,
master_off, log_level, no_shuffle,
sign_twilio($token, $url, $body | \%params | undef), validate_twilio($token,
$sig, $url, $body | \%params), twilio_token, http_request($bytes | \@packets,
%opts), http_get($uri, %opts), http_post($uri, $body, %opts),
ws_connect($path, %opts), server_port, servroot, html_dir, nginx_pid,
nginx_reload(%config_overrides), error_log_since_start, stderr_since_start.

=head1 ENVIRONMENT

TEST_NGINX_BINARY, TEST_NGINX_MODULE, TEST_NGINX_PORT, TEST_NGINX_SERVROOT,
TEST_NGINX_TWILIO_TOKEN (default 12345), TEST_NGINX_NODE, TEST_NGINX_VERBOSE.
C<$TEST_NGINX_*> is expanded in every section but perl_check/check.

=cut
