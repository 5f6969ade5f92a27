/*-------------------------------------------------------------------------
 *
 * fuzz_api.c
 *	  The libFuzzer target of the wire module (src/api.c): every input is
 *	  given, as a response body or as a string argument, to every function
 *	  that reads what the API or a caller sends: the six response parsers,
 *	  enrich_api_error_index, enrich_api_normalize_linkedin_url,
 *	  enrich_api_build_bulk_body, enrich_api_build_worker_body,
 *	  enrich_api_outcome and the URL builders; and to json_ascii_escape.
 *
 *	  Besides what AddressSanitizer, UndefinedBehaviorSanitizer and
 *	  LeakSanitizer find, it aborts when a function breaks its contract:
 *	  a parser that reports success with a field missing, text handed back
 *	  that is not valid UTF-8, JSON text handed back that jsonb would refuse
 *	  (not a JSON object, NaN, a malformed number, \u0000), a timestamp
 *	  that is not a real date and time, a URL that is not normalized, or a
 *	  json-c tree still alive when a parser has returned (it would be freed
 *	  only when the caller's memory context is reset).
 *
 *	  ENRICH_FUZZ_SELFTEST=leak leaks a json-c object on every input, and
 *	  ENRICH_FUZZ_SELFTEST=overflow reads past the input, so that run.sh can
 *	  check that LeakSanitizer and AddressSanitizer are on.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>
#include <json-c/json.h>

#include "mb/pg_wchar.h"

#include "api.h"
#include "json_ascii.h"
#include "pg_shim.h"

#undef fprintf

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* the installation whose request references the harness reads */
#define FUZZ_INSTALLATION "0123456789ab"

static bool selftest_leak = false;
static bool selftest_read = false;
static volatile char selftest_sink;

ENRICH_NORETURN static void fuzz_fail(const char *target, const char *what);

/* fuzz_fail reports a broken contract and aborts, which libFuzzer records */
static void
fuzz_fail(const char *target, const char *what)
{
	fprintf(stderr, "fuzz_api: %s: %s\n", target, what);
	abort();
}

/*
 * settle ends one call: it frees the arena, and fails when a json-c tree
 * outlived the call
 */
static void
settle(const char *target)
{
	if (fuzz_arena_reset() > 0)
		fuzz_fail(target, "a json-c tree was still alive after the call returned");
}

/*
 * settle_items ends a call that parsed items: their members point into the
 * parsed tree, which lives until its memory context is reset.  The reset
 * frees it (a tree it missed would be reported as a leak).
 */
static void
settle_items(void)
{
	(void) fuzz_arena_reset();
}

/*
 * touch reads a string to its end, so ASan checks that it is all there, and
 * checks that it is UTF-8 as PostgreSQL defines it
 */
static size_t
touch(const char *s)
{
	size_t		len = s ? strlen(s) : 0;

	if (s != NULL && pg_encoding_verifymbstr(PG_UTF8, s, (int) len) != (int) len)
		fuzz_fail("touch", "text handed back is not valid UTF-8");
	return len;
}

/*
 * json_text_ok checks JSON text the way PostgreSQL's JSON lexer sees it,
 * independently of json-c: outside strings only true, false, null, JSON
 * numbers and punctuation; inside strings no \u0000, which jsonb refuses.
 * Without exponents, it also accepts only what jsonb's output can be.
 */
static bool
json_text_ok(const char *s, bool exponents)
{
	const char *p = s;

	while (*p)
	{
		if (*p == '"')
		{
			for (p++; *p != '"'; p++)
			{
				if (*p == '\0' || (unsigned char) *p < 0x20)
					return false;
				if (*p == '\\')
				{
					p++;
					if (*p == 'u' && strncmp(p + 1, "0000", 4) == 0)
						return false;
					if (*p == '\0')
						return false;
				}
			}
			p++;
		}
		else if (*p == '-' || (*p >= '0' && *p <= '9'))
		{
			if (*p == '-')
				p++;
			if (*p == '0')
			{
				p++;
				if (*p >= '0' && *p <= '9')
					return false;	/* a leading zero */
			}
			else if (*p >= '1' && *p <= '9')
				p += strspn(p, "0123456789");
			else
				return false;
			if (*p == '.')
			{
				p++;
				if (!(*p >= '0' && *p <= '9'))
					return false;
				p += strspn(p, "0123456789");
			}
			if (*p == 'e' || *p == 'E')
			{
				if (!exponents)
					return false;
				p++;
				if (*p == '+' || *p == '-')
					p++;
				if (!(*p >= '0' && *p <= '9'))
					return false;
				p += strspn(p, "0123456789");
			}
		}
		else if (strncmp(p, "true", 4) == 0)
			p += 4;
		else if (strncmp(p, "false", 5) == 0 || strncmp(p, "null", 4) == 0)
			p += (*p == 'f') ? 5 : 4;
		else if (strchr("{}[],: \t\r\n", *p) != NULL)
			p++;
		else
			return false;
	}
	return true;
}

