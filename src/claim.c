/*-------------------------------------------------------------------------
 *
 * claim.c
 *	  Claiming requests for a bulk enrich: due queued requests (FOR UPDATE
 *	  SKIP LOCKED, one worker at a time per environment), else the contacts
 *	  of enrich.intake; requests whose identifier is in flight, or repeated
 *	  among the claimed, become duplicates of one lead, sent once.
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
#include "intake.h"
#include "plans.h"
#include "queue.h"
#include "reuse.h"

/* the statements of this file, each prepared on first use and kept */
static SPIPlanPtr reserve_id_plan = NULL;
static SPIPlanPtr claim_leads_plan = NULL;
static SPIPlanPtr claim_followers_plan = NULL;
static SPIPlanPtr intake_due_plan = NULL;


/*
 * claim_collided says whether an error in a claim's subtransaction is a
 * collision with another worker's claim (the unique index of identifiers in
 * flight refuses a row, or the two wait on each other's rows): then the
 * subtransaction is rolled back alone, and any other error goes on up
 */
static bool
claim_collided(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_UNIQUE_VIOLATION || sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED;
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

	if (!enrich_in_subtransaction(expand_intake_step, &claim, claim_collided))
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
	enrich_plan_run(&reserve_id_plan,
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
							 enrich_plan_prepare(&intake_due_plan,
										"SELECT id, contacts FROM enrich.intake "
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
		n = enrich_plan_run(&claim_leads_plan,
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
		enrich_plan_run(&claim_followers_plan,
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

	enrich_queue_lock_tag(&tag, ENRICH_LOCK_CLAIM, environment);
	return LockAcquire(&tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL;
}

/* the due queued requests a claim locked: their ids and identifiers */
typedef struct DueRequests
{
	int64	   *ids;
	char	  **identifiers;
	int			n;
} DueRequests;

/*
 * claim_due locks up to limit due queued requests of an environment (FOR
 * UPDATE SKIP LOCKED) into *due, and returns how many
 */
static int
claim_due(Datum environment, int limit, DueRequests *due)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		values[2] = {environment, Int32GetDatum(limit)};
	uint64		n;

	n = enrich_plan_run(&plan,
						"SELECT id, identifier FROM enrich.requests "
						"WHERE state" SQL_OP(=) "'queued' AND environment" SQL_OP(=) "$1 "
						"  AND next_attempt_at" SQL_OP(<=) "pg_catalog.now() "
						"ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED",
						2, types, values, NULL, false);
	due->n = (int) n;
	due->ids = palloc(sizeof(int64) * Max(n, 1));
	due->identifiers = palloc(sizeof(char *) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		due->ids[i] = enrich_column_int64(i, 1);
		due->identifiers[i] = enrich_column_text(i, 2);
	}
	return due->n;
}

/*
 * sort_by_identifier returns the claimed rows that have an identifier,
 * by identifier then position: duplicates side by side
 */
static ClaimedIdentifier *
sort_by_identifier(const DueRequests *due, int *nsorted)
{
	ClaimedIdentifier *sorted = palloc(sizeof(ClaimedIdentifier) * Max(due->n, 1));

	*nsorted = 0;
	for (int i = 0; i < due->n; i++)
	{
		if (due->identifiers[i] == NULL)
			continue;
		sorted[*nsorted].identifier = due->identifiers[i];
		sorted[(*nsorted)++].position = i;
	}
	qsort(sorted, *nsorted, sizeof(ClaimedIdentifier), compare_identifiers);
	return sorted;
}

/*
 * follow_leads_in_flight sets lead_of of every claimed row whose
 * identifier is already in flight to the request in flight (one at most,
 * by the unique index): one index probe per identifier, a plan that stays
 * right before the table was ever analyzed (one scan with = ANY was
 * measured to pick a plan 200 times slower).  Each lead found is locked
 * FOR SHARE until this claim commits: another worker settling it (its item
 * came back, or it went back to the queue) waits for the claim and then
 * settles the followers the claim made; a lead that worker settled
 * meanwhile is no longer found, and the claimed row leads instead.
 * Without the lock, a follower attached to a lead settled in between
 * would wait for it forever.
 */
static void
follow_leads_in_flight(Datum environment, const DueRequests *due,
					   const ClaimedIdentifier *sorted, int nsorted, int64 *lead_of)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {TEXTOID, TEXTARRAYOID};
	Datum		values[2];
	uint64		n;

	values[0] = environment;
	values[1] = enrich_text_array(due->identifiers, due->n);
	n = enrich_plan_run(&plan,
						"SELECT u.identifier, l.id "
						"FROM (SELECT DISTINCT x FROM pg_catalog.unnest($2) AS x) AS u(identifier) "
						"CROSS JOIN LATERAL (SELECT r.id FROM enrich.requests r "
						"    WHERE r.environment" SQL_OP(=) "$1 AND r.identifier" SQL_OP(=) "u.identifier "
						"      AND " STATE_IN("r.state", "{submitting,submitted}") " "
						"      AND r.duplicate_of IS NULL "
	/* LIMIT keeps it a probe per identifier: a join would be planned */
						"    LIMIT 1 FOR SHARE OF r) AS l",
						2, types, values, NULL, false);
	for (uint64 j = 0; j < n; j++)
	{
		ClaimedIdentifier key = {enrich_column_text(j, 1), 0};
		const ClaimedIdentifier *found = bsearch(&key, sorted, nsorted, sizeof(ClaimedIdentifier),
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

/*
 * follow_first_of_each sets lead_of of the claimed rows that repeat an
 * identifier (and follow nothing in flight) to the first of them
 */
static void
follow_first_of_each(const DueRequests *due, const ClaimedIdentifier *sorted, int nsorted,
					 int64 *lead_of)
{
	for (int i = 0; i < nsorted; i++)
	{
		const ClaimedIdentifier *first = &sorted[i];

		while (i + 1 < nsorted && strcmp(sorted[i + 1].identifier, first->identifier) == 0)
		{
			i++;
			if (lead_of[sorted[i].position] == 0)
				lead_of[sorted[i].position] = due->ids[first->position];
		}
	}
}

/*
 * queued_claim splits the claimed rows into leads and followers (lead_of
 * 0: it leads) for claim_queued_step
 */
static void
queued_claim(const DueRequests *due, const int64 *lead_of, QueuedClaim *claim)
{
	memset(claim, 0, sizeof(*claim));
	claim->lead_ids = palloc(sizeof(int64) * Max(due->n, 1));
	claim->follower_ids = palloc(sizeof(int64) * Max(due->n, 1));
	claim->follower_leads = palloc(sizeof(int64) * Max(due->n, 1));
	claim->leads = palloc0(sizeof(EnrichOutgoing) * Max(due->n, 1));
	for (int i = 0; i < due->n; i++)
	{
		if (lead_of[i] == 0)
			claim->lead_ids[claim->nleads++] = due->ids[i];
		else
		{
			claim->follower_ids[claim->nfollowers] = due->ids[i];
			claim->follower_leads[claim->nfollowers++] = lead_of[i];
		}
	}
}

/*
 * claim_once claims up to limit requests of an environment and returns the
 * ones to send: due queued requests (FOR UPDATE SKIP LOCKED), unless
 * another worker is claiming those right now (queue_lock), else the
 * contacts watched tables queued in enrich.intake (claim_intake).
 * Requests whose normalized identifier is already in flight, or appears
 * twice among the claimed, become duplicates of that one request: the API
 * is asked once and the answer written to every row.  *claimed says
 * whether it claimed anything.
 */
static int
claim_once(int environment, int limit, EnrichOutgoing **leads_out, bool *claimed)
{
	Datum		env = CStringGetTextDatum(enrich_environment_name(environment));
	bool		queue_claimable = queue_lock(environment);
	DueRequests due = {NULL, NULL, 0};
	ClaimedIdentifier *sorted;
	int			nsorted;
	int64	   *lead_of;		/* per claimed row: its lead, or 0 when it leads */
	QueuedClaim claim;

	*leads_out = NULL;
	*claimed = false;
	while (!queue_claimable || claim_due(env, limit, &due) == 0)
	{
		int64		submission;
		int64		made = claim_intake(env, limit, &submission);

		if (made < 0)
			return 0;			/* nothing waits there either */
		*claimed = true;
		if (submission == 0)
		{
			/* it made queued requests, seen by no other claim yet: claim those */
			queue_claimable = true;
			continue;
		}
		/* the unique index saw to it that none duplicates another */
		return made_leads((uint64) made, leads_out);
	}

	*claimed = true;
	lead_of = palloc0(sizeof(int64) * due.n);
	sorted = sort_by_identifier(&due, &nsorted);
	follow_leads_in_flight(env, &due, sorted, nsorted, lead_of);
	follow_first_of_each(&due, sorted, nsorted, lead_of);
	queued_claim(&due, lead_of, &claim);
	if (!enrich_in_subtransaction(claim_queued_step, &claim, claim_collided))
	{
		/* another worker claimed one of these identifiers meanwhile */
		ereport(DEBUG1,
				(errmsg("enrich worker: a claim collided with another worker's, trying again")));
		*claimed = false;
		return 0;
	}
	*leads_out = claim.leads;
	return claim.nleads;
}

/*
 * The most chunks one claim settles from recent answers before it returns
 * with nothing to send: the next round goes on, in a new transaction.
 */
#define REUSED_CHUNKS_MAX 10

/*
 * enrich_queue_claim claims requests to send (claim_once): those a recent
 * answer settles are settled at once and not sent (enrich_reuse_claimed),
 * and counted in *reused, and another chunk is claimed while a whole chunk
 * was settled so
 */
int
enrich_queue_claim(int environment, int limit, EnrichOutgoing **leads_out, int *reused)
{
	*reused = 0;
	for (int chunk = 0; chunk < REUSED_CHUNKS_MAX; chunk++)
	{
		bool		claimed;
		int			nleads = claim_once(environment, limit, leads_out, &claimed);

		nleads = enrich_reuse_claimed(*leads_out, nleads, reused);
		if (nleads > 0 || !claimed)
			return nleads;
	}
	return 0;
}
