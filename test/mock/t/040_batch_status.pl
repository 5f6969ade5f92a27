# Batch status over time: pending -> processing -> completed, counts, timestamps, ids, 404.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../../perl";
use Test::More;
use Time::HiRes qw(time sleep);
use Time::Local qw(timegm);
use EnrichMock;

-x EnrichMock->bin_path or BAIL_OUT('mock binary not built (make -C test/mock)');

my $BE = '/v2/test/person/bulk-enrich';
my $err = \&EnrichMock::check_error;
my @FIELDS = sort qw(batchId status createdAt completedAt totalCount processedCount successCount failureCount);

sub ts
{
	my ($s) = @_;
	return undef unless defined $s && $s =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z$/;
	return timegm($6, $5, $4, $3, $2 - 1, $1);
}

# --- over time: 1.5 s pending, then 6 items at 4 per second
my $m = EnrichMock->start(start_delay_ms => 1500, items_per_second => 4, seed => 1);
my @reqs = map { { personId => "status-$_" } } 1 .. 5;
splice(@reqs, 2, 0, { personId => 'status-notfound' });
my $t0 = time;
my $r = $m->bulk_enrich(\@reqs);
is($r->{status}, 202, 'batch of 6 accepted');
my $id = $r->{json}{batchId} // 'none';

my $first = $m->request(GET => "$BE/$id");
is($first->{status}, 200, 'status 200');
like($first->{headers}{'content-type'} // '', qr{^application/json}i, 'batch status content-type application/json');
my $j = $first->{json} // {};
my %types = map { $_ => EnrichMock::jtype($j->{$_}) } keys %$j;
is_deeply([ sort keys %$j ], \@FIELDS, 'BatchStatus has exactly the contract fields');
is($types{$_}, 'integer', "$_ is a JSON integer") for qw(totalCount processedCount successCount failureCount);
is($types{$_}, 'string', "$_ is a JSON string") for qw(batchId status createdAt);
is($types{completedAt}, 'null', 'completedAt is null while pending');
is($j->{batchId}, $id, 'batchId echoed');
is($j->{status}, 'pending', 'status pending right after creation');
is($j->{totalCount}, 6, 'totalCount 6');
is($j->{processedCount}, 0, 'processedCount 0 while pending');
is($j->{successCount} + $j->{failureCount}, 0, 'no success/failure while pending');
like($j->{createdAt}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'createdAt is RFC 3339 UTC with second resolution');
my $created = ts($j->{createdAt});
ok(defined $created && abs($created - $t0) <= 5, 'createdAt is now');

my @samples;
my $deadline = time + 15;
while (time < $deadline)
{
	my $s = $m->request(GET => "$BE/$id");
	last unless $s->{status} == 200;
	my $sj = $s->{json};
	push @samples, { t => time - $t0, %$sj, completedAt_type => EnrichMock::jtype($sj->{completedAt}) };
	last if $sj->{status} eq 'completed' || $sj->{status} eq 'failed';
	sleep 0.05;
}
my @seq;
for (@samples) { push @seq, $_->{status} unless @seq && $seq[-1] eq $_->{status}; }
is_deeply(\@seq, [qw(pending processing completed)], 'status goes pending -> processing -> completed, never back')
  or diag "observed: @seq";

my ($bad_counts, $bad_mono, $bad_completed_at) = (0, 0, 0);
my $prev = 0;
for my $s (@samples)
{
	$bad_counts++ unless $s->{successCount} + $s->{failureCount} == $s->{processedCount}
	  && $s->{processedCount} <= $s->{totalCount} && $s->{totalCount} == 6;
	$bad_mono++ if $s->{processedCount} < $prev;
	$prev = $s->{processedCount};
	$bad_completed_at++ if ($s->{status} ne 'completed') != ($s->{completedAt_type} eq 'null');
}
is($bad_counts, 0, 'every sample: success + failure == processed <= total == 6');
is($bad_mono, 0, 'processedCount never decreases');
is($bad_completed_at, 0, 'completedAt null exactly until completed');
ok(!(grep { $_->{status} eq 'pending' && $_->{processedCount} != 0 } @samples), 'nothing processed while pending');
ok((grep { $_->{status} eq 'processing' && $_->{processedCount} > 0 && $_->{processedCount} < 6 } @samples),
	'a processing sample with 0 < processedCount < 6 (items processed over time)');

my ($p1) = grep { $_->{status} ne 'pending' } @samples;
my ($c1) = grep { $_->{status} eq 'completed' } @samples;
ok($p1 && $p1->{t} >= 0.4, sprintf('pending lasts the start delay (first non-pending at %.2f s of 1.5 s)', $p1 ? $p1->{t} : -1));
ok($p1 && $c1 && $c1->{t} - $p1->{t} >= 0.8,
	sprintf('6 items at 4/s take time (processing observed for %.2f s)', $p1 && $c1 ? $c1->{t} - $p1->{t} : -1));
SKIP: {
	skip 'never completed', 6 unless $c1;
	is($c1->{processedCount}, 6, 'completed: processedCount 6');
	is($c1->{successCount}, 5, 'completed: successCount 5');
	is($c1->{failureCount}, 1, 'completed: failureCount 1 (the notfound item)');
	like($c1->{completedAt}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'completedAt RFC 3339 UTC');
	cmp_ok(ts($c1->{completedAt}), '>=', $created, 'completedAt >= createdAt');
	my $again = $m->request(GET => "$BE/$id")->{json};
	is_deeply($again, { map { $_ => $c1->{$_} } @FIELDS }, 'a completed batch does not change any more');
}
$m->stop;

# --- no delay, all at once: completed at the first look
$m = EnrichMock->start(seed => 1);
$r = $m->bulk_enrich([ map { { personId => "fast-$_" } } 1 .. 3 ]);
my $real_id = $r->{json}{batchId} // 'none';
my $s = $m->request(GET => "$BE/" . ($r->{json}{batchId} // 'none'))->{json} // {};
is($s->{status}, 'completed', 'no delay, items-per-second 0: completed immediately');
is($s->{processedCount}, 3, 'all 3 processed');
ok(defined $s->{completedAt}, 'completedAt set');

# --- ids: sequence increases by one, createdAt descending order matches
my @seqs;
for (1 .. 3)
{
	my $b = $m->bulk_enrich([ { personId => "seq-$_" } ])->{json}{batchId} // '';
	push @seqs, $b =~ /^bat_(\d{8})_[0-9a-f]{8}$/ ? $1 + 0 : -1;
}
is_deeply([ map { $_ - $seqs[0] } @seqs ], [ 0, 1, 2 ], 'batch id sequence increases by one per batch');

# --- unknown query parameter
$err->($m->request(GET => "$BE/$real_id?foo=1"), 400, 'invalid_request', qr/foo/, 'batch status with an unknown query parameter -> 400');

# --- unknown batches
$err->($m->request(GET => "$BE/bat_99999999_deadbeef"), 404, 'not_found', undef, 'unknown well-formed batch id -> 404');
$err->($m->request(GET => "$BE/nonsense"), 404, 'not_found', undef, 'garbage batch id -> 404');
my $real = $r->{json}{batchId} // 'none';
(my $wrong = $real) =~ s/_([0-9a-f]{8})$/'_' . ($1 eq '00000000' ? '00000001' : '00000000')/e;
$err->($m->request(GET => "$BE/$wrong"), 404, 'not_found', undef, 'right sequence, wrong hex part -> 404');

done_testing();
