/*-------------------------------------------------------------------------
 *
 * watch.c
 *	  Watched tables: their records (enrich.register_watch,
 *	  enrich.unregister_watch, enrich_alter_watch), the trigger of a watched table
 *	  (enrich.enqueue_from_source) and its backfill (enrich.enqueue_existing).
 *	  The new rows of an INSERT or COPY go to the intake (intake.c); the rows
 *	  an UPDATE changed, and a backfill's, are queued by one statement built
 *	  here.
 *
 * The users who insert contacts have no privilege on enrich's tables, so
 * the statements on them run as the bootstrap superuser (security.c:
 * enrich_run_privileged, or enrich_run_privileged_plan for the statements
 * the trigger prepares once per backend and keeps), under the pinned
 * settings.  Those statements evaluate nothing that a table owner could
 * have defined, and read no user table by name: the trigger reads its
 * transition tables, a backfill reads the table in C by OID; identifier
 * columns are text, varchar or bpchar, primary key values of a
 * user-defined type are turned into text by the type's output function
 * (format's %s), never by a cast a user may have created, and rows are
 * matched on that text, never with the type's operators.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_class.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/event_trigger.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/jsonpath.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/queryenvironment.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "compat.h"
#include "guc.h"
#include "shared.h"
#include "intake.h"
#include "plans.h"
#include "queue.h"
#include "request.h"
#include "security.h"
#include "watch.h"
#include "writeback.h"

PG_FUNCTION_INFO_V1(enrich_enqueue_from_source);
PG_FUNCTION_INFO_V1(enrich_enqueue_existing);
PG_FUNCTION_INFO_V1(enrich_estimate);
PG_FUNCTION_INFO_V1(enrich_register_watch);
PG_FUNCTION_INFO_V1(enrich_unregister_watch);
PG_FUNCTION_INFO_V1(enrich_forget_dropped);
PG_FUNCTION_INFO_V1(enrich_alter_watch);

/*
 * where the rows that enqueue_sql queues come from (the new rows of an
 * INSERT or COPY go to enrich.intake instead: enrich_intake_from_inserted)
 */
typedef enum EnrichEnqueueSource
{
	ENQUEUE_UPDATED,			/* the rows of an UPDATE whose identifiers
								 * changed */
	ENQUEUE_EXISTING			/* the rows of the table without a result */
} EnrichEnqueueSource;




/* enrich_relation_name returns a table's name as regclass writes it */
char *
enrich_relation_name(Oid relid)
{
	return DatumGetCString(DirectFunctionCall1(regclassout, ObjectIdGetDatum(relid)));
}

/*
 * enrich_check_table refuses a relation that does not exist or is not a
 * table, and a table the current user does not own (has not the privileges
 * of its owner); it returns a copy of its pg_class row
 */
