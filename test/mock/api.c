/*-------------------------------------------------------------------------
 *
 * api.c
 *	  The five vendor endpoints: bulk enrich, list batches, batch status,
 *	  fetch one item and list items.  Validates query parameters and bodies
 *	  (400s naming the field, and for bulk enrich the request index), then
 *	  asks the store.  Routing, keys, faults and rate limits were handled by
 *	  http.c before these run.
 *
 *-------------------------------------------------------------------------
 */
#include "mock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INVALID "invalid_request"
#define METADATA_RULE "must be a JSON object of at most 4096 bytes serialized, or null"
#define IDENT_RULE "must be a non-empty string of at most 2048 bytes"

static const char *const no_args[] = {NULL};
static const char *const list_batches_args[] = {"createdAfter", "limit", "offset", NULL};
static const char *const list_items_args[] = {"cursor", "limit", NULL};

/*
 * api_check_args answers 400 if a query parameter is not in allowed (a NULL
 * terminated list) or is given twice.  Returns true if all are fine.
 */
bool
api_check_args(const mock_call *call, const char *const *allowed,
			   mock_reply *r)
{
	int			i;
	int			j;

	for (i = 0; i < call->nargs; i++)
	{
		const char *const *a;
		char		name[128];

		for (a = allowed; *a; a++)
			if (strcmp(*a, call->args[i].key) == 0)
				break;
		mock_clip(name, sizeof(name), call->args[i].key);
		if (*a == NULL)
		{
			reply_error(r, 400, INVALID, "%s: unknown query parameter", name);
			return false;
		}
		for (j = 0; j < i; j++)
			if (strcmp(call->args[j].key, call->args[i].key) == 0)
			{
				reply_error(r, 400, INVALID, "%s: given more than once", name);
				return false;
			}
	}
	return true;
}

/* get_arg returns the value of a query parameter; *given says if present. */
static const char *
get_arg(const mock_call *call, const char *key, bool *given)
{
	int			i;

	for (i = 0; i < call->nargs; i++)
		if (strcmp(call->args[i].key, key) == 0)
		{
			*given = true;
			return call->args[i].value;
		}
	*given = false;
	return NULL;
}

/*
 * parse_date parses YYYY-MM-DD (a real calendar day) into seconds since the
 * epoch at 00:00:00 UTC of that day.
 */
static bool
parse_date(const char *s, int64_t *out)
{
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int64_t		y;
	int64_t		m;
	int64_t		d;
	int64_t		era;
	int64_t		yoe;
	int64_t		doy;
	int64_t		doe;
	bool		leap;
	int			i;

	if (s == NULL || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return false;
	for (i = 0; i < 10; i++)
		if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
			return false;
	y = atoi(s);
	m = atoi(s + 5);
	d = atoi(s + 8);
	leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (y < 1 || m < 1 || m > 12 || d < 1 ||
		d > mdays[m - 1] + ((m == 2 && leap) ? 1 : 0))
		return false;

	/* days from civil date, proleptic Gregorian calendar */
	y -= (m <= 2);
	era = y / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	*out = (era * 146097 + doe - 719468) * 86400;
	return true;
}

/* free_inputs releases validated bulk-enrich requests. */
static void
free_inputs(mock_input *in, int n)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		free(in[i].identifier);
		free(in[i].metadata);
		free(in[i].person);
	}
	free(in);
}

/* prefixed returns "<prefix><value>" as a new string. */
static char *
prefixed(const char *prefix, const char *value)
{
	size_t		p = strlen(prefix);
	size_t		v = strlen(value);
	char	   *s = mock_malloc(p + v + 1);

	memcpy(s, prefix, p);
	memcpy(s + p, value, v + 1);
	return s;
}

/*
 * validate_request checks requests[i] and fills in: its normalized
 * identifier and serialized metadata.  On error it answers 400 naming the
 * index and field and returns false.
 */
