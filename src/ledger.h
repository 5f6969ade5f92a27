/*-------------------------------------------------------------------------
 *
 * ledger.h
 *	  What each environment spent and saved per UTC day, and its budgets
 *	  (ledger.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_LEDGER_H
#define ENRICH_LEDGER_H

/* counts of one environment, as the columns of enrich.usage_counts */
typedef struct EnrichUsage
{
	int64		submitted;		/* requests sent (credits) */
	int64		reused;			/* requests settled without a call */
	int64		done;
	int64		failed;
	int64		bulk_enrich_calls;
	int64		status_calls;
	int64		list_calls;
	int64		items_calls;
	int64		rate_limited;	/* calls answered 429 */
	int64		errors;			/* calls that failed otherwise */
} EnrichUsage;

extern void enrich_ledger_add(int environment, const EnrichUsage *usage);
extern void enrich_ledger_count(int environment, const EnrichUsage *usage);
extern void enrich_ledger_flush(bool fold, bool idle);
extern int64 enrich_ledger_budget_left(int environment, bool lock, char **why);

#endif							/* ENRICH_LEDGER_H */
