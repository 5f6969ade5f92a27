/*-------------------------------------------------------------------------
 *
 * watch.h
 *	  What watch.c, the owner of enrich.watches, lends the other functions
 *	  on watched tables: the check that the caller owns a table, and a
 *	  table's name as messages write it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_WATCH_H
#define ENRICH_WATCH_H

#include "catalog/pg_class.h"

extern Form_pg_class enrich_check_table(Oid relid);
extern char *enrich_relation_name(Oid relid);

#endif							/* ENRICH_WATCH_H */