static bool
validate_request(int i, json_object *req, mock_input *in, mock_reply *r)
{
	json_object *url = NULL;
	json_object *person_id = NULL;
	json_object *pdl_id = NULL;
	json_object *metadata = NULL;
	struct json_object_iter field;

	if (!json_object_is_type(req, json_type_object))
	{
		reply_error(r, 400, INVALID, "requests[%d]: must be an object", i);
		return false;
	}

	json_object_object_foreachC(req, field)
	{
		const char *key = field.key;
		json_object *val = field.val;
		json_object **slot = NULL;

		if (strcmp(key, "professionalSocialMediaUrl") == 0)
			slot = &url;
		else if (strcmp(key, "personId") == 0)
			slot = &person_id;
		else if (strcmp(key, "pdlId") == 0)
			slot = &pdl_id;
		else if (strcmp(key, "metadata") == 0)
		{
			if (val != NULL)
			{
				size_t		len;

				if (!json_object_is_type(val, json_type_object))
				{
					reply_error(r, 400, INVALID, "requests[%d].metadata: %s",
								i, METADATA_RULE);
					return false;
				}
				json_object_to_json_string_length(val, JSON_C_TO_STRING_PLAIN, &len);
				if (len > MOCK_MAX_METADATA)
				{
					reply_error(r, 400, INVALID, "requests[%d].metadata: %s",
								i, METADATA_RULE);
					return false;
				}
			}
			metadata = val;
			continue;
		}
		else
		{
			char		name[128];

			mock_clip(name, sizeof(name), key);
			reply_error(r, 400, INVALID, "requests[%d].%s: unknown field", i, name);
			return false;
		}

		if (!json_object_is_type(val, json_type_string) ||
			json_object_get_string_len(val) == 0 ||
			json_object_get_string_len(val) > MOCK_MAX_IDENTIFIER)
		{
			reply_error(r, 400, INVALID, "requests[%d].%s: %s", i, key, IDENT_RULE);
			return false;
		}
		if (memchr(json_object_get_string(val), '\0',
				   (size_t) json_object_get_string_len(val)) != NULL)
		{
			reply_error(r, 400, INVALID,
						"requests[%d].%s: must not contain NUL characters", i, key);
			return false;
		}
		*slot = val;
	}

	if (url == NULL && person_id == NULL && pdl_id == NULL)
	{
		reply_error(r, 400, INVALID,
					"requests[%d]: at least one of pdlId, personId, "
					"professionalSocialMediaUrl is required", i);
		return false;
	}

	if (url)
	{
		in->identifier = identity_normalize_url(json_object_get_string(url),
												(size_t) json_object_get_string_len(url));
		if (in->identifier == NULL ||
			identity_outcome(in->identifier) == OUTCOME_INVALID)
		{
			reply_error(r, 400, INVALID,
						"requests[%d].professionalSocialMediaUrl: not a LinkedIn profile URL",
						i);
			return false;
		}
		in->is_url = true;
	}
	else if (person_id)
		in->identifier = prefixed("personId:", json_object_get_string(person_id));
	else
		in->identifier = prefixed("pdlId:", json_object_get_string(pdl_id));

	if (metadata)
	{
		size_t		len;
		const char *s = json_object_to_json_string_length(metadata,
														  JSON_C_TO_STRING_PLAIN |
														  JSON_C_TO_STRING_NOSLASHESCAPE,
														  &len);

		in->metadata = mock_strndup(s, len);
		in->metadata_len = len;
	}
	return true;
}

