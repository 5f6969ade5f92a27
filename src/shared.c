/*-------------------------------------------------------------------------
 *
 * shared.c
 *	  The shared memory between backends, the launcher and the workers, and
 *	  the wakeups through it.  One entry per database the launcher serves
 *	  (or probes): which processes its workers are (to set their latches,
 *	  and to tell a submission in flight from one left in doubt), how many
 *	  the launcher grants it, whether enrich is installed there, their state
 *	  per environment (running, paused, backing off; the last error) and a
 *	  generation counter of its API keys, and its recent calls.  And the
 *	  launcher: its process, and the database its workers step out of for a
 *	  statement that needs it alone.  (The rate budgets of the API keys,
 *	  which the databases share, are budget.c's.)
 *
 * Wakeups happen at commit: a transaction that queues work or sets a key
 * asks for one, and a transaction callback sets the workers' latches only
 * if it commits, so a worker never looks for rows that are not visible yet.
 * In a database with no worker (CREATE EXTENSION just committed), the
 * wakeup goes to the launcher.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "guc.h"
#include "shared.h"

typedef struct EnrichShared
{
	slock_t		mutex;
	EnrichWorkerSlot launcher;
	bool		rescan;			/* a backend asks the launcher to look now */
	Oid			aside_database; /* the workers stay out of it until ... */
	TimestampTz aside_until;	/* ... this time (0: they go anywhere) */
	EnrichDatabase databases[ENRICH_MAX_DATABASES];
} EnrichShared;

bool		enrich_in_worker = false;

static EnrichShared *enrich_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool wake_pending = false;
static bool keys_changed_pending = false;
static bool xact_callback_registered = false;
static int	my_database = -1;	/* the index of this process's database, when known */

/* enrich_shmem_request asks the postmaster for our shared memory */
static void
enrich_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(EnrichShared)));
}

/* enrich_shmem_startup creates or attaches our shared memory */
static void
enrich_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	enrich_shared = ShmemInitStruct("enrich", sizeof(EnrichShared), &found);
	if (!found)
	{
		memset(enrich_shared, 0, sizeof(EnrichShared));
		SpinLockInit(&enrich_shared->mutex);
		for (int d = 0; d < ENRICH_MAX_DATABASES; d++)
			for (int i = 0; i < ENRICH_MAX_WORKERS; i++)
				enrich_shared->databases[d].workers[i].procno = -1;
		enrich_shared->launcher.procno = -1;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * enrich_shared_init installs the shared memory hooks; without
 * shared_preload_libraries there is no shared memory and no worker, and
 * wakeups do nothing
 */
void
enrich_shared_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = enrich_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = enrich_shmem_startup;
}

/*
 * my_entry returns the entry of this process's database, or NULL when the
 * launcher has none for it; the spinlock is held
 */
static EnrichDatabase *
my_entry(void)
{
	if (my_database >= 0 && enrich_shared->databases[my_database].database == MyDatabaseId)
		return &enrich_shared->databases[my_database];
	if (enrich_in_worker || !OidIsValid(MyDatabaseId))
		return NULL;			/* a worker knows its entry, or has none */
	for (int d = 0; d < ENRICH_MAX_DATABASES; d++)
		if (enrich_shared->databases[d].database == MyDatabaseId)
		{
			my_database = d;
			return &enrich_shared->databases[d];
		}
	return NULL;
}

