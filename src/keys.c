/*-------------------------------------------------------------------------
 *
 * keys.c
 *	  The API keys: enrich_set_api_key() and the lookup of the key of an
 *	  environment.  Keys live in enrich.api_keys, which no role but the
 *	  extension's owner can read; callers granted EXECUTE on enrich's
 *	  functions use the key without ever seeing it.
 *
 * The lookups run as the bootstrap superuser (security.c), with fixed,
 * schema-qualified statements under a pinned search_path.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "guc.h"
#include "shared.h"
#include "keys.h"
#include "security.h"

PG_FUNCTION_INFO_V1(enrich_set_api_key);

/*
 * enrich_api_key_if_set returns the key of an environment, palloc'd in the
 * caller's memory context, or NULL when none is set
 */
char *
enrich_api_key_if_set(const char *environment)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	MemoryContext caller = CurrentMemoryContext;
	char	   *key = NULL;
	int			rc;

	values[0] = CStringGetTextDatum(environment);
	SPI_connect();
	rc = enrich_run_privileged("SELECT api_key FROM enrich.api_keys WHERE environment" SQL_OP(=) "$1",
							   1, argtypes, values, NULL, true);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "enrich: reading enrich.api_keys failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 1)
	{
		char	   *value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (value != NULL)
			key = MemoryContextStrdup(caller, value);
	}
	SPI_finish();
	return key;
}

/*
 * enrich_api_key returns the key of an environment, or raises an error
 * saying how to set it
 */
char *
enrich_api_key(const char *environment)
{
	char	   *key = enrich_api_key_if_set(environment);

	if (key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("no AggKnowledge API key is set for environment \"%s\"", environment),
				 errhint("A superuser sets it with SELECT enrich_set_api_key('%s', '<key>').",
						 environment)));
	return key;
}

/*
 * enrich_set_api_key(environment text, key text) stores the key of an
 * environment, or forgets it when key is NULL.  EXECUTE is revoked from
 * PUBLIC: superusers, and roles they grant EXECUTE to, may call it.
 */
Datum
enrich_set_api_key(PG_FUNCTION_ARGS)
{
	const char *environment;
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];
	int			rc;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("environment must not be null"),
				 errhint("Use 'live' or 'test'.")));
	environment = enrich_environment_name(enrich_environment_arg(text_to_cstring(PG_GETARG_TEXT_PP(0))));
	values[0] = CStringGetTextDatum(environment);
	values[2] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));

	if (!PG_ARGISNULL(1))
	{
		text	   *key = PG_GETARG_TEXT_PP(1);
		const char *data = VARDATA_ANY(key);
		int			len = VARSIZE_ANY_EXHDR(key);

		if (len == 0 || len > 1024)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("an API key must have 1 to 1024 characters")));
		for (int i = 0; i < len; i++)
			if ((unsigned char) data[i] < 0x20 || data[i] == 0x7f)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("an API key must not contain control characters")));
		values[1] = PointerGetDatum(key);
	}

	SPI_connect();
	if (PG_ARGISNULL(1))
		rc = enrich_run_privileged("DELETE FROM enrich.api_keys WHERE environment" SQL_OP(=) "$1",
								   1, argtypes, values, NULL, false);
	else
		rc = enrich_run_privileged("INSERT INTO enrich.api_keys (environment, api_key, set_by) "
								   "VALUES ($1, $2, $3::pg_catalog.name) "
								   "ON CONFLICT (environment) DO UPDATE "
								   "SET api_key = excluded.api_key, set_at = pg_catalog.now(), "
								   "set_by = excluded.set_by",
								   3, argtypes, values, NULL, false);
	if (rc != SPI_OK_INSERT && rc != SPI_OK_DELETE)
		elog(ERROR, "enrich: writing enrich.api_keys failed: %s", SPI_result_code_string(rc));
	SPI_finish();

	/* a paused environment resumes once this commits */
	enrich_keys_changed_at_commit();

	PG_RETURN_VOID();
}
