# Keeping persons fresh: enrich.enriched_rows records when the API gave the
# person of each watched row (a reused one: when the copied answer was
# given); once it is older than the watch's refresh_after, the first worker
# queues the row again, a share of the rows due each round and only within
# enrich.refresh_window, and the old person stays until the new one is
# written.  enrich_refresh queues a refresh by hand, enrich_alter_watch
# changes refresh_after.  The mock's submission counts prove what was paid.
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
my $node = EnrichNode->create('refresh', $mock, q{
enrich.poll_interval_min = '50ms'
enrich.poll_interval_max = '500ms'
});

# the number of bulk enrich submissions of each normalized identifier
sub sent { return $mock->submitted($_[0]) }

# sets enrich.refresh_window to a window of server time from $from to $to
# (intervals from now) and waits until the workers have it
sub set_window
{
	my ($from, $to) = @_;
	my $window = $node->safe_psql('postgres', qq{
		SELECT to_char(now() AT TIME ZONE z + interval '$from', 'HH24:MI') || '-'
		    || to_char(now() AT TIME ZONE z + interval '$to', 'HH24:MI')
		FROM (SELECT reset_val AS z FROM pg_settings WHERE name = 'TimeZone') s});
	$node->safe_psql('postgres', qq{ALTER SYSTEM SET enrich.refresh_window = '$window'; SELECT pg_reload_conf()});
	sleep 1;
	return $window;
}

# moves the clock of every answer back: the requests' and enriched_rows'
sub age_everything
{
	my ($by) = @_;
	$node->safe_psql('postgres', qq{
		UPDATE enrich.requests SET completed_at = completed_at - interval '$by' WHERE completed_at IS NOT NULL;
		UPDATE enrich.enriched_rows SET answered_at = answered_at - interval '$by',
		    refresh_from = refresh_from - interval '$by'});
}

my @people = (
	[1, 'Zoë Ångström', 'linkedin.com/in/zoe-angstrom'],
	[2, '王小明', 'linkedin.com/in/wang-xiaoming'],
	[3, 'נועה כהן', 'linkedin.com/in/noa-cohen'],
	[4, 'Ana 🚀 Núñez', 'linkedin.com/in/ana-nunez'],
	[5, 'Søren Kierkegaard', 'linkedin.com/in/soren-k'],
	[6, '山田 花子', 'linkedin.com/in/yamada-hanako'],
	[7, 'محمد علي', 'linkedin.com/in/mohamed-ali'],
	[8, 'Łukasz Żółć', 'linkedin.com/in/lukasz-zolc'],
);
my $values = join(', ', map { "($_->[0], '$_->[1]', '$_->[2]', NULL)" } @people);

$node->safe_psql('postgres', qq{
	CREATE ROLE crm LOGIN;
	CREATE ROLE eve LOGIN;
	GRANT enrich_user TO crm, eve;
	GRANT CREATE ON SCHEMA public TO crm;
	SET ROLE crm;
	CREATE TABLE contacts (id bigint PRIMARY KEY, name text, linkedin text, person jsonb);
	SELECT enrich_watch('contacts', 'person', linkedin_url_column => 'linkedin', refresh_after => '1 day');
	INSERT INTO contacts VALUES $values, (9, 'Nobody', NULL, NULL);
});
$node->wait_for(q{SELECT count(*) = 8 FROM contacts WHERE person IS NOT NULL}, 'the persons are written');

# 1. when each person was answered is kept by enrich, for the table's owner to see
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM enrich.enriched_rows e JOIN enrich.requests r ON r.id = e.request
	WHERE e.source = 'contacts'::regclass AND e.answered_at = r.completed_at
	  AND e.refresh_from = e.answered_at AND e.source_key = r.source_key}), 8,
	'each written row is recorded with its request and when it was answered');
is($node->safe_psql('postgres', q{SET ROLE crm; SELECT count(*) FROM enrich.enriched_rows}), 8,
	'the table owner sees its rows');
is($node->safe_psql('postgres', q{SET ROLE eve; SELECT count(*) FROM enrich.enriched_rows}), 0,
	'another role does not');
is($node->safe_psql('postgres', q{SELECT refresh_after FROM enrich.watches}), '1 day', 'refresh_after is kept');

# 2. a reused person is as old as the answer it copied
$node->safe_psql('postgres', q{SET ROLE crm;
	INSERT INTO contacts VALUES (10, 'Zoë again', 'https://www.linkedin.com/in/Zoe-Angstrom/', NULL)});
