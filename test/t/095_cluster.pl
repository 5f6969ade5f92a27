# Every database of the cluster.  The launcher serves each database where
# enrich is installed (enrich.databases = '*'): three at once while a
# fourth has no enrich; CREATE EXTENSION in another while they run gets its
# workers, DROP EXTENSION stops them, DROP DATABASE of a served database
# needs no FORCE; enrich.max_workers caps the workers of the cluster, and a
# database it leaves out says so in enrich.progress and in the log, once;
# enrich.databases leaves a database out.  enrich_databases() shows them
# all.  Two databases on one API key, their workers killed with
# submissions in doubt, each adopt their own batch only, and pay each
# person once each.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../perl";

use EnrichMock;
use EnrichNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $mock = EnrichMock->start();
my $node = EnrichNode->create('cluster', $mock, q{
max_worker_processes = 24
enrich.max_workers = 12
enrich.poll_interval_min = '20ms'
enrich.poll_interval_max = '200ms'
});
my $key = $mock->key_test;
sub sql { my ($db, $query) = @_; return $node->safe_psql($db, $query) }

# enrich_in makes a database with enrich and the test key
sub enrich_in
{
	my ($db) = @_;
	sql('postgres', "CREATE DATABASE $db");
	sql($db, "CREATE EXTENSION enrich; SELECT enrich_set_api_key('test', '$key')");
}

# served returns "database state running" of each database enrich_databases() shows
sub served
{
	return sql('postgres', q{SELECT string_agg(database || ' ' || state || ' ' || workers_running, ', '
		ORDER BY database) FROM enrich_databases()});
}

# enriches shows that the workers of a database send and settle a request
sub enriches
{
	my ($db, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	sql($db, "INSERT INTO enrich.requests (person_id) VALUES ('p-$db-$what')");
	return $node->wait_for_in($db, qq{SELECT state = 'done' FROM enrich.requests WHERE person_id = 'p-$db-$what'},
		"$db is served: $what");
}

# log_since returns the lines the server logged since $from
sub log_since { my ($from) = @_; return split /\n/, substr(slurp_file($node->logfile), $from) }

# three databases with enrich, one without, at once
enrich_in($_) for qw(crm_a crm_b);
sql('postgres', 'CREATE DATABASE plain');
enriches($_, 'first') for qw(postgres crm_a crm_b);
$node->wait_for(q{SELECT count(*) = 4 FROM enrich_databases()}, 'the launcher looked at every database');
is(served(), 'crm_a served 2, crm_b served 2, plain not installed 0, postgres served 2',
	'three databases served, two workers each; none runs where enrich is not installed');
is(sql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'enrich worker'
	AND datname = 'plain'}), 0, 'no worker stays in the database without enrich');

# CREATE EXTENSION while they run; DROP EXTENSION
sql('plain', "CREATE EXTENSION enrich; SELECT enrich_set_api_key('test', '$key')");
enriches('plain', 'after CREATE EXTENSION');
my $log_from = -s $node->logfile;
sql('plain', 'DROP EXTENSION enrich');
$node->wait_for(q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'enrich worker'
	AND datname = 'plain'}, 'DROP EXTENSION stops the database\'s workers');
# they step aside for the DROP, come back, find no enrich and stop for good
my $said = sub { scalar(grep { /extension enrich is not installed in database "plain"; its workers stop/ }
	log_since($log_from)) };
my $until = time + 30;
sleep 0.2 while $said->() == 0 && time < $until;
$node->wait_for(q{SELECT state = 'not installed' AND workers_running = 0 FROM enrich_databases()
	WHERE database = 'plain'}, 'enrich_databases() says enrich is not installed there');
is($said->(), 1, 'saying so once');
sql('plain', "CREATE EXTENSION enrich; SELECT enrich_set_api_key('test', '$key')");
enriches('plain', 'after a second CREATE EXTENSION');

# DROP DATABASE of a served database, without FORCE
my ($rc, $out, $err) = $node->psql('postgres', 'DROP DATABASE crm_b');
is($rc, 0, 'DROP DATABASE of a served database succeeds without FORCE') or diag($err);
$node->wait_for(q{SELECT count(*) = 0 FROM enrich_databases() WHERE database = 'crm_b'},
	'and the launcher forgets it');
enriches('crm_a', 'after DROP DATABASE of another');

# the cap: three served databases share three workers, one each; a fourth
# gets none, says so in enrich.progress and in the log, once
$node->append_conf('postgresql.conf', "enrich.max_workers = 3");
$node->reload;
$node->wait_for(q{SELECT sum(workers_running) = 3 AND bool_and(workers_granted = 1) FROM enrich_databases()},
	'enrich.max_workers = 3: one worker each for three databases');
$log_from = -s $node->logfile;
enrich_in('crm_d');
$node->wait_for_in('crm_d', q{SELECT bool_and(worker_state = 'not running: enrich.max_workers (3) are all given to other databases')
	FROM enrich.progress}, 'a fourth database says the cap leaves it without a worker');
