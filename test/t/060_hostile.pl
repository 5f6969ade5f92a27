# Hostile responses (property 3 of "crash-safe, hostile input refused"):
# bodies over the size cap, JSON nested 10,000 deep, wrong types, missing
# fields, impossible values, items repeated across pages, a replayed or
# rewound cursor, and items whose metadata names a request of another batch.
# For each, with requests in flight in the test environment (affected) and
# in the live one (unaffected, the mock faults only test): the affected
# requests or their batch record an error and get no wrong person, no other
# row changes, neither a backend nor the worker crashes, and once the fault
# is cleared every request is done once with the mock's person.  The SQL
# functions refuse the same answers with a clean ERROR (08P01 or 54000) and
# the session goes on.
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

my $mock = EnrichMock->start(start_delay_ms => 100);

my $node = EnrichNode->create('hostile', $mock, q{
enrich.page_size = 2
enrich.poll_interval_min = '20ms'
enrich.poll_interval_max = '300ms'
enrich.retry_delay = '50ms'
enrich.retry_delay_max = '300ms'
enrich.max_attempts = 100
enrich.reconcile_grace = '3s'
});

# one session for the test's own queries: a psql per query is slow
my $db = $node->background_psql('postgres');
sub sql { return scalar $db->query_safe($_[0]) }

# set_keys sets the mock's two keys again, as EnrichNode did at the start
sub set_keys
{
	sql(sprintf("SELECT enrich_set_api_key('test', '%s'), enrich_set_api_key('live', '%s')",
			$mock->key_test, $mock->key_live));
}

