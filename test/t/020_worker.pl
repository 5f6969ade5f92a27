# The worker end to end: 5,000 requests through the queue with the mock's
# start delay and item rate set, every person equal to the mock's
# deterministic one; retries, failures, a refused row, both environments
# side by side, and duplicates sent once.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../perl";

use EnrichMock;
use EnrichNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $mock = EnrichMock->start(start_delay_ms => 300, items_per_second => 20000);

my $node = EnrichNode->create('worker', $mock, q{
enrich.poll_interval_min = '50ms'
enrich.poll_interval_max = '1s'
enrich.retry_delay = '100ms'
});

# 5,000 distinct people, with a caller's metadata on each
$node->safe_psql('postgres', q{
	INSERT INTO enrich.requests (linkedin_url, metadata)
	SELECT 'https://www.linkedin.com/in/person-' || g, jsonb_build_object('row', g)
	FROM generate_series(1, 5000) g});
$node->wait_for(q{SELECT count(*) = 5000 FROM enrich.requests WHERE state = 'done'},
	'5,000 requests are done');

my $mismatch = 0;
my $rows = $node->safe_psql('postgres', q{
	SELECT linkedin_url, person::text, metadata->>'row' FROM enrich.requests ORDER BY id});
my $checked = 0;
for my $line (split /\n/, $rows)
{
	my ($url, $person, $row) = split /\|/, $line, 3;
	my $expected = $mock->person(professionalSocialMediaUrl => $url);
	my $got = EnrichMock::json_decode($person);
	$mismatch++ unless EnrichMock::json_encode($got) eq EnrichMock::json_encode($expected->{person});
	$mismatch++ unless $url eq "https://www.linkedin.com/in/person-$row";
	$checked++;
}
is($checked, 5000, 'every request was checked');
is($mismatch, 0, 'every person is the mock\'s deterministic person for its identifier');

my $stats = $mock->stats;
my $subs = $stats->{submissions};
is(scalar(grep { /person-\d+$/ } keys %$subs), 5000, 'each of the 5,000 identifiers was submitted');
is(scalar(grep { $subs->{$_} > 1 } keys %$subs), 0, 'none was submitted twice');
is($stats->{endpoints}{bulk_enrich}{202}, 5, '5 bulk enrich calls of 1,000');

# retries, failures and a refused row
$node->safe_psql('postgres', q{
	INSERT INTO enrich.requests (person_id) VALUES ('p-flaky-1'), ('p-notfound-1');
	INSERT INTO enrich.requests (linkedin_url) VALUES
		('linkedin.com/in/fine-1'), ('linkedin.com/in/invalid-1'), ('linkedin.com/in/fine-2')});
$node->wait_for(q{SELECT count(*) = 0 FROM enrich.requests WHERE state NOT IN ('done', 'failed')},
	'the second wave reached a final state');
is($node->safe_psql('postgres',
		q{SELECT state || ' ' || attempts FROM enrich.requests WHERE person_id = 'p-flaky-1'}),
	'done 2', 'a flaky person is done after a retry');
is($node->safe_psql('postgres', q{
	SELECT state || ' ' || (error->>'code') || ' ' || attempts FROM enrich.requests WHERE person_id = 'p-notfound-1'}),
	'failed not_found 1', 'a person not found fails with its error, without a retry');
is($node->safe_psql('postgres', q{
	SELECT string_agg(linkedin_url || ' ' || state, ', ' ORDER BY id) FROM enrich.requests
	WHERE linkedin_url LIKE 'linkedin.com/in/%-_'}),
	'linkedin.com/in/fine-1 done, linkedin.com/in/invalid-1 failed, linkedin.com/in/fine-2 done',
	'a URL the API refuses fails only its own row');
like($node->safe_psql('postgres',
		q{SELECT error->>'message' FROM enrich.requests WHERE linkedin_url = 'linkedin.com/in/invalid-1'}),
	qr/professionalSocialMediaUrl/, 'with the API\'s message');

# both environments side by side, and duplicates sent once
$mock->reset;
$node->safe_psql('postgres', q{
	INSERT INTO enrich.requests (environment, person_id)
	SELECT CASE WHEN g % 2 = 0 THEN 'live' ELSE 'test' END, 'p-side-' || g FROM generate_series(1, 200) g;
	INSERT INTO enrich.requests (person_id)
	SELECT 'p-dup-' || (g % 10) FROM generate_series(1, 100) g;
	INSERT INTO enrich.requests (linkedin_url) VALUES
		('https://www.linkedin.com/in/Same-Person/'), ('http://uk.linkedin.com/in/same-person'),
		('linkedin.com/in/same-person')});
$node->wait_for(q{SELECT count(*) = 0 FROM enrich.requests WHERE state NOT IN ('done', 'failed')},
	'the third wave reached a final state');
$stats = $mock->stats;
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM enrich.requests WHERE person_id LIKE 'p-side-%' AND state = 'done'}),
	200, 'live and test requests are all done');
is(($stats->{endpoints}{bulk_enrich}{202} // 0) >= 2 ? 1 : 0, 1, 'each environment had its own batch');
is_deeply(
	[ map { $subs = $stats->{submissions}{"personId:p-dup-$_"} // 0 } 0 .. 9 ],
	[ (1) x 10 ], '100 requests for 10 people submitted each person once');
is($stats->{submissions}{'linkedin.com/in/same-person'}, 1,
	'three spellings of one LinkedIn URL submitted once');
is($node->safe_psql('postgres', q{
	SELECT count(*) || ' ' || count(DISTINCT person) FROM enrich.requests
	WHERE state = 'done' AND (person_id LIKE 'p-dup-%' OR linkedin_url ILIKE '%same-person%')}),
	'103 11', 'every duplicate row got its person (10 people and one)');

$node->stop;
$mock->stop;
done_testing();
