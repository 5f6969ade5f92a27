# EnrichNode: a PostgreSQL::Test::Cluster for enrich's TAP tests.  It
# preloads enrich, points it at a mock API (EnrichMock) in environment test
# with no client-side rate limit, adds the test's own settings, starts,
# creates the extension and sets the mock's two keys.  Its wait_for waits
# for the queue to reach a state, and when it does not, prints what the
# queue and the workers look like, and its stop prints what the server's
# processes are doing when pg_ctl cannot stop them, so that a failure in CI
# explains itself.
package EnrichNode;

use strict;
use warnings;

use parent -norequire, 'PostgreSQL::Test::Cluster';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# EnrichNode->create($name, $mock, $settings, %options) returns a new
# node, started; $settings is postgresql.conf text appended after the
# common settings.  With extension => 0 it creates no extension and sets
# no key (a database to restore a dump into); with start => 0 it is not
# even started (a cluster for pg_upgrade); with allows_streaming => 1 it can
# be backed up for a standby.
sub create
{
	my ($class, $name, $mock, $settings, %options) = @_;
	my $node = $class->new($name);

	$node->init(allows_streaming => $options{allows_streaming} // 0);
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'enrich'
enrich.api_url = '@{[ $mock->url ]}'
enrich.environment = 'test'
enrich.tier3_rate = 0
enrich.tier4_rate = 0
} . ($settings // ''));
	return $node if defined $options{start} && !$options{start};
	$node->start;
	return $node if defined $options{extension} && !$options{extension};
	$node->safe_psql('postgres', 'CREATE EXTENSION enrich');
	$node->safe_psql('postgres', sprintf(
		"SELECT enrich_set_api_key('test', '%s'), enrich_set_api_key('live', '%s')",
		$mock->key_test, $mock->key_live));
	return $node;
}

# $node->wait_for($query, $what, $seconds) passes the test $what when
# $query returns true within $seconds (default 120); otherwise it fails it
# and prints the state of the queue (describe_queue).  Returns whether it
# passed.
sub wait_for
{
	my ($node, $query, $what, $seconds) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	return $node->wait_for_in('postgres', $query, $what, $seconds);
}

# $node->wait_for_in($db, $query, $what, $seconds) is wait_for in database $db
sub wait_for_in
{
	my ($node, $db, $query, $what, $seconds) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $passed;
	{
		local $PostgreSQL::Test::Utils::timeout_default = $seconds // 120;
		$passed = ok($node->poll_query_until($db, $query), $what);
	}
	diag($node->describe_queue($db) . "\n" . $node->describe_processes('enrich worker'))
	  unless $passed;
	return $passed;
}

# $node->stop($mode, %params) is PostgreSQL::Test::Cluster's stop; when
# pg_ctl cannot stop the server, it prints what the server's processes are
# doing (describe_processes) before it bails out (or returns 0 with fail_ok)
sub stop
{
	my ($node, $mode, %params) = @_;
	my $postmaster = $node->postmaster_pid;

	return 1 if $node->SUPER::stop($mode, %params, fail_ok => 1);
	diag($node->describe_processes('', $postmaster));
	BAIL_OUT('pg_ctl stop failed') unless $params{fail_ok};
	return 0;
}

# $node->postmaster_pid reads the process id of the postmaster from
# postmaster.pid, or returns undef when there is none
sub postmaster_pid
{
	my ($node) = @_;
	my $file = $node->data_dir . '/postmaster.pid';

	return undef unless -f $file;
	my ($pid) = split /\n/, slurp_file($file);
	return $pid;
}

# $node->describe_processes($title, $postmaster) returns, as text, each
# process the postmaster started (its title, state and kernel wait
# channel), a backtrace of those whose title contains $title ('' for all,
# when gdb is there), and the last lines of the server log
sub describe_processes
{
	my ($node, $title, $postmaster) = @_;
	my @parts;

	$postmaster //= $node->postmaster_pid;
	return "-- no postmaster\n" unless $postmaster;
	my $gdb = grep { -x "$_/gdb" } split /:/, $ENV{PATH} // '';
	for my $stat (glob '/proc/[0-9]*/stat')
	{
		# a process may exit while it is read: skipped
		my ($pid, $ppid) = ((eval { slurp_file($stat) } // '') =~ /^(\d+) \(.*\) \S+ (\d+)/s)
		  or next;
		next unless $ppid == $postmaster;
		my $proc = "/proc/$pid";
		my $name = eval { slurp_file("$proc/cmdline") } // next;
		$name =~ s/\0+/ /g;
		my ($state) = (eval { slurp_file("$proc/status") } // '') =~ /^State:\s*(.*)$/m;
		my $wchan = eval { slurp_file("$proc/wchan") } // '?';
		push @parts, sprintf('-- process %d: %s (%s, in %s)', $pid, $name, $state // '?', $wchan);
		next unless $gdb && index($name, $title) >= 0;
		my $bt = `timeout 30 gdb -p $pid -batch -nx -ex bt 2>&1`;
		push @parts, join("\n", grep { /^#\d/ } split /\n/, $bt);
	}
	my @log = grep { /^\d{4}-\d\d-\d\d / && !/ statement: / } split /\n/, slurp_file($node->logfile);
	splice(@log, 0, @log - 40) if @log > 40;
	push @parts, "-- server log, last lines:\n" . join("\n", @log);
	return join("\n", @parts);
}

# $node->describe_queue($db) returns, as text, of database $db (default
# postgres): the requests not yet done or
# failed (how many by state, and the oldest few), the open batches, what
# the workers are doing and the state of each environment
sub describe_queue
{
	my ($node, $db) = @_;
	my @parts;
	my @queries = (
		'requests not final, by state' => q{
			SELECT state, environment, count(*), min(updated_at), max(updated_at)
			FROM enrich.requests WHERE state NOT IN ('done', 'failed')
			GROUP BY 1, 2 ORDER BY 1, 2},
		'oldest requests not final' => q{
			SELECT id, state, environment, coalesce(linkedin_url, person_id, pdl_id), attempts,
				claimed_by, submission, batch_id, duplicate_of, next_attempt_at, updated_at, error
			FROM enrich.requests WHERE state NOT IN ('done', 'failed')
			ORDER BY updated_at, id LIMIT 10},
		'open batches' => q{
			SELECT batch_id, environment, origin, status, request_count, processed_count,
				items_received, submission, next_poll_at, poll_interval_ms, last_error,
				pg_catalog.mod(pg_catalog.hashtext(batch_id) & 2147483647,
					current_setting('enrich.workers')::int) AS share
			FROM enrich.batches WHERE NOT closed ORDER BY submitted_at LIMIT 20},
		'workers' => q{
			SELECT pid, state, wait_event_type, wait_event, xact_start, query
			FROM pg_catalog.pg_stat_activity WHERE backend_type = 'enrich worker'
			ORDER BY pid},
		'environments' => q{
			SELECT e, s.* FROM unnest(ARRAY['live', 'test']) AS e,
				LATERAL enrich.worker_state(e) AS s});
	while (my ($title, $query) = splice(@queries, 0, 2))
	{
		my ($stdout, $stderr);
		$node->psql($db // 'postgres', $query, stdout => \$stdout, stderr => \$stderr,
			extra_params => ['-P', 'tuples_only=off', '-P', 'footer=off']);
		push @parts, "-- $title:\n" . ($stdout ne '' ? $stdout : '(none)')
		  . ($stderr ? "\n$stderr" : '');
	}
	return join("\n", @parts);
}

# $node->count_mismatches($db) returns how many keys (environment, owner,
# category, UTC day of completion) the counters of enrich.request_counts
# count otherwise than a count of enrich.requests itself: 0 when they agree
sub count_mismatches
{
	my ($node, $db) = @_;
	return $node->safe_psql($db // 'postgres', q{
		WITH truth AS (
			SELECT environment, owner,
				CASE WHEN state = 'queued' AND attempts = 0 THEN 'queued'
					 WHEN state = 'queued' THEN 'waiting_retry'
					 WHEN state IN ('submitting', 'submitted') THEN 'in_flight'
					 ELSE state END AS category,
				CASE WHEN state IN ('done', 'failed') THEN (completed_at AT TIME ZONE 'UTC')::date END AS day,
				count(*) AS n
			FROM enrich.requests GROUP BY 1, 2, 3, 4),
		counted AS (
			SELECT environment, owner, category, completed_day AS day, sum(n) AS n
			FROM enrich.request_counts GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0)
		SELECT count(*) FROM truth t FULL JOIN counted c
			ON (t.environment, t.owner, t.category) = (c.environment, c.owner, c.category)
			AND t.day IS NOT DISTINCT FROM c.day
		WHERE t.n IS DISTINCT FROM c.n});
}

# $node->sqlstate_of($db, $role, $query) runs a statement as a role and
# returns its SQLSTATE ('no error' when it succeeds, the whole error text
# when none is shown)
sub sqlstate_of
{
	my ($node, $db, $role, $query) = @_;
	my ($rc, $out, $err) = $node->psql($db, "\\set VERBOSITY verbose\n$query",
		extra_params => [ '-U', $role ]);
	return $rc == 0 ? 'no error' : ($err =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : $err);
}

1;
