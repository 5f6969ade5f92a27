# Identifier normalization: LinkedIn URL forms, Sales Navigator / Recruiter, precedence.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../../perl";
use Test::More;
use EnrichMock;

-x EnrichMock->bin_path or BAIL_OUT('mock binary not built (make -C test/mock)');

my $m = EnrichMock->start(seed => 1);
my $BE = '/v2/test/person/bulk-enrich';

# submit @reqs as one batch, wait, return its items
sub items_of
{
	my (@reqs) = @_;
	my $r = $m->bulk_enrich(\@reqs);
	is($r->{status}, 202, 'batch of ' . scalar(@reqs) . ' accepted') or diag $r->{content};
	my $id = $r->{json}{batchId} // 'none';
	my $s = $m->wait_batch($id);
	is($s && $s->{status}, 'completed', "batch $id completed");
	my $p = $m->request(GET => "$BE/$id/items?limit=50");
	return @{ $p->{json}{items} // [] };
}

# --- the contract's three forms (and more) are one person
my @variants = ('linkedin.com/in/Jane-Doe/', 'http://uk.linkedin.com/in/jane-doe', 'https://www.linkedin.com/in/jane-doe',
	'www.linkedin.com/in/jane-doe', 'https://de.linkedin.com/in/jane-doe?trk=public_profile#about',
	'HTTPS://WWW.LINKEDIN.COM/IN/JANE-DOE/');
my @items = items_of(map { { professionalSocialMediaUrl => $_ } } @variants);
is(scalar @items, scalar @variants, 'one item per variant');
ok((grep { $_->{isSuccess} } @items) == @variants, 'every variant succeeds');
my $ref = $items[0]{person};
ok(ref $ref eq 'HASH' && %$ref, 'a person object');
for my $i (1 .. $#variants)
{
	is_deeply($items[$i]{person}, $ref, "'$variants[$i]' gives the same person as '$variants[0]'");
}
my $subs = $m->stats->{submissions};
is($subs->{'linkedin.com/in/jane-doe'}, scalar @variants,
	'submissions: all variants counted under linkedin.com/in/jane-doe');
is_deeply([ grep { /jane/i } sort keys %$subs ], ['linkedin.com/in/jane-doe'], 'no other jane-doe key in submissions');
for my $v (@variants)
{
	my $p = $m->person(professionalSocialMediaUrl => $v);
	is($p->{identifier}, 'linkedin.com/in/jane-doe', "/__mock/person identifier of '$v'");
	is_deeply($p->{person}, $ref, "/__mock/person person of '$v' is the item's person");
}

# --- Sales Navigator and Recruiter URLs
my %other = (
	'https://www.linkedin.com/sales/lead/ACwAAA1234Bc' => 'linkedin.com/sales/lead/acwaaa1234bc',
	'linkedin.com/sales/people/ACwAAXyz98' => 'linkedin.com/sales/people/acwaaxyz98',
	'http://www.linkedin.com/talent/profile/AEMAAB99/' => 'linkedin.com/talent/profile/aemaab99');
my @urls = sort keys %other;
@items = items_of(map { { professionalSocialMediaUrl => $_ } } @urls);
$subs = $m->stats->{submissions};
for my $i (0 .. $#urls)
{
	my $u = $urls[$i];
	ok($items[$i] && $items[$i]{isSuccess}, "'$u' accepted and succeeds");
	is($subs->{ $other{$u} }, 1, "'$u' normalized to $other{$u} in submissions");
	is($m->person(professionalSocialMediaUrl => $u)->{identifier}, $other{$u}, "/__mock/person identifier of '$u'");
}
isnt(Data_Dumper_sorted($items[0]{person}), Data_Dumper_sorted($items[1]{person}),
	'different profiles give different persons');

# --- personId / pdlId identifiers, value kept as is (only URLs are lower-cased)
items_of({ personId => 'Abc-42' }, { pdlId => 'Xyz-7' });
$subs = $m->stats->{submissions};
is($subs->{'personId:Abc-42'}, 1, 'personId identifier is personId:<value>');
is($subs->{'pdlId:Xyz-7'}, 1, 'pdlId identifier is pdlId:<value>');
is($m->person(personId => 'Abc-42')->{identifier}, 'personId:Abc-42', '/__mock/person?personId=');
is($m->person(pdlId => 'Xyz-7')->{identifier}, 'pdlId:Xyz-7', '/__mock/person?pdlId=');

# --- precedence: URL, else personId, else pdlId
items_of({ personId => 'prec-p1', pdlId => 'prec-d1', professionalSocialMediaUrl => 'linkedin.com/in/prec-person' },
	{ personId => 'prec-p2', pdlId => 'prec-d2' });
$subs = $m->stats->{submissions};
is($subs->{'linkedin.com/in/prec-person'}, 1, 'URL wins over personId and pdlId');
ok(!exists $subs->{'personId:prec-p1'} && !exists $subs->{'pdlId:prec-d1'}, 'personId/pdlId beside a URL not counted');
is($subs->{'personId:prec-p2'}, 1, 'personId wins over pdlId');
ok(!exists $subs->{'pdlId:prec-d2'}, 'pdlId beside a personId not counted');

sub Data_Dumper_sorted { EnrichMock->json_encode($_[0]) }

done_testing();
