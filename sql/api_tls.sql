-- HTTPS: the API's certificate is verified against enrich.ca_file.
CREATE EXTENSION enrich;
\set test_key `echo "$ENRICH_TEST_KEY"`
\set tls_url `echo "$ENRICH_MOCK_TLS_URL"`
\set ca_file `echo "$ENRICH_TEST_CA"`
SELECT enrich_set_api_key('test', :'test_key');
SET enrich.environment = 'test';
SET enrich.api_url = :'tls_url';

-- the test CA is not in the system's trust store: refused
\set VERBOSITY sqlstate
SELECT enrich_submit('[{"personId": "p-tls"}]');
\set VERBOSITY default
SELECT :'LAST_ERROR_MESSAGE' LIKE 'TLS failure talking to the AggKnowledge API: %' AS tls_refused;

-- with the CA: accepted
SET enrich.ca_file = :'ca_file';
SELECT enrich_submit('[{"personId": "p-tls"}]') AS batch \gset
SELECT status, total_count FROM enrich_status(:'batch');
SELECT count(*) AS rows FROM enrich_items(:'batch');

-- the host name must match the certificate (issued for 127.0.0.1 only)
SELECT replace(:'tls_url', '127.0.0.1', 'localhost') AS other_host_url \gset
SET enrich.api_url = :'other_host_url';
\set VERBOSITY sqlstate
SELECT enrich_status(:'batch');
\set VERBOSITY default
SELECT :'LAST_ERROR_MESSAGE' LIKE 'TLS failure talking to the AggKnowledge API: %' AS wrong_host_refused;

DROP EXTENSION enrich;
