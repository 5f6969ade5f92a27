/*-------------------------------------------------------------------------
 *
 * refresh.c
 *	  Keeping the persons of watched rows fresh: the first worker queues
 *	  again, a few at a time and within enrich.refresh_window, the rows
 *	  whose person is older than their watch's refresh_after
 *	  (enrich.enriched_rows says when the API gave each); enrich_refresh
 *	  queues them by hand (enrich_alter_watch, watch.c, sets refresh_after).
 *
 * A refresh is a new request of the row, with the identifiers the row has
 * now (read as the table's owner, writeback.c); the old person stays in
 * the row until the new one is written over it.  Queuing one moves the
 * row's refresh_from to now, so that a refresh that fails is not asked
 * again before another refresh_after; the person it brings sets it to
 * when the API gave that person.  A refresh may be settled from an answer
 * younger than both refresh_after and enrich.reuse_within (its max_age):
 * one that the row's own refresh would be due for again is never copied.
 *
 * Every statement on enrich's tables runs as the bootstrap superuser under
 * the pinned settings: the caller of enrich_refresh may not write them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "pgtime.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/datum.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "plans.h"
#include "refresh.h"
#include "security.h"
#include "watch.h"
#include "writeback.h"

PG_FUNCTION_INFO_V1(enrich_refresh);

/* the first worker looks for rows due this often */
#define REFRESH_ROUND_S 10

/* without a refresh window, the rows due are spread over this long */
#define REFRESH_SPREAD_S 3600

/* the most rows of one table a round, or a statement of enrich_refresh, queues */
#define REFRESH_MAX 10000

/* the tables whose refresh failed, warned about once until one succeeds */
static List *warned = NIL;

/*
 * queue_requests queues a request for each row found among n keys that
 * has an identifier the API would take (malformed ones are left alone: the
 * row's own UPDATE recorded why), with max_age the younger of age_bound
 * (NULL: 0, always call) and enrich.reuse_within; returns how many
 */
static uint64
queue_requests(Oid relid, char **keys, int n, const bool *found, char **identifiers,
			   Datum age_bound, bool age_bound_null)
{
	static SPIPlanPtr plan = NULL;
	char	  **k = palloc(sizeof(char *) * n);
	char	  **ids[3];
	int			m = 0;
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};

	for (int c = 0; c < 3; c++)
		ids[c] = palloc(sizeof(char *) * n);
	for (int i = 0; i < n; i++)
	{
		if (!found[i])
			continue;
		k[m] = keys[i];
		for (int c = 0; c < 3; c++)
			ids[c][m] = identifiers[3 * i + c];
		m++;
	}
	if (m == 0)
		return 0;
	values[0] = ObjectIdGetDatum(relid);
	values[1] = enrich_text_array(k, m);
	for (int c = 0; c < 3; c++)
		values[2 + c] = enrich_text_array(ids[c], m);
	values[5] = age_bound;
	nulls[5] = age_bound_null ? 'n' : ' ';
	values[6] = Float8GetDatum(enrich_reuse_within_s * 1000.0);
	return enrich_plan_run_privileged(&plan,
			   "INSERT INTO enrich.requests (environment, linkedin_url, person_id, pdl_id, "
			   "    source_relid, source_key, max_age) "
			   "SELECT COALESCE(w.environment, pg_catalog.current_setting('enrich.environment')), "
			   "    u.l, u.p, u.d, w.source, u.k::pg_catalog.jsonb, "
			   "    CASE WHEN $6 IS NULL THEN '0'::pg_catalog.interval "
			   "         ELSE LEAST($6, " MILLISECONDS("$7") ") END "
			   "FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.text[]), pg_catalog.unnest($3::pg_catalog.text[]), "
			   "    pg_catalog.unnest($4::pg_catalog.text[]), pg_catalog.unnest($5::pg_catalog.text[])) AS u(k, l, p, d) "
			   "JOIN enrich.watches w ON w.source" SQL_OP(=) "$1 "
			   "WHERE (u.l IS NOT NULL OR u.p IS NOT NULL OR u.d IS NOT NULL) "
			   "  AND enrich.request_problem(u.l, u.p, u.d, NULL) IS NULL",
			   7, (Oid[]) {OIDOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
			   INTERVALOID, FLOAT8OID}, values, nulls, false);
}

/*
 * mark_queued moves the refresh_from of the rows of n keys to now, and
 * forgets the keys that no longer name a row
 */
