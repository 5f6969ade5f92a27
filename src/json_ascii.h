/*-------------------------------------------------------------------------
 *
 * json_ascii.h
 *	  Raw UTF-8 inside JSON strings rewritten as \u escapes, for the json-c
 *	  releases whose strict mode refuses every non-ASCII byte in a string
 *	  (json-c 0.17 and 0.18, Debian 13's: its issue 892).  Plain C with no
 *	  PostgreSQL header, so the mock API server builds it too.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_JSON_ASCII_H
#define ENRICH_JSON_ASCII_H

#include <stdbool.h>
#include <stddef.h>

extern bool json_ascii_needed(void);
extern size_t json_ascii_escape(const char *in, size_t len, char *out);
extern char *json_ascii_copy(const char *in, size_t *len, void *(*alloc) (size_t));

#endif							/* ENRICH_JSON_ASCII_H */
