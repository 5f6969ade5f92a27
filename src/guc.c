/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Every enrich.* setting: definitions, units, limits and check hooks.
 *
 * Settings that decide where the API key is sent (the API's URL and the CA
 * file) are superuser-only, so that no other role can redirect the key.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "guc.h"

char	   *enrich_api_url = NULL;
int			enrich_environment = ENRICH_ENV_LIVE;
int			enrich_timeout_ms = 30000;
int			enrich_connect_timeout_ms = 5000;
int			enrich_max_response_size_kb = 16 * 1024;
char	   *enrich_ca_file = NULL;
char	   *enrich_database = NULL;
char	   *enrich_databases = NULL;
int			enrich_max_workers = 6;
int			enrich_batch_size = 1000;
int			enrich_page_size = 50;
int			enrich_poll_interval_min_ms = 200;
int			enrich_poll_interval_max_ms = 10000;
int			enrich_max_in_flight = 8;
int			enrich_workers = 2;
int			enrich_max_attempts = 5;
int			enrich_retry_delay_ms = 1000;
int			enrich_retry_delay_max_ms = 600000;
int			enrich_tier3_rate = 5;
int			enrich_tier4_rate = 50;
int			enrich_rate_burst_s = 2;
int			enrich_reconcile_grace_ms = 120000;
int			enrich_idle_check_ms = 30000;
int			enrich_write_back_timeout_ms = 30000;
int			enrich_reuse_within_s = 30 * 24 * 3600;
int			enrich_reuse_failures_within_s = 24 * 3600;
int			enrich_keep_requests_s = 0;
char	   *enrich_refresh_window = NULL;

static const struct config_enum_entry enrich_environment_options[] = {
	{"live", ENRICH_ENV_LIVE, false},
	{"test", ENRICH_ENV_TEST, false},
	{NULL, 0, false}
};

/*
 * enrich_api_url_check accepts only http:// and https:// URLs: no other
 * protocol is ever given to libcurl.
 */
static bool
enrich_api_url_check(char **newval, void **extra, GucSource source)
{
	const char *url = *newval;

	if (url == NULL)
		return true;
	if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
	{
		GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
		GUC_check_errmsg("enrich.api_url must start with http:// or https://");
		return false;
	}
	return true;
}

/* enrich_environment_name returns "live" or "test" */
const char *
enrich_environment_name(int environment)
{
	return environment == ENRICH_ENV_TEST ? "test" : "live";
}

/* enrich_environment_parse maps "live"/"test" to the enum, -1 otherwise */
int
enrich_environment_parse(const char *name)
{
	if (strcmp(name, "live") == 0)
		return ENRICH_ENV_LIVE;
	if (strcmp(name, "test") == 0)
		return ENRICH_ENV_TEST;
	return -1;
}

/*
 * enrich_environment_arg maps a function's environment argument to the enum,
 * raising an error that names the accepted values when it is neither
 */
int
enrich_environment_arg(const char *name)
{
	int			environment = enrich_environment_parse(name);

	if (environment < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid environment \"%s\"", name),
				 errhint("The environment is 'live' or 'test'.")));
	return environment;
}

/*
 * enrich_refresh_window_parse reads a time of day window "HH:MM-HH:MM"
 * (00:00 to 24:00; the end may come before the start: the window then
 * spans midnight) into minutes since midnight; false when it is not one.
 * An empty window (any time) gives false too: callers test for it first.
 */
bool
enrich_refresh_window_parse(const char *window, int *start_min, int *end_min)
{
	int			h1,
				m1,
				h2,
				m2;
	char		rest;

	if (sscanf(window, " %2d:%2d - %2d:%2d %c", &h1, &m1, &h2, &m2, &rest) != 4)
		return false;
	if (h1 < 0 || h2 < 0 || m1 < 0 || m2 < 0 || m1 > 59 || m2 > 59 ||
		h1 * 60 + m1 > 24 * 60 || h2 * 60 + m2 > 24 * 60)
		return false;
	*start_min = (h1 * 60 + m1) % (24 * 60);
	*end_min = (h2 * 60 + m2) % (24 * 60);
	return *start_min != *end_min;
}

