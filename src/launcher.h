/*-------------------------------------------------------------------------
 *
 * launcher.h
 *	  The launcher (launcher.c): its registration, and what it tells each
 *	  worker it starts.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_LAUNCHER_H
#define ENRICH_LAUNCHER_H

/* what a worker finds in bgw_extra: its database and the entry of it */
typedef struct EnrichWorkerExtra
{
	Oid			database;
	int			index;			/* its entry in shared memory (shared.h) */
	NameData	name;
} EnrichWorkerExtra;

/* registers the launcher when enrich is preloaded */
extern void enrich_launcher_init(void);

#endif							/* ENRICH_LAUNCHER_H */