/* set_latch_of wakes a process by its PGPROC number */
static void
set_latch_of(int procno)
{
	if (procno >= 0 && procno != ENRICH_MY_PROC_NUMBER)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

/*
 * enrich_shared_wake_workers wakes every worker of this database that runs
 * but this one, now: for a commit that queued work, or for what a worker
 * committed or left.  When none runs because enrich was not installed here
 * (or the launcher has not looked at this database yet), the launcher is
 * woken to look: a CREATE EXTENSION gets its workers within a second.
 */
void
enrich_shared_wake_workers(void)
{
	int			procnos[ENRICH_MAX_WORKERS];
	int			launcher = -1;
	EnrichDatabase *db;

	if (enrich_shared == NULL)
		return;
	SpinLockAcquire(&enrich_shared->mutex);
	db = my_entry();
	for (int i = 0; i < ENRICH_MAX_WORKERS; i++)
		procnos[i] = db ? db->workers[i].procno : -1;
	if (db != NULL)
		db->wake_generation++;
	if (db != NULL && db->state == ENRICH_DB_ABSENT && !db->created && !enrich_in_worker)
	{
		db->created = true;
		launcher = enrich_shared->launcher.procno;
	}
	else if (db == NULL && !enrich_in_worker && !enrich_shared->rescan)
	{
		enrich_shared->rescan = true;
		launcher = enrich_shared->launcher.procno;
	}
	SpinLockRelease(&enrich_shared->mutex);
	for (int i = 0; i < ENRICH_MAX_WORKERS; i++)
		set_latch_of(procnos[i]);
	set_latch_of(launcher);
}

/* enrich_xact_callback delivers the wakeups a committed transaction asked for */
static void
enrich_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (keys_changed_pending && enrich_shared != NULL)
			{
				EnrichDatabase *db;

				SpinLockAcquire(&enrich_shared->mutex);
				if ((db = my_entry()) != NULL)
					db->keys_generation++;
				SpinLockRelease(&enrich_shared->mutex);
			}
			if (wake_pending || keys_changed_pending)
				enrich_shared_wake_workers();
			wake_pending = keys_changed_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a prepared transaction wakes at COMMIT PREPARED (below) */
			wake_pending = keys_changed_pending = false;
			break;
		default:
			break;
	}
}

/* enrich_register_xact_callback registers the callback once per process */
static void
enrich_register_xact_callback(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(enrich_xact_callback, NULL);
		xact_callback_registered = true;
	}
}

/* enrich_wake_at_commit wakes the workers when this transaction commits */
void
enrich_wake_at_commit(void)
{
	if (enrich_in_worker)
		return;
	enrich_register_xact_callback();
	wake_pending = true;
}

/*
 * enrich_keys_changed_at_commit tells the worker, when this transaction
 * commits, that a key changed: a paused environment resumes
 */
void
enrich_keys_changed_at_commit(void)
{
	enrich_register_xact_callback();
	keys_changed_pending = true;
}

/*
 * enrich_shared_worker_exit frees the slot of a worker that exits, and wakes
 * the others: its share of the batches is theirs now, and what it claimed
 * and did not record is for them to reconcile
 */
static void
enrich_shared_worker_exit(int code, Datum arg)
{
	int			slot = DatumGetInt32(arg);

	if (enrich_shared == NULL || my_database < 0)
		return;
	SpinLockAcquire(&enrich_shared->mutex);
	enrich_shared->databases[my_database].workers[slot].procno = -1;
	enrich_shared->databases[my_database].workers[slot].pid = 0;
	SpinLockRelease(&enrich_shared->mutex);
	enrich_shared_wake_workers();
}

/*
 * enrich_shared_worker_started records this process as the worker of a
 * slot of the database entry index (connected to it); false when the entry
 * is another database's now, or another worker has the slot (a launcher
 * started again did not know it ran), and this one is not needed
 */
bool
enrich_shared_worker_started(int index, int slot)
{
	EnrichDatabase *db;
	bool		free;

	enrich_in_worker = true;
	if (enrich_shared == NULL)
		return true;
	SpinLockAcquire(&enrich_shared->mutex);
	db = &enrich_shared->databases[index];
	free = db->database == MyDatabaseId && db->workers[slot].pid == 0;
	if (free)
	{
		my_database = index;
		db->workers[slot].procno = ENRICH_MY_PROC_NUMBER;
		db->workers[slot].pid = MyProcPid;
	}
	SpinLockRelease(&enrich_shared->mutex);
	if (free)
		on_shmem_exit(enrich_shared_worker_exit, Int32GetDatum(slot));
	return free;
}

