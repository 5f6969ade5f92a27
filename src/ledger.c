/*-------------------------------------------------------------------------
 *
 * ledger.c
 *	  What each environment spent and saved, per UTC day (the rows of
 *	  enrich.usage_counts, summed by the view enrich.usage), and the
 *	  budgets that cap what it spends (enrich.budgets, enrich_set_budget).
 *
 * Requests submitted are counted in the transaction that claims them (or
 * that records enrich_submit's batch), under a lock of the environment's
 * budget when it has one, so that a budget is never overrun, and taken
 * back in the transaction that proves the API created no batch.  Calls,
 * 429s, errors and settled requests are counted by each worker in memory
 * and written once a second: a crash loses at most that second's.
 *
 * Rows are appended, never updated ("pending"), so that no transaction
 * waits on another's counter row; the first worker folds them into one
 * row per environment and day once a second.  Every statement runs as the
 * bootstrap superuser under the pinned settings (enrich_submit's caller
 * may not write the ledger).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "ledger.h"
#include "plans.h"
#include "queue.h"
#include "security.h"
#include "shared.h"

PG_FUNCTION_INFO_V1(enrich_set_budget);

/* a worker writes what it counted in memory, and folds, at most this often */
#define LEDGER_FLUSH_INTERVAL_MS 1000

/* what this worker counted and has not written yet, per environment */
static EnrichUsage unwritten[ENRICH_ENV_COUNT];
static TimestampTz flushed_at = 0;
static TimestampTz folded_at = 0;

/* the ledger's columns, in the order of EnrichUsage */
#define USAGE_COLUMNS \
	"submitted, reused, done, failed, bulk_enrich_calls, status_calls, list_calls, " \
	"items_calls, rate_limited, errors"
#define USAGE_NCOLUMNS 10

/* usage_values returns a usage as the int8 values of USAGE_COLUMNS */
static void
usage_values(const EnrichUsage *u, Datum *values)
{
	const int64 counts[USAGE_NCOLUMNS] = {u->submitted, u->reused, u->done, u->failed,
		u->bulk_enrich_calls, u->status_calls, u->list_calls, u->items_calls,
	u->rate_limited, u->errors};

	for (int i = 0; i < USAGE_NCOLUMNS; i++)
		values[i] = Int64GetDatum(counts[i]);
}

/* usage_empty says whether a usage counts nothing */
static bool
usage_empty(const EnrichUsage *u)
{
	static const EnrichUsage none;

	return memcmp(u, &none, sizeof(EnrichUsage)) == 0;
}

/*
 * enrich_ledger_add appends a usage of an environment to today's (UTC)
 * ledger, in the current transaction (SPI connected)
 */
void
enrich_ledger_add(int environment, const EnrichUsage *usage)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[USAGE_NCOLUMNS + 1];
	Datum		values[USAGE_NCOLUMNS + 1];

	if (usage_empty(usage))
		return;
	types[0] = TEXTOID;
	values[0] = CStringGetTextDatum(enrich_environment_name(environment));
	for (int i = 1; i <= USAGE_NCOLUMNS; i++)
		types[i] = INT8OID;
	usage_values(usage, &values[1]);
	enrich_plan_run_privileged(&plan,
			   "INSERT INTO enrich.usage_counts (environment, day, " USAGE_COLUMNS ") "
			   "VALUES ($1, pg_catalog.timezone('UTC'::pg_catalog.text, pg_catalog.now())"
			   "::pg_catalog.date, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
			   USAGE_NCOLUMNS + 1, types, values, NULL, false);
}

/* enrich_ledger_count adds a usage to what this worker writes next */
void
enrich_ledger_count(int environment, const EnrichUsage *usage)
{
	EnrichUsage *u = &unwritten[environment];

	u->submitted += usage->submitted;
	u->reused += usage->reused;
	u->done += usage->done;
	u->failed += usage->failed;
	u->bulk_enrich_calls += usage->bulk_enrich_calls;
	u->status_calls += usage->status_calls;
	u->list_calls += usage->list_calls;
	u->items_calls += usage->items_calls;
	u->rate_limited += usage->rate_limited;
	u->errors += usage->errors;
}

/*
 * ledger_fold folds the pending rows into one row per environment
 * and day (SPI connected, in a transaction of its own)
 */
