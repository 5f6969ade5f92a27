/*-------------------------------------------------------------------------
 *
 * trigger.c
 *	  The way rows get into the queue: the triggers of enrich.requests (the
 *	  validation and normalized identifier of a request, the wakeup of the
 *	  worker), the SQL helpers enrich.normalize_identifier and
 *	  enrich.request_problem, the trigger of watched contact tables
 *	  (enrich.enqueue_from_source), the backfill of a watched table
 *	  (enrich.enqueue_existing) and the records of watches
 *	  (enrich.register_watch, enrich.unregister_watch).
 *
 * A request is validated by one function, enrich_request_check, and its
 * identifier computed by one function, enrich_request_identifier: the
 * trigger of enrich.requests and the SQL helpers share them, so a row
 * queued from a watched table is judged exactly as a row inserted by hand.
 *
 * The users who insert contacts have no privilege on enrich's tables, so
 * the statements on them run as the bootstrap superuser (security.c:
 * enrich_run_privileged, or enrich_run_privileged_plan for the statements
 * the trigger prepares once per backend and keeps), under the pinned
 * settings.  Those statements evaluate nothing that a table owner could
 * have defined, and read no user table by name: the trigger reads its
 * transition tables, a backfill reads the table in C by OID; identifier
 * columns are text, varchar or bpchar, primary key values of a
 * user-defined type are turned into text by the type's output function
 * (format's %s), never by a cast a user may have created, and rows are
 * matched on that text, never with the type's operators.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_inherits.h"
#include "access/transam.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "storage/lmgr.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/queryenvironment.h"
#include "utils/relcache.h"
#include "utils/syscache.h"
#include "utils/tuplestore.h"

#include "api.h"
#include "enrich.h"
#include "plans.h"
#include "queue.h"
#include "security.h"

PG_FUNCTION_INFO_V1(enrich_requests_check);
PG_FUNCTION_INFO_V1(enrich_requests_wake);
PG_FUNCTION_INFO_V1(enrich_normalize_identifier);
PG_FUNCTION_INFO_V1(enrich_request_problem);
PG_FUNCTION_INFO_V1(enrich_enqueue_from_source);
PG_FUNCTION_INFO_V1(enrich_enqueue_existing);
PG_FUNCTION_INFO_V1(enrich_flush_intake);
PG_FUNCTION_INFO_V1(enrich_register_watch);
PG_FUNCTION_INFO_V1(enrich_unregister_watch);

/*
 * The worker adds its own key to the metadata of every request it sends
 * (the request id, by which results are matched), and the API takes at
 * most ENRICH_API_MAX_METADATA bytes of metadata.  So a request keeps this
 * many bytes free: a comma, a quoted key of up to 20 bytes, a colon and a
 * 64-bit integer of up to 20 characters make at most 44.
 */
#define ENRICH_METADATA_RESERVE 48
#define ENRICH_MAX_METADATA (ENRICH_API_MAX_METADATA - ENRICH_METADATA_RESERVE)

/* the longest part of a refused value quoted in a message, in bytes */
#define ENRICH_QUOTE_MAX 200

/* the identifier columns of a request, in the order the API prefers them */
#define ENRICH_NIDENTIFIERS 3
static const char *const identifier_columns[ENRICH_NIDENTIFIERS] =
{"linkedin_url", "person_id", "pdl_id"};
static const char *const identifier_prefixes[ENRICH_NIDENTIFIERS] =
{NULL, "personId:", "pdlId:"};

/* the fields of a request that are validated; NULL when SQL NULL */
typedef struct EnrichRequestFields
{
	text	   *identifiers[ENRICH_NIDENTIFIERS];	/* linkedin_url, person_id,
													 * pdl_id */
	Jsonb	   *metadata;
} EnrichRequestFields;

/* what is wrong with a request */
typedef struct EnrichRowProblem
{
	const char *column;			/* the column at fault; NULL when no
								 * identifier is given */
	char	   *reason;			/* lower case, no period */
	const char *hint;			/* a sentence, or NULL */
} EnrichRowProblem;

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

/*
 * where the rows that enqueue_sql queues come from (the new rows of an
 * INSERT or COPY go to enrich.intake instead: intake_from_inserted)
 */
typedef enum EnrichEnqueueSource
{
	ENQUEUE_UPDATED,			/* the rows of an UPDATE whose identifiers
								 * changed */
	ENQUEUE_EXISTING			/* the rows of the table without a result */
} EnrichEnqueueSource;


/*
 * Requests: validation and normalized identifier
 */

/*
 * quote_value returns a value for a message, in double quotes with JSON
 * escapes (so a reason stays on one line), cut after ENRICH_QUOTE_MAX bytes
 */
static char *
quote_value(const char *value)
{
	StringInfoData buf;
	int			len = strlen(value);
	int			cut = pg_mbcliplen(value, len, ENRICH_QUOTE_MAX);

	initStringInfo(&buf);
	escape_json(&buf, cut < len ? pnstrdup(value, cut) : value);
	if (cut < len)
	{
		buf.data[--buf.len] = '\0';
		appendStringInfoString(&buf, "...\"");
	}
	return buf.data;
}

/* refuse fills in a problem and returns false */
static bool
refuse(EnrichRowProblem *p, const char *column, char *reason, const char *hint)
{
	p->column = column;
	p->reason = reason;
	p->hint = hint;
	return false;
}

/*
 * json_string_length returns the length of a JSON string as json-c writes
 * it (api.c and the API measure metadata so): quotes included, '"', '\\',
 * '/' and \b \f \n \r \t escaped in two bytes, other control characters in
 * six, every other byte kept.
 */
static size_t
json_string_length(const char *s, int len)
{
	size_t		n = 2;

	for (int i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == '"' || c == '\\' || c == '/' || c == '\b' || c == '\f' ||
			c == '\n' || c == '\r' || c == '\t')
			n += 2;
		else if (c < 0x20)
			n += 6;
		else
			n += 1;
	}
	return n;
}

/*
 * jsonb_scalar_length returns the length of a scalar in compact JSON.  A
 * number is written as numeric_out writes it; json-c keeps that text,
 * except that it clamps an integer beyond 64 bits to 20 digits, so for
 * such numbers this is an overestimate.
 */
static size_t
jsonb_scalar_length(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return 4;
		case jbvBool:
			return v->val.boolean ? 4 : 5;
		case jbvString:
			return json_string_length(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return strlen(DatumGetCString(DirectFunctionCall1(numeric_out,
															  NumericGetDatum(v->val.numeric))));
		default:
			elog(ERROR, "enrich: unexpected jsonb value type %d", (int) v->type);
	}
	return 0;					/* keep the compiler quiet */
}

/* a container being walked by metadata_length */
typedef struct JsonbLevel
{
	bool		is_array;
	int64		members;
} JsonbLevel;

/*
 * metadata_length returns the length of a jsonb value serialized without
 * whitespace, as the worker sends it (see json_string_length)
 */
