/*-------------------------------------------------------------------------
 *
 * pg_shim.c
 *	  The few PostgreSQL backend functions and variables that the wire
 *	  module (src/api.c) uses, written for the fuzzer, so that api.c can be
 *	  compiled unchanged and linked into a plain program:
 *
 *	  - one memory context, CurrentMemoryContext, whose chunks are separate
 *		malloc'd blocks of the exact size asked for (so AddressSanitizer
 *		sees every overrun), freed together by fuzz_arena_reset after the
 *		reset callbacks registered on it have run, as a memory context
 *		reset does;
 *	  - palloc and friends, psprintf, StringInfo;
 *	  - errstart and the rest of ereport, which abort: the parsers must
 *		never raise an error, so reaching one is a finding;
 *	  - enrich's settings (guc.c) and enrich_http_failure_name (http.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sanitizer/allocator_interface.h>

#include "lib/stringinfo.h"
#include "nodes/memnodes.h"
#include "utils/memutils.h"

#include "http.h"
#include "compat.h"
#include "guc.h"
#include "pg_shim.h"

/* the shim's output uses the C library, not PostgreSQL's port/snprintf.c */
#undef vsnprintf
#undef fprintf

/* the one memory context, and the chunks allocated in it */
static MemoryContextData fuzz_context = {.name = "fuzz arena"};
MemoryContext CurrentMemoryContext = &fuzz_context;

static void **chunks;
static size_t nchunks;
static size_t maxchunks;

/* enrich's settings that api.c reads */
char	   *enrich_api_url = "https://api.aggknowledge.ai/";
int			enrich_timeout_ms = 30000;
int			enrich_connect_timeout_ms = 5000;
int			enrich_max_response_size_kb = 16384;

ENRICH_NORETURN static void shim_fail(const char *what);

/* shim_fail reports what the wire module must never do, and aborts */
static void
shim_fail(const char *what)
{
	fprintf(stderr, "pg_shim: %s\n", what);
	abort();
}

/* chunk_find returns the index of a chunk, searching the newest first */
static size_t
chunk_find(void *pointer)
{
	for (size_t i = nchunks; i > 0; i--)
	{
		if (chunks[i - 1] == pointer)
			return i - 1;
	}
	shim_fail("pfree or repalloc of a pointer that is not a chunk of the arena");
}

void *
palloc(Size size)
{
	void	   *p;

	if (!AllocSizeIsValid(size))
		shim_fail("invalid memory alloc request size");
	if (nchunks == maxchunks)
	{
		maxchunks = maxchunks ? maxchunks * 2 : 1024;
		chunks = realloc(chunks, maxchunks * sizeof(void *));
		if (chunks == NULL)
			shim_fail("out of memory");
	}
	p = malloc(size > 0 ? size : 1);
	if (p == NULL)
		shim_fail("out of memory");
	chunks[nchunks++] = p;
	fuzz_context.isReset = false;
	return p;
}

void *
palloc0(Size size)
{
	void	   *p = palloc(size);

	memset(p, 0, size);
	return p;
}

void *
palloc_extended(Size size, int flags)
{
	return (flags & MCXT_ALLOC_ZERO) ? palloc0(size) : palloc(size);
}

void *
MemoryContextAlloc(MemoryContext context, Size size)
{
	if (context != &fuzz_context)
		shim_fail("allocation in a memory context the shim does not know");
	return palloc(size);
}

void *
MemoryContextAllocZero(MemoryContext context, Size size)
{
	if (context != &fuzz_context)
		shim_fail("allocation in a memory context the shim does not know");
	return palloc0(size);
}

void *
repalloc(void *pointer, Size size)
{
	size_t		i = chunk_find(pointer);
	void	   *p;

	if (!AllocSizeIsValid(size))
		shim_fail("invalid memory alloc request size");
	p = realloc(pointer, size > 0 ? size : 1);
	if (p == NULL)
		shim_fail("out of memory");
	chunks[i] = p;
	return p;
}

void
pfree(void *pointer)
{
	size_t		i = chunk_find(pointer);

	free(pointer);
	chunks[i] = chunks[--nchunks];
}

char *
pstrdup(const char *in)
{
	size_t		len = strlen(in);
	char	   *out = palloc(len + 1);

	memcpy(out, in, len + 1);
	return out;
}

char *
pnstrdup(const char *in, Size len)
{
	char	   *out;

	len = strnlen(in, len);
	out = palloc(len + 1);
	memcpy(out, in, len);
	out[len] = '\0';
	return out;
}

