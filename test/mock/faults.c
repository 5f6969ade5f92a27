/*-------------------------------------------------------------------------
 *
 * faults.c
 *	  The fault-injection setting (POST/GET /__mock/faults, --faults) and the
 *	  random generator, seeded by --seed, that decides each injected fault.
 *	  State functions are called with mock_lock held; faults_parse is pure.
 *
 *-------------------------------------------------------------------------
 */
#include "mock.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define ALL_VENDOR_ENDPOINTS ((1u << EP_VENDOR_COUNT) - 1)
#define ALL_ENVIRONMENTS ((1u << MOCK_ENV_LIVE) | (1u << MOCK_ENV_TEST))

/* The setting with no fault: what keys not given stand for. */
#define NO_FAULTS { \
	.retry_after = 1, \
	.endpoints = ALL_VENDOR_ENDPOINTS, \
	.environments = ALL_ENVIRONMENTS, \
	.hostile = HOSTILE_NONE, \
	.hostile_rate = 1.0, \
	.hostile_item = -1, \
	.hostile_fields = HOSTILE_ALL_FIELDS, \
	.hostile_size_mib = 20, \
	.hostile_depth = 10000, \
}

/* The hostile kinds, by the name the setting uses. */
const char *const mock_hostile_names[HOSTILE_COUNT] = {
	"none", "oversized", "deep", "wrong_types", "missing_fields", "bad_values",
	"duplicate_items", "replay_cursor", "rewind_cursor", "foreign_metadata", "far_future",
	"bad_utf8"
};

static mock_faults current = NO_FAULTS;
static json_object *current_given;	/* the object as set, for GET */
static uint64_t rng_state;
static bool rng_seeded;

/* get_probability reads a number between 0 and 1. */
static bool
get_probability(json_object *v, double *out)
{
	double		d;

	if (!json_object_is_type(v, json_type_int) &&
		!json_object_is_type(v, json_type_double))
		return false;
	d = json_object_get_double(v);
	if (!(d >= 0.0 && d <= 1.0))
		return false;
	*out = d;
	return true;
}

/* get_integer reads a JSON integer between min and max. */
static bool
get_integer(json_object *v, int64_t min, int64_t max, int64_t *out)
{
	int64_t		i;

	if (!json_object_is_type(v, json_type_int))
		return false;
	i = json_object_get_int64(v);
	if (i < min || i > max)
		return false;
	*out = i;
	return true;
}

/* get_endpoints reads an array of vendor endpoint names into a bit mask. */
static bool
get_endpoints(json_object *v, unsigned *out)
{
	size_t		n;
	size_t		i;
	unsigned	mask = 0;

	if (!json_object_is_type(v, json_type_array))
		return false;
	n = json_object_array_length(v);
	for (i = 0; i < n; i++)
	{
		json_object *e = json_object_array_get_idx(v, i);
		int			ep;

		if (!json_object_is_type(e, json_type_string))
			return false;
		for (ep = 0; ep < EP_VENDOR_COUNT; ep++)
			if (strcmp(json_object_get_string(e), mock_endpoint_names[ep]) == 0)
				break;
		if (ep == EP_VENDOR_COUNT)
			return false;
		mask |= 1u << ep;
	}
	*out = mask;
	return true;
}

/* get_environments reads an array of environment names into a bit mask. */
static bool
get_environments(json_object *v, unsigned *out)
{
	size_t		n;
	size_t		i;
	unsigned	mask = 0;

	if (!json_object_is_type(v, json_type_array))
		return false;
	n = json_object_array_length(v);
	for (i = 0; i < n; i++)
	{
		json_object *e = json_object_array_get_idx(v, i);
		const char *name;

		if (!json_object_is_type(e, json_type_string))
			return false;
		name = json_object_get_string(e);
		if (strcmp(name, "live") == 0)
			mask |= 1u << MOCK_ENV_LIVE;
		else if (strcmp(name, "test") == 0)
			mask |= 1u << MOCK_ENV_TEST;
		else
			return false;
	}
	*out = mask;
	return true;
}

/* get_hostile reads the name of a hostile kind. */
static bool
get_hostile(json_object *v, mock_hostile *out)
{
	int			k;

	if (!json_object_is_type(v, json_type_string))
		return false;
	for (k = HOSTILE_NONE + 1; k < HOSTILE_COUNT; k++)
		if (strcmp(json_object_get_string(v), mock_hostile_names[k]) == 0)
		{
			*out = (mock_hostile) k;
			return true;
		}
	return false;
}

