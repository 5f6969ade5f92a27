#!/usr/bin/env bash
# deps.sh: installs the Debian packages that building, testing and the demo
# need, when any is missing.  As root it runs apt-get; otherwise it prints the
# exact command to run and fails.
set -euo pipefail

packages=(
	build-essential pkg-config
	postgresql-15 postgresql-server-dev-15
	libcurl4-openssl-dev libjson-c-dev libmicrohttpd-dev
	libipc-run-perl curl openssl procps
	clang-14 libclang-rt-14-dev
)

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
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
