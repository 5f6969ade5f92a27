/*-------------------------------------------------------------------------
 *
 * watch.h
 *	  What watch.c, the owner of enrich.watches, lends the other functions
 *	  on watched tables: the checks that the caller owns a table (and that
 *	  it is watched), a table's name as messages write it, and an interval
 *	  argument checked.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_WATCH_H
#define ENRICH_WATCH_H

#include "catalog/pg_class.h"
#include "fmgr.h"

extern Form_pg_class enrich_check_table(Oid relid);
extern char *enrich_relation_name(Oid relid);
extern Oid	enrich_watched_table(FunctionCallInfo fcinfo);
extern Datum enrich_interval_arg(FunctionCallInfo fcinfo, int argno, const char *name, bool *isnull);

#endif							/* ENRICH_WATCH_H */
