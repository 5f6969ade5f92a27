#!/usr/bin/env bash
# matrix.sh ("make test-matrix"): every test (make test) against each
# PostgreSQL major named, by default ENRICH_MAJORS ("15 17 18": Debian 12's,
# 13's and unstable's).
#
#   bash test/matrix.sh            each major of ENRICH_MAJORS
#   bash test/matrix.sh 17 18      these majors
#
# ENRICH_MATRIX_TARGET names another make target to run than test (for
# example test-sanitize, fuzz or demo); TAP_ONLY, REGRESS_ONLY,
# PROVE_VERBOSE and FUZZ_SECONDS are passed on.
#
# A major this machine's Debian packages is tested here (make test
# PG_MAJOR=N).  Any other is tested in a root filesystem of the Debian
# release whose default it is (ENRICH_SUITES, by default "15=bookworm
# 17=trixie 18=sid"), built once with mmdebstrap, as root, from the Debian
# mirror this machine's apt sources name, with the packages test/deps.sh
# lists, and kept under ENRICH_ROOTS (default /var/cache/enrich-roots) for
# the next run.  The source tree (git's files, committed or not) is copied
# in and make test runs there, with /proc and /dev bound; the copy goes
# afterwards.  Each run ends with how long each major took and one line
# "N passed, N failed" that adds up every major; it fails when any test or
# any major failed (a major that could not run counts as one failure).
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
roots=${ENRICH_ROOTS:-/var/cache/enrich-roots}
suites=${ENRICH_SUITES:-15=bookworm 17=trixie 18=sid}
majors=${*:-${ENRICH_MAJORS:-15 17 18}}
target=${ENRICH_MATRIX_TARGET:-test}

total_passed=0
total_failed=0
summary=()

# suite_of prints the Debian release whose default major is $1
suite_of()
{
	local pair
	for pair in $suites; do
		[ "${pair%%=*}" = "$1" ] && { echo "${pair#*=}"; return 0; }
	done
	return 1
}

# host_has says whether this machine's apt can install postgresql-$1
host_has()
{
	[ -x "/usr/lib/postgresql/$1/bin/pg_config" ] && return 0
	apt-cache policy "postgresql-$1" 2>/dev/null | grep -q 'Candidate: [0-9]'
}

