#!/usr/bin/env bash
# demo.sh: the main job, on the throwaway cluster and mock that harness.sh
# started (PGHOST/PGPORT and ENRICH_MOCK_URL are set by it): a contacts
# table of 1,000 rows is watched, the worker enriches it while a progress
# line runs, then a summary and three enriched rows.
set -euo pipefail

psql_demo() { psql -X -v ON_ERROR_STOP=1 -v test_key="$ENRICH_TEST_KEY" "$@"; }
psql_value() { psql -X -v ON_ERROR_STOP=1 -At -c "$1"; }

echo "== enrich demo: a throwaway cluster on $PGHOST, the mock API at $ENRICH_MOCK_URL"
psql_demo -q <<'SQL'
CREATE EXTENSION enrich;
SELECT enrich_set_api_key('test', :'test_key') \gset
CREATE TABLE contacts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    full_name    text,
    linkedin_url text,
    person       jsonb
);
SELECT enrich_watch('contacts', 'person', linkedin_url_column => 'linkedin_url',
                    environment => 'test') \gset
SQL
echo "== watching table contacts; inserting 1,000 contacts"
start=$(date +%s.%N)
psql_demo -q <<'SQL'
INSERT INTO contacts (full_name, linkedin_url)
SELECT 'Contact ' || g,
       CASE WHEN g % 250 = 0 THEN 'https://www.linkedin.com/in/notfound-' || g
            ELSE 'https://www.linkedin.com/in/demo-contact-' || g END
FROM generate_series(1, 1000) g;
SQL

line=""
for _ in $(seq 600); do
	line=$(psql_value "SELECT format('queued %s | in flight %s | waiting retry %s | done today %s | failed today %s | %s',
	                   queued, in_flight, waiting_retry, done_today, failed_today, worker_state)
	                   FROM enrich.progress WHERE environment = 'test'")
	printf '\r%s   ' "$line"
	pending=$(psql_value "SELECT queued + in_flight + waiting_retry FROM enrich.progress WHERE environment = 'test'")
	[ "$pending" -eq 0 ] && break
	sleep 0.2
done
echo
end=$(date +%s.%N)

psql_demo -q -v start="$start" -v end="$end" <<'SQL'
\echo == summary
SELECT count(*) FILTER (WHERE state = 'done') AS done,
       count(*) FILTER (WHERE state = 'failed') AS failed,
       round((:end - :start)::numeric, 2) AS seconds,
       round(count(*) / (:end - :start)::numeric) AS rows_per_second
FROM enrich.requests;
\echo == three enriched contacts
SELECT id, full_name, person->>'fullName' AS person, person->>'jobTitle' AS job_title,
       person->>'companyName' AS company, person->>'location' AS location
FROM contacts WHERE person IS NOT NULL ORDER BY id LIMIT 3;
\echo == the failed ones
SELECT source_key->>0 AS contact_id, linkedin_url, error->>'code' AS error
FROM enrich.requests WHERE state = 'failed' ORDER BY id;
SQL
