/*-------------------------------------------------------------------------
 *
 * counts.c
 *	  The counters enrich.progress reads, in enrich.request_counts: how many
 *	  requests each environment and owner has in each category (queued,
 *	  waiting_retry, in_flight, done, failed), done and failed ones by the
 *	  UTC day (and, done ones, the second) they completed.  The statement
 *	  triggers of enrich.requests add what each statement changed, the
 *	  worker folds those rows, and enrich.recount() counts afresh.
 *
 * A statement's rows are "pending": appended, never updated, so that two
 * transactions never wait on one counter row (a prepared transaction
 * included).  The first worker folds the pending rows into one row per key
 * once a second, and the rows of seconds over two minutes old into their
 * day's.  A reader sums the rows of its key: a few hundred at most while
 * the workers run, whatever the size of enrich.requests.
 *
 * The triggers write as the bootstrap superuser (a role inserting a
 * request may not write the counters), under the pinned settings of
 * security.c, from the transition tables of the statement.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "counts.h"
#include "plans.h"
#include "security.h"

PG_FUNCTION_INFO_V1(enrich_count_requests);
PG_FUNCTION_INFO_V1(enrich_recount);

/* the worker folds the pending rows at most this often */
#define FOLD_INTERVAL_MS 1000

/*
 * COUNT_ROWS(rows) inserts the pending counter rows of rows, a query of
 * (environment, owner, state, attempts, completed_at, n): n is 1 for a
 * request that came, -1 for one that went; a key whose rows cancel out
 * gets none
 */
#define COUNT_ROWS(rows) \
	"INSERT INTO enrich.request_counts " \
	"    (environment, owner, category, completed_day, completed_second, n) " \
	"SELECT d.environment, d.owner, d.category, d.completed_day, d.completed_second, " \
	"    pg_catalog.sum(d.n)::pg_catalog.int8 " \
	"FROM (SELECT r.environment, r.owner, " \
	"          CASE WHEN r.state" SQL_OP(=) "'queued'::pg_catalog.text " \
	"                    AND r.attempts" SQL_OP(=) "0 THEN 'queued'::pg_catalog.text " \
	"               WHEN r.state" SQL_OP(=) "'queued'::pg_catalog.text " \
	"                    THEN 'waiting_retry'::pg_catalog.text " \
	"               WHEN r.state" SQL_OP(=) "ANY ('{submitting,submitted}'::pg_catalog.text[]) " \
	"                    THEN 'in_flight'::pg_catalog.text " \
	"               ELSE r.state END AS category, " \
	"          CASE WHEN r.state" SQL_OP(=) "ANY ('{done,failed}'::pg_catalog.text[]) " \
	"               THEN pg_catalog.timezone('UTC'::pg_catalog.text, r.completed_at)::pg_catalog.date " \
	"               END AS completed_day, " \
	"          CASE WHEN r.state" SQL_OP(=) "'done'::pg_catalog.text " \
	"               THEN pg_catalog.date_trunc('second'::pg_catalog.text, r.completed_at, " \
	"                                          'UTC'::pg_catalog.text) " \
	"               END AS completed_second, " \
	"          r.n " \
	"      FROM (" rows ") AS r) AS d " \
	"GROUP BY d.environment, d.owner, d.category, d.completed_day, d.completed_second " \
	"HAVING pg_catalog.sum(d.n)" SQL_OP(<>) "0::pg_catalog.int8"

/* the columns COUNT_ROWS reads, of a table or transition table t */
#define COUNTED(t, n) \
	"SELECT " t ".environment, " t ".owner, " t ".state, " t ".attempts, " t ".completed_at, " \
	n "::pg_catalog.int4 AS n FROM "

/* the statements of the triggers, by event (TRIGGER_EVENT_INSERT ...) */
static const char *const count_statements[] = {
	[TRIGGER_EVENT_INSERT] = COUNT_ROWS(COUNTED("a", "1") "new_rows a"),
	[TRIGGER_EVENT_DELETE] = COUNT_ROWS(COUNTED("a", "-1") "old_rows a"),
	[TRIGGER_EVENT_UPDATE] = COUNT_ROWS(COUNTED("a", "1") "new_rows a UNION ALL "
										COUNTED("b", "-1") "old_rows b"),
	[TRIGGER_EVENT_TRUNCATE] = "DELETE FROM enrich.request_counts",
};

/*
 * is_requests_table says whether rel is enrich.requests: the counting
 * trigger writes as the bootstrap superuser, for that table only
 */
static bool
is_requests_table(Relation rel)
{
	return strcmp(RelationGetRelationName(rel), "requests") == 0 &&
		strcmp(get_namespace_name(RelationGetNamespace(rel)), "enrich") == 0;
}

/*
 * enrich.count_requests() is the statement trigger of enrich.requests
 * (AFTER INSERT, UPDATE and DELETE with their transition tables new_rows
 * and old_rows, and AFTER TRUNCATE): it records what the statement
 * changed in enrich.request_counts
 */
