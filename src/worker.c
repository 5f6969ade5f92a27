/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The background workers: their registration, signals, latch and loop
 *	  memory context, and the state machine that moves requests from the
 *	  queue into bulk-enrich batches, polls the batches, pages through their
 *	  items and writes the persons back.
 *
 * enrich.workers workers run the same loop, so that a backfill uses as
 * many cores.  Each claims requests (rows locked with SKIP LOCKED, so no
 * two claim the same) and polls and pages the batches whose id falls to it
 * (a hash of the id, whichever worker sent them, shared among the workers
 * that run); they share the token buckets of the rate tiers.  A worker
 * reconciles the submissions it claimed itself, and one at a time (the one
 * that holds the workers' reconcile lock) also those of workers that stopped.
 *
 * One round of the loop claims requests, a chunk per short transaction,
 * and picks the due batches; each call starts as soon as what it carries
 * is committed (libcurl multi, at most enrich.max_in_flight at once), so
 * the API reads one bulk enrich while the next chunk is claimed.  With no
 * transaction open the worker then waits for every answer, and records
 * each one in its own transaction.  An answer that cannot be recorded is
 * logged and never stops the other ones.  When a round finds nothing to do
 * the worker asks when the next thing is due and sleeps on its latch until
 * then, or until a commit that queued work wakes it; with nothing pending
 * it sleeps without a timeout and runs no query at all.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "api.h"
#include "budget.h"
#include "ledger.h"
#include "counts.h"
#include "compat.h"
#include "guc.h"
#include "shared.h"
#include "keys.h"
#include "launcher.h"
#include "plans.h"
#include "privacy.h"
#include "http.h"
#include "queue.h"
#include "refresh.h"
#include "reuse.h"
#include "security.h"
#include "writeback.h"

PGDLLEXPORT void enrich_worker_main(Datum main_arg);

/* what the worker knows of one environment between rounds */
typedef struct EnvState
{
	TimestampTz backoff_until;	/* API unavailable: no calls until then */
	int			backoff_ms;		/* current back-off, doubled per failure */
	int			chunk_limit;	/* requests per bulk enrich; halved on 400/413 */
	double		completion_ms;	/* when to poll a new batch first (EWMA) */
	bool		completion_known;	/* completion_ms was learned, not assumed */
	char	   *api_key;		/* cached in TopMemoryContext */
	uint64		key_hash;		/* the key's rate budget (shared.c) */
} EnvState;

/* the kinds of calls a round makes */
typedef enum WorkerCallKind
{
	CALL_SUBMIT,
	CALL_STATUS,
	CALL_ITEMS,
	CALL_LIST
} WorkerCallKind;

/* one call of a round and what it needs to record its answer */
typedef struct WorkerCall
{
	WorkerCallKind kind;
	int			environment;
	EnrichOutgoing *leads;		/* CALL_SUBMIT */
	int			nleads;
	EnrichOpenBatch *batch;		/* CALL_STATUS, CALL_ITEMS */
	EnrichOpenBatch **waiting;	/* CALL_LIST: the batches it was made for */
	int			nwaiting;
} WorkerCall;

static int	worker_slot = -1;	/* this worker's slot among enrich.workers */
static NameData worker_database;	/* the name of its database */

static EnvState envs[ENRICH_ENV_COUNT];
static uint64 keys_generation_seen = 0;
static bool keys_loaded = false;
static bool recovered = false;
static uint32 wait_event_idle = 0;	/* its idle wait event (compat.h) */
static bool reconcile_pending = true;	/* submissions may be in doubt */
static TimestampTz reconcile_after = 0;
/*
 * a fixed ring of batch ids (their hashes), the last BATCH_RING_KEPT
 * kept: nothing allocated
 */
#define BATCH_RING_KEPT 1000
typedef struct BatchRing
{
	uint64		hashes[BATCH_RING_KEPT];
	int			n;				/* how many were ever kept */
} BatchRing;

static BatchRing foreign_batches;	/* reconciliation found them not ours */
static BatchRing unmatched_logged;	/* their unmatched items were logged */
static BatchRing unlisted_batches;	/* a list did not show them: polled alone */
static MemoryContext loop_context = NULL;
static bool batches_recorded = false;	/* this round recorded a new batch */
static int32 others_seen[ENRICH_MAX_WORKERS];	/* other workers last round */
static int	nothers_seen = 0;

/* batch_hash is the hash of a batch id that a BatchRing keeps */
static uint64
batch_hash(const char *batch_id)
{
	return hash_bytes_extended((const unsigned char *) batch_id, strlen(batch_id), 0);
}

/* ring_has says whether a ring keeps a batch */
static bool
ring_has(const BatchRing *ring, const char *batch_id)
{
	uint64		h = batch_hash(batch_id);

	for (int i = 0; i < Min(ring->n, BATCH_RING_KEPT); i++)
		if (ring->hashes[i] == h)
			return true;
	return false;
}

/* ring_add keeps a batch in a ring, in place of the oldest */
static void
ring_add(BatchRing *ring, const char *batch_id)
{
	ring->hashes[ring->n++ % BATCH_RING_KEPT] = batch_hash(batch_id);
}

/*
 * Transactions: the recipe of worker_spi.  CurrentMemoryContext is the
 * round's context inside them, so what queries return outlives the commit.
 */
static void
worker_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	MemoryContextSwitchTo(loop_context);
}

static void
worker_commit(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(loop_context);
}

/*
 * worker_error logs an error caught in a round, aborts its transaction and
 * keeps its text as the environment's last error
 */
static void
worker_error(int environment, const char *what)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(loop_context);
	edata = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	pgstat_report_activity(STATE_IDLE, NULL);
	ereport(LOG,
			(errmsg("enrich worker: %s failed: %s", what, edata->message)));
	if (environment >= 0)
		enrich_shared_set_last_error(environment, edata->message);
	MemoryContextSwitchTo(loop_context);
}

/* bucket_rate returns the configured rate of a tier (0 = unlimited) */
static int
bucket_rate(int tier)
{
	return tier == ENRICH_TIER_BULK ? enrich_tier3_rate : enrich_tier4_rate;
}

/*
 * bucket_take takes a token of a tier that all workers share; when none is
 * left it returns false and lowers *wait_ms to when the next one will be
 */
static bool
bucket_take(int environment, int tier, TimestampTz now, long *wait_ms)
{
	return enrich_budget_take(envs[environment].key_hash, tier, bucket_rate(tier), now, wait_ms);
}

/* bucket_give_back returns a token that was not used */
static void
bucket_give_back(int environment, int tier)
{
	enrich_budget_give_back(envs[environment].key_hash, tier, bucket_rate(tier));
}

/* bucket_block honours a Retry-After, for every worker of every database on the key */
static void
bucket_block(int environment, int tier, int retry_after_s)
{
	enrich_budget_block(envs[environment].key_hash, tier,
							 GetCurrentTimestamp() + (int64) Max(retry_after_s, 1) * USECS_PER_SEC);
}

/* jitter returns a random delay between 0 and cap_ms ("full jitter") */
static int
jitter(int cap_ms)
{
	return (int) (random() % ((long) Max(cap_ms, 1) + 1));
}

/* env_backoff records a failure to reach the API and backs off the environment */
static int
env_backoff(int environment, const char *message)
{
	EnvState   *env = &envs[environment];
	int			delay;

	env->backoff_ms = env->backoff_ms == 0 ? enrich_retry_delay_ms :
		Min(env->backoff_ms * 2, enrich_retry_delay_max_ms);
	delay = Max(jitter(env->backoff_ms), 10);
	env->backoff_until = GetCurrentTimestamp() + (int64) delay * 1000;
	enrich_shared_set_backoff(environment, env->backoff_until, message);
	return delay;
}

/* env_reached records that the API answered: the back-off ends */
static void
env_reached(int environment)
{
	EnvState   *env = &envs[environment];

	if (env->backoff_ms != 0 || env->backoff_until != 0)
	{
		env->backoff_ms = 0;
		env->backoff_until = 0;
		enrich_shared_set_backoff(environment, 0, NULL);
	}
}