static size_t
metadata_length(Jsonb *jb)
{
	JsonbIterator *it = JsonbIteratorInit(&jb->root);
	JsonbIteratorToken token;
	JsonbValue	v;
	JsonbLevel *levels = palloc(sizeof(JsonbLevel) * 8);
	int			depth = 0;
	int			capacity = 8;
	size_t		len = 0;

	while ((token = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		bool		member = false;

		switch (token)
		{
			case WJB_BEGIN_ARRAY:
			case WJB_BEGIN_OBJECT:
				/* a container is a member of an array it is in */
				if (depth > 0 && levels[depth - 1].is_array)
				{
					if (levels[depth - 1].members++ > 0)
						len++;	/* comma */
				}
				if (depth == capacity)
				{
					capacity *= 2;
					levels = repalloc(levels, sizeof(JsonbLevel) * capacity);
				}
				levels[depth].is_array = (token == WJB_BEGIN_ARRAY);
				levels[depth].members = 0;
				depth++;
				len++;			/* [ or { */
				break;
			case WJB_END_ARRAY:
			case WJB_END_OBJECT:
				depth--;
				len++;			/* ] or } */
				break;
			case WJB_KEY:
				member = true;
				len += json_string_length(v.val.string.val, v.val.string.len) + 1;
				break;
			case WJB_ELEM:
				member = true;
				len += jsonb_scalar_length(&v);
				break;
			case WJB_VALUE:
				len += jsonb_scalar_length(&v);
				break;
			default:
				break;
		}
		if (member && levels[depth - 1].members++ > 0)
			len++;				/* comma */
	}
	pfree(levels);
	return len;
}

/*
 * enrich_request_check validates the identifiers and metadata of a request
 * as the API will: at least one identifier, each a non-empty string of at
 * most ENRICH_API_MAX_IDENTIFIER bytes, linkedin_url a LinkedIn profile
 * URL, metadata a JSON object that leaves room for the worker's request id.
 * It returns true when the request is valid, else false and the problem.
 */
static bool
enrich_request_check(const EnrichRequestFields *r, EnrichRowProblem *p)
{
	bool		has_identifier = false;

	for (int i = 0; i < ENRICH_NIDENTIFIERS; i++)
	{
		text	   *value = r->identifiers[i];
		int			len;
		char	   *s;

		if (value == NULL)
			continue;
		has_identifier = true;
		len = VARSIZE_ANY_EXHDR(value);
		if (len == 0)
			return refuse(p, identifier_columns[i], pstrdup("the value is empty"), NULL);
		if (len > ENRICH_API_MAX_IDENTIFIER)
			return refuse(p, identifier_columns[i],
						  psprintf("the value is %d bytes long, more than %d",
								   len, ENRICH_API_MAX_IDENTIFIER),
						  NULL);
		if (i > 0)
			continue;
		s = text_to_cstring(value);
		if (enrich_api_normalize_linkedin_url(s) == NULL)
			return refuse(p, identifier_columns[i],
						  psprintf("%s is not a LinkedIn profile URL", quote_value(s)),
						  "A profile URL looks like https://www.linkedin.com/in/<name>; Sales Navigator and Recruiter URLs are accepted too.");
	}
	if (!has_identifier)
		return refuse(p, NULL,
					  pstrdup("an enrichment request needs linkedin_url, person_id or pdl_id"),
					  NULL);

	if (r->metadata != NULL)
	{
		size_t		len;

		if (!JB_ROOT_IS_OBJECT(r->metadata))
			return refuse(p, "metadata",
						  psprintf("the metadata is a JSON %s, not an object",
								   text_to_cstring(DatumGetTextPP(DirectFunctionCall1(jsonb_typeof,
																					  JsonbPGetDatum(r->metadata))))),
						  "Use a JSON object such as {\"contact_id\": 42}.");
		len = metadata_length(r->metadata);
		if (len > ENRICH_MAX_METADATA)
			return refuse(p, "metadata",
						  psprintf("the metadata is %zu bytes serialized, more than %d",
								   len, ENRICH_MAX_METADATA),
						  psprintf("The API takes %d bytes of metadata and enrich keeps %d of them for its request id.",
								   ENRICH_API_MAX_METADATA, ENRICH_METADATA_RESERVE));
	}
	return true;
}

/*
 * enrich_request_identifier returns the normalized identifier of a request,
 * as the API (and the mock) compute it: the normalized LinkedIn URL when
 * linkedin_url is given, else "personId:<value>", else "pdlId:<value>".  It
 * returns NULL when no identifier is given or when the one that counts is
 * not valid.
 */
static char *
enrich_request_identifier(const EnrichRequestFields *r)
{
	for (int i = 0; i < ENRICH_NIDENTIFIERS; i++)
	{
		text	   *value = r->identifiers[i];
		int			len;

		if (value == NULL)
			continue;
		len = VARSIZE_ANY_EXHDR(value);
		if (len == 0 || len > ENRICH_API_MAX_IDENTIFIER)
			return NULL;
		if (i == 0)
			return enrich_api_normalize_linkedin_url(text_to_cstring(value));
		return psprintf("%s%s", identifier_prefixes[i], text_to_cstring(value));
	}
	return NULL;
}

/* fields_from_args reads (linkedin_url, person_id, pdl_id[, metadata]) */
static void
fields_from_args(FunctionCallInfo fcinfo, EnrichRequestFields *r)
{
	memset(r, 0, sizeof(*r));
	for (int i = 0; i < ENRICH_NIDENTIFIERS; i++)
		if (!PG_ARGISNULL(i))
			r->identifiers[i] = PG_GETARG_TEXT_PP(i);
	if (PG_NARGS() > ENRICH_NIDENTIFIERS && !PG_ARGISNULL(ENRICH_NIDENTIFIERS))
		r->metadata = PG_GETARG_JSONB_P(ENRICH_NIDENTIFIERS);
}

/* the columns of enrich.requests that requests_check reads or sets */
typedef enum RequestColumn
{
	RC_LINKEDIN_URL,			/* the identifiers first, in the order of */
	RC_PERSON_ID,				/* identifier_columns */
	RC_PDL_ID,
	RC_METADATA,
	RC_ENVIRONMENT,
	RC_STATE,
	RC_IDENTIFIER,
	RC_SOURCE_RELID,
	RC_SOURCE_KEY,
	RC_COUNT
} RequestColumn;

static const char *const request_column_names[RC_COUNT] =
{
	"linkedin_url", "person_id", "pdl_id", "metadata", "environment", "state", "identifier",
	"source_relid", "source_key"
};

/* the numbers of those columns, found once per process */
static Oid	request_columns_relid = InvalidOid;

/*
 * True while this backend's enqueue statement runs: only then may a request
 * row name a source row, so no role can make the worker write into a table
 * by inserting a request that points at it
 */
static bool enqueue_active = false;

/*
 * enrich_allow_source_rows lets the worker's statement that turns rows of
 * enrich.intake into requests name their source rows: enrich's own trigger
 * wrote them, and no role but enrich's owner can write enrich.intake
 */
void
enrich_allow_source_rows(bool allow)
{
	enqueue_active = allow;
}
static int	request_columns[RC_COUNT];

/*
 * request_column_numbers returns the numbers of the columns of
 * enrich.requests that requests_check uses.  They are looked up by name
 * once, and checked against the names on every call (a renamed column
 * makes them looked up again), which costs less than the lookup.
 */
static const int *
request_column_numbers(Relation rel)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	bool		valid = (RelationGetRelid(rel) == request_columns_relid);

	for (int i = 0; valid && i < RC_COUNT; i++)
	{
		Form_pg_attribute attr;

		if (request_columns[i] > tupdesc->natts)
		{
			valid = false;
			break;
		}
		attr = TupleDescAttr(tupdesc, request_columns[i] - 1);
		valid = !attr->attisdropped &&
			strcmp(NameStr(attr->attname), request_column_names[i]) == 0;
	}
	if (!valid)
	{
		request_columns_relid = InvalidOid;
		for (int i = 0; i < RC_COUNT; i++)
		{
			request_columns[i] = SPI_fnumber(tupdesc, request_column_names[i]);
			if (request_columns[i] <= 0)
				elog(ERROR, "enrich: enrich.requests has no column \"%s\"",
					 request_column_names[i]);
		}
		request_columns_relid = RelationGetRelid(rel);
	}
	return request_columns;
}

