/*-------------------------------------------------------------------------
 *
 * writeback.h
 *	  Writing persons into watched tables as their owners (writeback.c).
 *	  Every function runs inside the worker's transaction, SPI connected.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_WRITEBACK_H
#define ENRICH_WRITEBACK_H

#include "nodes/pg_list.h"

extern void enrich_write_back_collect(List **groups, uint64 n);
extern void enrich_write_back(List *groups, bool deferred);
extern int	enrich_write_back_retry(int limit);

#endif							/* ENRICH_WRITEBACK_H */
