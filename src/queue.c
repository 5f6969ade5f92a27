/*-------------------------------------------------------------------------
 *
 * queue.c
 *	  All SQL on enrich's own tables of requests and batches: the batch that
 *	  enrich_submit records, and every step of the worker (claiming due
 *	  requests with their duplicates, recording submitted batches, polls,
 *	  pages of items applied with their cursor, retries, recovery at start);
 *	  the persons a page settles are handed to writeback.c.  The workers'
 *	  session runs under the pinned settings (security.c).
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

#include "enrich.h"
#include "functions.h"
#include "intake.h"
#include "plans.h"
#include "queue.h"
#include "writeback.h"
#include "security.h"

/*
 * SUBMISSION_IN_DOUBT is true of a request r 'submitting' whose bulk enrich
 * has no batch recorded: sent or being sent, the answer not (yet) recorded.
 * Once the answer is, the batch row carries the submission, and the
 * requests stay 'submitting' until their items come back.
 */
#define SUBMISSION_IN_DOUBT \
	"NOT EXISTS (SELECT 1 FROM enrich.batches b WHERE b.submission" SQL_OP(=) "r.submission)"

/*
 * RECONCILED_HERE is true of a request r 'submitting' that this worker
 * reconciles: one it claimed itself, or, when it reconciles for the workers
 * that stopped, one whose claimer no longer runs.  running is an int4[] of
 * the process ids of the other workers that run, or NULL (then only its
 * own).  A submission that another running worker claimed is that worker's
 * to record or reconcile: it may be on its way to the API.
 */
#define RECONCILED_HERE(running) \
	"(r.claimed_by" SQL_OP(=) "pg_catalog.pg_backend_pid() " \
	"OR NOT coalesce(coalesce(r.claimed_by, 0)" SQL_OP(=) "ANY (" running "), true))"

/*
 * BATCH_HERE is true of a batch row that this worker polls and pages, when
 * running is how many workers run and rank this worker's rank among them:
 * the batches are shared out by a hash of their id, whichever worker sent
 * them, so that each worker has about as many items to write back, and a
 * worker that does not run (it stopped, or found no free background worker
 * slot) leaves no batch unpolled
 */
#define BATCH_HERE(running, rank) \
	"pg_catalog.mod(pg_catalog.hashtext(batch_id)" SQL_OP(&) "2147483647, " running ")" SQL_OP(=) rank

/*
 * RETRY_AT is when a request r is tried again after a retryable failure:
 * a random wait up to min(max_ms, base_ms * 2^(attempts - 1)) ("full
 * jitter"), base_ms and max_ms being the statement's parameters given
 */
#define RETRY_AT(base_ms, max_ms) \
	"pg_catalog.now()" SQL_OP(+) "(pg_catalog.random()" SQL_OP(*) \
	"LEAST(" max_ms "::pg_catalog.float8, " base_ms "::pg_catalog.float8" SQL_OP(*) \
	"pg_catalog.power(2::pg_catalog.float8, GREATEST(r.attempts" SQL_OP(-) "1, 0)::pg_catalog.float8))" \
	SQL_OP(*) MILLISECONDS("1") ")"

/*
 * NOT_FOR_INDEX wraps a condition that the planner must not match to a
 * partial index.  Rows found by id (or by duplicate_of) and then checked
 * for their state would otherwise be found through a bitmap AND with the
 * index of every row in that state, which reads the whole in-flight set
 * for each batch or page.
 */
#define NOT_FOR_INDEX(condition) "CASE WHEN " condition " THEN true ELSE false END"

/* MILLISECONDS(ms) is an interval of ms milliseconds (an int4 or a float8) */
#define MILLISECONDS(ms) \
	"(" ms "::pg_catalog.float8" SQL_OP(*) "'1 millisecond'::pg_catalog.interval)"

/* RETRIED is true of a request r whose item u failed and may be tried again */
#define RETRIED "u.outcome" SQL_OP(=) "'retry' AND r.attempts" SQL_OP(<) "$7"

/* STATE_IN(column, states): the column is one of the states given (in braces) */
#define STATE_IN(column, states) \
	column SQL_OP(=) "ANY ('" states "'::pg_catalog.text[])"

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

/* the prepared statements of the worker, by use */
typedef enum QueueStatement
{
	Q_EXTENSION_PRESENT,
	Q_RECOVER,
	Q_DUE,
	Q_IN_FLIGHT_LEADS,
	Q_CLAIM_LEADS,
	Q_INTAKE_DUE,
	Q_RESERVE_ID,
	Q_CLAIM_FOLLOWERS,
	Q_RECORD_BATCH,
	Q_MARK_FOLLOWERS,
	Q_REQUEUE,
	Q_FAIL,
	Q_SETTLE_FOLLOWERS,
	Q_DUE_BATCHES,
	Q_BATCH_POLLED,
	Q_TYPICAL_COMPLETION,
	Q_BATCH_ERROR,
	Q_APPLY_ITEMS,
	Q_BATCH_PAGE,
	Q_LEFTOVERS,
	Q_ORPHANS,
	Q_KNOWN_BATCHES,
	Q_ADOPT_MATCH,
	Q_BATCH_NOTE,
	Q_NOTE_SUBMITTING,
	Q_ADOPT_BATCH,
	Q_REQUEUE_ORPHANS,
	Q_CLOSE_BATCH,
	Q_WATCH,
	Q_NEXT_DUE,
	Q_COUNT
} QueueStatement;

static SPIPlanPtr queue_plans[Q_COUNT];

/*
 * A kept plan suits the size and the statistics its tables had when it was
 * made.  Until a table is first analyzed the planner guesses, and a plan
 * made then (sequential scans, a hash join) would stay in use at millions
 * of rows: in a new database with repeated identifiers, settling duplicates
 * took 27 ms a page instead of 0.15 ms until autovacuum analyzed
 * enrich.requests, a minute later.  So kept plans are made again whenever
 * their table has doubled since (enrich_relation_outgrew), and the worker
 * analyzes enrich.requests itself the first time, when autovacuum never has.
 */

/* enrich.requests' size in blocks when the kept queue plans were dropped last */
static BlockNumber queue_plans_blocks = 0;

/*
 * enrich_queue_refresh_plans drops the kept plans of the worker when
 * enrich.requests has doubled since they were made, each to be made again
 * at its next use; a table never analyzed is analyzed first
 */
