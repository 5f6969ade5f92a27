# EnrichNode: a PostgreSQL::Test::Cluster for enrich's TAP tests.  It
# preloads enrich, points it at a mock API (EnrichMock) in environment test
# with no client-side rate limit, adds the test's own settings, starts,
# creates the extension and sets the mock's two keys.
package EnrichNode;

use strict;
use warnings;

use PostgreSQL::Test::Cluster;

# EnrichNode->start($name, $mock, $settings) returns the started node;
# $settings is postgresql.conf text appended after the common settings
sub start
{
	my ($class, $name, $mock, $settings) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);

	$node->init;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'enrich'
enrich.api_url = '@{[ $mock->url ]}'
enrich.environment = 'test'
enrich.tier3_rate = 0
enrich.tier4_rate = 0
} . ($settings // ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION enrich');
	$node->safe_psql('postgres', sprintf(
		"SELECT enrich_set_api_key('test', '%s'), enrich_set_api_key('live', '%s')",
		$mock->key_test, $mock->key_live));
	return $node;
}

1;
