/*-------------------------------------------------------------------------
 *
 * request.c
 *	  What a request of enrich.requests is: its validation (an error names
 *	  the column), its normalized identifier, the triggers of
 *	  enrich.requests (requests_check, requests_wake), the SQL helpers
 *	  enrich.normalize_identifier and enrich.request_problem, and the switch
 *	  that lets enrich's own statements name a request's source row (whose
 *	  owner the request then belongs to).
 *
 * A request is validated by one function, enrich_request_check, and its
 * identifier computed by one function, enrich_request_identifier: the
 * trigger of enrich.requests and the SQL helpers share them, so a row
 * queued from a watched table is judged exactly as a row inserted by hand.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_class.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/inval.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "api.h"
#include "guc.h"
#include "shared.h"
#include "request.h"

PG_FUNCTION_INFO_V1(enrich_requests_check);
PG_FUNCTION_INFO_V1(enrich_requests_wake);
PG_FUNCTION_INFO_V1(enrich_normalize_identifier);
PG_FUNCTION_INFO_V1(enrich_request_problem);

/*
 * The worker adds its own key to the metadata of every request it sends
 * (the request's reference, by which results are matched: see api.c), and
 * the API takes at most ENRICH_API_MAX_METADATA bytes of metadata.  So a
 * request keeps this many bytes free: a comma, the quoted key "enrichRef",
 * a colon and a quoted value of at most 33 characters make 48.
 */
#define ENRICH_METADATA_RESERVE 48
#define ENRICH_MAX_METADATA (ENRICH_API_MAX_METADATA - ENRICH_METADATA_RESERVE)

/* the longest part of a refused value quoted in a message, in bytes */
#define ENRICH_QUOTE_MAX 200

