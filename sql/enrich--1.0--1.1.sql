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

-- A worker waiting for this version learns that it is here.
SELECT @extschema@.enrich_wake();
