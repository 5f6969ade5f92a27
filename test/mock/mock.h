/*-------------------------------------------------------------------------
 *
 * mock.h
 *	  Shared declarations of aggk-mock, the mock AggKnowledge V2 person API.
 *
 * The server is split by responsibility:
 *	  main.c		flags, daemon start and stop, signals
 *	  http.c		libmicrohttpd callbacks: routing, keys, faults, rate limit,
 *					replies and error envelopes
 *	  api.c			the vendor endpoints (validation, bodies)
 *	  admin.c		the admin endpoints under /__mock/
 *	  store.c		batches, items, processing over time, cursors
 *	  identity.c	identifier normalization, outcomes, deterministic person
 *	  faults.c		fault settings and the seeded random generator
 *	  hostile.c		hostile responses: bodies that break the contract on purpose
 *	  ratelimit.c	token buckets per key and tier
 *	  stats.c		counters and submissions
 *	  util.c		allocation, string buffers, JSON strings, clocks
 *
 * Locking: all mutable state (store, stats, faults, rate buckets) is guarded
 * by the single mutex mock_lock.  Functions whose name ends in _locked, and
 * every function of store.c, stats.c, ratelimit.c and the faults_* state
 * functions, must be called with it held.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AGGK_MOCK_H
#define AGGK_MOCK_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <json-c/json.h>

#include "json_ascii.h"

struct MHD_Daemon;
struct MHD_Response;

#define MOCK_MAX_BODY			(4 * 1024 * 1024)	/* bytes; above: 413 */
#define MOCK_MAX_REQUESTS		1000	/* requests per bulk enrich */
#define MOCK_MAX_IDENTIFIER		2048	/* bytes per identifier field */
#define MOCK_MAX_METADATA		4096	/* bytes of serialized metadata */
/*
 * Nesting limit of request bodies.  The contract bounds metadata by size
 * only, and 4096 bytes of metadata nest at most 2046 levels ({"":[[...]]}),
 * plus 3 levels of the bulk-enrich body around it; so no valid request
 * reaches this limit, while parsing stays bounded.
 */
#define MOCK_JSON_DEPTH			2100

#define MOCK_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* The two environments of the vendor API. */
typedef enum mock_env
{
	MOCK_ENV_LIVE = 0,
	MOCK_ENV_TEST = 1
} mock_env;

/* Endpoints, as named in stats and in the "endpoints" fault setting. */
typedef enum mock_endpoint
{
	EP_BULK_ENRICH = 0,
	EP_LIST_BATCHES,
	EP_BATCH_STATUS,
	EP_GET_ITEM,
	EP_LIST_ITEMS,
	EP_OTHER,					/* unknown paths, wrong methods */
	EP_COUNT
} mock_endpoint;

#define EP_VENDOR_COUNT EP_OTHER

extern const char *const mock_endpoint_names[EP_COUNT];

/*
 * Hostile responses (the "hostile" fault): a 2xx answer that breaks the
 * contract on purpose.  See hostile.c for what each one does.
 */
typedef enum mock_hostile
{
	HOSTILE_NONE = 0,
	HOSTILE_OVERSIZED,			/* a body of hostile_size_mib MiB */
	HOSTILE_DEEP,				/* a body nested hostile_depth levels */
	HOSTILE_WRONG_TYPES,		/* fields of the wrong JSON type */
	HOSTILE_MISSING_FIELDS,		/* fields left out */
	HOSTILE_BAD_VALUES,			/* right type, impossible value */
	HOSTILE_DUPLICATE_ITEMS,	/* a page repeats items of the previous one */
	HOSTILE_REPLAY_CURSOR,		/* the next cursor is the one asked for */
	HOSTILE_REWIND_CURSOR,		/* the next cursor is the first page's */
	HOSTILE_FOREIGN_METADATA,	/* an item echoes metadata of another batch */
	HOSTILE_FAR_FUTURE,			/* completedAt in year 9999 */
	HOSTILE_BAD_UTF8,			/* strings with bytes that are not UTF-8 */
	HOSTILE_COUNT
} mock_hostile;

extern const char *const mock_hostile_names[HOSTILE_COUNT];

