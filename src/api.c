/*-------------------------------------------------------------------------
 *
 * api.c
 *	  The only file that knows the wire format of the AggKnowledge V2 person
 *	  API: endpoint paths and query strings, the bulk enrich body and its
 *	  validation, LinkedIn URL normalization, the parsing of every response
 *	  (json-c, with a depth limit) and the mapping of API answers to
 *	  PostgreSQL errors for SQL callers.  A change of the vendor's format
 *	  should touch this file only.
 *
 * json-c allocates with malloc.  Every parsed tree is owned by a guard that
 * is registered as a reset callback on the current memory context, so an
 * error raised while a tree is alive (out of memory, say) still frees it.
 * Parsers never raise errors themselves: they return what is wrong, so the
 * worker can record it on a row instead.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <json-c/json.h>

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/memutils.h"

#include "api.h"
#include "guc.h"
#include "json_ascii.h"

/*
 * The metadata key that carries enrich's request reference beside the
 * caller's own keys; a caller's key of that name is replaced.  Its value,
 * "<installation>-<request id>-<check>", names the installation (12 hex
 * digits, random: no other database, and no earlier installation of this
 * one, sends the same), the request id, and 16 bits that the request's
 * identifier determines (4 hex digits), so that an item whose echoed
 * reference was altered to name another request of the batch is refused
 * instead of giving that request a stranger's person.  Quoted key, colon,
 * comma and the longest value (ids are below 2^47: 15 digits) take 48
 * bytes, the metadata a request keeps free.
 *
 * Before 1.1 the workers sent "enrichRequestId": the request id times
 * 65536 plus the check, with no installation.  An installation updated
 * from 1.0 with such submissions in doubt takes them for its own.
 */
#define ENRICH_REF_KEY "enrichRef"
#define ENRICH_LEGACY_ID_KEY "enrichRequestId"
#define ENRICH_REQUEST_CHECK_BITS 16
#define ENRICH_REQUEST_CHECK_MASK ((1 << ENRICH_REQUEST_CHECK_BITS) - 1)

/* this installation's id, and whether legacy references are its own */
static char installation_id[ENRICH_INSTALLATION_ID_LEN + 1] = "";
static bool installation_legacy = false;

/* a json-c tree tied to the memory context that was current at its parse */
typedef struct EnrichJsonGuard
{
	json_object *root;
	MemoryContextCallback callback;
} EnrichJsonGuard;

/* enrich_json_guard_release frees the tree once; a reset callback */
static void
enrich_json_guard_release(void *arg)
{
	EnrichJsonGuard *guard = (EnrichJsonGuard *) arg;

	if (guard->root != NULL)
		json_object_put(guard->root);
	guard->root = NULL;
}

/*
 * big_integer says whether the integer of n digits at s (its sign at s[-1]
 * when negative) does not fit in 64 bits
 */
static bool
big_integer(const char *s, size_t n, bool negative)
{
	const char *limit = negative ? "9223372036854775808" : "9223372036854775807";

	return n > 19 || (n == 19 && strncmp(s, limit, 19) > 0);
}

/*
 * widen_big_integers returns the body with "e0" after each integer that
 * does not fit in 64 bits, outside strings, or the body itself when it has
 * none (the rule).  json-c clamps such an integer silently; the same number
 * with an exponent of 0, which changes no value, it parses as a double that
 * keeps its text, whose digits numeric then stores exactly.
 */
static const char *
widen_big_integers(const char *text, size_t *len)
{
	StringInfoData out;
	bool		in_string = false;
	size_t		copied = 0;

	out.data = NULL;
	for (size_t i = 0; i < *len; i++)
	{
		char		c = text[i];
		size_t		start;
		size_t		digits;
		bool		integer = true;

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
			continue;
		}
		if (c == '"')
		{
			in_string = true;
			continue;
		}
		if (!(c == '-' || (c >= '0' && c <= '9')))
			continue;
		start = (c == '-') ? i + 1 : i;
		for (i = start; i < *len && text[i] >= '0' && text[i] <= '9'; i++)
			;
		digits = i - start;
		/* a fraction or an exponent: not an integer, read to its end */
		while (i < *len && (text[i] == '.' || text[i] == 'e' || text[i] == 'E' || text[i] == '+' ||
							text[i] == '-' || (text[i] >= '0' && text[i] <= '9')))
		{
			integer = false;
			i++;
		}
		if (integer && big_integer(text + start, digits, c == '-'))
		{
			if (out.data == NULL)
				initStringInfo(&out);
			appendBinaryStringInfo(&out, text + copied, i - copied);
			appendStringInfoString(&out, "e0");
			copied = i;
		}
		i--;					/* the character after the number is looked at next */
	}
	if (out.data == NULL)
		return text;
	appendBinaryStringInfo(&out, text + copied, *len - copied);
	*len = out.len;
	return out.data;
}

/* utf8_ok says whether n bytes at s are UTF-8 as PostgreSQL defines it */
static bool
utf8_ok(const char *s, size_t n)
{
	return n <= PG_INT32_MAX && pg_encoding_verifymbstr(PG_UTF8, s, (int) n) == (int) n;
}

/*
 * bad_utf8_path appends to path where below v the first text that is not
 * UTF-8 is (".person.fullName", "[3]"), and returns whether there is one
 */
static bool
bad_utf8_path(json_object *v, StringInfo path)
{
	if (json_object_is_type(v, json_type_string))
		return !utf8_ok(json_object_get_string(v), (size_t) json_object_get_string_len(v));
	if (json_object_is_type(v, json_type_array))
	{
		for (size_t i = 0; i < json_object_array_length(v); i++)
		{
			int			len = path->len;

			appendStringInfo(path, "[%zu]", i);
			if (bad_utf8_path(json_object_array_get_idx(v, i), path))
				return true;
			path->len = len;
			path->data[len] = '\0';
		}
	}
	if (json_object_is_type(v, json_type_object))
	{
		json_object_object_foreach(v, key, val)
		{
			int			len = path->len;

			if (!utf8_ok(key, strlen(key)))
			{
				appendStringInfoString(path, " (a member's name)");
				return true;
			}
			appendStringInfo(path, ".%s", key);
			if (bad_utf8_path(val, path))
				return true;
			path->len = len;
			path->data[len] = '\0';
		}
	}
	return false;
}