void
enrich_queue_refresh_plans(void)
{
	Oid			schema = get_namespace_oid("enrich", true);
	Oid			requests = OidIsValid(schema) ? get_relname_relid("requests", schema) : InvalidOid;
	bool		analyzed = true;

	if (!OidIsValid(requests) || !enrich_relation_outgrew(requests, &queue_plans_blocks, &analyzed))
		return;
	/* unless another worker (or autovacuum) is analyzing it right now */
	if (!analyzed && ConditionalLockRelationOid(requests, ShareUpdateExclusiveLock))
	{
		MemoryContext caller = CurrentMemoryContext;
		int			rc = SPI_execute("ANALYZE enrich.requests", false, 0);

		MemoryContextSwitchTo(caller);
		if (rc < 0)
			elog(ERROR, "enrich: analyzing enrich.requests failed: %s", SPI_result_code_string(rc));
	}
	/* the write-back's plans too, whose statements read enrich.requests */
	enrich_plans_forget();
}

/* queue_plan prepares a statement of the worker on first use and keeps it */
static SPIPlanPtr
queue_plan(QueueStatement which, const char *sql, int nargs, Oid *argtypes)
{
	return enrich_plan_prepare(&queue_plans[which], sql, nargs, argtypes);
}

/* queue_run runs a statement of the worker (enrich_plan_run) */
static uint64
queue_run(QueueStatement which, const char *sql, int nargs, Oid *argtypes,
		  Datum *values, const char *nulls, bool read_only)
{
	return enrich_plan_run(&queue_plans[which], sql, nargs, argtypes, values, nulls, read_only);
}

static char *error_json(const char *code, const char *message);

/*
 * batch_share sets the two int4 arguments of BATCH_HERE: how many workers
 * run, and this one's rank among them
 */
static void
batch_share(Datum *running, Datum *rank)
{
	int			n;
	int			r = enrich_shared_worker_rank(&n);

	*running = Int32GetDatum(n);
	*rank = Int32GetDatum(r);
}

/*
 * running_workers returns the int4[] that RECONCILED_HERE takes: when this
 * worker reconciles for the workers that stopped (for_stopped), the process
 * ids of the other workers that run; otherwise NULL (*null set to 'n').  A
 * worker is listed from before its first claim until it exits; the
 * read-only statements that take this list see the snapshot their
 * transaction took before it was read, so every claim they see is of a
 * worker listed here or of one that stopped (and the requeue after
 * enrich.reconcile_grace only touches claims older than that).
 */
static Datum
running_workers(bool for_stopped, char *null)
{
	int32		pids[ENRICH_MAX_WORKERS];
	Datum		elems[ENRICH_MAX_WORKERS];
	int			n;

	if (!for_stopped)
	{
		*null = 'n';
		return (Datum) 0;
	}
	n = enrich_shared_other_workers(pids);
	for (int i = 0; i < n; i++)
		elems[i] = Int32GetDatum(pids[i]);
	return PointerGetDatum(construct_array(elems, n, INT4OID, sizeof(int32), true, TYPALIGN_INT));
}

/* lead_ids returns the request ids of claimed leads */
static int64 *
lead_ids(const EnrichOutgoing *leads, int n)
{
	int64	   *ids = palloc(sizeof(int64) * Max(n, 1));

	for (int i = 0; i < n; i++)
		ids[i] = leads[i].request_id;
	return ids;
}

/*
 * settle_followers gives the duplicates of leads that left the in-flight
 * states their lead's outcome: done and failed are copied, and a requeued
 * lead takes its duplicates back to the queue with it.  It returns how many
 * followers it settled; done ones are appended for write-back.
 */
static uint64
settle_followers(Datum lead_array)
{
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1] = {lead_array};

	return queue_run(Q_SETTLE_FOLLOWERS,
					 "UPDATE enrich.requests f "
					 "SET state = l.state, person = l.person, error = l.error, item_id = l.item_id, "
					 "    completed_at = l.completed_at, next_attempt_at = l.next_attempt_at, "
					 "    batch_id = l.batch_id, "
					 "    duplicate_of = CASE WHEN l.state" SQL_OP(=) "'queued' THEN NULL ELSE f.duplicate_of END, "
					 "    updated_at = pg_catalog.now() "
					 "FROM enrich.requests l "
					 "WHERE f.duplicate_of" SQL_OP(=) "ANY ($1) AND l.id" SQL_OP(=) "f.duplicate_of "
					 "  AND " NOT_FOR_INDEX(STATE_IN("f.state", "{submitting,submitted}")) " "
					 "  AND " STATE_IN("l.state", "{queued,done,failed}") " "
					 "RETURNING f.id, f.state, f.source_relid, f.source_key::pg_catalog.text, f.person",
					 1, types, values, NULL, false);
}

/*
 * settle_returned_leads settles the followers of the n leads whose ids the
 * last statement returned first; it returns settle_followers' count
 */
static uint64
settle_returned_leads(uint64 n)
{
	int64	   *ids;

	if (n == 0)
		return 0;
	ids = palloc(sizeof(int64) * n);
	for (uint64 i = 0; i < n; i++)
		ids[i] = enrich_column_int64(i, 1);
	return settle_followers(enrich_int8_array(ids, (int) n));
}

/*
 * enrich_queue_catalog_version returns the version of the extension's
 * catalog in this database (its extversion), or NULL when enrich is not
 * installed here
 */
char *
enrich_queue_catalog_version(void)
{
	if (queue_run(Q_EXTENSION_PRESENT,
				  "SELECT extversion FROM pg_catalog.pg_extension WHERE extname" SQL_OP(=) "'enrich'",
				  0, NULL, NULL, NULL, true) == 0)
		return NULL;
	return enrich_column_text(0, 1);
}

/*
 * enrich_queue_recover runs when a worker starts.  Requests it was
 * submitting when it stopped stay 'submitting': the API may have accepted
 * them, so reconciliation looks for their batch before anything is sent
 * again.  Duplicates whose lead is no longer in flight go back to the
 * queue, and every open batch of this worker is polled at once.
 */
