/*-------------------------------------------------------------------------
 *
 * store.c
 *	  Batches and their items: creation from validated requests, the
 *	  outcome of each item, processing over time (pending, processing,
 *	  completed, failed), listing, cursors and pages.  Callers hold mock_lock.
 *
 * Every item is serialized to JSON once, when its batch is created, into
 * one buffer per batch where items follow each other separated by commas.
 * A page of items is then a single copy out of that buffer.  Processing over
 * time only decides how many of those items are visible.
 *
 *-------------------------------------------------------------------------
 */
#include "mock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CURSOR_LEN 24			/* 8 hex digits of offset, 16 of check */

struct mock_batch
{
	uint32_t	seq;
	char		id[32];			/* bat_<8-digit seq>_<8 hex> */
	mock_env	env;
	int64_t		created_wall_ms;
	int64_t		created_mono_ms;
	int64_t		start_delay_ms; /* settings when it was created */
	int64_t		items_per_second;
	bool		failed;			/* ends failed: no items */
	int			total;
	char	   *items;			/* "item0,item1,...,itemN-1," */
	size_t	   *offsets;		/* item i is items[offsets[i] .. offsets[i+1]-1) */
	int		   *successes;		/* successes[k]: successful items among first k */
};

static mock_batch **batches;	/* in creation order, so ascending seq */
static int	nbatches;
static int	capbatches;
static uint32_t next_seq = 1;	/* never reset: ids are never reused */
static uint64_t id_rng;

/* failure_json appends the error object of a failed item. */
static void
failure_json(sbuf *b, const char *code, const char *message)
{
	sbuf_printf(b, "{\"code\":\"%s\",\"message\":\"%s\"}", code, message);
}

/*
 * store_create_batch_locked creates a batch from n validated requests and
 * writes its id to id_out.  The outcome of each item is decided here: the
 * scripted outcomes of identity.c, and "flaky" by the submissions seen so
 * far.  Accepted identifiers are counted as submissions unless the batch
 * is to fail (a failed batch charges nothing and may be resubmitted).
 */
void
store_create_batch_locked(mock_env env, mock_input *in, int n, bool fail,
						  char *id_out, size_t id_len)
{
	mock_batch *b = mock_malloc(sizeof(*b));
	sbuf		items;
	int			i;

	memset(b, 0, sizeof(*b));
	if (id_rng == 0)
		id_rng = (uint64_t) mock_wall_ms() ^ ((uint64_t) getpid() << 32);
	b->seq = next_seq++;
	snprintf(b->id, sizeof(b->id), "bat_%08u_%08x", (unsigned) b->seq,
			 (unsigned) (mock_splitmix64(&id_rng) & 0xFFFFFFFFu));
	b->env = env;
	b->created_wall_ms = mock_wall_ms();
	b->created_mono_ms = mock_mono_ms();
	b->start_delay_ms = mock_conf.start_delay_ms;
	b->items_per_second = mock_conf.items_per_second;
	b->failed = fail;
	b->total = n;

	if (!fail)
	{
		size_t		est = 0;

		for (i = 0; i < n; i++)
			est += in[i].person_len + in[i].metadata_len + 160;
		sbuf_init(&items, est);
		b->offsets = mock_malloc(sizeof(size_t) * (size_t) (n + 1));
		b->successes = mock_malloc(sizeof(int) * (size_t) (n + 1));
		b->successes[0] = 0;

		for (i = 0; i < n; i++)
		{
			mock_outcome outcome = identity_outcome(in[i].identifier);
			bool		ok = false;

			if (outcome == OUTCOME_SUCCESS)
				ok = true;
			else if (outcome == OUTCOME_FLAKY)
				ok = stats_submissions_locked(in[i].identifier) > 0;

			b->offsets[i] = items.len;
			sbuf_printf(&items, "{\"itemId\":\"itm_%08u_%07d\",\"isSuccess\":%s,"
						"\"isRetryable\":%s,\"metadata\":",
						(unsigned) b->seq, i, ok ? "true" : "false",
						(ok || outcome == OUTCOME_FLAKY) ? "true" : "false");
			if (in[i].metadata)
				sbuf_append(&items, in[i].metadata, in[i].metadata_len);
			else
				sbuf_puts(&items, "null");
			sbuf_puts(&items, ",\"person\":");
			if (ok)
			{
				sbuf_append(&items, in[i].person, in[i].person_len);
				sbuf_puts(&items, ",\"error\":null},");
			}
			else
			{
				sbuf_puts(&items, "null,\"error\":");
				if (outcome == OUTCOME_NOT_FOUND)
					failure_json(&items, "not_found",
								 identity_is_unicode(in[i].identifier) ?
								 "aucune personne ne correspond · 該当する人物はいません · "
								 "לא נמצא אדם 🔍" :
								 "no person matches this identifier");
				else if (outcome == OUTCOME_INVALID)
					failure_json(&items, "invalid_identifier",
								 "the identifier is not valid");
				else
					failure_json(&items, "temporarily_unavailable",
								 "the person source is temporarily unavailable, retry later");
				sbuf_puts(&items, "},");
			}
			b->successes[i + 1] = b->successes[i] + (ok ? 1 : 0);
			stats_add_submission_locked(in[i].identifier);
		}
		b->offsets[n] = items.len;
		b->items = sbuf_detach(&items, NULL);
	}

	if (nbatches == capbatches)
	{
		capbatches = capbatches ? capbatches * 2 : 64;
		batches = mock_realloc(batches, sizeof(*batches) * (size_t) capbatches);
	}
	batches[nbatches++] = b;
	snprintf(id_out, id_len, "%s", b->id);
}

