# Several workers: by default two run, both claim requests (from the queue
# and from a watched table's intake) and page batches, and together they
# keep to the bulk-enrich rate limit (the mock refuses any call above it);
# nothing is sent twice; a submission in doubt whose worker stopped is
# reconciled by another worker; with enrich.workers = 1 one worker does it
# all, and with fewer background worker slots than enrich.workers the ones
# that run share every batch.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../perl";

use EnrichMock;
use EnrichNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();

# the mock allows 5 bulk enriches a second (after a burst of 10): two
# workers that each kept their own 5 a second would be refused
my $mock = EnrichMock->start(tier3 => 5);

my $node = EnrichNode->create('workers', $mock, q{
enrich.tier3_rate = 5
enrich.batch_size = 10
enrich.poll_interval_min = '20ms'
enrich.poll_interval_max = '200ms'
});


sub sql { return $node->safe_psql('postgres', $_[0]); }

is(sql('SHOW enrich.workers'), '2', 'two workers by default');
$node->wait_for(q{SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'enrich worker'},
	'two workers run');
is(sql(q{SELECT state FROM enrich.worker_state('test')}), 'running', 'their state is running');

# SIGTERM while a worker waits for a lock stops it there and then, the lock
# still held: nothing a worker waits on keeps it from stopping.  Nothing is
# queued yet: once their first reconciliation is over (it runs once a
# second while pending), the workers sleep until they are woken.  A lock
# wait's deadlock check would set the latch after deadlock_timeout, so
# that is made longer than the test waits, for this test only.
sql(q{ALTER SYSTEM SET deadlock_timeout = '1min'; SELECT pg_reload_conf()});
Time::HiRes::sleep(2);
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE enrich.batches IN ACCESS EXCLUSIVE MODE');
sql('SELECT enrich_wake()');
$node->wait_for(q{SELECT count(*) >= 1 FROM pg_stat_activity
		WHERE backend_type = 'enrich worker' AND wait_event_type = 'Lock'},
	'a worker woken waits for the table lock');
my $waiting = sql(q{SELECT min(pid) FROM pg_stat_activity
		WHERE backend_type = 'enrich worker' AND wait_event_type = 'Lock'});
sql("SELECT pg_terminate_backend($waiting)");
$node->wait_for(qq{SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $waiting},
	'the worker sent SIGTERM while it waited for a lock stopped with the lock still held');
$locker->query_safe('COMMIT');
$locker->quit;
$node->wait_for(qq{SELECT count(*) = current_setting('enrich.workers')::int AND bool_and(pid <> $waiting)
			FROM pg_stat_activity WHERE backend_type = 'enrich worker'},
	'and was started again', 15);
sql(q{ALTER SYSTEM RESET deadlock_timeout; SELECT pg_reload_conf()});

# 200 requests queued by hand and 200 contacts of a watched table, in one
# transaction: 40 bulk enriches of 10
sql(q{
	CREATE TABLE contacts (id bigint PRIMARY KEY, url text, person jsonb);
	SELECT enrich_watch('contacts', 'person', linkedin_url_column => 'url');
});
my $t0 = Time::HiRes::time();
sql(q{
	BEGIN;
	INSERT INTO enrich.requests (person_id) SELECT 'p-workers-' || g FROM generate_series(1, 200) g;
	INSERT INTO contacts (id, url) SELECT g, 'linkedin.com/in/workers-' || g FROM generate_series(1, 200) g;
	COMMIT;
});
$node->wait_for(q{SELECT count(*) = 400 FROM enrich.requests WHERE state = 'done'}, 'all 400 requests are done');
$node->wait_for(q{SELECT count(*) = 200 FROM contacts WHERE person IS NOT NULL}, 'all 200 persons written back');
my $secs = Time::HiRes::time() - $t0;

my $stats = $mock->stats;
my $bulk = $stats->{endpoints}{bulk_enrich};
is($bulk->{202}, 40, '40 bulk enriches of 10');
is($bulk->{429} // 0, 0, 'none refused by the rate limit: the workers share it');
# a burst of 5, then one every 0.2 s: the 40th goes at 7 s
cmp_ok($secs, '>=', 6, sprintf('the 40 bulk enriches took the 7 s the limit allows (%.1f s)', $secs));
my $subs = $stats->{submissions};
is(scalar(grep { $subs->{$_} > 1 } keys %$subs), 0, 'no identifier was submitted twice');
is(sql(q{SELECT count(DISTINCT claimed_by) FROM enrich.requests}), 2, 'both workers claimed requests');
is(sql(q{SELECT count(*) FROM enrich.requests r
		 WHERE r.claimed_by NOT IN (SELECT pid FROM pg_stat_activity WHERE backend_type = 'enrich worker')}),
	0, 'each request names the worker that claimed it');
is(sql(q{SELECT count(*) FROM enrich.batches WHERE NOT closed}), 0, 'every batch was paged to its end');

# a submission in doubt whose claimer no longer runs (no worker has its
# process id): a worker reconciles it when the workers start; no
# batch carries it, so once enrich.reconcile_grace has passed it is sent
# again
sql(q{UPDATE enrich.requests SET state = 'submitting', submission = -7, claimed_by = 999999,
		  person = NULL, batch_id = NULL, item_id = NULL, completed_at = NULL,
		  updated_at = pg_catalog.now() - interval '1 hour'
	  WHERE person_id IN ('p-workers-1', 'p-workers-2')});
sql(q{ALTER SYSTEM SET enrich.reconcile_grace = '1s'});
$node->restart;
$node->wait_for(q{SELECT count(*) = 2 FROM enrich.requests
		   WHERE person_id IN ('p-workers-1', 'p-workers-2') AND state = 'done' AND person IS NOT NULL},
	"a stopped worker's submission in doubt is reconciled and done");
is($mock->stats->{submissions}{'personId:p-workers-1'}, 2, 'it was sent once more, after the grace period');
ok($node->log_contains(qr/2 requests of environment "test" interrupted while being sent had no batch/),
	'the log says why');

# one worker: it polls every batch, whichever worker's it was
sql(q{ALTER SYSTEM SET enrich.workers = 1});
$node->restart;
$node->wait_for(q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'enrich worker'},
	'with enrich.workers = 1 one worker runs');
sql(q{INSERT INTO contacts (id, url) SELECT g, 'linkedin.com/in/workers-' || g FROM generate_series(201, 300) g});
$node->wait_for(q{SELECT count(*) = 300 FROM contacts WHERE person IS NOT NULL}, 'it enriches 100 more contacts alone');
ok($node->log_contains(qr/enrich worker 0 of 1 started/), 'the log names the worker and how many run');

# three workers asked for, room for two (the logical replication launcher
# and enrich's launcher take two of the four slots first): the batches are
# shared among the workers that run, so none waits for the one that could
# not start
sql(q{ALTER SYSTEM SET enrich.workers = 3; ALTER SYSTEM SET max_worker_processes = 4});
$node->restart;
$node->wait_for(q{SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'enrich worker'},
	'two of the three workers run');
ok($node->log_contains(qr/enrich launcher: could not start enrich worker 2 of database "postgres": no background worker slot is free/),
	'the log says the third could not be started');
sql(q{INSERT INTO contacts (id, url) SELECT g, 'linkedin.com/in/workers-' || g FROM generate_series(301, 600) g});
$node->wait_for(q{SELECT count(*) = 600 FROM contacts WHERE person IS NOT NULL}, 'the two enrich 300 more contacts');
is(sql(q{SELECT count(*) FROM enrich.batches WHERE NOT closed}), 0, 'no batch is left unpolled');

$node->stop;
$mock->stop;
done_testing();
