/*-------------------------------------------------------------------------
 *
 * plans.h
 *	  SPI helpers the worker's modules share (plans.c): statements prepared
 *	  once and kept, the array arguments they take and the columns of their
 *	  results.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_PLANS_H
#define ENRICH_PLANS_H

#include "executor/spi.h"
#include "storage/block.h"

#include "security.h"

/*
 * IDENTIFIER_CHECK(alias) is the check value of a request's identifier that
 * the API echoes beside its request id (16 bits of a hash of it)
 */
#define IDENTIFIER_CHECK(alias) \
	"(pg_catalog.hashtext(coalesce(" alias ".identifier, ''))" SQL_OP(&) "65535)"


/*
 * The size of a table when the plans reading it were made: its blocks, and
 * its storage (relfilenode), which TRUNCATE, VACUUM FULL and CLUSTER
 * replace, emptying or shrinking it (enrich_relation_outgrew)
 */
typedef struct EnrichPlannedSize
{
	BlockNumber blocks;
	Oid			relfilenode;
} EnrichPlannedSize;

/* the kept plan of a statement built for one table (enrich_plan_slot) */
typedef struct EnrichPlanSlot
{
	Oid			relid;
	int			kind;			/* which statement of the table, the caller's */
	char	   *sql;			/* the text it was prepared from */
	SPIPlanPtr	plan;			/* NULL until prepared */
	EnrichPlannedSize size;		/* the table's size when it was made */
	struct EnrichPlanSlot *next;
} EnrichPlanSlot;

extern void enrich_plans_forget(void);
extern SPIPlanPtr *enrich_plan_slot(EnrichPlanSlot **slots, Oid relid, int kind,
									const char *sql, bool replan_grown);
extern SPIPlanPtr enrich_plan_prepare(SPIPlanPtr *plan, const char *sql, int nargs,
									  Oid *argtypes);
extern uint64 enrich_plan_run(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes,
							  Datum *values, const char *nulls, bool read_only);
extern uint64 enrich_plan_run_privileged(SPIPlanPtr *plan, const char *sql, int nargs,
										 Oid *argtypes, Datum *values, const char *nulls,
										 bool read_only);
extern bool enrich_relation_outgrew(Oid relid, EnrichPlannedSize *size, bool *analyzed);
extern bool enrich_in_subtransaction(void (*step) (void *arg), void *arg,
									 bool (*caught) (int sqlerrcode));
extern Datum enrich_int8_array(const int64 *values, int n);
extern Datum enrich_varlena_array(void **values, int n, Oid element_type);
extern Datum enrich_text_array(char **values, int n);
extern char *enrich_column_text(uint64 row, int col);
extern int64 enrich_column_int64(uint64 row, int col);

/* SQL fragments the worker's statements share */

/*
 * SUBMISSION_IN_DOUBT is true of a request r 'submitting' whose bulk enrich
 * has no batch recorded: sent or being sent, the answer not (yet) recorded.
 * Once the answer is, the batch row carries the submission, and the
 * requests stay 'submitting' until their items come back.
 */
#define SUBMISSION_IN_DOUBT \
	"NOT EXISTS (SELECT 1 FROM enrich.batches b WHERE b.submission" SQL_OP(=) "r.submission)"

/*
 * RECONCILED_HERE is true of a request r 'submitting' that this worker
 * reconciles: one it claimed itself, or, when it reconciles for the workers
 * that stopped, one whose claimer no longer runs.  running is an int4[] of
 * the process ids of the other workers that run, or NULL (then only its
 * own).  A submission that another running worker claimed is that worker's
 * to record or reconcile: it may be on its way to the API.
 */
#define RECONCILED_HERE(running) \
	"(r.claimed_by" SQL_OP(=) "pg_catalog.pg_backend_pid() " \
	"OR NOT coalesce(coalesce(r.claimed_by, 0)" SQL_OP(=) "ANY (" running "), true))"

/*
 * BATCH_HERE is true of a batch row that this worker polls and pages, when
 * running is how many workers run and rank this worker's rank among them:
 * the batches are shared out by a hash of their id, whichever worker sent
 * them, so that each worker has about as many items to write back, and a
 * worker that does not run (it stopped, or found no free background worker
 * slot) leaves no batch unpolled
 */
#define BATCH_HERE(running, rank) \
	"pg_catalog.mod(pg_catalog.hashtext(batch_id)" SQL_OP(&) "2147483647, " running ")" SQL_OP(=) rank

/*
 * RETRY_AT is when a request r is tried again after a retryable failure:
 * a random wait up to min(max_ms, base_ms * 2^(attempts - 1)) ("full
 * jitter"), base_ms and max_ms being the statement's parameters given
 */
#define RETRY_AT(base_ms, max_ms) \
	"pg_catalog.now()" SQL_OP(+) "(pg_catalog.random()" SQL_OP(*) \
	"LEAST(" max_ms "::pg_catalog.float8, " base_ms "::pg_catalog.float8" SQL_OP(*) \
	"pg_catalog.power(2::pg_catalog.float8, GREATEST(r.attempts" SQL_OP(-) "1, 0)::pg_catalog.float8))" \
	SQL_OP(*) MILLISECONDS("1") ")"

/*
 * NOT_FOR_INDEX wraps a condition that the planner must not match to a
 * partial index.  Rows found by id (or by duplicate_of) and then checked
 * for their state would otherwise be found through a bitmap AND with the
 * index of every row in that state, which reads the whole in-flight set
 * for each batch or page.
 */
#define NOT_FOR_INDEX(condition) "CASE WHEN " condition " THEN true ELSE false END"

/* MILLISECONDS(ms) is an interval of ms milliseconds (an int4 or a float8) */
#define MILLISECONDS(ms) \
	"(" ms "::pg_catalog.float8" SQL_OP(*) "'1 millisecond'::pg_catalog.interval)"

/* RETRIED is true of a request r whose item u failed and may be tried again */
#define RETRIED "u.outcome" SQL_OP(=) "'retry' AND r.attempts" SQL_OP(<) "$7"

/*
 * ANSWER_REUSABLE(a, within, failures_within) is true of a request a whose
 * answer a new request of its identifier may copy (reuse.c): the API's own
 * answer (not a copy), a person younger than within, or a not_found younger
 * than failures_within (two interval expressions)
 */
#define ANSWER_REUSABLE(a, within, failures_within) \
	STATE_IN(a ".state", "{done,failed}") " AND " a ".reused_from IS NULL " \
	"AND CASE WHEN " a ".state" SQL_OP(=) "'done' " \
	"    THEN " a ".completed_at" SQL_OP(>) "(pg_catalog.now()" SQL_OP(-) within ") " \
	"    ELSE (" a ".error" SQL_OP(->>) "'code')" SQL_OP(=) "'not_found' " \
	"     AND " a ".completed_at" SQL_OP(>) "(pg_catalog.now()" SQL_OP(-) failures_within ") END"

/*
 * ANSWERED_AT(alias) is when the API gave the answer of a settled request:
 * its completed_at, or for a copy (reused_from), the copied request's
 */
#define ANSWERED_AT(alias) \
	"CASE WHEN " alias ".reused_from IS NULL THEN " alias ".completed_at " \
	"ELSE (SELECT o.completed_at FROM enrich.requests o WHERE o.id" SQL_OP(=) alias ".reused_from) END"

/* STATE_IN(column, states): the column is one of the states given (in braces) */
#define STATE_IN(column, states) \
	column SQL_OP(=) "ANY ('" states "'::pg_catalog.text[])"


#endif							/* ENRICH_PLANS_H */
