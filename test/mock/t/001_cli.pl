# aggk-mock command line: --help, unknown flags, port file, start line, keys, signals.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../../perl";
use Test::More;
use File::Temp ();
use POSIX ();
use Time::HiRes qw(time sleep);
use EnrichMock;

my $bin = EnrichMock->bin_path;
-x $bin or BAIL_OUT("mock binary $bin not built (make -C test/mock)");

my $BE = '/v2/test/person/bulk-enrich';

sub slurp { my ($f) = @_; open(my $fh, '<', $f) or return ''; local $/; my $c = <$fh>; $c // '' }

# Run the binary with @args, bounded to 5 s (killed after), output of both streams.
sub run_bin
{
	my (@args) = @_;
	my $dir = File::Temp->newdir('enrich-cli-XXXXXX', TMPDIR => 1);
	my $out = "$dir/out";
	my $pid = fork // die "fork: $!";
	if (!$pid)
	{
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>', $out);
		open(STDERR, '>&', \*STDOUT);
		{ no warnings 'exec'; exec { $bin } $bin, @args; }
		POSIX::_exit(127);
	}
	my $deadline = time + 5;
	my ($st, $timed_out) = (undef, 0);
	while (1)
	{
		my $w = waitpid($pid, POSIX::WNOHANG());
		if ($w == $pid) { $st = $?; last; }
		if (time > $deadline) { kill 'KILL', $pid; waitpid($pid, 0); $st = $?; $timed_out = 1; last; }
		sleep 0.02;
	}
	return { exit => $st >> 8, signal => $st & 127, timed_out => $timed_out, output => slurp($out) };
}

# --help
{
	my $r = run_bin('--help');
	ok(!$r->{timed_out}, '--help returns');
	is($r->{signal}, 0, '--help not killed by a signal');
	is($r->{exit}, 0, '--help exits 0');
	for my $flag (qw(--port --port-file --bind --key-live --key-test --start-delay-ms
		--items-per-second --tier3 --tier4 --tls-cert --tls-key --faults --seed --verbose --help))
	{
		like($r->{output}, qr/(?<![\w-])\Q$flag\E(?![\w-])/, "--help mentions $flag");
	}
}

# usage errors (with --port 0 so that a wrongly started server takes no fixed port)
{
	my $dir = File::Temp->newdir('enrich-cli-XXXXXX', TMPDIR => 1);
	my $r = run_bin('--port', 0, '--port-file', "$dir/p1", '--no-such-flag');
	ok(!$r->{timed_out}, 'unknown flag: returns at once');
	is($r->{exit}, 2, 'unknown flag exits 2');

	$r = run_bin('--port', 0, '--port-file', "$dir/p2", '--tls-cert', "$dir/none.pem");
	ok(!$r->{timed_out} && ($r->{exit} != 0 || $r->{signal}),
		'--tls-cert without --tls-key: exits non-zero (both or neither)');

	$r = run_bin('--port', 0, '--port-file', "$dir/p3", '--faults', '{"no_such_fault": 1}');
	ok(!$r->{timed_out} && $r->{exit} != 0, '--faults with an unknown key: exits non-zero');

	$r = run_bin('--port', 0, '--port-file', "$dir/p4", '--faults', 'not json');
	ok(!$r->{timed_out} && $r->{exit} != 0, '--faults with malformed JSON: exits non-zero');
}

# start: port file, start line, a request works, SIGTERM stops it with status 0
{
	my $m = EnrichMock->start;
	my $port = $m->port;
	ok($port > 0, "listening on port $port");
	is(slurp($m->{port_file}), "$port\n", 'port file holds the decimal port and a newline');
	my $line = '';
	for (1 .. 100) { $line = $m->stdout_text; last if $line =~ /\n/; sleep 0.02; }
	like($line, qr{^aggk-mock listening on http://127\.0\.0\.1:$port\r?\n}m,
		'prints "aggk-mock listening on http://ADDR:PORT" on start (flushed)');
	my $r = $m->request(GET => $BE);
	is($r->{status}, 200, 'list batches with the test key');
	my $st = $m->stop;
	ok(defined $st, 'stopped');
	is($st & 127, 0, 'SIGTERM: exits, not killed by a signal');
	is($st >> 8, 0, 'SIGTERM: exit status 0');
}

# SIGINT stops it cleanly too
{
	my $m = EnrichMock->start;
	is($m->request(GET => $BE)->{status}, 200, 'second instance answers');
	my $st = $m->stop(signal => 'INT');
	is($st & 127, 0, 'SIGINT: exits, not killed by a signal');
	is($st >> 8, 0, 'SIGINT: exit status 0');
}

# --port N: a fixed port
{
	my $m = EnrichMock->start;
	my $p = $m->port;
	$m->stop;
	my $m2 = EnrichMock->start(port => $p);
	is($m2->port, $p, "--port $p binds that port");
	is($m2->request(GET => $BE)->{status}, 200, 'fixed port answers');
	$m2->stop;
}

# default keys when no key flag is given
{
	my $m = EnrichMock->start(key_live => [], key_test => []);
	is($m->request(GET => '/v2/live/person/bulk-enrich', key => 'mock-live-key')->{status}, 200,
		'no key flag: mock-live-key valid for live');
	is($m->request(GET => $BE, key => 'mock-test-key')->{status}, 200,
		'no key flag: mock-test-key valid for test');
	is($m->request(GET => $BE, key => 'mock-live-key')->{status}, 403,
		'no key flag: mock-live-key forbidden on test');
	is($m->request(GET => $BE, key => 'test-key')->{status}, 401, 'no key flag: test-key unknown');
	$m->stop;
}

# a key flag replaces both defaults
{
	my $m = EnrichMock->start(key_live => ['only-live'], key_test => []);
	is($m->request(GET => '/v2/live/person/bulk-enrich', key => 'only-live')->{status}, 200,
		'--key-live only-live works');
	is($m->request(GET => $BE, key => 'mock-test-key')->{status}, 401,
		'with a key flag given, mock-test-key is not a default any more');
	is($m->request(GET => '/v2/live/person/bulk-enrich', key => 'mock-live-key')->{status}, 401,
		'with --key-live given, mock-live-key is not valid');
	$m->stop;
}

# --bind
{
	my $m = EnrichMock->start(bind => '127.0.0.1');
	is($m->request(GET => $BE)->{status}, 200, '--bind 127.0.0.1 answers');
	$m->stop;
}

# --verbose: one line per request on stderr
{
	my $m = EnrichMock->start(verbose => 1);
	$m->request(GET => $BE) for 1 .. 3;
	my $lines = () = $m->stderr_text =~ /\n/g;
	$m->stop;
	$lines = () = $m->stderr_text =~ /\n/g;
	cmp_ok($lines, '>=', 3, "--verbose logs a line per request ($lines lines for 3 requests)");
	my $quiet = EnrichMock->start;
	$quiet->request(GET => $BE) for 1 .. 3;
	$quiet->stop;
	unlike($quiet->stderr_text, qr{bulk-enrich}, 'without --verbose no request log');
}

done_testing();