void
enrich_queue_recover(void)
{
	MemoryContext caller = CurrentMemoryContext;
	Datum		running;
	Datum		rank;
	int			rc;

	batch_share(&running, &rank);
	rc = SPI_execute(psprintf("WITH orphan AS ("
							  "  UPDATE enrich.requests f SET state = 'queued', duplicate_of = NULL, batch_id = NULL, "
							  "      updated_at = pg_catalog.now() "
							  "  WHERE f.duplicate_of IS NOT NULL AND " STATE_IN("f.state", "{submitting,submitted}") " "
							  "    AND NOT EXISTS ("
							  "      SELECT 1 FROM enrich.requests l WHERE l.id" SQL_OP(=) "f.duplicate_of "
							  "        AND " STATE_IN("l.state", "{submitting,submitted}") ") RETURNING f.id) "
							  "UPDATE enrich.batches SET next_poll_at = pg_catalog.now() "
							  "WHERE NOT closed AND origin" SQL_OP(=) "'worker' AND " BATCH_HERE("%d", "%d"),
							  DatumGetInt32(running), DatumGetInt32(rank)),
					 false, 0);

	MemoryContextSwitchTo(caller);
	if (rc < 0)
		elog(ERROR, "enrich: recovering the queue failed: %s", SPI_result_code_string(rc));
}

/*
 * enrich_queue_orphans says whether an environment has requests left
 * 'submitting' by an earlier round (a crash between sending a bulk enrich
 * and recording its batch) that this worker reconciles (its own, and with
 * for_stopped those of workers that stopped), and since when:
 * *claimed_date gets the UTC day of the oldest claim, for the createdAfter
 * of the batch list
 */
bool
enrich_queue_orphans(int environment, bool for_stopped, char **claimed_date, double *claimed_age_ms)
{
	Oid			types[2] = {TEXTOID, INT4ARRAYOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};

	values[0] = CStringGetTextDatum(enrich_environment_name(environment));
	values[1] = running_workers(for_stopped, &nulls[1]);
	queue_run(Q_ORPHANS,
			  "SELECT pg_catalog.to_char(pg_catalog.min(r.claimed) AT TIME ZONE 'UTC', 'YYYY-MM-DD'), "
			  "    extract(epoch FROM pg_catalog.clock_timestamp()" SQL_OP(-) "pg_catalog.min(r.claimed))"
			  SQL_OP(*) "1000 "
			  "FROM (SELECT r.submission, pg_catalog.min(r.updated_at) AS claimed FROM enrich.requests r "
			  "      WHERE r.state" SQL_OP(=) "'submitting' AND r.environment" SQL_OP(=) "$1 "
			  "        AND " RECONCILED_HERE("$2") " "
			  "      GROUP BY r.submission) AS r "
			  "WHERE " SUBMISSION_IN_DOUBT,
			  2, types, values, nulls, true);
	*claimed_date = enrich_column_text(0, 1);
	if (*claimed_date == NULL)
		return false;
	*claimed_age_ms = strtod(enrich_column_text(0, 2), NULL);
	return true;
}

/*
 * The workers' own locks are advisory locks whose tag no SQL function can
 * make (pg_advisory_lock and its kin set the last field of the tag to 1 or
 * 2): no role can take one to stall the workers.  The tag names the
 * database, enrich, what is locked and the environment.
 */
#define ENRICH_LOCK_FIELD4 0x454E	/* "EN" */
#define ENRICH_LOCK_KEY 0x656E7269	/* "enri" */
#define ENRICH_LOCK_CLAIM 1
#define ENRICH_LOCK_RECONCILE 2

/* worker_lock_tag sets the tag of one of the workers' locks */
static void
worker_lock_tag(LOCKTAG *tag, uint32 what, int environment)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, ENRICH_LOCK_KEY,
						 (what << 16) | (uint32) (environment + 1), ENRICH_LOCK_FIELD4);
}

/*
 * enrich_queue_reconcile_lock takes (take, without waiting) or releases the
 * session lock that the one worker reconciling for the workers that
 * stopped holds, so that no two workers adopt or send again the same
 * submission; returns whether this worker holds it now (false after a
 * release)
 */
bool
enrich_queue_reconcile_lock(bool take)
{
	LOCKTAG		tag;

	worker_lock_tag(&tag, ENRICH_LOCK_RECONCILE, -1);
	if (take)
		return LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
	LockRelease(&tag, ExclusiveLock, true);
	return false;
}

/* enrich_queue_known_batches returns which of the batch ids enrich recorded */
bool *
enrich_queue_known_batches(char **batch_ids, int n)
{
	Oid			types[1] = {TEXTARRAYOID};
	Datum		values[1];
	bool	   *known = palloc0(sizeof(bool) * Max(n, 1));
	uint64		found;

	values[0] = enrich_text_array(batch_ids, n);
	found = queue_run(Q_KNOWN_BATCHES,
					  "SELECT batch_id FROM enrich.batches WHERE batch_id" SQL_OP(=) "ANY ($1)",
					  1, types, values, NULL, true);
	for (uint64 i = 0; i < found; i++)
	{
		char	   *id = enrich_column_text(i, 1);

		for (int j = 0; j < n; j++)
			if (strcmp(batch_ids[j], id) == 0)
				known[j] = true;
	}
	return known;
}

/*
 * enrich_queue_adopt adopts a batch the API accepted but enrich never
 * recorded, when the request ids its first page echoes (those whose check
 * value fits the request) all name requests of one submission still
 * 'submitting' that this worker reconciles (see enrich_queue_orphans), and
 * the batch has as many requests as that submission: every request of it
 * joins the batch, which is then polled like any other.  Returns how many
 * requests it adopted; 0 with *why set when the batch does not fit, 0 with
 * *why NULL when none of the ids is waiting.
 */