static void
ledger_fold(void)
{
	static SPIPlanPtr plan = NULL;

	enrich_plan_run_privileged(&plan,
			   "WITH p AS (DELETE FROM enrich.usage_counts WHERE pending RETURNING *) "
			   "INSERT INTO enrich.usage_counts AS u (environment, day, " USAGE_COLUMNS ", pending) "
			   "SELECT p.environment, p.day, pg_catalog.sum(p.submitted), pg_catalog.sum(p.reused), "
			   "    pg_catalog.sum(p.done), pg_catalog.sum(p.failed), "
			   "    pg_catalog.sum(p.bulk_enrich_calls), pg_catalog.sum(p.status_calls), "
			   "    pg_catalog.sum(p.list_calls), pg_catalog.sum(p.items_calls), "
			   "    pg_catalog.sum(p.rate_limited), pg_catalog.sum(p.errors), false "
			   "FROM p GROUP BY p.environment, p.day "
			   "ON CONFLICT (environment, day) WHERE NOT pending DO UPDATE SET "
			   "  submitted = u.submitted" SQL_OP(+) "excluded.submitted, "
			   "  reused = u.reused" SQL_OP(+) "excluded.reused, "
			   "  done = u.done" SQL_OP(+) "excluded.done, "
			   "  failed = u.failed" SQL_OP(+) "excluded.failed, "
			   "  bulk_enrich_calls = u.bulk_enrich_calls" SQL_OP(+) "excluded.bulk_enrich_calls, "
			   "  status_calls = u.status_calls" SQL_OP(+) "excluded.status_calls, "
			   "  list_calls = u.list_calls" SQL_OP(+) "excluded.list_calls, "
			   "  items_calls = u.items_calls" SQL_OP(+) "excluded.items_calls, "
			   "  rate_limited = u.rate_limited" SQL_OP(+) "excluded.rate_limited, "
			   "  errors = u.errors" SQL_OP(+) "excluded.errors",
			   0, NULL, NULL, NULL, false);
}

/*
 * enrich_ledger_flush writes what this worker counted, and with fold (the
 * first worker) folds the pending rows, at most once a second, and at once
 * with idle (the worker is about to sleep: nothing is kept unwritten
 * meanwhile); inside the worker's transaction, SPI connected
 */
void
enrich_ledger_flush(bool fold, bool idle)
{
	TimestampTz now = GetCurrentTimestamp();

	if (idle || TimestampDifferenceExceeds(flushed_at, now, LEDGER_FLUSH_INTERVAL_MS))
	{
		for (int e = 0; e < ENRICH_ENV_COUNT; e++)
		{
			enrich_ledger_add(e, &unwritten[e]);
			memset(&unwritten[e], 0, sizeof(EnrichUsage));
		}
		flushed_at = now;
	}
	if (fold && TimestampDifferenceExceeds(folded_at, now, LEDGER_FLUSH_INTERVAL_MS))
	{
		ledger_fold();
		folded_at = now;
	}
}

/*
 * budget_row reads an environment's budget and what it submitted today
 * and this month (UTC), into the SPI result's first row: per_day,
 * per_month, used today, used this month, and when the day and the month
 * end; it returns false when the environment has no budget.  Not read
 * only: it takes a snapshot of its own, which sees what a claim committed
 * while this one waited for the budget's lock.
 */
static bool
budget_row(int environment)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(enrich_environment_name(environment))};

	return enrich_plan_run_privileged(&plan,
					  "SELECT b.per_day, b.per_month, "
					  "    COALESCE(pg_catalog.sum(u.submitted) FILTER (WHERE u.day" SQL_OP(=) "t.today), 0), "
					  "    COALESCE(pg_catalog.sum(u.submitted), 0), "
					  "    pg_catalog.timezone('UTC'::pg_catalog.text, "
					  "        (t.today" SQL_OP(+) "1)::pg_catalog.timestamp), "
					  "    pg_catalog.timezone('UTC'::pg_catalog.text, "
					  "        t.month" SQL_OP(+) "'1 month'::pg_catalog.interval) "
					  "FROM enrich.budgets b "
					  "CROSS JOIN (SELECT d.today, pg_catalog.date_trunc('month'::pg_catalog.text, "
					  "                d.today::pg_catalog.timestamp) AS month "
					  "            FROM (SELECT pg_catalog.timezone('UTC'::pg_catalog.text, pg_catalog.now())"
					  "                  ::pg_catalog.date AS today) AS d) AS t "
					  "LEFT JOIN enrich.usage_counts u ON u.environment" SQL_OP(=) "b.environment "
					  "    AND u.day" SQL_OP(>=) "t.month::pg_catalog.date "
					  "WHERE b.environment" SQL_OP(=) "$1 "
					  "GROUP BY b.per_day, b.per_month, t.today, t.month",
					  1, types, values, NULL, false) > 0;
}