Datum
enrich_count_requests(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	static SPIPlanPtr plans[lengthof(count_statements)];
	TriggerEvent event;
	int			rc;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event) || !is_requests_table(trigdata->tg_relation))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("enrich.count_requests() must be fired after each statement on enrich.requests")));
	event = trigdata->tg_event & TRIGGER_EVENT_OPMASK;
	if ((event != TRIGGER_EVENT_DELETE && event != TRIGGER_EVENT_TRUNCATE &&
		 trigdata->tg_newtable == NULL) ||
		(event != TRIGGER_EVENT_INSERT && event != TRIGGER_EVENT_TRUNCATE &&
		 trigdata->tg_oldtable == NULL))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("enrich.count_requests() needs the transition tables of the statement"),
				 errhint("Its triggers say REFERENCING NEW TABLE AS new_rows, OLD TABLE AS old_rows, or both.")));

	SPI_connect();
	if (SPI_register_trigger_data(trigdata) != SPI_OK_TD_REGISTER)
		elog(ERROR, "enrich: could not register the transition tables");
	rc = enrich_run_privileged_plan(&plans[event], count_statements[event], 0, 0, NULL, NULL,
									NULL, false);
	if (rc < 0)
		elog(ERROR, "enrich: counting the requests failed: %s", SPI_result_code_string(rc));
	SPI_finish();
	return PointerGetDatum(NULL);
}

/*
 * recount counts every request afresh into enrich.request_counts, the
 * other writers of enrich.requests held off meanwhile; SPI connected
 */
static void
recount(void)
{
	static const char *const statements[] = {
		"LOCK TABLE enrich.requests IN SHARE MODE",
		"DELETE FROM enrich.request_counts",
		COUNT_ROWS(COUNTED("a", "1") "enrich.requests a"),
	};

	for (size_t i = 0; i < lengthof(statements); i++)
	{
		MemoryContext caller = CurrentMemoryContext;
		int			rc = SPI_execute(statements[i], false, 0);

		MemoryContextSwitchTo(caller);
		if (rc < 0)
			elog(ERROR, "enrich: counting the requests failed: %s", SPI_result_code_string(rc));
	}
}

/*
 * enrich.recount() counts every request afresh, as the caller (who must be
 * able to lock enrich.requests and write enrich.request_counts): the
 * repair after rows were written with the triggers off (a data-only
 * restore with --disable-triggers, or session_replication_role = replica)
 */
Datum
enrich_recount(PG_FUNCTION_ARGS)
{
	SPI_connect();
	recount();
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * enrich_counts_fold folds the pending counter rows into one per key, and
 * the rows of seconds over two minutes old into their day's, at most once
 * every FOLD_INTERVAL_MS; run by the first worker in its transaction, SPI
 * connected.  Rows being written meanwhile wait for the next fold; two
 * folds at once take disjoint rows and write the keys in the same order.
 */
void
enrich_counts_fold(void)
{
	static TimestampTz last = 0;
	static SPIPlanPtr fold_plan = NULL;
	static SPIPlanPtr zeros_plan = NULL;
	TimestampTz now = GetCurrentTimestamp();

	if (!TimestampDifferenceExceeds(last, now, FOLD_INTERVAL_MS))
		return;
	last = now;
	enrich_plan_run(&fold_plan,
					"WITH gone AS (DELETE FROM enrich.request_counts c "
					"    WHERE c.pending OR c.completed_second" SQL_OP(<)
					"        (pg_catalog.now()" SQL_OP(-) "'2 minutes'::pg_catalog.interval) "
					"    RETURNING c.environment, c.owner, c.category, c.completed_day, "
					"        c.completed_second, c.n) "
					"INSERT INTO enrich.request_counts AS c "
					"    (environment, owner, category, completed_day, completed_second, n, pending) "
					"SELECT g.environment, g.owner, g.category, g.completed_day, "
					"    CASE WHEN g.completed_second" SQL_OP(>=)
					"        (pg_catalog.now()" SQL_OP(-) "'2 minutes'::pg_catalog.interval) "
					"        THEN g.completed_second END, "
					"    pg_catalog.sum(g.n)::pg_catalog.int8, false "
					"FROM gone g GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5 "
					"ON CONFLICT (environment, owner, category, completed_day, completed_second) "
					"    WHERE NOT pending "
					"DO UPDATE SET n = c.n" SQL_OP(+) "excluded.n",
					0, NULL, NULL, NULL, false);
	enrich_plan_run(&zeros_plan,
					"DELETE FROM enrich.request_counts c "
					"WHERE NOT c.pending AND c.n" SQL_OP(=) "0::pg_catalog.int8",
					0, NULL, NULL, NULL, false);
}

/*
 * enrich_counts_heal counts every request afresh when there are requests
 * and no counter at all (a data-only restore with the triggers disabled);
 * run by the first worker when it starts, SPI connected
 */
void
enrich_counts_heal(void)
{
	MemoryContext caller = CurrentMemoryContext;
	int			rc = SPI_execute("SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM enrich.request_counts) "
								 "AND EXISTS (SELECT 1 FROM enrich.requests)", true, 1);

	MemoryContextSwitchTo(caller);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "enrich: reading enrich.request_counts failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		return;
	ereport(LOG,
			(errmsg("enrich worker: enrich.request_counts is empty while enrich.requests is not; counting the requests afresh")));
	recount();
}
