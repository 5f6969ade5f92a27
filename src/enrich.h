/*-------------------------------------------------------------------------
 *
 * enrich.h
 *	  Declarations shared by the modules of the enrich extension: the
 *	  settings (guc.c) and each module's init function called by _PG_init.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_H
#define ENRICH_H

#include "datatype/timestamp.h"

/* Environments of the API, as the enum setting enrich.environment knows them */
typedef enum EnrichEnvironment
{
	ENRICH_ENV_LIVE = 0,
	ENRICH_ENV_TEST = 1
} EnrichEnvironment;

#define ENRICH_ENV_COUNT 2

/* the identifier columns of a request: linkedin_url, person_id, pdl_id */
#define ENRICH_NIDENTIFIERS 3

/* the version of the extension's catalog this library works with */
#define ENRICH_CATALOG_VERSION "1.1"

/* the most background workers enrich.workers may ask for */
#define ENRICH_MAX_WORKERS 8

/* guc.c: every enrich.* setting */
extern char *enrich_api_url;
extern int	enrich_environment;
extern int	enrich_timeout_ms;
extern int	enrich_connect_timeout_ms;
extern int	enrich_max_response_size_kb;
extern char *enrich_ca_file;
extern char *enrich_database;
extern int	enrich_batch_size;
extern int	enrich_page_size;
extern int	enrich_poll_interval_min_ms;
extern int	enrich_poll_interval_max_ms;
extern int	enrich_max_in_flight;
extern int	enrich_workers;
extern int	enrich_max_attempts;
extern int	enrich_retry_delay_ms;
extern int	enrich_retry_delay_max_ms;
extern int	enrich_tier3_rate;
extern int	enrich_tier4_rate;
extern int	enrich_reconcile_grace_ms;
extern int	enrich_idle_check_ms;
extern int	enrich_write_back_timeout_ms;

extern void enrich_guc_init(void);
extern const char *enrich_environment_name(int environment);
extern int	enrich_environment_parse(const char *name);
extern int	enrich_environment_arg(const char *name);

/* keys.c: API keys */
extern char *enrich_api_key(const char *environment);
extern char *enrich_api_key_if_set(const char *environment);

/* shared.c: shared memory between backends and the workers, and wakeups */
extern bool enrich_in_worker;	/* true in a worker process */

extern void enrich_shared_init(void);
extern void enrich_wake_at_commit(void);
extern void enrich_keys_changed_at_commit(void);
/* the API's rate tiers, as the shared token buckets index them */
#define ENRICH_TIER_BULK 0		/* tier 3: bulk enrich */
#define ENRICH_TIER_READ 1		/* tier 4: status, items, list */
#define ENRICH_TIER_COUNT 2

extern void enrich_shared_worker_started(int slot);
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

/* request.c: the statement that copies what enrich's trigger queued */
extern void enrich_allow_source_rows(bool allow);

/* worker.c */
extern void enrich_worker_init(void);

#endif							/* ENRICH_H */
