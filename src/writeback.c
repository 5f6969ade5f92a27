/*-------------------------------------------------------------------------
 *
 * writeback.c
 *	  The statements on watched tables, each run as the table's owner:
 *	  writing persons into the result column (the persons a page settled, a
 *	  table at a time, by primary key; rows another transaction keeps locked
 *	  are left for a later round, enrich.requests.write_back_due, while
 *	  everything else goes on; each row written is recorded in
 *	  enrich.enriched_rows), and reading the identifiers of rows by key for
 *	  a refresh (refresh.c).
 *
 * The statements are built from the catalog as it is when they run, never
 * from text a user gave: the table's name and its owner now (the table
 * locked first, by OID), its primary key's columns, their types and the
 * equality operators of the key's operator families.  Each runs as the
 * table's current owner in a subtransaction, a restricted security context
 * and a GUC nest level of its own (security.c), with lock waits and its
 * time bounded; before it runs, its analyzed form is checked to name no
 * relation but the table, so a name that came to mean another relation
 * meanwhile (a schema renamed and replaced) is refused.
 *
 * A page's write first waits WRITE_BACK_LOCK_WAIT for row locks; when that
 * is not enough, it locks the rows it can (SKIP LOCKED), writes those, and
 * leaves the others due again (with a back-off up to a minute).  A row
 * deleted meanwhile matches nothing.  Any other error (a constraint or
 * trigger of the table, enrich.write_back_timeout) is logged once per
 * table and page, and the persons stay in enrich.requests.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parsetree.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timeout.h"

#include "columns.h"
#include "compat.h"
#include "guc.h"
#include "plans.h"
#include "security.h"
#include "writeback.h"

/* how long the first write of a page waits for a row another transaction locked */
#define WRITE_BACK_LOCK_WAIT "100ms"

/* the persons to write into one watched table, one per row (its primary key) */
typedef struct WriteBackGroup
{
	Oid			relid;
	int			n;
	int			cap;
	int64	   *ids;			/* the request of each person */
	char	  **keys;			/* source_key: the primary key as a JSON array of text */
	Datum	   *persons;		/* jsonb */
	Datum	   *answered;		/* timestamptz: when the API gave it */
} WriteBackGroup;

/* a watched table as the write-back statements need it, read from the catalog now */
typedef struct WriteBackTarget
{
	Oid			relid;
	Oid			owner;
	char	   *name;			/* schema-qualified, quoted */
	char	   *result_column;	/* quoted */
	char	   *identifiers[3];	/* t's identifier columns as text, or NULL */
	char	   *notify;			/* the watch's channel, or NULL */
	bool		track;			/* record the rows written in enrich.enriched_rows */
	EnrichColumnMap columns;	/* person fields written into other columns */
	char	   *match;			/* t's primary key = the key u.k names */
} WriteBackTarget;

/* the statements of one table */
typedef enum WriteBackStatement
{
	WB_UPDATE,					/* writes persons by key */
	WB_LOCK,					/* locks the rows of keys it can */
	WB_EXISTING,				/* keys that name a row */
	WB_IDENTIFIERS,				/* the identifiers of the rows of keys */
	WB_NSTATEMENTS
} WriteBackStatement;

/* the kept plans of the statements of the watched tables */
static EnrichPlanSlot *write_back_plans = NULL;

/* what a page's write did with each key of a group */
typedef enum KeyOutcome
{
	KEY_WRITTEN,				/* written, or the row is gone */
	KEY_LOCKED					/* another transaction holds the row */
} KeyOutcome;

/* the arguments of a step run as a table's owner, and what it found */
typedef struct WriteBackStep
{
	WriteBackGroup *group;
	KeyOutcome *outcomes;
	bool	   *written;		/* the keys whose row got its person */
	int64		failures;		/* mapped values that did not cast */
} WriteBackStep;

/*
 * group_add remembers a done request of a watched table; of two requests of
 * one row, the later one's person is written
 */
static void
group_add(List **groups, Oid relid, int64 id, char *key, Datum person, Datum answered)
{
	ListCell   *lc;
	WriteBackGroup *g = NULL;

	foreach(lc, *groups)
	{
		if (((WriteBackGroup *) lfirst(lc))->relid == relid)
		{
			g = lfirst(lc);
			break;
		}
	}
	if (g == NULL)
	{
		g = palloc0(sizeof(WriteBackGroup));
		g->relid = relid;
		g->cap = 16;
		g->ids = palloc(sizeof(int64) * g->cap);
		g->keys = palloc(sizeof(char *) * g->cap);
		g->persons = palloc(sizeof(Datum) * g->cap);
		g->answered = palloc(sizeof(Datum) * g->cap);
		*groups = lappend(*groups, g);
	}
	for (int i = 0; i < g->n; i++)
	{
		if (strcmp(g->keys[i], key) != 0)
			continue;
		if (id > g->ids[i])
		{
			g->ids[i] = id;
			g->persons[i] = person;
			g->answered[i] = answered;
		}
		return;
	}
	if (g->n == g->cap)
	{
		g->cap *= 2;
		g->ids = repalloc(g->ids, sizeof(int64) * g->cap);
		g->keys = repalloc(g->keys, sizeof(char *) * g->cap);
		g->persons = repalloc(g->persons, sizeof(Datum) * g->cap);
		g->answered = repalloc(g->answered, sizeof(Datum) * g->cap);
	}
	g->ids[g->n] = id;
	g->keys[g->n] = key;
	g->persons[g->n] = person;
	g->answered[g->n] = answered;
	g->n++;
}

