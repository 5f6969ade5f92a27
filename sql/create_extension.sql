-- The extension installs and uninstalls cleanly.
CREATE EXTENSION enrich;
SELECT extname, extversion, extrelocatable FROM pg_catalog.pg_extension WHERE extname = 'enrich';
SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname = 'enrich';
-- the library is preloaded and reserves its settings prefix
SELECT name, setting FROM pg_catalog.pg_settings WHERE name = 'enrich.environment';
DROP EXTENSION enrich;
SELECT count(*) AS enrich_schemas_left FROM pg_catalog.pg_namespace WHERE nspname = 'enrich';
CREATE EXTENSION enrich;
DROP EXTENSION enrich;
