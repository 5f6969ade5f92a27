# enrich.progress reads counters, not enrich.requests: the statement
# triggers of enrich.requests keep enrich.request_counts, the first worker
# folds it.  After each kind of change (the workers' run, a watched table,
# an admin's UPDATE and DELETE, a prepared transaction, TRUNCATE, rows
# written with the triggers off) the counters agree with a count of
# enrich.requests; done and failed count today's (UTC); oldest_queued_age
# is to the second; a role reads its own counts and can write none; the
# counting trigger serves enrich.requests only.  (How fast it reads at a
# million rows is measured by make bench.)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../perl";

use EnrichMock;
use EnrichNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $mock = EnrichMock->start();
my $node = EnrichNode->create('progress', $mock, q{
enrich.poll_interval_min = '20ms'
max_prepared_transactions = 2
});
sub sql { return $node->safe_psql('postgres', $_[0]) }
sub as { my ($role, $query) = @_; return $node->safe_psql('postgres', $query, extra_params => [ '-U', $role ]) }

# as_fails runs a statement as a role and returns its SQLSTATE (it must fail)
sub as_fails { my ($role, $query) = @_; return $node->sqlstate_of('postgres', $role, $query) }

# progress($role, $environment): the row of enrich.progress its reader sees
sub progress
{
	my ($role, $environment) = @_;
	return as($role, qq{SELECT queued || ' ' || in_flight || ' ' || waiting_retry || ' ' || done_today
		|| ' ' || failed_today FROM enrich.progress WHERE environment = '$environment'});
}

# truth($owner_filter, $environment): the same five counts read from enrich.requests
sub truth
{
	my ($filter, $environment) = @_;
	return sql(qq{SELECT count(*) FILTER (WHERE state = 'queued' AND attempts = 0) || ' ' ||
		count(*) FILTER (WHERE state IN ('submitting', 'submitted')) || ' ' ||
		count(*) FILTER (WHERE state = 'queued' AND attempts > 0) || ' ' ||
		count(*) FILTER (WHERE state = 'done' AND (completed_at AT TIME ZONE 'UTC')::date
						 = (now() AT TIME ZONE 'UTC')::date) || ' ' ||
		count(*) FILTER (WHERE state = 'failed' AND (completed_at AT TIME ZONE 'UTC')::date
						 = (now() AT TIME ZONE 'UTC')::date)
		FROM enrich.requests WHERE environment = '$environment' AND $filter});
}

sql(q{CREATE ROLE app LOGIN; CREATE ROLE bob LOGIN; CREATE ROLE auditor LOGIN;
	GRANT enrich_user TO app, bob; GRANT enrich_admin TO auditor;
	CREATE SCHEMA app AUTHORIZATION app; CREATE SCHEMA bob AUTHORIZATION bob});

# the main job: direct requests (names of every script, a person not
# found, duplicates) and a watched table with a backfill, two roles
as('app', q{INSERT INTO enrich.requests (person_id) VALUES
	('p-José-Müller'), ('p-山田太郎'), ('p-محمد-علي'), ('p-דוד'), ('p-🙂-emoji'),
	('p-notfound-1'), ('p-dup'), ('p-dup')});
as('bob', q{CREATE TABLE bob.contacts (id int PRIMARY KEY, url text, person jsonb);
	INSERT INTO bob.contacts SELECT g, 'https://www.linkedin.com/in/bob-' || g FROM generate_series(1, 30) g;
	SELECT enrich_watch('bob.contacts', 'person', linkedin_url_column => 'url', backfill => true);
	INSERT INTO bob.contacts SELECT g, 'https://www.linkedin.com/in/bob-' || g FROM generate_series(31, 40) g});
$node->wait_for(q{SELECT count(*) = 48 AND bool_and(state IN ('done', 'failed')) FROM enrich.requests},
	'every request is settled');
is($node->count_mismatches, 0, 'the counters agree with enrich.requests after the run');
is(progress('app', 'test'), '0 0 0 7 1', 'app reads its own: 7 done today, 1 failed today');
is(progress('bob', 'test'), '0 0 0 40 0', 'bob reads his own: 40 done today');
is(progress('auditor', 'test'), '0 0 0 47 1', 'a member of enrich_admin reads every role\'s');
is(progress('auditor', 'test'), truth('true', 'test'), 'which is what enrich.requests says');
ok(sql(q{SELECT done_last_minute BETWEEN 1 AND 47 FROM enrich.progress WHERE environment = 'test'}) eq 't',
	'done_last_minute counts the requests done in the last minute');

# the first worker folds the pending rows into one per key
$node->wait_for(q{SELECT NOT bool_or(pending) AND count(*) <= 8 FROM enrich.request_counts},
	'the counters are folded into a few rows', 30);
