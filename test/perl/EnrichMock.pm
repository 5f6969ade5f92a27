package EnrichMock;

# Start, drive and stop the aggk-mock server (test/mock/aggk-mock) from Perl tests.
#
#   use EnrichMock;
#   my $m = EnrichMock->start(tier3 => 2, start_delay_ms => 500);
#   my $r = $m->request(POST => '/v2/test/person/bulk-enrich',
#                       json => {requests => [{personId => 'p-1'}]});
#   print $r->{status}, ' ', $r->{json}{batchId}, "\n";
#   my $stats = $m->stats;
#   $m->stop;            # also done by DESTROY and at END, so no mock outlives the test
#
# Core modules only. Temporary files go under File::Temp's tmpdir, never next to this
# file, so it works from a copied tree and as an unprivileged user.

use strict;
use warnings;

use Carp qw(croak);
use Config;
use Cwd ();
use Errno ();
use File::Basename ();
use File::Spec;
use File::Temp ();
use HTTP::Tiny;
use IO::Handle ();
use JSON::PP ();
use POSIX ();
use Scalar::Util ();
use Time::HiRes ();

our $VERSION = '1.00';

my $MODULE_DIR = File::Basename::dirname(File::Spec->rel2abs(__FILE__));

# pid => weak reference to the object, for END-time cleanup.
my %RUNNING;
# every object (weak), so END can remove temp dirs before global destruction
my %OBJECTS;

# max_depth: the mock accepts (and echoes) metadata nested far deeper than JSON::PP's 512
my $JSON = JSON::PP->new->utf8->canonical->allow_nonref->max_depth(100_000);

sub json_encode { return $JSON->encode($_[-1]) }

sub json_decode
{
	my $text = $_[-1];
	return undef unless defined $text && length $text;
	my $v = eval { $JSON->decode($text) };
	return $v;
}

# Path of the mock binary: $ENV{ENRICH_MOCK_BIN}, else ../mock/aggk-mock from here.
sub bin_path
{
	return $ENV{ENRICH_MOCK_BIN} if defined $ENV{ENRICH_MOCK_BIN} && length $ENV{ENRICH_MOCK_BIN};
	return Cwd::abs_path(File::Spec->catfile($MODULE_DIR, '..', 'mock', 'aggk-mock'))
	  // File::Spec->catfile($MODULE_DIR, '..', 'mock', 'aggk-mock');
}

