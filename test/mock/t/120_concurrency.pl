# Concurrent clients (one thread per connection): no lost or duplicated batches, ids or counts.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../../perl";
use Test::More;
use HTTP::Tiny;
use POSIX ();
use EnrichMock;

-x EnrichMock->bin_path or BAIL_OUT('mock binary not built (make -C test/mock)');

my $BE = '/v2/test/person/bulk-enrich';
my $m = EnrichMock->start(seed => 1, items_per_second => 200);
my ($clients, $per) = (8, 20);

my $dir = $m->dir;
my @pids;
for my $c (1 .. $clients)
{
	my $pid = fork // die "fork: $!";
	if (!$pid)
	{
		# child: its own keep-alive connection; writes "status batchId" lines
		my $h = EnrichMock->ua(keep_alive => 1, timeout => 30);
		open(my $out, '>', "$dir/client.$c") or POSIX::_exit(1);
		for my $i (1 .. $per)
		{
			my $r = $h->post($m->url . $BE, { headers => { 'x-api-key' => $m->key_test, 'content-type' => 'application/json' },
				content => EnrichMock->json_encode({ requests => [ map { { personId => "conc-$c-$i-$_" } } 1 .. 3 ] }) });
			my $j = EnrichMock::json_decode($r->{content}) // {};
			print $out "$r->{status} " . ($j->{batchId} // '-') . "\n";
			my $g = $h->get($m->url . $BE . '?limit=5', { headers => { 'x-api-key' => $m->key_test } });
			print $out "$g->{status} list\n";
		}
		close $out;
		POSIX::_exit(0);
	}
	push @pids, $pid;
}
waitpid($_, 0) for @pids;

my (@ids, %status);
for my $c (1 .. $clients)
{
	open(my $fh, '<', "$dir/client.$c") or next;
	while (<$fh>)
	{
		my ($st, $id) = split;
		$status{$st}++;
		push @ids, $id if $id ne 'list';
	}
}
is_deeply(\%status, { 202 => $clients * $per, 200 => $clients * $per }, "$clients concurrent clients: every request answered 202/200");
my %u = map { $_ => 1 } @ids;
is(scalar keys %u, $clients * $per, 'every batch id distinct');
my @seq = sort { $a <=> $b } map { /^bat_(\d{8})_/ ? $1 + 0 : -1 } @ids;
is_deeply([ map { $_ - $seq[0] } @seq ], [ 0 .. $clients * $per - 1 ], 'batch sequences contiguous');

my $s = $m->stats;
is($s->{batches}, $clients * $per, 'stats: batches');
is($s->{endpoints}{bulk_enrich}{202}, $clients * $per, 'stats: bulk_enrich 202 count');
is($s->{endpoints}{list_batches}{200}, $clients * $per, 'stats: list_batches 200 count');
cmp_ok($s->{connections}, '>=', $clients, 'stats: at least one connection per client');
is(scalar(grep { $_ == 1 } values %{ $s->{submissions} }), $clients * $per * 3, 'stats: every identifier submitted once');
is($m->request(GET => $BE)->{json}{total}, $clients * $per, 'list batches total');

# every batch completes with its 3 items
my $bad = 0;
for my $id (@ids)
{
	my $st = $m->wait_batch($id);
	$bad++ unless $st && $st->{status} eq 'completed' && $st->{successCount} == 3;
}
is($bad, 0, 'every batch completed with 3 successes');

done_testing();
