/*-------------------------------------------------------------------------
 *
 * http.c
 *	  The libmicrohttpd side of aggk-mock: the daemon, the request life
 *	  cycle, routing, API keys, fault injection, tier rate limits, request
 *	  bodies, replies and error envelopes, stats counting and the --verbose
 *	  log.
 *
 * A request is decided in two steps.  On the first call of the access
 * handler (headers only) come routing (404, 405), the key (401, 403), the
 * injected faults (drop, latency, 5xx, 429), the rate limit (429) and a
 * Content-Length over 4 MiB (413).  A drop closes the connection at once and
 * a 413 is answered at once (so the body is not read; libmicrohttpd then
 * closes the connection).  Any other early answer is kept and sent on the
 * last call, after the body was read and thrown away, because libmicrohttpd
 * closes a connection whose response was queued before the request was
 * complete, and keep-alive must survive 401s, 404s and 429s.  Without an
 * early answer the body is accumulated (at most 4 MiB kept) and the endpoint
 * runs on the last call (the hostile fault is drawn just before it, since
 * store.c builds a hostile page of items itself); after it, the drop-after,
 * malformed and hostile faults and the extra-field rewrite apply.
 *
 *-------------------------------------------------------------------------
 */
#include "mock.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#define MAX_SEGMENTS 6

/* Per-request state, kept in libmicrohttpd's con_cls. */
typedef struct request
{
	char	   *method;
	char	   *path;			/* decoded path, no query */
	char	   *segbuf;			/* copy of the path split at '/' */
	bool		admin;			/* /__mock/... */
	mock_endpoint endpoint;
	mock_env	env;
	const char *batch_id;
	const char *item_id;
	mock_arg   *args;
	int			nargs;
	int			capargs;
	sbuf		body;
	bool		too_large;
	bool		has_early;		/* decided before the body: send early_reply */
	mock_reply	early_reply;
	bool		answered;		/* a response was queued */
	bool		faults_apply;
	mock_faults faults;			/* snapshot taken on the first call */
	int64_t		start_ms;
} request;

static struct MHD_Daemon *daemon_handle;

/* ---------------------------------------------------------------------
 * Replies
 * ---------------------------------------------------------------------
 */

/* reply_json sets a reply to status with a malloc'd JSON body it now owns. */
void
reply_json(mock_reply *r, int status, char *body, size_t len)
{
	free(r->body);
	r->status = status;
	r->body = body;
	r->len = len;
}

/* reply_sbuf hands a string buffer over as the body of a reply. */
void
reply_sbuf(mock_reply *r, int status, sbuf *b)
{
	size_t		len;
	char	   *body = sbuf_detach(b, &len);

	reply_json(r, status, body, len);
}

/* reply_jobj serializes a json-c object into the reply and releases it. */
void
reply_jobj(mock_reply *r, int status, json_object *obj)
{
	size_t		len;
	const char *s = json_object_to_json_string_length(obj,
													  JSON_C_TO_STRING_PLAIN |
													  JSON_C_TO_STRING_NOSLASHESCAPE,
													  &len);

	reply_json(r, status, mock_strndup(s, len), len);
	json_object_put(obj);
}

/*
 * reply_error sets an error reply: {"error": {"code": ..., "message": ...}}
 * with the message formatted from fmt.
 */
void
reply_error(mock_reply *r, int status, const char *code, const char *fmt,...)
{
	sbuf		msg;
	sbuf		b;
	va_list		ap;

	sbuf_init(&msg, 128);
	va_start(ap, fmt);
	sbuf_vprintf(&msg, fmt, ap);
	va_end(ap);

	sbuf_init(&b, msg.len + 64);
	sbuf_printf(&b, "{\"error\":{\"code\":\"%s\",\"message\":", code);
	sbuf_json_string(&b, msg.data, msg.len);
	sbuf_puts(&b, "}}");
	sbuf_free(&msg);
	reply_sbuf(r, status, &b);
}

void
reply_free(mock_reply *r)
{
	free(r->body);
	r->body = NULL;
	r->len = 0;
}

/*
 * mock_clip copies s into out (outlen bytes), cut at a UTF-8 character
 * boundary and marked with "..." when too long, for quoting user input in
 * error messages.
 */