/*
 * enrich_write_back_collect adds the done requests of watched rows among
 * the n rows of the last SPI result (id, state, source_relid, source_key
 * as text, person, when the API gave the person) to the groups to write
 * back
 */
void
enrich_write_back_collect(List **groups, uint64 n)
{
	for (uint64 i = 0; i < n; i++)
	{
		char	   *state = enrich_column_text(i, 2);
		char	   *key = enrich_column_text(i, 4);
		bool		relid_null;
		bool		isnull;
		Datum		relid;
		Datum		person;
		Datum		answered;

		/* an oid (1.0) or a regclass (1.1): the same Datum either way */
		relid = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3, &relid_null);
		if (relid_null || key == NULL || state == NULL || strcmp(state, "done") != 0)
			continue;
		person = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 5, &isnull);
		if (isnull)
			continue;
		answered = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 6, &isnull);
		if (isnull)
			answered = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
		/* copied out of SPI's result, which the next statement replaces */
		group_add(groups, DatumGetObjectId(relid), enrich_column_int64(i, 1), key,
				  datumCopy(person, false, -1), answered);
	}
}

/*
 * read_watch reads what a table's watch recorded into t: the identifier
 * columns (as text expressions of t), the notify channel and whether it
 * refreshes (1.1's catalog); and into the caller's variables its result
 * column, key columns, and columns mapping (JSON text) and column_mode.
 * It returns false when the table is not watched.
 */
static bool
read_watch(Oid relid, WriteBackTarget *t, char **result_column, char ***key_columns, int *nkeys,
		   char **columns, char **column_mode)
{
	static SPIPlanPtr plans[2] = {NULL, NULL};
	bool		kept = enrich_enriched_rows_kept();
	Datum		value = ObjectIdGetDatum(relid);
	Datum		keys;
	Datum	   *elems;
	bool		isnull;

	/* as the bootstrap superuser: enrich_refresh's caller may not read it */
	if (enrich_plan_run_privileged(&plans[kept ? 1 : 0], kept ?
								  "SELECT result_column::pg_catalog.text, key_columns, "
								  "linkedin_url_column::pg_catalog.text, person_id_column::pg_catalog.text, "
								  "pdl_id_column::pg_catalog.text, notify, refresh_after IS NOT NULL, "
								  "columns::pg_catalog.text, column_mode FROM enrich.watches "
								  "WHERE source" SQL_OP(=) "$1" :
								  "SELECT result_column::pg_catalog.text, key_columns, "
								  "linkedin_url_column::pg_catalog.text, person_id_column::pg_catalog.text, "
								  "pdl_id_column::pg_catalog.text, NULL::pg_catalog.text, false, "
								  "NULL::pg_catalog.text, 'fill' FROM enrich.watches "
								  "WHERE source" SQL_OP(=) "$1",
								  1, (Oid[]) {OIDOID}, &value, NULL, true) != 1)
		return false;
	*result_column = enrich_column_text(0, 1);
	for (int i = 0; i < 3; i++)
	{
		char	   *column = enrich_column_text(0, 3 + i);

		t->identifiers[i] = column == NULL ? NULL :
			psprintf("t.%s::pg_catalog.text", quote_identifier(column));
	}
	t->notify = enrich_column_text(0, 6);
	t->track = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 7, &isnull));
	*columns = enrich_column_text(0, 8);
	*column_mode = enrich_column_text(0, 9);
	keys = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	if (isnull)
		return false;
	deconstruct_array(DatumGetArrayTypeP(keys), NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR,
					  &elems, NULL, nkeys);
	*key_columns = palloc(sizeof(char *) * Max(*nkeys, 1));
	for (int i = 0; i < *nkeys; i++)
		(*key_columns)[i] = pstrdup(NameStr(*DatumGetName(elems[i])));
	return true;
}

/*
 * operator_sql returns OPERATOR(schema.name) for an operator, named from
 * its OID
 */
static char *
operator_sql(Oid opno)
{
	HeapTuple	tup = SearchSysCache1(OPEROID, ObjectIdGetDatum(opno));
	Form_pg_operator op;
	char	   *sql;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "enrich: cache lookup failed for operator %u", opno);
	op = (Form_pg_operator) GETSTRUCT(tup);
	sql = psprintf("OPERATOR(%s.%s)", quote_identifier(get_namespace_name(op->oprnamespace)),
				   NameStr(op->oprname));
	ReleaseSysCache(tup);
	return sql;
}

/*
 * key_match builds the condition that a row t of a table has the primary
 * key the JSON array of text u.k names: each key column compared, with the
 * equality operator of its operator family in the primary key index, to
 * the text cast to the column's type.  It returns NULL, with *problem set,
 * when the primary key is not the one the watch recorded.
 */
