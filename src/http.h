/*-------------------------------------------------------------------------
 *
 * http.h
 *	  The HTTP client of enrich (http.c): one or more calls performed at
 *	  once over kept-alive connections, interruptible, with capped bodies;
 *	  a caller may start calls, do other work, then finish them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_HTTP_H
#define ENRICH_HTTP_H

/* How a call failed before an HTTP status could be read */
typedef enum EnrichHttpFailure
{
	ENRICH_HTTP_OK = 0,			/* a response with a status arrived */
	ENRICH_HTTP_CONNECT,		/* could not connect: nothing was sent */
	ENRICH_HTTP_NETWORK,		/* the connection broke: the request may have arrived */
	ENRICH_HTTP_TIMEOUT,		/* enrich.timeout or enrich.connect_timeout */
	ENRICH_HTTP_TLS,			/* TLS handshake or certificate verification */
	ENRICH_HTTP_TOO_LARGE		/* body over enrich.max_response_size */
} EnrichHttpFailure;

/*
 * One HTTP call: the caller fills the request part, enrich_http_perform
 * fills the response part.  The response body is palloc'd in the memory
 * context current at the call, and NUL-terminated.
 */
typedef struct EnrichHttpCall
{
	/* request */
	const char *method;			/* "GET" or "POST" */
	const char *url;			/* absolute http:// or https:// URL */
	const char *api_key;		/* sent as x-api-key; never logged */
	const char *body;			/* request body for POST, else NULL */
	size_t		body_len;

	/* response */
	EnrichHttpFailure failure;
	long		status;			/* HTTP status; 0 when failure is set */
	char	   *response;		/* body (palloc'd), "" when none */
	size_t		response_len;
	int			retry_after;	/* Retry-After in seconds, -1 when absent */
	char		error[256];		/* libcurl's words for a failure */
	double		elapsed_ms;		/* time the call took */
} EnrichHttpCall;

extern void enrich_http_perform(EnrichHttpCall *calls, int ncalls);
extern void enrich_http_start(EnrichHttpCall *call);
extern void enrich_http_drive(void);
extern void enrich_http_finish(void);
extern void enrich_http_abandon(void);
extern const char *enrich_http_failure_name(EnrichHttpFailure failure);

#endif							/* ENRICH_HTTP_H */