/* Command line settings; written by main.c before the daemon starts. */
typedef struct mock_config
{
	int			port;
	const char *port_file;
	const char *bind_addr;
	char	  **live_keys;
	int			n_live_keys;
	char	  **test_keys;
	int			n_test_keys;
	int64_t		start_delay_ms;
	int64_t		items_per_second;
	int64_t		tier3;
	int64_t		tier4;
	const char *tls_cert_file;
	const char *tls_key_file;
	uint64_t	seed;
	bool		verbose;
} mock_config;

extern mock_config mock_conf;
extern pthread_mutex_t mock_lock;
extern atomic_int mock_stopping;	/* set once SIGTERM or SIGINT arrived */

/* ---- util.c ---- */

/* A growable byte buffer, always NUL-terminated. */
typedef struct sbuf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} sbuf;

extern void *mock_malloc(size_t n);
extern void *mock_realloc(void *p, size_t n);
extern char *mock_strdup(const char *s);
extern char *mock_strndup(const char *s, size_t n);

extern void sbuf_init(sbuf *b, size_t cap);
extern void sbuf_reserve(sbuf *b, size_t extra);
extern void sbuf_append(sbuf *b, const char *s, size_t n);
extern void sbuf_puts(sbuf *b, const char *s);
extern void sbuf_printf(sbuf *b, const char *fmt,...) MOCK_PRINTF(2, 3);
extern void sbuf_vprintf(sbuf *b, const char *fmt, va_list ap) MOCK_PRINTF(2, 0);
extern void sbuf_json_string(sbuf *b, const char *s, size_t n);
extern char *sbuf_detach(sbuf *b, size_t *len);
extern void sbuf_free(sbuf *b);

extern int64_t mock_mono_ms(void);
extern int64_t mock_wall_ms(void);
extern void mock_format_time(char *out, size_t outlen, int64_t wall_ms);
extern bool mock_parse_uint(const char *s, uint64_t max, uint64_t *out);
extern uint64_t mock_fnv1a64(const void *data, size_t len, uint64_t h);
extern uint64_t mock_splitmix64(uint64_t *state);

#define MOCK_FNV_OFFSET UINT64_C(14695981039346656037)

/* ---- http.c: replies, shared by the endpoint handlers ---- */

/* One query parameter, as decoded by libmicrohttpd. */
typedef struct mock_arg
{
	const char *key;
	const char *value;			/* NULL when given without '=' */
} mock_arg;

/* What a handler answers; the body is malloc'd JSON owned by the reply. */
typedef struct mock_reply
{
	int			status;
	char	   *body;
	size_t		len;
	int			retry_after;	/* > 0: send Retry-After */
	const char *allow;			/* 405: the Allow header */
	bool		hostile;		/* a hostile change was made (stats) */
	int64_t		pad_to;			/* > 0: send padded to this many bytes */
	bool		pad_chunked;	/* padded body without Content-Length */
} mock_reply;

/* Everything a handler needs to know about the request. */
typedef struct mock_call
{
	mock_endpoint endpoint;
	mock_env	env;
	const char *batch_id;		/* path segments, decoded */
	const char *item_id;
	const mock_arg *args;
	int			nargs;
	const char *body;
	size_t		body_len;
	bool		loopback;
	bool		faults_apply;	/* the fault setting covers this endpoint */
	double		batch_fail_rate;	/* snapshot of that fault */
	mock_hostile page_fault;	/* hostile page of list items, or none */
} mock_call;

extern void reply_json(mock_reply *r, int status, char *body, size_t len);
extern void reply_sbuf(mock_reply *r, int status, sbuf *b);
extern void reply_jobj(mock_reply *r, int status, json_object *obj);
extern void reply_error(mock_reply *r, int status, const char *code,
						const char *fmt,...) MOCK_PRINTF(4, 5);
extern void reply_free(mock_reply *r);

extern json_object *mock_parse_json(const char *text, size_t len, int depth,
									char *err, size_t errlen);
extern void mock_clip(char *out, size_t outlen, const char *s);
extern struct MHD_Daemon *http_start(char *cert_pem, char *key_pem,
									 int *port_out);

/* ---- api.c, admin.c ---- */

extern void api_handle(const mock_call *call, mock_reply *r);
extern void admin_handle(const char *method, const char *path,
						 const mock_call *call, mock_reply *r);
extern bool api_check_args(const mock_call *call, const char *const *allowed,
						   mock_reply *r);

