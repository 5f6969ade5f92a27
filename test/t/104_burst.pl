# The burst the API allows is not exceeded by workers whose claims are
# slow.  A worker takes a tier 3 token, then claims its chunk in a
# transaction, then sends it: the API counts the call when it arrives.
# Four workers claiming at once (their first claims made to take 2.5 s
# here, while the bucket refills) must not send more than the burst: a
# token taken holds its place in the bucket until its call is made.
# Against a mock with the contract's limits, 80 bulk enrich calls at the
# tier 3 limit get no 429 (before a token pending held its place, this
# test saw three).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../perl";

use EnrichMock;
use EnrichNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $mock = EnrichMock->start(tier3 => 5, tier4 => 50, start_delay_ms => 200);
my $node = EnrichNode->create('burst', $mock, q{
enrich.workers = 4
enrich.batch_size = 25
enrich.page_size = 25
enrich.tier3_rate = 5
enrich.tier4_rate = 50
enrich.poll_interval_min = '50ms'
enrich.poll_interval_max = '500ms'
});

# contacts of a watched table come to the workers through enrich.intake,
# which they claim at once (SKIP LOCKED); the first claim of each worker
# (requests made 'submitting') takes 2.5 s: the four hold their tokens
# while the bucket refills, then send, and claim on quickly
my $n = 2000;
$node->safe_psql('postgres', q{
	CREATE TABLE public.contacts (id bigint PRIMARY KEY, linkedin text, person jsonb);
	CREATE TABLE public.slow_claims (pid int, started timestamptz, ended timestamptz);
	SELECT enrich_watch('public.contacts', 'person', linkedin_url_column => 'linkedin');
	CREATE FUNCTION public.slow_claim() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF current_setting('burst.slept', true) IS DISTINCT FROM 'yes' THEN
			PERFORM pg_catalog.set_config('burst.slept', 'yes', false);
			PERFORM pg_catalog.pg_sleep(2.5);
			INSERT INTO public.slow_claims VALUES (pg_catalog.pg_backend_pid(),
				pg_catalog.statement_timestamp(), pg_catalog.clock_timestamp());
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER slow_claim BEFORE INSERT ON enrich.requests FOR EACH ROW
		WHEN (NEW.state = 'submitting')
		EXECUTE FUNCTION public.slow_claim()});
# 80 statements: 80 rows of enrich.intake of 25 contacts each
$node->safe_psql('postgres', qq{
	DO \$\$
	BEGIN
		FOR s IN 0 .. $n / 25 - 1 LOOP
			INSERT INTO public.contacts
			SELECT g, 'https://www.linkedin.com/in/burst-' || g, NULL
			FROM generate_series(s * 25 + 1, s * 25 + 25) g;
		END LOOP;
	END \$\$});
$node->wait_for(qq{SELECT count(*) = $n FROM public.contacts WHERE person IS NOT NULL},
	"$n contacts have their person", 300);

my $stats = $mock->stats;
my $bulk = $stats->{endpoints}{bulk_enrich} // {};
cmp_ok($bulk->{202} // 0, '>=', $n / 25, 'the requests went in chunks of 25 at most');
is($bulk->{429} // 0, 0, 'no bulk enrich was refused for the rate (429)');
my $refused = 0;
$refused += $_->{429} // 0 for values %{ $stats->{endpoints} };
is($refused, 0, 'no call of any tier was refused for the rate');
is($node->safe_psql('postgres', q{
		SELECT count(DISTINCT pid) = 4 AND max(started) < min(ended) FROM public.slow_claims}),
	't', 'the four workers held a token and claimed at once');
my $subs = $stats->{submissions};
is(scalar(grep { $subs->{$_} > 1 } keys %$subs), 0, 'no identifier was submitted twice');

$node->stop;
$mock->stop;
done_testing();