static char *
key_match(Relation rel, char **key_columns, int nkeys, char **problem)
{
	Oid			pk = ENRICH_PRIMARY_KEY_INDEX(rel);
	Relation	index;
	StringInfoData match;

	if (!OidIsValid(pk))
	{
		*problem = pstrdup("the table has no primary key");
		return NULL;
	}
	index = index_open(pk, AccessShareLock);
	if (IndexRelationGetNumberOfKeyAttributes(index) != nkeys)
	{
		index_close(index, NoLock);
		*problem = pstrdup("its primary key is not the one enrich_watch saw");
		return NULL;
	}
	initStringInfo(&match);
	for (int i = 0; i < nkeys; i++)
	{
		AttrNumber	attnum = index->rd_index->indkey.values[i];
		char	   *column = get_attname(RelationGetRelid(rel), attnum, false);
		Oid			type = get_atttype(RelationGetRelid(rel), attnum);
		Oid			eq = get_opfamily_member(index->rd_opfamily[i], index->rd_opcintype[i],
											 index->rd_opcintype[i], BTEqualStrategyNumber);

		if (strcmp(column, key_columns[i]) != 0 || !OidIsValid(eq))
		{
			index_close(index, NoLock);
			*problem = pstrdup("its primary key is not the one enrich_watch saw");
			return NULL;
		}
		appendStringInfo(&match, "%st.%s %s (u.k::pg_catalog.jsonb" SQL_OP(->>) "%d)::%s",
						 i > 0 ? " AND " : "", quote_identifier(column), operator_sql(eq), i,
						 format_type_extended(type, -1, FORMAT_TYPE_FORCE_QUALIFY));
	}
	index_close(index, NoLock);
	return match.data;
}

/*
 * write_back_target locks a watched table (without waiting) and describes
 * it as the catalog has it now.  It returns false when there is nothing to
 * write (the table is no longer watched, or was dropped), or when it
 * cannot be written now: *locked_out when another transaction holds a lock
 * that conflicts (the rows are left for later), else *problem says why not.
 */
static bool
write_back_target(Oid relid, WriteBackTarget *t, bool *locked_out, char **problem)
{
	char	   *result_column;
	char	  **key_columns;
	int			nkeys;
	char	   *columns;
	char	   *column_mode;
	HeapTuple	classtup;
	Form_pg_class form;
	Relation	rel;

	*locked_out = false;
	*problem = NULL;
	if (!read_watch(relid, t, &result_column, &key_columns, &nkeys, &columns, &column_mode))
		return false;
	if (!ConditionalLockRelationOid(relid, RowExclusiveLock))
	{
		*locked_out = true;
		return false;
	}
	classtup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(classtup))
		return false;			/* dropped */
	form = (Form_pg_class) GETSTRUCT(classtup);
	t->relid = relid;
	t->owner = form->relowner;
	t->name = quote_qualified_identifier(get_namespace_name(form->relnamespace),
										 NameStr(form->relname));
	t->result_column = pstrdup(quote_identifier(result_column));
	if (form->relkind != RELKIND_RELATION && form->relkind != RELKIND_PARTITIONED_TABLE)
		*problem = pstrdup("it is no longer a table");
	ReleaseSysCache(classtup);
	if (*problem != NULL)
		return false;
	if (get_atttype(relid, get_attnum(relid, result_column)) != JSONBOID)
	{
		*problem = psprintf("its column \"%s\" is gone or not of type jsonb", result_column);
		return false;
	}
	rel = relation_open(relid, NoLock);
	t->match = key_match(rel, key_columns, nkeys, problem);
	relation_close(rel, NoLock);
	enrich_columns_read(relid, columns, column_mode, &t->columns);
	return t->match != NULL;
}

/*
 * update_sql returns the text of a table's WB_UPDATE: the person into the
 * result column, and each mapped column's value ($3, $4, ...: arrays of the
 * columns' types) where it is NULL (fill) or wherever there is one
 * (overwrite)
 */
static char *
update_sql(const WriteBackTarget *t)
{
	const EnrichColumnMap *m = &t->columns;
	StringInfoData sets;
	StringInfoData arrays;
	StringInfoData names;

	initStringInfo(&sets);
	initStringInfo(&arrays);
	initStringInfo(&names);
	for (int c = 0; c < m->n; c++)
	{
		if (m->overwrite)
			appendStringInfo(&sets, ", %s = COALESCE(u.c%d, t.%s)", m->names[c], c, m->names[c]);
		else
			appendStringInfo(&sets, ", %s = COALESCE(t.%s, u.c%d)", m->names[c], m->names[c], c);
		appendStringInfo(&arrays, ", pg_catalog.unnest($%d)", c + 3);
		appendStringInfo(&names, ", c%d", c);
	}
	return psprintf("UPDATE %s t SET %s = u.person%s "
					"FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), "
					"pg_catalog.unnest($2::pg_catalog.jsonb[])%s) WITH ORDINALITY AS u(k, person%s, i) "
					"WHERE %s RETURNING u.i",
					t->name, t->result_column, sets.data, arrays.data, names.data, t->match);
}

