/*-------------------------------------------------------------------------
 *
 * refresh.h
 *	  Keeping the persons of watched rows fresh (refresh.c): the first
 *	  worker's round.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_REFRESH_H
#define ENRICH_REFRESH_H

extern void enrich_refresh_round(void);

#endif							/* ENRICH_REFRESH_H */