/*
 * env_pause pauses an environment whose key the API refused, for every
 * worker until the keys change; logged once
 */
static void
env_pause(int environment, const char *message)
{
	if (enrich_shared_pause_env(environment, keys_generation_seen, message))
		ereport(WARNING,
				(errmsg("enrich worker: the AggKnowledge API refused the key of environment \"%s\": %s",
						enrich_environment_name(environment), message),
				 errhint("The environment is paused until enrich_set_api_key('%s', ...) is called.",
						 enrich_environment_name(environment))));
}

/*
 * key_hash returns the hash that names a key's rate budget in shared memory
 * (never the key itself), 0 for no key
 */
static uint64
key_hash(const char *key)
{
	uint64		hash;

	if (key == NULL)
		return 0;
	hash = hash_bytes_extended((const unsigned char *) key, (int) strlen(key), 0x656e72696368);
	return hash == 0 ? 1 : hash;
}

/*
 * worker_load_keys reads the keys when they changed (or at start), and at
 * least every enrich.idle_check; an environment a refused key paused
 * resumes with a new key (a pause holds for the keys' generation it was
 * made in, and a change found by reading makes a new one).  The caller read the
 * generation before its transaction's snapshot, so a key committed after
 * that snapshot shows as a newer generation in the next round.
 */
static void
worker_load_keys(uint64 generation)
{
	static TimestampTz read_at = 0;
	TimestampTz now = GetCurrentTimestamp();
	bool		told = !keys_loaded || generation != keys_generation_seen;
	bool		changed = false;

	/* read anyway every enrich.idle_check: a change no wake told of */
	if (!told && !TimestampDifferenceExceeds(read_at, now, enrich_idle_check_ms))
		return;
	read_at = now;
	for (int i = 0; i < ENRICH_ENV_COUNT; i++)
	{
		char	   *key = enrich_api_key_if_set(enrich_environment_name(i));
		bool		same = keys_loaded && (key == NULL) == (envs[i].api_key == NULL) &&
			(key == NULL || strcmp(key, envs[i].api_key) == 0);

		if (same && !told)
			continue;
		changed |= !same;
		if (envs[i].api_key)
			pfree(envs[i].api_key);
		envs[i].api_key = key ? MemoryContextStrdup(TopMemoryContext, key) : NULL;
		envs[i].key_hash = key_hash(key);
		/* a key set: the environment's last error is forgotten */
		enrich_shared_set_last_error(i, envs[i].api_key ? "" :
									 psprintf("no API key is set for environment \"%s\"",
											  enrich_environment_name(i)));
	}
	if (changed && !told)
	{
		/* found by reading: the other workers, and a pause, learn of it too */
		enrich_shared_keys_changed();
		generation = enrich_shared_keys_generation();
	}
	keys_generation_seen = generation;
	keys_loaded = true;
	if (told || changed)
		reconcile_pending = true;	/* an environment may be callable again */
}

/* env_callable says whether calls may go to an environment now */
static bool
env_callable(int environment, TimestampTz now, long *wait_ms)
{
	EnvState   *env = &envs[environment];

	if (env->api_key == NULL || enrich_shared_env_paused(environment))
		return false;
	if (env->backoff_until > now)
	{
		*wait_ms = Min(*wait_ms, (env->backoff_until - now) / 1000 + 1);
		return false;
	}
	return true;
}

/* prepare_call fills the HTTP side of a call */
static void
prepare_call(EnrichHttpCall *http, const char *method, char *url, int environment,
			 const char *body)
{
	memset(http, 0, sizeof(*http));
	http->method = method;
	http->url = url;
	http->api_key = envs[environment].api_key;
	http->body = body;
	http->body_len = body ? strlen(body) : 0;
}

/* clamp_poll keeps a poll interval between the two settings */
static int
clamp_poll(double ms)
{
	return (int) Max(enrich_poll_interval_min_ms, Min(ms, (double) enrich_poll_interval_max_ms));
}

/*
 * Until the worker has seen a batch complete, it cannot know when one will:
 * a new batch is polled at once (a small one may be done already), then
 * after 1 s, 3 s, 7 s and so on.  Starting at enrich.poll_interval_min
 * would spend two or three more calls on every batch that takes seconds.
 */
#define COLD_POLL_INTERVAL_MS 1000

/*
 * The longest a batch is believed to take: the API's timestamps can say
 * anything (a completedAt in year 9999), and what is learned from them
 * becomes a poll delay in milliseconds that must fit an int.
 */
#define COMPLETION_MS_MAX (24.0 * 3600 * 1000)

/*
 * first_poll_ms is when to poll a new batch first, given how long batches
 * take: a little after it should be done
 */
static double
first_poll_ms(double took_ms)
{
	return Min(took_ms, COMPLETION_MS_MAX) * 1.1 + 20;
}

/*
 * A batch's creation by the API precedes its recording here by the time of
 * the call: a list of batches asks from the UTC day of the oldest one it is
 * for, an hour earlier.
 */
#define LIST_MARGIN_MS (3600 * 1000.0)

/*
 * After a list, a batch with no page ready waits at least this long for the
 * next: a list is for every batch, and lists are few.
 */
#define LIST_INTERVAL_MS 500

/* utc_date_ago returns the UTC date (YYYY-MM-DD) of ms milliseconds ago */
static char *
utc_date_ago(double ms)
{
	time_t		t = time(NULL) - (time_t) (ms / 1000);
	struct tm	tm;
	char	   *date = palloc(16);

	gmtime_r(&t, &tm);
	strftime(date, 16, "%Y-%m-%d", &tm);
	return date;
}

/*
 * items_ready says whether a batch has a page of items to read: it
 * completed, or processed a full page more than was read
 */
static bool
items_ready(const EnrichOpenBatch *b)
{
	return strcmp(b->status, "completed") == 0 ||
		(strcmp(b->status, "processing") == 0 &&
		 b->processed_count - b->items_received >= enrich_page_size);
}

/*
 * plan_batch decides the next call of a due batch: a page of items when the
 * batch completed or has a full page ready, a status poll otherwise
 */
static bool
plan_batch(EnrichOpenBatch *b, WorkerCall *call, EnrichHttpCall *http)
{
	const char *environment = enrich_environment_name(b->environment);

	call->environment = b->environment;
	call->batch = b;
	if (items_ready(b))
	{
		call->kind = CALL_ITEMS;
		prepare_call(http, "GET",
					 enrich_api_url_items(environment, b->batch_id, b->cursor, enrich_page_size),
					 b->environment, NULL);
	}
	else
	{
		call->kind = CALL_STATUS;
		prepare_call(http, "GET", enrich_api_url_batch(environment, b->batch_id),
					 b->environment, NULL);
	}
	return true;
}

/*
 * worker_leave ends a worker in a database where enrich is not installed:
 * probed by the launcher (said at DEBUG1), or dropped (DROP EXTENSION,
 * said once); the launcher starts none there until CREATE EXTENSION
 * commits.  The round's transaction is committed first.
 */
static void
worker_leave(void)
{
	EnrichDatabaseState before = enrich_shared_database_installed(false);

	ereport(before == ENRICH_DB_SERVED ? LOG : DEBUG1,
			(errmsg("enrich worker: extension enrich is not installed in database \"%s\"; its workers stop until CREATE EXTENSION enrich",
					NameStr(worker_database))));
	worker_commit();
	proc_exit(0);
}

/*
 * catalog_usable says whether the extension's catalog in this database is
 * the version this library works with; a version it does not know (an
 * ALTER EXTENSION UPDATE is due) is logged once.  Where enrich is not
 * installed the worker leaves (worker_leave); it says it started once it
 * found enrich there.
 */