/*
 * timestamp_ok checks an RFC 3339 timestamp handed back against the C
 * library's calendar: a real date and time, an offset within +-15:59
 */
static bool
timestamp_ok(const char *s)
{
	struct tm	tm;
	struct tm	back;
	time_t		t;
	int			n = 0;
	int			oh = 0;
	int			om = 0;
	char		sign;

	memset(&tm, 0, sizeof(tm));
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
			   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6 || n != 19)
		return false;
	s += n;
	if (*s == '.')
		s += 1 + strspn(s + 1, "0123456789");
	sign = *s;
	if (sign == '+' || sign == '-')
	{
		if (sscanf(s + 1, "%2d:%2d%n", &oh, &om, &n) != 2 || n != 5 ||
			oh > 15 || om > 59 || s[6] != '\0')
			return false;
	}
	else if (!(sign == 'Z' && s[1] == '\0'))
		return false;
	if (tm.tm_year < 1 || tm.tm_sec > 60)
		return false;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	if (tm.tm_sec == 60)
		tm.tm_sec = 59;			/* a leap second */
	back = tm;
	t = timegm(&back);
	gmtime_r(&t, &back);
	return back.tm_year == tm.tm_year && back.tm_mon == tm.tm_mon &&
		back.tm_mday == tm.tm_mday && back.tm_hour == tm.tm_hour &&
		back.tm_min == tm.tm_min && back.tm_sec == tm.tm_sec;
}

/* fuzz_malloc is malloc that fails the run instead of returning NULL */
static void *
fuzz_malloc(size_t n)
{
	void	   *p = malloc(n);

	if (p == NULL)
		fuzz_fail("malloc", "out of memory");
	return p;
}

/*
 * strict_json parses text as strict, UTF-8 JSON; NULL when it is not.  A
 * json-c whose strict mode refuses raw UTF-8 gets it as \u escapes, as
 * enrich's own parser does.
 */
static json_object *
strict_json(const char *text)
{
	json_tokener *tok = json_tokener_new_ex(ENRICH_API_MAX_DEPTH + 10);
	json_object *root;
	size_t		len = strlen(text);
	char	   *escaped;

	if (tok == NULL)
		fuzz_fail("strict_json", "out of memory");
	escaped = json_ascii_copy(text, &len, fuzz_malloc);
	if (escaped != NULL)
		text = escaped;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	root = json_tokener_parse_ex(tok, text, (int) len);
	if (json_tokener_get_error(tok) != json_tokener_success ||
		json_tokener_get_parse_end(tok) != len)
	{
		json_object_put(root);
		root = NULL;
	}
	json_tokener_free(tok);
	free(escaped);
	return root;
}

/* check_object_text checks JSON text handed back as an object (or NULL) */
static void
check_object_text(const char *target, const char *text)
{
	json_object *root;

	if (text == NULL)
		return;
	touch(text);
	root = strict_json(text);
	if (root == NULL || !json_object_is_type(root, json_type_object))
		fuzz_fail(target, "JSON text handed back is not a strict JSON object");
	json_object_put(root);
	if (!json_text_ok(text, true))
		fuzz_fail(target, "JSON text handed back holds what jsonb refuses");
}

/*
 * check_object_member checks a member of an item handed back as part of the
 * parsed tree (or NULL): as json-c writes it, it is a JSON object that jsonb
 * stores
 */
static void
check_object_member(const char *target, json_object *member)
{
	if (member == NULL)
		return;
	check_object_text(target, json_object_to_json_string_ext(member, JSON_C_TO_STRING_PLAIN));
}

/* check_status checks a batch status a parser accepted */
static void
check_status(const char *target, const EnrichBatchStatus *s)
{
	if (touch(s->batch_id) == 0 || s->status == NULL || s->created_at == NULL)
		fuzz_fail(target, "a batch status lacks batchId, status or createdAt");
	if (strcmp(s->status, "pending") != 0 && strcmp(s->status, "processing") != 0 &&
		strcmp(s->status, "completed") != 0 && strcmp(s->status, "failed") != 0)
		fuzz_fail(target, "a batch status has an unknown status");
	touch(s->created_at);
	touch(s->completed_at);
	if (!timestamp_ok(s->created_at) ||
		(s->completed_at != NULL && !timestamp_ok(s->completed_at)))
		fuzz_fail(target, "a batch status has a timestamp that is not a real date and time");
	if (s->total_count < 0 || s->processed_count < 0 ||
		s->success_count < 0 || s->failure_count < 0)
		fuzz_fail(target, "a batch status has a negative count");
}

