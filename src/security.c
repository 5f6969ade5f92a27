/*-------------------------------------------------------------------------
 *
 * security.c
 *	  Running code with privileges other than the caller's, in one place:
 *	  the settings every such statement runs under, the switch to another
 *	  user and back, and enrich's fixed statements run as the bootstrap
 *	  superuser on the caller's behalf.
 *
 * A switch opens a GUC nest level, fixes the settings that decide how a
 * statement is parsed and how values are written as text (search_path =
 * pg_catalog, pg_temp first: pg_temp is never searched for operators or
 * functions), and runs in a restricted security context, as PostgreSQL's
 * own maintenance commands do.  Undoing it rolls back every setting
 * changed at that level or deeper, SET and set_config(..., false)
 * included, so nothing that ran meanwhile (a table owner's trigger, say)
 * leaves a setting behind.  On an error the (sub)transaction's abort undoes
 * the nest level.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "security.h"

/* the settings fixed for every statement run with other privileges */
static const char *const pinned_settings[][2] = {
	{"search_path", "pg_catalog, pg_temp"},
	/* values written as text (primary keys of watched rows) read back alike */
	{"datestyle", "ISO, YMD"},
	{"intervalstyle", "postgres"},
	{"extra_float_digits", "3"},
};

/*
 * and, for a worker's session, the settings of its transactions that the
 * owner of its database could otherwise choose for it
 */
static const char *const worker_settings[][2] = {
	{"default_transaction_read_only", "off"},
	{"default_transaction_isolation", "read committed"},
	{"lock_timeout", "0"},
	{"statement_timeout", "0"},
	{"idle_in_transaction_session_timeout", "0"},
	/*
	 * a kept plan's estimate may pass jit_above_cost (a count over an index
	 * range the generic plan guesses a third of): compiling it costs far
	 * more than the few rows it reads
	 */
	{"jit", "off"},
};

/*
 * enrich_pin_settings fixes pinned_settings: with GUC_ACTION_SAVE until
 * the current GUC nest level ends, with GUC_ACTION_SET for the session (a
 * worker, whose database and role settings its owner may have chosen)
 */
void
enrich_pin_settings(GucAction action)
{
	for (size_t i = 0; i < lengthof(pinned_settings); i++)
		(void) set_config_option(pinned_settings[i][0], pinned_settings[i][1],
								 PGC_USERSET, PGC_S_SESSION, action, true, 0, false);
}

/*
 * enrich_pin_worker_settings fixes, for a worker's session, the pinned
 * settings and those of worker_settings, whatever the database's and the
 * role's settings say
 */
void
enrich_pin_worker_settings(void)
{
	enrich_pin_settings(GUC_ACTION_SET);
	for (size_t i = 0; i < lengthof(worker_settings); i++)
		(void) set_config_option(worker_settings[i][0], worker_settings[i][1],
								 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SET, true, 0, false);
}

/*
 * enrich_switch_user makes userid the current user, in a restricted
 * security context and a GUC nest level of its own with the pinned
 * settings; enrich_restore_user undoes it
 */
void
enrich_switch_user(EnrichUserSwitch *sw, Oid userid)
{
	GetUserIdAndSecContext(&sw->saved_userid, &sw->saved_sec_context);
	sw->nestlevel = NewGUCNestLevel();
	enrich_pin_settings(GUC_ACTION_SAVE);
	SetUserIdAndSecContext(userid, sw->saved_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

/*
 * enrich_restore_user ends a switch: the user and context before it, and
 * every setting as it was (a setting changed meanwhile, even for the
 * session, is rolled back)
 */
void
enrich_restore_user(EnrichUserSwitch *sw)
{
	SetUserIdAndSecContext(sw->saved_userid, sw->saved_sec_context);
	AtEOXact_GUC(false, sw->nestlevel);
}

/*
 * enrich_run_privileged_plan runs one of enrich's fixed statements with SPI
 * (connected by the caller) as the bootstrap superuser, under the pinned
 * settings, and returns SPI's result code.  With plan, the statement is
 * prepared into *plan on first use (with the cursor options given) and
 * kept; every execution then runs under the same settings, so a
 * re-planning resolves names the same way.  Without it, the statement is
 * planned for this run only.
 */
int
enrich_run_privileged_plan(SPIPlanPtr *plan, const char *sql, int cursor_options,
						   int nargs, Oid *argtypes, Datum *values,
						   const char *nulls, bool read_only)
{
	EnrichUserSwitch sw;
	volatile int rc = 0;

	enrich_switch_user(&sw, BOOTSTRAP_SUPERUSERID);
	PG_TRY();
	{
		if (plan == NULL)
			rc = SPI_execute_with_args(sql, nargs, argtypes, values, nulls, read_only, 0);
		else
		{
			if (*plan == NULL)
			{
				SPIPlanPtr	prepared = SPI_prepare_cursor(sql, nargs, argtypes, cursor_options);

				if (prepared == NULL)
					elog(ERROR, "enrich: could not prepare a statement: %s",
						 SPI_result_code_string(SPI_result));
				SPI_keepplan(prepared);
				*plan = prepared;
			}
			rc = SPI_execute_plan(*plan, values, nulls, read_only, 0);
		}
	}
	PG_CATCH();
	{
		/* the user now; the settings go back with the (sub)transaction */
		SetUserIdAndSecContext(sw.saved_userid, sw.saved_sec_context);
		PG_RE_THROW();
	}
	PG_END_TRY();
	enrich_restore_user(&sw);
	return rc;
}

/* enrich_run_privileged is enrich_run_privileged_plan without a kept plan */
int
enrich_run_privileged(const char *sql, int nargs, Oid *argtypes, Datum *values,
					  const char *nulls, bool read_only)
{
	return enrich_run_privileged_plan(NULL, sql, 0, nargs, argtypes, values, nulls, read_only);
}
