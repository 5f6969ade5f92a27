/*-------------------------------------------------------------------------
 *
 * hostile.c
 *	  Hostile responses, the "hostile" fault: a 2xx answer of a vendor
 *	  endpoint that breaks the contract on purpose, so that tests can check
 *	  that a client refuses it cleanly.
 *
 *	  oversized			the body padded to hostile_size_mib MiB, streamed from
 *						a callback (nothing that large is ever allocated):
 *						{"_mockPadding":"xxx...", <the real members>}
 *	  deep				the body nested hostile_depth levels:
 *						{"_mockDeep":[[[...]]], <the real members>}
 *	  wrong_types		every selected field of the wrong JSON type
 *	  missing_fields	every selected field left out
 *	  bad_values		every selected field of the right type but with an
 *						impossible value (negative count, unknown status, ...)
 *	  duplicate_items	a page of list items repeats items of the previous page
 *	  replay_cursor		the next cursor of a page is the one it was asked with
 *	  rewind_cursor		the next cursor of a page after the first is that of
 *						the first page
 *	  foreign_metadata	an item echoes the metadata of another batch
 *	  far_future		a completed batch's completedAt is 9999-12-31T23:59:59Z
 *	  bad_utf8			every selected string (and a person's fullName) ends
 *						in bytes that are not UTF-8
 *
 *	  The three page faults are decided by store.c while it builds the page;
 *	  the others rewrite the reply the endpoint built.  Nothing here runs
 *	  unless a hostile fault is set and drawn, so the normal path pays
 *	  nothing for it.
 *
 *-------------------------------------------------------------------------
 */
#include "mock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

/* The response fields the hostile_fields setting may name, by bit. */
static const char *const field_names[] = {
	"batchId", "status", "createdAt", "completedAt", "totalCount",
	"processedCount", "successCount", "failureCount", "batches", "total",
	"items", "cursor", "itemId", "isSuccess", "isRetryable", "metadata",
	"person", "error", "code", "message"
};

#define NFIELDS ((int) (sizeof(field_names) / sizeof(field_names[0])))

/* hostile_field_index returns the bit of a response field name, or -1. */
int
hostile_field_index(const char *name)
{
	int			i;

	for (i = 0; i < NFIELDS; i++)
		if (strcmp(name, field_names[i]) == 0)
			return i;
	return -1;
}

/* hostile_applies says whether a hostile kind can change an endpoint. */
bool
hostile_applies(mock_hostile kind, mock_endpoint ep)
{
	switch (kind)
	{
		case HOSTILE_OVERSIZED:
		case HOSTILE_DEEP:
		case HOSTILE_WRONG_TYPES:
		case HOSTILE_MISSING_FIELDS:
		case HOSTILE_BAD_VALUES:
		case HOSTILE_BAD_UTF8:
			return ep < EP_VENDOR_COUNT;
		case HOSTILE_DUPLICATE_ITEMS:
		case HOSTILE_REPLAY_CURSOR:
		case HOSTILE_REWIND_CURSOR:
			return ep == EP_LIST_ITEMS;
		case HOSTILE_FOREIGN_METADATA:
			return ep == EP_LIST_ITEMS || ep == EP_GET_ITEM;
		case HOSTILE_FAR_FUTURE:
			return ep == EP_BATCH_STATUS || ep == EP_LIST_BATCHES;
		default:
			return false;
	}
}

/* hostile_is_page_fault says whether store.c makes this one. */
bool
hostile_is_page_fault(mock_hostile kind)
{
	return kind == HOSTILE_DUPLICATE_ITEMS || kind == HOSTILE_REPLAY_CURSOR ||
		kind == HOSTILE_REWIND_CURSOR;
}

/* has_members says whether a JSON object text has members ({} has none). */
static bool
has_members(const char *body, size_t len)
{
	size_t		i;

	for (i = 1; i < len; i++)
		if (body[i] != ' ' && body[i] != '\t' && body[i] != '\n' && body[i] != '\r')
			return body[i] != '}';
	return false;
}