void
mock_clip(char *out, size_t outlen, const char *s)
{
	size_t		len = strlen(s);
	size_t		keep;

	if (len < outlen)
	{
		memcpy(out, s, len + 1);
		return;
	}
	keep = outlen - 4;
	while (keep > 0 && ((unsigned char) s[keep] & 0xC0) == 0x80)
		keep--;
	memcpy(out, s, keep);
	memcpy(out + keep, "...", 4);
}

/*
 * mock_parse_json parses a whole JSON text (strict, UTF-8 checked, at most
 * depth levels).  On error it returns NULL and writes a message saying what
 * is wrong and where to err.
 */
json_object *
mock_parse_json(const char *text, size_t len, int depth, char *err,
				size_t errlen)
{
	struct json_tokener *tok = json_tokener_new_ex(depth);
	json_object *obj;
	enum json_tokener_error jerr;
	char	   *escaped = NULL;

	/* a json-c whose strict mode refuses raw UTF-8 gets \u escapes instead */
	if (text != NULL && (escaped = json_ascii_copy(text, &len, mock_malloc)) != NULL)
		text = escaped;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, text ? text : "", (int) len);
	jerr = json_tokener_get_error(tok);
	if (obj == NULL && jerr == json_tokener_continue)
	{
		/* end of input: lets a bare number finish, else "unexpected end" */
		obj = json_tokener_parse_ex(tok, "", 1);
		jerr = json_tokener_get_error(tok);
	}
	if (obj == NULL)
	{
		if (len == 0)
			snprintf(err, errlen, "body: must be a JSON object, the body is empty");
		else
			snprintf(err, errlen, "body: malformed JSON: %s at byte %zu",
					 json_tokener_error_desc(jerr),
					 json_tokener_get_parse_end(tok));
	}
	json_tokener_free(tok);
	free(escaped);
	return obj;
}

/*
 * add_extra_field adds "_mockExtra" to every object below (and including)
 * obj, except inside "metadata" values, which are echoed verbatim.
 */
static void
add_extra_field(json_object *obj)
{
	if (json_object_is_type(obj, json_type_object))
	{
		json_object *extra;
		struct json_object_iter field;

		json_object_object_foreachC(obj, field)
		{
			if (strcmp(field.key, "metadata") != 0)
				add_extra_field(field.val);
		}
		extra = json_object_new_object();
		json_object_object_add(extra, "note", json_object_new_string("ignore me"));
		json_object_object_add(obj, "_mockExtra", extra);
	}
	else if (json_object_is_type(obj, json_type_array))
	{
		size_t		n = json_object_array_length(obj);
		size_t		i;

		for (i = 0; i < n; i++)
			add_extra_field(json_object_array_get_idx(obj, i));
	}
}

/* rewrite_extra_field applies the extra_field fault to a reply body. */
static void
rewrite_extra_field(mock_reply *r)
{
	char		err[256];
	json_object *obj;

	if (r->body == NULL)
		return;
	/* a little deeper than requests: metadata sits inside an items page */
	obj = mock_parse_json(r->body, r->len, MOCK_JSON_DEPTH + 8, err, sizeof(err));
	if (obj == NULL)
		return;
	add_extra_field(obj);
	reply_jobj(r, r->status, obj);
}

/* ---------------------------------------------------------------------
 * Sending
 * ---------------------------------------------------------------------
 */

/*
 * log_request writes the --verbose line of a finished request: when it
 * came (the monotonic clock, ms), what it asked, and how long it took.
 */
static void
log_request(const request *req, const char *outcome)
{
	if (!mock_conf.verbose)
		return;
	fprintf(stderr, "aggk-mock: %lld %s %s -> %s (%lld ms)\n",
			(long long) req->start_ms, req->method, req->path, outcome,
			(long long) (mock_mono_ms() - req->start_ms));
}

/* count_request counts a vendor or unknown-path request in stats. */
static void
count_request(const request *req, int status)
{
	if (req->admin)
		return;
	pthread_mutex_lock(&mock_lock);
	stats_count_locked(req->endpoint, status);
	pthread_mutex_unlock(&mock_lock);
}

/*
 * send_reply queues the reply on the connection, applying the extra_field
 * fault, counts it and frees the reply.
 */
