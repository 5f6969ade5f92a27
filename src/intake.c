/*-------------------------------------------------------------------------
 *
 * intake.c
 *	  enrich.intake, in one place: the new rows of an INSERT or COPY on a
 *	  watched table written into it (a row per 1,000 contacts), the reading
 *	  of watched rows in C that it and the backfill share, and its rows
 *	  turned into requests (claimed, or queued by enrich.flush_intake).
 *
 * The statements run as the bootstrap superuser (security.c) in the
 * trigger of a user's statement, and in the worker's pinned session; they
 * read no user table by name and evaluate nothing a user defined: key
 * values go through their type's output function.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/tuplestore.h"

#include "guc.h"
#include "request.h"
#include "intake.h"
#include "plans.h"
#include "security.h"

PG_FUNCTION_INFO_V1(enrich_flush_intake);

/*
 * enrich_column_type returns the type of a live column of a table, or InvalidOid
 * when it has none of that name
 */
Oid
enrich_column_type(Oid relid, const char *column)
{
	AttrNumber	attnum = get_attnum(relid, column);

	if (attnum == InvalidAttrNumber || attnum < 0)
		return InvalidOid;
	return get_atttype(relid, attnum);
}

/*
 * enrich_watch_arguments sets the first two arguments of the statements that queue
 * a watched table's rows: $1 the watch's environment (NULL: the writer's
 * enrich.environment) and $2 the table
 */
void
enrich_watch_arguments(const EnrichWatch *w, Datum *values, char *nulls)
{
	if (w->environment != NULL)
		values[0] = CStringGetTextDatum(w->environment);
	else
		nulls[0] = 'n';
	values[1] = ObjectIdGetDatum(w->relid);
}

/* the kept plans of the statements that queue the rows of watched tables */
/* contacts per row of enrich.intake: the most one bulk enrich carries */
#define INTAKE_CHUNK 1000

/* enrich_source_reader_init prepares to read the rows of relid, w's table or a partition */
void
enrich_source_reader_init(SourceReader *r, const EnrichWatch *w, Oid relid)
{
	memset(r, 0, sizeof(*r));
	for (int i = 0; i < ENRICH_NIDENTIFIERS; i++)
	{
		r->identifiers[i].attnum = InvalidAttrNumber;
		if (w->identifier_columns[i] == NULL)
			continue;
		r->identifiers[i].attnum = get_attnum(relid, w->identifier_columns[i]);
		r->identifiers[i].trim = enrich_column_type(relid, w->identifier_columns[i]) == BPCHAROID;
	}
	r->nkeys = w->nkeys;
	r->keys = palloc0(sizeof(IntakeColumn) * w->nkeys);
	for (int i = 0; i < w->nkeys; i++)
	{
		Oid			output;
		bool		varlena;

		r->keys[i].attnum = get_attnum(relid, w->key_columns[i]);
		getTypeOutputInfo(w->key_types[i], &output, &varlena);
		fmgr_info(output, &r->keys[i].output);
	}
	r->result = get_attnum(relid, w->result_column);
	initStringInfo(&r->key);
}

/*
 * enrich_source_reader_read reads a row's identifiers into ids (NULL ones
 * flagged), as text, and its key into r->key; it returns false for a row
 * without any identifier
 */
bool
enrich_source_reader_read(SourceReader *r, TupleTableSlot *slot, Datum *ids, bool *id_null)
{
	bool		any = false;

	for (int i = 0; i < ENRICH_NIDENTIFIERS; i++)
	{
		id_null[i] = true;
		ids[i] = (Datum) 0;
		if (r->identifiers[i].attnum == InvalidAttrNumber)
			continue;
		ids[i] = slot_getattr(slot, r->identifiers[i].attnum, &id_null[i]);
		if (!id_null[i] && r->identifiers[i].trim)
			ids[i] = DirectFunctionCall1(rtrim1, ids[i]);
		any |= !id_null[i];
	}
	if (!any)
		return false;
	resetStringInfo(&r->key);
	appendStringInfoChar(&r->key, '[');
	for (int i = 0; i < r->nkeys; i++)
	{
		bool		isnull;
		Datum		value = slot_getattr(slot, r->keys[i].attnum, &isnull);

		if (i > 0)
			appendStringInfoString(&r->key, ", ");
		if (isnull)
			appendStringInfoString(&r->key, "null");
		else
			escape_json(&r->key, OutputFunctionCall(&r->keys[i].output, value));
	}
	appendStringInfoChar(&r->key, ']');
	return true;
}