/* check_refresh_window accepts '' (any time) or a window "HH:MM-HH:MM" */
static bool
check_refresh_window(char **newval, void **extra, GucSource source)
{
	int			start,
				end;

	if (*newval == NULL || (*newval)[0] == '\0' ||
		enrich_refresh_window_parse(*newval, &start, &end))
		return true;
	GUC_check_errdetail("enrich.refresh_window is a time of day window such as \"02:00-06:00\" (server time), or empty for any time.");
	return false;
}

/*
 * check_databases accepts '*' or a comma-separated list of database names
 * (quoted like identifiers where they need it)
 */
static bool
check_databases(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval);
	List	   *names = NIL;
	bool		ok = strcmp(*newval, "*") == 0 || SplitIdentifierString(copy, ',', &names);

	if (!ok)
		GUC_check_errdetail("List syntax is invalid: \"*\" or database names separated by commas.");
	list_free(names);
	pfree(copy);
	return ok;
}

/*
 * enrich_database_listed says whether the workers serve a database by its
 * name: enrich.database when it is set (deprecated), else enrich.databases;
 * *explicit says whether the name is in a list (not '*')
 */
bool
enrich_database_listed(const char *name, bool *explicit)
{
	char	   *copy;
	List	   *names = NIL;
	ListCell   *lc;
	bool		listed = false;

	*explicit = true;
	if (enrich_database != NULL && enrich_database[0] != '\0')
		return strcmp(name, enrich_database) == 0;
	if (enrich_databases == NULL || strcmp(enrich_databases, "*") == 0)
	{
		*explicit = false;
		return true;
	}
	copy = pstrdup(enrich_databases);
	if (SplitIdentifierString(copy, ',', &names))
		foreach(lc, names)
			listed |= strcmp((char *) lfirst(lc), name) == 0;
	list_free(names);
	pfree(copy);
	return listed;
}

/*
 * enrich_worker_guc_init defines the settings of the background workers:
 * one definition after another, a list longer than a screen that reads as
 * the README's table of settings
 */