/* write_back_sql returns the text of a statement of a table */
static char *
write_back_sql(const WriteBackTarget *t, WriteBackStatement which)
{
	switch (which)
	{
		case WB_UPDATE:
			return update_sql(t);
		case WB_LOCK:
			return psprintf("SELECT u.k FROM pg_catalog.unnest($1::pg_catalog.text[]) AS u(k) "
							"JOIN %s t ON %s FOR UPDATE OF t SKIP LOCKED",
							t->name, t->match);
		case WB_EXISTING:
			return psprintf("SELECT DISTINCT u.k FROM pg_catalog.unnest($1::pg_catalog.text[]) AS u(k) "
							"JOIN %s t ON %s",
							t->name, t->match);
		case WB_IDENTIFIERS:
			return psprintf("SELECT u.i, %s, %s, %s "
							"FROM pg_catalog.unnest($1::pg_catalog.text[]) WITH ORDINALITY AS u(k, i) "
							"JOIN %s t ON %s",
							t->identifiers[0] ? t->identifiers[0] : "NULL::pg_catalog.text",
							t->identifiers[1] ? t->identifiers[1] : "NULL::pg_catalog.text",
							t->identifiers[2] ? t->identifiers[2] : "NULL::pg_catalog.text",
							t->name, t->match);
		default:
			elog(ERROR, "enrich: unknown write-back statement %d", (int) which);
	}
	return NULL;				/* keep the compiler quiet */
}

/*
 * plan_names_only says whether every query a kept plan runs, as analyzed
 * and rewritten now, reads or writes no relation but relid: a view or
 * another table that a name came to mean is refused before anything of it
 * runs.  Its locks are then held, so the plan is not analyzed again before
 * it runs.
 */
static bool
plan_names_only(SPIPlanPtr plan, Oid relid)
{
	CachedPlan *cplan = SPI_plan_get_cached_plan(plan);
	List	   *sources = SPI_plan_get_plan_sources(plan);
	ListCell   *lc;
	bool		only = (list_length(sources) == 1);

	if (only)
	{
		foreach(lc, ((CachedPlanSource *) linitial(sources))->query_list)
		{
			Query	   *query = lfirst_node(Query, lc);
			ListCell   *rc;

			foreach(rc, query->rtable)
			{
				RangeTblEntry *rte = lfirst_node(RangeTblEntry, rc);

				if (rte->rtekind == RTE_RELATION && rte->relid != relid)
					only = false;
			}
		}
	}
	if (cplan != NULL)
		ReleaseCachedPlan(cplan, CurrentResourceOwner);
	return only;
}

/*
 * write_back_plan returns the kept plan of a statement of a table, made as
 * the table's owner (the current user, like every execution of it) and
 * checked to touch that table only; a statement whose text changed (another
 * result column, a renamed table or key type), or a table that doubled
 * since, replaces the plan
 */
static SPIPlanPtr
write_back_plan(const WriteBackTarget *t, WriteBackStatement which)
{
	Oid		   *argtypes = palloc(sizeof(Oid) * (2 + t->columns.n));
	char	   *sql = write_back_sql(t, which);
	SPIPlanPtr *plan = enrich_plan_slot(&write_back_plans, t->relid, (int) which, sql, true);

	argtypes[0] = TEXTARRAYOID;
	argtypes[1] = JSONBARRAYOID;
	for (int c = 0; c < t->columns.n; c++)
		argtypes[2 + c] = t->columns.array_types[c];
	(void) enrich_plan_prepare(plan, sql, which == WB_UPDATE ? 2 + t->columns.n : 1, argtypes);
	if (!plan_names_only(*plan, t->relid))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("the name %s no longer means the watched table with OID %u", t->name, t->relid)));
	return *plan;
}

/*
 * run_keys runs a statement of a table with keys (and persons, for an
 * update, with the values of the mapped columns: those that did not cast
 * are added to *failures)
 */
static uint64
run_keys(const WriteBackTarget *t, WriteBackStatement which, char **keys, Datum *persons, int n,
		 int64 *failures)
{
	MemoryContext caller = CurrentMemoryContext;
	Datum	   *args = palloc(sizeof(Datum) * (2 + t->columns.n));
	int			rc;

	args[0] = enrich_text_array(keys, n);
	if (persons != NULL)
	{
		args[1] = PointerGetDatum(construct_array(persons, n, JSONBOID, -1, false, TYPALIGN_INT));
		*failures += enrich_columns_values(&t->columns, persons, n, &args[2]);
	}
	rc = SPI_execute_plan(write_back_plan(t, which), args, NULL, false, 0);
	MemoryContextSwitchTo(caller);
	if (rc < 0)
		elog(ERROR, "enrich: writing back to %s failed: %s", t->name, SPI_result_code_string(rc));
	return SPI_processed;
}

/*
 * mark_written marks written the keys of a group whose rows the last
 * WB_UPDATE wrote (it returns the position of each key among those it was
 * given: the group's ith key is position[i - 1])
 */
static void
mark_written(WriteBackStep *step, uint64 n, const int *position)
{
	for (uint64 r = 0; r < n; r++)
	{
		int64		i = enrich_column_int64(r, 1);

		if (i >= 1 && i <= step->group->n)
			step->written[position != NULL ? position[i - 1] : i - 1] = true;
	}
}

