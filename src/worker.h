/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The background workers (worker.c): their registration.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_WORKER_H
#define ENRICH_WORKER_H

#include "guc.h"

/* registers enrich.workers workers when enrich is preloaded */
extern void enrich_worker_init(void);

#endif							/* ENRICH_WORKER_H */
