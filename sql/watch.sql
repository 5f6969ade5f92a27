-- Watched contact tables: enrich_watch and its refusals, the trigger that
-- queues new and changed rows (INSERT, COPY, UPDATE), the backfill,
-- composite keys, enrich_unwatch.  No worker runs in this database: the
-- rows an INSERT or COPY queues stay in enrich.intake until
-- enrich.flush_intake turns them into queued requests.
CREATE EXTENSION enrich;
SET enrich.environment = 'test';

-- an owner of contact tables, a role that owns none of them, and an
-- application role that only writes contacts
CREATE ROLE enrich_watch_owner;
CREATE ROLE enrich_watch_other;
CREATE ROLE enrich_watch_app;
-- what an owner needs to watch its tables
GRANT USAGE ON SCHEMA enrich TO enrich_watch_owner;
GRANT EXECUTE ON FUNCTION enrich_watch(regclass, name, name, name, name, text, boolean, interval, text, jsonb, text),
    enrich_unwatch(regclass),
    enrich.register_watch(regclass, name, name, name, name, text, name[], text[]),
    enrich.unregister_watch(regclass), enrich.enqueue_from_source(),
    enrich.enqueue_existing(regclass), enrich.attach_triggers(regclass),
    enrich.detach_triggers(regclass)
    TO enrich_watch_owner;
GRANT USAGE ON SCHEMA enrich TO enrich_watch_other;
GRANT EXECUTE ON FUNCTION enrich_watch(regclass, name, name, name, name, text, boolean, interval, text, jsonb, text),
    enrich_unwatch(regclass), enrich.register_watch(regclass, name, name, name, name, text, name[], text[]),
    enrich.enqueue_existing(regclass), enrich.unregister_watch(regclass),
    enrich.attach_triggers(regclass), enrich.detach_triggers(regclass) TO enrich_watch_other;

-- the requests queued since the last mark, without what varies
CREATE TEMP VIEW queue AS
SELECT id, source_relid::regclass AS source, source_key, environment,
       left(identifier, 40) AS identifier, state, error->>'code' AS code,
       left(error->>'message', 90) AS problem, completed_at IS NOT NULL AS completed
FROM enrich.requests;
SELECT 0 AS mark \gset

CREATE TABLE contacts (id bigint PRIMARY KEY, linkedin text, pid text, person jsonb);
CREATE TABLE no_key (id bigint, linkedin text, person jsonb);
CREATE VIEW contacts_view AS SELECT * FROM contacts;
ALTER TABLE contacts OWNER TO enrich_watch_owner;
ALTER TABLE no_key OWNER TO enrich_watch_owner;
ALTER VIEW contacts_view OWNER TO enrich_watch_owner;

-- refusals, each with its SQLSTATE; none leaves a watch or a trigger behind
SET ROLE enrich_watch_other;
SELECT enrich_watch('contacts', 'person', 'linkedin', 'pid');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SET ROLE enrich_watch_owner;
SELECT enrich_watch('no_key', 'person', 'linkedin');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT enrich_watch('contacts', 'result', 'linkedin');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT enrich_watch('contacts', 'pid', 'linkedin');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT enrich_watch('contacts', 'person', 'url');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT enrich_watch('contacts', 'person', person_id_column => 'id');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT enrich_watch('contacts', 'person');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT enrich_watch('contacts', 'person', 'linkedin', environment => 'prod');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT enrich_watch('contacts_view', 'person', 'linkedin');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT enrich_watch(NULL, 'person', 'linkedin');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
-- the functions behind enrich_watch check ownership themselves
SELECT enrich.register_watch('enrich.requests', 'person', 'linkedin_url', NULL, NULL, NULL, '{id}', '{bigint}');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT enrich.enqueue_existing('enrich.requests');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT enrich.enqueue_existing('contacts');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
RESET ROLE;
SELECT count(*) AS watches FROM enrich.watches;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgname LIKE 'enrich%';

-- the owner watches contacts; a second watch of it is refused
SET ROLE enrich_watch_owner;
SELECT enrich_watch('contacts', 'person', linkedin_url_column => 'linkedin',
                    person_id_column => 'pid') AS backfilled;
