-- People are not ASCII.  Persons, metadata and error messages in accented
-- Latin, CJK, Hangul, Arabic and Hebrew (right to left), emoji and
-- combining marks come back byte for byte through every SQL function; an
-- answer that is not UTF-8 is refused, naming the field.  The mock makes
-- non-ASCII persons for a quarter of identifiers and for every identifier
-- that contains "unicode", sent as raw UTF-8 (not \u escapes).
CREATE EXTENSION enrich;
\set test_key `echo "$ENRICH_TEST_KEY"`
\! curl -s -X POST "$ENRICH_MOCK_URL/__mock/reset" > /dev/null
SELECT enrich_set_api_key('test', :'test_key');
SET enrich.environment = 'test';

-- metadata in six scripts, with a combining mark (e + U+0301) that must not
-- be composed, and non-ASCII keys
SELECT enrich_submit(jsonb_build_array(
  jsonb_build_object('professionalSocialMediaUrl', 'https://www.linkedin.com/in/unicode-ada',
                     'metadata', jsonb_build_object('name', 'Zoë Ødegård', 'city', '東京',
                                                    'note', 'שלום 👋🏽', 'mark', 'Ame' || U&'\0301' || 'lie',
                                                    '名前', '山田 太郎', 'الفريق', 'المبيعات')),
  jsonb_build_object('personId', 'p-unicode-notfound', 'metadata', jsonb_build_object('team', '데이터')),
  jsonb_build_object('personId', 'p-unicode-2')
)) AS batch \gset

-- what the mock made, as raw UTF-8 in its JSON, and what came back
\set ada `curl -s "$ENRICH_MOCK_URL/__mock/person?professionalSocialMediaUrl=linkedin.com/in/unicode-ada"`
\set two `curl -s "$ENRICH_MOCK_URL/__mock/person?personId=p-unicode-2"`
SELECT position('\u' IN :'ada') = 0 AS sent_raw, :'ada' ~ '[^\x01-\x7f]' AS has_non_ascii;
SELECT person->>'fullName' AS full_name, person->>'jobTitle' AS job_title,
       person->>'companyName' AS company, person->>'location' AS location,
       error->>'message' AS error
FROM enrich_items(:'batch');

-- byte for byte: the persons equal the mock's, and so do their texts
SELECT person = (:'ada'::jsonb)->'person' AS ada_is_the_mocks,
       convert_to(person::text, 'UTF8') = convert_to(((:'ada'::jsonb)->'person')::text, 'UTF8') AS same_bytes
FROM enrich_items(:'batch') WHERE metadata ? 'city';
SELECT person = (:'two'::jsonb)->'person' AS two_is_the_mocks
FROM enrich_items(:'batch') WHERE person->>'personId' = (:'two'::jsonb)->'person'->>'personId';

-- the metadata is echoed exactly: the combining mark stays two code points
SELECT metadata->>'name' AS name, metadata->>'note' AS note, metadata->>'名前' AS "名前",
       metadata->>'الفريق' AS "الفريق", length(metadata->>'mark') AS mark_chars,
       octet_length(metadata->>'mark') AS mark_bytes,
       encode(convert_to(metadata->>'mark', 'UTF8'), 'hex') AS mark_hex
FROM enrich_items(:'batch') WHERE metadata ? 'city';
SELECT metadata->>'team' AS team, error->>'code' AS code, error->>'message' AS message
FROM enrich_items(:'batch') WHERE NOT is_success;

-- enrich_item gives the same rows, one by one
SELECT bool_and(to_jsonb(i) = to_jsonb(o)) AS same_rows, count(*) AS items
FROM enrich_items(:'batch') o, LATERAL enrich_item(:'batch', o.item_id) i;

-- an answer that is not UTF-8 is refused as a protocol violation, naming
-- the field
\set VERBOSITY terse
\! curl -s -X POST -d '{"hostile": "bad_utf8", "hostile_fields": ["person"], "hostile_item": 0}' "$ENRICH_MOCK_URL/__mock/faults" > /dev/null
SELECT person->>'fullName' FROM enrich_items(:'batch');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
\! curl -s -X POST -d '{"hostile": "bad_utf8", "hostile_fields": ["message"], "endpoints": ["get_item"]}' "$ENRICH_MOCK_URL/__mock/faults" > /dev/null
SELECT item_id AS failed_item FROM enrich_items(:'batch') WHERE NOT is_success \gset
SELECT error FROM enrich_item(:'batch', :'failed_item');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
\! curl -s -X POST -d '{"hostile": "bad_utf8", "hostile_fields": ["status"]}' "$ENRICH_MOCK_URL/__mock/faults" > /dev/null
SELECT status FROM enrich_status(:'batch');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
\! curl -s -X POST -d '{}' "$ENRICH_MOCK_URL/__mock/faults" > /dev/null
\set VERBOSITY default
SELECT count(*) AS items_after FROM enrich_items(:'batch');

-- identifiers in other scripts: LinkedIn slugs raw and percent-encoded (only
-- ASCII letters are lower-cased, as the API does), and ids
INSERT INTO enrich.requests (linkedin_url) VALUES ('https://www.linkedin.com/in/Jos%C3%A9-N%C3%BA%C3%B1ez');
INSERT INTO enrich.requests (linkedin_url) VALUES ('https://www.linkedin.com/in/ÉLODIE-Núñez-山田/');
INSERT INTO enrich.requests (person_id, metadata) VALUES ('p-山田-🚀', '{"ü": "ÿ"}');
SELECT identifier, metadata FROM enrich.requests ORDER BY id;

DROP EXTENSION enrich;