$node->wait_for(q{SELECT person IS NOT NULL FROM contacts WHERE id = 10}, 'a known person is written by reuse');
is($node->safe_psql('postgres', q{
	SELECT a.answered_at = b.answered_at AND a.request <> b.request FROM enrich.enriched_rows a, enrich.enriched_rows b
	WHERE a.source_key = '["10"]' AND b.source_key = '["1"]'}), 't',
	'its answered_at is that of the answer it copied');
is(sent('linkedin.com/in/zoe-angstrom'), 1, 'and it cost nothing');

# 3. nothing is due yet: nothing is queued
my $requests = $node->safe_psql('postgres', q{SELECT count(*) FROM enrich.requests});

# 4. outside enrich.refresh_window, rows due wait
my $window = set_window('2 hours', '3 hours');
age_everything('2 days');
$node->safe_psql('postgres', q{SET ROLE crm; UPDATE contacts SET person = '{"old": true}' WHERE person IS NOT NULL});
is($node->safe_psql('postgres', q{SELECT count(*) FROM enrich.requests}), $requests,
	'an edit of the result column queues nothing');
sleep 12;
is($node->safe_psql('postgres', q{SELECT count(*) FROM enrich.requests}), $requests,
	"outside the window ($window), the rows due are not queued");

# 5. inside it, a round queues an even share of the rows due for each round left
$window = set_window('-1 hour', '1 hour');
$node->wait_for(qq{SELECT count(*) > $requests FROM enrich.requests}, "inside the window ($window), a refresh is queued");
is($node->safe_psql('postgres', qq{SELECT count(*) - $requests FROM enrich.requests}), 1,
	'one round queues its share (1 of 9 rows due over the hour left), not every row due');
my $first = $node->safe_psql('postgres', q{SELECT source_key->>0 FROM enrich.requests ORDER BY id DESC LIMIT 1});
is($node->safe_psql('postgres', q{SELECT max_age FROM enrich.requests ORDER BY id DESC LIMIT 1}), '1 day',
	'it may copy only an answer younger than refresh_after');
$node->wait_for(qq{SELECT person->>'old' IS NULL FROM contacts WHERE id = $first},
	'the new person is written over the old one');
is($node->safe_psql('postgres', qq{
	SELECT answered_at > now() - interval '1 hour' AND refresh_from = answered_at
	FROM enrich.enriched_rows WHERE source_key = '["$first"]'}), 't', 'and recorded as new');
is($node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE c.person->>'old' = 'true')
	     + count(*) FILTER (WHERE EXISTS (SELECT 1 FROM enrich.requests r
	                                      WHERE r.source_key = jsonb_build_array(c.id::text)
	                                        AND r.max_age IS NOT NULL AND r.state = 'done'))
	FROM contacts c WHERE c.id <> 9}), 9,
	'every other row keeps its old person until its refresh is written');

# 6. enrich_alter_watch stops the schedule; enrich_refresh queues at once
# the rows whose person is older than asked
$node->safe_psql('postgres', q{SET ROLE crm; SELECT enrich_alter_watch('contacts', '0')});
$node->safe_psql('postgres', q{ALTER SYSTEM RESET enrich.refresh_window; SELECT pg_reload_conf()});
is($node->safe_psql('postgres', q{SELECT refresh_after IS NULL FROM enrich.watches}), 't',
	'refresh_after 0 stops the refreshes');
$node->wait_for(q{SELECT count(*) = 0 FROM enrich.requests WHERE state NOT IN ('done', 'failed')},
	'the refreshes under way are done');
my $old = $node->safe_psql('postgres', q{SELECT count(*) FROM contacts WHERE person->>'old' = 'true'});
is($node->safe_psql('postgres', q{SET ROLE crm; SELECT enrich_refresh('contacts', '1 day')}), $old,
	"enrich_refresh queues the $old rows older than a day");
$node->wait_for(q{SELECT count(*) = 0 FROM contacts WHERE person->>'old' = 'true'}, 'and each gets its new person');
for my $p (@people)
{
	is(sent($p->[2]), 2, "$p->[2]: sent twice in all, the first time and once to refresh");
}
is($node->safe_psql('postgres', q{SET ROLE crm; SELECT enrich_refresh('contacts', '1 day')}), 0,
	'nothing is older than a day now');

# 7. without older_than, every row is asked again, with no answer copied
is($node->safe_psql('postgres', q{SET ROLE crm; SELECT enrich_refresh('contacts')}), 9,
	'enrich_refresh without older_than queues every row with a person');
$node->wait_for(q{SELECT count(*) = 0 FROM enrich.requests WHERE state NOT IN ('done', 'failed')},
	'and they are done');
is(sent('linkedin.com/in/wang-xiaoming'), 3, 'each is called again');
is(sent('linkedin.com/in/zoe-angstrom'), 3, 'two rows of one person share one call');