SELECT enrich_watch('contacts', 'person', 'linkedin');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
RESET ROLE;
SELECT source = 'contacts'::regclass AS is_contacts, source_name, result_column,
       linkedin_url_column, person_id_column, pdl_id_column, environment,
       key_columns, key_types, owner::regrole
FROM enrich.watches;
SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'contacts'::regclass ORDER BY tgname;

-- INSERT: a row without identifier is skipped, the others go to the intake
-- in one row; there a malformed one becomes a failed request with the
-- reason, the others queued requests.  The user's INSERT itself succeeds
-- whatever the rows hold.
SET ROLE enrich_watch_owner;
INSERT INTO contacts (id, linkedin, pid) VALUES
    (1, 'https://www.linkedin.com/in/Ada-Lovelace/', NULL),
    (2, NULL, 'p-2'),
    (3, NULL, NULL),
    (4, 'https://example.com/not-linkedin', NULL),
    (5, 'linkedin.com/in/grace-hopper', 'p-5'),
    (6, NULL, ''),
    (7, repeat('x', 3000), 'p-7');
SELECT count(*) AS contacts FROM contacts;
RESET ROLE;
SELECT source_relid::regclass AS source, environment, left(linkedin_url::text, 90) AS linkedin_url,
       person_id, pdl_id, source_key
FROM enrich.intake;
SELECT environment, queued FROM enrich.progress;
SELECT enrich.flush_intake() AS flushed;
SELECT count(*) AS intake FROM enrich.intake;
SELECT source, source_key, environment, identifier, state, code, problem, completed
FROM queue WHERE id > :mark ORDER BY id;
SELECT max(id) AS mark FROM enrich.requests \gset

-- COPY queues too
SET ROLE enrich_watch_owner;
COPY contacts (id, linkedin, pid) FROM STDIN;
10	https://www.linkedin.com/in/copy-one	\N
11	\N	p-11
12	\N	\N
13	www.linkedin.com/in/copy-four	p-13
\.
RESET ROLE;
SELECT enrich.flush_intake() AS flushed;
SELECT source, source_key, environment, identifier, state, code, problem, completed
FROM queue WHERE id > :mark ORDER BY id;
SELECT max(id) AS mark FROM enrich.requests \gset

-- UPDATE queues a row again when an identifier changed, and only then
SET ROLE enrich_watch_owner;
UPDATE contacts SET linkedin = 'https://www.linkedin.com/in/ada-lovelace-2' WHERE id = 1;
UPDATE contacts SET person = '{"fullName": "Grace Hopper"}' WHERE id = 5;
UPDATE contacts SET pid = 'p-5' WHERE id = 5;
-- another spelling of the same URL is the same person: nothing is queued
UPDATE contacts SET linkedin = 'linkedin.com/in/copy-one' WHERE id = 10;
UPDATE contacts SET pid = NULL WHERE id = 2;
UPDATE contacts SET pid = 'p-3' WHERE id = 3;
UPDATE contacts SET pid = 'p-11b', person = NULL WHERE id IN (11, 12);
-- a changed key is a new row
UPDATE contacts SET id = 130 WHERE id = 13;
RESET ROLE;
SELECT source, source_key, environment, identifier, state, code, problem, completed
FROM queue WHERE id > :mark ORDER BY id;
SELECT max(id) AS mark FROM enrich.requests \gset

