-- A slow API call stops promptly on statement_timeout, and the connection
-- handling recovers for the next call.
CREATE EXTENSION enrich;
\set test_key `echo "$ENRICH_TEST_KEY"`
\! curl -s -X POST "$ENRICH_MOCK_URL/__mock/reset" > /dev/null
SELECT enrich_set_api_key('test', :'test_key');
SET enrich.environment = 'test';
SELECT enrich_submit('[{"personId": "p-1"}]') AS batch \gset
SELECT set_config('enrich_test.batch', :'batch', false) IS NOT NULL AS remembered;

\! curl -s -X POST -d '{"latency_ms": 5000}' "$ENRICH_MOCK_URL/__mock/faults" > /dev/null
CREATE TEMP TABLE cancel_times (elapsed interval);
SET statement_timeout = '300ms';
DO $$
DECLARE
    started timestamptz := clock_timestamp();
BEGIN
    PERFORM enrich_status(current_setting('enrich_test.batch'));
EXCEPTION WHEN query_canceled THEN
    INSERT INTO cancel_times VALUES (clock_timestamp() - started);
END
$$;
RESET statement_timeout;
SELECT count(*) AS cancelled, max(elapsed) < interval '400 ms' AS within_100ms_of_the_timeout
FROM cancel_times;

\! curl -s -X POST -d '{}' "$ENRICH_MOCK_URL/__mock/faults" > /dev/null
SELECT status FROM enrich_status(:'batch');

DROP EXTENSION enrich;