/* is_object_text says whether a reply body is a JSON object text. */
static bool
is_object_text(const mock_reply *r)
{
	return r->body != NULL && r->len >= 2 && r->body[0] == '{';
}

/*
 * deepen puts a member nested depth - 1 arrays deep in front of the
 * members of the body, so that the whole body nests depth levels.
 */
static bool
deepen(mock_reply *r, int64_t depth)
{
	static const char head[] = "{\"_mockDeep\":";
	size_t		arrays = (size_t) (depth - 1);
	sbuf		b;

	if (!is_object_text(r))
		return false;
	sbuf_init(&b, sizeof(head) + 2 * arrays + r->len + 1);
	sbuf_append(&b, head, sizeof(head) - 1);
	memset(b.data + b.len, '[', arrays);
	memset(b.data + b.len + arrays, ']', arrays);
	b.len += 2 * arrays;
	b.data[b.len] = '\0';
	if (has_members(r->body, r->len))
	{
		sbuf_append(&b, ",", 1);
		sbuf_append(&b, r->body + 1, r->len - 1);
	}
	else
		sbuf_append(&b, "}", 1);
	reply_sbuf(r, r->status, &b);
	return true;
}

/* wrong_type returns a value of another JSON type than v. */
static json_object *
wrong_type(json_object *v)
{
	json_object *out;
	size_t		n;
	size_t		i;

	switch (json_object_get_type(v))
	{
		case json_type_null:
			return json_object_new_int(0);
		case json_type_boolean:
			return json_object_new_string(json_object_get_boolean(v) ? "true" : "false");
		case json_type_int:
		case json_type_double:
			return json_object_new_string(json_object_get_string(v));
		case json_type_string:
			return json_object_new_int(42);
		case json_type_array:
			/* an array becomes an object keyed "0", "1", ... */
			out = json_object_new_object();
			n = json_object_array_length(v);
			for (i = 0; i < n; i++)
			{
				char		key[24];

				snprintf(key, sizeof(key), "%zu", i);
				json_object_object_add(out, key,
									   json_object_get(json_object_array_get_idx(v, i)));
			}
			return out;
		case json_type_object:
			{
				/* an object becomes the array of its values */
				struct json_object_iter field;

				out = json_object_new_array();
				json_object_object_foreachC(v, field)
					json_object_array_add(out, json_object_get(field.val));
				return out;
			}
	}
	return json_object_new_int(0);
}

/*
 * bad_value returns a value of the field's type that the contract does not
 * allow, or NULL when the field has none (arrays and open objects).
 */
static json_object *
bad_value(const char *field, json_object *v)
{
	if (strcmp(field, "status") == 0)
		return json_object_new_string("exploded");
	if (strcmp(field, "createdAt") == 0 || strcmp(field, "completedAt") == 0)
		return json_object_new_string("not-a-time");
	if (strcmp(field, "totalCount") == 0 || strcmp(field, "processedCount") == 0 ||
		strcmp(field, "successCount") == 0 || strcmp(field, "failureCount") == 0 ||
		strcmp(field, "total") == 0)
		return json_object_new_int(-1);
	if (strcmp(field, "isSuccess") == 0 || strcmp(field, "isRetryable") == 0)
		return json_object_new_boolean(!json_object_get_boolean(v));
	if (strcmp(field, "batchId") == 0 || strcmp(field, "itemId") == 0 ||
		strcmp(field, "cursor") == 0 || strcmp(field, "code") == 0 ||
		strcmp(field, "message") == 0)
		return json_object_new_string("");
	return NULL;
}

/*
 * bad_utf8 puts bytes that are not UTF-8 (a lone continuation byte, then a
 * lead byte without its continuation) after the text of parent's member
 * key: a string's own, or an object's fullName (a person).  Returns whether
 * it did.
 */
