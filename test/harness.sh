#!/usr/bin/env bash
# harness.sh: starts a throwaway PostgreSQL cluster (enrich preloaded) and the
# mock API on free ports, then runs the tests (mode "test") or the demo (mode
# "demo"), and stops everything it started, whatever happens.
#
# PostgreSQL refuses to run as root: when run as root, the cluster, the mock
# and the TAP tests run as the unprivileged user "postgres", from a copy of
# test/ in a private work directory that this user owns.
#
# Environment: PG_CONFIG or PG_MAJOR (test/pg-config.sh), ENRICH_KEEP=1 keeps
# the work directory for inspection, PROVE_VERBOSE=1 prints every TAP line,
# BENCH_ARGS passes options to test/bench/bench.pl (e.g. "--cases throughput"),
# TAP_ONLY="045 060" runs only the TAP tests whose paths contain one of the
# words, REGRESS_ONLY="watch" only these pg_regress tests (developer's aids:
# the total then counts only those).
# ENRICH_SANITIZE=1 (test/sanitize.sh, with an enrich.so built with ASan and
# UBSan) starts every server, the TAP tests' too, through a pg_ctl that
# preloads the sanitizer runtimes named by ENRICH_SANITIZE_PRELOAD (the mocks
# and the clients get none); reports go to sanitizer/ in the work directory,
# and each report counts as a failure.
set -uo pipefail

mode=${1:-test}
top=$(cd "$(dirname "$0")/.." && pwd)
PG_CONFIG=$(bash "$top/test/pg-config.sh") || { echo "harness: pg_config not found (make deps)" >&2; exit 1; }
bindir=$("$PG_CONFIG" --bindir)
pgxsdir=$(dirname "$(dirname "$("$PG_CONFIG" --pgxs)")")

work=$(mktemp -d "/tmp/enrich-$mode.XXXXXX")
chmod 755 "$work"
run_user=$(id -un)
if [ "$(id -u)" -eq 0 ]; then
	run_user=postgres
	id postgres >/dev/null 2>&1 || { echo "harness: user postgres is missing (is PostgreSQL's server package installed? make deps)" >&2; exit 1; }
	chown postgres: "$work"
fi

# as_runner runs a command as the unprivileged user, with a clean HOME.
# runner is the prefix that does it: setpriv and env execute the command in
# place (runuser would fork and wait), so "${runner[@]}" CMD & has in $! the
# process id of CMD itself.
runner=()
[ "$(id -u)" -eq 0 ] &&
	runner=(setpriv --reuid=postgres --regid=postgres --init-groups -- env HOME="$work" USER=postgres LOGNAME=postgres)
as_runner()
{
	"${runner[@]}" "$@"
}

# copy what the runner needs into the work directory it can read
mkdir -p "$work/test"
cp -r "$top/test/." "$work/test/"
# the README too (a test runs its grant block exactly as written), the C
# sources (a test reads the SQL in them), and the packaging files and
# scripts (a test keeps them in step)
cp "$top/README.md" "$top/META.json" "$top/enrich.control" "$top/CHANGELOG.md" "$top/LICENSE" "$work/"
cp -r "$top/src" "$top/sql" "$work/"

# sanitized run: a pg_ctl first in PATH that preloads the runtimes, so that
# the postmasters it starts (and their backends) can load a sanitized
# enrich.so; every process writes its reports into sanitizer/
sanitize=${ENRICH_SANITIZE:-0}
if [ "$sanitize" = 1 ]; then
	[ -n "${ENRICH_SANITIZE_PRELOAD:-}" ] || { echo "harness: ENRICH_SANITIZE_PRELOAD is not set" >&2; exit 1; }
	mkdir -p "$work/sanitizer" "$work/sanitize-bin"
	export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$work/sanitizer/asan"
	export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$work/sanitizer/ubsan"
	cat >"$work/sanitize-bin/pg_ctl" <<-EOF
		#!/bin/sh
		# pg_ctl with the sanitizer runtimes preloaded into what it starts
		LD_PRELOAD="$ENRICH_SANITIZE_PRELOAD" exec "$bindir/pg_ctl" "\$@"
	EOF
	chmod 755 "$work/sanitize-bin/pg_ctl"
