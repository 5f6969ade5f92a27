# Pay once per person: a request whose normalized identifier was answered
# within enrich.reuse_within (not_found: enrich.reuse_failures_within) is
# settled from that answer without an API call, names the request it copied
# in reused_from, and is written back like any other.  Across one scenario
# (insert, insert again after done, a second contact with the same URL, a
# cosmetic URL edit, a renamed result column then a re-watch, a backfill of
# rows already enriched, a restart) the mock's submission counts show each
# person sent once; max_age 0 and enrich.reuse_within = 0 call again.
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/../perl";

use EnrichMock;
use EnrichNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $mock = EnrichMock->start;
my $node = EnrichNode->create('reuse', $mock, q{
enrich.poll_interval_min = '50ms'
enrich.poll_interval_max = '500ms'
});

# the number of bulk enrich submissions of each normalized identifier
sub sent { return $mock->submitted($_[0]) }

# the request behind a watched row of contacts (the newest), as
# "state reused" where reused says whether it names the request it copied
sub request_of
{
	my ($table, $key) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT state || ' ' || (reused_from IS NOT NULL) FROM enrich.requests
		WHERE source_relid = '$table'::regclass AND source_key = '["$key"]' ORDER BY id DESC LIMIT 1});
}

$node->safe_psql('postgres', q{
	CREATE ROLE crm LOGIN;
	GRANT USAGE ON SCHEMA enrich TO crm;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA enrich TO crm;
	GRANT EXECUTE ON FUNCTION enrich_watch(regclass, name, name, name, name, text, boolean, interval, text, jsonb, text),
	    enrich_unwatch(regclass), enrich_estimate(regclass) TO crm;
	GRANT CREATE ON SCHEMA public TO crm;
	SET ROLE crm;
	CREATE TABLE contacts (id bigint PRIMARY KEY, name text, linkedin text, person jsonb);
	SELECT enrich_watch('contacts', 'person', linkedin_url_column => 'linkedin');
});

# 1. the first time, the API is asked
$node->safe_psql('postgres', q{SET ROLE crm;
	INSERT INTO contacts VALUES (1, 'Zoë Ångström', 'linkedin.com/in/zoe-angstrom', NULL),
		(2, '王小明', 'linkedin.com/in/wang-xiaoming', NULL),
		(3, 'نور الهدى 🌙', 'linkedin.com/in/nour-notfound', NULL)});
$node->wait_for(q{SELECT count(*) = 2 FROM contacts WHERE person IS NOT NULL}
	  . q{ AND (SELECT state FROM enrich.requests WHERE source_key = '["3"]') = 'failed'},
	'the first persons are written back, the unknown one failed');
is(sent('linkedin.com/in/zoe-angstrom'), 1, 'a new identifier is sent');
my $zoe = $node->safe_psql('postgres', q{SELECT person::text FROM contacts WHERE id = 1});

# 2. a second contact with the same person, spelled otherwise, after done
$node->safe_psql('postgres', q{SET ROLE crm;
	INSERT INTO contacts VALUES (4, 'Zoë Å.', 'https://WWW.LinkedIn.com/in/Zoe-Angstrom/', NULL),
		(5, 'Nour', 'http://uk.linkedin.com/in/nour-notfound', NULL)});
$node->wait_for(q{SELECT person IS NOT NULL FROM contacts WHERE id = 4}
	  . q{ AND (SELECT state FROM enrich.requests WHERE source_key = '["5"]') = 'failed'},
	'a second contact of a known person gets it');
is(request_of('contacts', 4), 'done true', 'settled from the earlier answer (reused_from)');
is($node->safe_psql('postgres', q{SELECT person::text FROM contacts WHERE id = 4}), $zoe, 'the same person');
is($node->safe_psql('postgres', q{
	SELECT r.reused_from = o.id FROM enrich.requests r, enrich.requests o
	WHERE r.source_key = '["4"]' AND o.source_key = '["1"]'}), 't', 'reused_from names the request that was sent');
is(request_of('contacts', 5), 'failed true', 'a recent not_found is reused too');
is($node->safe_psql('postgres', q{SELECT error->>'code' FROM enrich.requests WHERE source_key = '["5"]'}),
	'not_found', 'with its error');
is(sent('linkedin.com/in/zoe-angstrom'), 1, 'the known person was not sent again');
is(sent('linkedin.com/in/nour-notfound'), 1, 'nor the unknown one');

# 3. the same identifier inserted again, and twice in one statement, straight into the queue
$node->safe_psql('postgres', q{
	INSERT INTO enrich.requests (linkedin_url) VALUES ('linkedin.com/in/wang-xiaoming'),
		('linkedin.com/in/wang-xiaoming/'), ('https://www.linkedin.com/in/WANG-XIAOMING')});
$node->wait_for(q{SELECT count(*) = 3 FROM enrich.requests WHERE source_relid IS NULL AND state = 'done'},
	'repeated requests are done');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM enrich.requests r JOIN enrich.requests o ON o.id = r.reused_from
	WHERE r.source_relid IS NULL AND o.source_key = '["2"]' AND r.person = o.person}),
	3, 'all three copy the answer, duplicates of one another included');