Form_pg_class
enrich_check_table(Oid relid)
{
	HeapTuple	tup = SearchSysCacheCopy1(RELOID, ObjectIdGetDatum(relid));
	Form_pg_class form;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	form = (Form_pg_class) GETSTRUCT(tup);
	if (form->relkind != RELKIND_RELATION && form->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", enrich_relation_name(relid))));
	if (!has_privs_of_role(GetUserId(), form->relowner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s", enrich_relation_name(relid)),
				 errhint("Only the owner of a table may have enrich write into it.")));
	return form;
}

/*
 * lock_table locks a table the current user owns by OID (mode), checked
 * before (so that no other role can lock it through enrich) and again
 * after the lock, and returns its pg_class row.  Whatever a function then
 * reads of the table is of that table: it cannot be renamed, dropped or
 * replaced while the lock is held.
 */
static Form_pg_class
lock_table(Oid relid, LOCKMODE mode)
{
	(void) enrich_check_table(relid);
	LockRelationOid(relid, mode);
	return enrich_check_table(relid);
}

/* name_array_values returns the elements of a name[] datum as C strings */
static char **
name_array_values(Datum array, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	char	  **names;

	deconstruct_array(DatumGetArrayTypeP(array), NAMEOID, NAMEDATALEN, false,
					  TYPALIGN_CHAR, &elems, &nulls, n);
	names = palloc(sizeof(char *) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
	{
		if (nulls[i])
			elog(ERROR, "enrich: a key column of enrich.watches is null");
		names[i] = pstrdup(NameStr(*DatumGetName(elems[i])));
	}
	return names;
}

/* the plan of watch_read's statement, kept for the life of the process */
static SPIPlanPtr watch_plan = NULL;

/*
 * watch_read reads the watch of a table from enrich.watches into *w; it
 * returns false when the table is not watched.  SPI is connected.
 */
static bool
watch_read(Oid relid, EnrichWatch *w)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	HeapTuple	row;
	TupleDesc	tupdesc;
	Datum		keys;
	bool		isnull;
	int			rc;

	rc = enrich_run_privileged_plan(&watch_plan,
					   "SELECT result_column::pg_catalog.text, linkedin_url_column::pg_catalog.text, "
					   "person_id_column::pg_catalog.text, pdl_id_column::pg_catalog.text, "
					   "environment, key_columns "
					   "FROM enrich.watches WHERE source OPERATOR(pg_catalog.=) $1",
					   0, 1, argtypes, values, NULL, true);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "enrich: reading enrich.watches failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		return false;

	row = SPI_tuptable->vals[0];
	tupdesc = SPI_tuptable->tupdesc;
	memset(w, 0, sizeof(*w));
	w->relid = relid;
	w->result_column = SPI_getvalue(row, tupdesc, 1);
	for (int i = 0; i < ENRICH_NIDENTIFIERS; i++)
		w->identifier_columns[i] = SPI_getvalue(row, tupdesc, 2 + i);
	w->environment = SPI_getvalue(row, tupdesc, 5);
	keys = SPI_getbinval(row, tupdesc, 6, &isnull);
	if (!isnull)
		w->key_columns = name_array_values(keys, &w->nkeys);
	if (w->nkeys < 1)
		elog(ERROR, "enrich: the watch of table %u has no key columns", relid);
	return true;
}

/*
 * watch_read_for reads the watch of a table, or else the watch of the
 * nearest of its ancestors that is watched: a row inserted straight into a
 * partition is a row of the watched table above it
 */
static bool
watch_read_for(Relation rel, EnrichWatch *w)
{
	ListCell   *lc;

	if (watch_read(RelationGetRelid(rel), w))
		return true;
	if (!rel->rd_rel->relispartition)
		return false;
	foreach(lc, get_partition_ancestors(RelationGetRelid(rel)))
		if (watch_read(lfirst_oid(lc), w))
			return true;
	return false;
}

/*
 * watch_columns checks that the columns a watch names still exist with
 * the types enrich_watch required (the result column only when
 * need_result), and records the key columns' types.  It returns NULL when
 * they do, else what is wrong.
 */
static char *
watch_columns(EnrichWatch *w, bool need_result)
{
	char	   *table = enrich_relation_name(w->relid);
	Oid			type;

	if (need_result)
	{
		type = enrich_column_type(w->relid, w->result_column);
		if (type == InvalidOid)
			return psprintf("result column \"%s\" of table %s does not exist",
							w->result_column, table);
		if (type != JSONBOID)
			return psprintf("result column \"%s\" of table %s is not of type jsonb",
							w->result_column, table);
	}
	for (int i = 0; i < ENRICH_NIDENTIFIERS; i++)
	{
		if (w->identifier_columns[i] == NULL)
			continue;
		type = enrich_column_type(w->relid, w->identifier_columns[i]);
		if (type == InvalidOid)
			return psprintf("identifier column \"%s\" of table %s does not exist",
							w->identifier_columns[i], table);
		if (type != TEXTOID && type != VARCHAROID && type != BPCHAROID)
			return psprintf("identifier column \"%s\" of table %s is not of type text or varchar",
							w->identifier_columns[i], table);
	}
	w->key_types = palloc(sizeof(Oid) * w->nkeys);
	for (int i = 0; i < w->nkeys; i++)
	{
		w->key_types[i] = enrich_column_type(w->relid, w->key_columns[i]);
		if (w->key_types[i] == InvalidOid)
			return psprintf("key column \"%s\" of table %s does not exist",
							w->key_columns[i], table);
	}
	return NULL;
}

/*
 * append_source_rows appends a SELECT of the rows of "from" (a transition
 * table, alias t) as (linkedin_url, person_id, pdl_id,
 * source_key), identifiers as text and source_key a JSON array of the
 * primary key values as text.  Key values go through their type's output
 * function (format's %s), as intake_from_inserted writes them, so that no
 * cast a user created runs as superuser.
 */
static void
append_source_rows(StringInfo buf, const EnrichWatch *w, const char *from,
				   const char *where)
{
	appendStringInfoString(buf, "SELECT ");
	for (int i = 0; i < ENRICH_NIDENTIFIERS; i++)
	{
		if (w->identifier_columns[i] != NULL)
			appendStringInfo(buf, "t.%s::pg_catalog.text AS %s, ",
							 quote_identifier(w->identifier_columns[i]), enrich_identifier_columns[i]);
		else
			appendStringInfo(buf, "NULL::pg_catalog.text AS %s, ", enrich_identifier_columns[i]);
	}
	appendStringInfoString(buf, "pg_catalog.jsonb_build_array(");
	for (int i = 0; i < w->nkeys; i++)
	{
		const char *column = quote_identifier(w->key_columns[i]);

		if (i > 0)
			appendStringInfoString(buf, ", ");
		appendStringInfo(buf, "pg_catalog.format('%%s', t.%s)", column);
	}
	appendStringInfo(buf, ") AS source_key FROM %s t", from);
	if (where != NULL)
		appendStringInfo(buf, " WHERE %s", where);
}

/*
 * the name under which the backfill's statement reads the rows of the
 * watched table it read in C (existing_rows)
 */
#define EXISTING_ROWS "enrich_existing"

/* what a backfill of a watched table would do, before any call */
typedef struct BackfillEstimate
{
	int64		without_person; /* rows whose result column is NULL */
	int64		without_identifier; /* of which: no identifier, skipped */
	int64		in_queue;		/* queued or in flight already: skipped */
	int64		malformed;		/* refused, failed without a call */
	int64		reusable;		/* settled from an earlier answer, free */
	int64		to_send;		/* requests sent: the credits */
	int64		duplicates;		/* rows that share a request with another */
} BackfillEstimate;

/*
 * append_not_queued appends the conditions of a backfill on a row n: no
 * request of it queued or in flight, none refused for the same malformed
 * identifiers (it would only be refused again), none waiting in
 * enrich.intake
 */
static void
append_not_queued(StringInfo sql)
{
	appendStringInfoString(sql,
							   " AND NOT EXISTS (SELECT 1 FROM enrich.requests r "
							   "WHERE r.source_relid OPERATOR(pg_catalog.=) $2 "
							   "AND r.source_key OPERATOR(pg_catalog.=) n.source_key "
							   "AND (r.state OPERATOR(pg_catalog.=) ANY ('{queued,submitting,submitted}'::pg_catalog.text[]) "
							   "OR (r.state OPERATOR(pg_catalog.=) 'failed' "
							   "AND r.error OPERATOR(pg_catalog.->>) 'code' OPERATOR(pg_catalog.=) 'invalid_identifier' "
							   "AND pg_catalog.jsonb_build_array(r.linkedin_url, r.person_id, r.pdl_id)" SQL_OP(=)
							   "pg_catalog.jsonb_build_array(n.linkedin_url, n.person_id, n.pdl_id)))) "
							   "AND NOT EXISTS (SELECT 1 FROM enrich.intake i "
							   "CROSS JOIN LATERAL pg_catalog.unnest(i.source_key) AS k(source_key) "
							   "WHERE i.source_relid OPERATOR(pg_catalog.=) $2 "
							   "AND k.source_key::pg_catalog.jsonb OPERATOR(pg_catalog.=) n.source_key)");
}

/*
 * append_backfill_inserts appends what a backfill does with its rows c: it
 * queues them the way INSERT and COPY do, in enrich.intake, 1,000 contacts
 * a row; refused ones are failed requests; the statement returns how many
 * it queued, refused ones included
 */
static void
append_backfill_inserts(StringInfo sql)
{
	appendStringInfoString(sql,
						   " OFFSET 0), "
						   "refused AS (INSERT INTO enrich.requests (environment, linkedin_url, person_id, pdl_id, "
						   "source_relid, source_key, state, error, completed_at) "
						   "SELECT COALESCE($1, pg_catalog.current_setting('enrich.environment')), "
						   "c.linkedin_url, c.person_id, c.pdl_id, $2, c.source_key, 'failed', "
						   "pg_catalog.jsonb_build_object('code', 'invalid_identifier', 'message', c.problem), "
						   "pg_catalog.now() FROM c WHERE c.problem IS NOT NULL RETURNING 1), "
						   "queued AS (INSERT INTO enrich.intake (environment, source_relid, linkedin_url, "
						   "person_id, pdl_id, source_key) "
						   "SELECT COALESCE($1, pg_catalog.current_setting('enrich.environment')), $2, "
						   "pg_catalog.array_agg(q.linkedin_url ORDER BY q.n), "
						   "pg_catalog.array_agg(q.person_id ORDER BY q.n), "
						   "pg_catalog.array_agg(q.pdl_id ORDER BY q.n), "
						   "pg_catalog.array_agg(q.source_key::pg_catalog.text ORDER BY q.n) "
						   "FROM (SELECT c.*, pg_catalog.row_number() OVER () OPERATOR(pg_catalog.-) 1 AS n "
						   "FROM c WHERE c.problem IS NULL) q "
						   "GROUP BY q.n OPERATOR(pg_catalog./) 1000 "
						   "RETURNING pg_catalog.cardinality(source_key) AS contacts) "
						   "SELECT (SELECT pg_catalog.count(*) FROM refused) OPERATOR(pg_catalog.+) "
						   "(SELECT COALESCE(pg_catalog.sum(contacts), 0) FROM queued)");
}

/*
 * UPDATED_IDENTIFIER(alias) is what an UPDATE must change for its row to be
 * queued again: the normalized identifier (a URL spelled otherwise is the
 * same person), or the values as given when they have none (malformed)
 */
#define UPDATED_IDENTIFIER(alias) \
	"COALESCE(enrich.normalize_identifier(" alias ".linkedin_url, " alias ".person_id, " alias ".pdl_id), " \
	"pg_catalog.jsonb_build_array(" alias ".linkedin_url, " alias ".person_id, " alias ".pdl_id)::pg_catalog.text)"

/*
 * enqueue_sql builds the one statement that queues the rows of a watched
 * table: $1 is the environment (NULL: enrich.environment), $2 the table's
 * oid.  Rows without any identifier are skipped; a row whose identifiers
 * enrich.request_problem refuses is recorded as a failed request with the
 * reason, so that the user's statement never fails for its content.
 *
 * For ENQUEUE_UPDATED, new_table and old_table are the transition tables
 * of the trigger, and only the rows whose normalized identifier changed are
 * queued (rows are matched on source_key, a row whose key changed counts as
 * new).
 * ENQUEUE_EXISTING queues the rows of the table whose result column is
 * NULL and that have no request queued or in flight, none refused for the
 * same malformed identifiers (it would only be refused again), and none
 * waiting in enrich.intake; it queues them in enrich.intake, as INSERT and
 * COPY do (the worker claims them in one statement), and returns one row:
 * how many it queued, refused ones included.
 */
static char *
enqueue_sql(const EnrichWatch *w, EnrichEnqueueSource source,
			const char *new_table, const char *old_table)
{
	StringInfoData sql;
	bool		first;

	initStringInfo(&sql);
	if (source == ENQUEUE_EXISTING)
		appendStringInfoString(&sql, "WITH c AS (");
	else
		appendStringInfoString(&sql,
							   "INSERT INTO enrich.requests (environment, linkedin_url, person_id, pdl_id, "
							   "source_relid, source_key, state, error, completed_at) "
							   "SELECT COALESCE($1, pg_catalog.current_setting('enrich.environment')), "
							   "c.linkedin_url, c.person_id, c.pdl_id, $2, c.source_key, "
							   "CASE WHEN c.problem IS NULL THEN 'queued' ELSE 'failed' END, "
							   "CASE WHEN c.problem IS NOT NULL THEN pg_catalog.jsonb_build_object("
							   "'code', 'invalid_identifier', 'message', c.problem) END, "
							   "CASE WHEN c.problem IS NOT NULL THEN pg_catalog.now() END "
							   "FROM (");
	appendStringInfoString(&sql,
						   "SELECT n.linkedin_url, n.person_id, n.pdl_id, n.source_key, "
						   "enrich.request_problem(n.linkedin_url, n.person_id, n.pdl_id, NULL) AS problem "
						   "FROM (");

	if (source == ENQUEUE_EXISTING)
	{
		/* the rows the backfill read, by OID (existing_rows) */
		appendStringInfoString(&sql,
							   "SELECT t.linkedin_url, t.person_id, t.pdl_id, "
							   "t.source_key::pg_catalog.jsonb AS source_key FROM " EXISTING_ROWS " t) n");
	}
	else
	{
		append_source_rows(&sql, w, quote_identifier(new_table), NULL);
		appendStringInfoString(&sql, ") n");
		if (source == ENQUEUE_UPDATED)
		{
			appendStringInfoString(&sql, " LEFT JOIN (");
			append_source_rows(&sql, w, quote_identifier(old_table), NULL);
			appendStringInfoString(&sql, ") o ON o.source_key OPERATOR(pg_catalog.=) n.source_key");
		}
	}

	/* at least one identifier */
	appendStringInfoString(&sql, " WHERE (");
	first = true;
	for (int i = 0; i < ENRICH_NIDENTIFIERS; i++)
	{
		if (w->identifier_columns[i] == NULL)
			continue;
		appendStringInfo(&sql, "%sn.%s IS NOT NULL", first ? "" : " OR ", enrich_identifier_columns[i]);
		first = false;
	}
	appendStringInfoChar(&sql, ')');

	if (source == ENQUEUE_UPDATED)
	{
		appendStringInfoString(&sql,
							   " AND (o.source_key IS NULL OR "
							   UPDATED_IDENTIFIER("n") SQL_OP(<>) UPDATED_IDENTIFIER("o") ")");
	}
	else if (source == ENQUEUE_EXISTING)
		append_not_queued(&sql);

	/* OFFSET 0 keeps request_problem from being evaluated once per use */
	if (source != ENQUEUE_EXISTING)
	{
		appendStringInfoString(&sql, " OFFSET 0) c");
		return sql.data;
	}

	append_backfill_inserts(&sql);
	return sql.data;
}

static EnrichPlanSlot *enqueue_plans = NULL;

/*
 * enqueue_run runs the statement of enqueue_sql as the bootstrap superuser
 * and returns how many requests it queued.  With a plan slot the statement
 * is prepared once and kept (the trigger runs it for every statement on the
 * table); without one it is planned for this run only.  SPI is connected.
 */
static uint64
enqueue_run(const EnrichWatch *w, const char *sql, SPIPlanPtr *plan, int cursor_options)
{
	Oid			argtypes[2] = {TEXTOID, OIDOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	volatile int rc = 0;

	enrich_watch_arguments(w, values, nulls);
	enrich_allow_source_rows(true);
	PG_TRY();
	{
		if (plan != NULL)
			rc = enrich_run_privileged_plan(plan, sql, cursor_options, 2, argtypes, values, nulls, false);
		else
			rc = enrich_run_privileged(sql, 2, argtypes, values, nulls, false);
	}
	PG_FINALLY();
	{
		enrich_allow_source_rows(false);
	}
	PG_END_TRY();
	if (rc == SPI_OK_SELECT && SPI_processed == 1)
	{
		/* a backfill counts what it queued */
		bool		isnull;
		Datum		queued = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		return isnull ? 0 : (uint64) DatumGetInt64(queued);	/* bigint */
	}
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "enrich: queueing the rows of table %s failed: %s",
			 enrich_relation_name(w->relid), SPI_result_code_string(rc));
	return SPI_processed;
}

/*
 * enrich.enqueue_from_source() is the AFTER INSERT and AFTER UPDATE
 * statement trigger of a watched table and of each of its partitions
 * (attached by triggers.c with the transition tables enrich_new and
 * enrich_old); a partition's rows are the watched table's.  The new rows of an INSERT
 * or COPY go to enrich.intake, a row per 1,000 (intake_from_inserted); the
 * rows whose identifiers an UPDATE changed are queued as requests by one
 * statement.
 *
 * It does nothing in the worker (whose write-back updates the result
 * column) and on a table no longer watched.  It never fails the user's
 * statement for what the rows contain; a watch whose columns were since
 * dropped or changed gets a WARNING instead of queued rows.
 */
Datum
enrich_enqueue_from_source(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	bool		is_update;
	EnrichWatch w;
	EnrichEnqueueSource source;
	char	   *problem;
	char	   *sql;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		!(TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		  TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("enrich.enqueue_from_source() must be fired AFTER INSERT or AFTER UPDATE FOR EACH STATEMENT")));
	is_update = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event);

	if (enrich_in_worker)
		return PointerGetDatum(NULL);

	if (trigdata->tg_newtable == NULL || (is_update && trigdata->tg_oldtable == NULL))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("enrich.enqueue_from_source() needs transition tables"),
				 errhint("Create the triggers with enrich_watch.")));
	if (tuplestore_tuple_count(trigdata->tg_newtable) == 0)
		return PointerGetDatum(NULL);

	SPI_connect();
	if (!watch_read_for(trigdata->tg_relation, &w))
	{
		SPI_finish();
		return PointerGetDatum(NULL);
	}
	problem = watch_columns(&w, false);
	if (problem != NULL)
	{
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("enrich did not queue the rows of this statement: %s", problem),
				 errhint("Call enrich_unwatch and then enrich_watch with the table's columns now.")));
		SPI_finish();
		return PointerGetDatum(NULL);
	}
	if (!is_update)
	{
		enrich_intake_from_inserted(trigdata, &w);
		SPI_finish();
		return PointerGetDatum(NULL);
	}
	SPI_register_trigger_data(trigdata);
	source = ENQUEUE_UPDATED;
	sql = enqueue_sql(&w, source, trigdata->tg_trigger->tgnewtable,
					  trigdata->tg_trigger->tgoldtable);

	/* the join of an UPDATE's statement is planned for each statement's sizes */
	enqueue_run(&w, sql, enrich_plan_slot(&enqueue_plans, w.relid, (int) source, sql, false),
				CURSOR_OPT_CUSTOM_PLAN);
	SPI_finish();
	return PointerGetDatum(NULL);
}