/*
 * bad_utf8_message says which field of a body that is not UTF-8 holds the
 * bytes, found by a lenient parse (json-c takes any byte in a string); when
 * even that fails, the offset of the first bad byte
 */
static char *
bad_utf8_message(const char *text, size_t len)
{
	EnrichJsonGuard *guard = palloc0(sizeof(EnrichJsonGuard));
	json_tokener *tok;
	StringInfoData path;
	char	   *msg;

	/* the tree is freed even if building the message raises an error */
	guard->callback.func = enrich_json_guard_release;
	guard->callback.arg = guard;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &guard->callback);
	tok = json_tokener_new_ex(ENRICH_API_MAX_DEPTH);
	if (tok != NULL)
	{
		guard->root = json_tokener_parse_ex(tok, text, (int) len);
		json_tokener_free(tok);
	}
	initStringInfo(&path);
	if (guard->root != NULL && bad_utf8_path(guard->root, &path))
		msg = psprintf("the body is not valid UTF-8: %s",
					   path.len > 0 ? path.data + (path.data[0] == '.') : "the value");
	else
		msg = psprintf("the body is not valid UTF-8 at byte %d",
					   pg_encoding_verifymbstr(PG_UTF8, text, (int) len));
	enrich_json_guard_release(guard);
	pfree(path.data);
	return msg;
}

/*
 * enrich_json_parse parses text with the depth limit into a guarded tree.
 * It returns NULL on success, else what is wrong.
 */
static char *
enrich_json_parse(const char *text, size_t len, EnrichJsonGuard **guard_out)
{
	EnrichJsonGuard *guard;
	json_tokener *tok;
	json_object *root;
	enum json_tokener_error jerr;
	size_t		end;
	char	   *escaped;

	*guard_out = NULL;
	if (text == NULL || len == 0)
		return pstrdup("the body is empty");
	if (len > PG_INT32_MAX)
		return pstrdup("the body is too large to parse");
	/* PostgreSQL stores what json-c hands back without checking its encoding */
	if (!utf8_ok(text, len))
		return bad_utf8_message(text, len);
	text = widen_big_integers(text, &len);
	/* a json-c whose strict mode refuses raw UTF-8 gets \u escapes */
	escaped = json_ascii_copy(text, &len, palloc);
	if (escaped != NULL)
		text = escaped;
	if (len > PG_INT32_MAX)
		return pstrdup("the body is too large to parse");

	guard = palloc0(sizeof(EnrichJsonGuard));
	guard->callback.func = enrich_json_guard_release;
	guard->callback.arg = guard;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &guard->callback);

	tok = json_tokener_new_ex(ENRICH_API_MAX_DEPTH);
	if (tok == NULL)
		return pstrdup("out of memory creating the JSON parser");
	/* no single quotes, trailing commas, comments or leading zeros */
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	root = json_tokener_parse_ex(tok, text, (int) len);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);

	if (jerr != json_tokener_success)
	{
		if (root)
			json_object_put(root);
		if (jerr == json_tokener_continue)
			return pstrdup("the body is not complete JSON");
		return psprintf("the body is not valid JSON: %s",
						json_tokener_error_desc(jerr));
	}
	guard->root = root;
	while (end < len && (text[end] == ' ' || text[end] == '\n' ||
						 text[end] == '\r' || text[end] == '\t'))
		end++;
	if (end < len)
	{
		enrich_json_guard_release(guard);
		return pstrdup("the body has data after its JSON value");
	}
	if (root == NULL)
		return pstrdup("the body is JSON null");
	*guard_out = guard;
	return NULL;
}

/*
 * enrich_json_done frees a guarded tree now (its callback then does
 * nothing).  A tree that parts of a result point into is left to its
 * memory context instead.
 */
static void
enrich_json_done(EnrichJsonGuard *guard)
{
	if (guard != NULL)
		enrich_json_guard_release(guard);
}

/*
 * Small typed accessors.  Each returns false when the member is absent or of
 * the wrong type; "nullable" members accept JSON null as absent.
 */
static bool
json_get_string(json_object *obj, const char *key, bool nullable, char **out)
{
	json_object *v;

	*out = NULL;
	if (!json_object_object_get_ex(obj, key, &v) || v == NULL)
		return nullable;
	if (!json_object_is_type(v, json_type_string))
		return false;
	*out = pnstrdup(json_object_get_string(v), json_object_get_string_len(v));
	return true;
}

static bool
json_get_bool(json_object *obj, const char *key, bool *out)
{
	json_object *v;

	if (!json_object_object_get_ex(obj, key, &v) ||
		!json_object_is_type(v, json_type_boolean))
		return false;
	*out = json_object_get_boolean(v);
	return true;
}

static bool
json_get_count(json_object *obj, const char *key, int32 *out)
{
	json_object *v;
	int64		n;

	if (!json_object_object_get_ex(obj, key, &v) ||
		!json_object_is_type(v, json_type_int))
		return false;
	n = json_object_get_int64(v);
	if (n < 0 || n > PG_INT32_MAX)
		return false;
	*out = (int32) n;
	return true;
}

/*
 * json_number_storable says whether a number, as json-c keeps its text, is a
 * JSON number that numeric (so jsonb) can store.  json-c also accepts NaN,
 * Infinity and "1."; numeric refuses an exponent of INT_MAX / 2 or more, a
 * display scale over NUMERIC_DSCALE_MAX (16383) digits, and a decimal weight
 * over 131071 (its int16 weight counts groups of four digits).
 */
