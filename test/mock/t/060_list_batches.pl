# List batches: order, total, limit/offset, createdAfter, unknown parameters.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../../perl";
use Test::More;
use Time::HiRes qw(sleep);
use Time::Local qw(timegm);
use POSIX qw(strftime);
use EnrichMock;

-x EnrichMock->bin_path or BAIL_OUT('mock binary not built (make -C test/mock)');

my $BE = '/v2/test/person/bulk-enrich';
my $err = \&EnrichMock::check_error;
my $m = EnrichMock->start(seed => 1);
my @FIELDS = sort qw(batchId status createdAt completedAt totalCount processedCount successCount failureCount);

sub list { my ($q) = @_; $m->request(GET => $BE . (defined $q ? "?$q" : '')) }
sub ids { [ map { $_->{batchId} } @{ $_[0]{json}{batches} // [] } ] }

# --- empty
{
	my $r = list();
	is($r->{status}, 200, 'list batches 200');
	like($r->{headers}{'content-type'} // '', qr{^application/json}i, 'list batches content-type application/json');
	is_deeply($r->{json}, { batches => [], total => 0 }, 'no batches: {"batches": [], "total": 0}');
	is(EnrichMock::jtype($r->{json}{total}), 'integer', 'total is a JSON integer');
}

# --- A, B, C in quick succession, D a second later
my @created;
for my $n (1 .. 3)
{
	my $r = $m->bulk_enrich([ map { { personId => "list-$n-$_" } } 1 .. $n ]);
	push @created, $r->{json}{batchId} // "none$n";
}
sleep 1.1;
push @created, $m->bulk_enrich([ { personId => 'list-4' } ])->{json}{batchId} // 'none4';
my @newest_first = reverse @created;

my $all = list();
is_deeply(ids($all), \@newest_first, 'newest first (createdAt desc, then batchId desc)');
is($all->{json}{total}, 4, 'total 4');
{
	my @b = @{ $all->{json}{batches} // [] };
	is(scalar(grep { join(',', sort keys %$_) eq join(',', @FIELDS) } @b), 4, 'each entry is a full BatchStatus');
	my $sorted = 1;
	for my $i (1 .. $#b)
	{
		my ($x, $y) = @b[ $i - 1, $i ];
		$sorted = 0 unless $x->{createdAt} gt $y->{createdAt}
		  || ($x->{createdAt} eq $y->{createdAt} && $x->{batchId} gt $y->{batchId});
	}
	ok($sorted, 'entries strictly ordered by (createdAt, batchId) descending');
	ok($b[0]{createdAt} gt $b[-1]{createdAt}, 'the batch made a second later has a later createdAt');
	my ($one) = grep { $_->{batchId} eq $created[2] } @b;
	is($one && $one->{totalCount}, 3, 'entry counts match the batch (totalCount 3)');
	is_deeply($one, $m->request(GET => "$BE/$created[2]")->{json}, 'entry equals the batch status');
}

# --- limit / offset
is_deeply(ids(list('limit=2')), [ @newest_first[ 0, 1 ] ], 'limit=2: the two newest');
is(list('limit=2')->{json}{total}, 4, 'limit=2: total still counts all 4');
is_deeply(ids(list('limit=2&offset=2')), [ @newest_first[ 2, 3 ] ], 'limit=2&offset=2: the two oldest');
is_deeply(ids(list('offset=3')), [ $newest_first[3] ], 'offset=3: the oldest');
is_deeply(ids(list('offset=4')), [], 'offset=4: empty');
is(list('offset=4')->{json}{total}, 4, 'offset=4: total 4');
is_deeply(ids(list('offset=100')), [], 'offset past the end: empty, not an error');
is_deeply(ids(list('limit=1')), [ $newest_first[0] ], 'limit=1');
is_deeply(ids(list('limit=1000&offset=0')), \@newest_first, 'limit=1000&offset=0');
for my $bad (qw(0 1001 -1 abc 1.5), '')
{
	$err->(list("limit=$bad"), 400, 'invalid_request', qr/limit/, "limit=$bad -> 400 naming limit");
}
for my $bad (qw(-1 abc 1.5), '')
{
	$err->(list("offset=$bad"), 400, 'invalid_request', qr/offset/, "offset=$bad -> 400 naming offset");
}

# --- createdAfter (dates from the batches' own createdAt, so midnight cannot break the test)
my ($first_day) = ($all->{json}{batches}[-1]{createdAt} // '') =~ /^(\d{4}-\d\d-\d\d)/;
my ($last_day) = ($all->{json}{batches}[0]{createdAt} // '') =~ /^(\d{4}-\d\d-\d\d)/;
$first_day //= '2000-01-01';
$last_day //= '2000-01-01';
sub day_add
{
	my ($d, $n) = @_;
	my ($y, $mo, $da) = split /-/, $d;
	return strftime('%Y-%m-%d', gmtime(timegm(0, 0, 12, $da, $mo - 1, $y) + $n * 86400));
}
{
	my $r = list("createdAfter=$first_day");
	is_deeply(ids($r), \@newest_first, "createdAfter=$first_day (the creation day) includes every batch");
	is($r->{json}{total}, 4, 'and total 4');
	is_deeply(ids(list('createdAfter=' . day_add($first_day, -1))), \@newest_first, 'createdAfter the day before: all');
	is_deeply(ids(list('createdAfter=2000-01-01')), \@newest_first, 'createdAfter=2000-01-01: all');
	$r = list('createdAfter=' . day_add($last_day, 1));
	is_deeply(ids($r), [], 'createdAfter the next day: none');
	is($r->{json}{total}, 0, 'and total 0');
	is_deeply(ids(list("createdAfter=$first_day&limit=1&offset=1")), [ $newest_first[1] ], 'createdAfter with limit and offset');
}
for my $bad (qw(2026-13-01 2026-00-10 2026-02-30 2025-02-29 26-01-01 2026/01/01 2026-1-1 today), '2026-01-01T00:00:00Z')
{
	$err->(list('createdAfter=' . $bad), 400, 'invalid_request', qr/createdAfter/, "createdAfter=$bad -> 400 naming createdAfter");
}

# --- unknown parameters
$err->(list('foo=1'), 400, 'invalid_request', qr/foo/, 'unknown query parameter -> 400 naming it');
$err->(list('Limit=5'), 400, 'invalid_request', qr/Limit/, 'parameter names are case-sensitive: Limit -> 400');
$err->(list('limit=5&status=completed'), 400, 'invalid_request', qr/status/, 'unknown parameter beside a valid one -> 400');

done_testing();