/* get_fields reads a non-empty array of hostile field names into a mask. */
static bool
get_fields(json_object *v, uint32_t *out)
{
	size_t		n;
	size_t		i;
	uint32_t	mask = 0;

	if (!json_object_is_type(v, json_type_array))
		return false;
	n = json_object_array_length(v);
	if (n == 0)
		return false;
	for (i = 0; i < n; i++)
	{
		json_object *e = json_object_array_get_idx(v, i);
		int			f;

		if (!json_object_is_type(e, json_type_string))
			return false;
		f = hostile_field_index(json_object_get_string(e));
		if (f < 0)
			return false;
		mask |= UINT32_C(1) << f;
	}
	*out = mask;
	return true;
}

/*
 * The parameters of the hostile fault: each is valid only with "hostile"
 * set to one of the kinds in its mask.
 */
#define HK(k) (1u << (k))
static const struct
{
	const char *name;
	unsigned	kinds;
}			hostile_params[] = {
	{"hostile_rate", ((1u << HOSTILE_COUNT) - 1) & ~HK(HOSTILE_NONE)},
	{"hostile_item", HK(HOSTILE_WRONG_TYPES) | HK(HOSTILE_MISSING_FIELDS) |
	HK(HOSTILE_BAD_VALUES) | HK(HOSTILE_FOREIGN_METADATA) | HK(HOSTILE_BAD_UTF8)},
	{"hostile_fields", HK(HOSTILE_WRONG_TYPES) | HK(HOSTILE_MISSING_FIELDS) |
	HK(HOSTILE_BAD_VALUES) | HK(HOSTILE_BAD_UTF8)},
	{"hostile_size_mib", HK(HOSTILE_OVERSIZED)},
	{"hostile_chunked", HK(HOSTILE_OVERSIZED)},
	{"hostile_depth", HK(HOSTILE_DEEP)},
	{"hostile_offset", HK(HOSTILE_FOREIGN_METADATA)},
};

/* hostile_param returns the index of a hostile parameter, or -1. */
static int
hostile_param(const char *key)
{
	size_t		i;

	for (i = 0; i < sizeof(hostile_params) / sizeof(hostile_params[0]); i++)
		if (strcmp(key, hostile_params[i].name) == 0)
			return (int) i;
	return -1;
}

/*
 * check_hostile_params says, once every key is read, whether each hostile
 * parameter given fits the hostile kind given.
 */
static bool
check_hostile_params(json_object *obj, mock_hostile kind, char *err,
					 size_t errlen)
{
	struct json_object_iter field;

	json_object_object_foreachC(obj, field)
	{
		int			p = hostile_param(field.key);
		unsigned	k;
		sbuf		kinds;

		if (p < 0 || (hostile_params[p].kinds & HK(kind)))
			continue;
		if (kind == HOSTILE_NONE)
		{
			snprintf(err, errlen, "%s: needs hostile", field.key);
			return false;
		}
		sbuf_init(&kinds, 64);
		for (k = HOSTILE_NONE + 1; k < HOSTILE_COUNT; k++)
			if (hostile_params[p].kinds & HK(k))
				sbuf_printf(&kinds, "%s%s", kinds.len ? ", " : "",
							mock_hostile_names[k]);
		snprintf(err, errlen, "%s: applies only to hostile %s", field.key,
				 kinds.data);
		sbuf_free(&kinds);
		return false;
	}
	return true;
}

/* The probability settings, by name and place in mock_faults. */
static const struct
{
	const char *name;
	size_t		offset;
}			probabilities[] = {
	{"rate_429", offsetof(mock_faults, rate_429)},
	{"rate_5xx", offsetof(mock_faults, rate_5xx)},
	{"rate_drop", offsetof(mock_faults, rate_drop)},
	{"rate_drop_after", offsetof(mock_faults, rate_drop_after)},
	{"rate_malformed", offsetof(mock_faults, rate_malformed)},
	{"batch_fail_rate", offsetof(mock_faults, batch_fail_rate)},
	{"hostile_rate", offsetof(mock_faults, hostile_rate)},
};

/* probability_slot returns where probability setting key goes, or NULL. */
static double *
probability_slot(mock_faults *f, const char *key)
{
	size_t		i;

	for (i = 0; i < sizeof(probabilities) / sizeof(probabilities[0]); i++)
		if (strcmp(key, probabilities[i].name) == 0)
			return (double *) ((char *) f + probabilities[i].offset);
	return NULL;
}

/*
 * faults_parse validates a fault setting object.  Keys not given keep their
 * defaults (no fault, retry_after 1, every vendor endpoint and environment,
 * and the defaults of the hostile parameters).  On error it writes a
 * message naming the key to err and returns false.
 */