static void
mark_queued(Oid relid, char **keys, int n, const bool *found)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[3];
	Datum	   *flags = palloc(sizeof(Datum) * n);

	for (int i = 0; i < n; i++)
		flags[i] = BoolGetDatum(found[i]);
	values[0] = ObjectIdGetDatum(relid);
	values[1] = enrich_text_array(keys, n);
	values[2] = PointerGetDatum(construct_array(flags, n, BOOLOID, 1, true, TYPALIGN_CHAR));
	(void) enrich_plan_run_privileged(&plan,
			   "WITH s AS (SELECT u.k::pg_catalog.jsonb AS k, u.f "
			   "           FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.text[]), "
			   "                           pg_catalog.unnest($3::pg_catalog.bool[])) AS u(k, f)), "
			   "moved AS (UPDATE enrich.enriched_rows e SET refresh_from = pg_catalog.now() FROM s "
			   "          WHERE e.source" SQL_OP(=) "$1 AND e.source_key" SQL_OP(=) "s.k AND s.f) "
			   "DELETE FROM enrich.enriched_rows e USING s "
			   "WHERE e.source" SQL_OP(=) "$1 AND e.source_key" SQL_OP(=) "s.k AND NOT s.f",
			   3, (Oid[]) {OIDOID, TEXTARRAYOID, BOOLARRAYOID}, values, NULL, false);
}

/*
 * due_keys returns up to limit keys (as text) of the rows of a table to
 * refresh, oldest refresh_from first, locked (others being refreshed are
 * skipped): those whose refresh_from is older than now - since, and when
 * older_than is not NULL, whose person too is older than now - older_than
 */
static char **
due_keys(Oid relid, Datum since, Datum older_than, bool older_than_null, int limit, int *n)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[4] = {ObjectIdGetDatum(relid), since, older_than, Int32GetDatum(limit)};
	char		nulls[4] = {' ', ' ', older_than_null ? 'n' : ' ', ' '};
	char	  **keys;

	*n = (int) enrich_plan_run_privileged(&plan,
				   "SELECT e.source_key::pg_catalog.text FROM enrich.enriched_rows e "
				   "WHERE e.source" SQL_OP(=) "$1 "
				   "  AND e.refresh_from" SQL_OP(<) "(pg_catalog.now()" SQL_OP(-) "$2) "
				   "  AND ($3 IS NULL OR e.answered_at" SQL_OP(<) "(pg_catalog.now()" SQL_OP(-) "$3)) "
				   "ORDER BY e.refresh_from LIMIT $4 FOR UPDATE SKIP LOCKED",
				   4, (Oid[]) {OIDOID, INTERVALOID, INTERVALOID, INT4OID}, values, nulls, false);
	keys = palloc(sizeof(char *) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
		keys[i] = enrich_column_text(i, 1);
	return keys;
}

/*
 * refresh_keys queues the refresh of the rows of n keys of a table (see
 * queue_requests for age_bound) and returns how many requests it queued;
 * -1 when the table could not be read now (locked: *problem NULL), or with
 * *problem why not
 */
static int64
refresh_keys(Oid relid, char **keys, int n, Datum age_bound, bool age_bound_null, char **problem)
{
	bool	   *found = palloc(sizeof(bool) * n);
	char	  **identifiers = palloc(sizeof(char *) * 3 * n);
	uint64		queued;

	if (!enrich_watched_identifiers(relid, keys, n, found, identifiers, problem))
		return -1;
	queued = queue_requests(relid, keys, n, found, identifiers, age_bound, age_bound_null);
	mark_queued(relid, keys, n, found);
	return (int64) queued;
}

/*
 * window_left_s returns how many seconds of enrich.refresh_window are left
 * now (0: outside it), or REFRESH_SPREAD_S when it is empty (any time)
 */
static int
window_left_s(void)
{
	int			start,
				end,
				now_s;
	struct pg_tm tm;
	fsec_t		fsec;
	int			tz;

	if (enrich_refresh_window == NULL || enrich_refresh_window[0] == '\0')
		return REFRESH_SPREAD_S;
	if (!enrich_refresh_window_parse(enrich_refresh_window, &start, &end) ||
		timestamp2tm(GetCurrentTimestamp(), &tz, &tm, &fsec, NULL, NULL) != 0)
		return 0;
	now_s = tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec;
	start *= 60;
	end *= 60;
	if (start < end ? (now_s < start || now_s >= end) : (now_s < start && now_s >= end))
		return 0;
	return (end - now_s + 24 * 3600) % (24 * 3600);
}

/*
 * round_quota returns how many of due rows a round queues: an even share
 * of them for each round left in the window (all in its last round), at
 * most REFRESH_MAX
 */
static int
round_quota(int64 due, int left_s)
{
	double		share = (double) due * REFRESH_ROUND_S / Max(left_s, REFRESH_ROUND_S);

	return (int) Min((double) REFRESH_MAX, ceil(share));
}

/*
 * warn_refresh logs, once until a refresh of the table succeeds again, why
 * the rows due of a table were not queued
 */
static void
warn_refresh(Oid relid, const char *problem)
{
	MemoryContext caller;

	if (problem == NULL)
	{
		warned = list_delete_oid(warned, relid);
		return;
	}
	if (list_member_oid(warned, relid))
		return;
	/* kept across rounds: the worker's loop memory is reset after each */
	caller = MemoryContextSwitchTo(TopMemoryContext);
	warned = lappend_oid(warned, relid);
	MemoryContextSwitchTo(caller);
	ereport(WARNING,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("enrich could not refresh the rows of table %s: %s",
					enrich_relation_name(relid), problem),
			 errdetail("The rows stay as they are; they are tried again every %d seconds.",
					   REFRESH_ROUND_S),
			 errhint("Call enrich_unwatch and then enrich_watch with the table's columns now.")));
}

