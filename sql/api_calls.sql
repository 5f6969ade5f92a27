-- The SQL API on its happy paths, against the mock API.
CREATE EXTENSION enrich;
\set test_key `echo "$ENRICH_TEST_KEY"`
\set live_key `echo "$ENRICH_LIVE_KEY"`
\! curl -s -X POST "$ENRICH_MOCK_URL/__mock/reset" > /dev/null
SELECT enrich_set_api_key('test', :'test_key');
SELECT enrich_set_api_key('live', :'live_key');
SET enrich.environment = 'test';

-- enrich_submit sends the requests and records the batch
SELECT enrich_submit('[
  {"professionalSocialMediaUrl": "https://www.linkedin.com/in/Jane-Doe/", "metadata": {"contact": 1}},
  {"personId": "p-notfound-1", "metadata": {"contact": 2}},
  {"pdlId": "pdl-42", "metadata": {"contact": 3}}
]') AS batch \gset
SELECT environment, origin, status, request_count, submitted_by = current_user AS by_me
FROM enrich.batches WHERE batch_id = :'batch';

-- enrich_status
SELECT batch_id = :'batch' AS same_batch, status, total_count, processed_count,
       success_count, failure_count, created_at <= now() AS created_in_past,
       completed_at >= created_at AS completed_after_created
FROM enrich_status(:'batch');

-- enrich_items: every item, in request order, metadata echoed
SELECT item_id IS NOT NULL AS has_item_id, is_success, is_retryable, metadata,
       person IS NOT NULL AS has_person, error
FROM enrich_items(:'batch');

-- the person is the mock's deterministic person for that identifier
\set jane `curl -s "$ENRICH_MOCK_URL/__mock/person?professionalSocialMediaUrl=linkedin.com/in/jane-doe"`
SELECT person = (:'jane'::jsonb)->'person' AS is_janes_person
FROM enrich_items(:'batch') WHERE metadata->>'contact' = '1';

-- enrich_item: one item by its id, the same row as in enrich_items
SELECT item_id AS first_item FROM enrich_items(:'batch', page_size => 1) LIMIT 1 \gset
SELECT i.item_id = :'first_item' AS same_item,
       to_jsonb(i) = (SELECT to_jsonb(x) FROM enrich_items(:'batch') x LIMIT 1) AS same_row
FROM enrich_item(:'batch', :'first_item') i;

-- a named environment wins over enrich.environment
SELECT enrich_submit('[{"personId": "p-live-1"}]', 'live') AS live_batch \gset
SELECT status, total_count FROM enrich_status(:'live_batch', 'live');
SELECT environment FROM enrich.batches WHERE batch_id = :'live_batch';

-- enrich_batches: newest first, createdAfter, limit and offset
SELECT enrich_submit('[{"personId": "p-2"}]') AS batch2 \gset
SELECT array_agg(batch_id = :'batch2' ORDER BY ord) AS newest_first
FROM enrich_batches() WITH ORDINALITY AS b(batch_id, status, created_at, completed_at,
     total_count, processed_count, success_count, failure_count, ord);
SELECT count(*) AS test_batches FROM enrich_batches();
SELECT count(*) AS from_today FROM enrich_batches((now() AT TIME ZONE 'UTC')::date);
SELECT count(*) AS from_tomorrow FROM enrich_batches((now() AT TIME ZONE 'UTC')::date + 1);
SELECT batch_id = :'batch' AS second_is_first_submitted FROM enrich_batches("limit" => 1, "offset" => 1);
SELECT count(*) AS live_batches FROM enrich_batches(environment => 'live');

-- enrich_items is lazy: LIMIT 5 makes exactly one items call
SELECT enrich_submit(jsonb_agg(jsonb_build_object('personId', 'p-' || g))) AS big
FROM generate_series(1, 300) g \gset
\set before `curl -s "$ENRICH_MOCK_URL/__mock/stats"`
SELECT count(*) AS rows FROM (SELECT * FROM enrich_items(:'big') LIMIT 5) s;
\set after `curl -s "$ENRICH_MOCK_URL/__mock/stats"`
SELECT coalesce((:'after'::jsonb #>> '{endpoints,list_items,200}')::int, 0)
     - coalesce((:'before'::jsonb #>> '{endpoints,list_items,200}')::int, 0) AS items_calls;

-- the whole batch in pages of 50 is 6 calls; in pages of 7, 43
SELECT count(*) AS rows, count(DISTINCT item_id) AS distinct_items FROM enrich_items(:'big');
SELECT count(*) AS rows FROM enrich_items(:'big', page_size => 7);
\set after2 `curl -s "$ENRICH_MOCK_URL/__mock/stats"`
SELECT (:'after2'::jsonb #>> '{endpoints,list_items,200}')::int
     - (:'after'::jsonb #>> '{endpoints,list_items,200}')::int AS items_calls;

-- one kept-alive connection serves many calls: 100 status calls open at most 2
\set before `curl -s "$ENRICH_MOCK_URL/__mock/stats"`
SELECT count((enrich_status(:'big')).status) AS calls FROM generate_series(1, 100);
\set after `curl -s "$ENRICH_MOCK_URL/__mock/stats"`
SELECT (:'after'::jsonb #>> '{endpoints,batch_status,200}')::int
     - coalesce((:'before'::jsonb #>> '{endpoints,batch_status,200}')::int, 0) AS status_calls;
-- (one of the new connections is curl's own, reading the stats)
SELECT (:'after'::jsonb ->> 'connections')::int
     - (:'before'::jsonb ->> 'connections')::int - 1 <= 2 AS at_most_two_connections;

-- unknown fields the API adds are ignored
\! curl -s -X POST -d '{"extra_field": true}' "$ENRICH_MOCK_URL/__mock/faults" > /dev/null
SELECT status, total_count FROM enrich_status(:'batch');
SELECT count(*) AS rows, count(person) AS persons FROM enrich_items(:'batch');
SELECT count(*) AS batches FROM enrich_batches("limit" => 2);
\! curl -s -X POST -d '{}' "$ENRICH_MOCK_URL/__mock/faults" > /dev/null

DROP EXTENSION enrich;
