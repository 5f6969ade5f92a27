#!/usr/bin/env bash
# demo.sh: the main job, shown on the throwaway cluster and mock that
# harness.sh started (PGHOST/PGPORT and ENRICH_MOCK_URL are set by it).
set -euo pipefail

psql_q() { psql -X -v ON_ERROR_STOP=1 -q "$@"; }

echo "== enrich demo: cluster on $PGHOST, mock API at $ENRICH_MOCK_URL"
psql_q -c "CREATE EXTENSION enrich"
psql_q -c "SELECT extname, extversion FROM pg_extension WHERE extname = 'enrich'"

echo "== a submit/status round trip against the mock API"
batch=$(curl -sS -H "x-api-key: $ENRICH_TEST_KEY" -H 'content-type: application/json' \
	-d '{"requests":[{"professionalSocialMediaUrl":"https://www.linkedin.com/in/jane-doe"},{"personId":"p-notfound-1"}]}' \
	"$ENRICH_MOCK_URL/v2/test/person/bulk-enrich")
echo "submitted: $batch"
id=$(echo "$batch" | sed -E 's/.*"batchId" *: *"([^"]+)".*/\1/')
sleep 1
curl -sS -H "x-api-key: $ENRICH_TEST_KEY" "$ENRICH_MOCK_URL/v2/test/person/bulk-enrich/$id"; echo
curl -sS -H "x-api-key: $ENRICH_TEST_KEY" "$ENRICH_MOCK_URL/v2/test/person/bulk-enrich/$id/items"; echo