int
enrich_queue_adopt(const char *batch_id, int environment, bool for_stopped, const int64 *ids,
				   const int64 *checks, int nids, int total_count, char **why)
{
	Oid			types[4] = {INT8ARRAYOID, TEXTOID, INT8ARRAYOID, INT4ARRAYOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	uint64		n;
	int64		submission = 0;
	int			matched = 0;

	*why = NULL;
	values[0] = enrich_int8_array(ids, nids);
	values[1] = CStringGetTextDatum(enrich_environment_name(environment));
	values[2] = enrich_int8_array(checks, nids);
	values[3] = running_workers(for_stopped, &nulls[3]);
	n = queue_run(Q_ADOPT_MATCH,
				  "SELECT r.submission, pg_catalog.count(*), "
				  "    (SELECT pg_catalog.count(*) FROM enrich.requests s "
				  "     WHERE s.submission" SQL_OP(=) "r.submission AND s.state" SQL_OP(=) "'submitting' "
				  "       AND s.environment" SQL_OP(=) "$2) "
				  "FROM (SELECT DISTINCT x, c FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($3)) "
				  "      AS p(x, c)) AS i(id, checked) "
				  "JOIN enrich.requests r ON r.id" SQL_OP(=) "i.id "
				  "    AND " IDENTIFIER_CHECK("r") SQL_OP(=) "i.checked "
				  "WHERE r.state" SQL_OP(=) "'submitting' AND r.environment" SQL_OP(=) "$2 "
				  "  AND " SUBMISSION_IN_DOUBT " "
				  "  AND " RECONCILED_HERE("$4") " "
				  "GROUP BY r.submission",
				  4, types, values, nulls, true);
	if (n == 0)
		return 0;
	if (n > 1)
	{
		*why = psprintf("its items name requests of %d different submissions", (int) n);
		return 0;
	}
	submission = enrich_column_int64(0, 1);
	matched = (int) enrich_column_int64(0, 2);
	if (matched < nids)
		ereport(LOG,
				(errmsg("enrich worker: %d items of batch %s echo a request id that names no request waiting to be reconciled",
						nids - matched, batch_id)));
	if (enrich_column_int64(0, 3) != total_count)
	{
		*why = psprintf("it has %d requests, the submission its items name has %lld",
						total_count, (long long) enrich_column_int64(0, 3));
		return 0;
	}

	/* the submission's requests join the batch: it is recorded for them */
	{
		Oid			btypes[4] = {TEXTOID, TEXTOID, INT4OID, INT8OID};
		Datum		bvalues[4];

		bvalues[0] = CStringGetTextDatum(batch_id);
		bvalues[1] = values[1];
		bvalues[2] = Int32GetDatum(total_count);
		bvalues[3] = Int64GetDatum(submission);
		n = queue_run(Q_ADOPT_BATCH,
					  "INSERT INTO enrich.batches (batch_id, environment, origin, request_count, submission, "
					  "    next_poll_at, last_error) "
					  "VALUES ($1, $2, 'worker', $3, $4, pg_catalog.now(), "
					  "    'adopted: the bulk enrich was sent but its batch was not recorded') "
					  "ON CONFLICT (batch_id) DO NOTHING",
					  4, btypes, bvalues, NULL, false);
	}
	return n == 0 ? 0 : total_count;
}

/* enrich_queue_batch_note records a problem on a batch without changing its schedule */
void
enrich_queue_batch_note(const char *batch_id, const char *message)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	values[0] = CStringGetTextDatum(batch_id);
	values[1] = CStringGetTextDatum(message);
	queue_run(Q_BATCH_NOTE,
			  "UPDATE enrich.batches SET last_error = $2 WHERE batch_id" SQL_OP(=) "$1",
			  2, types, values, NULL, false);
}

/*
 * enrich_queue_note_submitting records on requests left 'submitting' why
 * they wait: the answer to their bulk enrich was lost
 */
void
enrich_queue_note_submitting(const EnrichOutgoing *leads, int n, const char *message)
{
	Oid			types[2] = {INT8ARRAYOID, TEXTOID};
	Datum		values[2];

	values[0] = enrich_int8_array(lead_ids(leads, n), n);
	values[1] = CStringGetTextDatum(error_json("answer_lost", message));
	queue_run(Q_NOTE_SUBMITTING,
			  "UPDATE enrich.requests SET error = $2::pg_catalog.jsonb, updated_at = updated_at "
			  "WHERE id" SQL_OP(=) "ANY ($1) AND " NOT_FOR_INDEX("state" SQL_OP(=) "'submitting'"),
			  2, types, values, NULL, false);
}

/*
 * enrich_queue_requeue_orphans sends again the requests of an environment
 * that stayed 'submitting' for longer than grace_ms with no batch found
 * for them (their attempt not counted), of those this worker reconciles
 * (see enrich_queue_orphans); returns how many
 */
int
enrich_queue_requeue_orphans(int environment, bool for_stopped, int grace_ms)
{
	Oid			types[3] = {TEXTOID, INT4OID, INT4ARRAYOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	uint64		n;

	values[0] = CStringGetTextDatum(enrich_environment_name(environment));
	values[1] = Int32GetDatum(grace_ms);
	values[2] = running_workers(for_stopped, &nulls[2]);
	n = queue_run(Q_REQUEUE_ORPHANS,
				  "UPDATE enrich.requests r SET state = 'queued', batch_id = NULL, submission = NULL, "
				  "    claimed_by = NULL, attempts = GREATEST(attempts" SQL_OP(-) "1, 0), "
				  "    updated_at = pg_catalog.now() "
				  "WHERE r.state" SQL_OP(=) "'submitting' AND r.environment" SQL_OP(=) "$1 "
				  "  AND r.updated_at" SQL_OP(<) "(pg_catalog.clock_timestamp()" SQL_OP(-) MILLISECONDS("$2") ") "
				  "  AND " SUBMISSION_IN_DOUBT " AND " RECONCILED_HERE("$3") " "
				  "RETURNING r.id",
				  3, types, values, nulls, false);
	settle_returned_leads(n);
	return (int) n;
}

/*
 * in_subtransaction runs step(arg) in a subtransaction.  When a claim there
 * collides with another worker's (the unique index of identifiers in
 * flight refuses a row, or the two wait on each other's rows), the
 * subtransaction is rolled back and it returns false; any other error goes
 * on up.
 */
static bool
in_subtransaction(void (*step) (void *arg), void *arg)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool done = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		step(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		done = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		if (edata->sqlerrcode != ERRCODE_UNIQUE_VIOLATION &&
			edata->sqlerrcode != ERRCODE_T_R_DEADLOCK_DETECTED)
			PG_RE_THROW();
		FlushErrorState();
		FreeErrorData(edata);
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_END_TRY();
	return done;
}

/* what expand_intake_claimed's subtransaction expands, and how many it made */
typedef struct IntakeClaim
{
	Datum		intake_ids;
	int64		submission;
	uint64		made;
} IntakeClaim;

static void
expand_intake_step(void *arg)
{
	IntakeClaim *claim = (IntakeClaim *) arg;

	claim->made = enrich_intake_expand(claim->intake_ids, claim->submission);
}

/*
 * expand_intake_claimed turns intake rows into requests 'submitting' of a
 * submission, in a subtransaction: the unique index of identifiers in
 * flight refuses a contact whose identifier is already sent and waiting, or
 * appears twice among them (or is being claimed by another worker).  Then
 * nothing was made, and it returns false: the caller makes queued requests
 * of the rows instead, and claims those the way that finds their
 * duplicates.  When no contact is refused, which is the rule, the claim
 * needs no search for duplicates at all; *made is then how many requests
 * were made (SPI's result, as expand_intake leaves it).
 */
static bool
expand_intake_claimed(Datum intake_ids, int64 submission, uint64 *made)
{
	IntakeClaim claim = {intake_ids, submission, 0};

	if (!in_subtransaction(expand_intake_step, &claim))
		return false;
	*made = claim.made;
	return true;
}

/*
 * reserve_submission returns a new name for a submission: an id of
 * enrich.requests that no request will have, so that every bulk enrich
 * (even one sending again the requests of a failed batch) has its own
 */
static int64
reserve_submission(void)
{
	queue_run(Q_RESERVE_ID,
			  "SELECT pg_catalog.nextval(pg_catalog.pg_get_serial_sequence('enrich.requests', 'id'))",
			  0, NULL, NULL, NULL, false);
	return enrich_column_int64(0, 1);
}

/*
 * intake_due locks the oldest rows of enrich.intake of an environment whose
 * contacts fit in one bulk enrich of limit requests (the first one even if
 * it holds more), FOR UPDATE SKIP LOCKED.  The rows are fetched through a
 * cursor, as many at a time as the ones before suggest, so that a claim
 * locks hardly a row more than it takes, and another worker claims the next
 * ones meanwhile.  It returns how many rows, their ids in *ids_out and their
 * contacts in *total_out.
 */
static int
intake_due(Datum environment, int limit, int64 **ids_out, int *total_out)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {environment};
	MemoryContext caller = CurrentMemoryContext;
	Portal		portal;
	int64	   *ids = palloc(sizeof(int64) * (limit + 1));
	int			nids = 0;
	int			total = 0;
	long		fetch = 1;
	bool		full = false;

	portal = SPI_cursor_open(NULL,
							 queue_plan(Q_INTAKE_DUE,
										"SELECT id, pg_catalog.cardinality(source_key) FROM enrich.intake "
										"WHERE environment" SQL_OP(=) "$1 ORDER BY id LIMIT 1000 "
										"FOR UPDATE SKIP LOCKED",
										1, types),
							 values, NULL, false);
	MemoryContextSwitchTo(caller);
	while (!full)
	{
		SPI_cursor_fetch(portal, true, fetch);
		MemoryContextSwitchTo(caller);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed && !full; i++)
		{
			int			contacts = (int) enrich_column_int64(i, 2);

			if (nids > 0 && total + contacts > limit)
				full = true;	/* locked, not taken: free at commit */
			else
			{
				ids[nids++] = enrich_column_int64(i, 1);
				total += contacts;
				full = total >= limit;
			}
		}
		/* the rows still to take, if they hold as many contacts as these */
		fetch = Max(1, (long) (limit - total) * nids / Max(total, 1));
	}
	SPI_cursor_close(portal);
	MemoryContextSwitchTo(caller);
	*ids_out = ids;
	*total_out = total;
	return nids;
}

