# bench.pl: the benchmark of enrich (make bench).
#
# Starts its own cluster (enrich preloaded, fsync off like the test clusters)
# and its own mock API (no start delay, every item ready at once, no rate
# limits, enrich.tier3_rate = enrich.tier4_rate = 0), runs every case of the
# benchmark several times, and prints one table: each figure's median, min
# and max over the runs, its target and whether the median meets it.  The
# same rows go to a CSV file (case, figure, median, min, max, unit, target,
# meets).
#
# The cases:
#   throughput  end-to-end: 100,000 contacts inserted into a watched table,
#               timed from the INSERT's commit until the workers (as many
#               as enrich.workers, 2 by default) have written the last person
#               back; each run starts with the queue as after CREATE EXTENSION
#               (empty, no planner statistics).  The workers' peak RSS (VmHWM,
#               reset before the run) is read at the end: the highest one,
#               with how much of it is shared_buffers' pages (RssShmem), and
#               again from runs with shared_buffers at 32 MB.
#               Write-back bound: the same 100,000 items applied by a SQL
#               procedure (bench.sql) from pre-built pages of 50, one COMMIT
#               per page, to the same tables (enrich.requests and a watched
#               contacts table, vacuumed and analyzed first: a best case),
#               with no HTTP.  Ratio: one per pair of runs (end-to-end and
#               bound run alternately in the same invocation).  The same pairs
#               again with enrich.workers = 1: what the second worker brings.
#   latency     one INSERT into a watched table until its person is written,
#               polled every 2 ms on one connection: p50 and p95 of 200 trials;
#               then the same persons again in new rows, settled by reuse
#   items       50,000 items read through enrich_items in one backend: the
#               API caps a batch at 1,000 requests, so 50 batches of 1,000;
#               items/s and the backend's peak RSS growth
#   trigger     COPY of 200,000 contacts into a watched table over the same
#               COPY into an unwatched one (fresh tables each run, 5 runs:
#               the case is short and noisy)
#   progress    enrich.progress read 200 times in a row with 1,000,000
#               requests in enrich.requests (four roles' live requests, which
#               the workers leave alone: the bench sets no live key; most done
#               over the last 30 days, some failed, queued, waiting a retry),
#               as a superuser and as one of the roles (row-level security):
#               the median read of each run, against what 1.0's view did
#               (a count of enrich.requests by state); and the time the
#               1,000,000 rows took to insert, the counting triggers included
#   apibound    the API as the limit: 100,000 requests against a mock with
#               the contract's rate limits (tier 3: 5/s, tier 4: 50/s, bursts
#               of 2 s), a 2 s start delay and 500 items/s per batch, with
#               enrich.tier3_rate = 5 and enrich.tier4_rate = 50: items/s
#               from the INSERT's commit (the INSERT's own time apart)
#               against the key's ceiling (50 pages of 50 a second), the
#               share of tier 4 calls that carried items, the status and
#               list calls, and 429s; then the same number of contacts
#               in a table, backfilled by enrich_watch and written back
#               (timed from the call of enrich_watch)
#   twodbs      two databases on that key at once, 50,000 requests each:
#               each one's items/s, their sum, and the fairness (the share
#               of the items the slower had when the faster finished)
#   refresh     a watched table of 1,000,000 rows, each with a person that
#               enrich.enriched_rows records, refresh_after 90 days: the
#               first worker's look for rows due (the statement of its round,
#               every 10 s) with none due and with all due, and
#               enrich_refresh queuing 10,000 rows (a round's most) found
#               among them
#   calls       HTTP calls per 1,000 requests with the mock's start delay at
#               2 s, for 1,000 and 10,000 requests, against the ideal (one
#               bulk enrich per 1,000, one items call per 50, one status poll
#               per batch): first from freshly started workers each run, then
#               from the same workers again once they have learned the delay
#
# The bench never asserts a time: it prints figures, and exits non-zero only
# when a case fails to run (its rows then say why).
#
# Usage (test/harness.sh bench runs it as the cluster's OS user, with
# TESTDIR set, from a copy of test/):
#   perl -I test/perl -I <pgxs>/src/test/perl test/bench/bench.pl --csv FILE
#        [--runs N] [--cases throughput,latency,items,trigger,progress,apibound,twodbs,refresh,calls]
#        [--requests N] [--latency-trials N] [--copy-rows N]
#        [--items-batches N] [--trigger-runs N] [--progress-rows N]
#        [--apibound-requests N] [--pgss]
# --pgss preloads pg_stat_statements and prints each case's top statements
# (a profiling aid: it costs a little, so the figures are then not the
# reference ones).
use strict;
use warnings;
use utf8;

# PostgreSQL::Test::Utils sends STDOUT and STDERR to its log file: keep the
# terminal first (BEGIN runs before that module's INIT block)
our $TERM;

BEGIN
{
	open($TERM, '>&', \*STDOUT) or die "bench: cannot dup stdout: $!";
	binmode($TERM, ':encoding(UTF-8)');
	$TERM->autoflush(1);
}

use FindBin;
use lib "$FindBin::Bin/../perl";

use File::Spec;
use Getopt::Long;
use List::Util qw(max min sum);
use Time::HiRes qw(time sleep);

use EnrichMock;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More ();

# background psql sessions "note" every query: keep that in the log only
Test::More->builder->output(\*STDOUT);
Test::More->builder->todo_output(\*STDOUT);
Test::More->builder->failure_output(\*STDERR);
$PostgreSQL::Test::Utils::timeout_default = 900;

my %opt = (
	csv => undef,
	runs => 3,
	cases => 'throughput,latency,items,trigger,progress,apibound,twodbs,refresh,calls',
	refresh_rows => 1_000_000,
	requests => 100_000,
	latency_trials => 200,
	copy_rows => 200_000,
	items_batches => 50,
	trigger_runs => 5,
	progress_rows => 1_000_000,
	apibound_requests => 100_000,
	pgss => 0,
);
# abort reports an error that stops the bench before its cases ran (STDERR
# goes to the log only) and exits non-zero
sub abort
{
	my ($msg) = @_;
	$msg =~ s/\s+$//;
	print $TERM "bench: $msg\n";
	print STDERR "bench: $msg\n";
	exit 1;
}

{
	local $SIG{__WARN__} = sub { print $TERM $_[0] };
	GetOptions(\%opt, 'csv=s', 'runs=i', 'cases=s', 'requests=i', 'latency_trials|latency-trials=i',
		'copy_rows|copy-rows=i', 'items_batches|items-batches=i', 'trigger_runs|trigger-runs=i',
		'progress_rows|progress-rows=i', 'refresh_rows|refresh-rows=i', 'apibound_requests|apibound-requests=i', 'pgss!')
	  or abort("usage: bench.pl [--csv FILE] [--runs N] [--cases LIST] [--requests N] [--latency-trials N]\n"
		  . "                [--copy-rows N] [--items-batches N] [--trigger-runs N] [--progress-rows N]\n"
		  . "                [--apibound-requests N] [--pgss]");
}
abort("--runs and --trigger-runs must be at least 1") if $opt{runs} < 1 || $opt{trigger_runs} < 1;
abort("--requests must be a positive multiple of 50") if $opt{requests} < 50 || $opt{requests} % 50;
my %want = map { $_ => 1 } split /,/, $opt{cases};
for (sort keys %want)
{
	abort("unknown case '$_' (throughput, latency, items, trigger, progress, apibound, twodbs, refresh, calls)")
	  unless /^(?:throughput|latency|items|trigger|progress|apibound|twodbs|refresh|calls)$/;
}