sql('crm_d', "INSERT INTO enrich.requests (person_id) VALUES ('p-crm_d-capped')");
sleep(1);
is(sql('crm_d', q{SELECT state FROM enrich.requests WHERE person_id = 'p-crm_d-capped'}), 'queued',
	'its request waits');
is(scalar(grep { /no worker for database "crm_d": enrich.max_workers \(3\) are all given to other databases/ }
	log_since($log_from)), 1, 'the log says so once, with a hint');
$node->append_conf('postgresql.conf', "enrich.max_workers = 12");
$node->reload;
$node->wait_for_in('crm_d', q{SELECT state = 'done' FROM enrich.requests WHERE person_id = 'p-crm_d-capped'},
	'raising the cap serves it');

# enrich.databases leaves a database out
$node->append_conf('postgresql.conf', "enrich.databases = 'postgres, crm_d, plain'");
$node->reload;
$node->wait_for(q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'enrich worker'
	AND datname = 'crm_a'}, 'a database left out of enrich.databases loses its workers');
is(sql('crm_a', q{SELECT worker_state FROM enrich.progress WHERE environment = 'test'}),
	'not running: database "crm_a" is not in enrich.databases', 'and its enrich.progress says why');
$node->append_conf('postgresql.conf', "enrich.databases = '*'");
$node->reload;
enriches('crm_a', 'back in enrich.databases');

# enrich_databases() is for superusers and enrich_admin
sql('postgres', 'CREATE ROLE app LOGIN; GRANT enrich_user TO app; CREATE ROLE auditor LOGIN; GRANT enrich_admin TO auditor');
($rc, $out, $err) = $node->psql('postgres', 'SELECT count(*) FROM enrich_databases()', extra_params => [ '-U', 'app' ]);
like($err, qr/permission denied for function enrich_databases/, 'an application role cannot list the databases');
ok($node->safe_psql('postgres', 'SELECT count(*) FROM enrich_databases()', extra_params => [ '-U', 'auditor' ]) >= 3,
	'a member of enrich_admin can');

# two databases on one key: the same persons, the same request ids, the
# answers lost and the workers killed; each adopts its own batch
my $other = EnrichMock->start(key_test => ['shared-key']);
$node->append_conf('postgresql.conf', "enrich.api_url = '@{[ $other->url ]}'");
$node->reload;
sql('postgres', 'CREATE DATABASE twin_x; CREATE DATABASE twin_y');
my %installation;
for my $db (qw(twin_x twin_y))
{
	sql($db, q{CREATE EXTENSION enrich; SELECT enrich_set_api_key('test', 'shared-key')});
	$installation{$db} = sql($db, 'SELECT id FROM enrich.installation');
}
isnt($installation{twin_x}, $installation{twin_y}, 'each database is an installation of its own');
$other->set_faults({ rate_drop_after => 1, endpoints => [qw(bulk_enrich list_batches)] });
for my $db (qw(twin_x twin_y))
{
	sql($db, q{INSERT INTO enrich.requests (person_id) SELECT 'p-twin-' || g FROM generate_series(1, 5) g});
}
my $submitted = sub {
	my $subs = $other->stats->{submissions};
	return join(',', map { $subs->{"personId:p-twin-$_"} // 0 } 1 .. 5);
};
$until = time + 30;
sleep 0.1 while $submitted->() ne '2,2,2,2,2' && time < $until;
is($submitted->(), '2,2,2,2,2', 'both databases sent p-twin-1..5 as requests 1 to 5; the answers were lost');
for my $db (qw(twin_x twin_y))
{
	is(sql($db, q{SELECT string_agg(id || ' ' || state, ',' ORDER BY id) FROM enrich.requests}),
		'1 submitting,2 submitting,3 submitting,4 submitting,5 submitting', "$db\'s requests are in doubt");
}
$log_from = -s $node->logfile;
sql('postgres', q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	WHERE backend_type = 'enrich worker' AND datname IN ('twin_x', 'twin_y')});
$other->set_faults({});
for my $db (qw(twin_x twin_y))
{
	$node->wait_for_in($db, q{SELECT count(*) = 5 FROM enrich.requests WHERE state = 'done'},
		"$db\'s restarted workers settle its requests");
	is(sql($db, q{SELECT count(*) || ' ' || count(DISTINCT r.batch_id)
		FROM enrich.requests r JOIN enrich.batches b USING (batch_id)}), '5 1', "$db: from one batch, recorded");
	is(sql($db, q{SELECT string_agg(DISTINCT split_part(i.metadata->>'enrichRef', '-', 1), ',')
		FROM enrich.batches b, enrich_items(b.batch_id) i}), $installation{$db},
		"$db: whose items echo its own installation");
}
my @adopted = grep { /adopted batch/ } log_since($log_from);
is(scalar @adopted, 2, 'one batch adopted by each database') or diag(join("\n", @adopted));
sleep 1;
is($submitted->(), '2,2,2,2,2', 'each person was paid once by each database, never again');

$node->stop;
$mock->stop;
$other->stop;
done_testing();