/* relation_arg returns a regclass argument, refusing NULL */
static Oid
relation_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
	return PG_GETARG_OID(argno);
}

/*
 * existing_rows_of reads the rows of one table (a watched table, or a leaf
 * partition of it) whose result column is NULL and that have an
 * identifier into store, as (linkedin_url, person_id, pdl_id, source_key),
 * counting the rows without a person, and those without an identifier, in
 * *estimate
 */
static void
existing_rows_of(const EnrichWatch *w, Oid relid, Tuplestorestate *store, TupleDesc rowdesc,
				 BackfillEstimate *estimate)
{
	Relation	rel = table_open(relid, NoLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	TableScanDesc scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	MemoryContext row_context = AllocSetContextCreate(CurrentMemoryContext, "enrich backfill row",
													  ALLOCSET_SMALL_SIZES);
	MemoryContext caller = CurrentMemoryContext;
	SourceReader source;

	enrich_source_reader_init(&source, w, relid);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		Datum		values[4];
		bool		nulls[4];

		CHECK_FOR_INTERRUPTS();
		if (!slot_attisnull(slot, source.result))
			continue;
		estimate->without_person++;
		MemoryContextSwitchTo(row_context);
		if (enrich_source_reader_read(&source, slot, values, nulls))
		{
			values[3] = CStringGetTextDatum(source.key.data);
			nulls[3] = false;
			tuplestore_putvalues(store, rowdesc, values, nulls);
		}
		else
			estimate->without_identifier++;
		MemoryContextSwitchTo(caller);
		MemoryContextReset(row_context);
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);
	MemoryContextDelete(row_context);
}

