/*-------------------------------------------------------------------------
 *
 * batches.c
 *	  Batch bookkeeping: the batch enrich_submit records, a submission's
 *	  batch recorded, requests sent back to the queue or failed, the batches
 *	  due for a poll, a poll recorded, how long batches take, a page of items
 *	  applied with its saved cursor (its persons handed to writeback.c), a
 *	  batch closed, and when the next thing is due.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"

#include "guc.h"
#include "plans.h"
#include "queue.h"
#include "writeback.h"

/* the statements of this file, each prepared on first use and kept */
static SPIPlanPtr record_batch_plan = NULL;
static SPIPlanPtr mark_followers_plan = NULL;
static SPIPlanPtr requeue_plan = NULL;
static SPIPlanPtr fail_plan = NULL;
static SPIPlanPtr due_batches_plan = NULL;
static SPIPlanPtr listed_batches_plan = NULL;
static SPIPlanPtr batch_polled_plan = NULL;
static SPIPlanPtr typical_completion_plan = NULL;
static SPIPlanPtr batch_error_plan = NULL;
static SPIPlanPtr leftovers_plan = NULL;
static SPIPlanPtr close_batch_plan = NULL;
static SPIPlanPtr next_due_plan = NULL;

/*
 * enrich_queue_record_batch records a batch that enrich_submit sent, in the
 * caller's transaction, with the calling role as submitted_by; the caller
 * needs no privilege on enrich.batches
 */
void
enrich_queue_record_batch(const char *batch_id, const char *environment, int nrequests)
{
	Oid			argtypes[4] = {TEXTOID, TEXTOID, INT4OID, TEXTOID};
	Datum		values[4];
	int			rc;

	values[0] = CStringGetTextDatum(batch_id);
	values[1] = CStringGetTextDatum(environment);
	values[2] = Int32GetDatum(nrequests);
	values[3] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	SPI_connect();
	rc = enrich_run_privileged("INSERT INTO enrich.batches (batch_id, environment, origin, request_count, submitted_by) "
							   "VALUES ($1, $2, 'submit', $3, $4::pg_catalog.name) "
							   "ON CONFLICT (batch_id) DO NOTHING",
							   4, argtypes, values, NULL, false);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "enrich: recording batch %s failed: %s", batch_id, SPI_result_code_string(rc));
	SPI_finish();
}

/*
 * The worker's statements.  Each is prepared once per process and kept;
 * every one runs inside the worker's transaction with SPI connected.
 */

/*
 * enrich_queue_submitted records a batch the API accepted for the leads,
 * and schedules its first poll
 */
void
enrich_queue_submitted(const char *batch_id, int environment,
					   const EnrichOutgoing *leads, int n, int first_poll_ms)
{
	Oid			types[6] = {TEXTOID, TEXTOID, INT4OID, INT4OID, INT8ARRAYOID, INT8OID};
	Datum		values[6];

	values[0] = CStringGetTextDatum(batch_id);
	values[1] = CStringGetTextDatum(enrich_environment_name(environment));
	values[2] = Int32GetDatum(n);
	values[3] = Int32GetDatum(first_poll_ms);
	values[4] = enrich_int8_array(enrich_queue_lead_ids(leads, n), n);
	values[5] = Int64GetDatum(leads[0].request_id);
	enrich_plan_run(&record_batch_plan,
			  "INSERT INTO enrich.batches (batch_id, environment, origin, request_count, "
			  "    next_poll_at, poll_interval_ms, submission) "
			  "VALUES ($1, $2, 'worker', $3, pg_catalog.now()" SQL_OP(+) MILLISECONDS("$4") ", $4, "
			  "    (SELECT r.submission FROM enrich.requests r WHERE r.id" SQL_OP(=) "$6)) "
			  "ON CONFLICT (batch_id) DO NOTHING",
			  6, types, values, NULL, false);
	enrich_plan_run(&mark_followers_plan,
			  "UPDATE enrich.requests SET batch_id = $1, updated_at = pg_catalog.now() "
			  "WHERE duplicate_of" SQL_OP(=) "ANY ($2) AND " NOT_FOR_INDEX("state" SQL_OP(=) "'submitted'"),
			  2, (Oid[]) {TEXTOID, INT8ARRAYOID}, (Datum[]) {values[0], values[4]}, NULL, false);
}

