#!/usr/bin/env bash
# demo.sh: the main job, shown on the throwaway cluster and mock that
# harness.sh started (PGHOST/PGPORT and ENRICH_MOCK_URL are set by it).
set -euo pipefail

psql_demo() { psql -X -v ON_ERROR_STOP=1 -v test_key="$ENRICH_TEST_KEY" "$@"; }

echo "== enrich demo: a throwaway cluster on $PGHOST, the mock API at $ENRICH_MOCK_URL"
psql_demo -q <<'SQL'
CREATE EXTENSION enrich;
SELECT enrich_set_api_key('test', :'test_key') \gset
SQL

psql_demo <<'SQL'
\echo '== submit three people to the test environment'
SET enrich.environment = 'test';
SELECT enrich_submit('[
  {"professionalSocialMediaUrl": "https://www.linkedin.com/in/jane-doe", "metadata": {"contact_id": 1}},
  {"personId": "p-1002", "metadata": {"contact_id": 2}},
  {"professionalSocialMediaUrl": "linkedin.com/in/notfound-someone", "metadata": {"contact_id": 3}}
]') AS batch \gset
\echo batch :batch
SELECT status, total_count, processed_count FROM enrich_status(:'batch');

\echo '== wait for the API to process it'
SELECT pg_sleep(1) \gset
SELECT status, total_count, success_count, failure_count FROM enrich_status(:'batch');

\echo '== the enriched people'
SELECT metadata->>'contact_id' AS contact, is_success,
       person->>'fullName' AS full_name, person->>'jobTitle' AS job_title,
       person->>'companyName' AS company, error->>'code' AS error
FROM enrich_items(:'batch');

\echo '== recent batches'
SELECT batch_id, status, total_count FROM enrich_batches("limit" => 5);
SQL