/* intake_insert writes one row of enrich.intake from the arrays built */
static void
intake_insert(const EnrichWatch *w, ArrayBuildState **arrays)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[6] = {TEXTOID, OIDOID, TEXTARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	int			rc;

	enrich_watch_arguments(w, values, nulls);
	for (int i = 0; i < 4; i++)
		values[2 + i] = makeArrayResult(arrays[i], CurrentMemoryContext);
	rc = enrich_run_privileged_plan(&plan,
					   "INSERT INTO enrich.intake (environment, source_relid, linkedin_url, person_id, "
					   "pdl_id, source_key) "
					   "VALUES (COALESCE($1, pg_catalog.current_setting('enrich.environment')), "
					   "$2, $3, $4, $5, $6)",
					   0, 6, argtypes, values, nulls, false);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "enrich: queueing the rows of table %s failed: %s",
			 get_rel_name(w->relid), SPI_result_code_string(rc));
}

/*
 * enrich_intake_from_inserted queues the new rows of an INSERT or COPY on a
 * watched table as rows of enrich.intake, INTAKE_CHUNK contacts each, read
 * straight from the transition table: the cost in the user's statement is
 * one pass over its rows and one small insert per chunk.  A row without
 * any identifier is skipped; identifiers are validated when the worker
 * turns the chunk into requests.  Key values go through their type's
 * output function, as append_source_rows writes them.
 */
void
enrich_intake_from_inserted(TriggerData *trigdata, const EnrichWatch *w)
{
	Tuplestorestate *store = trigdata->tg_newtable;
	TupleDesc	tupdesc = RelationGetDescr(trigdata->tg_relation);
	TupleTableSlot *slot = MakeSingleTupleTableSlot(tupdesc, &TTSOpsMinimalTuple);
	SourceReader source;
	MemoryContext chunk_context = AllocSetContextCreate(CurrentMemoryContext,
														"enrich intake chunk",
														ALLOCSET_DEFAULT_SIZES);
	MemoryContext caller = CurrentMemoryContext;
	ArrayBuildState *arrays[4] = {NULL, NULL, NULL, NULL};
	int			in_chunk = 0;
	int			reader;
	int			nestlevel;

	/* the columns of the table the statement wrote: w's, or a partition's */
	enrich_source_reader_init(&source, w, RelationGetRelid(trigdata->tg_relation));

	/* key values written as text as the worker will read them */
	nestlevel = NewGUCNestLevel();
	enrich_pin_settings(GUC_ACTION_SAVE);

	/* a read pointer of our own, so that other triggers' reads are untouched */
	reader = tuplestore_alloc_read_pointer(store, EXEC_FLAG_REWIND);
	tuplestore_select_read_pointer(store, reader);
	tuplestore_rescan(store);
	while (tuplestore_gettupleslot(store, true, false, slot))
	{
		Datum		ids[ENRICH_NIDENTIFIERS];
		bool		id_null[ENRICH_NIDENTIFIERS];

		MemoryContextSwitchTo(chunk_context);
		if (!enrich_source_reader_read(&source, slot, ids, id_null))
		{
			MemoryContextSwitchTo(caller);
			continue;
		}
		for (int i = 0; i < ENRICH_NIDENTIFIERS; i++)
			arrays[i] = accumArrayResult(arrays[i], ids[i], id_null[i], TEXTOID, chunk_context);
		arrays[3] = accumArrayResult(arrays[3], CStringGetTextDatum(source.key.data), false,
									 TEXTOID, chunk_context);
		MemoryContextSwitchTo(caller);

		if (++in_chunk == INTAKE_CHUNK)
		{
			intake_insert(w, arrays);
			MemoryContextReset(chunk_context);
			memset(arrays, 0, sizeof(arrays));
			in_chunk = 0;
		}
	}
	if (in_chunk > 0)
		intake_insert(w, arrays);
	tuplestore_select_read_pointer(store, 0);
	AtEOXact_GUC(false, nestlevel);
	ExecDropSingleTupleTableSlot(slot);
	MemoryContextDelete(chunk_context);
}

/*
 * enrich_intake_expand turns rows of enrich.intake into requests, deleting them:
 * into claimed requests ('submitting', attempt 1, of the given submission)
 * or into queued ones (submission 0).  A contact whose identifiers
 * enrich.request_problem refuses becomes a failed request with the reason,
 * as the trigger of enrich.requests would refuse it.  Each request keeps
 * the time its contact was queued.  The rows made are SPI's result, in the
 * order of the intake: the columns outgoing_from_row reads, then state.
 * (The intake rows are sorted and each one's contacts unnested in place:
 * sorting every contact took a sixth of the statement.)
 */
