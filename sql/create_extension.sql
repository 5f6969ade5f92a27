-- The extension installs and uninstalls cleanly.
CREATE EXTENSION enrich;
SELECT extname, extversion, extrelocatable FROM pg_catalog.pg_extension WHERE extname = 'enrich';
SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname = 'enrich';
-- the library is preloaded and reserves its settings prefix
SELECT name, setting FROM pg_catalog.pg_settings WHERE name = 'enrich.environment';
-- every function, table, view, type and column of the extension says what
-- it is (a COMMENT)
SELECT pg_describe_object(d.classid, d.objid, 0) AS without_comment
FROM pg_depend d
WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'enrich')
  AND d.classid IN ('pg_proc'::regclass, 'pg_class'::regclass, 'pg_type'::regclass)
  AND obj_description(d.objid, d.classid::regclass::text) IS NULL
  -- a table's row type and array types are described by the table (on
  -- PostgreSQL 17 and 18 they are members of the extension too)
  AND NOT EXISTS (SELECT 1 FROM pg_type t LEFT JOIN pg_class r ON r.oid = t.typrelid
                  WHERE d.classid = 'pg_type'::regclass AND t.oid = d.objid
                    AND (t.typcategory = 'A' OR r.relkind IN ('r', 'v')))
UNION ALL
SELECT c.oid::regclass || '.' || a.attname
FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
WHERE c.relnamespace = 'enrich'::regnamespace AND c.relkind IN ('r', 'v', 'c')
  AND a.attnum > 0 AND NOT a.attisdropped AND col_description(c.oid, a.attnum) IS NULL
ORDER BY 1;
DROP EXTENSION enrich;
SELECT count(*) AS enrich_schemas_left FROM pg_catalog.pg_namespace WHERE nspname = 'enrich';
CREATE EXTENSION enrich;
DROP EXTENSION enrich;
