# The packaging files say the same thing: META.json (PGXN's meta spec 1.0)
# has every field a release needs, its version is the control file's
# default_version (the one the library reports too), the file it names for
# the extension exists, the version has an install or upgrade script and a
# CHANGELOG.md section, and the PostgreSQL range covers the majors CI tests.
use strict;
use warnings;
use FindBin;
use JSON::PP;
use Test::More;

my $top = "$FindBin::Bin/../..";

sub slurp
{
	my ($path) = @_;
	open my $fh, '<', "$top/$path" or die "cannot read $path: $!";
	local $/;
	return scalar <$fh>;
}

my $meta = JSON::PP->new->decode(slurp('META.json'));
my %control = slurp('enrich.control') =~ /^(\w+)\s*=\s*'([^']*)'/mg;

for my $field (qw(name abstract version maintainer license provides prereqs resources meta-spec))
{
	ok(defined $meta->{$field}, "META.json has $field");
}
is($meta->{name}, 'enrich', 'the distribution is enrich');
is($meta->{'meta-spec'}{version}, '1.0.0', 'it follows meta spec 1.0.0');
is($meta->{license}, 'postgresql', 'the license is the PostgreSQL License');
like(slurp('LICENSE'), qr/^PostgreSQL License/, 'which LICENSE holds');

# the control file's version, in semantic version form (1.1 is 1.1.0)
my $version = $control{default_version};
my $semver = join('.', (split(/\./, $version), 0, 0)[0 .. 2]);
is($meta->{version}, $semver, "the distribution's version is the control file's ($version)");
my $ext = $meta->{provides}{enrich};
ok($ext, 'META.json provides the extension enrich');
is($ext->{version}, $semver, 'at the same version');
is($ext->{abstract}, $control{comment}, "its abstract is the control file's comment");
ok(-e "$top/$ext->{file}", "the file it names ($ext->{file}) exists");
ok(-e "$top/$ext->{docfile}", "so does its documentation ($ext->{docfile})");

# the version can be installed: a script for it, or an upgrade path to it
opendir(my $dh, "$top/sql") or die "sql: $!";
my @scripts = grep { /^enrich--.*\.sql$/ } readdir $dh;
closedir $dh;
ok((grep { $_ eq "enrich--$version.sql" || /^enrich--[\d.]+--\Q$version\E\.sql$/ } @scripts),
	"an install or upgrade script reaches $version");
like(slurp('CHANGELOG.md'), qr/^## \Q$version\E\b/m, "CHANGELOG.md has a section for $version");

# the PostgreSQL range: a lower bound at or below every tested major, an
# upper bound above them
my $range = $meta->{prereqs}{runtime}{requires}{PostgreSQL} // '';
my ($low) = $range =~ />=\s*(\d+)/;
my ($high) = $range =~ /<\s*(\d+)/;
for my $major (split ' ', $ENV{ENRICH_MAJORS} // '15 17 18')
{
	ok(defined $low && defined $high && $low <= $major && $major < $high,
		"the PostgreSQL range ($range) admits $major");
}

done_testing();
