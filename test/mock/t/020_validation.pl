# Bulk enrich request validation: fields, indexes, counts, sizes, malformed bodies, URLs.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../../perl";
use Test::More;
use EnrichMock;

-x EnrichMock->bin_path or BAIL_OUT('mock binary not built (make -C test/mock)');

my $m = EnrichMock->start(seed => 1);
my $BE = '/v2/test/person/bulk-enrich';
my $err = \&EnrichMock::check_error;
my $accepted = 0;    # 202s, to check that rejected requests create no batch

sub post_raw { $m->request(POST => $BE, body => $_[0]) }
sub post_json { $m->request(POST => $BE, json => $_[0]) }

# $bad at index $i among $n valid requests
sub with_at
{
	my ($i, $bad, $n) = @_;
	$n //= $i + 3;
	my @r = map { { personId => "valid-$_" } } 0 .. $n - 1;
	$r[$i] = $bad;
	return { requests => \@r };
}

sub accepted
{
	my ($r, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $ok = is($r->{status}, 202, $name);
	diag(substr($r->{content}, 0, 300)) unless $ok;
	$accepted++ if $r->{status} == 202;
	return $ok;
}

# --- success shape
{
	my $r = post_json({ requests => [ { personId => 'shape-1' } ] });
	accepted($r, 'one request -> 202');
	is_deeply([ sort keys %{ $r->{json} // {} } ], ['batchId'], '202 body is {"batchId": ...}');
	is(EnrichMock::jtype($r->{json}{batchId}), 'string', 'batchId is a string');
	like($r->{json}{batchId}, qr/^bat_\d{8}_[0-9a-f]{8}$/, 'batchId is bat_<8 digits>_<8 hex>');
	like($r->{headers}{'content-type'} // '', qr{^application/json}i, '202 content-type json');
}

# --- the index and the field are named
$err->(post_json(with_at(17, { professionalSocialMediaUrl => '' }, 20)), 400, 'invalid_request',
	qr/requests\[17\]\.professionalSocialMediaUrl/, 'empty URL at index 17 -> 400 naming requests[17].professionalSocialMediaUrl');

# --- each identifier field
my %long_ok = (
	pdlId => 'd' x 2048,
	personId => 'p' x 2048,
	professionalSocialMediaUrl => 'linkedin.com/in/' . ('a' x (2048 - 16)));
my %long_bad = (
	pdlId => 'd' x 2049,
	personId => 'p' x 2049,
	professionalSocialMediaUrl => 'linkedin.com/in/' . ('a' x (2049 - 16)));
for my $f (qw(pdlId personId professionalSocialMediaUrl))
{
	my $re = qr/requests\[3\]\.\Q$f\E/;
	accepted(post_json(with_at(3, { $f => $f eq 'professionalSocialMediaUrl' ? 'linkedin.com/in/only-url' : "only-$f" })),
		"$f alone is a valid request");
	$err->(post_json(with_at(3, { $f => '' })), 400, 'invalid_request', $re, "$f empty string -> 400 naming requests[3].$f");
	accepted(post_json(with_at(3, { $f => $long_ok{$f} })), "$f of exactly 2048 bytes -> 202");
	$err->(post_json(with_at(3, { $f => $long_bad{$f} })), 400, 'invalid_request', $re, "$f of 2049 bytes -> 400");
	for my $case ([ number => 42 ], [ true => JSON::PP::true() ], [ array => ['x'] ], [ object => { a => 'x' } ],
		[ null => undef ])
	{
		my ($tn, $v) = @$case;
		my $req = { $f => $v };
		$req->{personId} = 'other-id' unless $f eq 'personId';    # another valid identifier beside it
		$err->(post_json(with_at(3, $req)), 400, 'invalid_request', $re, "$f as $tn -> 400 naming requests[3].$f");
	}
}
# bytes, not characters: 1024 x U+00E9 = 2048 bytes ok, 1025 x = 2050 bytes (1025 characters) too long
for my $f (qw(pdlId personId))
{
	accepted(post_json(with_at(1, { $f => "\x{e9}" x 1024 })), "$f of 1024 'é' (2048 UTF-8 bytes) -> 202");
	$err->(post_json(with_at(1, { $f => "\x{e9}" x 1025 })), 400, 'invalid_request', qr/requests\[1\]\.\Q$f\E/,
		"$f of 1025 'é' (2050 bytes, 1025 characters) -> 400: the limit is in bytes");
}

# --- no identifier
$err->(post_json(with_at(2, {})), 400, 'invalid_request', qr/requests\[2\]/, 'empty request object -> 400 naming requests[2]');
$err->(post_json(with_at(2, { metadata => { a => 1 } })), 400, 'invalid_request', qr/requests\[2\]/,
	'metadata only, no identifier -> 400 naming requests[2]');

# --- a request that is not an object
for my $case ([ string => 'linkedin.com/in/x' ], [ number => 7 ], [ array => [ { personId => 'x' } ] ], [ null => undef ])
{
	$err->(post_json(with_at(2, $case->[1])), 400, 'invalid_request', qr/requests\[2\]/,
		"request element as $case->[0] -> 400 naming requests[2]");
}

# --- unknown fields
$err->(post_json({ requests => [ { personId => 'x' } ], callbackUrl => 'http://x' }), 400, 'invalid_request',
	qr/callbackUrl/, 'unknown top-level field -> 400 naming it');
$err->(post_json(with_at(4, { personId => 'x', fullName => 'Jane' })), 400, 'invalid_request',
	qr/requests\[4\].*fullName|fullName.*requests\[4\]/, 'unknown field in a request -> 400 naming requests[4] and the field');
$err->(post_json(with_at(4, { PersonId => 'x' })), 400, 'invalid_request', qr/requests\[4\]/,
	'field names are case-sensitive: PersonId is unknown -> 400');

# --- metadata
for my $case ([ string => 'meta' ], [ number => 1 ], [ array => [ 1, 2 ] ], [ true => JSON::PP::true() ])
{
	$err->(post_json(with_at(1, { personId => 'm', metadata => $case->[1] })), 400, 'invalid_request',
		qr/requests\[1\]\.metadata/, "metadata as $case->[0] -> 400 naming requests[1].metadata");
}
accepted(post_json(with_at(1, { personId => 'm', metadata => undef })), 'metadata null (nullable in openapi.yaml) -> 202');
accepted(post_json(with_at(1, { personId => 'm', metadata => { k => 'x' x 3900 } })),
	'metadata of ~3.9 KiB serialized -> 202');
$err->(post_json(with_at(1, { personId => 'm', metadata => { k => 'x' x 4200 } })), 400, 'invalid_request',
	qr/requests\[1\]\.metadata/, 'metadata over 4 KiB serialized -> 400 naming requests[1].metadata');
{
	# the contract bounds metadata by size only (4 KiB serialized), not by nesting depth
	my $deep = {};
	my $cur = $deep;
	($cur = $cur->{a} = {}) for 1 .. 99;
	my $len = length(EnrichMock->json_encode($deep));
	accepted(post_json(with_at(1, { personId => 'm-deep', metadata => $deep })),
		"metadata nested 100 levels deep ($len bytes, under 4 KiB) -> 202");
}
$err->(post_json(with_at(1, { personId => 'm', metadata => { map { ("key$_" => 'v' x 40) } 1 .. 100 } })), 400,
	'invalid_request', qr/requests\[1\]\.metadata/, 'metadata of many small keys over 4 KiB -> 400');

# --- the number of requests
$err->(post_json({ requests => [] }), 400, 'invalid_request', qr/requests/, '0 requests -> 400');
$err->(post_json({}), 400, 'invalid_request', qr/requests/, 'no requests field -> 400');
$err->(post_json({ requests => undef }), 400, 'invalid_request', qr/requests/, 'requests null -> 400');
$err->(post_json({ requests => { personId => 'x' } }), 400, 'invalid_request', qr/requests/, 'requests an object -> 400');
$err->(post_json([ { personId => 'x' } ]), 400, 'invalid_request', undef, 'body an array -> 400');
accepted(post_json({ requests => [ { personId => 'count-1' } ] }), '1 request -> 202');
{
	my $r = post_json({ requests => [ map { { personId => "count-1000-$_" } } 1 .. 1000 ] });
	accepted($r, '1000 requests -> 202');
	my $s = $m->wait_batch($r->{json}{batchId} // 'none', status => [qw(pending processing completed failed)]);
	is($s && $s->{totalCount}, 1000, 'the 1000-request batch has totalCount 1000');
}
$err->(post_json({ requests => [ map { { personId => "count-1001-$_" } } 1 .. 1001 ] }), 400, 'invalid_request',
	qr/requests/, '1001 requests -> 400');

# --- body size: 4 MiB is the limit
{
	my $head = '{"requests":[{"personId":"size-ok"}]';
	my $n = 4 * 1024 * 1024;
	my $exact = $head . (' ' x ($n - length($head) - 1)) . '}';
	is(length $exact, $n, 'built a body of exactly 4 MiB');
	accepted(post_raw($exact), 'body of exactly 4 MiB (valid JSON, whitespace) -> 202');
	my $over = $head . (' ' x ($n - length($head))) . '}';
	is(length $over, $n + 1, 'built a body of 4 MiB + 1');
	# The mock answers 413 as soon as it knows the size and closes without reading the rest;
	# HTTP::Tiny only reads after sending everything (and then sees a broken pipe), so
	# these go through curl, which, like libcurl in the extension, reads an early answer.
	$err->($m->request(POST => $BE, body => $over, via => 'curl'), 413, 'payload_too_large', undef,
		'body of 4 MiB + 1 byte -> 413 payload_too_large');
	# a realistic oversized body that is also invalid: 413 comes before validation
	my $big = { requests => [ map { { personId => "big-$_", metadata => { k => 'x' x 4300 } } } 1 .. 1000 ] };
	$err->($m->request(POST => $BE, json => $big, via => 'curl'), 413, 'payload_too_large', undef,
		'1000 requests with 4.3 KiB metadata (~4.3 MB) -> 413, not 400');
	$err->($m->request(POST => $BE, body => $over, via => 'curl', key => undef), 401, 'unauthorized', undef,
		'oversized body without a key -> 401 (key checked before size)');
	is($m->request(GET => $BE)->{status}, 200, 'the server still answers after a 413');
}

# --- malformed bodies
for my $case ([ 'truncated JSON', '{"requests": [' ], [ 'not JSON', 'hello' ], [ 'empty body', '' ],
	[ 'trailing garbage', '{"requests":[{"personId":"x"}]} x' ], [ 'single quotes', "{'requests':[]}" ],
	[ 'invalid UTF-8', qq({"requests":[{"personId":"bad-\xff\xfe"}]}) ])
{
	$err->(post_raw($case->[1]), 400, 'invalid_request', undef, "malformed body ($case->[0]) -> 400 invalid_request");
}

# --- LinkedIn URL rules
$err->(post_json(with_at(5, { professionalSocialMediaUrl => 'https://www.linkedin.com/in/some-invalid-person' }, 8)),
	400, 'invalid_request', qr/requests\[5\]\.professionalSocialMediaUrl/,
	"'invalid' in a URL -> the whole bulk request is a 400 naming requests[5]");
$err->(post_json(with_at(0, { professionalSocialMediaUrl => 'linkedin.com/in/INVALID-caps' }, 2)),
	400, 'invalid_request', qr/requests\[0\]\.professionalSocialMediaUrl/, "'INVALID' (case-insensitive) -> 400 naming requests[0]");
accepted(post_json(with_at(0, { professionalSocialMediaUrl => 'https://www.linkedin.com/in/jane-q?ref=invalid#invalid' }, 2)),
	"'invalid' only in the query/fragment (dropped by normalization) -> 202");
accepted(post_json(with_at(0, { personId => 'person-invalid-1' }, 2)),
	"'invalid' in a personId is not a 400 (item failure instead)");

for my $url ('https://example.com/in/jane-doe', 'https://twitter.com/janedoe', 'jane-doe',
	'https://www.linkedin.com/company/acme', 'linkedin.com/feed/', 'https://linkedin.com.evil.example/in/jane',
	'https://notlinkedin.com/in/jane', 'linkedin.com/in/')
{
	$err->(post_json(with_at(3, { professionalSocialMediaUrl => $url })), 400, 'invalid_request',
		qr/^requests\[3\]\.professionalSocialMediaUrl: not a LinkedIn profile URL$/, "non-profile URL '$url' -> 400");
}

# --- unknown query parameter on bulk enrich
$err->($m->request(POST => "$BE?dryRun=1", json => { requests => [ { personId => 'q-1' } ] }), 400, 'invalid_request',
	qr/dryRun/, 'bulk enrich with an unknown query parameter -> 400');

# --- rejected requests create no batch
is($m->stats->{batches}, $accepted, "only the $accepted accepted requests created batches");
is($m->request(GET => $BE)->{json}{total}, $accepted, 'list batches total matches');

done_testing();