static enum MHD_Result
send_reply(struct MHD_Connection *conn, request *req, mock_reply *r)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	char		status[64];

	if (r->body == NULL)
		reply_error(r, 500, "internal", "no reply");
	if (req->faults_apply && req->faults.extra_field)
		rewrite_extra_field(r);

	if (r->pad_to > 0)
		resp = hostile_padded_response(r);	/* takes the body */
	else
	{
		resp = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE);
		if (resp != NULL)
			r->body = NULL;		/* libmicrohttpd frees it */
	}
	if (resp == NULL)
	{
		reply_free(r);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	if (r->retry_after > 0)
	{
		char		ra[16];

		snprintf(ra, sizeof(ra), "%d", r->retry_after);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
	}
	if (r->allow)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
	ret = MHD_queue_response(conn, (unsigned int) r->status, resp);
	MHD_destroy_response(resp);

	count_request(req, r->status);
	if (r->hostile)
		snprintf(status, sizeof(status), "%d hostile %s", r->status,
				 mock_hostile_names[req->faults.hostile]);
	else
		snprintf(status, sizeof(status), "%d", r->status);
	log_request(req, status);
	return ret;
}

/* drop closes the connection without a response, counted as "drop". */
static enum MHD_Result
drop(request *req)
{
	count_request(req, STATS_DROP);
	log_request(req, "drop");
	return MHD_NO;
}

/*
 * answer_early keeps an error reply decided before the body, to be sent on
 * the last call of the access handler.
 */
static enum MHD_Result
answer_early(request *req, int status, const char *code, int retry_after,
			 const char *allow, const char *message)
{
	reply_error(&req->early_reply, status, code, "%s", message);
	req->early_reply.retry_after = retry_after;
	req->early_reply.allow = allow;
	req->has_early = true;
	return MHD_YES;
}

/* ---------------------------------------------------------------------
 * Routing and the checks before the body
 * ---------------------------------------------------------------------
 */

/*
 * route classifies the path and method.  It returns 0 for a vendor or
 * admin route, else the status to answer (404 or 405) with *message and,
 * for 405, *allow set.
 */
static int
route(request *req, const char **message, const char **allow)
{
	char	   *seg[MAX_SEGMENTS];
	int			n = 0;
	char	   *p;
	bool		get = strcmp(req->method, "GET") == 0;

	req->endpoint = EP_OTHER;
	if (strncmp(req->path, "/__mock/", 8) == 0)
	{
		req->admin = true;
		return 0;
	}
	*message = "no such path";
	if (strncmp(req->path, "/v2/", 4) != 0)
		return 404;

	/* split what follows /v2/ into segments; empty ones are not allowed */
	req->segbuf = mock_strdup(req->path + 4);
	p = req->segbuf;
	for (;;)
	{
		char	   *slash = strchr(p, '/');

		if (n == MAX_SEGMENTS || *p == '\0' || p == slash)
			return 404;
		seg[n++] = p;
		if (slash == NULL)
			break;
		*slash = '\0';
		p = slash + 1;
	}
	if (n < 3 || strcmp(seg[1], "person") != 0 || strcmp(seg[2], "bulk-enrich") != 0 ||
		(n >= 5 && strcmp(seg[4], "items") != 0))
		return 404;

	if (strcmp(seg[0], "live") == 0)
		req->env = MOCK_ENV_LIVE;
	else if (strcmp(seg[0], "test") == 0)
		req->env = MOCK_ENV_TEST;
	else
	{
		*message = "unknown environment (use live or test)";
		return 404;
	}

	if (n == 3)
	{
		if (get)
			req->endpoint = EP_LIST_BATCHES;
		else if (strcmp(req->method, "POST") == 0)
			req->endpoint = EP_BULK_ENRICH;
		else
		{
			*allow = "GET, POST";
			return 405;
		}
		return 0;
	}
	req->batch_id = seg[3];
	if (n == 6)
		req->item_id = seg[5];
	if (!get)
	{
		*allow = "GET";
		return 405;
	}
	req->endpoint = (n == 4) ? EP_BATCH_STATUS :
		(n == 5) ? EP_LIST_ITEMS : EP_GET_ITEM;
	return 0;
}

/* collect_arg stores one query parameter in the request. */
static enum MHD_Result
collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
			const char *value)
{
	request    *req = cls;

	(void) kind;
	if (req->nargs == req->capargs)
	{
		req->capargs = req->capargs ? req->capargs * 2 : 4;
		req->args = mock_realloc(req->args, sizeof(mock_arg) * (size_t) req->capargs);
	}
	req->args[req->nargs].key = key;
	req->args[req->nargs].value = value;
	req->nargs++;
	return MHD_YES;
}

