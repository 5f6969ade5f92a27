# Partitions and renames of a watched table.  Rows inserted straight into
# any partition (a sub-partitioned one, a leaf, one made or attached after
# enrich_watch, one whose columns sit at other positions) are queued once
# and get their persons, as rows inserted through the parent do; an UPDATE
# of a partition's identifier is queued again; enrich_unwatch takes the
# triggers off every partition.  A renamed table stays watched; a renamed
# column makes each statement say why its rows were not queued.
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
my $node = EnrichNode->create('partitions', $mock, q{
enrich.poll_interval_min = '50ms'
enrich.poll_interval_max = '200ms'
});
my $sql = sub { return $node->safe_psql('postgres', $_[0]) };

$sql->(q{
	CREATE TABLE people (id int, region text, url text, person jsonb, PRIMARY KEY (id, region))
		PARTITION BY LIST (region);
	CREATE TABLE people_eu PARTITION OF people FOR VALUES IN ('eu') PARTITION BY RANGE (id);
	CREATE TABLE people_eu_low PARTITION OF people_eu FOR VALUES FROM (0) TO (1000);
	CREATE TABLE people_eu_high PARTITION OF people_eu FOR VALUES FROM (1000) TO (10000);
	-- a table to attach later, its columns at other positions
	CREATE TABLE people_us (junk int, url text, person jsonb, region text NOT NULL, id int NOT NULL);
	ALTER TABLE people_us DROP COLUMN junk;
	SELECT enrich_watch('people', 'person', linkedin_url_column => 'url')});
is($sql->(q{SELECT string_agg(tgrelid::regclass || ' ' || tgname, ', ' ORDER BY tgrelid::regclass::text, tgname)
	FROM pg_trigger WHERE tgname = 'enrich_enqueue_insert'}),
	'people enrich_enqueue_insert, people_eu enrich_enqueue_insert, people_eu_high enrich_enqueue_insert, '
	. 'people_eu_low enrich_enqueue_insert', 'enrich_watch puts the triggers on every partition');

$sql->(q{
	INSERT INTO people VALUES (1, 'eu', 'linkedin.com/in/part-parent');
	INSERT INTO people_eu VALUES (2, 'eu', 'linkedin.com/in/part-mid');
	INSERT INTO people_eu_low VALUES (3, 'eu', 'linkedin.com/in/part-leaf');
	INSERT INTO people_eu_high VALUES (1001, 'eu', 'linkedin.com/in/part-leaf-ü-名')});
$sql->(q{
	CREATE TABLE people_apac PARTITION OF people FOR VALUES IN ('apac');
	INSERT INTO people_apac VALUES (4, 'apac', 'linkedin.com/in/part-made-later')});
$sql->(q{
	ALTER TABLE people ATTACH PARTITION people_us FOR VALUES IN ('us');
	INSERT INTO people_us (id, region, url) VALUES (5, 'us', 'linkedin.com/in/part-attached')});
$node->wait_for(q{SELECT count(*) = 6 FROM people WHERE person IS NOT NULL},
	'rows inserted into the parent and straight into each partition get their persons');
is($sql->(q{SELECT count(*) FROM enrich.requests}), 6, 'each queued once');
is($sql->(q{SELECT count(DISTINCT source_relid::text) || ' ' || min(source_relid::text) FROM enrich.requests}),
	'1 people', 'as rows of the watched table');
is($sql->(q{SELECT person IS NOT NULL FROM people_us WHERE id = 5}), 't',
	'the attached partition, its columns elsewhere, got its person');

$sql->(q{UPDATE people_eu_low SET url = 'linkedin.com/in/part-leaf-changed' WHERE id = 3});
$node->wait_for(q{SELECT count(*) = 1 FROM enrich.requests WHERE linkedin_url = 'linkedin.com/in/part-leaf-changed'
	AND state = 'done'}, 'an UPDATE of an identifier in a partition is queued again');
my $subs = $mock->stats->{submissions};
is(scalar(grep { /part-/ && $subs->{$_} != 1 } keys %$subs), 0, 'every person was sent once');
is(scalar(grep { /part-/ } keys %$subs), 7, 'all seven');

$sql->(q{SELECT enrich_unwatch('people')});
is($sql->(q{SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'enrich_enqueue_%'}), 0,
	'enrich_unwatch takes the triggers off every partition');

# renames
$sql->(q{
	CREATE TABLE leads (id int PRIMARY KEY, url text, person jsonb);
	SELECT enrich_watch('leads', 'person', linkedin_url_column => 'url');
	ALTER TABLE leads RENAME TO prospects;
	INSERT INTO prospects VALUES (1, 'linkedin.com/in/part-renamed-table')});
$node->wait_for(q{SELECT person IS NOT NULL FROM prospects WHERE id = 1}, 'a renamed table stays watched');
$sql->(q{ALTER TABLE prospects RENAME COLUMN url TO link});
my ($ret, $out, $err) = $node->psql('postgres', q{INSERT INTO prospects VALUES (2, 'linkedin.com/in/part-renamed-column')});
is($ret, 0, 'after a column is renamed, an INSERT still succeeds');
like($err, qr/WARNING:  enrich did not queue the rows of this statement: identifier column "url" of table prospects does not exist/,
	'and says why its rows were not queued');
like($err, qr/HINT:  Call enrich_unwatch and then enrich_watch/, 'and what to do');

$node->stop;
$mock->stop;
done_testing();
