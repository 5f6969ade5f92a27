/*-------------------------------------------------------------------------
 *
 * items.c
 *	  enrich.items_stream, the value-per-call set-returning function behind
 *	  enrich_items(): it walks a batch's item cursor and fetches the next
 *	  page only when the rows of the previous one have been consumed, so
 *	  "SELECT * FROM enrich_items(b) LIMIT 5" makes one items call and
 *	  memory stays flat for any batch size.
 *
 * enrich_items() is a SQL function that PostgreSQL inlines into the
 * calling query; it calls this function in a target list, where value-per-
 * call functions are run lazily (a set-returning function in FROM would be
 * run to the end before the first row is returned).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "api.h"
#include "guc.h"
#include "keys.h"
#include "functions.h"
#include "privacy.h"

PG_FUNCTION_INFO_V1(enrich_items_stream);

/* the walk through one batch's items, kept across calls */
typedef struct ItemsWalk
{
	char	   *batch_id;
	const char *environment;
	char	   *api_key;
	int			page_size;
	char	   *cursor;			/* where the next page starts; NULL at first */
	bool		fetched_any;	/* a page was fetched already */
	bool		at_end;			/* the last page had a NULL cursor */
	MemoryContext page_context; /* holds the current page; reset per page */
	EnrichItemsPage page;
	int			next;			/* next item of page to return */
	int64		returned;		/* items returned so far */
	HTAB	   *seen;			/* hashes of the item ids returned so far */
} ItemsWalk;

/*
 * items_fetch_page fetches the page at the walk's cursor into the page
 * context, replacing the previous page
 */
static void
items_fetch_page(ItemsWalk *walk, MemoryContext walk_context)
{
	MemoryContext old;
	EnrichHttpCall call;
	char	   *err;

	MemoryContextReset(walk->page_context);
	old = MemoryContextSwitchTo(walk->page_context);

	memset(&call, 0, sizeof(call));
	call.method = "GET";
	call.url = enrich_api_url_items(walk->environment, walk->batch_id,
									walk->cursor, walk->page_size);
	call.api_key = walk->api_key;
	enrich_http_perform(&call, 1);
	enrich_api_check(&call, walk->environment, 200);
	err = enrich_api_parse_items_page(call.response, &walk->page);
	if (err != NULL)
		enrich_api_malformed(&call, err);
	if (walk->page.cursor != NULL && walk->cursor != NULL &&
		strcmp(walk->page.cursor, walk->cursor) == 0 && walk->page.nitems > 0)
		enrich_api_malformed(&call, "the page returned the cursor it was asked for, with items");

	/* an item seen before means the cursor went back: refuse it, do not loop */
	for (int i = 0; i < walk->page.nitems; i++)
	{
		uint64		key = hash_bytes_extended((const unsigned char *) walk->page.items[i].item_id,
											  strlen(walk->page.items[i].item_id), 0);
		bool		found;

		hash_search(walk->seen, &key, HASH_ENTER, &found);
		if (found)
			enrich_api_malformed(&call, psprintf("item %s was returned twice",
												 walk->page.items[i].item_id));
	}

	MemoryContextSwitchTo(walk_context);
	if (walk->cursor)
		pfree(walk->cursor);
	walk->cursor = walk->page.cursor ? pstrdup(walk->page.cursor) : NULL;
	MemoryContextSwitchTo(old);

	walk->next = 0;
	walk->fetched_any = true;
	walk->at_end = (walk->page.cursor == NULL);
}

/* items_notice_still_processing says how many items are still to come */
static void
items_notice_still_processing(ItemsWalk *walk)
{
	EnrichHttpCall call;
	EnrichBatchStatus status;
	char	   *err;

	memset(&call, 0, sizeof(call));
	call.method = "GET";
	call.url = enrich_api_url_batch(walk->environment, walk->batch_id);
	call.api_key = walk->api_key;
	enrich_http_perform(&call, 1);
	enrich_api_check(&call, walk->environment, 200);
	err = enrich_api_parse_status(call.response, &status);
	if (err != NULL)
		enrich_api_malformed(&call, err);
	ereport(NOTICE,
			(errmsg("batch is still %s: %lld of %d items are still to come",
					status.status,
					(long long) Max(status.total_count - walk->returned, 0),
					status.total_count),
			 errdetail("Batch %s has returned %lld items so far.",
					   walk->batch_id, (long long) walk->returned),
			 errhint("Call enrich_items() again later for the rest.")));
}

/*
 * enrich_items_stream(batch_id text, environment text, page_size int)
 * returns the items of a batch, one per call, one page fetched at a time
 */
Datum
enrich_items_stream(PG_FUNCTION_ARGS)
{
	FuncCallContext *funcctx;
	ItemsWalk  *walk;

	if (SRF_IS_FIRSTCALL())
	{
		MemoryContext old;
		TupleDesc	tupdesc;
		int			page_size = PG_ARGISNULL(2) ? ENRICH_API_MAX_PAGE : PG_GETARG_INT32(2);

		if (page_size < 1 || page_size > ENRICH_API_MAX_PAGE)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("page_size must be between 1 and %d, not %d",
							ENRICH_API_MAX_PAGE, page_size)));

		funcctx = SRF_FIRSTCALL_INIT();
		old = MemoryContextSwitchTo(funcctx->multi_call_memory_ctx);
		if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "enrich: items_stream called in a context that cannot accept rows");
		funcctx->tuple_desc = BlessTupleDesc(tupdesc);

		walk = palloc0(sizeof(ItemsWalk));
		walk->batch_id = enrich_required_text(fcinfo, 0, "batch_id");
		walk->environment = enrich_function_environment(fcinfo, 1);
		enrich_check_batch_reader(walk->batch_id);
		walk->api_key = enrich_api_key(walk->environment);
		walk->page_size = page_size;
		walk->page_context = AllocSetContextCreate(funcctx->multi_call_memory_ctx,
												   "enrich items page",
												   ALLOCSET_DEFAULT_SIZES);
		{
			HASHCTL		ctl;

			ctl.keysize = sizeof(uint64);
			ctl.entrysize = sizeof(uint64);
			ctl.hcxt = funcctx->multi_call_memory_ctx;
			walk->seen = hash_create("enrich items seen", 1024, &ctl,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		}
		funcctx->user_fctx = walk;
		MemoryContextSwitchTo(old);
	}

	funcctx = SRF_PERCALL_SETUP();
	walk = (ItemsWalk *) funcctx->user_fctx;

	for (;;)
	{
		if (walk->next < walk->page.nitems)
		{
			Datum		values[ENRICH_ITEM_COLUMNS];
			bool		nulls[ENRICH_ITEM_COLUMNS];
			HeapTuple	tuple;

			enrich_item_values(&walk->page.items[walk->next++], values, nulls);
			tuple = heap_form_tuple(funcctx->tuple_desc, values, nulls);
			walk->returned++;
			SRF_RETURN_NEXT(funcctx, HeapTupleGetDatum(tuple));
		}
		if (walk->at_end)
			break;
		if (walk->fetched_any && walk->page.nitems == 0)
		{
			/* an empty page with a cursor: the batch is still processing */
			items_notice_still_processing(walk);
			break;
		}
		items_fetch_page(walk, funcctx->multi_call_memory_ctx);
	}

	SRF_RETURN_DONE(funcctx);
}