/*
 * claim_intake claims from enrich.intake, once no request of the
 * environment is due: the oldest rows whose contacts fit in one bulk
 * enrich of limit requests (intake_due) become requests 'submitting' at
 * once, with a request id reserved to name their submission.  It returns
 * how many requests it made (SPI's result, as expand_intake leaves it),
 * setting *submission; -1 when nothing waits.  Rows become queued requests
 * instead, and *submission is left 0 for the caller to claim those, when
 * one holds more contacts than limit (after a 413 made the chunks smaller),
 * or when one of their identifiers is in flight already or appears twice
 * among them (expand_intake_claimed).
 */
static int64
claim_intake(Datum environment, int limit, int64 *submission)
{
	uint64		made;
	int64	   *ids;
	int			nids;
	int			total;

	*submission = 0;
	nids = intake_due(environment, limit, &ids, &total);
	if (nids == 0)
		return -1;
	if (total > limit)
		return (int64) enrich_intake_expand(enrich_int8_array(ids, 1), 0);
	*submission = reserve_submission();
	if (expand_intake_claimed(enrich_int8_array(ids, nids), *submission, &made))
		return (int64) made;
	*submission = 0;				/* a duplicate: queued, then claimed */
	return (int64) enrich_intake_expand(enrich_int8_array(ids, nids), 0);
}

/* a claimed row's identifier and its position among the claimed */
typedef struct ClaimedIdentifier
{
	const char *identifier;
	int			position;
} ClaimedIdentifier;

/* compare_identifier orders claimed rows by identifier (bsearch finds one) */
static int
compare_identifier(const void *a, const void *b)
{
	return strcmp(((const ClaimedIdentifier *) a)->identifier,
				  ((const ClaimedIdentifier *) b)->identifier);
}

/* compare_identifiers orders claimed rows by identifier, then position */
static int
compare_identifiers(const void *a, const void *b)
{
	int			c = compare_identifier(a, b);

	if (c != 0)
		return c;
	return (((const ClaimedIdentifier *) a)->position > ((const ClaimedIdentifier *) b)->position) -
		(((const ClaimedIdentifier *) a)->position < ((const ClaimedIdentifier *) b)->position);
}

/*
 * outgoing_from_row reads a request to send from a row of the current SPI
 * result: id, linkedin_url, person_id, pdl_id, metadata as text and the
 * check value of its identifier, in its first six columns
 */
static void
outgoing_from_row(uint64 row, EnrichOutgoing *out)
{
	out->request_id = enrich_column_int64(row, 1);
	out->linkedin_url = enrich_column_text(row, 2);
	out->person_id = enrich_column_text(row, 3);
	out->pdl_id = enrich_column_text(row, 4);
	out->metadata = enrich_column_text(row, 5);
	out->check = (int32) enrich_column_int64(row, 6);
}

/*
 * made_leads returns the requests 'submitting' among the n rows that
 * expand_intake made (SPI's result), to be sent; the others were refused
 * and failed with the reason
 */
static int
made_leads(uint64 n, EnrichOutgoing **leads_out)
{
	EnrichOutgoing *leads = palloc0(sizeof(EnrichOutgoing) * Max(n, 1));
	int			nleads = 0;

	for (uint64 i = 0; i < n; i++)
	{
		char	   *state = enrich_column_text(i, 7);

		if (state == NULL || strcmp(state, "submitting") != 0)
			continue;
		outgoing_from_row(i, &leads[nleads++]);
	}
	*leads_out = leads;
	return nleads;
}