/*
 * existing_rows reads the rows of a watched table (locked by the caller)
 * that a backfill queues, in C and by OID, never by name: each leaf
 * partition of a partitioned table is read in turn, a foreign one is
 * skipped with a warning (enrich reads no server through a user mapping).
 * It registers them with SPI (connected by the caller) as EXISTING_ROWS,
 * and counts in *estimate the rows without a person, and without an
 * identifier.
 */
static void
existing_rows(const EnrichWatch *w, BackfillEstimate *estimate)
{
	TupleDesc	rowdesc = CreateTemplateTupleDesc(4);
	Tuplestorestate *store = tuplestore_begin_heap(false, false, work_mem);
	EphemeralNamedRelation enr = palloc0(sizeof(EphemeralNamedRelationData));
	List	   *tables = find_all_inheritors(w->relid, AccessShareLock, NULL);
	ListCell   *lc;
	int			nestlevel = NewGUCNestLevel();

	TupleDescInitEntry(rowdesc, 1, "linkedin_url", TEXTOID, -1, 0);
	TupleDescInitEntry(rowdesc, 2, "person_id", TEXTOID, -1, 0);
	TupleDescInitEntry(rowdesc, 3, "pdl_id", TEXTOID, -1, 0);
	TupleDescInitEntry(rowdesc, 4, "source_key", TEXTOID, -1, 0);

	/* key values written as text as the worker will read them */
	enrich_pin_settings(GUC_ACTION_SAVE);
	foreach(lc, tables)
	{
		Oid			relid = lfirst_oid(lc);
		char		relkind = get_rel_relkind(relid);

		if (relkind == RELKIND_RELATION)
			existing_rows_of(w, relid, store, rowdesc, estimate);
		else if (relkind == RELKIND_FOREIGN_TABLE)
			ereport(WARNING,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("enrich did not backfill the rows of foreign partition %s",
							enrich_relation_name(relid)),
					 errdetail("A backfill reads the rows stored in this database only.")));
	}
	AtEOXact_GUC(false, nestlevel);

	enr->md.name = EXISTING_ROWS;
	enr->md.reliddesc = InvalidOid;
	enr->md.tupdesc = rowdesc;
	enr->md.enrtype = ENR_NAMED_TUPLESTORE;
	enr->md.enrtuples = tuplestore_tuple_count(store);
	enr->reldata = store;
	if (SPI_register_relation(enr) != SPI_OK_REL_REGISTER)
		elog(ERROR, "enrich: could not register the rows of the backfill");
}

