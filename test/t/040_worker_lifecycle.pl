# The worker's life: woken at commit (not by polling), idle without a single
# query, settings reloaded on SIGHUP, paused by a refused key and resumed by
# enrich_set_api_key, stopped by SIGTERM mid-run with nothing lost and
# nothing paid twice (what it sent and did not record is reconciled),
# quiet after DROP EXTENSION, and never taking a batch of an earlier
# installation for its own after CREATE EXTENSION.
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
my $other = EnrichMock->start(key_test => ['other-key']);

# pg_stat_statements, preloaded beside enrich, counts the idle worker's queries
my $node = EnrichNode->create('lifecycle', $mock, q{
shared_preload_libraries = 'pg_stat_statements, enrich'
pg_stat_statements.track = all
enrich.poll_interval_min = '10s'
enrich.poll_interval_max = '10s'
});
$node->safe_psql('postgres', 'CREATE EXTENSION pg_stat_statements');

# wake at commit: nothing happens before the commit, the person arrives right after
my $session = $node->background_psql('postgres');
$session->query_safe(q{BEGIN; INSERT INTO enrich.requests (person_id) VALUES ('p-wake')});
sleep 1;
is($node->safe_psql('postgres', q{SELECT count(*) FROM enrich.requests WHERE state = 'done'}),
	0, 'nothing is sent before the inserting transaction commits');
my $t0 = time;
$session->query_safe('COMMIT');
$node->wait_for(q{SELECT count(*) = 1 FROM enrich.requests WHERE person_id = 'p-wake' AND state = 'done'},
	'the request is done after the commit');
my $took = time - $t0;
cmp_ok($took, '<', 2, sprintf('within %.2f s of the commit, well inside the 10 s poll interval', $took));
$session->quit;

# an idle worker runs no query
sleep 0.5;
$node->safe_psql('postgres', 'SELECT pg_stat_statements_reset()');
sleep 3;
is($node->safe_psql('postgres', q{
	SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s
	JOIN pg_database d ON d.oid = s.dbid
	WHERE s.query NOT LIKE '%pg_stat_statements%'}),
	0, 'the idle worker ran no query in 3 s');

# SIGHUP: a new API URL is used for the next request
$node->append_conf('postgresql.conf', "enrich.api_url = '@{[ $other->url ]}'");
$node->safe_psql('postgres', q{SELECT enrich_set_api_key('test', 'other-key')});
$node->reload;
sleep 0.5;
$node->safe_psql('postgres', q{INSERT INTO enrich.requests (person_id) VALUES ('p-after-reload')});
$node->wait_for(q{SELECT state = 'done' FROM enrich.requests WHERE person_id = 'p-after-reload'},
	'a request after the reload is done');
is($other->stats->{submissions}{'personId:p-after-reload'}, 1,
	'it went to the API URL of the reloaded configuration');

# a refused key pauses the environment; setting a key resumes it
$node->safe_psql('postgres', q{SELECT enrich_set_api_key('test', 'wrong-key')});
$node->safe_psql('postgres', q{INSERT INTO enrich.requests (person_id) VALUES ('p-paused')});
$node->wait_for(q{SELECT worker_state LIKE 'paused%' FROM enrich.progress WHERE environment = 'test'},
	'a 401 pauses the environment');
is($node->safe_psql('postgres', q{SELECT state FROM enrich.requests WHERE person_id = 'p-paused'}),
	'queued', 'its request waits in the queue');
ok($node->log_contains(qr/refused the key of environment "test"/), 'the pause is logged');
$node->safe_psql('postgres', q{SELECT enrich_set_api_key('test', 'other-key')});
$node->wait_for(q{SELECT state = 'done' FROM enrich.requests WHERE person_id = 'p-paused'},
	'setting the key resumes the environment', 20);

# SIGTERM mid-run: the worker stops, is started again, and nothing is lost
$other->reset;
$node->safe_psql('postgres', q{ALTER SYSTEM SET enrich.batch_size = 100; SELECT pg_reload_conf()});
sleep 0.5;
$node->safe_psql('postgres', q{
	INSERT INTO enrich.requests (person_id) SELECT 'p-term-' || g FROM generate_series(1, 3000) g});
$node->wait_for(q{SELECT count(*) >= 300 FROM enrich.requests WHERE person_id LIKE 'p-term-%' AND state = 'done'},
	'the run is under way');
# one of the two workers stops; the other goes on meanwhile
my $pid = $node->safe_psql('postgres',
	q{SELECT min(pid) FROM pg_stat_activity WHERE backend_type = 'enrich worker'});
ok($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)") eq 't', 'a worker was sent SIGTERM');
$node->wait_for(qq{SELECT count(*) = current_setting('enrich.workers')::int AND bool_and(pid <> $pid)
			FROM pg_stat_activity WHERE backend_type = 'enrich worker'},
	'the postmaster started the worker again', 30);
$node->wait_for(q{SELECT count(*) = 3000 FROM enrich.requests WHERE person_id LIKE 'p-term-%' AND state = 'done'},
	'every request is done');
my $subs = $other->stats->{submissions};
is(scalar(grep { /^personId:p-term-/ } keys %$subs), 3000, 'each person was submitted');
is(scalar(grep { /^personId:p-term-/ && $subs->{$_} > 1 } keys %$subs), 0, 'none twice');
ok($node->log_contains(qr/terminating background worker "enrich worker" due to administrator command/),
	'the worker logged its stop');

