# Each role sees its own enrichment.  Two application roles, app and bob,
# are given only "GRANT enrich_user": each does the whole main job (watch a
# table with a backfill, insert requests, ad hoc calls, progress, cancel)
# and cannot see, change or cancel the other's requests and batches; a
# member of enrich_admin sees everything.  An upgrade from 1.0 gives each
# request its owner, and makes the same catalog as a new installation.
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
my $node = EnrichNode->create('privacy', $mock, q{
enrich.poll_interval_min = '20ms'
});
sub sql { return $node->safe_psql('postgres', $_[0]) }
sub as { my ($role, $query) = @_; return $node->safe_psql('postgres', $query, extra_params => [ '-U', $role ]) }

# as_fails runs a statement as a role and returns its SQLSTATE (it must fail)
sub as_fails { my ($role, $query) = @_; return $node->sqlstate_of('postgres', $role, $query) }

sql(q{CREATE ROLE app LOGIN; CREATE ROLE bob LOGIN; CREATE ROLE auditor LOGIN;
	GRANT enrich_user TO app, bob; GRANT enrich_admin TO auditor;
	CREATE SCHEMA app AUTHORIZATION app; CREATE SCHEMA bob AUTHORIZATION bob});

# the main job, as each role
my %batch;
for my $r (qw(app bob))
{
	as($r, qq{CREATE TABLE $r.contacts (id int PRIMARY KEY, url text, person jsonb);
		INSERT INTO $r.contacts SELECT g, 'https://www.linkedin.com/in/$r-secret-' || g FROM generate_series(1, 3) g;
		SELECT enrich_watch('$r.contacts', 'person', linkedin_url_column => 'url', backfill => true);
		INSERT INTO $r.contacts SELECT g, 'https://www.linkedin.com/in/$r-secret-' || g FROM generate_series(4, 5) g;
		INSERT INTO enrich.requests (person_id, metadata) VALUES ('$r-direct-1', '{"crm": "$r-private"}')});
	$batch{$r} = as($r, qq{SELECT enrich_submit('[{"personId": "$r-adhoc-1", "metadata": {"crm": "$r-private"}}]')});
	like($batch{$r}, qr/^\S+$/, "$r submitted a batch");
}
$node->wait_for(q{SELECT count(*) = 10 FROM (SELECT * FROM app.contacts UNION ALL SELECT * FROM bob.contacts) c
	WHERE person IS NOT NULL}, 'both watched tables are enriched');
$node->wait_for(q{SELECT bool_and(state = 'done') FROM enrich.requests}, 'every request is done');