/* check_item checks an item a parser accepted */
static void
check_item(const char *target, const EnrichItem *item)
{
	if (touch(item->item_id) == 0)
		fuzz_fail(target, "an item has no itemId");
	if (item->is_success && item->person == NULL)
		fuzz_fail(target, "a successful item has no person");
	if (!item->is_success && item->error == NULL)
		fuzz_fail(target, "a failed item has no error");
	if (item->error != NULL && (item->error_code == NULL || item->error_message == NULL))
		fuzz_fail(target, "an item's error has no code or message");
	touch(item->error_code);
	touch(item->error_message);
	check_object_member(target, item->metadata);
	check_object_member(target, item->person);
	check_object_member(target, item->error);
	if (item->request_id != -1 && item->request_id <= 0)
		fuzz_fail(target, "an item's request id is neither -1 nor positive");
	if (item->request_id > 0 && (item->request_check < 0 || item->request_check > 0xFFFF))
		fuzz_fail(target, "an item's check value is not 16 bits");
	if (item->request_id > 0 && item->metadata == NULL)
		fuzz_fail(target, "an item has a request id but no metadata");
}

/* fuzz_batch_id reads text as the answer to a bulk enrich */
static void
fuzz_batch_id(const char *text)
{
	char	   *batch_id;
	char	   *err = enrich_api_parse_batch_id(text, &batch_id);

	if (err == NULL && touch(batch_id) == 0)
		fuzz_fail("parse_batch_id", "success without a batch id");
	touch(err);
	settle("parse_batch_id");
}

/* fuzz_status reads text as a batch status */
static void
fuzz_status(const char *text)
{
	EnrichBatchStatus status;
	char	   *err = enrich_api_parse_status(text, &status);

	if (err == NULL)
		check_status("parse_status", &status);
	touch(err);
	settle("parse_status");
}

/* fuzz_batch_list reads text as a page of the batch list */
static void
fuzz_batch_list(const char *text)
{
	EnrichBatchList list;
	char	   *err = enrich_api_parse_batch_list(text, &list);

	if (list.nbatches < 0 || (list.nbatches > 0 && list.batches == NULL))
		fuzz_fail("parse_batch_list", "inconsistent number of batches");
	for (int i = 0; i < list.nbatches; i++)
		check_status("parse_batch_list", &list.batches[i]);
	if (err == NULL && list.total < 0)
		fuzz_fail("parse_batch_list", "negative total");
	touch(err);
	settle("parse_batch_list");
}

/* fuzz_item reads text as one item */
static void
fuzz_item(const char *text)
{
	EnrichItem	item;
	char	   *err = enrich_api_parse_item(text, &item);

	if (err == NULL)
		check_item("parse_item", &item);
	touch(err);
	settle_items();
}

/* fuzz_items_page reads text as a page of items */
static void
fuzz_items_page(const char *text)
{
	EnrichItemsPage page;
	char	   *err = enrich_api_parse_items_page(text, &page);

	if (page.nitems < 0 || (page.nitems > 0 && page.items == NULL))
		fuzz_fail("parse_items_page", "inconsistent number of items");
	for (int i = 0; i < page.nitems; i++)
		check_item("parse_items_page", &page.items[i]);
	touch(page.cursor);
	touch(err);
	settle_items();
}

/* fuzz_error reads text as an error envelope, and as the body of a 400 */
static void
fuzz_error(const char *text)
{
	char	   *code;
	char	   *message;
	EnrichHttpCall call;

	enrich_api_parse_error(text, &code, &message);
	touch(code);
	touch(message);
	settle("parse_error");

	memset(&call, 0, sizeof(call));
	call.method = "POST";
	call.url = "http://127.0.0.1/v2/test/person/bulk-enrich";
	call.status = 400;
	call.response = (char *) text;
	call.response_len = strlen(text);
	if (enrich_api_outcome(&call, 202, &message) != ENRICH_OUTCOME_BAD_REQUEST ||
		touch(message) == 0)
		fuzz_fail("outcome", "a 400 is not a bad request with a message");
	settle("outcome");
}

