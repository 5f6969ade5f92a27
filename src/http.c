/*-------------------------------------------------------------------------
 *
 * http.c
 *	  The only file that uses libcurl.  It owns the per-process multi handle
 *	  and its pool of easy handles (so connections are kept alive and reused
 *	  across calls), timeouts, the response size cap, TLS verification,
 *	  protocol and redirect restrictions, cancellation and the wait event.
 *
 * libcurl allocates with malloc, which memory contexts do not see.  Every
 * malloc'd buffer of a call is freed in a PG_FINALLY block, so a cancel or
 * a statement_timeout in the middle of a transfer leaks nothing.  Handles
 * and the multi handle live as long as the process, by design.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "compat.h"
#include "guc.h"
#include "http.h"

/* how long one wait for network activity lasts before interrupts are checked */
#define ENRICH_HTTP_POLL_MS 20

/* the state of one transfer that libcurl's callbacks see */
typedef struct EnrichTransfer
{
	EnrichHttpCall *call;
	CURL	   *easy;
	struct curl_slist *headers;
	char	   *buf;			/* malloc'd response body */
	size_t		len;
	size_t		cap;
	size_t		limit;			/* enrich.max_response_size in bytes */
	bool		too_large;
	bool		done;
	CURLcode	result;
	char		errbuf[CURL_ERROR_SIZE];
	instr_time	started;
} EnrichTransfer;

/* the wait event of a wait for the API, once asked for (compat.h) */
static uint32 wait_event_api_call = 0;

static CURLM *enrich_http_multi = NULL;
static CURL **enrich_http_pool = NULL;	/* malloc'd array of idle handles */
static int	enrich_http_pool_size = 0;

/* enrich_http_setup initializes libcurl and the multi handle once a process */
static void
enrich_http_setup(void)
{
	if (enrich_http_multi != NULL)
		return;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not initialize libcurl")));
	enrich_http_multi = curl_multi_init();
	if (enrich_http_multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl multi handle")));
}

/*
 * enrich_http_take_handle returns an easy handle from the pool, or a new
 * one.  A reset handle keeps its live connections and TLS sessions.
 */
static CURL *
enrich_http_take_handle(void)
{
	CURL	   *easy;

	if (enrich_http_pool_size > 0)
	{
		easy = enrich_http_pool[--enrich_http_pool_size];
		curl_easy_reset(easy);
		return easy;
	}
	easy = curl_easy_init();
	if (easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));
	return easy;
}

/* enrich_http_return_handle puts an easy handle back into the pool */
static void
enrich_http_return_handle(CURL *easy)
{
	CURL	  **grown;

	grown = realloc(enrich_http_pool, sizeof(CURL *) * (enrich_http_pool_size + 1));
	if (grown == NULL)
	{
		curl_easy_cleanup(easy);
		return;
	}
	enrich_http_pool = grown;
	enrich_http_pool[enrich_http_pool_size++] = easy;
}

/* enrich_http_write collects the response body, refusing it past the cap */
static size_t
enrich_http_write(char *data, size_t size, size_t nmemb, void *arg)
{
	EnrichTransfer *t = (EnrichTransfer *) arg;
	size_t		n = size * nmemb;

	if (t->len + n > t->limit)
	{
		t->too_large = true;
		return 0;				/* makes libcurl fail with CURLE_WRITE_ERROR */
	}
	if (t->len + n + 1 > t->cap)
	{
		size_t		newcap = Max(t->cap * 2, t->len + n + 1);
		char	   *grown;

		newcap = Max(newcap, 8192);
		grown = realloc(t->buf, newcap);
		if (grown == NULL)
			return 0;
		t->buf = grown;
		t->cap = newcap;
	}
	memcpy(t->buf + t->len, data, n);
	t->len += n;
	t->buf[t->len] = '\0';
	return n;
}

/*
 * enrich_http_header reads Retry-After.  A new status line (after a 100
 * Continue, say) forgets what earlier headers said.
 */