uint64
enrich_intake_expand(Datum intake_ids, int64 submission)
{
	Oid			types[3] = {INT8ARRAYOID, TEXTOID, INT8OID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	static SPIPlanPtr plan = NULL;
	volatile uint64 n = 0;

	values[0] = intake_ids;
	values[1] = CStringGetTextDatum(submission != 0 ? "submitting" : "queued");
	values[2] = Int64GetDatum(submission);
	if (submission == 0)
		nulls[2] = 'n';
	enrich_allow_source_rows(true);
	PG_TRY();
	{
		n = enrich_plan_run(&plan,
					  "WITH i AS (DELETE FROM enrich.intake WHERE id" SQL_OP(=) "ANY ($1) RETURNING *) "
					  "INSERT INTO enrich.requests (environment, linkedin_url, person_id, pdl_id, "
					  "    source_relid, source_key, state, attempts, submission, claimed_by, error, completed_at, "
					  "    created_at) "
					  "SELECT c.environment, c.linkedin_url, c.person_id, c.pdl_id, c.source_relid, "
					  "    c.source_key::pg_catalog.jsonb, "
					  "    CASE WHEN c.problem IS NULL THEN $2 ELSE 'failed' END, "
					  "    CASE WHEN c.problem IS NULL AND $3 IS NOT NULL THEN 1 ELSE 0 END, "
					  "    CASE WHEN c.problem IS NULL THEN $3 END, "
					  "    CASE WHEN c.problem IS NULL AND $3 IS NOT NULL THEN pg_catalog.pg_backend_pid() END, "
					  "    CASE WHEN c.problem IS NOT NULL THEN pg_catalog.jsonb_build_object("
					  "        'code', 'invalid_identifier', 'message', c.problem) END, "
					  "    CASE WHEN c.problem IS NOT NULL THEN pg_catalog.now() END, "
					  "    c.created_at "
					  "FROM (SELECT i.id AS intake_id, i.environment, i.source_relid, i.created_at, u.*, "
					  "          enrich.request_problem(u.linkedin_url, u.person_id, u.pdl_id, NULL) AS problem "
					  "      FROM (SELECT * FROM i ORDER BY i.id OFFSET 0) AS i "
					  "      CROSS JOIN LATERAL ROWS FROM (pg_catalog.unnest(i.linkedin_url), "
					  "          pg_catalog.unnest(i.person_id), pg_catalog.unnest(i.pdl_id), "
					  "          pg_catalog.unnest(i.source_key)) "
					  "          AS u(linkedin_url, person_id, pdl_id, source_key) "
					  "      OFFSET 0) c "
					  "RETURNING id, linkedin_url, person_id, pdl_id, metadata::pg_catalog.text, "
					  "    " IDENTIFIER_CHECK("requests") ", state",
					  3, types, values, nulls, false);
	}
	PG_FINALLY();
	{
		enrich_allow_source_rows(false);
	}
	PG_END_TRY();
	return n;
}

/*
 * enrich_intake_flush turns every row of enrich.intake of an
 * environment (NULL: of both) into queued requests; returns how many
 */
uint64
enrich_intake_flush(const char *environment)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char		nulls[1] = {' '};
	static SPIPlanPtr plan = NULL;
	uint64		n;
	int64	   *ids;

	if (environment != NULL)
		values[0] = CStringGetTextDatum(environment);
	else
		nulls[0] = 'n';
	n = enrich_plan_run(&plan,
				  "SELECT id FROM enrich.intake WHERE $1 IS NULL OR environment" SQL_OP(=) "$1 "
				  "ORDER BY id FOR UPDATE",
				  1, types, values, nulls, false);
	if (n == 0)
		return 0;
	ids = palloc(sizeof(int64) * n);
	for (uint64 i = 0; i < n; i++)
		ids[i] = enrich_column_int64(i, 1);
	return enrich_intake_expand(enrich_int8_array(ids, (int) n), 0);
}

/*
 * enrich.flush_intake(environment) turns what the INSERT and COPY
 * statements on watched tables queued in enrich.intake (of one environment,
 * or of both when NULL) into queued requests now, rather than when the
 * worker claims it, and returns how many requests it made.  Its statements
 * are enrich's own, on enrich's tables: they run as the bootstrap
 * superuser, so EXECUTE on it is all a role needs.
 */
Datum
enrich_flush_intake(PG_FUNCTION_ARGS)
{
	char	   *volatile environment = NULL;
	EnrichUserSwitch sw;
	volatile uint64 made = 0;

	if (!PG_ARGISNULL(0))
	{
		environment = text_to_cstring(PG_GETARG_TEXT_PP(0));
		(void) enrich_environment_arg(environment);
	}
	SPI_connect();
	enrich_switch_user(&sw, BOOTSTRAP_SUPERUSERID);
	PG_TRY();
	{
		made = enrich_intake_flush(environment);
	}
	PG_CATCH();
	{
		SetUserIdAndSecContext(sw.saved_userid, sw.saved_sec_context);
		PG_RE_THROW();
	}
	PG_END_TRY();
	enrich_restore_user(&sw);
	SPI_finish();
	PG_RETURN_INT64((int64) made);
}