/*
 * enrich_shared_database_installed records what a worker found: enrich is
 * installed in its database (served), or not (absent: the launcher starts
 * nothing there until CREATE EXTENSION); returns the state before
 */
EnrichDatabaseState
enrich_shared_database_installed(bool installed)
{
	EnrichDatabaseState before = ENRICH_DB_PROBE;
	EnrichDatabase *db;
	int			launcher;

	if (enrich_shared == NULL)
		return before;
	SpinLockAcquire(&enrich_shared->mutex);
	if ((db = my_entry()) != NULL)
	{
		before = db->state;
		db->state = installed ? ENRICH_DB_SERVED : ENRICH_DB_ABSENT;
	}
	launcher = enrich_shared->launcher.procno;
	SpinLockRelease(&enrich_shared->mutex);
	if (before != (installed ? ENRICH_DB_SERVED : ENRICH_DB_ABSENT))
		set_latch_of(launcher);
	return before;
}

/*
 * enrich_shared_worker_pid returns the process id of the worker of a slot
 * of a database entry, or 0
 */
pid_t
enrich_shared_worker_pid(int index, int slot)
{
	pid_t		pid;

	if (enrich_shared == NULL)
		return 0;
	SpinLockAcquire(&enrich_shared->mutex);
	pid = enrich_shared->databases[index].workers[slot].pid;
	SpinLockRelease(&enrich_shared->mutex);
	return pid;
}

/* enrich_shared_launcher_exit forgets the launcher's process */
static void
enrich_shared_launcher_exit(int code, Datum arg)
{
	SpinLockAcquire(&enrich_shared->mutex);
	enrich_shared->launcher.procno = -1;
	enrich_shared->launcher.pid = 0;
	SpinLockRelease(&enrich_shared->mutex);
}

/* enrich_shared_launcher_started records this process as the launcher */
void
enrich_shared_launcher_started(void)
{
	SpinLockAcquire(&enrich_shared->mutex);
	enrich_shared->launcher.procno = ENRICH_MY_PROC_NUMBER;
	enrich_shared->launcher.pid = MyProcPid;
	SpinLockRelease(&enrich_shared->mutex);
	on_shmem_exit(enrich_shared_launcher_exit, (Datum) 0);
}

/*
 * enrich_shared_rescan_asked says whether a backend asked the launcher to
 * look at the databases again (a CREATE EXTENSION in a database it has no
 * entry for), and forgets the asking
 */
bool
enrich_shared_rescan_asked(void)
{
	bool		asked;

	SpinLockAcquire(&enrich_shared->mutex);
	asked = enrich_shared->rescan;
	enrich_shared->rescan = false;
	SpinLockRelease(&enrich_shared->mutex);
	return asked;
}

/*
 * enrich_shared_database_index returns the index of a database's entry;
 * with claim, a free entry is made its own (to probe) when it has none.
 * -1: none (every entry taken, with claim).
 */
int
enrich_shared_database_index(Oid database, const char *name, bool claim)
{
	int			index = -1;
	int			free = -1;

	SpinLockAcquire(&enrich_shared->mutex);
	for (int d = 0; d < ENRICH_MAX_DATABASES && index < 0; d++)
	{
		if (enrich_shared->databases[d].database == database)
			index = d;
		else if (free < 0 && !OidIsValid(enrich_shared->databases[d].database))
			free = d;
	}
	if (index < 0 && claim && free >= 0)
	{
		EnrichDatabase *db = &enrich_shared->databases[free];

		db->database = database;
		db->state = ENRICH_DB_PROBE;
		db->created = false;
		db->granted = 0;
		memset(db->env, 0, sizeof(db->env));
		index = free;
	}
	if (index >= 0)
		strlcpy(enrich_shared->databases[index].name, name, NAMEDATALEN);
	SpinLockRelease(&enrich_shared->mutex);
	return index;
}

