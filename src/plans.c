/*-------------------------------------------------------------------------
 *
 * plans.c
 *	  SPI helpers the worker's modules share: a statement prepared on first
 *	  use and kept for the life of the process, run with its answer checked;
 *	  the array datums the statements take; the columns of their results;
 *	  a step run in a subtransaction that some errors roll back alone.
 *
 * The worker's session runs under the pinned settings (security.c), so a
 * kept plan, made again after a change of a table it reads, resolves its
 * names the same way every time.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "storage/bufmgr.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"

#include "plans.h"

/*
 * Every place a kept plan of the worker's is kept in, so that all of them
 * can be made again at once (enrich_plans_forget): a plan made while
 * enrich.requests was empty reads it with a sequential scan for good.
 */
static SPIPlanPtr **kept_plans = NULL;
static int	nkept_plans = 0;
static int	kept_plans_cap = 0;

/* remember_kept_plan adds a place a plan is kept in, once */
static void
remember_kept_plan(SPIPlanPtr *plan)
{
	for (int i = 0; i < nkept_plans; i++)
		if (kept_plans[i] == plan)
			return;
	if (nkept_plans == kept_plans_cap)
	{
		kept_plans_cap = Max(64, kept_plans_cap * 2);
		kept_plans = kept_plans == NULL ?
			MemoryContextAlloc(TopMemoryContext, sizeof(SPIPlanPtr *) * kept_plans_cap) :
			repalloc(kept_plans, sizeof(SPIPlanPtr *) * kept_plans_cap);
	}
	kept_plans[nkept_plans++] = plan;
}

/*
 * enrich_plans_forget frees every kept plan, each to be prepared again at
 * its next use, with the statistics of now
 */
void
enrich_plans_forget(void)
{
	for (int i = 0; i < nkept_plans; i++)
	{
		if (*kept_plans[i] != NULL)
			SPI_freeplan(*kept_plans[i]);
		*kept_plans[i] = NULL;
	}
}

/*
 * enrich_plan_prepare prepares sql into *plan on first use and keeps it;
 * *plan must live as long as the process (a static, or a kept slot)
 */
