/*-------------------------------------------------------------------------
 *
 * api.h
 *	  The wire format of the AggKnowledge V2 person API (api.c): paths,
 *	  request bodies, response parsing, and the mapping of API answers to
 *	  PostgreSQL errors.  Nothing else in enrich knows a field name.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_API_H
#define ENRICH_API_H

#include "utils/jsonb.h"

#include "compat.h"
#include "http.h"

/* requests of one bulk enrich, as the API caps them */
#define ENRICH_API_MAX_REQUESTS 1000
/* an identifier's longest length in bytes */
#define ENRICH_API_MAX_IDENTIFIER 2048
/* metadata's longest serialized length in bytes */
#define ENRICH_API_MAX_METADATA 4096
/* items per page of the list-items endpoint */
#define ENRICH_API_MAX_PAGE 50
/* batches per page of the list-batches endpoint */
#define ENRICH_API_MAX_BATCH_LIST 1000
/*
 * deepest JSON nesting parsed: metadata of at most 4 KiB can nest about
 * 2040 levels and comes back inside an item, inside a page
 */
#define ENRICH_API_MAX_DEPTH 2100

/* BatchStatus */
typedef struct EnrichBatchStatus
{
	char	   *batch_id;
	char	   *status;			/* pending, processing, completed, failed */
	char	   *created_at;		/* RFC 3339 */
	char	   *completed_at;	/* RFC 3339, or NULL */
	int32		total_count;
	int32		processed_count;
	int32		success_count;
	int32		failure_count;
} EnrichBatchStatus;

/*
 * Item: its JSON members are parts of the parsed page (NULL when null or
 * absent), alive as long as the page; enrich_jsonb_from_json makes jsonb of
 * them
 */
struct json_object;
typedef struct EnrichItem
{
	char	   *item_id;
	bool		is_success;
	bool		is_retryable;
	struct json_object *metadata;
	struct json_object *person;
	struct json_object *error;
	char	   *error_code;		/* error.code, or NULL */
	char	   *error_message;	/* error.message, or NULL */
	int64		request_id;		/* this installation's request id echoed in
								 * metadata, or -1 */
	int32		request_check;	/* the check value echoed with it */
} EnrichItem;

/* one request the worker sends: enrich's request id travels in its metadata */
typedef struct EnrichOutgoing
{
	int64		request_id;
	int32		check;			/* 16 bits that the row's identifier determines */
	const char *linkedin_url;
	const char *person_id;
	const char *pdl_id;
	const char *metadata;		/* the caller's JSON object, or NULL */
} EnrichOutgoing;

/* how a call ended, as the worker acts on it */
typedef enum EnrichCallOutcome
{
	ENRICH_OUTCOME_OK,			/* the expected status */
	ENRICH_OUTCOME_TRANSIENT,	/* network, timeout, 5xx, unreadable: retry later */
	ENRICH_OUTCOME_RATE_LIMITED,	/* 429: wait Retry-After */
	ENRICH_OUTCOME_UNAUTHORIZED,	/* 401 or 403: pause the environment */
	ENRICH_OUTCOME_BAD_REQUEST, /* 400: the input is refused */
	ENRICH_OUTCOME_TOO_LARGE,	/* 413: send less at once */
	ENRICH_OUTCOME_NOT_FOUND	/* 404 */
} EnrichCallOutcome;

typedef struct EnrichItemsPage
{
	EnrichItem *items;
	int			nitems;
	char	   *cursor;			/* NULL at the end of a finished batch */
	void	   *tree;			/* the parsed page the items point into */
} EnrichItemsPage;

typedef struct EnrichBatchList
{
	EnrichBatchStatus *batches;
	int			nbatches;
	int64		total;
} EnrichBatchList;

/* what is wrong with a request to be sent: a field path and the reason */
typedef struct EnrichRequestProblem
{
	char	   *field;			/* e.g. requests[17].professionalSocialMediaUrl */
	char	   *reason;			/* a sentence */
} EnrichRequestProblem;

/* URLs of the endpoints; environment is "live" or "test" */
extern char *enrich_api_url_bulk_enrich(const char *environment);
extern char *enrich_api_url_batches(const char *environment, const char *created_after,
									int limit, int offset);
extern char *enrich_api_url_batch(const char *environment, const char *batch_id);
extern char *enrich_api_url_items(const char *environment, const char *batch_id,
								  const char *cursor, int limit);
extern char *enrich_api_url_item(const char *environment, const char *batch_id,
								 const char *item_id);

/* requests */
extern char *enrich_api_normalize_linkedin_url(const char *url);
extern bool enrich_api_build_bulk_body(const char *requests_json,
									   char **body, int *nrequests,
									   EnrichRequestProblem *problem);

/* the installation's id: 12 lowercase hex digits (enrich.installation) */
#define ENRICH_INSTALLATION_ID_LEN 12
extern void enrich_api_set_installation(const char *id, bool legacy);
extern char *enrich_api_build_worker_body(const EnrichOutgoing *requests, int n);
extern int	enrich_api_error_index(const char *message);

/* responses: each returns NULL on success, or what is wrong with the body */
extern char *enrich_api_parse_batch_id(const char *body, char **batch_id);
extern char *enrich_api_parse_status(const char *body, EnrichBatchStatus *status);
extern char *enrich_api_parse_batch_list(const char *body, EnrichBatchList *list);
extern char *enrich_api_parse_item(const char *body, EnrichItem *item);
extern char *enrich_api_parse_items_page(const char *body, EnrichItemsPage *page);
extern void enrich_api_free_items_page(EnrichItemsPage *page);
extern void enrich_api_parse_error(const char *body, char **code, char **message);

/* the worker: how a call ended, and the words for it */
extern EnrichCallOutcome enrich_api_outcome(EnrichHttpCall *call, long expected_status,
											char **message);

/* SQL callers: raise the error an unexpected answer deserves */
extern void enrich_api_check(EnrichHttpCall *call, const char *environment,
							 long expected_status);
ENRICH_NORETURN extern void enrich_api_malformed(EnrichHttpCall *call, const char *problem);

/* jsonc_jsonb.c */
extern Jsonb *enrich_jsonb_from_json(struct json_object *object);

#endif							/* ENRICH_API_H */
