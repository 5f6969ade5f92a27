/*-------------------------------------------------------------------------
 *
 * functions.h
 *	  Helpers that the SQL-callable functions (functions.c, items.c, keys.c)
 *	  share: argument handling, one API call, and the rows they return.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_FUNCTIONS_H
#define ENRICH_FUNCTIONS_H

#include "fmgr.h"

#include "api.h"
#include "http.h"

/* columns of the batch status row and of the item row */
#define ENRICH_STATUS_COLUMNS 8
#define ENRICH_ITEM_COLUMNS 6

extern const char *enrich_function_environment(FunctionCallInfo fcinfo, int argno);
extern char *enrich_required_text(FunctionCallInfo fcinfo, int argno, const char *name);
extern void enrich_call_api(EnrichHttpCall *call, const char *method, char *url,
							const char *environment, const char *body);
extern void enrich_status_values(const EnrichBatchStatus *s, Datum *values, bool *nulls);
extern void enrich_item_values(const EnrichItem *item, Datum *values, bool *nulls);


#endif							/* ENRICH_FUNCTIONS_H */
