# Faults survived: with the mock at 20 % 5xx, 10 % 429, 5 % dropped
# connections, 2 % malformed bodies and 200 ms added latency, a 5,000-request
# run reaches a final state for every row, makes at most twice the HTTP
# calls of a fault-free run, and the worker never restarts.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../perl";

use EnrichMock;
use EnrichNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $mock = EnrichMock->start(start_delay_ms => 200, items_per_second => 20000);

my $node = EnrichNode->create('faults', $mock, q{
enrich.poll_interval_min = '100ms'
enrich.poll_interval_max = '1s'
enrich.retry_delay = '100ms'
enrich.retry_delay_max = '2s'
enrich.reconcile_grace = '3s'
enrich.max_in_flight = 16
});

sub calls
{
	my $stats = $mock->stats;
	my $n = 0;
	for my $endpoint (values %{ $stats->{endpoints} })
	{
		$n += $_ for values %$endpoint;
	}
	return $n;
}

# run_wave queues 5,000 requests and waits until every one is final
sub run_wave
{
	my ($prefix) = @_;
	my $t0 = time;
	$node->safe_psql('postgres', qq{
		INSERT INTO enrich.requests (person_id)
		SELECT '$prefix-' || g FROM generate_series(1, 5000) g});
	$node->wait_for(qq{
			SELECT count(*) = 0 FROM enrich.requests
			WHERE person_id LIKE '$prefix-%' AND state NOT IN ('done', 'failed')},
		"$prefix: every request reached a final state", 300);
	return time - $t0;
}

$mock->reset;
my $clean_time = run_wave('p-clean');
my $clean_calls = calls();

$mock->reset;
$mock->set_faults({ rate_5xx => 0.2, rate_429 => 0.1, rate_drop => 0.05,
		rate_malformed => 0.02, latency_ms => 200 });
my $fault_time = run_wave('p-fault');
my $fault_calls = calls();
$mock->set_faults({});

is($node->safe_psql('postgres', q{
	SELECT count(*) FROM enrich.requests WHERE person_id LIKE 'p-fault-%' AND state = 'done'}),
	5000, 'every request is done despite the faults');
cmp_ok($fault_calls, '<=', 2 * $clean_calls,
	"HTTP calls: $fault_calls with faults, $clean_calls without (at most twice)");
diag("fault-free run: $clean_calls calls in $clean_time s; with faults: $fault_calls calls in $fault_time s");

my $subs = $mock->stats->{submissions};
is(scalar(grep { /p-fault-/ && $subs->{$_} > 1 } keys %$subs), 0,
	'no identifier was submitted twice');

my $log = slurp_file($node->logfile);
my $starts = () = $log =~ /enrich worker \d+ of \d+ started/g;
is($starts, $node->safe_psql('postgres', 'SHOW enrich.workers'), 'no worker ever restarted');
unlike($log, qr/terminated by signal|exited with exit code/, 'and never crashed');

$node->stop;
$mock->stop;
done_testing();
