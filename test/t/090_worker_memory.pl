# No leak: the workers' private memory (RssAnon, added up over the workers;
# RSS also counts the shared buffers they touch) stays within 10 % over the
# last 150,000 of 250,000 processed items, all queued the same way (so that
# as many batches, HTTP handles and connections are in use at once
# throughout).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../perl";

use EnrichMock;
use EnrichNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();

# under AddressSanitizer (make test-sanitize) memory is padded and freed
# memory held back, so private RSS says nothing about leaks there
plan skip_all => 'memory is not measurable under AddressSanitizer'
  if ($ENV{ENRICH_SANITIZE} // '') eq '1';

my $mock = EnrichMock->start();

# glibc's malloc hands freed memory back to the kernel (the top of the heap
# beyond 128 kB, and large blocks allocated with mmap), so RssAnon dips by
# some 2 MB a worker at moments and the readings are noise.  The workers
# (the postmaster's environment is theirs) keep all they freed here: their
# RssAnon is then the high-water mark of their heaps, which a leak raises
# and nothing lowers.
local $ENV{MALLOC_TRIM_THRESHOLD_} = 1024 * 1024 * 1024;
local $ENV{MALLOC_MMAP_THRESHOLD_} = 1024 * 1024 * 1024;
my $node = EnrichNode->create('memory', $mock, q{
enrich.poll_interval_min = '20ms'
});

# memory_kb returns RssAnon, VmRSS and VmHWM added up over the workers
my $pids;
sub memory_kb
{
	my $now = $node->safe_psql('postgres',
		q{SELECT string_agg(pid::text, ' ' ORDER BY pid) FROM pg_stat_activity
		  WHERE backend_type = 'enrich worker'});
	$pids //= $now;
	die "the workers restarted: $pids, then $now\n" unless $now eq $pids;
	my %m = (RssAnon => 0, VmRSS => 0, VmHWM => 0);
	for my $pid (split ' ', $now)
	{
		open my $fh, '<', "/proc/$pid/status" or die "cannot read /proc/$pid/status: $!";
		while (my $line = <$fh>) { $m{$1} += $2 if $line =~ /^(RssAnon|VmRSS|VmHWM):\s+(\d+)\s+kB/; }
	}
	return \%m;
}

# process queues requests from..to and waits until none is left in flight,
# reading the workers' RssAnon (added up) every 50 ms meanwhile; returns
# whether all were processed, and the largest RssAnon seen while busy
sub process
{
	my ($from, $to) = @_;
	$node->safe_psql('postgres', qq{
		INSERT INTO enrich.requests (linkedin_url, metadata)
		SELECT 'linkedin.com/in/mem-' || g, jsonb_build_object('g', g)
		FROM generate_series($from, $to) g});
	my $busy = 0;
	my $deadline = time + 600;
	while (time < $deadline)
	{
		my $m = memory_kb();
		$busy = $m->{RssAnon} if $m->{RssAnon} > $busy;
		return (1, $busy) if $node->safe_psql('postgres',
			q{SELECT count(*) = 0 FROM enrich.requests WHERE state NOT IN ('done', 'failed')}) eq 't';
		Time::HiRes::sleep(0.05);
	}
	return (0, $busy);
}

# The baseline is the largest reading over the 50,000 items after the
# warm-up (busy, and idle after them); the peak is the largest over the
# 150,000 after those.
my ($ok, $busy) = process(1, 50000);
ok($ok, 'warm-up: 50,000 items');
my $warm = memory_kb();

($ok, $busy) = process(50001, 100000);
ok($ok, '50,000 more items (chunk 1 of 4)');
my $base = memory_kb();
my $base_anon = $busy > $base->{RssAnon} ? $busy : $base->{RssAnon};
my $peak_anon = 0;
for my $chunk (1 .. 3)
{
	my $from = 50001 + $chunk * 50000;
	($ok, $busy) = process($from, $from + 49999);
	ok($ok, "50,000 more items (chunk " . ($chunk + 1) . " of 4)");
	my $m = memory_kb();
	note(sprintf('chunk %d of 4: RssAnon %d kB busy at most, %d kB after', $chunk + 1, $busy, $m->{RssAnon}));
	$peak_anon = $busy if $busy > $peak_anon;
	$peak_anon = $m->{RssAnon} if $m->{RssAnon} > $peak_anon;
}
my $end = memory_kb();
is($node->safe_psql('postgres', q{SELECT count(*) FROM enrich.requests WHERE state = 'done'}),
	250000, 'every item was processed');
diag(sprintf('workers after warm-up: RssAnon %d kB, VmRSS %d kB; baseline RssAnon %d kB; after 200,000 more: RssAnon %d kB, VmRSS %d kB, peak RssAnon %d kB, VmHWM %d kB',
		$warm->{RssAnon}, $warm->{VmRSS}, $base_anon, $end->{RssAnon}, $end->{VmRSS}, $peak_anon,
		$end->{VmHWM}));
cmp_ok($peak_anon, '<=', $base_anon * 1.10,
	"the workers' private memory stayed within 10 % over the last 150,000 items ($base_anon kB -> peak $peak_anon kB)");

$node->stop;
$mock->stop;
done_testing();