static bool
catalog_usable(const char *version)
{
	static char *logged = NULL;
	static bool said_started = false;

	if (version == NULL)
		worker_leave();			/* not installed here */
	(void) enrich_shared_database_installed(true);
	if (!said_started)
	{
		said_started = true;
		ereport(LOG,
				(errmsg("enrich worker %d of %d started in database \"%s\"",
						worker_slot, enrich_workers, NameStr(worker_database))));
	}
	if (strcmp(version, ENRICH_CATALOG_VERSION) == 0)
		return true;
	if (logged == NULL || strcmp(logged, version) != 0)
	{
		ereport(LOG,
				(errmsg("enrich worker: the catalog of extension enrich in database \"%s\" is version %s; this library works with version %s",
						NameStr(worker_database), version, ENRICH_CATALOG_VERSION),
				 errhint("Run ALTER EXTENSION enrich UPDATE in that database; the workers wait until then.")));
		if (logged != NULL)
			pfree(logged);
		logged = MemoryContextStrdup(TopMemoryContext, version);
	}
	return false;
}

/*
 * worker_note_installation reads which installation of enrich the database
 * holds and tells the API module.  When it is another than the last round's
 * (DROP and CREATE EXTENSION, or a dump restored over a new installation),
 * what the worker learned of the old one is forgotten: it recovers again,
 * reads the keys again, and keeps no batch judged foreign.
 */
static void
worker_note_installation(void)
{
	static char seen[ENRICH_INSTALLATION_ID_LEN + 1] = "";
	bool		legacy;
	char	   *id = enrich_queue_installation(&legacy);

	if (strcmp(id, seen) == 0)
		return;
	if (seen[0] != '\0')
	{
		recovered = false;
		keys_loaded = false;
		reconcile_pending = true;
		foreign_batches.n = 0;
		for (int e = 0; e < ENRICH_ENV_COUNT; e++)
		{
			envs[e].completion_ms = 0;
			envs[e].completion_known = false;
			envs[e].backoff_until = 0;
			envs[e].backoff_ms = 0;
			envs[e].chunk_limit = ENRICH_API_MAX_REQUESTS;
		}
	}
	enrich_api_set_installation(id, legacy);
	strlcpy(seen, id, sizeof(seen));
}

/*
 * worker_start_round begins a round in a transaction of its own: it says
 * whether the catalog is one to work with, recovers once at start (and
 * learns how long batches take from enrich.batches), reads the keys when
 * they changed, and makes the kept plans again when due
 */
static bool
worker_start_round(void)
{
	uint64		keys_generation = enrich_shared_keys_generation();

	worker_begin("enrich: planning");
	if (!catalog_usable(enrich_queue_catalog_version()))
	{
		worker_commit();
		return false;
	}
	worker_note_installation();
	if (!recovered)
	{
		/* before the recovery's own statements count anything */
		if (worker_slot == 0)
			enrich_counts_heal();
		enrich_queue_recover();
		if (worker_slot == 0)
			enrich_report_missing_owners();
		for (int e = 0; e < ENRICH_ENV_COUNT; e++)
		{
			double		typical = enrich_queue_typical_completion_ms(e);

			if (typical >= 0)
			{
				envs[e].completion_ms = first_poll_ms(typical);
				envs[e].completion_known = true;
			}
		}
		recovered = true;
	}
	worker_load_keys(keys_generation);
	enrich_queue_refresh_plans();
	if (worker_slot == 0)
	{
		enrich_counts_fold();
		(void) enrich_reuse_prune();
		enrich_refresh_round();
	}
	worker_commit();
	return true;
}

/*
 * While an environment's budget is spent, the workers look again this
 * often (a raised budget wakes them at once).
 */
#define BUDGET_CHECK_MS 1000

/*
 * budget_pause publishes that an environment's budget is spent (why), or
 * no longer (NULL); the worker that publishes a pause first logs it
 */
static void
budget_pause(int environment, const char *why)
{
	if (enrich_shared_set_budget_pause(environment, why) && why != NULL)
		ereport(LOG,
				(errmsg("enrich worker: environment \"%s\" submits nothing more: %s",
						enrich_environment_name(environment), why),
				 errhint("Queued requests wait; enrich_set_budget() raises the limit.")));
}

/*
 * claim_within_budget claims up to limit requests of an environment to send
 * (enrich_queue_claim), no more than its budget has left, and counts them
 * in the ledger with the ones settled by reuse, in the caller's
 * transaction; with the budget spent it claims nothing and lowers *wait_ms
 * to when to look again
 */
static int
claim_within_budget(int e, int limit, EnrichOutgoing **leads, long *wait_ms)
{
	char	   *why;
	int64		left = enrich_ledger_budget_left(e, true, &why);
	EnrichUsage usage = {0};
	int			reused;
	int			nleads;

	budget_pause(e, left == 0 ? why : NULL);
	if (left == 0)
	{
		*wait_ms = Min(*wait_ms, BUDGET_CHECK_MS);
		return 0;
	}
	if (left > 0)
		limit = (int) Min(limit, left);
	nleads = enrich_queue_claim(e, limit, leads, &reused);
	usage.submitted = nleads;
	usage.reused = reused;
	enrich_ledger_add(e, &usage);
	return nleads;
}

/*
 * plan_submits claims the due requests of an environment, a chunk per
 * short transaction, and starts each chunk's bulk enrich as soon as its
 * claim commits (the API reads one while the next is claimed), while calls
 * and tokens of tier 3 last
 */
static void
plan_submits(int e, TimestampTz now, WorkerCall *calls, EnrichHttpCall *https, int *ncalls,
			 volatile int *started, long *wait_ms)
{
	while (*ncalls < enrich_max_in_flight && bucket_take(e, ENRICH_TIER_BULK, now, wait_ms))
	{
		WorkerCall *call = &calls[*ncalls];
		int			limit = Min(enrich_batch_size, envs[e].chunk_limit);

		worker_begin("enrich: claiming requests");
		call->nleads = claim_within_budget(e, limit, &call->leads, wait_ms);
		worker_commit();
		if (call->nleads == 0)
		{
			bucket_give_back(e, ENRICH_TIER_BULK);
			return;
		}
		call->kind = CALL_SUBMIT;
		call->environment = e;
		prepare_call(&https[*ncalls], "POST",
					 enrich_api_url_bulk_enrich(enrich_environment_name(e)), e,
					 enrich_api_build_worker_body(call->leads, call->nleads));
		(*ncalls)++;
		enrich_http_start(&https[*ncalls - 1]);
		enrich_budget_sent();
		*started = *ncalls;
		/* sent while the next chunk is claimed */
		enrich_http_drive();
	}
}

/*
 * plan_statuses asks for the status of the due batches of an environment
 * that have no page ready: one status call for one batch, one list call
 * (the newest batches of the key, up to 1,000, with their statuses) for
 * several, so that the tier 4 budget goes to pages of items
 */
static void
plan_statuses(int e, EnrichOpenBatch **waiting, int nwaiting, TimestampTz now,
			  WorkerCall *calls, EnrichHttpCall *https, int *ncalls, long *wait_ms)
{
	WorkerCall *call = &calls[*ncalls];
	double		oldest_ms = 0;

	if (nwaiting == 0 || *ncalls >= enrich_max_in_flight ||
		!bucket_take(e, ENRICH_TIER_READ, now, wait_ms))
		return;
	if (nwaiting == 1)
	{
		plan_batch(waiting[0], call, &https[*ncalls]);
		(*ncalls)++;
		return;
	}
	for (int i = 0; i < nwaiting; i++)
		oldest_ms = Max(oldest_ms, waiting[i]->age_ms);
	call->kind = CALL_LIST;
	call->environment = e;
	call->batch = NULL;
	call->waiting = waiting;
	call->nwaiting = nwaiting;
	prepare_call(&https[*ncalls], "GET",
				 enrich_api_url_batches(enrich_environment_name(e), utc_date_ago(oldest_ms + LIST_MARGIN_MS),
										ENRICH_API_MAX_BATCH_LIST, 0),
				 e, NULL);
	(*ncalls)++;
}