/* is_loopback says whether the client connected from a loopback address. */
static bool
is_loopback(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *info =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = info ? info->client_addr : NULL;

	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET)
	{
		const struct sockaddr_in *sin = (const struct sockaddr_in *) sa;

		return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6)
	{
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *) sa;

		return IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr) ||
			(IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) &&
			 sin6->sin6_addr.s6_addr[12] == 127);
	}
	return false;
}

/* key_valid says whether key is an API key of environment env. */
static bool
key_valid(const char *key, mock_env env)
{
	char	  **keys = (env == MOCK_ENV_LIVE) ? mock_conf.live_keys : mock_conf.test_keys;
	int			n = (env == MOCK_ENV_LIVE) ? mock_conf.n_live_keys : mock_conf.n_test_keys;
	int			i;

	for (i = 0; i < n; i++)
		if (strcmp(keys[i], key) == 0)
			return true;
	return false;
}

/* sleep_ms waits ms milliseconds, cut short when the server stops. */
static void
sleep_ms(int64_t ms)
{
	while (ms > 0 && !atomic_load(&mock_stopping))
	{
		int64_t		step = ms < 50 ? ms : 50;
		struct timespec ts = {(time_t) (step / 1000), (long) (step % 1000) * 1000000L};

		nanosleep(&ts, NULL);
		ms -= step;
	}
}

/*
 * begin_request runs the checks that need no body, in the documented order.
 * A failed check keeps its answer in req->early_reply (sent once the body
 * is read), except a drop (MHD_NO) and a 413 by Content-Length (sent now).
 * Returns what the access handler returns.
 */
static enum MHD_Result
begin_request(struct MHD_Connection *conn, request *req)
{
	const char *message = NULL;
	const char *allow = NULL;
	const char *key;
	const char *clen;
	int			status;
	int			tier;
	int64_t		rate;
	int			retry;
	int			fault_status = 0;
	bool		drop_now = false;
	uint64_t	length;

	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_arg, req);

	status = route(req, &message, &allow);
	if (req->admin)
		return MHD_YES;			/* all checked once the body is in */
	if (status == 405)
	{
		char		msg[128];
		char		method[32];

		mock_clip(method, sizeof(method), req->method);
		snprintf(msg, sizeof(msg), "method %s is not allowed here (allowed: %s)",
				 method, allow);
		return answer_early(req, 405, "invalid_request", 0, allow, msg);
	}
	if (status != 0)
		return answer_early(req, 404, "not_found", 0, NULL, message);
	tier = (req->endpoint == EP_BULK_ENRICH) ? 3 : 4;
	rate = (tier == 3) ? mock_conf.tier3 : mock_conf.tier4;

	/* the fault setting of this request; extra_field applies to every reply */
	pthread_mutex_lock(&mock_lock);
	faults_get_locked(&req->faults);
	pthread_mutex_unlock(&mock_lock);
	req->faults_apply = (req->faults.endpoints & (1u << req->endpoint)) != 0 &&
		(req->faults.environments & (1u << req->env)) != 0;

	key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "x-api-key");
	if (key == NULL || *key == '\0')
		return answer_early(req, 401, "unauthorized", 0, NULL,
							"missing API key (header x-api-key)");
	if (!key_valid(key, req->env))
	{
		if (key_valid(key, req->env == MOCK_ENV_LIVE ? MOCK_ENV_TEST : MOCK_ENV_LIVE))
			return answer_early(req, 403, "forbidden", 0, NULL,
								req->env == MOCK_ENV_LIVE ?
								"this API key is not valid for the live environment" :
								"this API key is not valid for the test environment");
		return answer_early(req, 401, "unauthorized", 0, NULL, "unknown API key");
	}

	if (req->faults_apply)
	{
		pthread_mutex_lock(&mock_lock);
		drop_now = faults_roll_locked(req->faults.rate_drop);
		pthread_mutex_unlock(&mock_lock);
		if (drop_now)
			return drop(req);
		sleep_ms(req->faults.latency_ms);
		pthread_mutex_lock(&mock_lock);
		if (faults_roll_locked(req->faults.rate_5xx))
		{
			static const int codes[] = {500, 502, 503, 504};

			fault_status = codes[faults_random_locked() % 4];
		}
		else if (faults_roll_locked(req->faults.rate_429))
			fault_status = 429;
		pthread_mutex_unlock(&mock_lock);
		if (fault_status == 429)
			return answer_early(req, 429, "rate_limited",
								(int) req->faults.retry_after, NULL,
								"rate limit exceeded (injected fault)");
		if (fault_status == 500)
			return answer_early(req, 500, "internal", 0, NULL,
								"internal error (injected fault)");
		if (fault_status != 0)
			return answer_early(req, fault_status, "unavailable", 0, NULL,
								"service unavailable (injected fault)");
	}

	if (rate > 0)
	{
		pthread_mutex_lock(&mock_lock);
		retry = ratelimit_take_locked(key, tier, mock_mono_ms());
		pthread_mutex_unlock(&mock_lock);
		if (retry > 0)
		{
			char		msg[96];

			snprintf(msg, sizeof(msg),
					 "rate limit of tier %d exceeded (%lld requests per second)",
					 tier, (long long) rate);
			return answer_early(req, 429, "rate_limited", retry, NULL, msg);
		}
	}

	clen = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
									   MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (clen && mock_parse_uint(clen, UINT64_MAX, &length))
	{
		if (length > MOCK_MAX_BODY)
		{
			mock_reply	r = {0};

			/* answered at once: the body is not read */
			req->answered = true;
			reply_error(&r, 413, "payload_too_large",
						"the request body is over 4 MiB; split it");
			return send_reply(conn, req, &r);
		}
		sbuf_reserve(&req->body, (size_t) length);
	}
	return MHD_YES;
}

