# No double charge across crashes: during a 5,000-request run the worker is
# killed with SIGKILL at ten random moments and the server is once stopped
# in immediate mode, while the mock answers bulk enrich slowly (150 ms, so
# kills land between sending and recording) and drops the answer of 30 % of
# them after creating the batch.  Afterwards every request is done or
# failed with a reason, no identifier was submitted twice (but after a
# retryable failure), and every person was written to its contact row
# exactly once.  The first 5,000 contacts are sent 250 at a time (so the
# intake's rows of 1,000 become queued requests first); then 3,000 more are
# sent 1,000 at a time, claimed straight from the intake, with five more
# kills.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../perl";

use EnrichMock;
use EnrichNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my $mock = EnrichMock->start(start_delay_ms => 200, items_per_second => 4000,
	faults => { latency_ms => 150, rate_drop_after => 0.3, endpoints => ['bulk_enrich'] });

my $node = EnrichNode->create('crash', $mock, q{
enrich.batch_size = 250
enrich.poll_interval_min = '50ms'
enrich.poll_interval_max = '500ms'
enrich.retry_delay = '100ms'
enrich.reconcile_grace = '3s'
restart_after_crash = on
});
$node->safe_psql('postgres', q{
	CREATE TABLE contacts (id int PRIMARY KEY, url text, person jsonb);
	CREATE TABLE person_writes (id int, n int);
	-- it names its table's schema: the worker's write-back runs triggers
	-- under search_path = pg_catalog, pg_temp
	CREATE FUNCTION count_person_writes() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.person_writes
		SELECT n.id, 1 FROM new_rows n JOIN old_rows o USING (id)
		WHERE n.person IS DISTINCT FROM o.person;
		RETURN NULL;
	END $$;
	CREATE TRIGGER count_person_writes AFTER UPDATE ON contacts
		REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
		FOR EACH STATEMENT EXECUTE FUNCTION count_person_writes();
	SELECT enrich_watch('contacts', 'person', linkedin_url_column => 'url');
});

$node->safe_psql('postgres', q{
	INSERT INTO contacts (id, url)
	SELECT g, CASE WHEN g % 500 = 0 THEN 'linkedin.com/in/flaky-' || g
	               WHEN g % 700 = 0 THEN 'linkedin.com/in/notfound-' || g
	               ELSE 'linkedin.com/in/crash-' || g END
	FROM generate_series(1, 5000) g});

sub worker_pid
{
	return $node->safe_psql('postgres',
		q{SELECT min(pid) FROM pg_stat_activity WHERE backend_type = 'enrich worker'});
}

sub wait_worker
{
	my $pid = '';
	for (1 .. 200)
	{
		$pid = eval { worker_pid() } // '';
		last if $pid =~ /^\d+$/;
		sleep 0.1;
	}
	return $pid;
}

# kill_worker kills the worker $rounds times at random moments, stopping the
# server in immediate mode once, after kill $immediate_after; returns the kills
sub kill_worker
{
	my ($rounds, $immediate_after) = @_;
	my $kills = 0;
	for my $round (1 .. $rounds)
	{
		my $pid = wait_worker();
		last unless $pid =~ /^\d+$/;
		sleep(0.2 + rand(0.8));
		last if kill('KILL', $pid) != 1;
		$kills++;
		if ($round == $immediate_after)
		{
			$node->stop('immediate');
			$node->start;
		}
	}
	return $kills;
}

# wait_final waits until nothing is left in the intake or in flight
sub wait_final
{
	my ($name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	$node->wait_for(
		q{SELECT count(*) = 0 FROM enrich.requests WHERE state NOT IN ('done', 'failed')
		  AND NOT EXISTS (SELECT 1 FROM enrich.intake)},
		$name, 180);
}

srand(20261128);
is(kill_worker(10, 5), 10, 'the worker was killed with SIGKILL ten times');
wait_final('every request reached a final state');

# then sent 1,000 at a time: the intake's rows are claimed as they are
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET enrich.batch_size = 1000;
	SELECT pg_reload_conf();
	INSERT INTO contacts (id, url)
	SELECT g, 'linkedin.com/in/crash-' || g FROM generate_series(5001, 8000) g});
is(kill_worker(5, 0), 5, 'the worker was killed with SIGKILL five more times');
wait_final('every request of the second run reached a final state');

is($node->safe_psql('postgres', q{SELECT count(*) FROM enrich.requests}), 8000,
	'one request per contact, none lost');
cmp_ok($node->safe_psql('postgres', q{SELECT count(*) FROM enrich.batches WHERE request_count > 250}),
	'>', 0, 'batches of the second run carry more than 250 requests');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM enrich.requests WHERE state = 'failed' AND (error->>'code') IS NULL}),
	0, 'every failed request has a reason');
is($node->safe_psql('postgres', q{
	SELECT string_agg(DISTINCT error->>'code', ',') FROM enrich.requests WHERE state = 'failed'}),
	'not_found', 'the only failures are the people the API does not know');

my $subs = $mock->stats->{submissions};
my @twice = grep { $subs->{$_} > 1 && !/flaky/ } keys %$subs;
is(scalar(@twice), 0, 'no identifier was submitted twice, but after a retryable failure')
  or diag(join ', ', @twice[0 .. ($#twice < 9 ? $#twice : 9)]);
is(scalar(grep { /crash-|flaky-|notfound-/ } keys %$subs), 8000, 'every identifier was submitted');

is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT id FROM person_writes GROUP BY id HAVING sum(n) > 1) s}),
	0, 'no person was written twice');
is($node->safe_psql('postgres', q{SELECT count(*) FROM contacts WHERE person IS NOT NULL}),
	$node->safe_psql('postgres', q{SELECT count(*) FROM enrich.requests WHERE state = 'done'}),
	'every done request wrote its person');
my $log = slurp_file($node->logfile);
my $restarts = () = $log =~ /enrich worker \d+ of \d+ started/g;
cmp_ok($restarts, '>=', 16, "the worker started $restarts times");
my $adopted = () = $log =~ /adopted batch/g;
cmp_ok($adopted, '>', 0, "$adopted batches sent but not recorded were found and adopted");

$node->stop;
$mock->stop;
done_testing();