/* the leads and followers of a claim from the queue (claim_queued_step) */
typedef struct QueuedClaim
{
	int64	   *lead_ids;
	int			nleads;			/* in: leads claimed; out: leads to send */
	int64	   *follower_ids;
	int64	   *follower_leads;
	int			nfollowers;
	EnrichOutgoing *leads;		/* out: the leads to send */
} QueuedClaim;

/*
 * claim_queued_step marks claimed leads 'submitting' in a new submission,
 * and their followers 'submitted' as duplicates of their lead
 */
static void
claim_queued_step(void *arg)
{
	QueuedClaim *claim = (QueuedClaim *) arg;

	if (claim->nleads > 0)
	{
		Oid			types[2] = {INT8ARRAYOID, INT8OID};
		Datum		values[2];
		uint64		n;

		values[0] = enrich_int8_array(claim->lead_ids, claim->nleads);
		values[1] = Int64GetDatum(reserve_submission());
		n = queue_run(Q_CLAIM_LEADS,
					  "UPDATE enrich.requests SET state = 'submitting', attempts = attempts" SQL_OP(+) "1, "
					  "    submission = $2, claimed_by = pg_catalog.pg_backend_pid(), updated_at = pg_catalog.now() "
					  "WHERE id" SQL_OP(=) "ANY ($1) "
					  "RETURNING id, linkedin_url, person_id, pdl_id, metadata::pg_catalog.text, "
					  "    " IDENTIFIER_CHECK("requests"),
					  2, types, values, NULL, false);
		for (uint64 i = 0; i < n; i++)
			outgoing_from_row(i, &claim->leads[i]);
		claim->nleads = (int) n;
	}
	if (claim->nfollowers > 0)
	{
		Oid			types[2] = {INT8ARRAYOID, INT8ARRAYOID};
		Datum		values[2];

		values[0] = enrich_int8_array(claim->follower_ids, claim->nfollowers);
		values[1] = enrich_int8_array(claim->follower_leads, claim->nfollowers);
		queue_run(Q_CLAIM_FOLLOWERS,
				  "UPDATE enrich.requests r SET state = 'submitted', duplicate_of = f.lead, "
				  "    batch_id = (SELECT l.batch_id FROM enrich.requests l WHERE l.id" SQL_OP(=) "f.lead), "
				  "    submission = NULL, updated_at = pg_catalog.now() "
				  "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS f(id, lead) "
				  "WHERE r.id" SQL_OP(=) "f.id",
				  2, types, values, NULL, false);
	}
}

/*
 * queue_lock takes, without waiting, the lock of the queued requests of an
 * environment until the claim commits (one of the workers' own locks, see
 * worker_lock_tag), and says whether it got it.  One worker at a time
 * claims queued requests: two claims at once would skip each other's rows
 * and split the last chunk of the queue in two bulk enriches.
 */
