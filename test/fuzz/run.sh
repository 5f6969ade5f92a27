#!/usr/bin/env bash
# run.sh ("make fuzz"): builds the libFuzzer target of the wire module
# (test/fuzz/fuzz_api.c: src/api.c unchanged, linked against the PostgreSQL
# shim test/fuzz/pg_shim.c) with clang, AddressSanitizer (LeakSanitizer
# included) and UndefinedBehaviorSanitizer, checks that the leak and overflow
# detectors fire, then fuzzes for FUZZ_SECONDS (default 60) from the seed
# corpus test/fuzz/corpus.  It ends with "fuzz: N runs in S s, C crashes"
# and fails when anything was found (crash, sanitizer report, leak, timeout,
# out of memory, broken contract).
#
#   bash test/fuzz/run.sh            fuzz for FUZZ_SECONDS
#   bash test/fuzz/run.sh FILE...    run the target once on each FILE (to
#                                    reproduce a finding), no fuzzing
#
# Environment: FUZZ_SECONDS; FUZZ_CORPUS, a directory that keeps the corpus
# the fuzzer grows between runs (default: a throwaway one); CC (default
# clang); PG_CONFIG or PG_MAJOR (test/pg-config.sh).  The build and any finding live in a
# directory under /tmp, kept and named when something was found.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
fuzzdir=$top/test/fuzz
seconds=${FUZZ_SECONDS:-60}
PG_CONFIG=$(bash "$top/test/pg-config.sh") || { echo "fuzz: pg_config not found (make deps)" >&2; exit 1; }
CC=${CC:-$(command -v clang || true)}

case "$CC" in
	*clang*) ;;
	*) echo "fuzz: clang is needed for libFuzzer (install Debian's clang and libclang-rt-dev)" >&2; exit 1 ;;
esac
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz: FUZZ_SECONDS must be a number of seconds" >&2; exit 1; }

work=$(mktemp -d /tmp/enrich-fuzz.XXXXXX)
keep=0
trap '[ $keep = 1 ] || rm -rf "$work"' EXIT

# build: the wire module exactly as the extension compiles it, plus the shim
sanitize="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
cflags="-g -O1 $sanitize -fno-strict-aliasing -Wall -Wextra -Wno-unused-parameter
	-Wno-missing-field-initializers -Wno-ignored-attributes
	-I$top/src -I$fuzzdir -I$("$PG_CONFIG" --includedir-server)
	$(pkg-config --cflags json-c)"
bin=$work/fuzz_api
# pg_encoding_verifymbstr: PostgreSQL's own UTF-8 rules (src/common/wchar.c)
pgcommon=$("$PG_CONFIG" --pkglibdir)/libpgcommon_shlib.a
[ -f "$pgcommon" ] || pgcommon=$("$PG_CONFIG" --libdir)/libpgcommon_shlib.a
build_log=$work/build.log
if ! {
	"$CC" $cflags -fsanitize=fuzzer-no-link -c "$top/src/api.c" -o "$work/api.o" &&
	"$CC" $cflags -fsanitize=fuzzer-no-link -c "$top/src/json_ascii.c" -o "$work/json_ascii.o" &&
	"$CC" $cflags -c "$fuzzdir/pg_shim.c" -o "$work/pg_shim.o" &&
	"$CC" $cflags -c "$fuzzdir/fuzz_api.c" -o "$work/fuzz_api.o" &&
	"$CC" $sanitize -fsanitize=fuzzer "$work"/*.o $(pkg-config --libs json-c) "$pgcommon" -o "$bin"
} >"$build_log" 2>&1; then
	cat "$build_log" >&2
	echo "fuzz: the build failed (is libclang-rt-dev installed? make deps)" >&2
	exit 1
fi
if [ -s "$build_log" ]; then
	echo "fuzz: the build printed warnings:" >&2
	cat "$build_log" >&2
	exit 1
fi

export ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:allocator_may_return_null=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

# reproduce: run each file once
if [ $# -gt 0 ]; then
	exec "$bin" "$@"
fi

# the detectors must fire: a json-c object leaked, and a read past a buffer
selftest()
{
	local kind=$1 expect=$2 log=$work/selftest-$1.log
	mkdir -p "$work/selftest-$kind"
	if ENRICH_FUZZ_SELFTEST=$kind "$bin" -runs=20 -seed=1 \
		-artifact_prefix="$work/selftest-$kind/" "$work/selftest-$kind" "$fuzzdir/corpus" >"$log" 2>&1; then
		echo "fuzz: self-test $kind: the fuzzer found nothing; the detectors are off" >&2
		exit 1
	fi
	if ! grep -q "$expect" "$log"; then
		cat "$log" >&2
		echo "fuzz: self-test $kind: no \"$expect\" report" >&2
		exit 1
	fi
	echo "fuzz: self-test: $expect is on"
}
selftest leak "LeakSanitizer: detected memory leaks"
selftest overflow "AddressSanitizer: heap-buffer-overflow"

corpus=${FUZZ_CORPUS:-$work/corpus}
mkdir -p "$corpus" "$work/findings"
log=$work/fuzz.log
echo "fuzz: fuzzing the wire module for $seconds s (log: $log)"
start=$(date +%s)
rc=0
"$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=32768 \
	-dict="$fuzzdir/api.dict" -print_final_stats=1 -print_pcs=0 \
	-artifact_prefix="$work/findings/" "$corpus" "$fuzzdir/corpus" >"$log" 2>&1 || rc=$?
elapsed=$(($(date +%s) - start))

runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
[ -n "$runs" ] || runs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -1)
findings=$(find "$work/findings" -type f ! -name 'slow-unit-*' | wc -l)
grep -E '^(INFO: seed corpus|#[0-9]+ +(INITED|DONE))|cov: [0-9]+ ft: [0-9]+ corp' "$log" | tail -2 || true

if [ "$rc" -ne 0 ] || [ "$findings" -gt 0 ]; then
	keep=1
	[ "$findings" -gt 0 ] || findings=1
	sed -n '/==ERROR\|^fuzz_api:\|^pg_shim:\|runtime error\|deadly signal\|LeakSanitizer/,$p' "$log" | head -80 >&2
	echo "fuzz: findings and the full log are kept in $work (reproduce: bash test/fuzz/run.sh $work/findings/<file>)" >&2
fi
echo "fuzz: ${runs:-0} runs in $elapsed s, $findings crashes"
[ "$rc" -eq 0 ] && [ "$findings" -eq 0 ]
