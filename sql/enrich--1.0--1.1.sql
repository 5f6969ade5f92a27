-- enrich 1.0 -> 1.1: upgrade script.  CREATE EXTENSION enrich runs the 1.0
-- install script and then this one, so a new installation and an upgraded
-- one are the same.

\echo Use "ALTER EXTENSION enrich UPDATE TO '1.1'" to load this file. \quit

-- Persons and metadata come from the API as UTF-8 and are stored as jsonb in
-- the database's encoding: enrich needs a UTF8 database.
DO $$
BEGIN
    IF pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.<>) 'UTF8' THEN
        RAISE EXCEPTION 'enrich needs a database whose encoding is UTF8, not %',
                        pg_catalog.getdatabaseencoding()
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Create the extension in a database made with ENCODING ''UTF8''.';
    END IF;
END
$$;

-- A person whose watched row another transaction kept locked is written
-- later, without holding up the rest of its page.
ALTER TABLE enrich.requests ADD COLUMN write_back_due timestamptz;
COMMENT ON COLUMN enrich.requests.write_back_due IS
    'when the worker writes the person into its watched row again: the row was locked when the person came (NULL: nothing to write)';
CREATE INDEX requests_write_back_due ON enrich.requests (write_back_due)
    WHERE write_back_due IS NOT NULL;

-- enrich.register_watch checks the table, its owner and its columns itself,
-- whoever calls it, and reads the key columns from the primary key:
-- enrich_watch leaves the checks to it.  Triggers that outlived their watch
-- (a dump restored without enrich's tables) are attached again, not refused.
-- refresh_after asks the API again for a row's person once it is that old;
-- notify names a channel that hears of each page of persons written;
-- columns maps person fields to columns by jsonpath, column_mode says
-- whether they fill only NULLs or overwrite (enrich_alter_watch changes
-- each later).
DROP FUNCTION @extschema@.enrich_watch(regclass, name, name, name, name, text, boolean);
CREATE FUNCTION @extschema@.enrich_watch(source regclass, result_column name,
                                         linkedin_url_column name DEFAULT NULL,
                                         person_id_column name DEFAULT NULL,
                                         pdl_id_column name DEFAULT NULL,
                                         environment text DEFAULT NULL,
                                         backfill boolean DEFAULT false,
                                         refresh_after interval DEFAULT NULL,
                                         notify text DEFAULT NULL,
                                         columns jsonb DEFAULT NULL,
                                         column_mode text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM enrich.register_watch(source, result_column, linkedin_url_column, person_id_column, pdl_id_column, environment, NULL, NULL);
    IF refresh_after IS NOT NULL OR notify IS NOT NULL OR columns IS NOT NULL OR column_mode IS NOT NULL THEN
        PERFORM @extschema@.enrich_alter_watch(source, refresh_after, notify, columns, column_mode);
    END IF;
    PERFORM enrich.attach_triggers(source);
    IF backfill THEN
        RETURN enrich.enqueue_existing(source);
    END IF;
    RETURN 0;
END
$$;
COMMENT ON FUNCTION @extschema@.enrich_watch(regclass, name, name, name, name, text, boolean, interval, text, jsonb, text) IS
    'enrich the rows of a table: new and changed rows are queued, persons written to result_column (backfill: the rows without one too; refresh_after: asked again once that old; notify: a channel told of each page written; columns: person fields written to columns by jsonpath, column_mode fill or overwrite)';
REVOKE ALL ON FUNCTION @extschema@.enrich_watch(regclass, name, name, name, name, text, boolean, interval, text, jsonb, text) FROM PUBLIC;

-- The triggers of a watched table go on each of its partitions too (a
-- statement on a partition fires the partition's statement triggers, not
-- its parent's), and on partitions it gets later.
CREATE FUNCTION enrich.attach_triggers(source regclass) RETURNS void
AS 'MODULE_PATHNAME', 'enrich_attach_triggers'
LANGUAGE C;
COMMENT ON FUNCTION enrich.attach_triggers(regclass) IS
    'attaches the statement triggers of a watched table to it and to each of its partitions, as the caller';
CREATE FUNCTION enrich.detach_triggers(source regclass) RETURNS void
AS 'MODULE_PATHNAME', 'enrich_detach_triggers'
LANGUAGE C;
COMMENT ON FUNCTION enrich.detach_triggers(regclass) IS
    'drops the statement triggers of a watched table from it and from each of its partitions, as the caller';
REVOKE ALL ON FUNCTION enrich.attach_triggers(regclass), enrich.detach_triggers(regclass) FROM PUBLIC;
CREATE FUNCTION enrich.watch_partitions() RETURNS event_trigger
AS 'MODULE_PATHNAME', 'enrich_watch_partitions'
LANGUAGE C;
COMMENT ON FUNCTION enrich.watch_partitions() IS
    'the ddl_command_end event trigger: attaches the triggers of a watched table to the partitions it gets';
REVOKE ALL ON FUNCTION enrich.watch_partitions() FROM PUBLIC;
CREATE EVENT TRIGGER enrich_watch_partitions ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
    EXECUTE FUNCTION enrich.watch_partitions();

CREATE OR REPLACE FUNCTION @extschema@.enrich_unwatch(source regclass)
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
    SELECT c.relowner INTO owner FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) source;
    IF NOT FOUND THEN
        -- the table was dropped: only its watch is left to forget
        RETURN enrich.unregister_watch(source);
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, owner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', source USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM enrich.detach_triggers(source);
    RETURN enrich.unregister_watch(source);
END
$$;

COMMENT ON FUNCTION enrich.register_watch(regclass, name, name, name, name, text, name[], text[]) IS
    'records a watch after checking the table, its owner and its columns (key_columns and key_types are read from the primary key; the arguments are ignored)';

-- Each role sees its own enrichment.  Every request and batch records the
-- role it belongs to: whoever inserted a request, the owner of the watched
-- table a request or an intake row came from (set by requests_check and
-- intake_owner), whoever called enrich_submit.  Row-level security shows a
-- role its own rows; superusers and members of enrich_admin see all.
-- Requests queued before 1.1 belong to the role that updates the extension.
ALTER TABLE enrich.requests ADD COLUMN owner name NOT NULL DEFAULT CURRENT_USER;
COMMENT ON COLUMN enrich.requests.owner IS
    'the role the request belongs to: who inserted it, or the owner of the watched table it came from';
UPDATE enrich.requests r SET owner = pg_catalog.pg_get_userbyid(c.relowner)
    FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) r.source_relid;
ALTER TABLE enrich.intake ADD COLUMN owner name NOT NULL DEFAULT CURRENT_USER;
COMMENT ON COLUMN enrich.intake.owner IS 'the owner of the watched table the contacts came from';
UPDATE enrich.intake k SET owner = pg_catalog.pg_get_userbyid(c.relowner)
    FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) k.source_relid;