/*
 * enrich_queue_requeue puts claimed leads back into the queue after
 * delay_ms, with the error that sent them back; count_attempt says whether
 * the attempt counts (not when the API was unreachable or refused the call
 * as a whole)
 */
void
enrich_queue_requeue(const EnrichOutgoing *leads, int n, bool count_attempt,
					 int delay_ms, const char *code, const char *message)
{
	Oid			types[4] = {INT8ARRAYOID, BOOLOID, INT4OID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	if (n == 0)
		return;
	values[0] = enrich_int8_array(enrich_queue_lead_ids(leads, n), n);
	values[1] = BoolGetDatum(count_attempt);
	values[2] = Int32GetDatum(delay_ms);
	if (code != NULL)
		values[3] = CStringGetTextDatum(enrich_queue_error_json(code, message));
	else
		nulls[3] = 'n';
	enrich_plan_run(&requeue_plan,
			  "UPDATE enrich.requests SET state = 'queued', batch_id = NULL, "
			  "    attempts = CASE WHEN $2 THEN attempts ELSE GREATEST(attempts" SQL_OP(-) "1, 0) END, "
			  "    next_attempt_at = pg_catalog.now()" SQL_OP(+) MILLISECONDS("$3") ", "
			  "    error = coalesce($4::pg_catalog.jsonb, error), updated_at = pg_catalog.now() "
			  "WHERE id" SQL_OP(=) "ANY ($1) AND " NOT_FOR_INDEX("state" SQL_OP(=) "'submitting'"),
			  4, types, values, nulls, false);
	enrich_queue_settle_followers(values[0]);
}

/* enrich_queue_fail fails claimed leads (and their duplicates) for good */
void
enrich_queue_fail(const EnrichOutgoing *leads, int n, const char *code, const char *message)
{
	Oid			types[2] = {INT8ARRAYOID, TEXTOID};
	Datum		values[2];

	if (n == 0)
		return;
	values[0] = enrich_int8_array(enrich_queue_lead_ids(leads, n), n);
	values[1] = CStringGetTextDatum(enrich_queue_error_json(code, message));
	enrich_plan_run(&fail_plan,
			  "UPDATE enrich.requests SET state = 'failed', batch_id = NULL, error = $2::pg_catalog.jsonb, "
			  "    completed_at = pg_catalog.now(), updated_at = pg_catalog.now() "
			  "WHERE id" SQL_OP(=) "ANY ($1) AND " NOT_FOR_INDEX("state" SQL_OP(=) "'submitting'"),
			  2, types, values, NULL, false);
	enrich_queue_settle_followers(values[0]);
}

/* the columns of an open batch that open_batches reads */
#define OPEN_BATCH_COLUMNS \
	"batch_id, environment, status, items_cursor, processed_count, items_received, " \
	"request_count, poll_interval_ms, " \
	"extract(epoch FROM pg_catalog.clock_timestamp()" SQL_OP(-) "submitted_at)" SQL_OP(*) "1000 "

/* open_batches reads the n rows of OPEN_BATCH_COLUMNS SPI returned */
static EnrichOpenBatch *
open_batches(uint64 n)
{
	EnrichOpenBatch *batches = palloc0(sizeof(EnrichOpenBatch) * Max(n, 1));

	for (uint64 i = 0; i < n; i++)
	{
		EnrichOpenBatch *b = &batches[i];
		char	   *age = enrich_column_text(i, 9);

		b->batch_id = enrich_column_text(i, 1);
		b->environment = enrich_environment_parse(enrich_column_text(i, 2));
		b->status = enrich_column_text(i, 3);
		b->cursor = enrich_column_text(i, 4);
		b->processed_count = (int) enrich_column_int64(i, 5);
		b->items_received = (int) enrich_column_int64(i, 6);
		b->request_count = (int) enrich_column_int64(i, 7);
		b->poll_interval_ms = (int) enrich_column_int64(i, 8);
		b->age_ms = age ? strtod(age, NULL) : 0;
	}
	return batches;
}

/*
 * READY_PAGES is how many pages of items a batch is known to have ready
 * (what items_ready in worker.c tests), pages of $4 items: the rest of a
 * completed batch (one call at least, for its end), the full pages a
 * processing one processed beyond what was read
 */
#define READY_PAGES \
	"CASE WHEN status" SQL_OP(=) "'completed' THEN " \
	"  GREATEST(1, (request_count" SQL_OP(-) "items_received" SQL_OP(+) "$4" SQL_OP(-) "1)" SQL_OP(/) "$4) " \
	"WHEN status" SQL_OP(=) "'processing' THEN " \
	"  GREATEST(0, (processed_count" SQL_OP(-) "items_received)" SQL_OP(/) "$4) " \
	"ELSE 0 END"

/*
 * enrich_queue_due_batches returns this worker's open batches whose poll is
 * due, or with early all its open batches (each says whether it is due):
 * those with pages ready first, and in each row the pages known ready in
 * its environment's batches of the read
 */
int
enrich_queue_due_batches(int limit, bool early, EnrichOpenBatch **batches_out)
{
	Oid			types[5] = {INT4OID, INT4OID, INT4OID, INT4OID, BOOLOID};
	Datum		values[5] = {Int32GetDatum(limit), 0, 0, Int32GetDatum(enrich_page_size),
	BoolGetDatum(early)};
	EnrichOpenBatch *batches;
	uint64		n;

	enrich_queue_batch_share(&values[1], &values[2]);
	n = enrich_plan_run(&due_batches_plan,
				  "SELECT " OPEN_BATCH_COLUMNS ", CASE WHEN due THEN 1 ELSE 0 END, "
				  "  pg_catalog.sum(ready) OVER (PARTITION BY environment) "
				  "FROM (SELECT *, " READY_PAGES " AS ready, "
				  "        COALESCE(next_poll_at" SQL_OP(<=) "pg_catalog.clock_timestamp(), false) AS due "
				  "      FROM enrich.batches "
				  "      WHERE NOT closed AND origin" SQL_OP(=) "'worker' "
				  "        AND " BATCH_HERE("$2", "$3") ") b "
				  "WHERE due OR $5 "
				  "ORDER BY ready" SQL_OP(>) "0 DESC, next_poll_at LIMIT $1",
				  5, types, values, NULL, true);
	batches = open_batches(n);
	for (uint64 i = 0; i < n; i++)
	{
		batches[i].due = enrich_column_int64(i, 10) != 0;
		batches[i].env_ready_pages = (int) enrich_column_int64(i, 11);
	}
	*batches_out = batches;
	return (int) n;
}

/*
 * enrich_queue_listed_batches returns the open batches of the workers (any
 * worker's) among ids, a text[] of the batches a list call returned, in an
 * environment: those whose status the list tells, and each one's position
 * in ids.  In the order of their ids, which two workers recording lists at
 * once update in the same order.
 */
int
enrich_queue_listed_batches(Datum ids, int environment, EnrichOpenBatch **batches_out,
							int **positions_out)
{
	Oid			types[2] = {TEXTARRAYOID, TEXTOID};
	Datum		values[2] = {ids, CStringGetTextDatum(enrich_environment_name(environment))};
	uint64		n;

	n = enrich_plan_run(&listed_batches_plan,
				  "SELECT " OPEN_BATCH_COLUMNS ", u.ord "
				  "FROM enrich.batches b "
				  "JOIN pg_catalog.unnest($1) WITH ORDINALITY AS u(id, ord) ON b.batch_id" SQL_OP(=) "u.id "
				  "WHERE b.environment" SQL_OP(=) "$2 "
				  "  AND NOT b.closed AND b.origin" SQL_OP(=) "'worker' "
				  "ORDER BY b.batch_id",
				  2, types, values, NULL, true);
	*batches_out = open_batches(n);
	*positions_out = palloc(sizeof(int) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
		(*positions_out)[i] = (int) enrich_column_int64(i, 10) - 1;
	return (int) n;
}

/*
 * enrich_queue_batch_polled records a status poll and the next one;
 * took_ms is how long the API took to complete the batch, -1 when unknown
 */
void
enrich_queue_batch_polled(const char *batch_id, const char *status,
						  int processed_count, int next_poll_ms, int took_ms)
{
	Oid			types[5] = {TEXTOID, TEXTOID, INT4OID, INT4OID, INT4OID};
	Datum		values[5];

	values[0] = CStringGetTextDatum(batch_id);
	values[1] = CStringGetTextDatum(status);
	values[2] = Int32GetDatum(processed_count);
	values[3] = Int32GetDatum(next_poll_ms);
	values[4] = Int32GetDatum(took_ms);
	enrich_plan_run(&batch_polled_plan,
			  "UPDATE enrich.batches SET status = $2, processed_count = $3, poll_interval_ms = $4, "
			  "    next_poll_at = pg_catalog.now()" SQL_OP(+) MILLISECONDS("$4") ", "
			  "    took_ms = CASE WHEN $5" SQL_OP(>=) "0 THEN $5 ELSE took_ms END "
			  "WHERE batch_id" SQL_OP(=) "$1",
			  5, types, values, NULL, false);
}

/*
 * enrich_queue_typical_completion_ms returns how long the API took to
 * complete the worker's last ten batches of an environment (the median),
 * or -1 when it completed none yet: a restarted worker polls its first
 * batches as one that never stopped would
 */
double
enrich_queue_typical_completion_ms(int environment)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char	   *median;

	values[0] = CStringGetTextDatum(enrich_environment_name(environment));
	enrich_plan_run(&typical_completion_plan,
			  "SELECT pg_catalog.percentile_cont(0.5::pg_catalog.float8) "
			  "    WITHIN GROUP (ORDER BY b.took_ms::pg_catalog.float8) "
			  "FROM (SELECT took_ms FROM enrich.batches "
			  "      WHERE origin" SQL_OP(=) "'worker' AND environment" SQL_OP(=) "$1 AND took_ms IS NOT NULL "
			  "      ORDER BY submitted_at DESC LIMIT 10) AS b",
			  1, types, values, NULL, true);
	median = enrich_column_text(0, 1);
	return median == NULL ? -1 : strtod(median, NULL);
}

/*
 * enrich_queue_batch_error records a failed poll and when to try again;
 * forget_cursor starts the items over (the API refused the saved cursor;
 * applying a page twice changes nothing)
 */
void
enrich_queue_batch_error(const char *batch_id, int next_poll_ms, const char *message,
						 bool forget_cursor)
{
	Oid			types[4] = {TEXTOID, INT4OID, TEXTOID, BOOLOID};
	Datum		values[4];

	values[0] = CStringGetTextDatum(batch_id);
	values[1] = Int32GetDatum(next_poll_ms);
	values[2] = CStringGetTextDatum(message);
	values[3] = BoolGetDatum(forget_cursor);
	enrich_plan_run(&batch_error_plan,
			  "UPDATE enrich.batches SET last_error = $3, poll_interval_ms = $2, "
			  "    next_poll_at = pg_catalog.now()" SQL_OP(+) MILLISECONDS("$2") ", "
			  "    items_cursor = CASE WHEN $4 THEN NULL ELSE items_cursor END, "
			  "    items_received = CASE WHEN $4 THEN 0 ELSE items_received END "
			  "WHERE batch_id" SQL_OP(=) "$1",
			  4, types, values, NULL, false);
}

/*
 * count_outcomes counts the done and failed requests among the n rows of
 * the last SPI result (id, state, ...)
 */
static void
count_outcomes(uint64 n, EnrichSettled *outcomes)
{
	for (uint64 i = 0; i < n; i++)
	{
		char	   *state = enrich_column_text(i, 2);

		if (strcmp(state, "done") == 0)
			outcomes->done++;
		else if (strcmp(state, "failed") == 0)
			outcomes->failed++;
	}
}

/*
 * settle_items settles the requests the items of a page answer, each found
 * by the request id echoed in its metadata (never by position), and only
 * while it still waits in that batch, so a page applied twice writes
 * nothing twice; the done ones (their duplicates with them) are added to
 * *groups for write-back, and counted with the failed ones in
 * *settled_out.
 * It returns how many items settled a request.
 */
static uint64
settle_items(const char *batch_id, const EnrichItemsPage *page, List **groups,
			 EnrichSettled *settled_out)
{
	static SPIPlanPtr plan = NULL;
	int			n = page->nitems;
	int64	   *ids = palloc(sizeof(int64) * Max(n, 1));
	char	  **outcomes = palloc(sizeof(char *) * Max(n, 1));
	Jsonb	  **persons = palloc(sizeof(Jsonb *) * Max(n, 1));
	Jsonb	  **errors = palloc(sizeof(Jsonb *) * Max(n, 1));
	char	  **item_ids = palloc(sizeof(char *) * Max(n, 1));
	int64	   *checks = palloc(sizeof(int64) * Max(n, 1));
	int			m = 0;
	Oid			types[10] = {INT8ARRAYOID, TEXTARRAYOID, JSONBARRAYOID, JSONBARRAYOID,
	TEXTARRAYOID, TEXTOID, INT4OID, INT4OID, INT4OID, INT8ARRAYOID};
	Datum		values[10];
	uint64		settled;
	uint64		followers;

	for (int i = 0; i < n; i++)
	{
		const EnrichItem *item = &page->items[i];

		if (item->request_id <= 0)
			continue;			/* not one of ours: nothing to match */
		ids[m] = item->request_id;
		outcomes[m] = item->is_success ? "done" : (item->is_retryable ? "retry" : "failed");
		persons[m] = item->is_success ? enrich_jsonb_from_json(item->person) : NULL;
		errors[m] = enrich_jsonb_from_json(item->error);
		item_ids[m] = item->item_id;
		checks[m] = item->request_check;
		m++;
	}
	if (m == 0)
		return 0;

	values[0] = enrich_int8_array(ids, m);
	values[1] = enrich_text_array(outcomes, m);
	values[2] = enrich_varlena_array((void **) persons, m, JSONBOID);
	values[3] = enrich_varlena_array((void **) errors, m, JSONBOID);
	values[4] = enrich_text_array(item_ids, m);
	values[5] = CStringGetTextDatum(batch_id);
	values[6] = Int32GetDatum(enrich_max_attempts);
	values[7] = Int32GetDatum(enrich_retry_delay_ms);
	values[8] = Int32GetDatum(enrich_retry_delay_max_ms);
	values[9] = enrich_int8_array(checks, m);
	settled = enrich_plan_run(&plan,
							  "WITH u AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), "
							  "           pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5), "
							  "           pg_catalog.unnest($10)) "
							  "           AS u(id, outcome, person, error, item_id, checked)) "
							  "UPDATE enrich.requests r SET "
							  "  state = CASE WHEN u.outcome" SQL_OP(=) "'done' THEN 'done' "
							  "               WHEN " RETRIED " THEN 'queued' "
							  "               ELSE 'failed' END, "
							  "  person = u.person, error = u.error, item_id = u.item_id, "
							  "  next_attempt_at = CASE WHEN " RETRIED
							  "      THEN " RETRY_AT("$8", "$9") " ELSE r.next_attempt_at END, "
							  "  batch_id = CASE WHEN " RETRIED " THEN NULL ELSE $6 END, "
							  "  completed_at = CASE WHEN " RETRIED " THEN NULL "
							  "      ELSE pg_catalog.now() END, "
							  "  updated_at = pg_catalog.now() "
							  "FROM u WHERE r.id" SQL_OP(=) "u.id "
	/*
	 * the rows are found by primary key only: an index on the batch would
	 * read every waiting row of it per page
	 */
							  "  AND " NOT_FOR_INDEX("r.submission" SQL_OP(=) "(SELECT b.submission FROM enrich.batches b "
													 "WHERE b.batch_id" SQL_OP(=) "$6) AND r.state" SQL_OP(=) "'submitting' "
													 "AND r.duplicate_of IS NULL "
													 "AND " IDENTIFIER_CHECK("r") SQL_OP(=) "u.checked") " "
							  "RETURNING r.id, r.state, r.source_relid, r.source_key::pg_catalog.text, r.person, "
							  "    r.completed_at",
							  10, types, values, NULL, false);
	count_outcomes(settled, settled_out);
	enrich_write_back_collect(groups, settled);
	followers = enrich_queue_settle_returned_leads(settled);
	count_outcomes(followers, settled_out);
	enrich_write_back_collect(groups, followers);
	return settled;
}

/* save_cursor records where the next page of a batch starts, and its next call */
static void
save_cursor(const char *batch_id, const EnrichItemsPage *page, int next_poll_ms)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[4] = {TEXTOID, TEXTOID, INT4OID, INT4OID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	values[0] = CStringGetTextDatum(batch_id);
	if (page->cursor)
		values[1] = CStringGetTextDatum(page->cursor);
	else
		nulls[1] = 'n';
	values[2] = Int32GetDatum(page->nitems);
	values[3] = Int32GetDatum(next_poll_ms);
	enrich_plan_run(&plan,
					"UPDATE enrich.batches SET items_cursor = coalesce($2, items_cursor), "
					"    items_received = items_received" SQL_OP(+) "$3, "
					"    next_poll_at = pg_catalog.now()" SQL_OP(+) MILLISECONDS("$4") ", "
					"    last_error = NULL "
					"WHERE batch_id" SQL_OP(=) "$1",
					4, types, values, nulls, false);
}

/*
 * enrich_queue_apply_page applies one page of items of a batch: each item
 * finds its request by the id echoed in its metadata (never by position),
 * and only a request still waiting in that batch changes, so a page applied
 * twice writes nothing twice.  Successes are done and written back to their
 * watched table; retryable failures go back to the queue with back-off
 * until enrich.max_attempts; others fail.  The saved cursor commits with
 * them.  It returns how many items of the page settled a request, and
 * counts the requests done and failed (duplicates included) in *outcomes.
 */
int
enrich_queue_apply_page(const char *batch_id, const EnrichItemsPage *page,
						bool closes_batch, int next_poll_ms, EnrichSettled *outcomes)
{
	List	   *groups = NIL;
	uint64		settled = settle_items(batch_id, page, &groups, outcomes);

	enrich_write_back(groups, false);
	save_cursor(batch_id, page, next_poll_ms);
	if (closes_batch)
		enrich_queue_close_batch(batch_id, "completed", "missing_item",
								 "the batch completed without an item for this request");
	return (int) settled;
}

/*
 * enrich_queue_close_batch closes a batch: requests of it still waiting
 * (no item came back, or the batch failed as a whole) are retried like a
 * retryable failure, with the given error
 */
void
enrich_queue_close_batch(const char *batch_id, const char *status,
						 const char *code, const char *message)
{
	Oid			types[6] = {TEXTOID, TEXTOID, INT4OID, INT4OID, INT4OID, TEXTOID};
	Datum		values[6];
	uint64		n;

	values[0] = CStringGetTextDatum(batch_id);
	values[1] = CStringGetTextDatum(enrich_queue_error_json(code, message));
	values[2] = Int32GetDatum(enrich_max_attempts);
	values[3] = Int32GetDatum(enrich_retry_delay_ms);
	values[4] = Int32GetDatum(enrich_retry_delay_max_ms);
	values[5] = CStringGetTextDatum(status);
	n = enrich_plan_run(&leftovers_plan,
				  "UPDATE enrich.requests r SET "
				  "  state = CASE WHEN r.attempts" SQL_OP(<) "$3 THEN 'queued' ELSE 'failed' END, "
				  "  error = $2::pg_catalog.jsonb, "
				  "  next_attempt_at = " RETRY_AT("$4", "$5") ", "
				  "  batch_id = CASE WHEN r.attempts" SQL_OP(<) "$3 THEN NULL ELSE $1 END, "
				  "  completed_at = CASE WHEN r.attempts" SQL_OP(<) "$3 THEN NULL ELSE pg_catalog.now() END, "
				  "  updated_at = pg_catalog.now() "
				  "WHERE r.submission" SQL_OP(=) "(SELECT b.submission FROM enrich.batches b "
				  "                      WHERE b.batch_id" SQL_OP(=) "$1) "
				  "  AND r.state" SQL_OP(=) "'submitting' AND r.duplicate_of IS NULL "
				  "RETURNING r.id",
				  5, types, values, NULL, false);
	enrich_queue_settle_returned_leads(n);
	enrich_plan_run(&close_batch_plan,
			  "UPDATE enrich.batches SET closed = true, status = $2, "
			  "    completed_at = coalesce(completed_at, pg_catalog.now()), next_poll_at = NULL "
			  "WHERE batch_id" SQL_OP(=) "$1",
			  2, (Oid[]) {TEXTOID, TEXTOID}, (Datum[]) {values[0], values[5]}, NULL, false);
}

/*
 * enrich_queue_next_due_ms returns in how many milliseconds the earliest
 * queued request or batch poll of an active environment is due: 0 when
 * already due, -1 when nothing is pending (the worker then sleeps until
 * woken)
 */
long
enrich_queue_next_due_ms(const bool *environment_active)
{
	char	   *active[ENRICH_ENV_COUNT];
	int			nactive = 0;
	Oid			types[3] = {TEXTARRAYOID, INT4OID, INT4OID};
	Datum		values[3];
	char	   *due;

	for (int i = 0; i < ENRICH_ENV_COUNT; i++)
		if (environment_active[i])
			active[nactive++] = (char *) enrich_environment_name(i);
	if (nactive == 0)
		return -1;
	values[0] = enrich_text_array(active, nactive);
	enrich_queue_batch_share(&values[1], &values[2]);
	enrich_plan_run(&next_due_plan,
			  "SELECT pg_catalog.ceil(extract(epoch FROM LEAST("
			  "  (SELECT pg_catalog.min(next_attempt_at) FROM enrich.requests "
			  "   WHERE state" SQL_OP(=) "'queued' AND environment" SQL_OP(=) "ANY ($1)), "
			  "  (SELECT pg_catalog.min(created_at) FROM enrich.intake "
			  "   WHERE environment" SQL_OP(=) "ANY ($1)), "
			  "  (SELECT pg_catalog.min(write_back_due) FROM enrich.requests "
			  "   WHERE write_back_due IS NOT NULL), "
			  "  (SELECT pg_catalog.min(next_poll_at) FROM enrich.batches "
			  "   WHERE NOT closed AND origin" SQL_OP(=) "'worker' AND environment" SQL_OP(=) "ANY ($1) "
			  "     AND " BATCH_HERE("$2", "$3") ")) "
			  SQL_OP(-) "pg_catalog.clock_timestamp())" SQL_OP(*) "1000)",
			  3, types, values, NULL, true);
	due = enrich_column_text(0, 1);
	if (due == NULL)
		return -1;
	return Max(strtol(due, NULL, 10), 0);
}
