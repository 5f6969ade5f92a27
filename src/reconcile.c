/*-------------------------------------------------------------------------
 *
 * reconcile.c
 *	  Submissions in doubt (a bulk enrich sent, its batch not recorded):
 *	  which requests wait for reconciliation, the lock of the one worker
 *	  that reconciles for the workers that stopped, the batches enrich knows,
 *	  the adoption of a batch whose items echo a submission's request ids,
 *	  and sending again what no batch was found for.
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

/* the statements of this file, each prepared on first use and kept */
static SPIPlanPtr orphans_plan = NULL;
static SPIPlanPtr known_batches_plan = NULL;
static SPIPlanPtr adopt_match_plan = NULL;
static SPIPlanPtr adopt_batch_plan = NULL;
static SPIPlanPtr batch_note_plan = NULL;
static SPIPlanPtr note_submitting_plan = NULL;
static SPIPlanPtr requeue_orphans_plan = NULL;


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
	values[1] = enrich_queue_running_workers(for_stopped, &nulls[1]);
	enrich_plan_run(&orphans_plan,
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

	enrich_queue_lock_tag(&tag, ENRICH_LOCK_RECONCILE, -1);
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
	found = enrich_plan_run(&known_batches_plan,
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
	values[3] = enrich_queue_running_workers(for_stopped, &nulls[3]);
	n = enrich_plan_run(&adopt_match_plan,
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
		n = enrich_plan_run(&adopt_batch_plan,
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
	enrich_plan_run(&batch_note_plan,
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

	values[0] = enrich_int8_array(enrich_queue_lead_ids(leads, n), n);
	values[1] = CStringGetTextDatum(enrich_queue_error_json("answer_lost", message));
	enrich_plan_run(&note_submitting_plan,
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
	values[2] = enrich_queue_running_workers(for_stopped, &nulls[2]);
	n = enrich_plan_run(&requeue_orphans_plan,
				  "UPDATE enrich.requests r SET state = 'queued', batch_id = NULL, submission = NULL, "
				  "    claimed_by = NULL, attempts = GREATEST(attempts" SQL_OP(-) "1, 0), "
				  "    updated_at = pg_catalog.now() "
				  "WHERE r.state" SQL_OP(=) "'submitting' AND r.environment" SQL_OP(=) "$1 "
				  "  AND r.updated_at" SQL_OP(<) "(pg_catalog.clock_timestamp()" SQL_OP(-) MILLISECONDS("$2") ") "
				  "  AND " SUBMISSION_IN_DOUBT " AND " RECONCILED_HERE("$3") " "
				  "RETURNING r.id",
				  3, types, values, nulls, false);
	enrich_queue_settle_returned_leads(n);
	return (int) n;
}