static bool
queue_lock(int environment)
{
	LOCKTAG		tag;

	worker_lock_tag(&tag, ENRICH_LOCK_CLAIM, environment);
	return LockAcquire(&tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL;
}

/*
 * enrich_queue_claim claims up to limit requests of an environment and
 * returns the ones to send: due queued requests (FOR UPDATE SKIP LOCKED),
 * unless another worker is claiming those right now (queue_lock), else
 * the contacts watched tables queued in enrich.intake (claim_intake).
 * Requests whose normalized identifier is already in flight, or appears
 * twice among the claimed, become duplicates of that one request: the API
 * is asked once and the answer written to every row.
 */
int
enrich_queue_claim(int environment, int limit, EnrichOutgoing **leads_out)
{
	Oid			due_types[2] = {TEXTOID, INT4OID};
	Datum		due_values[2];
	uint64		ndue;
	uint64		nclaimed = 0;
	int64		submission = 0;
	int64	   *ids;
	char	  **identifiers;
	int64	   *lead_of;		/* per claimed row: its lead, or 0 when it leads */
	int64	   *lead_list;
	int			nleads = 0;
	int64	   *follower_ids;
	int64	   *follower_leads;
	int			nfollowers = 0;
	ClaimedIdentifier *sorted;
	int			nsorted = 0;
	EnrichOutgoing *leads;
	QueuedClaim claim;
	bool		queue_claimable;

	*leads_out = NULL;
	due_values[0] = CStringGetTextDatum(enrich_environment_name(environment));
	due_values[1] = Int32GetDatum(limit);
	queue_claimable = queue_lock(environment);
	for (;;)
	{
		int64		made;

		ndue = !queue_claimable ? 0 :
			queue_run(Q_DUE,
					  "SELECT id, identifier FROM enrich.requests "
					  "WHERE state" SQL_OP(=) "'queued' AND environment" SQL_OP(=) "$1 "
					  "  AND next_attempt_at" SQL_OP(<=) "pg_catalog.now() "
					  "ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED",
					  2, due_types, due_values, NULL, false);
		if (ndue > 0)
		{
			ids = palloc(sizeof(int64) * ndue);
			identifiers = palloc(sizeof(char *) * ndue);
			for (uint64 i = 0; i < ndue; i++)
			{
				ids[i] = enrich_column_int64(i, 1);
				identifiers[i] = enrich_column_text(i, 2);
			}
			nclaimed = ndue;
			break;
		}

		/* nothing due: the intake */
		made = claim_intake(due_values[0], limit, &submission);
		if (made < 0)
			return 0;			/* nothing waits there either */
		if (submission == 0)
		{
			/* it made queued requests, seen by no other claim yet: claim those */
			queue_claimable = true;
			continue;
		}
		/* the unique index saw to it that none duplicates another */
		nleads = made_leads((uint64) made, leads_out);
		if (nleads > 0)
			return nleads;
		/* every contact of it was refused (failed with the reason): go on */
	}
	lead_of = palloc0(sizeof(int64) * nclaimed);

	/* the claimed rows by identifier, then position: duplicates side by side */
	sorted = palloc(sizeof(ClaimedIdentifier) * nclaimed);
	for (uint64 i = 0; i < nclaimed; i++)
	{
		if (identifiers[i] == NULL)
			continue;
		sorted[nsorted].identifier = identifiers[i];
		sorted[nsorted++].position = (int) i;
	}
	qsort(sorted, nsorted, sizeof(ClaimedIdentifier), compare_identifiers);

	/*
	 * requests already in flight for the same identifiers (one at most, by
	 * the unique index): one index probe per identifier, a plan that stays
	 * right before the table was ever analyzed (one scan with = ANY was
	 * measured to pick a plan 200 times slower).  Each lead found is locked
	 * FOR SHARE until this claim commits: another worker settling it (its
	 * item came back, or it went back to the queue) waits for the claim and
	 * then settles the followers the claim made; a lead that worker settled
	 * meanwhile is no longer found, and the claimed row leads instead.
	 * Without the lock, a follower attached to a lead settled in between
	 * would wait for it forever.
	 */
	{
		Oid			types[2] = {TEXTOID, TEXTARRAYOID};
		Datum		values[2];
		uint64		ninflight;

		values[0] = due_values[0];
		values[1] = enrich_text_array(identifiers, (int) nclaimed);
		ninflight = queue_run(Q_IN_FLIGHT_LEADS,
							  "SELECT u.identifier, l.id "
							  "FROM (SELECT DISTINCT x FROM pg_catalog.unnest($2) AS x) AS u(identifier) "
							  "CROSS JOIN LATERAL (SELECT r.id FROM enrich.requests r "
							  "    WHERE r.environment" SQL_OP(=) "$1 AND r.identifier" SQL_OP(=) "u.identifier "
							  "      AND " STATE_IN("r.state", "{submitting,submitted}") " "
							  "      AND r.duplicate_of IS NULL "
							  /* LIMIT keeps it a probe per identifier: a join would be planned */
							  "    LIMIT 1 FOR SHARE OF r) AS l",
							  2, types, values, NULL, false);
		for (uint64 j = 0; j < ninflight; j++)
		{
			ClaimedIdentifier key = {enrich_column_text(j, 1), 0};
			ClaimedIdentifier *found = bsearch(&key, sorted, nsorted, sizeof(ClaimedIdentifier),
											   compare_identifier);
			int64		lead = enrich_column_int64(j, 2);

			/* every claimed row of that identifier follows the one in flight */
			if (found == NULL)
				continue;
			while (found > sorted && strcmp(found[-1].identifier, key.identifier) == 0)
				found--;
			for (; found < sorted + nsorted && strcmp(found->identifier, key.identifier) == 0; found++)
				lead_of[found->position] = lead;
		}
	}

	/* among the claimed, the first of each identifier leads the others */
	for (int i = 0; i < nsorted; i++)
	{
		const ClaimedIdentifier *first = &sorted[i];

		while (i + 1 < nsorted && strcmp(sorted[i + 1].identifier, first->identifier) == 0)
		{
			i++;
			if (lead_of[sorted[i].position] == 0)
				lead_of[sorted[i].position] = ids[first->position];
		}
	}

	lead_list = palloc(sizeof(int64) * nclaimed);
	follower_ids = palloc(sizeof(int64) * nclaimed);
	follower_leads = palloc(sizeof(int64) * nclaimed);
	leads = palloc0(sizeof(EnrichOutgoing) * nclaimed);
	for (uint64 i = 0; i < nclaimed; i++)
	{
		if (lead_of[i] == 0)
			lead_list[nleads++] = ids[i];
		else
		{
			follower_ids[nfollowers] = ids[i];
			follower_leads[nfollowers++] = lead_of[i];
		}
	}

	claim.lead_ids = lead_list;
	claim.nleads = nleads;
	claim.follower_ids = follower_ids;
	claim.follower_leads = follower_leads;
	claim.nfollowers = nfollowers;
	claim.leads = leads;
	if (!in_subtransaction(claim_queued_step, &claim))
	{
		/* another worker claimed one of these identifiers meanwhile */
		ereport(DEBUG1,
				(errmsg("enrich worker: a claim collided with another worker's, trying again")));
		return 0;
	}
	nleads = claim.nleads;
	*leads_out = leads;
	return nleads;
}

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
	values[4] = enrich_int8_array(lead_ids(leads, n), n);
	values[5] = Int64GetDatum(leads[0].request_id);
	queue_run(Q_RECORD_BATCH,
			  "INSERT INTO enrich.batches (batch_id, environment, origin, request_count, "
			  "    next_poll_at, poll_interval_ms, submission) "
			  "VALUES ($1, $2, 'worker', $3, pg_catalog.now()" SQL_OP(+) MILLISECONDS("$4") ", $4, "
			  "    (SELECT r.submission FROM enrich.requests r WHERE r.id" SQL_OP(=) "$6)) "
			  "ON CONFLICT (batch_id) DO NOTHING",
			  6, types, values, NULL, false);
	queue_run(Q_MARK_FOLLOWERS,
			  "UPDATE enrich.requests SET batch_id = $1, updated_at = pg_catalog.now() "
			  "WHERE duplicate_of" SQL_OP(=) "ANY ($2) AND " NOT_FOR_INDEX("state" SQL_OP(=) "'submitted'"),
			  2, (Oid[]) {TEXTOID, INT8ARRAYOID}, (Datum[]) {values[0], values[4]}, NULL, false);
}

/* error_json builds the error object stored on a request */
static char *
error_json(const char *code, const char *message)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"code\": ");
	escape_json(&buf, code ? code : "error");
	appendStringInfoString(&buf, ", \"message\": ");
	escape_json(&buf, message ? message : "");
	appendStringInfoChar(&buf, '}');
	return buf.data;
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
	values[0] = enrich_int8_array(lead_ids(leads, n), n);
	values[1] = BoolGetDatum(count_attempt);
	values[2] = Int32GetDatum(delay_ms);
	if (code != NULL)
		values[3] = CStringGetTextDatum(error_json(code, message));
	else
		nulls[3] = 'n';
	queue_run(Q_REQUEUE,
			  "UPDATE enrich.requests SET state = 'queued', batch_id = NULL, "
			  "    attempts = CASE WHEN $2 THEN attempts ELSE GREATEST(attempts" SQL_OP(-) "1, 0) END, "
			  "    next_attempt_at = pg_catalog.now()" SQL_OP(+) MILLISECONDS("$3") ", "
			  "    error = coalesce($4::pg_catalog.jsonb, error), updated_at = pg_catalog.now() "
			  "WHERE id" SQL_OP(=) "ANY ($1) AND " NOT_FOR_INDEX("state" SQL_OP(=) "'submitting'"),
			  4, types, values, nulls, false);
	settle_followers(values[0]);
}

