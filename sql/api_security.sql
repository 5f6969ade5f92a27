-- Privileges and the secrecy of the API key.
CREATE EXTENSION enrich;
\set test_key `echo "$ENRICH_TEST_KEY"`
\! curl -s -X POST "$ENRICH_MOCK_URL/__mock/reset" > /dev/null
SELECT enrich_set_api_key('test', :'test_key');
SET enrich.environment = 'test';

-- nothing is granted to PUBLIC
SELECT p.proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_can_execute
FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'enrich'
ORDER BY 1;
SELECT c.relname, has_table_privilege('public', c.oid, 'SELECT') AS public_can_select
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'enrich' AND c.relkind IN ('r', 'v') ORDER BY 1;

-- an application role granted what README.md shows
CREATE ROLE enrich_app_test;
GRANT USAGE ON SCHEMA enrich TO enrich_app_test;
GRANT EXECUTE ON FUNCTION enrich_submit(jsonb, text), enrich_status(text, text),
    enrich_item(text, text, text), enrich_items(text, text, integer),
    enrich.items_stream(text, text, integer),
    enrich_batches(date, integer, integer, text) TO enrich_app_test;
GRANT SELECT ON enrich.batches TO enrich_app_test;

SET ROLE enrich_app_test;
-- it uses the key without seeing it
SELECT enrich_submit('[{"personId": "p-1"}]') AS batch \gset
SELECT status, total_count FROM enrich_status(:'batch');
SELECT count(*) AS rows FROM enrich_items(:'batch');
SELECT origin, submitted_by, current_user FROM enrich.batches WHERE batch_id = :'batch';
-- no path shows the key
SELECT * FROM enrich.api_keys;
SELECT count(*) AS key_settings FROM pg_settings WHERE name LIKE 'enrich.%key%';
SHOW enrich.api_key;
SELECT enrich_set_api_key('test', 'mine');
SET enrich.api_url = 'http://127.0.0.1:1';
SET enrich.ca_file = '/tmp/x';
SELECT count(*) AS key_in_activity FROM pg_stat_activity WHERE query LIKE '%' || :'test_key' || '%' AND pid <> pg_backend_pid();
RESET ROLE;

-- an error never shows the key
SELECT enrich_set_api_key('test', 'sekrit-123');
\set VERBOSITY terse
SELECT enrich_status(:'batch');
\set VERBOSITY default
SELECT position('sekrit' IN :'LAST_ERROR_MESSAGE') = 0 AS key_not_in_message;
SELECT enrich_set_api_key('test', E'bad\nkey');
SELECT enrich_set_api_key('test', '');
SELECT enrich_set_api_key(NULL, 'x');
-- NULL forgets the key
SELECT enrich_set_api_key('test', NULL);
SELECT count(*) AS keys FROM enrich.api_keys;

DROP EXTENSION enrich;
DROP OWNED BY enrich_app_test;
DROP ROLE enrich_app_test;
