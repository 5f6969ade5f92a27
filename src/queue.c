/*-------------------------------------------------------------------------
 *
 * queue.c
 *	  What the worker's statements on enrich's own tables share (claim.c,
 *	  reconcile.c, batches.c): when their kept plans are made again, which
 *	  workers run and which batches are this one's, the settling of
 *	  duplicates with their lead, the error a request records, the
 *	  workers' own locks, the version of the catalog, and the recovery at
 *	  start.  The workers' session runs under the pinned settings
 *	  (security.c); every statement is written as security.h says.
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
#include "shared.h"
#include "plans.h"
#include "queue.h"

/* the statements of this file, each prepared on first use and kept */
static SPIPlanPtr settle_followers_plan = NULL;
static SPIPlanPtr extension_present_plan = NULL;
static SPIPlanPtr installation_plan = NULL;

/*
 * A kept plan suits the size and the statistics its tables had when it was
 * made.  Until a table is first analyzed the planner guesses, and a plan
 * made then (sequential scans, a hash join) would stay in use at millions
 * of rows: in a new database with repeated identifiers, settling duplicates
 * took 27 ms a page instead of 0.15 ms until autovacuum analyzed
 * enrich.requests, a minute later.  So the worker's kept plans are made
 * again whenever enrich.requests has doubled since (enrich_relation_outgrew),
 * and the worker analyzes it itself the first time, when autovacuum never
 * has.  An emptied table (TRUNCATE: not analyzed since) counts its growth
 * afresh: a worker that ran for days met the same slowness after it.
 */

/* enrich.requests' size when the kept plans were dropped last */
static EnrichPlannedSize queue_plans_size = {0, InvalidOid};

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

	if (!OidIsValid(requests) || !enrich_relation_outgrew(requests, &queue_plans_size, &analyzed))
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
	/* every kept plan of the worker: claim.c's, reconcile.c's, batches.c's, the write-back's */
	enrich_plans_forget();
}

/*
 * enrich_queue_batch_share sets the two int4 arguments of BATCH_HERE: how
 * many workers run, and this one's rank among them
 */
void
enrich_queue_batch_share(Datum *running, Datum *rank)
{
	int			n;
	int			r = enrich_shared_worker_rank(&n);

	*running = Int32GetDatum(n);
	*rank = Int32GetDatum(r);
}

/*
 * enrich_queue_running_workers returns the int4[] that RECONCILED_HERE takes: when this
 * worker reconciles for the workers that stopped (for_stopped), the process
 * ids of the other workers that run; otherwise NULL (*null set to 'n').  A
 * worker is listed from before its first claim until it exits; the
 * read-only statements that take this list see the snapshot their
 * transaction took before it was read, so every claim they see is of a
 * worker listed here or of one that stopped (and the requeue after
 * enrich.reconcile_grace only touches claims older than that).
 */
Datum
enrich_queue_running_workers(bool for_stopped, char *null)
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

/* enrich_queue_lead_ids returns the request ids of claimed leads */
int64 *
enrich_queue_lead_ids(const EnrichOutgoing *leads, int n)
{
	int64	   *ids = palloc(sizeof(int64) * Max(n, 1));

	for (int i = 0; i < n; i++)
		ids[i] = leads[i].request_id;
	return ids;
}

/*
 * enrich_queue_settle_followers gives the duplicates of leads that left the in-flight
 * states their lead's outcome: done and failed are copied, and a requeued
 * lead takes its duplicates back to the queue with it.  It returns how many
 * followers it settled; done ones are appended for write-back.
 */