char *
psprintf(const char *fmt,...)
{
	va_list		args;
	int			len;
	char	   *out;

	va_start(args, fmt);
	len = vsnprintf(NULL, 0, fmt, args);
	va_end(args);
	if (len < 0)
		shim_fail("psprintf: bad format");
	out = palloc((size_t) len + 1);
	va_start(args, fmt);
	vsnprintf(out, (size_t) len + 1, fmt, args);
	va_end(args);
	return out;
}

void
MemoryContextRegisterResetCallback(MemoryContext context,
								   MemoryContextCallback *cb)
{
	if (context != &fuzz_context)
		shim_fail("reset callback on a memory context the shim does not know");
	cb->next = fuzz_context.reset_cbs;
	fuzz_context.reset_cbs = cb;
	fuzz_context.isReset = false;
}

size_t
fuzz_arena_reset(void)
{
	size_t		before = __sanitizer_get_current_allocated_bytes();
	size_t		after;

	while (fuzz_context.reset_cbs != NULL)
	{
		MemoryContextCallback *cb = fuzz_context.reset_cbs;

		fuzz_context.reset_cbs = cb->next;
		cb->func(cb->arg);
	}
	after = __sanitizer_get_current_allocated_bytes();

	for (size_t i = 0; i < nchunks; i++)
		free(chunks[i]);
	nchunks = 0;
	fuzz_context.isReset = true;
	return before > after ? before - after : 0;
}

size_t
fuzz_arena_chunks(void)
{
	return nchunks;
}

/*
 * StringInfo, as lib/stringinfo.c has it
 */

void
initStringInfo(StringInfo str)
{
	str->maxlen = 1024;
	str->data = palloc(str->maxlen);
	resetStringInfo(str);
}

void
resetStringInfo(StringInfo str)
{
	str->data[0] = '\0';
	str->len = 0;
	str->cursor = 0;
}

void
enlargeStringInfo(StringInfo str, int needed)
{
	int			newlen;

	if (needed < 0 || (Size) needed >= MaxAllocSize - (Size) str->len)
		shim_fail("enlargeStringInfo: out of memory");
	needed += str->len + 1;
	if (needed <= str->maxlen)
		return;
	newlen = 2 * str->maxlen;
	while (needed > newlen)
		newlen = 2 * newlen;
	if (newlen > (int) MaxAllocSize)
		newlen = (int) MaxAllocSize;
	str->data = repalloc(str->data, newlen);
	str->maxlen = newlen;
}

void
appendBinaryStringInfo(StringInfo str, ENRICH_BINARY_DATA data, int datalen)
{
	enlargeStringInfo(str, datalen);
	memcpy(str->data + str->len, data, datalen);
	str->len += datalen;
	str->data[str->len] = '\0';
}

void
appendStringInfoString(StringInfo str, const char *s)
{
	appendBinaryStringInfo(str, s, (int) strlen(s));
}

void
appendStringInfoChar(StringInfo str, char ch)
{
	if (str->len + 1 >= str->maxlen)
		enlargeStringInfo(str, 1);
	str->data[str->len] = ch;
	str->len++;
	str->data[str->len] = '\0';
}

void
appendStringInfo(StringInfo str, const char *fmt,...)
{
	va_list		args;
	int			len;

	va_start(args, fmt);
	len = vsnprintf(NULL, 0, fmt, args);
	va_end(args);
	if (len < 0)
		shim_fail("appendStringInfo: bad format");
	enlargeStringInfo(str, len);
	va_start(args, fmt);
	vsnprintf(str->data + str->len, (size_t) (str->maxlen - str->len), fmt, args);
	va_end(args);
	str->len += len;
}

/*
 * ereport and elog: a parser must never get here
 */

bool
errstart(int elevel, const char *domain)
{
	shim_fail("ereport or elog reached: the wire module's parsers must not raise errors");
}

bool
errstart_cold(int elevel, const char *domain)
{
	shim_fail("ereport or elog reached: the wire module's parsers must not raise errors");
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	shim_fail("errfinish reached");
}

int
errcode(int sqlerrcode)
{
	shim_fail("errcode reached");
}

int
errmsg(const char *fmt,...)
{
	shim_fail("errmsg reached");
}

int
errmsg_internal(const char *fmt,...)
{
	shim_fail("errmsg_internal reached");
}

int
errdetail(const char *fmt,...)
{
	shim_fail("errdetail reached");
}

int
errhint(const char *fmt,...)
{
	shim_fail("errhint reached");
}

/*
 * http.c
 */

const char *
enrich_http_failure_name(EnrichHttpFailure failure)
{
	return failure == ENRICH_HTTP_OK ? "ok" : "failure";
}
