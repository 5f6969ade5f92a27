/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher: one background worker, connected to no database, that
 *	  serves every database of enrich.databases (all by default) that takes
 *	  connections.  It probes each with one worker, which finds whether
 *	  enrich is installed there; where it is, it starts the database's
 *	  enrich.workers workers as dynamic background workers (within
 *	  enrich.max_workers for the whole cluster: each database gets one
 *	  before any gets a second), and starts one again when it exits; where
 *	  it is not, nothing runs until CREATE EXTENSION commits there (which
 *	  wakes the launcher).  It says at most once a minute why a database a
 *	  setting names is not served, and stops the workers of a database
 *	  while a statement needs it alone (utility.c asks for that through
 *	  shared memory) or once it is no longer to be served.
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
#include "common/hashfn.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "compat.h"
#include "guc.h"
#include "launcher.h"
#include "shared.h"

PGDLLEXPORT void enrich_launcher_main(Datum main_arg);

/* a database of pg_database, as the launcher found it */
typedef struct FoundDatabase
{
	Oid			oid;
	NameData	name;
	bool		serve;			/* listed, a template of none, takes connections */
} FoundDatabase;

/* how often the launcher looks at the databases when nothing wakes it */
#define LAUNCHER_LOOK_MS 1000
/* the least time between two log lines saying the same thing */
#define LAUNCHER_SAY_AGAIN_MS 60000

/* the workers this launcher started, by database entry and slot */
static BackgroundWorkerHandle *handles[ENRICH_MAX_DATABASES][ENRICH_MAX_WORKERS];

/* the databases the cap left without a worker, by entry, as last said */
static Oid	left_out_said[ENRICH_MAX_DATABASES];

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
 * find_databases reads pg_database, a shared catalog that a process
 * connected to no database reads by a plain scan (no index of it is open
 * to it), into a palloc'd array; *n is how many
 */
static FoundDatabase *
find_databases(int *n)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	int			size = 16;
	FoundDatabase *found = palloc(sizeof(FoundDatabase) * size);

	*n = 0;
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tuple);
		bool		explicit;

		if (*n == size)
			found = repalloc(found, sizeof(FoundDatabase) * (size *= 2));
		found[*n].oid = db->oid;
		found[*n].name = db->datname;
		found[*n].serve = db->datallowconn && !db->datistemplate &&
			enrich_database_listed(NameStr(db->datname), &explicit);
		(*n)++;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return found;
}

/*
 * listed_problem returns what is wrong with a database a list names
 * (enrich.database or enrich.databases), or NULL: it does not exist, or
 * takes no connections; the message names the setting
 */
static char *
listed_problem(const char *name, const FoundDatabase *found, int n)
{
	const char *setting = enrich_database[0] != '\0' ? "enrich.database" : "enrich.databases";

	for (int i = 0; i < n; i++)
		if (strcmp(NameStr(found[i].name), name) == 0)
			return found[i].serve ? NULL :
				psprintf("database \"%s\" named by %s does not allow connections", name, setting);
	return psprintf("database \"%s\" named by %s does not exist", name, setting);
}

/*
 * say_problems logs what is wrong with the databases the settings name,
 * when that changed or a minute passed since it was said
 */
static void
say_problems(const FoundDatabase *found, int n)
{
	static uint32 said = 0;
	static TimestampTz said_at = 0;
	char	   *copy = pstrdup(enrich_database[0] != '\0' ? enrich_database : enrich_databases);
	List	   *names = NIL;
	List	   *problems = NIL;
	ListCell   *lc;
	uint32		hash = 0;

	if (enrich_database[0] != '\0')
		names = list_make1(copy);
	else if (strcmp(copy, "*") == 0 || !SplitIdentifierString(copy, ',', &names))
		names = NIL;
	foreach(lc, names)
	{
		char	   *problem = listed_problem((char *) lfirst(lc), found, n);

		if (problem == NULL)
			continue;
		problems = lappend(problems, problem);
		hash = hash_combine(hash, hash_bytes((unsigned char *) problem, strlen(problem)));
	}
	if (hash == 0 || (hash == said && !TimestampDifferenceExceeds(said_at, GetCurrentTimestamp(),
																	LAUNCHER_SAY_AGAIN_MS)))
	{
		said = hash;
		return;
	}
	said = hash;
	said_at = GetCurrentTimestamp();
	foreach(lc, problems)
		ereport(LOG,
				(errmsg("enrich launcher: %s", (char *) lfirst(lc)),
				 errdetail("The enrich workers start there when it does."),
				 errhint("Create the database (and the extension enrich in it), allow connections to it, or change the setting.")));
}