# TRUNCATE enrich.requests while batches are in flight (the API slow to
# answer about them, so that they are): their pages match no request any
# more, which is logged once per batch, not once per page
$other->set_faults({ latency_ms => 1000, endpoints => [qw(batch_status list_items)] });
$node->safe_psql('postgres', q{INSERT INTO enrich.requests (person_id) SELECT 'p-trunc-' || g FROM generate_series(1, 300) g});
$node->wait_for(q{SELECT count(*) > 0 FROM enrich.batches WHERE NOT closed}, 'batches are in flight');
my $trunc_from = -s $node->logfile;
$node->safe_psql('postgres', 'TRUNCATE enrich.requests');
$node->wait_for(q{SELECT count(*) = 0 FROM enrich.batches WHERE NOT closed}, 'the batches of a truncated queue are read to their end', 60);
my %unmatched;
$unmatched{$_}++ for grep { defined } map { /batch (\S+): \d+ of \d+ items of a page matched no request/ ? $1 : undef }
  split /\n/, substr(slurp_file($node->logfile), $trunc_from);
cmp_ok(scalar(keys %unmatched), '>', 0, 'the pages of a truncated queue\'s batches match no request: logged');
is(scalar(grep { $_ > 1 } values %unmatched), 0, 'once per batch, not once per page')
  or diag(join(', ', map { "$_: $unmatched{$_}" } keys %unmatched));

# DROP EXTENSION while batches are in flight: the workers fall quiet (a
# round under way may fail once)
$node->safe_psql('postgres', q{INSERT INTO enrich.requests (person_id) SELECT 'p-drop-' || g FROM generate_series(1, 500) g});
$node->wait_for(q{SELECT count(*) > 0 FROM enrich.batches WHERE NOT closed}, 'batches are in flight');
my $log_from = -s $node->logfile;
$node->safe_psql('postgres', 'DROP EXTENSION enrich CASCADE');
sleep 4;
my @failed = grep { /enrich worker: .* failed/ } split /\n/, substr(slurp_file($node->logfile), $log_from);
cmp_ok(scalar @failed, '<=', $node->safe_psql('postgres', 'SHOW enrich.workers'),
	'after DROP EXTENSION the workers log no error every second (at most one each)')
  or diag(join("\n", @failed));

# A bulk enrich in doubt (sent, its answer lost) outlives its installation:
# installation A sends p-doubt-1..5 as requests 1 to 5 and is dropped
# before it finds its batch.  Installation B, created next, sends the same
# persons as the same request ids, and its answer is lost too.  B finds its
# own batch among the API's and adopts it, never A's (which echoes the same
# ids and identifiers, but A's installation id), and pays each person once.
sub installation
{
	$node->safe_psql('postgres', q{
		CREATE EXTENSION enrich;
		SELECT enrich_set_api_key('test', 'other-key')});
	return $node->safe_psql('postgres', 'SELECT id FROM enrich.installation');
}
my $doubt = q{INSERT INTO enrich.requests (person_id) SELECT 'p-doubt-' || g FROM generate_series(1, 5) g};
my $sent_twice = sub {
	my ($times) = @_;
	my $until = time + 20;
	my $subs;
	do
	{
		sleep 0.1;
		$subs = $other->stats->{submissions};
	} while (grep { ($subs->{"personId:p-doubt-$_"} // 0) < $times } 1 .. 5) && time < $until;
	return join(',', map { $subs->{"personId:p-doubt-$_"} // 0 } 1 .. 5);
};
$other->set_faults({ rate_drop_after => 1, endpoints => [qw(bulk_enrich list_batches)] });
my $a = installation();
$node->safe_psql('postgres', $doubt);
is($sent_twice->(1), '1,1,1,1,1', 'installation A sent p-doubt-1..5; the answer was lost');
is($node->safe_psql('postgres', q{SELECT string_agg(id || ' ' || state, ',' ORDER BY id) FROM enrich.requests}),
	'1 submitting,2 submitting,3 submitting,4 submitting,5 submitting',
	'A\'s requests 1 to 5 are in doubt');
$node->safe_psql('postgres', 'DROP EXTENSION enrich CASCADE');
$other->set_faults({ rate_drop_after => 1, endpoints => ['bulk_enrich'] });
$log_from = -s $node->logfile;
my $b = installation();
isnt($b, $a, 'installation B has an id of its own');
$node->safe_psql('postgres', $doubt);
is($sent_twice->(2), '2,2,2,2,2', 'installation B sent them too; the answer was lost');
$node->wait_for(q{SELECT count(*) = 5 FROM enrich.requests WHERE state = 'done' AND id <= 5},
	'B\'s requests 1 to 5 are done');
is($node->safe_psql('postgres', q{SELECT count(*) || ' ' || count(DISTINCT r.batch_id)
	FROM enrich.requests r JOIN enrich.batches b USING (batch_id)}), '5 1', 'from one batch, recorded');
is($node->safe_psql('postgres', q{SELECT string_agg(DISTINCT split_part(i.metadata->>'enrichRef', '-', 1), ',')
	FROM enrich.batches b, enrich_items(b.batch_id) i}), $b, 'whose items echo B\'s installation, not A\'s');
my @adopted = grep { /adopted batch/ } split /\n/, substr(slurp_file($node->logfile), $log_from);
is(scalar @adopted, 1, 'B adopted one batch') or diag(join("\n", @adopted));
$other->set_faults({});
sleep 1;
is($sent_twice->(2), '2,2,2,2,2', 'each person was paid once by each installation');
$node->stop;
$mock->stop;
$other->stop;
done_testing();