/* write_all writes every person of a group (a step run as the table's owner) */
static void
write_all(const WriteBackTarget *t, void *arg)
{
	WriteBackStep *step = (WriteBackStep *) arg;
	uint64		n = run_keys(t, WB_UPDATE, step->group->keys, step->group->persons, step->group->n,
							 &step->failures);

	mark_written(step, n, NULL);
}

/* key_index returns the index of a key in a group */
static int
key_index(const WriteBackGroup *g, const char *key)
{
	for (int i = 0; i < g->n; i++)
		if (strcmp(g->keys[i], key) == 0)
			return i;
	return -1;
}

/*
 * write_unlocked locks the rows of a group that no other transaction holds,
 * writes those, and marks the keys of the others that still name a row
 * KEY_LOCKED (a step run as the table's owner)
 */
static void
write_unlocked(const WriteBackTarget *t, void *arg)
{
	WriteBackStep *step = (WriteBackStep *) arg;
	WriteBackGroup *g = step->group;
	bool	   *locked = palloc0(sizeof(bool) * g->n);
	char	  **keys = palloc(sizeof(char *) * g->n);
	Datum	   *persons = palloc(sizeof(Datum) * g->n);
	int		   *position = palloc(sizeof(int) * g->n);
	int			nlocked = 0;
	int			nrest = 0;
	uint64		n;

	n = run_keys(t, WB_LOCK, g->keys, NULL, g->n, NULL);
	for (uint64 i = 0; i < n; i++)
	{
		int			k = key_index(g, enrich_column_text(i, 1));

		if (k >= 0 && !locked[k])
		{
			locked[k] = true;
			position[nlocked] = k;
			keys[nlocked] = g->keys[k];
			persons[nlocked++] = g->persons[k];
		}
	}
	if (nlocked > 0)
		mark_written(step, run_keys(t, WB_UPDATE, keys, persons, nlocked, &step->failures), position);

	for (int i = 0; i < g->n; i++)
	{
		step->outcomes[i] = KEY_WRITTEN;
		if (!locked[i])
			keys[nrest++] = g->keys[i];
	}
	if (nrest == 0)
		return;
	n = run_keys(t, WB_EXISTING, keys, NULL, nrest, NULL);
	for (uint64 i = 0; i < n; i++)
	{
		int			k = key_index(g, enrich_column_text(i, 1));

		if (k >= 0)
			step->outcomes[k] = KEY_LOCKED;
	}
}

/* end_statement_timeout disarms the write-back's timeout, fired or not */
static void
end_statement_timeout(void)
{
	disable_timeout(STATEMENT_TIMEOUT, false);
	/* a timeout that fired as the statement ended cancels nothing else */
	if (get_timeout_indicator(STATEMENT_TIMEOUT, true))
		QueryCancelPending = false;
}

/*
 * as_owner runs fn(t, arg) as the table's owner, in a subtransaction,
 * under the pinned settings of a GUC nest level rolled back afterwards
 * (lock_wait, when not NULL, as lock_timeout) and within
 * enrich.write_back_timeout.  It returns NULL when fn succeeded, else the
 * error, the subtransaction rolled back.
 */
static ErrorData *
as_owner(const WriteBackTarget *t, const char *lock_wait,
		 void (*fn) (const WriteBackTarget *t, void *arg), void *arg)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *volatile error = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		EnrichUserSwitch sw;

		enrich_switch_user(&sw, t->owner);
		if (lock_wait != NULL)
			(void) set_config_option("lock_timeout", lock_wait, PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_SAVE, true, 0, false);
		if (enrich_write_back_timeout_ms > 0)
			enable_timeout_after(STATEMENT_TIMEOUT, enrich_write_back_timeout_ms);
		fn(t, arg);
		end_statement_timeout();
		enrich_restore_user(&sw);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		end_statement_timeout();
		MemoryContextSwitchTo(oldcontext);
		error = CopyErrorData();
		FlushErrorState();
		/* the user, the security context and the settings go back with it */
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_END_TRY();
	return error;
}

/*
 * reschedule sets when the requests of the keys marked outcome are written
 * again: KEY_LOCKED ones after a back-off (half their age, from a second to
 * a minute), KEY_WRITTEN ones never (they are written, or their row is
 * gone)
 */
static void
reschedule(const WriteBackGroup *g, const KeyOutcome *outcomes, KeyOutcome outcome)
{
	static SPIPlanPtr later_plan = NULL;
	static SPIPlanPtr done_plan = NULL;
	int64	   *ids = palloc(sizeof(int64) * Max(g->n, 1));
	int			n = 0;
	Datum		arg;

	for (int i = 0; i < g->n; i++)
		if (outcomes[i] == outcome)
			ids[n++] = g->ids[i];
	if (n == 0)
		return;
	arg = enrich_int8_array(ids, n);
	if (outcome == KEY_LOCKED)
		enrich_plan_run(&later_plan,
						"UPDATE enrich.requests SET write_back_due = pg_catalog.now()" SQL_OP(+)
						"LEAST('1 minute'::pg_catalog.interval, GREATEST('1 second'::pg_catalog.interval, "
						"(pg_catalog.now()" SQL_OP(-) "coalesce(completed_at, pg_catalog.now()))"
						SQL_OP(/) "2::pg_catalog.float8)) "
						"WHERE id" SQL_OP(=) "ANY ($1)",
						1, (Oid[]) {INT8ARRAYOID}, &arg, NULL, false);
	else
		enrich_plan_run(&done_plan,
						"UPDATE enrich.requests SET write_back_due = NULL "
						"WHERE id" SQL_OP(=) "ANY ($1) AND write_back_due IS NOT NULL",
						1, (Oid[]) {INT8ARRAYOID}, &arg, NULL, false);
}