/*
 * start_worker starts the worker of a slot of a database entry; false when
 * no background worker slot is free (max_worker_processes), said once a
 * minute
 */
static bool
start_worker(int index, int slot, const FoundDatabase *db)
{
	static TimestampTz said_at = 0;
	BackgroundWorker worker;
	EnrichWorkerExtra extra;
	MemoryContext old;
	bool		registered;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "enrich");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "enrich_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "enrich worker %d of %s", slot, NameStr(db->name));
	snprintf(worker.bgw_type, BGW_MAXLEN, "enrich worker");
	worker.bgw_main_arg = Int32GetDatum(slot);
	StaticAssertStmt(sizeof(EnrichWorkerExtra) <= BGW_EXTRALEN, "EnrichWorkerExtra does not fit in bgw_extra");
	extra.database = db->oid;
	extra.index = index;
	extra.name = db->name;
	memcpy(worker.bgw_extra, &extra, sizeof(extra));
	worker.bgw_notify_pid = MyProcPid;
	/* the handle outlives the look (whose memory is reset after it) */
	old = MemoryContextSwitchTo(TopMemoryContext);
	registered = RegisterDynamicBackgroundWorker(&worker, &handles[index][slot]);
	MemoryContextSwitchTo(old);
	if (registered)
		return true;
	handles[index][slot] = NULL;
	if (TimestampDifferenceExceeds(said_at, GetCurrentTimestamp(), LAUNCHER_SAY_AGAIN_MS))
	{
		said_at = GetCurrentTimestamp();
		ereport(LOG,
				(errmsg("enrich launcher: could not start enrich worker %d of database \"%s\": no background worker slot is free",
						slot, NameStr(db->name)),
				 errhint("Raise max_worker_processes: enrich needs one more than the workers it runs (enrich.workers per database, enrich.max_workers in all).")));
	}
	return false;
}

/*
 * worker_runs says whether the worker of a slot of a database entry runs
 * or is about to (its handle says so, or, for a worker this launcher did
 * not start, shared memory)
 */
static bool
worker_runs(int index, int slot)
{
	pid_t		pid;

	if (handles[index][slot] != NULL)
	{
		if (GetBackgroundWorkerPid(handles[index][slot], &pid) != BGWH_STOPPED)
			return true;
		pfree(handles[index][slot]);
		handles[index][slot] = NULL;
	}
	return enrich_shared_worker_pid(index, slot) != 0;
}

/*
 * stop_workers stops the workers of a database entry from slot first on:
 * those this launcher started by their handles, any other (started by a
 * launcher before this one) by its pid; returns whether none runs now
 */
static bool
stop_workers(int index, int first)
{
	bool		none = true;

	for (int slot = first; slot < ENRICH_MAX_WORKERS; slot++)
	{
		pid_t		pid = enrich_shared_worker_pid(index, slot);

		if (handles[index][slot] != NULL)
		{
			TerminateBackgroundWorker(handles[index][slot]);
			pfree(handles[index][slot]);
			handles[index][slot] = NULL;
		}
		else if (pid != 0)
			(void) kill(pid, SIGTERM);
		none &= pid == 0;
	}
	return none;
}

/*
 * forget_databases stops the workers of the entries whose database is no
 * longer one to serve (dropped, no longer listed, a template, or taking no
 * connections) and frees each entry once its workers are gone
 */
static void
forget_databases(const FoundDatabase *found, int n)
{
	EnrichDatabase *entries = palloc(sizeof(EnrichDatabase) * ENRICH_MAX_DATABASES);
	int			nentries = enrich_shared_databases_copy(entries);

	for (int e = 0; e < nentries; e++)
	{
		bool		serve = false;
		int			index = enrich_shared_database_index(entries[e].database, entries[e].name, false);

		for (int i = 0; i < n; i++)
			serve |= found[i].oid == entries[e].database && found[i].serve;
		if (!serve && index >= 0 && stop_workers(index, 0))
			enrich_shared_database_release(index);
	}
	pfree(entries);
}

/*
 * grant_workers shares enrich.max_workers among the databases where enrich
 * is installed: each one gets one before any gets a second, up to what it
 * wants (enrich.workers); fills granted, by position in wants
 */