my $started = time;
my @rows;                  # the table, in order
my $case_failed = 0;
my ($node, $mock, $ps);    # the cluster, the mock, a session for polling

# note prints a progress line to the terminal and the log
sub note
{
	my $line = join('', @_);
	print $TERM "# $line\n";
	print STDOUT "# $line\n";
}

# sql runs statements with psql (each one in its own transaction) and returns
# their output; it dies on an error
sub sql
{
	my ($query) = @_;
	return $node->safe_psql('postgres', $query);
}

# loadavg returns the 1, 5 and 15 minute load averages of the machine
sub loadavg
{
	open(my $fh, '<', '/proc/loadavg') or return '?';
	my @l = split ' ', scalar <$fh>;
	return "@l[0 .. 2]";
}

# proc_status reads the kB fields of /proc/<pid>/status (VmHWM, VmRSS,
# RssAnon, RssShmem, ...)
sub proc_status
{
	my ($pid) = @_;
	my %s;
	open(my $fh, '<', "/proc/$pid/status") or die "bench: cannot read /proc/$pid/status: $!\n";
	while (my $line = <$fh>)
	{
		$s{$1} = $2 if $line =~ /^(\w+):\s+(\d+) kB/;
	}
	close $fh;
	return \%s;
}

# reset_peak sets the peak RSS (VmHWM) of a process back to its current RSS,
# so that VmHWM read later is the peak since now (the bench runs as the
# server's OS user, which may write /proc/<pid>/clear_refs)
sub reset_peak
{
	my ($pid) = @_;
	open(my $fh, '>', "/proc/$pid/clear_refs")
	  or die "bench: cannot reset the peak RSS of process $pid: $!\n";
	print $fh "5\n";
	close $fh or die "bench: cannot reset the peak RSS of process $pid: $!\n";
}

# summary returns the median, min and max of a list
sub summary
{
	my @v = sort { $a <=> $b } @_;
	my $n = @v;
	my $median = $n % 2 ? $v[ ($n - 1) / 2 ] : ($v[ $n / 2 - 1 ] + $v[ $n / 2 ]) / 2;
	return ($median, $v[0], $v[-1]);
}

# add_row records one figure: values of every run, unit, digits to print, and
# the target as text with a test of the median (no test: no target)
sub add_row
{
	my (%r) = @_;
	$r{target} //= '—';
	push @rows, \%r;
}

