# Fault injection: every fault, endpoint restriction, clearing, validation, admin immunity.
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
my $m = EnrichMock->start(seed => 42);
my $n = 0;

sub post { $m->request(POST => $BE, json => { requests => [ { personId => 'fault-' . ++$n, @_ } ] }) }
sub get { $m->request(GET => $BE . ($_[0] // '')) }
sub faults
{
	my ($f, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $r = $m->set_faults($f);
	is($r->{status}, 200, 'set faults ' . ($name // EnrichMock->json_encode($f))) or diag $r->{content};
}
sub total { my $r = $m->request(GET => $BE); $r->{json}{total} }

# a completed batch to address
my $good = post()->{json}{batchId} // 'none';
$m->wait_batch($good);
my $good_item = ($m->request(GET => "$BE/$good/items")->{json}{items}[0] // {})->{itemId} // 'none';
my %ep = (
	bulk_enrich => sub { post() },
	list_batches => sub { get() },
	batch_status => sub { get("/$good") },
	list_items => sub { get("/$good/items") },
	get_item => sub { get("/$good/items/$good_item") });

# --- GET /__mock/faults shows the setting
faults({ rate_5xx => 0.25, latency_ms => 5, endpoints => ['get_item'] });
{
	my $f = $m->faults;
	ok($f->{rate_5xx} == 0.25 && $f->{latency_ms} == 5 && ref $f->{endpoints} eq 'ARRAY'
		  && "@{$f->{endpoints}}" eq 'get_item', 'GET /__mock/faults shows what was set')
	  or diag EnrichMock->json_encode($f);
}
faults({});

# --- rate_429
faults({ rate_429 => 1, retry_after => 3 });
{
	my $r = get();
	$err->($r, 429, 'rate_limited', undef, 'rate_429=1: 429 rate_limited');
	is($r->{headers}{'retry-after'}, '3', 'rate_429 with retry_after 3: Retry-After: 3');
	$err->(post(), 429, 'rate_limited', undef, 'rate_429=1 on bulk enrich');
}
faults({ rate_429 => 1 });
is(get()->{headers}{'retry-after'}, '1', 'retry_after defaults to 1');
faults({});
is(total(), 1, 'no batch created by an injected 429');

# --- rate_5xx
faults({ rate_5xx => 1 });
{
	my (%seen, $bad);
	for (1 .. 30)
	{
		my $r = get();
		$seen{ $r->{status} }++;
		my $want = $r->{status} == 500 ? 'internal' : 'unavailable';
		$bad++ unless $r->{status} =~ /^50[0234]$/ && EnrichMock::check_error($r, $r->{status}, $want, undef,
			"rate_5xx=1: $r->{status} $want envelope");
	}
	ok(!$bad, 'rate_5xx=1: every answer is 500 internal or 502/503/504 unavailable');
	is_deeply([ sort keys %seen ], [qw(500 502 503 504)], 'rate_5xx: 500, 502, 503 and 504 all drawn in 30 tries (equal odds)');
	my $r = post();
	ok($r->{status} =~ /^50[0234]$/, 'rate_5xx=1 on bulk enrich: 5xx');
}
faults({});
is(total(), 1, 'no batch created by an injected 5xx');

# --- rate_drop: no answer, nothing created
faults({ rate_drop => 1 });
{
	my $before = $m->stats;
	my $r = post();
	is($r->{status}, 599, 'rate_drop=1: connection closed without a response (HTTP::Tiny 599)');
	is($r->{content} =~ /^\s*\{"batchId"/ ? 1 : 0, 0, 'no batch id seen');
	my $after = $m->stats;
	is(($after->{endpoints}{bulk_enrich}{drop} // 0) - ($before->{endpoints}{bulk_enrich}{drop} // 0), 1,
		'stats: bulk_enrich drop counted once');
	is($after->{batches}, $before->{batches}, 'rate_drop: no batch created');
	ok(!exists $after->{submissions}{"personId:fault-$n"}, 'rate_drop: the identifier was not submitted');
	is(get()->{status}, 599, 'rate_drop=1 on a GET: 599 too');
}
faults({});
is(total(), 1, 'list batches: still one batch after a dropped bulk enrich');

# --- rate_drop_after: processed, then no answer
faults({ rate_drop_after => 1 });
{
	my $r = post(metadata => { tag => 'dropped-after' });
	is($r->{status}, 599, 'rate_drop_after=1: the client sees no answer');
}
faults({});
{
	my $r = get();
	is($r->{json}{total}, 2, 'rate_drop_after: the batch was created anyway (visible in list batches)');
	my $newest = $r->{json}{batches}[0] // {};
	isnt($newest->{batchId} // '', $good, 'it is a new batch');
	is($m->stats->{submissions}{"personId:fault-$n"}, 1, 'and its identifier was counted as submitted');
}

# --- rate_malformed
faults({ rate_malformed => 1 });
{
	my $r = get();
	is($r->{status}, 200, 'rate_malformed=1: status 200');
	ok(!defined $r->{json} && !defined(eval { JSON::PP->new->decode($r->{content}) }), 'rate_malformed=1: body is not valid JSON')
	  or diag $r->{content};
	$r = post();
	is($r->{status}, 200, 'rate_malformed=1 on bulk enrich: status 200 (not 202)');
	ok(!defined $r->{json}, 'and not valid JSON');
	$r = get("/$good");
	is($r->{status}, 200, 'rate_malformed=1 on batch status: 200');
	ok(!defined $r->{json}, 'and not valid JSON');
}
faults({});

# --- latency_ms
{
	my $t = get()->{elapsed};
	cmp_ok($t, '<', 0.3, sprintf('no latency: %.3f s', $t));
	faults({ latency_ms => 400 });
	my $r = get();
	is($r->{status}, 200, 'latency_ms=400: still 200');
	cmp_ok($r->{elapsed}, '>=', 0.38, sprintf('latency_ms=400: took %.3f s (>= 0.38)', $r->{elapsed}));
	cmp_ok($r->{elapsed}, '<', 2.5, 'latency_ms=400: not much more');
	$r = post();
	is($r->{status}, 202, 'latency_ms=400 bulk enrich: 202');
	cmp_ok($r->{elapsed}, '>=', 0.38, sprintf('latency_ms=400 bulk enrich: took %.3f s', $r->{elapsed}));
	faults({});
}

# --- extra_field: every object except metadata
faults({ extra_field => JSON::PP::true() });
{
	my $meta = { a => { b => 1, c => [ { d => 2 } ] } };
	my @problems;
	my $walk;
	$walk = sub {
		my ($v, $path) = @_;
		if (ref $v eq 'HASH')
		{
			if ($path =~ /\._mockExtra$/) { push @problems, "$path is not {note: ignore me}" unless EnrichMock->json_encode($v) eq '{"note":"ignore me"}'; return; }
			push @problems, "$path lacks _mockExtra" unless exists $v->{_mockExtra};
			for my $k (sort keys %$v)
			{
				next if $k eq 'metadata';    # checked separately
				$walk->($v->{$k}, "$path.$k");
			}
		}
		elsif (ref $v eq 'ARRAY') { $walk->($v->[$_], "$path\[$_\]") for 0 .. $#$v; }
	};
	my $r = $m->request(POST => $BE, json => { requests => [ { personId => 'extra-1', metadata => $meta }, { personId => 'extra-notfound' } ] });
	is($r->{status}, 202, 'extra_field: bulk enrich 202');
	$walk->($r->{json}, 'bulk_enrich');
	my $bid = $r->{json}{batchId} // 'none';
	$m->wait_batch($bid);
	my @resp = (
		[ batch_status => get("/$bid") ],
		[ list_batches => get() ],
		[ list_items => get("/$bid/items") ]);
	my $items = $resp[2][1]{json}{items} // [];
	push @resp, [ get_item => get("/$bid/items/" . ($items->[0]{itemId} // 'none')) ];
	push @resp, [ error_404 => get('/bat_99999999_deadbeef') ];
	for (@resp)
	{
		ok(ref $_->[1]{json}, "extra_field: $_->[0] answers JSON");
		$walk->($_->[1]{json}, $_->[0]);
	}
	is_deeply(\@problems, [], 'extra_field: _mockExtra {"note":"ignore me"} in every object (items, person, error, envelopes)');
	ok(ref $items->[0]{person} eq 'HASH' && exists $items->[0]{person}{_mockExtra}, 'extra_field: person has _mockExtra');
	ok(ref $items->[1]{error} eq 'HASH' && exists $items->[1]{error}{_mockExtra}, 'extra_field: item error has _mockExtra');
	is_deeply($items->[0]{metadata}, $meta, 'extra_field: metadata is not touched (verbatim, nested objects too)');
	is_deeply($resp[3][1]{json}{metadata}, $meta, 'extra_field: metadata of a fetched item untouched');
	is(EnrichMock::jtype($items->[1]{metadata}), 'null', 'extra_field: absent metadata stays null');
}
faults({});

# --- batch_fail_rate
faults({ batch_fail_rate => 1 });
{
	my $bid = post()->{json}{batchId} // 'none';
	my $s = $m->wait_batch($bid);
	is($s && $s->{status}, 'failed', 'batch_fail_rate=1: the batch ends failed');
	my $r = get("/$bid/items");
	is($r->{status}, 200, 'failed batch: list items 200');
	is_deeply($r->{json}{items}, [], 'failed batch: no items');
	is(EnrichMock::jtype($r->{json}{cursor}), 'null', 'failed batch: cursor null');
	my ($in_list) = grep { $_->{batchId} eq $bid } @{ get()->{json}{batches} // [] };
	is($in_list && $in_list->{status}, 'failed', 'failed batch: listed as failed');
}
faults({});
{
	my $s = $m->wait_batch(post()->{json}{batchId} // 'none');
	is($s && $s->{status}, 'completed', 'after clearing: a new batch completes');
}

# --- endpoints restrict the faults
faults({ rate_5xx => 1, endpoints => ['list_batches'] });
{
	ok(get()->{status} =~ /^50[0234]$/, 'endpoints [list_batches]: list batches 5xx');
	is($ep{$_}->()->{status}, $_ eq 'bulk_enrich' ? 202 : 200, "endpoints [list_batches]: $_ unaffected")
	  for qw(bulk_enrich batch_status list_items get_item);
}
faults({ rate_5xx => 1, endpoints => [qw(bulk_enrich get_item)] });
{
	for my $e (sort keys %ep)
	{
		my $st = $ep{$e}->()->{status};
		if ($e eq 'bulk_enrich' || $e eq 'get_item') { ok($st =~ /^50[0234]$/, "endpoints [bulk_enrich, get_item]: $e 5xx ($st)"); }
		else { is($st, 200, "endpoints [bulk_enrich, get_item]: $e unaffected"); }
	}
}

# --- the setting is replaced, not merged; {} clears
faults({ latency_ms => 1 });
is(get()->{status}, 200, 'a new setting replaces the old one (rate_5xx gone)');
faults({ rate_5xx => 1 });
faults({});
is($ep{$_}->()->{status}, $_ eq 'bulk_enrich' ? 202 : 200, "{} clears every fault: $_ normal") for sort keys %ep;
{
	my $f = $m->faults;
	ok(!$f->{rate_5xx} && !$f->{rate_429} && !$f->{rate_drop} && !$f->{rate_drop_after} && !$f->{rate_malformed}
		  && !$f->{latency_ms} && !$f->{extra_field} && !$f->{batch_fail_rate}, 'GET /__mock/faults after {}: nothing active')
	  or diag EnrichMock->json_encode($f);
}

# --- invalid settings
for my $case ([ 'unknown key', { no_such_fault => 1 } ], [ 'rate_5xx above 1', { rate_5xx => 1.5 } ],
	[ 'negative probability', { rate_429 => -0.1 } ], [ 'probability as a string', { rate_drop => '0.5' } ],
	[ 'retry_after 0', { rate_429 => 1, retry_after => 0 } ], [ 'retry_after not an integer', { retry_after => 1.5 } ],
	[ 'negative latency', { latency_ms => -1 } ], [ 'latency as a string', { latency_ms => '100' } ],
	[ 'extra_field not a boolean', { extra_field => 'yes' } ], [ 'extra_field as 1', { extra_field => 1 } ],
	[ 'unknown endpoint name', { rate_5xx => 1, endpoints => ['no_such_endpoint'] } ],
	[ 'endpoints not an array', { rate_5xx => 1, endpoints => 'list_batches' } ],
	[ 'batch_fail_rate above 1', { batch_fail_rate => 2 } ], [ 'not an object', [ 'rate_5xx', 1 ] ])
{
	$err->($m->set_faults($case->[1]), 400, 'invalid_request', undef, "POST /__mock/faults with $case->[0] -> 400");
}
$err->($m->request(POST => '/__mock/faults', body => '{"rate_5xx":'), 400, 'invalid_request', undef,
	'POST /__mock/faults with malformed JSON -> 400');
is(get()->{status}, 200, 'rejected settings did not switch anything on');

# --- faults never apply to /__mock/*
faults({ rate_5xx => 1, rate_malformed => 1, latency_ms => 600, extra_field => JSON::PP::true() });
{
	my $r = $m->request(GET => '/__mock/stats');
	is($r->{status}, 200, 'faults on: /__mock/stats 200');
	ok(ref $r->{json} eq 'HASH', '/__mock/stats valid JSON');
	unlike($r->{content}, qr/_mockExtra/, '/__mock/stats without _mockExtra');
	cmp_ok($r->{elapsed}, '<', 0.5, '/__mock/stats without latency');
	$r = $m->request(GET => '/__mock/faults');
	ok($r->{status} == 200 && ref $r->{json} eq 'HASH', 'faults on: GET /__mock/faults 200 JSON');
	$r = $m->request(GET => '/__mock/person?personId=p-1');
	ok($r->{status} == 200 && ref $r->{json} eq 'HASH' && $r->{content} !~ /_mockExtra/, 'faults on: /__mock/person clean');
	ok(get()->{status} =~ /^50[0234]$|^200$/, '(a vendor endpoint is faulted meanwhile)');
}
faults({ rate_drop => 1, rate_429 => 0 });
{
	my $r = $m->request(GET => '/__mock/stats');
	is($r->{status}, 200, 'rate_drop on: /__mock/stats answers');
	$r = $m->set_faults({});
	is($r->{status}, 200, 'rate_drop on: POST /__mock/faults answers');
}
faults({ rate_429 => 1 });
is($m->request(GET => '/__mock/stats')->{status}, 200, 'rate_429 on: /__mock/stats answers');
faults({});

# --- faults come after path and key checks, before validation
faults({ rate_5xx => 1 });
$err->($m->request(GET => $BE, key => undef), 401, 'unauthorized', undef, 'rate_5xx on: no key -> 401 first');
$err->($m->request(GET => $BE, key => $m->key_live), 403, 'forbidden', undef, 'rate_5xx on: other environment key -> 403 first');
$err->($m->request(GET => '/v2/prod/person/bulk-enrich'), 404, 'not_found', undef, 'rate_5xx on: unknown environment -> 404 first');
ok($m->request(POST => $BE, body => '{broken')->{status} =~ /^50[0234]$/, 'rate_5xx on: a malformed body gets the 5xx (faults before validation)');
ok($m->request(POST => $BE, body => '{"requests":[]' . (' ' x (4 * 1024 * 1024)) . '}', via => 'curl')->{status} =~ /^50[0234]$/,
	'rate_5xx on: an oversized body gets the 5xx (faults before the size check)');
faults({});
{
	my $rl = EnrichMock->start(seed => 42, tier3 => 1);
	my @codes = map { $rl->bulk_enrich([ { personId => "rl-$_" } ])->{status} } 1 .. 4;
	ok((grep { $_ == 429 } @codes), 'tier3 1: bucket exhausted') or diag "@codes";
	is($rl->set_faults({ rate_5xx => 1 })->{status}, 200, 'then rate_5xx=1');
	ok($rl->bulk_enrich([ { personId => 'rl-x' } ])->{status} =~ /^50[0234]$/,
		'injected faults come before the tier rate limit (5xx, not 429)');
	$rl->stop;
}

# --- a probability between 0 and 1
faults({ rate_5xx => 0.5 });
{
	my @codes = map { get()->{status} } 1 .. 60;
	my $f = grep { /^50[0234]$/ } @codes;
	my $o = grep { $_ == 200 } @codes;
	is($f + $o, 60, 'rate_5xx=0.5: only 5xx and 200');
	ok($f >= 10 && $o >= 10, "rate_5xx=0.5: a mix ($f faulted, $o normal of 60)");
}
faults({});
$m->stop;

# --- --faults at start
$m = EnrichMock->start(seed => 42, faults => { rate_5xx => 1, endpoints => ['batch_status'] });
{
	ok(get('/bat_00000001_00000000')->{status} =~ /^50[0234]$/, '--faults: batch status faulted from the start');
	is(get()->{status}, 200, '--faults: list batches not');
	my $f = $m->faults;
	ok($f->{rate_5xx} == 1 && "@{$f->{endpoints} // []}" eq 'batch_status', '--faults shown by GET /__mock/faults');
}

done_testing();
