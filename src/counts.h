/*-------------------------------------------------------------------------
 *
 * counts.h
 *	  The counters enrich.progress reads (counts.c): what the worker does
 *	  with them.  Both run in the worker's transaction, SPI connected.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_COUNTS_H
#define ENRICH_COUNTS_H

extern void enrich_counts_fold(void);
extern void enrich_counts_heal(void);

#endif							/* ENRICH_COUNTS_H */