# add_failure records that a case failed to run, with the error
sub add_failure
{
	my ($case, $error) = @_;
	$error =~ s/\s+/ /g;
	$error =~ s/^\s+|\s+$//g;
	$case_failed = 1;
	note("case $case FAILED: $error");
	# the server's message is enough in the table
	$error = $1 if $error =~ /(ERROR:.*?)(?:' while running| at \S+ line \d+|$)/;
	$error = substr($error, 0, 157) . '...' if length $error > 160;
	push @rows, { case => $case, figure => "failed to run: $error", error => 1, target => '—' };
}

# worker_pids returns the pids of the enrich workers that run, sorted
sub worker_pids
{
	my $out = $ps->query_safe(
		"SELECT string_agg(pid::text, ' ' ORDER BY pid) FROM pg_stat_activity WHERE backend_type = 'enrich worker'");
	return grep { /^\d+$/ } split ' ', $out;
}

# wait_for_workers waits until enrich.workers workers run, none of them one
# of @old, and returns their pids
sub wait_for_workers
{
	my (@old) = @_;
	my %old = map { $_ => 1 } @old;
	my $want = sql("SHOW enrich.workers");
	my $deadline = time + 30;
	while (time < $deadline)
	{
		my @pids = worker_pids();
		return @pids if @pids == $want && !grep { $old{$_} } @pids;
		sleep 0.1;
	}
	die "bench: the enrich workers did not start\n";
}

# restart_workers stops the workers; the postmaster starts new ones 5 s
# later, which know of the batches before only what enrich.batches holds
sub restart_workers
{
	my @old = worker_pids() or die "bench: no enrich worker is running\n";
	sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'enrich worker'");
	my @pids = wait_for_workers(@old);
	sleep 0.3;    # their first round: recovery, nothing to do
	return @pids;
}

# reset_queue empties enrich's queue and batches between runs; with $fresh
# their planner statistics go too, so that every run starts as right after
# CREATE EXTENSION (autovacuum analyzes them during the run, as it would)
sub reset_queue
{
	my ($fresh) = @_;
	sql("TRUNCATE enrich.requests, enrich.batches, enrich.intake RESTART IDENTITY");
	sql("DELETE FROM pg_statistic WHERE starelid IN ('enrich.requests'::regclass, 'enrich.batches'::regclass, "
		  . "'enrich.intake'::regclass)")
	  if $fresh;
}

# wait_queue_empty waits until no request of the queue (nor contact of the
# intake) is queued or in flight;
# $tick is called on every poll
sub wait_queue_empty
{
	my ($timeout, $interval, $tick) = @_;
	my $deadline = time + $timeout;
	while (1)
	{
		my $pending = $ps->query_safe(
			"SELECT EXISTS (SELECT 1 FROM enrich.requests WHERE state = 'queued') "
			  . "OR EXISTS (SELECT 1 FROM enrich.intake) "
			  . "OR EXISTS (SELECT 1 FROM enrich.requests WHERE state IN ('submitting', 'submitted'))");
		$tick->() if $tick;
		return if $pending eq 'f';
		if (time > $deadline)
		{
			my $left = sql("SELECT count(*) FROM enrich.requests WHERE state NOT IN ('done', 'failed')");
			die "bench: $left requests were still pending after ${timeout} s\n";
		}
		sleep $interval;
	}
}

# pgss_reset and pgss_report: with --pgss, the top statements of a case
sub pgss_reset
{
	sql("SELECT pg_stat_statements_reset()") if $opt{pgss};
}

sub pgss_report
{
	my ($case) = @_;
	return unless $opt{pgss};
	my $out = sql(q{
		SELECT calls, round(total_exec_time::numeric, 0), round(mean_exec_time::numeric, 3),
		       rows, regexp_replace(left(query, 160), '\s+', ' ', 'g')
		FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 25});
	note("pg_stat_statements, case $case: calls | total ms | mean ms | rows | statement");
	note("  $_") for split /\n/, $out;
}

# contacts_table creates a contacts table of the shape every case uses
sub contacts_table
{
	my ($name) = @_;
	sql("DROP TABLE IF EXISTS $name; "
		  . "CREATE TABLE $name (id bigint PRIMARY KEY, name text, linkedin text, person jsonb)");
}

# drop_contacts unwatches and drops a contacts table
sub drop_contacts
{
	my ($name) = @_;
	sql("SELECT enrich_unwatch('$name'); DROP TABLE $name");
}

# ---------------------------------------------------------------------------
# end-to-end, write-back bound, ratio, worker memory
# ---------------------------------------------------------------------------

# e2e_run inserts the contacts into a fresh watched table and times the
# workers from the INSERT's commit to the last person written; it returns
# the seconds and, of the worker with the highest peak, its VmHWM and its
# RssShmem at the end, with the largest RssAnon of any worker seen, in MB
sub e2e_run
{
	my ($run, $label) = @_;
	$label //= '';
	my $n = $opt{requests};
	my $t = "bench_e2e_$run";

	reset_queue(1);
	contacts_table($t);
	sql("SELECT enrich_watch('$t', 'person', linkedin_url_column => 'linkedin')");
	sql("CHECKPOINT");
	my @wpids = worker_pids() or die "bench: no enrich worker is running\n";
	reset_peak($_) for @wpids;
	my $anon_peak = 0;
	my $t0 = sql("INSERT INTO $t SELECT g, 'Contact ' || g, 'https://www.linkedin.com/in/bench-' || g, NULL "
		  . "FROM generate_series(1, $n) g; SELECT extract(epoch FROM clock_timestamp())");
	wait_queue_empty(900, 0.25,
		sub { $anon_peak = max($anon_peak, map { proc_status($_)->{RssAnon} // 0 } @wpids); });
	# the figures of the worker with the highest peak
	my ($st) = sort { $b->{VmHWM} <=> $a->{VmHWM} } map { proc_status($_) } @wpids;
	my ($end, $done, $failed, $written) = split /\|/, sql(
		"SELECT extract(epoch FROM max(completed_at)), count(*) FILTER (WHERE state = 'done'), "
		  . "count(*) FILTER (WHERE state = 'failed'), (SELECT count(*) FROM $t WHERE person IS NOT NULL) "
		  . "FROM enrich.requests");
	die "bench: end-to-end run $run: $done done, $failed failed, $written persons written, of $n\n"
	  unless $done == $n && $written == $n;
	die "bench: the enrich worker restarted during end-to-end run $run\n"
	  unless join(' ', worker_pids()) eq join(' ', @wpids);
	my $secs = $end - $t0;
	note(sprintf("end-to-end run %d%s: %.2f s, %.0f items/s; %d workers, the highest VmHWM %.1f MB "
			. "(RssShmem now %.1f MB), largest RssAnon seen %.1f MB",
			$run, $label, $secs, $n / $secs, scalar(@wpids), $st->{VmHWM} / 1024, ($st->{RssShmem} // 0) / 1024,
			$anon_peak / 1024));
	drop_contacts($t);
	return ($secs, $st->{VmHWM} / 1024, ($st->{RssShmem} // 0) / 1024, $anon_peak / 1024);
}

# bound_run prepares the same tables as the worker sees them before its
# first page (contacts without persons, their requests 'submitting' in
# batches of 1,000), then times bench.apply_pages alone.  Only enrich's own
# trigger may set a request's source row, so the requests are queued by the
# watch itself, in environment 'live' (no key in the bench cluster: the
# worker leaves them alone), turned from intake into requests by
# enrich.flush_intake, then moved to 'test' and 'submitting'.
sub bound_run
{
	my ($run) = @_;
	my $n = $opt{requests};
	my $t = "bench_bound_$run";

	reset_queue();
	contacts_table($t);
	sql("SELECT enrich_watch('$t', 'person', linkedin_url_column => 'linkedin', environment => 'live')");
	sql("INSERT INTO $t SELECT g, 'Contact ' || g, 'https://www.linkedin.com/in/bench-' || g, NULL "
		  . "FROM generate_series(1, $n) g");
	sql("SELECT enrich.flush_intake()");
	# batches closed, so that the worker leaves them alone; each carries the
	# requests of its submission, as the worker records them
	sql("INSERT INTO enrich.batches (batch_id, environment, request_count, submission, closed) "
		  . "SELECT 'bench_bound_' || k, 'test', 1000, -1 - k, true FROM generate_series(0, "
		  . int(($n - 1) / 1000) . ") k; "
		  . "UPDATE enrich.requests SET environment = 'test', state = 'submitting', attempts = 1, "
		  . "submission = -1 - (id - 1) / 1000");
	my $misplaced = sql("SELECT count(*) FROM enrich.requests "
		  . "WHERE source_relid <> '$t'::regclass OR id <> (source_key ->> 0)::bigint");
	die "bench: $misplaced requests of the bound are not request g for contact g\n" if $misplaced;
	sql("VACUUM ANALYZE enrich.requests; VACUUM ANALYZE $t; CHECKPOINT");
	my ($t0, $t1) = split /\n/, sql("SELECT extract(epoch FROM clock_timestamp()); "
		  . "CALL bench.apply_pages('$t', " . ($n / 50) . "); SELECT extract(epoch FROM clock_timestamp())");
	my ($done, $written) = split /\|/, sql(
		"SELECT count(*) FILTER (WHERE state = 'done' AND person IS NOT NULL), "
		  . "(SELECT count(*) FROM $t WHERE person IS NOT NULL) FROM enrich.requests");
	die "bench: bound run $run: $done done, $written persons written, of $n\n"
	  unless $done == $n && $written == $n;
	my $secs = $t1 - $t0;
	note(sprintf("write-back bound run %d: %.2f s, %.0f items/s", $run, $secs, $n / $secs));
	drop_contacts($t);
	return $secs;
}

# with_setting restarts the cluster with a server setting changed, runs the
# code, and restarts it with the setting as it was (whatever happened)
sub with_setting
{
	my ($name, $value, $code) = @_;
	my $restart = sub {
		$ps->quit;
		$node->restart;
		$ps = $node->background_psql('postgres');
		wait_for_workers();
	};
	sql("ALTER SYSTEM SET $name = '$value'");
	$restart->();
	my $ok = eval { $code->(); 1 };
	my $err = $@;
	sql("ALTER SYSTEM RESET $name");
	$restart->();
	die $err unless $ok;
}

# case_throughput runs end-to-end and bound alternately, then records
# end-to-end, bound, their ratio (per pair) and the workers' memory; then
# the same pairs with one worker (enrich.workers = 1), and end-to-end runs
# with a smaller buffer pool, for the workers' memory
sub case_throughput
{
	my $n = $opt{requests};
	my (@e2e, @bound, @hwm, @shmem, @anon, @one_e2e, @one_bound, @small_hwm, @small_shmem);

	pgss_reset();
	my $t0 = time;
	reset_queue();
	sql("CALL bench.build_pages($n)");
	note(sprintf("pre-built %d pages of 50 items from %d batches of the mock in %.1f s",
			$n / 50, int(($n + 999) / 1000), time - $t0));
	for my $run (1 .. $opt{runs})
	{
		my ($secs, $hwm, $shmem, $anon) = e2e_run($run);
		push @e2e, $secs;
		push @hwm, $hwm;
		push @shmem, $shmem;
		push @anon, $anon;
		push @bound, bound_run($run);
	}
	pgss_report('throughput');

	# what the second worker brings
	with_setting('enrich.workers', 1, sub {
		for my $run (1 .. $opt{runs})
		{
			push @one_e2e, (e2e_run($run, ', one worker'))[0];
			push @one_bound, bound_run($run);
		}
	});

	# how much of a worker's resident size is the buffer pool: the same runs
	# with shared_buffers at 32 MB instead of the default 128 MB
	with_setting('shared_buffers', '32MB', sub {
		for my $run (1 .. $opt{runs})
		{
			my (undef, $hwm, $shmem) = e2e_run($run, ', shared_buffers = 32MB');
			push @small_hwm, $hwm;
			push @small_shmem, $shmem;
		}
	});

	my $nice = $n == 100_000 ? '100,000' : $n;
	add_row(case => 'end-to-end', figure => "seconds, $nice requests (watched table, workers, mock)",
		values => \@e2e, unit => 's', digits => 2);
	add_row(case => 'end-to-end', figure => 'items/s', values => [ map { $n / $_ } @e2e ],
		unit => 'items/s', digits => 0);
	add_row(case => 'write-back bound', figure => "seconds, $nice items (SQL procedure, pages of 50, COMMIT per page)",
		values => \@bound, unit => 's', digits => 2);
	add_row(case => 'write-back bound', figure => 'items/s', values => [ map { $n / $_ } @bound ],
		unit => 'items/s', digits => 0);
	add_row(case => 'ratio', figure => 'end-to-end items/s ÷ bound items/s (per pair of runs)',
		values => [ map { $bound[$_] / $e2e[$_] } 0 .. $#e2e ], unit => 'ratio', digits => 2,
		target => '≥ 0.7', test => sub { $_[0] >= 0.7 });
	add_row(case => 'one worker', figure => "end-to-end seconds with enrich.workers = 1 (default 2)",
		values => \@one_e2e, unit => 's', digits => 2);
	add_row(case => 'one worker', figure => 'its end-to-end items/s ÷ bound items/s (per pair of runs)',
		values => [ map { $one_bound[$_] / $one_e2e[$_] } 0 .. $#one_e2e ], unit => 'ratio', digits => 2);
	add_row(case => 'worker memory', figure => 'worker peak RSS (VmHWM) during end-to-end, the highest worker',
		values => \@hwm, unit => 'MB', digits => 1, target => '≤ 64 MB', test => sub { $_[0] <= 64 });
	add_row(case => 'worker memory', figure => "of which shared_buffers' pages it touched (RssShmem at the end)",
		values => \@shmem, unit => 'MB', digits => 1);
	add_row(case => 'worker memory', figure => 'worker largest private RSS (RssAnon, sampled every 0.25 s)',
		values => \@anon, unit => 'MB', digits => 1);
	add_row(case => 'worker memory', figure => 'worker peak RSS (VmHWM), the same runs with shared_buffers = 32MB',
		values => \@small_hwm, unit => 'MB', digits => 1);
	add_row(case => 'worker memory', figure => "of which shared_buffers' pages (RssShmem), shared_buffers = 32MB",
		values => \@small_shmem, unit => 'MB', digits => 1);
}

# ---------------------------------------------------------------------------
# latency
# ---------------------------------------------------------------------------

# case_latency runs bench.latency once per run and reads p50 and p95, then
# once per run again with the persons of that run (reused: no call)
sub case_latency
{
	my (@p50, @p95, @reused_p50);

	pgss_reset();
	reset_queue();
	sql("DROP TABLE IF EXISTS bench_latency; "
		  . "CREATE TABLE bench_latency (id bigint PRIMARY KEY, linkedin text, person jsonb); "
		  . "SELECT enrich_watch('bench_latency', 'person', linkedin_url_column => 'linkedin'); "
		  . "TRUNCATE bench.latency_results");
	for my $run (1 .. $opt{runs})
	{
		sql("CALL bench.latency($run, $opt{latency_trials}, 0.002)");
		my ($p50, $p95, $worst, $count) = split /\|/, sql(
			"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), "
			  . "percentile_cont(0.95) WITHIN GROUP (ORDER BY ms), max(ms), count(*) "
			  . "FROM bench.latency_results WHERE run = $run");
		die "bench: latency run $run recorded $count trials\n" unless $count == $opt{latency_trials};
		note(sprintf("latency run %d: p50 %.1f ms, p95 %.1f ms, max %.1f ms", $run, $p50, $p95, $worst));
		push @p50, $p50;
		push @p95, $p95;
	}
	for my $run (1 .. $opt{runs})
	{
		my $reused = 100 + $run;
		sql("CALL bench.latency($reused, $opt{latency_trials}, 0.002, $run)");
		my ($p50, $copies) = split /\|/, sql(
			"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), "
			  . "(SELECT count(*) FROM enrich.requests WHERE reused_from IS NOT NULL "
			  . "   AND (source_key->>0)::bigint / 100000 = $reused) "
			  . "FROM bench.latency_results WHERE run = $reused");
		die "bench: latency run $reused: $copies of $opt{latency_trials} persons were reused\n"
		  unless $copies == $opt{latency_trials};
		note(sprintf("latency run %d, persons enriched before: p50 %.1f ms", $run, $p50));
		push @reused_p50, $p50;
	}
	pgss_report('latency');
	drop_contacts('bench_latency');
	add_row(case => 'latency', figure => "insert into a watched table → person written, p50 of $opt{latency_trials}",
		values => \@p50, unit => 'ms', digits => 1, target => '≤ 100 ms', test => sub { $_[0] <= 100 });
	add_row(case => 'latency', figure => "p95 of $opt{latency_trials}", values => \@p95,
		unit => 'ms', digits => 1);
	add_row(case => 'latency', figure => "the same, a person enriched before (reused, no call), p50",
		values => \@reused_p50, unit => 'ms', digits => 1, target => '≤ 50 ms', test => sub { $_[0] <= 50 });
}

# ---------------------------------------------------------------------------
# enrich_items
# ---------------------------------------------------------------------------

# case_items reads 50 batches of 1,000 items through enrich_items in one
# backend per run, after a one-item warm-up, and measures the backend's
# peak RSS growth over that
sub case_items
{
	my $nb = $opt{items_batches};
	my (@rate, @growth);

	pgss_reset();
	my @batches;
	for my $b (1 .. $nb)
	{
		my @requests = map {
			{ professionalSocialMediaUrl => "https://www.linkedin.com/in/items-$b-$_",
			  metadata => { enrichRequestId => $b * 1000 + $_ } }
		} 1 .. 1000;
		my $r = $mock->bulk_enrich(\@requests);
		die "bench: bulk enrich for enrich_items: $r->{status} $r->{content}\n" unless $r->{status} == 202;
		push @batches, $r->{json}{batchId};
	}
	my $last = $mock->wait_batch($batches[-1]);
	die "bench: the batches for enrich_items did not complete\n"
	  unless ($last->{status} // '') eq 'completed';

	for my $run (1 .. $opt{runs})
	{
		my $s = $node->background_psql('postgres');
		my $pid = $s->query_safe('SELECT pg_backend_pid()');
		# warm-up: the first items call opens the API connection and fills caches
		$s->query_safe("SELECT count(*) FROM (SELECT * FROM enrich_items('$batches[0]') LIMIT 1) s");
		reset_peak($pid);
		my $base = proc_status($pid);
		my $total = 0;
		my $t0 = time;
		for my $b (@batches)
		{
			$total += $s->query_safe("SELECT count(person) FROM enrich_items('$b')");
		}
		my $secs = time - $t0;
		my $after = proc_status($pid);
		$s->quit;
		die "bench: enrich_items returned $total persons, not " . ($nb * 1000) . "\n"
		  unless $total == $nb * 1000;
		my $growth = ($after->{VmHWM} - $base->{VmRSS}) / 1024;
		note(sprintf("enrich_items run %d: %d items in %.2f s, %.0f items/s; VmRSS %.1f MB before, "
				. "VmHWM %.1f MB after (RssAnon %.1f → %.1f MB)",
				$run, $total, $secs, $total / $secs, $base->{VmRSS} / 1024, $after->{VmHWM} / 1024,
				$base->{RssAnon} / 1024, $after->{RssAnon} / 1024));
		push @rate, $total / $secs;
		push @growth, $growth;
	}
	pgss_report('items');
	my $items = $nb * 1000;
	$items =~ s/(\d)(\d{3})$/$1,$2/;
	add_row(case => 'enrich_items',
		figure => "items/s, $items items in one backend ($nb batches × 1,000: the API caps a batch at 1,000)",
		values => \@rate, unit => 'items/s', digits => 0);
	add_row(case => 'enrich_items', figure => 'backend peak RSS growth (VmHWM after − VmRSS before)',
		values => \@growth, unit => 'MB', digits => 1, target => '≤ 16 MB', test => sub { $_[0] <= 16 });
}

# ---------------------------------------------------------------------------
# trigger overhead
# ---------------------------------------------------------------------------

# case_trigger times a COPY of the same file into an unwatched and a watched
# table.  The watched table's environment is 'live', which has no key in the
# bench cluster, so the worker leaves the 200,000 requests alone and the next
# COPY runs on a quiet server.
sub case_trigger
{
	my $rows = $opt{copy_rows};
	my $file = File::Spec->rel2abs(File::Spec->catfile($PostgreSQL::Test::Utils::tmp_check, 'bench_contacts.csv'));
	my (@plain, @watched);

	open(my $fh, '>', $file) or die "bench: cannot write $file: $!\n";
	print $fh "$_,Contact $_,https://www.linkedin.com/in/copy-$_\n" for 1 .. $rows;
	close $fh or die "bench: cannot write $file: $!\n";

	pgss_reset();
	for my $run (1 .. $opt{trigger_runs})
	{
		reset_queue();
		contacts_table('bench_copy_plain');
		contacts_table('bench_copy_watched');
		sql("SELECT enrich_watch('bench_copy_watched', 'person', linkedin_url_column => 'linkedin', "
			  . "environment => 'live')");
		my %secs;
		# alternate which goes first
		for my $t ($run % 2 ? qw(bench_copy_plain bench_copy_watched) : qw(bench_copy_watched bench_copy_plain))
		{
			sql("CHECKPOINT");
			my $t0 = time;
			$ps->query_safe("COPY $t (id, name, linkedin) FROM '$file' (FORMAT csv)");
			$secs{$t} = time - $t0;
		}
		my $queued = sql("SELECT coalesce(sum(cardinality(source_key)), 0) FROM enrich.intake "
			  . "WHERE source_relid = 'bench_copy_watched'::regclass");
		die "bench: the watched COPY queued $queued requests, not $rows\n" unless $queued == $rows;
		note(sprintf("trigger run %d: unwatched %.3f s, watched %.3f s, ratio %.2f", $run,
				$secs{bench_copy_plain}, $secs{bench_copy_watched},
				$secs{bench_copy_watched} / $secs{bench_copy_plain}));
		push @plain, $secs{bench_copy_plain};
		push @watched, $secs{bench_copy_watched};
		drop_contacts('bench_copy_watched');
		sql("DROP TABLE bench_copy_plain");
	}
	reset_queue();
	unlink $file;
	pgss_report('trigger');
	my $nice = $rows == 200_000 ? '200,000' : $rows;
	add_row(case => 'trigger overhead', figure => "COPY of $nice contacts into an unwatched table, seconds",
		values => \@plain, unit => 's', digits => 3);
	add_row(case => 'trigger overhead', figure => 'the same COPY into a watched table, seconds',
		values => \@watched, unit => 's', digits => 3);
	add_row(case => 'trigger overhead', figure => 'watched ÷ unwatched COPY time (per run)',
		values => [ map { $watched[$_] / $plain[$_] } 0 .. $#plain ], unit => 'ratio', digits => 2,
		target => '≤ 2.0', test => sub { $_[0] <= 2.0 });
}

# ---------------------------------------------------------------------------
# enrich.progress at a million rows
# ---------------------------------------------------------------------------

# progress_fill fills enrich.requests with n live requests of four roles:
# 2% queued, 1% waiting a retry, 4% failed, the rest done, completed over
# the last 30 days; returns the seconds the INSERT took
sub progress_fill
{
	my ($n) = @_;
	sql(q{DO $$ BEGIN
		FOR i IN 1 .. 4 LOOP
			IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bench_owner_' || i) THEN
				EXECUTE format('CREATE ROLE %I', 'bench_owner_' || i);
			END IF;
			EXECUTE format('GRANT enrich_user TO %I', 'bench_owner_' || i);
		END LOOP; END $$});
	my $t0 = time;
	$ps->query_safe(qq{INSERT INTO enrich.requests
		(environment, person_id, owner, state, attempts, completed_at, created_at)
		SELECT 'live', 'p-progress-' || g, 'bench_owner_' || (g % 4 + 1),
			CASE WHEN g % 100 < 2 THEN 'queued' WHEN g % 100 < 3 THEN 'queued'
				 WHEN g % 100 < 7 THEN 'failed' ELSE 'done' END,
			CASE WHEN g % 100 < 2 THEN 0 ELSE 1 END,
			CASE WHEN g % 100 >= 3 THEN now() - (g % 30) * interval '1 day' END,
			now() - (g % 30) * interval '1 day' - interval '1 hour'
		FROM generate_series(1, $n) g});
	my $secs = time - $t0;
	sql('ANALYZE enrich.requests');
	# the first worker folds the statement's counter rows within a second
	my $deadline = time + 30;
	sleep 0.2 while time < $deadline && sql('SELECT count(*) FROM enrich.request_counts WHERE pending') > 0;
	return $secs;
}

# progress_reads returns the median of 200 reads of enrich.progress, in ms,
# as role (undef: the superuser)
sub progress_reads
{
	my ($role) = @_;
	my $set = defined $role ? "SET ROLE $role;" : '';
	my $ms = sql("$set SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t) FROM bench.progress_reads(200) t");
	return $ms + 0;
}

# case_progress: enrich.progress at progress_rows requests, against a count
# of enrich.requests by state (what 1.0's view did on every read)
sub case_progress
{
	my $n = $opt{progress_rows};
	my (@super, @role, @scan);

	reset_queue(1);
	my $fill = progress_fill($n);
	die "bench: the counters do not count the $n requests\n"
	  unless sql(q{SELECT sum(n) FROM enrich.request_counts}) == $n;
	for my $run (1 .. $opt{runs})
	{
		push @super, progress_reads(undef);
		push @role, progress_reads('bench_owner_1');
		my $t0 = time;
		sql(q{SELECT state, count(*) FROM enrich.requests GROUP BY state});
		push @scan, (time - $t0) * 1000;
		note(sprintf("progress run %d: %.2f ms as a superuser, %.2f ms as a role, a count by state %.0f ms",
				$run, $super[-1], $role[-1], $scan[-1]));
	}
	reset_queue();
	my $nice = $n == 1_000_000 ? '1,000,000' : $n;
	add_row(case => 'progress', figure => "INSERT of $nice requests in one statement, counting triggers included, seconds",
		values => [$fill], unit => 's', digits => 1);
	add_row(case => 'progress', figure => "read of enrich.progress at $nice requests, a superuser (median of 200)",
		values => \@super, unit => 'ms', digits => 2, target => '≤ 10 ms', test => sub { $_[0] <= 10 });
	add_row(case => 'progress', figure => 'the same, a role that sees a quarter (row-level security)',
		values => \@role, unit => 'ms', digits => 2, target => '≤ 10 ms', test => sub { $_[0] <= 10 });
	add_row(case => 'progress', figure => "a count of enrich.requests by state (1.0's view scanned so)",
		values => \@scan, unit => 'ms', digits => 0);
}

# ---------------------------------------------------------------------------
# refresh at a million rows
# ---------------------------------------------------------------------------

# the first worker's look for the rows due of each watch, as refresh.c's
# round runs it every 10 s
my $refresh_due_sql = q{
	SELECT w.source::pg_catalog.oid, w.refresh_after,
	    (SELECT pg_catalog.count(*) FROM enrich.enriched_rows e
	     WHERE e.source OPERATOR(pg_catalog.=) w.source
	       AND e.refresh_from OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) w.refresh_after))
	FROM enrich.watches w WHERE w.refresh_after IS NOT NULL};

# refresh_fill makes bench.refreshed: n rows with a person, watched with
# refresh_after 90 days (the rows go in before the watch: none is queued),
# and records each row in enrich.enriched_rows as answered 0 to 79 days ago
sub refresh_fill
{
	my ($n) = @_;
	sql(qq{DROP TABLE IF EXISTS bench.refreshed;
		CREATE TABLE bench.refreshed (id bigint PRIMARY KEY, name text, linkedin text, person jsonb);
		INSERT INTO bench.refreshed SELECT g, 'Zoë ' || g, 'linkedin.com/in/refresh-' || g, '{"fullName": "Zoë"}'
		FROM generate_series(1, $n) g;
		SELECT enrich_watch('bench.refreshed', 'person', linkedin_url_column => 'linkedin',
		                    refresh_after => '90 days');
		INSERT INTO enrich.enriched_rows (source, source_key, request, answered_at, refresh_from)
		SELECT 'bench.refreshed'::regclass, jsonb_build_array(g::text), 0, a, a
		FROM generate_series(1, $n) g, LATERAL (SELECT now() - (g % 80) * interval '1 day' AS a) t;
		VACUUM ANALYZE bench.refreshed, enrich.enriched_rows});
}

# refresh_look returns the median time of 20 runs of the worker's look, in
# ms, with jit off as in the workers' sessions
sub refresh_look
{
	return sql(qq{SET jit = off; SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t) FROM (
		SELECT bench.time_statement(\$s\$$refresh_due_sql\$s\$) AS t FROM generate_series(1, 20)) r}) + 0;
}

# case_refresh: the cost of the refresh at refresh_rows watched rows
sub case_refresh
{
	my $n = $opt{refresh_rows};
	my (@none, @all, @hand);

	reset_queue();
	# no refresh of the bench's table by the workers meanwhile
	sql("ALTER SYSTEM SET enrich.refresh_window = '00:00-00:01'; SELECT pg_reload_conf()");
	refresh_fill($n);
	for my $run (1 .. $opt{runs})
	{
		sql(q{UPDATE enrich.enriched_rows
			SET answered_at = now() - ((source_key->>0)::bigint % 80) * interval '1 day',
			    refresh_from = now() - ((source_key->>0)::bigint % 80) * interval '1 day'});
		push @none, refresh_look();
		# (as autovacuum would after the update: rows fall due with time, not by one)
		sql(q{UPDATE enrich.enriched_rows SET refresh_from = refresh_from - interval '100 days'});
		sql(q{VACUUM enrich.enriched_rows});
		push @all, refresh_look();
		# 10,000 rows older than 170 days, found among the million due
		sql(q{UPDATE enrich.enriched_rows SET answered_at = answered_at - interval '180 days'
			WHERE (source_key->>0)::bigint <= 10000});
		my $t0 = time;
		my $queued = sql(q{SELECT enrich_refresh('bench.refreshed', '170 days')});
		push @hand, (time - $t0) * 1000;
		die "bench: enrich_refresh queued $queued rows, not 10000\n" unless $queued == 10000;
		wait_queue_empty(300, 0.2);
		note(sprintf("refresh run %d: look %.2f ms with none due, %.1f ms with all due; enrich_refresh of 10,000: %.0f ms",
				$run, $none[-1], $all[-1], $hand[-1]));
	}
	sql("ALTER SYSTEM RESET enrich.refresh_window; SELECT pg_reload_conf()");
	drop_contacts('bench.refreshed');
	reset_queue();
	my $nice = $n == 1_000_000 ? '1,000,000' : $n;
	add_row(case => 'refresh', figure => "the first worker's look for rows due (every 10 s), $nice watched rows, none due",
		values => \@none, unit => 'ms', digits => 2, target => '≤ 10 ms', test => sub { $_[0] <= 10 });
	add_row(case => 'refresh', figure => "the same, all $nice due (it counts them to spread them)",
		values => \@all, unit => 'ms', digits => 1);
	add_row(case => 'refresh', figure => "enrich_refresh queuing 10,000 rows found among $nice due",
		values => \@hand, unit => 'ms', digits => 0);
}

# ---------------------------------------------------------------------------
# the API as the limit: one key's budget, one database or two
# ---------------------------------------------------------------------------

# with_limited_api runs $code against a mock with the contract's rate
# limits, a 2 s start delay and 500 items/s per batch, the workers keeping
# to the same limits; the mock is passed to $code
sub with_limited_api
{
	my ($code) = @_;
	my $limited = EnrichMock->start(start_delay_ms => 2000, items_per_second => 500, tier3 => 5, tier4 => 50);
	sql("ALTER SYSTEM SET enrich.api_url = '" . $limited->url . "'");
	sql("ALTER SYSTEM SET enrich.tier3_rate = 5");
	sql("ALTER SYSTEM SET enrich.tier4_rate = 50");
	sql("SELECT pg_reload_conf()");
	my $ok = eval { $code->($limited); 1 };
	my $err = $@;
	sql("ALTER SYSTEM RESET $_") for qw(enrich.api_url enrich.tier3_rate enrich.tier4_rate);
	sql("SELECT pg_reload_conf()");
	$limited->stop;
	die $err unless $ok;
}

# tier4_calls returns, from a mock's stats: item pages, status polls, list
# calls, and the 429s of every endpoint
sub tier4_calls
{
	my ($stats) = @_;
	my $ep = $stats->{endpoints};
	my $count = sub { my ($name) = @_; return sum(0, values %{ $ep->{$name} // {} }) };
	my $refused = sum(0, map { $_->{429} // 0 } values %$ep);
	my $where = join(', ', map { "$_ $ep->{$_}{429}" } grep { $ep->{$_}{429} } sort keys %$ep);
	return ($count->('list_items'), $count->('batch_status'), $count->('list_batches'), $refused, $where);
}

# apibound_rates returns the items/s of the run that started at t0 (the
# server's clock): over the whole backfill, from the INSERT to the last
# person written, and after the API completed its first batch (the figure
# a cold database, which knows nothing of how long batches take, must
# reach), both read from the rows
sub apibound_rates
{
	my ($n, $t0) = @_;
	my ($whole, $after) = split /\|/, sql(qq{
		WITH first AS (SELECT min(submitted_at + took_ms * interval '1 millisecond') AS at
					   FROM enrich.batches WHERE took_ms IS NOT NULL),
			 done AS (SELECT max(completed_at) AS at FROM enrich.requests)
		SELECT $n / extract(epoch FROM done.at - '$t0'::timestamptz),
			   (SELECT count(*) FROM enrich.requests r WHERE r.completed_at > first.at)
			   / extract(epoch FROM done.at - first.at)
		FROM first, done});
	return ($whole, $after);
}

# case_apibound: n requests with the API as the limit
sub case_apibound
{
	my $n = $opt{apibound_requests};
	my (@rate, @warm_rate, @pages_share, @other_per_1000, @refused, @backfill_rate, @insert_secs);

	with_limited_api(sub {
		my ($limited) = @_;
		for my $run (1 .. $opt{runs})
		{
			reset_queue(1);
			restart_workers();
			$limited->reset;
			# timed from the INSERT's commit, as end-to-end is: the workers
			# see nothing before; the INSERT's own time is a figure of its own
			my ($before, $t0) = split /\n/, sql("SELECT clock_timestamp(); "
				  . "INSERT INTO enrich.requests (person_id) SELECT 'p-apibound-$run-' || g FROM generate_series(1, $n) g; "
				  . "SELECT clock_timestamp()");
			push @insert_secs, sql("SELECT extract(epoch FROM '$t0'::timestamptz - '$before'::timestamptz)");
			wait_queue_empty(900, 0.2);
			my ($whole, $after) = apibound_rates($n, $t0);
			my ($pages, $status, $list, $refused, $where) = tier4_calls($limited->stats);
			my $tier4 = $pages + $status + $list;
			push @rate, $whole;
			push @warm_rate, $after;
			push @pages_share, $pages / $tier4;
			push @other_per_1000, ($status + $list) * 1000 / $n;
			push @refused, $refused;
			note(sprintf("API-bound run %d: %.1f s, %.0f items/s, %.0f after the first batch completed; "
					  . "tier 4: %d pages, %d status, %d list; %d 429s%s",
					$run, $n / $whole, $whole, $after, $pages, $status, $list, $refused,
					$where ? " ($where)" : ''));

			# the same contacts in a table, backfilled by enrich_watch
			reset_queue(1);
			restart_workers();
			$limited->reset;
			contacts_table('bench_apibound');
			sql("INSERT INTO bench_apibound SELECT g, NULL, 'linkedin.com/in/apibound-$run-' || g, NULL "
				  . "FROM generate_series(1, $n) g");
			$t0 = sql('SELECT clock_timestamp()');
			sql(q{SET client_min_messages = warning;
				SELECT enrich_watch('bench_apibound', 'person', linkedin_url_column => 'linkedin', backfill => true)});
			wait_queue_empty(900, 0.2);
			($whole) = apibound_rates($n, $t0);
			push @backfill_rate, $whole;
			($pages, $status, $list, $refused) = tier4_calls($limited->stats);
			note(sprintf("API-bound run %d, a backfill: %.1f s, %.0f items/s; tier 4: %d pages, %d status, %d list; %d 429s",
					$run, $n / $whole, $whole, $pages, $status, $list, $refused));
			drop_contacts('bench_apibound');
		}
	});
	reset_queue();
	my $nice = $n == 100_000 ? '100,000' : $n;
	add_row(case => 'API-bound', figure => "items/s, $nice requests inserted into enrich.requests, contract limits, 2 s delay, 500 items/s per batch, from the INSERT's commit",
		values => \@rate, unit => 'items/s', digits => 0, target => '≥ 2375 (0.95 × 2,500)',
		test => sub { $_[0] >= 2375 });
	add_row(case => 'API-bound', figure => "that INSERT of $nice rows into enrich.requests (its triggers included)",
		values => \@insert_secs, unit => 's', digits => 2);
	add_row(case => 'API-bound', figure => 'the same, after the first batch completed (a cold database)',
		values => \@warm_rate, unit => 'items/s', digits => 0, target => '≥ 2375',
		test => sub { $_[0] >= 2375 });
	add_row(case => 'API-bound', figure => "items/s, a backfill of $nice contacts (enrich_watch backfill => true), written back",
		values => \@backfill_rate, unit => 'items/s', digits => 0, target => '≥ 2375',
		test => sub { $_[0] >= 2375 });
	add_row(case => 'API-bound', figure => 'share of tier 4 calls that were item pages',
		values => \@pages_share, unit => 'ratio', digits => 3, target => '≥ 0.95', test => sub { $_[0] >= 0.95 });
	add_row(case => 'API-bound', figure => 'status and list calls per 1,000 requests',
		values => \@other_per_1000, unit => 'calls', digits => 1);
	add_row(case => 'API-bound', figure => '429 answers', values => \@refused, unit => 'calls', digits => 0,
		target => '0', test => sub { $_[0] == 0 });
}

# twodbs_run queues n requests in each of two databases at once and returns
# each one's items/s, their sum, and the share of the items the slower one
# had when the faster finished
sub twodbs_run
{
	my ($n, $run, @dbs) = @_;
	my %secs;
	my $t0 = time;
	$node->safe_psql($_, "INSERT INTO enrich.requests (person_id) SELECT 'p-twodbs-$_-$run-' || g "
		  . "FROM generate_series(1, $n) g") for @dbs;
	my $share;
	my $deadline = time + 900;
	while (keys %secs < @dbs && time < $deadline)
	{
		my %done = map { $_ => $node->safe_psql($_, "SELECT count(*) FROM enrich.requests WHERE state = 'done'") } @dbs;
		for my $db (@dbs)
		{
			next if exists $secs{$db} || $done{$db} < $n;
			$secs{$db} = time - $t0;
			$share //= min(map { $done{$_} } @dbs) / sum(map { $done{$_} } @dbs);
		}
		sleep 0.1;
	}
	die "bench: two databases: not done in 900 s\n" unless keys %secs == @dbs;
	my $total = max(values %secs);
	return ((map { $n / $secs{$_} } @dbs), 2 * $n / $total, $share);
}

# case_twodbs: two databases on one key at once
sub case_twodbs
{
	my $n = $opt{apibound_requests} / 2;
	my @dbs = qw(bench_db_a bench_db_b);
	my (%rate, @sum, @share);

	for my $db (@dbs)
	{
		sql("CREATE DATABASE $db");
		$node->safe_psql($db, sprintf("CREATE EXTENSION enrich; SELECT enrich_set_api_key('test', '%s')",
				$mock->key_test));
	}
	my $ok = eval {
		with_limited_api(sub {
			my ($limited) = @_;
			for my $run (1 .. $opt{runs})
			{
				$node->safe_psql($_, 'TRUNCATE enrich.requests, enrich.batches, enrich.intake') for @dbs;
				$limited->reset;
				my ($a, $b, $sum, $share) = twodbs_run($n, $run, @dbs);
				push @{ $rate{a} }, $a;
				push @{ $rate{b} }, $b;
				push @sum, $sum;
				push @share, $share;
				note(sprintf("two databases run %d: %.0f and %.0f items/s, %.0f together; "
						  . "the slower had %.3f of the items when the faster finished", $run, $a, $b, $sum, $share));
			}
		});
		1;
	};
	my $err = $@;
	sql("DROP DATABASE $_ WITH (FORCE)") for @dbs;
	die $err unless $ok;
	my $nice = $n == 50_000 ? '50,000' : $n;
	add_row(case => 'two databases', figure => "items/s of the first, $nice requests each at once, one key",
		values => $rate{a}, unit => 'items/s', digits => 0);
	add_row(case => 'two databases', figure => 'items/s of the second', values => $rate{b}, unit => 'items/s',
		digits => 0);
	add_row(case => 'two databases', figure => 'items/s together (the key\'s ceiling: 2,500)', values => \@sum,
		unit => 'items/s', digits => 0);
	add_row(case => 'two databases', figure => 'share of the items the slower had when the faster finished',
		values => \@share, unit => 'ratio', digits => 3, target => '≥ 0.4', test => sub { $_[0] >= 0.4 });
}

# ---------------------------------------------------------------------------
# HTTP calls
# ---------------------------------------------------------------------------

# calls_run queues n requests at once and returns the calls the slow mock
# answered until all were done, per 1,000 requests
sub calls_run
{
	my ($slow, $n, $label, $keep_batches) = @_;
	my $ideal = calls_ideal($n);
	my $slug = $label =~ s/\W+/-/gr;

	if ($keep_batches)
	{
		sql("TRUNCATE enrich.requests, enrich.intake");
	}
	else
	{
		reset_queue();
	}
	$slow->reset;
	my $t0 = time;
	sql("INSERT INTO enrich.requests (linkedin_url) "
		  . "SELECT 'https://www.linkedin.com/in/calls-$n-$slug-' || g FROM generate_series(1, $n) g");
	wait_queue_empty(300, 0.1);
	my $secs = time - $t0;
	my $done = sql("SELECT count(*) FROM enrich.requests WHERE state = 'done'");
	die "bench: calls run: $done of $n requests done\n" unless $done == $n;
	my $stats = $slow->stats;
	my ($total, @by) = (0);
	for my $ep (sort keys %{ $stats->{endpoints} })
	{
		my $c = sum(values %{ $stats->{endpoints}{$ep} });
		$total += $c;
		push @by, "$ep $c";
	}
	note(sprintf("calls n=%d %s: %d calls (%s), ideal %d, %.2f × ideal, done in %.1f s",
			$n, $label, $total, join(', ', @by), $ideal, $total / $ideal, $secs));
	return $total * 1000 / $n;
}

# calls_ideal is the fewest calls for n requests: one bulk enrich per 1,000,
# one items call per 50, one status poll per batch
sub calls_ideal
{
	my ($n) = @_;
	return int(($n + 999) / 1000) + int(($n + 49) / 50) + int(($n + 999) / 1000);
}

# case_calls counts the mock's calls for n requests queued at once, with a
# 2 s start delay: first from freshly started workers and an empty
# enrich.batches each run (cold: a new install, nothing tells how long
# batches take), then from freshly started workers that find the earlier
# runs' batches in enrich.batches (restarted), then from the same workers
# again (warm: they have learned the delay from the batches before)
sub case_calls
{
	my $slow = EnrichMock->start(start_delay_ms => 2000);
	my %per;

	pgss_reset();
	sql("ALTER SYSTEM SET enrich.api_url = '" . $slow->url . "'");
	sql("SELECT pg_reload_conf()");
	my $ok = eval {
		for my $n (1000, 10_000)
		{
			for my $run (1 .. $opt{runs})
			{
				reset_queue();    # before the worker starts, so that it finds no batch
				restart_workers();
				push @{ $per{$n}{cold} }, calls_run($slow, $n, "cold run $run", 1);
			}
			for my $run (1 .. $opt{runs})
			{
				restart_workers();
				push @{ $per{$n}{restarted} }, calls_run($slow, $n, "restarted run $run", 1);
			}
			push @{ $per{$n}{warm} }, calls_run($slow, $n, "warm run $_", 1) for 1 .. $opt{runs};
		}
		1;
	};
	my $err = $@;
	sql("ALTER SYSTEM RESET enrich.api_url");
	sql("SELECT pg_reload_conf()");
	$slow->stop;
	die $err unless $ok;
	pgss_report('calls');
	for my $n (1000, 10_000)
	{
		my $ideal = calls_ideal($n) * 1000 / $n;
		my $limit = 1.1 * $ideal;
		my $nice = $n == 1000 ? '1,000' : '10,000';
		for my $kind (qw(cold restarted warm))
		{
			my $how = {
				cold => 'cold workers (new, enrich.batches empty)',
				restarted => 'restarted workers (enrich.batches has earlier batches)',
				warm => 'warm workers (have seen this delay)' }->{$kind};
			add_row(case => 'HTTP calls',
				figure => "calls per 1,000 requests, delay 2 s, n = $nice, $how; ideal $ideal",
				values => $per{$n}{$kind}, unit => 'calls', digits => 1,
				target => sprintf('≤ %.1f (1.1 × ideal)', $limit), test => sub { $_[0] <= $limit + 1e-9 });
		}
	}
}

# ---------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------

# cells returns the printed cells of a row
sub cells
{
	my ($r) = @_;
	return ($r->{case}, $r->{figure}, ('') x 4, $r->{target}, 'failed') if $r->{error};
	my ($median, $lo, $hi) = summary(@{ $r->{values} });
	my $f = "%.$r->{digits}f";
	my $meets = $r->{test} ? ($r->{test}->($median) ? 'yes' : 'no') : '—';
	return ($r->{case}, $r->{figure}, sprintf($f, $median), sprintf($f, $lo), sprintf($f, $hi),
		$r->{unit}, $r->{target}, $meets);
}

# print_table prints the rows as one aligned table
sub print_table
{
	my @head = ('case', 'figure', 'median', 'min', 'max', 'unit', 'target', 'meets target');
	my @all = (\@head, map { [ cells($_) ] } @rows);
	my @w = map { my $i = $_; max(map { length $_->[$i] } @all) } 0 .. $#head;
	my $line = sub {
		my ($c) = @_;
		return '| ' . join(' | ', map {
			my $pad = $w[$_] - length $c->[$_];
			($_ >= 2 && $_ <= 4) ? (' ' x $pad) . $c->[$_] : $c->[$_] . (' ' x $pad)
		} 0 .. $#$c) . " |\n";
	};
	my $out = $line->(\@head) . '|' . join('|', map { '-' x ($_ + 2) } @w) . "|\n";
	$out .= $line->($_) for @all[ 1 .. $#all ];
	print $TERM "\n$out";
	print STDOUT "\n$out";
}

# write_csv writes the rows to a CSV file (RFC 4180 quoting)
sub write_csv
{
	my ($file) = @_;
	my $q = sub { my $v = shift // ''; $v =~ /[",\n]/ ? '"' . ($v =~ s/"/""/gr) . '"' : $v };
	open(my $fh, '>:encoding(UTF-8)', $file) or die "bench: cannot write $file: $!\n";
	print $fh join(',', qw(case figure median min max unit target meets)), "\n";
	print $fh join(',', map { $q->($_) } cells($_)), "\n" for @rows;
	close $fh or die "bench: cannot write $file: $!\n";
}

# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

# the cluster and the mock; a failure here stops the bench
eval {
	$mock = EnrichMock->start();    # no start delay, all items at once, tiers unlimited
	$node = PostgreSQL::Test::Cluster->new('bench');
	$node->init;
	my $preload = $opt{pgss} ? 'enrich, pg_stat_statements' : 'enrich';
	$node->append_conf('postgresql.conf', qq{
	shared_preload_libraries = '$preload'
	log_statement = none
	max_wal_size = 8GB
	checkpoint_timeout = 1h
	enrich.api_url = '@{[ $mock->url ]}'
	enrich.environment = 'test'
	enrich.tier3_rate = 0
	enrich.tier4_rate = 0
	@{[ $opt{pgss} ? "pg_stat_statements.track = all\npg_stat_statements.max = 1000" : '' ]}
	});
	$node->start;
	sql('CREATE EXTENSION enrich');
	sql('CREATE EXTENSION pg_stat_statements') if $opt{pgss};
	{
		open(my $fh, '<', "$FindBin::Bin/bench.sql") or die "bench: cannot read bench.sql: $!\n";
		local $/;
		sql(<$fh>);
	}
	sql(sprintf("SELECT enrich_set_api_key('test', '%s')", $mock->key_test));
	$ps = $node->background_psql('postgres');
	wait_for_workers();
	note(sprintf("cluster and mock started in %.1f s; %d runs of each case; %s; load average %s",
			time - $started, $opt{runs}, $opt{pgss} ? 'pg_stat_statements on' : 'no profiling', loadavg()));
	1;
} or abort("could not set up the cluster and the mock: $@");

my @cases = (
	[ throughput => 'end-to-end / write-back bound', \&case_throughput ],
	[ latency => 'latency', \&case_latency ],
	[ items => 'enrich_items', \&case_items ],
	[ trigger => 'trigger overhead', \&case_trigger ],
	[ progress => 'progress', \&case_progress ],
	[ apibound => 'API-bound', \&case_apibound ],
	[ twodbs => 'two databases', \&case_twodbs ],
	[ refresh => 'refresh', \&case_refresh ],
	[ calls => 'HTTP calls', \&case_calls ],
);
for my $c (@cases)
{
	my ($key, $name, $code) = @$c;
	next unless $want{$key};
	my $t0 = time;
	note("case $name ... (load average " . loadavg() . ")");
	add_failure($name, $@) unless eval { $code->(); 1 };
	note(sprintf("case %s took %.0f s", $name, time - $t0));
}

$ps->quit;
print_table();
write_csv($opt{csv}) if defined $opt{csv};
note(sprintf("the bench took %.0f s; load average %s (other work on this machine skews the figures)",
		time - $started, loadavg()));
$node->stop;
$mock->stop;
exit($case_failed ? 1 : 0);