SPIPlanPtr
enrich_plan_prepare(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	if (*plan == NULL)
	{
		MemoryContext caller = CurrentMemoryContext;
		SPIPlanPtr	prepared = SPI_prepare(sql, nargs, argtypes);

		MemoryContextSwitchTo(caller);
		if (prepared == NULL)
			elog(ERROR, "enrich: could not prepare a statement: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(prepared);
		*plan = prepared;
		remember_kept_plan(plan);
	}
	return *plan;
}

/*
 * enrich_plan_run prepares sql into *plan on first use (keeping it), runs
 * it and checks SPI's answer; it returns how many rows it processed.  SPI
 * leaves its own procedure context current after a call; the caller's
 * context is restored so that what the caller allocates next outlives
 * SPI_finish.
 */
uint64
enrich_plan_run(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes,
				Datum *values, const char *nulls, bool read_only)
{
	MemoryContext caller = CurrentMemoryContext;
	int			rc;

	rc = SPI_execute_plan(enrich_plan_prepare(plan, sql, nargs, argtypes), values, nulls,
						  read_only, 0);
	MemoryContextSwitchTo(caller);
	if (rc < 0)
		elog(ERROR, "enrich: a statement failed: %s (%.60s...)", SPI_result_code_string(rc), sql);
	return SPI_processed;
}

/*
 * enrich_plan_run_privileged is enrich_plan_run as the bootstrap superuser
 * under the pinned settings (enrich_run_privileged_plan): for the
 * statements on enrich's tables that run in a user's session as well as in
 * the workers
 */
uint64
enrich_plan_run_privileged(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes,
						   Datum *values, const char *nulls, bool read_only)
{
	MemoryContext caller = CurrentMemoryContext;
	int			rc = enrich_run_privileged_plan(plan, sql, 0, nargs, argtypes, values, nulls, read_only);

	MemoryContextSwitchTo(caller);
	if (rc < 0)
		elog(ERROR, "enrich: a statement failed: %s (%.60s...)", SPI_result_code_string(rc), sql);
	return SPI_processed;
}

/*
 * A kept plan suits the size and the statistics its tables had when it was
 * made; the plans are made again when a table has doubled since, past
 * REPLAN_MIN_BLOCKS.  A table whose storage was replaced (TRUNCATE, VACUUM
 * FULL, CLUSTER) or that shrank to less than half (a purge that vacuum cut
 * off) counts its growth from its new size: its plans, made again at their
 * next use for the table as it then was (nearly empty, maybe not analyzed
 * since), would otherwise stay while it grows back to millions of rows.
 */
#define REPLAN_MIN_BLOCKS 64

/*
 * enrich_relation_outgrew says whether a table has doubled since *size was
 * set (past REPLAN_MIN_BLOCKS), and then sets *size to the table as it is;
 * a table rewritten or shrunk since counts from nothing; *analyzed says
 * whether it was analyzed since its storage was made (TRUNCATE forgets it)
 */
bool
enrich_relation_outgrew(Oid relid, EnrichPlannedSize *size, bool *analyzed)
{
	Relation	rel = try_relation_open(relid, AccessShareLock);
	BlockNumber now;
	Oid			relfilenode;

	if (rel == NULL)
		return false;
	now = RelationGetNumberOfBlocks(rel);
	relfilenode = rel->rd_rel->relfilenode;
	if (analyzed != NULL)
		*analyzed = rel->rd_rel->reltuples >= 0;
	relation_close(rel, AccessShareLock);
	if (relfilenode != size->relfilenode || now < size->blocks / 2)
	{
		size->blocks = 0;
		size->relfilenode = relfilenode;
	}
	if (now <= Max(size->blocks * 2, REPLAN_MIN_BLOCKS))
		return false;
	size->blocks = now;
	return true;
}

/*
 * enrich_plan_slot returns where the kept plan of a statement of a table
 * (relid, and kind, a number of the caller's) is, in the caller's list
 * *slots.  The statement is built on every call from the catalog as it is
 * then: a slot that held another text (another watch, a changed column
 * type, a renamed table), or, with replan_grown, whose table has doubled
 * since, is emptied, its plan freed, to be prepared again.
 */
SPIPlanPtr *
enrich_plan_slot(EnrichPlanSlot **slots, Oid relid, int kind, const char *sql, bool replan_grown)
{
	EnrichPlanSlot *slot;

	for (slot = *slots; slot != NULL; slot = slot->next)
		if (slot->relid == relid && slot->kind == kind)
			break;
	if (slot == NULL)
	{
		slot = MemoryContextAllocZero(TopMemoryContext, sizeof(EnrichPlanSlot));
		slot->relid = relid;
		slot->kind = kind;
		slot->next = *slots;
		*slots = slot;
	}
	if (slot->sql == NULL || strcmp(slot->sql, sql) != 0 ||
		(replan_grown && enrich_relation_outgrew(relid, &slot->size, NULL)))
	{
		if (slot->plan != NULL)
			SPI_freeplan(slot->plan);
		slot->plan = NULL;
		if (slot->sql != NULL)
			pfree(slot->sql);
		slot->sql = MemoryContextStrdup(TopMemoryContext, sql);
	}
	return &slot->plan;
}

/* enrich_int8_array makes a bigint[] datum */
Datum
enrich_int8_array(const int64 *values, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(values[i]);
	return PointerGetDatum(construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * enrich_varlena_array makes a one-dimensional array datum of a varlena
 * type (text, jsonb) from pointers to its values; NULL pointers become NULL
 * elements
 */
Datum
enrich_varlena_array(void **values, int n, Oid element_type)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(n, 1));
	int			dims[1] = {n};
	int			lbs[1] = {1};

	for (int i = 0; i < n; i++)
	{
		nulls[i] = (values[i] == NULL);
		d[i] = PointerGetDatum(values[i]);
	}
	return PointerGetDatum(construct_md_array(d, nulls, 1, dims, lbs, element_type, -1, false,
											  TYPALIGN_INT));
}

/* enrich_text_array makes a text[] datum; NULL strings become NULL elements */
Datum
enrich_text_array(char **values, int n)
{
	void	  **texts = palloc(sizeof(void *) * Max(n, 1));

	for (int i = 0; i < n; i++)
		texts[i] = values[i] != NULL ? cstring_to_text(values[i]) : NULL;
	return enrich_varlena_array(texts, n, TEXTOID);
}

/* enrich_column_text returns a column of the current SPI result as a string or NULL */
char *
enrich_column_text(uint64 row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

/* enrich_column_int64 returns an integer column of the current SPI result (NULL: 0) */
int64
enrich_column_int64(uint64 row, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &isnull);

	if (isnull)
		return 0;
	switch (SPI_gettypeid(SPI_tuptable->tupdesc, col))
	{
		case INT8OID:
			return DatumGetInt64(d);
		case INT4OID:
			return DatumGetInt32(d);
		case FLOAT8OID:
			return (int64) DatumGetFloat8(d);
		default:
			return pg_strtoint64(enrich_column_text(row, col));
	}
}

/*
 * enrich_in_subtransaction runs step(arg) in a subtransaction.  An error
 * whose SQLSTATE caught() accepts rolls the subtransaction back, and it
 * returns false; any other error goes on up, and so does a cancel (the
 * step under way is cancelled, not its value).  What step allocates is in
 * the caller's memory context.
 */
bool
enrich_in_subtransaction(void (*step) (void *arg), void *arg, bool (*caught) (int sqlerrcode))
{
	MemoryContext context = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool done = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(context);
	PG_TRY();
	{
		step(arg);
		ReleaseCurrentSubTransaction();
		done = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED || !caught(edata->sqlerrcode))
			PG_RE_THROW();
		FlushErrorState();
		FreeErrorData(edata);
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(context);
	CurrentResourceOwner = owner;
	return done;
}
