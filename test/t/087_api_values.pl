# What the API says is kept exactly, or not believed:
#  - integers beyond 64 bits in a person keep every digit, in
#    enrich.requests, in watched tables and from enrich_items;
#  - a completedAt in year 9999 teaches the workers nothing (a poll delay
#    learned from it would not fit an int: undefined behaviour), and is not
#    recorded as how long the batch took;
#  - real names (accented Latin, CJK, Hangul, Arabic and Hebrew, emoji,
#    combining marks) reach a watched table with non-ASCII names byte for
#    byte, and so do the API's non-ASCII failure messages;
# and enrich is created only in a UTF8 database, where jsonb holds the
# API's text as it came.
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
my $node = EnrichNode->create('api_values', $mock, q{
enrich.poll_interval_min = '20ms'
});
sub sql { return $node->safe_psql('postgres', $_[0]) }

# integers beyond 64 bits
sql(q{CREATE TABLE contacts (id int PRIMARY KEY, pid text, person jsonb);
	SELECT enrich_watch('contacts', 'person', person_id_column => 'pid');
	INSERT INTO contacts VALUES (1, 'p-bignum-1', NULL)});
$node->wait_for(q{SELECT person IS NOT NULL FROM contacts WHERE id = 1}, 'a person with big numbers is written back');
my $check = q{SELECT p->>'registryNumber' = '123456789012345678901234567890123'
		AND p->'balance' = '-98765432109876543210987'::jsonb
		AND p->'ids'->0 = '18446744073709551616'::jsonb
		AND (p->'ids'->>1)::numeric = 1e400 AND p->'ids'->2 = '7'::jsonb};
is(sql("$check FROM (SELECT person FROM enrich.requests WHERE person_id = 'p-bignum-1') AS r(p)"), 't',
	'enrich.requests keeps every digit');
is(sql("$check FROM (SELECT person FROM contacts WHERE id = 1) AS c(p)"), 't', 'so does the watched table');
my $batch = sql(q{SELECT enrich_submit('[{"personId": "p-bignum-2"}]')});
$node->poll_query_until('postgres', qq{SELECT status = 'completed' FROM enrich_status('$batch')})
  or die 'the batch did not complete';
is(sql("$check FROM (SELECT person FROM enrich_items('$batch')) AS i(p)"), 't', 'and enrich_items');

# real names through the workers: a table, its schema, columns and keys
# named in other scripts; a quarter of the generated identifiers, and each
# "unicode" one, get a non-ASCII person
sql(q{CREATE SCHEMA "ünïcode";
	CREATE TABLE "ünïcode"."kontakte_山田" ("schlüssel" text PRIMARY KEY, "profil_url" text, "person_ü" jsonb);
	SELECT enrich_watch('"ünïcode"."kontakte_山田"', 'person_ü', linkedin_url_column => 'profil_url');
	INSERT INTO "ünïcode"."kontakte_山田" ("schlüssel", "profil_url") VALUES
		('ada-זהות', 'https://www.linkedin.com/in/unicode-ada'),
		('東京-1', 'https://www.linkedin.com/in/ÉLODIE-Núñez-山田/'),
		('emoji-🚀', 'linkedin.com/in/unicode-notfound-zoë');
	INSERT INTO "ünïcode"."kontakte_山田" ("schlüssel", "profil_url")
		SELECT 'k-' || g, 'https://www.linkedin.com/in/person-' || g FROM generate_series(1, 40) g});
$node->wait_for(q{SELECT count(*) = 43 FROM enrich.requests
	WHERE source_relid = '"ünïcode"."kontakte_山田"'::regclass AND state IN ('done', 'failed')},
	'every real-name row is settled');
my @expect;
for my $row (split /\n/, sql(q{SELECT "schlüssel" || '|' || "profil_url" FROM "ünïcode"."kontakte_山田"
	WHERE "schlüssel" <> 'emoji-🚀'}))
{
	my ($key, $url) = split /\|/, $row, 2;
	# escaped here: HTTP::Tiny's query encoder would encode these bytes again
	my $escaped = $url =~ s/([^A-Za-z0-9._~-])/sprintf('%%%02X', ord $1)/ger;
	my $res = $mock->request(GET => "/__mock/person?professionalSocialMediaUrl=$escaped");
	die "the mock has no person for $url" unless $res->{status} == 200;
	push @expect, "(\$k\$$key\$k\$, \$j\$$res->{content}\$j\$)";
}
my $mock_persons = 'VALUES ' . join(', ', @expect);
is(sql(qq{SELECT count(*) FILTER (WHERE c."person_ü" IS NOT NULL
			AND convert_to(c."person_ü"::text, 'UTF8') = convert_to((m.j::jsonb->'person')::text, 'UTF8')),
		count(*) FILTER (WHERE c."person_ü"::text ~ '[^\\x01-\\x7f]')
	FROM ($mock_persons) AS m(k, j) JOIN "ünïcode"."kontakte_山田" c ON c."schlüssel" = m.k}) =~ s/\|(\d+)$//r,
	42, 'the 42 persons written back are the mock\'s, byte for byte');
cmp_ok(sql(qq{SELECT count(*) FROM "ünïcode"."kontakte_山田" WHERE "person_ü"::text ~ '[^\\x01-\\x7f]'}),
	'>=', 5, 'and several of them are not ASCII');
is(sql(q{SELECT c."person_ü" IS NULL, r.error->>'code', r.error->>'message'
	FROM "ünïcode"."kontakte_山田" c JOIN enrich.requests r ON r.source_key->>0 = c."schlüssel"
	WHERE c."schlüssel" = 'emoji-🚀'}),
	't|not_found|aucune personne ne correspond · 該当する人物はいません · לא נמצא אדם 🔍',
	'a non-ASCII failure message is kept as the API wrote it');

# a completedAt in year 9999
$mock->set_faults({ hostile => 'far_future' });
sql(q{INSERT INTO enrich.requests (person_id) VALUES ('p-far-1')});
$node->wait_for(q{SELECT state = 'done' FROM enrich.requests WHERE person_id = 'p-far-1'},
	'a batch whose completedAt is in year 9999 is paged');
ok($mock->stats->{hostile}{batch_status} >= 1, 'the API said so');
is(sql(q{SELECT took_ms FROM enrich.batches b JOIN enrich.requests r ON r.batch_id = b.batch_id
	WHERE r.person_id = 'p-far-1'}), '', 'what it says the batch took is not recorded');
sql(q{INSERT INTO enrich.requests (person_id) VALUES ('p-far-2')});
$node->wait_for(q{SELECT state = 'done' FROM enrich.requests WHERE person_id = 'p-far-2'},
	'the next batch is paged too');
is(sql(q{SELECT count(*) FROM enrich.batches WHERE poll_interval_ms < 0 OR poll_interval_ms > 3600000
	OR took_ms > 86400000}), 0, 'no poll delay or completion time out of range was recorded');
$mock->set_faults({});

# a database whose encoding is not UTF8
sql(q{CREATE DATABASE latin TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'});
my ($rc, $out, $err) = $node->psql('latin', 'CREATE EXTENSION enrich');
like($err, qr/enrich needs a database whose encoding is UTF8, not LATIN1/, 'CREATE EXTENSION refuses a LATIN1 database');
like($err, qr/HINT:  Create the extension in a database made with ENCODING 'UTF8'/, 'with a hint');
is($node->safe_psql('latin', q{SELECT count(*) FROM pg_extension WHERE extname = 'enrich'}), 0,
	'and leaves nothing behind');

$node->stop;
$mock->stop;
done_testing();
