/*-------------------------------------------------------------------------
 *
 * request.h
 *	  What a request of enrich.requests is (request.c): the names of its
 *	  identifier columns.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_REQUEST_H
#define ENRICH_REQUEST_H

#include "guc.h"

/* the statement that copies what enrich's trigger queued */
extern void enrich_allow_source_rows(bool allow);

/* the identifier columns of a request, in the order the API prefers them */
extern const char *const enrich_identifier_columns[ENRICH_NIDENTIFIERS];

#endif							/* ENRICH_REQUEST_H */