static size_t
enrich_http_header(char *data, size_t size, size_t nmemb, void *arg)
{
	EnrichTransfer *t = (EnrichTransfer *) arg;
	size_t		n = size * nmemb;

	if (n >= 5 && strncmp(data, "HTTP/", 5) == 0)
		t->call->retry_after = -1;
	else if (n > 12 && pg_strncasecmp(data, "retry-after:", 12) == 0)
	{
		size_t		i = 12;
		long		seconds = 0;
		bool		digits = false;

		while (i < n && (data[i] == ' ' || data[i] == '\t'))
			i++;
		while (i < n && data[i] >= '0' && data[i] <= '9' && seconds < 86400)
		{
			seconds = seconds * 10 + (data[i] - '0');
			digits = true;
			i++;
		}
		if (digits)
			t->call->retry_after = (int) Min(seconds, 86400);
	}
	return n;
}

/*
 * enrich_http_progress stops a transfer as soon as the backend is asked to
 * cancel (Ctrl-C, statement_timeout) or to die; the caller then raises the
 * interrupt with CHECK_FOR_INTERRUPTS.
 */
static int
enrich_http_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
					 curl_off_t ultotal, curl_off_t ulnow)
{
	return (QueryCancelPending || ProcDiePending) ? 1 : 0;
}

/*
 * add_header appends a header to a transfer's list; when libcurl cannot,
 * the list it had stays the transfer's (enrich_http_release frees it) and
 * the call fails
 */
static void
add_header(EnrichTransfer *t, const char *header)
{
	struct curl_slist *grown = curl_slist_append(t->headers, header);

	if (grown == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory building HTTP headers")));
	t->headers = grown;
}

/* enrich_http_prepare sets every option of one transfer */
static void
enrich_http_prepare(EnrichTransfer *t)
{
	EnrichHttpCall *call = t->call;
	CURL	   *easy = t->easy;
	char	   *key_header;

	key_header = psprintf("x-api-key: %s", call->api_key ? call->api_key : "");
	add_header(t, key_header);
	memset(key_header, 0, strlen(key_header));
	pfree(key_header);
	add_header(t, "Accept: application/json");
	add_header(t, "Expect:");
	if (call->body != NULL)
		add_header(t, "Content-Type: application/json");

	curl_easy_setopt(easy, CURLOPT_URL, call->url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) enrich_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) enrich_connect_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	if (enrich_ca_file != NULL && enrich_ca_file[0] != '\0')
		curl_easy_setopt(easy, CURLOPT_CAINFO, enrich_ca_file);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, t->headers);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "enrich/1.0");
	curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) t->limit);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, t->errbuf);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, enrich_http_write);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, enrich_http_header);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, t);
	curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, enrich_http_progress);
	curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, t);
	if (strcmp(call->method, "POST") == 0)
	{
		/*
		 * libcurl sends a request again on a kept-alive connection that
		 * turns out dead before any answer; a POST that creates a batch
		 * must never be sent twice, so it gets a connection of its own
		 */
		curl_easy_setopt(easy, CURLOPT_FRESH_CONNECT, 1L);
		curl_easy_setopt(easy, CURLOPT_FORBID_REUSE, 1L);
		curl_easy_setopt(easy, CURLOPT_POST, 1L);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) call->body_len);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, call->body ? call->body : "");
	}
	else
		curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
}

/* enrich_http_classify turns libcurl's result of a transfer into the call's */
static void
enrich_http_classify(EnrichTransfer *t)
{
	EnrichHttpCall *call = t->call;

	call->failure = ENRICH_HTTP_OK;
	call->error[0] = '\0';
	if (t->result == CURLE_OK)
	{
		curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &call->status);
		return;
	}

	call->status = 0;
	if (t->too_large || t->result == CURLE_FILESIZE_EXCEEDED)
		call->failure = ENRICH_HTTP_TOO_LARGE;
	else if (t->result == CURLE_OPERATION_TIMEDOUT)
		call->failure = ENRICH_HTTP_TIMEOUT;
	else if (t->result == CURLE_COULDNT_CONNECT ||
			 t->result == CURLE_COULDNT_RESOLVE_HOST ||
			 t->result == CURLE_COULDNT_RESOLVE_PROXY ||
			 t->result == CURLE_UNSUPPORTED_PROTOCOL ||
			 t->result == CURLE_URL_MALFORMAT)
		call->failure = ENRICH_HTTP_CONNECT;
	else if (t->result == CURLE_PEER_FAILED_VERIFICATION ||
			 t->result == CURLE_SSL_CONNECT_ERROR ||
			 t->result == CURLE_SSL_CACERT_BADFILE ||
			 t->result == CURLE_SSL_CERTPROBLEM ||
			 t->result == CURLE_SSL_ISSUER_ERROR)
		call->failure = ENRICH_HTTP_TLS;
	else
		call->failure = ENRICH_HTTP_NETWORK;
	strlcpy(call->error,
			t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->result),
			sizeof(call->error));
}

