# A streaming standby.  Its read calls work (enrich_status, enrich_items,
# enrich_item, enrich_batches, enrich.progress); enrich_submit refuses
# before sending anything (25006, with a hint); no worker runs there.
# Promoted, it finishes the work the primary left in flight: its workers
# poll and page the batches the primary recorded, sending nothing again.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../perl";

use EnrichMock;
use EnrichNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $mock = EnrichMock->start(start_delay_ms => 4000, items_per_second => 50);
my $primary = EnrichNode->create('primary', $mock, q{
enrich.poll_interval_min = '100ms'
enrich.poll_interval_max = '500ms'
}, allows_streaming => 1);
$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;

# a batch submitted on the primary, complete; and requests in flight
my $batch = $primary->safe_psql('postgres', q{SELECT enrich_submit('[{"personId": "sb-1"}, {"personId": "sb-2"}]')});
$mock->wait_batch($batch, timeout => 15);
$primary->safe_psql('postgres', q{
	CREATE TABLE contacts (id int PRIMARY KEY, url text, person jsonb);
	SELECT enrich_watch('contacts', 'person', linkedin_url_column => 'url');
	INSERT INTO contacts SELECT g, 'linkedin.com/in/sb-flight-' || g FROM generate_series(1, 100) g});
$primary->wait_for(q{SELECT count(*) = 100 FROM enrich.requests r WHERE r.state = 'submitting'
	AND EXISTS (SELECT 1 FROM enrich.batches b WHERE b.submission = r.submission)},
	'the primary has 100 requests in flight, their batches recorded', 30);
$primary->wait_for_catchup($standby);

my $on_standby = sub { return $standby->safe_psql('postgres', $_[0]) };
is($on_standby->('SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');
is($on_standby->(qq{SELECT status || ' ' || success_count FROM enrich_status('$batch')}), 'completed 2',
	'enrich_status works on the standby');
is($on_standby->(qq{SELECT count(*) FROM enrich_items('$batch') WHERE is_success}), 2,
	'enrich_items works on the standby');
my $item = $on_standby->(qq{SELECT item_id FROM enrich_items('$batch') LIMIT 1});
is($on_standby->(qq{SELECT (enrich_item('$batch', '$item')).item_id}), $item, 'enrich_item works on the standby');
cmp_ok($on_standby->(q{SELECT count(*) FROM enrich_batches()}), '>=', 1, 'enrich_batches works on the standby');
is($on_standby->(q{SELECT in_flight FROM enrich.progress WHERE environment = 'test'}), 100,
	'enrich.progress works on the standby');

my $sent = scalar(keys %{ $mock->stats->{submissions} });
my ($ret, $out, $err) = $standby->psql('postgres', q{SELECT enrich_submit('[{"personId": "sb-standby"}]')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  25006: /, 'enrich_submit on the standby fails with 25006');
like($err, qr/HINT:  Call enrich_submit\(\) on the primary server/, 'with a hint naming the primary');
is(scalar(keys %{ $mock->stats->{submissions} }), $sent, 'and sends nothing');
is($on_standby->(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('enrich worker', 'enrich launcher')}), 0,
	'no worker runs on the standby');

# the primary goes; the standby, promoted, finishes what it left in flight
$primary->stop('immediate');
$standby->promote;
$standby->poll_query_until('postgres', q{SELECT NOT pg_is_in_recovery()});
ok($standby->poll_query_until('postgres', q{SELECT count(*) = 100 FROM contacts WHERE person IS NOT NULL}),
	'promoted, it writes the persons of the batches the primary recorded');
my $subs = $mock->stats->{submissions};
is(scalar(grep { /sb-flight-/ && $subs->{$_} != 1 } keys %$subs), 0, 'each was sent once');
is($standby->safe_psql('postgres', q{SELECT count(*) FROM enrich.requests WHERE state = 'done'}), 100,
	'every request is done');

$standby->stop;
$mock->stop;
done_testing();