/*
 * A worker that knows of no page ready, or whose tier 4 bucket is full, has
 * tokens it would not use: it spends one on a list call for the batches
 * whose poll is not yet due (their pages come as they are processed, and a
 * cold start knows nothing of when).  One such early look per database at
 * most every tenth of the youngest waiting batch's age, between the two
 * poll interval settings: a batch of hours is looked at early a few dozen
 * times, not thousands.  Not with an unlimited tier 4: the polls alone.
 */
static TimestampTz next_early_read = 0;

/* early_interval_ms is how long to wait between two early looks */
static long
early_interval_ms(const EnrichOpenBatch *const *early, int nearly)
{
	double		youngest = COMPLETION_MS_MAX;

	for (int i = 0; i < nearly; i++)
		youngest = Min(youngest, early[i]->age_ms);
	return clamp_poll(youngest / 10);
}

/*
 * backlogged says whether an environment's batches have more pages known
 * ready than its tier 4 bucket holds: a status or list call would then
 * take a page's token, and only tell of pages that cannot be read sooner
 */
static bool
backlogged(int ready_pages)
{
	return enrich_tier4_rate > 0 && ready_pages >= enrich_tier4_rate * enrich_rate_burst_s;
}

/*
 * plan_statuses_early plans the statuses of an environment's batches: of
 * the due ones, unless pages are backlogged, else of the early ones, when
 * an early look is allowed
 */
static void
plan_statuses_early(int e, EnrichOpenBatch **waiting, int nwaiting, EnrichOpenBatch **early,
					int nearly, int ready_pages, TimestampTz now, WorkerCall *calls,
					EnrichHttpCall *https, int *ncalls, long *wait_ms)
{
	long		interval = early_interval_ms((const EnrichOpenBatch *const *) early, nearly);

	if (nearly > 0)
	{
		next_early_read = now + interval * (int64) 1000;
		*wait_ms = Min(*wait_ms, interval);
	}
	if (backlogged(ready_pages))
		return;
	if (nwaiting > 0)
		plan_statuses(e, waiting, nwaiting, now, calls, https, ncalls, wait_ms);
	else if (nearly > 0 && env_callable(e, now, wait_ms) &&
			 enrich_budget_look(envs[e].key_hash, ENRICH_TIER_READ, enrich_tier4_rate, now, interval,
								ready_pages == 0))
		plan_statuses(e, early, nearly, now, calls, https, ncalls, wait_ms);
}

/*
 * plan_polls plans a status poll or a page of items of each of this
 * worker's batches that are due, while calls and tokens of tier 4 last;
 * every so often it reads the batches not yet due too, for a look with
 * spare tokens (inside the caller's transaction)
 */
static void
plan_polls(TimestampTz now, WorkerCall *calls, EnrichHttpCall *https, int *ncalls, long *wait_ms)
{
	EnrichOpenBatch *batches;
	int			nbatches = enrich_queue_due_batches(enrich_max_in_flight * 2, now >= next_early_read,
													&batches);
	EnrichOpenBatch **waiting[ENRICH_ENV_COUNT];
	EnrichOpenBatch **early[ENRICH_ENV_COUNT];
	int			nwaiting[ENRICH_ENV_COUNT] = {0};
	int			nearly[ENRICH_ENV_COUNT] = {0};
	int			ready_pages[ENRICH_ENV_COUNT] = {0};

	for (int e = 0; e < ENRICH_ENV_COUNT; e++)
	{
		waiting[e] = palloc(sizeof(EnrichOpenBatch *) * Max(nbatches, 1));
		early[e] = palloc(sizeof(EnrichOpenBatch *) * Max(nbatches, 1));
	}
	for (int i = 0; i < nbatches && *ncalls < enrich_max_in_flight; i++)
	{
		EnrichOpenBatch *b = &batches[i];
		int			e = b->environment;

		if (e < 0 || strcmp(b->status, "failed") == 0)
			continue;			/* a failed one was closed when its status was recorded */
		ready_pages[e] = Max(ready_pages[e], b->env_ready_pages);
		if (!b->due)
		{
			if (!items_ready(b))
				early[e][nearly[e]++] = b;
			continue;
		}
		if (!env_callable(e, now, wait_ms))
			continue;
		if (!items_ready(b) && !ring_has(&unlisted_batches, b->batch_id))
		{
			waiting[e][nwaiting[e]++] = b;
			continue;			/* its status: below */
		}
		if (!bucket_take(e, ENRICH_TIER_READ, now, wait_ms))
			continue;
		plan_batch(b, &calls[*ncalls], &https[*ncalls]);
		(*ncalls)++;
	}
	if (now >= next_early_read)
		next_early_read = now + enrich_poll_interval_max_ms * (int64) 1000;	/* unless one waits */
	for (int e = 0; e < ENRICH_ENV_COUNT; e++)
		plan_statuses_early(e, waiting[e], nwaiting[e], early[e], nearly[e], ready_pages[e],
							now, calls, https, ncalls, wait_ms);
}

/*
 * worker_plan claims requests and picks due batches, filling calls and
 * starting each one (enrich_http_start); *started counts the calls
 * started, even when an error cuts the plan short, so that the caller
 * still finishes and records them.  Each chunk of requests is claimed in
 * its own transaction and its bulk enrich starts as soon as that commits:
 * the API reads one while the next is claimed.  When it makes no call it
 * sets *sleep_ms to when the next thing is due (-1: nothing pending).
 */
static void
worker_plan(WorkerCall *calls, EnrichHttpCall *https, volatile int *started, long *sleep_ms)
{
	int			ncalls = 0;
	long		wait_ms = LONG_MAX;
	bool		active[ENRICH_ENV_COUNT];
	TimestampTz now = GetCurrentTimestamp();

	for (int e = 0; e < ENRICH_ENV_COUNT; e++)
	{
		active[e] = env_callable(e, now, &wait_ms);
		if (active[e])
			plan_submits(e, now, calls, https, &ncalls, started, &wait_ms);
	}

	worker_begin("enrich: planning");
	enrich_ledger_flush(worker_slot == 0, false);
	plan_polls(now, calls, https, &ncalls, &wait_ms);
	/* and write back what rows locked at the time kept out */
	if (enrich_write_back_retry(ENRICH_API_MAX_REQUESTS) > 0)
		wait_ms = 0;
	if (ncalls == 0)
	{
		/*
		 * Nothing callable now: sleep until the next thing is due, or until
		 * a rate-limit token or the end of a back-off.  Something due that
		 * could not be claimed (rows locked elsewhere) is looked at again
		 * shortly.  What the ledger counted is written first.
		 */
		long		due = enrich_queue_next_due_ms(active);

		enrich_ledger_flush(false, true);

		if (wait_ms != LONG_MAX && (due <= 0 || wait_ms < due))
			due = wait_ms;
		else if (due == 0)
			due = 100;
		*sleep_ms = due;
	}
	worker_commit();
	for (int i = *started; i < ncalls; i++)
	{
		enrich_http_start(&https[i]);
		*started = i + 1;
	}
	enrich_budget_sent();
	enrich_http_drive();
}

/*
 * submit_may_have_arrived says whether a failed bulk enrich may still have
 * created a batch: only a refused connection, or an error status from the
 * API, proves it did not
 */
static bool
submit_may_have_arrived(EnrichHttpCall *http)
{
	if (http->failure == ENRICH_HTTP_CONNECT || http->failure == ENRICH_HTTP_TLS)
		return false;
	if (http->failure != ENRICH_HTTP_OK)
		return true;
	return http->status == 202;
}

/*
 * submit_charged says whether a bulk enrich may have created a batch, which
 * the API charges for: it accepted it, or its answer was lost
 */
static bool
submit_charged(EnrichCallOutcome outcome, EnrichHttpCall *http)
{
	if (outcome == ENRICH_OUTCOME_OK)
		return true;
	return (outcome == ENRICH_OUTCOME_NOT_FOUND || outcome == ENRICH_OUTCOME_TRANSIENT) &&
		submit_may_have_arrived(http);
}

