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


/* the kept plan of a statement built for one table (enrich_plan_slot) */
typedef struct EnrichPlanSlot
{
	Oid			relid;
	int			kind;			/* which statement of the table, the caller's */
	char	   *sql;			/* the text it was prepared from */
	SPIPlanPtr	plan;			/* NULL until prepared */
	BlockNumber blocks;			/* the table's size when it was made */
	struct EnrichPlanSlot *next;
} EnrichPlanSlot;

extern void enrich_plans_forget(void);
extern SPIPlanPtr *enrich_plan_slot(EnrichPlanSlot **slots, Oid relid, int kind,
									const char *sql, bool replan_grown);
extern SPIPlanPtr enrich_plan_prepare(SPIPlanPtr *plan, const char *sql, int nargs,
									  Oid *argtypes);
extern uint64 enrich_plan_run(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes,
							  Datum *values, const char *nulls, bool read_only);
extern bool enrich_relation_outgrew(Oid relid, BlockNumber *blocks, bool *analyzed);
extern Datum enrich_int8_array(const int64 *values, int n);
extern Datum enrich_varlena_array(void **values, int n, Oid element_type);
extern Datum enrich_text_array(char **values, int n);
extern char *enrich_column_text(uint64 row, int col);
extern int64 enrich_column_int64(uint64 row, int col);

#endif							/* ENRICH_PLANS_H */