/* warn_not_written logs why the persons of a group were not written */
static void
warn_not_written(const WriteBackGroup *g, const char *table, int sqlerrcode, const char *why)
{
	ereport(WARNING,
			(errcode(sqlerrcode),
			 errmsg("enrich could not write %d persons back to table %s: %s", g->n, table, why),
			 errdetail("The persons are kept in enrich.requests.")));
}

/*
 * enrich_enriched_rows_kept says whether this database's catalog keeps
 * enrich.enriched_rows (1.1 and later)
 */
bool
enrich_enriched_rows_kept(void)
{
	Oid			namespace = get_namespace_oid("enrich", true);

	return OidIsValid(namespace) && OidIsValid(get_relname_relid("enriched_rows", namespace));
}

/*
 * enrich_enriched_rows_sync records in enrich.enriched_rows the newest
 * person each row of a watched table got, as enrich.requests has it (the
 * rows enriched while the watch did not refresh), where it is newer than
 * what is recorded; it returns how many rows it recorded.  Run as the
 * bootstrap superuser (enrich_alter_watch's and enrich_refresh's caller
 * may not write it).
 */
uint64
enrich_enriched_rows_sync(Oid relid)
{
	static SPIPlanPtr plan = NULL;
	Datum		value = ObjectIdGetDatum(relid);

	return enrich_plan_run_privileged(&plan,
									  "INSERT INTO enrich.enriched_rows AS e (source, source_key, request, answered_at, refresh_from) "
									  "SELECT DISTINCT ON (r.source_key) r.source_relid, r.source_key, r.id, "
									  "    " ANSWERED_AT("r") ", " ANSWERED_AT("r") " "
									  "FROM enrich.requests r "
									  "WHERE r.source_relid" SQL_OP(=) "$1 AND r.state" SQL_OP(=) "'done' "
									  "  AND r.person IS NOT NULL AND r.source_key IS NOT NULL "
									  "  AND r.completed_at IS NOT NULL AND r.write_back_due IS NULL "
									  "ORDER BY r.source_key, r.id DESC "
									  "ON CONFLICT (source, source_key) DO UPDATE SET request = excluded.request, "
									  "    answered_at = excluded.answered_at, refresh_from = excluded.refresh_from "
									  "WHERE e.request" SQL_OP(<) "excluded.request",
									  1, (Oid[]) {OIDOID}, &value, NULL, false);
}

/*
 * record_written records in enrich.enriched_rows, for a watch that
 * refreshes, the rows of a group that got their person (written), with
 * when the API gave it: for a person reused, when the request it copied
 * was answered, so that a copy never makes a person look younger than it
 * is.  Of two records of a row, the later request's stays.
 */