COMMENT ON COLUMN enrich.batches.submitted_by IS
    'the role the batch belongs to: who called enrich_submit (the workers'' own batches belong to the workers)';

CREATE FUNCTION enrich.intake_owner() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.owner := pg_catalog.pg_get_userbyid((SELECT c.relowner FROM pg_catalog.pg_class c
                                             WHERE c.oid OPERATOR(pg_catalog.=) NEW.source_relid));
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION enrich.intake_owner() IS 'sets the owner of a row of enrich.intake: the owner of its watched table';
REVOKE ALL ON FUNCTION enrich.intake_owner() FROM PUBLIC;
CREATE TRIGGER intake_owner BEFORE INSERT ON enrich.intake
    FOR EACH ROW EXECUTE FUNCTION enrich.intake_owner();

-- (superusers and roles with BYPASSRLS see every row anyway; a member of
-- enrich_admin does by the policies, which need no privilege of their own:
-- NULL, not an error, when enrich_admin was dropped)
ALTER TABLE enrich.requests ENABLE ROW LEVEL SECURITY;
CREATE POLICY requests_own ON enrich.requests
    USING (owner OPERATOR(pg_catalog.=) CURRENT_USER
           OR (SELECT pg_catalog.pg_has_role(a.oid, 'USAGE') FROM pg_catalog.pg_roles a
               WHERE a.rolname OPERATOR(pg_catalog.=) 'enrich_admin'))
    WITH CHECK (owner OPERATOR(pg_catalog.=) CURRENT_USER
                OR (SELECT pg_catalog.pg_has_role(a.oid, 'USAGE') FROM pg_catalog.pg_roles a
                    WHERE a.rolname OPERATOR(pg_catalog.=) 'enrich_admin'));
ALTER TABLE enrich.intake ENABLE ROW LEVEL SECURITY;
CREATE POLICY intake_own ON enrich.intake
    USING (owner OPERATOR(pg_catalog.=) CURRENT_USER
           OR (SELECT pg_catalog.pg_has_role(a.oid, 'USAGE') FROM pg_catalog.pg_roles a
               WHERE a.rolname OPERATOR(pg_catalog.=) 'enrich_admin'));
ALTER TABLE enrich.batches ENABLE ROW LEVEL SECURITY;
CREATE POLICY batches_own ON enrich.batches
    USING (submitted_by OPERATOR(pg_catalog.=) CURRENT_USER
           OR (SELECT pg_catalog.pg_has_role(a.oid, 'USAGE') FROM pg_catalog.pg_roles a
               WHERE a.rolname OPERATOR(pg_catalog.=) 'enrich_admin'));

-- enrich_cancel: a role cancels its own queued requests
CREATE FUNCTION @extschema@.enrich_cancel(ids bigint[]) RETURNS bigint
AS 'MODULE_PATHNAME', 'enrich_cancel'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION @extschema@.enrich_cancel(bigint[]) IS
    'cancels the queued requests of these ids that belong to the caller (they fail with code canceled, unsent); returns how many';
REVOKE ALL ON FUNCTION @extschema@.enrich_cancel(bigint[]) FROM PUBLIC;

-- Roles made for the job (cluster-wide: made once, kept by DROP EXTENSION).
-- GRANT enrich_user TO app is all an application role needs; enrich_admin
-- sees every role's requests and batches.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'enrich_user') THEN
        CREATE ROLE enrich_user NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'enrich_admin') THEN
        CREATE ROLE enrich_admin NOLOGIN;
    END IF;
    IF NOT pg_catalog.pg_has_role('enrich_admin', 'enrich_user', 'MEMBER') THEN
        GRANT enrich_user TO enrich_admin;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA enrich TO enrich_user;
GRANT EXECUTE ON FUNCTION @extschema@.enrich_submit(jsonb, text), @extschema@.enrich_status(text, text),
    @extschema@.enrich_item(text, text, text), @extschema@.enrich_items(text, text, integer),
    enrich.items_stream(text, text, integer),
    @extschema@.enrich_batches(date, integer, integer, text),
    @extschema@.enrich_watch(regclass, name, name, name, name, text, boolean, interval, text, jsonb, text),
    @extschema@.enrich_unwatch(regclass), @extschema@.enrich_wake(),
    enrich.register_watch(regclass, name, name, name, name, text, name[], text[]),
    enrich.unregister_watch(regclass), enrich.enqueue_existing(regclass),
    enrich.enqueue_from_source(),
    enrich.worker_state(text), @extschema@.enrich_cancel(bigint[]),
    enrich.attach_triggers(regclass), enrich.detach_triggers(regclass)
    TO enrich_user;
GRANT INSERT (environment, linkedin_url, person_id, pdl_id, metadata), SELECT ON enrich.requests TO enrich_user;
GRANT SELECT ON enrich.batches, enrich.intake TO enrich_user;

-- The watch of a dropped table goes with it.
CREATE FUNCTION enrich.forget_dropped() RETURNS event_trigger
AS 'MODULE_PATHNAME', 'enrich_forget_dropped'
LANGUAGE C;
COMMENT ON FUNCTION enrich.forget_dropped() IS
    'the sql_drop event trigger: forgets the watches of the tables a statement dropped';
