# Determinism: same input -> same person (across batches and restarts), /__mock/person,
# and the seeded fault generator.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../../perl";
use Test::More;
use EnrichMock;

-x EnrichMock->bin_path or BAIL_OUT('mock binary not built (make -C test/mock)');

my $BE = '/v2/test/person/bulk-enrich';
my @reqs = (
	{ professionalSocialMediaUrl => 'https://www.linkedin.com/in/jane-doe' },
	{ personId => 'p-42' },
	{ pdlId => 'pdl-7' },
	{ professionalSocialMediaUrl => 'linkedin.com/sales/lead/ACwAAA1' },
	{ personId => 'p-43' });
my @query = ([ professionalSocialMediaUrl => 'linkedin.com/in/JANE-DOE/' ], [ personId => 'p-42' ], [ pdlId => 'pdl-7' ],
	[ professionalSocialMediaUrl => 'https://linkedin.com/sales/lead/acwaaa1' ], [ personId => 'p-43' ]);

sub persons
{
	my ($m, $env) = @_;
	$env //= 'test';
	my $r = $m->bulk_enrich(\@reqs, env => $env);
	is($r->{status}, 202, "batch in $env accepted");
	my $id = $r->{json}{batchId} // 'none';
	$m->wait_batch($id, env => $env);
	my $items = $m->request(GET => "/v2/$env/person/bulk-enrich/$id/items")->{json}{items} // [];
	is(scalar(grep { $_->{isSuccess} } @$items), scalar @reqs, 'all succeed');
	return [ map { $_->{person} } @$items ];
}

my $m = EnrichMock->start(seed => 1);
my $p1 = persons($m);
my $p2 = persons($m);
is_deeply($p2, $p1, 'same input, second batch: the same persons');
my $p3 = persons($m, 'live');
is_deeply($p3, $p1, 'same input in the live environment: the same persons');
{
	my %distinct = map { EnrichMock->json_encode($_) => 1 } @$p1;
	is(scalar keys %distinct, scalar @reqs, 'different identifiers give different persons (even p-42 / p-43)');
	ok(!(grep { ref $_ ne 'HASH' || !%$_ } @$p1), 'every person a non-empty object');
}
for my $i (0 .. $#query)
{
	my $p = $m->person(@{ $query[$i] });
	is_deeply($p->{person}, $p1->[$i], "/__mock/person?$query[$i][0]=$query[$i][1] is what the item carries");
	is_deeply([ sort keys %$p ], [qw(identifier person)], '/__mock/person answers {identifier, person}');
}
$m->stop;

# across a restart, and with another seed (the seed is for faults only)
$m = EnrichMock->start(seed => 1);
is_deeply(persons($m), $p1, 'after a restart: the same persons');
$m->stop;
$m = EnrichMock->start(seed => 99, start_delay_ms => 100, items_per_second => 100);
is_deeply(persons($m), $p1, 'another seed and processing speed: the same persons');
$m->stop;

# people are not ASCII: a quarter of persons, and every "unicode" one, carry
# raw UTF-8 (not \u escapes); a "unicode" failure message too
$m = EnrichMock->start();
{
	my $raw = $m->request(GET => '/__mock/person?personId=p-unicode-1')->{content};
	ok($raw =~ /[\x80-\xff]/ && $raw !~ /\\u/, 'a "unicode" person is raw UTF-8, without \\u escapes');
	ok(utf8::decode(my $copy = $raw), 'and well-formed UTF-8');
	my $non_ascii = grep { $m->request(GET => "/__mock/person?personId=p-$_")->{content} =~ /[\x80-\xff]/ } 1 .. 400;
	ok($non_ascii >= 70 && $non_ascii <= 130, "a share of other persons is not ASCII ($non_ascii of 400)");
	my $batch = $m->bulk_enrich([ { personId => 'p-unicode-notfound' } ])->{json}{batchId};
	$m->wait_batch($batch);
	my $page = $m->request(GET => "$BE/$batch/items?limit=10")->{content};
	like($page, qr/"message":"aucune personne ne correspond [^"]*\x{f0}\x{9f}\x{94}\x{8d}"/,
		'a "unicode" failure message is raw UTF-8 too');
}
$m->stop;

# the seeded fault generator: same seed, same sequence of requests -> same faults
sub fault_sequence
{
	my ($seed) = @_;
	my $mm = EnrichMock->start(seed => $seed, faults => { rate_5xx => 0.5 });
	my @s = map { $mm->request(GET => $BE)->{status} } 1 .. 40;
	$mm->stop;
	return \@s;
}
my $s1 = fault_sequence(7);
my $s2 = fault_sequence(7);
is_deeply($s2, $s1, '--seed 7 twice: the same fault sequence') or diag "@$s1\n@$s2";
ok((grep { $_ == 200 } @$s1) && (grep { $_ != 200 } @$s1), 'the sequence mixes faults and normal answers');

done_testing();
