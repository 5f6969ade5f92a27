/*-------------------------------------------------------------------------
 *
 * enrich.c
 *	  Entry point of the enrich extension: _PG_init, which only calls the
 *	  init function of each module.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "budget.h"
#include "compat.h"
#include "guc.h"
#include "launcher.h"
#include "shared.h"
#include "utility.h"

ENRICH_MODULE_MAGIC;

void		_PG_init(void);

/*
 * _PG_init calls the init function of each module.  It runs in the
 * postmaster when enrich is in shared_preload_libraries (then the shared
 * memory and the launcher exist), and in a backend that loads the library
 * on first use otherwise.
 */
void
_PG_init(void)
{
	enrich_guc_init();
	enrich_shared_init();
	enrich_budget_init();
	enrich_utility_init();
	enrich_launcher_init();
}