for my $pair ([qw(app bob)], [qw(bob app)])
{
	my ($me, $other) = @$pair;

	# the requests: only one's own, and they are the role's
	is(as($me, q{SELECT count(*) || ' ' || bool_and(owner = current_user) FROM enrich.requests}), '6 true',
		"$me sees its 6 requests, all its own");
	is(sql(qq{SELECT count(*) FROM enrich.requests WHERE owner = '$me'}), 6, "$me owns 6 requests");
	is(as($me, qq{SELECT count(*) FROM enrich.requests WHERE identifier LIKE '%$other%' OR metadata::text LIKE '%$other%'}),
		0, "$me sees none of ${other}'s identifiers or metadata");
	is(as($me, q{SELECT done_today || ' ' || queued || ' ' || failed_today FROM enrich.progress WHERE environment = 'test'}),
		'6 0 0', "enrich.progress counts ${me}'s own requests");

	# the batches: its own only, in enrich.batches and from enrich_batches
	is(as($me, q{SELECT string_agg(batch_id, ',') FROM enrich.batches}), $batch{$me},
		"$me sees only the batch it submitted in enrich.batches");
	is(as($me, q{SELECT string_agg(batch_id, ',') FROM enrich_batches()}), $batch{$me},
		"enrich_batches lists only ${me}'s batch");
	is(as($me, qq{SELECT status || ' ' || total_count FROM enrich_status('$batch{$me}')}), 'completed 1',
		"$me reads the status of its batch");
	like(as($me, qq{SELECT metadata FROM enrich_items('$batch{$me}')}), qr/"crm": "$me-private"/,
		"$me reads the items of its batch");
	my $item = as($me, qq{SELECT item_id FROM enrich_items('$batch{$me}')});
	is(as($me, qq{SELECT is_success FROM enrich_item('$batch{$me}', '$item')}), 't', "and one item");

	# the other's batch: refused with 42501
	my $other_item = sql(qq{SELECT item_id FROM enrich_items('$batch{$other}')});
	is(as_fails($me, qq{SELECT * FROM enrich_items('$batch{$other}')}), '42501',
		"enrich_items of ${other}'s batch is refused (42501)");
	is(as_fails($me, qq{SELECT * FROM enrich_status('$batch{$other}')}), '42501',
		"so is enrich_status");
	is(as_fails($me, qq{SELECT * FROM enrich_item('$batch{$other}', '$other_item')}), '42501',
		"and enrich_item");
	my $worker_batch = sql(q{SELECT batch_id FROM enrich.batches WHERE origin = 'worker' LIMIT 1});
	is(as_fails($me, qq{SELECT * FROM enrich_items('$worker_batch')}), '42501',
		"and a batch of the workers, which carries every role's requests");

	# nothing to change: no UPDATE, DELETE or owner of its choosing
	is(as_fails($me, q{UPDATE enrich.requests SET metadata = '{}'}), '42501', "$me cannot update requests");
	is(as_fails($me, q{DELETE FROM enrich.requests}), '42501', "$me cannot delete requests");
	is(as_fails($me, qq{INSERT INTO enrich.requests (person_id, owner) VALUES ('x', '$other')}), '42501',
		"$me cannot insert a request in ${other}'s name");
}

# cancel: with no live key, live requests stay queued
sql(q{SELECT enrich_set_api_key('live', NULL)});
my $app_ids = as('app', q{WITH i AS (INSERT INTO enrich.requests (environment, person_id)
	VALUES ('live', 'app-c1'), ('live', 'app-c2') RETURNING id) SELECT string_agg(id::text, ',') FROM i});
