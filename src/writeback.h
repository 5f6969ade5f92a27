/*-------------------------------------------------------------------------
 *
 * writeback.h
 *	  The statements on watched tables, run as their owners (writeback.c):
 *	  writing persons, reading the identifiers of rows to refresh.  Every
 *	  function runs inside a transaction, SPI connected.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_WRITEBACK_H
#define ENRICH_WRITEBACK_H

#include "nodes/pg_list.h"

extern void enrich_write_back_collect(List **groups, uint64 n);
extern void enrich_write_back(List *groups, bool deferred);
extern int	enrich_write_back_retry(int limit);
extern bool enrich_enriched_rows_kept(void);
extern uint64 enrich_enriched_rows_sync(Oid relid);
extern bool enrich_watched_identifiers(Oid relid, char **keys, int n, bool *found,
									   char **identifiers, char **problem);

#endif							/* ENRICH_WRITEBACK_H */