bool
faults_parse(json_object *obj, mock_faults *out, char *err, size_t errlen)
{
	mock_faults f = NO_FAULTS;
	struct json_object_iter field;

	if (!json_object_is_type(obj, json_type_object))
	{
		snprintf(err, errlen, "body: must be a JSON object of fault settings");
		return false;
	}

	json_object_object_foreachC(obj, field)
	{
		const char *key = field.key;
		json_object *val = field.val;
		double	   *probability = probability_slot(&f, key);
		bool		ok;
		const char *want;

		if (probability)
		{
			ok = get_probability(val, probability);
			want = "a number between 0 and 1";
		}
		else if (strcmp(key, "retry_after") == 0)
		{
			ok = get_integer(val, 1, 86400, &f.retry_after);
			want = "an integer between 1 and 86400";
		}
		else if (strcmp(key, "latency_ms") == 0)
		{
			ok = get_integer(val, 0, 3600000, &f.latency_ms);
			want = "an integer between 0 and 3600000";
		}
		else if (strcmp(key, "extra_field") == 0)
		{
			ok = json_object_is_type(val, json_type_boolean);
			if (ok)
				f.extra_field = json_object_get_boolean(val);
			want = "a boolean";
		}
		else if (strcmp(key, "endpoints") == 0)
		{
			ok = get_endpoints(val, &f.endpoints);
			want = "an array of endpoint names (bulk_enrich, list_batches, "
				"batch_status, get_item, list_items)";
		}
		else if (strcmp(key, "environments") == 0)
		{
			ok = get_environments(val, &f.environments);
			want = "an array of environment names (live, test)";
		}
		else if (strcmp(key, "hostile") == 0)
		{
			ok = get_hostile(val, &f.hostile);
			want = "one of oversized, deep, wrong_types, missing_fields, "
				"bad_values, duplicate_items, replay_cursor, rewind_cursor, "
				"foreign_metadata";
		}
		else if (strcmp(key, "hostile_item") == 0)
		{
			ok = get_integer(val, 0, 999, &f.hostile_item);
			want = "an integer between 0 and 999";
		}
		else if (strcmp(key, "hostile_fields") == 0)
		{
			ok = get_fields(val, &f.hostile_fields);
			want = "a non-empty array of response field names "
				"(listed in test/mock/README.md)";
		}
		else if (strcmp(key, "hostile_size_mib") == 0)
		{
			ok = get_integer(val, 1, 1024, &f.hostile_size_mib);
			want = "an integer between 1 and 1024";
		}
		else if (strcmp(key, "hostile_chunked") == 0)
		{
			ok = json_object_is_type(val, json_type_boolean);
			if (ok)
				f.hostile_chunked = json_object_get_boolean(val);
			want = "a boolean";
		}
		else if (strcmp(key, "hostile_depth") == 0)
		{
			ok = get_integer(val, 2, 1000000, &f.hostile_depth);
			want = "an integer between 2 and 1000000";
		}
		else if (strcmp(key, "hostile_offset") == 0)
		{
			ok = get_integer(val, -INT64_C(1000000000000000),
							 INT64_C(1000000000000000), &f.hostile_offset) &&
				f.hostile_offset != 0;
			want = "a non-zero integer between -10^15 and 10^15";
		}
		else
		{
			char		clipped[128];

			mock_clip(clipped, sizeof(clipped), key);
			snprintf(err, errlen, "%s: unknown fault", clipped);
			return false;
		}
		if (!ok)
		{
			snprintf(err, errlen, "%s: must be %s", key, want);
			return false;
		}
	}
	if (!check_hostile_params(obj, f.hostile, err, errlen))
		return false;
	*out = f;
	return true;
}

/*
 * faults_set_locked replaces the whole setting; given is the object it was
 * parsed from (a reference is taken, and it is what GET shows).
 */
void
faults_set_locked(const mock_faults *f, json_object *given)
{
	current = *f;
	json_object_put(current_given);
	current_given = given ? json_object_get(given) : NULL;
}

void
faults_get_locked(mock_faults *out)
{
	*out = current;
}

/* faults_json_locked returns the setting as last set ({} if none). */
json_object *
faults_json_locked(void)
{
	if (current_given)
		return json_object_get(current_given);
	return json_object_new_object();
}

/*
 * faults_reset_locked clears the setting and reseeds the generator, so a
 * run after a reset draws the same faults as a run after a start.
 */
void
faults_reset_locked(void)
{
	mock_faults none = NO_FAULTS;

	faults_set_locked(&none, NULL);
	rng_state = mock_conf.seed;
	rng_seeded = true;
}

/* faults_random_locked draws the next 64 random bits. */
uint64_t
faults_random_locked(void)
{
	if (!rng_seeded)
	{
		rng_state = mock_conf.seed;
		rng_seeded = true;
	}
	return mock_splitmix64(&rng_state);
}

/*
 * faults_roll_locked says whether an event of probability p happens.  A
 * probability of 0 or 1 draws nothing, so unrelated settings do not shift
 * the random sequence.
 */
bool
faults_roll_locked(double p)
{
	if (p <= 0.0)
		return false;
	if (p >= 1.0)
		return true;
	return (double) (faults_random_locked() >> 11) * (1.0 / 9007199254740992.0) < p;
}