/* text_equals says whether a text datum is the given ASCII string */
static bool
text_equals(Datum value, const char *s)
{
	text	   *t = DatumGetTextPP(value);
	size_t		len = strlen(s);

	return VARSIZE_ANY_EXHDR(t) == len && memcmp(VARDATA_ANY(t), s, len) == 0;
}

/*
 * enrich.requests_check() is the BEFORE INSERT OR UPDATE row trigger of
 * enrich.requests: it refuses an invalid request with an error naming the
 * column, and sets identifier.  A row inserted as failed (a watched table's
 * malformed identifier), or by enrich's own statements, which checked it
 * already, is kept as it is, only its identifier computed.
 */
Datum
enrich_requests_check(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const int  *columns;
	TupleDesc	tupdesc;
	HeapTuple	tuple;
	EnrichRequestFields r;
	EnrichRowProblem p;
	char	   *identifier;
	int			attnum;
	Datum		value;
	bool		isnull;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		TRIGGER_FIRED_BY_DELETE(trigdata->tg_event) ||
		TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("enrich.requests_check() must be fired BEFORE INSERT OR UPDATE FOR EACH ROW")));

	columns = request_column_numbers(trigdata->tg_relation);
	tupdesc = RelationGetDescr(trigdata->tg_relation);
	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;

	memset(&r, 0, sizeof(r));
	for (int i = 0; i < ENRICH_NIDENTIFIERS; i++)
	{
		value = heap_getattr(tuple, columns[RC_LINKEDIN_URL + i], tupdesc, &isnull);
		if (!isnull)
			r.identifiers[i] = DatumGetTextPP(value);
	}
	value = heap_getattr(tuple, columns[RC_METADATA], tupdesc, &isnull);
	if (!isnull)
		r.metadata = DatumGetJsonbP(value);

	if (!enqueue_active)
	{
		bool		relid_null;
		bool		key_null;
		Datum		relid = heap_getattr(tuple, columns[RC_SOURCE_RELID], tupdesc, &relid_null);
		Datum		key = heap_getattr(tuple, columns[RC_SOURCE_KEY], tupdesc, &key_null);
		bool		changed;

		if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
			changed = !relid_null || !key_null;
		else
		{
			bool		old_relid_null;
			bool		old_key_null;
			Datum		old_relid = heap_getattr(trigdata->tg_trigtuple, columns[RC_SOURCE_RELID],
												 tupdesc, &old_relid_null);
			Datum		old_key = heap_getattr(trigdata->tg_trigtuple, columns[RC_SOURCE_KEY],
											   tupdesc, &old_key_null);

			changed = relid_null != old_relid_null || key_null != old_key_null ||
				(!relid_null && DatumGetObjectId(relid) != DatumGetObjectId(old_relid)) ||
				(!key_null && !DatumGetBool(DirectFunctionCall2(jsonb_eq, key, old_key)));
		}
		if (changed)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("source_relid and source_key of enrich.requests are set by enrich only"),
					 errdetail("They name the watched row a person is written back to."),
					 errhint("Use enrich_watch on a table you own to enrich its rows.")));
	}

	/*
	 * enrich's own statements (enqueue_active) judged every row with
	 * enrich.request_problem, the same check, and made the refused ones
	 * failed: only the identifier is left to compute
	 */
	value = heap_getattr(tuple, columns[RC_STATE], tupdesc, &isnull);
	if (!enqueue_active && (isnull || !text_equals(value, "failed")))
	{
		/* a NULL environment is left to the column's NOT NULL constraint */
		value = heap_getattr(tuple, columns[RC_ENVIRONMENT], tupdesc, &isnull);
		if (!isnull && !text_equals(value, "live") && !text_equals(value, "test"))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid environment for an enrichment request"),
					 errdetail("%s is not an environment.", quote_value(TextDatumGetCString(value))),
					 errhint("The environment is 'live' or 'test'.")));

		if (!enrich_request_check(&r, &p))
		{
			if (p.column == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("%s", p.reason),
						 errhint("Set at least one of them.")));
			p.reason[0] = pg_toupper((unsigned char) p.reason[0]);
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid %s for an enrichment request", p.column),
					 errdetail("%s.", p.reason),
					 p.hint ? errhint("%s", p.hint) : 0));
		}
	}

	identifier = enrich_request_identifier(&r);
	attnum = columns[RC_IDENTIFIER];
	value = identifier ? CStringGetTextDatum(identifier) : (Datum) 0;
	isnull = (identifier == NULL);
	return PointerGetDatum(heap_modify_tuple_by_cols(tuple, tupdesc, 1, &attnum,
													 &value, &isnull));
}

/*
 * enrich.requests_wake() is the AFTER INSERT OR UPDATE statement trigger of
 * enrich.requests: the worker wakes when the transaction commits
 */
Datum
enrich_requests_wake(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("enrich.requests_wake() was not called by the trigger manager")));
	enrich_wake_at_commit();
	return PointerGetDatum(NULL);
}

/*
 * enrich.normalize_identifier(linkedin_url, person_id, pdl_id) returns the
 * normalized identifier of a request, or NULL (see
 * enrich_request_identifier)
 */
Datum
enrich_normalize_identifier(PG_FUNCTION_ARGS)
{
	EnrichRequestFields r;
	char	   *identifier;

	fields_from_args(fcinfo, &r);
	identifier = enrich_request_identifier(&r);
	if (identifier == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(identifier));
}

/*
 * enrich.request_problem(linkedin_url, person_id, pdl_id, metadata) returns
 * NULL for a valid request, else what is wrong with it on one line, the
 * column first: 'linkedin_url: "x" is not a LinkedIn profile URL'
 */
Datum
enrich_request_problem(PG_FUNCTION_ARGS)
{
	EnrichRequestFields r;
	EnrichRowProblem p;

	fields_from_args(fcinfo, &r);
	if (enrich_request_check(&r, &p))
		PG_RETURN_NULL();
	if (p.column == NULL)
		PG_RETURN_TEXT_P(cstring_to_text(p.reason));
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("%s: %s", p.column, p.reason)));
}


/*
 * Watched tables
 */

/* relation_display_name returns a table's name as regclass writes it */
static char *
relation_display_name(Oid relid)
{
	return DatumGetCString(DirectFunctionCall1(regclassout, ObjectIdGetDatum(relid)));
}

/*
 * check_table refuses a relation that does not exist or is not a table,
 * and a table the current user does not own (has not the privileges of
 * its owner); it returns a copy of its pg_class row
 */
