# Two workers, a duplicate and its lead: one worker claims a request as a
# duplicate of a request in flight (its lead) while the other worker
# settles that lead (the lead's batch is that worker's share).  The claim
# is held open on purpose: a third session's uncommitted request in flight
# makes the claim wait on the unique index of identifiers in flight.  The
# lead must not be settled before the duplicate's claim commits, or the
# duplicate waits for it forever: the worker settling it waits for the
# claim, then settles the duplicate with it.
#
# Which worker claims and which one polls the lead's batch is not ours to
# choose: when the claiming worker is also the lead's (then nobody settles
# the lead during the claim), the round proves nothing and is tried again,
# at most 8 times.
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

# batches stay pending for 1.5 s, then complete at once
my $mock = EnrichMock->start(start_delay_ms => 1500, items_per_second => 0);

my $node = EnrichNode->create('claimrace', $mock, q{
enrich.poll_interval_min = '20ms'
enrich.poll_interval_max = '100ms'
});

sub sql { return $node->safe_psql('postgres', $_[0]); }

$node->wait_for(q{SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'enrich worker'},
	'two workers run');

my $raced = 0;
for my $round (1 .. 8)
{
	my $lead = "p-lead-$round";
	my $blocker = "p-blocker-$round";

	# the lead, sent and waiting in its batch
	sql("INSERT INTO enrich.requests (person_id) VALUES ('$lead')");
	$node->wait_for(qq{SELECT EXISTS (SELECT 1 FROM enrich.requests r JOIN enrich.batches b
			ON b.submission = r.submission WHERE r.person_id = '$lead' AND r.state = 'submitting')},
		"round $round: the lead is in flight in its batch", 20)
	  or last;

	# an uncommitted request in flight for the blocker's identifier
	my $session = $node->background_psql('postgres');
	$session->query_safe(qq{BEGIN;
		INSERT INTO enrich.requests (person_id, state, submission) VALUES ('$blocker', 'submitting', -$round)});

	# the duplicate and the blocker's twin, claimed together: the claim
	# waits for that session
	sql("INSERT INTO enrich.requests (person_id) VALUES ('$lead'), ('$blocker')");
	$node->wait_for(q{SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'enrich worker'
			AND wait_event_type = 'Lock' AND query = 'enrich: claiming requests')},
		"round $round: a worker's claim waits for the uncommitted request", 20)
	  or last;

	# the lead's batch completes meanwhile: the other worker settles the
	# lead, or waits for the claim to do so
	my $deadline = Time::HiRes::time() + 5;
	my $settling = '';
	while (Time::HiRes::time() < $deadline)
	{
		$settling = sql(qq{
			SELECT CASE
				WHEN (SELECT state FROM enrich.requests WHERE person_id = '$lead' AND duplicate_of IS NULL
					  ORDER BY id LIMIT 1) <> 'submitting' THEN 'settled during the claim'
				WHEN EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'enrich worker'
					  AND wait_event_type = 'Lock' AND query <> 'enrich: claiming requests')
					THEN 'waits for the claim'
				ELSE '' END});
		last if $settling ne '';
		Time::HiRes::sleep(0.05);
	}
	$session->query_safe('ROLLBACK');
	$session->quit;

	if ($settling ne '')
	{
		$raced = 1;
		note("round $round: the lead's worker $settling");
		$node->wait_for(qq{SELECT count(*) = 2 FROM enrich.requests WHERE person_id = '$lead' AND state = 'done'},
			'the duplicate claimed while the other worker settled its lead is done too', 20);
		is(sql(qq{SELECT count(person) || ' ' || count(DISTINCT person) FROM enrich.requests
				  WHERE person_id = '$lead'}),
			'2 1', 'with its lead\'s person');
		is($mock->stats->{submissions}{"personId:$lead"}, 1, 'the lead alone was sent');
		last;
	}
	note("round $round: the claiming worker polls the lead's batch itself; again");
	$node->wait_for(q{SELECT count(*) = 0 FROM enrich.requests WHERE state NOT IN ('done', 'failed')},
		"round $round: the queue is settled", 30);
}
ok($raced, 'a claim of a duplicate met the settling of its lead by the other worker');
$node->wait_for(q{SELECT count(*) = 0 FROM enrich.requests WHERE state NOT IN ('done', 'failed')},
	'nothing is left in flight');

$node->stop;
$mock->stop;
done_testing();