uint64
enrich_queue_settle_followers(Datum lead_array)
{
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1] = {lead_array};

	return enrich_plan_run(&settle_followers_plan,
					 "UPDATE enrich.requests f "
					 "SET state = l.state, person = l.person, error = l.error, item_id = l.item_id, "
					 "    reused_from = l.reused_from, "
					 "    completed_at = l.completed_at, next_attempt_at = l.next_attempt_at, "
					 "    batch_id = l.batch_id, "
					 "    duplicate_of = CASE WHEN l.state" SQL_OP(=) "'queued' THEN NULL ELSE f.duplicate_of END, "
					 "    updated_at = pg_catalog.now() "
					 "FROM enrich.requests l "
					 "WHERE f.duplicate_of" SQL_OP(=) "ANY ($1) AND l.id" SQL_OP(=) "f.duplicate_of "
					 "  AND " NOT_FOR_INDEX(STATE_IN("f.state", "{submitting,submitted}")) " "
					 "  AND " STATE_IN("l.state", "{queued,done,failed}") " "
					 "RETURNING f.id, f.state, f.source_relid, f.source_key::pg_catalog.text, f.person, "
					 ANSWERED_AT("f"),
					 1, types, values, NULL, false);
}

/*
 * enrich_queue_settle_returned_leads settles the followers of the n leads whose ids the
 * last statement returned first; it returns settle_followers' count
 */
uint64
enrich_queue_settle_returned_leads(uint64 n)
{
	int64	   *ids;

	if (n == 0)
		return 0;
	ids = palloc(sizeof(int64) * n);
	for (uint64 i = 0; i < n; i++)
		ids[i] = enrich_column_int64(i, 1);
	return enrich_queue_settle_followers(enrich_int8_array(ids, (int) n));
}

/*
 * enrich_queue_catalog_version returns the version of the extension's
 * catalog in this database (its extversion), or NULL when enrich is not
 * installed here
 */
char *
enrich_queue_catalog_version(void)
{
	if (enrich_plan_run(&extension_present_plan,
				  "SELECT extversion FROM pg_catalog.pg_extension WHERE extname" SQL_OP(=) "'enrich'",
				  0, NULL, NULL, NULL, true) == 0)
		return NULL;
	return enrich_column_text(0, 1);
}

/*
 * enrich_queue_installation returns this installation's id (the oldest row
 * of enrich.installation: a restored dump keeps the id it had), making one
 * when the table is empty; *legacy says whether 1.0's request ids are its
 * own.  Read at the start of every round: a DROP and CREATE EXTENSION
 * makes a new one.
 */
char *
enrich_queue_installation(bool *legacy)
{
	const char *sql =
		"WITH made AS (INSERT INTO enrich.installation (id) "
		"    SELECT pg_catalog.substr(pg_catalog.md5(pg_catalog.gen_random_uuid()::pg_catalog.text), 1, 12) "
		"    WHERE NOT EXISTS (SELECT FROM enrich.installation) RETURNING id, legacy_ids, created_at) "
		"SELECT i.id, i.legacy_ids FROM (SELECT id, legacy_ids, created_at FROM enrich.installation "
		"    UNION ALL SELECT id, legacy_ids, created_at FROM made) i "
		"ORDER BY i.created_at, i.id LIMIT 1";
	bool		isnull;

	if (enrich_plan_run(&installation_plan, sql, 0, NULL, NULL, NULL, false) != 1)
		elog(ERROR, "enrich: enrich.installation has no row");
	*legacy = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	return enrich_column_text(0, 1);
}

/* enrich_queue_error_json builds the error object stored on a request */
char *
enrich_queue_error_json(const char *code, const char *message)
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
 * The workers' own locks are advisory locks whose tag no SQL function can
 * make (pg_advisory_lock and its kin set the last field of the tag to 1 or
 * 2): no role can take one to stall the workers.  The tag names the
 * database, enrich, what is locked and the environment.
 */
#define ENRICH_LOCK_FIELD4 0x454E	/* "EN" */
#define ENRICH_LOCK_KEY 0x656E7269	/* "enri" */

/* enrich_queue_lock_tag sets the tag of one of the workers' locks */
void
enrich_queue_lock_tag(LOCKTAG *tag, uint32 what, int environment)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, ENRICH_LOCK_KEY,
						 (what << 16) | (uint32) (environment + 1), ENRICH_LOCK_FIELD4);
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

	enrich_queue_batch_share(&running, &rank);
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
