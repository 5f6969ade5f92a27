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
    last_error    text,
    -- the worker's bookkeeping of its own batches
    processed_count  integer NOT NULL DEFAULT 0,
    items_received   integer NOT NULL DEFAULT 0,
    poll_interval_ms integer NOT NULL DEFAULT 0,
    took_ms          integer,    -- completedAt - createdAt, as the API said
    submission       bigint,     -- the worker's requests it carries (enrich.requests.submission)
    closed           boolean NOT NULL DEFAULT false
);
CREATE INDEX batches_open ON enrich.batches (next_poll_at) WHERE NOT closed AND origin = 'worker';
CREATE UNIQUE INDEX batches_submission ON enrich.batches (submission) WHERE submission IS NOT NULL;
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

-- ---------------------------------------------------------------------
-- The queue: rows go in, the worker sends them, persons come back.
-- ---------------------------------------------------------------------

-- Watched contact tables (enrich_watch).
CREATE TABLE enrich.watches (
    source              oid PRIMARY KEY,
    source_name         text NOT NULL,
    result_column       name NOT NULL,
    linkedin_url_column name,
    person_id_column    name,
    pdl_id_column       name,
    environment         text CHECK (environment IN ('live', 'test')),
    key_columns         name[] NOT NULL,
    key_types           text[] NOT NULL,
    owner               oid NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK (coalesce(linkedin_url_column, person_id_column, pdl_id_column) IS NOT NULL)
);
REVOKE ALL ON enrich.watches FROM PUBLIC;
COMMENT ON TABLE enrich.watches IS 'contact tables whose rows are enriched (enrich_watch)';

CREATE TABLE enrich.requests (
    id              bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    environment     text NOT NULL DEFAULT pg_catalog.current_setting('enrich.environment'),
    linkedin_url    text,
    person_id       text,
    pdl_id          text,
    metadata        jsonb,
    identifier      text,
    state           text NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'submitting', 'submitted', 'done', 'failed')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    batch_id        text,
    item_id         text,
    duplicate_of    bigint,
    submission      bigint,
    claimed_by      integer,
    person          jsonb,
    error           jsonb,
    source_relid    oid,
    source_key      jsonb,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    completed_at    timestamptz,
    CHECK (environment IN ('live', 'test'))
);
REVOKE ALL ON enrich.requests FROM PUBLIC;
COMMENT ON TABLE enrich.requests IS 'people to enrich: insert a row, the worker writes person (or error) back';
COMMENT ON COLUMN enrich.requests.identifier IS 'normalized identifier: the API treats equal ones as the same person';
COMMENT ON COLUMN enrich.requests.state IS 'queued, submitting (claimed for a bulk enrich: being sent, or sent and waiting for its item; its batch is the one of enrich.batches with this submission), submitted (a duplicate waiting for the answer of duplicate_of), done or failed';
COMMENT ON COLUMN enrich.requests.submission IS 'the bulk enrich that carries this row: rows claimed together share it (an id of this table reserved for it, that no request has)';
COMMENT ON COLUMN enrich.requests.claimed_by IS 'process id of the worker that claimed it for its submission: the one that records or reconciles it';
COMMENT ON COLUMN enrich.requests.batch_id IS 'the batch whose item settled this row (a duplicate: the batch of the request it duplicates)';
COMMENT ON COLUMN enrich.requests.duplicate_of IS 'the request whose API call also answers this one (sent once, paid once)';
COMMENT ON COLUMN enrich.requests.source_relid IS 'the watched table the row came from';
COMMENT ON COLUMN enrich.requests.source_key IS 'primary key of the source row, as a JSON array of text';

CREATE INDEX requests_due ON enrich.requests (environment, next_attempt_at, id)
    WHERE state = 'queued';
-- At most one request per identifier is sent and waiting: the others wait
-- as its duplicates, so that an identifier is never paid twice at once.
CREATE UNIQUE INDEX requests_in_flight_identifier ON enrich.requests (environment, identifier)
    WHERE state IN ('submitting', 'submitted') AND duplicate_of IS NULL;
CREATE INDEX requests_duplicates ON enrich.requests (duplicate_of)
    WHERE duplicate_of IS NOT NULL;
CREATE INDEX requests_submitting ON enrich.requests (submission)
    WHERE state = 'submitting';

