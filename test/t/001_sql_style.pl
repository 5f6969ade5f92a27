# The SQL that enrich runs with privileges other than the caller's is written
# so that it means the same under any search_path: every operator as
# OPERATOR(pg_catalog.x), every function qualified, every cast to a
# pg_catalog (or enrich) type, and no construct that looks an operator up by
# name (IN lists, IS DISTINCT FROM, NULLIF, BETWEEN, LIKE).  The statements
# also run under a pinned search_path (TAP 085 plants look-alikes to prove
# it); this reads the C sources' SQL text and names each line that breaks
# the rule, so the rule holds for statements no test reaches.
use strict;
use warnings;
use FindBin;
use Test::More;

my $src = "$FindBin::Bin/../../src";
my @files = sort glob("$src/*.c");
ok(@files > 5, 'the C sources are there (' . scalar(@files) . ' files)');

# the functions enrich's SQL calls, which must be schema-qualified
my $functions = join '|', qw(now clock_timestamp count min max sum random unnest hashtext
  power mod ceil cardinality array_agg jsonb_build_array jsonb_build_object format
  current_setting to_char pg_backend_pid nextval row_number percentile_cont
  pg_get_serial_sequence jsonb_typeof set_config timezone date_trunc);

my @problems;
for my $file (@files)
{
	open my $fh, '<', $file or die "$file: $!";
	my $n = 0;
	while (my $line = <$fh>)
	{
		$n++;
		next if $line =~ m{^\s*(/?\*|//)};    # comments
		# the SQL text of the line: its string literals, together
		my $sql = join ' ', $line =~ /"((?:[^"\\]|\\.)*)"/g;
		next unless $sql =~ /\b(SELECT|UPDATE|INSERT|DELETE|WHERE|FROM|SET|AND|OR|WHEN|THEN|ON|RETURNING|VALUES)\b/;
		next if $line =~ /\b(errmsg|errdetail|errhint|elog)\(/;    # messages
		(my $bare = $sql) =~ s/OPERATOR\(pg_catalog\.[^)]*\)|OPERATOR\(%s\.%s\)|%s//g;
		$bare =~ s/\b(SELECT|RETURNING)\s+\*|\w+\.\*|\(\*\)//g;    # star, not times
		my @why;
		push @why, 'an IN list' if $bare =~ /\bIN\s*\(/;
		push @why, 'IS DISTINCT FROM' if $bare =~ /\bDISTINCT\s+FROM\b/;
		push @why, "$1" if $bare =~ /\b(NULLIF|BETWEEN|LIKE|ILIKE)\b/;
		push @why, "a bare comparison" if $bare =~ /(\bWHERE|\bAND|\bOR|\bON|\bWHEN|\bTHEN|\bNOT|\()\s*[\w.\$()']+\s*(=|<>|!=|<=|>=|<|>)\s*[\w\$('\-]/;
		push @why, "bare arithmetic" if $bare =~ /[\w)'\$]\s+[-+*\/&|%]\s+[\w\$('(]/;
		push @why, "an unqualified $1()" if $bare =~ /(?<![\w.])($functions)\s*\(/;
		push @why, "a cast to $1" if $bare =~ /::(?!pg_catalog\.|enrich\.)(\w+)/;
		push @problems, "$file:$n: " . join(', ', @why) . ": $sql" if @why;
	}
	close $fh;
}
is(scalar(@problems), 0, 'no SQL line of src/ resolves an operator, function or type by search_path')
  or diag(join("\n", @problems));

done_testing();
