# Nothing waits forever.  The workers are told to sleep an hour when idle
# (enrich.idle_check), and the write-back sets no timer (whose signal would
# wake a worker later), so that each case below shows the wake it relies on:
#  - a request, a watched COPY and a key change committed with PREPARE
#    TRANSACTION and COMMIT PREPARED wake the workers;
#  - a commit that lands while a worker waits for a lock in a round, after
#    the round looked at the queue, is not lost;
#  - with enrich.idle_check short, a request whose commit woke nobody is
#    found anyway;
#  - a contact row another transaction keeps locked holds up neither the
#    other rows nor the other batches, and is written once the lock is gone;
#  - a cancel of an idle worker cancels nothing and stops nothing;
#  - a key the API refused pauses the environment for every worker, a
#    worker started again included: no second call with that key;
#  - the write-back runs as the table's owner now, not the one that
#    watched it.
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

my $mock = EnrichMock->start();
my $node = EnrichNode->create('stalls', $mock, q{
max_prepared_transactions = 5
enrich.idle_check = '1h'
enrich.write_back_timeout = 0
enrich.poll_interval_min = '20ms'
deadlock_timeout = '1min'
});
sub sql { return $node->safe_psql('postgres', $_[0]) }

# idle_workers waits until no worker runs a statement and none is due soon
sub idle_workers
{
	$node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM pg_stat_activity
		WHERE backend_type = 'enrich worker' AND state <> 'idle'}) or die 'the workers stay busy';
	Time::HiRes::sleep(1.5);
}

sql(q{CREATE TABLE contacts (id int PRIMARY KEY, url text, person jsonb);
	SELECT enrich_watch('contacts', 'person', linkedin_url_column => 'url')});

# two-phase commit: the wake asked for at PREPARE comes with COMMIT PREPARED
idle_workers();
sql(q{BEGIN; INSERT INTO enrich.requests (person_id) VALUES ('p-2pc');
	PREPARE TRANSACTION 'enrich_request'});
Time::HiRes::sleep(0.5);
is(sql(q{SELECT count(*) FROM enrich.requests WHERE person_id = 'p-2pc'}), 0, 'a prepared request is not seen');
sql(q{COMMIT PREPARED 'enrich_request'});
$node->wait_for(q{SELECT state = 'done' FROM enrich.requests WHERE person_id = 'p-2pc'},
	'a request committed by COMMIT PREPARED is sent', 30);

idle_workers();
sql(q{BEGIN;
	COPY contacts (id, url) FROM PROGRAM 'printf "1\thttps://www.linkedin.com/in/copy-2pc\n"';
	PREPARE TRANSACTION 'enrich_copy'});
sql(q{COMMIT PREPARED 'enrich_copy'});
$node->wait_for(q{SELECT person IS NOT NULL FROM contacts WHERE id = 1},
	'a watched COPY committed by COMMIT PREPARED is enriched', 30);

sql(q{SELECT enrich_set_api_key('test', 'not-the-key')});
sql(q{INSERT INTO enrich.requests (person_id) VALUES ('p-2pc-key')});
$node->wait_for(q{SELECT worker_state LIKE 'paused%' FROM enrich.progress WHERE environment = 'test'},
	'a refused key pauses the environment', 30);
idle_workers();
sql(q{BEGIN; SELECT enrich_set_api_key('test', '} . $mock->key_test . q{');
	PREPARE TRANSACTION 'enrich_key'});
sql(q{COMMIT PREPARED 'enrich_key'});
$node->wait_for(q{SELECT state = 'done' FROM enrich.requests WHERE person_id = 'p-2pc-key'},
	'a key set by COMMIT PREPARED resumes the environment', 30);

# a commit that lands while the workers wait for a lock, after their round
# looked at the queue: its wake set the latch that the lock wait reset
idle_workers();
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE enrich.batches IN ACCESS EXCLUSIVE MODE');
sql('SELECT enrich_wake()');
$node->poll_query_until('postgres', q{SELECT count(*) = current_setting('enrich.workers')::int
	FROM pg_stat_activity WHERE backend_type = 'enrich worker' AND wait_event_type = 'Lock'})
  or die 'the workers did not wait for the lock';
sql(q{INSERT INTO enrich.requests (person_id) VALUES ('p-during-lock')});
Time::HiRes::sleep(0.3);
$locker->query_safe('COMMIT');
$locker->quit;
$node->wait_for(q{SELECT state = 'done' FROM enrich.requests WHERE person_id = 'p-during-lock'},
	'a request committed while the workers waited for a lock is sent', 30);

# a request whose commit woke nobody (no trigger fired) is found within
# enrich.idle_check
sql(q{ALTER SYSTEM SET enrich.idle_check = '1s'; SELECT pg_reload_conf()});
idle_workers();
sql(q{SET session_replication_role = replica;
	INSERT INTO enrich.requests (person_id, identifier) VALUES ('p-unannounced', 'personId:p-unannounced')});
$node->wait_for(q{SELECT state = 'done' FROM enrich.requests WHERE person_id = 'p-unannounced'},
	'an idle worker looks for work every enrich.idle_check', 30);
sql(q{ALTER SYSTEM SET enrich.idle_check = '1h'; SELECT pg_reload_conf()});

# a contact row locked by another transaction: the others are written, and
# it is written once the lock is gone
sql(q{INSERT INTO contacts SELECT g, 'https://www.linkedin.com/in/locked-' || g, NULL
	FROM generate_series(10, 29) g});
$node->wait_for(q{SELECT count(*) = 20 FROM contacts WHERE id BETWEEN 10 AND 29 AND person IS NOT NULL},
	'twenty contacts are enriched');
