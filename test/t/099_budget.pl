# Budgets and the ledger.  enrich_set_budget caps the requests an
# environment submits per UTC day and month, counted in enrich.usage (the
# ledger the workers write): at the limit nothing more is sent, rows stay
# queued, enrich.progress says why and until when, enrich_submit refuses
# with 53400; a restart forgets nothing; a raised limit or the next day
# (the test moves the ledger's rows a day back) lets the rest go.  A
# backfill of 30,000 under a budget of 10,000 a day submits exactly 10,000,
# the persons reused counting as free.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../perl";

use EnrichMock;
use EnrichNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $mock = EnrichMock->start;
my $node = EnrichNode->create('budget', $mock, q{
enrich.poll_interval_min = '50ms'
enrich.poll_interval_max = '500ms'
});

# how many requests of the mock's persons p-budget-* were submitted, and the most any one was
sub sent
{
	my $subs = $mock->stats->{submissions};
	my @counts = map { $subs->{$_} } grep { /^personId:p-budget-/ } keys %$subs;
	my $max = 0;
	$_ > $max and $max = $_ for @counts;
	my $total = 0;
	$total += $_ for @counts;
	return ($total, $max);
}

# the SQLSTATE of a query run as a role (the superuser: undef)
sub fails
{
	my ($query, $role) = @_;
	return $node->sqlstate_of('postgres', $role // $node->safe_psql('postgres', 'SELECT current_user'), $query);
}

sub today { $node->safe_psql('postgres', q{SELECT coalesce(sum(submitted), 0) FROM enrich.usage
	WHERE environment = 'test' AND day = (now() AT TIME ZONE 'UTC')::date}) }

# 500 persons enriched before any budget
$node->safe_psql('postgres', q{INSERT INTO enrich.requests (person_id)
	SELECT 'p-budget-' || g FROM generate_series(1, 500) g});
$node->wait_for(q{SELECT count(*) = 500 FROM enrich.requests WHERE state = 'done'}, 'the first 500 are done');
$node->wait_for(q{SELECT coalesce(sum(submitted), 0) = 500 AND sum(done) = 500 FROM enrich.usage WHERE environment = 'test'},
	'the ledger counts them: 500 submitted, 500 done');

# a budget of 10,000 a day; a backfill of 30,000 of which 500 are known
my $first = $node->safe_psql('postgres', 'SELECT max(id) FROM enrich.requests');
$node->safe_psql('postgres', q{SELECT enrich_set_budget('test', 10000, NULL)});
$node->safe_psql('postgres', q{INSERT INTO enrich.requests (person_id)
	SELECT 'p-budget-' || g FROM generate_series(1, 30000) g});
$node->wait_for(q{SELECT worker_state LIKE 'paused: daily budget reached (10000 of 10000) until %'
	FROM enrich.progress WHERE environment = 'test'}, 'at the limit, enrich.progress says why and until when');
$node->wait_for(q{SELECT count(*) = 0 FROM enrich.requests WHERE state IN ('submitting', 'submitted')},
	'what was sent comes back');
is(today(), 10000, 'exactly 10,000 were submitted today');
my ($total, $max) = sent();
is($total, 10000, 'the API got exactly 10,000 requests');
is($max, 1, 'none twice');
is($node->safe_psql('postgres', qq{SELECT count(*) FILTER (WHERE reused_from IS NOT NULL), count(*) FILTER (WHERE state = 'queued'),
	count(*) FILTER (WHERE state = 'failed') FROM enrich.requests WHERE id > $first}),
	'500|20000|0', 'the 500 known persons were reused for free; 20,000 wait queued; none failed');
is($node->safe_psql('postgres', q{SELECT reused FROM enrich.usage WHERE environment = 'test'}), 500,
	'the ledger counts the reused ones as credits saved');
like($node->safe_psql('postgres', q{SELECT worker_state FROM enrich.progress WHERE environment = 'test'}),
	qr/until \d{4}-\d\d-\d\d 00:00:00\+00$/, 'until the next UTC midnight');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'enrich worker'}), 2,
	'the workers wait');
my $log_lines = () = slurp_file($node->logfile) =~ /submits nothing more: daily budget reached/g;
is($log_lines, 1, 'the pause is logged once');

# enrich_submit refuses past the budget, before sending anything
is(fails(q{SELECT enrich_submit('[{"personId": "p-budget-raw"}]', 'test')}), '53400',
	'enrich_submit refuses with 53400');