/*
 * ESTIMATE is the statement that tells what a backfill of the rows of
 * EXISTING_ROWS would do ($1 the environment, $2 the table, $3 and $4
 * enrich.reuse_within and enrich.reuse_failures_within in ms): the rows it
 * would queue, the malformed ones among them, those an earlier answer
 * would settle, the requests it would send and the rows that share one
 */
#define ESTIMATE_HEAD \
	"WITH c AS (SELECT enrich.request_problem(n.linkedin_url, n.person_id, n.pdl_id, NULL) AS problem, " \
	"    enrich.normalize_identifier(n.linkedin_url, n.person_id, n.pdl_id) AS identifier " \
	"  FROM (SELECT t.linkedin_url, t.person_id, t.pdl_id, t.source_key::pg_catalog.jsonb AS source_key " \
	"        FROM " EXISTING_ROWS " t) n WHERE true"
#define ESTIMATE_TAIL \
	" OFFSET 0), " \
	"r AS (SELECT c.identifier, EXISTS (SELECT 1 FROM enrich.requests a " \
	"    WHERE a.environment" SQL_OP(=) "COALESCE($1, pg_catalog.current_setting('enrich.environment')) " \
	"      AND a.identifier" SQL_OP(=) "c.identifier " \
	"      AND " ANSWER_REUSABLE("a", MILLISECONDS("$3"), MILLISECONDS("$4")) ") AS reusable " \
	"  FROM c WHERE c.problem IS NULL) " \
	"SELECT (SELECT pg_catalog.count(*) FROM c), " \
	"  (SELECT pg_catalog.count(*) FROM c WHERE c.problem IS NOT NULL), " \
	"  (SELECT pg_catalog.count(*) FROM r WHERE r.reusable), " \
	"  (SELECT pg_catalog.count(DISTINCT r.identifier) FROM r WHERE NOT r.reusable), " \
	"  (SELECT pg_catalog.count(*)" SQL_OP(-) "pg_catalog.count(DISTINCT r.identifier) " \
	"   FROM r WHERE NOT r.reusable)"

/*
 * estimate_backfill completes *estimate (its rows without a person and
 * without an identifier counted by existing_rows) from the rows of
 * EXISTING_ROWS, as the bootstrap superuser (earlier answers are read
 * whoever's they are, as reuse reads them).  SPI is connected.
 */
static void
estimate_backfill(const EnrichWatch *w, BackfillEstimate *estimate)
{
	Oid			argtypes[4] = {TEXTOID, OIDOID, FLOAT8OID, FLOAT8OID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	StringInfoData sql;
	int64		queued;

	initStringInfo(&sql);
	appendStringInfoString(&sql, ESTIMATE_HEAD);
	append_not_queued(&sql);
	appendStringInfoString(&sql, ESTIMATE_TAIL);
	enrich_watch_arguments(w, values, nulls);
	values[2] = Float8GetDatum(enrich_reuse_within_s * 1000.0);
	values[3] = Float8GetDatum(enrich_reuse_failures_within_s * 1000.0);
	if (enrich_run_privileged(sql.data, 4, argtypes, values, nulls, true) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "enrich: the estimate of table %s failed", enrich_relation_name(w->relid));
	queued = enrich_column_int64(0, 1);
	estimate->in_queue = estimate->without_person - estimate->without_identifier - queued;
	estimate->malformed = enrich_column_int64(0, 2);
	estimate->reusable = enrich_column_int64(0, 3);
	estimate->to_send = enrich_column_int64(0, 4);
	estimate->duplicates = enrich_column_int64(0, 5);
}

/*
 * backfill_rows locks a watched table the caller owns, checks its watch,
 * reads the rows a backfill would queue (existing_rows) and, unless the
 * catalog is 1.0's (which has no reuse to count), estimates what it would
 * cost (estimate_backfill); it returns whether it did.  SPI is connected.
 */
static bool
backfill_rows(Oid relid, EnrichWatch *w, BackfillEstimate *estimate)
{
	char	   *version;

	char	   *problem;

	(void) lock_table(relid, AccessShareLock);
	if (!watch_read(relid, w))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table %s is not watched", enrich_relation_name(relid)),
				 errhint("Call enrich_watch first.")));
	problem = watch_columns(w, true);
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the watch of table %s no longer matches the table", enrich_relation_name(relid)),
				 errdetail("The %s.", problem),
				 errhint("Call enrich_unwatch and then enrich_watch with the table's columns now.")));
	memset(estimate, 0, sizeof(*estimate));
	existing_rows(w, estimate);
	version = enrich_queue_catalog_version();
	if (version == NULL || strcmp(version, "1.0") == 0)
		return false;
	estimate_backfill(w, estimate);
	return true;
}

/*
 * enrich_estimate(source) tells, before any call, what a backfill of a
 * watched table would do: its rows without a person, those without an
 * identifier, already queued, malformed, settled from earlier answers, the
 * requests it would send (the credits it would spend) and the rows that
 * share one.  Only the table's owner may call it.
 */
