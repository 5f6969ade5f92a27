/*-------------------------------------------------------------------------
 *
 * launcher.h
 *	  The launcher (launcher.c): its registration.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_LAUNCHER_H
#define ENRICH_LAUNCHER_H

/* registers the launcher when enrich is preloaded */
extern void enrich_launcher_init(void);

#endif							/* ENRICH_LAUNCHER_H */
