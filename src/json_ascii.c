/*-------------------------------------------------------------------------
 *
 * json_ascii.c
 *	  Owns one workaround: json-c 0.17 and 0.18 in JSON_TOKENER_STRICT mode
 *	  refuse every byte above 0x7f inside a string (they compare a signed
 *	  char with 0x1f), so a strict parse of "José" fails on Debian 13.  The
 *	  probe asks the json-c loaded at run time whether it has the defect;
 *	  where it has, the parsers hand it a copy of the text in which each
 *	  well-formed UTF-8 character inside a string is a \u escape (a pair for
 *	  characters beyond U+FFFF).  json-c decodes the escapes to the same
 *	  UTF-8 bytes, so strictness stays whole and the text round-trips byte
 *	  for byte.  Bytes outside strings and ill-formed sequences are left as
 *	  they are, for the parser to refuse.
 *
 *	  No PostgreSQL header and no allocation: the mock API server compiles
 *	  this file too, and callers own the output buffer.
 *
 *-------------------------------------------------------------------------
 */
#include "json_ascii.h"

#include <string.h>

#include <json-c/json.h>

/* 0: not probed yet; 1: the defect is there; -1: it is not */
static int	strict_refuses_utf8 = 0;

/*
 * json_ascii_needed says whether the loaded json-c refuses raw UTF-8 in a
 * string in strict mode.  The first call parses one string to find out;
 * a multi-threaded caller makes it once before starting its threads.
 */
bool
json_ascii_needed(void)
{
	if (strict_refuses_utf8 == 0)
	{
		static const char probe[] = "\"Jos\xc3\xa9\"";
		json_tokener *tok = json_tokener_new();
		json_object *obj = NULL;

		if (tok != NULL)
		{
			json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
			obj = json_tokener_parse_ex(tok, probe, (int) sizeof(probe) - 1);
			json_tokener_free(tok);
		}
		/* an allocation failure says nothing: probe again next time */
		if (tok == NULL)
			return false;
		strict_refuses_utf8 = (obj == NULL) ? 1 : -1;
		json_object_put(obj);
	}
	return strict_refuses_utf8 > 0;
}

/*
 * utf8_decode returns the length of the well-formed UTF-8 sequence at s
 * (n bytes left) and its code point in *cp, or 0 when the bytes are not one
 * (truncated, overlong, a surrogate, beyond U+10FFFF).
 */
static size_t
utf8_decode(const unsigned char *s, size_t n, unsigned long *cp)
{
	size_t		len;
	unsigned long c;
	unsigned long min;

	/* the lead byte gives the length, its bits and the least code point */
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
	{
		len = 2;
		c = s[0] & 0x1f;
		min = 0x80;
	}
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
	{
		len = 3;
		c = s[0] & 0x0f;
		min = 0x800;
	}
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
	{
		len = 4;
		c = s[0] & 0x07;
		min = 0x10000;
	}
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++)
	{
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

/* put_u16 writes "\uXXXX" for one UTF-16 unit at out + at, if out is set */
static size_t
put_u16(char *out, size_t at, unsigned long unit)
{
	static const char hex[] = "0123456789abcdef";

	if (out != NULL)
	{
		out[at] = '\\';
		out[at + 1] = 'u';
		for (int i = 0; i < 4; i++)
			out[at + 2 + i] = hex[(unit >> (12 - 4 * i)) & 0xf];
	}
	return 6;
}

/*
 * json_ascii_escape writes in (len bytes) to out with every well-formed
 * non-ASCII character inside a JSON string as \u escapes, and returns the
 * length written.  With out NULL it only returns that length, so a caller
 * can size the buffer first.  Out is not NUL-terminated.
 */
size_t
json_ascii_escape(const char *in, size_t len, char *out)
{
	const unsigned char *s = (const unsigned char *) in;
	bool		in_string = false;
	size_t		o = 0;
	size_t		i = 0;

	while (i < len)
	{
		unsigned long cp;
		size_t		n;

		if (in_string && s[i] >= 0x80 && (n = utf8_decode(s + i, len - i, &cp)) > 0)
		{
			if (cp > 0xffff)
			{
				o += put_u16(out, o, 0xd800 + ((cp - 0x10000) >> 10));
				o += put_u16(out, o, 0xdc00 + ((cp - 0x10000) & 0x3ff));
			}
			else
				o += put_u16(out, o, cp);
			i += n;
			continue;
		}
		/* an escape's next byte is copied with it: \" does not end a string */
		n = (in_string && s[i] == '\\' && i + 1 < len) ? 2 : 1;
		if (s[i] == '"')
			in_string = !in_string;
		if (out != NULL)
			memcpy(out + o, s + i, n);
		o += n;
		i += n;
	}
	return o;
}

/*
 * json_ascii_copy returns what a strict parse of in (*len bytes) should be
 * given: NULL when in itself will do (this json-c has no defect, or in has
 * nothing to escape), else a NUL-terminated escaped copy from alloc, with
 * *len set to its length
 */
char *
json_ascii_copy(const char *in, size_t *len, void *(*alloc) (size_t))
{
	size_t		n;
	char	   *out;

	if (!json_ascii_needed())
		return NULL;
	n = json_ascii_escape(in, *len, NULL);
	if (n == *len)
		return NULL;
	out = alloc(n + 1);
	json_ascii_escape(in, *len, out);
	out[n] = '\0';
	*len = n;
	return out;
}
