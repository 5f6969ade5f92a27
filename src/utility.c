/*-------------------------------------------------------------------------
 *
 * utility.c
 *	  The ProcessUtility hook: what enrich does around a utility statement
 *	  of any session.  COMMIT PREPARED wakes the workers; DROP EXTENSION
 *	  enrich, and DROP DATABASE, CREATE DATABASE ... TEMPLATE and ALTER
 *	  DATABASE ... RENAME of a served database, by a role allowed to run
 *	  them, have the database's workers step out of it first (those need it
 *	  without them); CREATE EXTENSION enrich SCHEMA enrich is refused with a
 *	  hint.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "guc.h"
#include "shared.h"
#include "utility.h"

/*
 * how long the workers stay out of a database after the statement that
 * needed it alone succeeded: long enough for its transaction to commit
 */
#define ENRICH_ASIDE_AFTER_MS 3000

static ProcessUtility_hook_type prev_process_utility_hook = NULL;

/*
 * database_needed_alone returns the name of the database a statement needs
 * without other sessions, or NULL: DROP DATABASE, CREATE DATABASE with a
 * TEMPLATE, ALTER DATABASE ... RENAME
 */
static const char *
database_needed_alone(Node *stmt)
{
	if (IsA(stmt, DropdbStmt))
		return ((DropdbStmt *) stmt)->dbname;
	if (IsA(stmt, RenameStmt) && ((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
		return ((RenameStmt *) stmt)->subname;
	if (IsA(stmt, CreatedbStmt))
	{
		ListCell   *lc;

		foreach(lc, ((CreatedbStmt *) stmt)->options)
		{
			DefElem    *option = lfirst_node(DefElem, lc);

			if (strcmp(option->defname, "template") == 0 && option->arg != NULL)
				return defGetString(option);
		}
	}
	return NULL;
}

/*
 * may_run says whether the caller passes the privilege checks of a
 * statement that needs a database alone (which PostgreSQL makes only after
 * it would have to be alone): the owner drops or renames a database, and a
 * role that may create databases copies a template or a database it owns.
 * A statement that would be refused anyway moves no worker, so that no role
 * stops the workers by trying.
 */
static bool
may_run(Node *stmt, Oid database)
{
	HeapTuple	tuple;
	bool		is_template;

	if (ENRICH_DATABASE_OWNERCHECK(database, GetUserId()))
		return !IsA(stmt, CreatedbStmt) || have_createdb_privilege();
	if (!IsA(stmt, CreatedbStmt) || !have_createdb_privilege())
		return false;
	tuple = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(database));
	if (!HeapTupleIsValid(tuple))
		return false;
	is_template = ((Form_pg_database) GETSTRUCT(tuple))->datistemplate;
	ReleaseSysCache(tuple);
	return is_template;
}

/*
 * drops_enrich says whether a statement is a DROP EXTENSION of enrich that
 * its caller may run (the owner of the extension): the workers of the
 * database step out of the way first, so that the DROP does not wait for
 * them (or deadlock with one that holds a lock it needs)
 */
static bool
drops_enrich(Node *stmt)
{
	ListCell   *lc;
	Oid			extension;

	if (!IsA(stmt, DropStmt) || ((DropStmt *) stmt)->removeType != OBJECT_EXTENSION)
		return false;
	extension = get_extension_oid("enrich", true);
	if (!OidIsValid(extension) || !ENRICH_EXTENSION_OWNERCHECK(extension, GetUserId()))
		return false;
	foreach(lc, ((DropStmt *) stmt)->objects)
		if (strcmp(strVal(lfirst(lc)), "enrich") == 0)
			return true;
	return false;
}

/*
 * refuse_schema_enrich refuses CREATE EXTENSION enrich SCHEMA enrich:
 * schema enrich is the extension's own, made by it, and the functions
 * users call go into the schema CREATE EXTENSION names
 */
static void
refuse_schema_enrich(CreateExtensionStmt *stmt)
{
	ListCell   *lc;

	if (strcmp(stmt->extname, "enrich") != 0)
		return;
	foreach(lc, stmt->options)
	{
		DefElem    *option = lfirst_node(DefElem, lc);

		if (strcmp(option->defname, "schema") == 0 && strcmp(defGetString(option), "enrich") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_SCHEMA_NAME),
					 errmsg("extension \"enrich\" cannot be installed in schema \"enrich\""),
					 errdetail("Schema enrich is made by the extension for its own tables; the functions users call go into the schema CREATE EXTENSION names."),
					 errhint("Leave SCHEMA out (the functions go into the first schema of search_path, usually public), or name another schema.")));
	}
}

/*
 * run_aside runs a statement that needs a database to itself while the
 * workers stay out of it: the launcher stops them at once (the statement
 * waits for them as for any session), and starts them again a moment after
 * it succeeded (when the database still exists), or at once when it failed
 */
static void
run_aside(Oid database, PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
		  ProcessUtilityContext context, ParamListInfo params,
		  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	/* until an error or a success says otherwise: a statement takes long */
	enrich_shared_step_aside(database, DT_NOEND);
	PG_TRY();
	{
		if (prev_process_utility_hook)
			prev_process_utility_hook(pstmt, queryString, readOnlyTree, context, params,
									  queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
									queryEnv, dest, qc);
	}
	PG_CATCH();
	{
		enrich_shared_step_aside(database, 0);
		PG_RE_THROW();
	}
	PG_END_TRY();
	enrich_shared_step_aside(database,
							 TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ENRICH_ASIDE_AFTER_MS));
}

/*
 * enrich_process_utility is the hook.  A COMMIT PREPARED wakes the workers,
 * and tells them the keys may have changed: the transaction it ends asked
 * for that at PREPARE TRANSACTION, in another session perhaps, where the
 * wake could not be delivered (a prepared transaction is not committed
 * yet).  A wake is cheap, so every COMMIT PREPARED gets one.
 */
static void
enrich_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					   ProcessUtilityContext context, ParamListInfo params,
					   QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	const char *alone = database_needed_alone(stmt);
	Oid			database = alone ? get_database_oid(alone, true) : InvalidOid;

	if (IsA(stmt, TransactionStmt) &&
		((TransactionStmt *) stmt)->kind == TRANS_STMT_COMMIT_PREPARED)
	{
		enrich_wake_at_commit();
		enrich_keys_changed_at_commit();
	}
	if (IsA(stmt, CreateExtensionStmt))
		refuse_schema_enrich((CreateExtensionStmt *) stmt);
	if (drops_enrich(stmt) && enrich_shared_serves(MyDatabaseId))
		run_aside(MyDatabaseId, pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else if (OidIsValid(database) && enrich_shared_serves(database) && may_run(stmt, database))
		run_aside(database, pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else if (prev_process_utility_hook)
		prev_process_utility_hook(pstmt, queryString, readOnlyTree, context, params,
								  queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

/*
 * enrich_utility_init installs the hook: in the postmaster, for every
 * session, when enrich is preloaded; else in the session that loads it
 * (there are no workers then, and moving them does nothing)
 */
void
enrich_utility_init(void)
{
	prev_process_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = enrich_process_utility;
}