is($node->count_mismatches, 0, 'and still agree');

# an admin's UPDATE and DELETE: done yesterday is not done today
sql(q{UPDATE enrich.requests SET completed_at = completed_at - interval '1 day'
	WHERE id IN (SELECT id FROM enrich.requests WHERE owner = 'bob' ORDER BY id LIMIT 10)});
sql(q{DELETE FROM enrich.requests WHERE state = 'failed'});
is(progress('auditor', 'test'), '0 0 0 37 0', 'done today leaves out yesterday\'s; a deleted row is not counted');
is($node->count_mismatches, 0, 'the counters agree after an UPDATE and a DELETE');

# queued rows wait (no key for live); their age is to the second
sql(q{SELECT enrich_set_api_key('live', NULL)});
as('app', q{INSERT INTO enrich.requests (environment, person_id) VALUES ('live', 'p-live-1'), ('live', 'p-live-2')});
sleep(2);
is(progress('app', 'live'), '2 0 0 0 0', 'two queued live requests');
like(as('app', q{SELECT oldest_queued_age::text FROM enrich.progress WHERE environment = 'live'}),
	qr/^00:00:0[2-9]$/, 'oldest_queued_age reads in whole seconds');
is(progress('bob', 'live'), '0 0 0 0 0', 'bob does not see app\'s queue');

# a prepared transaction holds no counter row another statement needs,
# not even one of the same session
my $session = $node->background_psql('postgres', extra_params => [ '-U', 'app' ]);
$session->query_safe(q{BEGIN; INSERT INTO enrich.requests (environment, person_id) VALUES ('live', 'p-live-3');
	PREPARE TRANSACTION 'counted'});
$session->query_safe(q{SET statement_timeout = '30s';
	INSERT INTO enrich.requests (environment, person_id) VALUES ('live', 'p-live-4')});
is(progress('app', 'live'), '3 0 0 0 0', 'a statement after a prepared transaction is counted at once');
$session->query_safe(q{COMMIT PREPARED 'counted'});
$session->quit;
is(progress('app', 'live'), '4 0 0 0 0', 'the prepared one when it commits');
is($node->count_mismatches, 0, 'the counters agree after a prepared transaction');

# no role but enrich's writes the counters or borrows the trigger
is(as_fails('app', q{INSERT INTO enrich.request_counts (environment, owner, category, n)
	VALUES ('test', 'app', 'done', -100)}), '42501', 'app cannot write the counters');
is(as_fails('app', q{CREATE TABLE app.fake (environment text, owner name, state text, attempts int,
	completed_at timestamptz);
	CREATE TRIGGER fake AFTER INSERT ON app.fake REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION enrich.count_requests()}), '42501',
	'app cannot put the counting trigger on a table of its own');
is(as_fails('app', q{SELECT enrich.recount()}), '42501', 'app cannot recount');
sql(q{CREATE TABLE public.fake (environment text, owner name, state text, attempts int, completed_at timestamptz);
	CREATE TRIGGER fake AFTER INSERT ON public.fake REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION enrich.count_requests()});
is(as_fails(sql('SELECT current_user'), q{INSERT INTO public.fake VALUES ('test', 'app', 'done', 0, now())}), '39P01',
	'the counting trigger counts for enrich.requests only');

# rows written with the triggers off: enrich.recount() counts afresh, and
# a worker that starts with no counter at all does it itself
sql(q{SET session_replication_role = replica;
	INSERT INTO enrich.requests (environment, person_id) VALUES ('live', 'p-unseen-1'), ('live', 'p-unseen-2')});
is($node->count_mismatches, 1, 'rows written with the triggers off are not counted');
sql(q{SELECT enrich.recount()});
is($node->count_mismatches, 0, 'enrich.recount() counts them');
sql(q{DELETE FROM enrich.request_counts});
$node->restart;
$node->wait_for(q{SELECT count(*) > 0 FROM enrich.request_counts}, 'the first worker counts afresh', 30);
is($node->count_mismatches, 0, 'and the counters agree');
like(slurp_file($node->logfile), qr/enrich\.request_counts is empty while enrich\.requests is not; counting the requests afresh/,
	'it says so in the log');

# TRUNCATE empties the counters
sql(q{TRUNCATE enrich.requests});
is(sql(q{SELECT count(*) FROM enrich.request_counts}), 0, 'TRUNCATE empties the counters');
is(progress('auditor', 'live') . ' ' . progress('auditor', 'test'), '0 0 0 0 0 0 0 0 0 0',
	'and enrich.progress reads zeros');

$node->stop;
$mock->stop;
done_testing();