Datum
enrich_estimate(PG_FUNCTION_ARGS)
{
	Oid			relid = relation_arg(fcinfo, 0, "source");
	EnrichWatch w;
	BackfillEstimate e;
	TupleDesc	tupdesc;
	Datum		values[7];
	bool		nulls[7] = {false, false, false, false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "enrich: enrich_estimate must return a row");
	SPI_connect();
	(void) backfill_rows(relid, &w, &e);	/* a 1.0 catalog has no enrich_estimate */
	SPI_finish();
	values[0] = Int64GetDatum(e.without_person);
	values[1] = Int64GetDatum(e.without_identifier);
	values[2] = Int64GetDatum(e.in_queue);
	values[3] = Int64GetDatum(e.malformed);
	values[4] = Int64GetDatum(e.reusable);
	values[5] = Int64GetDatum(e.to_send);
	values[6] = Int64GetDatum(e.duplicates);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

/*
 * enrich.enqueue_existing(source) queues the rows of a watched table whose
 * result column is NULL and that have no request queued or in flight (the
 * backfill of enrich_watch); a row already refused for the same malformed
 * identifiers is not queued again.  It returns how many requests it
 * queued.  Only the table's owner may call it.  The table is locked by OID
 * before anything is read, and read in C (existing_rows): no statement
 * names it, so no relation that takes its name meanwhile is ever read.
 */
Datum
enrich_enqueue_existing(PG_FUNCTION_ARGS)
{
	Oid			relid = relation_arg(fcinfo, 0, "source");
	EnrichWatch w;
	BackfillEstimate e;
	uint64		queued;

	SPI_connect();
	if (backfill_rows(relid, &w, &e))
		ereport(NOTICE,
				(errmsg("backfill of %s: " INT64_FORMAT " rows without a person; " INT64_FORMAT
						" without an identifier, " INT64_FORMAT " already queued or refused, " INT64_FORMAT
						" malformed, " INT64_FORMAT " settled from earlier answers without a call, "
						INT64_FORMAT " requests to send (" INT64_FORMAT " rows share one)",
						enrich_relation_name(relid), e.without_person, e.without_identifier,
						e.in_queue, e.malformed, e.reusable, e.to_send, e.duplicates)));
	queued = enqueue_run(&w, enqueue_sql(&w, ENQUEUE_EXISTING, NULL, NULL), NULL, 0);
	SPI_finish();
	PG_RETURN_INT64((int64) queued);
}

/*
 * check_column refuses a column a watch names that the table lacks, or
 * whose type is not one of the types given (a domain over them is not)
 */
static void
check_column(Oid relid, const char *column, const char *role, const Oid *types, int ntypes,
			 const char *type_words)
{
	Oid			type = enrich_column_type(relid, column);

	if (type == InvalidOid)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of table %s does not exist", column, enrich_relation_name(relid))));
	for (int i = 0; i < ntypes; i++)
		if (type == types[i])
			return;
	ereport(ERROR,
			(errcode(ERRCODE_DATATYPE_MISMATCH),
			 errmsg("%s column \"%s\" must be of type %s", role, column, type_words)));
}

/*
 * primary_key_columns returns the key columns of a table's primary key, in
 * order, as a name[] datum, and their types as format_type writes them, as
 * a text[] datum
 */
static void
primary_key_columns(Oid relid, Datum *columns, Datum *types)
{
	Relation	rel = relation_open(relid, NoLock);
	Oid			pk = ENRICH_PRIMARY_KEY_INDEX(rel);
	Relation	index;
	int			n;
	Datum	   *names;
	Datum	   *typenames;

	if (!OidIsValid(pk))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("table %s has no primary key", enrich_relation_name(relid)),
				 errhint("enrich writes each person back to the row with its primary key.")));
	index = index_open(pk, AccessShareLock);
	n = IndexRelationGetNumberOfKeyAttributes(index);
	names = palloc(sizeof(Datum) * n);
	typenames = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(RelationGetDescr(rel),
											   index->rd_index->indkey.values[i] - 1);

		names[i] = PointerGetDatum(palloc0(NAMEDATALEN));
		namestrcpy(DatumGetName(names[i]), NameStr(attr->attname));
		typenames[i] = CStringGetTextDatum(format_type_with_typemod(attr->atttypid, attr->atttypmod));
	}
	index_close(index, NoLock);
	relation_close(rel, NoLock);
	*columns = PointerGetDatum(construct_array(names, n, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR));
	*types = PointerGetDatum(construct_array(typenames, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * enrich.register_watch(source, result_column, linkedin_url_column,
 * person_id_column, pdl_id_column, environment, key_columns, key_types)
 * records a watch in enrich.watches, which the caller cannot write.  It
 * checks everything itself, whoever calls it: the table (locked by OID),
 * that the caller owns it, the columns and their types; the key columns
 * and their types are read from the table's primary key (the last two
 * arguments, which enrich 1.0's enrich_watch passes, are not used).  A
 * second watch of a table is refused.
 */
Datum
enrich_register_watch(PG_FUNCTION_ARGS)
{
	static const Oid result_types[] = {JSONBOID};
	static const Oid identifier_types[] = {TEXTOID, VARCHAROID, BPCHAROID};
	Oid			relid;
	Oid			argtypes[10] = {OIDOID, TEXTOID, NAMEOID, NAMEOID, NAMEOID, NAMEOID,
	TEXTOID, NAMEARRAYOID, TEXTARRAYOID, OIDOID};
	Datum		values[10];
	char		nulls[11] = "          ";
	Form_pg_class form;
	bool		any_identifier = false;
	char	   *source_name;
	int			rc;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("source and result_column must not be null")));
	relid = PG_GETARG_OID(0);
	form = lock_table(relid, ShareRowExclusiveLock);
	for (int i = 2; i <= 4; i++)
		any_identifier |= !PG_ARGISNULL(i);
	if (!any_identifier)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("at least one identifier column is required"),
				 errhint("Name linkedin_url_column, person_id_column or pdl_id_column.")));
	if (!PG_ARGISNULL(5))
		(void) enrich_environment_arg(text_to_cstring(PG_GETARG_TEXT_PP(5)));
	check_column(relid, NameStr(*PG_GETARG_NAME(1)), "result", result_types, 1, "jsonb");
	for (int i = 2; i <= 4; i++)
		if (!PG_ARGISNULL(i))
			check_column(relid, NameStr(*PG_GETARG_NAME(i)), "identifier", identifier_types, 3,
						 "text or varchar");

	source_name = enrich_relation_name(relid);
	values[0] = ObjectIdGetDatum(relid);
	values[1] = CStringGetTextDatum(source_name);
	for (int i = 1; i <= 5; i++)
	{
		if (PG_ARGISNULL(i))
			nulls[i + 1] = 'n';
		else
			values[i + 1] = PG_GETARG_DATUM(i);
	}
	primary_key_columns(relid, &values[7], &values[8]);
	values[9] = ObjectIdGetDatum(form->relowner);

	SPI_connect();
	rc = enrich_run_privileged("INSERT INTO enrich.watches (source, source_name, result_column, "
							   "linkedin_url_column, person_id_column, pdl_id_column, environment, "
							   "key_columns, key_types, owner) "
							   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
							   "ON CONFLICT (source) DO NOTHING",
							   10, argtypes, values, nulls, false);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "enrich: writing enrich.watches failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("table %s is already watched", source_name),
				 errhint("Call enrich_unwatch first.")));
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * enrich.unregister_watch(source) forgets the watch of a table and says
 * whether there was one.  The caller must own the table, or, when the table
 * was dropped, have the privileges of the role that owned it.
 */
