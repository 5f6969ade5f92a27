/*-------------------------------------------------------------------------
 *
 * columns.c
 *	  Person fields written into columns of a watched table: a watch's
 *	  columns mapping ({"column": "jsonpath", ...}) read against the table
 *	  as it is now, and, for a page of persons, the value of each mapped
 *	  column, cast to the column's type.
 *
 * A path that finds nothing gives NULL.  A value is cast by its type's
 * input function from its text (a JSON string's own text; a number or a
 * boolean as JSON writes it; an object or array as JSON), a jsonb column
 * takes it as it is.  A value that does not cast gives NULL and is counted:
 * it never fails the page, whether the type says so softly or raises an
 * error (a type of an extension, a domain whose CHECK raises).  A page's
 * values of a column are cast in one subtransaction, and one by one, each
 * in its own, only when an error escaped it.  The values are computed in
 * the write-back's step, as the table's owner, so that the input function
 * of a type the owner made runs with the owner's privileges only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/jsonpath.h"
#include "utils/lsyscache.h"

#include "columns.h"
#include "compat.h"
#include "plans.h"

/*
 * enrich_columns_read reads a watch's columns mapping (its JSON text, NULL
 * for none) and column_mode into *map, keeping the columns the table still
 * has and can be written (not generated, of a type with an array type):
 * one that went since the watch was made is left out
 */
void
enrich_columns_read(Oid relid, const char *columns, const char *mode, EnrichColumnMap *map)
{
	Jsonb	   *jb;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken token;
	AttrNumber	attnum = InvalidAttrNumber;
	int			cap;

	memset(map, 0, sizeof(*map));
	map->overwrite = mode != NULL && strcmp(mode, "overwrite") == 0;
	if (columns == NULL)
		return;
	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(columns)));
	cap = Max(JsonContainerSize(&jb->root), 1);
	map->names = palloc(sizeof(char *) * cap);
	map->types = palloc(sizeof(Oid) * cap);
	map->typmods = palloc(sizeof(int32) * cap);
	map->array_types = palloc(sizeof(Oid) * cap);
	map->paths = palloc(sizeof(Datum) * cap);
	it = JsonbIteratorInit(&jb->root);
	while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (token == WJB_KEY)
		{
			char	   *name = pnstrdup(v.val.string.val, v.val.string.len);

			attnum = get_attnum(relid, name);
			if (attnum <= 0 || get_attgenerated(relid, attnum) != '\0')
				attnum = InvalidAttrNumber;
			else
			{
				Oid			collation;

				map->names[map->n] = pstrdup(quote_identifier(name));
				get_atttypetypmodcoll(relid, attnum, &map->types[map->n], &map->typmods[map->n],
									  &collation);
				map->array_types[map->n] = get_array_type(map->types[map->n]);
			}
		}
		else if (token == WJB_VALUE && attnum != InvalidAttrNumber &&
				 v.type == jbvString && OidIsValid(map->array_types[map->n]))
		{
			map->paths[map->n] = DirectFunctionCall1(jsonpath_in,
													 CStringGetDatum(pnstrdup(v.val.string.val,
																			  v.val.string.len)));
			map->n++;
		}
	}
}

/*
 * path_first returns the first item a jsonpath finds in a person, or NULL
 * (silently: a structural error finds nothing)
 */
static Jsonb *
path_first(Datum person, Datum path, Datum vars)
{
	LOCAL_FCINFO(fcinfo, 4);
	Datum		result;

	InitFunctionCallInfoData(*fcinfo, NULL, 4, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = person;
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = path;
	fcinfo->args[1].isnull = false;
	fcinfo->args[2].value = vars;
	fcinfo->args[2].isnull = false;
	fcinfo->args[3].value = BoolGetDatum(true);
	fcinfo->args[3].isnull = false;
	result = jsonb_path_query_first(fcinfo);
	return fcinfo->isnull ? NULL : DatumGetJsonbP(result);
}

/* json_null says whether a JSON value is null */
static bool
json_null(Jsonb *jb)
{
	JsonbValue	v;

	return JB_ROOT_IS_SCALAR(jb) && JsonbExtractScalar(&jb->root, &v) && v.type == jbvNull;
}

/*
 * value_text returns the text a JSON value is cast from: a string's own
 * text, a number or a boolean as JSON writes it, NULL for null, an object
 * or an array as JSON
 */
static char *
value_text(Jsonb *jb)
{
	JsonbValue	v;

	if (JB_ROOT_IS_SCALAR(jb) && JsonbExtractScalar(&jb->root, &v))
	{
		switch (v.type)
		{
			case jbvNull:
				return NULL;
			case jbvString:
				return pnstrdup(v.val.string.val, v.val.string.len);
			case jbvNumeric:
				return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v.val.numeric)));
			case jbvBool:
				return pstrdup(v.val.boolean ? "true" : "false");
			default:
				break;
		}
	}
	return JsonbToCString(NULL, &jb->root, VARSIZE(jb));
}