/* record_submit records the answer to a bulk enrich */
static void
record_submit(WorkerCall *call, EnrichHttpCall *http)
{
	EnvState   *env = &envs[call->environment];
	char	   *message;
	char	   *batch_id = NULL;
	EnrichCallOutcome outcome = enrich_api_outcome(http, 202, &message);
	int			index;

	if (outcome == ENRICH_OUTCOME_OK)
	{
		char	   *err = enrich_api_parse_batch_id(http->response, &batch_id);

		if (err != NULL)
		{
			outcome = ENRICH_OUTCOME_TRANSIENT;
			message = psprintf("malformed bulk enrich response: %s", err);
		}
	}

	if (!submit_charged(outcome, http))
	{
		/* no batch: the ledger takes back what the claim counted */
		EnrichUsage usage = {0};

		usage.submitted = -call->nleads;
		enrich_ledger_add(call->environment, &usage);
	}
	switch (outcome)
	{
		case ENRICH_OUTCOME_OK:
			env_reached(call->environment);
			enrich_queue_submitted(batch_id, call->environment, call->leads, call->nleads,
								   (int) env->completion_ms);
			batches_recorded = true;
			next_early_read = 0;	/* a new batch to look at early */
			if (env->chunk_limit < enrich_batch_size)
				env->chunk_limit = Min(enrich_batch_size, env->chunk_limit * 2);
			break;
		case ENRICH_OUTCOME_RATE_LIMITED:
			bucket_block(call->environment, ENRICH_TIER_BULK, http->retry_after);
			enrich_queue_requeue(call->leads, call->nleads, false,
								 Max(http->retry_after, 1) * 1000, NULL, NULL);
			break;
		case ENRICH_OUTCOME_UNAUTHORIZED:
			env_pause(call->environment, message);
			enrich_queue_requeue(call->leads, call->nleads, false, 0, NULL, NULL);
			break;
		case ENRICH_OUTCOME_BAD_REQUEST:
			env_reached(call->environment);
			index = enrich_api_error_index(message);
			if (index >= 0 && index < call->nleads)
			{
				/* the API named the offending request: fail it, resend the rest */
				enrich_queue_fail(&call->leads[index], 1, "invalid_request", message);
				enrich_queue_requeue(call->leads, index, false, 0, NULL, NULL);
				enrich_queue_requeue(&call->leads[index + 1], call->nleads - index - 1,
									 false, 0, NULL, NULL);
			}
			else if (call->nleads == 1)
				enrich_queue_fail(call->leads, 1, "invalid_request", message);
			else
			{
				/* no index: bisect, sending half as many at a time */
				env->chunk_limit = Max(1, call->nleads / 2);
				enrich_queue_requeue(call->leads, call->nleads, false, 0, NULL, NULL);
			}
			break;
		case ENRICH_OUTCOME_TOO_LARGE:
			env_reached(call->environment);
			if (call->nleads == 1)
				enrich_queue_fail(call->leads, 1, "payload_too_large", message);
			else
			{
				env->chunk_limit = Max(1, call->nleads / 2);
				enrich_queue_requeue(call->leads, call->nleads, false, 0, NULL, NULL);
			}
			break;
		case ENRICH_OUTCOME_NOT_FOUND:
		case ENRICH_OUTCOME_TRANSIENT:
			if (submit_may_have_arrived(http))
			{
				/*
				 * The API may have created the batch (a timeout, a broken
				 * connection, an unreadable 202): sending again could pay
				 * twice.  The requests stay 'submitting' and reconciliation
				 * looks for their batch.
				 */
				env_backoff(call->environment, message);
				enrich_queue_note_submitting(call->leads, call->nleads,
											 psprintf("the answer to the bulk enrich was lost (%s); its batch is being looked for",
													  message));
				ereport(LOG,
						(errmsg("enrich worker: the answer to a bulk enrich of %d requests was lost (%s); looking for its batch",
								call->nleads, message)));
				reconcile_pending = true;
			}
			else
				enrich_queue_requeue(call->leads, call->nleads, false,
									 env_backoff(call->environment, message),
									 "unavailable", message);
			break;
	}
}

/*
 * completion_ms reads how long a completed batch took on the server
 * (completedAt - createdAt), or -1 when it is unknown or beyond COMPLETION_MS_MAX
 */
static double
completion_ms(const EnrichBatchStatus *status)
{
	TimestampTz created;
	TimestampTz completed;
	double		took;

	if (status->completed_at == NULL)
		return -1;
	created = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
													  CStringGetDatum(status->created_at),
													  ObjectIdGetDatum(InvalidOid),
													  Int32GetDatum(-1)));
	completed = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
														CStringGetDatum(status->completed_at),
														ObjectIdGetDatum(InvalidOid),
														Int32GetDatum(-1)));
	took = (completed - created) / 1000.0;
	if (took > COMPLETION_MS_MAX)
		return -1;				/* not believed: nothing is learned from it */
	return Max(took, 0.0);
}

/* record_batch_failure handles a failed status or items call of a batch */
static void
record_batch_failure(WorkerCall *call, EnrichHttpCall *http, EnrichCallOutcome outcome,
					 const char *message)
{
	EnrichOpenBatch *b = call->batch;
	int			next = clamp_poll(b->poll_interval_ms * 2.0);

	switch (outcome)
	{
		case ENRICH_OUTCOME_RATE_LIMITED:
			bucket_block(call->environment, ENRICH_TIER_READ, http->retry_after);
			next = Max(http->retry_after, 1) * 1000;
			break;
		case ENRICH_OUTCOME_UNAUTHORIZED:
			env_pause(call->environment, message);
			next = 0;
			break;
		case ENRICH_OUTCOME_NOT_FOUND:
			/* the API forgot the batch: its requests are sent again */
			enrich_queue_close_batch(b->batch_id, "failed", "batch_not_found", message);
			return;
		case ENRICH_OUTCOME_BAD_REQUEST:
			/* a cursor the API refuses: start the items over (applying is idempotent) */
			break;
		default:
			break;
	}
	ereport(LOG,
			(errmsg("enrich worker: %s of batch %s failed: %s",
					call->kind == CALL_ITEMS ? "a page of items" : "the status",
					b->batch_id, message)));
	enrich_queue_batch_error(b->batch_id, next, message,
							 outcome == ENRICH_OUTCOME_BAD_REQUEST && call->kind == CALL_ITEMS);
}

/*
 * apply_status records the status of one of the worker's open batches (its
 * own poll, or a list's), learns how long batches take from a completed
 * one, and sets when to look at it next: at once when a page is ready,
 * else later each time, least_next_ms at least
 */
static void
apply_status(EnrichOpenBatch *b, int environment, const EnrichBatchStatus *status,
			 int least_next_ms)
{
	EnvState   *env = &envs[environment];
	int			next;
	double		took = -1;

	if (strcmp(status->status, "failed") == 0)
	{
		enrich_queue_batch_polled(b->batch_id, status->status, status->processed_count, 0, -1);
		enrich_queue_close_batch(b->batch_id, "failed", "batch_failed",
								 "the API failed the whole batch");
		return;
	}
	if (strcmp(status->status, "completed") == 0)
	{
		took = completion_ms(status);

		/* learn when to poll the next batch first: a little after it should be done */
		if (took >= 0 && env->completion_known)
			env->completion_ms = env->completion_ms * 0.7 + first_poll_ms(took) * 0.3;
		else if (took >= 0)
		{
			env->completion_ms = first_poll_ms(took);
			env->completion_known = true;
		}
		next = 0;
	}
	else if (strcmp(status->status, "processing") == 0 &&
			 status->processed_count - b->items_received >= enrich_page_size)
		next = 0;
	else
		next = Max(least_next_ms, b->poll_interval_ms == 0 ? clamp_poll(COLD_POLL_INTERVAL_MS) :
				   clamp_poll(b->poll_interval_ms * 2.0));
	enrich_queue_batch_polled(b->batch_id, status->status, status->processed_count, next,
							  took >= 0 ? (int) Min(took, (double) INT_MAX) : -1);
}

