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

#endif							/* ENRICH_COMPAT_H */