static bool
json_number_storable(const char *s)
{
	const char *p = s;
	int64		intdigits = 0;	/* digits before the point, "0" excepted */
	int64		fracdigits = 0; /* digits after the point */
	int64		fraczeros = 0;	/* zeros after the point before a nonzero */
	int64		exponent = 0;
	bool		nonzero = false;
	bool		negexp = false;

	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
	{
		nonzero = true;
		for (; *p >= '0' && *p <= '9'; p++)
			intdigits++;
	}
	else
		return false;
	if (*p == '.')
	{
		p++;
		if (!(*p >= '0' && *p <= '9'))
			return false;
		for (; *p >= '0' && *p <= '9'; p++)
		{
			if (*p != '0')
				nonzero = true;
			else if (!nonzero)
				fraczeros++;
			fracdigits++;
		}
	}
	if (*p == 'e' || *p == 'E')
	{
		p++;
		if (*p == '+' || *p == '-')
			negexp = (*p++ == '-');
		if (!(*p >= '0' && *p <= '9'))
			return false;
		for (; *p >= '0' && *p <= '9'; p++)
		{
			if (exponent < PG_INT32_MAX)
				exponent = exponent * 10 + (*p - '0');
		}
		if (negexp)
			exponent = -exponent;
	}
	if (*p != '\0' || exponent >= PG_INT32_MAX / 2 || exponent <= -(PG_INT32_MAX / 2))
		return false;
	if (fracdigits - exponent > 16383)
		return false;
	if (nonzero &&
		(intdigits > 0 ? intdigits - 1 : -fraczeros - 1) + exponent > 131071)
		return false;
	return true;
}

/*
 * json_storable says whether jsonb can store a value as json-c writes it
 * back: its numbers must be storable, and no string may hold \u0000
 */
static bool
json_storable(json_object *v)
{
	switch (json_object_get_type(v))
	{
		case json_type_object:
			for (struct json_object_iterator it = json_object_iter_begin(v),
				 it_end = json_object_iter_end(v);
				 !json_object_iter_equal(&it, &it_end);
				 json_object_iter_next(&it))
			{
				if (!json_storable(json_object_iter_peek_value(&it)))
					return false;
			}
			return true;
		case json_type_array:
			for (size_t i = 0; i < json_object_array_length(v); i++)
			{
				if (!json_storable(json_object_array_get_idx(v, i)))
					return false;
			}
			return true;
		case json_type_string:
			return strlen(json_object_get_string(v)) == (size_t) json_object_get_string_len(v);
		case json_type_double:
			return json_number_storable(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
		default:
			return true;
	}
}

/*
 * json_get_object_member finds an object member that jsonb can store: NULL
 * when absent or null, false when it is present but not an object, or
 * holds a value that jsonb cannot store (one such value would otherwise
 * fail the whole page of items when it is written).  The member belongs to
 * the parsed tree, and lives as long as it.
 */
static bool
json_get_object_member(json_object *obj, const char *key, json_object **out)
{
	json_object *v;

	*out = NULL;
	if (!json_object_object_get_ex(obj, key, &v) || v == NULL)
		return true;
	if (!json_object_is_type(v, json_type_object) || !json_storable(v))
		return false;
	*out = v;
	return true;
}

/*
 * Paths and query strings
 */

/* append_escaped percent-encodes one path segment or query value */
static void
append_escaped(StringInfo buf, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
	{
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			(*p >= '0' && *p <= '9') || *p == '-' || *p == '_' ||
			*p == '.' || *p == '~')
			appendStringInfoChar(buf, (char) *p);
		else
		{
			appendStringInfoChar(buf, '%');
			appendStringInfoChar(buf, hex[*p >> 4]);
			appendStringInfoChar(buf, hex[*p & 15]);
		}
	}
}

/* start_url begins the URL of the bulk-enrich collection of an environment */
static void
start_url(StringInfo buf, const char *environment)
{
	size_t		len = strlen(enrich_api_url);

	initStringInfo(buf);
	while (len > 0 && enrich_api_url[len - 1] == '/')
		len--;
	appendBinaryStringInfo(buf, enrich_api_url, len);
	appendStringInfoString(buf, "/v2/");
	append_escaped(buf, environment);
	appendStringInfoString(buf, "/person/bulk-enrich");
}

char *
enrich_api_url_bulk_enrich(const char *environment)
{
	StringInfoData buf;

	start_url(&buf, environment);
	return buf.data;
}

char *
enrich_api_url_batches(const char *environment, const char *created_after,
					   int limit, int offset)
{
	StringInfoData buf;

	start_url(&buf, environment);
	appendStringInfo(&buf, "?limit=%d&offset=%d", limit, offset);
	if (created_after != NULL)
	{
		appendStringInfoString(&buf, "&createdAfter=");
		append_escaped(&buf, created_after);
	}
	return buf.data;
}

char *
enrich_api_url_batch(const char *environment, const char *batch_id)
{
	StringInfoData buf;

	start_url(&buf, environment);
	appendStringInfoChar(&buf, '/');
	append_escaped(&buf, batch_id);
	return buf.data;
}

char *
enrich_api_url_items(const char *environment, const char *batch_id,
					 const char *cursor, int limit)
{
	StringInfoData buf;

	start_url(&buf, environment);
	appendStringInfoChar(&buf, '/');
	append_escaped(&buf, batch_id);
	appendStringInfo(&buf, "/items?limit=%d", limit);
	if (cursor != NULL)
	{
		appendStringInfoString(&buf, "&cursor=");
		append_escaped(&buf, cursor);
	}
	return buf.data;
}

char *
enrich_api_url_item(const char *environment, const char *batch_id,
					const char *item_id)
{
	StringInfoData buf;

	start_url(&buf, environment);
	appendStringInfoChar(&buf, '/');
	append_escaped(&buf, batch_id);
	appendStringInfoString(&buf, "/items/");
	append_escaped(&buf, item_id);
	return buf.data;
}

