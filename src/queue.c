/*-------------------------------------------------------------------------
 *
 * queue.c
 *	  All SQL on enrich's own tables of requests and batches.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "enrich.h"
#include "functions.h"

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
							   "VALUES ($1, $2, 'submit', $3, $4) "
							   "ON CONFLICT (batch_id) DO NOTHING",
							   4, argtypes, values, NULL, false);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "enrich: recording batch %s failed: %s", batch_id, SPI_result_code_string(rc));
	SPI_finish();
}
