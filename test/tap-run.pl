#!/usr/bin/perl
# tap-run.pl: runs TAP test scripts with TAP::Harness (prove's engine), prints
# prove's usual report, and writes "PASSED FAILED SKIPPED" subtest counts to
# the file named by --counts, so the harness can add them to its closing
# total.  A skipped subtest is not counted as passed.  A script that dies or
# exits non-zero without a failed subtest counts as one failure.  When a
# script bails out, testing stops: the counts are still written, and each
# script that was not run counts as one failure.
use strict;
use warnings;
use Getopt::Long;
use TAP::Harness;

my ($counts_file, @libs, $verbose);
GetOptions('counts=s' => \$counts_file, 'lib|I=s' => \@libs, 'verbose' => \$verbose)
  or die "usage: tap-run.pl --counts FILE [-I DIR]... TEST...\n";

my ($passed, $failed, $skipped) = (0, 0, 0);
if (@ARGV)
{
	my $harness = TAP::Harness->new({
		lib       => \@libs,
		verbosity => $verbose ? 1 : 0,
		timer     => 1,
		color     => 0,
	});
	my $agg;
	$harness->callback(after_runtests => sub { $agg = shift; });
	my $stopped;
	eval { $harness->runtests(@ARGV); 1 } or $stopped = $@ || "testing stopped\n";
	die $stopped unless $agg;
	my $not_run = @ARGV - scalar($agg->descriptions);
	if ($stopped)
	{
		print $stopped;
		print "$not_run test script(s) not run, each counted as a failure\n";
		$failed += $not_run;
	}
	for my $file ($agg->descriptions)
	{
		my ($parser) = $agg->parsers($file);
		my $file_failed = scalar($parser->failed);
		my $file_skipped = scalar($parser->skipped);
		$passed += scalar($parser->passed) - $file_skipped;
		$skipped += $file_skipped;
		$failed += $file_failed;
		$failed += 1
		  if $file_failed == 0
		  && ($parser->has_problems || $parser->exit != 0 || $parser->wait != 0);
	}
}
else
{
	print "no TAP tests found\n";
}

if ($counts_file)
{
	open my $fh, '>', $counts_file or die "cannot write $counts_file: $!";
	print $fh "$passed $failed $skipped\n";
	close $fh;
}
exit($failed ? 1 : 0);