static bool
bad_utf8(json_object *parent, const char *key, json_object *v)
{
	json_object *name;
	sbuf		b;

	if (json_object_is_type(v, json_type_object) &&
		json_object_object_get_ex(v, "fullName", &name))
		return bad_utf8(v, "fullName", name);
	if (!json_object_is_type(v, json_type_string))
		return false;
	sbuf_init(&b, (size_t) json_object_get_string_len(v) + 4);
	sbuf_append(&b, json_object_get_string(v), (size_t) json_object_get_string_len(v));
	sbuf_append(&b, "\x80\xc3", 2);
	json_object_object_add(parent, key, json_object_new_string_len(b.data, (int) b.len));
	sbuf_free(&b);
	return true;
}

/*
 * mutate changes the selected fields of every object at or below v (not
 * inside metadata or person values, which are opaque), children first.
 * Returns whether anything changed.
 */
static bool
mutate(json_object *v, const mock_faults *f)
{
	bool		changed = false;

	if (json_object_is_type(v, json_type_array))
	{
		size_t		n = json_object_array_length(v);
		size_t		i;

		for (i = 0; i < n; i++)
			changed |= mutate(json_object_array_get_idx(v, i), f);
	}
	else if (json_object_is_type(v, json_type_object))
	{
		int			n = json_object_object_length(v);
		char	  **keys = mock_malloc(sizeof(char *) * (size_t) (n > 0 ? n : 1));
		struct json_object_iter field;
		int			k = 0;
		int			i;

		/* keys first: members are replaced or deleted below */
		json_object_object_foreachC(v, field)
			keys[k++] = mock_strdup(field.key);
		for (i = 0; i < k; i++)
		{
			json_object *val = json_object_object_get(v, keys[i]);
			int			bit = hostile_field_index(keys[i]);
			json_object *repl = NULL;

			if (strcmp(keys[i], "metadata") != 0 && strcmp(keys[i], "person") != 0)
				changed |= mutate(val, f);
			if (bit < 0 || !(f->hostile_fields & (UINT32_C(1) << bit)))
				continue;
			if (f->hostile == HOSTILE_MISSING_FIELDS)
			{
				json_object_object_del(v, keys[i]);
				changed = true;
				continue;
			}
			if (f->hostile == HOSTILE_BAD_UTF8)
			{
				changed |= bad_utf8(v, keys[i], val);
				continue;
			}
			if (f->hostile == HOSTILE_FAR_FUTURE)
				repl = (strcmp(keys[i], "completedAt") == 0 && json_object_is_type(val, json_type_string)) ?
					json_object_new_string("9999-12-31T23:59:59Z") : NULL;
			else
				repl = (f->hostile == HOSTILE_WRONG_TYPES) ? wrong_type(val) :
					bad_value(keys[i], val);
			if (repl)
			{
				json_object_object_add(v, keys[i], repl);
				changed = true;
			}
		}
		for (i = 0; i < k; i++)
			free(keys[i]);
		free(keys);
	}
	return changed;
}

/*
 * shift_request_ref shifts the request id an item's metadata carries by
 * offset: the id in enrichRef ("<installation>-<id>-<check>", the check
 * kept), or the integer enrichRequestId (enrich 1.0's); false when it
 * carries neither
 */
static bool
shift_request_ref(json_object *item, long long offset)
{
	json_object *meta;
	json_object *ref;
	char		installation[64];
	char		check[64];
	long long	id;
	char		text[160];

	if (!json_object_object_get_ex(item, "metadata", &meta))
		return false;
	if (json_object_object_get_ex(meta, "enrichRef", &ref) &&
		json_object_is_type(ref, json_type_string) &&
		sscanf(json_object_get_string(ref), "%63[^-]-%lld-%63s", installation, &id, check) == 3)
	{
		snprintf(text, sizeof(text), "%s-%lld-%s", installation, id + offset, check);
		json_object_object_add(meta, "enrichRef", json_object_new_string(text));
		return true;
	}
	if (!json_object_object_get_ex(meta, "enrichRequestId", &ref) ||
		!json_object_is_type(ref, json_type_int))
		return false;
	json_object_object_add(meta, "enrichRequestId",
						   json_object_new_int64(json_object_get_int64(ref) + offset));
	return true;
}