-- What the INSERT and COPY statements on watched tables queued, kept
-- compactly until the worker sends it: one row per 1,000 contacts of a
-- statement, the identifiers and keys as arrays.  The worker turns a row
-- into requests in the transaction that claims them (or into queued
-- requests, see enrich.flush_intake); enrich.progress counts them as queued.
CREATE TABLE enrich.intake (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    environment  text NOT NULL CHECK (environment IN ('live', 'test')),
    source_relid oid NOT NULL,
    linkedin_url text[] NOT NULL,
    person_id    text[] NOT NULL,
    pdl_id       text[] NOT NULL,
    source_key   text[] NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK (pg_catalog.cardinality(source_key) BETWEEN 1 AND 1000
           AND pg_catalog.cardinality(linkedin_url) = pg_catalog.cardinality(source_key)
           AND pg_catalog.cardinality(person_id) = pg_catalog.cardinality(source_key)
           AND pg_catalog.cardinality(pdl_id) = pg_catalog.cardinality(source_key))
);
CREATE INDEX intake_environment ON enrich.intake (environment, id);
REVOKE ALL ON enrich.intake FROM PUBLIC;
COMMENT ON TABLE enrich.intake IS 'rows of watched tables queued by INSERT or COPY, not yet turned into requests';
COMMENT ON COLUMN enrich.intake.source_key IS 'primary key of each source row, as a JSON array of text';

-- Validation and normalization of a request row: an error names the column.
CREATE FUNCTION enrich.requests_check() RETURNS trigger
AS 'MODULE_PATHNAME', 'enrich_requests_check'
LANGUAGE C;
CREATE TRIGGER requests_check
    BEFORE INSERT OR UPDATE OF environment, linkedin_url, person_id, pdl_id, metadata, source_relid, source_key
    ON enrich.requests FOR EACH ROW EXECUTE FUNCTION enrich.requests_check();

-- Wakes the worker when a transaction that queued work commits.
CREATE FUNCTION enrich.requests_wake() RETURNS trigger
AS 'MODULE_PATHNAME', 'enrich_requests_wake'
LANGUAGE C;
CREATE TRIGGER requests_wake AFTER INSERT OR UPDATE OF state, next_attempt_at
    ON enrich.requests FOR EACH STATEMENT EXECUTE FUNCTION enrich.requests_wake();
CREATE TRIGGER intake_wake AFTER INSERT
    ON enrich.intake FOR EACH STATEMENT EXECUTE FUNCTION enrich.requests_wake();

-- The normalized identifier of a request, NULL when it has none; and what is
-- wrong with a request's identifiers and metadata, NULL when nothing is.
CREATE FUNCTION enrich.normalize_identifier(linkedin_url text, person_id text, pdl_id text)
RETURNS text
AS 'MODULE_PATHNAME', 'enrich_normalize_identifier'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION enrich.request_problem(linkedin_url text, person_id text, pdl_id text, metadata jsonb)
RETURNS text
AS 'MODULE_PATHNAME', 'enrich_request_problem'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

-- Statement-level trigger function on watched tables.
CREATE FUNCTION enrich.enqueue_from_source() RETURNS trigger
AS 'MODULE_PATHNAME', 'enrich_enqueue_from_source'
LANGUAGE C;

-- Records a watch on the caller's behalf (the caller cannot write
-- enrich.watches itself); enrich_watch checks ownership before calling it.
CREATE FUNCTION enrich.register_watch(source regclass, result_column name, linkedin_url_column name,
                                      person_id_column name, pdl_id_column name, environment text,
                                      key_columns name[], key_types text[])
RETURNS void
AS 'MODULE_PATHNAME', 'enrich_register_watch'
LANGUAGE C;

CREATE FUNCTION enrich.unregister_watch(source regclass)
RETURNS boolean
AS 'MODULE_PATHNAME', 'enrich_unregister_watch'
LANGUAGE C;