static void
enrich_worker_guc_init(void)
{
	DefineCustomStringVariable("enrich.databases",
							   "Databases whose enrich the workers serve: * (every one) or a list of names.",
							   "The launcher starts workers in each where the extension is installed.",
							   &enrich_databases,
							   "*",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   check_databases, NULL, NULL);

	DefineCustomStringVariable("enrich.database",
							   "Deprecated: the one database the workers serve (enrich.databases).",
							   "When not empty, it takes the place of enrich.databases.",
							   &enrich_database,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("enrich.max_workers",
							"Most enrich workers of the whole cluster.",
							"Each database gets one worker before any gets a second, "
							"up to enrich.workers each.",
							&enrich_max_workers,
							6, 1, ENRICH_MAX_DATABASES * ENRICH_MAX_WORKERS,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("enrich.batch_size",
							"Most requests the worker sends in one bulk enrich.",
							NULL,
							&enrich_batch_size,
							1000, 1, 1000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("enrich.page_size",
							"Items the worker asks for per page.",
							NULL,
							&enrich_page_size,
							50, 1, 50,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("enrich.poll_interval_min",
							"Shortest wait between two polls of a batch.",
							NULL,
							&enrich_poll_interval_min_ms,
							200, 1, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("enrich.poll_interval_max",
							"Longest wait between two polls of a batch.",
							NULL,
							&enrich_poll_interval_max_ms,
							10000, 1, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("enrich.workers",
							"Background workers that send and receive the queue's requests.",
							"Each one claims requests and pages through its share of the batches; "
							"they share the rate limits of the tiers.",
							&enrich_workers,
							2, 1, ENRICH_MAX_WORKERS,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("enrich.max_in_flight",
							"Most API calls each worker makes at once.",
							NULL,
							&enrich_max_in_flight,
							8, 1, 64,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("enrich.max_attempts",
							"Attempts of a request before it fails for good.",
							"Only failures the API marks retryable are tried again.",
							&enrich_max_attempts,
							5, 1, 100,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("enrich.retry_delay",
							"Base of the exponential back-off of a retried request.",
							"The wait before attempt n+1 is random between 0 and min(retry_delay_max, retry_delay * 2^(n-1)).",
							&enrich_retry_delay_ms,
							1000, 1, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("enrich.retry_delay_max",
							"Cap of the back-off of a retried request or of an unavailable API.",
							NULL,
							&enrich_retry_delay_max_ms,
							600000, 1, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("enrich.reconcile_grace",
							"How long requests interrupted while being sent wait for their batch to be found.",
							"After a crash the worker looks for the batch of such requests among the API's batches; only when none is found within this time are they sent again.",
							&enrich_reconcile_grace_ms,
							120000, 0, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("enrich.idle_check",
							"Longest time an idle worker sleeps before it looks for work anyway.",
							"A worker is woken when a transaction that queued work commits; this bounds the wait when no wake came.",
							&enrich_idle_check_ms,
							30000, 100, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("enrich.write_back_timeout",
							"Longest time the write-back of a page into a watched table may take; 0 = no limit.",
							"It runs the table's triggers, constraints and index expressions as the table's owner; past this time it is canceled and the persons stay in enrich.requests.",
							&enrich_write_back_timeout_ms,
							30000, 0, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("enrich.reuse_within",
							"How old a person found for an identifier may be and still settle a new request of it without an API call; 0 = never.",
							"A request's max_age, when set, takes its place for that request.",
							&enrich_reuse_within_s,
							30 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomStringVariable("enrich.refresh_window",
							   "Time of day when the workers queue the refreshes of watched rows, as HH:MM-HH:MM in the server's time zone; empty = any time.",
							   "The rows due are spread over what is left of the window (or over the next hour, without one).",
							   &enrich_refresh_window,
							   "",
							   PGC_SIGHUP,
							   0,
							   check_refresh_window, NULL, NULL);

	DefineCustomIntVariable("enrich.keep_requests",
							"How long requests done or failed are kept in enrich.requests; 0 = for ever.",
							"The first worker deletes older ones, oldest first, keeping what reuse needs: the newest answer for each identifier while it may be reused, and any person still to be written back.",
							&enrich_keep_requests_s,
							0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("enrich.reuse_failures_within",
							"How old a not_found answer for an identifier may be and still settle a new request of it without an API call; 0 = never.",
							"A request's max_age, when shorter, takes its place for that request.",
							&enrich_reuse_failures_within_s,
							24 * 3600, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("enrich.tier3_rate",
							"Bulk enrich calls per second the worker allows itself (rate tier 3); 0 = no limit.",
							NULL,
							&enrich_tier3_rate,
							5, 0, 100000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("enrich.tier4_rate",
							"Status and item calls per second the worker allows itself (rate tier 4); 0 = no limit.",
							NULL,
							&enrich_tier4_rate,
							50, 0, 100000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("enrich.rate_burst",
							"How many seconds of calls each rate tier may save up and spend at once (the contract's burst).",
							"The API's token buckets hold two seconds of calls by contract.",
							&enrich_rate_burst_s,
							2, 1, 60,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
}

/* enrich_guc_init defines the settings of the HTTP client and the API */
void
enrich_guc_init(void)
{
	DefineCustomStringVariable("enrich.api_url",
							   "Base URL of the AggKnowledge API.",
							   "Only superusers may change it: the API key is sent there.",
							   &enrich_api_url,
							   "https://api.aggknowledge.ai",
							   PGC_SUSET,
							   0,
							   enrich_api_url_check, NULL, NULL);

	DefineCustomEnumVariable("enrich.environment",
							 "API environment used when a function is given none.",
							 NULL,
							 &enrich_environment,
							 ENRICH_ENV_LIVE,
							 enrich_environment_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("enrich.timeout",
							"Longest time one HTTP call to the API may take.",
							NULL,
							&enrich_timeout_ms,
							30000, 100, 3600 * 1000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("enrich.connect_timeout",
							"Longest time to establish a connection to the API.",
							NULL,
							&enrich_connect_timeout_ms,
							5000, 100, 600 * 1000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("enrich.max_response_size",
							"Largest API response body accepted.",
							"Larger responses are refused before they are parsed.",
							&enrich_max_response_size_kb,
							16 * 1024, 64, 1024 * 1024,
							PGC_SUSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomStringVariable("enrich.ca_file",
							   "File of CA certificates that verify the API's TLS certificate.",
							   "Empty means the system's trust store.",
							   &enrich_ca_file,
							   "",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	enrich_worker_guc_init();
	MarkGUCPrefixReserved("enrich");
}
