# Columns: enrich_watch(..., columns => {"column": "jsonpath"}) writes person
# fields into columns of the watched table, cast to each column's type, in
# the same UPDATE as the person: only where the column is NULL (column_mode
# fill) or wherever the path finds a value (overwrite).  A bad column, path
# or mode is refused at watch time naming it; a value that does not cast
# leaves its column as it was and is counted, never failing the page, even
# when the type raises an error (a domain whose CHECK raises) instead of
# saying so softly: the page's other values of that column are written.
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
my $node = EnrichNode->create('columns', $mock, q{
enrich.poll_interval_min = '50ms'
enrich.poll_interval_max = '500ms'
});

# a domain whose CHECK raises an error (not a soft one) for the name of the
# first person
my $refused_name = $mock->person(professionalSocialMediaUrl => 'linkedin.com/in/zoe-angstrom')->{person}{fullName};
$node->safe_psql('postgres', qq{
	CREATE ROLE crm LOGIN;
	GRANT enrich_user TO crm;
	GRANT CREATE ON SCHEMA public TO crm;
	SET ROLE crm;
	CREATE FUNCTION public.name_ok(text) RETURNS boolean LANGUAGE plpgsql AS \$f\$
	BEGIN
		IF \$1 = \$n\$$refused_name\$n\$ THEN
			RAISE EXCEPTION 'this name is refused';
		END IF;
		RETURN true;
	END \$f\$;
	CREATE DOMAIN public.checked_name AS text CHECK (public.name_ok(VALUE));
	CREATE TABLE people (id int PRIMARY KEY, linkedin text, person jsonb,
		"full name" text, years smallint, skills jsonb, first_skill varchar(40),
		note text DEFAULT 'kept', bad int, seen timestamptz, checked public.checked_name);
});

my $columns = q{{"full name": "$.fullName", "years": "$.yearsOfExperience", "skills": "$.skills",
	"first_skill": "$.skills[0]", "note": "$.noSuchField", "bad": "$.fullName", "checked": "$.fullName"}};

# refused at watch time, naming what is wrong, and nothing is watched
my %refused = (
	q{{"nope": "$.fullName"}} => [ '42703', qr/column "nope" of columns does not exist/ ],
	q{{"person": "$.fullName"}} => [ '22023', qr/column "person" of columns cannot be written/ ],
	q{{"id": "$.fullName"}} => [ '22023', qr/column "id" of columns cannot be written/ ],
	q{{"linkedin": "$.fullName"}} => [ '22023', qr/column "linkedin" of columns cannot be written/ ],
	q{{"years": "$.(("}} => [ '22023', qr/invalid jsonpath for column "years" of columns/ ],
	q{{"years": 7}} => [ '22023', qr/the jsonpath for column "years" of columns must be a string/ ],
	q{["years"]} => [ '22023', qr/columns must be a JSON object/ ],
);
for my $bad (sort keys %refused)
{
	my ($state, $message) = @{ $refused{$bad} };
	my $sql = qq{SELECT enrich_watch('people', 'person', linkedin_url_column => 'linkedin', columns => '$bad')};
	is($node->sqlstate_of('postgres', 'crm', $sql), $state, "columns $bad is refused ($state)");
	like(($node->psql('postgres', "SET ROLE crm; $sql"))[2], $message, 'naming it');
}
is($node->sqlstate_of('postgres', 'crm',
		qq{SELECT enrich_watch('people', 'person', linkedin_url_column => 'linkedin', columns => '$columns',
		                       column_mode => 'sometimes')}), '22023', 'an unknown column_mode is refused');
is($node->safe_psql('postgres', q{SELECT count(*) FROM enrich.watches}), 0, 'and nothing is watched');

$node->safe_psql('postgres', qq{SET ROLE crm;
	SELECT enrich_watch('people', 'person', linkedin_url_column => 'linkedin', columns => '$columns');
	INSERT INTO people (id, linkedin, "full name") VALUES
		(1, 'linkedin.com/in/zoe-angstrom', NULL), (2, 'linkedin.com/in/wang-xiaoming', 'Mīne 王 ✓'),
		(3, 'linkedin.com/in/noa-cohen', NULL)});
$node->wait_for(q{SELECT count(*) = 3 FROM people WHERE person IS NOT NULL}, 'the persons are written');

# fill: only where the column is NULL
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM people WHERE id <> 2 AND "full name" = person->>'fullName'
	  AND years = (person->>'yearsOfExperience')::smallint AND skills = person->'skills'
	  AND first_skill = person->'skills'->>0}), 2,
	'each mapped field is written, cast to its column (text, smallint, jsonb, varchar)');
is($node->safe_psql('postgres', q{SELECT "full name" = 'Mīne 王 ✓' FROM people WHERE id = 2}), 't',
	'fill keeps a value the row had');
is($node->safe_psql('postgres', q{SELECT count(*) FROM people WHERE note = 'kept'}), 3,
	'a path that finds nothing leaves the column');
is($node->safe_psql('postgres', q{SELECT count(*) FROM people WHERE bad IS NULL}), 3,
	'a value that does not cast leaves it too');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM people
	WHERE checked IS NOT DISTINCT FROM CASE WHEN id = 1 THEN NULL ELSE person->>'fullName' END}), 3,
	'a domain whose CHECK raises an error leaves only that value\'s column, the page\'s others are written');
is($node->safe_psql('postgres', q{SELECT column_failures FROM enrich.watches}), 4, 'and each is counted');
ok($node->log_contains(qr/values of the columns mapped for table public\.people did not cast/),
	'and said in the log');
is($node->safe_psql('postgres', q{SELECT count(*) FROM enrich.requests WHERE state = 'done'}), 3,
	'the page did not fail');

# overwrite: wherever the path finds a value
$node->safe_psql('postgres', q{SET ROLE crm;
	SELECT enrich_alter_watch('people', column_mode => 'overwrite', columns => '{"full name": "$.fullName", "seen": "$.noSuchField"}');
	UPDATE people SET seen = '2026-01-01', years = 0});
is($node->safe_psql('postgres', q{SELECT column_mode || ' ' || (columns ? 'seen') FROM enrich.watches}),
	'overwrite true', 'enrich_alter_watch changes the mapping and the mode');
is($node->safe_psql('postgres', q{SET ROLE crm; SELECT enrich_refresh('people')}), 3, 'the rows are asked again');
$node->wait_for(q{SELECT "full name" = person->>'fullName' FROM people WHERE id = 2},
	'overwrite replaces a value the row had');
is($node->safe_psql('postgres', q{SELECT count(*) FROM people WHERE seen = '2026-01-01' AND years = 0}), 3,
	'a column no longer mapped, and one whose path finds nothing, keep their values');

# {} maps nothing
$node->safe_psql('postgres', q{SET ROLE crm; SELECT enrich_alter_watch('people', columns => '{}')});
is($node->safe_psql('postgres', q{SELECT columns IS NULL FROM enrich.watches}), 't', '{} removes the mapping');

$node->stop;
$mock->stop;
done_testing();