-- a role that may only write contacts (no right on enrich's schema) queues
-- rows all the same; without an environment in the watch, the writer's
-- enrich.environment applies
GRANT SELECT, INSERT, UPDATE ON contacts TO enrich_watch_app;
SET ROLE enrich_watch_app;
SELECT count(*) FROM enrich.requests;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
INSERT INTO contacts (id, pid) VALUES (20, 'p-20');
RESET ROLE;
SELECT enrich.flush_intake() AS flushed;
SET ROLE enrich_watch_app;
UPDATE contacts SET linkedin = 'https://www.linkedin.com/in/app-user' WHERE id = 20;
SET enrich.environment = 'live';
INSERT INTO contacts (id, pid) VALUES (21, 'p-21');
SET enrich.environment = 'test';
RESET ROLE;
SELECT enrich.flush_intake() AS flushed;
SELECT source, source_key, environment, identifier, state, code, problem, completed
FROM queue WHERE id > :mark ORDER BY id;
SELECT max(id) AS mark FROM enrich.requests \gset

-- backfill: rows that exist when the watch starts, whose result is NULL
CREATE TABLE people (id int PRIMARY KEY, url text, enriched jsonb);
INSERT INTO people VALUES
    (1, 'linkedin.com/in/p1', NULL),
    (2, 'linkedin.com/in/p2', '{"fullName": "Already Done"}'),
    (3, NULL, NULL),
    (4, 'not a url', NULL),
    (5, 'linkedin.com/in/p5', NULL);
ALTER TABLE people OWNER TO enrich_watch_owner;
SET ROLE enrich_watch_owner;
SELECT enrich_watch('people', 'enriched', 'url', backfill => true) AS backfilled;
RESET ROLE;
-- a backfill queues in the intake, as INSERT does; refused rows fail at once
SELECT count(*) AS intake_rows, sum(cardinality(source_key)) AS contacts FROM enrich.intake;
SELECT enrich.flush_intake() AS flushed;
SELECT source, source_key, environment, identifier, state, code, problem, completed
FROM queue WHERE id > :mark ORDER BY state, source_key;  -- a backfill keeps no order
SELECT max(id) AS mark FROM enrich.requests \gset
-- not twice: rows with a request in progress, or refused for the same
-- malformed identifier, are left alone
SET ROLE enrich_watch_owner;
SELECT enrich.enqueue_existing('people') AS again;
-- nor a row still waiting in the intake
INSERT INTO people VALUES (6, 'linkedin.com/in/p6', NULL);
SELECT enrich.enqueue_existing('people') AS waiting_in_intake;
RESET ROLE;
SELECT enrich.flush_intake() AS flushed;
-- a corrected identifier is queued at once (by the trigger); a request
-- that ended without a result leaves its row to a later backfill
UPDATE enrich.requests SET state = 'done', completed_at = now()
WHERE source_relid = 'people'::regclass AND source_key = '["1"]';
SET ROLE enrich_watch_owner;
UPDATE people SET url = 'linkedin.com/in/p4' WHERE id = 4;
SELECT enrich.enqueue_existing('people') AS after_done;
RESET ROLE;
SELECT enrich.flush_intake() AS flushed;
SELECT source, source_key, environment, identifier, state, code, problem, completed
FROM queue WHERE id > :mark ORDER BY id;
SELECT max(id) AS mark FROM enrich.requests \gset

-- a composite primary key (INCLUDE columns are not part of it), varchar
-- and char identifier columns, and an environment of the watch's own
CREATE TABLE team (org text, member int, linkedin varchar(300), pdl char(12), result jsonb,
                   note text, PRIMARY KEY (org, member) INCLUDE (note));
ALTER TABLE team OWNER TO enrich_watch_owner;
SET ROLE enrich_watch_owner;
SELECT enrich_watch('team', 'result', linkedin_url_column => 'linkedin', pdl_id_column => 'pdl',
                    environment => 'live') AS backfilled;
INSERT INTO team VALUES
    ('acme', 1, 'https://www.linkedin.com/in/Team-One', NULL, NULL, 'a'),
    ('acme', 2, NULL, 'pdl-2', NULL, 'b'),
    ('globex', 1, 'https://www.linkedin.com/in/team-one', 'pdl-3', NULL, 'c');
RESET ROLE;
-- flushing one environment leaves the other's intake alone
SELECT enrich.flush_intake('test') AS flushed_test;
SELECT enrich.flush_intake('live') AS flushed_live;
SELECT enrich.flush_intake('prod');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SET ROLE enrich_watch_owner;
UPDATE team SET note = 'changed' WHERE org = 'acme';
UPDATE team SET pdl = 'pdl-2' WHERE org = 'acme' AND member = 2;
UPDATE team SET pdl = 'pdl-22' WHERE org = 'acme' AND member = 2;
RESET ROLE;
SELECT key_columns, key_types, environment FROM enrich.watches WHERE source = 'team'::regclass;
SELECT source, source_key, environment, identifier, state, code, problem, completed
FROM queue WHERE id > :mark ORDER BY id;
SELECT max(id) AS mark FROM enrich.requests \gset

-- a watch whose column was dropped since: the user's statement succeeds,
-- with a WARNING instead of queued rows
SET ROLE enrich_watch_owner;
ALTER TABLE team DROP COLUMN pdl;
INSERT INTO team (org, member, linkedin) VALUES ('initech', 1, 'https://www.linkedin.com/in/peter');
SELECT count(*) AS team FROM team;
SELECT enrich.enqueue_existing('team');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
RESET ROLE;
SELECT count(*) AS queued_since FROM enrich.requests WHERE id > :mark;
SELECT count(*) AS intake FROM enrich.intake;

-- enrich_unwatch: only the owner; it drops the triggers and the watch, and
-- later rows are not queued
SET ROLE enrich_watch_other;
SELECT enrich_unwatch('contacts');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SET ROLE enrich_watch_owner;
SELECT enrich_unwatch('contacts');
SELECT enrich_unwatch('contacts');
SELECT enrich_unwatch(NULL);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
INSERT INTO contacts (id, pid) VALUES (40, 'p-40');
RESET ROLE;
SELECT count(*) AS queued_since FROM enrich.requests WHERE id > :mark;
SELECT count(*) AS intake FROM enrich.intake;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'contacts'::regclass;
SELECT source_name FROM enrich.watches ORDER BY source_name;
-- the watch of a table goes when its owner drops it; enrich_unwatch of it
-- then finds nothing to forget
SELECT 'people'::regclass::oid AS people_oid \gset
SET ROLE enrich_watch_owner;
DROP TABLE people;
SELECT enrich_unwatch(:people_oid::regclass);
RESET ROLE;
SELECT source_name FROM enrich.watches ORDER BY source_name;

-- triggers that outlived their watch row (a restored dump) are attached again
CREATE TABLE restored (id int PRIMARY KEY, url text, person jsonb);
SELECT enrich_watch('restored', 'person', 'url');
DELETE FROM enrich.watches WHERE source = 'restored'::regclass;
SELECT enrich_watch('restored', 'person', 'url');
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'restored'::regclass;
SELECT enrich_unwatch('restored');
DROP TABLE restored;

-- key values are written the same whatever the writer's settings: the
-- worker reads them back under its own
CREATE TABLE visits (day date, n int, url text, result jsonb, PRIMARY KEY (day, n));
ALTER TABLE visits OWNER TO enrich_watch_owner;
SET ROLE enrich_watch_owner;
SELECT enrich_watch('visits', 'result', 'url', environment => 'test') AS backfilled;
SET datestyle = 'SQL, DMY';
INSERT INTO visits VALUES ('28/11/2026', 1, 'linkedin.com/in/visitor', NULL);
UPDATE visits SET url = 'linkedin.com/in/visitor-2' WHERE n = 1;
SELECT day FROM visits;
RESET datestyle;
RESET ROLE;
SELECT source_key FROM enrich.intake WHERE source_relid = 'visits'::regclass;
SELECT enrich.flush_intake() AS flushed;
SELECT source_key, identifier, state FROM queue WHERE source = 'visits'::regclass ORDER BY id;
SET ROLE enrich_watch_owner;
SELECT enrich_unwatch('visits');
DROP TABLE visits;
RESET ROLE;

-- the extension cannot be dropped while a table is watched
DROP VIEW queue;
DROP EXTENSION enrich;
SET ROLE enrich_watch_owner;
SELECT enrich_unwatch('team');
RESET ROLE;
DROP VIEW contacts_view;
DROP TABLE contacts, no_key, team;
DROP EXTENSION enrich;
DROP ROLE enrich_watch_owner, enrich_watch_other, enrich_watch_app;
