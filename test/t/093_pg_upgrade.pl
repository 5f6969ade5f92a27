# pg_upgrade of a cluster with enrich: the requests, batches, watches, the
# installation and the API keys are kept (pg_upgrade keeps every table's
# files and OIDs), no worker runs while pg_upgrade works, and the upgraded
# cluster's workers go on: a watched table keeps queueing and gets its
# persons.  Both clusters are this major (what pg_upgrade does to enrich's
# tables is the same across majors).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../perl";

use EnrichMock;
use EnrichNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $mock = EnrichMock->start();
my $settings = q{
enrich.poll_interval_min = '50ms'
enrich.poll_interval_max = '200ms'
};
my $old = EnrichNode->create('old', $mock, $settings);
my $sql = sub { return $_[0]->safe_psql('postgres', $_[1]) };

$sql->($old, q{
	CREATE TABLE contacts (id int PRIMARY KEY, url text, person jsonb);
	SELECT enrich_watch('contacts', 'person', linkedin_url_column => 'url');
	INSERT INTO contacts SELECT g, 'linkedin.com/in/up-' || g FROM generate_series(1, 20) g});
$old->wait_for(q{SELECT count(*) = 20 FROM contacts WHERE person IS NOT NULL}, 'the old cluster enriches its contacts');
my $state = q{SELECT (SELECT count(*) FROM enrich.requests WHERE state = 'done') || ' '
	|| (SELECT count(*) FROM enrich.batches) || ' ' || (SELECT count(*) FROM enrich.api_keys) || ' '
	|| (SELECT string_agg(source::text, ',') FROM enrich.watches) || ' '
	|| (SELECT id FROM enrich.installation ORDER BY created_at LIMIT 1)};
my $before = $sql->($old, $state);
$old->stop;

my $new = EnrichNode->create('new', $mock, $settings, start => 0);
my $bindir = $old->config_data('--bindir');
# pg_upgrade starts the servers with the pg_ctl of its bindir, not the
# harness's; under the sanitizers they need their runtimes preloaded too
local $ENV{LD_PRELOAD} = $ENV{ENRICH_SANITIZE_PRELOAD} if $ENV{ENRICH_SANITIZE_PRELOAD};
command_ok([ "$bindir/pg_upgrade", '--no-sync', '--retain', '-d', $old->data_dir, '-D', $new->data_dir,
	'-b', $bindir, '-B', $bindir, '-s', $new->host, '-p', $old->port, '-P', $new->port ],
	'pg_upgrade', ) or diag(join("\n", map { slurp_file($_) } glob($new->data_dir . '/pg_upgrade_output.d/*/log/*.log')));
$new->start;
is($sql->($new, $state), $before, 'requests, batches, API keys, the watch and the installation are kept');
my @upgrade_logs = glob($new->data_dir . '/pg_upgrade_output.d/*/log/pg_upgrade_server.log');
ok(@upgrade_logs > 0, 'pg_upgrade kept the log of the servers it ran');
is(scalar(grep { /enrich (worker|launcher)/ } map { split /\n/, slurp_file($_) } @upgrade_logs), 0,
	'no enrich process ran while pg_upgrade worked');
$sql->($new, q{INSERT INTO contacts VALUES (21, 'linkedin.com/in/up-after')});
$new->wait_for(q{SELECT person IS NOT NULL FROM contacts WHERE id = 21}, 'the upgraded cluster goes on enriching');

$new->stop;
$mock->stop;
done_testing();