# Options:
#   key_live, key_test  arrayref (or one string) of keys; default ['live-key'] / ['test-key'];
#                       [] passes no flag (with both empty the mock uses its defaults)
#   start_delay_ms, items_per_second, seed, bind, port (default 0)
#   tier3, tier4        default 0 (unlimited) when not given; undef = omit the flag
#   tls_cert, tls_key   PEM files (url becomes https); tls_ca: CA file used by curl
#   faults              hashref, passed as --faults JSON
#   verbose             boolean
#   args                arrayref of extra raw arguments
#   timeout             seconds to wait for the port file (default 10)
#   bin                 path of the binary (default bin_path())
sub start
{
	my ($class, %o) = @_;

	my $bin = $o{bin} // $class->bin_path;
	croak "EnrichMock: mock binary '$bin' not found or not executable "
	  . "(build it with 'make -C test/mock' or set ENRICH_MOCK_BIN)"
	  unless -f $bin && -x _;

	my $tmp = File::Temp->newdir('enrich-mock-XXXXXX', TMPDIR => 1, CLEANUP => 1);
	my $dir = $tmp->dirname;
	my $port_file = File::Spec->catfile($dir, 'port');
	my $out_file = File::Spec->catfile($dir, 'stdout');
	my $err_file = File::Spec->catfile($dir, 'stderr');

	my @keys_live = _list(exists $o{key_live} ? $o{key_live} : ['live-key']);
	my @keys_test = _list(exists $o{key_test} ? $o{key_test} : ['test-key']);

	my @args = ('--port', $o{port} // 0, '--port-file', $port_file);
	push @args, '--bind', $o{bind} if defined $o{bind};
	push @args, map { ('--key-live', $_) } @keys_live;
	push @args, map { ('--key-test', $_) } @keys_test;
	push @args, '--start-delay-ms', $o{start_delay_ms} if defined $o{start_delay_ms};
	push @args, '--items-per-second', $o{items_per_second} if defined $o{items_per_second};
	for my $t (qw(tier3 tier4))
	{
		my $v = exists $o{$t} ? $o{$t} : 0;
		push @args, "--$t", $v if defined $v;
	}
	push @args, '--tls-cert', $o{tls_cert} if defined $o{tls_cert};
	push @args, '--tls-key', $o{tls_key} if defined $o{tls_key};
	push @args, '--faults', (ref $o{faults} ? json_encode($o{faults}) : $o{faults})
	  if defined $o{faults};
	push @args, '--seed', $o{seed} if defined $o{seed};
	push @args, '--verbose' if $o{verbose};
	push @args, @{ $o{args} } if $o{args};

	# nothing buffered may be written twice (by the child when it reopens STDOUT)
	STDOUT->flush;
	STDERR->flush;
	my $pid = fork;
	croak "EnrichMock: fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		# child: never return into the test code, never run its destructors
		eval {
			_set_parent_death_signal();
			open(STDIN, '<', File::Spec->devnull) or die "stdin: $!";
			open(STDOUT, '>', $out_file) or die "stdout: $!";
			open(STDERR, '>', $err_file) or die "stderr: $!";
			exec { $bin } $bin, @args or die "exec $bin: $!";
		};
		print STDERR "EnrichMock child: $@";
		POSIX::_exit(127);
	}

	my $self = bless {
		pid => $pid,
		owner => $$,
		bin => $bin,
		args => \@args,
		tmp => $tmp,
		dir => $dir,
		port_file => $port_file,
		out_file => $out_file,
		err_file => $err_file,
		key_live => $keys_live[0],
		key_test => $keys_test[0],
		keys_live => \@keys_live,
		keys_test => \@keys_test,
		tls => defined $o{tls_cert} ? 1 : 0,
		tls_ca => $o{tls_ca},
		host => (defined $o{bind} && $o{bind} ne '0.0.0.0') ? $o{bind} : '127.0.0.1',
	}, $class;
	$RUNNING{$pid} = $self;
	Scalar::Util::weaken($RUNNING{$pid});
	$OBJECTS{ Scalar::Util::refaddr($self) } = $self;
	Scalar::Util::weaken($OBJECTS{ Scalar::Util::refaddr($self) });

	my $timeout = $o{timeout} // 10;
	my $deadline = Time::HiRes::time() + $timeout;
	my $port;
	while (1)
	{
		if (open(my $fh, '<', $port_file))
		{
			local $/;
			my $c = <$fh> // '';
			close $fh;
			if ($c =~ /^(\d+)\n/) { $port = $1; last; }
		}
		my $w = waitpid($pid, POSIX::WNOHANG());
		if ($w == $pid)
		{
			my $st = $?;
			$self->{exit_status} = $st;
			delete $RUNNING{$pid};
			$self->{pid} = undef;
			croak sprintf("EnrichMock: %s exited (status %d, signal %d) before writing its port file;"
				  . " args: %s\nstderr:\n%s", $bin, $st >> 8, $st & 127, "@args",
				$self->stderr_text);
		}
		if (Time::HiRes::time() > $deadline)
		{
			my $log = $self->stderr_text;
			$self->stop;
			croak "EnrichMock: $bin did not write its port file within ${timeout}s; args: @args\n"
			  . "stderr:\n$log";
		}
		Time::HiRes::sleep(0.02);
	}
	croak "EnrichMock: bad port $port in port file" unless $port > 0 && $port < 65536;

	$self->{port} = $port;
	$self->{url} = ($self->{tls} ? 'https' : 'http') . "://$self->{host}:$port";
	$self->{http} = ua(keep_alive => 1, timeout => $o{http_timeout} // 30);
	return $self;
}

# An HTTP::Tiny for talking to the mock: no proxy from the environment, and
# TCP_NODELAY so that a POST (headers and body are two writes) does not wait for a
# delayed ACK (~40 ms a request otherwise).
sub ua
{
	shift if @_ % 2;    # EnrichMock->ua(...) or EnrichMock::ua(...)
	my (%o) = @_;
	return EnrichMock::UA->new(agent => "EnrichMock/$VERSION", verify_SSL => 0,
		proxy => undef, http_proxy => undef, https_proxy => undef, %o);
}

sub _list
{
	my ($v) = @_;
	return () unless defined $v;
	return ref $v eq 'ARRAY' ? @$v : ($v);
}

# Linux: ask the kernel to SIGTERM the mock if the test process dies without cleanup
# (e.g. SIGKILL). Best effort, silently skipped elsewhere.
sub _set_parent_death_signal
{
	return unless $^O eq 'linux';
	my %nr = ('x86_64' => 157, 'aarch64' => 167, 'i386' => 172, 'i686' => 172);
	my ($arch) = $Config{archname} =~ /^([^-]+)/;
	my $sys = $nr{$arch // ''} or return;
	eval { syscall($sys, 1, 15, 0, 0, 0) };    # prctl(PR_SET_PDEATHSIG, SIGTERM)
	return;
}

sub port { $_[0]{port} }
sub url { $_[0]{url} }
sub pid { $_[0]{pid} }
sub key_live { $_[0]{key_live} }
sub key_test { $_[0]{key_test} }
sub dir { $_[0]{dir} }
sub args { @{ $_[0]{args} } }
sub exit_status { $_[0]{exit_status} }

sub _slurp
{
	my ($f) = @_;
	open(my $fh, '<', $f) or return '';
	local $/;
	my $c = <$fh>;
	return $c // '';
}
sub stdout_text { _slurp($_[0]{out_file}) }
sub stderr_text { _slurp($_[0]{err_file}) }

# $m->request($method, $path, key => KEY|undef, json => REF | body => RAW,
#             headers => {...}, query => {...}, via => 'curl')
# Without 'key', /v2/live/... gets key_live, /v2/test/... key_test, anything else none;
# key => undef sends no x-api-key header.
# via => 'curl' sends it with the system curl (which, unlike HTTP::Tiny, reads a response
# the server sends before the whole body is uploaded, e.g. an early 413).
# Returns {status, reason, headers, content, json, elapsed}; a dropped connection is 599.
sub request
{
	my ($self, $method, $path, %o) = @_;
	my %h = %{ $o{headers} // {} };
	my $key;
	if (exists $o{key}) { $key = $o{key}; }
	elsif ($path =~ m{^/v2/live(?:/|$)}) { $key = $self->{key_live}; }
	elsif ($path =~ m{^/v2/test(?:/|$)}) { $key = $self->{key_test}; }
	$h{'x-api-key'} = $key if defined $key;

	my $content;
	if (exists $o{json})
	{
		$content = json_encode($o{json});
		$h{'content-type'} //= 'application/json';
	}
	elsif (exists $o{body})
	{
		$content = $o{body};
		$h{'content-type'} //= 'application/json';
	}
	my $url = $self->{url} . $path;
	if ($o{query})
	{
		my $qs = HTTP::Tiny->new->www_form_urlencode($o{query});
		$url .= ($path =~ /\?/ ? '&' : '?') . $qs;
	}

	my $t0 = Time::HiRes::time();
	my $res;
	if (($o{via} // '') eq 'curl' || ($self->{tls} && !HTTP::Tiny->can_ssl))
	{
		$res = $self->_curl_request($method, $url, \%h, $content);
	}
	else
	{
		my %args = (headers => \%h);
		$args{content} = $content if defined $content;
		$res = $self->{http}->request($method, $url, \%args);
	}
	my $elapsed = Time::HiRes::time() - $t0;
	my $ctype = $res->{headers}{'content-type'} // '';
	return {
		status => $res->{status},
		reason => $res->{reason},
		headers => $res->{headers} // {},
		content => $res->{content} // '',
		json => json_decode($res->{content}),
		elapsed => $elapsed,
	};
}

# HTTPS through the system curl, for when HTTP::Tiny lacks IO::Socket::SSL.
sub _curl_request
{
	my ($self, $method, $url, $h, $content) = @_;
	my $d = $self->{dir};
	my ($hf, $bf, $inf) = map { File::Spec->catfile($d, "curl.$$.$_") } qw(hdr body in);
	my @cmd = ('curl', '-s', '--noproxy', '*', '-X', $method, '-D', $hf, '-o', $bf, '-w', '%{http_code}',
		'--max-time', '30');
	push @cmd, $self->{tls_ca} ? ('--cacert', $self->{tls_ca}) : ('-k');
	push @cmd, '-H', "$_: $h->{$_}" for sort keys %$h;
	if (defined $content)
	{
		open(my $fh, '>:raw', $inf) or croak "EnrichMock: $inf: $!";
		print $fh $content;
		close $fh;
		push @cmd, '--data-binary', "\@$inf";
	}
	push @cmd, $url;
	unlink $hf, $bf;
	my $code = '';
	if (open(my $p, '-|', @cmd)) { local $/; $code = <$p> // ''; close $p; }
	unlink $inf if defined $content;
	my %headers;
	my ($status, $reason) = (599, 'curl failed');
	if ($code =~ /^([1-5]\d\d)$/)
	{
		$status = $1;
		my @blocks = split /\r?\n\r?\n/, _slurp($hf);
		my $last = (grep { /^HTTP\// } @blocks)[-1] // '';
		my @lines = split /\r?\n/, $last;
		my $first = shift @lines // '';
		$reason = $first =~ /^HTTP\/\S+\s+\d+\s*(.*)$/ ? $1 : '';
		for (@lines)
		{
			next unless /^([^:]+):\s*(.*)$/;
			my $k = lc $1;
			$headers{$k} = exists $headers{$k} ? [ (ref $headers{$k} ? @{ $headers{$k} } : $headers{$k}), $2 ] : $2;
		}
	}
	my $body = $status == 599 ? '' : _slurp($bf);
	unlink $hf, $bf;
	return { status => $status, reason => $reason, headers => \%headers, content => $body };
}

sub _admin
{
	my ($self, $method, $path, %o) = @_;
	my $r = $self->request($method, $path, key => undef, %o);
	croak "EnrichMock: $method $path -> $r->{status} $r->{content}"
	  unless $r->{status} == 200 && ref $r->{json};
	return $r->{json};
}

# GET /__mock/stats, decoded.
sub stats { $_[0]->_admin(GET => '/__mock/stats') }

# $mock->submitted($identifier): how many bulk enrich submissions carried a
# normalized identifier (the proof of what a person cost)
sub submitted
{
	my ($self, $identifier) = @_;
	return $self->stats->{submissions}{$identifier} // 0;
}

# POST /__mock/faults; returns the full response (check ->{status} for rejected settings).
sub set_faults
{
	my ($self, $f) = @_;
	return $self->request(POST => '/__mock/faults', key => undef, json => $f // {});
}

sub faults { $_[0]->_admin(GET => '/__mock/faults') }

# POST /__mock/reset; returns the full response.
sub reset
{
	my ($self) = @_;
	return $self->request(POST => '/__mock/reset', key => undef, body => '');
}

# GET /__mock/person?professionalSocialMediaUrl=... (or personId / pdlId); decoded.
sub person
{
	my ($self, %q) = @_;
	return $self->_admin(GET => '/__mock/person', query => \%q);
}

# Convenience: POST a bulk enrich of $requests (arrayref of hashes) in $env (default test).
sub bulk_enrich
{
	my ($self, $requests, %o) = @_;
	my $env = $o{env} // 'test';
	return $self->request(POST => "/v2/$env/person/bulk-enrich",
		json => { requests => $requests }, %o{ grep { exists $o{$_} } qw(key headers) });
}

# Convenience: poll the batch status until it is one of @{$o{status}} (default
# completed/failed) or $o{timeout} seconds (default 10) pass; returns the last status.
sub wait_batch
{
	my ($self, $id, %o) = @_;
	my $env = $o{env} // 'test';
	my %want = map { $_ => 1 } @{ $o{status} // [qw(completed failed)] };
	my $deadline = Time::HiRes::time() + ($o{timeout} // 10);
	my $last;
	while (1)
	{
		my $r = $self->request(GET => "/v2/$env/person/bulk-enrich/$id");
		$last = $r->{json} if $r->{status} == 200;
		return $last if $last && $want{ $last->{status} // '' };
		return $last if Time::HiRes::time() > $deadline;
		Time::HiRes::sleep($o{interval} // 0.05);
	}
}

# Stop the mock: SIGTERM (or $o{signal}), wait (bounded, default 5 s), SIGKILL fallback.
# Returns the wait status ($?-style) or undef when it was not running.
sub stop
{
	my ($self, %o) = @_;
	my $pid = $self->{pid};
	return $self->{exit_status} unless $pid;
	return undef unless ($self->{owner} // 0) == $$;    # a forked child never stops it
	local ($?, $!, $@);
	$self->{http} = undef;    # drop the keep-alive connection first
	my $st = _terminate($pid, $o{timeout} // 5, $o{signal});
	$self->{exit_status} = $st;
	$self->{pid} = undef;
	delete $RUNNING{$pid};
	return $st;
}

sub _terminate
{
	my ($pid, $timeout, $signal) = @_;
	kill $signal // 'TERM', $pid;
	my $deadline = Time::HiRes::time() + $timeout;
	while (Time::HiRes::time() < $deadline)
	{
		my $w = waitpid($pid, POSIX::WNOHANG());
		return $? if $w == $pid;
		return undef if $w == -1;    # not our child any more
		Time::HiRes::sleep(0.02);
	}
	kill 'KILL', $pid;
	my $w = waitpid($pid, 0);
	return $w == $pid ? $? : undef;
}

sub DESTROY
{
	my ($self) = @_;
	local ($@, $!, $?);
	eval { $self->stop if $self->{pid} };
	delete $OBJECTS{ Scalar::Util::refaddr($self) };
	return;
}

# JSON type of a decoded value, judged before anything stringifies it:
# null, bool, array, object, string, integer, number.
sub jtype
{
	my ($v) = @_;
	return 'null' unless defined $v;
	return 'bool' if JSON::PP::is_bool($v);
	return 'array' if ref $v eq 'ARRAY';
	return 'object' if ref $v eq 'HASH';
	return 'unknown' if ref $v;
	require B;
	my $f = B::svref_2object(\$v)->FLAGS;
	return 'string' if $f & B::SVp_POK();
	return 'integer' if $f & B::SVp_IOK();
	return 'number' if $f & B::SVp_NOK();
	return 'unknown';
}

# Test::More helper: $r is an error response with this status, the envelope
# {"error": {"code": CODE, "message": "..."}} and a message matching $re (optional).
sub check_error
{
	my ($r, $status, $code, $re, $name) = @_;
	require Test::More;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $j = $r->{json};
	my @why;
	push @why, "status $r->{status}, want $status" unless $r->{status} == $status;
	if (ref $j ne 'HASH') { push @why, 'body is not a JSON object'; }
	else
	{
		my @k = sort keys %$j;
		push @why, "top-level keys (@k), want (error)" unless "@k" eq 'error';
		my $e = $j->{error};
		if (ref $e ne 'HASH') { push @why, 'error is not an object'; }
		else
		{
			my @ek = sort keys %$e;
			push @why, "error keys (@ek), want (code message)" unless "@ek" eq 'code message';
			push @why, 'code is not a string' unless jtype($e->{code}) eq 'string';
			push @why, 'message is not a non-empty string'
			  unless jtype($e->{message}) eq 'string' && length $e->{message};
			push @why, "code '" . ($e->{code} // 'undef') . "', want '$code'"
			  unless defined $e->{code} && $e->{code} eq $code;
			push @why, "message '" . ($e->{message} // 'undef') . "' does not match $re"
			  if defined $re && !(defined $e->{message} && !ref $e->{message} && $e->{message} =~ $re);
		}
	}
	my $ct = $r->{headers}{'content-type'} // '';
	push @why, "content-type '$ct', want application/json" unless $ct =~ m{^application/json\b}i;
	my $ok = Test::More::ok(!@why, $name // "$status $code");
	Test::More::diag(join("\n", @why, "body: " . substr($r->{content} // '', 0, 500))) unless $ok;
	return $ok;
}

# Whatever happens (die, exit, BAIL_OUT), leave no mock behind.
END
{
	local ($?, $!, $@);
	for my $pid (keys %RUNNING)
	{
		my $obj = $RUNNING{$pid};
		if ($obj) { eval { $obj->stop }; }
		else { eval { _terminate($pid, 5) }; }
	}
	%RUNNING = ();
	# temp dirs: File::Temp's own cleanup is unreliable during global destruction
	for my $obj (grep { defined } values %OBJECTS)
	{
		next unless ($obj->{owner} // 0) == $$;
		$obj->{tmp} = undef;
	}
}

package EnrichMock::UA;

our @ISA = ('HTTP::Tiny');

sub _open_handle
{
	my $self = shift;
	my $h = $self->SUPER::_open_handle(@_);
	eval {
		require Socket;
		$h->{fh}->setsockopt(Socket::IPPROTO_TCP(), Socket::TCP_NODELAY(), 1) if $h && $h->{fh};
	};
	return $h;
}

package EnrichMock;

# Turn SIGINT/SIGTERM/SIGHUP of the test into a normal exit so END runs,
# unless the test installed its own handlers.
for my $sig (qw(INT TERM HUP))
{
	next if defined $SIG{$sig} && $SIG{$sig} ne '' && $SIG{$sig} ne 'DEFAULT';
	$SIG{$sig} = sub { exit(128 + ($sig eq 'INT' ? 2 : $sig eq 'TERM' ? 15 : 1)) };
}

1;
