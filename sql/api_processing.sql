-- enrich_items on a batch the API is still processing.  The slow mock keeps
-- a batch pending for 1 s, then processes 100 items a second.
CREATE EXTENSION enrich;
\set test_key `echo "$ENRICH_TEST_KEY"`
\set slow_url `echo "$ENRICH_MOCK_SLOW_URL"`
SELECT enrich_set_api_key('test', :'test_key');
SET enrich.environment = 'test';
SET enrich.api_url = :'slow_url';

SELECT enrich_submit(jsonb_agg(jsonb_build_object('personId', 'p-' || g))) AS batch
FROM generate_series(1, 100) g \gset

-- pending: no items yet, and a notice saying how many are to come
\set VERBOSITY terse
SELECT count(*) AS rows FROM enrich_items(:'batch');
\set VERBOSITY default

-- processing: the items so far, with no duplicate
SELECT pg_sleep(1.5);
SET client_min_messages = warning;
SELECT count(*) BETWEEN 1 AND 99 AS some_items, count(*) = count(DISTINCT item_id) AS no_duplicates
FROM enrich_items(:'batch');
RESET client_min_messages;

-- completed: every item, and no notice
SELECT pg_sleep(1.2);
SELECT status FROM enrich_status(:'batch');
SELECT count(*) AS rows, count(DISTINCT item_id) AS distinct_items FROM enrich_items(:'batch');

DROP EXTENSION enrich;
