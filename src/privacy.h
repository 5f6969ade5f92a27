/*-------------------------------------------------------------------------
 *
 * privacy.h
 *	  Each role sees its own enrichment (privacy.c): who sees every role's
 *	  requests and batches, the check that a caller submitted the batch it
 *	  reads, enrich_cancel, and the report of owners that do not exist.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENRICH_PRIVACY_H
#define ENRICH_PRIVACY_H

/* the role every other's rows are shown to (besides superusers) */
#define ENRICH_ADMIN_ROLE "enrich_admin"

extern bool enrich_role_sees_all(void);
extern void enrich_check_batch_reader(const char *batch_id);
extern bool *enrich_own_batches(char **batch_ids, int n);
extern void enrich_report_missing_owners(void);

#endif							/* ENRICH_PRIVACY_H */
