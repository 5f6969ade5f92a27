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
-- enrich_watch leaves the checks to it.
CREATE OR REPLACE FUNCTION @extschema@.enrich_watch(source regclass, result_column name,
                                                    linkedin_url_column name DEFAULT NULL,
                                                    person_id_column name DEFAULT NULL,
                                                    pdl_id_column name DEFAULT NULL,
                                                    environment text DEFAULT NULL,
                                                    backfill boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM enrich.register_watch(source, result_column, linkedin_url_column, person_id_column, pdl_id_column, environment, NULL, NULL);
    EXECUTE pg_catalog.format(
        'CREATE TRIGGER enrich_enqueue_insert AFTER INSERT ON %s '
        'REFERENCING NEW TABLE AS enrich_new '
        'FOR EACH STATEMENT EXECUTE FUNCTION enrich.enqueue_from_source()', source);
    EXECUTE pg_catalog.format(
        'CREATE TRIGGER enrich_enqueue_update AFTER UPDATE ON %s '
        'REFERENCING OLD TABLE AS enrich_old NEW TABLE AS enrich_new '
        'FOR EACH STATEMENT EXECUTE FUNCTION enrich.enqueue_from_source()', source);
    IF backfill THEN
        RETURN enrich.enqueue_existing(source);
    END IF;
    RETURN 0;
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
-- enrich.progress counts what its reader may see
ALTER VIEW enrich.progress SET (security_invoker = true);

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
    @extschema@.enrich_watch(regclass, name, name, name, name, text, boolean),
    @extschema@.enrich_unwatch(regclass), @extschema@.enrich_wake(),
    enrich.register_watch(regclass, name, name, name, name, text, name[], text[]),
    enrich.unregister_watch(regclass), enrich.enqueue_existing(regclass),
    enrich.enqueue_from_source(),
    enrich.worker_state(text), @extschema@.enrich_cancel(bigint[])
    TO enrich_user;
GRANT INSERT (environment, linkedin_url, person_id, pdl_id, metadata), SELECT ON enrich.requests TO enrich_user;
GRANT SELECT ON enrich.batches, enrich.intake, enrich.progress TO enrich_user;

-- A worker waiting for this version learns that it is here.
SELECT @extschema@.enrich_wake();