is(sent('linkedin.com/in/wang-xiaoming'), 1, 'and nothing was sent');

# 4. an UPDATE that changes only the spelling queues nothing
my $before = $node->safe_psql('postgres', q{SELECT count(*) FROM enrich.requests});
$node->safe_psql('postgres', q{SET ROLE crm;
	UPDATE contacts SET linkedin = 'https://WWW.LinkedIn.com/in/ZOE-ANGSTROM/' WHERE id = 1;
	UPDATE contacts SET name = name || ' ✓' WHERE id = 2});
is($node->safe_psql('postgres', q{SELECT count(*) FROM enrich.requests}), $before,
	'a cosmetic URL edit and an edit of another column queue nothing');
$node->safe_psql('postgres', q{SET ROLE crm;
	UPDATE contacts SET linkedin = 'linkedin.com/in/li-na' WHERE id = 2});
$node->wait_for(q{SELECT person->>'fullName' IS NOT NULL AND person::text <> (SELECT person::text FROM contacts WHERE id = 4) FROM contacts WHERE id = 2},
	'an edit to another person queues it');
is(sent('linkedin.com/in/li-na'), 1, 'and sends it');

# 5. the result column renamed: the write-back fails; a re-watch with a
# backfill writes the stored persons without paying again
$node->safe_psql('postgres', q{SET ROLE crm;
	ALTER TABLE contacts RENAME COLUMN person TO enriched;
	INSERT INTO contacts VALUES (6, 'Ana María Núñez', 'linkedin.com/in/ana-nunez', NULL)});
$node->wait_for(q{SELECT state = 'done' FROM enrich.requests WHERE source_key = '["6"]'},
	'a person comes back while the result column is renamed');
is($node->safe_psql('postgres', q{SELECT enriched IS NULL FROM contacts WHERE id = 6}), 't',
	'and could not be written');
$node->safe_psql('postgres', q{SET ROLE crm;
	UPDATE contacts SET enriched = NULL;
	SELECT enrich_unwatch('contacts');
	SELECT enrich_watch('contacts', 'enriched', linkedin_url_column => 'linkedin', backfill => true)});
$node->wait_for(q{SELECT count(*) = 4 FROM contacts WHERE enriched IS NOT NULL},
	'the re-watch wrote every found person back');
is(sent('linkedin.com/in/ana-nunez'), 1, 'without sending the persons again');
is(sent('linkedin.com/in/zoe-angstrom'), 1, 'any of them');
is(request_of('contacts', 6), 'done true', 'the backfill reused the answer');

# 6. another table of the same persons: enrich_estimate tells what a
# backfill would cost before any call, the backfill says it too, and only
# the new person is sent
$node->safe_psql('postgres', q{SET ROLE crm;
	CREATE TABLE leads (id text PRIMARY KEY, url text, person jsonb);
	INSERT INTO leads VALUES ('a', 'linkedin.com/in/zoe-angstrom', NULL), ('b', 'linkedin.com/in/ana-nunez', NULL),
		('c', 'linkedin.com/in/new-person-ß', NULL), ('d', 'https://www.linkedin.com/in/new-person-ß/', NULL),
		('e', NULL, NULL), ('f', 'https://example.com/nobody', NULL), ('g', 'linkedin.com/in/nour-notfound', NULL),
		('h', 'linkedin.com/in/zoe-angstrom', '{"kept": true}');
	SELECT enrich_watch('leads', 'person', linkedin_url_column => 'url')});
is($node->safe_psql('postgres', q{SET ROLE crm; SELECT e::text FROM enrich_estimate('leads') e}), '(7,1,0,1,3,1,1)',
	'enrich_estimate: 7 rows without a person, 1 without an identifier, none queued, 1 malformed, '
	  . '3 settled by reuse, 1 request to send, 1 row sharing it');
is($node->safe_psql('postgres', q{SELECT count(*) FROM enrich.requests WHERE source_relid = 'leads'::regclass}), 0,
	'and queues nothing');
is($node->sqlstate_of('postgres', 'crm', q{SELECT * FROM enrich_estimate('contacts_missing')}), '42P01',
	'an unknown table is refused');
my (undef, undef, $notice) = $node->psql('postgres', q{SET ROLE crm; SELECT enrich_unwatch('leads');
	SELECT enrich_watch('leads', 'person', linkedin_url_column => 'url', backfill => true)});
like($notice, qr/NOTICE:  backfill of (public\.)?leads: 7 rows without a person; 1 without an identifier, 0 already queued or refused, 1 malformed, 3 settled from earlier answers without a call, 1 requests to send \(1 rows share one\)/,
	'the backfill says the same in a NOTICE');