/*
 * record_status records the answer to a status poll: the status, or the
 * failure
 */
static void
record_status(WorkerCall *call, EnrichHttpCall *http)
{
	char	   *message;
	EnrichCallOutcome outcome = enrich_api_outcome(http, 200, &message);
	EnrichBatchStatus status;

	if (outcome == ENRICH_OUTCOME_OK)
	{
		char	   *err = enrich_api_parse_status(http->response, &status);

		if (err != NULL)
		{
			outcome = ENRICH_OUTCOME_TRANSIENT;
			message = psprintf("malformed batch status: %s", err);
		}
	}
	if (outcome != ENRICH_OUTCOME_OK)
	{
		record_batch_failure(call, http, outcome, message);
		return;
	}
	env_reached(call->environment);
	apply_status(call->batch, call->environment, &status, 0);
}

/*
 * record_list_failure records a list call that failed: a 429 or a refused
 * key holds for the environment as for any call, and the batches it was
 * for are polled later; said once for all of them
 */
static void
record_list_failure(WorkerCall *call, EnrichHttpCall *http, EnrichCallOutcome outcome,
					const char *message)
{
	if (outcome == ENRICH_OUTCOME_RATE_LIMITED)
		bucket_block(call->environment, ENRICH_TIER_READ, http->retry_after);
	else if (outcome == ENRICH_OUTCOME_UNAUTHORIZED)
		env_pause(call->environment, message);
	ereport(LOG,
			(errmsg("enrich worker: the list of batches of environment \"%s\" failed: %s",
					enrich_environment_name(call->environment), message)));
	for (int i = 0; i < call->nwaiting; i++)
		enrich_queue_batch_error(call->waiting[i]->batch_id,
								 clamp_poll(call->waiting[i]->poll_interval_ms * 2.0), message, false);
}

/*
 * record_list records the answer to a list call: the status of each open
 * batch of this database it lists, whichever worker's; a batch it was for
 * and does not list (more than 1,000 newer batches on the key) is polled
 * by itself next time
 */
static void
record_list(WorkerCall *call, EnrichHttpCall *http)
{
	char	   *message;
	EnrichCallOutcome outcome = enrich_api_outcome(http, 200, &message);
	EnrichBatchList list;
	EnrichOpenBatch *open;
	char	  **ids;
	int		   *positions;
	int			nopen;

	if (outcome == ENRICH_OUTCOME_OK)
	{
		char	   *err = enrich_api_parse_batch_list(http->response, &list);

		if (err != NULL)
		{
			outcome = ENRICH_OUTCOME_TRANSIENT;
			message = psprintf("malformed list of batches: %s", err);
		}
	}
	if (outcome != ENRICH_OUTCOME_OK)
	{
		record_list_failure(call, http, outcome, message);
		return;
	}
	env_reached(call->environment);
	ids = palloc(sizeof(char *) * Max(list.nbatches, 1));
	for (int i = 0; i < list.nbatches; i++)
		ids[i] = list.batches[i].batch_id;
	nopen = enrich_queue_listed_batches(enrich_text_array(ids, list.nbatches), call->environment,
										&open, &positions);
	for (int i = 0; i < nopen; i++)
		apply_status(&open[i], call->environment, &list.batches[positions[i]], LIST_INTERVAL_MS);
	for (int i = 0; i < call->nwaiting; i++)
	{
		bool		listed = false;

		for (int j = 0; j < list.nbatches && !listed; j++)
			listed = strcmp(call->waiting[i]->batch_id, ids[j]) == 0;
		if (!listed)
			ring_add(&unlisted_batches, call->waiting[i]->batch_id);
	}
}

/* record_items applies a page of items */
static void
record_items(WorkerCall *call, EnrichHttpCall *http)
{
	EnrichOpenBatch *b = call->batch;
	char	   *message;
	EnrichCallOutcome outcome = enrich_api_outcome(http, 200, &message);
	EnrichItemsPage page;
	bool		closes;
	int			next;
	int			unmatched;
	int			nitems;
	EnrichSettled settled = {0, 0};
	EnrichUsage usage = {0};

	if (outcome == ENRICH_OUTCOME_OK)
	{
		char	   *err = enrich_api_parse_items_page(http->response, &page);

		if (err != NULL)
		{
			outcome = ENRICH_OUTCOME_TRANSIENT;
			message = psprintf("malformed items page: %s", err);
		}
	}
	if (outcome != ENRICH_OUTCOME_OK)
	{
		record_batch_failure(call, http, outcome, message);
		return;
	}
	env_reached(call->environment);

	if (page.nitems > 0 && page.cursor != NULL && b->cursor != NULL &&
		strcmp(page.cursor, b->cursor) == 0)
	{
		/* a page that hands back the cursor it was asked for never ends */
		record_batch_failure(call, http, ENRICH_OUTCOME_TRANSIENT,
							 "malformed items page: it returned the cursor it was asked for, with items");
		return;
	}
	if (b->items_received + page.nitems > 2 * b->request_count + enrich_page_size)
	{
		/*
		 * Far more items than the batch has requests: the cursor goes round
		 * in circles.  The batch is closed; requests still waiting in it
		 * are retried.
		 */
		ereport(LOG,
				(errmsg("enrich worker: batch %s returned %d items for %d requests; its cursor loops, so it is closed",
						b->batch_id, b->items_received + page.nitems, b->request_count)));
		enrich_queue_close_batch(b->batch_id, "failed", "cursor_loop",
								 "the API returned more items than the batch has requests");
		return;
	}

	closes = (page.cursor == NULL);
	if (page.nitems >= enrich_page_size)
		next = 0;				/* a full page: there may be more at once */
	else
		next = enrich_poll_interval_min_ms;
	nitems = page.nitems;
	unmatched = nitems - enrich_queue_apply_page(b->batch_id, &page, closes, next, &settled);
	usage.done = settled.done;
	usage.failed = settled.failed;
	enrich_ledger_count(call->environment, &usage);
	enrich_api_free_items_page(&page);
	if (unmatched > 0)
	{
		char	   *problem = psprintf("%d of %d items of a page matched no request waiting in this batch (repeated items, a rewound cursor, or another batch's)",
									   unmatched, nitems);

		/* once per batch: a truncated queue would say it on every page */
		if (!ring_has(&unmatched_logged, b->batch_id))
		{
			ereport(LOG, (errmsg("enrich worker: batch %s: %s", b->batch_id, problem)));
			ring_add(&unmatched_logged, b->batch_id);
		}
		enrich_queue_batch_note(b->batch_id, problem);
	}
	if (!closes && nitems < enrich_page_size)
	{
		/* caught up with a batch still processing: poll its status next */
		enrich_queue_batch_polled(b->batch_id, "processing",
								  b->items_received + nitems, next, -1);
	}
}

/*
 * postpone_batch puts off the next call of a batch whose answer could not
 * be recorded, by its poll interval doubled, so that an error that lasts
 * is not met again at once (and logged) in a loop
 */
static void
postpone_batch(EnrichOpenBatch *b)
{
	PG_TRY();
	{
		worker_begin("enrich: postponing a batch");
		enrich_queue_batch_error(b->batch_id, clamp_poll(Max(b->poll_interval_ms, 500) * 2.0),
								 "its answer could not be recorded (see the server log)", false);
		worker_commit();
	}
	PG_CATCH();
	{
		worker_error(b->environment, "postponing a batch");
	}
	PG_END_TRY();
}

/*
 * catalog_present says whether enrich is still installed in the database,
 * in a transaction of its own (after a failure: DROP EXTENSION during the
 * round leaves nothing to record into)
 */
static bool
catalog_present(void)
{
	bool		present;

	worker_begin("enrich: planning");
	present = enrich_queue_catalog_version() != NULL;
	worker_commit();
	return present;
}

