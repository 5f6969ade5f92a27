/*-------------------------------------------------------------------------
 *
 * shared.h
 *	  Shared memory between backends and the workers, and the wakeups
 *	  through it (shared.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_SHARED_H
#define ENRICH_SHARED_H

#include "datatype/timestamp.h"

#include "guc.h"

extern bool enrich_in_worker;	/* true in a worker process */

extern void enrich_shared_init(void);
extern void enrich_wake_at_commit(void);
extern void enrich_keys_changed_at_commit(void);
/* the API's rate tiers, as the shared token buckets index them */
#define ENRICH_TIER_BULK 0		/* tier 3: bulk enrich */
#define ENRICH_TIER_READ 1		/* tier 4: status, items, list */
#define ENRICH_TIER_COUNT 2

extern bool enrich_shared_worker_started(int slot);
extern pid_t enrich_shared_worker_pid(int slot);
extern void enrich_shared_launcher_started(void);
extern void enrich_shared_step_aside(Oid database, TimestampTz until);
extern bool enrich_shared_aside(Oid database, TimestampTz now);
extern int	enrich_shared_other_workers(int32 *pids);
extern int	enrich_shared_worker_rank(int *running);
extern void enrich_shared_wake_workers(void);
extern bool enrich_shared_take_token(int environment, int tier, int rate,
									 TimestampTz now, long *wait_ms);
extern void enrich_shared_give_back_token(int environment, int tier, int rate);
extern void enrich_shared_block_tier(int environment, int tier, TimestampTz until);
extern uint64 enrich_shared_keys_generation(void);
extern void enrich_shared_keys_changed(void);
extern bool enrich_shared_pause_env(int environment, uint64 keys_generation,
									const char *message);
extern bool enrich_shared_env_paused(int environment);
extern void enrich_shared_set_backoff(int environment, TimestampTz until, const char *message);
extern void enrich_shared_set_last_error(int environment, const char *message);
extern uint64 enrich_shared_wake_generation(void);

#endif							/* ENRICH_SHARED_H */