my $bob_id = as('bob', q{INSERT INTO enrich.requests (environment, person_id) VALUES ('live', 'bob-c1') RETURNING id});
is(as('app', "SELECT enrich_cancel(ARRAY[$app_ids, $bob_id])"), 2, 'app cancels its two queued requests, not bob\'s');
is(sql("SELECT string_agg(person_id || ' ' || state || ' ' || coalesce(error->>'code', '-'), ', ' ORDER BY id)
	FROM enrich.requests WHERE id IN ($app_ids, $bob_id)"),
	'app-c1 failed canceled, app-c2 failed canceled, bob-c1 queued -',
	'app\'s requests failed as canceled; bob\'s is still queued');
is(as('bob', "SELECT enrich_cancel(ARRAY[$app_ids])"), 0, 'bob cancels none of app\'s');
my $done = sql(q{SELECT id FROM enrich.requests WHERE owner = 'bob' AND state = 'done' LIMIT 1});
is(as('bob', "SELECT enrich_cancel(ARRAY[$done, $bob_id])"), 1, 'bob cancels its queued request, not a done one');

# a member of enrich_admin sees everything
is(as('auditor', q{SELECT count(DISTINCT owner) FROM enrich.requests}), 2, 'an enrich_admin sees every role\'s requests');
is(as('auditor', q{SELECT count(*) FROM enrich.batches WHERE submitted_by IN ('app', 'bob')}), 2,
	'and their batches');
like(as('auditor', qq{SELECT metadata FROM enrich_items('$batch{bob}')}), qr/bob-private/,
	'and reads any batch\'s items');

# requests of a role that does not exist (restored from another cluster):
# reported once when the workers start, kept, processed, seen by admins only
sql(q{INSERT INTO enrich.requests (person_id, owner) VALUES ('ghost-1', 'ghost_role'), ('ghost-2', 'ghost_role')});
my $log_from = -s $node->logfile;
$node->restart;
$node->wait_for(q{SELECT count(*) = 2 FROM enrich.requests WHERE owner = 'ghost_role' AND state = 'done'},
	'the requests of a role that does not exist are processed');
sleep 1;
my @lines = grep { /requests belong to role "ghost_role", which does not exist/ }
  split /\n/, substr(slurp_file($node->logfile), $log_from);
is(scalar @lines, 1, 'they are reported once, when the workers start') or diag(join("\n", @lines));
like($lines[0] // '', qr/enrich worker: 2 requests belong to role "ghost_role"/, 'with how many there are');
is(as('app', q{SELECT count(*) FROM enrich.requests WHERE owner = 'ghost_role'}), 0, 'app does not see them');
is(as('auditor', q{SELECT count(*) FROM enrich.requests WHERE owner = 'ghost_role'}), 2, 'an enrich_admin does');

# an upgrade from 1.0 gives the requests of a watched table to its owner,
# the others to the role that updates; and an upgraded catalog is the same
# as a new one
sql(q{CREATE DATABASE upgraded; CREATE DATABASE fresh});
$node->safe_psql('upgraded', q{CREATE EXTENSION enrich VERSION '1.0';
	CREATE TABLE contacts (id int PRIMARY KEY, url text, person jsonb);
	INSERT INTO contacts VALUES (1, 'https://www.linkedin.com/in/old-1'), (2, 'https://www.linkedin.com/in/old-2');
	ALTER TABLE contacts OWNER TO app;
	SELECT enrich_watch('contacts', 'person', linkedin_url_column => 'url', backfill => true);
	INSERT INTO enrich.requests (person_id) VALUES ('old-direct');
	INSERT INTO contacts VALUES (3, 'https://www.linkedin.com/in/old-3');
	ALTER EXTENSION enrich UPDATE});
is($node->safe_psql('upgraded', q{SELECT extversion FROM pg_extension WHERE extname = 'enrich'}), '1.1',
	'1.0 is updated to 1.1');
is($node->safe_psql('upgraded', q{SELECT string_agg(person_id || ' ' || owner, ', ') FROM enrich.requests}),
	'old-direct postgres', 'a request queued directly belongs to the role that updated');
is($node->safe_psql('upgraded', q{SELECT string_agg(owner || ' ' || cardinality(source_key), ', ' ORDER BY id)
	FROM enrich.intake}), 'app 2, app 1',
	'the contacts of the watched table waiting in the intake (backfilled, then inserted) belong to its owner');
is($node->safe_psql('upgraded', q{SELECT sum(cardinality(source_key)) || ' ' || (SELECT count(*) FROM enrich.requests)
	FROM enrich.intake}, extra_params => [ '-U', 'app' ]), '3 0',
	'app sees its 3 contacts after the update, and not the other request');
$node->safe_psql('fresh', 'CREATE EXTENSION enrich');
my $catalog = q{
	SELECT string_agg(x, E'\n' ORDER BY x) FROM (
		SELECT pg_describe_object(classid, objid, objsubid) AS x FROM pg_depend
		WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
		  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'enrich')
		UNION ALL
		SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || coalesce(column_default, '') || ' '
		       || is_nullable || ' ' || coalesce(col_description((table_schema || '.' || table_name)::regclass,
		                                                          ordinal_position::int), '')
		FROM information_schema.columns WHERE table_schema = 'enrich'
		UNION ALL
		SELECT polrelid::regclass || ' ' || polname || ' ' || pg_get_expr(polqual, polrelid) || ' '
		       || coalesce(pg_get_expr(polwithcheck, polrelid), '') FROM pg_policy
		UNION ALL
		SELECT c.relname || ' ' || c.relrowsecurity || ' ' || coalesce(array_to_string(c.reloptions, ','), '')
		       || ' ' || coalesce(array_to_string(c.relacl, ','), '')
		FROM pg_class c WHERE c.relnamespace = 'enrich'::regnamespace
		UNION ALL
		SELECT p.proname || ' ' || coalesce(array_to_string(p.proacl, ','), '') FROM pg_proc p
		WHERE p.oid IN (SELECT objid FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e')
	) s};
my $fresh = $node->safe_psql('fresh', $catalog);
is($node->safe_psql('upgraded', $catalog), $fresh, 'an upgraded catalog is the same as a new one')
  or diag("fresh:\n$fresh");

$node->stop;
$mock->stop;
done_testing();
