-- enrich 1.0: install script.
-- The functions users call live in the schema given to CREATE EXTENSION
-- (@extschema@); what the extension keeps lives in schema enrich.  Nothing
-- is granted to PUBLIC: README.md shows the GRANTs for an application role.

\echo Use "CREATE EXTENSION enrich" to load this file. \quit

CREATE SCHEMA enrich;
REVOKE ALL ON SCHEMA enrich FROM PUBLIC;
COMMENT ON SCHEMA enrich IS 'state of the enrich extension: API keys, batches, requests';

-- API keys, one per environment.  Only the extension's owner can read it;
-- functions use a key on a caller's behalf without showing it.
CREATE TABLE enrich.api_keys (
    environment text PRIMARY KEY CHECK (environment IN ('live', 'test')),
    api_key     text NOT NULL,
    set_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    set_by      name NOT NULL DEFAULT CURRENT_USER
);
REVOKE ALL ON enrich.api_keys FROM PUBLIC;
COMMENT ON TABLE enrich.api_keys IS 'AggKnowledge API key of each environment (set with enrich_set_api_key)';

-- One row per batch submitted to the API.
CREATE TABLE enrich.batches (
    batch_id      text PRIMARY KEY,
    environment   text NOT NULL CHECK (environment IN ('live', 'test')),
    origin        text NOT NULL DEFAULT 'worker' CHECK (origin IN ('worker', 'submit')),
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    request_count integer NOT NULL CHECK (request_count BETWEEN 1 AND 1000),
    items_cursor  text,
    next_poll_at  timestamptz,
    submitted_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    submitted_by  name NOT NULL DEFAULT CURRENT_USER,
    completed_at  timestamptz,
    last_error    text
);
REVOKE ALL ON enrich.batches FROM PUBLIC;
COMMENT ON TABLE enrich.batches IS 'batches submitted to the AggKnowledge API, by enrich_submit (origin submit) or the worker';

-- The row types the functions return.
CREATE TYPE enrich.batch_status AS (
    batch_id        text,
    status          text,
    created_at      timestamptz,
    completed_at    timestamptz,
    total_count     integer,
    processed_count integer,
    success_count   integer,
    failure_count   integer
);

CREATE TYPE enrich.item AS (
    item_id      text,
    is_success   boolean,
    is_retryable boolean,
    metadata     jsonb,
    person       jsonb,
    error        jsonb
);

CREATE FUNCTION @extschema@.enrich_set_api_key(environment text, key text)
RETURNS void
AS 'MODULE_PATHNAME', 'enrich_set_api_key'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.enrich_set_api_key(text, text) IS
    'stores the API key of environment live or test; NULL forgets it';

CREATE FUNCTION @extschema@.enrich_submit(requests jsonb, environment text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'enrich_submit'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.enrich_submit(jsonb, text) IS
    'sends 1 to 1000 person enrichment requests as one bulk enrich; returns the batch id';

CREATE FUNCTION @extschema@.enrich_status(batch_id text, environment text DEFAULT NULL)
RETURNS enrich.batch_status
AS 'MODULE_PATHNAME', 'enrich_status'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.enrich_status(text, text) IS 'the status of a batch';

CREATE FUNCTION @extschema@.enrich_item(batch_id text, item_id text, environment text DEFAULT NULL)
RETURNS enrich.item
AS 'MODULE_PATHNAME', 'enrich_item'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.enrich_item(text, text, text) IS 'one item of a batch';

CREATE FUNCTION @extschema@.enrich_batches(created_after date DEFAULT NULL, "limit" integer DEFAULT 100,
                                           "offset" integer DEFAULT 0, environment text DEFAULT NULL)
RETURNS SETOF enrich.batch_status
AS 'MODULE_PATHNAME', 'enrich_batches'
LANGUAGE C VOLATILE ROWS 100;
COMMENT ON FUNCTION @extschema@.enrich_batches(date, integer, integer, text) IS
    'one page of the batches of an environment, newest first';

-- The lazy item walk: a value-per-call function, run in the target list of
-- the query that enrich_items() is inlined into, so that rows are fetched
-- page by page as they are consumed.
CREATE FUNCTION enrich.items_stream(batch_id text, environment text, page_size integer)
RETURNS SETOF enrich.item
AS 'MODULE_PATHNAME', 'enrich_items_stream'
LANGUAGE C VOLATILE ROWS 1000;

-- STABLE and not STRICT, so that the planner inlines it (see items.c).
CREATE FUNCTION @extschema@.enrich_items(batch_id text, environment text DEFAULT NULL,
                                         page_size integer DEFAULT 50)
RETURNS TABLE (item_id text, is_success boolean, is_retryable boolean,
               metadata jsonb, person jsonb, error jsonb)
LANGUAGE sql STABLE
AS $$
    SELECT (i).item_id, (i).is_success, (i).is_retryable, (i).metadata, (i).person, (i).error
    FROM (SELECT enrich.items_stream($1, $2, $3) AS i) AS stream
$$;
COMMENT ON FUNCTION @extschema@.enrich_items(text, text, integer) IS
    'the items of a batch, fetched page by page as rows are consumed';

REVOKE ALL ON FUNCTION @extschema@.enrich_set_api_key(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.enrich_submit(jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.enrich_status(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.enrich_item(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.enrich_batches(date, integer, integer, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION enrich.items_stream(text, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.enrich_items(text, text, integer) FROM PUBLIC;