/* POST /v2/{env}/person/bulk-enrich: validate, then create the batch. */
static void
bulk_enrich(const mock_call *call, mock_reply *r)
{
	char		err[256];
	json_object *root;
	json_object *requests = NULL;
	mock_input *in;
	char		batch_id[64];
	bool		fail;
	int			n;
	int			i;
	sbuf		b;
	struct json_object_iter field;

	if (!api_check_args(call, no_args, r))
		return;
	root = mock_parse_json(call->body, call->body_len, MOCK_JSON_DEPTH,
						   err, sizeof(err));
	if (root == NULL)
	{
		reply_error(r, 400, INVALID, "%s", err);
		return;
	}
	if (!json_object_is_type(root, json_type_object))
	{
		json_object_put(root);
		reply_error(r, 400, INVALID, "body: must be a JSON object");
		return;
	}
	json_object_object_foreachC(root, field)
	{
		if (strcmp(field.key, "requests") != 0)
		{
			char		name[128];

			mock_clip(name, sizeof(name), field.key);
			json_object_put(root);
			reply_error(r, 400, INVALID, "%s: unknown field", name);
			return;
		}
		requests = field.val;
	}
	if (!json_object_is_type(requests, json_type_array) ||
		json_object_array_length(requests) < 1 ||
		json_object_array_length(requests) > MOCK_MAX_REQUESTS)
	{
		json_object_put(root);
		reply_error(r, 400, INVALID, "requests: must be an array of 1 to %d requests",
					MOCK_MAX_REQUESTS);
		return;
	}

	n = (int) json_object_array_length(requests);
	in = mock_malloc(sizeof(*in) * (size_t) n);
	memset(in, 0, sizeof(*in) * (size_t) n);
	for (i = 0; i < n; i++)
	{
		if (!validate_request(i, json_object_array_get_idx(requests, (size_t) i),
							  &in[i], r))
		{
			free_inputs(in, n);
			json_object_put(root);
			return;
		}
	}
	json_object_put(root);

	/* the person of every identifier, built outside the lock */
	for (i = 0; i < n; i++)
	{
		sbuf_init(&b, 512);
		identity_person_json(&b, in[i].identifier, in[i].is_url);
		in[i].person = sbuf_detach(&b, &in[i].person_len);
	}

	pthread_mutex_lock(&mock_lock);
	fail = call->faults_apply && faults_roll_locked(call->batch_fail_rate);
	store_create_batch_locked(call->env, in, n, fail, batch_id, sizeof(batch_id));
	pthread_mutex_unlock(&mock_lock);
	free_inputs(in, n);

	sbuf_init(&b, 64);
	sbuf_printf(&b, "{\"batchId\":\"%s\"}", batch_id);
	reply_sbuf(r, 202, &b);
}

/* GET /v2/{env}/person/bulk-enrich: batches, newest first. */
static void
list_batches(const mock_call *call, mock_reply *r)
{
	bool		given;
	const char *v;
	uint64_t	limit = 100;
	uint64_t	offset = 0;
	int64_t		after = -1;
	int64_t		now;
	sbuf		b;

	if (!api_check_args(call, list_batches_args, r))
		return;
	v = get_arg(call, "createdAfter", &given);
	if (given && !parse_date(v, &after))
	{
		reply_error(r, 400, INVALID, "createdAfter: must be a date YYYY-MM-DD");
		return;
	}
	v = get_arg(call, "limit", &given);
	if (given && (!mock_parse_uint(v, 1000, &limit) || limit < 1))
	{
		reply_error(r, 400, INVALID, "limit: must be an integer between 1 and 1000");
		return;
	}
	v = get_arg(call, "offset", &given);
	if (given && !mock_parse_uint(v, INT32_MAX, &offset))
	{
		reply_error(r, 400, INVALID, "offset: must be a non-negative integer");
		return;
	}

	sbuf_init(&b, 256);
	now = mock_mono_ms();
	pthread_mutex_lock(&mock_lock);
	store_list_batches_locked(&b, call->env, after, (int64_t) limit,
							  (int64_t) offset, now);
	pthread_mutex_unlock(&mock_lock);
	reply_sbuf(r, 200, &b);
}

/*
 * The endpoints below that address a batch answer 404 for an unknown batch
 * before looking at their query parameters: the query is checked first into
 * a side reply, which is used only if the batch exists.
 */

/* reply_not_found answers 404 for an unknown batch or item. */
static void
reply_not_found(mock_reply *r, const char *what, const char *id,
				mock_reply *pending)
{
	char		clipped[128];

	reply_free(pending);
	mock_clip(clipped, sizeof(clipped), id);
	reply_error(r, 404, "not_found", "%s %s not found", what, clipped);
}