/*
 * Requests
 */

/*
 * enrich_api_normalize_linkedin_url returns the normalized form of a LinkedIn
 * profile URL (linkedin.com/in/<slug>, linkedin.com/sales/lead/<id>,
 * linkedin.com/sales/people/<id>, linkedin.com/talent/profile/<id>), lower
 * case, without scheme, subdomain, query, fragment or trailing slash; NULL
 * when the text is not such a URL.  The API treats equal normalized forms as
 * the same person, so this is also the key that finds duplicates.
 */
char *
enrich_api_normalize_linkedin_url(const char *url)
{
	static const char *const prefixes[] = {"/in/", "/sales/lead/", "/sales/people/", "/talent/profile/"};
	char	   *s;
	char	   *host;
	char	   *path;
	char	   *end;
	size_t		hostlen;
	size_t		len;

	if (url == NULL || url[0] == '\0' || strlen(url) > ENRICH_API_MAX_IDENTIFIER)
		return NULL;
	s = pstrdup(url);
	for (char *p = s; *p; p++)
	{
		if (*p >= 'A' && *p <= 'Z')
			*p = *p - 'A' + 'a';
		else if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\\')
			return NULL;
	}

	host = s;
	if (strncmp(host, "https://", 8) == 0)
		host += 8;
	else if (strncmp(host, "http://", 7) == 0)
		host += 7;
	else if (strstr(host, "://") != NULL)
		return NULL;

	path = strchr(host, '/');
	if (path == NULL)
		return NULL;
	hostlen = path - host;
	/* linkedin.com or <subdomain>.linkedin.com, no port, no user info */
	if (!(hostlen == 12 && strncmp(host, "linkedin.com", 12) == 0) &&
		!(hostlen > 13 && strncmp(path - 13, ".linkedin.com", 13) == 0))
		return NULL;
	for (char *p = host; p < path; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
			return NULL;

	/* drop query and fragment, then trailing slashes */
	end = strpbrk(path, "?#");
	if (end != NULL)
		*end = '\0';
	len = strlen(path);
	while (len > 1 && path[len - 1] == '/')
		path[--len] = '\0';

	for (size_t i = 0; i < lengthof(prefixes); i++)
	{
		size_t		plen = strlen(prefixes[i]);

		if (strncmp(path, prefixes[i], plen) == 0 &&
			path[plen] != '\0' && strchr(path + plen, '/') == NULL)
			return psprintf("linkedin.com%s", path);
	}
	return NULL;
}

/* problem sets the field and reason of a refused request */
static bool
problem(EnrichRequestProblem *p, char *field, char *reason)
{
	p->field = field;
	p->reason = reason;
	return false;
}

/*
 * check_request validates one PersonEnrichmentRequest object exactly as the
 * API does, so that no call is made for input the API would refuse.
 */
static bool
check_request(json_object *req, int index, EnrichRequestProblem *p)
{
	static const char *const identifiers[] = {"pdlId", "personId", "professionalSocialMediaUrl"};
	bool		has_identifier = false;

	if (!json_object_is_type(req, json_type_object))
		return problem(p, psprintf("requests[%d]", index),
					   pstrdup("Each request must be a JSON object."));

	for (struct json_object_iterator it = json_object_iter_begin(req),
		 it_end = json_object_iter_end(req);
		 !json_object_iter_equal(&it, &it_end);
		 json_object_iter_next(&it))
	{
		const char *key = json_object_iter_peek_name(&it);
		json_object *val = json_object_iter_peek_value(&it);
		bool		known = false;

		for (size_t i = 0; i < lengthof(identifiers); i++)
		{
			if (strcmp(key, identifiers[i]) != 0)
				continue;
			known = true;
			if (!json_object_is_type(val, json_type_string) ||
				json_object_get_string_len(val) == 0 ||
				json_object_get_string_len(val) > ENRICH_API_MAX_IDENTIFIER)
				return problem(p, psprintf("requests[%d].%s", index, key),
							   psprintf("The value must be a non-empty string of at most %d bytes.",
										ENRICH_API_MAX_IDENTIFIER));
			if (i == 2 &&
				enrich_api_normalize_linkedin_url(json_object_get_string(val)) == NULL)
				return problem(p, psprintf("requests[%d].%s", index, key),
							   psprintf("\"%s\" is not a LinkedIn profile URL.",
										json_object_get_string(val)));
			has_identifier = true;
		}
		if (strcmp(key, "metadata") == 0)
		{
			known = true;
			if (val != NULL && !json_object_is_type(val, json_type_object))
				return problem(p, psprintf("requests[%d].metadata", index),
							   pstrdup("The metadata must be a JSON object."));
			if (val != NULL &&
				strlen(json_object_to_json_string_ext(val, JSON_C_TO_STRING_PLAIN)) > ENRICH_API_MAX_METADATA)
				return problem(p, psprintf("requests[%d].metadata", index),
							   psprintf("The metadata must be at most %d bytes serialized.",
										ENRICH_API_MAX_METADATA));
		}
		if (!known)
			return problem(p, psprintf("requests[%d].%s", index, key),
						   pstrdup("Unknown field: a request has only pdlId, personId, professionalSocialMediaUrl and metadata."));
	}
	if (!has_identifier)
		return problem(p, psprintf("requests[%d]", index),
					   pstrdup("At least one of pdlId, personId and professionalSocialMediaUrl is required."));
	return true;
}

/*
 * enrich_api_build_bulk_body validates a JSON array of requests and builds
 * the bulk enrich body from it.  On a refusal it returns false and says
 * which field is wrong and why.
 */
bool
enrich_api_build_bulk_body(const char *requests_json, char **body,
						   int *nrequests, EnrichRequestProblem *p)
{
	EnrichJsonGuard *guard;
	char	   *err;
	json_object *wrapper;
	size_t		n;

	err = enrich_json_parse(requests_json, strlen(requests_json), &guard);
	if (err != NULL)
		return problem(p, pstrdup("requests"), err);
	if (!json_object_is_type(guard->root, json_type_array))
	{
		enrich_json_done(guard);
		return problem(p, pstrdup("requests"),
					   pstrdup("The requests must be a JSON array."));
	}
	n = json_object_array_length(guard->root);
	if (n < 1 || n > ENRICH_API_MAX_REQUESTS)
	{
		enrich_json_done(guard);
		return problem(p, pstrdup("requests"),
					   psprintf("The array must hold 1 to %d requests, not %zu.",
								ENRICH_API_MAX_REQUESTS, n));
	}
	for (size_t i = 0; i < n; i++)
	{
		if (!check_request(json_object_array_get_idx(guard->root, i), (int) i, p))
		{
			enrich_json_done(guard);
			return false;
		}
	}

	wrapper = json_object_new_object();
	json_object_object_add(wrapper, "requests", json_object_get(guard->root));
	*body = pstrdup(json_object_to_json_string_ext(wrapper, JSON_C_TO_STRING_PLAIN));
	json_object_put(wrapper);
	enrich_json_done(guard);
	*nrequests = (int) n;
	return true;
}

/*
 * enrich_api_build_worker_body builds the bulk enrich body of requests the
 * worker claimed; each carries its request id in its metadata.  The rows
 * were validated when they were queued.
 */
char *
enrich_api_build_worker_body(const EnrichOutgoing *requests, int n)
{
	json_object *root = json_object_new_object();
	json_object *array = json_object_new_array_ext(n);
	char	   *body;

	if (installation_id[0] == '\0')
		elog(ERROR, "enrich: the installation id is not known yet");
	json_object_object_add(root, "requests", array);
	for (int i = 0; i < n; i++)
	{
		const EnrichOutgoing *r = &requests[i];
		json_object *req = json_object_new_object();
		json_object *meta = NULL;

		if (r->linkedin_url)
			json_object_object_add(req, "professionalSocialMediaUrl",
								   json_object_new_string(r->linkedin_url));
		if (r->person_id)
			json_object_object_add(req, "personId", json_object_new_string(r->person_id));
		if (r->pdl_id)
			json_object_object_add(req, "pdlId", json_object_new_string(r->pdl_id));
		if (r->metadata)
		{
			json_tokener *tok = json_tokener_new_ex(ENRICH_API_MAX_DEPTH);

			if (tok != NULL)
			{
				meta = json_tokener_parse_ex(tok, r->metadata, (int) strlen(r->metadata));
				json_tokener_free(tok);
			}
			if (meta != NULL && !json_object_is_type(meta, json_type_object))
			{
				json_object_put(meta);
				meta = NULL;
			}
		}
		if (meta == NULL)
			meta = json_object_new_object();
		json_object_object_add(meta, ENRICH_REF_KEY,
							   json_object_new_string(psprintf("%s-" INT64_FORMAT "-%04x",
															   installation_id, r->request_id,
															   (unsigned int) (r->check & ENRICH_REQUEST_CHECK_MASK))));
		json_object_object_add(req, "metadata", meta);
		json_object_array_add(array, req);
	}
	body = pstrdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN));
	json_object_put(root);
	return body;
}

