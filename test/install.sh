#!/usr/bin/env bash
# install.sh: installs the built extension into the server's directories
# ("make install").  As root it installs; otherwise it tries, and when the
# directories are not writable it prints the command to run and fails.
set -euo pipefail
cd "$(dirname "$0")/.."

if make --no-print-directory -s install >/tmp/enrich-install.$$.log 2>&1; then
	rm -f /tmp/enrich-install.$$.log
	exit 0
fi
cat /tmp/enrich-install.$$.log >&2
rm -f /tmp/enrich-install.$$.log
if [ "$(id -u)" -ne 0 ]; then
	echo "enrich: 'make install' needs write access to PostgreSQL's directories; run: sudo make install" >&2
fi
exit 1
