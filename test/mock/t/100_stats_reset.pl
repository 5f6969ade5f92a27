# /__mock/stats (endpoint counts, requests_total, batches, submissions, connections),
# /__mock/reset, and admin endpoints limited to loopback clients.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../../perl";
use Test::More;
use HTTP::Tiny;
use EnrichMock;

-x EnrichMock->bin_path or BAIL_OUT('mock binary not built (make -C test/mock)');

my $BE = '/v2/test/person/bulk-enrich';
my $err = \&EnrichMock::check_error;
my $m = EnrichMock->start(seed => 1);

sub sum_endpoints
{
	my ($s) = @_;
	my $t = 0;
	for my $e (values %{ $s->{endpoints} // {} }) { $t += $_ for values %$e; }
	return $t;
}

# --- fresh
{
	my $s = $m->stats;
	is_deeply([ sort keys %$s ], [qw(batches connections endpoints requests_total submissions)], 'stats keys');
	is(EnrichMock::jtype($s->{$_}), 'integer', "$_ is an integer") for qw(batches connections requests_total);
	is(EnrichMock::jtype($s->{$_}), 'object', "$_ is an object") for qw(endpoints submissions);
	is($s->{requests_total}, 0, 'fresh: requests_total 0');
	is($s->{batches}, 0, 'fresh: batches 0');
	is(sum_endpoints($s), 0, 'fresh: no endpoint counts');
	is_deeply($s->{submissions}, {}, 'fresh: no submissions');
}

# --- a known mix of requests
my $b1 = $m->bulk_enrich([ { professionalSocialMediaUrl => 'linkedin.com/in/dup-person' }, { personId => 'once-1' } ])->{json}{batchId};
my $b2 = $m->bulk_enrich([ { professionalSocialMediaUrl => 'https://www.linkedin.com/in/Dup-Person/' } ])->{json}{batchId};
is($m->bulk_enrich([ { personId => 'in-rejected-batch' }, { professionalSocialMediaUrl => 'linkedin.com/in/y-invalid' } ])->{status},
	400, 'a rejected bulk enrich');
is($m->bulk_enrich([ { personId => 'no-key' } ], key => undef)->{status}, 401, 'a bulk enrich without key');
# no start delay, items-per-second 0: batches are completed at once
is($m->request(GET => "$BE/$b1")->{json}{status}, 'completed', 'batch 1 completed at once');
is($m->request(GET => "$BE/$b2")->{json}{status}, 'completed', 'batch 2 completed at once');
$m->request(GET => "$BE/$b1") for 1 .. 2;
my $bs = 4;
is($m->request(GET => "$BE/bat_99999999_deadbeef")->{status}, 404, 'a batch status 404');
$m->request(GET => $BE) for 1 .. 2;
is($m->request(GET => "$BE?limit=0")->{status}, 400, 'a list batches 400');
my $items = $m->request(GET => "$BE/$b1/items")->{json}{items};
$m->request(GET => "$BE/$b2/items");
is($m->request(GET => "$BE/$b1/items/" . ($items->[0]{itemId} // 'none'))->{status}, 200, 'a get item 200');
is($m->request(GET => "$BE/$b1/items/itm_0_9999999")->{status}, 404, 'a get item 404');
is($m->request(GET => '/v2/test/nope')->{status}, 404, 'an unknown path 404');
{
	my $s = $m->stats;
	is_deeply($s->{endpoints},
		{ bulk_enrich => { 202 => 2, 400 => 1, 401 => 1 }, batch_status => { 200 => $bs, 404 => 1 },
			list_batches => { 200 => 2, 400 => 1 }, list_items => { 200 => 2 }, get_item => { 200 => 1, 404 => 1 },
			other => { 404 => 1 } },
		'endpoints: counts per endpoint and status (unknown path under other)') or diag EnrichMock->json_encode($s->{endpoints});
	is($s->{requests_total}, sum_endpoints($s), 'requests_total is the sum of the endpoint counts');
	is($s->{requests_total}, 4 + $bs + 1 + 3 + 2 + 2 + 1, 'requests_total counts every vendor request');
	is($s->{batches}, 2, 'batches 2');
	is_deeply($s->{submissions}, { 'linkedin.com/in/dup-person' => 2, 'personId:once-1' => 1 },
		'submissions: the duplicate counted twice (across URL forms), nothing from the rejected request');
}

# --- connections
{
	my $fresh = sub { EnrichMock->ua(keep_alive => 0)->get($m->url . $_[0], { headers => { 'x-api-key' => $m->key_test } }) };
	my $c0 = EnrichMock::json_decode($fresh->('/__mock/stats')->{content})->{connections};
	$fresh->($BE) for 1 .. 3;
	my $c1 = EnrichMock::json_decode($fresh->('/__mock/stats')->{content})->{connections};
	is($c1 - $c0, 4, 'connections: +4 for 3 requests and a stats call on fresh connections');

	my $ka = EnrichMock->ua(keep_alive => 1);
	my $k0 = EnrichMock::json_decode($ka->get($m->url . '/__mock/stats')->{content})->{connections};
	$ka->get($m->url . $BE, { headers => { 'x-api-key' => $m->key_test } }) for 1 .. 5;
	my $k1 = EnrichMock::json_decode($ka->get($m->url . '/__mock/stats')->{content})->{connections};
	is($k1, $k0, 'connections: 5 requests on a keep-alive connection open no new connection');

	# error answers keep the connection too (a client reusing connections is not penalized)
	my $json = { 'content-type' => 'application/json' };
	$ka->post($m->url . $BE, { headers => $json, content => '{"requests":[{"personId":"ka-1"}]}' });    # 401
	$ka->post($m->url . $BE, { headers => { %$json, 'x-api-key' => $m->key_test }, content => '{"requests":[]}' });    # 400
	$ka->post($m->url . '/v2/test/nope', { headers => { %$json, 'x-api-key' => $m->key_test }, content => '{}' });    # 404
	$ka->get($m->url . "$BE/bat_99999999_deadbeef", { headers => { 'x-api-key' => $m->key_test } });    # 404
	my $k2 = EnrichMock::json_decode($ka->get($m->url . '/__mock/stats')->{content})->{connections};
	is($k2, $k0, 'connections: 401, 400 and 404 answers keep the connection alive');
}

# --- flaky before reset
{
	my $f = $m->bulk_enrich([ { personId => 'flaky-reset' } ])->{json}{batchId};
	$m->wait_batch($f);
	ok(!$m->request(GET => "$BE/$f/items")->{json}{items}[0]{isSuccess}, 'flaky-reset fails on its first submission');
}

# --- reset
is($m->set_faults({ rate_5xx => 1, endpoints => ['list_batches'] })->{status}, 200, 'a fault set before reset');
{
	my $r = $m->reset;
	is($r->{status}, 200, 'POST /__mock/reset 200');
	my $s = $m->stats;
	is($s->{requests_total}, 0, 'after reset: requests_total 0');
	is($s->{batches}, 0, 'after reset: batches 0');
	is(sum_endpoints($s), 0, 'after reset: endpoint counts cleared');
	is_deeply($s->{submissions}, {}, 'after reset: submissions cleared');
	cmp_ok($s->{connections}, '<=', 1, 'after reset: connections counter cleared');
	my $l = $m->request(GET => $BE);
	is($l->{status}, 200, 'after reset: the fault is gone (list batches 200)');
	is_deeply($l->{json}, { batches => [], total => 0 }, 'after reset: no batches listed');
	$err->($m->request(GET => "$BE/$b1"), 404, 'not_found', undef, 'after reset: an old batch id is 404');
	$err->($m->request(GET => "$BE/$b1/items"), 404, 'not_found', undef, 'after reset: its items 404');
	my $f = $m->bulk_enrich([ { personId => 'flaky-reset' } ])->{json}{batchId};
	$m->wait_batch($f);
	my $it = $m->request(GET => "$BE/$f/items")->{json}{items}[0] // {};
	ok(!$it->{isSuccess} && ($it->{error}{code} // '') eq 'temporarily_unavailable',
		'after reset: flaky-reset is a first submission again (fails)');
	is($m->stats->{submissions}{'personId:flaky-reset'}, 1, 'after reset: submissions count from 1 again');
}
$m->stop;

# --- reset refills the rate buckets
$m = EnrichMock->start(tier3 => 1, seed => 1);
{
	my @codes = map { $m->bulk_enrich([ { personId => "rb-$_" } ])->{status} } 1 .. 4;
	ok((grep { $_ == 429 } @codes), 'tier3 1: bucket exhausted') or diag "@codes";
	$m->reset;
	is($m->bulk_enrich([ { personId => 'rb-after' } ])->{status}, 202, 'after reset: the bucket is full again');
	is($m->stats->{endpoints}{bulk_enrich}{429} // 0, 0, 'after reset: no 429 counted');
}
$m->stop;

# --- admin endpoints: loopback clients only
SKIP: {
	my ($ip) = grep { !/^127\./ && /^\d+\.\d+\.\d+\.\d+$/ } split ' ', (`hostname -I 2>/dev/null` // '');
	skip 'no non-loopback IPv4 address', 3 unless $ip;
	$m = EnrichMock->start(bind => '0.0.0.0', seed => 1);
	my $h = EnrichMock->ua(timeout => 10);
	my $base = 'http://' . $ip . ':' . $m->port;
	my $r = $h->get("$base/__mock/stats");
	is($r->{status}, 403, "GET /__mock/stats from $ip (not loopback) -> 403");
	$r = $h->post("$base/__mock/reset");
	is($r->{status}, 403, "POST /__mock/reset from $ip -> 403");
	$r = $h->get("$base$BE", { headers => { 'x-api-key' => $m->key_test } });
	is($r->{status}, 200, "vendor endpoints answer clients on $ip");
}

done_testing();