sql(q{UPDATE contacts SET person = NULL WHERE id BETWEEN 10 AND 29});
my $holder = $node->background_psql('postgres');
$holder->query_safe('BEGIN; SELECT id FROM contacts WHERE id = 15 FOR UPDATE');
sql(q{SELECT enrich.enqueue_existing('contacts')});
sql(q{INSERT INTO enrich.requests (person_id) VALUES ('p-other-work')});
$node->wait_for(q{SELECT count(*) = 19 FROM contacts WHERE id BETWEEN 10 AND 29 AND person IS NOT NULL},
	'the other nineteen rows are written while one is locked');
$node->wait_for(q{SELECT state = 'done' FROM enrich.requests WHERE person_id = 'p-other-work'},
	'and other work goes on');
is(sql(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'enrich worker' AND wait_event_type = 'Lock'}),
	0, 'no worker waits for the locked row');
is(sql(q{SELECT count(*) FROM enrich.requests WHERE source_key = '["15"]' AND state = 'done'
	AND write_back_due IS NOT NULL}), 1, 'its person is due to be written again');
$holder->query_safe('COMMIT');
$holder->quit;
$node->wait_for(q{SELECT person IS NOT NULL FROM contacts WHERE id = 15},
	'the locked row is written once the lock is gone', 30);
is(sql(q{SELECT count(*) FROM enrich.requests WHERE write_back_due IS NOT NULL}), 0,
	'no write-back is left due');

# a cancel of an idle worker
idle_workers();
my @workers = split /\n/, sql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'enrich worker' ORDER BY pid});
sql("SELECT pg_cancel_backend($workers[0])");
Time::HiRes::sleep(1);
is(sql(q{SELECT string_agg(pid::text, E'\n' ORDER BY pid) FROM pg_stat_activity WHERE backend_type = 'enrich worker'}),
	join("\n", @workers), 'a canceled idle worker goes on, the same process');
ok(!$node->log_contains(qr/FATAL:  canceling statement due to user request/), 'no cancel became FATAL');
sql(q{INSERT INTO enrich.requests (person_id) VALUES ('p-after-cancel')});
$node->wait_for(q{SELECT state = 'done' FROM enrich.requests WHERE person_id = 'p-after-cancel'},
	'and works');

# a refused key pauses every worker; one started again calls no more
my $refused_before = $mock->stats->{endpoints}{bulk_enrich}{401} // 0;
sql(q{SELECT enrich_set_api_key('live', 'not-the-live-key')});
sql(q{INSERT INTO enrich.requests (environment, person_id) VALUES ('live', 'p-paused-live')});
$node->wait_for(q{SELECT worker_state LIKE 'paused%' FROM enrich.progress WHERE environment = 'live'},
	'a refused live key pauses live');
idle_workers();
my $refused = $mock->stats->{endpoints}{bulk_enrich}{401};
is($refused - $refused_before, 1, 'the refused key was used once, by one worker');
my $victim = (split /\n/, sql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'enrich worker' ORDER BY pid}))[0];
sql("SELECT pg_terminate_backend($victim)");
$node->wait_for(qq{SELECT count(*) = current_setting('enrich.workers')::int AND bool_and(pid <> $victim)
		FROM pg_stat_activity WHERE backend_type = 'enrich worker'},
	'the worker is started again', 30);
is(sql(q{SELECT worker_state FROM enrich.progress WHERE environment = 'live'}),
	'paused: unauthorized (set the key with enrich_set_api_key)', 'live is still paused');
sql('SELECT enrich_wake()');
idle_workers();
is($mock->stats->{endpoints}{bulk_enrich}{401}, $refused, 'the worker started again did not call with the refused key');
sql(q{SELECT enrich_set_api_key('live', '} . $mock->key_live . q{')});
$node->wait_for(q{SELECT state = 'done' FROM enrich.requests WHERE person_id = 'p-paused-live'},
	'a new key resumes live', 30);

# the write-back runs as the table's owner now
sql(q{CREATE ROLE first_owner; CREATE ROLE second_owner;
	GRANT USAGE ON SCHEMA enrich TO first_owner, second_owner;
	GRANT EXECUTE ON FUNCTION enrich_watch(regclass, name, name, name, name, text, boolean, interval, text, jsonb, text),
		enrich.register_watch(regclass, name, name, name, name, text, name[], text[]),
		enrich.attach_triggers(regclass), enrich.enqueue_from_source() TO first_owner;
	CREATE TABLE owned (id int PRIMARY KEY, url text, person jsonb, written_by name);
	ALTER TABLE owned OWNER TO first_owner;
	CREATE FUNCTION note_writer() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN NEW.written_by := current_user; RETURN NEW; END $$;
	CREATE TRIGGER note_writer BEFORE UPDATE ON owned FOR EACH ROW EXECUTE FUNCTION note_writer();
	SET ROLE first_owner;
	SELECT enrich_watch('owned', 'person', linkedin_url_column => 'url');
	RESET ROLE;
	ALTER TABLE owned OWNER TO second_owner;
	DROP OWNED BY first_owner;
	DROP ROLE first_owner;
	INSERT INTO owned VALUES (1, 'https://www.linkedin.com/in/owned-1', NULL, NULL);
});
$node->wait_for(q{SELECT person IS NOT NULL FROM owned WHERE id = 1},
	'a table whose owner changed (the one that watched it dropped) is written back');
is(sql(q{SELECT written_by FROM owned WHERE id = 1}), 'second_owner', 'as its owner now');

$node->stop;
$mock->stop;
done_testing();
