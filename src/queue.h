/*-------------------------------------------------------------------------
 *
 * queue.h
 *	  The worker's view of enrich's tables (queue.c): claiming requests,
 *	  recording batches, applying pages of items, retries, recovery.
 *	  Every function runs inside the caller's transaction, SPI connected.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_QUEUE_H
#define ENRICH_QUEUE_H

#include "api.h"
#include "storage/lock.h"

/* a batch the worker submitted and has not finished with */
typedef struct EnrichOpenBatch
{
	char	   *batch_id;
	int			environment;
	char	   *status;			/* last status seen */
	char	   *cursor;			/* items cursor saved after the last page */
	int			processed_count;	/* processedCount last seen */
	int			items_received;
	int			request_count;
	int			poll_interval_ms;
	double		age_ms;			/* since it was submitted */
	bool		due;			/* its poll is due (false: read early) */
	int			env_ready_pages;	/* pages known ready, in its environment's
									 * batches of this read */
} EnrichOpenBatch;

/* the requests a page settled, duplicates included */
typedef struct EnrichSettled
{
	int			done;
	int			failed;
} EnrichSettled;

/* queue.c: what the statements of claim.c, reconcile.c and batches.c share */
#define ENRICH_LOCK_CLAIM 1		/* the lock of an environment's claims */
#define ENRICH_LOCK_RECONCILE 2	/* the lock of the reconciling worker */
#define ENRICH_LOCK_BUDGET 3		/* the lock of an environment's budget */

extern void enrich_queue_batch_share(Datum *running, Datum *rank);
extern Datum enrich_queue_running_workers(bool for_stopped, char *null);
extern int64 *enrich_queue_lead_ids(const EnrichOutgoing *leads, int n);
extern uint64 enrich_queue_settle_followers(Datum lead_array);
extern uint64 enrich_queue_settle_returned_leads(uint64 n);
extern char *enrich_queue_error_json(const char *code, const char *message);
extern void enrich_queue_lock_tag(LOCKTAG *tag, uint32 what, int environment);
extern char *enrich_queue_catalog_version(void);
extern char *enrich_queue_installation(bool *legacy);
extern void enrich_queue_recover(void);
extern void enrich_queue_refresh_plans(void);
/* batches.c: the batch enrich_submit sent, recorded in the caller's transaction */
extern void enrich_queue_record_batch(const char *batch_id, const char *environment,
									  int nrequests);
extern int	enrich_queue_claim(int environment, int limit, EnrichOutgoing **leads, int *reused);
extern void enrich_queue_submitted(const char *batch_id, int environment,
								   const EnrichOutgoing *leads, int n, int first_poll_ms);
extern void enrich_queue_requeue(const EnrichOutgoing *leads, int n, bool count_attempt,
								 int delay_ms, const char *code, const char *message);
extern void enrich_queue_fail(const EnrichOutgoing *leads, int n,
							  const char *code, const char *message);
extern int	enrich_queue_due_batches(int limit, bool early, EnrichOpenBatch **batches);
extern int	enrich_queue_listed_batches(Datum ids, int environment, EnrichOpenBatch **batches,
										int **positions);
extern void enrich_queue_batch_polled(const char *batch_id, const char *status,
									  int processed_count, int next_poll_ms, int took_ms);
extern double enrich_queue_typical_completion_ms(int environment);
extern void enrich_queue_batch_error(const char *batch_id, int next_poll_ms,
									 const char *message, bool forget_cursor);
extern int	enrich_queue_apply_page(const char *batch_id, const EnrichItemsPage *page,
									bool closes_batch, int next_poll_ms, EnrichSettled *outcomes);
extern void enrich_queue_close_batch(const char *batch_id, const char *status,
									 const char *code, const char *message);
extern long enrich_queue_next_due_ms(const bool *environment_active);
extern bool enrich_queue_orphans(int environment, bool for_stopped, char **claimed_date,
								 double *claimed_age_ms);
extern bool *enrich_queue_known_batches(char **batch_ids, int n);
extern bool enrich_queue_reconcile_lock(bool take);
extern int	enrich_queue_adopt(const char *batch_id, int environment, bool for_stopped, const int64 *ids,
							   const int64 *checks, int nids, int total_count, char **why);
extern void enrich_queue_batch_note(const char *batch_id, const char *message);
extern void enrich_queue_note_submitting(const EnrichOutgoing *leads, int n, const char *message);
extern int	enrich_queue_requeue_orphans(int environment, bool for_stopped, int grace_ms);

#endif							/* ENRICH_QUEUE_H */