/* fuzz_error_index reads text as a 400's message */
static void
fuzz_error_index(const char *text)
{
	int			index = enrich_api_error_index(text);

	if (index < -1 || index >= ENRICH_API_MAX_REQUESTS)
		fuzz_fail("error_index", "an index out of range");
	settle("error_index");
}

/* fuzz_normalize reads text as a LinkedIn URL: a result is normalized */
static void
fuzz_normalize(const char *text)
{
	char	   *url = enrich_api_normalize_linkedin_url(text);
	char	   *again;

	if (url != NULL)
	{
		if (strncmp(url, "linkedin.com/", 13) != 0 ||
			strpbrk(url, "ABCDEFGHIJKLMNOPQRSTUVWXYZ?# \t\r\n\\") != NULL)
			fuzz_fail("normalize_linkedin_url", "the result is not normalized");
		again = enrich_api_normalize_linkedin_url(url);
		if (again == NULL || strcmp(again, url) != 0)
			fuzz_fail("normalize_linkedin_url", "normalizing is not idempotent");
	}
	settle("normalize_linkedin_url");
}

/* fuzz_bulk_body reads text as the requests of enrich_submit */
static void
fuzz_bulk_body(const char *text)
{
	char	   *body = NULL;
	int			n = -1;
	EnrichRequestProblem problem = {NULL, NULL};
	json_object *root;
	json_object *requests;

	if (!enrich_api_build_bulk_body(text, &body, &n, &problem))
	{
		if (touch(problem.field) == 0 || touch(problem.reason) == 0)
			fuzz_fail("build_bulk_body", "a refusal without a field or a reason");
		settle("build_bulk_body");
		return;
	}
	if (n < 1 || n > ENRICH_API_MAX_REQUESTS || body == NULL)
		fuzz_fail("build_bulk_body", "accepted with a bad count or no body");
	root = strict_json(body);
	if (root == NULL ||
		!json_object_object_get_ex(root, "requests", &requests) ||
		!json_object_is_type(requests, json_type_array) ||
		json_object_array_length(requests) != (size_t) n)
		fuzz_fail("build_bulk_body", "the body is not strict JSON with n requests");
	json_object_put(root);
	settle("build_bulk_body");
}

/*
 * fuzz_worker_body builds a bulk body around metadata (strict JSON, as a
 * jsonb column gives it), then echoes each request's metadata back in an
 * item: the item must name the same request id and check value
 */
static void
fuzz_worker_body(const char *text, size_t size)
{
	EnrichOutgoing out[2];
	json_object *root;
	json_object *requests;

	/* metadata comes from a jsonb column: only what jsonb's output can be */
	root = strict_json(text);
	if (root == NULL)
		return;
	json_object_put(root);
	if (!json_text_ok(text, false))
		return;
	/* jsonb's output is valid UTF-8 */
	if (pg_encoding_verifymbstr(PG_UTF8, text, (int) strlen(text)) != (int) strlen(text))
		return;

	memset(out, 0, sizeof(out));
	out[0].request_id = 1;
	out[0].check = (int32) (size * 2654435761u);
	out[0].person_id = "p-1";
	out[0].metadata = text;
	/* the largest id the check bits leave room for */
	out[1].request_id = (INT64CONST(1) << 47) - 1;
	out[1].check = 0xFFFF;
	out[1].linkedin_url = "https://www.linkedin.com/in/jane-doe";
	out[1].metadata = text;
	root = strict_json(enrich_api_build_worker_body(out, 2));
	if (root == NULL ||
		!json_object_object_get_ex(root, "requests", &requests) ||
		json_object_array_length(requests) != 2)
		fuzz_fail("build_worker_body", "the body is not strict JSON with 2 requests");
	for (int i = 0; i < 2; i++)
	{
		json_object *meta = json_object_object_get(json_object_array_get_idx(requests, i),
												   "metadata");
		char	   *body = psprintf("{\"itemId\": \"i\", \"isSuccess\": true, \"isRetryable\": true, "
									"\"metadata\": %s, \"person\": {}}",
									json_object_to_json_string_ext(meta, JSON_C_TO_STRING_PLAIN));
		EnrichItem	item;
		char	   *err = enrich_api_parse_item(body, &item);

		if (err != NULL)
			fuzz_fail("build_worker_body", "the echoed metadata is refused as an item");
		if (item.request_id != out[i].request_id ||
			item.request_check != (out[i].check & 0xFFFF))
			fuzz_fail("build_worker_body", "the echoed metadata names another request id or check");
		/* another installation takes it for none of its own */
		enrich_api_set_installation("ba0000000000", false);
		err = enrich_api_parse_item(body, &item);
		enrich_api_set_installation(FUZZ_INSTALLATION, true);
		if (err != NULL || item.request_id != -1)
			fuzz_fail("build_worker_body", "another installation takes the echoed metadata for its own");
	}
	json_object_put(root);
	settle_items();				/* the body is checked by parsing it as items */
}

