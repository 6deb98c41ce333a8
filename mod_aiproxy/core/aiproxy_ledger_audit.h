/* The audit log: one document per admin or instructor action, appended
 * after the action succeeded and never updated or deleted. */
#ifndef AIPROXY_LEDGER_AUDIT_H
#define AIPROXY_LEDGER_AUDIT_H

#include "aiproxy_ledger.h"

typedef struct {
    apr_int64_t time_ms;
    const char *who;            /* email, or "cli:<unix user>" */
    const char *role;           /* "admin", "instructor", "cli" */
    const char *action;         /* cap.set, member.add, ... */
    const char *target;         /* email, "@domain" or course id */
    const char *course;         /* NULL: none */
    const char *before, *after; /* JSON texts; NULL: null */
} aiproxy_audit_t;

/* Appends one entry (time_ms 0: now). A before or after that is not JSON
 * is kept as a string. */
aiproxy_ledger_rc_t aiproxy_ledger_audit_append(aiproxy_ledger_t *l,
                                                apr_pool_t *p,
                                                const aiproxy_audit_t *e,
                                                const char **err);

/* Entries newest first, paged; courses (const char *) NULL for all, else
 * only entries of those courses (none when empty). Rows are
 * aiproxy_audit_t with before and after as JSON texts ("null" for none). */
aiproxy_ledger_rc_t aiproxy_ledger_audit_list(aiproxy_ledger_t *l,
                                              apr_pool_t *p,
                                              const apr_array_header_t *courses,
                                              apr_int64_t skip,
                                              apr_int64_t limit,
                                              apr_array_header_t **rows,
                                              const char **err);

#endif
