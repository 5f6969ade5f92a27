/*-------------------------------------------------------------------------
 *
 * functions.c
 *	  The SQL-callable functions that query the API ad hoc: enrich_submit,
 *	  enrich_status, enrich_item and enrich_batches, and the row builders
 *	  that enrich_items (items.c) shares with them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/jsonb.h"

#include "api.h"
#include "guc.h"
#include "keys.h"
#include "functions.h"
#include "http.h"
#include "ledger.h"
#include "privacy.h"
#include "queue.h"

PG_FUNCTION_INFO_V1(enrich_submit);
PG_FUNCTION_INFO_V1(enrich_status);
PG_FUNCTION_INFO_V1(enrich_item);
PG_FUNCTION_INFO_V1(enrich_batches);

/*
 * enrich_function_environment returns the environment named by a function's
 * argument, or enrich.environment when the argument is NULL
 */
const char *
enrich_function_environment(FunctionCallInfo fcinfo, int argno)
{
	if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
		return enrich_environment_name(enrich_environment);
	return enrich_environment_name(
								   enrich_environment_arg(text_to_cstring(PG_GETARG_TEXT_PP(argno))));
}

/* enrich_required_text returns a text argument, refusing NULL by its name */
char *
enrich_required_text(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

/* enrich_call_api performs one call with the environment's key */
void
enrich_call_api(EnrichHttpCall *call, const char *method, char *url,
				const char *environment, const char *body)
{
	memset(call, 0, sizeof(*call));
	call->method = method;
	call->url = url;
	call->api_key = enrich_api_key(environment);
	call->body = body;
	call->body_len = body ? strlen(body) : 0;
	enrich_http_perform(call, 1);
}

/* timestamptz_datum turns an RFC 3339 timestamp into a timestamptz datum */
static Datum
timestamptz_datum(const char *ts)
{
	return DirectFunctionCall3(timestamptz_in, CStringGetDatum(ts),
							   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
}

/*
 * enrich_status_values fills the 8 columns of the batch status row type:
 * (batch_id, status, created_at, completed_at, total_count, processed_count,
 * success_count, failure_count)
 */
void
enrich_status_values(const EnrichBatchStatus *s, Datum *values, bool *nulls)
{
	memset(nulls, 0, sizeof(bool) * ENRICH_STATUS_COLUMNS);
	values[0] = CStringGetTextDatum(s->batch_id);
	values[1] = CStringGetTextDatum(s->status);
	values[2] = timestamptz_datum(s->created_at);
	if (s->completed_at)
		values[3] = timestamptz_datum(s->completed_at);
	else
		nulls[3] = true;
	values[4] = Int32GetDatum(s->total_count);
	values[5] = Int32GetDatum(s->processed_count);
	values[6] = Int32GetDatum(s->success_count);
	values[7] = Int32GetDatum(s->failure_count);
}

/*
 * enrich_item_values fills the 6 columns of the item row type:
 * (item_id, is_success, is_retryable, metadata, person, error)
 */
void
enrich_item_values(const EnrichItem *item, Datum *values, bool *nulls)
{
	memset(nulls, 0, sizeof(bool) * ENRICH_ITEM_COLUMNS);
	values[0] = CStringGetTextDatum(item->item_id);
	values[1] = BoolGetDatum(item->is_success);
	values[2] = BoolGetDatum(item->is_retryable);
	if (item->metadata)
		values[3] = JsonbPGetDatum(enrich_jsonb_from_json(item->metadata));
	else
		nulls[3] = true;
	if (item->person)
		values[4] = JsonbPGetDatum(enrich_jsonb_from_json(item->person));
	else
		nulls[4] = true;
	if (item->error)
		values[5] = JsonbPGetDatum(enrich_jsonb_from_json(item->error));
	else
		nulls[5] = true;
}

/* result_tupdesc returns the blessed row type of a function's result */
static TupleDesc
result_tupdesc(FunctionCallInfo fcinfo)
{
	TupleDesc	tupdesc;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "enrich: function returning a row called in a context that cannot accept one");
	return BlessTupleDesc(tupdesc);
}

/*
 * catalog_has_ledger says whether this database's catalog has the ledger
 * and the budgets (1.1 and later; SPI connected)
 */
static bool
catalog_has_ledger(void)
{
	char	   *version = enrich_queue_catalog_version();

	return version != NULL && strcmp(version, "1.0") != 0;
}

/*
 * check_budget refuses a bulk enrich of n requests that the environment's
 * budget (enrich_set_budget) does not leave room for, before anything is
 * sent; it returns whether the catalog has a ledger to count it in
 */
static bool
check_budget(const char *environment, int n)
{
	char	   *why = NULL;
	int64		left = -1;
	bool		has_ledger;

	SPI_connect();
	has_ledger = catalog_has_ledger();
	if (has_ledger)
		left = enrich_ledger_budget_left(enrich_environment_parse(environment), false, &why);
	SPI_finish();
	if (left >= 0 && n > left)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("the budget of environment \"%s\" leaves " INT64_FORMAT " requests, fewer than the %d to send",
						environment, left, n),
				 why ? errdetail("Environment \"%s\": %s.", environment, why) : 0,
				 errhint("Nothing was sent. enrich_set_budget() raises the limit; the workers count against it too.")));
	return has_ledger;
}