/* the values of one column of a page, being cast */
typedef struct ColumnCast
{
	FmgrInfo	flinfo;
	Oid			type;
	Oid			typioparam;
	int32		typmod;
	char	  **texts;			/* NULL: no value */
	Datum	   *values;
	bool	   *nulls;
	bool	   *failed;			/* did not cast */
	int			from;			/* the range being cast */
	int			to;
} ColumnCast;

/* cast_range casts the texts of cast->from .. cast->to - 1 */
static void
cast_range(ColumnCast *cast)
{
	for (int i = cast->from; i < cast->to; i++)
	{
		cast->failed[i] = false;
		cast->nulls[i] = (cast->texts[i] == NULL);
		if (cast->nulls[i])
			continue;
		if (!enrich_input_soft(&cast->flinfo, cast->texts[i], cast->typioparam, cast->typmod,
									&cast->values[i]))
			cast->failed[i] = cast->nulls[i] = true;
	}
}

/*
 * cast_failed says whether an error while casting is the value's: any
 * error but a cancel (enrich_in_subtransaction lets that go on up)
 */
static bool
cast_failed(int sqlerrcode)
{
	return true;
}

/*
 * cast_range_step is cast_range as a step of enrich_in_subtransaction
 */
static void
cast_range_step(void *arg)
{
	cast_range((ColumnCast *) arg);
}

/*
 * column_values fills values and nulls with the value of mapped column c
 * for each of n persons; returns how many did not cast
 */
static int64
column_values(const EnrichColumnMap *map, int c, const Datum *persons, int n, Datum vars,
			  Datum *values, bool *nulls)
{
	ColumnCast	cast = {.type = map->types[c], .typmod = map->typmods[c], .values = values,
	.nulls = nulls, .from = 0, .to = n};
	Oid			input;
	int64		failures = 0;

	cast.texts = palloc0(sizeof(char *) * Max(n, 1));
	cast.failed = palloc0(sizeof(bool) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		Jsonb	   *found = path_first(persons[i], map->paths[c], vars);

		if (cast.type == JSONBOID)
		{
			/* taken as it is: no text made of it */
			nulls[i] = found == NULL || json_null(found);
			values[i] = nulls[i] ? (Datum) 0 : JsonbPGetDatum(found);
			continue;
		}
		cast.texts[i] = found == NULL ? NULL : value_text(found);
		nulls[i] = (cast.texts[i] == NULL);
		if (!nulls[i] && cast.type == TEXTOID)
			values[i] = CStringGetTextDatum(cast.texts[i]);
	}
	if (cast.type == JSONBOID || cast.type == TEXTOID)
		return 0;				/* taken as they are */
	getTypeInputInfo(cast.type, &input, &cast.typioparam);
	fmgr_info(input, &cast.flinfo);
	if (!enrich_in_subtransaction(cast_range_step, &cast, cast_failed))
	{
		/* an error escaped: each value alone, so that only its own is lost */
		for (cast.from = 0; cast.from < n; cast.from++)
		{
			cast.to = cast.from + 1;
			if (!enrich_in_subtransaction(cast_range_step, &cast, cast_failed))
				cast.failed[cast.from] = nulls[cast.from] = true;
		}
	}
	for (int i = 0; i < n; i++)
		failures += cast.failed[i] ? 1 : 0;
	return failures;
}

/*
 * enrich_columns_values computes, for n persons, each mapped column's
 * values as an array of its type (arrays[c]); it returns how many values
 * did not cast (they are NULL).  Run as the table's owner.
 */
int64
enrich_columns_values(const EnrichColumnMap *map, const Datum *persons, int n, Datum *arrays)
{
	Datum		vars = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
	Datum	   *values = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(n, 1));
	int64		failures = 0;

	for (int c = 0; c < map->n; c++)
	{
		int			dims[1] = {n};
		int			lbs[1] = {1};
		int16		typlen;
		bool		typbyval;
		char		typalign;

		failures += column_values(map, c, persons, n, vars, values, nulls);
		get_typlenbyvalalign(map->types[c], &typlen, &typbyval, &typalign);
		arrays[c] = PointerGetDatum(construct_md_array(values, nulls, 1, dims, lbs, map->types[c],
													   typlen, typbyval, typalign));
	}
	return failures;
}
