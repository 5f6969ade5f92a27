/*-------------------------------------------------------------------------
 *
 * shared.c
 *	  The shared memory between backends and the worker, and the wakeups
 *	  through it: which process the worker is (to set its latch), its state
 *	  per environment (running, paused, backing off; the last error), and a
 *	  generation counter of the API keys.
 *
 * Wakeups happen at commit: a transaction that queues work or sets a key
 * asks for one, and a transaction callback sets the worker's latch only if
 * it commits, so the worker never looks for rows that are not visible yet.
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

#include "enrich.h"

PG_FUNCTION_INFO_V1(enrich_wake);
PG_FUNCTION_INFO_V1(enrich_worker_state);

typedef struct EnrichEnvShared
{
	EnrichWorkerEnvState state;
	TimestampTz until;			/* end of a back-off */
	char		last_error[256];
} EnrichEnvShared;

typedef struct EnrichShared
{
	slock_t		mutex;
	int			worker_procno;	/* -1 when no worker runs */
	pid_t		worker_pid;
	uint64		keys_generation;
	EnrichEnvShared env[ENRICH_ENV_COUNT];
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
		enrich_shared->worker_procno = -1;
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

/* enrich_set_worker_latch wakes the worker now, if one runs */
static void
enrich_set_worker_latch(void)
{
	int			procno;

	if (enrich_shared == NULL)
		return;
	SpinLockAcquire(&enrich_shared->mutex);
	procno = enrich_shared->worker_procno;
	SpinLockRelease(&enrich_shared->mutex);
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
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
				enrich_set_worker_latch();
			wake_pending = keys_changed_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
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

/* enrich_wake_at_commit wakes the worker when this transaction commits */
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

/* enrich_shared_worker_exit forgets the worker when it exits */
static void
enrich_shared_worker_exit(int code, Datum arg)
{
	if (enrich_shared == NULL)
		return;
	SpinLockAcquire(&enrich_shared->mutex);
	enrich_shared->worker_procno = -1;
	enrich_shared->worker_pid = 0;
	SpinLockRelease(&enrich_shared->mutex);
}

/* enrich_shared_worker_started records this process as the worker */
void
enrich_shared_worker_started(void)
{
	enrich_in_worker = true;
	if (enrich_shared == NULL)
		return;
	SpinLockAcquire(&enrich_shared->mutex);
	enrich_shared->worker_procno = MyProc->pgprocno;
	enrich_shared->worker_pid = MyProcPid;
	for (int i = 0; i < ENRICH_ENV_COUNT; i++)
		enrich_shared->env[i].state = ENRICH_ENV_RUNNING;
	SpinLockRelease(&enrich_shared->mutex);
	on_shmem_exit(enrich_shared_worker_exit, (Datum) 0);
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
 * enrich_shared_set_env publishes the worker's state of an environment;
 * last_error NULL keeps the previous one
 */
void
enrich_shared_set_env(int environment, EnrichWorkerEnvState state,
					  TimestampTz until, const char *last_error)
{
	EnrichEnvShared *env;

	if (enrich_shared == NULL)
		return;
	env = &enrich_shared->env[environment];
	SpinLockAcquire(&enrich_shared->mutex);
	env->state = state;
	env->until = until;
	if (last_error != NULL)
		strlcpy(env->last_error, last_error, sizeof(env->last_error));
	SpinLockRelease(&enrich_shared->mutex);
}

/* enrich_wake() wakes the worker (at commit) */
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
	pid_t		pid;

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
	pid = enrich_shared->worker_pid;
	env = enrich_shared->env[environment];
	SpinLockRelease(&enrich_shared->mutex);

	if (pid == 0)
		values[0] = CStringGetTextDatum("not running");
	else if (env.state == ENRICH_ENV_PAUSED)
		values[0] = CStringGetTextDatum("paused: unauthorized (set the key with enrich_set_api_key)");
	else if (env.state == ENRICH_ENV_BACKING_OFF && env.until > GetCurrentTimestamp())
		values[0] = CStringGetTextDatum(psprintf("backing off until %s",
												 timestamptz_to_str(env.until)));
	else
		values[0] = CStringGetTextDatum("running");
	if (env.last_error[0] != '\0')
		values[1] = CStringGetTextDatum(env.last_error);
	else
		nulls[1] = true;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