static Form_pg_class
check_table(Oid relid)
{
	HeapTuple	tup = SearchSysCacheCopy1(RELOID, ObjectIdGetDatum(relid));
	Form_pg_class form;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	form = (Form_pg_class) GETSTRUCT(tup);
	if (form->relkind != RELKIND_RELATION && form->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", relation_display_name(relid))));
	if (!has_privs_of_role(GetUserId(), form->relowner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s", relation_display_name(relid)),
				 errhint("Only the owner of a table may have enrich write into it.")));
	return form;
}

/*
 * lock_table locks a table the current user owns by OID (mode), checked
 * before (so that no other role can lock it through enrich) and again
 * after the lock, and returns its pg_class row.  Whatever a function then
 * reads of the table is of that table: it cannot be renamed, dropped or
 * replaced while the lock is held.
 */
static Form_pg_class
lock_table(Oid relid, LOCKMODE mode)
{
	(void) check_table(relid);
	LockRelationOid(relid, mode);
	return check_table(relid);
}

/* name_array_values returns the elements of a name[] datum as C strings */
static char **
name_array_values(Datum array, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	char	  **names;

	deconstruct_array(DatumGetArrayTypeP(array), NAMEOID, NAMEDATALEN, false,
					  TYPALIGN_CHAR, &elems, &nulls, n);
	names = palloc(sizeof(char *) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
	{
		if (nulls[i])
			elog(ERROR, "enrich: a key column of enrich.watches is null");
		names[i] = pstrdup(NameStr(*DatumGetName(elems[i])));
	}
	return names;
}

/* the plan of watch_read's statement, kept for the life of the process */
static SPIPlanPtr watch_plan = NULL;

/*
 * watch_read reads the watch of a table from enrich.watches into *w; it
 * returns false when the table is not watched.  SPI is connected.
 */
static bool
watch_read(Oid relid, EnrichWatch *w)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	HeapTuple	row;
	TupleDesc	tupdesc;
	Datum		keys;
	bool		isnull;
	int			rc;

	rc = enrich_run_privileged_plan(&watch_plan,
					   "SELECT result_column::pg_catalog.text, linkedin_url_column::pg_catalog.text, "
					   "person_id_column::pg_catalog.text, pdl_id_column::pg_catalog.text, "
					   "environment, key_columns "
					   "FROM enrich.watches WHERE source OPERATOR(pg_catalog.=) $1",
					   0, 1, argtypes, values, NULL, true);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "enrich: reading enrich.watches failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		return false;

	row = SPI_tuptable->vals[0];
	tupdesc = SPI_tuptable->tupdesc;
	memset(w, 0, sizeof(*w));
	w->relid = relid;
	w->result_column = SPI_getvalue(row, tupdesc, 1);
	for (int i = 0; i < ENRICH_NIDENTIFIERS; i++)
		w->identifier_columns[i] = SPI_getvalue(row, tupdesc, 2 + i);
	w->environment = SPI_getvalue(row, tupdesc, 5);
	keys = SPI_getbinval(row, tupdesc, 6, &isnull);
	if (!isnull)
		w->key_columns = name_array_values(keys, &w->nkeys);
	if (w->nkeys < 1)
		elog(ERROR, "enrich: the watch of table %u has no key columns", relid);
	return true;
}

/*
 * column_type returns the type of a live column of a table, or InvalidOid
 * when it has none of that name
 */
static Oid
column_type(Oid relid, const char *column)
{
	AttrNumber	attnum = get_attnum(relid, column);

	if (attnum == InvalidAttrNumber || attnum < 0)
		return InvalidOid;
	return get_atttype(relid, attnum);
}

/*
 * watch_columns checks that the columns a watch names still exist with
 * the types enrich_watch required (the result column only when
 * need_result), and records the key columns' types.  It returns NULL when
 * they do, else what is wrong.
 */
static char *
watch_columns(EnrichWatch *w, bool need_result)
{
	char	   *table = relation_display_name(w->relid);
	Oid			type;

	if (need_result)
	{
		type = column_type(w->relid, w->result_column);
		if (type == InvalidOid)
			return psprintf("result column \"%s\" of table %s does not exist",
							w->result_column, table);
		if (type != JSONBOID)
			return psprintf("result column \"%s\" of table %s is not of type jsonb",
							w->result_column, table);
	}
	for (int i = 0; i < ENRICH_NIDENTIFIERS; i++)
	{
		if (w->identifier_columns[i] == NULL)
			continue;
		type = column_type(w->relid, w->identifier_columns[i]);
		if (type == InvalidOid)
			return psprintf("identifier column \"%s\" of table %s does not exist",
							w->identifier_columns[i], table);
		if (type != TEXTOID && type != VARCHAROID && type != BPCHAROID)
			return psprintf("identifier column \"%s\" of table %s is not of type text or varchar",
							w->identifier_columns[i], table);
	}
	w->key_types = palloc(sizeof(Oid) * w->nkeys);
	for (int i = 0; i < w->nkeys; i++)
	{
		w->key_types[i] = column_type(w->relid, w->key_columns[i]);
		if (w->key_types[i] == InvalidOid)
			return psprintf("key column \"%s\" of table %s does not exist",
							w->key_columns[i], table);
	}
	return NULL;
}

/*
 * append_source_rows appends a SELECT of the rows of "from" (a transition
 * table, alias t) as (linkedin_url, person_id, pdl_id,
 * source_key), identifiers as text and source_key a JSON array of the
 * primary key values as text.  Key values go through their type's output
 * function (format's %s), as intake_from_inserted writes them, so that no
 * cast a user created runs as superuser.
 */
static void
append_source_rows(StringInfo buf, const EnrichWatch *w, const char *from,
				   const char *where)
{
	appendStringInfoString(buf, "SELECT ");
	for (int i = 0; i < ENRICH_NIDENTIFIERS; i++)
	{
		if (w->identifier_columns[i] != NULL)
			appendStringInfo(buf, "t.%s::pg_catalog.text AS %s, ",
							 quote_identifier(w->identifier_columns[i]), identifier_columns[i]);
		else
			appendStringInfo(buf, "NULL::pg_catalog.text AS %s, ", identifier_columns[i]);
	}
	appendStringInfoString(buf, "pg_catalog.jsonb_build_array(");
	for (int i = 0; i < w->nkeys; i++)
	{
		const char *column = quote_identifier(w->key_columns[i]);

		if (i > 0)
			appendStringInfoString(buf, ", ");
		appendStringInfo(buf, "pg_catalog.format('%%s', t.%s)", column);
	}
	appendStringInfo(buf, ") AS source_key FROM %s t", from);
	if (where != NULL)
		appendStringInfo(buf, " WHERE %s", where);
}

/*
 * the name under which the backfill's statement reads the rows of the
 * watched table it read in C (existing_rows)
 */
#define EXISTING_ROWS "enrich_existing"

/*
 * enqueue_sql builds the one statement that queues the rows of a watched
 * table: $1 is the environment (NULL: enrich.environment), $2 the table's
 * oid.  Rows without any identifier are skipped; a row whose identifiers
 * enrich.request_problem refuses is recorded as a failed request with the
 * reason, so that the user's statement never fails for its content.
 *
 * For ENQUEUE_UPDATED, new_table and old_table are the transition tables
 * of the trigger, and only the rows whose identifiers changed are queued
 * (rows are matched on source_key, a row whose key changed counts as new).
 * ENQUEUE_EXISTING queues the rows of the table whose result column is
 * NULL and that have no request queued or in flight, none refused for the
 * same malformed identifiers (it would only be refused again), and none
 * waiting in enrich.intake; it queues them in enrich.intake, as INSERT and
 * COPY do (the worker claims them in one statement), and returns one row:
 * how many it queued, refused ones included.
 */
static char *
enqueue_sql(const EnrichWatch *w, EnrichEnqueueSource source,
			const char *new_table, const char *old_table)
{
	StringInfoData sql;
	bool		first;

	initStringInfo(&sql);
	if (source == ENQUEUE_EXISTING)
		appendStringInfoString(&sql, "WITH c AS (");
	else
		appendStringInfoString(&sql,
							   "INSERT INTO enrich.requests (environment, linkedin_url, person_id, pdl_id, "
							   "source_relid, source_key, state, error, completed_at) "
							   "SELECT COALESCE($1, pg_catalog.current_setting('enrich.environment')), "
							   "c.linkedin_url, c.person_id, c.pdl_id, $2, c.source_key, "
							   "CASE WHEN c.problem IS NULL THEN 'queued' ELSE 'failed' END, "
							   "CASE WHEN c.problem IS NOT NULL THEN pg_catalog.jsonb_build_object("
							   "'code', 'invalid_identifier', 'message', c.problem) END, "
							   "CASE WHEN c.problem IS NOT NULL THEN pg_catalog.now() END "
							   "FROM (");
	appendStringInfoString(&sql,
						   "SELECT n.linkedin_url, n.person_id, n.pdl_id, n.source_key, "
						   "enrich.request_problem(n.linkedin_url, n.person_id, n.pdl_id, NULL) AS problem "
						   "FROM (");

	if (source == ENQUEUE_EXISTING)
	{
		/* the rows the backfill read, by OID (existing_rows) */
		appendStringInfoString(&sql,
							   "SELECT t.linkedin_url, t.person_id, t.pdl_id, "
							   "t.source_key::pg_catalog.jsonb AS source_key FROM " EXISTING_ROWS " t) n");
	}
	else
	{
		append_source_rows(&sql, w, quote_identifier(new_table), NULL);
		appendStringInfoString(&sql, ") n");
		if (source == ENQUEUE_UPDATED)
		{
			appendStringInfoString(&sql, " LEFT JOIN (");
			append_source_rows(&sql, w, quote_identifier(old_table), NULL);
			appendStringInfoString(&sql, ") o ON o.source_key OPERATOR(pg_catalog.=) n.source_key");
		}
	}

	/* at least one identifier */
	appendStringInfoString(&sql, " WHERE (");
	first = true;
	for (int i = 0; i < ENRICH_NIDENTIFIERS; i++)
	{
		if (w->identifier_columns[i] == NULL)
			continue;
		appendStringInfo(&sql, "%sn.%s IS NOT NULL", first ? "" : " OR ", identifier_columns[i]);
		first = false;
	}
	appendStringInfoChar(&sql, ')');

	if (source == ENQUEUE_UPDATED)
	{
		appendStringInfoString(&sql,
							   " AND (o.source_key IS NULL OR "
							   "pg_catalog.jsonb_build_array(n.linkedin_url, n.person_id, n.pdl_id)" SQL_OP(<>)
							   "pg_catalog.jsonb_build_array(o.linkedin_url, o.person_id, o.pdl_id))");
	}
	else if (source == ENQUEUE_EXISTING)
		appendStringInfoString(&sql,
							   " AND NOT EXISTS (SELECT 1 FROM enrich.requests r "
							   "WHERE r.source_relid OPERATOR(pg_catalog.=) $2 "
							   "AND r.source_key OPERATOR(pg_catalog.=) n.source_key "
							   "AND (r.state OPERATOR(pg_catalog.=) ANY ('{queued,submitting,submitted}'::pg_catalog.text[]) "
							   "OR (r.state OPERATOR(pg_catalog.=) 'failed' "
							   "AND r.error OPERATOR(pg_catalog.->>) 'code' OPERATOR(pg_catalog.=) 'invalid_identifier' "
							   "AND pg_catalog.jsonb_build_array(r.linkedin_url, r.person_id, r.pdl_id)" SQL_OP(=)
							   "pg_catalog.jsonb_build_array(n.linkedin_url, n.person_id, n.pdl_id)))) "
							   "AND NOT EXISTS (SELECT 1 FROM enrich.intake i "
							   "CROSS JOIN LATERAL pg_catalog.unnest(i.source_key) AS k(source_key) "
							   "WHERE i.source_relid OPERATOR(pg_catalog.=) $2 "
							   "AND k.source_key::pg_catalog.jsonb OPERATOR(pg_catalog.=) n.source_key)");

	/* OFFSET 0 keeps request_problem from being evaluated once per use */
	if (source != ENQUEUE_EXISTING)
	{
		appendStringInfoString(&sql, " OFFSET 0) c");
		return sql.data;
	}

	/*
	 * a backfill queues its rows the way INSERT and COPY do, in
	 * enrich.intake, 1,000 contacts a row; refused ones are failed requests
	 */
	appendStringInfoString(&sql,
						   " OFFSET 0), "
						   "refused AS (INSERT INTO enrich.requests (environment, linkedin_url, person_id, pdl_id, "
						   "source_relid, source_key, state, error, completed_at) "
						   "SELECT COALESCE($1, pg_catalog.current_setting('enrich.environment')), "
						   "c.linkedin_url, c.person_id, c.pdl_id, $2, c.source_key, 'failed', "
						   "pg_catalog.jsonb_build_object('code', 'invalid_identifier', 'message', c.problem), "
						   "pg_catalog.now() FROM c WHERE c.problem IS NOT NULL RETURNING 1), "
						   "queued AS (INSERT INTO enrich.intake (environment, source_relid, linkedin_url, "
						   "person_id, pdl_id, source_key) "
						   "SELECT COALESCE($1, pg_catalog.current_setting('enrich.environment')), $2, "
						   "pg_catalog.array_agg(q.linkedin_url ORDER BY q.n), "
						   "pg_catalog.array_agg(q.person_id ORDER BY q.n), "
						   "pg_catalog.array_agg(q.pdl_id ORDER BY q.n), "
						   "pg_catalog.array_agg(q.source_key::pg_catalog.text ORDER BY q.n) "
						   "FROM (SELECT c.*, pg_catalog.row_number() OVER () OPERATOR(pg_catalog.-) 1 AS n "
						   "FROM c WHERE c.problem IS NULL) q "
						   "GROUP BY q.n OPERATOR(pg_catalog./) 1000 "
						   "RETURNING pg_catalog.cardinality(source_key) AS contacts) "
						   "SELECT (SELECT pg_catalog.count(*) FROM refused) OPERATOR(pg_catalog.+) "
						   "(SELECT COALESCE(pg_catalog.sum(contacts), 0) FROM queued)");
	return sql.data;
}

/*
 * watch_arguments sets the first two arguments of the statements that queue
 * a watched table's rows: $1 the watch's environment (NULL: the writer's
 * enrich.environment) and $2 the table
 */
static void
watch_arguments(const EnrichWatch *w, Datum *values, char *nulls)
{
	if (w->environment != NULL)
		values[0] = CStringGetTextDatum(w->environment);
	else
		nulls[0] = 'n';
	values[1] = ObjectIdGetDatum(w->relid);
}

/* the kept plans of the statements that queue the rows of watched tables */
static EnrichPlanSlot *enqueue_plans = NULL;

/*
 * enqueue_run runs the statement of enqueue_sql as the bootstrap superuser
 * and returns how many requests it queued.  With a plan slot the statement
 * is prepared once and kept (the trigger runs it for every statement on the
 * table); without one it is planned for this run only.  SPI is connected.
 */
static uint64
enqueue_run(const EnrichWatch *w, const char *sql, SPIPlanPtr *plan, int cursor_options)
{
	Oid			argtypes[2] = {TEXTOID, OIDOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	volatile int rc = 0;

	watch_arguments(w, values, nulls);
	enqueue_active = true;
	PG_TRY();
	{
		if (plan != NULL)
			rc = enrich_run_privileged_plan(plan, sql, cursor_options, 2, argtypes, values, nulls, false);
		else
			rc = enrich_run_privileged(sql, 2, argtypes, values, nulls, false);
	}
	PG_FINALLY();
	{
		enqueue_active = false;
	}
	PG_END_TRY();
	if (rc == SPI_OK_SELECT && SPI_processed == 1)
	{
		/* a backfill counts what it queued */
		bool		isnull;
		Datum		queued = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		return isnull ? 0 : (uint64) DatumGetInt64(queued);	/* bigint */
	}
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "enrich: queueing the rows of table %s failed: %s",
			 relation_display_name(w->relid), SPI_result_code_string(rc));
	return SPI_processed;
}

/* contacts per row of enrich.intake: the most one bulk enrich carries */
#define INTAKE_CHUNK 1000

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

/* source_reader_init prepares to read the rows of relid, w's table or a partition */
static void
source_reader_init(SourceReader *r, const EnrichWatch *w, Oid relid)
{
	memset(r, 0, sizeof(*r));
	for (int i = 0; i < ENRICH_NIDENTIFIERS; i++)
	{
		r->identifiers[i].attnum = InvalidAttrNumber;
		if (w->identifier_columns[i] == NULL)
			continue;
		r->identifiers[i].attnum = get_attnum(relid, w->identifier_columns[i]);
		r->identifiers[i].trim = column_type(relid, w->identifier_columns[i]) == BPCHAROID;
	}
	r->nkeys = w->nkeys;
	r->keys = palloc0(sizeof(IntakeColumn) * w->nkeys);
	for (int i = 0; i < w->nkeys; i++)
	{
		Oid			output;
		bool		varlena;

		r->keys[i].attnum = get_attnum(relid, w->key_columns[i]);
		getTypeOutputInfo(w->key_types[i], &output, &varlena);
		fmgr_info(output, &r->keys[i].output);
	}
	r->result = get_attnum(relid, w->result_column);
	initStringInfo(&r->key);
}

/*
 * source_reader_read reads a row's identifiers into ids (NULL ones
 * flagged), as text, and its key into r->key; it returns false for a row
 * without any identifier
 */
static bool
source_reader_read(SourceReader *r, TupleTableSlot *slot, Datum *ids, bool *id_null)
{
	bool		any = false;

	for (int i = 0; i < ENRICH_NIDENTIFIERS; i++)
	{
		id_null[i] = true;
		ids[i] = (Datum) 0;
		if (r->identifiers[i].attnum == InvalidAttrNumber)
			continue;
		ids[i] = slot_getattr(slot, r->identifiers[i].attnum, &id_null[i]);
		if (!id_null[i] && r->identifiers[i].trim)
			ids[i] = DirectFunctionCall1(rtrim1, ids[i]);
		any |= !id_null[i];
	}
	if (!any)
		return false;
	resetStringInfo(&r->key);
	appendStringInfoChar(&r->key, '[');
	for (int i = 0; i < r->nkeys; i++)
	{
		bool		isnull;
		Datum		value = slot_getattr(slot, r->keys[i].attnum, &isnull);

		if (i > 0)
			appendStringInfoString(&r->key, ", ");
		if (isnull)
			appendStringInfoString(&r->key, "null");
		else
			escape_json(&r->key, OutputFunctionCall(&r->keys[i].output, value));
	}
	appendStringInfoChar(&r->key, ']');
	return true;
}

/* intake_insert writes one row of enrich.intake from the arrays built */
static void
intake_insert(const EnrichWatch *w, ArrayBuildState **arrays)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[6] = {TEXTOID, OIDOID, TEXTARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	int			rc;

	watch_arguments(w, values, nulls);
	for (int i = 0; i < 4; i++)
		values[2 + i] = makeArrayResult(arrays[i], CurrentMemoryContext);
	rc = enrich_run_privileged_plan(&plan,
					   "INSERT INTO enrich.intake (environment, source_relid, linkedin_url, person_id, "
					   "pdl_id, source_key) "
					   "VALUES (COALESCE($1, pg_catalog.current_setting('enrich.environment')), "
					   "$2, $3, $4, $5, $6)",
					   0, 6, argtypes, values, nulls, false);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "enrich: queueing the rows of table %s failed: %s",
			 relation_display_name(w->relid), SPI_result_code_string(rc));
}

