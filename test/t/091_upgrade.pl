# An upgrade from 1.0 while the workers run.  This library finds a 1.0
# catalog in the workers' database: it logs once that ALTER EXTENSION
# enrich UPDATE is due, and sends nothing.  Requests and a watched table
# queued under 1.0 wait; ALTER EXTENSION enrich UPDATE, run while the
# workers run, wakes them, and every request completes once, its person
# written to its row.  And an updated catalog is the same as a new one, as
# pg_dump shows it (every member of the extension, with --binary-upgrade).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../perl";

use EnrichMock;
use EnrichNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $mock = EnrichMock->start(start_delay_ms => 200);
my $node = EnrichNode->create('upgrade', $mock, q{
enrich.poll_interval_min = '100ms'
enrich.poll_interval_max = '500ms'
}, extension => 0);
my $sql = sub { return $node->safe_psql('postgres', $_[0]) };

my $log_from = -s $node->logfile;
$sql->(sprintf(q{
	CREATE EXTENSION enrich VERSION '1.0';
	SELECT enrich_set_api_key('test', '%s');
	CREATE TABLE contacts (id int PRIMARY KEY, url text, person jsonb);
	INSERT INTO contacts SELECT g, 'linkedin.com/in/up-backfill-' || g FROM generate_series(1, 30) g;
	SELECT enrich_watch('contacts', 'person', linkedin_url_column => 'url', backfill => true);
	INSERT INTO contacts SELECT g, 'linkedin.com/in/up-insert-' || g FROM generate_series(31, 60) g;
	INSERT INTO enrich.requests (person_id) SELECT 'up-direct-' || g FROM generate_series(1, 40) g},
	$mock->key_test));
sleep 3;
is($sql->(q{SELECT count(*) FROM enrich.requests WHERE state <> 'queued'}), 0,
	'under a 1.0 catalog the workers send nothing');
is(scalar(keys %{ $mock->stats->{submissions} }), 0, 'the API got nothing');
my @log = split /\n/, substr(slurp_file($node->logfile), $log_from);
my $workers = $sql->('SHOW enrich.workers');
is(scalar(grep { /catalog of extension enrich in database "postgres" is version 1.0; this library works with version 1.1/ } @log),
	$workers, 'each worker said so once');
is(scalar(grep { /HINT:  Run ALTER EXTENSION enrich UPDATE in that database/ } @log), $workers,
	'naming ALTER EXTENSION enrich UPDATE');
like($sql->(q{SELECT enrich_submit('[{"personId": "adhoc-under-1-0"}]', 'test')}), qr/^bat_/,
	'enrich_submit serves a 1.0 catalog too (it has no ledger nor budget to read)');

$sql->('ALTER EXTENSION enrich UPDATE');
is($sql->(q{SELECT extversion FROM pg_extension WHERE extname = 'enrich'}), '1.1', 'updated to 1.1');
is($node->count_mismatches, 0, 'the update counts the requests of 1.0 for enrich.progress');
$node->wait_for(q{SELECT count(*) = 100 FROM enrich.requests WHERE state = 'done'},
	'after the update, every request is done');
is($sql->(q{SELECT count(*) FROM contacts WHERE person IS NULL}), 0, 'every contact has its person');
my $subs = $mock->stats->{submissions};
is(scalar(grep { /up-/ } keys %$subs), 100, 'each person was sent');
is(scalar(grep { /up-/ && $subs->{$_} != 1 } keys %$subs), 0, 'once');
$sql->(q{INSERT INTO contacts VALUES (61, 'linkedin.com/in/up-after')});
$node->wait_for(q{SELECT person IS NOT NULL FROM contacts WHERE id = 61}, 'the watch goes on after the update');

# the catalog of an updated database is the same as a new one's
$sql->(q{CREATE DATABASE updated; CREATE DATABASE fresh});
$node->safe_psql('updated', q{CREATE EXTENSION enrich VERSION '1.0'; ALTER EXTENSION enrich UPDATE});
$node->safe_psql('fresh', q{CREATE EXTENSION enrich});
my $bindir = $node->config_data('--bindir');
my %schema;
for my $db (qw(updated fresh))
{
	my ($out, $err);
	IPC::Run::run([ "$bindir/pg_dump", '--schema-only', '--binary-upgrade', '-d', $node->connstr($db) ],
		'>', \$out, '2>', \$err)
	  or BAIL_OUT("pg_dump $db: $err");
	# the OIDs and transaction ids binary upgrade preserves differ from
	# database to database
	$out =~ s/'\{[0-9,]+\}'/'{oids}'/g;
	$out =~ s/(relfrozenxid|relminmxid|WHERE oid) = '\d+'/$1 = 'n'/g;
	$schema{$db} = join("\n", grep { !/binary_upgrade_set_next|^-- Dumped|^\\restrict|^\\unrestrict/ } split /\n/, $out);
}
cmp_ok(length $schema{fresh}, '>', 10000, 'pg_dump --binary-upgrade shows the extension\'s members');
like($schema{fresh}, qr/ALTER EXTENSION enrich ADD TABLE enrich\.installation/, 'those of 1.1 among them');
unless (is($schema{updated}, $schema{fresh}, 'pg_dump --schema-only: an updated database is the same as a new one'))
{
	my $dir = $ENV{ENRICH_DEBUG_DIR} // PostgreSQL::Test::Utils::tempdir();
	for my $db (keys %schema)
	{
		open(my $fh, '>', "$dir/$db.sql") or die;
		print $fh $schema{$db};
		close $fh;
	}
	diag(join("\n", (split /\n/, `diff -u $dir/fresh.sql $dir/updated.sql`)[0 .. 60]));
}

$node->stop;
$mock->stop;
done_testing();
