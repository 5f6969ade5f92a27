/*-------------------------------------------------------------------------
 *
 * utility.h
 *	  The ProcessUtility hook (utility.c): its installation.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_UTILITY_H
#define ENRICH_UTILITY_H

extern void enrich_utility_init(void);

#endif							/* ENRICH_UTILITY_H */
