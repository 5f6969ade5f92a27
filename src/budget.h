/*-------------------------------------------------------------------------
 *
 * budget.h
 *	  The rate budget of each API key, shared by the workers of every
 *	  database that uses the key (budget.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_BUDGET_H
#define ENRICH_BUDGET_H

#include "datatype/timestamp.h"

#include "guc.h"

extern void enrich_budget_init(void);
extern bool enrich_budget_take(uint64 key_hash, int tier, int rate, TimestampTz now,
							   long *wait_ms);
extern bool enrich_budget_look(uint64 key_hash, int tier, int rate, TimestampTz now,
							   long interval_ms, bool starved);
extern void enrich_budget_give_back(uint64 key_hash, int tier, int rate);
extern void enrich_budget_sent(void);
extern void enrich_budget_block(uint64 key_hash, int tier, TimestampTz until);

#endif							/* ENRICH_BUDGET_H */
