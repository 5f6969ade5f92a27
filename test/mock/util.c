/*-------------------------------------------------------------------------
 *
 * util.c
 *	  Small helpers of aggk-mock: checked allocation, growable string
 *	  buffers, JSON string escaping, clocks, timestamps, integer parsing and
 *	  the hash and mixing functions.
 *
 *-------------------------------------------------------------------------
 */
#include "mock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * mock_malloc and friends abort on out-of-memory: a mock server has no
 * sensible way to go on without memory.
 */
void *
mock_malloc(size_t n)
{
	void	   *p = malloc(n ? n : 1);

	if (p == NULL)
	{
		fprintf(stderr, "aggk-mock: out of memory\n");
		abort();
	}
	return p;
}

void *
mock_realloc(void *p, size_t n)
{
	void	   *q = realloc(p, n ? n : 1);

	if (q == NULL)
	{
		fprintf(stderr, "aggk-mock: out of memory\n");
		abort();
	}
	return q;
}

char *
mock_strdup(const char *s)
{
	return mock_strndup(s, strlen(s));
}

char *
mock_strndup(const char *s, size_t n)
{
	char	   *p = mock_malloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

void
sbuf_init(sbuf *b, size_t cap)
{
	if (cap < 64)
		cap = 64;
	b->data = mock_malloc(cap);
	b->data[0] = '\0';
	b->len = 0;
	b->cap = cap;
}

/* sbuf_reserve makes room for extra more bytes plus the terminating NUL. */
void
sbuf_reserve(sbuf *b, size_t extra)
{
	size_t		need = b->len + extra + 1;

	if (need <= b->cap)
		return;
	while (b->cap < need)
		b->cap *= 2;
	b->data = mock_realloc(b->data, b->cap);
}

void
sbuf_append(sbuf *b, const char *s, size_t n)
{
	sbuf_reserve(b, n);
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
sbuf_puts(sbuf *b, const char *s)
{
	sbuf_append(b, s, strlen(s));
}

void
sbuf_vprintf(sbuf *b, const char *fmt, va_list ap)
{
	va_list		ap2;
	int			n;

	va_copy(ap2, ap);
	n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return;
	if ((size_t) n >= b->cap - b->len)
	{
		sbuf_reserve(b, (size_t) n);
		vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	}
	b->len += (size_t) n;
}

void
sbuf_printf(sbuf *b, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	sbuf_vprintf(b, fmt, ap);
	va_end(ap);
}

/*
 * utf8_seq_len returns the length of the well-formed UTF-8 sequence at s
 * (at most n bytes available), or 0 if the bytes there are not one.
 */
static size_t
utf8_seq_len(const unsigned char *s, size_t n)
{
	size_t		len;
	uint32_t	cp;
	size_t		i;

	if (s[0] < 0x80)
		return 1;
	else if ((s[0] & 0xE0) == 0xC0)
	{
		len = 2;
		cp = s[0] & 0x1F;
	}
	else if ((s[0] & 0xF0) == 0xE0)
	{
		len = 3;
		cp = s[0] & 0x0F;
	}
	else if ((s[0] & 0xF8) == 0xF0)
	{
		len = 4;
		cp = s[0] & 0x07;
	}
	else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++)
	{
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	/* reject overlong forms, surrogates and values above U+10FFFF */
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
		(len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
		(cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return len;
}

/*
 * sbuf_json_string appends s (n bytes) as a quoted JSON string.  Control
 * characters are escaped and bytes that are not valid UTF-8 become U+FFFD,
 * so the output is always valid JSON whatever the input.
 */
void
sbuf_json_string(sbuf *b, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0;

	sbuf_reserve(b, n + 2);
	b->data[b->len++] = '"';
	while (i < n)
	{
		unsigned char c = p[i];
		size_t		run = i;

		/* copy plain ASCII in one go */
		while (run < n && p[run] >= 0x20 && p[run] < 0x80 &&
			   p[run] != '"' && p[run] != '\\')
			run++;
		if (run > i)
		{
			sbuf_append(b, s + i, run - i);
			i = run;
			continue;
		}
		if (c == '"' || c == '\\')
		{
			char		esc[2] = {'\\', (char) c};

			sbuf_append(b, esc, 2);
			i++;
		}
		else if (c < 0x20)
		{
			switch (c)
			{
				case '\n':
					sbuf_append(b, "\\n", 2);
					break;
				case '\r':
					sbuf_append(b, "\\r", 2);
					break;
				case '\t':
					sbuf_append(b, "\\t", 2);
					break;
				default:
					sbuf_printf(b, "\\u%04x", c);
					break;
			}
			i++;
		}
		else
		{
			size_t		len = utf8_seq_len(p + i, n - i);

			if (len == 0)
			{
				sbuf_append(b, "\\ufffd", 6);
				i++;
			}
			else
			{
				sbuf_append(b, s + i, len);
				i += len;
			}
		}
	}
	sbuf_append(b, "\"", 1);
}

/* sbuf_detach hands the buffer to the caller, who must free() it. */
char *
sbuf_detach(sbuf *b, size_t *len)
{
	char	   *p = b->data;

	if (len)
		*len = b->len;
	b->data = NULL;
	b->len = b->cap = 0;
	return p;
}

void
sbuf_free(sbuf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* mock_mono_ms is a monotonic clock in milliseconds, for processing time. */
int64_t
mock_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* mock_wall_ms is the wall clock in milliseconds since the epoch. */
int64_t
mock_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* mock_format_time writes wall_ms as RFC 3339 UTC with second resolution. */
void
mock_format_time(char *out, size_t outlen, int64_t wall_ms)
{
	time_t		t = (time_t) (wall_ms / 1000);
	struct tm	tm;

	gmtime_r(&t, &tm);
	strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/*
 * mock_parse_uint parses a plain decimal number (digits only, no sign, no
 * spaces) of at most max.
 */
bool
mock_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t	v = 0;

	if (s == NULL || *s == '\0')
		return false;
	for (; *s; s++)
	{
		if (*s < '0' || *s > '9')
			return false;
		if (v > (max - (uint64_t) (*s - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t) (*s - '0');
	}
	*out = v;
	return true;
}

/* mock_fnv1a64 continues a 64-bit FNV-1a hash h over len bytes of data. */
uint64_t
mock_fnv1a64(const void *data, size_t len, uint64_t h)
{
	const unsigned char *p = data;
	size_t		i;

	for (i = 0; i < len; i++)
	{
		h ^= p[i];
		h *= UINT64_C(1099511628211);
	}
	return h;
}

/* mock_splitmix64 advances state and returns the next well-mixed value. */
uint64_t
mock_splitmix64(uint64_t *state)
{
	uint64_t	z = (*state += UINT64_C(0x9E3779B97F4A7C15));

	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}