/*
 * budget_left returns how many more requests an environment may submit
 * (-1: no limit) from the budget_row just read, and, when none, why in
 * *why: "daily budget reached (N of N) until <time>"
 */
static int64
budget_left(char **why)
{
	char	   *per_day = enrich_column_text(0, 1);
	char	   *per_month = enrich_column_text(0, 2);
	int64		day_used = enrich_column_int64(0, 3);
	int64		month_used = enrich_column_int64(0, 4);
	int64		left = -1;

	*why = NULL;
	if (per_month != NULL)
	{
		int64		limit = strtoll(per_month, NULL, 10);

		left = Max(limit - month_used, 0);
		if (left == 0)
			*why = psprintf("monthly budget reached (" INT64_FORMAT " of " INT64_FORMAT ") until %s",
							month_used, limit, enrich_column_text(0, 6));
	}
	if (per_day != NULL)
	{
		int64		limit = strtoll(per_day, NULL, 10);
		int64		day_left = Max(limit - day_used, 0);

		if (day_left == 0 && *why == NULL)
			*why = psprintf("daily budget reached (" INT64_FORMAT " of " INT64_FORMAT ") until %s",
							day_used, limit, enrich_column_text(0, 5));
		left = left < 0 ? day_left : Min(left, day_left);
	}
	return left;
}

/*
 * enrich_ledger_budget_left returns how many more requests an environment
 * may submit now (-1: it has no budget), and when none, why in *why.  With
 * a budget, it first takes the environment's budget lock until the end of
 * the transaction (waiting for it): a worker that reads it and then claims
 * and counts what it submits, in that transaction, never overruns it.
 * SPI connected.
 */
int64
enrich_ledger_budget_left(int environment, bool lock, char **why)
{
	LOCKTAG		tag;

	*why = NULL;
	if (!budget_row(environment))
		return -1;
	if (!lock)
		return budget_left(why);
	enrich_queue_lock_tag(&tag, ENRICH_LOCK_BUDGET, environment);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
	if (!budget_row(environment))
		return -1;
	return budget_left(why);
}

/* optional_limit reads a per_day or per_month argument: NULL, or >= 0 */
static Datum
optional_limit(FunctionCallInfo fcinfo, int arg, const char *name, char *null)
{
	*null = PG_ARGISNULL(arg) ? 'n' : ' ';
	if (!PG_ARGISNULL(arg) && PG_GETARG_INT64(arg) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be negative", name),
				 errhint("Pass the most requests a period may submit, 0 to submit none, or NULL for no limit.")));
	return PG_ARGISNULL(arg) ? (Datum) 0 : PG_GETARG_DATUM(arg);
}

/*
 * enrich_set_budget(environment, per_day, per_month) sets the most requests
 * an environment may submit per UTC day and month (NULL: no limit; both
 * NULL: no budget), and wakes the workers at commit: a raised limit lets
 * them go on at once
 */
Datum
enrich_set_budget(PG_FUNCTION_ARGS)
{
	Oid			types[4] = {TEXTOID, INT8OID, INT8OID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	int			environment;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("environment must not be null"),
				 errhint("Pass 'live' or 'test'.")));
	environment = enrich_environment_arg(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	values[0] = CStringGetTextDatum(enrich_environment_name(environment));
	values[1] = optional_limit(fcinfo, 1, "per_day", &nulls[1]);
	values[2] = optional_limit(fcinfo, 2, "per_month", &nulls[2]);
	values[3] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	SPI_connect();
	if (nulls[1] == 'n' && nulls[2] == 'n')
		enrich_run_privileged("DELETE FROM enrich.budgets WHERE environment" SQL_OP(=) "$1",
							  1, types, values, NULL, false);
	else
		enrich_run_privileged("INSERT INTO enrich.budgets (environment, per_day, per_month, set_by) "
							  "VALUES ($1, $2, $3, $4::pg_catalog.name) "
							  "ON CONFLICT (environment) DO UPDATE SET per_day = excluded.per_day, "
							  "    per_month = excluded.per_month, set_at = pg_catalog.now(), "
							  "    set_by = excluded.set_by",
							  4, types, values, nulls, false);
	SPI_finish();
	enrich_wake_at_commit();
	PG_RETURN_VOID();
}
