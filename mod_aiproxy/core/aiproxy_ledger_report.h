/* Reports on the request records and months: a user's requests, totals
 * per user, model or day, and the accounts near their cap. Read by the
 * admin API and aiproxy-admin alike, so both answer the same numbers. */
#ifndef AIPROXY_LEDGER_REPORT_H
#define AIPROXY_LEDGER_REPORT_H

#include "aiproxy_ledger.h"
#include "aiproxy_course.h"
#include "aiproxy_report.h"

typedef struct {
    const char *id, *email, *endpoint, *model, *course;
    apr_int64_t time_ms, input, cached, cache_write, output;
    aiproxy_money_t cost;
    int status, estimated;
} aiproxy_request_row_t;

/* Records, newest first (then by id, so pages never overlap), paged. The
 * filter names an email (the {email, month, time} index). */
aiproxy_ledger_rc_t aiproxy_ledger_requests(aiproxy_ledger_t *l,
                                            apr_pool_t *p,
                                            const aiproxy_report_filter_t *f,
                                            apr_int64_t skip,
                                            apr_int64_t limit,
                                            apr_array_header_t **rows,
                                            const char **err);

/* Receives each total as the store's cursor yields it; p is cleared after
 * each row. Non-zero stops the listing (the caller's own failure). */
typedef int aiproxy_total_fn(apr_pool_t *p, const aiproxy_total_row_t *row,
                             void *baton);

/* Totals of the records by user, model or day, in key order, summed in the
 * store and streamed: a month of a million records costs the caller one
 * row at a time. DOWN before the first row is retried once. */
aiproxy_ledger_rc_t aiproxy_ledger_totals(aiproxy_ledger_t *l, apr_pool_t *p,
                                          const aiproxy_report_filter_t *f,
                                          aiproxy_report_by_t by,
                                          aiproxy_total_fn *fn, void *baton,
                                          const char **err);

typedef struct {
    const char *email;
    aiproxy_money_t spent, reserved, cap;
    apr_int64_t requests;
    int pct;                    /* spent / cap, whole percent (rounded down) */
} aiproxy_near_row_t;

/* The users (never course accounts) whose month's spent is at least pct%
 * of their effective cap, most spent first, at most max rows. With course
 * (NULL: everyone) only its members, with their cap in the course. dflt:
 * AIProxyMonthlyCap. */
aiproxy_ledger_rc_t aiproxy_ledger_near(aiproxy_ledger_t *l, apr_pool_t *p,
                                        const char *month,
                                        const aiproxy_course_t *course,
                                        aiproxy_money_t dflt, int pct,
                                        int max, apr_array_header_t **rows,
                                        const char **err);

/* The users' months (aiproxy_month_row_t) of a course's members (own or
 * @domain enrolment), as aiproxy_ledger_months lists them. */
aiproxy_ledger_rc_t aiproxy_ledger_course_months(aiproxy_ledger_t *l,
                                                 apr_pool_t *p,
                                                 const char *course,
                                                 const char *month,
                                                 const char *sort,
                                                 apr_int64_t skip,
                                                 apr_int64_t limit,
                                                 apr_array_header_t **rows,
                                                 const char **err);

#endif
