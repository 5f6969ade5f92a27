/*-------------------------------------------------------------------------
 *
 * guc.h
 *	  Every enrich.* setting (guc.c), the environments, and the constants
 *	  the modules share.  Each module's own functions are declared in its
 *	  own header.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_GUC_H
#define ENRICH_GUC_H

#include "datatype/timestamp.h"

/* Environments of the API, as the enum setting enrich.environment knows them */
typedef enum EnrichEnvironment
{
	ENRICH_ENV_LIVE = 0,
	ENRICH_ENV_TEST = 1
} EnrichEnvironment;

#define ENRICH_ENV_COUNT 2

/* the identifier columns of a request: linkedin_url, person_id, pdl_id */
#define ENRICH_NIDENTIFIERS 3

/* the version of the extension's catalog this library works with */
#define ENRICH_CATALOG_VERSION "1.1"

/* the most background workers enrich.workers may ask for, per database */
#define ENRICH_MAX_WORKERS 8

/* the API's rate tiers, as the rate budgets (budget.c) index them */
#define ENRICH_TIER_BULK 0		/* tier 3: bulk enrich */
#define ENRICH_TIER_READ 1		/* tier 4: status, items, list */
#define ENRICH_TIER_COUNT 2

/* the most databases the launcher serves at once */
#define ENRICH_MAX_DATABASES 64

/* guc.c: every enrich.* setting */
extern char *enrich_api_url;
extern int	enrich_environment;
extern int	enrich_timeout_ms;
extern int	enrich_connect_timeout_ms;
extern int	enrich_max_response_size_kb;
extern char *enrich_ca_file;
extern char *enrich_database;
extern char *enrich_databases;
extern int	enrich_max_workers;
extern int	enrich_batch_size;
extern int	enrich_page_size;
extern int	enrich_poll_interval_min_ms;
extern int	enrich_poll_interval_max_ms;
extern int	enrich_max_in_flight;
extern int	enrich_workers;
extern int	enrich_max_attempts;
extern int	enrich_retry_delay_ms;
extern int	enrich_retry_delay_max_ms;
extern int	enrich_tier3_rate;
extern int	enrich_tier4_rate;
extern int	enrich_rate_burst_s;
extern int	enrich_reconcile_grace_ms;
extern int	enrich_idle_check_ms;
extern int	enrich_write_back_timeout_ms;
extern int	enrich_reuse_within_s;
extern int	enrich_reuse_failures_within_s;
extern int	enrich_keep_requests_s;
extern char *enrich_refresh_window;

extern void enrich_guc_init(void);
extern const char *enrich_environment_name(int environment);
extern int	enrich_environment_parse(const char *name);
extern int	enrich_environment_arg(const char *name);
extern bool enrich_database_listed(const char *name, bool *explicit);
extern bool enrich_refresh_window_parse(const char *window, int *start_min, int *end_min);

#endif							/* ENRICH_GUC_H */
