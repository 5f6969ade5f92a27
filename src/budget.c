/*-------------------------------------------------------------------------
 *
 * budget.c
 *	  The rate budget of each API key, in shared memory of its own: the API
 *	  limits calls per key and tier, so the workers of every database that
 *	  uses a key share one token bucket per tier, and a Retry-After the API
 *	  sends one database holds for all.  A key is known here by a hash only,
 *	  never by its text.
 *
 * The databases that use a key share its budget fairly: while two or more
 * have calls to make (each asked within the last second), one that made
 * more than its share of the recent calls (an average over about two
 * seconds) leaves a token to the others when tokens are scarce, so that
 * none gets less than about its share, whatever the number of workers
 * each runs.  A database alone uses the whole budget.
 *
 * A token is taken before its call is ready (a bulk enrich's requests are
 * claimed after its token, in a transaction of their own), but the API
 * counts the call when it arrives.  Until the worker says its calls went
 * out (enrich_budget_sent), a token taken still holds its place in the
 * burst: the bucket refills to the burst less the tokens pending.
 * Otherwise each worker claiming while the bucket refilled added a call to
 * the burst the API allows, and two workers sending their chunks after
 * slow claims met a 429.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#include "budget.h"
#include "shared.h"

/* the most API keys in use at once, and databases sharing one */
#define ENRICH_MAX_KEYS 64
#define ENRICH_MAX_SHARERS 8

/* a database that asked for a token this recently has calls to make */
#define SHARER_ACTIVE_USECS (1000 * 1000)
/* how long, in seconds, a database's use of a budget is remembered */
#define SHARER_MEMORY_SECONDS 2.0
/* the share above a fair one at which a database leaves tokens to others */
#define SHARER_MARGIN 0.05
/*
 * how long after the last token taken the tokens still pending are
 * forgotten, should a process have failed to say its calls were made
 */
#define PENDING_FORGET_USECS (10 * USECS_PER_SEC)

/* a database's use of one tier of a key's budget */
typedef struct Sharer
{
	Oid			database;		/* InvalidOid: a free entry */
	TimestampTz asked_at;
	double		used;			/* calls, decaying */
	TimestampTz used_at;
	TimestampTz looked_at;		/* its last early look */
} Sharer;

/* a token bucket: one API rate tier of one key */
typedef struct TokenBucket
{
	double		tokens;
	int			pending;		/* tokens taken whose calls were not made yet */
	TimestampTz taken_at;		/* the last token taken */
	double		capacity;		/* the capacity and the rate of the last refill */
	int			rate;
	TimestampTz refilled_at;
	TimestampTz blocked_until;	/* a 429 said to wait */
	Sharer		sharers[ENRICH_MAX_SHARERS];
} TokenBucket;

/* the rate budget of one API key */
typedef struct KeyBudget
{
	uint64		key_hash;		/* 0: a free entry */
	TimestampTz used_at;
	TokenBucket tiers[ENRICH_TIER_COUNT];
} KeyBudget;

typedef struct BudgetShared
{
	slock_t		mutex;
	KeyBudget	budgets[ENRICH_MAX_KEYS];
} BudgetShared;

static BudgetShared *budget_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/*
 * The tokens this process took whose calls it has not made yet, by key and
 * tier: a worker has a few at most (its calls of one round)
 */
#define ENRICH_MAX_PENDING 8
typedef struct PendingTokens
{
	uint64		key_hash;
	int			tier;
	int			count;
} PendingTokens;

static PendingTokens my_pending[ENRICH_MAX_PENDING];
static bool exit_callback_registered = false;

/* budget_shmem_request asks the postmaster for the budgets' memory */
static void
budget_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(BudgetShared)));
}

