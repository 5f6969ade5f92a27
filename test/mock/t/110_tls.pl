# HTTPS with --tls-cert/--tls-key, checked with the system curl and a throwaway CA.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../../perl";
use Test::More;
use File::Temp ();
use EnrichMock;

-x EnrichMock->bin_path or BAIL_OUT('mock binary not built (make -C test/mock)');

sub have { system("command -v $_[0] >/dev/null 2>&1") == 0 }
plan skip_all => 'openssl and curl are needed' unless have('openssl') && have('curl');

my $dir = File::Temp->newdir('enrich-tls-XXXXXX', TMPDIR => 1);
sub run { my @c = @_; my $out = qx{@c 2>&1}; die "failed: @c\n$out" if $?; $out }
my $d = $dir->dirname;
run("openssl req -x509 -newkey rsa:2048 -nodes -keyout $d/ca.key -out $d/ca.pem -days 2 -subj /CN=enrich-test-ca"
	  . " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign");
run("openssl req -newkey rsa:2048 -nodes -keyout $d/server.key -out $d/server.csr -subj /CN=localhost");
open(my $fh, '>', "$d/ext.cnf") or die;
print $fh "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
  . "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n";
close $fh;
run("openssl x509 -req -in $d/server.csr -CA $d/ca.pem -CAkey $d/ca.key -CAcreateserial -out $d/server.pem -days 2 -extfile $d/ext.cnf");
ok(-s "$d/server.pem" && -s "$d/server.key", 'throwaway CA and server certificate made');

my $m = EnrichMock->start(tls_cert => "$d/server.pem", tls_key => "$d/server.key", tls_ca => "$d/ca.pem", seed => 1);
like($m->url, qr{^https://127\.0\.0\.1:\d+$}, 'url is https');
my $port = $m->port;
{
	my $line = '';
	for (1 .. 100) { $line = $m->stdout_text; last if $line =~ /\n/; select(undef, undef, undef, 0.02); }
	like($line, qr{^aggk-mock listening on https://127\.0\.0\.1:$port\r?\n}m, 'start line says https');
}

# curl: returns (exit code, http code, body)
sub curl
{
	my (@args) = @_;
	my $out = File::Temp->new(DIR => $d);
	my @cmd = ('curl', '-s', '--noproxy', '*', '--max-time', '10', '-o', $out->filename, '-w', '%{http_code}', @args);
	open(my $p, '-|', @cmd) or die "curl: $!";
	local $/;
	my $code = <$p> // '';
	close $p;
	my $rc = $? >> 8;
	open(my $b, '<', $out->filename) or die;
	my $body = <$b> // '';
	return ($rc, $code, $body);
}

my $base = "https://127.0.0.1:$port/v2/test/person/bulk-enrich";
{
	my ($rc, $code, $body) = curl('--cacert', "$d/ca.pem", '-H', 'x-api-key: test-key', $base);
	is($rc, 0, 'curl --cacert: TLS handshake and certificate verification succeed');
	is($code, '200', 'HTTPS list batches 200');
	my $j = EnrichMock::json_decode($body);
	ok(ref $j eq 'HASH' && exists $j->{batches}, 'HTTPS body is the JSON list');

	($rc, $code, $body) = curl('--cacert', "$d/ca.pem", '-H', 'x-api-key: test-key', '-H', 'content-type: application/json',
		'--data-binary', '{"requests":[{"personId":"tls-1"}]}', $base);
	is($code, '202', 'HTTPS bulk enrich 202');
	like($body, qr/"batchId"/, 'with a batchId');

	($rc, $code) = curl('--cacert', "$d/ca.pem", '-H', 'x-api-key: test-key', "https://localhost:$port/v2/test/person/bulk-enrich");
	is($code, '200', 'https://localhost works too (certificate SAN)');

	($rc, $code) = curl('-H', 'x-api-key: test-key', $base);
	isnt($rc, 0, "without the CA the certificate is not trusted (curl exit $rc)");

	($rc, $code) = curl('-H', 'x-api-key: test-key', "http://127.0.0.1:$port/v2/test/person/bulk-enrich");
	ok($rc != 0 || $code !~ /^[1-5]\d\d$/, "plain http to the TLS port fails (curl exit $rc, http code $code)");
}

# the module goes through curl for https when HTTP::Tiny has no TLS
{
	my $r = $m->bulk_enrich([ { personId => 'tls-2' } ]);
	is($r->{status}, 202, 'EnrichMock->request over https: 202');
	my $s = $m->stats;
	is($s->{batches}, 2, 'EnrichMock->stats over https');
	is($s->{endpoints}{bulk_enrich}{202}, 2, 'both HTTPS bulk enrich calls counted');
}
$m->stop;

# a certificate file that does not exist: the mock refuses to start
{
	my $ok = eval { EnrichMock->start(tls_cert => "$d/missing.pem", tls_key => "$d/server.key", timeout => 5); 1 };
	ok(!$ok, 'a missing certificate file: the mock does not start');
	like($@ // '', qr/exited/, 'it exits (rather than hanging)');
}

done_testing();