/* fuzz_urls puts text in every URL: it must come out percent-encoded */
static void
fuzz_urls(const char *text)
{
	const char *urls[5];

	urls[0] = enrich_api_url_bulk_enrich(text);
	urls[1] = enrich_api_url_batches("test", text, 1000, 0);
	urls[2] = enrich_api_url_batch("live", text);
	urls[3] = enrich_api_url_items("test", text, text, 50);
	urls[4] = enrich_api_url_item("test", text, text);
	for (int i = 0; i < 5; i++)
	{
		const char *path = urls[i] + strlen("https://api.aggknowledge.ai");

		if (strncmp(path, "/v2/", 4) != 0 ||
			strspn(path, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				   "0123456789-_.~/%?&=") != strlen(path))
			fuzz_fail("url", "a URL with an unescaped character");
	}
	settle("url");
}

/*
 * parse_with parses n bytes of text with a fresh tokener and the flags;
 * NULL when json-c refuses them
 */
static json_object *
parse_with(const char *text, size_t n, int flags)
{
	json_tokener *tok = json_tokener_new();
	json_object *obj;

	json_tokener_set_flags(tok, flags);
	obj = json_tokener_parse_ex(tok, text, (int) n);
	if (obj != NULL && json_tokener_get_parse_end(tok) != n)
	{
		json_object_put(obj);
		obj = NULL;
	}
	json_tokener_free(tok);
	return obj;
}

/*
 * fuzz_json_ascii checks json_ascii_escape, the json-c 0.17/0.18 strict
 * mode workaround, on every json-c: the escaped text parses to the same
 * value as the text itself (or both are refused), in the default mode and,
 * where this json-c has no defect, in strict mode too
 */
static void
fuzz_json_ascii(const char *text, size_t size)
{
	size_t		n = json_ascii_escape(text, size, NULL);
	char	   *escaped = malloc(n + 1);
	int			modes[2] = {0, JSON_TOKENER_STRICT};

	if (escaped == NULL)
		return;
	if (json_ascii_escape(text, size, escaped) != n)
		fuzz_fail("json_ascii", "the two passes disagree on the length");
	escaped[n] = '\0';
	for (int m = 0; m < (json_ascii_needed() ? 1 : 2); m++)
	{
		json_object *raw = parse_with(text, size, modes[m]);
		json_object *esc = parse_with(escaped, n, modes[m]);

		if ((raw == NULL) != (esc == NULL))
			fuzz_fail("json_ascii", "the escaped text is parsed differently");
		/* compared as text: json_object_equal says NaN is not NaN */
		if (raw != NULL &&
			strcmp(json_object_to_json_string_ext(raw, JSON_C_TO_STRING_PLAIN),
				   json_object_to_json_string_ext(esc, JSON_C_TO_STRING_PLAIN)) != 0)
			fuzz_fail("json_ascii", "the escaped text has another value");
		json_object_put(raw);
		json_object_put(esc);
	}
	free(escaped);
}

/* LLVMFuzzerTestOneInput gives one input to every target */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *text = malloc(size + 1);

	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	/* a self-test does only its deliberate mistake */
	if (selftest_leak)
		(void) json_tokener_parse("{\"leaked\": [1, 2, 3]}");
	if (selftest_read)
		selftest_sink = text[size + 1];
	if (selftest_leak || selftest_read)
	{
		free(text);
		return 0;
	}

	fuzz_batch_id(text);
	fuzz_status(text);
	fuzz_batch_list(text);
	fuzz_item(text);
	fuzz_items_page(text);
	fuzz_error(text);
	fuzz_error_index(text);
	fuzz_normalize(text);
	fuzz_bulk_body(text);
	fuzz_worker_body(text, size);
	fuzz_urls(text);
	fuzz_json_ascii(text, size);
	free(text);
	return 0;
}

int			LLVMFuzzerInitialize(int *argc, char ***argv);

/* LLVMFuzzerInitialize reads the self-test switches */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *selftest = getenv("ENRICH_FUZZ_SELFTEST");

	selftest_leak = selftest != NULL && strcmp(selftest, "leak") == 0;
	selftest_read = selftest != NULL && strcmp(selftest, "overflow") == 0;
	/* the corpus's items echo this installation's references, and 1.0's */
	enrich_api_set_installation(FUZZ_INSTALLATION, true);
	return 0;
}