/*
 * finish_request runs the endpoint once the whole body is in, then applies
 * the drop-after and malformed faults, and sends the reply.
 */
static enum MHD_Result
finish_request(struct MHD_Connection *conn, request *req)
{
	mock_reply	r = {0};
	mock_call	call = {0};
	bool		drop_after = false;
	bool		malformed = false;
	bool		hostile = false;

	call.endpoint = req->endpoint;
	call.env = req->env;
	call.batch_id = req->batch_id;
	call.item_id = req->item_id;
	call.args = req->args;
	call.nargs = req->nargs;
	call.body = req->body.data;
	call.body_len = req->body.len;
	call.faults_apply = req->faults_apply;
	call.batch_fail_rate = req->faults.batch_fail_rate;

	if (req->admin)
	{
		call.loopback = is_loopback(conn);
		if (req->too_large && call.loopback)
			reply_error(&r, 413, "payload_too_large", "the request body is over 4 MiB");
		else
			admin_handle(req->method, req->path, &call, &r);
		return send_reply(conn, req, &r);
	}

	/* drawn before the endpoint runs: store.c builds a hostile page itself */
	if (req->faults_apply && req->faults.hostile != HOSTILE_NONE &&
		hostile_applies(req->faults.hostile, req->endpoint))
	{
		pthread_mutex_lock(&mock_lock);
		hostile = faults_roll_locked(req->faults.hostile_rate);
		pthread_mutex_unlock(&mock_lock);
		if (hostile && hostile_is_page_fault(req->faults.hostile))
			call.page_fault = req->faults.hostile;
	}

	if (req->too_large)
		reply_error(&r, 413, "payload_too_large",
					"the request body is over 4 MiB; split it");
	else
		api_handle(&call, &r);

	if (req->faults_apply)
	{
		pthread_mutex_lock(&mock_lock);
		drop_after = faults_roll_locked(req->faults.rate_drop_after);
		if (!drop_after && r.status >= 200 && r.status < 300)
			malformed = faults_roll_locked(req->faults.rate_malformed);
		pthread_mutex_unlock(&mock_lock);
	}
	if (drop_after)
	{
		reply_free(&r);
		return drop(req);
	}
	if (malformed)
	{
		/* a proper prefix of a JSON object is never valid JSON */
		if (req->faults.extra_field)
			rewrite_extra_field(&r);
		r.status = 200;
		r.len = r.len / 2;
		r.hostile = false;
		req->faults.extra_field = false;	/* already applied */
	}
	else if (hostile && r.status >= 200 && r.status < 300)
	{
		/* the extra field goes into the real members, before they are hidden */
		if (req->faults.extra_field)
			rewrite_extra_field(&r);
		req->faults.extra_field = false;
		if (hostile_apply(&req->faults, &call, &r))
		{
			pthread_mutex_lock(&mock_lock);
			stats_hostile_locked(req->endpoint);
			pthread_mutex_unlock(&mock_lock);
		}
	}
	else
		r.hostile = false;
	return send_reply(conn, req, &r);
}

/* ---------------------------------------------------------------------
 * libmicrohttpd callbacks
 * ---------------------------------------------------------------------
 */