/* enrich_queue_fail fails claimed leads (and their duplicates) for good */
void
enrich_queue_fail(const EnrichOutgoing *leads, int n, const char *code, const char *message)
{
	Oid			types[2] = {INT8ARRAYOID, TEXTOID};
	Datum		values[2];

	if (n == 0)
		return;
	values[0] = enrich_int8_array(lead_ids(leads, n), n);
	values[1] = CStringGetTextDatum(error_json(code, message));
	queue_run(Q_FAIL,
			  "UPDATE enrich.requests SET state = 'failed', batch_id = NULL, error = $2::pg_catalog.jsonb, "
			  "    completed_at = pg_catalog.now(), updated_at = pg_catalog.now() "
			  "WHERE id" SQL_OP(=) "ANY ($1) AND " NOT_FOR_INDEX("state" SQL_OP(=) "'submitting'"),
			  2, types, values, NULL, false);
	settle_followers(values[0]);
}

/* enrich_queue_due_batches returns this worker's open batches whose poll is due */
int
enrich_queue_due_batches(int limit, EnrichOpenBatch **batches_out)
{
	Oid			types[3] = {INT4OID, INT4OID, INT4OID};
	Datum		values[3] = {Int32GetDatum(limit)};
	uint64		n;
	EnrichOpenBatch *batches;

	batch_share(&values[1], &values[2]);
	n = queue_run(Q_DUE_BATCHES,
				  "SELECT batch_id, environment, status, items_cursor, processed_count, items_received, "
				  "    request_count, poll_interval_ms, "
				  "    extract(epoch FROM pg_catalog.clock_timestamp()" SQL_OP(-) "submitted_at)" SQL_OP(*) "1000 "
				  "FROM enrich.batches "
				  "WHERE NOT closed AND origin" SQL_OP(=) "'worker' "
				  "  AND next_poll_at" SQL_OP(<=) "pg_catalog.clock_timestamp() "
				  "  AND " BATCH_HERE("$2", "$3") " "
				  "ORDER BY next_poll_at LIMIT $1",
				  3, types, values, NULL, true);
	batches = palloc0(sizeof(EnrichOpenBatch) * Max(n, 1));
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
	*batches_out = batches;
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
	queue_run(Q_BATCH_POLLED,
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
	queue_run(Q_TYPICAL_COMPLETION,
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
	queue_run(Q_BATCH_ERROR,
			  "UPDATE enrich.batches SET last_error = $3, poll_interval_ms = $2, "
			  "    next_poll_at = pg_catalog.now()" SQL_OP(+) MILLISECONDS("$2") ", "
			  "    items_cursor = CASE WHEN $4 THEN NULL ELSE items_cursor END, "
			  "    items_received = CASE WHEN $4 THEN 0 ELSE items_received END "
			  "WHERE batch_id" SQL_OP(=) "$1",
			  4, types, values, NULL, false);
}

/*
 * enrich_queue_apply_page applies one page of items of a batch: each item
 * finds its request by the id echoed in its metadata (never by position),
 * and only a request still waiting in that batch changes, so a page applied
 * twice writes nothing twice.  Successes are done and written back to their
 * watched table; retryable failures go back to the queue with back-off
 * until enrich.max_attempts; others fail.  The saved cursor commits with
 * them.  It returns how many items of the page settled a request.
 */
int
enrich_queue_apply_page(const char *batch_id, const EnrichItemsPage *page,
						bool closes_batch, int next_poll_ms)
{
	int			n = page->nitems;
	int64	   *ids = palloc(sizeof(int64) * Max(n, 1));
	char	  **outcomes = palloc(sizeof(char *) * Max(n, 1));
	Jsonb	  **persons = palloc(sizeof(Jsonb *) * Max(n, 1));
	Jsonb	  **errors = palloc(sizeof(Jsonb *) * Max(n, 1));
	char	  **item_ids = palloc(sizeof(char *) * Max(n, 1));
	int64	   *checks = palloc(sizeof(int64) * Max(n, 1));
	int			m = 0;
	uint64		settled = 0;
	List	   *groups = NIL;

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

	if (m > 0)
	{
		Oid			types[10] = {INT8ARRAYOID, TEXTARRAYOID, JSONBARRAYOID, JSONBARRAYOID,
		TEXTARRAYOID, TEXTOID, INT4OID, INT4OID, INT4OID, INT8ARRAYOID};
		Datum		values[10];
		uint64		nleads;

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
		nleads = queue_run(Q_APPLY_ITEMS,
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
							* the rows are found by primary key only: an index
							* on the batch would read every waiting row of it
							* per page
							*/
						   "  AND " NOT_FOR_INDEX("r.submission" SQL_OP(=) "(SELECT b.submission FROM enrich.batches b "
												  "WHERE b.batch_id" SQL_OP(=) "$6) AND r.state" SQL_OP(=) "'submitting' "
												  "AND r.duplicate_of IS NULL "
												  "AND " IDENTIFIER_CHECK("r") SQL_OP(=) "u.checked") " "
						   "RETURNING r.id, r.state, r.source_relid, r.source_key::pg_catalog.text, r.person",
						   10, types, values, NULL, false);
		settled = nleads;
		enrich_write_back_collect(&groups, nleads);
		enrich_write_back_collect(&groups, settle_returned_leads(nleads));
	}

	enrich_write_back(groups, false);

	{
		Oid			types[5] = {TEXTOID, TEXTOID, INT4OID, BOOLOID, INT4OID};
		Datum		values[5];
		char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

		values[0] = CStringGetTextDatum(batch_id);
		if (page->cursor)
			values[1] = CStringGetTextDatum(page->cursor);
		else
			nulls[1] = 'n';
		values[2] = Int32GetDatum(page->nitems);
		values[3] = BoolGetDatum(closes_batch);
		values[4] = Int32GetDatum(next_poll_ms);
		queue_run(Q_BATCH_PAGE,
				  "UPDATE enrich.batches SET items_cursor = coalesce($2, items_cursor), "
				  "    items_received = items_received" SQL_OP(+) "$3, "
				  "    next_poll_at = pg_catalog.now()" SQL_OP(+) MILLISECONDS("$5") ", "
				  "    last_error = NULL "
				  "WHERE batch_id" SQL_OP(=) "$1",
				  5, types, values, nulls, false);
	}
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
	values[1] = CStringGetTextDatum(error_json(code, message));
	values[2] = Int32GetDatum(enrich_max_attempts);
	values[3] = Int32GetDatum(enrich_retry_delay_ms);
	values[4] = Int32GetDatum(enrich_retry_delay_max_ms);
	values[5] = CStringGetTextDatum(status);
	n = queue_run(Q_LEFTOVERS,
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
	settle_returned_leads(n);
	queue_run(Q_CLOSE_BATCH,
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
	batch_share(&values[1], &values[2]);
	queue_run(Q_NEXT_DUE,
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