/*
 * foreign changes the metadata of one item: the request id in it shifted
 * by hostile_offset, or else the metadata of the item at the same place of
 * the batch created before this one in the same environment.
 */
static bool
foreign(json_object *item, const mock_faults *f, const mock_call *call)
{
	json_object *other;
	json_object *itemid;
	unsigned	seq;
	unsigned	index;
	char	   *text;
	char		err[256];

	if (!json_object_is_type(item, json_type_object))
		return false;
	if (f->hostile_offset != 0)
		return shift_request_ref(item, (long long) f->hostile_offset);

	if (!json_object_object_get_ex(item, "itemId", &itemid) ||
		!json_object_is_type(itemid, json_type_string) ||
		sscanf(json_object_get_string(itemid), "itm_%8u_%7u", &seq, &index) != 2)
		return false;
	pthread_mutex_lock(&mock_lock);
	text = store_foreign_metadata_locked(call->env, call->batch_id, (int) index);
	pthread_mutex_unlock(&mock_lock);
	if (text == NULL)
		return false;
	other = mock_parse_json(text, strlen(text), MOCK_JSON_DEPTH, err, sizeof(err));
	free(text);
	/* "null" parses to NULL too: the other item had no metadata */
	json_object_object_add(item, "metadata", other);
	return true;
}

/*
 * rewrite parses the reply, changes it as the fault says and serializes it
 * again.  On list items with hostile_item, only that item of the page
 * changes.
 */
static bool
rewrite(const mock_faults *f, const mock_call *call, mock_reply *r)
{
	char		err[256];
	json_object *root;
	json_object *items = NULL;
	bool		changed = false;

	if (!is_object_text(r))
		return false;
	root = mock_parse_json(r->body, r->len, MOCK_JSON_DEPTH + 8, err, sizeof(err));
	if (root == NULL)
		return false;

	if (call->endpoint == EP_LIST_ITEMS &&
		(f->hostile == HOSTILE_FOREIGN_METADATA || f->hostile_item >= 0))
	{
		size_t		n;
		size_t		i;

		if (json_object_object_get_ex(root, "items", &items) &&
			json_object_is_type(items, json_type_array))
		{
			n = json_object_array_length(items);
			for (i = 0; i < n; i++)
			{
				json_object *item = json_object_array_get_idx(items, i);

				if (f->hostile_item >= 0 && (int64_t) i != f->hostile_item)
					continue;
				if (f->hostile == HOSTILE_FOREIGN_METADATA)
					changed |= foreign(item, f, call);
				else
					changed |= mutate(item, f);
			}
		}
	}
	else if (f->hostile == HOSTILE_FOREIGN_METADATA)
		changed = foreign(root, f, call);	/* get item: the body is the item */
	else
		changed = mutate(root, f);

	if (changed)
		reply_jobj(r, r->status, root);
	else
		json_object_put(root);
	return changed;
}

/*
 * hostile_apply makes a 2xx reply hostile as the setting f says; the page
 * faults were made by store.c already (r->hostile set).  Returns whether
 * the reply changed.
 */