Datum
enrich_unregister_watch(PG_FUNCTION_ARGS)
{
	Oid			relid = relation_arg(fcinfo, 0, "source");
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	bool		exists = SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid));
	bool		deleted;
	int			rc;

	if (exists)
		(void) enrich_check_table(relid);

	SPI_connect();
	if (!exists)
	{
		bool		isnull;

		rc = enrich_run_privileged("SELECT owner FROM enrich.watches WHERE source OPERATOR(pg_catalog.=) $1",
							1, argtypes, values, NULL, true);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "enrich: reading enrich.watches failed: %s", SPI_result_code_string(rc));
		if (SPI_processed == 0)
		{
			SPI_finish();
			PG_RETURN_BOOL(false);
		}
		if (!has_privs_of_role(GetUserId(),
							   DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
															  SPI_tuptable->tupdesc, 1, &isnull))))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("must be owner of the dropped table with OID %u to forget its watch", relid)));
	}
	rc = enrich_run_privileged("DELETE FROM enrich.watches WHERE source OPERATOR(pg_catalog.=) $1",
						1, argtypes, values, NULL, false);
	if (rc != SPI_OK_DELETE)
		elog(ERROR, "enrich: writing enrich.watches failed: %s", SPI_result_code_string(rc));
	deleted = (SPI_processed > 0);
	SPI_finish();
	PG_RETURN_BOOL(deleted);
}

/*
 * enrich.forget_dropped() is the sql_drop event trigger: the watches of
 * the tables a statement dropped go with them, whoever dropped them, and
 * so does what enrich.enriched_rows kept of their rows.  When
 * the statement drops enrich itself (DROP EXTENSION, DROP SCHEMA enrich),
 * there is nothing left to forget.
 */
Datum
enrich_forget_dropped(PG_FUNCTION_ARGS)
{
	Oid			namespace;
	int			rc;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("enrich.forget_dropped() was not called by the event trigger manager")));
	namespace = get_namespace_oid("enrich", true);
	if (!OidIsValid(namespace) || !OidIsValid(get_relname_relid("watches", namespace)))
		PG_RETURN_NULL();
	SPI_connect();
	rc = enrich_run_privileged("DELETE FROM enrich.watches w USING pg_catalog.pg_event_trigger_dropped_objects() o "
							   "WHERE o.classid" SQL_OP(=) "'pg_catalog.pg_class'::pg_catalog.regclass "
							   "AND o.objsubid" SQL_OP(=) "0 AND w.source" SQL_OP(=) "o.objid",
							   0, NULL, NULL, NULL, false);
	if (rc != SPI_OK_DELETE)
		elog(ERROR, "enrich: forgetting the watches of dropped tables failed: %s", SPI_result_code_string(rc));
	if (OidIsValid(get_relname_relid("enriched_rows", namespace)))
		rc = enrich_run_privileged("DELETE FROM enrich.enriched_rows e "
								   "USING pg_catalog.pg_event_trigger_dropped_objects() o "
								   "WHERE o.classid" SQL_OP(=) "'pg_catalog.pg_class'::pg_catalog.regclass "
								   "AND o.objsubid" SQL_OP(=) "0 AND e.source" SQL_OP(=) "o.objid",
								   0, NULL, NULL, NULL, false);
	if (rc != SPI_OK_DELETE)
		elog(ERROR, "enrich: forgetting the rows of dropped tables failed: %s", SPI_result_code_string(rc));
	SPI_finish();
	PG_RETURN_NULL();
}

/*
 * enrich_interval_arg returns an interval argument, refusing a negative
 * one with an error that names it; *isnull says it was NULL
 */
Datum
enrich_interval_arg(FunctionCallInfo fcinfo, int argno, const char *name, bool *isnull)
{
	Interval	zero = {0};
	Datum		value;

	*isnull = PG_ARGISNULL(argno);
	if (*isnull)
		return (Datum) 0;
	value = PG_GETARG_DATUM(argno);
	if (DatumGetBool(DirectFunctionCall2(interval_lt, value, IntervalPGetDatum(&zero))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be negative", name),
				 errhint("Give an interval such as '90 days'.")));
	return value;
}

/*
 * enrich_watched_table checks that the caller owns the table of a
 * function's first argument and that it is watched, locking its watch
 * (SPI connected); it returns the table's OID
 */
Oid
enrich_watched_table(FunctionCallInfo fcinfo)
{
	Oid			relid = relation_arg(fcinfo, 0, "source");
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	int			rc;

	(void) enrich_check_table(relid);
	rc = enrich_run_privileged("SELECT 1 FROM enrich.watches WHERE source" SQL_OP(=) "$1 FOR UPDATE",
							   1, argtypes, values, NULL, false);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "enrich: reading enrich.watches failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table %s is not watched", enrich_relation_name(relid)),
				 errhint("Call enrich_watch first.")));
	return relid;
}

/*
 * notify_arg returns the channel argument of enrich_alter_watch as text,
 * refusing one that NOTIFY would refuse: '' stays '' (no notifications)
 */
static Datum
notify_arg(FunctionCallInfo fcinfo, int argno)
{
	char	   *channel = text_to_cstring(PG_GETARG_TEXT_PP(argno));

	if (strlen(channel) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("notify channel \"%s\" is too long", channel),
				 errdetail("A channel name has at most %d bytes.", NAMEDATALEN - 1)));
	return PG_GETARG_DATUM(argno);
}

/*
 * check_mapped_column refuses a column of a columns mapping that the
 * write-back cannot write: one the table lacks, one the watch itself uses
 * (the result, an identifier, a primary key column), a generated one, or
 * one whose type has no array type (the values go to the UPDATE as arrays)
 */
