/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Every difference between the PostgreSQL majors enrich builds against
 *	  (15 to 18), and nothing else: the code uses these names, never a
 *	  version test of its own.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_COMPAT_H
#define ENRICH_COMPAT_H

#include "fmgr.h"
#include "utils/wait_event.h"

/*
 * ENRICH_NORETURN goes before the declaration of a function that does not
 * return: PostgreSQL 18 has pg_noreturn there, and no longer
 * pg_attribute_noreturn() after it
 */
#if PG_VERSION_NUM >= 180000
#define ENRICH_NORETURN pg_noreturn
#else
#define ENRICH_NORETURN pg_attribute_noreturn()
#endif

/*
 * ENRICH_MY_PROC_NUMBER is the number of this process's PGPROC, the index
 * of its latch in ProcGlobal->allProcs: MyProcNumber since PostgreSQL 17
 */
#if PG_VERSION_NUM >= 170000
#define ENRICH_MY_PROC_NUMBER MyProcNumber
#else
#define ENRICH_MY_PROC_NUMBER (MyProc->pgprocno)
#endif

/*
 * ENRICH_BINARY_DATA is the type of appendBinaryStringInfo's data, for the
 * fuzzing shim that defines it: const void * since PostgreSQL 16
 */
#if PG_VERSION_NUM >= 160000
#define ENRICH_BINARY_DATA const void *
#else
#define ENRICH_BINARY_DATA const char *
#endif

/*
 * ENRICH_PRIMARY_KEY_INDEX returns the OID of a table's primary key index,
 * deferrable or not: PostgreSQL 18 asks whether a deferrable one will do
 */
#if PG_VERSION_NUM >= 180000
#define ENRICH_PRIMARY_KEY_INDEX(rel) RelationGetPrimaryKeyIndex((rel), true)
#else
#define ENRICH_PRIMARY_KEY_INDEX(rel) RelationGetPrimaryKeyIndex(rel)
#endif

/*
 * whether a role owns a database: object_ownercheck since PostgreSQL 16
 * (utils/acl.h and catalog/pg_database.h give both)
 */
#if PG_VERSION_NUM >= 160000
#define ENRICH_DATABASE_OWNERCHECK(db, role) object_ownercheck(DatabaseRelationId, (db), (role))
#else
#define ENRICH_DATABASE_OWNERCHECK(db, role) pg_database_ownercheck((db), (role))
#endif

/*
 * whether a role owns an extension: object_ownercheck since PostgreSQL 16
 * (utils/acl.h and catalog/pg_extension.h give both)
 */
#if PG_VERSION_NUM >= 160000
#define ENRICH_EXTENSION_OWNERCHECK(ext, role) object_ownercheck(ExtensionRelationId, (ext), (role))
#else
#define ENRICH_EXTENSION_OWNERCHECK(ext, role) pg_extension_ownercheck((ext), (role))
#endif

/*
 * ENRICH_MODULE_MAGIC marks the library: since PostgreSQL 18 with its name
 * and version, which pg_get_loaded_modules() shows (ENRICH_VERSION is the
 * control file's default_version, which the Makefile passes)
 */
#if PG_VERSION_NUM >= 180000
#define ENRICH_MODULE_MAGIC PG_MODULE_MAGIC_EXT(.name = "enrich", .version = ENRICH_VERSION)
#else
#define ENRICH_MODULE_MAGIC PG_MODULE_MAGIC
#endif

/*
 * enrich_wait_event returns the wait event to report for one kind of wait:
 * since PostgreSQL 17 one of enrich's own name (WaitEventExtensionNew, kept
 * in *cache after the first call: it takes a lock), which pg_stat_activity
 * shows as wait_event; before, the generic "Extension"
 */
static inline uint32
enrich_wait_event(uint32 *cache, const char *name)
{
#if PG_VERSION_NUM >= 170000
	if (*cache == 0)
		*cache = WaitEventExtensionNew(name);
	return *cache;
#else
	return PG_WAIT_EXTENSION;
#endif
}

/*
 * enrich_input_soft calls a type's input function and says whether the
 * text was a value of the type: since PostgreSQL 16 with a soft error
 * context, so that an input function (or a domain's CHECK) that reports a
 * bad value softly returns false; before, every error is raised (the
 * caller catches it in a subtransaction)
 */
#if PG_VERSION_NUM >= 160000
#include "nodes/miscnodes.h"

static inline bool
enrich_input_soft(FmgrInfo *flinfo, char *str, Oid typioparam, int32 typmod, Datum *result)
{
	ErrorSaveContext escontext = {T_ErrorSaveContext};

	return InputFunctionCallSafe(flinfo, str, typioparam, typmod, (Node *) &escontext, result);
}
#else
static inline bool
enrich_input_soft(FmgrInfo *flinfo, char *str, Oid typioparam, int32 typmod, Datum *result)
{
	*result = InputFunctionCall(flinfo, str, typioparam, typmod);
	return true;
}
#endif

#endif							/* ENRICH_COMPAT_H */
