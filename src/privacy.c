/*-------------------------------------------------------------------------
 *
 * privacy.c
 *	  Each role sees its own enrichment.  A request belongs to the role that
 *	  inserted it, or to the owner of the watched table it came from; a
 *	  batch to the role that called enrich_submit (the workers' batches
 *	  carry many roles' requests and belong to the workers).  Row-level
 *	  security on enrich's tables shows a role its own rows; here is the
 *	  same rule for the SQL functions that read batches from the API,
 *	  enrich_cancel, and the report of roles that own requests but do not
 *	  exist.  Superusers,
 *	  roles with BYPASSRLS and members of enrich_admin see everything.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "plans.h"
#include "privacy.h"
#include "security.h"

PG_FUNCTION_INFO_V1(enrich_cancel);

/*
 * enrich_role_sees_all says whether the current role sees every role's
 * requests and batches: a superuser, a role with BYPASSRLS (row-level
 * security shows it every row anyway), or one with the privileges of
 * enrich_admin (which may not exist: then nobody else)
 */
bool
enrich_role_sees_all(void)
{
	Oid			admin;

	if (superuser() || has_bypassrls_privilege(GetUserId()))
		return true;
	admin = get_role_oid(ENRICH_ADMIN_ROLE, true);
	return OidIsValid(admin) && has_privs_of_role(GetUserId(), admin);
}

/*
 * enrich_report_missing_owners logs each role that requests belong to but
 * that does not exist (rows restored into another cluster, or a role
 * dropped): its rows stay and are processed, and only superusers and
 * members of enrich_admin see them.  The first worker calls it once when it
 * starts, with SPI connected.
 */
void
enrich_report_missing_owners(void)
{
	int			rc = SPI_execute("SELECT r.owner::pg_catalog.text, pg_catalog.count(*) FROM enrich.requests r "
								 "WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles a "
								 "WHERE a.rolname" SQL_OP(=) "r.owner) "
								 "GROUP BY r.owner ORDER BY r.owner LIMIT 100",
								 true, 0);

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "enrich: reading the owners of enrich.requests failed: %s", SPI_result_code_string(rc));
	for (uint64 i = 0; i < SPI_processed; i++)
		ereport(LOG,
				(errmsg("enrich worker: %s requests belong to role \"%s\", which does not exist",
						SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2),
						SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1)),
				 errdetail("They are kept and processed; superusers and members of %s see them.",
						   ENRICH_ADMIN_ROLE),
				 errhint("Create the role, or give the requests to another role with UPDATE enrich.requests SET owner.")));
}

/* current_role_name is the name of the current role, as a text datum */
static Datum
current_role_name(void)
{
	return CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
}

/*
 * enrich_check_batch_reader refuses (42501) a batch the current role did
 * not submit with enrich_submit, unless it sees everything.  A batch enrich
 * has no record of is refused alike: the message does not say which.
 */
void
enrich_check_batch_reader(const char *batch_id)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	int			rc;
	bool		own;

	if (enrich_role_sees_all())
		return;
	values[0] = CStringGetTextDatum(batch_id);
	values[1] = current_role_name();
	SPI_connect();
	rc = enrich_run_privileged("SELECT 1 FROM enrich.batches WHERE batch_id" SQL_OP(=) "$1 "
							   "AND submitted_by" SQL_OP(=) "$2::pg_catalog.name",
							   2, argtypes, values, NULL, true);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "enrich: reading enrich.batches failed: %s", SPI_result_code_string(rc));
	own = SPI_processed > 0;
	SPI_finish();
	if (!own)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for batch \"%s\"", batch_id),
				 errdetail("Role \"%s\" did not submit this batch with enrich_submit.",
						   GetUserNameFromId(GetUserId(), false)),
				 errhint("A role reads the batches it submitted; members of %s read every batch.",
						 ENRICH_ADMIN_ROLE)));
}

/*
 * enrich_own_batches says of each of n batch ids whether the current role
 * may see it (palloc'd array): all when it sees everything, else those it
 * submitted with enrich_submit
 */
bool *
enrich_own_batches(char **batch_ids, int n)
{
	bool	   *own = palloc0(sizeof(bool) * Max(n, 1));
	Oid			argtypes[2] = {TEXTARRAYOID, TEXTOID};
	Datum		values[2];
	int			rc;

	if (enrich_role_sees_all() || n == 0)
	{
		for (int i = 0; i < n; i++)
			own[i] = true;
		return own;
	}
	values[0] = enrich_text_array(batch_ids, n);
	values[1] = current_role_name();
	SPI_connect();
	rc = enrich_run_privileged("SELECT i::pg_catalog.int4 FROM pg_catalog.unnest($1) WITH ORDINALITY AS b(id, i) "
							   "WHERE EXISTS (SELECT 1 FROM enrich.batches e WHERE e.batch_id" SQL_OP(=) "b.id "
							   "AND e.submitted_by" SQL_OP(=) "$2::pg_catalog.name)",
							   2, argtypes, values, NULL, true);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "enrich: reading enrich.batches failed: %s", SPI_result_code_string(rc));
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		int32		i = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull));

		if (!isnull && i >= 1 && i <= n)
			own[i - 1] = true;
	}
	SPI_finish();
	return own;
}

/*
 * enrich_cancel(ids bigint[]) cancels the queued requests of these ids that
 * belong to the caller (any role's, for one that sees everything): they
 * fail with code "canceled" and are never sent.  Requests already being
 * sent or answered are left alone.  Returns how many were canceled.
 */
Datum
enrich_cancel(PG_FUNCTION_ARGS)
{
	Oid			argtypes[3] = {INT8ARRAYOID, TEXTOID, BOOLOID};
	Datum		values[3];
	int			rc;
	uint64		canceled;

	values[0] = PointerGetDatum(PG_GETARG_ARRAYTYPE_P(0));
	values[1] = current_role_name();
	values[2] = BoolGetDatum(enrich_role_sees_all());
	SPI_connect();
	rc = enrich_run_privileged("UPDATE enrich.requests SET state = 'failed', completed_at = pg_catalog.now(), "
							   "updated_at = pg_catalog.now(), "
							   "error = pg_catalog.jsonb_build_object('code', 'canceled', "
							   "'message', 'canceled by ' OPERATOR(pg_catalog.||) $2) "
							   "WHERE id" SQL_OP(=) "ANY ($1) AND state" SQL_OP(=) "'queued' "
							   "AND (owner" SQL_OP(=) "$2::pg_catalog.name OR $3)",
							   3, argtypes, values, NULL, false);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "enrich: canceling requests failed: %s", SPI_result_code_string(rc));
	canceled = SPI_processed;
	SPI_finish();
	PG_RETURN_INT64((int64) canceled);
}
