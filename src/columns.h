/*-------------------------------------------------------------------------
 *
 * columns.h
 *	  Person fields written into columns of a watched table (columns.c):
 *	  a watch's mapping as the catalog has it now, and the values of a page.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_COLUMNS_H
#define ENRICH_COLUMNS_H

/* the columns a watch maps, each with its jsonpath */
typedef struct EnrichColumnMap
{
	int			n;
	char	  **names;			/* quoted */
	Oid		   *types;
	int32	   *typmods;
	Oid		   *array_types;
	Datum	   *paths;			/* jsonpath */
	bool		overwrite;		/* else fill: only where the column is NULL */
} EnrichColumnMap;

extern void enrich_columns_read(Oid relid, const char *columns, const char *mode,
								EnrichColumnMap *map);
extern int64 enrich_columns_values(const EnrichColumnMap *map, const Datum *persons, int n,
								   Datum *arrays);

#endif							/* ENRICH_COLUMNS_H */