/*
 * enrich_shared_database_state returns the state of a database entry: an
 * absent one where CREATE EXTENSION committed since is to be probed again
 */
EnrichDatabaseState
enrich_shared_database_state(int index)
{
	EnrichDatabase *db = &enrich_shared->databases[index];
	EnrichDatabaseState state;

	SpinLockAcquire(&enrich_shared->mutex);
	if (db->state == ENRICH_DB_ABSENT && db->created)
		db->state = ENRICH_DB_PROBE;
	db->created = false;
	state = db->state;
	SpinLockRelease(&enrich_shared->mutex);
	return state;
}

/* enrich_shared_database_grant records how many workers a database gets */
void
enrich_shared_database_grant(int index, int granted)
{
	SpinLockAcquire(&enrich_shared->mutex);
	enrich_shared->databases[index].granted = granted;
	SpinLockRelease(&enrich_shared->mutex);
}

/*
 * enrich_shared_database_release frees the entry of a database the launcher
 * no longer serves (dropped, or no longer in enrich.databases), once its
 * workers stopped
 */
void
enrich_shared_database_release(int index)
{
	SpinLockAcquire(&enrich_shared->mutex);
	enrich_shared->databases[index].database = InvalidOid;
	enrich_shared->databases[index].granted = 0;
	SpinLockRelease(&enrich_shared->mutex);
}

/*
 * enrich_shared_step_aside asks the launcher to keep the workers out of a
 * database until a time (0: from now on they may go there again), and
 * wakes it to act at once
 */
void
enrich_shared_step_aside(Oid database, TimestampTz until)
{
	int			procno;

	if (enrich_shared == NULL)
		return;
	SpinLockAcquire(&enrich_shared->mutex);
	enrich_shared->aside_database = database;
	enrich_shared->aside_until = until;
	procno = enrich_shared->launcher.procno;
	SpinLockRelease(&enrich_shared->mutex);
	set_latch_of(procno);
}

/* enrich_shared_aside says whether the workers stay out of a database now */
bool
enrich_shared_aside(Oid database, TimestampTz now)
{
	bool		aside;

	if (enrich_shared == NULL)
		return false;
	SpinLockAcquire(&enrich_shared->mutex);
	aside = enrich_shared->aside_database == database && now < enrich_shared->aside_until;
	SpinLockRelease(&enrich_shared->mutex);
	return aside;
}

/* enrich_shared_serves says whether the launcher has an entry for a database */
bool
enrich_shared_serves(Oid database)
{
	bool		serves = false;

	if (enrich_shared == NULL)
		return false;
	SpinLockAcquire(&enrich_shared->mutex);
	for (int d = 0; d < ENRICH_MAX_DATABASES; d++)
		serves |= enrich_shared->databases[d].database == database;
	SpinLockRelease(&enrich_shared->mutex);
	return serves;
}

/*
 * enrich_shared_other_workers fills pids with the process ids of the other
 * workers of this database that run (ENRICH_MAX_WORKERS at most) and
 * returns how many.  A worker registers before it claims anything and
 * stays registered until it exits, so a submission claimed by one of them
 * is in flight, not in doubt.
 */
int
enrich_shared_other_workers(int32 *pids)
{
	int			n = 0;
	EnrichDatabase *db;

	if (enrich_shared == NULL)
		return 0;
	SpinLockAcquire(&enrich_shared->mutex);
	if ((db = my_entry()) != NULL)
		for (int i = 0; i < ENRICH_MAX_WORKERS; i++)
			if (db->workers[i].pid != 0 && db->workers[i].pid != MyProcPid)
				pids[n++] = (int32) db->workers[i].pid;
	SpinLockRelease(&enrich_shared->mutex);
	return n;
}

/*
 * enrich_shared_worker_rank returns this worker's rank among the workers
 * of its database that run, in the order of their slots, and sets *running
 * to how many run (this one at least)
 */
