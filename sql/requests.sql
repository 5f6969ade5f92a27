-- Direct inserts into enrich.requests: what is accepted, the normalized
-- identifier, every refusal with its SQLSTATE, and the SQL helpers
-- enrich.normalize_identifier and enrich.request_problem that share the
-- same checks.  No worker runs in this database: rows stay queued.
CREATE EXTENSION enrich;
SET enrich.environment = 'test';

-- accepted requests; identifier is computed, the rest are defaults
INSERT INTO enrich.requests (linkedin_url) VALUES ('https://www.linkedin.com/in/Jane-Doe/');
INSERT INTO enrich.requests (linkedin_url, environment) VALUES ('http://uk.linkedin.com/in/jane-doe?trk=feed#top', 'live');
INSERT INTO enrich.requests (person_id, metadata) VALUES ('p-1001', '{"contact_id": 42}');
INSERT INTO enrich.requests (pdl_id) VALUES ('PDL-7');
INSERT INTO enrich.requests (person_id, pdl_id) VALUES ('p-2', 'pdl-2');
INSERT INTO enrich.requests (linkedin_url, person_id) VALUES ('linkedin.com/in/Alan-Turing', 'p-3');
-- Sales Navigator and Recruiter URLs are accepted
INSERT INTO enrich.requests (linkedin_url) VALUES ('https://www.linkedin.com/sales/lead/ACwAAA1,NAME_SEARCH');
INSERT INTO enrich.requests (linkedin_url) VALUES ('https://www.linkedin.com/sales/people/ACwAAB2');
INSERT INTO enrich.requests (linkedin_url) VALUES ('https://www.linkedin.com/talent/profile/AEMAAC3');
-- the longest identifier, and the largest metadata: 4096 bytes less the 48
-- the worker keeps for its request id; '/' counts twice, as the API writes it
INSERT INTO enrich.requests (pdl_id) VALUES (repeat('x', 2048));
INSERT INTO enrich.requests (person_id, metadata) VALUES ('p-4', jsonb_build_object('note', repeat('a', 4037)));
INSERT INTO enrich.requests (person_id, metadata) VALUES ('p-5', jsonb_build_object('url', repeat('/', 2019)));
SELECT environment, linkedin_url, person_id, left(pdl_id, 10) AS pdl_id,
       left(identifier, 50) AS identifier, state, attempts, metadata IS NOT NULL AS metadata
FROM enrich.requests ORDER BY id;
SELECT count(*) AS accepted FROM enrich.requests;

-- refusals: each names the column, and queues nothing
INSERT INTO enrich.requests (metadata) VALUES ('{"contact_id": 1}');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, count(*) AS requests FROM enrich.requests;
INSERT INTO enrich.requests (linkedin_url, person_id, pdl_id) VALUES (NULL, NULL, NULL);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, count(*) AS requests FROM enrich.requests;
INSERT INTO enrich.requests (linkedin_url) VALUES ('');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, count(*) AS requests FROM enrich.requests;
INSERT INTO enrich.requests (person_id) VALUES ('');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, count(*) AS requests FROM enrich.requests;
INSERT INTO enrich.requests (person_id, pdl_id) VALUES ('p-6', '');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, count(*) AS requests FROM enrich.requests;
INSERT INTO enrich.requests (person_id) VALUES (repeat('x', 2049));
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, count(*) AS requests FROM enrich.requests;
INSERT INTO enrich.requests (pdl_id) VALUES (repeat(chr(233), 1025));
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, count(*) AS requests FROM enrich.requests;
INSERT INTO enrich.requests (linkedin_url) VALUES ('https://www.linkedin.com/in/' || repeat('a', 2021));
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, count(*) AS requests FROM enrich.requests;
INSERT INTO enrich.requests (linkedin_url) VALUES ('https://example.com/x');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, count(*) AS requests FROM enrich.requests;
INSERT INTO enrich.requests (linkedin_url) VALUES ('https://www.linkedin.com/company/acme');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, count(*) AS requests FROM enrich.requests;
INSERT INTO enrich.requests (linkedin_url) VALUES ('https://linkedin.com.example.net/in/jane');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, count(*) AS requests FROM enrich.requests;
INSERT INTO enrich.requests (linkedin_url, person_id) VALUES (E'jane doe\non linkedin', 'p-7');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, count(*) AS requests FROM enrich.requests;
INSERT INTO enrich.requests (linkedin_url) VALUES ('https://example.com/' || repeat('long-', 60));
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, count(*) AS requests FROM enrich.requests;
INSERT INTO enrich.requests (person_id, metadata) VALUES ('p-8', '[1, 2]');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, count(*) AS requests FROM enrich.requests;
INSERT INTO enrich.requests (person_id, metadata) VALUES ('p-8', '"contact 42"');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, count(*) AS requests FROM enrich.requests;
INSERT INTO enrich.requests (person_id, metadata) VALUES ('p-8', 'null');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, count(*) AS requests FROM enrich.requests;
INSERT INTO enrich.requests (person_id, metadata) VALUES ('p-8', jsonb_build_object('note', repeat('a', 4038)));
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, count(*) AS requests FROM enrich.requests;
INSERT INTO enrich.requests (person_id, metadata) VALUES ('p-8', jsonb_build_object('url', repeat('/', 2020)));
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, count(*) AS requests FROM enrich.requests;
INSERT INTO enrich.requests (person_id, environment) VALUES ('p-8', 'prod');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, count(*) AS requests FROM enrich.requests;
INSERT INTO enrich.requests (person_id, environment) VALUES ('p-8', 'LIVE');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, count(*) AS requests FROM enrich.requests;
-- a NULL environment is the column's NOT NULL constraint's to refuse
\set VERBOSITY terse
INSERT INTO enrich.requests (person_id, environment) VALUES ('p-8', NULL);
\set VERBOSITY default
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, count(*) AS requests FROM enrich.requests;
-- one bad row refuses the whole statement
INSERT INTO enrich.requests (person_id) VALUES ('p-9'), (''), ('p-10');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate, count(*) AS requests FROM enrich.requests;

