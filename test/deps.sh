#!/usr/bin/env bash
# deps.sh: installs the Debian packages that building, testing and the demo
# need, when any is missing.  As root it runs apt-get; otherwise it prints the
# exact command to run and fails.
#
# The PostgreSQL major is PG_MAJOR, else that of PG_CONFIG or of the newest
# server already installed (test/pg-config.sh), else the release's default
# (the major Debian's "postgresql" package depends on).  Compilers are the
# release's defaults (the "clang" and "libclang-rt-dev" packages).
#
#   bash test/deps.sh          install what is missing
#   bash test/deps.sh --list   only print the packages (test/matrix.sh
#                              builds root filesystems with them)
set -euo pipefail
cd "$(dirname "$0")/.."

# pg_major prints the major to install, or nothing when only apt can tell
pg_major()
{
	local pg_config
	if [ -n "${PG_MAJOR:-}" ]; then
		echo "$PG_MAJOR"
	elif pg_config=$(bash test/pg-config.sh); then
		"$pg_config" --version | sed -n 's/^PostgreSQL \([0-9]*\).*/\1/p'
	fi
}

# default_major prints the major of the release's "postgresql" package
default_major()
{
	apt-cache depends postgresql 2>/dev/null | sed -n 's/^ *Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | head -1
}

updated=0
major=$(pg_major)
if [ -z "$major" ]; then
	[ "$(id -u)" -eq 0 ] && { apt-get update -qq; updated=1; }
	major=$(default_major)
	[ -n "$major" ] || { echo "enrich: cannot tell which PostgreSQL to install; set PG_MAJOR" >&2; exit 1; }
fi

packages=(
	build-essential pkg-config
	"postgresql-$major" "postgresql-server-dev-$major"
	libcurl4-openssl-dev libjson-c-dev libmicrohttpd-dev
	libipc-run-perl curl openssl procps
	clang libclang-rt-dev
)

if [ "${1:-}" = --list ]; then
	echo "${packages[*]}"
	exit 0
fi

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "enrich: these Debian packages are missing: ${missing[*]}" >&2
	echo "enrich: install them with:" >&2
	echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
	exit 1
fi

echo "enrich: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
[ $updated = 1 ] || apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