/*
 * handle_access is libmicrohttpd's access handler: called once with the
 * headers, then with each piece of the body, then once more with none.
 */
static enum MHD_Result
handle_access(void *cls, struct MHD_Connection *conn, const char *url,
			  const char *method, const char *version,
			  const char *upload_data, size_t *upload_data_size,
			  void **con_cls)
{
	request    *req = *con_cls;

	(void) cls;
	(void) version;
	if (req == NULL)
	{
		req = mock_malloc(sizeof(*req));
		memset(req, 0, sizeof(*req));
		req->method = mock_strdup(method);
		req->path = mock_strdup(url);
		req->start_ms = mock_mono_ms();
		sbuf_init(&req->body, 256);
		*con_cls = req;
		return begin_request(conn, req);
	}

	if (*upload_data_size > 0)
	{
		if (!req->answered && !req->has_early && !req->too_large)
		{
			if (req->body.len + *upload_data_size > MOCK_MAX_BODY)
			{
				req->too_large = true;
				sbuf_free(&req->body);
			}
			else
				sbuf_append(&req->body, upload_data, *upload_data_size);
		}
		*upload_data_size = 0;
		return MHD_YES;
	}

	if (req->answered)
		return MHD_YES;
	req->answered = true;
	if (req->has_early)
	{
		req->has_early = false;
		return send_reply(conn, req, &req->early_reply);
	}
	return finish_request(conn, req);
}

/* request_done frees the per-request state, however the request ended. */
static void
request_done(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	request    *req = *con_cls;

	(void) cls;
	(void) conn;
	(void) toe;
	if (req == NULL)
		return;
	free(req->method);
	free(req->path);
	free(req->segbuf);
	free(req->args);
	reply_free(&req->early_reply);
	sbuf_free(&req->body);
	free(req);
	*con_cls = NULL;
}

/* connection_event counts TCP connections as they are accepted. */
static void
connection_event(void *cls, struct MHD_Connection *conn, void **socket_context,
				 enum MHD_ConnectionNotificationCode toe)
{
	(void) cls;
	(void) conn;
	(void) socket_context;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
	{
		pthread_mutex_lock(&mock_lock);
		stats_connection_locked();
		pthread_mutex_unlock(&mock_lock);
	}
}

/*
 * http_start starts the daemon on --bind and --port, with TLS if both PEM
 * texts are given.  Returns NULL on failure; *port_out is the bound port.
 */
struct MHD_Daemon *
http_start(char *cert_pem, char *key_pem, int *port_out)
{
	struct sockaddr_in sa;
	struct MHD_OptionItem opts[10];
	int			n = 0;
	unsigned int flags = MHD_USE_THREAD_PER_CONNECTION |
		MHD_USE_INTERNAL_POLLING_THREAD;
	const union MHD_DaemonInfo *info;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t) mock_conf.port);
	if (inet_pton(AF_INET, mock_conf.bind_addr, &sa.sin_addr) != 1)
		return NULL;

	if (MHD_is_feature_supported(MHD_FEATURE_POLL) == MHD_YES)
		flags |= MHD_USE_POLL;
	if (mock_conf.verbose)
		flags |= MHD_USE_ERROR_LOG;
	if (cert_pem && key_pem)
		flags |= MHD_USE_TLS;

	opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_SOCK_ADDR, 0, &sa};
	opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_NOTIFY_COMPLETED,
	(intptr_t) request_done, NULL};
	opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_NOTIFY_CONNECTION,
	(intptr_t) connection_event, NULL};
	opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_CONNECTION_TIMEOUT, 120, NULL};
	opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_LISTEN_BACKLOG_SIZE, 512, NULL};
	if (cert_pem && key_pem)
	{
		opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_HTTPS_MEM_CERT, 0, cert_pem};
		opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_HTTPS_MEM_KEY, 0, key_pem};
	}
	opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_END, 0, NULL};

	daemon_handle = MHD_start_daemon(flags, (uint16_t) mock_conf.port, NULL, NULL,
									 handle_access, NULL,
									 MHD_OPTION_ARRAY, opts,
									 MHD_OPTION_END);
	if (daemon_handle == NULL)
		return NULL;
	info = MHD_get_daemon_info(daemon_handle, MHD_DAEMON_INFO_BIND_PORT);
	*port_out = info ? (int) info->port : mock_conf.port;
	return daemon_handle;
}
