# The EnrichMock helper module itself: start, accessors, no process ever left behind.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../../perl";
use Test::More;
use File::Temp ();
use Time::HiRes qw(time sleep);
use EnrichMock;

-x EnrichMock->bin_path or BAIL_OUT('mock binary not built (make -C test/mock)');

my $lib = "$FindBin::Bin/../../perl";

# gone: no such process, or a zombie waiting for its new parent
sub gone
{
	my ($pid, $wait) = @_;
	my $deadline = time + ($wait // 5);
	while (1)
	{
		my $state = '';
		if (open(my $fh, '<', "/proc/$pid/stat")) { my $l = <$fh> // ''; ($state) = $l =~ /\)\s+(\S)/; }
		elsif (!kill(0, $pid)) { return 1; }
		return 1 if $state eq '' && !kill(0, $pid);
		return 1 if $state eq 'Z' || $state eq 'X';
		return 0 if time > $deadline;
		sleep 0.05;
	}
}
sub alive { my ($pid) = @_; kill(0, $pid) && !gone($pid, 0) }

# --- start and accessors
{
	my $m = EnrichMock->start;
	ok($m->port > 0, 'port');
	is($m->url, 'http://127.0.0.1:' . $m->port, 'url');
	is($m->key_live, 'live-key', 'default live key');
	is($m->key_test, 'test-key', 'default test key');
	my $pid = $m->pid;
	ok(alive($pid), 'mock process running');
	my $r = $m->request(GET => '/v2/test/person/bulk-enrich');
	is($r->{status}, 200, 'request picks the test key for /v2/test');
	is_deeply($r->{json}, { batches => [], total => 0 }, 'json decoded');
	is($m->request(GET => '/v2/live/person/bulk-enrich')->{status}, 200, 'and the live key for /v2/live');
	is($m->request(GET => '/v2/test/person/bulk-enrich', key => undef)->{status}, 401, 'key => undef sends no key');
	is($m->request(GET => '/v2/test/person/bulk-enrich', query => { limit => 0 })->{status}, 400, 'query option');
	my $dir = $m->dir;
	ok(-d $dir, 'temp dir exists while running');
	undef $m;
	ok(gone($pid), 'undef $m (DESTROY) stops the mock');
	ok(!-d $dir, 'and removes its temp dir');
}

# --- a test that dies, exits, gets SIGTERM or SIGKILL leaves no mock behind
my $tmp = File::Temp->newdir('enrich-mod-XXXXXX', TMPDIR => 1);
for my $case ([ 'die with a lexical', 'my $m = EnrichMock->start; w($m); die "boom\n";' ],
	[ 'die with a global', 'our $m = EnrichMock->start; w($m); die "boom\n";' ],
	[ 'exit', 'our $m = EnrichMock->start; w($m); exit 3;' ],
	[ 'SIGTERM', 'our $m = EnrichMock->start; w($m); sleep 30;', 'TERM' ],
	[ 'SIGINT', 'our $m = EnrichMock->start; w($m); sleep 30;', 'INT' ],
	[ 'SIGKILL', 'our $m = EnrichMock->start; w($m); sleep 30;', 'KILL' ])
{
	my ($name, $code, $sig) = @$case;
	my $pf = "$tmp/pid." . ($sig // 'none') . ".$name";
	$pf =~ s/ /_/g;
	my $prog = qq{use lib '$lib'; use EnrichMock; sub w { open(my \$f, '>', '$pf.tmp'); print \$f \$_[0]->pid; close \$f; rename '$pf.tmp', '$pf'; } $code};
	my $kid = fork // die;
	if (!$kid)
	{
		# the SIGKILLed one cannot clean up its temp dir: keep it inside ours
		$ENV{TMPDIR} = "$tmp";
		open(STDERR, '>', '/dev/null');
		exec $^X, '-e', $prog;
		exit 127;
	}
	my $deadline = time + 10;
	sleep 0.02 until -s $pf || time > $deadline;
	my $mpid = do { open(my $f, '<', $pf) or die "no pid file for $name"; local $/; <$f> };
	kill $sig, $kid if $sig;
	waitpid($kid, 0);
	ok(gone($mpid), "test process ends by $name: its mock ($mpid) is gone");
}

# --- start failures are clear and bounded
{
	local $ENV{ENRICH_MOCK_BIN} = '/nonexistent/aggk-mock';
	my $ok = eval { EnrichMock->start; 1 };
	ok(!$ok, 'missing binary: start dies');
	like($@, qr{/nonexistent/aggk-mock}, 'naming the path from ENRICH_MOCK_BIN');
}
{
	my $t0 = time;
	my $ok = eval { EnrichMock->start(args => ['--no-such-flag']); 1 };
	ok(!$ok, 'mock exits at once: start dies');
	like($@, qr/exited.*status 2/s, 'with its exit status');
	cmp_ok(time - $t0, '<', 5, 'quickly');
}

done_testing();