$node->wait_for(q{SELECT count(*) = 5 FROM leads WHERE person IS NOT NULL}, 'a backfill of known persons is written');
is(sent('linkedin.com/in/new-person-ß'), 1, 'the new one is sent, once for its two rows');
is(sent('linkedin.com/in/zoe-angstrom') + sent('linkedin.com/in/ana-nunez'), 2, 'the known ones are not');
is($node->safe_psql('postgres', q{SELECT person::text FROM leads WHERE id = 'a'}), $zoe, 'and get the same person');
is(sent('linkedin.com/in/nour-notfound'), 1, 'nor is the known not_found');

# 7. after a restart, reuse reads what is stored
$node->restart;
$node->safe_psql('postgres', q{SET ROLE crm;
	INSERT INTO contacts VALUES (7, 'Zoë again', 'linkedin.com/in/zoe-angstrom', NULL)});
$node->wait_for(q{SELECT enriched IS NOT NULL FROM contacts WHERE id = 7}, 'after a restart, a known person is written');
is(sent('linkedin.com/in/zoe-angstrom'), 1, 'without a call');

# 8. a request may ask for a fresh answer: max_age 0 always calls
$node->safe_psql('postgres', q{
	INSERT INTO enrich.requests (linkedin_url, max_age) VALUES ('linkedin.com/in/zoe-angstrom', '0')});
$node->wait_for(q{SELECT state = 'done' FROM enrich.requests WHERE max_age = '0'}, 'a request with max_age 0 is done');
is(sent('linkedin.com/in/zoe-angstrom'), 2, 'by a call');
is($node->safe_psql('postgres', q{SELECT reused_from IS NULL FROM enrich.requests WHERE max_age = '0'}), 't',
	'and says so');
is($node->psql('postgres', q{INSERT INTO enrich.requests (person_id, max_age) VALUES ('p-1', '-1 day')}),
	3, 'a negative max_age is refused');
like(
	($node->psql('postgres', q{INSERT INTO enrich.requests (person_id, max_age) VALUES ('p-1', '-1 day')}))[2] // '',
	qr/requests_max_age_check/, 'by a constraint that names it');

# 9. reuse off, and a failure window of 0: both call again
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET enrich.reuse_within = 0;
	ALTER SYSTEM SET enrich.reuse_failures_within = 0;
	SELECT pg_reload_conf()});
sleep 1;
$node->safe_psql('postgres', q{SET ROLE crm;
	INSERT INTO contacts VALUES (8, 'Li Na', 'linkedin.com/in/li-na', NULL), (9, 'Nour', 'linkedin.com/in/nour-notfound', NULL)});
$node->wait_for(q{SELECT enriched IS NOT NULL FROM contacts WHERE id = 8}
	  . q{ AND (SELECT state FROM enrich.requests WHERE source_key = '["9"]' ORDER BY id DESC LIMIT 1) = 'failed'},
	'with reuse off, the requests are answered');
is(sent('linkedin.com/in/li-na'), 2, 'enrich.reuse_within = 0 calls again');
is(sent('linkedin.com/in/nour-notfound'), 2, 'enrich.reuse_failures_within = 0 too');
is(request_of('contacts', 8), 'done false', 'and the answer is not a copy');

# 10. pruning old requests keeps what reuse needs: the newest answer the
# API gave for each identifier, while it may be reused
$node->safe_psql('postgres', q{
	ALTER SYSTEM RESET enrich.reuse_within;
	ALTER SYSTEM RESET enrich.reuse_failures_within;
	ALTER SYSTEM SET enrich.keep_requests = '1s';
	SELECT pg_reload_conf()});
sleep 2;
$node->safe_psql('postgres', 'SELECT enrich_wake()');
# (the two rows of new-person-ß were answered by one call: both are kept)
$node->wait_for(q{SELECT count(*) = 7 FROM enrich.requests}, 'old requests are pruned')
  or diag($node->safe_psql('postgres', 'SELECT id, identifier, state, reused_from, completed_at FROM enrich.requests ORDER BY id'));
is($node->safe_psql('postgres', q{
	SELECT count(DISTINCT identifier) || ' ' || bool_and(reused_from IS NULL)
	    || ' ' || bool_and(completed_at = (SELECT max(n.completed_at) FROM enrich.requests n
	                                       WHERE n.identifier = r.identifier))
	FROM enrich.requests r}), '6 true true',
	'but for the newest answer the API gave for each identifier (a not_found within its day included)');
is($node->safe_psql('postgres', q{SELECT count(*) FROM enrich.requests WHERE error->>'code' = 'not_found'}), 1,
	'the not_found is kept');
$node->safe_psql('postgres', q{SET ROLE crm;
	INSERT INTO contacts VALUES (10, 'Zoë once more', 'linkedin.com/in/zoe-angstrom', NULL)});
$node->wait_for(q{SELECT enriched IS NOT NULL FROM contacts WHERE id = 10}, 'after pruning, a known person is written');
is(sent('linkedin.com/in/zoe-angstrom'), 2, 'by reuse, without a call');

$node->stop;
$mock->stop;
done_testing();
