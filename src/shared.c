/*-------------------------------------------------------------------------
 *
 * shared.c
 *	  The shared memory between backends and the workers, and the wakeups
 *	  through it: which processes the workers are (to set their latches, and
 *	  to tell a submission in flight from one left in doubt), their state per
 *	  environment (running, paused, backing off; the last error), the token
 *	  buckets of the API's rate tiers that the workers share, a
 *	  generation counter of the API keys, and the launcher: its process, and
 *	  the database its workers step out of for a statement that needs it
 *	  alone.
 *
 * Wakeups happen at commit: a transaction that queues work or sets a key
 * asks for one, and a transaction callback sets the workers' latches only
 * if it commits, so a worker never looks for rows that are not visible yet.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
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

PG_FUNCTION_INFO_V1(enrich_wake);
PG_FUNCTION_INFO_V1(enrich_worker_state);

/*
 * an environment as the workers see it: paused by a refused key (until the
 * keys change), backing off (until a time), its last error
 */
typedef struct EnrichEnvShared
{
	bool		paused;
	uint64		paused_generation;	/* keys_generation of the refused key */
	TimestampTz backoff_until;	/* 0: not backing off */
	char		last_error[256];
} EnrichEnvShared;

/* one worker's slot: its process, while it runs */
typedef struct EnrichWorkerSlot
{
	int			procno;			/* -1 when the slot's worker does not run */
	pid_t		pid;
} EnrichWorkerSlot;

/* a token bucket: an API rate tier of one environment, for all workers */
typedef struct EnrichTokenBucket
{
	double		tokens;
	TimestampTz refilled_at;
	TimestampTz blocked_until;	/* a 429 said to wait */
} EnrichTokenBucket;

typedef struct EnrichShared
{
	slock_t		mutex;
	EnrichWorkerSlot workers[ENRICH_MAX_WORKERS];
	EnrichWorkerSlot launcher;
	Oid			aside_database; /* the workers stay out of it until ... */
	TimestampTz aside_until;	/* ... this time (0: they go anywhere) */
	uint64		keys_generation;
	uint64		wake_generation;	/* wakeups asked for so far */
	EnrichEnvShared env[ENRICH_ENV_COUNT];
	EnrichTokenBucket buckets[ENRICH_ENV_COUNT][ENRICH_TIER_COUNT];
} EnrichShared;

bool		enrich_in_worker = false;

static EnrichShared *enrich_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool wake_pending = false;
static bool keys_changed_pending = false;
static bool xact_callback_registered = false;

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
		for (int i = 0; i < ENRICH_MAX_WORKERS; i++)
			enrich_shared->workers[i].procno = -1;
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
 * enrich_shared_wake_workers wakes every worker that runs but this one, now:
 * for a commit that queued work, or for what a worker committed or left
 */
void
enrich_shared_wake_workers(void)
{
	int			procnos[ENRICH_MAX_WORKERS];

	if (enrich_shared == NULL)
		return;
	SpinLockAcquire(&enrich_shared->mutex);
	enrich_shared->wake_generation++;
	for (int i = 0; i < ENRICH_MAX_WORKERS; i++)
		procnos[i] = enrich_shared->workers[i].procno;
	SpinLockRelease(&enrich_shared->mutex);
	for (int i = 0; i < ENRICH_MAX_WORKERS; i++)
		if (procnos[i] >= 0 && procnos[i] != ENRICH_MY_PROC_NUMBER)
			SetLatch(&ProcGlobal->allProcs[procnos[i]].procLatch);
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
				SpinLockAcquire(&enrich_shared->mutex);
				enrich_shared->keys_generation++;
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

	if (enrich_shared == NULL)
		return;
	SpinLockAcquire(&enrich_shared->mutex);
	enrich_shared->workers[slot].procno = -1;
	enrich_shared->workers[slot].pid = 0;
	SpinLockRelease(&enrich_shared->mutex);
	enrich_shared_wake_workers();
}

/*
 * enrich_shared_worker_started records this process as the worker of a
 * slot; false when another worker has the slot (a launcher started again
 * did not know it ran), and this one is not needed
 */
bool
enrich_shared_worker_started(int slot)
{
	bool		free;

	enrich_in_worker = true;
	if (enrich_shared == NULL)
		return true;
	SpinLockAcquire(&enrich_shared->mutex);
	free = (enrich_shared->workers[slot].pid == 0);
	if (free)
	{
		enrich_shared->workers[slot].procno = ENRICH_MY_PROC_NUMBER;
		enrich_shared->workers[slot].pid = MyProcPid;
	}
	SpinLockRelease(&enrich_shared->mutex);
	if (free)
		on_shmem_exit(enrich_shared_worker_exit, Int32GetDatum(slot));
	return free;
}