bool
hostile_apply(const mock_faults *f, const mock_call *call, mock_reply *r)
{
	bool		changed = false;

	switch (f->hostile)
	{
		case HOSTILE_OVERSIZED:
			if (is_object_text(r))
			{
				r->pad_to = f->hostile_size_mib * 1024 * 1024;
				r->pad_chunked = f->hostile_chunked;
				changed = true;
			}
			break;
		case HOSTILE_DEEP:
			changed = deepen(r, f->hostile_depth);
			break;
		case HOSTILE_WRONG_TYPES:
		case HOSTILE_MISSING_FIELDS:
		case HOSTILE_BAD_VALUES:
		case HOSTILE_FOREIGN_METADATA:
		case HOSTILE_FAR_FUTURE:
		case HOSTILE_BAD_UTF8:
			changed = rewrite(f, call, r);
			break;
		case HOSTILE_DUPLICATE_ITEMS:
		case HOSTILE_REPLAY_CURSOR:
		case HOSTILE_REWIND_CURSOR:
			changed = r->hostile;
			break;
		default:
			break;
	}
	r->hostile = changed;
	return changed;
}

/* ---------------------------------------------------------------------
 * The padded body of "oversized", streamed
 * ---------------------------------------------------------------------
 */

static const char pad_head[] = "{\"_mockPadding\":\"";

#define PAD_HEAD_LEN (sizeof(pad_head) - 1)
#define PAD_BLOCK (64 * 1024)

/* What the reader of a padded body needs. */
typedef struct padded
{
	char	   *rest;			/* the closing quote, then the real members */
	size_t		rest_len;
	uint64_t	pad;			/* bytes of 'x' */
	uint64_t	total;
} padded;

/* padded_read is libmicrohttpd's reader: the bytes at pos of the body. */
static ssize_t
padded_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	padded	   *p = cls;
	size_t		n = 0;

	if (pos >= p->total)
		return MHD_CONTENT_READER_END_OF_STREAM;
	while (n < max && pos < p->total)
	{
		size_t		take;

		if (pos < PAD_HEAD_LEN)
		{
			take = PAD_HEAD_LEN - (size_t) pos;
			if (take > max - n)
				take = max - n;
			memcpy(buf + n, pad_head + pos, take);
		}
		else if (pos < PAD_HEAD_LEN + p->pad)
		{
			uint64_t	left = PAD_HEAD_LEN + p->pad - pos;

			take = (left < max - n) ? (size_t) left : max - n;
			memset(buf + n, 'x', take);
		}
		else
		{
			size_t		at = (size_t) (pos - PAD_HEAD_LEN - p->pad);

			take = p->rest_len - at;
			if (take > max - n)
				take = max - n;
			memcpy(buf + n, p->rest + at, take);
		}
		n += take;
		pos += take;
	}
	return (ssize_t) n;
}

/* padded_free releases the reader's state once the response is done. */
static void
padded_free(void *cls)
{
	padded	   *p = cls;

	free(p->rest);
	free(p);
}

/*
 * hostile_padded_response builds the response of an oversized reply: the
 * body, padded in front to r->pad_to bytes (more if the body is larger),
 * with a Content-Length unless r->pad_chunked.  It takes r->body.
 */
struct MHD_Response *
hostile_padded_response(mock_reply *r)
{
	padded	   *p = mock_malloc(sizeof(*p));
	struct MHD_Response *resp;
	sbuf		rest;

	sbuf_init(&rest, r->len + 2);
	if (has_members(r->body, r->len))
	{
		sbuf_append(&rest, "\",", 2);
		sbuf_append(&rest, r->body + 1, r->len - 1);
	}
	else
		sbuf_append(&rest, "\"}", 2);
	reply_free(r);
	p->rest = sbuf_detach(&rest, &p->rest_len);
	p->total = PAD_HEAD_LEN + p->rest_len;
	if ((uint64_t) r->pad_to > p->total)
		p->total = (uint64_t) r->pad_to;
	p->pad = p->total - PAD_HEAD_LEN - p->rest_len;

	resp = MHD_create_response_from_callback(r->pad_chunked ? MHD_SIZE_UNKNOWN : p->total,
											 PAD_BLOCK, padded_read, p, padded_free);
	if (resp == NULL)
		padded_free(p);
	return resp;
}