/*
 * count_call counts a call in the ledger this worker writes each second:
 * its endpoint, and whether the API answered 429 or it failed otherwise
 * (read from the HTTP status: the answer is classified once, when recorded)
 */
static void
count_call(const WorkerCall *call, const EnrichHttpCall *http)
{
	EnrichUsage usage = {0};
	long		expected = call->kind == CALL_SUBMIT ? 202 : 200;

	switch (call->kind)
	{
		case CALL_SUBMIT:
			usage.bulk_enrich_calls = 1;
			break;
		case CALL_STATUS:
			usage.status_calls = 1;
			break;
		case CALL_ITEMS:
			usage.items_calls = 1;
			break;
		case CALL_LIST:
			usage.list_calls = 1;
			break;
	}
	if (http->failure == ENRICH_HTTP_OK && http->status == 429)
		usage.rate_limited = 1;
	else if (http->failure != ENRICH_HTTP_OK || http->status != expected)
		usage.errors = 1;
	enrich_ledger_count(call->environment, &usage);
}

/*
 * worker_record records the answer to one call in its own transaction; it
 * returns false when that failed because enrich is no longer installed, so
 * that the round's other answers are not tried (and logged) in vain
 */
static bool
worker_record(WorkerCall *call, EnrichHttpCall *http)
{
	volatile bool go_on = true;

	static const char *const activity[] = {
		"enrich: recording a bulk enrich", "enrich: recording a batch status",
		"enrich: applying a page of items", "enrich: recording a list of batches"
	};

	count_call(call, http);
	PG_TRY();
	{
		worker_begin(activity[call->kind]);
		switch (call->kind)
		{
			case CALL_SUBMIT:
				record_submit(call, http);
				break;
			case CALL_STATUS:
				record_status(call, http);
				break;
			case CALL_ITEMS:
				record_items(call, http);
				break;
			case CALL_LIST:
				record_list(call, http);
				break;
		}
		worker_commit();
	}
	PG_CATCH();
	{
		worker_error(call->environment, activity[call->kind]);
		/* a bulk enrich the API may have accepted is left 'submitting' */
		reconcile_pending = true;
		go_on = catalog_present();
		if (go_on && call->batch != NULL)
			postpone_batch(call->batch);
	}
	PG_END_TRY();
	return go_on;
}

/* call_api_now makes one API call of an environment now */
static EnrichCallOutcome
call_api_now(EnrichHttpCall *http, int environment, char *url, long expected, char **message)
{
	prepare_call(http, "GET", url, environment, NULL);
	enrich_http_perform(http, 1);
	return enrich_api_outcome(http, expected, message);
}

/*
 * probe_batch fetches the first page of a batch we did not record and
 * adopts it when one of its items echoes a request whose submission is in
 * doubt (sent, no batch recorded);
 * a batch whose items are all someone else's is remembered as foreign
 */
static void
probe_batch(int environment, bool for_stopped, const EnrichBatchStatus *status)
{
	EnrichHttpCall http;
	EnrichItemsPage page;
	char	   *message;
	int64	   *ids;
	int64	   *checks;
	int			nids = 0;
	int			adopted;

	if (call_api_now(&http, environment,
				  enrich_api_url_items(enrich_environment_name(environment),
									   status->batch_id, NULL, ENRICH_API_MAX_PAGE),
				  200, &message) != ENRICH_OUTCOME_OK ||
		enrich_api_parse_items_page(http.response, &page) != NULL)
		return;
	ids = palloc(sizeof(int64) * Max(page.nitems, 1));
	checks = palloc(sizeof(int64) * Max(page.nitems, 1));
	for (int i = 0; i < page.nitems; i++)
		if (page.items[i].request_id > 0)
		{
			checks[nids] = page.items[i].request_check;
			ids[nids++] = page.items[i].request_id;
		}
	if (nids == 0)
	{
		if (page.nitems > 0)
			ring_add(&foreign_batches, status->batch_id);
		return;					/* someone else's, or nothing processed yet */
	}
	worker_begin("enrich: reconciling");
	adopted = enrich_queue_adopt(status->batch_id, environment, for_stopped, ids, checks, nids,
								 status->total_count, &message);
	worker_commit();
	if (adopted > 0)
	{
		batches_recorded = true;
		ereport(LOG,
				(errmsg("enrich worker: adopted batch %s of %d requests whose bulk enrich was sent but not recorded",
						status->batch_id, adopted)));
	}
	else if (message != NULL)
	{
		ereport(LOG,
				(errmsg("enrich worker: batch %s is not adopted: %s", status->batch_id, message)));
		ring_add(&foreign_batches, status->batch_id);
	}
}

/*
 * reconcile_environment finds the batches of submissions in doubt (the
 * worker stopped between sending them and recording the batch): it
 * lists the batches created since the claim, probes those it did not
 * record, and adopts the ones that carry its request ids; requests still
 * unmatched after enrich.reconcile_grace are sent again.  It returns true
 * while requests remain to reconcile.
 */
static bool
reconcile_environment(int environment, bool for_stopped)
{
	char	   *claimed_date;
	double		claimed_age_ms;
	bool		orphans;
	int			probes = 0;

	worker_begin("enrich: reconciling");
	orphans = enrich_queue_orphans(environment, for_stopped, &claimed_date, &claimed_age_ms);
	worker_commit();
	if (!orphans)
		return false;

	for (int offset = 0; offset < 10 * ENRICH_API_MAX_BATCH_LIST && probes < 20;
		 offset += 100)
	{
		EnrichHttpCall http;
		EnrichBatchList list;
		char	   *message;
		char	  **ids;
		bool	   *known;

		if (call_api_now(&http, environment,
					  enrich_api_url_batches(enrich_environment_name(environment),
											 claimed_date, 100, offset),
					  200, &message) != ENRICH_OUTCOME_OK ||
			enrich_api_parse_batch_list(http.response, &list) != NULL ||
			list.nbatches == 0)
			break;
		ids = palloc(sizeof(char *) * list.nbatches);
		for (int i = 0; i < list.nbatches; i++)
			ids[i] = list.batches[i].batch_id;
		worker_begin("enrich: reconciling");
		known = enrich_queue_known_batches(ids, list.nbatches);
		worker_commit();
		for (int i = 0; i < list.nbatches && probes < 20; i++)
		{
			if (known[i] || ring_has(&foreign_batches, ids[i]))
				continue;
			probe_batch(environment, for_stopped, &list.batches[i]);
			probes++;
		}
		if (list.nbatches < 100)
			break;
	}

	worker_begin("enrich: reconciling");
	if (claimed_age_ms >= enrich_reconcile_grace_ms)
	{
		int			requeued = enrich_queue_requeue_orphans(environment, for_stopped,
															enrich_reconcile_grace_ms);

		if (requeued > 0)
			ereport(LOG,
					(errmsg("enrich worker: %d requests of environment \"%s\" interrupted while being sent had no batch after %d ms; they are sent again",
							requeued, enrich_environment_name(environment),
							enrich_reconcile_grace_ms)));
	}
	orphans = enrich_queue_orphans(environment, for_stopped, &claimed_date, &claimed_age_ms);
	worker_commit();
	return orphans;
}

/*
 * notice_stopped_workers makes a worker reconcile when another worker
 * stopped since the last round: the submissions that one claimed and had
 * not recorded are in doubt now
 */
static void
notice_stopped_workers(void)
{
	int32		others[ENRICH_MAX_WORKERS];
	int			n = enrich_shared_other_workers(others);

	for (int i = 0; i < nothers_seen; i++)
	{
		bool		running = false;

		for (int j = 0; j < n && !running; j++)
			running = others[j] == others_seen[i];
		if (!running)
			reconcile_pending = true;
	}
	memcpy(others_seen, others, sizeof(int32) * n);
	nothers_seen = n;
}

