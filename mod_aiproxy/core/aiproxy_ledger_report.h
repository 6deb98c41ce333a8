/* Reports on the request records and months: a user's requests, totals
 * per user, model or day, and the accounts near their cap. Read by the
 * admin API and aiproxy-admin alike, so both answer the same numbers. */
#ifndef AIPROXY_LEDGER_REPORT_H
#define AIPROXY_LEDGER_REPORT_H

#include "aiproxy_ledger.h"
#include "aiproxy_course.h"

#define AIPROXY_REPORT_DAY_MS APR_INT64_C(86400000)

/* Which records: email and course NULL for any; a month "YYYY-MM", or
 * (month NULL) the UTC days [from_ms, to_ms) by their time. */
typedef struct {
    const char *email, *course, *month;
    apr_int64_t from_ms, to_ms;
} aiproxy_report_filter_t;

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

typedef enum {
    AIPROXY_REPORT_BY_USER, AIPROXY_REPORT_BY_MODEL, AIPROXY_REPORT_BY_DAY
} aiproxy_report_by_t;

/* "user", "model", "day": 1 and *by, else 0. */
int aiproxy_report_by_parse(const char *s, aiproxy_report_by_t *by);

typedef struct {
    const char *key;            /* the email, model or day (YYYY-MM-DD) */
    apr_int64_t requests, estimated, input, cached, cache_write, output;
    aiproxy_money_t cost;
} aiproxy_total_row_t;

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

/* ---- Parameters and CSV, the same for the API and aiproxy-admin ---- */

/* The longest date range of a report, in days. */
#define AIPROXY_REPORT_MAX_DAYS 400

/* Sets f's span: month (YYYY-MM), or from and to (YYYY-MM-DD, UTC days,
 * both inclusive), or neither (dflt_month). NULL, or a message naming the
 * parameter that is wrong. */
const char *aiproxy_report_span(apr_pool_t *p, aiproxy_report_filter_t *f,
                                const char *month, const char *from,
                                const char *to, const char *dflt_month);

/* The export's CSV: a header row, then a row per total (CRLF ends). */
const char *aiproxy_report_csv_header(aiproxy_report_by_t by);
const char *aiproxy_report_csv_row(apr_pool_t *p,
                                   const aiproxy_total_row_t *row);
/* A text cell: quoted when it holds a comma, quote, CR or LF, and with a
 * leading ' when it starts with = + - @ TAB or CR, so that a spreadsheet
 * never reads it as a formula. */
const char *aiproxy_report_csv_cell(apr_pool_t *p, const char *s);
/* A file name for the export: aiproxy-BY-SPAN[-COURSE][-EMAIL].csv, of
 * [a-z0-9@._-] only. */
const char *aiproxy_report_filename(apr_pool_t *p, aiproxy_report_by_t by,
                                    const aiproxy_report_filter_t *f);

/* Whether spent >= pct% of cap, exactly (no floats). */
int aiproxy_report_at_least(aiproxy_money_t spent, aiproxy_money_t cap,
                            int pct);

#endif
