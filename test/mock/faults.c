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

static mock_faults current = {.retry_after = 1,.endpoints = ALL_VENDOR_ENDPOINTS};
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
 * defaults (no fault, retry_after 1, every vendor endpoint).  On error it
 * writes a message naming the key to err and returns false.
 */
bool
faults_parse(json_object *obj, mock_faults *out, char *err, size_t errlen)
{
	mock_faults f = {.retry_after = 1,.endpoints = ALL_VENDOR_ENDPOINTS};
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
	mock_faults none = {.retry_after = 1,.endpoints = ALL_VENDOR_ENDPOINTS};

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
