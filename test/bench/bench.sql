-- bench.sql: the SQL side of make bench (test/bench/bench.pl), loaded into the
-- bench cluster's database after CREATE EXTENSION enrich.
--
-- Schema bench holds:
--   bench.pages          pre-built pages of 50 items (persons as the API returned
--                        them), the input of the write-back bound
--   bench.build_pages    fills bench.pages from real batches of the mock, through
--                        enrich_submit and enrich_items, before anything is timed
--   bench.apply_pages    the write-back bound: applies the pages to enrich.requests
--                        and to a watched contacts table the way the worker does,
--                        one COMMIT per page, with no HTTP at all
--   bench.latency        the latency trials: insert one contact, poll every 2 ms
--                        on the same connection until its person is written
--   bench.progress_reads, bench.time_statement   time reads and statements
--
-- Nothing here is part of the extension.

CREATE SCHEMA bench;

CREATE TABLE bench.pages (
    page_no  integer PRIMARY KEY,
    batch_id text NOT NULL,
    ids      bigint[] NOT NULL,    -- request ids = contact ids, in item order
    persons  text[] NOT NULL,      -- each person as JSON text, as the API sent it
    item_ids text[] NOT NULL
);

CREATE TABLE bench.latency_results (
    run   integer NOT NULL,
    trial integer NOT NULL,
    ms    double precision NOT NULL,
    PRIMARY KEY (run, trial)
);

-- bench.build_pages(n) submits contacts 1..n (the URLs every case uses) to the
-- API in batches of 1,000 with enrich_submit, waits for each batch to complete
-- and stores its items as pages of 50, in item order.  Contact g is request g:
-- its metadata carries enrichRequestId = g, as the worker's would.
CREATE PROCEDURE bench.build_pages(n integer)
LANGUAGE plpgsql
AS $$
DECLARE
    first_id bigint;
    batch    text;
    st       text;
    waited   integer;
BEGIN
    TRUNCATE bench.pages;
    first_id := 1;
    WHILE first_id <= n LOOP
        SELECT enrich_submit(jsonb_agg(jsonb_build_object(
                   'professionalSocialMediaUrl', 'https://www.linkedin.com/in/bench-' || g,
                   'metadata', jsonb_build_object('enrichRequestId', g)) ORDER BY g))
        INTO batch
        FROM generate_series(first_id, LEAST(first_id + 999, n)) AS g;
        waited := 0;
        LOOP
            SELECT status INTO st FROM enrich_status(batch);
            EXIT WHEN st = 'completed';
            IF st = 'failed' OR waited > 3000 THEN
                RAISE EXCEPTION 'batch % did not complete (status %)', batch, st;
            END IF;
            PERFORM pg_sleep(0.01);
            waited := waited + 1;
        END LOOP;
        INSERT INTO bench.pages (page_no, batch_id, ids, persons, item_ids)
        SELECT (i.id - 1) / 50, 'bench_bound_' || ((i.id - 1) / 1000),
               array_agg(i.id ORDER BY i.id), array_agg(i.person ORDER BY i.id),
               array_agg(i.item_id ORDER BY i.id)
        FROM (SELECT (metadata ->> 'enrichRequestId')::bigint AS id, person::text AS person, item_id,
                     is_success
              FROM enrich_items(batch)) AS i
        GROUP BY 1, 2;
        IF (SELECT count(*) FROM bench.pages) <> (LEAST(first_id + 999, n) + 49) / 50 THEN
            RAISE EXCEPTION 'batch % did not return every item', batch;
        END IF;
        first_id := first_id + 1000;
    END LOOP;
    IF EXISTS (SELECT 1 FROM bench.pages p, unnest(p.persons) AS person WHERE person IS NULL) THEN
        RAISE EXCEPTION 'an item of the pre-built pages has no person';
    END IF;
END
$$;

-- bench.apply_pages(contacts) is the write-back bound.  For each pre-built
-- page, in order, it runs the worker's own statement of a page of items
-- (src/queue.c, enrich_queue_apply_page: every item a success; the persons
-- are parsed once, from the API's text, where the worker builds its jsonb
-- from the page json-c parsed), then writes
-- the persons into the watched contacts table by primary key, as the
-- worker's write-back does, and commits.  The rows must be 'submitting' in
-- the submissions of the pages' batches, with source_key ["<id>"], as
-- bench.pl prepares them.
-- Left out, so that this is a lower bound: the duplicates' statement (there
-- are none), the batch's cursor update, the subtransaction and the change of
-- role around the write-back, and the watched table's UPDATE trigger (which
-- does nothing when the worker writes; here session_replication_role keeps
-- it from firing at all).
CREATE PROCEDURE bench.apply_pages(contacts regclass, pages integer)
LANGUAGE plpgsql
AS $$
DECLARE
    p            record;
    done_keys    text[];
    done_persons jsonb[];
    write_back   text;
    max_attempts integer := 5;
    retry_delay  integer := 1000;
    retry_max    integer := 600000;