/* the identifier columns of a request, in the order the API prefers them */
const char *const enrich_identifier_columns[ENRICH_NIDENTIFIERS] =
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
			return refuse(p, enrich_identifier_columns[i], pstrdup("the value is empty"), NULL);
		if (len > ENRICH_API_MAX_IDENTIFIER)
			return refuse(p, enrich_identifier_columns[i],
						  psprintf("the value is %d bytes long, more than %d",
								   len, ENRICH_API_MAX_IDENTIFIER),
						  NULL);
		if (i > 0)
			continue;
		s = text_to_cstring(value);
		if (enrich_api_normalize_linkedin_url(s) == NULL)
			return refuse(p, enrich_identifier_columns[i],
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
 * owner_column returns the number of the owner column of enrich.requests,
 * or 0 in a catalog older than 1.1, which has none.  Like the numbers of
 * request_column_numbers, it is looked up once and checked on every call.
 */
static int
owner_column(Relation rel)
{
	static Oid	relid = InvalidOid;
	static int	attnum = 0;
	TupleDesc	tupdesc = RelationGetDescr(rel);

	if (relid == RelationGetRelid(rel) && attnum > 0 && attnum <= tupdesc->natts &&
		!TupleDescAttr(tupdesc, attnum - 1)->attisdropped &&
		strcmp(NameStr(TupleDescAttr(tupdesc, attnum - 1)->attname), "owner") == 0)
		return attnum;
	attnum = Max(SPI_fnumber(tupdesc, "owner"), 0);
	relid = RelationGetRelid(rel);
	return attnum;
}

/*
 * The name of the last owner source_owner found, kept for the rows that
 * follow (a backfill inserts thousands of one table's); a change of any
 * role (a rename) forgets it.
 */
static Oid	owner_cached_roleid = InvalidOid;
static NameData owner_cached_name;

/* forget_owner_name is the syscache callback that forgets it */
static void
forget_owner_name(Datum arg, int cacheid, uint32 hashvalue)
{
	owner_cached_roleid = InvalidOid;
}

/*
 * source_owner returns, as a name datum, the owner of the watched table a
 * request comes from: the role the request belongs to.  *isnull is set when
 * the table or its owner is gone (the row keeps the owner it has).
 */
static Datum
source_owner(Oid relid, bool *isnull)
{
	static bool callback_registered = false;
	HeapTuple	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			roleid;
	char	   *name;

	*isnull = true;
	if (!HeapTupleIsValid(tp))
		return (Datum) 0;
	roleid = ((Form_pg_class) GETSTRUCT(tp))->relowner;
	ReleaseSysCache(tp);
	if (roleid != owner_cached_roleid)
	{
		if (!callback_registered)
		{
			CacheRegisterSyscacheCallback(AUTHOID, forget_owner_name, (Datum) 0);
			callback_registered = true;
		}
		name = GetUserNameFromId(roleid, true);
		if (name == NULL)
			return (Datum) 0;
		namestrcpy(&owner_cached_name, name);
		owner_cached_roleid = roleid;
	}
	*isnull = false;
	return NameGetDatum(&owner_cached_name);
}

/*
 * refuse_source_change refuses a row that names a source row (or changes
 * the one it names) unless enrich's own statement writes it, or a
 * superuser (who may write any table anyway: a restored dump's COPY)
 */
static void
refuse_source_change(TriggerData *trigdata, HeapTuple tuple, TupleDesc tupdesc, const int *columns)
{
	bool		relid_null;
	bool		key_null;
	Datum		relid = heap_getattr(tuple, columns[RC_SOURCE_RELID], tupdesc, &relid_null);
	Datum		key = heap_getattr(tuple, columns[RC_SOURCE_KEY], tupdesc, &key_null);
	bool		changed;

	if (enqueue_active || superuser())
		return;
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
 * refuse_invalid_request refuses a request whose environment, identifiers
 * or metadata are not valid, with an error naming the column
 */
static void
refuse_invalid_request(HeapTuple tuple, TupleDesc tupdesc, const int *columns,
					   const EnrichRequestFields *r)
{
	EnrichRowProblem p;
	bool		isnull;
	Datum		value = heap_getattr(tuple, columns[RC_ENVIRONMENT], tupdesc, &isnull);

	/* a NULL environment is left to the column's NOT NULL constraint */
	if (!isnull && !text_equals(value, "live") && !text_equals(value, "test"))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid environment for an enrichment request"),
				 errdetail("%s is not an environment.", quote_value(TextDatumGetCString(value))),
				 errhint("The environment is 'live' or 'test'.")));
	if (enrich_request_check(r, &p))
		return;
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

/*
 * enrich.requests_check() is the BEFORE INSERT OR UPDATE row trigger of
 * enrich.requests: it refuses an invalid request with an error naming the
 * column, and sets identifier.  A row inserted as failed (a watched table's
 * malformed identifier), or by enrich's own statements, which checked it
 * already, is kept as it is, only its identifier computed.  A row inserted
 * for a watched table belongs to the table's owner (owner, since 1.1).
 */
Datum
enrich_requests_check(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const int  *columns;
	TupleDesc	tupdesc;
	HeapTuple	tuple;
	EnrichRequestFields r;
	char	   *identifier;
	int			attnums[2];
	Datum		values[2];
	bool		nulls[2];
	int			ncolumns;
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

	refuse_source_change(trigdata, tuple, tupdesc, columns);

	/*
	 * enrich's own statements (enqueue_active) judged every row with
	 * enrich.request_problem, the same check, and made the refused ones
	 * failed: only the identifier is left to compute
	 */
	value = heap_getattr(tuple, columns[RC_STATE], tupdesc, &isnull);
	if (!enqueue_active && (isnull || !text_equals(value, "failed")))
		refuse_invalid_request(tuple, tupdesc, columns, &r);

	identifier = enrich_request_identifier(&r);
	attnums[0] = columns[RC_IDENTIFIER];
	values[0] = identifier ? CStringGetTextDatum(identifier) : (Datum) 0;
	nulls[0] = (identifier == NULL);
	ncolumns = 1;

	/* a row of a watched table belongs to the table's owner */
	value = heap_getattr(tuple, columns[RC_SOURCE_RELID], tupdesc, &isnull);
	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) && !isnull &&
		(attnums[1] = owner_column(trigdata->tg_relation)) > 0)
	{
		values[1] = source_owner(DatumGetObjectId(value), &isnull);
		if (!isnull)
		{
			nulls[1] = false;
			ncolumns = 2;
		}
	}
	return PointerGetDatum(heap_modify_tuple_by_cols(tuple, tupdesc, ncolumns, attnums,
													 values, nulls));
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