-- a row inserted as failed is kept as it is (this is how a watched table
-- records a malformed identifier); its identifier is NULL when not valid
INSERT INTO enrich.requests (linkedin_url, state, error)
VALUES ('not a url', 'failed', '{"code": "invalid_identifier"}');
INSERT INTO enrich.requests (person_id, state) VALUES ('p-11', 'failed');
INSERT INTO enrich.requests (state) VALUES ('failed');
SELECT linkedin_url, person_id, identifier, state, error FROM enrich.requests
WHERE state = 'failed' ORDER BY id;

-- an UPDATE of an identifier is checked and recomputes identifier
UPDATE enrich.requests SET linkedin_url = 'https://www.linkedin.com/in/New-Person/'
WHERE person_id = 'p-1001' RETURNING person_id, identifier;
UPDATE enrich.requests SET linkedin_url = NULL
WHERE person_id = 'p-1001' RETURNING person_id, identifier;
UPDATE enrich.requests SET person_id = NULL, pdl_id = 'pdl-9'
WHERE person_id = 'p-2' RETURNING pdl_id, identifier;
UPDATE enrich.requests SET linkedin_url = 'https://example.com/x' WHERE person_id = 'p-1001';
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
UPDATE enrich.requests SET metadata = '[]' WHERE person_id = 'p-1001';
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
UPDATE enrich.requests SET environment = 'staging' WHERE person_id = 'p-1001';
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT environment, linkedin_url, identifier, metadata FROM enrich.requests WHERE person_id = 'p-1001';

-- the same checks as SQL functions: the identifier, and what is wrong
SELECT c.n, enrich.normalize_identifier(c.url, c.pid, c.pdl) AS identifier,
       enrich.request_problem(c.url, c.pid, c.pdl, c.metadata) AS problem
FROM (VALUES
    (1, 'https://www.linkedin.com/in/Jane-Doe/', NULL, NULL, NULL::jsonb),
    (2, 'HTTP://WWW.LINKEDIN.COM/IN/JANE-DOE?x=1', 'p-1', 'pdl-1', '{"a": 1}'),
    (3, 'linkedin.com/in/jane-doe/', NULL, NULL, NULL),
    (4, 'https://de.linkedin.com/sales/people/ACwAAB2/', NULL, NULL, NULL),
    (5, NULL, 'p-1', 'pdl-1', NULL),
    (6, NULL, NULL, 'pdl-1', NULL),
    (7, NULL, ' p 1 ', NULL, NULL),
    (8, NULL, NULL, NULL, NULL),
    (9, NULL, NULL, NULL, '{"a": 1}'),
    (10, 'https://example.com/in/jane', NULL, NULL, NULL),
    (11, 'https://example.com/in/jane', 'p-1', NULL, NULL),
    (12, 'linkedin.com/in/', NULL, NULL, NULL),
    (13, 'linkedin.com/in/jane/posts', NULL, NULL, NULL),
    (14, 'ftp://linkedin.com/in/jane', NULL, NULL, NULL),
    (15, 'https://www.linkedin.com:8443/in/jane', NULL, NULL, NULL),
    (16, '', 'p-1', NULL, NULL),
    (17, NULL, '', NULL, NULL),
    (18, NULL, 'p-1', repeat('x', 2049), NULL),
    (19, NULL, 'p-1', NULL, '[]'),
    (20, NULL, 'p-1', NULL, '{}'),
    (21, NULL, 'p-1', NULL, '{"nested": {"list": [1, 2.50, true, null, "\"quoted\""]}}'),
    (22, NULL, 'p-1', NULL, jsonb_build_object('k', E'\u0001' || repeat('z', 4034))),
    (23, NULL, 'p-1', NULL, jsonb_build_object('k', E'\u0001' || repeat('z', 4035)))
) AS c(n, url, pid, pdl, metadata)
ORDER BY c.n;
-- both are NULL-safe and agree with the trigger
SELECT count(*) AS disagreements FROM enrich.requests
WHERE state <> 'failed'
  AND (enrich.request_problem(linkedin_url, person_id, pdl_id, metadata) IS NOT NULL
       OR enrich.normalize_identifier(linkedin_url, person_id, pdl_id) IS DISTINCT FROM identifier);

-- a role without grants cannot queue anything; one granted INSERT can,
-- and the same checks apply to it
CREATE ROLE enrich_requests_role;
SET ROLE enrich_requests_role;
INSERT INTO enrich.requests (person_id) VALUES ('p-12');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT enrich.request_problem(NULL, 'p-12', NULL, NULL);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
RESET ROLE;
GRANT USAGE ON SCHEMA enrich TO enrich_requests_role;
SET ROLE enrich_requests_role;
INSERT INTO enrich.requests (person_id) VALUES ('p-12');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
RESET ROLE;
GRANT INSERT ON enrich.requests TO enrich_requests_role;
SET ROLE enrich_requests_role;
INSERT INTO enrich.requests (person_id) VALUES ('p-12');
INSERT INTO enrich.requests (linkedin_url) VALUES ('https://example.com/x');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
RESET ROLE;
SELECT person_id, identifier, state FROM enrich.requests WHERE person_id = 'p-12';
REVOKE ALL ON enrich.requests FROM enrich_requests_role;
REVOKE ALL ON SCHEMA enrich FROM enrich_requests_role;
DROP ROLE enrich_requests_role;

DROP EXTENSION enrich;
