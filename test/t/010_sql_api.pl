# The SQL API seen from outside one session: the wait events of a call and
# of an idle worker in pg_stat_activity (enrich's own names since
# PostgreSQL 17), the library's name and version (PostgreSQL 18), a cancel (Ctrl-C) stopping a slow call promptly, flat
# memory while enrich_items walks a large batch, and no server log line that
# shows the API key.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../perl";

use EnrichMock;
use EnrichNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $key = 'tk-5f1e0c9d7a3b';
my $mock = EnrichMock->start(key_test => [$key]);

# EnrichNode sets the test key, $key, with a logged statement
my $node = EnrichNode->create('sql_api', $mock, q{
log_min_messages = debug2
log_statement = 'all'
});

my $batch = $node->safe_psql('postgres',
	q{SELECT enrich_submit('[{"personId": "p-1"}, {"personId": "p-2"}]')});
like($batch, qr/^\S+$/, 'a batch was submitted');

# A slow call shows the wait event, and a cancel stops it within 100 ms.
$mock->set_faults({ latency_ms => 5000 });
$node->safe_psql('postgres', 'CREATE TABLE cancelled_at (at timestamptz)');
my $slow = $node->background_psql('postgres');
$slow->query_until(qr/started/, qq{
\\echo started
DO \$\$
BEGIN
	PERFORM enrich_status('$batch');
EXCEPTION WHEN query_canceled THEN
	INSERT INTO cancelled_at VALUES (clock_timestamp());
END
\$\$;
});

# PostgreSQL 17 and later show enrich's own wait event names
# (WaitEventExtensionNew), earlier majors the generic "Extension"
my $version = $node->safe_psql('postgres', 'SHOW server_version_num');
my ($api_wait, $idle_wait) = $version >= 170000 ? qw(EnrichApiCall EnrichWorkerIdle) : qw(Extension Extension);
ok( $node->poll_query_until(
		'postgres', qq{
		SELECT wait_event_type = 'Extension' AND wait_event = '$api_wait'
		FROM pg_stat_activity WHERE query LIKE 'DO%PERFORM enrich_status%'}),
	"a waiting API call shows wait event $api_wait in pg_stat_activity");

my $slow_pid = $node->safe_psql('postgres', q{
	SELECT pid FROM pg_stat_activity
	WHERE query LIKE 'DO%PERFORM enrich_status%' AND pid <> pg_backend_pid()});
like($slow_pid, qr/^\d+$/, 'the waiting backend was found');
my $cancel_sent = $node->safe_psql('postgres',
	"SELECT clock_timestamp() FROM (SELECT pg_cancel_backend($slow_pid) AS sent) s WHERE sent");
ok($cancel_sent ne '', 'the cancel was sent');
ok($node->poll_query_until('postgres', 'SELECT count(*) = 1 FROM cancelled_at'),
	'the call was cancelled');
my $delay_ms = $node->safe_psql('postgres',
	"SELECT round(extract(epoch FROM at - '$cancel_sent'::timestamptz) * 1000) FROM cancelled_at");
cmp_ok($delay_ms, '<', 100, "the call stopped ${delay_ms} ms after the cancel (< 100 ms)");
$slow->quit;
$mock->set_faults({});

# an idle worker waits under its own name too; PostgreSQL 17's
# pg_wait_events lists both names once they were used, and PostgreSQL 18's
# pg_get_loaded_modules() names the library and its version, which is the
# control file's
ok( $node->poll_query_until(
		'postgres', qq{
		SELECT count(*) > 0 AND bool_and(wait_event_type = 'Extension' AND wait_event = '$idle_wait')
		FROM pg_stat_activity WHERE backend_type = 'enrich worker'}),
	"an idle worker shows wait event $idle_wait");
if ($version >= 170000)
{
	is($node->safe_psql('postgres', q{
		SELECT string_agg(type || ' ' || name, ', ' ORDER BY name) FROM pg_wait_events WHERE name LIKE 'Enrich%'}),
		'Extension EnrichApiCall, Extension EnrichWorkerIdle', 'pg_wait_events lists enrich\'s wait events');
}
if ($version >= 180000)
{
	is($node->safe_psql('postgres', q{
		SELECT m.module_name || ' ' || m.version || ' ' || (m.version = e.default_version)
		FROM pg_get_loaded_modules() m, pg_available_extensions e
		WHERE m.file_name LIKE 'enrich%' AND e.name = 'enrich'}),
		'enrich 1.1 true', 'pg_get_loaded_modules() names enrich and the control file\'s version');
}

# enrich_items keeps memory flat: 1000 items of ~4 KB read in pages of 10
my $fat = $node->safe_psql('postgres', q{
	SELECT enrich_submit(jsonb_agg(jsonb_build_object('personId', 'p-' || g,
		'metadata', jsonb_build_object('pad', repeat('m', 4000)))))
	FROM generate_series(1, 1000) g});
sub rss_kb
{
	my ($p) = @_;
	open my $fh, '<', "/proc/$p/status" or die "cannot read /proc/$p/status: $!";
	while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)\s+kB/; }
	die "no VmRSS for $p";
}

# walk reads the batch's items in pages of 10 in a new session, after a
# warm-up (libraries, caches), $limit of them or all; it returns what the
# backend's RSS grew by, in kB, and what was read
sub walk
{
	my ($limit) = @_;
	my $walker = $node->background_psql('postgres');
	my $pid = $walker->query_safe('SELECT pg_backend_pid()');
	chomp $pid;
	$walker->query_safe("SELECT count(*) FROM enrich_items('$fat', page_size => 10) WHERE false");
	$walker->query_safe("SELECT count(*) FROM (SELECT * FROM enrich_items('$fat', page_size => 10) LIMIT 100) s");
	my $before = rss_kb($pid);
	my $rows = $walker->query_safe("SELECT count(*) || ' ' || sum(length(metadata::text))
		FROM (SELECT * FROM enrich_items('$fat', page_size => 10) LIMIT $limit) s");
	my $after = rss_kb($pid);
	$walker->quit;
	return ($after - $before, split(' ', $rows));
}

my ($grew, $count, $bytes) = walk('ALL');
is($count, 1000, 'every item was read');
cmp_ok($bytes, '>', 4_000_000, 'the items carried more than 4 MB of metadata');
if (($ENV{ENRICH_SANITIZE} // '') ne '1')
{
	cmp_ok($grew, '<', 2048, "backend RSS grew by $grew kB reading them (< 2 MB)");
}
else
{
	# AddressSanitizer's allocator adds a few MB of its own whatever is read
	# (shadow memory, size-class regions it never gives back, a quarantine
	# of 1 MB of freed blocks, which a walk of 500 items of 4 KB fills): what
	# must not grow with the items is the difference from a walk of half of
	# them.  Keeping each item's 4 KB would make it 2 MB.
	my ($grew_half) = walk(500);
	cmp_ok($grew - $grew_half, '<', 1024,
		"under ASan, RSS grew by $grew kB reading 1000 items and $grew_half kB reading 500 (the difference < 1 MB)");
}

# The key appears in no server log line but the statement that set it.
my $log = slurp_file($node->logfile);
my @with_key = grep { index($_, $key) >= 0 } split /\n/, $log;
ok(@with_key > 0, 'the statement that set the key is logged (log_statement = all)');
is_deeply([ grep { !/enrich_set_api_key/ } @with_key ], [],
	'no other log line contains the key');
like($log, qr/enrich: GET \S+bulk-enrich/, 'API calls are logged at DEBUG2, without the key');

$node->stop;
$mock->stop;
done_testing();