/*
 * enrich_api_error_index finds the index of the offending request in a 400
 * message ("requests[17].professionalSocialMediaUrl: ..."), or -1
 */
int
enrich_api_error_index(const char *message)
{
	const char *p = message ? strstr(message, "requests[") : NULL;
	long		index = 0;

	if (p == NULL)
		return -1;
	p += 9;
	if (*p < '0' || *p > '9')
		return -1;
	while (*p >= '0' && *p <= '9' && index <= ENRICH_API_MAX_REQUESTS)
		index = index * 10 + (*p++ - '0');
	if (*p != ']' || index >= ENRICH_API_MAX_REQUESTS)
		return -1;
	return (int) index;
}

/*
 * Responses
 */

/* two_digits reads two decimal digits, or returns -1 */
static int
two_digits(const char *s)
{
	if (!(s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9'))
		return -1;
	return (s[0] - '0') * 10 + (s[1] - '0');
}

/*
 * looks_like_timestamp checks an RFC 3339 timestamp
 * (YYYY-MM-DDTHH:MM:SS, an optional fraction, then Z or +HH:MM or -HH:MM)
 * and its ranges, so that only text that timestamptz input accepts reaches
 * it: an error there would fail the worker's transaction on every poll
 */
static bool
looks_like_timestamp(const char *s)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:dd";
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int			year;
	int			month;
	int			day;
	size_t		i;

	for (i = 0; shape[i] != '\0'; i++)
	{
		if (shape[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != shape[i])
			return false;
	}
	year = two_digits(s) * 100 + two_digits(s + 2);
	month = two_digits(s + 5);
	day = two_digits(s + 8);
	if (year < 1 || month < 1 || month > 12 || day < 1 || day > mdays[month - 1] ||
		(month == 2 && day == 29 &&
		 !(year % 4 == 0 && (year % 100 != 0 || year % 400 == 0))) ||
		two_digits(s + 11) > 23 || two_digits(s + 14) > 59 || two_digits(s + 17) > 60)
		return false;
	if (s[i] == '.')
	{
		i++;
		if (!(s[i] >= '0' && s[i] <= '9'))
			return false;
		while (s[i] >= '0' && s[i] <= '9')
			i++;
	}
	if (s[i] == 'Z')
		i++;
	else if (s[i] == '+' || s[i] == '-')
	{
		if (two_digits(s + i + 1) < 0 || two_digits(s + i + 1) > 15 ||
			s[i + 3] != ':' || two_digits(s + i + 4) < 0 || two_digits(s + i + 4) > 59)
			return false;
		i += 6;
	}
	else
		return false;
	return s[i] == '\0' && i <= 40;
}

/* parse_status_object reads one BatchStatus */
static char *
parse_status_object(json_object *obj, EnrichBatchStatus *s)
{
	memset(s, 0, sizeof(*s));
	if (!json_object_is_type(obj, json_type_object))
		return pstrdup("a batch status is not a JSON object");
	if (!json_get_string(obj, "batchId", false, &s->batch_id) || s->batch_id[0] == '\0')
		return pstrdup("batchId is missing or not a non-empty string");
	if (!json_get_string(obj, "status", false, &s->status))
		return pstrdup("status is missing or not a string");
	if (strcmp(s->status, "pending") != 0 && strcmp(s->status, "processing") != 0 &&
		strcmp(s->status, "completed") != 0 && strcmp(s->status, "failed") != 0)
		return psprintf("status \"%s\" is not one of pending, processing, completed, failed",
						s->status);
	if (!json_get_string(obj, "createdAt", false, &s->created_at) ||
		!looks_like_timestamp(s->created_at))
		return pstrdup("createdAt is missing or not an RFC 3339 timestamp");
	if (!json_get_string(obj, "completedAt", true, &s->completed_at) ||
		(s->completed_at != NULL && !looks_like_timestamp(s->completed_at)))
		return pstrdup("completedAt is not an RFC 3339 timestamp or null");
	if (!json_get_count(obj, "totalCount", &s->total_count) ||
		!json_get_count(obj, "processedCount", &s->processed_count) ||
		!json_get_count(obj, "successCount", &s->success_count) ||
		!json_get_count(obj, "failureCount", &s->failure_count))
		return pstrdup("a count is missing or not a non-negative integer");
	return NULL;
}

/*
 * parse_request_ref reads the request reference an item echoes in its
 * metadata into item->request_id and request_check, when it names this
 * installation (or is a legacy id this installation may have sent); any
 * other item keeps request_id -1: not one of this installation's requests
 */
static void
parse_request_ref(json_object *meta, EnrichItem *item)
{
	json_object *ref;
	const char *s;
	char	   *end;
	int64		id;
	unsigned long check;

	if (json_object_object_get_ex(meta, ENRICH_REF_KEY, &ref))
	{
		if (!json_object_is_type(ref, json_type_string) || installation_id[0] == '\0')
			return;
		s = json_object_get_string(ref);
		if (strncmp(s, installation_id, ENRICH_INSTALLATION_ID_LEN) != 0 ||
			s[ENRICH_INSTALLATION_ID_LEN] != '-' ||
			!isdigit((unsigned char) s[ENRICH_INSTALLATION_ID_LEN + 1]))
			return;
		errno = 0;
		id = strtoll(s + ENRICH_INSTALLATION_ID_LEN + 1, &end, 10);
		if (errno != 0 || id <= 0 || *end != '-' || strlen(end + 1) != 4 ||
			strspn(end + 1, "0123456789abcdef") != 4)
			return;
		check = strtoul(end + 1, NULL, 16);
		item->request_id = id;
		item->request_check = (int32) check;
		return;
	}
	if (installation_legacy &&
		json_object_object_get_ex(meta, ENRICH_LEGACY_ID_KEY, &ref) &&
		json_object_is_type(ref, json_type_int) &&
		(json_object_get_int64(ref) >> ENRICH_REQUEST_CHECK_BITS) > 0)
	{
		item->request_id = json_object_get_int64(ref) >> ENRICH_REQUEST_CHECK_BITS;
		item->request_check = (int32) (json_object_get_int64(ref) & ENRICH_REQUEST_CHECK_MASK);
	}
}

/*
 * enrich_api_set_installation names the installation whose request
 * references the worker's bodies carry and its items must echo; legacy:
 * the references of 1.0's workers count as this installation's
 */
void
enrich_api_set_installation(const char *id, bool legacy)
{
	if (strlen(id) != ENRICH_INSTALLATION_ID_LEN)
		elog(ERROR, "enrich: installation id \"%s\" is not %d characters", id, ENRICH_INSTALLATION_ID_LEN);
	memcpy(installation_id, id, ENRICH_INSTALLATION_ID_LEN + 1);
	installation_legacy = legacy;
}

/* parse_item_object reads one Item */
static char *
parse_item_object(json_object *obj, EnrichItem *item)
{
	json_object *err;
	json_object *meta;

	memset(item, 0, sizeof(*item));
	if (!json_object_is_type(obj, json_type_object))
		return pstrdup("an item is not a JSON object");
	if (!json_get_string(obj, "itemId", false, &item->item_id) || item->item_id[0] == '\0')
		return pstrdup("itemId is missing or not a non-empty string");
	if (!json_get_bool(obj, "isSuccess", &item->is_success))
		return pstrdup("isSuccess is missing or not a boolean");
	if (!json_get_bool(obj, "isRetryable", &item->is_retryable))
		return pstrdup("isRetryable is missing or not a boolean");
	if (!json_get_object_member(obj, "metadata", &item->metadata))
		return pstrdup("metadata is not an object or null, or holds a value jsonb cannot store");
	item->request_id = -1;
	if (item->metadata != NULL &&
		json_object_object_get_ex(obj, "metadata", &meta))
		parse_request_ref(meta, item);
	if (!json_get_object_member(obj, "person", &item->person))
		return pstrdup("person is not an object or null, or holds a value jsonb cannot store");
	if (!json_get_object_member(obj, "error", &item->error))
		return pstrdup("error is not an object or null, or holds a value jsonb cannot store");
	if (item->is_success && item->person == NULL)
		return pstrdup("a successful item has no person");
	if (!item->is_success && item->error == NULL)
		return pstrdup("a failed item has no error");
	if (item->error != NULL &&
		json_object_object_get_ex(obj, "error", &err) &&
		(!json_get_string(err, "code", false, &item->error_code) ||
		 !json_get_string(err, "message", false, &item->error_message)))
		return pstrdup("error.code or error.message is missing or not a string");
	return NULL;
}

char *
enrich_api_parse_batch_id(const char *body, char **batch_id)
{
	EnrichJsonGuard *guard;
	char	   *err;

	*batch_id = NULL;
	err = enrich_json_parse(body, strlen(body), &guard);
	if (err == NULL &&
		(!json_object_is_type(guard->root, json_type_object) ||
		 !json_get_string(guard->root, "batchId", false, batch_id) ||
		 (*batch_id)[0] == '\0'))
		err = pstrdup("batchId is missing or not a non-empty string");
	enrich_json_done(guard);
	return err;
}

char *
enrich_api_parse_status(const char *body, EnrichBatchStatus *status)
{
	EnrichJsonGuard *guard;
	char	   *err;

	memset(status, 0, sizeof(*status));
	err = enrich_json_parse(body, strlen(body), &guard);
	if (err == NULL)
		err = parse_status_object(guard->root, status);
	enrich_json_done(guard);
	return err;
}

char *
enrich_api_parse_batch_list(const char *body, EnrichBatchList *list)
{
	EnrichJsonGuard *guard;
	json_object *batches;
	json_object *total;
	char	   *err;

	memset(list, 0, sizeof(*list));
	err = enrich_json_parse(body, strlen(body), &guard);
	if (err != NULL)
		return err;
	if (!json_object_is_type(guard->root, json_type_object) ||
		!json_object_object_get_ex(guard->root, "batches", &batches) ||
		!json_object_is_type(batches, json_type_array))
		err = pstrdup("batches is missing or not an array");
	else if (!json_object_object_get_ex(guard->root, "total", &total) ||
			 !json_object_is_type(total, json_type_int) ||
			 json_object_get_int64(total) < 0)
		err = pstrdup("total is missing or not a non-negative integer");
	else
	{
		size_t		n = json_object_array_length(batches);

		list->total = json_object_get_int64(total);
		list->batches = palloc0(sizeof(EnrichBatchStatus) * Max(n, 1));
		for (size_t i = 0; i < n && err == NULL; i++)
		{
			err = parse_status_object(json_object_array_get_idx(batches, i),
									  &list->batches[i]);
			if (err != NULL)
				err = psprintf("batches[%zu]: %s", i, err);
			else
				list->nbatches++;
		}
	}
	enrich_json_done(guard);
	return err;
}

char *
enrich_api_parse_item(const char *body, EnrichItem *item)
{
	EnrichJsonGuard *guard;
	char	   *err;

	memset(item, 0, sizeof(*item));
	err = enrich_json_parse(body, strlen(body), &guard);
	if (err == NULL)
		err = parse_item_object(guard->root, item);
	/* the item's members are parts of the tree: it lives on with them */
	return err;
}

char *
enrich_api_parse_items_page(const char *body, EnrichItemsPage *page)
{
	EnrichJsonGuard *guard;
	json_object *items;
	char	   *err;

	memset(page, 0, sizeof(*page));
	err = enrich_json_parse(body, strlen(body), &guard);
	if (err != NULL)
		return err;
	if (!json_object_is_type(guard->root, json_type_object) ||
		!json_object_object_get_ex(guard->root, "items", &items) ||
		!json_object_is_type(items, json_type_array))
		err = pstrdup("items is missing or not an array");
	else if (!json_object_object_get_ex(guard->root, "cursor", NULL) ||
			 !json_get_string(guard->root, "cursor", true, &page->cursor))
		err = pstrdup("cursor is missing or not a string or null");
	else
	{
		size_t		n = json_object_array_length(items);

		page->items = palloc0(sizeof(EnrichItem) * Max(n, 1));
		for (size_t i = 0; i < n && err == NULL; i++)
		{
			err = parse_item_object(json_object_array_get_idx(items, i),
									&page->items[i]);
			if (err != NULL)
				err = psprintf("items[%zu]: %s", i, err);
			else
				page->nitems++;
		}
	}
	/*
	 * the items' members (of those read) are parts of the tree: it lives on
	 * until enrich_api_free_items_page, or its memory context is reset
	 */
	page->tree = guard;
	return err;
}

/*
 * enrich_api_free_items_page frees a parsed page now, once its items are no
 * longer used (the worker holds a round's pages otherwise)
 */
void
enrich_api_free_items_page(EnrichItemsPage *page)
{
	enrich_json_done((EnrichJsonGuard *) page->tree);
	page->items = NULL;
	page->nitems = 0;
	page->tree = NULL;
}

/*
 * enrich_api_parse_error reads the error envelope {"error": {"code",
 * "message"}}; what cannot be read is left NULL.
 */
void
enrich_api_parse_error(const char *body, char **code, char **message)
{
	EnrichJsonGuard *guard;
	json_object *error;

	*code = NULL;
	*message = NULL;
	if (enrich_json_parse(body, strlen(body), &guard) != NULL)
		return;
	if (json_object_is_type(guard->root, json_type_object) &&
		json_object_object_get_ex(guard->root, "error", &error) &&
		json_object_is_type(error, json_type_object))
	{
		(void) json_get_string(error, "code", false, code);
		(void) json_get_string(error, "message", false, message);
	}
	enrich_json_done(guard);
}

/*
 * enrich_api_outcome says how a call ended for the worker, and gives the
 * words for it (the API's error message when it sent one)
 */
EnrichCallOutcome
enrich_api_outcome(EnrichHttpCall *call, long expected_status, char **message)
{
	char	   *code = NULL;
	char	   *text = NULL;

	if (call->failure != ENRICH_HTTP_OK)
	{
		*message = psprintf("%s: %s", enrich_http_failure_name(call->failure), call->error);
		return ENRICH_OUTCOME_TRANSIENT;
	}
	if (call->status == expected_status)
	{
		*message = NULL;
		return ENRICH_OUTCOME_OK;
	}
	enrich_api_parse_error(call->response, &code, &text);
	*message = psprintf("HTTP %ld: %s", call->status, text ? text : "no error message");
	switch (call->status)
	{
		case 400:
			return ENRICH_OUTCOME_BAD_REQUEST;
		case 401:
		case 403:
			return ENRICH_OUTCOME_UNAUTHORIZED;
		case 404:
			return ENRICH_OUTCOME_NOT_FOUND;
		case 413:
			return ENRICH_OUTCOME_TOO_LARGE;
		case 429:
			return ENRICH_OUTCOME_RATE_LIMITED;
		default:
			return ENRICH_OUTCOME_TRANSIENT;
	}
}

/*
 * Errors for SQL callers
 */

/* url_path returns the path and query of a URL, for messages */
static const char *
url_path(const char *url)
{
	const char *p = strstr(url, "://");

	p = p ? strchr(p + 3, '/') : NULL;
	return p ? p : url;
}

/*
 * enrich_api_check raises the error that a failed call deserves, with a
 * SQLSTATE fitting the cause, the API's message, the method, path and
 * status in the detail, and a hint where one helps.  It returns when the
 * call got the expected status.  It is one table of the causes a user may
 * meet, each with its error: longer than a screen, kept whole so that the
 * README's table of SQLSTATEs can be read against it.
 */
void
enrich_api_check(EnrichHttpCall *call, const char *environment, long expected_status)
{
	const char *path = url_path(call->url);
	char	   *code = NULL;
	char	   *message = NULL;
	const char *text;

	if (call->failure != ENRICH_HTTP_OK)
	{
		switch (call->failure)
		{
			case ENRICH_HTTP_TOO_LARGE:
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("AggKnowledge API response is larger than enrich.max_response_size (%d kB)",
								enrich_max_response_size_kb),
						 errdetail("%s %s", call->method, path)));
				break;
			case ENRICH_HTTP_TIMEOUT:
				ereport(ERROR,
						(errcode(ERRCODE_CONNECTION_FAILURE),
						 errmsg("AggKnowledge API call timed out: %s", call->error),
						 errdetail("%s %s", call->method, path),
						 errhint("The limits are enrich.timeout (%d ms) and enrich.connect_timeout (%d ms).",
								 enrich_timeout_ms, enrich_connect_timeout_ms)));
				break;
			case ENRICH_HTTP_TLS:
				ereport(ERROR,
						(errcode(ERRCODE_CONNECTION_FAILURE),
						 errmsg("TLS failure talking to the AggKnowledge API: %s", call->error),
						 errdetail("%s %s", call->method, path),
						 errhint("The server's certificate is verified against enrich.ca_file, or the system's trust store when it is empty.")));
				break;
			default:
				ereport(ERROR,
						(errcode(ERRCODE_CONNECTION_FAILURE),
						 errmsg("could not reach the AggKnowledge API: %s", call->error),
						 errdetail("%s %s", call->method, path),
						 errhint("Check enrich.api_url and the network.")));
				break;
		}
	}
	if (call->status == expected_status)
		return;

	enrich_api_parse_error(call->response, &code, &message);
	text = message ? message : "no error message";

	switch (call->status)
	{
		case 400:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("AggKnowledge API refused the request: %s", text),
					 errdetail("%s %s: HTTP 400", call->method, path)));
			break;
		case 401:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
					 errmsg("AggKnowledge API rejected the API key for environment \"%s\": %s",
							environment, text),
					 errdetail("%s %s: HTTP 401", call->method, path),
					 errhint("Set the key with enrich_set_api_key('%s', '...').", environment)));
			break;
		case 403:
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("AggKnowledge API key is not allowed for environment \"%s\": %s",
							environment, text),
					 errdetail("%s %s: HTTP 403", call->method, path),
					 errhint("Keys are per environment; set this environment's key with enrich_set_api_key('%s', '...').",
							 environment)));
			break;
		case 404:
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("AggKnowledge API found no such object: %s", text),
					 errdetail("%s %s: HTTP 404", call->method, path)));
			break;
		case 413:
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("AggKnowledge API refused a body this large: %s", text),
					 errdetail("%s %s: HTTP 413", call->method, path),
					 errhint("Send fewer requests at a time.")));
			break;
		case 429:
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("AggKnowledge API rate limit exceeded: %s", text),
					 errdetail("%s %s: HTTP 429", call->method, path),
					 call->retry_after >= 0 ?
					 errhint("Retry after %d s.", call->retry_after) :
					 errhint("Retry later.")));
			break;
		default:
			if (call->status >= 500 && call->status <= 599)
				ereport(ERROR,
						(errcode(ERRCODE_CONNECTION_FAILURE),
						 errmsg("AggKnowledge API is unavailable: %s", text),
						 errdetail("%s %s: HTTP %ld", call->method, path, call->status),
						 errhint("This is transient; retry later.")));
			else
				ereport(ERROR,
						(errcode(ERRCODE_PROTOCOL_VIOLATION),
						 errmsg("AggKnowledge API answered with unexpected HTTP status %ld: %s",
								call->status, text),
						 errdetail("%s %s: HTTP %ld", call->method, path, call->status)));
			break;
	}
}

/* enrich_api_malformed raises the error for a response that cannot be used */
void
enrich_api_malformed(EnrichHttpCall *call, const char *problem)
{
	ereport(ERROR,
			(errcode(ERRCODE_PROTOCOL_VIOLATION),
			 errmsg("malformed AggKnowledge API response: %s", problem),
			 errdetail("%s %s: HTTP %ld, %zu bytes", call->method, url_path(call->url),
					   call->status, call->response_len)));
	pg_unreachable();
}
