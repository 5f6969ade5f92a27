# README "Details the implementation pins down": one group of tests per bullet.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../../perl";
use Test::More;
use HTTP::Tiny;
use File::Temp ();
use POSIX ();
use Time::HiRes qw(time sleep);
use Time::Local qw(timegm);
use EnrichMock;

-x EnrichMock->bin_path or BAIL_OUT('mock binary not built (make -C test/mock)');

my $BE = '/v2/test/person/bulk-enrich';
my $LBE = '/v2/live/person/bulk-enrich';
my $err = \&EnrichMock::check_error;
my $NAS = 'must be a non-empty string of at most 2048 bytes';
my $META = 'must be a JSON object of at most 4096 bytes serialized, or null';

sub ts
{
	my ($s) = @_;
	return undef unless defined $s && $s =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z$/;
	return timegm($6, $5, $4, $3, $2 - 1, $1);
}
sub enc { my $s = shift; $s =~ s/([^A-Za-z0-9\-._~])/sprintf('%%%02X', ord $1)/ge; $s }
sub is_5xx { ($_[0] // 0) =~ /^50[0234]$/ }

my $m = EnrichMock->start(seed => 3, key_test => [qw(test-key test-key-2)]);
sub items_of
{
	my ($mm, $reqs, $env) = @_;
	$env //= 'test';
	my $id = $mm->bulk_enrich($reqs, env => $env)->{json}{batchId} // 'none';
	$mm->wait_batch($id, env => $env);
	return ($id, $mm->request(GET => "/v2/$env/person/bulk-enrich/$id/items?limit=50")->{json}{items} // []);
}

# ---------------------------------------------------------------- HTTP
{
	my $ka = EnrichMock->ua(keep_alive => 1);
	my $conns = sub { EnrichMock::json_decode($ka->get($m->url . '/__mock/stats')->{content})->{connections} };
	my $c0 = $conns->();
	my $r = $ka->request(PUT => $m->url . $BE, { headers => { 'x-api-key' => 'test-key', 'content-type' => 'application/json' },
		content => '{"requests":[{"personId":"x"}]}' });
	is($r->{status}, 405, 'PUT with a body on a known path: 405');
	is($conns->(), $c0, 'keep-alive survives a 405 with a body');

	# chunked bodies: read to the end, over 4 MiB -> 413, else fine
	my $chunked = sub {
		my ($total) = @_;
		my $head = '{"requests":[{"personId":"chunked"}]';
		my @parts = ($head, (' ' x ($total - length($head) - 1)) . '}');
		return sub { shift @parts };
	};
	my $h = { 'x-api-key' => 'test-key', 'content-type' => 'application/json' };
	$r = EnrichMock->ua->request(POST => $m->url . $BE, { headers => $h, content => $chunked->(4 * 1024 * 1024 + 10) });
	$err->({ %$r, json => EnrichMock::json_decode($r->{content}) }, 413, 'payload_too_large', undef,
		'chunked body over 4 MiB: read to its end and answered 413');
	$r = EnrichMock->ua->request(POST => $m->url . $BE, { headers => $h, content => $chunked->(100_000) });
	is($r->{status}, 202, 'chunked body under 4 MiB: 202');

	$r = $m->request(POST => $BE, body => '{"requests":[{"personId":"ctype"}]}', headers => { 'content-type' => 'text/plain' });
	is($r->{status}, 202, 'request Content-Type is not checked (text/plain -> 202)');

	my @resp = (
		[ '202 bulk enrich' => $m->request(POST => $BE, json => { requests => [ { personId => 'ct' } ] }) ],
		[ '200 list' => $m->request(GET => $BE) ],
		[ '404 other' => $m->request(GET => '/nope') ],
		[ '405' => $m->request(DELETE => $BE) ],
		[ '401' => $m->request(GET => $BE, key => undef) ],
		[ 'admin stats' => $m->request(GET => '/__mock/stats') ],
		[ 'admin faults' => $m->request(GET => '/__mock/faults') ],
		[ 'admin person' => $m->request(GET => '/__mock/person?personId=p') ]);
	for (@resp)
	{
		like($_->[1]{headers}{'content-type'} // '', qr{^application/json}i, "every response is application/json: $_->[0]");
	}
}

# ---------------------------------------------------------------- paths
{
	my ($id, $items) = items_of($m, [ { personId => 'path-1' } ]);
	for my $p ("$BE/", "$BE/$id/", "$BE/$id/items/", "/v2/test/person//bulk-enrich", "$BE//items", "$BE/$id//$items->[0]{itemId}")
	{
		$err->($m->request(GET => $p), 404, 'not_found', undef, "trailing slash or empty segment: $p -> 404");
	}
	is($m->request(GET => "$BE/$id/items/" . ($items->[0]{itemId} // 'x'))->{status}, 200, '(the same path without the slash is fine)');

	my $s = EnrichMock->start(seed => 1);
	$s->request(GET => '/v2/test/nope');
	$s->request(GET => '/v2/prod/person/bulk-enrich');
	$s->request(DELETE => $BE);
	is_deeply($s->stats->{endpoints}, { other => { 404 => 2, 405 => 1 } },
		'unknown paths, unknown environments and wrong methods are counted under other');
	my $r = $s->request(PATCH => "$BE/bat_00000001_00000000");
	$err->($r, 405, 'invalid_request', undef, 'wrong method on a known path: 405 invalid_request');
	ok(defined $r->{headers}{allow} && $r->{headers}{allow} =~ /GET/, 'with an Allow header (' . ($r->{headers}{allow} // 'none') . ')');
	$r = $s->request(POST => "$BE/bat_00000001_00000000/items", key => undef);
	is($r->{status}, 405, 'wrong method is checked before the key (405, not 401)');
	$s->stop;
}

# ---------------------------------------------------------------- keys
{
	my $s = EnrichMock->start(key_live => [], key_test => ['only-test']);
	is($s->request(GET => $LBE, key => 'mock-live-key')->{status}, 401, '--key-test alone: mock-live-key is not a default');
	is($s->request(GET => $LBE, key => 'only-test')->{status}, 403, '--key-test alone: the test key is forbidden on live');
	$s->stop;
	$err->($m->request(GET => $BE, key => ''), 401, 'unauthorized', undef, 'an empty x-api-key is a missing key');
}

# ---------------------------------------------------------------- batches per environment
{
	my ($tid, $titems) = items_of($m, [ { personId => 'env-1' } ]);
	my ($lid) = items_of($m, [ { personId => 'env-2' } ], 'live');
	$err->($m->request(GET => "$LBE/$tid"), 404, 'not_found', undef, 'a test batch is a 404 in live');
	$err->($m->request(GET => "$LBE/$tid/items"), 404, 'not_found', undef, 'its items are a 404 in live');
	$err->($m->request(GET => "$LBE/$tid/items/$titems->[0]{itemId}"), 404, 'not_found', undef, 'its item is a 404 in live');
	$err->($m->request(GET => "$BE/$lid"), 404, 'not_found', undef, 'a live batch is a 404 in test');
	my $live = $m->request(GET => $LBE)->{json};
	ok(!(grep { $_->{batchId} eq $tid } @{ $live->{batches} // [] }), 'a test batch is not listed in live');
	ok((grep { $_->{batchId} eq $lid } @{ $live->{batches} // [] }), 'the live batch is listed in live');
	is($live->{total}, 1, 'live total counts live batches only');
	is($m->request(GET => "$BE/$tid", key => 'test-key-2')->{status}, 200, 'batches are shared by all keys of the environment');
}

# ---------------------------------------------------------------- ids
{
	my $s = EnrichMock->start(seed => 1);
	my ($id, $items) = items_of($s, [ { personId => 'id-1' }, { personId => 'id-2' } ]);
	like($id, qr/^bat_00000001_[0-9a-f]{8}$/, 'the batch sequence starts at 1');
	is_deeply([ map { $_->{itemId} } @$items ], [ 'itm_00000001_0000000', 'itm_00000001_0000001' ],
		'item ids: itm_<8-digit batch sequence>_<7-digit 0-based request index>');
	$s->reset;
	my $id2 = $s->bulk_enrich([ { personId => 'id-3' } ])->{json}{batchId} // '';
	like($id2, qr/^bat_00000002_/, 'the sequence is not reset by /__mock/reset (ids never reused)');
	$s->stop;
}

# ---------------------------------------------------------------- fetch one item not yet processed
{
	my $s = EnrichMock->start(seed => 1, start_delay_ms => 800);
	my $id = $s->bulk_enrich([ { personId => 'later' } ])->{json}{batchId} // 'none';
	my ($seq) = $id =~ /^bat_(\d{8})_/;
	my $iid = sprintf('itm_%s_0000000', $seq // '00000000');
	$err->($s->request(GET => "$BE/$id/items/$iid"), 404, 'not_found', undef, 'an item not yet processed is a 404');
	$s->wait_batch($id);
	is($s->request(GET => "$BE/$id/items/$iid")->{status}, 200, 'the same item once processed: 200');
	$s->stop;
}

# ---------------------------------------------------------------- validation details
{
	my $post = sub { $m->request(POST => $BE, json => { requests => [@_] }) };
	my $ok = { personId => 'ok' };
	$err->($post->($ok, $ok, { personId => '' }, $ok, $ok, { pdlId => 5 }), 400, 'invalid_request', qr/^requests\[2\]\.personId: /,
		'requests are checked in order: the first error is reported');
	$err->($post->({ personId => 5 }), 400, 'invalid_request', qr/^requests\[0\]\.personId: \Q$NAS\E$/,
		'a type error is reported before "at least one identifier"');
	$err->($post->({ professionalSocialMediaUrl => 'https://example.com/x', pdlId => 5 }), 400, 'invalid_request',
		qr/^requests\[0\]\.pdlId: /, 'the URL is checked last (a pdlId type error wins)');
	for my $f (qw(pdlId personId professionalSocialMediaUrl))
	{
		$err->($post->($ok, { personId => 'x', $f => undef }), 400, 'invalid_request', qr/^requests\[1\]\.\Q$f\E: \Q$NAS\E$/,
			"$f null: requests[1].$f: $NAS");
	}
	$err->($m->request(POST => $BE, body => '{"requests":[{"personId":"a\u0000b"}]}'), 400, 'invalid_request',
		qr/^requests\[0\]\.personId: /, 'a \u0000 in an identifier -> 400');
	$err->($post->($ok, { personId => 'm', metadata => 'x' }), 400, 'invalid_request', qr/^requests\[1\]\.metadata: \Q$META\E$/,
		"metadata of the wrong type: requests[1].metadata: $META");
	$err->($post->({ personId => 'm', metadata => { k => 'x' x 4200 } }), 400, 'invalid_request',
		qr/^requests\[0\]\.metadata: \Q$META\E$/, 'metadata too big: the same message');
	$err->($m->request(POST => $BE, body => '{"requests": ['), 400, 'invalid_request', qr/^body: malformed JSON: .+ at byte \d+$/,
		'not JSON: body: malformed JSON: <what> at byte <n>');
	$err->($m->request(POST => $BE, body => qq({"requests":[{"personId":"\xff"}]})), 400, 'invalid_request',
		qr/^body: malformed JSON: .+ at byte \d+$/, 'invalid UTF-8: malformed JSON');
	$err->($m->request(POST => $BE, body => ''), 400, 'invalid_request', qr/^body: must be a JSON object, the body is empty$/,
		'empty body: body: must be a JSON object, the body is empty');
	$err->($m->request(POST => $BE, body => '[1]'), 400, 'invalid_request', qr/^body: must be a JSON object$/,
		'a body that is not an object: body: must be a JSON object');
	# nesting: limited to 2100 levels, so metadata is bounded by size only
	my $deep = '{"a":' . ('[' x 1000) . (']' x 1000) . '}';
	my $r = $m->request(POST => $BE, body => qq({"requests":[{"personId":"deep","metadata":$deep}]}));
	is($r->{status}, 202, 'metadata with 1000 nested arrays (2 KB) -> 202');
	my $id = $r->{json}{batchId} // 'none';
	$m->wait_batch($id);
	my $back = $m->request(GET => "$BE/$id/items")->{json}{items}[0]{metadata};
	is(EnrichMock->json_encode($back), $deep, 'and echoed verbatim');
	$err->($m->request(POST => $BE, body => '{"requests":[{"personId":"x","metadata":{"a":' . ('[' x 2200) . (']' x 2200) . '}}]}'),
		400, 'invalid_request', qr/^body: malformed JSON: /, 'nesting beyond 2100 levels: malformed JSON');

	$err->($m->request(GET => "$BE?limit=5&limit=6"), 400, 'invalid_request', qr/^limit: given more than once$/,
		'a query parameter given twice: <name>: given more than once');
	$err->($m->request(GET => "$BE/$id/items?cursor="), 400, 'invalid_request', qr/^cursor: unknown cursor$/,
		'an empty cursor is an unknown cursor');
	is($m->request(GET => "$BE?offset=2147483647")->{status}, 200, 'offset 2147483647 is allowed');
	$err->($m->request(GET => "$BE?offset=2147483648"), 400, 'invalid_request', qr/^offset: must be a non-negative integer$/,
		'offset 2147483648: offset: must be a non-negative integer');
	is($m->request(GET => "$BE?createdAfter=2024-02-29")->{status}, 200, 'createdAfter on a leap day (2024-02-29): 200');
}

# ---------------------------------------------------------------- metadata echo
{
	my $meta = '{"z":1,"a":"x/y","n":1.50,"e":1e2}';
	my $r = $m->request(POST => $BE, body => qq({"requests":[{"personId":"echo","metadata":$meta}]}));
	my $id = $r->{json}{batchId} // 'none';
	$m->wait_batch($id);
	my $raw = $m->request(GET => "$BE/$id/items")->{content};
	like($raw, qr{"metadata":\s*\{\s*"z":\s*1,\s*"a":\s*"x/y",\s*"n":\s*1\.50,\s*"e":\s*1e2\s*\}},
		'metadata re-serialized with key order and number text kept, / not escaped');
}

# ---------------------------------------------------------------- URL normalization
{
	my $url = sub { $m->request(POST => $BE, json => { requests => [ { personId => 'a' }, { professionalSocialMediaUrl => $_[0] } ] }) };
	my $BAD = qr/^requests\[1\]\.professionalSocialMediaUrl: not a LinkedIn profile URL$/;
	for my $u ('ftp://linkedin.com/in/jane', 'a.b.linkedin.com/in/jane', 'https://www.linkedin.com:443/in/jane',
		'https://user@linkedin.com/in/jane', 'https://www.linkedin.com/in/jane/details', 'linkedin.com/in/jane//',
		'linkedin.com/in/jane doe', "linkedin.com/in/jane\tdoe", 'linkedin.com/in/some-invalid-one')
	{
		$err->($url->($u), 400, 'invalid_request', $BAD, "URL '$u' -> 400 not a LinkedIn profile URL");
	}
	for my $u ('linkedin.com/in/jane-x', 'http://linkedin.com/in/jane-x/', 'https://m.linkedin.com/in/jane-x')
	{
		is($url->($u)->{status}, 202, "URL '$u' accepted");
	}
	is($url->('linkedin.com/in/Jos%C3%A9-X')->{status}, 202, 'a percent-escaped URL is accepted');
	is($m->stats->{submissions}{'linkedin.com/in/jos%c3%a9-x'}, 1, 'percent-escapes kept as they are, lower-cased');
}

# ---------------------------------------------------------------- outcomes
{
	my (undef, $items) = items_of($m, [ { personId => 'w-invalid-notfound-flaky' }, { personId => 'w-notfound-flaky' },
		{ personId => 'w-flaky-dup' }, { personId => 'w-flaky-dup' } ]);
	is($items->[0]{error}{code}, 'invalid_identifier', 'invalid wins over notfound and flaky');
	is($items->[1]{error}{code}, 'not_found', 'notfound wins over flaky');
	is($items->[2]{error}{code}, 'temporarily_unavailable', 'the same flaky identifier twice in one batch: first fails');
	ok($items->[3]{isSuccess}, '... and the second succeeds');
	is($items->[0]{error}{message}, 'the identifier is not valid', 'invalid_identifier message');
	is($items->[1]{error}{message}, 'no person matches this identifier', 'not_found message');
	is($items->[2]{error}{message}, 'the person source is temporarily unavailable, retry later', 'temporarily_unavailable message');
}

# ---------------------------------------------------------------- failed batches
{
	my $s = EnrichMock->start(seed => 1, start_delay_ms => 1000, faults => { batch_fail_rate => 1 });
	my $id = $s->bulk_enrich([ { personId => 'fb-1' }, { personId => 'fb-flaky' }, { personId => 'fb-3' } ])->{json}{batchId} // 'none';
	is(($s->request(GET => "$BE/$id")->{json} // {})->{status}, 'pending', 'a failing batch is pending for the start delay');
	my $st = $s->wait_batch($id) // {};
	is($st->{status}, 'failed', 'then failed');
	is(ts($st->{completedAt}) - ts($st->{createdAt}), 1, 'completedAt = createdAt + start delay (1 s)');
	is_deeply([ @$st{qw(totalCount processedCount successCount failureCount)} ], [ 3, 0, 0, 0 ],
		'totalCount the number of requests, other counts 0');
	is_deeply($s->request(GET => "$BE/$id/items")->{json}, { items => [], cursor => undef }, 'items: {"items": [], "cursor": null}');
	is_deeply($s->stats->{submissions}, {}, 'a failed batch charges nothing (no submissions)');
	$s->set_faults({});
	my $id2 = $s->bulk_enrich([ { personId => 'fb-flaky' } ])->{json}{batchId} // 'none';
	$s->wait_batch($id2);
	is(($s->request(GET => "$BE/$id2/items")->{json}{items}[0]{error} // {})->{code}, 'temporarily_unavailable',
		'a flaky identifier of a failed batch still fails on its next submission');
	$s->stop;
}

# ---------------------------------------------------------------- completedAt, cursor
{
	my ($id) = items_of($m, [ { personId => 'cat-1' } ]);
	my $st = $m->request(GET => "$BE/$id")->{json};
	is($st->{completedAt}, $st->{createdAt}, 'no delay, all at once: completedAt = createdAt');

	my $s = EnrichMock->start(seed => 1, start_delay_ms => 250, items_per_second => 4);
	$id = $s->bulk_enrich([ map { { personId => "cur-$_" } } 1 .. 3 ])->{json}{batchId} // 'none';
	my $p = $s->request(GET => "$BE/$id/items")->{json};
	like($p->{cursor} // '', qr/^[0-9a-f]{24}$/, 'a cursor is 24 lower-case hex digits');
	my $p2 = $s->request(GET => "$BE/$id/items?cursor=$p->{cursor}")->{json} // {};
	is_deeply($p2, { items => [], cursor => $p->{cursor} }, 'at the end of a batch still processing: no items and the same cursor');
	$st = $s->wait_batch($id);
	# 250 ms + ceil(3 x 1000 / 4) = 1000 ms after the exact creation time, truncated
	is(ts($st->{completedAt}) - ts($st->{createdAt}), 1, 'completedAt = createdAt + start delay + processing time (1 s)');
	$s->stop;
}

# ---------------------------------------------------------------- rate limit details
{
	my $s = EnrichMock->start(seed => 1, tier3 => 1);
	my $post = sub { $s->request(POST => $BE, json => { requests => [ { personId => 'rl' } ] }, @_)->{status} };
	my @pre = ((map { $post->(key => undef) } 1 .. 5), (map { $post->(key => $s->key_live) } 1 .. 5));
	$s->set_faults({ rate_5xx => 1 });
	push @pre, map { $post->() } 1 .. 5;
	$s->set_faults({});
	is_deeply(\@pre, [ (401) x 5, (403) x 5, map { is_5xx($_) ? $_ : 'not 5xx' } @pre[ 10 .. 14 ] ], '401, 403 and faulted requests');
	is_deeply([ map { $post->() } 1 .. 3 ], [ 202, 202, 429 ], 'they took no token: the full burst of 2 is still there');
	# refused requests take no token: hammering, a token still comes back within ~1 s
	my ($t0, $got) = (time, 0);
	while (time - $t0 < 2.5) { if ($post->() == 202) { $got = 1; last; } sleep 0.05; }
	ok($got, sprintf('a request refused by the rate limit takes no token (202 after %.2f s of retries)', time - $t0));
	$s->stop;
}

# ---------------------------------------------------------------- fault details
{
	my $s = EnrichMock->start(seed => 5);
	my $f = sub { my $r = $s->set_faults($_[0]); is($r->{status}, 200, 'faults ' . EnrichMock->json_encode($_[0])); $r };

	$f->({ rate_malformed => 1 });
	$err->($s->request(GET => "$BE/bat_99999999_deadbeef"), 404, 'not_found', undef, 'rate_malformed applies only to 2xx: a 404 is intact');
	my $r = $s->request(POST => $BE, json => { requests => [ { personId => 'mal' } ] });
	is($r->{status}, 200, 'rate_malformed on bulk enrich: 200');
	ok(length($r->{content}) > 0 && length($r->{content}) < 36 && '{"batchId":"bat_00000001_00000000"}' =~ /^\Q$r->{content}\E/
		  || $r->{content} =~ /^\{"batchId":"bat_\d{0,8}(_[0-9a-f]{0,8})?$/,
		"the body is cut to its first half ($r->{content})");
	$f->({});
	is($s->request(GET => $BE)->{json}{total}, 1, 'the malformed bulk enrich created its batch');

	$f->({ rate_drop_after => 1 });
	is($s->request(POST => $BE, body => '{broken')->{status}, 599, 'rate_drop_after applies whatever the answer (a 400 is dropped too)');
	$f->({ extra_field => JSON::PP::true() });
	for my $c ([ 401 => $s->request(GET => $BE, key => undef) ], [ 404 => $s->request(GET => "$BE/bat_99999999_deadbeef") ])
	{
		my $j = $c->[1]{json} // {};
		ok(exists $j->{_mockExtra} && exists(($j->{error} // {})->{_mockExtra}), "extra_field on a vendor $c->[0]: envelope and error have _mockExtra");
	}
	unlike($s->request(GET => '/v2/test/nope')->{content}, qr/_mockExtra/, 'extra_field never on other (unknown path)');
	unlike($s->request(GET => '/__mock/stats')->{content}, qr/_mockExtra/, 'extra_field never on /__mock/*');

	$f->({ retry_after => 86400, latency_ms => 3600000, endpoints => ['get_item'] });
	$err->($s->set_faults({ retry_after => 86401 }), 400, 'invalid_request', undef, 'retry_after 86401 -> 400');
	$err->($s->set_faults({ latency_ms => 3600001 }), 400, 'invalid_request', undef, 'latency_ms 3600001 -> 400');

	my $set = { rate_5xx => 0.25, extra_field => JSON::PP::false(), endpoints => [ 'list_items', 'get_item' ] };
	$r = $f->($set);
	is_deeply($r->{json}, $set, 'POST /__mock/faults answers with the setting');
	is_deeply($s->faults, $set, 'GET /__mock/faults shows it exactly as set (nothing filled in)');
	$f->({});
	is_deeply($s->faults, {}, 'GET /__mock/faults after {}: {}');

	# reset clears faults to {} and reseeds the generator with --seed
	$s->stop;
	$s = EnrichMock->start(seed => 5);
	my $seq = sub { [ map { $s->request(GET => $BE)->{status} } 1 .. 30 ] };
	$s->set_faults({ rate_5xx => 0.5 });
	my $a = $seq->();
	ok((grep { $_ == 200 } @$a) && (grep { is_5xx($_) } @$a), 'a mixed sequence');
	is_deeply($s->reset->{json}, { reset => JSON::PP::true() }, 'POST /__mock/reset answers {"reset": true}');
	is_deeply($s->faults, {}, 'reset clears the faults to {}');
	$s->set_faults({ rate_5xx => 0.5 });
	is_deeply($seq->(), $a, 'after a reset the same faults are drawn as after a start (reseeded)');
	$s->reset;
	$s->set_faults({ rate_5xx => 0.5, rate_drop => 0, rate_429 => 0 });
	is_deeply($seq->(), $a, 'a probability of 0 draws no random number (same sequence)');
	$s->stop;
}

# ---------------------------------------------------------------- stats
{
	my $s = EnrichMock->start(seed => 1);
	$s->request(GET => $BE);
	$s->request(GET => '/__mock/stats') for 1 .. 3;
	$s->set_faults({});
	my $st = $s->stats;
	is($st->{requests_total}, 1, '/__mock/* requests are not counted in requests_total');
	is_deeply($st->{endpoints}, { list_batches => { 200 => 1 } }, 'only counted endpoints/statuses appear');
	$s->reset;
	$st = $s->stats;
	is_deeply($st->{endpoints}, {}, '"endpoints": {} after a reset');
	cmp_ok($st->{connections}, '<=', 1, 'connections counted since the reset');
	$s->stop;
}

# ---------------------------------------------------------------- admin endpoints
{
	$err->($m->request(DELETE => '/__mock/stats'), 405, 'invalid_request', undef, 'admin: wrong method -> 405');
	$err->($m->request(GET => '/__mock/reset'), 405, 'invalid_request', undef, 'admin: GET /__mock/reset -> 405');
	$err->($m->request(GET => '/__mock/nope'), 404, 'not_found', undef, 'admin: unknown path -> 404');
	$err->($m->request(GET => '/__mock/stats?x=1'), 400, 'invalid_request', undef, 'admin: unknown query parameter -> 400');
	my $p = $m->person(personId => 'pp-1', professionalSocialMediaUrl => 'linkedin.com/in/pp-url', pdlId => 'pp-d');
	is($p->{identifier}, 'linkedin.com/in/pp-url', '/__mock/person: URL first');
	is($m->person(personId => 'pp-1', pdlId => 'pp-d')->{identifier}, 'personId:pp-1', '/__mock/person: then personId');
	$err->($m->request(GET => '/__mock/person?professionalSocialMediaUrl=' . enc('https://example.com/x')), 400, 'invalid_request',
		undef, '/__mock/person: a bad URL -> 400');
	$err->($m->request(GET => '/__mock/person?professionalSocialMediaUrl=' . enc('linkedin.com/in/an-invalid-one')), 400,
		'invalid_request', undef, "/__mock/person: 'invalid' in a URL -> 400");
	is(EnrichMock::jtype($m->person(personId => 'x-notfound')->{person}), 'null', '/__mock/person: person null for not_found');
	is(EnrichMock::jtype($m->person(pdlId => 'x-invalid')->{person}), 'null', '/__mock/person: person null for invalid_identifier');
	is(EnrichMock::jtype($m->person(personId => 'x-flaky')->{person}), 'object', '/__mock/person: a flaky identifier has a person');
}

# ---------------------------------------------------------------- start and stop
{
	my $dir = File::Temp->newdir('enrich-det-XXXXXX', TMPDIR => 1);
	my $bin = EnrichMock->bin_path;
	my $run = sub {
		my $pid = fork // die;
		if (!$pid) { open(STDOUT, '>', '/dev/null'); open(STDERR, '>', '/dev/null'); { no warnings 'exec'; exec { $bin } $bin, @_; } POSIX::_exit(127); }
		my $deadline = time + 5;
		while (time < $deadline) { return $? >> 8 if waitpid($pid, POSIX::WNOHANG()) == $pid; sleep 0.02; }
		kill 'KILL', $pid;
		waitpid($pid, 0);
		return 'hung';
	};
	is($run->('--port', $m->port, '--port-file', "$dir/p1"), 1, 'a port that cannot be bound: exit status 1');
	open(my $fh, '>', "$dir/bad.pem") or die;
	print $fh "not a certificate\n";
	close $fh;
	is($run->('--port', 0, '--port-file', "$dir/p2", '--tls-cert', "$dir/bad.pem", '--tls-key', "$dir/bad.pem"), 1,
		'a bad TLS certificate/key: exit status 1');
	# a missing file is not pinned to 1 (the mock treats it as a usage error, 2)
	my $st = $run->('--port', 0, '--port-file', "$dir/p3", '--tls-cert', "$dir/missing.pem", '--tls-key', "$dir/missing.pem");
	ok($st ne 'hung' && $st != 0, "a missing TLS certificate file: exits non-zero ($st)");

	my $s = EnrichMock->start(seed => 1, faults => { latency_ms => 20000 });
	my $kid = fork // die;
	if (!$kid) { EnrichMock->ua(timeout => 30)->get($s->url . $BE, { headers => { 'x-api-key' => 'test-key' } }); POSIX::_exit(0); }
	sleep 0.3;
	my $t0 = time;
	my $stop_st = $s->stop(timeout => 10);
	my $el = time - $t0;
	waitpid($kid, 0);
	cmp_ok($el, '<', 3, sprintf('a request sleeping on latency_ms is cut short when the server stops (%.2f s)', $el));
	is($stop_st, 0, 'and the server still exits 0');
}

done_testing();
