/*-------------------------------------------------------------------------
 *
 * pg_shim.h
 *	  The arena of the PostgreSQL shim the wire-module fuzzer links api.c
 *	  against (pg_shim.c): one memory context whose chunks are plain
 *	  malloc'd blocks, reset by the fuzzer after each parser call.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_PG_SHIM_H
#define ENRICH_PG_SHIM_H

#include <stddef.h>

/*
 * fuzz_arena_reset runs the reset callbacks registered on the arena (last
 * registered first, as PostgreSQL does), then frees every chunk.  It returns
 * how many bytes the callbacks freed: json-c memory that a parser left to
 * the memory context instead of freeing it before returning.
 */
extern size_t fuzz_arena_reset(void);

/* fuzz_arena_chunks is the number of chunks the arena holds */
extern size_t fuzz_arena_chunks(void);

#endif							/* ENRICH_PG_SHIM_H */
