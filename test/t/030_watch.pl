# Watched contact tables: persons written back on INSERT, on UPDATE of an
# identifier, by backfill, and a row deleted before its person arrives.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../perl";

use EnrichMock;
use EnrichNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $mock = EnrichMock->start(start_delay_ms => 400);

my $node = EnrichNode->create('watch', $mock, q{
enrich.poll_interval_min = '50ms'
enrich.poll_interval_max = '500ms'
});

sub person_of
{
	my ($url) = @_;
	return EnrichMock::json_encode($mock->person(professionalSocialMediaUrl => $url)->{person});
}

# the contacts table of an application role, which owns it
$node->safe_psql('postgres', q{
	CREATE ROLE crm LOGIN;
	GRANT USAGE ON SCHEMA enrich TO crm;
	GRANT EXECUTE ON FUNCTION enrich_watch(regclass, name, name, name, name, text, boolean, interval, text, jsonb, text),
	    enrich_unwatch(regclass) TO crm;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA enrich TO crm;
	GRANT CREATE ON SCHEMA public TO crm;
	SET ROLE crm;
	CREATE TABLE contacts (id bigint PRIMARY KEY, linkedin text, person jsonb);
	SELECT enrich_watch('contacts', 'person', linkedin_url_column => 'linkedin');
});

# INSERT: persons written back; a NULL identifier skipped; a malformed one failed
$node->safe_psql('postgres', q{
	SET ROLE crm;
	INSERT INTO contacts VALUES (1, 'linkedin.com/in/alice-a', NULL), (2, 'linkedin.com/in/bob-b', NULL),
		(3, NULL, NULL), (4, 'https://example.com/not-linkedin', NULL), (5, 'linkedin.com/in/gone-g', NULL);
	DELETE FROM contacts WHERE id = 5;
});
$node->wait_for(q{SELECT count(*) = 2 FROM contacts WHERE person IS NOT NULL}, 'inserted rows got their persons');
my $got = $node->safe_psql('postgres', q{SELECT person::text FROM contacts WHERE id = 1});
is(EnrichMock::json_encode(EnrichMock::json_decode($got)), person_of('linkedin.com/in/alice-a'),
	'the person written back is the API\'s');
is($node->safe_psql('postgres', q{SELECT count(*) FROM enrich.requests WHERE source_key = '["3"]'}),
	0, 'a NULL identifier is skipped');
is($node->safe_psql('postgres', q{
	SELECT state || ' ' || (error->>'code') FROM enrich.requests WHERE source_key = '["4"]'}),
	'failed invalid_identifier', 'a malformed identifier is a failed request');
$node->wait_for(q{SELECT state = 'done' FROM enrich.requests WHERE source_key = '["5"]'},
	'the request of a row deleted before its person arrived is done');
is($node->safe_psql('postgres', q{SELECT count(*) FROM contacts WHERE id = 5}), 0,
	'and the deleted row stays deleted');

# UPDATE of the identifier: a new person; of another column: nothing queued
$node->safe_psql('postgres', q{
	SET ROLE crm;
	UPDATE contacts SET linkedin = 'linkedin.com/in/carol-c' WHERE id = 2;
});
$node->wait_for(q{SELECT person->>'linkedinUrl' LIKE '%carol-c' FROM contacts WHERE id = 2},
	'an updated identifier gets the new person');
my $before = $node->safe_psql('postgres', 'SELECT count(*) FROM enrich.requests');
$node->safe_psql('postgres', q{SET ROLE crm; UPDATE contacts SET person = NULL WHERE id = 1});
is($node->safe_psql('postgres', 'SELECT count(*) FROM enrich.requests'), $before,
	'an update of another column queues nothing');

# backfill: existing rows with a NULL result only
$node->safe_psql('postgres', q{
	SET ROLE crm;
	CREATE TABLE leads (lead_id int PRIMARY KEY, url varchar(200), enriched jsonb);
	INSERT INTO leads SELECT g, 'linkedin.com/in/lead-' || g, CASE WHEN g > 40 THEN '{}'::jsonb END
	FROM generate_series(1, 50) g;
});
is($node->safe_psql('postgres', q{
	SET ROLE crm;
	SELECT enrich_watch('leads', 'enriched', linkedin_url_column => 'url', backfill => true)}),
	40, 'backfill queues the 40 rows without a result');
$node->wait_for(q{SELECT count(*) = 40 FROM leads WHERE enriched ? 'personId'}, 'backfilled rows got their persons');
is($node->safe_psql('postgres', q{SELECT count(*) FROM leads WHERE enriched = '{}'}), 10,
	'rows that had a result are untouched');

# duplicates: an identifier repeated in one statement, or already sent and
# waiting for its item, is sent once, and every row gets the person
$mock->reset;
$node->safe_psql('postgres', q{
	SET ROLE crm;
	INSERT INTO contacts VALUES (101, 'linkedin.com/in/dup-a', NULL),
		(102, 'https://www.linkedin.com/in/Dup-A/', NULL), (103, 'linkedin.com/in/dup-b', NULL);
});
$node->wait_for(q{SELECT count(*) = 2 FROM enrich.requests WHERE source_key IN ('["101"]', '["103"]')
	AND state = 'submitting'}, 'a statement with a repeated identifier is sent');
$node->safe_psql('postgres', q{
	SET ROLE crm;
	INSERT INTO contacts VALUES (104, 'http://uk.linkedin.com/in/dup-b', NULL), (105, 'linkedin.com/in/dup-c', NULL);
});
$node->wait_for(q{SELECT count(*) = 5 FROM contacts WHERE id BETWEEN 101 AND 105 AND person IS NOT NULL},
	'every row of both statements got its person');
my $subs = $mock->stats->{submissions};
is_deeply([ map { $subs->{"linkedin.com/in/dup-$_"} // 0 } qw(a b c) ], [ 1, 1, 1 ],
	'each identifier was sent once: repeated in a statement, or while in flight');
is($node->safe_psql('postgres', q{
	SELECT count(DISTINCT person) FROM contacts WHERE id IN (101, 102)}), 1,
	'the repeated rows have the same person');
is($node->safe_psql('postgres', q{
	SELECT string_agg((r.source_key ->> 0) || '>' || (l.source_key ->> 0), ' ' ORDER BY r.id)
	FROM enrich.requests r JOIN enrich.requests l ON l.id = r.duplicate_of
	WHERE r.source_key ->> 0 IN ('102', '104')}), '102>101 104>103',
	'the repeats waited as duplicates of the request sent');

# unwatch: no more requests
$node->safe_psql('postgres', q{SET ROLE crm; SELECT enrich_unwatch('leads')});
$before = $node->safe_psql('postgres', 'SELECT count(*) FROM enrich.requests');
$node->safe_psql('postgres', q{SET ROLE crm; INSERT INTO leads VALUES (99, 'linkedin.com/in/late', NULL)});
is($node->safe_psql('postgres', 'SELECT count(*) FROM enrich.requests'), $before,
	'an unwatched table queues nothing');

# the progress view
like($node->safe_psql('postgres', q{
	SELECT environment || ' ' || queued || ' ' || in_flight || ' ' || done_today || ' ' || failed_today || ' ' || worker_state
	FROM enrich.progress WHERE environment = 'test'}),
	qr/^test 0 0 \d+ 1 running$/, 'enrich.progress shows the test environment');

$node->stop;
$mock->stop;
done_testing();
