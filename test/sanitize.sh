#!/usr/bin/env bash
# sanitize.sh ("make test-sanitize"): every test again (test/harness.sh test)
# with enrich.so built with AddressSanitizer and UndefinedBehaviorSanitizer
# (-fsanitize=address,undefined -fno-omit-frame-pointer
# -fno-sanitize-recover=undefined), loaded by a non-sanitized PostgreSQL that
# gets the compiler's runtimes preloaded.  It ends with the harness's
# "N passed, N failed" line and fails on any failed test or sanitizer report.
#
# Nothing outside a private directory under /tmp is touched, so a sanitized
# enrich.so is never installed where another run could load it, and the
# source tree is not rebuilt under anyone's feet:
#   - a snapshot of the source tree is built there (enrich.so sanitized, the
#     mock as usual, or sanitized too with ENRICH_SANITIZE_MOCK=1);
#   - PostgreSQL's bin, lib and share directories are copied there, keeping
#     their layout, and the snapshot is installed into that copy (PostgreSQL
#     finds its lib and share directories relative to its binaries);
#   - the harness of the snapshot runs against that copy (PG_CONFIG), with
#     ENRICH_SANITIZE=1: the servers it and the TAP tests start get the
#     runtimes preloaded through pg_ctl, and it counts reports as failures.
# The directory is removed at the end, whatever happens (ENRICH_KEEP=1 keeps
# it, and the harness's work directory).
#
# Sanitizer settings: ASAN_OPTIONS detect_leaks=0 (postgres does not free at
# exit), abort_on_error=1, and a quarantine of 1 MB instead of 256 MB (freed
# memory ASan holds back to catch late uses): with 256 MB a backend's RSS
# grows by the quarantine, and the test that enrich_items keeps memory flat
# fails for that alone.  UBSAN_OPTIONS print_stacktrace=1:halt_on_error=1.
# The harness adds log_path.
#
# A third library is preloaded after the runtimes: a stub swift_demangle.
# postgres needs libsystemd, hence libgpg-error, whose constructor calls
# bindtextdomain; its malloc is the first one intercepted, so ASan
# initializes inside bindtextdomain's lock, and its dlsym of swift_demangle
# fails and dlerror translates the message under the same lock: postgres
# hangs before main (so does ps).  With the symbol found, dlerror has
# nothing to translate.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
PG_CONFIG=$(bash "$top/test/pg-config.sh") || { echo "sanitize: pg_config not found (make deps)" >&2; exit 1; }
flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
start=$(date +%s)

work=$(mktemp -d /tmp/enrich-sanitize.XXXXXX)
chmod 755 "$work"
cleanup()
{
	local rc=$?
	trap - EXIT INT TERM
	if [ "${ENRICH_KEEP:-0}" = 1 ]; then
		echo "sanitize: directory kept: $work" >&2
	else
		rm -rf "$work"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# the runtimes of the compiler PGXS builds with
cc=$("$PG_CONFIG" --cc)
case "$cc" in
	*gcc*|cc)
		asan=$("$cc" -print-file-name=libasan.so)
		ubsan=$("$cc" -print-file-name=libubsan.so)
		;;
	*)
		echo "sanitize: PostgreSQL was built with $cc; only gcc's runtimes are handled" >&2
		exit 1
		;;
esac
asan=$(readlink -f "$asan")
ubsan=$(readlink -f "$ubsan")
[ -f "$asan" ] && [ -f "$ubsan" ] ||
	{ echo "sanitize: $cc has no libasan or libubsan (libasan8, libubsan1)" >&2; exit 1; }

cat >"$work/swift_demangle.c" <<'EOF'
/* swift_demangle.c: found by ASan's initialization (see test/sanitize.sh) */
#include <stddef.h>

char	   *swift_demangle(const char *name, size_t len, char *out, size_t *outlen,
						   unsigned int flags);

char *
swift_demangle(const char *name, size_t len, char *out, size_t *outlen,
			   unsigned int flags)
{
	return NULL;
}
EOF
"$cc" -shared -fPIC -O2 -Wall "$work/swift_demangle.c" -o "$work/libswift_demangle.so" ||
	{ echo "sanitize: could not build the swift_demangle stub" >&2; exit 1; }

# a snapshot of the source tree, without build products
tree=$work/tree
mkdir -p "$tree"
tar -C "$top" --exclude=./.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
	--exclude=./test/mock/aggk-mock --exclude=./results --exclude=./tmp_check \
	--exclude=./log --exclude=./test/bench/out -cf - . | tar -C "$tree" -xf - ||
	{ echo "sanitize: could not copy the source tree" >&2; exit 1; }

echo "sanitize: building enrich.so with $flags"
if ! make -C "$tree" -s --no-print-directory PG_CONFIG="$PG_CONFIG" COPT="$flags" \
	all >"$work/build.log" 2>&1; then
	cat "$work/build.log" >&2
	echo "sanitize: the sanitized build failed" >&2
	exit 1
fi
if [ "${ENRICH_SANITIZE_MOCK:-0}" = 1 ]; then
	echo "sanitize: building the mock with $flags"
	make -C "$tree/test/mock" -s clean >/dev/null &&
		make -C "$tree/test/mock" -s CFLAGS="-O1 -g $flags" >>"$work/build.log" 2>&1 ||
		{ cat "$work/build.log" >&2; echo "sanitize: the sanitized mock build failed" >&2; exit 1; }
fi
if grep -q 'warning:' "$work/build.log"; then
	grep -A3 'warning:' "$work/build.log" >&2
	echo "sanitize: the sanitized build printed warnings" >&2
	exit 1
fi
readelf -d "$tree/enrich.so" | grep -q 'libasan' ||
	{ echo "sanitize: $tree/enrich.so is not linked with libasan" >&2; exit 1; }

# a private copy of PostgreSQL, and the sanitized enrich installed into it
inst=$work/pg
bindir=$("$PG_CONFIG" --bindir)
sharedir=$("$PG_CONFIG" --sharedir)
pkglibdir=$("$PG_CONFIG" --pkglibdir)
for d in "$bindir" "$pkglibdir" "$sharedir"; do
	mkdir -p "$inst$(dirname "$d")"
	[ -d "$inst$d" ] || cp -a "$d" "$inst$d" ||
		{ echo "sanitize: could not copy $d" >&2; exit 1; }
done
if ! make -C "$tree" -s --no-print-directory PG_CONFIG="$PG_CONFIG" COPT="$flags" \
	DESTDIR="$inst" install >"$work/install.log" 2>&1; then
	cat "$work/install.log" >&2
	echo "sanitize: installing into the private copy failed" >&2
	exit 1
fi
export PG_CONFIG=$inst$bindir/pg_config
[ "$("$PG_CONFIG" --pkglibdir)" = "$inst$pkglibdir" ] && cmp -s "$tree/enrich.so" "$inst$pkglibdir/enrich.so" ||
	{ echo "sanitize: the private copy of PostgreSQL does not find its sanitized enrich.so" >&2; exit 1; }
echo "sanitize: built and installed into $inst in $(($(date +%s) - start)) s; running the tests"

export ENRICH_SANITIZE=1
export ENRICH_SANITIZE_PRELOAD="$asan $ubsan $work/libswift_demangle.so"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:disable_coredump=1:quarantine_size_mb=1:thread_local_quarantine_size_kb=64"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
bash "$tree/test/harness.sh" test
