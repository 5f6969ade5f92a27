/*-------------------------------------------------------------------------
 *
 * keys.h
 *	  The API keys (keys.c): the key of an environment, looked up on the
 *	  caller's behalf.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_KEYS_H
#define ENRICH_KEYS_H

#include "guc.h"

extern char *enrich_api_key(const char *environment);
extern char *enrich_api_key_if_set(const char *environment);

#endif							/* ENRICH_KEYS_H */