/* count_submitted counts a bulk enrich the API accepted in the ledger (1.1 catalogs) */
static void
count_submitted(const char *environment, int n)
{
	EnrichUsage usage = {0};

	usage.submitted = n;
	usage.bulk_enrich_calls = 1;
	SPI_connect();
	enrich_ledger_add(enrich_environment_parse(environment), &usage);
	SPI_finish();
}

/*
 * enrich_submit(requests jsonb, environment text) validates the requests as
 * the API would, sends them as one bulk enrich, records the batch in
 * enrich.batches and returns its id.  In a read-only transaction (or on a
 * standby) it sends nothing: the batch could not be recorded.
 */
Datum
enrich_submit(PG_FUNCTION_ARGS)
{
	Jsonb	   *requests;
	const char *environment;
	char	   *body;
	int			nrequests;
	EnrichRequestProblem problem;
	EnrichHttpCall call;
	char	   *batch_id;
	char	   *err;
	bool		has_ledger;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("requests must not be null"),
				 errhint("Pass a JSON array of 1 to %d request objects.", ENRICH_API_MAX_REQUESTS)));
	requests = PG_GETARG_JSONB_P(0);
	environment = enrich_function_environment(fcinfo, 1);

	/* a batch is paid for: one that could not be recorded is not sent */
	if (XactReadOnly)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot execute enrich_submit() in a read-only transaction"),
				 errdetail("The batch would be paid for and could not be recorded in enrich.batches; nothing was sent."),
				 RecoveryInProgress() ?
				 errhint("Call enrich_submit() on the primary server; the read calls work here.") :
				 errhint("Call enrich_submit() in a read-write transaction.")));

	if (!enrich_api_build_bulk_body(JsonbToCString(NULL, &requests->root, VARSIZE(requests)),
									&body, &nrequests, &problem))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for %s", problem.field),
				 errdetail("%s", problem.reason),
				 errhint("A request is an object with pdlId, personId, professionalSocialMediaUrl (at least one) and an optional metadata object.")));

	has_ledger = check_budget(environment, nrequests);
	enrich_call_api(&call, "POST", enrich_api_url_bulk_enrich(environment), environment, body);
	enrich_api_check(&call, environment, 202);
	err = enrich_api_parse_batch_id(call.response, &batch_id);
	if (err != NULL)
		enrich_api_malformed(&call, err);

	enrich_queue_record_batch(batch_id, environment, nrequests);
	if (has_ledger)
		count_submitted(environment, nrequests);
	PG_RETURN_TEXT_P(cstring_to_text(batch_id));
}

/*
 * enrich_status(batch_id text, environment text) returns the status of a
 * batch the caller submitted
 */
