/* What a report asks for and how it is written, the same for the admin
 * API and aiproxy-admin: spans of months or UTC days, the CSV and its
 * cells. Pure: APR only, unit-tested. */
#ifndef AIPROXY_REPORT_H
#define AIPROXY_REPORT_H

#include <apr_pools.h>

#include "aiproxy.h"

#define AIPROXY_REPORT_DAY_MS APR_INT64_C(86400000)

/* Which records: email and course NULL for any; a month "YYYY-MM", or
 * (month NULL) the UTC days [from_ms, to_ms) by their time. */
typedef struct {
    const char *email, *course, *month;
    apr_int64_t from_ms, to_ms;
} aiproxy_report_filter_t;

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