# wait_for waits until a query returns true, for at most $seconds of wall time
sub wait_for
{
	my ($query, $what, $seconds, $diag) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $deadline = time + ($seconds // 15);
	my $got;
	while (1)
	{
		$got = sql($query);
		last if $got eq 't' || time > $deadline;
		sleep 0.02;
	}
	my $ok = ok($got eq 't', $what);
	if (!$ok)
	{
		diag sql($diag) if $diag;
		diag $node->describe_queue;
	}
	return $ok;
}

# the mock's person of an identifier, as canonical JSON
my %persons;
sub mock_person
{
	my ($person_id) = @_;
	$persons{$person_id} //= EnrichMock::json_encode($mock->person(personId => $person_id)->{person});
	return $persons{$person_id};
}

# wrong_persons lists the rows (matching where) whose person is not the mock's
sub wrong_persons
{
	my ($where) = @_;
	my @bad;
	for my $line (split /\n/, sql("SELECT id, person_id, person::text FROM enrich.requests "
			  . "WHERE ($where) AND person IS NOT NULL ORDER BY id"))
	{
		my ($id, $pid, $person) = split /\|/, $line, 3;
		push @bad, "$id ($pid)"
		  unless EnrichMock::json_encode(EnrichMock::json_decode($person)) eq mock_person($pid);
	}
	return \@bad;
}

# snapshot of the requests matching where: everything a write would touch
sub snapshot
{
	my ($where) = @_;
	return sql("SELECT id, state, attempts, batch_id, item_id, person::text, error::text, "
		  . "completed_at, updated_at FROM enrich.requests WHERE $where ORDER BY id");
}

# no crash: the worker keeps its pid, and the log has no crash or restart
my $CRASH = qr/terminated by signal|exited with exit code|was terminated|terminating any other active server process|server process .* exited/;
wait_for(q{SELECT count(*) = current_setting('enrich.workers')::int FROM pg_stat_activity
		   WHERE backend_type = 'enrich worker'},
	'the workers run');
my $worker_pid = sql(q{SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity
					   WHERE backend_type = 'enrich worker'});
sub check_alive
{
	my ($what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	is(sql(q{SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity
			 WHERE backend_type = 'enrich worker'}),
		$worker_pid, "$what: no worker restarted (same pids)");
	my $log = slurp_file($node->logfile);
	my @crash = grep { /$CRASH/ } split /\n/, $log;
	ok(!@crash, "$what: no backend or worker crash in the server log") or diag join("\n", @crash);
}

# calls counts the answers of an endpoint the mock gave so far
sub calls
{
	my ($endpoint) = @_;
	my $c = $mock->stats->{endpoints}{$endpoint} // {};
	my $n = 0;
	$n += $_ for values %$c;
	return $n;
}
sub hostile_answers
{
	my $h = $mock->stats->{hostile} // {};
	my $n = 0;
	$n += $_ for values %$h;
	return $n;
}

# requests already done before any fault: they must never change
sql(q{INSERT INTO enrich.requests (environment, person_id)
	  SELECT CASE WHEN g % 2 = 0 THEN 'live' ELSE 'test' END, 'h0-' || g FROM generate_series(1, 20) g});
wait_for(q{SELECT count(*) = 20 FROM enrich.requests WHERE state = 'done'}, 'the requests made before any fault are done');
is_deeply(wrong_persons('true'), [], 'with the mock\'s persons');

# ---------------------------------------------------------------------
# The worker under each hostile answer
# ---------------------------------------------------------------------

my $scenario = 0;

# scenario runs one hostile fault against 6 test requests in flight, with 6
# live ones beside them (ids interleaved: test odd, live even)
sub scenario
{
	my (%s) = @_;
	my $name = $s{name};
	my $tag = 'h' . ++$scenario;
	my $affected = "person_id LIKE '$tag-%' AND environment = 'test'";
	my $unaffected = "person_id LIKE '$tag-%' AND environment = 'live'";

	# the error is found on a batch of the test environment sent in this
	# scenario, on an affected request, or as the environment's last error
	my $t0 = sql('SELECT pg_catalog.clock_timestamp()');
	my $recorded = qq{SELECT coalesce(
		(SELECT 'batch: ' || string_agg(DISTINCT last_error, ' | ') FROM enrich.batches
		 WHERE environment = 'test' AND submitted_at >= '$t0' AND last_error IS NOT NULL
		   AND last_error NOT LIKE 'adopted after a restart%'),
		(SELECT 'request: ' || string_agg(DISTINCT error->>'message', ' | ') FROM enrich.requests
		 WHERE $affected AND error IS NOT NULL),
		(SELECT 'environment: ' || nullif(last_error, '') FROM enrich.progress WHERE environment = 'test'))};

	# or, failing those, on a line of the server log written since
	my $log_from = -s $node->logfile;
	my $recorded_text = sub {
		my $text = sql($recorded);
		return $text if $text ne '';
		my @lines = grep { /enrich worker: / && !/adopted batch/ }
		  split /\n/, substr(slurp_file($node->logfile), $log_from);
		return @lines ? 'log: ' . join(' | ', map { s/^.*?enrich worker: //r } @lines) : '';
	};

	my $old_rows = 'id <= ' . sql('SELECT coalesce(max(id), 0) FROM enrich.requests');
	my $old = snapshot($old_rows);
	my $closed = qq{SELECT batch_id, status, items_received, items_cursor, last_error
		FROM enrich.batches WHERE closed AND submitted_at < '$t0' ORDER BY batch_id};
	my $old_batches = sql($closed);
	set_keys();    # the worker clears the environments' last error when it reloads them
	wait_for(q{SELECT coalesce(last_error, '') = '' FROM enrich.progress WHERE environment = 'test'},
		"$name: no error recorded before", 5);
	my $hostile0 = hostile_answers();
	my $r = $mock->set_faults({ %{ $s{fault} }, environments => ['test'] });
	is($r->{status}, 200, "$name: fault set") or diag $r->{content};

	sql(qq{INSERT INTO enrich.requests (environment, person_id)
		SELECT CASE WHEN g % 2 = 0 THEN 'live' ELSE 'test' END, '$tag-' || g FROM generate_series(1, 12) g});

	my $state = qq{SELECT r.id, r.state, r.attempts, r.batch_id, r.error->>'code', b.status, b.closed,
		b.items_received, b.last_error FROM enrich.requests r LEFT JOIN enrich.batches b USING (batch_id)
		WHERE r.person_id LIKE '$tag-%' ORDER BY r.id};

	# the affected requests or their batch record the error
	my $deadline = time + 5;
	my $text;
	sleep 0.02 while ($text = $recorded_text->()) eq '' && time < $deadline;
	ok($text ne '', "$name: an error is recorded") or diag sql($state);
	note "$name: recorded: $text";
	like($text, $s{error}, "$name: the error says what is wrong");
	cmp_ok(hostile_answers(), '>', $hostile0, "$name: the mock did answer with it");
	$s{during}->($affected) if $s{during};

	# the unaffected requests complete meanwhile, with their persons
	wait_for("SELECT count(*) = 6 FROM enrich.requests WHERE $unaffected AND state = 'done'",
		"$name: the live requests in flight beside them are done", 10, $state);
	is_deeply(wrong_persons($unaffected), [], "$name: with their own persons");
	my $live = snapshot($unaffected);

	is_deeply(wrong_persons($affected), [], "$name: no affected request got a wrong person");
	is(snapshot($old_rows), $old, "$name: no request made before changed");
	is(sql($closed), $old_batches, "$name: no batch closed before changed");
	check_alive($name);

	# cleared: every affected request is done once, with its person
	$r = $mock->set_faults({});
	wait_for("SELECT count(*) = 6 FROM enrich.requests WHERE $affected AND state = 'done'",
		"$name: once the fault is cleared, the affected requests are done", 10, $state);
	is_deeply(wrong_persons("person_id LIKE '$tag-%'"), [], "$name: every one with its person");
	is(snapshot($unaffected), $live, "$name: the live requests did not change after they were done");
	my $subs = $mock->stats->{submissions};
	is(scalar(grep { ($subs->{"personId:$tag-" . (2 * $_)} // 0) != 1 } 1 .. 6), 0,
		"$name: each live request was sent once");
}

# what the error says: the kind, and where it is recorded: a page or a status
# on the batch (or the log line written as it is recorded); an unreadable
# bulk enrich answer, whose batch reconciliation then finds, on the waiting
# requests or the environment (enrich.progress)
my %says = (
	oversized => qr/too large|max_response_size|maximum file size/i,
	deep => qr/nest|deep|depth/i,
	wrong_types => qr/malformed .*(not a|not an|missing)/i,
	missing_fields => qr/malformed .*missing/i,
	bad_values => qr/malformed .*(not a|not an|missing|not one of|negative|empty)/i,
	bad_utf8 => qr/malformed .*not valid UTF-8: [a-zA-Z]/);
my %where = (
	list_items => qr/^(batch|log): (?!malformed (batch status|bulk))/,
	batch_status => qr/^(batch|log): (?!malformed (items|bulk))/,
	bulk_enrich => qr/^(environment|request|log): (?!malformed (items|batch status))/);

# the six kinds that break any answer, on each endpoint the worker reads
for my $kind (qw(oversized deep wrong_types missing_fields bad_values bad_utf8))
{
	for my $endpoint (qw(list_items batch_status bulk_enrich))
	{
		scenario(name => "$kind on $endpoint", error => qr/$where{$endpoint}.*$says{$kind}/,
			fault => { hostile => $kind, endpoints => [$endpoint] });
	}
}
scenario(name => 'oversized chunked on list_items', error => qr/$where{list_items}.*$says{oversized}/,
	fault => { hostile => 'oversized', hostile_chunked => JSON::PP::true(), endpoints => ['list_items'] });
scenario(name => 'wrong_types of isSuccess in one item', error => qr/^(batch: |log: .*)malformed items page: items\[1\]: isSuccess/,
	fault => { hostile => 'wrong_types', hostile_fields => ['isSuccess'], hostile_item => 1 });
scenario(name => 'bad_utf8 in the person of one item',
	error => qr/^(batch: |log: .*)malformed items page: the body is not valid UTF-8: items\[1\]\.person\.fullName/,
	fault => { hostile => 'bad_utf8', hostile_fields => ['person'], hostile_item => 1 });
scenario(name => 'missing_fields: cursor', error => qr/^(batch: |log: .*)malformed items page: .*cursor/,
	fault => { hostile => 'missing_fields', hostile_fields => ['cursor'] });

# pages that repeat items, and cursors that go round: an error, and no hot loop
sub no_hot_loop
{
	my ($name) = @_;
	return sub {
		my $before = calls('list_items');
		sleep 1;
		my $made = calls('list_items') - $before;
		cmp_ok($made, '<', 60, "$name: the worker does not hammer the API ($made items calls in 1 s)");
	};
}
scenario(name => 'duplicate_items', error => qr/^(batch|request|log): .*(duplicate|repeat|twice|again|already)/i,
	fault => { hostile => 'duplicate_items' });
scenario(name => 'replay_cursor', error => qr/^(batch|log): .*cursor/i, fault => { hostile => 'replay_cursor' },
	during => no_hot_loop('replay_cursor'));
scenario(name => 'rewind_cursor', error => qr/^(batch|log): .*cursor/i, fault => { hostile => 'rewind_cursor' },
	during => no_hot_loop('rewind_cursor'));

# items whose metadata names requests of another batch: test request n's
# item names the live request n + 1, in flight in the live batch beside it
scenario(name => 'foreign_metadata', error => qr/^(batch|request|log): .*(without an item|another batch|not ours|foreign)/i,
	fault => { hostile => 'foreign_metadata', hostile_offset => 1 });

# an item naming a request of another batch while the worker reconciles:
# two submissions S1 and S2 whose answers were lost (both batches exist at
# the API, neither recorded), then the first item of S2's batch names S1's
# first request.  Adopting S1 into S2's batch would write S2's persons on
# S1's rows.
{
	my $name = 'foreign_metadata during reconciliation';
	my $tag = 'h' . ++$scenario;
	my $rows = "person_id LIKE '$tag-%'";
	my $old_rows = 'id <= ' . sql('SELECT coalesce(max(id), 0) FROM enrich.requests');
	my $old = snapshot($old_rows);
	my $state = qq{SELECT r.id, r.person_id, r.state, r.batch_id, r.error->>'code', b.last_error
		FROM enrich.requests r LEFT JOIN enrich.batches b USING (batch_id) WHERE r.$rows ORDER BY r.id};
	set_keys();
	$mock->set_faults({ rate_drop_after => 1, endpoints => [qw(bulk_enrich list_batches)], environments => ['test'] });
	my $sent = sub {
		my ($who) = @_;
		my $t = time;
		sleep 0.02 while !$mock->stats->{submissions}{"personId:$tag-$who-3"} && time < $t + 5;
		return ok($mock->stats->{submissions}{"personId:$tag-$who-3"}, "$name: the API got \U$who\E, its answer was lost");
	};
	sql(qq{INSERT INTO enrich.requests (person_id) SELECT '$tag-s1-' || g FROM generate_series(1, 3) g});
	$sent->('s1');
	my $first = sql(qq{SELECT min(id) FROM enrich.requests WHERE $rows});
	sql(qq{INSERT INTO enrich.requests (person_id) SELECT '$tag-s2-' || g FROM generate_series(1, 3) g});
	$sent->('s2');
	is(sql(qq{SELECT count(*) FROM enrich.requests WHERE $rows AND state = 'submitting'}), 6,
		"$name: the six requests wait to be reconciled");
	my $gap = sql(qq{SELECT min(id) FROM enrich.requests WHERE person_id LIKE '$tag-s2-%'}) - $first;
	cmp_ok($gap, '>=', 3, "$name: S2's requests follow S1's");
	# S2's batch, item 0: its request id shifted back names S1's first
	$mock->set_faults({ hostile => 'foreign_metadata', hostile_offset => -$gap, hostile_item => 0,
		endpoints => ['list_items'], environments => ['test'] });
	wait_for(qq{SELECT count(*) = 0 FROM enrich.requests r WHERE r.$rows AND r.state = 'submitting'
			AND NOT EXISTS (SELECT 1 FROM enrich.batches b WHERE b.submission = r.submission)},
		"$name: both batches are found", 10, $state);
	sleep 1;    # the batches are paged meanwhile
	is_deeply(wrong_persons($rows), [], "$name: no request got the person of another")
	  or diag sql($state);
	is(snapshot($old_rows), $old, "$name: no request made before changed");
	check_alive($name);
	$mock->set_faults({});
	wait_for(qq{SELECT count(*) = 6 FROM enrich.requests WHERE $rows AND state = 'done'},
		"$name: once the fault is cleared, every request is done", 10, $state);
	is_deeply(wrong_persons($rows), [], "$name: every one with its own person");
}

# ---------------------------------------------------------------------
# The SQL functions: a clean ERROR, and the session goes on
# ---------------------------------------------------------------------

my $batch = sql(q{SELECT enrich_submit('[{"personId": "s-1"}, {"personId": "s-2"}, {"personId": "s-3"},
	{"personId": "s-4"}, {"personId": "s-5"}, {"personId": "s-6"}]', 'test')});
$mock->wait_batch($batch);
my $item = sql(qq{SELECT item_id FROM enrich_items('$batch', 'test') LIMIT 1});
is(sql(qq{SELECT count(*) FROM enrich_items('$batch', 'test', 2)}), 6, 'a batch of 6 items to read');

my $session = $node->background_psql('postgres', on_error_stop => 0);
$session->query_safe(q{\set VERBOSITY verbose});
$session->query_safe(q{SET statement_timeout = '5s'});
my $backend = $session->query_safe('SELECT pg_backend_pid()');

# refused runs a statement under a fault and checks the error and the session
sub refused
{
	my ($name, $fault, $statement, $sqlstate) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	$mock->set_faults({ %$fault, environments => ['test'] });
	$session->{stderr} = '';
	my ($out, $failed) = $session->query($statement);
	my $stderr = $session->{stderr};
	ok($failed && $stderr =~ /ERROR:\s+$sqlstate:/, "$name: ERROR $sqlstate")
	  or diag "stdout: " . substr($out // '', 0, 300) . "\nstderr: $stderr";
	$session->{stderr} = '';
	$mock->set_faults({});
	is($session->query('SELECT pg_backend_pid()'), $backend, "$name: the session goes on");
}

my %sqlstate = (oversized => '54000', deep => '08P01', wrong_types => '08P01',
	missing_fields => '08P01', bad_values => '08P01', bad_utf8 => '08P01');
for my $kind (qw(oversized deep wrong_types missing_fields bad_values bad_utf8))
{
	my $f = { hostile => $kind };
	refused("enrich_status under $kind", $f, qq{SELECT * FROM enrich_status('$batch', 'test')}, $sqlstate{$kind});
	refused("enrich_items under $kind", $f, qq{SELECT * FROM enrich_items('$batch', 'test', 2)}, $sqlstate{$kind});
	refused("enrich_item under $kind", $f, qq{SELECT * FROM enrich_item('$batch', '$item', 'test')}, $sqlstate{$kind});
	refused("enrich_batches under $kind", $f, q{SELECT * FROM enrich_batches(environment => 'test')}, $sqlstate{$kind});
	refused("enrich_submit under $kind", $f, q{SELECT enrich_submit('[{"personId": "s-submit"}]', 'test')},
		$sqlstate{$kind});
}
refused('enrich_items under oversized chunked', { hostile => 'oversized', hostile_chunked => JSON::PP::true() },
	qq{SELECT * FROM enrich_items('$batch', 'test', 2)}, '54000');
refused('enrich_items under wrong_types of one item\'s isSuccess',
	{ hostile => 'wrong_types', hostile_fields => ['isSuccess'], hostile_item => 1 },
	qq{SELECT * FROM enrich_items('$batch', 'test', 2)}, '08P01');
for my $kind (qw(duplicate_items replay_cursor rewind_cursor))
{
	refused("enrich_items under $kind", { hostile => $kind },
		qq{SELECT * FROM enrich_items('$batch', 'test', 2)}, '08P01');
}

# an item echoing another batch's metadata cannot be told from a genuine one
# by an ad hoc reader (metadata is the caller's): it is returned as it is
$mock->set_faults({ hostile => 'foreign_metadata', environments => ['test'] });
my $hostile0 = hostile_answers();
$session->{stderr} = '';
is($session->query(qq{SELECT count(*) FROM enrich_items('$batch', 'test', 2)}), 6,
	'enrich_items under foreign_metadata: the items are returned');
cmp_ok(hostile_answers(), '>', $hostile0, 'with the metadata of another batch');
$mock->set_faults({});
is($session->query('SELECT pg_backend_pid()'), $backend, 'the session is still the same backend');
$session->quit;

# ---------------------------------------------------------------------
# In the end
# ---------------------------------------------------------------------
check_alive('at the end');
is(sql(q{SELECT count(*) FROM enrich.requests WHERE state <> 'done'}), 0, 'every request is done');
is_deeply(wrong_persons('true'), [], 'every request has the mock\'s person');

$db->quit;
$node->stop;
$mock->stop;
done_testing();
