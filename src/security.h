/*-------------------------------------------------------------------------
 *
 * security.h
 *	  Running code with privileges other than the caller's (security.c):
 *	  enrich's fixed statements as the bootstrap superuser, and the
 *	  statements on a user's table as that table's owner.
 *
 * Every statement built here names its operators OPERATOR(pg_catalog.x)
 * (SQL_OP below), casts explicitly to pg_catalog types and runs under the
 * settings enrich_pin_settings fixes, search_path = pg_catalog, pg_temp
 * first of them, so that no operator, function or type a user created
 * takes part.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_SECURITY_H
#define ENRICH_SECURITY_H

#include "executor/spi.h"
#include "utils/guc.h"

/*
 * SQL_OP(=) is " OPERATOR(pg_catalog.=) ", and so on for every operator.
 * Mind that every operator written so has one and the same precedence, left
 * to right, above comparisons and below nothing else: parenthesize
 * "a + b * c" as "a + (b * c)", and "x < a - b" as "x < (a - b)".
 */
#define SQL_OP(op) " OPERATOR(pg_catalog." #op ") "

/* a user switch in force, to be undone by enrich_restore_user */
typedef struct EnrichUserSwitch
{
	Oid			saved_userid;
	int			saved_sec_context;
	int			nestlevel;		/* GUC nest level opened by the switch */
} EnrichUserSwitch;

extern void enrich_pin_settings(GucAction action);
extern void enrich_pin_worker_settings(void);
extern void enrich_switch_user(EnrichUserSwitch *sw, Oid userid);
extern void enrich_restore_user(EnrichUserSwitch *sw);
extern int	enrich_run_privileged(const char *sql, int nargs, Oid *argtypes,
								  Datum *values, const char *nulls, bool read_only);
extern int	enrich_run_privileged_plan(SPIPlanPtr *plan, const char *sql, int cursor_options,
									   int nargs, Oid *argtypes, Datum *values,
									   const char *nulls, bool read_only);

#endif							/* ENRICH_SECURITY_H */
