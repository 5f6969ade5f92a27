/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher: one background worker, connected to no database, that
 *	  starts the enrich.workers workers of enrich.database as dynamic
 *	  background workers while that database exists and takes connections,
 *	  starts one again when it exits, says at most once a minute why it
 *	  cannot, and stops them while a statement needs their database alone
 *	  (utility.c asks for that through shared memory).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "guc.h"
#include "launcher.h"
#include "shared.h"

PGDLLEXPORT void enrich_launcher_main(Datum main_arg);

/* what the launcher found of enrich.database */
typedef enum LauncherFinding
{
	FOUND_SERVE,				/* it exists and takes connections */
	FOUND_MISSING,				/* no database has that name */
	FOUND_NO_CONNECTIONS,		/* ALLOW_CONNECTIONS false */
	FOUND_ASIDE					/* a statement needs it alone */
} LauncherFinding;

/* how often the launcher looks at the database when nothing wakes it */
#define LAUNCHER_LOOK_MS 1000
/* the least time between two log lines saying the same thing */
#define LAUNCHER_SAY_AGAIN_MS 60000

static BackgroundWorkerHandle *handles[ENRICH_MAX_WORKERS];

/*
 * enrich_launcher_init registers the launcher when enrich is preloaded
 * (not in a server pg_upgrade runs: its catalog and files are being made);
 * the postmaster starts it again 5 seconds after it exits
 */
void
enrich_launcher_init(void)
{
	BackgroundWorker worker;

	if (!process_shared_preload_libraries_in_progress || IsBinaryUpgrade)
		return;
	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "enrich");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "enrich_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "enrich launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "enrich launcher");
	RegisterBackgroundWorker(&worker);
}

/*
 * look_at_database finds enrich.database in pg_database, a shared catalog
 * that a process connected to no database reads by a plain scan (no index
 * of it is open to it), and says whether the workers may serve it
 */
static LauncherFinding
look_at_database(Oid *database)
{
	LauncherFinding finding = FOUND_MISSING;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;

	*database = InvalidOid;
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tuple);

		if (strcmp(NameStr(db->datname), enrich_database) != 0)
			continue;
		*database = db->oid;
		finding = db->datallowconn ? FOUND_SERVE : FOUND_NO_CONNECTIONS;
		break;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	if (finding == FOUND_SERVE && enrich_shared_aside(*database, GetCurrentTimestamp()))
		finding = FOUND_ASIDE;
	return finding;
}

/*
 * say_why logs why the workers do not run, when that changed or a minute
 * passed since it was said
 */
static void
say_why(LauncherFinding finding)
{
	static LauncherFinding said = FOUND_SERVE;
	static TimestampTz said_at = 0;
	TimestampTz now = GetCurrentTimestamp();

	if (finding == FOUND_SERVE || finding == FOUND_ASIDE ||
		(finding == said && !TimestampDifferenceExceeds(said_at, now, LAUNCHER_SAY_AGAIN_MS)))
	{
		if (finding == FOUND_SERVE)
			said = FOUND_SERVE;
		return;
	}
	said = finding;
	said_at = now;
	if (finding == FOUND_MISSING)
		ereport(LOG,
				(errmsg("enrich launcher: database \"%s\" named by enrich.database does not exist",
						enrich_database),
				 errdetail("The enrich workers start when it exists."),
				 errhint("Create the database and the extension enrich in it, or set enrich.database to the database where enrich is installed.")));
	else
		ereport(LOG,
				(errmsg("enrich launcher: database \"%s\" named by enrich.database does not allow connections",
						enrich_database),
				 errdetail("The enrich workers start when it does."),
				 errhint("Run ALTER DATABASE %s ALLOW_CONNECTIONS true, or set enrich.database to another database.",
						 quote_identifier(enrich_database))));
}

/*
 * start_worker starts the worker of a slot in a database; false when no
 * background worker slot is free (max_worker_processes), said once a minute
 */
static bool
start_worker(int slot, Oid database)
{
	static TimestampTz said_at = 0;
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "enrich");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "enrich_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "enrich worker %d", slot);
	snprintf(worker.bgw_type, BGW_MAXLEN, "enrich worker");
	worker.bgw_main_arg = Int32GetDatum(slot);
	memcpy(worker.bgw_extra, &database, sizeof(Oid));
	worker.bgw_notify_pid = MyProcPid;
	if (RegisterDynamicBackgroundWorker(&worker, &handles[slot]))
		return true;
	handles[slot] = NULL;
	if (TimestampDifferenceExceeds(said_at, GetCurrentTimestamp(), LAUNCHER_SAY_AGAIN_MS))
	{
		said_at = GetCurrentTimestamp();
		ereport(LOG,
				(errmsg("enrich launcher: could not start enrich worker %d: no background worker slot is free", slot),
				 errhint("Raise max_worker_processes: enrich needs enrich.workers plus one.")));
	}
	return false;
}

/*
 * worker_runs says whether the worker of a slot runs or is about to (its
 * handle says so, or, for a worker this launcher did not start, shared
 * memory)
 */
static bool
worker_runs(int slot)
{
	pid_t		pid;

	if (handles[slot] != NULL)
	{
		if (GetBackgroundWorkerPid(handles[slot], &pid) != BGWH_STOPPED)
			return true;
		pfree(handles[slot]);
		handles[slot] = NULL;
	}
	return enrich_shared_worker_pid(slot) != 0;
}

/*
 * stop_workers stops the workers: those this launcher started by their
 * handles, any other (started by a launcher before this one) by its pid
 */
static void
stop_workers(void)
{
	for (int slot = 0; slot < enrich_workers; slot++)
	{
		pid_t		pid = enrich_shared_worker_pid(slot);

		if (handles[slot] != NULL)
		{
			TerminateBackgroundWorker(handles[slot]);
			pfree(handles[slot]);
			handles[slot] = NULL;
		}
		else if (pid != 0)
			(void) kill(pid, SIGTERM);
	}
}

/*
 * launcher_look looks at the database once: starts the workers that do
 * not run when they may serve it, or stops them while a statement needs it
 */
static void
launcher_look(void)
{
	Oid			database;
	LauncherFinding finding = look_at_database(&database);

	say_why(finding);
	if (finding == FOUND_ASIDE)
		stop_workers();
	if (finding != FOUND_SERVE)
		return;
	for (int slot = 0; slot < enrich_workers; slot++)
		if (!worker_runs(slot) && !start_worker(slot, database))
			break;
}

/*
 * enrich_launcher_main is the launcher's entry point: connected to no
 * database, it looks every second, and at once when a worker starts or
 * stops or a statement asks the workers to step aside (its latch)
 */
void
enrich_launcher_main(Datum main_arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	enrich_shared_launcher_started();
	pgstat_report_appname("enrich launcher");

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		launcher_look();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | WL_TIMEOUT,
						 LAUNCHER_LOOK_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
