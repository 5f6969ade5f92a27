# Two workers, a duplicate and its lead: one worker claims a request as a
# duplicate of a request in flight (its lead) while the other worker
# settles that lead (the lead's batch is that worker's share).  The lead
# must not be settled before the duplicate's claim commits, or the
# duplicate waits for it forever: the worker settling it waits for the
# claim, then settles the duplicate with it.
#
# The race is set up, not waited for.  A session holds the lead's batch
# row, so the lead's worker stops in its first status poll and cannot claim
# the duplicate itself; the other worker claims it, and a second session's
# uncommitted request in flight holds that claim open on the unique index
# of identifiers in flight.  Then the lead's worker is let go: it pages the
# lead's batch while the claim waits.
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

my $lead = 'p-lead';
my $blocker = 'p-blocker';

# the lead, sent and waiting in its batch
sql("INSERT INTO enrich.requests (person_id) VALUES ('$lead')");
$node->wait_for(qq{SELECT EXISTS (SELECT 1 FROM enrich.requests r JOIN enrich.batches b
		ON b.submission = r.submission WHERE r.person_id = '$lead' AND r.state = 'submitting')},
	'the lead is in flight in its batch', 20);
my $batch = sql(qq{SELECT b.batch_id FROM enrich.requests r JOIN enrich.batches b
		ON b.submission = r.submission WHERE r.person_id = '$lead'});

# the lead's worker stops when it records a status of the batch
my $holder = $node->background_psql('postgres');
$holder->query_safe(qq{BEGIN; SELECT 1 FROM enrich.batches WHERE batch_id = '$batch' FOR UPDATE});
$node->wait_for(q{SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'enrich worker'
		AND wait_event_type = 'Lock' AND query = 'enrich: recording a batch status')},
	"the lead's worker waits to record the status of the lead's batch", 20);

# an uncommitted request in flight for the blocker's identifier
my $session = $node->background_psql('postgres');
$session->query_safe(qq{BEGIN;
	INSERT INTO enrich.requests (person_id, state, submission) VALUES ('$blocker', 'submitting', -1)});

# the duplicate and the blocker's twin, claimed together by the other
# worker: the claim waits for that session
sql("INSERT INTO enrich.requests (person_id) VALUES ('$lead'), ('$blocker')");
$node->wait_for(q{SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'enrich worker'
		AND wait_event_type = 'Lock' AND query = 'enrich: claiming requests')},
	"the other worker's claim waits for the uncommitted request", 20);

# the lead's worker goes on: the batch completes and it pages the items;
# it settles the lead at once, or waits for the claim to do so
$holder->query_safe('COMMIT');
$holder->quit;
my $deadline = Time::HiRes::time() + 30;
my $settling = '';
while (Time::HiRes::time() < $deadline)
{
	$settling = sql(qq{
		SELECT CASE
			WHEN (SELECT state FROM enrich.requests WHERE person_id = '$lead' AND duplicate_of IS NULL
				  ORDER BY id LIMIT 1) <> 'submitting' THEN 'settled the lead during the claim'
			WHEN EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'enrich worker'
				  AND wait_event_type = 'Lock' AND query = 'enrich: applying a page of items')
				THEN 'waits for the claim'
			ELSE '' END});
	last if $settling ne '';
	Time::HiRes::sleep(0.05);
}
isnt($settling, '', "the lead's worker came to the lead while the claim waited");
note("the lead's worker $settling");
$session->query_safe('ROLLBACK');
$session->quit;

$node->wait_for(qq{SELECT count(*) = 2 FROM enrich.requests WHERE person_id = '$lead' AND state = 'done'},
	'the duplicate claimed while the other worker settled its lead is done too', 20);
is(sql(qq{SELECT count(person) || ' ' || count(DISTINCT person) FROM enrich.requests
		  WHERE person_id = '$lead'}),
	'2 1', 'with its lead\'s person');
is($mock->stats->{submissions}{"personId:$lead"}, 1, 'the lead alone was sent');
$node->wait_for(q{SELECT count(*) = 0 FROM enrich.requests WHERE state NOT IN ('done', 'failed')},
	'nothing is left in flight');

$node->stop;
$mock->stop;
done_testing();
