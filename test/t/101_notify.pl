# Notifications: a watch's notify channel hears, at the commit of each page
# of persons written into its table, a JSON payload naming the table and the
# primary keys written, so that an application can LISTEN instead of
# polling.  Nothing is heard of rows not written or once the channel is
# removed; a payload never passes NOTIFY's limit.
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/../perl";

use EnrichMock;
use EnrichNode;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $mock = EnrichMock->start;
my $node = EnrichNode->create('notify', $mock, q{
enrich.poll_interval_min = '50ms'
enrich.poll_interval_max = '500ms'
enrich.page_size = 20
});

$node->safe_psql('postgres', q{
	CREATE ROLE crm LOGIN;
	GRANT enrich_user TO crm;
	GRANT CREATE ON SCHEMA public TO crm;
	SET ROLE crm;
	CREATE TABLE "Contacts ✓" (id text, region int, linkedin text, person jsonb, PRIMARY KEY (region, id));
	SELECT enrich_watch('"Contacts ✓"', 'person', linkedin_url_column => 'linkedin', notify => 'enriched');
});

# a session that listens
my $listener = $node->background_psql('postgres', extra_params => [ '-U', 'crm' ]);
$listener->query_safe('LISTEN enriched');

# notifications returns the payloads the listener received so far, decoded
sub notifications
{
	my $out = $listener->query_safe('SELECT 1');
	my @payloads;
	while ($out =~ /Asynchronous notification "enriched" with payload "(.*?)" received from server process/g)
	{
		push @payloads, JSON::PP->new->utf8(1)->decode($1);
	}
	return @payloads;
}

# 45 rows, and 5 whose person the API does not find; keys of several
# columns, with text that is not ASCII
my $values = join(', ', map { "('ключ-$_ ✓', $_, 'linkedin.com/in/notify-$_', NULL)" } 1 .. 45)
  . ', ' . join(', ', map { "('gone-$_', $_, 'linkedin.com/in/notfound-$_', NULL)" } 1 .. 5);
$node->safe_psql('postgres', qq{SET ROLE crm; INSERT INTO "Contacts ✓" VALUES $values});
$node->wait_for(q{SELECT count(*) = 45 FROM "Contacts ✓" WHERE person IS NOT NULL}
	  . q{ AND (SELECT count(*) FROM enrich.requests WHERE state = 'failed') = 5},
	'the persons are written, the unknown ones failed');

my @heard;
my $deadline = time + 30;
while (time < $deadline)
{
	push @heard, notifications();
	last if (map { @{ $_->{keys} } } @heard) >= 45;
	sleep 0.2;
}
my @keys = map { @{ $_->{keys} } } @heard;
is(scalar(@keys), 45, 'each row written is named once');
is(scalar(keys %{ { map { JSON::PP->new->canonical->encode($_) => 1 } @keys } }), 45, 'and never twice');
is(scalar(grep { $_->{table} ne 'public."Contacts ✓"' } @heard), 0, 'each payload names the table');
ok(!grep({ $_->[1] =~ /^gone/ } @keys), 'no row without a person is named');
is_deeply($keys[0], [ $keys[0][0], $keys[0][1] ], 'a key is the primary key as an array of text');
ok((grep { $_->[0] eq '1' && $_->[1] eq 'ключ-1 ✓' } @keys), 'in the order of its columns, not ASCII kept');
ok(@heard >= 3, 'one notification per page written (' . scalar(@heard) . ' for pages of 20)');

# a page whose payload would pass 8000 bytes is told in several
$node->safe_psql('postgres', q{SET ROLE crm; INSERT INTO "Contacts ✓"
	SELECT repeat('長い鍵', 60) || g, g, 'linkedin.com/in/long-key-' || g, NULL FROM generate_series(1, 20) g});
$node->wait_for(q{SELECT count(*) = 65 FROM "Contacts ✓" WHERE person IS NOT NULL}, 'rows with long keys are written');
@heard = ();
$deadline = time + 30;
while (time < $deadline)
{
	push @heard, notifications();
	last if (map { @{ $_->{keys} } } @heard) >= 20;
	sleep 0.2;
}
is(scalar(map { @{ $_->{keys} } } @heard), 20, 'every long key is named');
ok(@heard >= 2, 'in more than one notification for one page (' . scalar(@heard) . ')');

# without a channel, nothing is heard
$node->safe_psql('postgres', q{SET ROLE crm; SELECT enrich_alter_watch('"Contacts ✓"', notify => '')});
is($node->safe_psql('postgres', q{SELECT notify IS NULL FROM enrich.watches}), 't', "notify '' removes the channel");
$node->safe_psql('postgres', q{SET ROLE crm; INSERT INTO "Contacts ✓" VALUES ('quiet', 1, 'linkedin.com/in/notify-quiet', NULL)});
$node->wait_for(q{SELECT person IS NOT NULL FROM "Contacts ✓" WHERE id = 'quiet'}, 'a row is written after');
is(scalar(notifications()), 0, 'and nothing is heard of it');

is($node->sqlstate_of('postgres', 'crm', q{SELECT enrich_alter_watch('"Contacts ✓"', notify => repeat('x', 64))}),
	'22023', 'a channel name NOTIFY would refuse is refused');

$listener->quit;
$node->stop;
$mock->stop;
done_testing();