static void
record_written(const WriteBackTarget *t, const WriteBackGroup *g, const bool *written)
{
	static SPIPlanPtr plan = NULL;
	char	  **keys = palloc(sizeof(char *) * Max(g->n, 1));
	int64	   *ids = palloc(sizeof(int64) * Max(g->n, 1));
	Datum	   *answered = palloc(sizeof(Datum) * Max(g->n, 1));
	int			n = 0;
	Datum		args[4];

	for (int i = 0; i < g->n; i++)
	{
		if (!written[i])
			continue;
		keys[n] = g->keys[i];
		ids[n] = g->ids[i];
		answered[n++] = g->answered[i];
	}
	if (n == 0 || !t->track)
		return;
	args[0] = ObjectIdGetDatum(g->relid);
	args[1] = enrich_text_array(keys, n);
	args[2] = enrich_int8_array(ids, n);
	args[3] = PointerGetDatum(construct_array(answered, n, TIMESTAMPTZOID, sizeof(TimestampTz),
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	enrich_plan_run(&plan,
					"INSERT INTO enrich.enriched_rows AS e (source, source_key, request, answered_at, refresh_from) "
					"SELECT $1, u.k::pg_catalog.jsonb, u.id, u.t, u.t "
					"FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.text[]), pg_catalog.unnest($3::pg_catalog.int8[]), "
					"    pg_catalog.unnest($4::pg_catalog.timestamptz[])) AS u(k, id, t) "
					"ON CONFLICT (source, source_key) DO UPDATE SET request = excluded.request, "
					"    answered_at = excluded.answered_at, refresh_from = excluded.refresh_from "
					"WHERE e.request" SQL_OP(<) "excluded.request",
					4, (Oid[]) {REGCLASSOID, TEXTARRAYOID, INT8ARRAYOID, TIMESTAMPTZARRAYOID}, args, NULL, false);
}

/* the tables whose mapped values did not all cast, warned about once */
static List *cast_warned = NIL;

/*
 * count_failures adds a page's mapped values that did not cast to their
 * watch's column_failures, and says so once per table in the log
 */
static void
count_failures(const WriteBackTarget *t, int64 failures)
{
	static SPIPlanPtr plan = NULL;
	Datum		args[2] = {ObjectIdGetDatum(t->relid), Int64GetDatum(failures)};
	MemoryContext caller;

	if (failures == 0)
		return;
	enrich_plan_run_privileged(&plan,
							   "UPDATE enrich.watches SET column_failures = column_failures" SQL_OP(+) "$2 "
							   "WHERE source" SQL_OP(=) "$1",
							   2, (Oid[]) {OIDOID, INT8OID}, args, NULL, false);
	if (list_member_oid(cast_warned, t->relid))
		return;
	/* kept across rounds: the worker's loop memory is reset after each */
	caller = MemoryContextSwitchTo(TopMemoryContext);
	cast_warned = lappend_oid(cast_warned, t->relid);
	MemoryContextSwitchTo(caller);
	ereport(WARNING,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("values of the columns mapped for table %s did not cast to their column's type", t->name),
			 errdetail("Those columns were left as they were; enrich.watches.column_failures counts them."),
			 errhint("Change the jsonpath or the column's type with enrich_alter_watch.")));
}

/* a notification's payload stays under NOTIFY's limit of 8000 bytes */
#define NOTIFY_PAYLOAD_MAX 7900

/*
 * notify_written tells the watch's channel, if it has one, which rows of a
 * group got their person: {"table": "<name>", "keys": [<key>, ...]}, each
 * key the row's primary key as a JSON array of text, as many notifications
 * as the keys need (NOTIFY sends them at the commit of the page, and not
 * at all when it rolls back); a key too long for any is left out
 */
static void
notify_written(const WriteBackTarget *t, const WriteBackGroup *g, const bool *written)
{
	StringInfoData head;
	StringInfoData payload;
	int			nkeys = 0;

	if (t->notify == NULL)
		return;
	initStringInfo(&head);
	appendStringInfoString(&head, "{\"table\": ");
	escape_json(&head, t->name);
	appendStringInfoString(&head, ", \"keys\": [");
	initStringInfo(&payload);
	for (int i = 0; i <= g->n; i++)
	{
		bool		last = (i == g->n);

		if (!last && (!written[i] || head.len + strlen(g->keys[i]) + 2 > NOTIFY_PAYLOAD_MAX))
			continue;
		if (nkeys > 0 && (last || payload.len + strlen(g->keys[i]) + 2 > NOTIFY_PAYLOAD_MAX))
		{
			appendStringInfoString(&payload, "]}");
			Async_Notify(t->notify, payload.data);
			nkeys = 0;
		}
		if (last)
			break;
		if (nkeys == 0)
		{
			resetStringInfo(&payload);
			appendBinaryStringInfo(&payload, head.data, head.len);
		}
		appendStringInfo(&payload, "%s%s", nkeys > 0 ? ", " : "", g->keys[i]);
		nkeys++;
	}
}

/*
 * write_group writes the persons of one group as its table's owner: all at
 * once, waiting WRITE_BACK_LOCK_WAIT at most for locked rows, unless they
 * are deferred ones; else those whose rows it can lock, the others left
 * for later.  deferred says the group's requests were due again.
 */
static void
write_group(WriteBackGroup *g, bool deferred)
{
	WriteBackTarget t = {0};
	WriteBackStep step = {g, palloc(sizeof(KeyOutcome) * Max(g->n, 1)),
	palloc0(sizeof(bool) * Max(g->n, 1))};
	ErrorData  *error = NULL;
	bool		locked_out;
	char	   *problem;

	if (!write_back_target(g->relid, &t, &locked_out, &problem))
	{
		for (int i = 0; i < g->n; i++)
			step.outcomes[i] = locked_out ? KEY_LOCKED : KEY_WRITTEN;
		if (problem != NULL)
			warn_not_written(g, t.name, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, problem);
		reschedule(g, step.outcomes, KEY_LOCKED);
		if (deferred)
			reschedule(g, step.outcomes, KEY_WRITTEN);
		return;
	}

	if (!deferred)
	{
		error = as_owner(&t, WRITE_BACK_LOCK_WAIT, write_all, &step);
		if (error == NULL)
		{
			record_written(&t, g, step.written);
			notify_written(&t, g, step.written);
			count_failures(&t, step.failures);
			return;
		}
		if (error->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
		{
			warn_not_written(g, t.name, error->sqlerrcode, error->message);
			return;
		}
		FreeErrorData(error);
	}
	memset(step.written, 0, sizeof(bool) * g->n);
	step.failures = 0;
	error = as_owner(&t, WRITE_BACK_LOCK_WAIT, write_unlocked, &step);
	if (error == NULL)
	{
		record_written(&t, g, step.written);
		notify_written(&t, g, step.written);
		count_failures(&t, step.failures);
	}
	for (int i = 0; error != NULL && i < g->n; i++)
	{
		/* a lock on the table (a partition, say): all later; else given up */
		step.outcomes[i] = error->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ? KEY_LOCKED : KEY_WRITTEN;
	}
	if (error != NULL && error->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
		warn_not_written(g, t.name, error->sqlerrcode, error->message);
	reschedule(g, step.outcomes, KEY_LOCKED);
	if (deferred)
		reschedule(g, step.outcomes, KEY_WRITTEN);
}

/*
 * enrich_write_back writes the groups' persons into their watched tables;
 * deferred says they are the requests whose write-back was due again
 */
void
enrich_write_back(List *groups, bool deferred)
{
	ListCell   *lc;

	foreach(lc, groups)
		write_group((WriteBackGroup *) lfirst(lc), deferred);
}

/*
 * enrich_write_back_retry writes back up to limit persons whose rows were
 * locked when their page was applied and that are due again; a request of
 * the same row queued since supersedes one (it writes its own person).
 * Returns how many it tried.
 */
int
enrich_write_back_retry(int limit)
{
	static SPIPlanPtr any_plan = NULL;
	static SPIPlanPtr superseded_plan = NULL;
	static SPIPlanPtr due_plan = NULL;
	Datum		arg = Int32GetDatum(limit);
	List	   *groups = NIL;
	uint64		n;
	char	   *due;

	/*
	 * min() over the partial index, which holds only what is due: whatever
	 * the statistics, never a scan of the table, which a LIMIT 1 with a
	 * condition the planner cannot estimate would be (it read every request
	 * once per round)
	 */
	enrich_plan_run(&any_plan,
					"SELECT pg_catalog.min(write_back_due)" SQL_OP(<=) "pg_catalog.now() "
					"FROM enrich.requests WHERE write_back_due IS NOT NULL",
					0, NULL, NULL, NULL, true);
	due = enrich_column_text(0, 1);
	if (due == NULL || strcmp(due, "t") != 0)
		return 0;
	enrich_plan_run(&superseded_plan,
					"UPDATE enrich.requests r SET write_back_due = NULL "
					"WHERE r.write_back_due" SQL_OP(<=) "pg_catalog.now() "
					"  AND EXISTS (SELECT 1 FROM enrich.requests n "
					"              WHERE n.source_relid" SQL_OP(=) "r.source_relid "
					"                AND n.source_key" SQL_OP(=) "r.source_key AND n.id" SQL_OP(>) "r.id)",
					0, NULL, NULL, NULL, false);
	n = enrich_plan_run(&due_plan,
						"SELECT r.id, r.state, r.source_relid, r.source_key::pg_catalog.text, r.person, "
						ANSWERED_AT("r") " "
						"FROM enrich.requests r WHERE r.write_back_due" SQL_OP(<=) "pg_catalog.now() "
						"ORDER BY r.write_back_due LIMIT $1 FOR UPDATE SKIP LOCKED",
						1, (Oid[]) {INT4OID}, &arg, NULL, false);
	enrich_write_back_collect(&groups, n);
	enrich_write_back(groups, true);
	return (int) n;
}

/* the arguments of the step that reads the identifiers of rows, and what it found */
typedef struct IdentifierStep
{
	char	  **keys;
	int			n;
	bool	   *found;			/* whether each key names a row */
	char	  **identifiers;	/* three a key: linkedin_url, person_id, pdl_id */
} IdentifierStep;

/*
 * read_identifiers reads the identifiers of the rows that the keys of a
 * step name (a step run as the table's owner)
 */
static void
read_identifiers(const WriteBackTarget *t, void *arg)
{
	IdentifierStep *step = (IdentifierStep *) arg;
	uint64		n = run_keys(t, WB_IDENTIFIERS, step->keys, NULL, step->n, NULL);

	for (uint64 r = 0; r < n; r++)
	{
		int64		i = enrich_column_int64(r, 1);

		if (i < 1 || i > step->n)
			continue;
		step->found[i - 1] = true;
		for (int c = 0; c < 3; c++)
			step->identifiers[(i - 1) * 3 + c] = enrich_column_text(r, 2 + c);
	}
}

/*
 * enrich_watched_identifiers reads, as a watched table's owner, the
 * identifiers of the rows that n keys (primary keys as JSON arrays of
 * text) name now: found[i] says whether key i names a row, and
 * identifiers[3 * i] to [3 * i + 2] are its linkedin_url, person_id and
 * pdl_id (NULL where none).  It returns false when it could not: with
 * *problem NULL when another transaction holds a lock on the table (try
 * later), else with why (no longer watched, a watch that no longer matches
 * the table, the statement's error).
 */
bool
enrich_watched_identifiers(Oid relid, char **keys, int n, bool *found, char **identifiers,
						   char **problem)
{
	WriteBackTarget t = {0};
	IdentifierStep step = {keys, n, found, identifiers};
	ErrorData  *error;
	bool		locked_out;

	memset(found, 0, sizeof(bool) * n);
	memset(identifiers, 0, sizeof(char *) * 3 * n);
	if (!write_back_target(relid, &t, &locked_out, problem))
	{
		if (!locked_out && *problem == NULL)
			*problem = pstrdup("it is no longer watched");
		return false;
	}
	error = as_owner(&t, NULL, read_identifiers, &step);
	if (error == NULL)
		return true;
	*problem = error->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ? NULL : pstrdup(error->message);
	FreeErrorData(error);
	return false;
}