/* GET /v2/{env}/person/bulk-enrich/{id}: one batch status. */
static void
batch_status(const mock_call *call, mock_reply *r)
{
	mock_reply	argerr = {0};
	bool		args_ok = api_check_args(call, no_args, &argerr);
	mock_batch *batch;
	int64_t		now = mock_mono_ms();
	sbuf		b;

	sbuf_init(&b, 256);
	pthread_mutex_lock(&mock_lock);
	batch = store_find_locked(call->env, call->batch_id);
	if (batch && args_ok)
		store_status_json_locked(&b, batch, now);
	pthread_mutex_unlock(&mock_lock);

	if (batch == NULL)
	{
		sbuf_free(&b);
		reply_not_found(r, "batch", call->batch_id, &argerr);
	}
	else if (!args_ok)
	{
		sbuf_free(&b);
		*r = argerr;
	}
	else
		reply_sbuf(r, 200, &b);
}

/* GET /v2/{env}/person/bulk-enrich/{id}/items/{itemId}: one item. */
static void
get_item(const mock_call *call, mock_reply *r)
{
	mock_reply	argerr = {0};
	bool		args_ok = api_check_args(call, no_args, &argerr);
	mock_batch *batch;
	bool		found = false;
	int64_t		now = mock_mono_ms();
	sbuf		b;

	sbuf_init(&b, 1024);
	pthread_mutex_lock(&mock_lock);
	batch = store_find_locked(call->env, call->batch_id);
	if (batch)
		found = store_item_json_locked(&b, batch, call->item_id, now);
	pthread_mutex_unlock(&mock_lock);

	if (batch == NULL || !found)
	{
		sbuf_free(&b);
		if (batch == NULL)
			reply_not_found(r, "batch", call->batch_id, &argerr);
		else
			reply_not_found(r, "item", call->item_id, &argerr);
	}
	else if (!args_ok)
	{
		sbuf_free(&b);
		*r = argerr;
	}
	else
		reply_sbuf(r, 200, &b);
}

/* GET /v2/{env}/person/bulk-enrich/{id}/items: a page of items. */
static void
list_items(const mock_call *call, mock_reply *r)
{
	mock_reply	argerr = {0};
	bool		args_ok = api_check_args(call, list_items_args, &argerr);
	bool		given;
	const char *cursor = NULL;
	const char *v;
	uint64_t	limit = 20;
	mock_batch *batch;
	bool		cursor_ok = false;
	bool		faulted = false;
	int64_t		now = mock_mono_ms();
	sbuf		b;

	if (args_ok)
	{
		v = get_arg(call, "limit", &given);
		if (given && (!mock_parse_uint(v, 50, &limit) || limit < 1))
		{
			reply_error(&argerr, 400, INVALID,
						"limit: must be an integer between 1 and 50");
			args_ok = false;
		}
		cursor = get_arg(call, "cursor", &given);
		if (given && cursor == NULL)
			cursor = "";		/* "?cursor" without a value */
	}

	sbuf_init(&b, 1024);
	pthread_mutex_lock(&mock_lock);
	batch = store_find_locked(call->env, call->batch_id);
	if (batch && args_ok)
		cursor_ok = store_items_page_locked(&b, batch, cursor, (int) limit,
											call->page_fault, &faulted, now);
	pthread_mutex_unlock(&mock_lock);

	if (batch == NULL)
	{
		sbuf_free(&b);
		reply_not_found(r, "batch", call->batch_id, &argerr);
	}
	else if (!args_ok)
	{
		sbuf_free(&b);
		*r = argerr;
	}
	else if (!cursor_ok)
	{
		sbuf_free(&b);
		reply_error(r, 400, INVALID, "cursor: unknown cursor");
	}
	else
	{
		reply_sbuf(r, 200, &b);
		r->hostile = faulted;
	}
}

/* api_handle dispatches a vendor request to its endpoint. */
void
api_handle(const mock_call *call, mock_reply *r)
{
	switch (call->endpoint)
	{
		case EP_BULK_ENRICH:
			bulk_enrich(call, r);
			break;
		case EP_LIST_BATCHES:
			list_batches(call, r);
			break;
		case EP_BATCH_STATUS:
			batch_status(call, r);
			break;
		case EP_GET_ITEM:
			get_item(call, r);
			break;
		case EP_LIST_ITEMS:
			list_items(call, r);
			break;
		default:
			reply_error(r, 404, "not_found", "no such endpoint");
			break;
	}
}