/* ---- identity.c ---- */

typedef enum mock_outcome
{
	OUTCOME_SUCCESS,
	OUTCOME_INVALID,
	OUTCOME_NOT_FOUND,
	OUTCOME_FLAKY
} mock_outcome;

extern char *identity_normalize_url(const char *url, size_t len);
extern mock_outcome identity_outcome(const char *normalized);
extern bool identity_is_unicode(const char *normalized);
extern void identity_person_json(sbuf *b, const char *normalized, bool is_url);

/* ---- store.c ---- */

/* One validated request of a bulk enrich, ready to become an item. */
typedef struct mock_input
{
	char	   *identifier;		/* normalized, malloc'd */
	bool		is_url;
	char	   *metadata;		/* serialized JSON object or NULL */
	size_t		metadata_len;
	char	   *person;			/* person JSON, built before locking */
	size_t		person_len;
} mock_input;

typedef struct mock_batch mock_batch;

extern void store_create_batch_locked(mock_env env, mock_input *in, int n,
									  bool fail, char *id_out, size_t id_len);
extern mock_batch *store_find_locked(mock_env env, const char *batch_id);
extern void store_status_json_locked(sbuf *b, const mock_batch *batch,
									 int64_t now);
extern void store_list_batches_locked(sbuf *b, mock_env env,
									  int64_t created_after_s, int64_t limit,
									  int64_t offset, int64_t now);
extern bool store_items_page_locked(sbuf *b, const mock_batch *batch,
									const char *cursor, int limit,
									mock_hostile fault, bool *faulted,
									int64_t now);
extern bool store_item_json_locked(sbuf *b, const mock_batch *batch,
								   const char *item_id, int64_t now);
extern char *store_foreign_metadata_locked(mock_env env, const char *batch_id,
										  int index);
extern int	store_count_locked(void);
extern void store_reset_locked(void);

/* ---- stats.c ---- */

#define STATS_DROP (-1)

extern void stats_count_locked(mock_endpoint ep, int status);
extern void stats_connection_locked(void);
extern void stats_hostile_locked(mock_endpoint ep);
extern int64_t stats_submissions_locked(const char *identifier);
extern void stats_add_submission_locked(const char *identifier);
extern json_object *stats_json_locked(void);
extern void stats_reset_locked(void);

/* ---- faults.c ---- */

typedef struct mock_faults
{
	double		rate_429;
	int64_t		retry_after;
	double		rate_5xx;
	double		rate_drop;
	double		rate_drop_after;
	double		rate_malformed;
	int64_t		latency_ms;
	bool		extra_field;
	double		batch_fail_rate;
	unsigned	endpoints;		/* bit per mock_endpoint */
	unsigned	environments;	/* bit per mock_env */
	mock_hostile hostile;
	double		hostile_rate;	/* default 1 */
	int64_t		hostile_item;	/* -1: every item of a page */
	uint32_t	hostile_fields; /* bit per hostile field; default all */
	int64_t		hostile_size_mib;	/* oversized: default 20 */
	bool		hostile_chunked;	/* oversized: no Content-Length */
	int64_t		hostile_depth;	/* deep: default 10000 */
	int64_t		hostile_offset; /* foreign_metadata: 0 = previous batch */
} mock_faults;

extern bool faults_parse(json_object *obj, mock_faults *out,
						 char *err, size_t errlen);
extern void faults_set_locked(const mock_faults *f, json_object *given);
extern void faults_get_locked(mock_faults *out);
extern json_object *faults_json_locked(void);
extern void faults_reset_locked(void);
extern bool faults_roll_locked(double p);
extern uint64_t faults_random_locked(void);

/* ---- hostile.c ---- */

#define HOSTILE_ALL_FIELDS UINT32_MAX

extern int	hostile_field_index(const char *name);
extern bool hostile_applies(mock_hostile kind, mock_endpoint ep);
extern bool hostile_is_page_fault(mock_hostile kind);
extern bool hostile_apply(const mock_faults *f, const mock_call *call,
						  mock_reply *r);
extern struct MHD_Response *hostile_padded_response(mock_reply *r);

/* ---- ratelimit.c ---- */

extern int	ratelimit_take_locked(const char *key, int tier, int64_t now);
extern void ratelimit_reset_locked(void);

#endif							/* AGGK_MOCK_H */