static void
check_mapped_column(const EnrichWatch *w, const char *column)
{
	HeapTuple	tup = SearchSysCacheAttName(w->relid, column);
	Form_pg_attribute attr;
	bool		own = strcmp(column, w->result_column) == 0;

	if (HeapTupleIsValid(tup) && ((Form_pg_attribute) GETSTRUCT(tup))->attnum <= 0)
	{
		/* a system column */
		ReleaseSysCache(tup);
		tup = NULL;
	}
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of columns does not exist in table %s",
						column, enrich_relation_name(w->relid))));
	attr = (Form_pg_attribute) GETSTRUCT(tup);
	for (int i = 0; i < ENRICH_NIDENTIFIERS; i++)
		own |= w->identifier_columns[i] != NULL && strcmp(column, w->identifier_columns[i]) == 0;
	for (int i = 0; i < w->nkeys; i++)
		own |= strcmp(column, w->key_columns[i]) == 0;
	if (own || attr->attgenerated != '\0' || !OidIsValid(get_array_type(attr->atttypid)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("column \"%s\" of columns cannot be written by enrich", column),
				 errdetail(own ? "It is the watch's result, identifier or primary key column." :
						   attr->attgenerated != '\0' ? "It is a generated column." :
						   "Its type has no array type."),
				 errhint("Map person fields to other columns of the table.")));
	ReleaseSysCache(tup);
}

/*
 * check_mapped_path refuses a jsonpath of a columns mapping that does not
 * parse, naming its column
 */
static void
check_mapped_path(const char *column, const char *path)
{
	MemoryContext context = CurrentMemoryContext;

	PG_TRY();
	{
		(void) DirectFunctionCall1(jsonpath_in, CStringGetDatum(path));
	}
	PG_CATCH();
	{
		ErrorData  *error;

		MemoryContextSwitchTo(context);
		error = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid jsonpath for column \"%s\" of columns: %s", column, error->message)));
	}
	PG_END_TRY();
}

/*
 * check_columns checks a columns argument: a JSON object whose each key is
 * a column of the watched table enrich may write and whose each value is a
 * jsonpath as a string ({} maps nothing)
 */
static void
check_columns(Oid relid, Jsonb *columns)
{
	EnrichWatch w;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken token;
	char	   *column = NULL;

	if (!JB_ROOT_IS_OBJECT(columns))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("columns must be a JSON object of column names and jsonpaths"),
				 errhint("For example: {\"job_title\": \"$.jobTitle\"}.")));
	if (!watch_read(relid, &w))
		elog(ERROR, "enrich: the watch of table %u is gone", relid);
	it = JsonbIteratorInit(&columns->root);
	while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (token == WJB_KEY)
		{
			column = pnstrdup(v.val.string.val, v.val.string.len);
			check_mapped_column(&w, column);
		}
		else if (token == WJB_VALUE)
		{
			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("the jsonpath for column \"%s\" of columns must be a string", column)));
			check_mapped_path(column, pnstrdup(v.val.string.val, v.val.string.len));
		}
	}
}

/* column_mode_arg returns enrich_alter_watch's column_mode, checked */
static Datum
column_mode_arg(FunctionCallInfo fcinfo, int argno)
{
	char	   *mode = text_to_cstring(PG_GETARG_TEXT_PP(argno));

	if (strcmp(mode, "fill") != 0 && strcmp(mode, "overwrite") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid column_mode \"%s\"", mode),
				 errhint("The column_mode is 'fill' (only where the column is NULL) or 'overwrite'.")));
	return PG_GETARG_DATUM(argno);
}

/*
 * enrich_alter_watch(source, refresh_after, notify, columns, column_mode)
 * changes the watch of a table the caller owns: an argument NULL leaves its
 * setting as it is; refresh_after 0 stops the refreshes, notify '' the
 * notifications, columns {} the columns written.  A
 * watch that refreshes has its rows recorded in enrich.enriched_rows as
 * they are written; those written before are recorded from enrich.requests
 * when refresh_after is set.
 */
Datum
enrich_alter_watch(PG_FUNCTION_ARGS)
{
	bool		after_null;
	Datum		after = enrich_interval_arg(fcinfo, 1, "refresh_after", &after_null);
	Oid			argtypes[7] = {OIDOID, BOOLOID, INTERVALOID, BOOLOID, TEXTOID, JSONBOID, TEXTOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Oid			relid;
	int			rc;

	SPI_connect();
	relid = enrich_watched_table(fcinfo);
	nulls[5] = nulls[6] = 'n';
	if (!PG_ARGISNULL(3))
	{
		check_columns(relid, PG_GETARG_JSONB_P(3));
		values[5] = PG_GETARG_DATUM(3);
		nulls[5] = ' ';
	}
	if (!PG_ARGISNULL(4))
	{
		values[6] = column_mode_arg(fcinfo, 4);
		nulls[6] = ' ';
	}
	values[0] = ObjectIdGetDatum(relid);
	values[1] = BoolGetDatum(!after_null);
	values[2] = after;
	nulls[2] = after_null ? 'n' : ' ';
	values[3] = BoolGetDatum(!PG_ARGISNULL(2));
	if (PG_ARGISNULL(2))
		nulls[4] = 'n';
	else
		values[4] = notify_arg(fcinfo, 2);
	rc = enrich_run_privileged("UPDATE enrich.watches SET "
							   "refresh_after = CASE WHEN NOT $2 THEN refresh_after "
							   "    WHEN $3" SQL_OP(=) "'0'::pg_catalog.interval THEN NULL ELSE $3 END, "
							   "notify = CASE WHEN NOT $4 THEN notify "
							   "    WHEN $5" SQL_OP(=) "'' THEN NULL ELSE $5 END, "
							   "columns = CASE WHEN $6 IS NULL THEN columns "
							   "    WHEN $6" SQL_OP(=) "'{}'::pg_catalog.jsonb THEN NULL ELSE $6 END, "
							   "column_mode = COALESCE($7, column_mode) "
							   "WHERE source" SQL_OP(=) "$1",
							   7, argtypes, values, nulls, false);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "enrich: writing enrich.watches failed: %s", SPI_result_code_string(rc));
	/* the rows enriched while the watch did not refresh are recorded now */
	if (!after_null)
		(void) enrich_enriched_rows_sync(relid);
	SPI_finish();
	PG_RETURN_VOID();
}