REVOKE ALL ON FUNCTION enrich.forget_dropped() FROM PUBLIC;
CREATE EVENT TRIGGER enrich_forget_dropped ON sql_drop EXECUTE FUNCTION enrich.forget_dropped();
DELETE FROM enrich.watches w
    WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) w.source);

-- The installation: a random id carried with every request id the workers
-- send, so that no other database, and no earlier installation of this one
-- (DROP EXTENSION and CREATE EXTENSION), takes this one's batches for its
-- own.  A restored dump is the same installation: the oldest row wins.
CREATE TABLE enrich.installation (
    id         text PRIMARY KEY CHECK (id OPERATOR(pg_catalog.~) '^[0-9a-f]{12}$'),
    legacy_ids boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
REVOKE ALL ON enrich.installation FROM PUBLIC;
INSERT INTO enrich.installation (id, legacy_ids)
SELECT pg_catalog.substr(pg_catalog.md5(pg_catalog.gen_random_uuid()::pg_catalog.text), 1, 12),
       EXISTS (SELECT FROM enrich.requests r WHERE r.state OPERATOR(pg_catalog.=) 'submitting');
COMMENT ON TABLE enrich.installation IS
    'this installation of enrich: its id goes with every request id the workers send (the oldest row counts)';
COMMENT ON COLUMN enrich.installation.id IS '12 random hex digits';
COMMENT ON COLUMN enrich.installation.legacy_ids IS
    'updated from 1.0 with submissions in doubt: batches echoing 1.0''s enrichRequestId are this installation''s';
COMMENT ON COLUMN enrich.installation.created_at IS 'when it was made';

-- Dump and restore: enrich's state goes with a dump of the database (the API
-- keys do not: set them again after a restore).  A watched table is named as
-- a regclass, which a dump writes as its name, so that a restored queue
-- points at the restored tables (whose OIDs are new).  The trigger names
-- source_relid among its columns and is made again around the change.
DROP TRIGGER requests_check ON enrich.requests;
ALTER TABLE enrich.watches ALTER COLUMN source TYPE pg_catalog.regclass;
ALTER TABLE enrich.requests ALTER COLUMN source_relid TYPE pg_catalog.regclass;
ALTER TABLE enrich.intake ALTER COLUMN source_relid TYPE pg_catalog.regclass;
CREATE TRIGGER requests_check
    BEFORE INSERT OR UPDATE OF environment, linkedin_url, person_id, pdl_id, metadata, source_relid, source_key
    ON enrich.requests FOR EACH ROW EXECUTE FUNCTION enrich.requests_check();
