/*-------------------------------------------------------------------------
 *
 * ratelimit.c
 *	  The tier rate limits: one token bucket per API key and tier, refilled
 *	  at --tier3/--tier4 tokens per second up to a burst of twice that.
 *	  Callers hold mock_lock.
 *
 *-------------------------------------------------------------------------
 */
#include "mock.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct bucket
{
	struct bucket *next;
	int			tier;
	double		tokens;
	int64_t		last_ms;		/* monotonic time of the last refill */
	char		key[];
} bucket;

static bucket *buckets;

/*
 * ratelimit_take_locked takes one token from the bucket of (key, tier).
 * It returns 0 if the request may go on, else the Retry-After in seconds:
 * the time until a token is back, rounded up, at least 1.
 */
int
ratelimit_take_locked(const char *key, int tier, int64_t now)
{
	int64_t		rate = (tier == 3) ? mock_conf.tier3 : mock_conf.tier4;
	double		burst = 2.0 * (double) rate;
	bucket	   *b;
	double		wait;

	if (rate <= 0)
		return 0;

	for (b = buckets; b; b = b->next)
		if (b->tier == tier && strcmp(b->key, key) == 0)
			break;
	if (b == NULL)
	{
		size_t		len = strlen(key);

		b = mock_malloc(sizeof(*b) + len + 1);
		memcpy(b->key, key, len + 1);
		b->tier = tier;
		b->tokens = burst;
		b->last_ms = now;
		b->next = buckets;
		buckets = b;
	}

	b->tokens += (double) (now - b->last_ms) * (double) rate / 1000.0;
	if (b->tokens > burst)
		b->tokens = burst;
	b->last_ms = now;

	if (b->tokens >= 1.0)
	{
		b->tokens -= 1.0;
		return 0;
	}
	wait = ceil((1.0 - b->tokens) / (double) rate);
	return wait < 1.0 ? 1 : (int) wait;
}

/* ratelimit_reset_locked forgets every bucket (they start full again). */
void
ratelimit_reset_locked(void)
{
	while (buckets)
	{
		bucket	   *next = buckets->next;

		free(buckets);
		buckets = next;
	}
}
