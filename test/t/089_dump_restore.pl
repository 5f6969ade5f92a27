# Dump and restore in the middle of a run.  A database is dumped with
# pg_dump while requests are done, in flight (batches recorded, not yet
# answered), queued, and waiting in the intake as contacts of a watched
# table; its server stops.  The dump is restored into a new cluster with
# enrich preloaded; once the keys are set there (a dump has none), every
# request reaches done: the new workers poll and page the batches the old
# ones recorded, and send the rest.  Each person is sent once in all,
# across both clusters; the watched tables get their persons and go on
# queueing new rows.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../perl";

use EnrichMock;
use EnrichNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $mock = EnrichMock->start(start_delay_ms => 3000, items_per_second => 40);
my $settings = q{
enrich.batch_size = 50
enrich.poll_interval_min = '100ms'
enrich.poll_interval_max = '500ms'
};
my $old = EnrichNode->create('old', $mock, $settings);

# environment live has no key in the old cluster: what goes there waits
$old->safe_psql('postgres', q{
	SELECT enrich_set_api_key('live', NULL);
	CREATE TABLE contacts (id int PRIMARY KEY, url text, person jsonb);
	SELECT enrich_watch('contacts', 'person', linkedin_url_column => 'url');
	CREATE TABLE leads (id int PRIMARY KEY, url text, person jsonb);
	SELECT enrich_watch('leads', 'person', linkedin_url_column => 'url', environment => 'live')});

# done
$old->safe_psql('postgres', q{
	INSERT INTO contacts SELECT g, 'linkedin.com/in/dr-done-' || g FROM generate_series(1, 20) g});
$old->wait_for(q{SELECT count(*) = 20 FROM contacts WHERE person IS NOT NULL}, 'the first contacts are enriched');

# in flight: every request sent and its batch recorded, no answer yet
$old->safe_psql('postgres', q{
	INSERT INTO contacts SELECT g, 'linkedin.com/in/dr-flight-' || g FROM generate_series(21, 220) g});
$old->wait_for(q{SELECT count(*) = 200 FROM enrich.requests r
	WHERE r.state = 'submitting'
	  AND EXISTS (SELECT 1 FROM enrich.batches b WHERE b.submission = r.submission)},
	'the next contacts are in flight, their batches recorded', 60);

# queued, and contacts in the intake: names that are not ASCII among them
$old->safe_psql('postgres', q{
	INSERT INTO enrich.requests (environment, person_id)
	SELECT 'live', CASE WHEN g % 3 = 0 THEN 'dr-unicode-José-李-' || g ELSE 'dr-queued-' || g END
	FROM generate_series(1, 30) g;
	INSERT INTO leads SELECT g, 'linkedin.com/in/dr-intake-' || g FROM generate_series(1, 40) g});

my $state = q{SELECT string_agg(x, ', ' ORDER BY x) FROM (
	SELECT environment || ' ' || state || ' ' || count(*) AS x FROM enrich.requests GROUP BY environment, state
	UNION ALL SELECT 'intake ' || sum(cardinality(source_key)) FROM enrich.intake) s};
my $before = $old->safe_psql('postgres', $state);
is($before, 'intake 40, live queued 30, test done 20, test submitting 200',
	'dumped mid-run: done, in flight, queued and in the intake');
my $installation = $old->safe_psql('postgres', 'SELECT id FROM enrich.installation');

my $dump = PostgreSQL::Test::Utils::tempdir() . '/enrich.dump';
my $bindir = $old->config_data('--bindir');
command_ok([ "$bindir/pg_dump", '-Fc', '-f', $dump, '-d', $old->connstr('postgres') ], 'pg_dump');
$old->stop('immediate');

my $new = EnrichNode->create('new', $mock, $settings, extension => 0);
command_ok([ "$bindir/pg_restore", '--exit-on-error', '-d', $new->connstr('postgres'), $dump ],
	'pg_restore into a new cluster with enrich preloaded');
my $sql = sub { return $new->safe_psql('postgres', $_[0]) };

is($sql->($state), $before, 'every request and contact is restored, in its state');
is($sql->('SELECT count(*) FROM enrich.api_keys'), 0, 'the API keys are not in the dump');
is($new->count_mismatches, 0, 'the counters of enrich.progress count the restored requests (the restore\'s COPY fires the triggers)');
is($sql->(q{SELECT string_agg(source::text, ',' ORDER BY source_name) FROM enrich.watches}), 'contacts,leads',
	'the watches name the restored tables');
is($sql->(q{SELECT count(*) FROM enrich.requests WHERE source_relid IS NOT NULL
	AND source_relid NOT IN ('contacts'::regclass, 'leads'::regclass)}), 0,
	'so do the requests of watched tables');
is($sql->(q{SELECT id FROM enrich.installation ORDER BY created_at LIMIT 1}), $installation,
	'the restored database is the same installation');
my $recorded = $sql->(q{SELECT string_agg(batch_id, ',' ORDER BY batch_id) FROM enrich.batches WHERE NOT closed});
isnt($recorded, '', 'the batches in flight are restored');
cmp_ok($sql->(q{INSERT INTO enrich.requests (person_id) VALUES ('dr-after') RETURNING id}), '>',
	$sql->(q{SELECT max(id) FROM enrich.requests WHERE person_id <> 'dr-after'}),
	'a new request gets a new id (the sequence is restored)');

$sql->(sprintf(q{SELECT enrich_set_api_key('test', '%s'), enrich_set_api_key('live', '%s')},
	$mock->key_test, $mock->key_live));
$new->wait_for(q{SELECT count(*) = 0 FROM enrich.requests WHERE state <> 'done'
	AND NOT EXISTS (SELECT 1 FROM enrich.intake)}, 'with the keys set, every request is done');
is($sql->(q{SELECT count(*) FROM enrich.requests WHERE state = 'done'}), 291,
	'all 291: 250 restored, 40 from the intake, 1 new');
is($sql->(q{SELECT count(*) FILTER (WHERE person IS NOT NULL) || ' of ' || count(*) FROM contacts}), '220 of 220',
	'every contact has its person');
is($sql->(q{SELECT count(*) FILTER (WHERE person IS NOT NULL) || ' of ' || count(*) FROM leads}), '40 of 40',
	'every lead has its person');
is($sql->(qq{SELECT count(*) FROM enrich.batches WHERE batch_id = ANY (string_to_array('$recorded', ','))
	AND closed AND items_received = request_count}), scalar(split /,/, $recorded),
	'the batches the old cluster recorded were paged by the new one');
is($sql->(q{SELECT count(*) FROM enrich.requests WHERE person_id LIKE 'dr-unicode-%'
	AND person->>'fullName' !~ '^[[:ascii:]]*$'}), 10, 'persons that are not ASCII came back whole');

my $subs = $mock->stats->{submissions};
my @ours = grep { /dr-/ } keys %$subs;
is(scalar @ours, 291, 'each person was sent');
my @twice = grep { $subs->{$_} != 1 } @ours;
is(scalar @twice, 0, 'each once, across both clusters') or diag(join(', ', map { "$_: $subs->{$_}" } @twice));

# the watched tables go on
$sql->(q{INSERT INTO contacts VALUES (1001, 'linkedin.com/in/dr-later')});
$new->wait_for(q{SELECT person IS NOT NULL FROM contacts WHERE id = 1001},
	'a contact inserted after the restore is enriched');

$new->stop;
$mock->stop;
done_testing();
