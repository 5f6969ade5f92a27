/*-------------------------------------------------------------------------
 *
 * triggers.c
 *	  The statement triggers of watched tables (enrich_enqueue_insert and
 *	  enrich_enqueue_update, firing enrich.enqueue_from_source): attached
 *	  to a watched table and to each of its partitions, since a statement
 *	  on a partition fires the partition's statement triggers and not its
 *	  parent's (enrich.attach_triggers), detached again
 *	  (enrich.detach_triggers), and attached to the partitions a watched
 *	  table gets later by CREATE TABLE ... PARTITION OF or ATTACH PARTITION
 *	  (the event trigger enrich.watch_partitions).
 *
 * The triggers are made and dropped as the caller, who must be allowed to
 * (the owner of the watched table, who made or attached the partition).
 * Only the event trigger's question, which partitions belong to a watched
 * table, reads enrich.watches, as the bootstrap superuser.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/event_trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "security.h"

PG_FUNCTION_INFO_V1(enrich_attach_triggers);
PG_FUNCTION_INFO_V1(enrich_detach_triggers);
PG_FUNCTION_INFO_V1(enrich_watch_partitions);

/* the two triggers, and the transition tables each one needs */
static const char *const trigger_sql[2] = {
	"CREATE OR REPLACE TRIGGER enrich_enqueue_insert AFTER INSERT ON %s "
	"REFERENCING NEW TABLE AS enrich_new "
	"FOR EACH STATEMENT EXECUTE FUNCTION enrich.enqueue_from_source()",
	"CREATE OR REPLACE TRIGGER enrich_enqueue_update AFTER UPDATE ON %s "
	"REFERENCING OLD TABLE AS enrich_old NEW TABLE AS enrich_new "
	"FOR EACH STATEMENT EXECUTE FUNCTION enrich.enqueue_from_source()"
};
static const char *const drop_sql[2] = {
	"DROP TRIGGER IF EXISTS enrich_enqueue_insert ON %s",
	"DROP TRIGGER IF EXISTS enrich_enqueue_update ON %s"
};

/* qualified_name returns a relation's name, schema-qualified and quoted */
static char *
qualified_name(Oid relid)
{
	char	   *name = get_rel_name(relid);

	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), name);
}

/* oids_of returns the OIDs in the first column of the last SPI result */
static List *
oids_of(void)
{
	List	   *oids = NIL;

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		oid = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			oids = lappend_oid(oids, DatumGetObjectId(oid));
	}
	return oids;
}

/*
 * tree_members returns a table and every partition below it that can have
 * the triggers (not a foreign table: its rows are not queued), as OIDs
 */
static List *
tree_members(Oid relid)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	List	   *members;

	if (SPI_execute_with_args("SELECT t.relid::pg_catalog.oid "
							  "FROM pg_catalog.pg_partition_tree($1::pg_catalog.regclass) t "
							  "JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.relid "
							  "WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p}'::pg_catalog.\"char\"[]) "
							  "ORDER BY t.level, t.relid",
							  1, argtypes, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "enrich: reading the partitions of table %u failed", relid);
	members = oids_of();
	return members != NIL ? members : list_make1_oid(relid);
}

/*
 * run_on_each runs the two statements of sql on each table of a list, as
 * the caller; SPI is connected
 */
static void
run_on_each(List *relids, const char *const sql[2])
{
	ListCell   *lc;

	foreach(lc, relids)
	{
		char	   *name = qualified_name(lfirst_oid(lc));

		for (int i = 0; i < 2; i++)
			if (SPI_execute(psprintf(sql[i], name), false, 0) != SPI_OK_UTILITY)
				elog(ERROR, "enrich: \"%s\" failed", psprintf(sql[i], name));
	}
}

/*
 * enrich.attach_triggers(source) attaches the triggers of a watched table
 * to it and to each of its partitions (enrich_watch calls it); triggers of
 * those names already there are replaced
 */
Datum
enrich_attach_triggers(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("source must not be null")));
	SPI_connect();
	run_on_each(tree_members(PG_GETARG_OID(0)), trigger_sql);
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * enrich.detach_triggers(source) drops the triggers of a watched table from
 * it and from each of its partitions (enrich_unwatch calls it)
 */
Datum
enrich_detach_triggers(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("source must not be null")));
	SPI_connect();
	run_on_each(tree_members(PG_GETARG_OID(0)), drop_sql);
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * enrich.watch_partitions() is the ddl_command_end event trigger of CREATE
 * TABLE and ALTER TABLE: a partition a watched table got (made as its
 * partition, or attached, with the partitions below it) gets the triggers,
 * made as the user who ran the statement
 */
Datum
enrich_watch_partitions(PG_FUNCTION_ARGS)
{
	Oid			namespace;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("enrich.watch_partitions() was not called by the event trigger manager")));
	namespace = get_namespace_oid("enrich", true);
	if (!OidIsValid(namespace) || !OidIsValid(get_relname_relid("watches", namespace)))
		PG_RETURN_NULL();
	SPI_connect();
	/* not read-only: the statement's own catalog rows must be seen */
	if (enrich_run_privileged("SELECT DISTINCT p.relid::pg_catalog.oid "
							  "FROM pg_catalog.pg_event_trigger_ddl_commands() d "
							  "CROSS JOIN LATERAL pg_catalog.pg_partition_tree(d.objid::pg_catalog.regclass) p "
							  "JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) p.relid "
							  "WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass "
							  "AND d.objsubid OPERATOR(pg_catalog.=) 0 AND c.relispartition "
							  "AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p}'::pg_catalog.\"char\"[]) "
							  "AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t "
							  "    WHERE t.tgrelid OPERATOR(pg_catalog.=) p.relid "
							  "    AND t.tgname OPERATOR(pg_catalog.=) 'enrich_enqueue_insert') "
							  "AND EXISTS (SELECT FROM enrich.watches w "
							  "    JOIN pg_catalog.pg_partition_ancestors(p.relid) a "
							  "    ON w.source OPERATOR(pg_catalog.=) a.relid)",
							  0, NULL, NULL, NULL, false) != SPI_OK_SELECT)
		elog(ERROR, "enrich: reading the partitions of watched tables failed");
	run_on_each(oids_of(), trigger_sql);
	SPI_finish();
	PG_RETURN_NULL();
}
