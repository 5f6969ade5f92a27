/*-------------------------------------------------------------------------
 *
 * reuse.h
 *	  Settling claimed requests from recent answers, without an API call
 *	  (reuse.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_REUSE_H
#define ENRICH_REUSE_H

#include "queue.h"

extern int	enrich_reuse_claimed(EnrichOutgoing *leads, int nleads, int *reused);
extern uint64 enrich_reuse_prune(void);

#endif							/* ENRICH_REUSE_H */
