/*-------------------------------------------------------------------------
 *
 * admin.c
 *	  The endpoints under /__mock/, which are not part of the vendor API: stats,
 *	  fault settings, reset and the person of an identifier.  No API key;
 *	  loopback clients only.  Faults never apply to them and they are not
 *	  counted in stats.
 *
 *-------------------------------------------------------------------------
 */
#include "mock.h"

#include <stdlib.h>
#include <string.h>

#define INVALID "invalid_request"

static const char *const no_args[] = {NULL};
static const char *const person_args[] = {
	"professionalSocialMediaUrl", "personId", "pdlId", NULL
};

/* get_arg returns the value of query parameter key, or NULL. */
static const char *
get_arg(const mock_call *call, const char *key)
{
	int			i;

	for (i = 0; i < call->nargs; i++)
		if (strcmp(call->args[i].key, key) == 0)
			return call->args[i].value ? call->args[i].value : "";
	return NULL;
}

/* POST /__mock/faults: replace the fault setting with the body. */
static void
set_faults(const mock_call *call, mock_reply *r)
{
	char		err[256];
	json_object *obj = mock_parse_json(call->body, call->body_len,
									   MOCK_JSON_DEPTH, err, sizeof(err));
	mock_faults f;

	if (obj == NULL)
	{
		reply_error(r, 400, INVALID, "%s", err);
		return;
	}
	if (!faults_parse(obj, &f, err, sizeof(err)))
	{
		json_object_put(obj);
		reply_error(r, 400, INVALID, "%s", err);
		return;
	}
	pthread_mutex_lock(&mock_lock);
	faults_set_locked(&f, obj);
	pthread_mutex_unlock(&mock_lock);
	reply_jobj(r, 200, obj);
}

/* GET /__mock/person: the person the mock returns for an identifier. */
static void
show_person(const mock_call *call, mock_reply *r)
{
	const char *url = get_arg(call, "professionalSocialMediaUrl");
	const char *person_id = get_arg(call, "personId");
	const char *pdl_id = get_arg(call, "pdlId");
	const char *given = url ? "professionalSocialMediaUrl" :
		person_id ? "personId" : "pdlId";
	const char *value = url ? url : person_id ? person_id : pdl_id;
	char	   *identifier;
	mock_outcome outcome;
	sbuf		b;

	if (value == NULL)
	{
		reply_error(r, 400, INVALID, "at least one of pdlId, personId, "
					"professionalSocialMediaUrl is required");
		return;
	}
	if (*value == '\0' || strlen(value) > MOCK_MAX_IDENTIFIER)
	{
		reply_error(r, 400, INVALID,
					"%s: must be a non-empty string of at most 2048 bytes", given);
		return;
	}
	if (url)
	{
		identifier = identity_normalize_url(url, strlen(url));
		if (identifier == NULL || identity_outcome(identifier) == OUTCOME_INVALID)
		{
			free(identifier);
			reply_error(r, 400, INVALID,
						"professionalSocialMediaUrl: not a LinkedIn profile URL");
			return;
		}
	}
	else
	{
		sbuf_init(&b, 64);
		sbuf_puts(&b, person_id ? "personId:" : "pdlId:");
		sbuf_puts(&b, value);
		identifier = sbuf_detach(&b, NULL);
	}

	outcome = identity_outcome(identifier);
	sbuf_init(&b, 1024);
	sbuf_puts(&b, "{\"identifier\":");
	sbuf_json_string(&b, identifier, strlen(identifier));
	sbuf_puts(&b, ",\"person\":");
	if (outcome == OUTCOME_INVALID || outcome == OUTCOME_NOT_FOUND)
		sbuf_puts(&b, "null");
	else
		identity_person_json(&b, identifier, url != NULL);
	sbuf_puts(&b, "}");
	free(identifier);
	reply_sbuf(r, 200, &b);
}

/* method_is answers 405 unless method is the expected one. */
static bool
method_is(const char *method, const char *want, const char *allow,
		  mock_reply *r)
{
	if (strcmp(method, want) == 0)
		return true;
	r->allow = allow;
	reply_error(r, 405, INVALID, "method %s is not allowed here (allowed: %s)",
				method, allow);
	return false;
}

/*
 * admin_handle serves one request under /__mock/.  Non-loopback clients get 403;
 * unknown query parameters are 400s as on the vendor endpoints.
 */
void
admin_handle(const char *method, const char *path, const mock_call *call,
			 mock_reply *r)
{
	if (!call->loopback)
	{
		reply_error(r, 403, "forbidden",
					"the /__mock endpoints are for loopback clients only");
		return;
	}

	if (strcmp(path, "/__mock/stats") == 0)
	{
		if (method_is(method, "GET", "GET", r) &&
			api_check_args(call, no_args, r))
		{
			json_object *obj;

			pthread_mutex_lock(&mock_lock);
			obj = stats_json_locked();
			pthread_mutex_unlock(&mock_lock);
			reply_jobj(r, 200, obj);
		}
	}
	else if (strcmp(path, "/__mock/faults") == 0)
	{
		if (strcmp(method, "POST") == 0)
		{
			if (api_check_args(call, no_args, r))
				set_faults(call, r);
		}
		else if (method_is(method, "GET", "GET, POST", r) &&
				 api_check_args(call, no_args, r))
		{
			json_object *obj;

			pthread_mutex_lock(&mock_lock);
			obj = faults_json_locked();
			pthread_mutex_unlock(&mock_lock);
			reply_jobj(r, 200, obj);
		}
	}
	else if (strcmp(path, "/__mock/reset") == 0)
	{
		if (method_is(method, "POST", "POST", r) &&
			api_check_args(call, no_args, r))
		{
			pthread_mutex_lock(&mock_lock);
			store_reset_locked();
			stats_reset_locked();
			ratelimit_reset_locked();
			faults_reset_locked();
			pthread_mutex_unlock(&mock_lock);
			reply_jobj(r, 200, json_tokener_parse("{\"reset\":true}"));
		}
	}
	else if (strcmp(path, "/__mock/person") == 0)
	{
		if (method_is(method, "GET", "GET", r) &&
			api_check_args(call, person_args, r))
			show_person(call, r);
	}
	else
		reply_error(r, 404, "not_found", "no such admin endpoint");
}
