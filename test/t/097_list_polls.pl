# The tier 4 budget goes to pages of items.  While several batches wait
# for the API (pending, or processing with no full page ready), a worker
# asks for their statuses with one list call (the newest batches of the
# key, their statuses with them) instead of one status poll each, and
# pages a batch as soon as the list shows a page ready.  Fifty batches
# waiting at once take a few list calls, not fifty status polls; every
# request is done, each person sent once.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../perl";

use EnrichMock;
use EnrichNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $mock = EnrichMock->start(start_delay_ms => 1500, items_per_second => 200);
my $node = EnrichNode->create('list_polls', $mock, q{
enrich.batch_size = 100
enrich.poll_interval_min = '50ms'
});
my $n = 5000;

$node->safe_psql('postgres', "INSERT INTO enrich.requests (person_id) SELECT 'p-list-' || g FROM generate_series(1, $n) g");
$node->wait_for("SELECT count(*) = $n FROM enrich.requests WHERE state = 'done'", 'every request is done');
my $stats = $mock->stats;
my $calls = sub { my ($ep) = @_; my $c = 0; $c += $_ for values %{ $stats->{endpoints}{$ep} // {} }; return $c };
is($calls->('bulk_enrich'), 50, 'fifty bulk enriches');
cmp_ok($calls->('list_batches'), '>=', 1, 'the waiting batches were listed (' . $calls->('list_batches') . ' list calls)');
cmp_ok($calls->('batch_status'), '<', 25,
	'with fewer status polls than half the batches (' . $calls->('batch_status') . ' for 50 batches)');
is($calls->('list_items'), $n / 50, 'and one page per 50 items: the pages were read full');
my $subs = $stats->{submissions};
is(scalar(grep { $subs->{$_} != 1 } grep { /p-list-/ } keys %$subs), 0, 'each person was sent once');
is(scalar(grep { /p-list-/ } keys %$subs), $n, 'every person was sent');

$node->stop;
$mock->stop;
done_testing();