/* budget_shmem_startup creates or attaches the budgets' memory */
static void
budget_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	budget_shared = ShmemInitStruct("enrich budgets", sizeof(BudgetShared), &found);
	if (!found)
	{
		memset(budget_shared, 0, sizeof(BudgetShared));
		SpinLockInit(&budget_shared->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * enrich_budget_init installs the shared memory hooks when enrich is
 * preloaded; otherwise every token is granted (no worker runs anyway)
 */
void
enrich_budget_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = budget_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = budget_shmem_startup;
}

/*
 * key_bucket returns the bucket of a tier of a key, making the key a
 * budget (from a free entry, or the one used longest ago) when it has
 * none; the spinlock is held
 */
static TokenBucket *
key_bucket(uint64 key_hash, int tier, TimestampTz now)
{
	KeyBudget  *oldest = &budget_shared->budgets[0];

	for (int k = 0; k < ENRICH_MAX_KEYS; k++)
	{
		KeyBudget  *b = &budget_shared->budgets[k];

		if (b->key_hash == key_hash)
		{
			b->used_at = now;
			return &b->tiers[tier];
		}
		if (b->key_hash == 0 || b->used_at < oldest->used_at)
			oldest = b;
	}
	memset(oldest, 0, sizeof(KeyBudget));
	oldest->key_hash = key_hash;
	oldest->used_at = now;
	return &oldest->tiers[tier];
}

/*
 * sharer_of returns this database's use of a bucket, taking the entry asked
 * from longest ago when it has none; the spinlock is held
 */
static Sharer *
sharer_of(TokenBucket *b, TimestampTz now)
{
	Sharer	   *oldest = &b->sharers[0];

	for (int i = 0; i < ENRICH_MAX_SHARERS; i++)
	{
		if (b->sharers[i].database == MyDatabaseId)
			return &b->sharers[i];
		if (b->sharers[i].asked_at < oldest->asked_at)
			oldest = &b->sharers[i];
	}
	memset(oldest, 0, sizeof(Sharer));
	oldest->database = MyDatabaseId;
	oldest->used_at = now;
	return oldest;
}

/* decayed returns a sharer's use, decayed to now */
static double
decayed(Sharer *s, TimestampTz now)
{
	double		age = Max(0, now - s->used_at) / 1e6;

	s->used *= exp(-age / SHARER_MEMORY_SECONDS);
	s->used_at = now;
	return s->used;
}

/*
 * over_share says whether this database (me) should leave a token to the
 * other databases that have calls to make: tokens are scarce and it made
 * more than its share of the recent calls; the spinlock is held
 */
static bool
over_share(TokenBucket *b, Sharer *me, double capacity, TimestampTz now)
{
	int			active = 0;
	double		total = 0;

	if (b->tokens >= capacity / 2)
		return false;
	for (int i = 0; i < ENRICH_MAX_SHARERS; i++)
	{
		Sharer	   *s = &b->sharers[i];

		if (!OidIsValid(s->database) || now - s->asked_at > SHARER_ACTIVE_USECS)
			continue;
		active++;
		total += decayed(s, now);
	}
	return active >= 2 && total >= 1.0 &&
		decayed(me, now) / total > 1.0 / active + SHARER_MARGIN;
}

/*
 * bucket_capacity returns how many tokens a tier of rate calls a second
 * holds: enrich.rate_burst seconds of calls less a tenth of a second's, one
 * call at least (the calls of a burst reach the API spread by the
 * network's jitter), one token at least
 */
static double
bucket_capacity(int rate)
{
	return Max(1.0, (double) rate * enrich_rate_burst_s - Max(1.0, rate / 10.0));
}

/*
 * refill adds the tokens earned since the last refill, up to the capacity
 * less the tokens pending; the spinlock is held
 */
static void
refill(TokenBucket *b, double capacity, int rate, TimestampTz now)
{
	double		room = Max(0.0, capacity - b->pending);

	if (b->refilled_at == 0)
		b->tokens = room;
	else if (now > b->refilled_at)
		b->tokens = Max(b->tokens, Min(room, b->tokens + (now - b->refilled_at) / 1e6 * rate));
	b->refilled_at = Max(b->refilled_at, now);
	b->capacity = capacity;
	b->rate = rate;
	/* a safety net: tokens are pending for a round, not for long */
	if (b->pending > 0 && now - b->taken_at > PENDING_FORGET_USECS)
		b->pending = 0;
}

/*
 * settle_pending takes n tokens off the bucket's pending ones, after a
 * refill up to the room they left (what was earned while they were pending
 * is not earned again); the spinlock is held
 */
static void
settle_pending(TokenBucket *b, int n, TimestampTz now)
{
	if (b->rate > 0)
		refill(b, b->capacity, b->rate, now);
	b->pending = Max(0, b->pending - n);
}

/*
 * note_pending adds n (negative: takes away) to this process's tokens
 * pending of a key's tier, and returns how many it takes away from the
 * bucket's (no more than this process added)
 */
static int
note_pending(uint64 key_hash, int tier, int n)
{
	PendingTokens *free_entry = NULL;

	for (int i = 0; i < ENRICH_MAX_PENDING; i++)
	{
		PendingTokens *p = &my_pending[i];

		if (p->count > 0 && p->key_hash == key_hash && p->tier == tier)
		{
			int			before = p->count;

			p->count = Max(0, p->count + n);
			return p->count - before;
		}
		if (p->count == 0 && free_entry == NULL)
			free_entry = p;
	}
	if (n <= 0 || free_entry == NULL)
		return 0;				/* none noted (more keys than entries: not held) */
	free_entry->key_hash = key_hash;
	free_entry->tier = tier;
	free_entry->count = n;
	return n;
}

/* budget_exit lets go of the tokens a worker leaving still held pending */
static void
budget_exit(int code, Datum arg)
{
	enrich_budget_sent();
}

/*
 * enrich_budget_look says whether a worker of this database may take an
 * early look at its batches with a call of a tier: none did in the last
 * interval_ms, and the worker knows of nothing else to call (starved) or
 * the tier's bucket is full, so that its token would be lost otherwise.
 * Never for an unlimited or blocked tier.  It counts the look as taken;
 * the call still takes its token.
 */
bool
enrich_budget_look(uint64 key_hash, int tier, int rate, TimestampTz now, long interval_ms,
				   bool starved)
{
	TokenBucket *b;
	Sharer	   *me;
	bool		look = false;

	if (budget_shared == NULL || rate == 0)
		return false;
	SpinLockAcquire(&budget_shared->mutex);
	b = key_bucket(key_hash, tier, now);
	me = sharer_of(b, now);
	refill(b, bucket_capacity(rate), rate, now);
	if (b->blocked_until <= now && now - me->looked_at >= interval_ms * (int64) 1000 &&
		(starved || b->tokens >= bucket_capacity(rate) - b->pending - 1.0))
	{
		me->looked_at = now;
		look = true;
	}
	SpinLockRelease(&budget_shared->mutex);
	return look;
}

/*
 * enrich_budget_take takes a token of a tier of a key's budget that allows
 * rate calls a second (0: unlimited) if one is available and this database
 * is not over its share; otherwise it returns false and lowers *wait_ms to
 * when to ask again.  A Retry-After blocks the tier even when it is
 * unlimited.
 */
bool
enrich_budget_take(uint64 key_hash, int tier, int rate, TimestampTz now, long *wait_ms)
{
	TokenBucket *b;
	Sharer	   *me;
	double		capacity = bucket_capacity(rate);
	bool		taken = false;
	long		wait = -1;

	if (budget_shared == NULL)
		return true;
	if (!exit_callback_registered)
	{
		before_shmem_exit(budget_exit, (Datum) 0);
		exit_callback_registered = true;
	}
	SpinLockAcquire(&budget_shared->mutex);
	b = key_bucket(key_hash, tier, now);
	me = sharer_of(b, now);
	me->asked_at = now;
	if (b->blocked_until > now)
		wait = (long) ((b->blocked_until - now) / 1000 + 1);
	else if (rate == 0)
		taken = true;
	else
	{
		refill(b, capacity, rate, now);
		if (b->tokens >= 1.0 && !over_share(b, me, capacity, now))
		{
			b->tokens -= 1.0;
			b->pending += note_pending(key_hash, tier, 1);
			b->taken_at = now;
			taken = true;
		}
		else
			wait = (long) (Max(1.0 - b->tokens, 1.0 / ENRICH_MAX_SHARERS) * 1000.0 / rate) + 1;
	}
	if (taken)
		me->used = decayed(me, now) + 1.0;
	SpinLockRelease(&budget_shared->mutex);
	if (taken)
		enrich_shared_count_call(tier, now);
	if (wait >= 0)
		*wait_ms = Min(*wait_ms, wait);
	return taken;
}

/*
 * enrich_budget_sent says that the calls of every token this process took
 * were made (or will never be): their tokens hold no place in the burst
 * any more
 */
void
enrich_budget_sent(void)
{
	if (budget_shared == NULL)
		return;
	for (int i = 0; i < ENRICH_MAX_PENDING; i++)
	{
		PendingTokens *p = &my_pending[i];
		TokenBucket *b;
		TimestampTz now;

		if (p->count == 0)
			continue;
		now = GetCurrentTimestamp();
		SpinLockAcquire(&budget_shared->mutex);
		b = key_bucket(p->key_hash, p->tier, now);
		settle_pending(b, p->count, now);
		SpinLockRelease(&budget_shared->mutex);
		p->count = 0;
	}
}

/* enrich_budget_give_back returns a token that was not used */
void
enrich_budget_give_back(uint64 key_hash, int tier, int rate)
{
	TokenBucket *b;
	TimestampTz now = GetCurrentTimestamp();
	int			returned;

	if (budget_shared == NULL || rate == 0)
		return;
	SpinLockAcquire(&budget_shared->mutex);
	b = key_bucket(key_hash, tier, now);
	returned = -note_pending(key_hash, tier, -1);
	settle_pending(b, returned, now);
	b->tokens = Min(b->tokens + 1.0, Max(0.0, bucket_capacity(rate) - b->pending));
	{
		Sharer	   *me = sharer_of(b, now);

		me->used = Max(0.0, decayed(me, now) - 1.0);
	}
	SpinLockRelease(&budget_shared->mutex);
}

/*
 * enrich_budget_block honours a Retry-After: no call of the tier with that
 * key until then, from any database
 */
void
enrich_budget_block(uint64 key_hash, int tier, TimestampTz until)
{
	TokenBucket *b;

	if (budget_shared == NULL)
		return;
	SpinLockAcquire(&budget_shared->mutex);
	b = key_bucket(key_hash, tier, GetCurrentTimestamp());
	b->blocked_until = Max(b->blocked_until, until);
	b->tokens = 0;
	SpinLockRelease(&budget_shared->mutex);
}
