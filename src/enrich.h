/*-------------------------------------------------------------------------
 *
 * enrich.h
 *	  Declarations shared by the modules of the enrich extension: the
 *	  settings (guc.c) and each module's init function called by _PG_init.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_H
#define ENRICH_H

/* Environments of the API, as the enum setting enrich.environment knows them */
typedef enum EnrichEnvironment
{
	ENRICH_ENV_LIVE = 0,
	ENRICH_ENV_TEST = 1
} EnrichEnvironment;

#define ENRICH_ENV_COUNT 2

/* guc.c: every enrich.* setting */
extern char *enrich_api_url;
extern int	enrich_environment;
extern int	enrich_timeout_ms;
extern int	enrich_connect_timeout_ms;
extern int	enrich_max_response_size_kb;
extern char *enrich_ca_file;

extern void enrich_guc_init(void);
extern const char *enrich_environment_name(int environment);
extern int	enrich_environment_parse(const char *name);
extern int	enrich_environment_arg(const char *name);

/* keys.c: API keys, and SPI as the bootstrap superuser */
extern char *enrich_api_key(const char *environment);
extern int	enrich_run_privileged(const char *sql, int nargs, Oid *argtypes,
								  Datum *values, const char *nulls, bool read_only);

#endif							/* ENRICH_H */
