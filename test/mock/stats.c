/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  What GET /__mock/stats reports: responses per endpoint and status,
 *	  dropped connections, answers a hostile fault changed, TCP connections
 *	  accepted, and how many times each normalized identifier was accepted
 *	  in a bulk enrich (the submissions map, also used for the "flaky"
 *	  outcome).  Callers hold mock_lock.
 *
 *-------------------------------------------------------------------------
 */
#include "mock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATUS_SLOTS 600		/* index = HTTP status; 0 = dropped */

const char *const mock_endpoint_names[EP_COUNT] = {
	"bulk_enrich", "list_batches", "batch_status", "get_item", "list_items",
	"other"
};

/* One identifier of the submissions map (chained hash table). */
typedef struct submission
{
	struct submission *next;
	uint64_t	hash;
	int64_t		count;
	char		identifier[];	/* NUL-terminated */
} submission;

static int64_t counts[EP_COUNT][STATUS_SLOTS];
static int64_t hostile_counts[EP_COUNT];
static int64_t requests_total;
static int64_t connections;

static submission **buckets;
static size_t nbuckets;
static size_t nsubmissions;

/* stats_count_locked counts one response (or STATS_DROP) of an endpoint. */
void
stats_count_locked(mock_endpoint ep, int status)
{
	int			slot = (status == STATS_DROP) ? 0 : status;

	if (slot < 0 || slot >= STATUS_SLOTS)
		return;
	counts[ep][slot]++;
	requests_total++;
}

/* stats_hostile_locked counts a response the hostile fault changed. */
void
stats_hostile_locked(mock_endpoint ep)
{
	hostile_counts[ep]++;
}

void
stats_connection_locked(void)
{
	connections++;
}

/* find_submission returns the entry of identifier, or NULL. */
static submission *
find_submission(const char *identifier, uint64_t hash)
{
	submission *s;

	if (nbuckets == 0)
		return NULL;
	for (s = buckets[hash & (nbuckets - 1)]; s; s = s->next)
		if (s->hash == hash && strcmp(s->identifier, identifier) == 0)
			return s;
	return NULL;
}

/* stats_submissions_locked is how often identifier was accepted so far. */
int64_t
stats_submissions_locked(const char *identifier)
{
	uint64_t	hash = mock_fnv1a64(identifier, strlen(identifier), MOCK_FNV_OFFSET);
	submission *s = find_submission(identifier, hash);

	return s ? s->count : 0;
}

/* grow doubles the bucket array once the map is as full as it is wide. */
static void
grow(void)
{
	size_t		n = nbuckets ? nbuckets * 2 : 1024;
	submission **nb = mock_malloc(n * sizeof(*nb));
	size_t		i;

	memset(nb, 0, n * sizeof(*nb));
	for (i = 0; i < nbuckets; i++)
	{
		submission *s = buckets[i];

		while (s)
		{
			submission *next = s->next;

			s->next = nb[s->hash & (n - 1)];
			nb[s->hash & (n - 1)] = s;
			s = next;
		}
	}
	free(buckets);
	buckets = nb;
	nbuckets = n;
}

/* stats_add_submission_locked counts one accepted submission. */
void
stats_add_submission_locked(const char *identifier)
{
	size_t		len = strlen(identifier);
	uint64_t	hash = mock_fnv1a64(identifier, len, MOCK_FNV_OFFSET);
	submission *s = find_submission(identifier, hash);

	if (s == NULL)
	{
		if (nsubmissions >= nbuckets)
			grow();
		s = mock_malloc(sizeof(*s) + len + 1);
		memcpy(s->identifier, identifier, len + 1);
		s->hash = hash;
		s->count = 0;
		s->next = buckets[hash & (nbuckets - 1)];
		buckets[hash & (nbuckets - 1)] = s;
		nsubmissions++;
	}
	s->count++;
}

/* stats_json_locked builds the body of GET /__mock/stats. */
json_object *
stats_json_locked(void)
{
	json_object *root = json_object_new_object();
	json_object *endpoints = json_object_new_object();
	json_object *subs = json_object_new_object();
	int			ep;
	size_t		i;

	for (ep = 0; ep < EP_COUNT; ep++)
	{
		json_object *byst = NULL;
		int			st;

		for (st = 1; st <= STATUS_SLOTS; st++)
		{
			int			slot = st % STATUS_SLOTS;	/* "drop" goes last */
			char		key[16];

			if (counts[ep][slot] == 0)
				continue;
			if (byst == NULL)
				byst = json_object_new_object();
			if (slot == 0)
				strcpy(key, "drop");
			else
				snprintf(key, sizeof(key), "%d", slot);
			json_object_object_add(byst, key,
								   json_object_new_int64(counts[ep][slot]));
		}
		if (byst)
			json_object_object_add(endpoints, mock_endpoint_names[ep], byst);
	}

	for (i = 0; i < nbuckets; i++)
	{
		submission *s;

		for (s = buckets[i]; s; s = s->next)
			json_object_object_add(subs, s->identifier,
								   json_object_new_int64(s->count));
	}

	json_object_object_add(root, "endpoints", endpoints);
	json_object_object_add(root, "requests_total",
						   json_object_new_int64(requests_total));
	json_object_object_add(root, "connections",
						   json_object_new_int64(connections));
	json_object_object_add(root, "batches",
						   json_object_new_int(store_count_locked()));
	json_object_object_add(root, "submissions", subs);

	/* only once a hostile fault changed an answer, so the keys stay stable */
	for (ep = 0; ep < EP_COUNT; ep++)
		if (hostile_counts[ep] > 0)
		{
			json_object *hostile;

			if (!json_object_object_get_ex(root, "hostile", &hostile))
			{
				hostile = json_object_new_object();
				json_object_object_add(root, "hostile", hostile);
			}
			json_object_object_add(hostile, mock_endpoint_names[ep],
								   json_object_new_int64(hostile_counts[ep]));
		}
	return root;
}

/* stats_reset_locked forgets every counter and submission (frees all). */
void
stats_reset_locked(void)
{
	size_t		i;

	memset(counts, 0, sizeof(counts));
	memset(hostile_counts, 0, sizeof(hostile_counts));
	requests_total = 0;
	connections = 0;
	for (i = 0; i < nbuckets; i++)
	{
		submission *s = buckets[i];

		while (s)
		{
			submission *next = s->next;

			free(s);
			s = next;
		}
	}
	free(buckets);
	buckets = NULL;
	nbuckets = 0;
	nsubmissions = 0;
}