/*
 * store_find_locked returns the batch of that id in that environment, or
 * NULL.  The sequence number in the id locates it by binary search.
 */
mock_batch *
store_find_locked(mock_env env, const char *batch_id)
{
	unsigned	seq;
	int			lo = 0;
	int			hi = nbatches - 1;

	if (strncmp(batch_id, "bat_", 4) != 0 ||
		sscanf(batch_id + 4, "%8u", &seq) != 1)
		return NULL;
	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		mock_batch *b = batches[mid];

		if (b->seq == seq)
			return (b->env == env && strcmp(b->id, batch_id) == 0) ? b : NULL;
		if (b->seq < seq)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

/*
 * progress computes, at monotonic time now, the status of a batch and how
 * many of its items are processed; done_ms is set to the time from start
 * to completion.
 */
static const char *
progress(const mock_batch *b, int64_t now, int *processed, int64_t *done_ms)
{
	int64_t		start = b->created_mono_ms + b->start_delay_ms;
	int64_t		ips = b->items_per_second;
	int64_t		elapsed;

	*done_ms = (ips > 0) ? ((int64_t) b->total * 1000 + ips - 1) / ips : 0;
	*processed = 0;
	if (now < start)
		return "pending";
	if (b->failed)
		return "failed";
	elapsed = now - start;
	if (elapsed >= *done_ms)
	{
		*processed = b->total;
		return "completed";
	}
	/* elapsed < done_ms, so elapsed * ips stays below total * 1000 + ips */
	*processed = (int) (elapsed * ips / 1000);
	return "processing";
}

/* store_status_json_locked appends the BatchStatus object of a batch. */
void
store_status_json_locked(sbuf *b, const mock_batch *batch, int64_t now)
{
	int			processed;
	int64_t		done_ms;
	const char *status = progress(batch, now, &processed, &done_ms);
	int			ok = batch->failed ? 0 : batch->successes[processed];
	char		created[32];
	char		completed[32];

	mock_format_time(created, sizeof(created), batch->created_wall_ms);
	sbuf_printf(b, "{\"batchId\":\"%s\",\"status\":\"%s\",\"createdAt\":\"%s\","
				"\"completedAt\":", batch->id, status, created);
	if (strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0)
	{
		mock_format_time(completed, sizeof(completed),
						 batch->created_wall_ms + batch->start_delay_ms +
						 (batch->failed ? 0 : done_ms));
		sbuf_printf(b, "\"%s\"", completed);
	}
	else
		sbuf_puts(b, "null");
	sbuf_printf(b, ",\"totalCount\":%d,\"processedCount\":%d,"
				"\"successCount\":%d,\"failureCount\":%d}",
				batch->total, processed, ok, processed - ok);
}

/* newest_first orders batches by createdAt, then batchId, descending. */
static int
newest_first(const void *a, const void *b)
{
	const mock_batch *x = *(const mock_batch *const *) a;
	const mock_batch *y = *(const mock_batch *const *) b;
	int64_t		xs = x->created_wall_ms / 1000;
	int64_t		ys = y->created_wall_ms / 1000;

	if (xs != ys)
		return xs > ys ? -1 : 1;
	return x->seq > y->seq ? -1 : (x->seq < y->seq ? 1 : 0);
}

/*
 * store_list_batches_locked appends the list-batches body: the batches of
 * env created at or after created_after_s (-1: all), newest first, from
 * offset, at most limit, and the total of matches.
 */
void
store_list_batches_locked(sbuf *b, mock_env env, int64_t created_after_s,
						  int64_t limit, int64_t offset, int64_t now)
{
	mock_batch **match = mock_malloc(sizeof(*match) * (size_t) (nbatches + 1));
	int			n = 0;
	int			i;
	int64_t		k;

	for (i = 0; i < nbatches; i++)
		if (batches[i]->env == env &&
			batches[i]->created_wall_ms / 1000 >= created_after_s)
			match[n++] = batches[i];
	qsort(match, (size_t) n, sizeof(*match), newest_first);

	sbuf_puts(b, "{\"batches\":[");
	for (k = offset; k < n && k < offset + limit; k++)
	{
		if (k > offset)
			sbuf_append(b, ",", 1);
		store_status_json_locked(b, match[k], now);
	}
	sbuf_printf(b, "],\"total\":%d}", n);
	free(match);
}

/* cursor_check is the value that binds a cursor offset to its batch. */
static uint64_t
cursor_check(const mock_batch *batch, unsigned offset)
{
	char		buf[64];
	int			len = snprintf(buf, sizeof(buf), "%s:%u:aggk-mock-cursor",
							   batch->id, offset);

	return mock_fnv1a64(buf, (size_t) len, MOCK_FNV_OFFSET);
}

/* parse_cursor decodes a cursor of this batch; false if it is not one. */
static bool
parse_cursor(const mock_batch *batch, const char *cursor, unsigned *offset)
{
	char		expect[CURSOR_LEN + 1];
	unsigned	off;
	size_t		i;

	if (strlen(cursor) != CURSOR_LEN)
		return false;
	for (i = 0; i < CURSOR_LEN; i++)
		if (!((cursor[i] >= '0' && cursor[i] <= '9') ||
			  (cursor[i] >= 'a' && cursor[i] <= 'f')))
			return false;
	if (sscanf(cursor, "%8x", &off) != 1 || off > (unsigned) batch->total)
		return false;
	snprintf(expect, sizeof(expect), "%08x%016llx", off,
			 (unsigned long long) cursor_check(batch, off));
	if (strcmp(expect, cursor) != 0)
		return false;
	*offset = off;
	return true;
}

/* append_cursor appends the cursor of an item offset of a batch. */
static void
append_cursor(sbuf *b, const mock_batch *batch, unsigned offset)
{
	sbuf_printf(b, "\"%08x%016llx\"", offset,
				(unsigned long long) cursor_check(batch, offset));
}

/*
 * store_items_page_locked appends a page of items from cursor (NULL: the
 * first item) with at most limit items and the next cursor.  The cursor is
 * null only when the page reached the last item of a finished batch.
 * Returns false if the cursor is not one of this batch.
 *
 * fault makes the page hostile (*faulted says whether it changed):
 * HOSTILE_DUPLICATE_ITEMS starts a page that has new items up to limit / 2
 * items early, repeating the end of the previous page (the next cursor
 * still follows the last item sent, so every item comes at least once);
 * HOSTILE_REPLAY_CURSOR answers the cursor it was asked with (the first
 * page: the cursor of offset 0) and HOSTILE_REWIND_CURSOR, on a page after
 * the first, the cursor of offset 0, instead of the next cursor or null (a
 * walk then goes round its first pages for ever).  A failed batch is left
 * alone.
 */
bool
store_items_page_locked(sbuf *b, const mock_batch *batch, const char *cursor,
						int limit, mock_hostile fault, bool *faulted,
						int64_t now)
{
	unsigned	offset = 0;
	unsigned	start;
	unsigned	end;
	int			processed;
	int64_t		done_ms;
	const char *status;
	bool		at_end;

	*faulted = false;
	if (cursor && !parse_cursor(batch, cursor, &offset))
		return false;
	status = progress(batch, now, &processed, &done_ms);

	start = offset;
	if (fault == HOSTILE_DUPLICATE_ITEMS && offset > 0 &&
		offset < (unsigned) processed)
	{
		unsigned	back = (unsigned) limit / 2;

		if (back > offset)
			back = offset;
		start = offset - back;
		*faulted = back > 0;
	}
	end = start + (unsigned) limit;
	if (end > (unsigned) processed)
		end = (unsigned) processed;
	if (end < start)
		end = start;

	if (end > start)
	{
		size_t		from = batch->offsets[start];
		size_t		to = batch->offsets[end] - 1;	/* drop the last comma */

		sbuf_reserve(b, (to - from) + 96);
		sbuf_puts(b, "{\"items\":[");
		sbuf_append(b, batch->items + from, to - from);
		sbuf_puts(b, "],\"cursor\":");
	}
	else
		sbuf_puts(b, "{\"items\":[],\"cursor\":");

	at_end = strcmp(status, "failed") == 0 ||
		(strcmp(status, "completed") == 0 && end == (unsigned) batch->total);
	if (strcmp(status, "failed") != 0 &&
		(fault == HOSTILE_REPLAY_CURSOR ||
		 (fault == HOSTILE_REWIND_CURSOR && offset > 0)))
	{
		unsigned	again = (fault == HOSTILE_REPLAY_CURSOR) ? offset : 0;

		*faulted = at_end || again != end;
		append_cursor(b, batch, again);
		sbuf_puts(b, "}");
	}
	else if (at_end)
		sbuf_puts(b, "null}");
	else
	{
		append_cursor(b, batch, end);
		sbuf_puts(b, "}");
	}
	return true;
}

/*
 * store_item_json_locked appends one processed item of a batch; false if
 * the item id is not one of its processed items.
 */
bool
store_item_json_locked(sbuf *b, const mock_batch *batch, const char *item_id,
					   int64_t now)
{
	char		expect[40];
	unsigned	seq;
	unsigned	index;
	int			processed;
	int64_t		done_ms;

	if (sscanf(item_id, "itm_%8u_%7u", &seq, &index) != 2 || seq != batch->seq)
		return false;
	snprintf(expect, sizeof(expect), "itm_%08u_%07u", seq, index);
	if (strcmp(expect, item_id) != 0)
		return false;
	progress(batch, now, &processed, &done_ms);
	if (index >= (unsigned) processed)
		return false;
	sbuf_append(b, batch->items + batch->offsets[index],
				batch->offsets[index + 1] - batch->offsets[index] - 1);
	return true;
}

/*
 * store_foreign_metadata_locked returns (malloc'd) the metadata JSON text,
 * "null" when it has none, of an item of another batch: the batch created
 * last before batch_id in the same environment that has items, at index
 * modulo its size.  NULL when there is no such batch.
 */
char *
store_foreign_metadata_locked(mock_env env, const char *batch_id, int index)
{
	const mock_batch *self = store_find_locked(env, batch_id);
	const mock_batch *other = NULL;
	json_object *item;
	json_object *meta;
	char		err[256];
	char	   *text;
	int			i;
	int			at;

	if (self == NULL)
		return NULL;
	for (i = nbatches - 1; i >= 0; i--)
		if (batches[i]->seq < self->seq && batches[i]->env == env &&
			!batches[i]->failed && batches[i]->total > 0)
		{
			other = batches[i];
			break;
		}
	if (other == NULL)
		return NULL;
	at = (index < 0 ? 0 : index) % other->total;
	item = mock_parse_json(other->items + other->offsets[at],
						   other->offsets[at + 1] - other->offsets[at] - 1,
						   MOCK_JSON_DEPTH + 8, err, sizeof(err));
	if (item == NULL)
		return NULL;
	if (json_object_object_get_ex(item, "metadata", &meta) && meta != NULL)
		text = mock_strdup(json_object_to_json_string_ext(meta,
														  JSON_C_TO_STRING_PLAIN |
														  JSON_C_TO_STRING_NOSLASHESCAPE));
	else
		text = mock_strdup("null");
	json_object_put(item);
	return text;
}

int
store_count_locked(void)
{
	return nbatches;
}

/* store_reset_locked forgets (and frees) every batch. */
void
store_reset_locked(void)
{
	int			i;

	for (i = 0; i < nbatches; i++)
	{
		free(batches[i]->items);
		free(batches[i]->offsets);
		free(batches[i]->successes);
		free(batches[i]);
	}
	free(batches);
	batches = NULL;
	nbatches = capbatches = 0;
}
