# Tier rate limits: 429 + Retry-After, recovery, independence of tiers and keys, defaults.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../../perl";
use Test::More;
use Time::HiRes qw(time sleep);
use EnrichMock;

-x EnrichMock->bin_path or BAIL_OUT('mock binary not built (make -C test/mock)');

my $BE = '/v2/test/person/bulk-enrich';
my $err = \&EnrichMock::check_error;
my $n = 0;
sub post { my (%o) = @_; my $m = delete $o{m}; $m->request(POST => $BE, json => { requests => [ { personId => 'rl-' . ++$n } ] }, %o) }

sub rate_limited_ok
{
	my ($r, $name, $want_ra) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	$err->($r, 429, 'rate_limited', undef, "$name: 429 rate_limited envelope");
	my $ra = $r->{headers}{'retry-after'};
	ok(defined $ra && $ra =~ /^\d+$/ && $ra >= 1, "$name: Retry-After is an integer >= 1 (" . ($ra // 'none') . ')');
	is($ra, $want_ra, "$name: Retry-After $want_ra") if defined $want_ra;
	return $ra;
}

# --- tier 3 at 2/s (burst 4), tier 4 at 3/s (burst 6)
my $m = EnrichMock->start(tier3 => 2, tier4 => 3, key_test => [qw(k1 k2)], seed => 1);
{
	my $t0 = time;
	my @st = map { post(m => $m, key => 'k1') } 1 .. 10;
	my $el = time - $t0;
	my @codes = map { $_->{status} } @st;
	is_deeply([ @codes[ 0 .. 3 ] ], [ (202) x 4 ], 'tier 3: the burst of 4 (2 x 2) is accepted') or diag "@codes";
	my $ok = grep { $_ == 202 } @codes;
	my @limited = grep { $_->{status} == 429 } @st;
	ok(@limited >= 1, 'tier 3: a burst of 10 gets 429s') or diag "@codes";
	cmp_ok($ok, '<=', 4 + int(2 * $el) + 1, "tier 3: no more than burst + refill accepted ($ok in ${el}s)");
	is_deeply([ grep { $_ != 202 && $_ != 429 } @codes ], [], 'only 202 and 429');
	my $ra = @limited ? rate_limited_ok($limited[0], 'tier 3', 1) : 1;    # ceil(0.5 s) = 1

	is($m->request(GET => $BE, key => 'k1')->{status}, 200, 'tier 4 unaffected by an exhausted tier 3');
	is(post(m => $m, key => 'k2')->{status}, 202, 'another key has its own tier 3 bucket');
	$err->($m->request(POST => $BE, key => 'nope', body => '{broken'), 401, 'unauthorized', undef,
		'keys are checked before the rate limit (unknown key -> 401)');

	sleep(($ra // 1) + 0.05);
	is(post(m => $m, key => 'k1')->{status}, 202, 'after waiting Retry-After, bulk enrich succeeds');
	my $accepted = $ok + 2;
	is($m->stats->{batches}, $accepted, 'rejected (429) requests created no batch');
}

{
	sleep 1.1;    # some tier 3 tokens back
	my @eps = ($BE, "$BE/bat_99999999_deadbeef", "$BE?limit=5");
	my $t0 = time;
	my @st = map { $m->request(GET => $eps[ $_ % 3 ], key => 'k1') } 0 .. 13;
	my $el = time - $t0;
	my @codes = map { $_->{status} } @st;
	is_deeply([ map { $_ == 429 ? 0 : 1 } @codes[ 0 .. 5 ] ], [ (1) x 6 ], 'tier 4: the burst of 6 (2 x 3) passes, all GET endpoints share it')
	  or diag "@codes";
	my @limited = grep { $_->{status} == 429 } @st;
	ok(@limited >= 1, 'tier 4: a burst of 14 gets 429s') or diag "@codes";
	cmp_ok(scalar(grep { $_ != 429 } @codes), '<=', 6 + int(3 * $el) + 1, 'tier 4: no more than burst + refill pass');
	my $ra = @limited ? rate_limited_ok($limited[0], 'tier 4', 1) : 1;    # ceil(1/3 s) = 1
	is(post(m => $m, key => 'k1')->{status}, 202, 'tier 3 unaffected by an exhausted tier 4');
	is($m->request(GET => $BE, key => 'k2')->{status}, 200, 'another key has its own tier 4 bucket');
	sleep(($ra // 1) + 0.05);
	is($m->request(GET => $BE, key => 'k1')->{status}, 200, 'after waiting Retry-After, GET succeeds');
}
$m->stop;

# --- Retry-After is the ceiling of the wait for a token: at tier3 1 (burst 2) that wait
# is at most 1 s -> Retry-After 1
$m = EnrichMock->start(tier3 => 1, seed => 1);
{
	my @st = map { post(m => $m) } 1 .. 4;
	my ($l) = grep { $_->{status} == 429 } @st;
	ok($l, 'tier3 1: the third request in a burst is limited');
	rate_limited_ok($l, 'tier3 1', 1) if $l;

	# rate limit before the size check: with the bucket empty, oversized bodies get 429.
	# At 1 token/s at most 1 + elapsed tokens can come back during the attempts.
	my $t0 = time;
	my @v = map { $m->request(POST => $BE, body => '{broken')->{status} } 1 .. 3;
	my $el0 = time - $t0;
	ok((grep { $_ == 429 } @v) && (grep { $_ == 400 } @v) <= 1 + int($el0),
		"empty bucket: malformed bodies get 429, not 400 (rate limit before validation) (@v)");
	my $big = '{"requests":[]' . (' ' x (4 * 1024 * 1024)) . '}';
	$t0 = time;
	my @codes = map { $m->request(POST => $BE, body => $big, via => 'curl')->{status} } 1 .. 3;
	my $el = time - $t0;
	my $n413 = grep { $_ == 413 } @codes;
	ok((grep { $_ == 429 } @codes) && $n413 <= 1 + int($el), "empty bucket: oversized bodies get 429, not 413 (@codes in ${el}s)");
}
$m->stop;

# --- 0 = unlimited (the module's default)
$m = EnrichMock->start(seed => 1);
{
	my @codes = map { post(m => $m)->{status} } 1 .. 40;
	is(scalar(grep { $_ == 202 } @codes), 40, 'tier3 0: 40 bulk enrich in a burst all accepted');
	@codes = map { $m->request(GET => $BE)->{status} } 1 .. 150;
	is(scalar(grep { $_ == 200 } @codes), 150, 'tier4 0: 150 GETs in a burst all pass');
}
$m->stop;

# --- mock defaults: tier 3 at 5/s burst 10, tier 4 at 50/s burst 100
$m = EnrichMock->start(tier3 => undef, tier4 => undef, seed => 1);
{
	# send until the first 429 (bounded); at most burst + rate x elapsed (+1) may pass
	my $burst = sub {
		my ($max, $call) = @_;
		my ($t0, @codes) = (time);
		while (@codes < $max) { push @codes, $call->(); last if $codes[-1] == 429; }
		return (time - $t0, @codes);
	};
	my ($el, @codes) = $burst->(100, sub { post(m => $m)->{status} });
	is_deeply([ @codes[ 0 .. 9 ] ], [ (202) x 10 ], 'default tier 3: burst of 10 accepted') or diag "@codes";
	my $passed = grep { $_ == 202 } @codes;
	ok($codes[-1] == 429 && $passed <= 10 + 5 * $el + 1, "default tier 3: limited after the burst ($passed passed in ${el}s)");
	($el, @codes) = $burst->(1000, sub { $m->request(GET => $BE)->{status} });
	is_deeply([ grep { $_ != 200 } @codes[ 0 .. 99 ] ], [], 'default tier 4: burst of 100 passes');
	$passed = grep { $_ == 200 } @codes;
	ok($codes[-1] == 429 && $passed <= 100 + 50 * $el + 1, "default tier 4: limited after the burst ($passed passed in ${el}s)");
}

done_testing();