int
enrich_shared_worker_rank(int *running)
{
	int			rank = 0;
	int			n = 0;
	EnrichDatabase *db;

	*running = 1;
	if (enrich_shared == NULL)
		return 0;
	SpinLockAcquire(&enrich_shared->mutex);
	if ((db = my_entry()) != NULL)
		for (int i = 0; i < ENRICH_MAX_WORKERS; i++)
		{
			if (db->workers[i].pid == 0)
				continue;
			if (db->workers[i].pid == MyProcPid)
				rank = n;
			n++;
		}
	SpinLockRelease(&enrich_shared->mutex);
	*running = Max(n, 1);
	return rank;
}

/*
 * enrich_shared_count_call adds a call of a tier to this database's rate of
 * calls (a rate that decays over ENRICH_CALLS_RATE_SECONDS), which
 * enrich_databases() shows
 */
void
enrich_shared_count_call(int tier, TimestampTz now)
{
	EnrichDatabase *db;

	if (enrich_shared == NULL)
		return;
	SpinLockAcquire(&enrich_shared->mutex);
	if ((db = my_entry()) != NULL)
	{
		double		age = Max(0, now - db->calls_at[tier]) / 1e6;

		db->calls_rate[tier] = db->calls_rate[tier] * exp(-age / ENRICH_CALLS_RATE_SECONDS) +
			1.0 / ENRICH_CALLS_RATE_SECONDS;
		db->calls_at[tier] = now;
	}
	SpinLockRelease(&enrich_shared->mutex);
}

/*
 * enrich_shared_keys_changed counts a change of the keys that a worker
 * found by reading them (one no wake told of): a pause ends with it
 */
void
enrich_shared_keys_changed(void)
{
	EnrichDatabase *db;

	if (enrich_shared == NULL)
		return;
	SpinLockAcquire(&enrich_shared->mutex);
	if ((db = my_entry()) != NULL)
		db->keys_generation++;
	SpinLockRelease(&enrich_shared->mutex);
}

/* enrich_shared_keys_generation returns how many times keys changed here */
uint64
enrich_shared_keys_generation(void)
{
	uint64		generation = 0;
	EnrichDatabase *db;

	if (enrich_shared == NULL)
		return 0;
	SpinLockAcquire(&enrich_shared->mutex);
	if ((db = my_entry()) != NULL)
		generation = db->keys_generation;
	SpinLockRelease(&enrich_shared->mutex);
	return generation;
}

/*
 * enrich_shared_wake_generation returns how many wakeups were asked for in
 * this database so far: a worker that reads it before a round and finds it
 * changed after knows a wake came during the round, even if a wait in the
 * round consumed the latch it set
 */
uint64
enrich_shared_wake_generation(void)
{
	uint64		generation = 0;
	EnrichDatabase *db;

	if (enrich_shared == NULL)
		return 0;
	SpinLockAcquire(&enrich_shared->mutex);
	if ((db = my_entry()) != NULL)
		generation = db->wake_generation;
	SpinLockRelease(&enrich_shared->mutex);
	return generation;
}

/*
 * enrich_shared_pause_env pauses an environment for every worker of this
 * database because the API refused its key, the one of keys_generation:
 * until the keys change, no worker calls it, a worker started meanwhile
 * included.  Returns whether the environment was not paused already (to
 * log once).
 */
bool
enrich_shared_pause_env(int environment, uint64 keys_generation, const char *message)
{
	EnrichDatabase *db;
	bool		newly = true;

	if (enrich_shared == NULL)
		return true;
	SpinLockAcquire(&enrich_shared->mutex);
	if ((db = my_entry()) != NULL)
	{
		EnrichEnvShared *env = &db->env[environment];

		newly = !(env->paused && env->paused_generation == keys_generation);
		env->paused = true;
		env->paused_generation = keys_generation;
		strlcpy(env->last_error, message, sizeof(env->last_error));
	}
	SpinLockRelease(&enrich_shared->mutex);
	return newly;
}