/*
 * reconcile_lock takes (without waiting) or releases, in a transaction of
 * its own, the lock of the worker that reconciles for the workers that
 * stopped; returns whether this worker holds it
 */
static bool
reconcile_lock(bool take)
{
	bool		held;

	worker_begin("enrich: reconciling");
	held = enrich_queue_reconcile_lock(take);
	worker_commit();
	return held;
}

/*
 * worker_reconcile runs reconciliation for every environment that can be
 * called, at most once a second while requests remain to reconcile: of the
 * submissions this worker claimed, and, when no other worker does it at
 * the same time, of those of the workers that stopped
 */
static void
worker_reconcile(void)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		remaining = false;
	volatile bool for_stopped = false;
	long		unused = LONG_MAX;

	notice_stopped_workers();
	if (!reconcile_pending || now < reconcile_after || !keys_loaded)
		return;
	PG_TRY();
	{
		for_stopped = reconcile_lock(true);
		for (int e = 0; e < ENRICH_ENV_COUNT; e++)
		{
			if (envs[e].api_key == NULL || enrich_shared_env_paused(e))
				continue;		/* a new key sets reconcile_pending again */
			if (!env_callable(e, now, &unused))
			{
				remaining = true;	/* backing off: try again later */
				continue;
			}
			if (reconcile_environment(e, for_stopped))
				remaining = true;
		}
	}
	PG_CATCH();
	{
		worker_error(-1, "reconciling");
		remaining = true;
	}
	PG_END_TRY();
	/* released whatever happened: a session lock outlives a failed pass */
	if (for_stopped)
	{
		PG_TRY();
		{
			reconcile_lock(false);
		}
		PG_CATCH();
		{
			worker_error(-1, "reconciling");
		}
		PG_END_TRY();
	}
	reconcile_pending = remaining;
	reconcile_after = now + USECS_PER_SEC;
}

/*
 * wake_batch_owners wakes the other workers once this one recorded new
 * batches (committed by now): a batch is polled by the worker its id falls
 * to, which may be asleep with nothing else to do
 */
static void
wake_batch_owners(void)
{
	if (batches_recorded && enrich_workers > 1)
		enrich_shared_wake_workers();
	batches_recorded = false;
}

/*
 * worker_round starts a round (nothing more while enrich is not installed
 * or its catalog is not this library's: no statement on its tables would
 * work), reconciles, plans, calls and records once; returns how long to
 * sleep: 0 to go on at once, -1 to sleep until woken
 */
static long
worker_round(void)
{
	WorkerCall *calls = palloc0(sizeof(WorkerCall) * enrich_max_in_flight);
	EnrichHttpCall *https = palloc0(sizeof(EnrichHttpCall) * enrich_max_in_flight);
	volatile long sleep_ms = 0;
	volatile int ncalls = 0;
	volatile bool called = true;

	/* nothing to do while enrich is not installed (DROP EXTENSION) */
	if (!worker_start_round())
		return -1;				/* CREATE or ALTER EXTENSION wakes the worker */
	worker_reconcile();
	wake_batch_owners();		/* batches adopted */

	PG_TRY();
	{
		long		planned_sleep = 0;

		worker_plan(calls, https, &ncalls, &planned_sleep);
		sleep_ms = planned_sleep;
		/* requests to reconcile: look again in a second */
		if (ncalls == 0 && reconcile_pending && (sleep_ms < 0 || sleep_ms > 1000))
			sleep_ms = 1000;
	}
	PG_CATCH();
	{
		/* the calls started before the error are still answered and recorded */
		worker_error(-1, "planning");
		/* a chunk claimed when the error came may have been sent unrecorded */
		reconcile_pending = true;
		sleep_ms = 1000;		/* do not spin on a persistent error */
	}
	PG_END_TRY();
	/* the tokens of calls an error kept from being made count as spent */
	enrich_budget_sent();

	if (ncalls == 0)
	{
		/* a call whose start failed half-way: dropped, never left pending */
		enrich_http_abandon();
		return sleep_ms;
	}

	pgstat_report_activity(STATE_RUNNING, "enrich: calling the AggKnowledge API");
	PG_TRY();
	{
		enrich_http_finish();
	}
	PG_CATCH();
	{
		/* no transaction is open here: log, and let the calls be made again */
		ErrorData  *edata;

		MemoryContextSwitchTo(loop_context);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(LOG, (errmsg("enrich worker: calling the API failed: %s", edata->message)));
		called = false;
		/* a bulk enrich may have arrived: its requests wait for reconciliation */
		reconcile_pending = true;
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
	if (!called)
		return 1000;

	for (int i = 0; i < ncalls; i++)
		if (!worker_record(&calls[i], &https[i]))
			break;				/* DROP EXTENSION: nothing to record into */
	wake_batch_owners();
	return 0;
}

/*
 * worker_ignore_idle_cancel forgets a cancel (pg_cancel_backend) that came
 * while the worker slept: there was no statement to cancel.  A cancel
 * during a round cancels the step under way, which is logged, and the
 * worker goes on.
 */
static void
worker_ignore_idle_cancel(void)
{
	QueryCancelPending = false;
}

/*
 * worker_iteration runs one round with every error caught (a cancel that
 * reached a step outside the round's own handlers, say): logged, and the
 * worker goes on a second later instead of exiting
 */
static long
worker_iteration(void)
{
	volatile long sleep_ms = 0;

	PG_TRY();
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		sleep_ms = worker_round();
	}
	PG_CATCH();
	{
		worker_error(-1, "a round");
		sleep_ms = 1000;
	}
	PG_END_TRY();
	return sleep_ms;
}

/*
 * enrich_worker_main is the worker's entry point, started by the launcher:
 * signals, the connection to the database the launcher names (by OID, in
 * bgw_extra) under pinned settings, then the loop.  SIGTERM (die)
 * stops the worker at once, whatever it waits on: a bulk enrich sent and
 * not recorded is reconciled by the workers that run (or by this one,
 * started again).
 */
void
enrich_worker_main(Datum main_arg)
{
	EnrichWorkerExtra extra;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	worker_slot = DatumGetInt32(main_arg);
	memcpy(&extra, MyBgworkerEntry->bgw_extra, sizeof(extra));
	worker_database = extra.name;
	BackgroundWorkerInitializeConnectionByOid(extra.database, InvalidOid, 0);
	enrich_pin_worker_settings();
	/* a launcher started again did not know this slot's worker ran */
	if (!enrich_shared_worker_started(extra.index, worker_slot))
		proc_exit(0);
	pgstat_report_appname("enrich worker");
	srandom((unsigned int) (MyProcPid ^ GetCurrentTimestamp()));

	for (int i = 0; i < ENRICH_ENV_COUNT; i++)
	{
		memset(&envs[i], 0, sizeof(EnvState));
		envs[i].chunk_limit = ENRICH_API_MAX_REQUESTS;
	}
	loop_context = AllocSetContextCreate(TopMemoryContext, "enrich worker loop",
										 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		long		sleep_ms;
		uint64		wakes = enrich_shared_wake_generation();

		MemoryContextReset(loop_context);
		MemoryContextSwitchTo(loop_context);
		worker_ignore_idle_cancel();
		sleep_ms = worker_iteration();

		/*
		 * A wake that came during the round set the latch, but a wait
		 * inside the round (for a lock, or for a buffer another process
		 * reads in) may have reset it since, and the round may have looked
		 * at the queue before the commit that asked for the wake: the
		 * count of wakes tells.  A SIGHUP is looked at likewise.
		 */
		if (sleep_ms == 0 || ConfigReloadPending || wakes != enrich_shared_wake_generation())
			continue;

		/* with nothing pending, look anyway every enrich.idle_check */
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | WL_TIMEOUT,
						 sleep_ms > 0 ? Min(sleep_ms, enrich_idle_check_ms) : enrich_idle_check_ms,
						 enrich_wait_event(&wait_event_idle, "EnrichWorkerIdle"));
		ResetLatch(MyLatch);
	}
}