/*
 * intake_from_inserted queues the new rows of an INSERT or COPY on a
 * watched table as rows of enrich.intake, INTAKE_CHUNK contacts each, read
 * straight from the transition table: the cost in the user's statement is
 * one pass over its rows and one small insert per chunk.  A row without
 * any identifier is skipped; identifiers are validated when the worker
 * turns the chunk into requests.  Key values go through their type's
 * output function, as append_source_rows writes them.
 */
static void
intake_from_inserted(TriggerData *trigdata, const EnrichWatch *w)
{
	Tuplestorestate *store = trigdata->tg_newtable;
	TupleDesc	tupdesc = RelationGetDescr(trigdata->tg_relation);
	TupleTableSlot *slot = MakeSingleTupleTableSlot(tupdesc, &TTSOpsMinimalTuple);
	SourceReader source;
	MemoryContext chunk_context = AllocSetContextCreate(CurrentMemoryContext,
														"enrich intake chunk",
														ALLOCSET_DEFAULT_SIZES);
	MemoryContext caller = CurrentMemoryContext;
	ArrayBuildState *arrays[4] = {NULL, NULL, NULL, NULL};
	int			in_chunk = 0;
	int			reader;
	int			nestlevel;

	source_reader_init(&source, w, w->relid);

	/* key values written as text as the worker will read them */
	nestlevel = NewGUCNestLevel();
	enrich_pin_settings(GUC_ACTION_SAVE);

	/* a read pointer of our own, so that other triggers' reads are untouched */
	reader = tuplestore_alloc_read_pointer(store, EXEC_FLAG_REWIND);
	tuplestore_select_read_pointer(store, reader);
	tuplestore_rescan(store);
	while (tuplestore_gettupleslot(store, true, false, slot))
	{
		Datum		ids[ENRICH_NIDENTIFIERS];
		bool		id_null[ENRICH_NIDENTIFIERS];

		MemoryContextSwitchTo(chunk_context);
		if (!source_reader_read(&source, slot, ids, id_null))
		{
			MemoryContextSwitchTo(caller);
			continue;
		}
		for (int i = 0; i < ENRICH_NIDENTIFIERS; i++)
			arrays[i] = accumArrayResult(arrays[i], ids[i], id_null[i], TEXTOID, chunk_context);
		arrays[3] = accumArrayResult(arrays[3], CStringGetTextDatum(source.key.data), false,
									 TEXTOID, chunk_context);
		MemoryContextSwitchTo(caller);

		if (++in_chunk == INTAKE_CHUNK)
		{
			intake_insert(w, arrays);
			MemoryContextReset(chunk_context);
			memset(arrays, 0, sizeof(arrays));
			in_chunk = 0;
		}
	}
	if (in_chunk > 0)
		intake_insert(w, arrays);
	tuplestore_select_read_pointer(store, 0);
	AtEOXact_GUC(false, nestlevel);
	ExecDropSingleTupleTableSlot(slot);
	MemoryContextDelete(chunk_context);
}