like(($node->psql('postgres', q{SELECT enrich_submit('[{"personId": "p-budget-raw"}]', 'test')}))[2],
	qr/leaves 0 requests, fewer than the 1 to send.*\n.*DETAIL:.*daily budget reached.*\n.*HINT:.*enrich_set_budget/s, 'saying why, with a hint');

# a restart forgets nothing
$node->restart;
sleep 2;
is(today(), 10000, 'after a restart, nothing more is submitted');
is((sent())[0], 10000, 'nor sent');

# a raised limit lets more go at once
$node->safe_psql('postgres', q{SELECT enrich_set_budget('test', 15000, NULL)});
$node->wait_for(q{SELECT worker_state LIKE 'paused: daily budget reached (15000 of 15000)%'
	FROM enrich.progress WHERE environment = 'test'}, 'a raised limit is used up to its end');
is(today(), 15000, 'exactly 15,000 today');

# the next day: the ledger's rows of today moved a day back
$node->safe_psql('postgres', q{BEGIN; LOCK TABLE enrich.usage_counts IN EXCLUSIVE MODE;
	UPDATE enrich.usage_counts SET day = day - 1; COMMIT; SELECT enrich_wake()});
$node->wait_for(q{SELECT count(*) = 30500 FROM enrich.requests WHERE state = 'done'}, 'the next day, the rest is done');
($total, $max) = sent();
is($total, 30000, 'every person was sent');
is($max, 1, 'once');
is(today(), 15000, 'the new day has its own count: the 15,000 left, exactly its limit');
like($node->safe_psql('postgres', q{SELECT worker_state FROM enrich.progress WHERE environment = 'test'}),
	qr/^paused: daily budget reached \(15000 of 15000\)/, 'which it reached');

# a monthly limit; no limit
$node->safe_psql('postgres', q{SELECT enrich_set_budget('test', NULL, 100)});
$node->safe_psql('postgres', q{INSERT INTO enrich.requests (person_id) VALUES ('p-budget-month')});
$node->wait_for(q{SELECT worker_state LIKE 'paused: monthly budget reached (% of 100) until %'
	FROM enrich.progress WHERE environment = 'test'}, 'a monthly budget pauses too');
$node->safe_psql('postgres', q{SELECT enrich_set_budget('test', NULL, NULL)});
$node->wait_for(q{SELECT state = 'done' FROM enrich.requests WHERE person_id = 'p-budget-month'},
	'with no budget, the request goes');
is($node->safe_psql('postgres', q{SELECT count(*) FROM enrich.budgets}), 0, 'and no budget is kept');

# the ledger counts the calls
$node->wait_for(q{SELECT sum(done) = 30001 FROM enrich.usage WHERE environment = 'test'},
	'every request the API answered is counted once (the reused ones apart)')
  or diag($node->safe_psql('postgres', q{SELECT * FROM enrich.usage}));
my ($bulk, $items) = split /\|/, $node->safe_psql('postgres', q{
	SELECT sum(bulk_enrich_calls), sum(items_calls) FROM enrich.usage WHERE environment = 'test'});
cmp_ok($bulk, '>=', 31, "bulk enrich calls are counted ($bulk)");
cmp_ok($items, '>=', 601, "pages of items too ($items for 30,001 persons, 50 a page)");

# arguments and rights
is(fails(q{SELECT enrich_set_budget('test', -1, NULL)}), '22023', 'a negative limit is refused');
like(($node->psql('postgres', q{SELECT enrich_set_budget('test', 5, -1)}))[2], qr/per_month must not be negative/,
	'naming the argument');
is(fails(q{SELECT enrich_set_budget('staging', 1, 1)}), '22023', 'an unknown environment too');
$node->safe_psql('postgres', q{CREATE ROLE clerk LOGIN; CREATE ROLE boss LOGIN; GRANT enrich_admin TO boss;
	GRANT USAGE ON SCHEMA enrich TO clerk, boss});
is(fails(q{SELECT enrich_set_budget('test', 1, 1)}, 'clerk'), '42501',
	'a role that is not enrich_admin may not set a budget');
is(fails(q{SELECT * FROM enrich.usage}, 'clerk'), '42501', 'nor read the ledger');
is(fails(q{SELECT * FROM enrich.usage}, 'boss'), 'no error', 'a member of enrich_admin reads it');
$node->safe_psql('postgres', q{SET ROLE boss; SELECT enrich_set_budget('live', 7, NULL)});
is($node->safe_psql('postgres', q{SELECT per_day || ' ' || set_by FROM enrich.budgets WHERE environment = 'live'}),
	'7 boss', 'a member of enrich_admin may, and is named');

$node->stop;
$mock->stop;
done_testing();