Datum
enrich_status(PG_FUNCTION_ARGS)
{
	char	   *batch_id = enrich_required_text(fcinfo, 0, "batch_id");
	const char *environment = enrich_function_environment(fcinfo, 1);
	TupleDesc	tupdesc = result_tupdesc(fcinfo);
	EnrichHttpCall call;
	EnrichBatchStatus status;
	Datum		values[ENRICH_STATUS_COLUMNS];
	bool		nulls[ENRICH_STATUS_COLUMNS];
	char	   *err;

	enrich_check_batch_reader(batch_id);
	enrich_call_api(&call, "GET", enrich_api_url_batch(environment, batch_id), environment, NULL);
	enrich_api_check(&call, environment, 200);
	err = enrich_api_parse_status(call.response, &status);
	if (err != NULL)
		enrich_api_malformed(&call, err);

	enrich_status_values(&status, values, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * enrich_item(batch_id text, item_id text, environment text) returns one
 * item of a batch the caller submitted
 */
Datum
enrich_item(PG_FUNCTION_ARGS)
{
	char	   *batch_id = enrich_required_text(fcinfo, 0, "batch_id");
	char	   *item_id = enrich_required_text(fcinfo, 1, "item_id");
	const char *environment = enrich_function_environment(fcinfo, 2);
	TupleDesc	tupdesc = result_tupdesc(fcinfo);
	EnrichHttpCall call;
	EnrichItem	item;
	Datum		values[ENRICH_ITEM_COLUMNS];
	bool		nulls[ENRICH_ITEM_COLUMNS];
	char	   *err;

	enrich_check_batch_reader(batch_id);
	enrich_call_api(&call, "GET", enrich_api_url_item(environment, batch_id, item_id),
					environment, NULL);
	enrich_api_check(&call, environment, 200);
	err = enrich_api_parse_item(call.response, &item);
	if (err != NULL)
		enrich_api_malformed(&call, err);

	enrich_item_values(&item, values, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * enrich_batches(created_after date, limit int, offset int, environment
 * text) lists one page of the batches of the environment, newest first:
 * of the page the API gives, those the caller submitted (every one, for a
 * role that sees everything)
 */
Datum
enrich_batches(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *created_after = NULL;
	int			limit = PG_ARGISNULL(1) ? 100 : PG_GETARG_INT32(1);
	int			offset = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT32(2);
	const char *environment = enrich_function_environment(fcinfo, 3);
	EnrichHttpCall call;
	EnrichBatchList list;
	char	   *err;
	char	  **ids;
	bool	   *own;

	if (limit < 1 || limit > ENRICH_API_MAX_BATCH_LIST)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("limit must be between 1 and %d, not %d", ENRICH_API_MAX_BATCH_LIST, limit)));
	if (offset < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("offset must not be negative, not %d", offset)));
	if (!PG_ARGISNULL(0))
	{
		DateADT		date = PG_GETARG_DATEADT(0);
		int			year,
					month,
					day;

		if (DATE_NOT_FINITE(date))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("created_after must be a finite date")));
		j2date(date + POSTGRES_EPOCH_JDATE, &year, &month, &day);
		if (year < 1 || year > 9999)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("created_after must be a date between years 1 and 9999")));
		created_after = psprintf("%04d-%02d-%02d", year, month, day);
	}

	InitMaterializedSRF(fcinfo, 0);

	enrich_call_api(&call, "GET",
					enrich_api_url_batches(environment, created_after, limit, offset),
					environment, NULL);
	enrich_api_check(&call, environment, 200);
	err = enrich_api_parse_batch_list(call.response, &list);
	if (err != NULL)
		enrich_api_malformed(&call, err);

	/* only the batches the caller may see */
	ids = palloc(sizeof(char *) * Max(list.nbatches, 1));
	for (int i = 0; i < list.nbatches; i++)
		ids[i] = list.batches[i].batch_id;
	own = enrich_own_batches(ids, list.nbatches);
	for (int i = 0; i < list.nbatches; i++)
	{
		Datum		values[ENRICH_STATUS_COLUMNS];
		bool		nulls[ENRICH_STATUS_COLUMNS];

		if (!own[i])
			continue;
		enrich_status_values(&list.batches[i], values, nulls);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