/*
 * enrich.enqueue_from_source() is the AFTER INSERT and AFTER UPDATE
 * statement trigger of a watched table (created by enrich_watch with the
 * transition tables enrich_new and enrich_old).  The new rows of an INSERT
 * or COPY go to enrich.intake, a row per 1,000 (intake_from_inserted); the
 * rows whose identifiers an UPDATE changed are queued as requests by one
 * statement.
 *
 * It does nothing in the worker (whose write-back updates the result
 * column) and on a table no longer watched.  It never fails the user's
 * statement for what the rows contain; a watch whose columns were since
 * dropped or changed gets a WARNING instead of queued rows.
 */
Datum
enrich_enqueue_from_source(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	bool		is_update;
	EnrichWatch w;
	EnrichEnqueueSource source;
	char	   *problem;
	char	   *sql;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		!(TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		  TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("enrich.enqueue_from_source() must be fired AFTER INSERT or AFTER UPDATE FOR EACH STATEMENT")));
	is_update = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event);

	if (enrich_in_worker)
		return PointerGetDatum(NULL);

	if (trigdata->tg_newtable == NULL || (is_update && trigdata->tg_oldtable == NULL))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("enrich.enqueue_from_source() needs transition tables"),
				 errhint("Create the triggers with enrich_watch.")));
	if (tuplestore_tuple_count(trigdata->tg_newtable) == 0)
		return PointerGetDatum(NULL);

	SPI_connect();
	if (!watch_read(RelationGetRelid(trigdata->tg_relation), &w))
	{
		SPI_finish();
		return PointerGetDatum(NULL);
	}
	problem = watch_columns(&w, false);
	if (problem != NULL)
	{
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("enrich did not queue the rows of this statement: %s", problem),
				 errhint("Call enrich_unwatch and then enrich_watch with the table's columns now.")));
		SPI_finish();
		return PointerGetDatum(NULL);
	}
	if (!is_update)
	{
		intake_from_inserted(trigdata, &w);
		SPI_finish();
		return PointerGetDatum(NULL);
	}
	SPI_register_trigger_data(trigdata);
	source = ENQUEUE_UPDATED;
	sql = enqueue_sql(&w, source, trigdata->tg_trigger->tgnewtable,
					  trigdata->tg_trigger->tgoldtable);

	/* the join of an UPDATE's statement is planned for each statement's sizes */
	enqueue_run(&w, sql, enrich_plan_slot(&enqueue_plans, w.relid, (int) source, sql, false),
				CURSOR_OPT_CUSTOM_PLAN);
	SPI_finish();
	return PointerGetDatum(NULL);
}

