/*-------------------------------------------------------------------------
 *
 * reuse.c
 *	  Settling claimed requests from a recent answer instead of an API
 *	  call: a request whose normalized identifier was found (or not found)
 *	  recently enough copies that answer, names the request it copied in
 *	  reused_from, and is written back like any other.  Only answers the
 *	  API itself gave are copied (reused_from IS NULL), so an answer's age
 *	  is the age of the call that paid for it, however often it is reused.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "plans.h"
#include "queue.h"
#include "reuse.h"
#include "writeback.h"

/*
 * settle_reused settles the requests among ids that a recent answer can:
 * a person found within its window ($2 ms, or the request's max_age), a
 * not_found within the shorter of that and $3 ms.  The claim's attempt is
 * taken back: nothing was sent.  It returns how many, the SPI result
 * holding each one's id, state, source_relid, source_key as text, person
 * and when the copied answer was given.
 */
static uint64
settle_reused(Datum ids)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[3] = {INT8ARRAYOID, FLOAT8OID, FLOAT8OID};
	Datum		values[3];

	values[0] = ids;
	values[1] = Float8GetDatum(enrich_reuse_within_s * 1000.0);
	values[2] = Float8GetDatum(enrich_reuse_failures_within_s * 1000.0);
	return enrich_plan_run(&plan,
						   "UPDATE enrich.requests r SET state = s.state, person = s.person, error = s.error, "
						   "    item_id = s.item_id, batch_id = s.batch_id, reused_from = s.id, "
						   "    submission = NULL, claimed_by = NULL, "
						   "    attempts = pg_catalog.int4larger(r.attempts" SQL_OP(-) "1, 0), "
						   "    completed_at = pg_catalog.now(), updated_at = pg_catalog.now() "
						   "FROM (SELECT c.id AS request, a.* "
						   "      FROM enrich.requests c "
						   "      CROSS JOIN LATERAL (SELECT a.id, a.state, a.person, a.error, a.item_id, a.batch_id, "
						   "              a.completed_at AS answered_at "
						   "          FROM enrich.requests a "
						   "          WHERE a.environment" SQL_OP(=) "c.environment "
						   "            AND a.identifier" SQL_OP(=) "c.identifier "
						   "            AND a.id" SQL_OP(<>) "c.id "
						   "            AND " ANSWER_REUSABLE("a", "COALESCE(c.max_age, " MILLISECONDS("$2") ")",
														  "LEAST(COALESCE(c.max_age, " MILLISECONDS("$3") "), "
														  MILLISECONDS("$3") ")") " "
						   "          ORDER BY a.completed_at DESC LIMIT 1) a "
						   "      WHERE c.id" SQL_OP(=) "ANY ($1) AND c.identifier IS NOT NULL) s "
						   "WHERE r.id" SQL_OP(=) "s.request "
						   "RETURNING r.id, r.state, r.source_relid, r.source_key::pg_catalog.text, r.person, "
						   "    s.answered_at",
						   3, types, values, NULL, false);
}

/*
 * enrich_reuse_claimed settles from recent answers the leads a claim is
 * about to send (requests 'submitting'), and their duplicates with them,
 * writing back the persons of watched rows; it removes them from leads,
 * adds how many requests it settled to *reused and returns how many leads
 * are left to send
 */
int
enrich_reuse_claimed(EnrichOutgoing *leads, int nleads, int *reused)
{
	int64	   *ids;
	List	   *groups = NIL;
	uint64		n;
	uint64		followers;
	int			kept = 0;

	if (nleads == 0)
		return 0;
	ids = palloc(sizeof(int64) * nleads);
	for (int i = 0; i < nleads; i++)
		ids[i] = leads[i].request_id;
	n = settle_reused(enrich_int8_array(ids, nleads));
	if (n == 0)
		return nleads;
	ids = palloc(sizeof(int64) * n);
	for (uint64 i = 0; i < n; i++)
		ids[i] = enrich_column_int64(i, 1);
	enrich_write_back_collect(&groups, n);
	followers = enrich_queue_settle_followers(enrich_int8_array(ids, (int) n));
	enrich_write_back_collect(&groups, followers);
	enrich_write_back(groups, false);
	*reused += (int) (n + followers);
	for (int i = 0; i < nleads; i++)
	{
		bool		settled = false;

		for (uint64 j = 0; j < n && !settled; j++)
			settled = ids[j] == leads[i].request_id;
		if (!settled)
			leads[kept++] = leads[i];
	}
	return kept;
}

/* the first worker prunes old requests at most this often, this many at a time */
#define PRUNE_INTERVAL_MS (60 * 1000)
#define PRUNE_MAX 10000

/*
 * enrich_reuse_prune deletes requests done or failed more than
 * enrich.keep_requests ago (0: never), oldest first, at most PRUNE_MAX a
 * minute, keeping what reuse needs: the newest answer the API gave for an
 * identifier while it is young enough to be reused, and any request whose
 * person is still to be written back.  The first worker calls it in its
 * transaction; it returns how many it deleted.
 */
uint64
enrich_reuse_prune(void)
{
	static SPIPlanPtr plan = NULL;
	static TimestampTz last = 0;
	TimestampTz now = GetCurrentTimestamp();
	Oid			types[4] = {FLOAT8OID, FLOAT8OID, FLOAT8OID, INT4OID};
	Datum		values[4];

	if (enrich_keep_requests_s == 0 || !TimestampDifferenceExceeds(last, now, PRUNE_INTERVAL_MS))
		return 0;
	last = now;
	values[0] = Float8GetDatum(enrich_keep_requests_s * 1000.0);
	values[1] = Float8GetDatum(enrich_reuse_within_s * 1000.0);
	values[2] = Float8GetDatum(enrich_reuse_failures_within_s * 1000.0);
	values[3] = Int32GetDatum(PRUNE_MAX);
	return enrich_plan_run(&plan,
						   "DELETE FROM enrich.requests r WHERE r.id" SQL_OP(=) "ANY (ARRAY("
						   "  SELECT o.id FROM enrich.requests o "
						   "  WHERE " STATE_IN("o.state", "{done,failed}") " "
						   "    AND o.completed_at" SQL_OP(<) "(pg_catalog.now()" SQL_OP(-) MILLISECONDS("$1") ") "
						   "    AND o.write_back_due IS NULL "
						   "    AND NOT (o.identifier IS NOT NULL "
						   "             AND " ANSWER_REUSABLE("o", MILLISECONDS("$2"), MILLISECONDS("$3")) " "
						   "             AND NOT EXISTS (SELECT 1 FROM enrich.requests n "
						   "                 WHERE n.environment" SQL_OP(=) "o.environment "
						   "                   AND n.identifier" SQL_OP(=) "o.identifier "
						   "                   AND " STATE_IN("n.state", "{done,failed}") " "
						   "                   AND n.reused_from IS NULL "
						   "                   AND n.completed_at" SQL_OP(>) "o.completed_at)) "
						   "  ORDER BY o.completed_at LIMIT $4))",
						   4, types, values, NULL, false);
}
