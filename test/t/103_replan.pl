# A worker that runs for long keeps its plans fit for enrich.requests as
# the table is now: after a TRUNCATE of the queue, the
# table's growth counts afresh, and the worker analyzes the emptied table
# itself when it has grown, as it does in a new database.  Without that,
# the plans made for the empty table (no statistics) stayed in use while
# it grew back, and claiming 1,000 requests took 300 ms instead of a few.
# Autovacuum is off here: every ANALYZE of enrich.requests is the worker's.
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
my $node = EnrichNode->create('replan', $mock, q{
autovacuum = off
enrich.workers = 1
});

my $n = 20_000;

# fill queues $n requests named after $tag and waits until all are done
sub fill
{
	my ($tag) = @_;
	$node->safe_psql('postgres', qq{
		INSERT INTO enrich.requests (linkedin_url, metadata)
		SELECT 'https://www.linkedin.com/in/$tag-' || g, jsonb_build_object('row', g)
		FROM generate_series(1, $n) g});
	$node->wait_for(qq{SELECT count(*) = $n FROM enrich.requests WHERE state = 'done'},
		"$tag: $n requests are done");
}

# analyzed returns how often enrich.requests was analyzed, and whether its
# pg_class row says it was since its storage was made
sub analyzed
{
	return split /\|/, $node->safe_psql('postgres', q{
		SELECT s.analyze_count + s.autoanalyze_count, c.reltuples >= 0
		FROM pg_catalog.pg_stat_all_tables s JOIN pg_catalog.pg_class c ON c.oid = s.relid
		WHERE s.relid = 'enrich.requests'::regclass});
}

my ($count, $known) = analyzed();
is($count, 0, 'a new queue was never analyzed (autovacuum is off)');

fill('first');
my ($first, $first_known) = analyzed();
cmp_ok($first, '>=', 1, 'the worker analyzed the queue it saw grow');
is($first_known, 't', 'the queue has statistics');
my $blocks = $node->safe_psql('postgres', q{SELECT pg_relation_size('enrich.requests') / 8192});
cmp_ok($blocks, '>', 64, "the queue outgrew the first mark ($blocks blocks)");

# emptied as a DBA might, the same worker goes on (no restart)
my $pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'enrich worker'});
$node->safe_psql('postgres', 'TRUNCATE enrich.requests, enrich.batches');
my (undef, $truncated_known) = analyzed();
is($truncated_known, 'f', 'TRUNCATE forgot the statistics of the queue');

fill('second');
my ($second, $second_known) = analyzed();
cmp_ok($second, '>', $first, 'the worker analyzed the emptied queue again as it grew back');
is($second_known, 't', 'the refilled queue has statistics');
is($node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'enrich worker'}),
	$pid, 'the same worker served both fills');

my $subs = $mock->stats->{submissions};
is(scalar(grep { $subs->{$_} > 1 } keys %$subs), 0, 'no identifier was submitted twice');

$node->stop;
$mock->stop;
done_testing();