SELECT pg_catalog.pg_extension_config_dump('enrich.watches', '');
SELECT pg_catalog.pg_extension_config_dump('enrich.requests', '');
SELECT pg_catalog.pg_extension_config_dump('enrich.requests_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('enrich.batches', '');
SELECT pg_catalog.pg_extension_config_dump('enrich.intake', '');
SELECT pg_catalog.pg_extension_config_dump('enrich.intake_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('enrich.installation', '');

-- Every function, table, view, type and column says what it is.
COMMENT ON FUNCTION @extschema@.enrich_wake() IS
    'wakes the workers at once (at commit, inside a transaction)';
COMMENT ON FUNCTION enrich.enqueue_existing(regclass) IS
    'queues every row of a watched table (the backfill of enrich_watch); the caller must own the table; returns how many';
COMMENT ON FUNCTION enrich.enqueue_from_source() IS
    'the statement trigger of watched tables: queues the rows an INSERT, COPY or UPDATE wrote';
COMMENT ON FUNCTION enrich.flush_intake(text) IS
    'turns the contacts waiting in enrich.intake into queued requests at once (the workers do it as they claim)';
COMMENT ON FUNCTION enrich.items_stream(text, text, integer) IS
    'the rows of enrich_items: the items of a batch, one page of the API at a time';
COMMENT ON FUNCTION enrich.normalize_identifier(text, text, text) IS
    'the normalized identifier of a request (linkedin_url, person_id, pdl_id), as enrich.requests.identifier holds it';
COMMENT ON FUNCTION enrich.request_problem(text, text, text, jsonb) IS
    'what is wrong with a request (linkedin_url, person_id, pdl_id, metadata), or NULL when it is valid';
COMMENT ON FUNCTION enrich.requests_check() IS
    'the row trigger of enrich.requests: refuses an invalid request naming the column, sets identifier and a watched row''s owner';
COMMENT ON FUNCTION enrich.requests_wake() IS
    'the statement trigger of enrich.requests: wakes the workers when the transaction commits';
COMMENT ON FUNCTION enrich.unregister_watch(regclass) IS
    'forgets the watch of a table (enrich_unwatch); the caller must own the table';
COMMENT ON FUNCTION enrich.worker_state(text) IS
    'the workers'' state for an environment (running, paused, ...) and their last error';

COMMENT ON SEQUENCE enrich.requests_id_seq IS 'the ids of enrich.requests (and the submissions the workers reserve)';
COMMENT ON SEQUENCE enrich.intake_id_seq IS 'the ids of enrich.intake';
COMMENT ON COLUMN enrich.api_keys.environment IS 'live or test';
COMMENT ON COLUMN enrich.api_keys.api_key IS 'the AggKnowledge API key of the environment (never shown to other roles)';
COMMENT ON COLUMN enrich.api_keys.set_at IS 'when it was set';
COMMENT ON COLUMN enrich.api_keys.set_by IS 'the role that set it';

COMMENT ON COLUMN enrich.batches.batch_id IS 'the API''s id of the batch';
COMMENT ON COLUMN enrich.batches.environment IS 'live or test';
COMMENT ON COLUMN enrich.batches.origin IS 'submit (enrich_submit) or worker (the queue)';
COMMENT ON COLUMN enrich.batches.status IS 'pending, processing, completed or failed, as last seen';
COMMENT ON COLUMN enrich.batches.request_count IS 'how many requests the batch carries (1 to 1000)';
COMMENT ON COLUMN enrich.batches.items_cursor IS 'the cursor of the next page of items the worker reads';
COMMENT ON COLUMN enrich.batches.next_poll_at IS 'when the worker asks for the batch''s status or items next';
COMMENT ON COLUMN enrich.batches.submitted_at IS 'when it was sent';
COMMENT ON COLUMN enrich.batches.completed_at IS 'when the worker saw it completed (or failed)';
COMMENT ON COLUMN enrich.batches.last_error IS 'the last error met while polling or paging it';
COMMENT ON COLUMN enrich.batches.processed_count IS 'items the API had processed, as last seen';
COMMENT ON COLUMN enrich.batches.items_received IS 'items the worker has read and applied';
COMMENT ON COLUMN enrich.batches.poll_interval_ms IS 'the delay between two polls the worker chose';
COMMENT ON COLUMN enrich.batches.took_ms IS 'completedAt minus createdAt, as the API said: how long the batch took';
COMMENT ON COLUMN enrich.batches.submission IS 'the worker''s submission the batch carries (enrich.requests.submission)';
COMMENT ON COLUMN enrich.batches.closed IS 'every item applied: the worker polls it no more';

COMMENT ON COLUMN enrich.watches.source IS 'the watched table';
COMMENT ON COLUMN enrich.watches.source_name IS 'its name when it was watched';
COMMENT ON COLUMN enrich.watches.result_column IS 'the jsonb column the person is written into';
COMMENT ON COLUMN enrich.watches.linkedin_url_column IS 'the column holding a LinkedIn URL, or NULL';
COMMENT ON COLUMN enrich.watches.person_id_column IS 'the column holding an AggKnowledge person id, or NULL';
COMMENT ON COLUMN enrich.watches.pdl_id_column IS 'the column holding a PDL id, or NULL';
COMMENT ON COLUMN enrich.watches.environment IS 'live or test; NULL: enrich.environment';
COMMENT ON COLUMN enrich.watches.key_columns IS 'the primary key''s columns, in order';
COMMENT ON COLUMN enrich.watches.key_types IS 'their types';
COMMENT ON COLUMN enrich.watches.owner IS 'the OID of the role that watched the table (its owner then; another cluster''s after a restore)';
COMMENT ON COLUMN enrich.watches.created_at IS 'when it was watched';

COMMENT ON COLUMN enrich.requests.id IS 'the request''s id (sent to the API with the installation''s id in each item''s metadata, as enrichRef)';
COMMENT ON COLUMN enrich.requests.environment IS 'live or test (default: enrich.environment)';
COMMENT ON COLUMN enrich.requests.linkedin_url IS 'a LinkedIn profile URL (Sales Navigator and Recruiter URLs too)';
COMMENT ON COLUMN enrich.requests.person_id IS 'an AggKnowledge person id';
COMMENT ON COLUMN enrich.requests.pdl_id IS 'a People Data Labs id';
COMMENT ON COLUMN enrich.requests.metadata IS 'a JSON object echoed back by the API (at most 4 KiB less 48 bytes)';
COMMENT ON COLUMN enrich.requests.attempts IS 'how many times it was sent';
COMMENT ON COLUMN enrich.requests.next_attempt_at IS 'when it may be sent (again)';
COMMENT ON COLUMN enrich.requests.item_id IS 'the API''s item that settled it';
COMMENT ON COLUMN enrich.requests.person IS 'the enriched person, as the API gave it';
COMMENT ON COLUMN enrich.requests.error IS 'why it failed: {"code", "message"}';
COMMENT ON COLUMN enrich.requests.created_at IS 'when it was queued';
COMMENT ON COLUMN enrich.requests.updated_at IS 'when the workers last changed it';
COMMENT ON COLUMN enrich.requests.completed_at IS 'when it was done or failed';

COMMENT ON COLUMN enrich.intake.id IS 'the order in which the workers take the rows';
COMMENT ON COLUMN enrich.intake.environment IS 'live or test';
COMMENT ON COLUMN enrich.intake.source_relid IS 'the watched table the contacts came from';
COMMENT ON COLUMN enrich.intake.linkedin_url IS 'each contact''s LinkedIn URL (NULL when none)';
COMMENT ON COLUMN enrich.intake.person_id IS 'each contact''s person id (NULL when none)';
COMMENT ON COLUMN enrich.intake.pdl_id IS 'each contact''s PDL id (NULL when none)';
COMMENT ON COLUMN enrich.intake.created_at IS 'when the statement queued them';

COMMENT ON TYPE enrich.batch_status IS 'a batch''s status, as enrich_status and enrich_batches return it';
COMMENT ON COLUMN enrich.batch_status.batch_id IS 'the API''s id of the batch';
COMMENT ON COLUMN enrich.batch_status.status IS 'pending, processing, completed or failed';
COMMENT ON COLUMN enrich.batch_status.created_at IS 'when the API created it';
COMMENT ON COLUMN enrich.batch_status.completed_at IS 'when it completed, or NULL';
COMMENT ON COLUMN enrich.batch_status.total_count IS 'requests in the batch';
COMMENT ON COLUMN enrich.batch_status.processed_count IS 'requests processed so far';
COMMENT ON COLUMN enrich.batch_status.success_count IS 'of which found';
COMMENT ON COLUMN enrich.batch_status.failure_count IS 'of which failed';
COMMENT ON TYPE enrich.item IS 'an item of a batch, as enrich_items and enrich_item return it';
COMMENT ON COLUMN enrich.item.item_id IS 'the API''s id of the item';
COMMENT ON COLUMN enrich.item.is_success IS 'whether a person was found';
COMMENT ON COLUMN enrich.item.is_retryable IS 'whether a failure may succeed if sent again';
COMMENT ON COLUMN enrich.item.metadata IS 'the request''s metadata, echoed';
COMMENT ON COLUMN enrich.item.person IS 'the enriched person, or NULL';
COMMENT ON COLUMN enrich.item.error IS 'why it failed: {"code", "message"}, or NULL';

-- Monitoring at scale: enrich.progress reads counters, not enrich.requests.
-- The statement triggers of enrich.requests record in enrich.request_counts
-- what each statement changed (pending rows, appended so that no two
-- transactions wait on one row); the first worker folds them once a second.
-- The counters are not dumped: the COPY of a restore fires the triggers,
-- which count the restored requests again.
CREATE TABLE enrich.request_counts (
    environment      text NOT NULL CHECK (environment IN ('live', 'test')),
    owner            name NOT NULL,
    category         text NOT NULL
                     CHECK (category IN ('queued', 'waiting_retry', 'in_flight', 'done', 'failed')),
    completed_day    date,
    completed_second timestamptz,
    n                bigint NOT NULL,
    pending          boolean NOT NULL DEFAULT true
);
CREATE UNIQUE INDEX request_counts_key
    ON enrich.request_counts (environment, owner, category, completed_day, completed_second)
    NULLS NOT DISTINCT WHERE NOT pending;
REVOKE ALL ON enrich.request_counts FROM PUBLIC;
COMMENT ON TABLE enrich.request_counts IS
    'how many requests each environment and owner has in each category, kept by the triggers of enrich.requests for enrich.progress';
COMMENT ON COLUMN enrich.request_counts.environment IS 'live or test';
COMMENT ON COLUMN enrich.request_counts.owner IS 'the role the requests belong to (enrich.requests.owner)';
COMMENT ON COLUMN enrich.request_counts.category IS
    'queued (never sent), waiting_retry (queued again), in_flight (submitting or submitted), done or failed';
COMMENT ON COLUMN enrich.request_counts.completed_day IS 'done and failed: the UTC day they completed';
COMMENT ON COLUMN enrich.request_counts.completed_second IS
    'done: the second they completed, for two minutes (then NULL: counted in their day)';
COMMENT ON COLUMN enrich.request_counts.n IS 'how many (negative in a pending row: requests that left the key)';
COMMENT ON COLUMN enrich.request_counts.pending IS
    'written by one statement, to be folded by the workers into the one row of its key';
ALTER TABLE enrich.request_counts ENABLE ROW LEVEL SECURITY;
CREATE POLICY request_counts_own ON enrich.request_counts
    USING (owner OPERATOR(pg_catalog.=) CURRENT_USER
           OR (SELECT pg_catalog.pg_has_role(a.oid, 'USAGE') FROM pg_catalog.pg_roles a
               WHERE a.rolname OPERATOR(pg_catalog.=) 'enrich_admin'));
GRANT SELECT ON enrich.request_counts TO enrich_user;

CREATE FUNCTION enrich.count_requests() RETURNS trigger
AS 'MODULE_PATHNAME', 'enrich_count_requests'
LANGUAGE C;
COMMENT ON FUNCTION enrich.count_requests() IS
    'the statement triggers of enrich.requests: record what a statement changed in enrich.request_counts';
REVOKE ALL ON FUNCTION enrich.count_requests() FROM PUBLIC;
CREATE TRIGGER requests_count_insert AFTER INSERT ON enrich.requests
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION enrich.count_requests();
CREATE TRIGGER requests_count_update AFTER UPDATE ON enrich.requests
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION enrich.count_requests();
CREATE TRIGGER requests_count_delete AFTER DELETE ON enrich.requests
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION enrich.count_requests();
CREATE TRIGGER requests_count_truncate AFTER TRUNCATE ON enrich.requests
    FOR EACH STATEMENT EXECUTE FUNCTION enrich.count_requests();

CREATE FUNCTION enrich.recount() RETURNS void
AS 'MODULE_PATHNAME', 'enrich_recount'
LANGUAGE C;
COMMENT ON FUNCTION enrich.recount() IS
    'counts every request afresh into enrich.request_counts (after rows were written with triggers disabled)';
REVOKE ALL ON FUNCTION enrich.recount() FROM PUBLIC;
SELECT enrich.recount();

-- The oldest queued request of each owner, read from an index.
CREATE INDEX requests_queued_since ON enrich.requests (environment, owner, created_at)
    WHERE state = 'queued';
-- The contacts of a row of the intake, without reading its arrays.
ALTER TABLE enrich.intake ADD COLUMN contacts integer
    GENERATED ALWAYS AS (pg_catalog.cardinality(source_key)) STORED;
COMMENT ON COLUMN enrich.intake.contacts IS 'how many contacts the row holds';

-- done and failed count today's (UTC), not all history; oldest_queued_age
-- is to the second.
DROP VIEW enrich.progress;
CREATE VIEW enrich.progress WITH (security_invoker = true) AS
SELECT e.environment,
       (coalesce(c.queued, 0) + coalesce(i.contacts, 0))::pg_catalog.int8 AS queued,
       coalesce(c.in_flight, 0)::pg_catalog.int8 AS in_flight,
       coalesce(c.waiting_retry, 0)::pg_catalog.int8 AS waiting_retry,
       coalesce(c.done_today, 0)::pg_catalog.int8 AS done_today,
       coalesce(c.failed_today, 0)::pg_catalog.int8 AS failed_today,
       pg_catalog.date_trunc('second', pg_catalog.now() - LEAST(q.oldest, i.oldest)) AS oldest_queued_age,
       coalesce(c.done_last_minute, 0)::pg_catalog.int8 AS done_last_minute,
       w.last_error,
       w.state AS worker_state
FROM (VALUES ('live'::pg_catalog.text), ('test'::pg_catalog.text)) AS e(environment)
CROSS JOIN LATERAL (
    SELECT pg_catalog.sum(k.n) FILTER (WHERE k.category = 'queued') AS queued,
           pg_catalog.sum(k.n) FILTER (WHERE k.category = 'in_flight') AS in_flight,
           pg_catalog.sum(k.n) FILTER (WHERE k.category = 'waiting_retry') AS waiting_retry,
           pg_catalog.sum(k.n) FILTER (WHERE k.category = 'done' AND k.completed_day = t.today) AS done_today,
           pg_catalog.sum(k.n) FILTER (WHERE k.category = 'failed' AND k.completed_day = t.today) AS failed_today,
           pg_catalog.sum(k.n) FILTER (WHERE k.category = 'done'
                                       AND k.completed_second > pg_catalog.now() - interval '1 minute')
               AS done_last_minute
    FROM (SELECT pg_catalog.timezone('UTC', pg_catalog.now())::pg_catalog.date AS today) AS t
    LEFT JOIN enrich.request_counts k ON k.environment = e.environment) AS c
-- contacts of watched tables not yet turned into requests
CROSS JOIN LATERAL (
    SELECT pg_catalog.sum(k.contacts) AS contacts, pg_catalog.min(k.created_at) AS oldest
    FROM enrich.intake k WHERE k.environment = e.environment) AS i
-- the oldest queued request: one index probe per owner that has some
CROSS JOIN LATERAL (
    SELECT pg_catalog.min(f.created_at) AS oldest
    FROM (SELECT k.owner FROM enrich.request_counts k
          WHERE k.environment = e.environment AND k.category IN ('queued', 'waiting_retry')
          GROUP BY k.owner HAVING pg_catalog.sum(k.n) > 0) AS o
    CROSS JOIN LATERAL (SELECT r.created_at FROM enrich.requests r
                        WHERE r.state = 'queued' AND r.environment = e.environment AND r.owner = o.owner
                        ORDER BY r.created_at LIMIT 1) AS f) AS q
-- the worker's state is read once per environment, after the counting
CROSS JOIN LATERAL enrich.worker_state(e.environment) AS w
ORDER BY e.environment;
COMMENT ON VIEW enrich.progress IS
    'the queue and the workers, per environment, of the requests the reader may see (read from counters: made to be watched)';
COMMENT ON COLUMN enrich.progress.environment IS 'live or test';
COMMENT ON COLUMN enrich.progress.queued IS 'requests (and watched contacts) waiting to be sent for the first time';
COMMENT ON COLUMN enrich.progress.in_flight IS 'requests sent and waiting for their answer';
COMMENT ON COLUMN enrich.progress.waiting_retry IS 'requests queued again after a retryable failure';
COMMENT ON COLUMN enrich.progress.done_today IS 'requests that got their person today (since 00:00 UTC)';
COMMENT ON COLUMN enrich.progress.failed_today IS 'requests that failed for good today (since 00:00 UTC)';
COMMENT ON COLUMN enrich.progress.oldest_queued_age IS
    'how long the oldest queued request or contact has waited, to the second';
COMMENT ON COLUMN enrich.progress.done_last_minute IS 'requests that got their person in the last 60 seconds';
COMMENT ON COLUMN enrich.progress.last_error IS 'the workers'' last error in this environment';
COMMENT ON COLUMN enrich.progress.worker_state IS 'running, paused (and why), or waiting';
GRANT SELECT ON enrich.progress TO enrich_user;

-- Every database of the cluster: the launcher serves each database of
-- enrich.databases where enrich is installed; a superuser (or a member of
-- enrich_admin) sees them all.
CREATE FUNCTION @extschema@.enrich_databases(OUT database text, OUT state text,
                                             OUT workers_granted integer, OUT workers_running integer,
                                             OUT pids integer[], OUT bulk_calls_per_second double precision,
                                             OUT read_calls_per_second double precision,
                                             OUT read_budget_share double precision)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'enrich_databases_served'
LANGUAGE C VOLATILE ROWS 10;
COMMENT ON FUNCTION @extschema@.enrich_databases() IS
    'every database the launcher serves or probes: whether enrich is installed (served, probing, not installed), its workers, and their calls a second (about the last 10 s) with their share of the key''s tier 4 budget';
REVOKE ALL ON FUNCTION @extschema@.enrich_databases() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.enrich_databases() TO enrich_admin;

-- Reuse: a request whose identifier was answered recently is settled from
-- that answer, without an API call (enrich.reuse_within,
-- enrich.reuse_failures_within, or the request's max_age).
ALTER TABLE enrich.requests ADD COLUMN reused_from bigint;
ALTER TABLE enrich.requests ADD COLUMN max_age interval
    CONSTRAINT requests_max_age_check CHECK (max_age >= interval '0');
COMMENT ON COLUMN enrich.requests.reused_from IS
    'the request whose answer settled this one without an API call (NULL: the API answered it)';
COMMENT ON COLUMN enrich.requests.max_age IS
    'how old an earlier answer for the same identifier may be to settle this request without a call (NULL: enrich.reuse_within; 0: always call)';
-- The newest answers the API gave for an identifier, read newest first.
CREATE INDEX requests_answers ON enrich.requests (environment, identifier, completed_at)
    WHERE state IN ('done', 'failed') AND reused_from IS NULL;
GRANT INSERT (max_age) ON enrich.requests TO enrich_user;

-- The ledger: what each environment spent and saved, per UTC day.  Rows
-- are appended (pending) and the first worker folds them into one row per
-- day once a second, as with enrich.request_counts; enrich.usage sums them.
CREATE TABLE enrich.usage_counts (
    environment       text NOT NULL CHECK (environment IN ('live', 'test')),
    day               date NOT NULL,
    submitted         bigint NOT NULL DEFAULT 0,
    reused            bigint NOT NULL DEFAULT 0,
    done              bigint NOT NULL DEFAULT 0,
    failed            bigint NOT NULL DEFAULT 0,
    bulk_enrich_calls bigint NOT NULL DEFAULT 0,
    status_calls      bigint NOT NULL DEFAULT 0,
    list_calls        bigint NOT NULL DEFAULT 0,
    items_calls       bigint NOT NULL DEFAULT 0,
    rate_limited      bigint NOT NULL DEFAULT 0,
    errors            bigint NOT NULL DEFAULT 0,
    pending           boolean NOT NULL DEFAULT true
);
CREATE UNIQUE INDEX usage_counts_day ON enrich.usage_counts (environment, day) WHERE NOT pending;
CREATE INDEX usage_counts_pending ON enrich.usage_counts (environment, day) WHERE pending;
REVOKE ALL ON enrich.usage_counts FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('enrich.usage_counts', '');
COMMENT ON TABLE enrich.usage_counts IS
    'the ledger behind enrich.usage: rows the workers and enrich_submit append, folded into one row per environment and day';
COMMENT ON COLUMN enrich.usage_counts.environment IS 'live or test';
COMMENT ON COLUMN enrich.usage_counts.day IS 'the UTC day';
COMMENT ON COLUMN enrich.usage_counts.submitted IS 'requests sent in bulk enrich calls the API may have accepted (its credits)';
COMMENT ON COLUMN enrich.usage_counts.reused IS 'requests settled from an earlier answer, without a call (credits saved)';
COMMENT ON COLUMN enrich.usage_counts.done IS 'requests the API answered with a person (the reused ones apart)';
COMMENT ON COLUMN enrich.usage_counts.failed IS 'requests the API failed for good';
COMMENT ON COLUMN enrich.usage_counts.bulk_enrich_calls IS 'bulk enrich calls (tier 3)';
COMMENT ON COLUMN enrich.usage_counts.status_calls IS 'batch status calls (tier 4)';
COMMENT ON COLUMN enrich.usage_counts.list_calls IS 'list batches calls (tier 4)';
COMMENT ON COLUMN enrich.usage_counts.items_calls IS 'list items calls (tier 4)';
COMMENT ON COLUMN enrich.usage_counts.rate_limited IS 'calls the API answered with 429';
COMMENT ON COLUMN enrich.usage_counts.errors IS 'calls that failed otherwise (5xx, timeouts, connection errors, malformed answers)';
COMMENT ON COLUMN enrich.usage_counts.pending IS 'appended and not yet folded into its day''s row';

CREATE VIEW enrich.usage AS
SELECT u.environment, u.day,
       pg_catalog.sum(u.submitted)::pg_catalog.int8 AS submitted,
       pg_catalog.sum(u.reused)::pg_catalog.int8 AS reused,
       pg_catalog.sum(u.done)::pg_catalog.int8 AS done,
       pg_catalog.sum(u.failed)::pg_catalog.int8 AS failed,
       pg_catalog.sum(u.bulk_enrich_calls)::pg_catalog.int8 AS bulk_enrich_calls,
       pg_catalog.sum(u.status_calls)::pg_catalog.int8 AS status_calls,
       pg_catalog.sum(u.list_calls)::pg_catalog.int8 AS list_calls,
       pg_catalog.sum(u.items_calls)::pg_catalog.int8 AS items_calls,
       pg_catalog.sum(u.rate_limited)::pg_catalog.int8 AS rate_limited,
       pg_catalog.sum(u.errors)::pg_catalog.int8 AS errors
FROM enrich.usage_counts u
GROUP BY u.environment, u.day;
COMMENT ON VIEW enrich.usage IS
    'per environment and UTC day: requests submitted (credits), settled by reuse (credits saved), done, failed, API calls per endpoint, 429s and errors';
COMMENT ON COLUMN enrich.usage.environment IS 'live or test';
COMMENT ON COLUMN enrich.usage.day IS 'the UTC day';
COMMENT ON COLUMN enrich.usage.submitted IS 'requests sent in bulk enrich calls the API may have accepted (its credits)';
COMMENT ON COLUMN enrich.usage.reused IS 'requests settled from an earlier answer, without a call (credits saved)';
COMMENT ON COLUMN enrich.usage.done IS 'requests the API answered with a person (the reused ones apart)';
COMMENT ON COLUMN enrich.usage.failed IS 'requests the API failed for good';
COMMENT ON COLUMN enrich.usage.bulk_enrich_calls IS 'bulk enrich calls (tier 3), enrich_submit''s included';
COMMENT ON COLUMN enrich.usage.status_calls IS 'batch status calls of the workers (tier 4)';
COMMENT ON COLUMN enrich.usage.list_calls IS 'list batches calls of the workers (tier 4)';
COMMENT ON COLUMN enrich.usage.items_calls IS 'list items calls of the workers (tier 4)';
COMMENT ON COLUMN enrich.usage.rate_limited IS 'calls the API answered with 429';
COMMENT ON COLUMN enrich.usage.errors IS 'calls that failed otherwise (5xx, timeouts, connection errors, malformed answers)';
GRANT SELECT ON enrich.usage TO enrich_admin;

-- Budgets: the most requests each environment may submit per UTC day and
-- month.  At the limit the workers submit nothing more (rows stay queued)
-- and enrich_submit refuses, until the next period or a higher limit.
CREATE TABLE enrich.budgets (
    environment text PRIMARY KEY CHECK (environment IN ('live', 'test')),
    per_day     bigint CHECK (per_day >= 0),
    per_month   bigint CHECK (per_month >= 0),
    set_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    set_by      name NOT NULL DEFAULT CURRENT_USER
);
REVOKE ALL ON enrich.budgets FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('enrich.budgets', '');
COMMENT ON TABLE enrich.budgets IS 'the most requests each environment may submit per UTC day and month (enrich_set_budget)';
COMMENT ON COLUMN enrich.budgets.environment IS 'live or test';
COMMENT ON COLUMN enrich.budgets.per_day IS 'requests a UTC day (NULL: no limit)';
COMMENT ON COLUMN enrich.budgets.per_month IS 'requests a UTC month (NULL: no limit)';
COMMENT ON COLUMN enrich.budgets.set_at IS 'when the budget was set';
COMMENT ON COLUMN enrich.budgets.set_by IS 'who set it';
GRANT SELECT ON enrich.budgets TO enrich_admin;

CREATE FUNCTION @extschema@.enrich_set_budget(environment text, per_day bigint, per_month bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'enrich_set_budget'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.enrich_set_budget(text, bigint, bigint) IS
    'sets the most requests environment live or test may submit per UTC day and per month (NULL: no limit); the workers resume at once when it is raised';
REVOKE ALL ON FUNCTION @extschema@.enrich_set_budget(text, bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.enrich_set_budget(text, bigint, bigint) TO enrich_admin;

-- What a backfill would cost, before any call.
CREATE FUNCTION @extschema@.enrich_estimate(source regclass,
                                            OUT rows_without_person bigint, OUT without_identifier bigint,
                                            OUT already_queued bigint, OUT malformed bigint,
                                            OUT reusable bigint, OUT requests_to_send bigint,
                                            OUT duplicates bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'enrich_estimate'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.enrich_estimate(regclass) IS
    'what a backfill of a watched table would do, before any call: its rows without a person, without an identifier, already queued, malformed, settled from earlier answers, the requests it would send (the credits) and the rows that share one; for the table''s owner';
REVOKE ALL ON FUNCTION @extschema@.enrich_estimate(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.enrich_estimate(regclass) TO enrich_user;

-- Refresh: a watched row's person is asked again once it is older than the
-- watch's refresh_after.  enrich.enriched_rows keeps, for each row of such a
-- watch that enrich wrote a person into, when the API gave that person; the
-- first worker queues the rows that are due, a few at a time, within
-- enrich.refresh_window, and the old person stays until the new one is
-- written.
ALTER TABLE enrich.watches ADD COLUMN refresh_after interval
    CONSTRAINT watches_refresh_after_check CHECK (refresh_after > interval '0');
COMMENT ON COLUMN enrich.watches.refresh_after IS
    'how old a row''s person may get before the workers ask the API again (NULL: never)';

-- Notifications: a watch's notify channel hears, at the commit of each page
-- of persons written into its table, which rows got one.
ALTER TABLE enrich.watches ADD COLUMN notify text
    CONSTRAINT watches_notify_check CHECK (notify OPERATOR(pg_catalog.<>) '' AND pg_catalog.octet_length(notify) OPERATOR(pg_catalog.<) 64);
COMMENT ON COLUMN enrich.watches.notify IS
    'the channel that hears, with each page of persons written into the table, which rows got one (NULL: none)';

-- Columns: person fields written into columns of the watched table, each
-- by a jsonpath, in the write-back's UPDATE.
ALTER TABLE enrich.watches ADD COLUMN columns jsonb
    CONSTRAINT watches_columns_check CHECK (pg_catalog.jsonb_typeof(columns) OPERATOR(pg_catalog.=) 'object');
ALTER TABLE enrich.watches ADD COLUMN column_mode text NOT NULL DEFAULT 'fill'
    CONSTRAINT watches_column_mode_check CHECK (column_mode OPERATOR(pg_catalog.=) ANY ('{fill,overwrite}'::pg_catalog.text[]));
ALTER TABLE enrich.watches ADD COLUMN column_failures bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN enrich.watches.columns IS
    'person fields written into columns of the table: {"column": "jsonpath", ...} (NULL: none)';
COMMENT ON COLUMN enrich.watches.column_mode IS
    'fill: a mapped column is written only where it is NULL; overwrite: wherever the path finds a value';
COMMENT ON COLUMN enrich.watches.column_failures IS
    'values a path found that did not cast to their column''s type: the column was left as it was';

CREATE TABLE enrich.enriched_rows (
    source       pg_catalog.regclass NOT NULL,
    source_key   jsonb NOT NULL,
    request      bigint NOT NULL,
    answered_at  timestamptz NOT NULL,
    refresh_from timestamptz NOT NULL,
    PRIMARY KEY (source, source_key)
);
CREATE INDEX enriched_rows_refresh ON enrich.enriched_rows (source, refresh_from);
REVOKE ALL ON enrich.enriched_rows FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('enrich.enriched_rows', '');
COMMENT ON TABLE enrich.enriched_rows IS
    'each row of a watch that refreshes that enrich wrote a person into: which request''s person, and when the API gave it';
COMMENT ON COLUMN enrich.enriched_rows.source IS 'the watched table';
COMMENT ON COLUMN enrich.enriched_rows.source_key IS 'the row''s primary key, as a JSON array of text';
COMMENT ON COLUMN enrich.enriched_rows.request IS 'the request whose person was written';
COMMENT ON COLUMN enrich.enriched_rows.answered_at IS
    'when the API gave that person (for a reused one: when the request it copied was answered)';
COMMENT ON COLUMN enrich.enriched_rows.refresh_from IS
    'what refresh_after counts from: answered_at, or when a refresh was last queued';
ALTER TABLE enrich.enriched_rows ENABLE ROW LEVEL SECURITY;
CREATE POLICY enriched_rows_own ON enrich.enriched_rows
    USING (pg_catalog.pg_has_role(CURRENT_USER,
                                  (SELECT c.relowner FROM pg_catalog.pg_class c
                                   WHERE c.oid OPERATOR(pg_catalog.=) source::pg_catalog.oid), 'USAGE')
           OR (SELECT pg_catalog.pg_has_role(a.oid, 'USAGE') FROM pg_catalog.pg_roles a
               WHERE a.rolname OPERATOR(pg_catalog.=) 'enrich_admin'));
GRANT SELECT ON enrich.enriched_rows TO enrich_user;
CREATE FUNCTION @extschema@.enrich_alter_watch(source regclass, refresh_after interval DEFAULT NULL,
                                               notify text DEFAULT NULL, columns jsonb DEFAULT NULL,
                                               column_mode text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'enrich_alter_watch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.enrich_alter_watch(regclass, interval, text, jsonb, text) IS
    'changes the watch of a table the caller owns (NULL: unchanged): refresh_after (0: never refresh), notify (empty: no notifications), columns (a JSON object of column names and jsonpaths; {}: none), column_mode (fill or overwrite)';
REVOKE ALL ON FUNCTION @extschema@.enrich_alter_watch(regclass, interval, text, jsonb, text) FROM PUBLIC;

CREATE FUNCTION @extschema@.enrich_refresh(source regclass, older_than interval DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'enrich_refresh'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.enrich_refresh(regclass, interval) IS
    'queues at once a new request for each row of a watched table the caller owns whose person is older than older_than (NULL: every row with a person, always called); returns how many';
REVOKE ALL ON FUNCTION @extschema@.enrich_refresh(regclass, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.enrich_alter_watch(regclass, interval, text, jsonb, text),
    @extschema@.enrich_refresh(regclass, interval) TO enrich_user;

-- A worker waiting for this version learns that it is here.
SELECT @extschema@.enrich_wake();