/*
 * refresh_table queues a round's share of the rows due of one table, whose
 * watch refreshes them after refresh_after, due of them due now
 */
static void
refresh_table(Oid relid, Datum refresh_after, int64 due, int left_s)
{
	int			n;
	char	  **keys = due_keys(relid, refresh_after, (Datum) 0, true, round_quota(due, left_s), &n);
	char	   *problem = NULL;
	int64		queued;

	if (n == 0)
		return;
	queued = refresh_keys(relid, keys, n, refresh_after, false, &problem);
	if (queued < 0 && problem == NULL)
		return;					/* locked: next round */
	warn_refresh(relid, problem);
	if (queued >= 0)
		elog(DEBUG1, "enrich worker: refresh of %s queued %lld requests for %d of %lld rows due",
			 enrich_relation_name(relid), (long long) queued, n, (long long) due);
}

/*
 * enrich_refresh_round queues, at most every REFRESH_ROUND_S and only
 * within enrich.refresh_window, a share of the rows due of each watch with
 * a refresh_after: an even share for each round left of the window, so
 * that rows that fell due together are asked again over its length.  The
 * first worker calls it in its transaction, SPI connected.
 */
void
enrich_refresh_round(void)
{
	static SPIPlanPtr plan = NULL;
	static TimestampTz last = 0;
	TimestampTz now = GetCurrentTimestamp();
	int			left_s;
	uint64		nwatches;
	Oid		   *relids;
	Datum	   *after;
	int64	   *due;

	if (!TimestampDifferenceExceeds(last, now, REFRESH_ROUND_S * 1000) || !enrich_enriched_rows_kept())
		return;
	last = now;
	left_s = window_left_s();
	if (left_s <= 0)
		return;
	nwatches = enrich_plan_run(&plan,
							   "SELECT w.source::pg_catalog.oid, w.refresh_after, "
							   "    (SELECT pg_catalog.count(*) FROM enrich.enriched_rows e "
							   "     WHERE e.source" SQL_OP(=) "w.source "
							   "       AND e.refresh_from" SQL_OP(<) "(pg_catalog.now()" SQL_OP(-) "w.refresh_after)) "
							   "FROM enrich.watches w WHERE w.refresh_after IS NOT NULL",
							   0, NULL, NULL, NULL, true);
	relids = palloc(sizeof(Oid) * Max(nwatches, 1));
	after = palloc(sizeof(Datum) * Max(nwatches, 1));
	due = palloc(sizeof(int64) * Max(nwatches, 1));
	for (uint64 i = 0; i < nwatches; i++)
	{
		bool		isnull;

		relids[i] = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		after[i] = datumCopy(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull),
							 false, sizeof(Interval));
		due[i] = enrich_column_int64(i, 3);
	}
	for (uint64 i = 0; i < nwatches; i++)
		if (due[i] > 0)
			refresh_table(relids[i], after[i], due[i], left_s);
}

/*
 * enrich_refresh(source, older_than) queues at once, not spread over time
 * and whatever enrich.refresh_window says, a new request for each row of a
 * watched table the caller owns whose person is older than older_than
 * (NULL: every row enrich wrote a person into, each one called, no earlier
 * answer copied), REFRESH_MAX rows a statement; it returns how many
 * requests it queued
 */
Datum
enrich_refresh(PG_FUNCTION_ARGS)
{
	bool		every;
	Datum		older_than = enrich_interval_arg(fcinfo, 1, "older_than", &every);
	Interval	zero = {0};
	int64		total = 0;
	MemoryContext chunk;
	Oid			relid;
	int			n;

	SPI_connect();
	relid = enrich_watched_table(fcinfo);
	/* a watch that does not refresh records nothing as it writes */
	(void) enrich_enriched_rows_sync(relid);
	chunk = AllocSetContextCreate(CurrentMemoryContext, "enrich_refresh", ALLOCSET_DEFAULT_SIZES);
	do
	{
		char	  **keys;
		char	   *problem = NULL;
		int64		queued;

		/* what one statement's rows take is freed before the next */
		MemoryContextReset(chunk);
		MemoryContextSwitchTo(chunk);
		keys = due_keys(relid, IntervalPGetDatum(&zero), older_than, every, REFRESH_MAX, &n);
		SPI_freetuptable(SPI_tuptable);
		if (n == 0)
			break;
		queued = refresh_keys(relid, keys, n, older_than, every, &problem);
		if (queued < 0)
			ereport(ERROR,
					(errcode(problem == NULL ? ERRCODE_LOCK_NOT_AVAILABLE : ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("could not read the rows of table %s to refresh", enrich_relation_name(relid)),
					 problem ? errdetail("%s", problem) : errdetail("Another transaction holds a lock on it."),
					 errhint(problem ? "Call enrich_unwatch and then enrich_watch with the table's columns now."
							 : "Try again when it is released.")));
		total += queued;
	} while (n == REFRESH_MAX);
	SPI_finish();
	PG_RETURN_INT64(total);
}