# mirror prints the first URI that this machine's apt sources give for its
# own release (deb822 .sources files, then one-line .list files)
mirror()
{
	local codename sources lists
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	sources=$(ls /etc/apt/sources.list.d/*.sources 2>/dev/null)
	lists=$(ls /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null)
	{
		[ -n "$sources" ] && awk -v want="$codename" 'BEGIN { RS = "" }
			{
				uri = ""; hit = 0
				n = split($0, line, "\n")
				for (i = 1; i <= n; i++)
				{
					if (line[i] ~ /^URIs:/) { split(line[i], f, " "); uri = f[2] }
					if (line[i] ~ /^Suites:/) { m = split(line[i], f, " "); for (j = 2; j <= m; j++) if (f[j] == want) hit = 1 }
				}
				if (uri != "" && hit) print uri
			}' $sources
		[ -n "$lists" ] && awk -v want="$codename" '$1 == "deb" {
				n = 2
				if ($2 ~ /^\[/) { while (n < NF && $n !~ /\]$/) n++; n++ }
				if ($(n + 1) == want) print $n
			}' $lists
	} | head -1
}

# build_root makes the root filesystem of suite $1 with the packages of
# major $2, in a temporary directory renamed when it is complete
build_root()
{
	local suite=$1 major=$2 root=$roots/$1 uri packages
	uri=$(mirror) || true
	[ -n "$uri" ] || { echo "matrix: no Debian mirror found in this machine's apt sources" >&2; return 1; }
	command -v mmdebstrap >/dev/null || apt-get install -y -qq mmdebstrap >/dev/null ||
		{ echo "matrix: mmdebstrap is missing and could not be installed" >&2; return 1; }
	packages=$(PG_MAJOR=$major bash "$top/test/deps.sh" --list | tr ' ' ,)
	echo "== matrix: building the $suite root filesystem from $uri (once; kept in $root)"
	rm -rf "$root.tmp"
	mkdir -p "$roots"
	# a frozen mirror's Release files are past their Valid-Until date
	mmdebstrap --mode=root --variant=apt --aptopt='Acquire::Check-Valid-Until "false"' \
		--include="ca-certificates,$packages" "$suite" "$root.tmp" "$uri" >"$roots/$suite.log" 2>&1 ||
		{ tail -20 "$roots/$suite.log" >&2; echo "matrix: mmdebstrap failed (log: $roots/$suite.log)" >&2; return 1; }
	touch "$root.tmp/.enrich-root-complete"
	rm -rf "$root"
	mv "$root.tmp" "$root"
}

# in_root runs make $target for major $2 inside the root filesystem of suite
# $1, writing its output to $3
in_root()
{
	local suite=$1 major=$2 log=$3 root=$roots/$1 src rc
	[ "$(id -u)" -eq 0 ] || { echo "matrix: PostgreSQL $major needs a Debian $suite root filesystem: run as root" >&2; return 1; }
	[ -f "$root/.enrich-root-complete" ] || build_root "$suite" "$major" || return 1
	src=$(mktemp -d "$root/tmp/enrich-src.XXXXXX")
	(cd "$top" && { git ls-files -co --exclude-standard 2>/dev/null || find . -type f -not -path './.git/*'; } |
		tar -cf - -T - ) | tar -xf - -C "$src"
	cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null
	mount --bind /proc "$root/proc" && mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev" ||
		{ echo "matrix: cannot mount /proc and /dev in $root" >&2; return 1; }
	chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 PG_MAJOR="$major" \
		${CI:+CI=$CI} ${TAP_ONLY:+TAP_ONLY="$TAP_ONLY"} ${REGRESS_ONLY:+REGRESS_ONLY="$REGRESS_ONLY"} \
		${PROVE_VERBOSE:+PROVE_VERBOSE="$PROVE_VERBOSE"} ${FUZZ_SECONDS:+FUZZ_SECONDS="$FUZZ_SECONDS"} \
		bash -c "cd '${src#"$root"}' && make $target" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	umount -R "$root/dev" 2>/dev/null || umount -l "$root/dev"
	umount "$root/proc" 2>/dev/null || umount -l "$root/proc"
	rm -rf "$src"
	return "$rc"
}

# run_major tests one major, here or in a root filesystem, and adds its
# counts to the totals
run_major()
{
	local major=$1 suite where log start rc counts passed failed
	log=$(mktemp /tmp/enrich-matrix.XXXXXX)
	start=$(date +%s)
	if host_has "$major"; then
		where=here
		echo "== matrix: PostgreSQL $major, on this machine"
		(cd "$top" && make --no-print-directory "$target" PG_MAJOR="$major") 2>&1 | tee "$log"
		rc=${PIPESTATUS[0]}
	elif suite=$(suite_of "$major"); then
		where="Debian $suite"
		echo "== matrix: PostgreSQL $major, in a Debian $suite root filesystem"
		(
			mkdir -p "$roots" && exec 9>"$roots/$suite.lock" && flock 9 &&
				in_root "$suite" "$major" "$log"
		)
		rc=$?
	else
		where=nowhere
		echo "matrix: no Debian release is known for PostgreSQL $major (ENRICH_SUITES)" >&2
		rc=1
	fi
	counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
	passed=$(echo "$counts" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
	failed=$(echo "$counts" | sed -n 's/^[0-9]* passed, \([0-9]*\) failed.*/\1/p')
	passed=${passed:-0}
	failed=${failed:-0}
	[ "$rc" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1
	total_passed=$((total_passed + passed))
	total_failed=$((total_failed + failed))
	summary+=("PostgreSQL $major ($where): $passed passed, $failed failed in $(($(date +%s) - start)) s")
	rm -f "$log"
}

for major in $majors; do
	run_major "$major"
done
echo "== matrix:"
printf '   %s\n' "${summary[@]}"
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