-- Turns what watched tables queued (enrich.intake) into queued requests now,
-- rather than when the worker sends them; returns how many requests it made.
CREATE FUNCTION enrich.flush_intake(environment text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'enrich_flush_intake'
LANGUAGE C;

-- enrich_wake() wakes the worker at once (at commit, inside a transaction).
CREATE FUNCTION @extschema@.enrich_wake()
RETURNS void
AS 'MODULE_PATHNAME', 'enrich_wake'
LANGUAGE C;

-- The worker's state per environment: running, paused: ..., backing off
-- until ..., or not running.
CREATE FUNCTION enrich.worker_state(environment text, OUT state text, OUT last_error text)
RETURNS record
AS 'MODULE_PATHNAME', 'enrich_worker_state'
LANGUAGE C STABLE;

-- Enqueue the rows of existing contacts whose result column is NULL and that
-- have no request in progress; returns how many were queued.
CREATE FUNCTION enrich.enqueue_existing(source regclass)
RETURNS bigint
AS 'MODULE_PATHNAME', 'enrich_enqueue_existing'
LANGUAGE C;

-- enrich_watch: enrich the rows of a contact table the caller owns.
CREATE FUNCTION @extschema@.enrich_watch(source regclass, result_column name,
                                         linkedin_url_column name DEFAULT NULL,
                                         person_id_column name DEFAULT NULL,
                                         pdl_id_column name DEFAULT NULL,
                                         environment text DEFAULT NULL,
                                         backfill boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel        record;
    col        name;
    col_type   oid;
    key_cols   name[];
    key_types  text[];
    queued     bigint := 0;
BEGIN
    IF source IS NULL OR result_column IS NULL THEN
        RAISE EXCEPTION 'source and result_column must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT c.relkind, c.relowner INTO rel FROM pg_catalog.pg_class c WHERE c.oid = source;
    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '"%" is not a table', source USING ERRCODE = 'wrong_object_type';
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, rel.relowner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', source
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Only the owner of a table may have enrich write into it.';
    END IF;
    IF coalesce(linkedin_url_column, person_id_column, pdl_id_column) IS NULL THEN
        RAISE EXCEPTION 'at least one identifier column is required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name linkedin_url_column, person_id_column or pdl_id_column.';
    END IF;
    IF environment IS NOT NULL AND environment NOT IN ('live', 'test') THEN
        RAISE EXCEPTION 'invalid environment "%"', environment
            USING ERRCODE = 'invalid_parameter_value', HINT = 'The environment is ''live'' or ''test''.';
    END IF;

    SELECT a.atttypid INTO col_type FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = source AND a.attname = result_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF col_type IS NULL THEN
        RAISE EXCEPTION 'column "%" of table % does not exist', result_column, source
            USING ERRCODE = 'undefined_column';
    ELSIF col_type <> 'pg_catalog.jsonb'::pg_catalog.regtype THEN
        RAISE EXCEPTION 'result column "%" must be of type jsonb', result_column
            USING ERRCODE = 'datatype_mismatch';
    END IF;
    FOREACH col IN ARRAY ARRAY[linkedin_url_column, person_id_column, pdl_id_column] LOOP
        CONTINUE WHEN col IS NULL;
        col_type := NULL;
        SELECT a.atttypid INTO col_type FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = source AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
        IF col_type IS NULL THEN
            RAISE EXCEPTION 'column "%" of table % does not exist', col, source
                USING ERRCODE = 'undefined_column';
        ELSIF col_type NOT IN ('pg_catalog.text'::pg_catalog.regtype, 'pg_catalog.varchar'::pg_catalog.regtype,
                               'pg_catalog.bpchar'::pg_catalog.regtype) THEN
            RAISE EXCEPTION 'identifier column "%" must be of type text or varchar', col
                USING ERRCODE = 'datatype_mismatch';
        END IF;
    END LOOP;

    SELECT pg_catalog.array_agg(a.attname ORDER BY k.ord),
           pg_catalog.array_agg(pg_catalog.format_type(a.atttypid, a.atttypmod) ORDER BY k.ord)
    INTO key_cols, key_types
    FROM pg_catalog.pg_index i
    CROSS JOIN LATERAL pg_catalog.unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = source AND i.indisprimary AND k.ord <= i.indnkeyatts;
    IF key_cols IS NULL THEN
        RAISE EXCEPTION 'table % has no primary key', source
            USING ERRCODE = 'invalid_table_definition',
                  HINT = 'enrich writes each person back to the row with its primary key.';
    END IF;

    PERFORM enrich.register_watch(source, result_column, linkedin_url_column, person_id_column,
                                  pdl_id_column, environment, key_cols, key_types);
    EXECUTE pg_catalog.format(
        'CREATE TRIGGER enrich_enqueue_insert AFTER INSERT ON %s '
        'REFERENCING NEW TABLE AS enrich_new '
        'FOR EACH STATEMENT EXECUTE FUNCTION enrich.enqueue_from_source()', source);
    EXECUTE pg_catalog.format(
        'CREATE TRIGGER enrich_enqueue_update AFTER UPDATE ON %s '
        'REFERENCING OLD TABLE AS enrich_old NEW TABLE AS enrich_new '
        'FOR EACH STATEMENT EXECUTE FUNCTION enrich.enqueue_from_source()', source);
    IF backfill THEN
        queued := enrich.enqueue_existing(source);
    END IF;
    RETURN queued;
END
$$;
COMMENT ON FUNCTION @extschema@.enrich_watch(regclass, name, name, name, name, text, boolean) IS
    'enrich the rows of a table: new and changed rows are queued, persons written to result_column';

CREATE FUNCTION @extschema@.enrich_unwatch(source regclass)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner oid;
BEGIN
    IF source IS NULL THEN
        RAISE EXCEPTION 'source must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT c.relowner INTO owner FROM pg_catalog.pg_class c WHERE c.oid = source;
    IF NOT FOUND THEN
        -- the table was dropped: only its watch is left to forget
        RETURN enrich.unregister_watch(source);
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, owner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', source USING ERRCODE = 'insufficient_privilege';
    END IF;
    EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS enrich_enqueue_insert ON %s', source);
    EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS enrich_enqueue_update ON %s', source);
    RETURN enrich.unregister_watch(source);
END
$$;
COMMENT ON FUNCTION @extschema@.enrich_unwatch(regclass) IS
    'stop enriching a table; requests already queued still complete, without writing to it';

-- Monitoring: one row per environment, made to be watched with \watch.
CREATE VIEW enrich.progress AS
SELECT c.environment, c.queued, c.in_flight, c.waiting_retry, c.done, c.failed,
       c.oldest_queued_age, c.done_last_minute,
       w.last_error,
       w.state AS worker_state
FROM (SELECT e.environment,
             count(r.id) FILTER (WHERE r.state = 'queued' AND r.attempts = 0)
                 + coalesce(i.contacts, 0) AS queued,
             count(r.id) FILTER (WHERE r.state IN ('submitting', 'submitted')) AS in_flight,
             count(r.id) FILTER (WHERE r.state = 'queued' AND r.attempts > 0) AS waiting_retry,
             count(r.id) FILTER (WHERE r.state = 'done') AS done,
             count(r.id) FILTER (WHERE r.state = 'failed') AS failed,
             pg_catalog.now() - LEAST(min(r.created_at) FILTER (WHERE r.state = 'queued'), i.oldest)
                 AS oldest_queued_age,
             count(r.id) FILTER (WHERE r.state = 'done'
                                 AND r.completed_at > pg_catalog.now() - interval '1 minute') AS done_last_minute
      FROM (VALUES ('live'), ('test')) AS e(environment)
      LEFT JOIN enrich.requests r ON r.environment = e.environment
      -- contacts of watched tables not yet turned into requests
      CROSS JOIN LATERAL (SELECT pg_catalog.sum(pg_catalog.cardinality(k.source_key)) AS contacts,
                                 min(k.created_at) AS oldest
                          FROM enrich.intake k WHERE k.environment = e.environment) AS i
      GROUP BY e.environment, i.contacts, i.oldest) AS c
-- the worker's state is read once per environment, after the counting
CROSS JOIN LATERAL enrich.worker_state(c.environment) AS w
ORDER BY c.environment;
COMMENT ON VIEW enrich.progress IS 'the queue and the worker, per environment';

REVOKE ALL ON FUNCTION enrich.requests_check() FROM PUBLIC;
REVOKE ALL ON FUNCTION enrich.requests_wake() FROM PUBLIC;
REVOKE ALL ON FUNCTION enrich.normalize_identifier(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION enrich.request_problem(text, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION enrich.enqueue_from_source() FROM PUBLIC;
REVOKE ALL ON FUNCTION enrich.register_watch(regclass, name, name, name, name, text, name[], text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION enrich.unregister_watch(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION enrich.enqueue_existing(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION enrich.flush_intake(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.enrich_wake() FROM PUBLIC;
REVOKE ALL ON FUNCTION enrich.worker_state(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.enrich_watch(regclass, name, name, name, name, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.enrich_unwatch(regclass) FROM PUBLIC;
REVOKE ALL ON enrich.progress FROM PUBLIC;

-- A worker already running learns that the extension now exists.
SELECT @extschema@.enrich_wake();
