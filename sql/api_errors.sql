-- Every error path of the SQL API, with its SQLSTATE.
CREATE EXTENSION enrich;
\set test_key `echo "$ENRICH_TEST_KEY"`
\set live_key `echo "$ENRICH_LIVE_KEY"`
\set mock_url `echo "$ENRICH_MOCK_URL"`
\! curl -s -X POST "$ENRICH_MOCK_URL/__mock/reset" > /dev/null
SET enrich.environment = 'test';

-- no key set for the environment
SELECT enrich_status('bat_x');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;

-- bad arguments, refused before any call
SELECT enrich_set_api_key('test', :'test_key');
SELECT enrich_status(NULL);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT enrich_status('bat_x', 'staging');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT enrich_submit(NULL);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT enrich_submit('{"personId": "p-1"}');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT enrich_submit('[]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT enrich_submit((SELECT jsonb_agg(jsonb_build_object('personId', 'p-' || g)) FROM generate_series(1, 1001) g));
SELECT enrich_submit('[{"personId": "p-1"}, 42]');
SELECT enrich_submit('[{"personId": "p-1"}, {"metadata": {"a": 1}}]');
SELECT enrich_submit('[{"personId": "p-1"}, {"personId": ""}]');
SELECT enrich_submit('[{"personId": 7}]');
SELECT enrich_submit(jsonb_build_array(jsonb_build_object('pdlId', repeat('x', 2049))));
SELECT enrich_submit('[{"pdlId": "a", "email": "a@example.com"}]');
SELECT enrich_submit('[{"pdlId": "a", "metadata": [1, 2]}]');
SELECT enrich_submit(jsonb_build_array(jsonb_build_object('pdlId', 'a', 'metadata', jsonb_build_object('note', repeat('x', 4100)))));
SELECT enrich_submit('[{"pdlId": "a"}, {"pdlId": "b"}, {"professionalSocialMediaUrl": "https://example.com/in/jane"}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT enrich_submit('[{"professionalSocialMediaUrl": "linkedin.com/company/acme"}]');
SELECT count(*) FROM enrich_batches("limit" => 0);
SELECT count(*) FROM enrich_batches("limit" => 1001);
SELECT count(*) FROM enrich_batches("offset" => -1);
SELECT count(*) FROM enrich_batches('infinity'::date);
SELECT count(*) FROM enrich_items('bat_x', page_size => 51);
SELECT count(*) FROM enrich_items('bat_x', page_size => 0);
\set stats `curl -s "$ENRICH_MOCK_URL/__mock/stats"`
SELECT (:'stats'::jsonb ->> 'requests_total')::int AS api_calls_so_far;

-- 400 from the API: its message names the index and field
SELECT enrich_submit('[{"personId": "p-1"}, {"professionalSocialMediaUrl": "linkedin.com/in/invalid-jane"}]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;

-- 401: an unknown key
SELECT enrich_set_api_key('test', 'not-a-key');
SELECT enrich_status('bat_x');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;

-- 403: the key of the other environment
SELECT enrich_set_api_key('test', :'live_key');
SELECT enrich_status('bat_x');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT enrich_set_api_key('test', :'test_key');

-- 404: no such batch, no such item
SELECT enrich_status('bat_99999999_00000000');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT enrich_submit('[{"personId": "p-1"}]') AS batch \gset
\set VERBOSITY terse
SELECT enrich_item(:'batch', 'itm_nope');
\set VERBOSITY default
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;

-- 413: a body over 4 MiB
SELECT enrich_submit(jsonb_agg(jsonb_build_object('pdlId', 'p-' || g || repeat('x', 2000),
                                                   'metadata', jsonb_build_object('n', repeat('y', 3000)))))
FROM generate_series(1, 1000) g;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;

-- 429: the hint says when to retry
\! curl -s -X POST -d '{"rate_429": 1, "retry_after": 7}' "$ENRICH_MOCK_URL/__mock/faults" > /dev/null
SELECT enrich_status('bat_x');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;

-- 5xx (the status is drawn at random, so only the SQLSTATE is shown)
\! curl -s -X POST -d '{"rate_5xx": 1}' "$ENRICH_MOCK_URL/__mock/faults" > /dev/null
\set VERBOSITY sqlstate
SELECT enrich_status(:'batch');
\set VERBOSITY default
SELECT :'LAST_ERROR_MESSAGE' LIKE 'AggKnowledge API is unavailable: %' AS unavailable;

-- a body that is not JSON
\! curl -s -X POST -d '{"rate_malformed": 1}' "$ENRICH_MOCK_URL/__mock/faults" > /dev/null
\set VERBOSITY sqlstate
SELECT enrich_status(:'batch');
SELECT count(*) FROM enrich_items(:'batch');
\set VERBOSITY default
SELECT :'LAST_ERROR_MESSAGE' LIKE 'malformed AggKnowledge API response: %' AS malformed;

-- a dropped connection
\! curl -s -X POST -d '{"rate_drop": 1}' "$ENRICH_MOCK_URL/__mock/faults" > /dev/null
\set VERBOSITY sqlstate
SELECT enrich_status(:'batch');
\set VERBOSITY default
SELECT :'LAST_ERROR_MESSAGE' LIKE 'could not reach the AggKnowledge API: %' AS unreachable;

-- a timeout (enrich.timeout)
\! curl -s -X POST -d '{"latency_ms": 2000}' "$ENRICH_MOCK_URL/__mock/faults" > /dev/null
SET enrich.timeout = '200ms';
\set VERBOSITY sqlstate
SELECT enrich_status(:'batch');
\set VERBOSITY default
SELECT :'LAST_ERROR_MESSAGE' LIKE 'AggKnowledge API call timed out: %' AS timed_out;
RESET enrich.timeout;
\! curl -s -X POST -d '{}' "$ENRICH_MOCK_URL/__mock/faults" > /dev/null

-- nothing listens there
SET enrich.api_url = 'http://127.0.0.1:9';
\set VERBOSITY sqlstate
SELECT enrich_status(:'batch');
\set VERBOSITY default
SELECT :'LAST_ERROR_MESSAGE' LIKE 'could not reach the AggKnowledge API: %' AS unreachable;
RESET enrich.api_url;

-- only http and https
SET enrich.api_url = 'ftp://127.0.0.1/';
SET enrich.api_url = 'file:///etc/passwd';

-- a response larger than enrich.max_response_size is refused unparsed
SELECT enrich_submit(jsonb_agg(jsonb_build_object('personId', 'p-' || g,
                                                   'metadata', jsonb_build_object('n', repeat('y', 3000)))))
       AS fat FROM generate_series(1, 50) g \gset
SET enrich.max_response_size = '64kB';
\set VERBOSITY terse
SELECT count(*) FROM enrich_items(:'fat');
\set VERBOSITY default
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
RESET enrich.max_response_size;
SELECT count(*) AS rows FROM enrich_items(:'fat');

-- a read-only transaction (as on a standby) sends nothing: the batch, paid
-- for, could not be recorded
BEGIN READ ONLY;
SELECT enrich_submit('[{"personId": "p-read-only"}]');
ROLLBACK;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
\set stats `curl -s "$ENRICH_MOCK_URL/__mock/stats"`
SELECT (:'stats'::jsonb)->'submissions' ? 'personId:p-read-only' AS was_sent;

DROP EXTENSION enrich;
