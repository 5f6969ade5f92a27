# List items with a cursor, fetch one item, item outcomes, metadata echo, resuming.
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
my $m = EnrichMock->start(seed => 1);

sub create
{
	my ($reqs) = @_;
	my $r = $m->bulk_enrich($reqs);
	is($r->{status}, 202, 'batch of ' . scalar(@$reqs) . ' accepted') or diag $r->{content};
	my $id = $r->{json}{batchId} // 'none';
	return $id;
}
sub page { my ($id, $q) = @_; $m->request(GET => "$BE/$id/items" . (defined $q ? "?$q" : '')) }
sub enc { my $s = shift; $s =~ s/([^A-Za-z0-9\-._~])/sprintf('%%%02X', ord $1)/ge; $s }

# --- batch A: 45 items with outcomes and metadata
my $complex = { i => 11, s => "caf\x{e9} \x{1F600} \"q\"", n => -3, f => 1.5, b => JSON::PP::true(), nul => undef,
	arr => [ 1, 'two', { three => [3] } ], obj => { deep => { deeper => { x => [] } } } };
my @reqsA = map { { personId => "item-$_", metadata => { i => $_ } } } 0 .. 44;
$reqsA[3] = { personId => 'person-notfound-3', metadata => { i => 3 } };
$reqsA[7] = { pdlId => 'pdl-INVALID-7', metadata => { i => 7 } };
$reqsA[9] = { personId => 'flaky-one', metadata => { i => 9 } };
$reqsA[10] = { personId => 'item-10' };
$reqsA[11] = { personId => 'item-11', metadata => $complex };
$reqsA[12] = { personId => 'item-12', metadata => {} };
$reqsA[13] = { professionalSocialMediaUrl => 'linkedin.com/in/notfound-person', metadata => { i => 13 } };
my $A = create(\@reqsA);
is(($m->wait_batch($A) // {})->{status}, 'completed', 'batch A completed');

# default limit 20: 20 + 20 + 5
my @all;
my $p1 = page($A);
is($p1->{status}, 200, 'first page 200');
like($p1->{headers}{'content-type'} // '', qr{^application/json}i, 'list items content-type application/json');
is_deeply([ sort keys %{ $p1->{json} // {} } ], [qw(cursor items)], 'page has exactly items and cursor');
is(scalar @{ $p1->{json}{items} // [] }, 20, 'default limit: 20 items');
is(EnrichMock::jtype($p1->{json}{cursor}), 'string', 'first page cursor is a string');
push @all, @{ $p1->{json}{items} // [] };
my $p2 = page($A, 'cursor=' . enc($p1->{json}{cursor} // ''));
is(scalar @{ $p2->{json}{items} // [] }, 20, 'second page: 20 items');
is(EnrichMock::jtype($p2->{json}{cursor}), 'string', 'second page cursor is a string');
push @all, @{ $p2->{json}{items} // [] };
my $p3 = page($A, 'cursor=' . enc($p2->{json}{cursor} // ''));
is(scalar @{ $p3->{json}{items} // [] }, 5, 'third page: the last 5 items');
is(EnrichMock::jtype($p3->{json}{cursor}), 'null', 'cursor null on the page that reached the end of a completed batch');
push @all, @{ $p3->{json}{items} // [] };

is(scalar @all, 45, '45 items in all');
my @order = map { $_->{metadata} && ref $_->{metadata} eq 'HASH' ? $_->{metadata}{i} : undef } @all;
is_deeply([ @order[ 0 .. 9, 13 .. 44 ] ], [ 0 .. 9, 13 .. 44 ], 'items in request order (metadata i)');
my %seen;
my @iids = map { $_->{itemId} // '' } @all;
is(scalar(grep { !$seen{$_}++ } @iids), 45, 'item ids unique');
my ($aseq) = $A =~ /^bat_(\d+)_/;
my @bad_id = grep { !/^itm_(\d+)_(\d{7})$/ || $1 != $aseq } @iids;
is_deeply(\@bad_id, [], 'item ids are itm_<batch sequence>_<7-digit index>');
my @idx = map { /_(\d{7})$/ ? $1 + 0 : -1 } @iids;
is_deeply([ map { $idx[$_] - $idx[0] } 0 .. 44 ], [ 0 .. 44 ], 'item id indexes follow request order');

# item shape and types
{
	my ($bad_keys, $bad_types) = (0, 0);
	for my $it (@all)
	{
		my %t = map { $_ => EnrichMock::jtype($it->{$_}) } keys %$it;
		$bad_keys++ unless join(',', sort keys %$it) eq 'error,isRetryable,isSuccess,itemId,metadata,person';
		$bad_types++ unless $t{itemId} eq 'string' && $t{isSuccess} eq 'bool' && $t{isRetryable} eq 'bool'
		  && ($t{metadata} eq 'object' || $t{metadata} eq 'null') && ($t{person} eq 'object' || $t{person} eq 'null')
		  && ($t{error} eq 'object' || $t{error} eq 'null');
	}
	is($bad_keys, 0, 'every item has exactly itemId, isSuccess, isRetryable, metadata, person, error');
	is($bad_types, 0, 'item field types (string, booleans, objects or null)');
}

# outcomes
sub failure_ok
{
	my ($it, $code, $retry, $name) = @_;
	subtest $name => sub {
		ok($it && !$it->{isSuccess}, 'isSuccess false');
		is(!!$it->{isRetryable}, !!$retry, 'isRetryable ' . ($retry ? 'true' : 'false'));
		is(EnrichMock::jtype($it->{person}), 'null', 'person null');
		is(EnrichMock::jtype($it->{error}), 'object', 'error object');
		is($it->{error}{code}, $code, "error code $code");
		ok(EnrichMock::jtype($it->{error}{message}) eq 'string' && length $it->{error}{message}, 'error message string');
	};
}
failure_ok($all[3], 'not_found', 0, "personId with 'notfound' -> not_found, not retryable");
failure_ok($all[13], 'not_found', 0, "URL with 'notfound' -> not_found, not retryable");
failure_ok($all[7], 'invalid_identifier', 0, "pdlId with 'INVALID' -> invalid_identifier, not retryable");
failure_ok($all[9], 'temporarily_unavailable', 1, "'flaky', first submission -> temporarily_unavailable, retryable");
{
	my @succ = @all[ grep { !/^(3|7|9|13)$/ } 0 .. 44 ];
	is(scalar(grep { $_->{isSuccess} } @succ), 41, 'the other 41 items succeed');
	is(scalar(grep { $_->{isSuccess} && $_->{isRetryable} } @succ), 41, 'isRetryable true on every success');
	is(scalar(grep { EnrichMock::jtype($_->{error}) eq 'null' } @succ), 41, 'error null on every success');
	is(scalar(grep { ref $_->{person} eq 'HASH' && %{ $_->{person} } } @succ), 41, 'a non-empty person on every success');
}

# metadata echoed verbatim
is_deeply($all[11]{metadata}, $complex, 'complex metadata (unicode, numbers, nesting, null) echoed verbatim');
is(EnrichMock::jtype($all[10]{metadata}), 'null', 'no metadata -> metadata null');
is_deeply($all[12]{metadata}, {}, 'empty metadata object echoed as {}');

# flaky: the second submission of that identifier succeeds, a new flaky identifier fails first
{
	my $B = create([ { personId => 'flaky-one' }, { personId => 'flaky-two' }, { personId => 'FLAKY-three-again' } ]);
	$m->wait_batch($B);
	my $its = page($B)->{json}{items} // [];
	ok($its->[0] && $its->[0]{isSuccess} && $its->[0]{isRetryable}, "'flaky-one' second submission succeeds");
	ok(ref $its->[0]{person} eq 'HASH', 'with a person');
	failure_ok($its->[1], 'temporarily_unavailable', 1, "'flaky-two' first submission fails");
	failure_ok($its->[2], 'temporarily_unavailable', 1, "'FLAKY' is case-insensitive");
	my $C = create([ { personId => 'flaky-one' }, { personId => 'flaky-two' } ]);
	$m->wait_batch($C);
	$its = page($C)->{json}{items} // [];
	ok($its->[0] && $its->[0]{isSuccess}, "'flaky-one' third submission succeeds");
	ok($its->[1] && $its->[1]{isSuccess}, "'flaky-two' second submission succeeds");
}

# limits
{
	my $r = page($A, 'limit=50');
	is(scalar @{ $r->{json}{items} // [] }, 45, 'limit=50: all 45');
	is(EnrichMock::jtype($r->{json}{cursor}), 'null', 'limit=50: cursor null');
	$r = page($A, 'limit=1');
	is(scalar @{ $r->{json}{items} // [] }, 1, 'limit=1: one item');
	is($r->{json}{items}[0]{itemId}, $iids[0], 'limit=1: the first item');
	is(EnrichMock::jtype($r->{json}{cursor}), 'string', 'limit=1: a cursor');
	# walk in pages of 7
	my (@got, $cur, $pages);
	do
	{
		my $q = 'limit=7' . (defined $cur ? '&cursor=' . enc($cur) : '');
		my $pg = page($A, $q);
		push @got, map { $_->{itemId} } @{ $pg->{json}{items} // [] };
		$cur = $pg->{json}{cursor};
		$pages++;
	} while (defined $cur && $pages < 20);
	is($pages, 7, 'limit=7: 7 pages for 45 items');
	is_deeply(\@got, \@iids, 'limit=7: same items, same order, no duplicates, no gaps');
	for my $bad ('0', '51', '-1', 'abc', '1.5', '')
	{
		$err->(page($A, "limit=$bad"), 400, 'invalid_request', qr/limit/, "limit=$bad -> 400 naming limit");
	}
	$err->(page($A, 'foo=1'), 400, 'invalid_request', qr/foo/, 'unknown query parameter -> 400');
}

# a page reaching exactly the last item has a null cursor (40 items, default limit)
my $D = create([ map { { personId => "forty-$_" } } 1 .. 40 ]);
$m->wait_batch($D);
{
	my $d1 = page($D);
	my $d2 = page($D, 'cursor=' . enc($d1->{json}{cursor} // ''));
	is(scalar @{ $d2->{json}{items} // [] }, 20, '40 items: second page has 20');
	is(EnrichMock::jtype($d2->{json}{cursor}), 'null', '40 items: cursor null on the page that reached the last item');

	# cursors: stable, bound to their batch
	my $again = page($A, 'cursor=' . enc($p1->{json}{cursor}));
	is_deeply($again->{json}, $p2->{json}, 'the same cursor gives the same page again');
	$err->(page($A, 'cursor=bogus'), 400, 'invalid_request', qr/^cursor: unknown cursor$/, 'made-up cursor -> 400 cursor: unknown cursor');
	$err->(page($A, 'cursor=' . enc($d1->{json}{cursor} // 'x')), 400, 'invalid_request', qr/^cursor: unknown cursor$/,
		'cursor of another batch -> 400 cursor: unknown cursor');
	$err->(page($D, 'cursor=' . enc($p1->{json}{cursor} // 'x')), 400, 'invalid_request', qr/^cursor: unknown cursor$/,
		'and the other way round -> 400');
}
$err->(page('bat_99999999_deadbeef'), 404, 'not_found', undef, 'items of an unknown batch -> 404');

# fetch one item
{
	for my $k (0, 3, 11)
	{
		my $r = $m->request(GET => "$BE/$A/items/$iids[$k]");
		is($r->{status}, 200, "fetch item $k -> 200");
		is_deeply($r->{json}, $all[$k], "fetched item $k equals the listed one");
	}
	my $d_item = page($D)->{json}{items}[0]{itemId} // 'none';
	$err->($m->request(GET => "$BE/$A/items/$d_item"), 404, 'not_found', undef, 'item of another batch -> 404');
	(my $beyond = $iids[-1]) =~ s/_(\d{7})$/sprintf('_%07d', $1 + 1)/e;
	$err->($m->request(GET => "$BE/$A/items/$beyond"), 404, 'not_found', undef, 'item index past the end -> 404');
	$err->($m->request(GET => "$BE/$A/items/$iids[0]?foo=1"), 400, 'invalid_request', qr/foo/, 'get item with an unknown query parameter -> 400');
	$err->($m->request(GET => "$BE/$A/items/nonsense"), 404, 'not_found', undef, 'garbage item id -> 404');
	$err->($m->request(GET => "$BE/bat_99999999_deadbeef/items/$iids[0]"), 404, 'not_found', undef, 'item of an unknown batch -> 404');
}
$m->stop;

# --- still processing: empty page with a cursor, resume, no duplicates, no gaps
$m = EnrichMock->start(seed => 1, start_delay_ms => 1200, items_per_second => 8);
{
	my $P = create([ map { { personId => "slow-$_", metadata => { i => $_ } } } 0 .. 11 ]);
	my $first = page($P);
	is($first->{status}, 200, 'items of a pending batch: 200');
	is_deeply($first->{json}{items}, [], 'pending batch: empty items');
	is(EnrichMock::jtype($first->{json}{cursor}), 'string', 'pending batch: a non-null cursor');
	my $c0 = $first->{json}{cursor};

	my @got;
	my ($partial, $cur, $deadline) = (0, $c0, time + 15);
	while (defined $cur && time < $deadline)
	{
		my $st = $m->request(GET => "$BE/$P")->{json}{status} // '';
		my $pg = page($P, 'limit=5&cursor=' . enc($cur));
		last unless $pg->{status} == 200;
		my $n = @{ $pg->{json}{items} // [] };
		push @got, @{ $pg->{json}{items} // [] };
		$cur = $pg->{json}{cursor};
		$partial++ if defined $cur && $n < 5 && $st eq 'processing';
		sleep 0.1 if defined $cur && $n < 5;
	}
	ok(!defined $cur, 'the walk ended with a null cursor');
	is_deeply([ map { $_->{metadata}{i} } @got ], [ 0 .. 11 ], 'resumed walk: all 12 items in order, no duplicates, no gaps');
	ok($partial, 'short pages with a non-null cursor were seen while processing');
	is(($m->request(GET => "$BE/$P")->{json} // {})->{status}, 'completed', 'batch completed at the end of the walk');

	my $late = page($P, 'limit=50&cursor=' . enc($c0));
	is(scalar @{ $late->{json}{items} // [] }, 12, 'the cursor of the empty pending page, used after completion: all 12 items');
	is_deeply([ map { $_->{itemId} } @{ $late->{json}{items} // [] } ], [ map { $_->{itemId} } @got ], 'same items');
	is(EnrichMock::jtype($late->{json}{cursor}), 'null', 'and a null cursor');
}

done_testing();
