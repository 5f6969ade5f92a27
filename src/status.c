/*-------------------------------------------------------------------------
 *
 * status.c
 *	  What SQL sees of the launcher and the workers, from shared memory:
 *	  enrich_wake(), enrich.worker_state(environment) (the state column of
 *	  enrich.progress: running, paused, backing off, or why no worker runs
 *	  in this database) and enrich_databases() (every database of the
 *	  cluster the launcher serves, its workers and their calls).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "shared.h"

PG_FUNCTION_INFO_V1(enrich_wake);
PG_FUNCTION_INFO_V1(enrich_worker_state);
PG_FUNCTION_INFO_V1(enrich_databases_served);

/* enrich_wake() wakes the workers (at commit) */
Datum
enrich_wake(PG_FUNCTION_ARGS)
{
	enrich_wake_at_commit();
	PG_RETURN_VOID();
}

/* workers_running returns how many workers of a database entry run */
static int
workers_running(const EnrichDatabase *db)
{
	int			n = 0;

	for (int i = 0; i < ENRICH_MAX_WORKERS; i++)
		n += db->workers[i].pid != 0;
	return n;
}

/*
 * why_no_worker returns why no worker runs in this database, or NULL when
 * one does (db: its entry, or NULL when the launcher has none)
 */
static char *
why_no_worker(const EnrichDatabase *db, bool installed)
{
	bool		explicit;

	if (!installed)
		return "not running: enrich is not in shared_preload_libraries";
	if (db == NULL)
	{
		char	   *name = get_database_name(MyDatabaseId);

		if (!enrich_database_listed(name, &explicit))
			return psprintf("not running: database \"%s\" is not in %s", name,
							enrich_database[0] != '\0' ? "enrich.database" : "enrich.databases");
	}
	if (db != NULL && db->granted == 0 && db->state != ENRICH_DB_ABSENT)
		return psprintf("not running: enrich.max_workers (%d) are all given to other databases",
						enrich_max_workers);
	if (db == NULL || workers_running(db) == 0)
		return "not running";
	return NULL;
}

/*
 * enrich.worker_state(environment) returns (state, last_error) of the
 * workers of this database for one environment, for the enrich.progress
 * view
 */
Datum
enrich_worker_state(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	int			environment;
	EnrichDatabase db;
	bool		installed;
	bool		found;
	char	   *why;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "enrich: worker_state must return a row");
	tupdesc = BlessTupleDesc(tupdesc);
	environment = enrich_environment_arg(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	found = enrich_shared_database_copy(MyDatabaseId, &db, &installed);
	why = why_no_worker(found ? &db : NULL, installed);

	if (why != NULL)
		values[0] = CStringGetTextDatum(why);
	else if (db.env[environment].paused && db.env[environment].paused_generation == db.keys_generation)
		values[0] = CStringGetTextDatum("paused: unauthorized (set the key with enrich_set_api_key)");
	else if (db.env[environment].budget_pause[0] != '\0')
		values[0] = CStringGetTextDatum(psprintf("paused: %s", db.env[environment].budget_pause));
	else if (db.env[environment].backoff_until > GetCurrentTimestamp())
		values[0] = CStringGetTextDatum(psprintf("backing off until %s",
												 timestamptz_to_str(db.env[environment].backoff_until)));
	else
		values[0] = CStringGetTextDatum("running");
	if (found && db.env[environment].last_error[0] != '\0')
		values[1] = CStringGetTextDatum(db.env[environment].last_error);
	else
		nulls[1] = true;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* calls_per_second returns a decaying rate of calls, decayed to now */
static double
calls_per_second(const EnrichDatabase *db, int tier, TimestampTz now)
{
	double		age = Max(0, now - db->calls_at[tier]) / 1e6;

	return db->calls_rate[tier] * exp(-age / ENRICH_CALLS_RATE_SECONDS);
}

/*
 * enrich_databases() returns a row per database the launcher serves or
 * looks at: its name, whether enrich is installed there (served, probing,
 * not installed), the workers granted and running, their process ids, and
 * their calls a second of each tier (over about 10 s) with their share of
 * the key's tier 4 budget
 */
Datum
enrich_databases_served(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	EnrichDatabase *entries = palloc(sizeof(EnrichDatabase) * ENRICH_MAX_DATABASES);
	int			n = enrich_shared_databases_copy(entries);
	TimestampTz now = GetCurrentTimestamp();
	static const char *const states[] = {"probing", "served", "not installed"};

	InitMaterializedSRF(fcinfo, 0);
	for (int d = 0; d < n; d++)
	{
		Datum		values[8];
		bool		nulls[8] = {false};
		Datum		pids[ENRICH_MAX_WORKERS];
		int			npids = 0;
		double		read = calls_per_second(&entries[d], ENRICH_TIER_READ, now);

		for (int i = 0; i < ENRICH_MAX_WORKERS; i++)
			if (entries[d].workers[i].pid != 0)
				pids[npids++] = Int32GetDatum(entries[d].workers[i].pid);
		values[0] = CStringGetTextDatum(entries[d].name);
		values[1] = CStringGetTextDatum(states[entries[d].state]);
		values[2] = Int32GetDatum(entries[d].granted);
		values[3] = Int32GetDatum(npids);
		values[4] = PointerGetDatum(construct_array(pids, npids, INT4OID, sizeof(int32), true,
													TYPALIGN_INT));
		values[5] = Float8GetDatum(calls_per_second(&entries[d], ENRICH_TIER_BULK, now));
		values[6] = Float8GetDatum(read);
		values[7] = Float8GetDatum(enrich_tier4_rate > 0 ? read / enrich_tier4_rate : 0);
		nulls[7] = enrich_tier4_rate == 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