/* relation_arg returns a regclass argument, refusing NULL */
static Oid
relation_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
	return PG_GETARG_OID(argno);
}

/*
 * existing_rows_of reads the rows of one table (a watched table, or a leaf
 * partition of it) whose result column is NULL and that have an
 * identifier into store, as (linkedin_url, person_id, pdl_id, source_key)
 */
static void
existing_rows_of(const EnrichWatch *w, Oid relid, Tuplestorestate *store, TupleDesc rowdesc)
{
	Relation	rel = table_open(relid, NoLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	TableScanDesc scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	MemoryContext row_context = AllocSetContextCreate(CurrentMemoryContext, "enrich backfill row",
													  ALLOCSET_SMALL_SIZES);
	MemoryContext caller = CurrentMemoryContext;
	SourceReader source;

	source_reader_init(&source, w, relid);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		Datum		values[4];
		bool		nulls[4];

		CHECK_FOR_INTERRUPTS();
		if (!slot_attisnull(slot, source.result))
			continue;
		MemoryContextSwitchTo(row_context);
		if (source_reader_read(&source, slot, values, nulls))
		{
			values[3] = CStringGetTextDatum(source.key.data);
			nulls[3] = false;
			tuplestore_putvalues(store, rowdesc, values, nulls);
		}
		MemoryContextSwitchTo(caller);
		MemoryContextReset(row_context);
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);
	MemoryContextDelete(row_context);
}

/*
 * existing_rows reads the rows of a watched table (locked by the caller)
 * that a backfill queues, in C and by OID, never by name: each leaf
 * partition of a partitioned table is read in turn, a foreign one is
 * skipped with a warning (enrich reads no server through a user mapping).
 * It registers them with SPI (connected by the caller) as EXISTING_ROWS.
 */
static void
existing_rows(const EnrichWatch *w)
{
	TupleDesc	rowdesc = CreateTemplateTupleDesc(4);
	Tuplestorestate *store = tuplestore_begin_heap(false, false, work_mem);
	EphemeralNamedRelation enr = palloc0(sizeof(EphemeralNamedRelationData));
	List	   *tables = find_all_inheritors(w->relid, AccessShareLock, NULL);
	ListCell   *lc;
	int			nestlevel = NewGUCNestLevel();

	TupleDescInitEntry(rowdesc, 1, "linkedin_url", TEXTOID, -1, 0);
	TupleDescInitEntry(rowdesc, 2, "person_id", TEXTOID, -1, 0);
	TupleDescInitEntry(rowdesc, 3, "pdl_id", TEXTOID, -1, 0);
	TupleDescInitEntry(rowdesc, 4, "source_key", TEXTOID, -1, 0);

	/* key values written as text as the worker will read them */
	enrich_pin_settings(GUC_ACTION_SAVE);
	foreach(lc, tables)
	{
		Oid			relid = lfirst_oid(lc);
		char		relkind = get_rel_relkind(relid);

		if (relkind == RELKIND_RELATION)
			existing_rows_of(w, relid, store, rowdesc);
		else if (relkind == RELKIND_FOREIGN_TABLE)
			ereport(WARNING,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("enrich did not backfill the rows of foreign partition %s",
							relation_display_name(relid)),
					 errdetail("A backfill reads the rows stored in this database only.")));
	}
	AtEOXact_GUC(false, nestlevel);

	enr->md.name = EXISTING_ROWS;
	enr->md.reliddesc = InvalidOid;
	enr->md.tupdesc = rowdesc;
	enr->md.enrtype = ENR_NAMED_TUPLESTORE;
	enr->md.enrtuples = tuplestore_tuple_count(store);
	enr->reldata = store;
	if (SPI_register_relation(enr) != SPI_OK_REL_REGISTER)
		elog(ERROR, "enrich: could not register the rows of the backfill");
}

/*
 * enrich.enqueue_existing(source) queues the rows of a watched table whose
 * result column is NULL and that have no request queued or in flight (the
 * backfill of enrich_watch); a row already refused for the same malformed
 * identifiers is not queued again.  It returns how many requests it
 * queued.  Only the table's owner may call it.  The table is locked by OID
 * before anything is read, and read in C (existing_rows): no statement
 * names it, so no relation that takes its name meanwhile is ever read.
 */
Datum
enrich_enqueue_existing(PG_FUNCTION_ARGS)
{
	Oid			relid = relation_arg(fcinfo, 0, "source");
	EnrichWatch w;
	char	   *problem;
	uint64		queued;

	(void) lock_table(relid, AccessShareLock);
	SPI_connect();
	if (!watch_read(relid, &w))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table %s is not watched", relation_display_name(relid)),
				 errhint("Call enrich_watch first.")));
	problem = watch_columns(&w, true);
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the watch of table %s no longer matches the table", relation_display_name(relid)),
				 errdetail("The %s.", problem),
				 errhint("Call enrich_unwatch and then enrich_watch with the table's columns now.")));
	existing_rows(&w);
	queued = enqueue_run(&w, enqueue_sql(&w, ENQUEUE_EXISTING, NULL, NULL), NULL, 0);
	SPI_finish();
	PG_RETURN_INT64((int64) queued);
}

/*
 * enrich.flush_intake(environment) turns what the INSERT and COPY
 * statements on watched tables queued in enrich.intake (of one environment,
 * or of both when NULL) into queued requests now, rather than when the
 * worker claims it, and returns how many requests it made.  Its statements
 * are enrich's own, on enrich's tables: they run as the bootstrap
 * superuser, so EXECUTE on it is all a role needs.
 */