BEGIN
    -- the shape of queue.c's write_back_one for a table keyed by one bigint
    write_back := format('UPDATE %s t SET %I = u.person '
                         'FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::jsonb[])) '
                         'AS u(k, person) WHERE t.id = (u.k::jsonb ->> 0)::bigint',
                         contacts, 'person');
    SET session_replication_role = replica;
    FOR page IN 0 .. pages - 1 LOOP
        SELECT * INTO STRICT p FROM bench.pages WHERE page_no = page;
        WITH u AS (SELECT * FROM ROWS FROM (pg_catalog.unnest(p.ids),
                                            pg_catalog.unnest(array_fill('done'::text, ARRAY[cardinality(p.ids)])),
                                            pg_catalog.unnest(p.persons),
                                            pg_catalog.unnest(array_fill(NULL::text, ARRAY[cardinality(p.ids)])),
                                            pg_catalog.unnest(p.item_ids))
                   AS u(id, outcome, person, error, item_id)),
        applied AS (
            UPDATE enrich.requests r SET
              state = CASE WHEN u.outcome = 'done' THEN 'done'
                           WHEN u.outcome = 'retry' AND r.attempts < max_attempts THEN 'queued'
                           ELSE 'failed' END,
              person = u.person::jsonb, error = u.error::jsonb, item_id = u.item_id,
              next_attempt_at = CASE WHEN u.outcome = 'retry' AND r.attempts < max_attempts
                  THEN pg_catalog.now() + pg_catalog.random() * LEAST(retry_max::float8,
                       retry_delay::float8 * pg_catalog.power(2, GREATEST(r.attempts - 1, 0)))
                       * interval '1 millisecond'
                  ELSE r.next_attempt_at END,
              batch_id = CASE WHEN u.outcome = 'retry' AND r.attempts < max_attempts THEN NULL ELSE p.batch_id END,
              completed_at = CASE WHEN u.outcome = 'retry' AND r.attempts < max_attempts THEN NULL
                  ELSE pg_catalog.now() END,
              updated_at = pg_catalog.now()
            FROM u WHERE r.id = u.id
              AND CASE WHEN r.submission = (SELECT b.submission FROM enrich.batches b
                                            WHERE b.batch_id = p.batch_id)
                        AND r.state = 'submitting' AND r.duplicate_of IS NULL THEN true ELSE false END
            RETURNING r.id, r.state, r.source_relid, r.source_key::text AS k, r.person AS person)
        SELECT array_agg(a.k), array_agg(a.person) INTO done_keys, done_persons
        FROM applied a WHERE a.state = 'done' AND a.source_relid IS NOT NULL;
        IF cardinality(done_keys) IS DISTINCT FROM cardinality(p.ids) THEN
            RAISE EXCEPTION 'page % applied % of % items', page, coalesce(cardinality(done_keys), 0),
                cardinality(p.ids);
        END IF;
        EXECUTE write_back USING done_keys, done_persons;
        COMMIT;
    END LOOP;
    RESET session_replication_role;
END
$$;

-- bench.latency(run, trials, poll) runs the latency trials on one
-- connection: each one inserts a contact into the watched table
-- bench_latency (and commits, which wakes the worker), then polls every
-- "poll" until the contact's person is written, and records the time from
-- just before the INSERT.  A trial longer than 30 s is an error.  With
-- url_run, each contact has the URL the same trial of run url_run had: a
-- person enriched already, which reuse settles without a call.
CREATE PROCEDURE bench.latency(run integer, trials integer, poll double precision,
                               url_run integer DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
    t0     timestamptz;
    done   boolean;
    contact bigint;
BEGIN
    FOR trial IN 1 .. trials LOOP
        contact := run * 100000 + trial;
        t0 := clock_timestamp();
        INSERT INTO bench_latency (id, linkedin, person)
        VALUES (contact, 'https://www.linkedin.com/in/latency-' || coalesce(url_run * 100000 + trial, contact), NULL);
        COMMIT;
        LOOP
            SELECT person IS NOT NULL INTO done FROM bench_latency WHERE id = contact;
            EXIT WHEN done;
            COMMIT;
            IF clock_timestamp() - t0 > interval '30 s' THEN
                RAISE EXCEPTION 'contact % had no person after 30 s', contact;
            END IF;
            PERFORM pg_sleep(poll);
        END LOOP;
        INSERT INTO bench.latency_results (run, trial, ms)
        VALUES (run, trial, extract(epoch FROM clock_timestamp() - t0) * 1000);
        COMMIT;
    END LOOP;
END
$$;

-- bench.progress_reads(reads) reads enrich.progress "reads" times in a
-- row, as the current role, and returns each read's time in milliseconds,
-- planning included (as psql's \watch reads it)
CREATE FUNCTION bench.progress_reads(reads integer) RETURNS SETOF double precision
LANGUAGE plpgsql
AS $$
DECLARE
    t0 timestamptz;
BEGIN
    FOR i IN 1 .. reads LOOP
        t0 := clock_timestamp();
        EXECUTE 'SELECT * FROM enrich.progress';
        RETURN NEXT extract(epoch FROM clock_timestamp() - t0) * 1000;
    END LOOP;
END
$$;
GRANT USAGE ON SCHEMA bench TO PUBLIC;
GRANT EXECUTE ON FUNCTION bench.progress_reads(integer) TO PUBLIC;

-- bench.time_statement(sql) runs a statement once and returns its time in
-- milliseconds, planning included
CREATE FUNCTION bench.time_statement(sql text) RETURNS double precision
LANGUAGE plpgsql
AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    EXECUTE sql;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END
$$;
