/*-------------------------------------------------------------------------
 *
 * intake.h
 *	  enrich.intake and the reading of watched rows (intake.c), and the
 *	  watched table as they need it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_INTAKE_H
#define ENRICH_INTAKE_H

#include "commands/trigger.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "lib/stringinfo.h"

#include "guc.h"

/* a watched table, as enrich.watches records it */
typedef struct EnrichWatch
{
	Oid			relid;
	char	   *result_column;
	char	   *identifier_columns[ENRICH_NIDENTIFIERS];	/* NULL when unused */
	char	   *environment;	/* NULL: enrich.environment */
	int			nkeys;
	char	  **key_columns;
	Oid		   *key_types;		/* the columns' types now */
} EnrichWatch;

/* one column of a watched table read for the intake */
typedef struct IntakeColumn
{
	AttrNumber	attnum;			/* InvalidAttrNumber: the watch has none */
	bool		trim;			/* bpchar: trailing blanks go, as in ::text */
	FmgrInfo	output;			/* key columns: the type's output function */
} IntakeColumn;

/*
 * How the rows of a watched table (or of one of its partitions, whose
 * columns may have other numbers) are read in C: identifiers as text, the
 * primary key as a JSON array of text, each value through its type's
 * output function (under the pinned settings), so that nothing a user
 * defined runs
 */
typedef struct SourceReader
{
	IntakeColumn identifiers[ENRICH_NIDENTIFIERS];
	IntakeColumn *keys;
	int			nkeys;
	AttrNumber	result;			/* the result column */
	StringInfoData key;			/* the key of the row read last */
} SourceReader;

extern Oid	enrich_column_type(Oid relid, const char *column);
extern void enrich_watch_arguments(const EnrichWatch *w, Datum *values, char *nulls);
extern void enrich_source_reader_init(SourceReader *r, const EnrichWatch *w, Oid relid);
extern bool enrich_source_reader_read(SourceReader *r, TupleTableSlot *slot, Datum *ids, bool *id_null);
extern void enrich_intake_from_inserted(TriggerData *trigdata, const EnrichWatch *w);
extern uint64 enrich_intake_expand(Datum intake_ids, int64 submission);
extern uint64 enrich_intake_flush(const char *environment);

#endif							/* ENRICH_INTAKE_H */