Datum
enrich_flush_intake(PG_FUNCTION_ARGS)
{
	char	   *volatile environment = NULL;
	EnrichUserSwitch sw;
	volatile uint64 made = 0;

	if (!PG_ARGISNULL(0))
	{
		environment = text_to_cstring(PG_GETARG_TEXT_PP(0));
		(void) enrich_environment_arg(environment);
	}
	SPI_connect();
	enrich_switch_user(&sw, BOOTSTRAP_SUPERUSERID);
	PG_TRY();
	{
		made = enrich_queue_flush_intake(environment);
	}
	PG_CATCH();
	{
		SetUserIdAndSecContext(sw.saved_userid, sw.saved_sec_context);
		PG_RE_THROW();
	}
	PG_END_TRY();
	enrich_restore_user(&sw);
	SPI_finish();
	PG_RETURN_INT64((int64) made);
}

/*
 * check_column refuses a column a watch names that the table lacks, or
 * whose type is not one of the types given (a domain over them is not)
 */
static void
check_column(Oid relid, const char *column, const char *role, const Oid *types, int ntypes,
			 const char *type_words)
{
	Oid			type = column_type(relid, column);

	if (type == InvalidOid)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of table %s does not exist", column, relation_display_name(relid))));
	for (int i = 0; i < ntypes; i++)
		if (type == types[i])
			return;
	ereport(ERROR,
			(errcode(ERRCODE_DATATYPE_MISMATCH),
			 errmsg("%s column \"%s\" must be of type %s", role, column, type_words)));
}

/*
 * primary_key_columns returns the key columns of a table's primary key, in
 * order, as a name[] datum, and their types as format_type writes them, as
 * a text[] datum
 */
static void
primary_key_columns(Oid relid, Datum *columns, Datum *types)
{
	Relation	rel = relation_open(relid, NoLock);
	Oid			pk = RelationGetPrimaryKeyIndex(rel);
	Relation	index;
	int			n;
	Datum	   *names;
	Datum	   *typenames;

	if (!OidIsValid(pk))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("table %s has no primary key", relation_display_name(relid)),
				 errhint("enrich writes each person back to the row with its primary key.")));
	index = index_open(pk, AccessShareLock);
	n = IndexRelationGetNumberOfKeyAttributes(index);
	names = palloc(sizeof(Datum) * n);
	typenames = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(RelationGetDescr(rel),
											   index->rd_index->indkey.values[i] - 1);

		names[i] = PointerGetDatum(palloc0(NAMEDATALEN));
		namestrcpy(DatumGetName(names[i]), NameStr(attr->attname));
		typenames[i] = CStringGetTextDatum(format_type_with_typemod(attr->atttypid, attr->atttypmod));
	}
	index_close(index, NoLock);
	relation_close(rel, NoLock);
	*columns = PointerGetDatum(construct_array(names, n, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR));
	*types = PointerGetDatum(construct_array(typenames, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * enrich.register_watch(source, result_column, linkedin_url_column,
 * person_id_column, pdl_id_column, environment, key_columns, key_types)
 * records a watch in enrich.watches, which the caller cannot write.  It
 * checks everything itself, whoever calls it: the table (locked by OID),
 * that the caller owns it, the columns and their types; the key columns
 * and their types are read from the table's primary key (the last two
 * arguments, which enrich 1.0's enrich_watch passes, are not used).  A
 * second watch of a table is refused.
 */
Datum
enrich_register_watch(PG_FUNCTION_ARGS)
{
	static const Oid result_types[] = {JSONBOID};
	static const Oid identifier_types[] = {TEXTOID, VARCHAROID, BPCHAROID};
	Oid			relid;
	Oid			argtypes[10] = {OIDOID, TEXTOID, NAMEOID, NAMEOID, NAMEOID, NAMEOID,
	TEXTOID, NAMEARRAYOID, TEXTARRAYOID, OIDOID};
	Datum		values[10];
	char		nulls[11] = "          ";
	Form_pg_class form;
	bool		any_identifier = false;
	char	   *source_name;
	int			rc;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("source and result_column must not be null")));
	relid = PG_GETARG_OID(0);
	form = lock_table(relid, ShareRowExclusiveLock);
	for (int i = 2; i <= 4; i++)
		any_identifier |= !PG_ARGISNULL(i);
	if (!any_identifier)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("at least one identifier column is required"),
				 errhint("Name linkedin_url_column, person_id_column or pdl_id_column.")));
	if (!PG_ARGISNULL(5))
		(void) enrich_environment_arg(text_to_cstring(PG_GETARG_TEXT_PP(5)));
	check_column(relid, NameStr(*PG_GETARG_NAME(1)), "result", result_types, 1, "jsonb");
	for (int i = 2; i <= 4; i++)
		if (!PG_ARGISNULL(i))
			check_column(relid, NameStr(*PG_GETARG_NAME(i)), "identifier", identifier_types, 3,
						 "text or varchar");

	source_name = relation_display_name(relid);
	values[0] = ObjectIdGetDatum(relid);
	values[1] = CStringGetTextDatum(source_name);
	for (int i = 1; i <= 5; i++)
	{
		if (PG_ARGISNULL(i))
			nulls[i + 1] = 'n';
		else
			values[i + 1] = PG_GETARG_DATUM(i);
	}
	primary_key_columns(relid, &values[7], &values[8]);
	values[9] = ObjectIdGetDatum(form->relowner);

	SPI_connect();
	rc = enrich_run_privileged("INSERT INTO enrich.watches (source, source_name, result_column, "
							   "linkedin_url_column, person_id_column, pdl_id_column, environment, "
							   "key_columns, key_types, owner) "
							   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
							   "ON CONFLICT (source) DO NOTHING",
							   10, argtypes, values, nulls, false);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "enrich: writing enrich.watches failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("table %s is already watched", source_name),
				 errhint("Call enrich_unwatch first.")));
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * enrich.unregister_watch(source) forgets the watch of a table and says
 * whether there was one.  The caller must own the table, or, when the table
 * was dropped, have the privileges of the role that owned it.
 */
Datum
enrich_unregister_watch(PG_FUNCTION_ARGS)
{
	Oid			relid = relation_arg(fcinfo, 0, "source");
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	bool		exists = SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid));
	bool		deleted;
	int			rc;

	if (exists)
		(void) check_table(relid);

	SPI_connect();
	if (!exists)
	{
		bool		isnull;

		rc = enrich_run_privileged("SELECT owner FROM enrich.watches WHERE source OPERATOR(pg_catalog.=) $1",
							1, argtypes, values, NULL, true);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "enrich: reading enrich.watches failed: %s", SPI_result_code_string(rc));
		if (SPI_processed == 0)
		{
			SPI_finish();
			PG_RETURN_BOOL(false);
		}
		if (!has_privs_of_role(GetUserId(),
							   DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
															  SPI_tuptable->tupdesc, 1, &isnull))))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("must be owner of the dropped table with OID %u to forget its watch", relid)));
	}
	rc = enrich_run_privileged("DELETE FROM enrich.watches WHERE source OPERATOR(pg_catalog.=) $1",
						1, argtypes, values, NULL, false);
	if (rc != SPI_OK_DELETE)
		elog(ERROR, "enrich: writing enrich.watches failed: %s", SPI_result_code_string(rc));
	deleted = (SPI_processed > 0);
	SPI_finish();
	PG_RETURN_BOOL(deleted);
}
