# The workers' database comes and goes.  The launcher, connected to no
# database, starts the workers of enrich.database when it exists: while it
# does not, one log line says so (with the setting and a hint), not a FATAL
# every few seconds.  DROP DATABASE, CREATE DATABASE ... TEMPLATE and ALTER
# DATABASE ... RENAME of the workers' database succeed without FORCE: the
# workers step out of the way and come back when the database is there
# again.  And CREATE EXTENSION enrich SCHEMA x puts the functions in x,
# except x = enrich, refused with a hint.
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
my $node = EnrichNode->create('databases', $mock, q{
enrich.database = 'crm'
enrich.poll_interval_min = '50ms'
enrich.poll_interval_max = '200ms'
}, extension => 0);
my $sql = sub { return $node->safe_psql('postgres', $_[0]) };
my $workers = $sql->('SHOW enrich.workers');

# log_since returns the lines the server logged since $from
sub log_since
{
	my ($from) = @_;
	return split /\n/, substr(slurp_file($node->logfile), $from);
}

# fatal returns the FATAL lines among @_ but the stops of workers stepping aside
sub fatal
{
	return grep { /FATAL/ && !/terminating background worker "enrich worker" due to administrator command/ } @_;
}

sub worker_count
{
	return $sql->(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'enrich worker'});
}

# serve makes database crm with enrich and a key, and shows a request done
sub serve
{
	my ($what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	$node->safe_psql('crm', sprintf(q{
		CREATE EXTENSION IF NOT EXISTS enrich;
		SELECT enrich_set_api_key('test', '%s');
		INSERT INTO enrich.requests (person_id) VALUES ('db-%s')}, $mock->key_test, $what));
	ok($node->poll_query_until('crm', qq{SELECT state = 'done' FROM enrich.requests WHERE person_id = 'db-$what'}),
		"$what: the workers serve crm");
}

# a missing database: said once, no FATAL
sleep 3;
my @lines = log_since(0);
is(scalar(grep { /enrich launcher: database "crm" named by enrich.database does not exist/ } @lines), 1,
	'a missing enrich.database is logged once');
is(scalar(grep { /HINT:  Create the database \(and the extension enrich in it\)/ } @lines), 1, 'with a hint');
is(scalar(fatal(@lines)), 0, 'and no FATAL') or diag(join("\n", fatal(@lines)));
is(worker_count(), 0, 'no worker runs meanwhile');
is($sql->(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'enrich launcher' AND datid IS NULL}), 1,
	'the launcher runs, connected to no database');

$sql->('CREATE DATABASE crm');
serve('created');
is(worker_count(), $workers, 'every worker runs');

# a role that may not drop, rename or copy crm stops no worker by trying
my $pids = sub { $sql->(q{SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity
	WHERE backend_type = 'enrich worker'}) };
my $before = $pids->();
$sql->('CREATE ROLE mallory LOGIN CREATEDB');
for my $try ('DROP DATABASE crm', 'ALTER DATABASE crm RENAME TO crm2', 'CREATE DATABASE mine TEMPLATE crm')
{
	my ($ret, $out, $err) = $node->psql('postgres', $try, extra_params => [ '-U', 'mallory' ]);
	like($err, qr/ERROR:  (must be owner|permission denied)/, "mallory: $try is refused");
}
sleep 1.5;
is($pids->(), $before, 'and the workers never stopped');

# CREATE DATABASE ... TEMPLATE of the workers' database
my $t0 = time;
$sql->('CREATE DATABASE crm_copy TEMPLATE crm');
pass('CREATE DATABASE crm_copy TEMPLATE crm succeeds without FORCE');
cmp_ok(time - $t0, '<', 5, 'without waiting for the workers to time out');
serve('after-template');
is($node->safe_psql('crm_copy', q{SELECT count(*) FROM enrich.requests WHERE person_id = 'db-created'}), 1,
	'the copy has what crm had');

# DROP DATABASE of the workers' database, and crm made again
my $from = -s $node->logfile;
$sql->('DROP DATABASE crm');
pass('DROP DATABASE crm succeeds without FORCE');
sleep 2;
@lines = log_since($from);
is(scalar(grep { /database "crm" named by enrich.database does not exist/ } @lines), 1,
	'the launcher says once that crm is gone');
is(scalar(fatal(@lines)), 0, 'no FATAL but the workers\' stops') or diag(join("\n", fatal(@lines)));
is(scalar(grep { /terminating background worker "enrich worker"/ } @lines), $workers, 'each worker stopped once');
$sql->('CREATE DATABASE crm');
serve('made-again');

# ALTER DATABASE ... RENAME, and back
$sql->('ALTER DATABASE crm RENAME TO crm_old');
pass('ALTER DATABASE crm RENAME succeeds');
$sql->('ALTER DATABASE crm_old RENAME TO crm');
serve('renamed-back');
is(scalar(fatal(log_since(0))), 0, 'no other FATAL in the whole log') or diag(join("\n", fatal(log_since(0))));

# CREATE EXTENSION enrich SCHEMA
my ($ret, $out, $err) = $node->psql('crm_copy', 'DROP EXTENSION enrich; CREATE EXTENSION enrich SCHEMA enrich');
like($err, qr/ERROR:  extension "enrich" cannot be installed in schema "enrich"/,
	'CREATE EXTENSION enrich SCHEMA enrich is refused');
like($err, qr/HINT:  Leave SCHEMA out .* or name another schema/, 'with a hint saying which schema to use');
$node->safe_psql('crm_copy', 'CREATE SCHEMA app; CREATE EXTENSION enrich SCHEMA app');
is($node->safe_psql('crm_copy', q{SELECT count(*) FROM pg_proc WHERE proname = 'enrich_submit'
	AND pronamespace = 'app'::regnamespace}), 1, 'CREATE EXTENSION enrich SCHEMA app puts the functions in app');

$node->stop;
$mock->stop;
done_testing();
