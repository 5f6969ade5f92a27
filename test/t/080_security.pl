# Secrets and privileges: with log_min_messages = debug5 and log_statement =
# all the key appears in no log line but the statement that set it; a
# redirect to another port never receives the key; no SECURITY DEFINER
# function of enrich lacks a pinned search_path; and a role without rights
# on a contacts table cannot make the worker write to it.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../perl";

use EnrichMock;
use EnrichNode;
use IO::Socket::INET;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $key = 'sk-7d1f9e3a5c2b';
my $mock = EnrichMock->start(key_test => [$key]);

my $node = EnrichNode->create('security', $mock, q{
enrich.poll_interval_min = '50ms'
log_min_messages = debug5
log_statement = 'all'
});

# the worker and the SQL functions at work, at debug5
$node->safe_psql('postgres', q{
	INSERT INTO enrich.requests (person_id) SELECT 'p-sec-' || g FROM generate_series(1, 60) g});
$node->wait_for(q{SELECT count(*) = 60 FROM enrich.requests WHERE state = 'done'},
	'the worker did its work');
my $batch = $node->safe_psql('postgres', q{SELECT batch_id FROM enrich.requests LIMIT 1});
$node->safe_psql('postgres', "SELECT count(*) FROM enrich_items('$batch')");
$node->psql('postgres', "SELECT enrich_status('no-such-batch')");

my @lines = grep { index($_, $key) >= 0 } split /\n/, slurp_file($node->logfile);
ok(@lines >= 1, 'the statement that set the key is logged');
is_deeply([ grep { !/statement: SELECT enrich_set_api_key/ } @lines ], [],
	'at debug5 no other log line contains the key');

# a redirect to another port never receives the key
my $catcher = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 5, ReuseAddr => 1)
  or die "listen: $!";
my $redirector = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 5, ReuseAddr => 1)
  or die "listen: $!";
my $catcher_port = $catcher->sockport;
my $pid = fork();
if ($pid == 0)
{
	# answer every request with a redirect to the catcher, for 20 s at most;
	# _exit, so that the test's END blocks (which stop the node) do not run here
	local $SIG{ALRM} = sub { POSIX::_exit(0) };
	local $SIG{TERM} = sub { POSIX::_exit(0) };
	alarm 20;
	while (my $c = $redirector->accept)
	{
		my $req = '';
		while (my $line = <$c>) { $req .= $line; last if $line =~ /^\r?\n$/; }
		print $c "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:$catcher_port/v2/test/person/bulk-enrich/x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
		close $c;
	}
	POSIX::_exit(0);
}
my $redirect_url = 'http://127.0.0.1:' . $redirector->sockport;
my ($rc, $out, $err) = $node->psql('postgres',
	"SET enrich.api_url = '$redirect_url'; SELECT enrich_status('x')");
like($err, qr/unexpected HTTP status 307/, 'a redirect is refused, not followed');
$catcher->blocking(0);
my $caught = $catcher->accept;
ok(!defined $caught, 'the redirect target received no connection, so never the key');
kill 'TERM', $pid;
waitpid($pid, 0);

# every SECURITY DEFINER function of the extension pins search_path
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
	JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'enrich'
	WHERE p.prosecdef AND NOT coalesce(p.proconfig::text LIKE '%search_path=%', false)}),
	0, 'no SECURITY DEFINER function without a pinned search_path');

# a role without rights on a contacts table cannot make the worker write to it
$node->safe_psql('postgres', q{
	CREATE ROLE owner_role;
	CREATE ROLE mallory;
	GRANT USAGE ON SCHEMA enrich TO owner_role, mallory;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA enrich TO owner_role, mallory;
	GRANT EXECUTE ON FUNCTION enrich_watch(regclass, name, name, name, name, text, boolean, interval, text, jsonb, text) TO owner_role, mallory;
	GRANT INSERT, UPDATE, SELECT ON enrich.requests TO mallory;
	GRANT CREATE ON SCHEMA public TO owner_role;
	SET ROLE owner_role;
	CREATE TABLE victims (id int PRIMARY KEY, url text, person jsonb);
	INSERT INTO victims VALUES (1, NULL, NULL);
	SELECT enrich_watch('victims', 'person', linkedin_url_column => 'url');
});
my ($r1, $o1, $e1) = $node->psql('postgres', q{
	SET ROLE mallory;
	INSERT INTO enrich.requests (person_id, source_relid, source_key)
	VALUES ('p-mallory', 'victims'::regclass, '["1"]')});
like($e1, qr/source_relid and source_key of enrich.requests are set by enrich only/,
	'a request naming a source row is refused');
$node->safe_psql('postgres', q{SET ROLE mallory; INSERT INTO enrich.requests (person_id) VALUES ('p-mallory-2')});
my ($r2, $o2, $e2) = $node->psql('postgres', q{
	SET ROLE mallory;
	UPDATE enrich.requests SET source_relid = 'victims'::regclass, source_key = '["1"]'
	WHERE person_id = 'p-mallory-2'});
like($e2, qr/set by enrich only/, 'so is pointing an existing request at a source row');
my ($r3, $o3, $e3) = $node->psql('postgres', q{
	SET ROLE mallory; SELECT enrich_watch('victims', 'person', linkedin_url_column => 'url')});
like($e3, qr/must be owner of table (public\.)?victims/, 'enrich_watch refuses a table the caller does not own');
my ($r4, $o4, $e4) = $node->psql('postgres', q{SET ROLE mallory; SELECT enrich.enqueue_existing('victims')});
like($e4, qr/must be owner/, 'and so does the backfill');
$node->wait_for(q{SELECT count(*) = 0 FROM enrich.requests WHERE state NOT IN ('done', 'failed')},
	'the queue is empty');
is($node->safe_psql('postgres', q{SELECT count(*) FROM victims WHERE person IS NOT NULL}), 0,
	'the worker wrote nothing into the table');

$node->stop;
$mock->stop;
done_testing();