/* enrich_shared_worker_pid returns the process id of a slot's worker, or 0 */
pid_t
enrich_shared_worker_pid(int slot)
{
	pid_t		pid;

	if (enrich_shared == NULL)
		return 0;
	SpinLockAcquire(&enrich_shared->mutex);
	pid = enrich_shared->workers[slot].pid;
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
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
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

/*
 * enrich_shared_other_workers fills pids with the process ids of the other
 * workers that run (ENRICH_MAX_WORKERS at most) and returns how many.  A
 * worker registers before it claims anything and stays registered until it
 * exits, so a submission claimed by one of them is in flight, not in doubt.
 */
int
enrich_shared_other_workers(int32 *pids)
{
	int			n = 0;

	if (enrich_shared == NULL)
		return 0;
	SpinLockAcquire(&enrich_shared->mutex);
	for (int i = 0; i < ENRICH_MAX_WORKERS; i++)
		if (enrich_shared->workers[i].pid != 0 && enrich_shared->workers[i].pid != MyProcPid)
			pids[n++] = (int32) enrich_shared->workers[i].pid;
	SpinLockRelease(&enrich_shared->mutex);
	return n;
}

/*
 * enrich_shared_worker_rank returns this worker's rank among the workers
 * that run, in the order of their slots, and sets *running to how many run
 * (this one at least)
 */
int
enrich_shared_worker_rank(int *running)
{
	int			rank = 0;
	int			n = 0;

	*running = 1;
	if (enrich_shared == NULL)
		return 0;
	SpinLockAcquire(&enrich_shared->mutex);
	for (int i = 0; i < ENRICH_MAX_WORKERS; i++)
	{
		if (enrich_shared->workers[i].pid == 0)
			continue;
		if (enrich_shared->workers[i].pid == MyProcPid)
			rank = n;
		n++;
	}
	SpinLockRelease(&enrich_shared->mutex);
	*running = Max(n, 1);
	return rank;
}

/*
 * enrich_shared_take_token takes a token of a tier of an environment that
 * allows rate calls a second (0: unlimited) if one is available; otherwise
 * it returns false and lowers *wait_ms to when the next one will be.  A
 * Retry-After blocks the tier even when it is unlimited.
 */
bool
enrich_shared_take_token(int environment, int tier, int rate, TimestampTz now, long *wait_ms)
{
	EnrichTokenBucket *b;
	double		capacity = Max(1.0, (double) rate);
	bool		taken = false;
	long		wait = -1;

	if (enrich_shared == NULL)
		return true;
	b = &enrich_shared->buckets[environment][tier];
	SpinLockAcquire(&enrich_shared->mutex);
	if (b->blocked_until > now)
		wait = (long) ((b->blocked_until - now) / 1000 + 1);
	else if (rate == 0)
		taken = true;
	else
	{
		if (b->refilled_at == 0)
			b->tokens = capacity;
		else if (now > b->refilled_at)
			b->tokens = Min(capacity, b->tokens + (now - b->refilled_at) / 1e6 * rate);
		b->refilled_at = Max(b->refilled_at, now);
		if (b->tokens >= 1.0)
		{
			b->tokens -= 1.0;
			taken = true;
		}
		else
			wait = (long) ((1.0 - b->tokens) * 1000.0 / rate) + 1;
	}
	SpinLockRelease(&enrich_shared->mutex);
	if (wait >= 0)
		*wait_ms = Min(*wait_ms, wait);
	return taken;
}

/* enrich_shared_give_back_token returns a token that was not used */
void
enrich_shared_give_back_token(int environment, int tier, int rate)
{
	EnrichTokenBucket *b;

	if (enrich_shared == NULL || rate == 0)
		return;
	b = &enrich_shared->buckets[environment][tier];
	SpinLockAcquire(&enrich_shared->mutex);
	b->tokens = Min(b->tokens + 1.0, Max(1.0, (double) rate));
	SpinLockRelease(&enrich_shared->mutex);
}

/* enrich_shared_block_tier honours a Retry-After: no call of the tier until then */
void
enrich_shared_block_tier(int environment, int tier, TimestampTz until)
{
	EnrichTokenBucket *b;

	if (enrich_shared == NULL)
		return;
	b = &enrich_shared->buckets[environment][tier];
	SpinLockAcquire(&enrich_shared->mutex);
	b->blocked_until = Max(b->blocked_until, until);
	b->tokens = 0;
	SpinLockRelease(&enrich_shared->mutex);
}

/*
 * enrich_shared_keys_changed counts a change of the keys that a worker
 * found by reading them (one no wake told of): a pause ends with it
 */
void
enrich_shared_keys_changed(void)
{
	if (enrich_shared == NULL)
		return;
	SpinLockAcquire(&enrich_shared->mutex);
	enrich_shared->keys_generation++;
	SpinLockRelease(&enrich_shared->mutex);
}

/* enrich_shared_keys_generation returns how many times keys changed */
uint64
enrich_shared_keys_generation(void)
{
	uint64		generation;

	if (enrich_shared == NULL)
		return 0;
	SpinLockAcquire(&enrich_shared->mutex);
	generation = enrich_shared->keys_generation;
	SpinLockRelease(&enrich_shared->mutex);
	return generation;
}

/*
 * enrich_shared_wake_generation returns how many wakeups were asked for so
 * far: a worker that reads it before a round and finds it changed after
 * knows a wake came during the round, even if a wait in the round consumed
 * the latch it set
 */
uint64
enrich_shared_wake_generation(void)
{
	uint64		generation;

	if (enrich_shared == NULL)
		return 0;
	SpinLockAcquire(&enrich_shared->mutex);
	generation = enrich_shared->wake_generation;
	SpinLockRelease(&enrich_shared->mutex);
	return generation;
}

/*
 * enrich_shared_pause_env pauses an environment for every worker because
 * the API refused its key, the one of keys_generation: until the keys
 * change, no worker calls it, a worker started meanwhile included.
 * Returns whether the environment was not paused already (to log once).
 */
bool
enrich_shared_pause_env(int environment, uint64 keys_generation, const char *message)
{
	EnrichEnvShared *env;
	bool		newly;

	if (enrich_shared == NULL)
		return true;
	env = &enrich_shared->env[environment];
	SpinLockAcquire(&enrich_shared->mutex);
	newly = !(env->paused && env->paused_generation == keys_generation);
	env->paused = true;
	env->paused_generation = keys_generation;
	strlcpy(env->last_error, message, sizeof(env->last_error));
	SpinLockRelease(&enrich_shared->mutex);
	return newly;
}

/* env_paused says whether an environment is paused (the spinlock is held) */
static bool
env_paused(const EnrichEnvShared *env)
{
	return env->paused && env->paused_generation == enrich_shared->keys_generation;
}

/* enrich_shared_env_paused says whether the API refused the current key */
bool
enrich_shared_env_paused(int environment)
{
	bool		paused;

	if (enrich_shared == NULL)
		return false;
	SpinLockAcquire(&enrich_shared->mutex);
	paused = env_paused(&enrich_shared->env[environment]);
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
	EnrichEnvShared *env;

	if (enrich_shared == NULL)
		return;
	env = &enrich_shared->env[environment];
	SpinLockAcquire(&enrich_shared->mutex);
	env->backoff_until = until;
	if (message != NULL)
		strlcpy(env->last_error, message, sizeof(env->last_error));
	SpinLockRelease(&enrich_shared->mutex);
}

/* enrich_shared_set_last_error publishes the last error of an environment */
void
enrich_shared_set_last_error(int environment, const char *message)
{
	if (enrich_shared == NULL)
		return;
	SpinLockAcquire(&enrich_shared->mutex);
	strlcpy(enrich_shared->env[environment].last_error, message,
			sizeof(enrich_shared->env[environment].last_error));
	SpinLockRelease(&enrich_shared->mutex);
}

/* enrich_wake() wakes the workers (at commit) */
Datum
enrich_wake(PG_FUNCTION_ARGS)
{
	enrich_wake_at_commit();
	PG_RETURN_VOID();
}

/*
 * enrich.worker_state(environment) returns (state, last_error) of the
 * worker for one environment, for the enrich.progress view
 */
Datum
enrich_worker_state(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	int			environment;
	EnrichEnvShared env;
	bool		running = false;
	bool		paused;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "enrich: worker_state must return a row");
	tupdesc = BlessTupleDesc(tupdesc);
	environment = enrich_environment_arg(text_to_cstring(PG_GETARG_TEXT_PP(0)));

	if (enrich_shared == NULL)
	{
		values[0] = CStringGetTextDatum("not running: enrich is not in shared_preload_libraries");
		nulls[1] = true;
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
	}

	SpinLockAcquire(&enrich_shared->mutex);
	for (int i = 0; i < ENRICH_MAX_WORKERS; i++)
		running |= enrich_shared->workers[i].pid != 0;
	env = enrich_shared->env[environment];
	paused = env_paused(&env);
	SpinLockRelease(&enrich_shared->mutex);

	if (!running)
		values[0] = CStringGetTextDatum("not running");
	else if (paused)
		values[0] = CStringGetTextDatum("paused: unauthorized (set the key with enrich_set_api_key)");
	else if (env.backoff_until > GetCurrentTimestamp())
		values[0] = CStringGetTextDatum(psprintf("backing off until %s",
												 timestamptz_to_str(env.backoff_until)));
	else
		values[0] = CStringGetTextDatum("running");
	if (env.last_error[0] != '\0')
		values[1] = CStringGetTextDatum(env.last_error);
	else
		nulls[1] = true;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