/*
 * Transfers started and not yet finished: enrich_http_start adds one,
 * enrich_http_finish waits for them all.  The array and the transfers live
 * in TopMemoryContext until finished or abandoned.
 */
static EnrichTransfer **enrich_http_started = NULL;
static int	enrich_http_nstarted = 0;
static int	enrich_http_started_cap = 0;

/*
 * enrich_http_release gives a transfer's handle back to the pool and frees
 * what libcurl allocated for it
 */
static void
enrich_http_release(EnrichTransfer *t)
{
	if (t->easy != NULL)
	{
		curl_multi_remove_handle(enrich_http_multi, t->easy);
		/* forget pointers into this call's memory before pooling */
		curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, NULL);
		curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, NULL);
		enrich_http_return_handle(t->easy);
		t->easy = NULL;
	}
	if (t->headers != NULL)
		curl_slist_free_all(t->headers);
	t->headers = NULL;
	free(t->buf);
	t->buf = NULL;
}

/*
 * enrich_http_collect drives the started transfers without waiting and
 * notes the ones that ended; it returns how many are still running
 */
static int
enrich_http_collect(void)
{
	int			running = 0;
	int			remaining = 0;
	CURLMsg    *msg;
	int			queued;

	if (curl_multi_perform(enrich_http_multi, &running) != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("libcurl failed to drive the HTTP transfers")));
	while ((msg = curl_multi_info_read(enrich_http_multi, &queued)) != NULL)
	{
		EnrichTransfer *t = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &t);
		if (t == NULL || t->done)
			continue;
		t->done = true;
		t->result = msg->data.result;
	}
	for (int i = 0; i < enrich_http_nstarted; i++)
		if (!enrich_http_started[i]->done)
			remaining++;
	return remaining;
}

/*
 * enrich_http_start begins a call and returns without waiting for it: the
 * request goes out while the caller does other work (the worker claims its
 * next requests; enrich_http_drive moves it on), and enrich_http_finish
 * fills in the answer.  The call must stay in place until then.  Once it
 * returns, the call counts as started, whatever fails next: it does nothing
 * that could fail after the transfer is registered.
 */