static void
grant_workers(const int *wants, int *granted, int n)
{
	int			total = 0;

	for (int i = 0; i < n; i++)
		granted[i] = 0;
	for (int round = 0; round < ENRICH_MAX_WORKERS; round++)
		for (int i = 0; i < n && total < enrich_max_workers; i++)
			if (wants[i] > round)
			{
				granted[i]++;
				total++;
			}
}

/*
 * say_left_out logs, once until it changes, that the cap left a database
 * that wants workers without one
 */
static void
say_left_out(int index, const FoundDatabase *db, bool left_out)
{
	if (!left_out)
	{
		left_out_said[index] = InvalidOid;
		return;
	}
	if (left_out_said[index] == db->oid)
		return;
	left_out_said[index] = db->oid;
	ereport(LOG,
			(errmsg("enrich launcher: no worker for database \"%s\": enrich.max_workers (%d) are all given to other databases",
					NameStr(db->name), enrich_max_workers),
			 errhint("Raise enrich.max_workers (and max_worker_processes), or leave databases out of enrich.databases.")));
}

/*
 * serve_databases makes each database to serve an entry, grants the
 * workers, and starts or stops each entry's workers to match: one while
 * enrich is probed there (outside the cap: a probe of a database without
 * enrich ends at once), enrich.workers (or what the cap leaves) while it
 * is installed, none while it is not or a statement needs it alone
 */
static void
serve_databases(const FoundDatabase *found, int n)
{
	int		   *indexes = palloc(sizeof(int) * Max(n, 1));
	int		   *wants = palloc(sizeof(int) * Max(n, 1));
	int		   *granted = palloc(sizeof(int) * Max(n, 1));
	bool	   *probe = palloc0(sizeof(bool) * Max(n, 1));
	bool	   *absent = palloc0(sizeof(bool) * Max(n, 1));
	TimestampTz now = GetCurrentTimestamp();

	for (int i = 0; i < n; i++)
	{
		EnrichDatabaseState state;

		wants[i] = 0;
		indexes[i] = found[i].serve ?
			enrich_shared_database_index(found[i].oid, NameStr(found[i].name), true) : -1;
		if (indexes[i] < 0 || enrich_shared_aside(found[i].oid, now))
			continue;
		state = enrich_shared_database_state(indexes[i]);
		wants[i] = state == ENRICH_DB_SERVED ? enrich_workers : 0;
		probe[i] = state == ENRICH_DB_PROBE;
		absent[i] = state == ENRICH_DB_ABSENT;
	}
	grant_workers(wants, granted, n);
	for (int i = 0; i < n; i++)
	{
		if (indexes[i] < 0)
			continue;
		if (probe[i])
			granted[i] = 1;		/* a probe is short: the cap does not count it */
		enrich_shared_database_grant(indexes[i], granted[i]);
		say_left_out(indexes[i], &found[i], wants[i] > 0 && granted[i] == 0);
		/* a worker that found enrich absent leaves by itself */
		if (!absent[i])
			(void) stop_workers(indexes[i], granted[i]);
		for (int slot = 0; slot < granted[i]; slot++)
			if (!worker_runs(indexes[i], slot) && !start_worker(indexes[i], slot, &found[i]))
				break;
	}
}

/*
 * launcher_look looks at the databases once: forgets those no longer to
 * serve, and serves the others
 */
static void
launcher_look(void)
{
	int			n;
	FoundDatabase *found;

	(void) enrich_shared_rescan_asked();
	found = find_databases(&n);
	say_problems(found, n);
	forget_databases(found, n);
	serve_databases(found, n);
	pfree(found);
}

/*
 * enrich_launcher_main is the launcher's entry point: connected to no
 * database, it looks every second, and at once when a worker starts or
 * stops, a CREATE EXTENSION commits in a database with no worker, or a
 * statement asks the workers to step aside (its latch)
 */
void
enrich_launcher_main(Datum main_arg)
{
	MemoryContext look_context;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	enrich_shared_launcher_started();
	pgstat_report_appname("enrich launcher");
	look_context = AllocSetContextCreate(TopMemoryContext, "enrich launcher look",
										 ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextSwitchTo(look_context);
		launcher_look();
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(look_context);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | WL_TIMEOUT,
						 LAUNCHER_LOOK_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
