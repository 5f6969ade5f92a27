/*-------------------------------------------------------------------------
 *
 * shared.h
 *	  Shared memory between backends, the launcher and the workers of every
 *	  database, and the wakeups through it (shared.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_SHARED_H
#define ENRICH_SHARED_H

#include "datatype/timestamp.h"

#include "guc.h"

extern bool enrich_in_worker;	/* true in a worker process */

/* what the launcher knows of a database */
typedef enum EnrichDatabaseState
{
	ENRICH_DB_PROBE,			/* not known yet: its first worker looks */
	ENRICH_DB_SERVED,			/* enrich is installed: its workers run */
	ENRICH_DB_ABSENT			/* enrich is not installed: nothing runs
								 * until CREATE EXTENSION */
} EnrichDatabaseState;

/*
 * an environment of a database as its workers see it: paused by a refused
 * key (until the keys change), backing off (until a time), its last error
 */
typedef struct EnrichEnvShared
{
	bool		paused;
	uint64		paused_generation;	/* keys_generation of the refused key */
	TimestampTz backoff_until;	/* 0: not backing off */
	char		last_error[256];
	char		budget_pause[160];	/* why its budget stops submissions; "" */
} EnrichEnvShared;

/* one worker's slot: its process, while it runs */
typedef struct EnrichWorkerSlot
{
	int			procno;			/* -1 when the slot's worker does not run */
	pid_t		pid;
} EnrichWorkerSlot;

/* a database the launcher serves, or looks at */
typedef struct EnrichDatabase
{
	Oid			database;		/* InvalidOid: a free entry */
	char		name[NAMEDATALEN];
	EnrichDatabaseState state;
	bool		created;		/* CREATE EXTENSION committed since it was
								 * found absent */
	int			granted;		/* workers the launcher gives it: fewer than
								 * enrich.workers under enrich.max_workers */
	EnrichWorkerSlot workers[ENRICH_MAX_WORKERS];
	uint64		keys_generation;
	uint64		wake_generation;	/* wakeups asked for so far */
	double		calls_rate[ENRICH_TIER_COUNT];	/* calls a second, decaying */
	TimestampTz calls_at[ENRICH_TIER_COUNT];
	EnrichEnvShared env[ENRICH_ENV_COUNT];
} EnrichDatabase;

extern void enrich_shared_init(void);
extern void enrich_wake_at_commit(void);
extern void enrich_keys_changed_at_commit(void);

/* the workers of this process's database */
extern bool enrich_shared_worker_started(int index, int slot);
extern EnrichDatabaseState enrich_shared_database_installed(bool installed);
extern int	enrich_shared_other_workers(int32 *pids);
extern int	enrich_shared_worker_rank(int *running);
extern void enrich_shared_wake_workers(void);
extern uint64 enrich_shared_keys_generation(void);
extern void enrich_shared_keys_changed(void);
extern bool enrich_shared_pause_env(int environment, uint64 keys_generation,
									const char *message);
extern bool enrich_shared_env_paused(int environment);
extern void enrich_shared_set_backoff(int environment, TimestampTz until, const char *message);
extern void enrich_shared_set_last_error(int environment, const char *message);
extern bool enrich_shared_set_budget_pause(int environment, const char *why);
extern uint64 enrich_shared_wake_generation(void);

/* the calls a second enrich_databases() shows decay over this many seconds */
#define ENRICH_CALLS_RATE_SECONDS 10.0
extern void enrich_shared_count_call(int tier, TimestampTz now);

/* the launcher's side */
extern void enrich_shared_launcher_started(void);
extern bool enrich_shared_rescan_asked(void);
extern int	enrich_shared_database_index(Oid database, const char *name, bool claim);
extern EnrichDatabaseState enrich_shared_database_state(int index);
extern void enrich_shared_database_grant(int index, int granted);
extern void enrich_shared_database_release(int index);
extern pid_t enrich_shared_worker_pid(int index, int slot);
extern void enrich_shared_step_aside(Oid database, TimestampTz until);
extern bool enrich_shared_aside(Oid database, TimestampTz now);
extern bool enrich_shared_serves(Oid database);

/* what SQL shows of it */
extern bool enrich_shared_database_copy(Oid database, EnrichDatabase *copy, bool *installed);
extern int	enrich_shared_databases_copy(EnrichDatabase *copies);

#endif							/* ENRICH_SHARED_H */