void
enrich_http_start(EnrichHttpCall *call)
{
	MemoryContext old;
	EnrichTransfer *t;

	enrich_http_setup();
	old = MemoryContextSwitchTo(TopMemoryContext);
	if (enrich_http_nstarted == enrich_http_started_cap)
	{
		enrich_http_started_cap = Max(8, enrich_http_started_cap * 2);
		enrich_http_started = enrich_http_started == NULL ?
			palloc(sizeof(EnrichTransfer *) * enrich_http_started_cap) :
			repalloc(enrich_http_started, sizeof(EnrichTransfer *) * enrich_http_started_cap);
	}
	t = palloc0(sizeof(EnrichTransfer));
	MemoryContextSwitchTo(old);

	t->call = call;
	t->call->retry_after = -1;
	t->limit = (size_t) enrich_max_response_size_kb * 1024;
	INSTR_TIME_SET_CURRENT(t->started);
	PG_TRY();
	{
		t->easy = enrich_http_take_handle();
		enrich_http_prepare(t);
		if (curl_multi_add_handle(enrich_http_multi, t->easy) != CURLM_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not start an HTTP transfer")));
	}
	PG_CATCH();
	{
		/* not started: nothing was sent */
		enrich_http_release(t);
		pfree(t);
		PG_RE_THROW();
	}
	PG_END_TRY();
	enrich_http_started[enrich_http_nstarted++] = t;
}

/*
 * enrich_http_drive moves the started transfers on without waiting: a new
 * connection gets connected, and as much of each request sent as the
 * sockets take
 */
void
enrich_http_drive(void)
{
	if (enrich_http_nstarted == 0)
		return;
	enrich_http_collect();
	/* a connection made by the first pass can take its request at once */
	curl_multi_poll(enrich_http_multi, NULL, 0, 0, NULL);
	enrich_http_collect();
}

/*
 * enrich_http_abandon forgets every started transfer, giving its handle
 * back: after enrich_http_finish filled in their answers, or without an
 * answer when a caller fails before it could finish them (their calls are
 * then left as they were)
 */
void
enrich_http_abandon(void)
{
	for (int i = 0; i < enrich_http_nstarted; i++)
	{
		enrich_http_release(enrich_http_started[i]);
		pfree(enrich_http_started[i]);
	}
	enrich_http_nstarted = 0;
}

/*
 * enrich_http_await waits until every started call has an answer or a
 * failure and fills them in.  It waits in short slices so that Ctrl-C,
 * statement_timeout and SIGTERM stop it within a few tens of milliseconds,
 * and reports the wait event EnrichApiCall while it waits ("Extension"
 * before PostgreSQL 17).
 */
static void
enrich_http_await(void)
{
	while (enrich_http_collect() > 0)
	{
		CHECK_FOR_INTERRUPTS();
		pgstat_report_wait_start(enrich_wait_event(&wait_event_api_call, "EnrichApiCall"));
		curl_multi_poll(enrich_http_multi, NULL, 0, ENRICH_HTTP_POLL_MS, NULL);
		pgstat_report_wait_end();
		CHECK_FOR_INTERRUPTS();
	}

	for (int i = 0; i < enrich_http_nstarted; i++)
	{
		EnrichTransfer *t = enrich_http_started[i];
		EnrichHttpCall *call = t->call;
		instr_time	now;

		enrich_http_classify(t);
		call->response = palloc(t->len + 1);
		if (t->len > 0)
			memcpy(call->response, t->buf, t->len);
		call->response[t->len] = '\0';
		call->response_len = t->len;
		INSTR_TIME_SET_CURRENT(now);
		INSTR_TIME_SUBTRACT(now, t->started);
		call->elapsed_ms = INSTR_TIME_GET_MILLISEC(now);
		elog(DEBUG2, "enrich: %s %s: status %ld, %zu bytes, %.1f ms%s%s",
			 call->method, call->url, call->status, t->len, call->elapsed_ms,
			 call->failure ? ": " : "", call->error);
	}
}

/*
 * enrich_http_finish returns when every started call has an answer or a
 * failure, filled into its EnrichHttpCall; an error (a cancel, say) stops
 * them all
 */
void
enrich_http_finish(void)
{
	PG_TRY();
	{
		enrich_http_await();
	}
	PG_CATCH();
	{
		enrich_http_abandon();
		PG_RE_THROW();
	}
	PG_END_TRY();
	enrich_http_abandon();		/* done with: the handles go back to the pool */
}

/*
 * enrich_http_perform performs the calls at once and returns when every one
 * has an answer or a failure (see enrich_http_finish)
 */
void
enrich_http_perform(EnrichHttpCall *calls, int ncalls)
{
	PG_TRY();
	{
		for (int i = 0; i < ncalls; i++)
			enrich_http_start(&calls[i]);
	}
	PG_CATCH();
	{
		enrich_http_abandon();
		PG_RE_THROW();
	}
	PG_END_TRY();
	enrich_http_finish();
}

/* enrich_http_failure_name names a failure for messages */
const char *
enrich_http_failure_name(EnrichHttpFailure failure)
{
	switch (failure)
	{
		case ENRICH_HTTP_OK:
			return "ok";
		case ENRICH_HTTP_CONNECT:
			return "could not connect";
		case ENRICH_HTTP_NETWORK:
			return "network error";
		case ENRICH_HTTP_TIMEOUT:
			return "timeout";
		case ENRICH_HTTP_TLS:
			return "TLS error";
		case ENRICH_HTTP_TOO_LARGE:
			return "response too large";
	}
	return "unknown failure";
}
