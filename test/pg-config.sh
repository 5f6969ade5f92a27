#!/usr/bin/env bash
# pg-config.sh: prints the pg_config of the PostgreSQL that enrich builds
# against and tests with, the one place that chooses it:
#   - PG_CONFIG, when set;
#   - else /usr/lib/postgresql/$PG_MAJOR/bin/pg_config, when PG_MAJOR is set;
#   - else the newest major installed under /usr/lib/postgresql (Debian's
#     layout);
#   - else pg_config from PATH.
# It prints nothing and fails when there is none (make deps installs one).
set -uo pipefail

if [ -n "${PG_CONFIG:-}" ]; then
	command -v "$PG_CONFIG" || exit 1
	exit 0
fi
if [ -n "${PG_MAJOR:-}" ]; then
	found=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
	[ -x "$found" ] || exit 1
	echo "$found"
	exit 0
fi
found=$(ls -d /usr/lib/postgresql/*/bin/pg_config 2>/dev/null | sort -V | tail -1)
[ -n "$found" ] || found=$(command -v pg_config) || exit 1
echo "$found"