fi
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$work"

export PGHOST=$work PGPORT=65432 PGUSER=postgres PGDATABASE=postgres
export PATH="$bindir:$PATH"
[ "$sanitize" = 1 ] && export PATH="$work/sanitize-bin:$PATH"
pgdata=$work/pgdata
mock_pids=
tap_pid=
mock_bin=$work/test/mock/aggk-mock
export ENRICH_MOCK_BIN=$mock_bin
export ENRICH_LIVE_KEY=live-key ENRICH_TEST_KEY=test-key

# stop_servers stops, by process id, every server whose data directory is in
# the work directory (the harness's and those of TAP tests that did not stop
# theirs): the pid in its postmaster.pid, if that process still runs in that
# directory (a pid used again by another process is left alone).  SIGQUIT
# is an immediate shutdown; SIGKILL follows for one that did not go.
stop_servers()
{
	local sig f pid
	for sig in QUIT KILL; do
		for f in $(find "$work" -name postmaster.pid 2>/dev/null); do
			pid=$(head -1 "$f" 2>/dev/null)
			[ -n "$pid" ] && [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$(dirname "$f")" ] &&
				kill -"$sig" "$pid" 2>/dev/null
		done
		[ "$sig" = QUIT ] && sleep 0.5
	done
}

# cleanup stops what the harness started, by process id: the TAP run (its
# runner passes the signal on to the tests, and the mocks they start end
# with their parent), the mocks, every server; then removes the work
# directory
cleanup()
{
	local rc=$?
	trap - EXIT INT TERM
	[ -n "$tap_pid" ] && kill -TERM "$tap_pid" 2>/dev/null && sleep 1
	[ -n "$mock_pids" ] && kill $mock_pids 2>/dev/null
	stop_servers
	if [ "${ENRICH_KEEP:-0}" = 1 ] || [ $rc -ne 0 -a "$mode" = test -a -n "${CI:-}" ]; then
		echo "harness: work directory kept: $work"
	else
		rm -rf "$work"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_mock NAME [FLAG...] starts a mock on a free port with the two test
# keys and sets mock_port
start_mock()
{
	local name=$1 port_file=$work/mock-$1.port
	shift
	"${runner[@]}" "$mock_bin" --port 0 --port-file "$port_file" \
		--key-live "$ENRICH_LIVE_KEY" --key-test "$ENRICH_TEST_KEY" \
		--tier3 0 --tier4 0 "$@" >"$work/mock-$name.log" 2>&1 &
	mock_pids="$mock_pids $!"
	for _ in $(seq 100); do
		[ -s "$port_file" ] && break
		sleep 0.1
	done
	[ -s "$port_file" ] || { echo "harness: the mock $name did not start:" >&2; cat "$work/mock-$name.log" >&2; exit 1; }
	mock_port=$(cat "$port_file")
}

# make_tls_files makes a throwaway CA and a certificate for 127.0.0.1
make_tls_files()
{
	local d=$work/tls
	mkdir -p "$d"
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=enrich test CA" \
		-keyout "$d/ca.key" -out "$d/ca.crt" >/dev/null 2>&1 &&
	openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
		-keyout "$d/server.key" -out "$d/server.csr" >/dev/null 2>&1 &&
	printf 'subjectAltName=IP:127.0.0.1\n' >"$d/ext.cnf" &&
	openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
		-CAcreateserial -days 2 -extfile "$d/ext.cnf" -out "$d/server.crt" >/dev/null 2>&1 ||
		{ echo "harness: could not make TLS test certificates" >&2; exit 1; }
	chmod 644 "$d"/*
	export ENRICH_TEST_CA=$d/ca.crt
}

# start_mocks starts the mocks the tests use: an instant one (the default
# API of the cluster), a slow one that keeps a batch pending for 1 s then
# processes 100 items a second, and an
# HTTPS one whose certificate the test CA signs
start_mocks()
{
	start_mock main
	ENRICH_MOCK_URL="http://127.0.0.1:$mock_port"
	start_mock slow --start-delay-ms 1000 --items-per-second 100
	ENRICH_MOCK_SLOW_URL="http://127.0.0.1:$mock_port"
	make_tls_files
	start_mock tls --tls-cert "$work/tls/server.crt" --tls-key "$work/tls/server.key"
	ENRICH_MOCK_TLS_URL="https://127.0.0.1:$mock_port"
	export ENRICH_MOCK_URL ENRICH_MOCK_SLOW_URL ENRICH_MOCK_TLS_URL
}

# start_cluster creates and starts a cluster that preloads enrich and talks
# to the mock; it listens on a Unix socket in the work directory only
start_cluster()
{
	as_runner initdb -D "$pgdata" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
		>"$work/initdb.log" 2>&1 || { cat "$work/initdb.log" >&2; exit 1; }
	cat >>"$pgdata/postgresql.conf" <<-EOF
		listen_addresses = ''
		unix_socket_directories = '$work'
		port = $PGPORT
		shared_preload_libraries = 'enrich'
		fsync = off
		enrich.api_url = '$ENRICH_MOCK_URL'
		enrich.environment = 'test'
		enrich.databases = 'postgres'
		log_line_prefix = '%m [%p] %q%a '
	EOF
	as_runner pg_ctl -D "$pgdata" -l "$work/postgres.log" -w -t 60 start >/dev/null ||
		{ echo "harness: the cluster did not start:" >&2; cat "$work/postgres.log" >&2; exit 1; }
	if [ "$sanitize" = 1 ] && ! grep -q libasan "/proc/$(head -1 "$pgdata/postmaster.pid")/maps"; then
		echo "harness: the server runs without the sanitizer runtimes" >&2
		exit 1
	fi
}

# run_regress runs the pg_regress tests named by REGRESS in the Makefile and
# adds their outcome to the totals
run_regress()
{
	local tests out
	tests=${REGRESS_ONLY:-$(make -s --no-print-directory -C "$top" print-regress)}
	echo "== pg_regress: $tests"
	out=$work/regress
	mkdir -p "$out"
	timeout 600 "$pgxsdir/test/regress/pg_regress" --inputdir="$top" --outputdir="$out" \
		--bindir="$bindir" --host="$PGHOST" --port="$PGPORT" --user=postgres \
		--dbname=contrib_regression $tests 2>&1 | tee "$work/regress.out"
	# PostgreSQL 15 prints "test name ... ok", 16 and later "ok 1 - name"
	regress_passed=$(grep -cE '^(test| ) *[a-z0-9_]+ +\.\.\. ok|^ok [0-9]+ +- ' "$work/regress.out")
	regress_failed=$(grep -cE '\.\.\. FAILED|\.\.\. failed|^not ok [0-9]+ +- ' "$work/regress.out")
	if [ "$regress_passed" -eq 0 ] && [ "$regress_failed" -eq 0 ]; then
		regress_failed=1
	fi
	if [ -s "$out/regression.diffs" ]; then
		echo "== pg_regress differences ($out/regression.diffs):"
		head -200 "$out/regression.diffs"
	fi
}

# run_tap runs the mock's conformance tests and the TAP tests as the runner
run_tap()
{
	local files counts=$work/tap.counts verbose=
	files=$(ls "$work"/test/mock/t/*.pl "$work"/test/t/*.pl 2>/dev/null)
	if [ -n "${TAP_ONLY:-}" ]; then
		files=$(for f in $files; do
			for w in $TAP_ONLY; do case "$f" in *"$w"*) echo "$f"; break ;; esac; done
		done)
	fi
	[ "${PROVE_VERBOSE:-0}" = 1 ] && verbose=--verbose
	echo "== TAP tests"
	mkdir -p "$work/tap"
	[ "$(id -u)" -eq 0 ] && chown postgres: "$work/tap"
	(cd "$work/tap" && exec "${runner[@]}" timeout 1200 env TESTDIR="$work/tap" \
		PG_REGRESS="$pgxsdir/test/regress/pg_regress" \
		perl "$work/test/tap-run.pl" --counts "$counts" $verbose \
		-I "$work/test/perl" -I "$pgxsdir/test/perl" $files) &
	tap_pid=$!
	wait "$tap_pid"
	tap_pid=
	if [ -s "$counts" ]; then
		read -r tap_passed tap_failed tap_skipped <"$counts"
	else
		tap_passed=0 tap_failed=1 tap_skipped=0
	fi
}

# count_sanitizer_reports prints the sanitizer reports of the run and adds
# them to the failures: ASan's files in sanitizer/, and the reports in the
# servers' logs (UBSan writes to stderr when ASan is loaded, and without its
# options in a backend: it reads them at its first report from
# /proc/self/environ, which the process title has overwritten by then)
count_sanitizer_reports()
{
	local files logs n
	[ "$sanitize" = 1 ] || return 0
	files=$(find "$work/sanitizer" -type f | sort)
	logs=$(grep -rlE "$sanitizer_report" --include='*.log' "$work" 2>/dev/null | sort)
	n=$(( $(printf '%s' "$files" | grep -c .) +
		  $(cat /dev/null $logs | grep -cE "$sanitizer_report") ))
	if [ "$n" -eq 0 ]; then
		echo "== sanitizers: no report"
		return 0
	fi
	echo "== sanitizers: $n report(s):"
	for r in $files; do
		echo "-- $r"
		head -60 "$r"
	done
	for r in $logs; do
		echo "-- $r"
		grep -E -A12 "$sanitizer_report" "$r" | head -60
	done
	failed=$((failed + n))
}
sanitizer_report='^[^ ]+:[0-9]+:[0-9]+: runtime error: |==[0-9]+==ERROR: [A-Za-z]+Sanitizer'

case "$mode" in
	test)
		start_mocks
		start_cluster
		regress_passed=0 regress_failed=0 tap_passed=0 tap_failed=0 tap_skipped=0
		run_regress
		run_tap
		passed=$((regress_passed + tap_passed))
		failed=$((regress_failed + tap_failed))
		count_sanitizer_reports
		echo "== pg_regress: $regress_passed passed, $regress_failed failed; TAP: $tap_passed passed, $tap_failed failed, $tap_skipped skipped"
		if [ "$tap_skipped" -gt 0 ]; then
			echo "$passed passed, $failed failed, $tap_skipped skipped"
		else
			echo "$passed passed, $failed failed"
		fi
		[ "$failed" -eq 0 ]
		;;
	bench)
		# the benchmark starts its own clusters and mocks, as the runner
		mkdir -p "$work/bench"
		[ "$(id -u)" -eq 0 ] && chown postgres: "$work/bench"
		(cd "$work/bench" && as_runner env TESTDIR="$work/bench" \
			PG_REGRESS="$pgxsdir/test/regress/pg_regress" \
			perl -I "$work/test/perl" -I "$pgxsdir/test/perl" \
			"$work/test/bench/bench.pl" --csv "$work/bench/results.csv" ${BENCH_ARGS:-})
		rc=$?
		if [ -s "$work/bench/results.csv" ]; then
			mkdir -p "$top/test/bench/out"
			cp "$work/bench/results.csv" "$top/test/bench/out/results.csv" &&
				echo "bench: the figures are also in test/bench/out/results.csv"
		fi
		exit $rc
		;;
	demo)
		start_mock main --start-delay-ms 300 --items-per-second 2000
		export ENRICH_MOCK_URL="http://127.0.0.1:$mock_port"
		start_cluster
		bash "$top/test/demo.sh"
		;;
	*)
		echo "usage: harness.sh test|demo|bench" >&2
		exit 2
		;;
esac