/* enrich_shared_env_paused says whether the API refused the current key */
bool
enrich_shared_env_paused(int environment)
{
	bool		paused = false;
	EnrichDatabase *db;

	if (enrich_shared == NULL)
		return false;
	SpinLockAcquire(&enrich_shared->mutex);
	if ((db = my_entry()) != NULL)
		paused = db->env[environment].paused &&
			db->env[environment].paused_generation == db->keys_generation;
	SpinLockRelease(&enrich_shared->mutex);
	return paused;
}

/*
 * enrich_shared_set_backoff publishes that an environment backs off until
 * a time (0: it no longer does); message NULL keeps the last error
 */
void
enrich_shared_set_backoff(int environment, TimestampTz until, const char *message)
{
	EnrichDatabase *db;

	if (enrich_shared == NULL)
		return;
	SpinLockAcquire(&enrich_shared->mutex);
	if ((db = my_entry()) != NULL)
	{
		db->env[environment].backoff_until = until;
		if (message != NULL)
			strlcpy(db->env[environment].last_error, message, sizeof(db->env[environment].last_error));
	}
	SpinLockRelease(&enrich_shared->mutex);
}

/*
 * enrich_shared_set_budget_pause publishes why an environment's budget
 * stops its submissions (NULL: it does not); it returns true when that
 * starts a pause
 */
bool
enrich_shared_set_budget_pause(int environment, const char *why)
{
	EnrichDatabase *db;
	bool		started = false;

	if (enrich_shared == NULL)
		return why != NULL;
	SpinLockAcquire(&enrich_shared->mutex);
	if ((db = my_entry()) != NULL)
	{
		char	   *pause = db->env[environment].budget_pause;

		started = why != NULL && pause[0] == '\0';
		strlcpy(pause, why != NULL ? why : "", sizeof(db->env[environment].budget_pause));
	}
	SpinLockRelease(&enrich_shared->mutex);
	return started;
}

/* enrich_shared_set_last_error publishes the last error of an environment */
void
enrich_shared_set_last_error(int environment, const char *message)
{
	EnrichDatabase *db;

	if (enrich_shared == NULL)
		return;
	SpinLockAcquire(&enrich_shared->mutex);
	if ((db = my_entry()) != NULL)
		strlcpy(db->env[environment].last_error, message, sizeof(db->env[environment].last_error));
	SpinLockRelease(&enrich_shared->mutex);
}

/*
 * enrich_shared_database_copy copies the entry of a database, its rates of
 * calls decayed to now, and says whether there is one; *installed says
 * whether enrich is in shared_preload_libraries at all
 */
bool
enrich_shared_database_copy(Oid database, EnrichDatabase *copy, bool *installed)
{
	bool		found = false;

	*installed = enrich_shared != NULL;
	if (enrich_shared == NULL)
		return false;
	SpinLockAcquire(&enrich_shared->mutex);
	for (int d = 0; d < ENRICH_MAX_DATABASES && !found; d++)
		if (enrich_shared->databases[d].database == database)
		{
			*copy = enrich_shared->databases[d];
			found = true;
		}
	SpinLockRelease(&enrich_shared->mutex);
	return found;
}

/*
 * enrich_shared_databases_copy copies every database entry in use into
 * copies (ENRICH_MAX_DATABASES of them) and returns how many
 */
int
enrich_shared_databases_copy(EnrichDatabase *copies)
{
	int			n = 0;

	if (enrich_shared == NULL)
		return 0;
	SpinLockAcquire(&enrich_shared->mutex);
	for (int d = 0; d < ENRICH_MAX_DATABASES; d++)
		if (OidIsValid(enrich_shared->databases[d].database))
			copies[n++] = enrich_shared->databases[d];
	SpinLockRelease(&enrich_shared->mutex);
	return n;
}
