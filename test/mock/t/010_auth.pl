# Authentication, environments, unknown paths and the order of those checks.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../../perl";
use Test::More;
use EnrichMock;

-x EnrichMock->bin_path or BAIL_OUT('mock binary not built (make -C test/mock)');

my $m = EnrichMock->start(key_live => [qw(live-1 live-2)], key_test => [qw(test-1 test-2)]);
my $err = \&EnrichMock::check_error;

# a batch and an item to address
my $r = $m->request(POST => '/v2/test/person/bulk-enrich', key => 'test-1',
	json => { requests => [ { personId => 'auth-p-1' } ] });
is($r->{status}, 202, 'bulk enrich with a test key') or diag $r->{content};
my $bid = $r->{json}{batchId} // 'none';
$m->wait_batch($bid);
$r = $m->request(GET => "/v2/test/person/bulk-enrich/$bid/items", key => 'test-1');
my $iid = $r->{json}{items}[0]{itemId} // 'none';

my $lr = $m->request(POST => '/v2/live/person/bulk-enrich', key => 'live-1',
	json => { requests => [ { personId => 'auth-p-2' } ] });
is($lr->{status}, 202, 'bulk enrich with a live key');
my $lbid = $lr->{json}{batchId} // 'none';
$m->wait_batch($lbid, env => 'live');
$r = $m->request(GET => "/v2/live/person/bulk-enrich/$lbid/items", key => 'live-1');
my $liid = $r->{json}{items}[0]{itemId} // 'none';

my %ids = (test => [ $bid, $iid ], live => [ $lbid, $liid ]);

sub endpoints
{
	my ($env) = @_;
	my ($b, $i) = @{ $ids{$env} };
	my $base = "/v2/$env/person/bulk-enrich";
	return (
		[ bulk_enrich => POST => $base, json => { requests => [ { personId => "auth-$env" } ] } ],
		[ list_batches => GET => $base ],
		[ batch_status => GET => "$base/$b" ],
		[ list_items => GET => "$base/$b/items" ],
		[ get_item => GET => "$base/$b/items/$i" ]);
}

my %good = (test => 'test-2', live => 'live-2');
my %other = (test => 'live-1', live => 'test-1');

for my $env (qw(test live))
{
	for my $ep (endpoints($env))
	{
		my ($name, $method, $path, @body) = @$ep;
		my $ok = $m->request($method, $path, key => $good{$env}, @body);
		like($ok->{status}, qr/^20[02]$/, "$env $name: second $env key accepted ($ok->{status})");

		$err->($m->request($method, $path, key => undef, @body), 401, 'unauthorized', undef,
			"$env $name: no x-api-key -> 401 unauthorized");
		$err->($m->request($method, $path, key => 'no-such-key', @body), 401, 'unauthorized', undef,
			"$env $name: unknown key -> 401 unauthorized");
		$err->($m->request($method, $path, key => '', @body), 401, 'unauthorized', undef,
			"$env $name: empty key -> 401 unauthorized");
		$err->($m->request($method, $path, key => $other{$env}, @body), 403, 'forbidden', undef,
			"$env $name: key of the other environment -> 403 forbidden");
	}
}

# header name is case-insensitive (HTTP)
is($m->request(GET => '/v2/test/person/bulk-enrich', key => undef,
		headers => { 'X-API-KEY' => 'test-1' })->{status}, 200, 'X-API-KEY (upper case) accepted');

# unknown environment: 404 not_found, before the key checks
for my $env (qw(prod LIVE Test dev))
{
	$err->($m->request(GET => "/v2/$env/person/bulk-enrich", key => 'test-1'), 404, 'not_found',
		undef, "unknown environment '$env' -> 404 not_found");
}
$err->($m->request(GET => '/v2/prod/person/bulk-enrich', key => undef), 404, 'not_found', undef,
	'unknown environment without a key -> 404 (environment checked before the key)');
$err->($m->request(POST => '/v2/prod/person/bulk-enrich', key => 'test-1',
		json => { requests => [ { personId => 'x' } ] }), 404, 'not_found', undef,
	'bulk enrich in an unknown environment -> 404');

# unknown paths: 404 not_found
for my $p ('/', '/v2/test/person', '/v2/test/person/nope', '/v3/test/person/bulk-enrich',
	"/v2/test/person/bulk-enrich/$bid/items/$iid/more", '/v2/test/company/bulk-enrich')
{
	$err->($m->request(GET => $p, key => 'test-1'), 404, 'not_found', undef, "unknown path $p -> 404");
}
$err->($m->request(GET => '/v2/test/person/nope', key => undef), 404, 'not_found', undef,
	'unknown path without a key -> 404 (path checked before the key)');

# every non-2xx has the error envelope, whatever the status (e.g. a method not served)
for my $meth (qw(DELETE PUT PATCH))
{
	my $r = $m->request($meth => '/v2/test/person/bulk-enrich', key => 'test-1', body => '');
	my $j = $r->{json};
	ok($r->{status} >= 400 && ref $j eq 'HASH' && join(',', sort keys %$j) eq 'error' && ref $j->{error} eq 'HASH'
		  && join(',', sort keys %{ $j->{error} }) eq 'code,message'
		  && EnrichMock::jtype($j->{error}{code}) eq 'string' && EnrichMock::jtype($j->{error}{message}) eq 'string',
		"$meth on bulk-enrich: $r->{status} with the error envelope") or diag $r->{content};
}

# order: key checks before validation
$err->($m->request(POST => '/v2/test/person/bulk-enrich', key => undef, body => '{not json'),
	401, 'unauthorized', undef, 'no key and malformed body -> 401, not 400');
$err->($m->request(POST => '/v2/test/person/bulk-enrich', key => 'live-1', body => '{not json'),
	403, 'forbidden', undef, 'other environment key and malformed body -> 403, not 400');
$err->($m->request(GET => '/v2/test/person/bulk-enrich?limit=0', key => 'nope'),
	401, 'unauthorized', undef, 'unknown key and bad query -> 401, not 400');

# admin endpoints need no key
is($m->request(GET => '/__mock/stats', key => undef)->{status}, 200, '/__mock/stats needs no key');

done_testing();