# 8. a deleted row is forgotten, not refreshed
$node->safe_psql('postgres', q{SET ROLE crm; DELETE FROM contacts WHERE id = 8});
age_everything('2 days');
is($node->safe_psql('postgres', q{SET ROLE crm; SELECT enrich_refresh('contacts', '1 day')}), 8,
	'a deleted row is not queued');
is($node->safe_psql('postgres', q{SELECT count(*) FROM enrich.enriched_rows WHERE source_key = '["8"]'}), 0,
	'and is forgotten');
$node->wait_for(q{SELECT count(*) = 0 FROM enrich.requests WHERE state NOT IN ('done', 'failed')},
	'the refreshes are done');
is(sent('linkedin.com/in/lukasz-zolc'), 3, 'the deleted row cost nothing');

# 9. changing and stopping the schedule, and what is refused
$node->safe_psql('postgres', q{SET ROLE crm; SELECT enrich_alter_watch('contacts', refresh_after => '90 days')});
is($node->safe_psql('postgres', q{SELECT refresh_after FROM enrich.watches}), '90 days', 'enrich_alter_watch changes it');
$node->safe_psql('postgres', q{SET ROLE crm; SELECT enrich_alter_watch('contacts')});
is($node->safe_psql('postgres', q{SELECT refresh_after FROM enrich.watches}), '90 days', 'NULL leaves it');
is($node->sqlstate_of('postgres', 'crm', q{SELECT enrich_alter_watch('contacts', '-1 day')}), '22023',
	'a negative refresh_after is refused');
like(($node->psql('postgres', q{SET ROLE crm; SELECT enrich_alter_watch('contacts', '-1 day')}))[2],
	qr/refresh_after must not be negative/, 'naming it');
is($node->sqlstate_of('postgres', 'crm', q{SELECT enrich_refresh('contacts', '-1 day')}), '22023',
	'a negative older_than too');
is($node->sqlstate_of('postgres', 'eve', q{SELECT enrich_refresh('contacts')}), '42501',
	'another role may not refresh the table');
is($node->sqlstate_of('postgres', 'eve', q{SELECT enrich_alter_watch('contacts', '1 day')}), '42501',
	'nor change its watch');
$node->safe_psql('postgres', q{SET ROLE crm; CREATE TABLE other (id int PRIMARY KEY, url text, person jsonb)});
is($node->sqlstate_of('postgres', 'crm', q{SELECT enrich_refresh('other')}), '55000',
	'a table not watched is refused');
is($node->sqlstate_of('postgres', 'crm',
		q{SELECT enrich_watch('other', 'person', linkedin_url_column => 'url', refresh_after => '-1 hour')}),
	'22023', 'enrich_watch refuses a negative refresh_after');
is($node->safe_psql('postgres', q{SELECT count(*) FROM enrich.watches WHERE source = 'other'::regclass}), 0,
	'and watches nothing');
is($node->psql('postgres', q{ALTER SYSTEM SET enrich.refresh_window = '25:00-02:00'}), 3,
	'a malformed enrich.refresh_window is refused');

# 10. a watch that does not refresh records nothing as it writes; setting
# refresh_after records the rows it wrote from enrich.requests
$node->safe_psql('postgres', q{SET ROLE crm;
	INSERT INTO other VALUES (1, 'linkedin.com/in/zoe-angstrom', NULL), (2, 'linkedin.com/in/other-ünïcode', NULL);
	SELECT enrich_watch('other', 'person', linkedin_url_column => 'url', backfill => true)});
$node->wait_for(q{SELECT count(*) = 2 FROM other WHERE person IS NOT NULL}, 'a watch without refresh_after writes');
is($node->safe_psql('postgres', q{SELECT count(*) FROM enrich.enriched_rows WHERE source = 'other'::regclass}), 0,
	'and records nothing');
$node->safe_psql('postgres', q{SET ROLE crm; SELECT enrich_alter_watch('other', '30 days')});
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM enrich.enriched_rows e JOIN enrich.requests r ON r.id = e.request
	WHERE e.source = 'other'::regclass AND e.source_key = r.source_key
	  AND e.answered_at = COALESCE((SELECT o.completed_at FROM enrich.requests o WHERE o.id = r.reused_from), r.completed_at)}),
	2, 'refresh_after set records each row written before, as old as its answer');

# 11. a dropped table's records go with it
$node->safe_psql('postgres', q{SET ROLE crm; DROP TABLE contacts, other});
is($node->safe_psql('postgres', q{SELECT count(*) FROM enrich.enriched_rows}), 0,
	'DROP TABLE forgets its rows');

$node->stop;
$mock->stop;
done_testing();
