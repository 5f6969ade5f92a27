# Hostile responses (the "hostile" fault): every kind on every endpoint it
# applies to, its parameters and their validation, the rate, the endpoint and
# environment restrictions, what it leaves alone, and the stats it keeps.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../../perl";
use Test::More;
use EnrichMock;

-x EnrichMock->bin_path or BAIL_OUT('mock binary not built (make -C test/mock)');

my $BE = '/v2/test/person/bulk-enrich';
my $LBE = '/v2/live/person/bulk-enrich';
my $err = \&EnrichMock::check_error;
my $m = EnrichMock->start(seed => 7);

sub get { $m->request(GET => $BE . ($_[0] // '')) }
sub faults
{
	my ($f, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $r = $m->set_faults($f);
	is($r->{status}, 200, 'set faults ' . ($name // EnrichMock->json_encode($f))) or diag $r->{content};
}
sub hostile_count { my ($ep) = @_; ($m->stats->{hostile} // {})->{$ep} // 0 }

# depth returns how deep a JSON text nests (strings skipped)
sub depth
{
	my ($text) = @_;
	my ($d, $max, $in_str, $esc) = (0, 0, 0, 0);
	for my $c (split //, $text)
	{
		if ($in_str)
		{
			if ($esc) { $esc = 0; }
			elsif ($c eq '\\') { $esc = 1; }
			elsif ($c eq '"') { $in_str = 0; }
			next;
		}
		if ($c eq '"') { $in_str = 1; }
		elsif ($c eq '{' || $c eq '[') { $d++; $max = $d if $d > $max; }
		elsif ($c eq '}' || $c eq ']') { $d--; }
	}
	return $max;
}

# batch A: ids 1..3 (the third not found); batch B: ids 11..14; both in test
my @A = map { { personId => "host-a$_", metadata => { enrichRequestId => $_, tag => "a$_" } } } 1 .. 2;
push @A, { personId => 'host-a3-notfound', metadata => { enrichRequestId => 3, tag => 'a3' } };
my $a = $m->bulk_enrich(\@A)->{json}{batchId} // 'none';
my @B = map { { personId => "host-b$_", metadata => { enrichRequestId => 10 + $_, tag => "b$_" } } } 1 .. 4;
my $b = $m->bulk_enrich(\@B)->{json}{batchId} // 'none';
my $l = $m->bulk_enrich([ { personId => 'host-live-1' } ], env => 'live')->{json}{batchId} // 'none';
$m->wait_batch($_) for $a, $b;
$m->wait_batch($l, env => 'live');
my $a_items = get("/$a/items?limit=50")->{json}{items} // [];
my $b_items = get("/$b/items?limit=50")->{json}{items} // [];
is(scalar @$b_items, 4, 'batch B has its 4 items');
ok(!exists $m->stats->{hostile}, 'stats: no "hostile" key before any hostile answer');

# the normal answer of each endpoint, to compare with
my $b_item0 = $b_items->[0]{itemId} // 'none';
my %path = (
	list_batches => '',
	batch_status => "/$b",
	list_items => "/$b/items?limit=50",
	get_item => "/$b/items/$b_item0");
my %normal = map { $_ => get($path{$_})->{json} } keys %path;

# ---------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------
for my $case (
	[ 'unknown kind', { hostile => 'evil' } ],
	[ 'kind not a string', { hostile => 1 } ],
	[ 'kind none', { hostile => 'none' } ],
	[ 'hostile_rate above 1', { hostile => 'deep', hostile_rate => 1.5 } ],
	[ 'hostile_rate as a string', { hostile => 'deep', hostile_rate => '1' } ],
	[ 'hostile_rate without hostile', { hostile_rate => 0.5 } ],
	[ 'hostile_depth without hostile', { hostile_depth => 50 } ],
	[ 'hostile_depth with oversized', { hostile => 'oversized', hostile_depth => 50 } ],
	[ 'hostile_depth 1', { hostile => 'deep', hostile_depth => 1 } ],
	[ 'hostile_depth above 1000000', { hostile => 'deep', hostile_depth => 1000001 } ],
	[ 'hostile_size_mib 0', { hostile => 'oversized', hostile_size_mib => 0 } ],
	[ 'hostile_size_mib above 1024', { hostile => 'oversized', hostile_size_mib => 1025 } ],
	[ 'hostile_size_mib with deep', { hostile => 'deep', hostile_size_mib => 2 } ],
	[ 'hostile_chunked not a boolean', { hostile => 'oversized', hostile_chunked => 1 } ],
	[ 'hostile_chunked with wrong_types', { hostile => 'wrong_types', hostile_chunked => JSON::PP::true() } ],
	[ 'hostile_fields empty', { hostile => 'wrong_types', hostile_fields => [] } ],
	[ 'hostile_fields unknown name', { hostile => 'missing_fields', hostile_fields => ['fullName'] } ],
	[ 'hostile_fields not an array', { hostile => 'bad_values', hostile_fields => 'status' } ],
	[ 'hostile_fields with deep', { hostile => 'deep', hostile_fields => ['status'] } ],
	[ 'hostile_item negative', { hostile => 'wrong_types', hostile_item => -1 } ],
	[ 'hostile_item above 999', { hostile => 'wrong_types', hostile_item => 1000 } ],
	[ 'hostile_item with duplicate_items', { hostile => 'duplicate_items', hostile_item => 0 } ],
	[ 'hostile_offset 0', { hostile => 'foreign_metadata', hostile_offset => 0 } ],
	[ 'hostile_offset not an integer', { hostile => 'foreign_metadata', hostile_offset => 1.5 } ],
	[ 'hostile_offset with replay_cursor', { hostile => 'replay_cursor', hostile_offset => 1 } ],
	[ 'environments unknown name', { rate_5xx => 1, environments => ['prod'] } ],
	[ 'environments not an array', { rate_5xx => 1, environments => 'live' } ])
{
	$err->($m->set_faults($case->[1]), 400, 'invalid_request', undef, "POST /__mock/faults with $case->[0] -> 400");
}
$err->($m->set_faults({ hostile => 'deep', hostile_size_mib => 2 }), 400, 'invalid_request',
	qr/^hostile_size_mib: applies only to hostile oversized$/, 'the message names the parameter and its kind');
$err->($m->set_faults({ hostile_offset => 5 }), 400, 'invalid_request', qr/^hostile_offset: needs hostile$/,
	'a parameter without hostile: the message says so');
is(get()->{status}, 200, 'rejected settings switched nothing on');
is_deeply(get()->{json}, $normal{list_batches}, 'and list batches is normal');
{
	my $set = { hostile => 'wrong_types', hostile_rate => 0.25, hostile_item => 2,
		hostile_fields => [qw(status isSuccess)], environments => ['test'], endpoints => ['list_items'] };
	faults($set);
	is_deeply($m->faults, $set, 'GET /__mock/faults shows the hostile setting as given');
	faults({});
}

# ---------------------------------------------------------------------
# oversized
# ---------------------------------------------------------------------
faults({ hostile => 'oversized', hostile_size_mib => 1 });
for my $ep (sort keys %path)
{
	my $r = get($path{$ep});
	is($r->{status}, 200, "oversized: $ep 200");
	is(length $r->{content}, 1024 * 1024, "oversized 1 MiB: $ep body is exactly 1 MiB");
	is($r->{headers}{'content-length'}, 1024 * 1024, "oversized: $ep has a Content-Length");
	my $j = $r->{json};
	ok(ref $j eq 'HASH' && ($j->{_mockPadding} // '') =~ /^x+$/, "oversized: $ep is valid JSON, padded in front")
	  or diag substr($r->{content}, 0, 100);
	delete $j->{_mockPadding} if ref $j eq 'HASH';
	is_deeply($j, get_clean($path{$ep}), "oversized: $ep carries the real members after the padding");
	like($r->{content}, qr/^\{"_mockPadding":"x/, "oversized: $ep starts with the padding");
}
{
	my $r = $m->bulk_enrich([ { personId => 'host-big-1' } ]);
	is($r->{status}, 202, 'oversized: bulk enrich keeps its 202');
	is(length $r->{content}, 1024 * 1024, 'oversized: bulk enrich body is 1 MiB');
	like($r->{json}{batchId} // '', qr/^bat_\d{8}_[0-9a-f]{8}$/, 'oversized: with the real batchId after the padding');
}
faults({ hostile => 'oversized', hostile_size_mib => 2, hostile_chunked => JSON::PP::true() });
{
	my $r = get("/$b");
	is($r->{status}, 200, 'oversized chunked: 200');
	ok(!exists $r->{headers}{'content-length'}, 'oversized chunked: no Content-Length');
	like($r->{headers}{'transfer-encoding'} // '', qr/chunked/i, 'oversized chunked: Transfer-Encoding chunked');
	is(length $r->{content}, 2 * 1024 * 1024, 'oversized chunked 2 MiB: the body is exactly 2 MiB');
	ok(ref $r->{json} eq 'HASH' && $r->{json}{batchId} eq $b, 'oversized chunked: valid JSON with the real members');
}
faults({ hostile => 'oversized' });
{
	# read raw: decoding 20 MiB with pure-Perl JSON takes seconds
	my $r = EnrichMock->ua(timeout => 30)->get($m->url . "$BE/$b", { headers => { 'x-api-key' => $m->key_test } });
	is(length $r->{content}, 20 * 1024 * 1024, 'oversized: 20 MiB by default');
	like(substr($r->{content}, -300), qr/x","batchId":"\Q$b\E","status":"completed",.*\}$/,
		'oversized 20 MiB: the real members close the body');
}

# ---------------------------------------------------------------------
# deep
# ---------------------------------------------------------------------
faults({ hostile => 'deep' });
for my $ep (sort keys %path)
{
	my $r = get($path{$ep});
	is($r->{status}, 200, "deep: $ep 200");
	is(depth($r->{content}), 10000, "deep: $ep nests 10,000 levels by default");
	like($r->{content}, qr/^\{"_mockDeep":\[\[\[/, "deep: $ep starts with the nested member");
	my $j = $r->{json};
	ok(ref $j eq 'HASH', "deep: $ep is valid JSON");
	delete $j->{_mockDeep} if ref $j eq 'HASH';
	is_deeply($j, get_clean($path{$ep}), "deep: $ep carries the real members");
}
faults({ hostile => 'deep', hostile_depth => 2 });
is(get("/$b")->{content} =~ /^\{"_mockDeep":\[\],"batchId"/ ? 1 : 0, 1, 'deep 2: one array inside the object');
faults({ hostile => 'deep', hostile_depth => 3000 });
is(depth(get("/$b")->{content}), 3000, 'deep 3000: nests 3000 levels');
is(depth($m->bulk_enrich([ { personId => 'host-deep-1' } ])->{content}), 3000, 'deep: bulk enrich too');

# ---------------------------------------------------------------------
# wrong_types, missing_fields, bad_values
# ---------------------------------------------------------------------
my %KNOWN = map { $_ => 1 } qw(batchId status createdAt completedAt totalCount processedCount successCount
  failureCount batches total items cursor itemId isSuccess isRetryable metadata person error code message);

faults({ hostile => 'wrong_types' });
for my $ep (sort keys %path)
{
	my $r = get($path{$ep});
	is($r->{status}, 200, "wrong_types: $ep 200");
	# every top-level field changed type (deeper ones moved when their parent did)
	my $got = $r->{json};
	my @bad;
	for my $k (sort grep { $KNOWN{$_} } keys %{ $normal{$ep} })
	{
		push @bad, "$k still " . EnrichMock::jtype($got->{$k})
		  if EnrichMock::jtype($got->{$k}) eq EnrichMock::jtype($normal{$ep}{$k});
	}
	is_deeply(\@bad, [], "wrong_types: every field of $ep has another JSON type");
}
{
	my $s = get("/$b")->{json};
	is(EnrichMock::jtype($s->{batchId}), 'integer', 'wrong_types: batchId a number');
	is(EnrichMock::jtype($s->{totalCount}), 'string', 'wrong_types: a count a string');
	is(EnrichMock::jtype($s->{completedAt}), 'integer', 'wrong_types: completedAt a number');
	my $p = get("/$b/items?limit=50")->{json};
	is(EnrichMock::jtype($p->{items}), 'object', 'wrong_types: items an object');
	is(EnrichMock::jtype($p->{items}{0}{isSuccess}), 'string', 'wrong_types: isSuccess a string');
	is(EnrichMock::jtype($p->{items}{0}{metadata}), 'array', 'wrong_types: metadata an array');
	is(EnrichMock::jtype($p->{items}{0}{error}), 'integer', 'wrong_types: a null error a number');
	is(EnrichMock::jtype($p->{cursor}), 'integer', 'wrong_types: a null cursor a number');
	my $lb = get()->{json};
	is(EnrichMock::jtype($lb->{batches}), 'object', 'wrong_types: batches an object');
	is(EnrichMock::jtype($lb->{total}), 'string', 'wrong_types: total a string');
	is(EnrichMock::jtype($m->bulk_enrich([ { personId => 'host-wt-1' } ])->{json}{batchId}), 'integer',
		'wrong_types: bulk enrich batchId a number');
}
faults({ hostile => 'wrong_types', hostile_fields => [qw(isSuccess totalCount)] });
{
	my $p = get("/$b/items?limit=50")->{json};
	my $want = EnrichMock::json_decode(EnrichMock::json_encode($normal{list_items}));
	$_->{isSuccess} = $_->{isSuccess} ? 'true' : 'false' for @{ $want->{items} };
	is_deeply($p, $want, 'wrong_types [isSuccess]: only isSuccess changed, in every item');
	my $s = get("/$b")->{json};
	is_deeply($s, { %{ $normal{batch_status} }, totalCount => "$normal{batch_status}{totalCount}" },
		'wrong_types [totalCount]: only totalCount changed in a status');
}
faults({ hostile => 'wrong_types', hostile_fields => ['isSuccess'], hostile_item => 2 });
{
	my $p = get("/$b/items?limit=50")->{json};
	is(EnrichMock::jtype($p->{items}[2]{isSuccess}), 'string', 'hostile_item 2: items[2] changed');
	is_deeply([ @{ $p->{items} }[ 0, 1, 3 ] ], [ @{ $normal{list_items}{items} }[ 0, 1, 3 ] ],
		'hostile_item 2: the other items of the page untouched');
	my $before = hostile_count('list_items');
	is_deeply(get("/$b/items?limit=2")->{json}, get_clean("/$b/items?limit=2"),
		'hostile_item 2: a page of 2 items is left alone');
	is(hostile_count('list_items'), $before, 'hostile_item: a page left alone is not counted');
}

# get_clean fetches a path with the faults cleared, then puts them back
sub get_clean
{
	my ($p) = @_;
	my $f = $m->faults;
	$m->set_faults({});
	my $r = get($p)->{json};
	$m->set_faults($f);
	return $r;
}

faults({ hostile => 'missing_fields' });
{
	is_deeply(get("/$b")->{json}, {}, 'missing_fields: a status without any field');
	is_deeply(get("/$b/items?limit=50")->{json}, {}, 'missing_fields: a page without items and cursor');
	is_deeply(get("/$b/items/$b_item0")->{json}, {}, 'missing_fields: an item without any field');
	is_deeply(get()->{json}, {}, 'missing_fields: a batch list without batches and total');
	my $r = $m->bulk_enrich([ { personId => 'host-mf-1' } ]);
	is($r->{status}, 202, 'missing_fields: bulk enrich still 202');
	is_deeply($r->{json}, {}, 'missing_fields: without its batchId');
}
faults({ hostile => 'missing_fields', hostile_fields => [qw(cursor isSuccess completedAt)] });
{
	my $p = get("/$b/items?limit=50")->{json};
	ok(!exists $p->{cursor}, 'missing_fields [cursor isSuccess]: no cursor');
	is(scalar(grep { exists $_->{isSuccess} } @{ $p->{items} }), 0, 'missing_fields: no item has isSuccess');
	is(scalar(grep { exists $_->{itemId} && exists $_->{isRetryable} && exists $_->{person} } @{ $p->{items} }), 4,
		'missing_fields: the other fields are kept');
	my $s = get("/$b")->{json};
	is_deeply([ sort keys %$s ], [ sort grep { $_ ne 'completedAt' } keys %{ $normal{batch_status} } ],
		'missing_fields [completedAt]: a status without completedAt only');
}
faults({ hostile => 'missing_fields', hostile_fields => ['metadata'], hostile_item => 0 });
{
	my $p = get("/$b/items?limit=50")->{json};
	ok(!exists $p->{items}[0]{metadata} && exists $p->{items}[1]{metadata}, 'missing_fields [metadata] item 0: only items[0] lost it');
}

faults({ hostile => 'bad_values' });
{
	my $s = get("/$b")->{json};
	is_deeply($s, { batchId => '', status => 'exploded', createdAt => 'not-a-time', completedAt => 'not-a-time',
			totalCount => -1, processedCount => -1, successCount => -1, failureCount => -1 },
		'bad_values: a status with an empty id, an unknown status, bad times, negative counts');
	my $p = get("/$a/items?limit=50")->{json};
	is($p->{cursor}, '', 'bad_values: an empty cursor');
	is_deeply([ map { $_->{itemId} } @{ $p->{items} } ], [ '', '', '' ], 'bad_values: empty item ids');
	is_deeply([ map { $_->{isSuccess} ? 1 : 0 } @{ $p->{items} } ], [ 0, 0, 1 ], 'bad_values: isSuccess negated');
	is_deeply($p->{items}[2]{error}, { code => '', message => '' }, 'bad_values: empty error code and message');
	is_deeply($p->{items}[0]{person}, $a_items->[0]{person}, 'bad_values: person untouched (opaque)');
	is_deeply($p->{items}[0]{metadata}, $a_items->[0]{metadata}, 'bad_values: metadata untouched');
	my $lb = get()->{json};
	is($lb->{total}, -1, 'bad_values: a negative total');
	is(scalar(grep { $_->{status} eq 'exploded' } @{ $lb->{batches} }), scalar @{ $lb->{batches} },
		'bad_values: every listed batch has an unknown status');
}
faults({ hostile => 'bad_values', hostile_fields => ['processedCount'] });
is_deeply(get("/$b")->{json}, { %{ $normal{batch_status} }, processedCount => -1 },
	'bad_values [processedCount]: only that count is negative');

# ---------------------------------------------------------------------
# bad_utf8: the selected strings end in 80 c3, a person's fullName too
# ---------------------------------------------------------------------
faults({ hostile => 'bad_utf8', hostile_fields => ['status'] });
{
	my $r = get("/$b");
	ok(!defined $r->{json}, 'bad_utf8 [status]: the body is not valid JSON text (not UTF-8)');
	like($r->{content}, qr/"status":"[a-z]+\x80\xc3"/, 'bad_utf8 [status]: the status ends in 80 c3');
}
faults({ hostile => 'bad_utf8', hostile_fields => ['person'], hostile_item => 0 });
{
	my $body = get("/$a/items?limit=50")->{content};
	my @bad = $body =~ /"fullName":"[^"]*\x80\xc3"/g;
	is(scalar @bad, 1, 'bad_utf8 [person] item 0: one fullName ends in 80 c3');
	like($body, qr/^\{"items":\[\{[^\x80]*"fullName":"[^"]*\x80\xc3"/, 'bad_utf8 [person] item 0: the first item\'s');
}
faults({});

# ---------------------------------------------------------------------
# duplicate_items, replay_cursor, rewind_cursor
# ---------------------------------------------------------------------
# walk pages a batch, returning the item ids seen and the cursors, at most $max pages
sub walk
{
	my ($id, $limit, $max) = @_;
	my (@ids, @cursors);
	my $cursor;
	for (1 .. $max)
	{
		my $r = get("/$id/items?limit=$limit" . (defined $cursor ? "&cursor=$cursor" : ''));
		return (\@ids, \@cursors, "status $r->{status}") unless $r->{status} == 200;
		push @ids, [ map { $_->{itemId} } @{ $r->{json}{items} } ];
		$cursor = $r->{json}{cursor};
		push @cursors, $cursor;
		return (\@ids, \@cursors, 'end') unless defined $cursor;
	}
	return (\@ids, \@cursors, 'pages left');
}

my $big = $m->bulk_enrich([ map { { personId => "host-big-$_", metadata => { enrichRequestId => 100 + $_ } } } 0 .. 9 ])
  ->{json}{batchId} // 'none';
$m->wait_batch($big);
my @big_ids = map { sprintf('itm_%s_%07d', ($big =~ /^bat_(\d+)_/)[0], $_) } 0 .. 9;
{
	my ($pages, undef, $how) = walk($big, 4, 10);
	is($how, 'end', 'no fault: the walk ends');
	is_deeply([ map { @$_ } @$pages ], \@big_ids, 'no fault: 10 items once each in 3 pages');
}
faults({ hostile => 'duplicate_items' });
{
	my ($pages, undef, $how) = walk($big, 4, 20);
	is($how, 'end', 'duplicate_items: the walk still ends');
	my @all = map { @$_ } @$pages;
	my %seen;
	$seen{$_}++ for @all;
	is_deeply([ sort keys %seen ], \@big_ids, 'duplicate_items: every item comes');
	ok(@all > 10, 'duplicate_items: some come twice (' . scalar(@all) . ' items for 10)');
	is_deeply($pages->[0], [ @big_ids[ 0 .. 3 ] ], 'duplicate_items: the first page is normal');
	is_deeply($pages->[1], [ @big_ids[ 2 .. 5 ] ], 'duplicate_items: the second page repeats the last 2 items of the first');
	ok((grep { @$_ > 4 } @$pages) == 0, 'duplicate_items: no page is over its limit');
	my ($one) = walk($big, 1, 20);
	is_deeply([ map { @$_ } @$one ], \@big_ids, 'duplicate_items with limit 1: no room to repeat, pages are normal');
}
faults({ hostile => 'replay_cursor' });
{
	my $first = get("/$big/items?limit=4")->{json};
	is_deeply([ map { $_->{itemId} } @{ $first->{items} } ], [ @big_ids[ 0 .. 3 ] ], 'replay_cursor: the first page has its items');
	my $again = get("/$big/items?limit=4&cursor=$first->{cursor}")->{json};
	is_deeply([ map { $_->{itemId} } @{ $again->{items} } ], [ @big_ids[ 0 .. 3 ] ],
		'replay_cursor: its cursor gives the same page again');
	is($again->{cursor}, $first->{cursor}, 'replay_cursor: and the same cursor');
	my (undef, $cursors, $how) = walk($big, 50, 3);
	is($how, 'pages left', 'replay_cursor: a walk never ends');
	ok(defined $cursors->[0], 'replay_cursor: even the last page has a cursor (not null)');
}
faults({ hostile => 'rewind_cursor' });
{
	my $clean = get_clean("/$big/items?limit=4");
	is_deeply(get("/$big/items?limit=4")->{json}, $clean, 'rewind_cursor: the first page is left alone');
	my $p2 = get("/$big/items?limit=4&cursor=$clean->{cursor}")->{json};
	is_deeply([ map { $_->{itemId} } @{ $p2->{items} } ], [ @big_ids[ 4 .. 7 ] ], 'rewind_cursor: the second page has its items');
	my $back = get("/$big/items?limit=4&cursor=$p2->{cursor}")->{json};
	is_deeply([ map { $_->{itemId} } @{ $back->{items} } ], [ @big_ids[ 0 .. 3 ] ], 'rewind_cursor: its cursor leads back to the first page');
	is($back->{cursor}, $clean->{cursor}, 'rewind_cursor: whose cursor leads to the second page again');
	my ($pages, $cursors, $how) = walk($big, 4, 6);
	is($how, 'pages left', 'rewind_cursor: a walk never ends');
	is(scalar(grep { defined $_ && $_ eq ($cursors->[0] // '') } @$cursors), 3,
		'rewind_cursor: it goes round the first two pages, never asked for the cursor it gets');
	my ($end) = walk($big, 50, 1);
	is_deeply([ map { @$_ } @$end ], \@big_ids, 'rewind_cursor: a batch in one page ends normally');
}
faults({ batch_fail_rate => 1 });
my $failed = $m->bulk_enrich([ { personId => 'host-failed-1' } ])->{json}{batchId} // 'none';
$m->wait_batch($failed);
faults({ hostile => 'replay_cursor' });
is_deeply(get("/$failed/items")->{json}, { items => [], cursor => undef }, 'replay_cursor: a failed batch is left alone');
faults({ hostile => 'duplicate_items' });
{
	my $before = hostile_count('batch_status');
	is_deeply(get("/$b")->{json}, $normal{batch_status}, 'duplicate_items: batch status untouched');
	is_deeply(get("/$b/items/$b_item0")->{json}, $normal{get_item}, 'duplicate_items: get item untouched');
	is(hostile_count('batch_status'), $before, 'and not counted');
}

# ---------------------------------------------------------------------
# foreign_metadata
# ---------------------------------------------------------------------
faults({ hostile => 'foreign_metadata' });
{
	my $p = get("/$b/items?limit=50")->{json};
	is_deeply([ map { $_->{metadata} } @{ $p->{items} } ],
		[ map { $a_items->[ $_ % 3 ]{metadata} } 0 .. 3 ],
		'foreign_metadata: items of B echo the metadata of the batch before (A), by place');
	is_deeply([ map { $_->{person} } @{ $p->{items} } ], [ map { $_->{person} } @$b_items ],
		'foreign_metadata: persons are B\'s own');
	is_deeply(get("/$b/items/$b_item0")->{json}{metadata}, $a_items->[0]{metadata},
		'foreign_metadata: get item too');
	is_deeply(get("/$a/items?limit=50")->{json}, get_clean("/$a/items?limit=50"),
		'foreign_metadata: the first batch of the environment has no other to take from: unchanged');
	is_deeply(get("/$b")->{json}, $normal{batch_status}, 'foreign_metadata: batch status untouched');
	my $live = $m->request(GET => "$LBE/$l/items")->{json};
	is(EnrichMock::jtype($live->{items}[0]{metadata}), 'null', 'foreign_metadata: a live batch takes nothing from test batches');
}
faults({ hostile => 'foreign_metadata', hostile_item => 1 });
{
	my $p = get("/$b/items?limit=50")->{json};
	is_deeply([ map { $_->{metadata}{enrichRequestId} } @{ $p->{items} } ], [ 11, 2, 13, 14 ],
		'foreign_metadata item 1: only items[1] echoes A\'s metadata');
}
faults({ hostile => 'foreign_metadata', hostile_offset => -10 });
{
	my $p = get("/$b/items?limit=50")->{json};
	is_deeply([ map { $_->{metadata} } @{ $p->{items} } ],
		[ map { { enrichRequestId => $_, tag => "b$_" } } 1 .. 4 ],
		'foreign_metadata offset -10: enrichRequestId shifted, the rest of the metadata kept');
	my $before = hostile_count('list_items');
	is(EnrichMock::jtype(get("/$failed/items")->{json}{items}), 'array', '(a page without items)');
	my $live = $m->request(GET => "$LBE/$l/items")->{json};
	is(EnrichMock::jtype($live->{items}[0]{metadata}), 'null', 'foreign_metadata offset: an item without enrichRequestId is left alone');
	is(hostile_count('list_items'), $before, 'and not counted');
}

# ---------------------------------------------------------------------
# rate, restrictions, what is left alone, stats
# ---------------------------------------------------------------------
faults({ hostile => 'deep', hostile_depth => 4, hostile_rate => 0 });
is_deeply(get("/$b")->{json}, $normal{batch_status}, 'hostile_rate 0: nothing changes');
faults({ hostile => 'deep', hostile_depth => 4, hostile_rate => 0.5 });
{
	my $deep = grep { get("/$b")->{content} =~ /^\{"_mockDeep"/ } 1 .. 60;
	ok($deep >= 10 && $deep <= 50, "hostile_rate 0.5: a mix ($deep of 60 hostile)");
}
faults({ hostile => 'deep', hostile_depth => 4, endpoints => ['batch_status'] });
{
	like(get("/$b")->{content}, qr/^\{"_mockDeep"/, 'endpoints [batch_status]: batch status hostile');
	is_deeply(get("/$b/items?limit=50")->{json}, $normal{list_items}, 'endpoints [batch_status]: list items not');
	is(get()->{content} =~ /_mockDeep/ ? 1 : 0, 0, 'endpoints [batch_status]: list batches not');
}
faults({ hostile => 'deep', hostile_depth => 4, environments => ['live'] });
{
	is_deeply(get("/$b")->{json}, $normal{batch_status}, 'environments [live]: a test batch status is normal');
	like($m->request(GET => "$LBE/$l")->{content}, qr/^\{"_mockDeep"/, 'environments [live]: a live one hostile');
}
faults({ rate_5xx => 1, environments => ['test'] });
{
	ok(get("/$b")->{status} =~ /^50[0234]$/, 'environments [test] applies to every fault: 5xx in test');
	is($m->request(GET => "$LBE/$l")->{status}, 200, 'environments [test]: live unaffected');
}
faults({ hostile => 'deep', hostile_depth => 4 });
{
	$err->(get('/bat_99999999_deadbeef'), 404, 'not_found', undef, 'hostile: a 404 is left alone');
	$err->(get("/$b/items?limit=99"), 400, 'invalid_request', undef, 'hostile: a 400 is left alone');
	$err->($m->request(GET => $BE, key => undef), 401, 'unauthorized', undef, 'hostile: a 401 is left alone');
	my $r = $m->request(GET => '/__mock/stats');
	ok(ref $r->{json} eq 'HASH' && !exists $r->{json}{_mockDeep}, 'hostile: /__mock/* are left alone');
}
faults({ hostile => 'deep', hostile_depth => 4, rate_malformed => 1 });
{
	my $r = get("/$b");
	ok(!defined $r->{json} && $r->{content} !~ /_mockDeep/, 'rate_malformed wins over hostile: half the plain body')
	  or diag $r->{content};
}
faults({ hostile => 'deep', hostile_depth => 4, extra_field => JSON::PP::true() });
{
	my $j = get("/$b")->{json};
	ok(ref $j eq 'HASH' && ref $j->{_mockExtra} eq 'HASH' && ref $j->{_mockDeep} eq 'ARRAY',
		'extra_field with hostile: the real members get _mockExtra, then the hostile change');
}
faults({});
{
	my $s = $m->stats;
	ok(ref $s->{hostile} eq 'HASH', 'stats: "hostile" counts answers a hostile fault changed');
	ok(($s->{hostile}{$_} // 0) > 0, "stats: hostile $_ counted") for qw(list_items batch_status get_item list_batches bulk_enrich);
	is($s->{endpoints}{batch_status}{200} >= $s->{hostile}{batch_status} ? 1 : 0, 1,
		'stats: hostile answers are counted under their status too');
	is_deeply(get("/$b")->{json}, $normal{batch_status}, '{} clears the hostile fault');
	$m->reset;
	ok(!exists $m->stats->{hostile}, 'reset: hostile counts cleared');
}

# --faults at start, and the server survives it all
$m->stop;
$m = EnrichMock->start(seed => 7, faults => { hostile => 'missing_fields', hostile_fields => ['batchId'] });
{
	my $r = $m->bulk_enrich([ { personId => 'host-start-1' } ]);
	is_deeply($r->{json}, {}, '--faults: hostile from the start');
	is($m->stop, 0, 'the mock stops cleanly (exit 0) after hostile answers');
}

done_testing();
