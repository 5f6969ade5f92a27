# One API key's rate budget, shared by two databases.  Against a mock that
# enforces the contract's limits per key (tier 3: 5 calls/s, tier 4: 50,
# bursts of 2 s), two databases with the same key page their batches at
# once: together they stay under the key's limit (no 429), and they share
# it fairly although one has two workers and the other one (the cap,
# enrich.max_workers = 3): when the first has all its persons, the other
# has at least two thirds as many (a share of 40 % or more of the calls).
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

my $mock = EnrichMock->start(key_test => ['shared-key'], tier3 => 5, tier4 => 50, start_delay_ms => 300);
my $node = EnrichNode->create('budget', $mock, q{
max_worker_processes = 16
enrich.max_workers = 3
enrich.batch_size = 50
enrich.page_size = 5
enrich.tier3_rate = 5
enrich.tier4_rate = 50
enrich.poll_interval_min = '50ms'
enrich.poll_interval_max = '500ms'
}, extension => 0);
sub sql { my ($db, $query) = @_; return $node->safe_psql($db, $query) }

my $n = 800;
for my $db (qw(fair_a fair_b))
{
	sql('postgres', "CREATE DATABASE $db");
	sql($db, q{CREATE EXTENSION enrich; SELECT enrich_set_api_key('test', 'shared-key')});
}
$node->wait_for_in('fair_a', q{SELECT count(*) = 2 AND sum(workers_running) = 3 FROM enrich_databases()
	WHERE state = 'served'}, 'two databases served by three workers: two and one');
my %workers = map { split / / } split /\n/, sql('fair_a',
	q{SELECT database || ' ' || workers_running FROM enrich_databases()});

# both queue at once
for my $db (qw(fair_a fair_b))
{
	sql($db, "INSERT INTO enrich.requests (person_id) SELECT 'p-$db-' || g FROM generate_series(1, $n) g");
}
my %done;
my $until = time + 120;
do
{
	sleep 0.05;
	%done = map { $_ => sql($_, q{SELECT count(*) FROM enrich.requests WHERE state = 'done'}) } qw(fair_a fair_b);
} while ($done{fair_a} < $n && $done{fair_b} < $n && time < $until);
my ($first, $second) = $done{fair_a} >= $done{fair_b} ? qw(fair_a fair_b) : qw(fair_b fair_a);
is($done{$first}, $n, "$first ($workers{$first} workers) has all its persons first");
cmp_ok($done{$second} / $n, '>=', 2 / 3,
	"$second ($workers{$second} workers) has $done{$second} of $n by then: at least two thirds");
for my $db (qw(fair_a fair_b))
{
	$node->wait_for_in($db, "SELECT count(*) = $n FROM enrich.requests WHERE state = 'done'", "$db is done");
}

# together under the key's limit
my $endpoints = $mock->stats->{endpoints};
my $refused = 0;
$refused += $endpoints->{$_}{429} // 0 for keys %$endpoints;
is($refused, 0, 'no call was refused with 429: the two databases kept to one budget together');

$node->stop;
$mock->stop;
done_testing();
