/* Report parameters and CSV (aiproxy_report.h). */
#include <string.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <apr_time.h>

#include "aiproxy_cost.h"
#include "aiproxy_report.h"

int aiproxy_report_by_parse(const char *s, aiproxy_report_by_t *by)
{
    if (!s)
        return 0;
    if (!strcmp(s, "user"))
        *by = AIPROXY_REPORT_BY_USER;
    else if (!strcmp(s, "model"))
        *by = AIPROXY_REPORT_BY_MODEL;
    else if (!strcmp(s, "day"))
        *by = AIPROXY_REPORT_BY_DAY;
    else
        return 0;
    return 1;
}

/* 128-bit products: a pico-dollar amount times 100 leaves 64 bits past
 * $92,000. */
int aiproxy_report_at_least(aiproxy_money_t spent, aiproxy_money_t cap,
                            int pct)
{
    if (cap <= 0)
        return spent > 0 || pct == 0;
    return (__int128)spent * 100 >= (__int128)cap * pct;
}

/* ---- Parameters and CSV ---- */

static int two(const char *s)
{
    return apr_isdigit(s[0]) && apr_isdigit(s[1]) ? (s[0] - '0') * 10 +
                                                    s[1] - '0' : -1;
}

/* "YYYY-MM-DD", a real day: 1 and *ms its start (UTC). */
static int day_ms(const char *d, apr_int64_t *ms)
{
    static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30,
                                 31 };
    apr_time_exp_t tm;
    apr_time_t t;
    int y, m, dd;

    if (!d || strlen(d) != 10 || d[4] != '-' || d[7] != '-' ||
        two(d) < 0 || two(d + 2) < 0)
        return 0;
    y = two(d) * 100 + two(d + 2);
    m = two(d + 5);
    dd = two(d + 8);
    if (y < 1970 || m < 1 || m > 12 || dd < 1 || dd > mdays[m - 1] ||
        (m == 2 && dd == 29 && (y % 4 || (y % 100 == 0 && y % 400))))
        return 0;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = dd;
    if (apr_time_exp_gmt_get(&t, &tm) != APR_SUCCESS)
        return 0;
    *ms = apr_time_as_msec(t);
    return 1;
}

static int month_ok(const char *m)
{
    return m && strlen(m) == 7 && m[4] == '-' && two(m) >= 19 &&
           two(m + 2) >= 0 && two(m + 5) >= 1 && two(m + 5) <= 12;
}

const char *aiproxy_report_span(apr_pool_t *p, aiproxy_report_filter_t *f,
                                const char *month, const char *from,
                                const char *to, const char *dflt_month)
{
    (void)p;
    if (month && (from || to))
        return "Give month, or from and to, not both.";
    if (!from != !to)
        return from ? "to is missing: give from and to (YYYY-MM-DD)."
                    : "from is missing: give from and to (YYYY-MM-DD).";
    if (!from) {
        if (month && !month_ok(month))
            return "month must be YYYY-MM.";
        f->month = month ? month : dflt_month;
        return NULL;
    }
    if (!day_ms(from, &f->from_ms))
        return "from must be a date YYYY-MM-DD.";
    if (!day_ms(to, &f->to_ms))
        return "to must be a date YYYY-MM-DD.";
    if (f->to_ms < f->from_ms)
        return "to must not be before from.";
    f->to_ms += AIPROXY_REPORT_DAY_MS;      /* to is inclusive */
    if (f->to_ms - f->from_ms > AIPROXY_REPORT_MAX_DAYS * AIPROXY_REPORT_DAY_MS)
        return "from and to may span at most 400 days.";
    f->month = NULL;
    return NULL;
}

const char *aiproxy_report_csv_header(aiproxy_report_by_t by)
{
    return by == AIPROXY_REPORT_BY_USER
        ? "email,requests,estimated,input_tokens,cached_tokens,"
          "cache_write_tokens,output_tokens,cost\r\n"
        : by == AIPROXY_REPORT_BY_MODEL
        ? "model,requests,estimated,input_tokens,cached_tokens,"
          "cache_write_tokens,output_tokens,cost\r\n"
        : "day,requests,estimated,input_tokens,cached_tokens,"
          "cache_write_tokens,output_tokens,cost\r\n";
}

const char *aiproxy_report_csv_cell(apr_pool_t *p, const char *s)
{
    const char *lead = (*s == '=' || *s == '+' || *s == '-' || *s == '@' ||
                        *s == '\t' || *s == '\r') ? "'" : "";
    const char *c;
    char *out, *o;

    /* ";" too: where it is the list separator, an unquoted cell would be
     * split, and its second part could start a formula. */
    if (!s[strcspn(s, ",;\"\r\n")])
        return apr_pstrcat(p, lead, s, NULL);
    o = out = apr_palloc(p, strlen(s) * 2 + 4);
    *o++ = '"';
    if (*lead)
        *o++ = '\'';
    for (c = s; *c; c++) {
        if (*c == '"')
            *o++ = '"';
        *o++ = *c;
    }
    *o++ = '"';
    *o = '\0';
    return out;
}

const char *aiproxy_report_csv_row(apr_pool_t *p,
                                   const aiproxy_total_row_t *row)
{
    return apr_psprintf(p, "%s,%" APR_INT64_T_FMT ",%" APR_INT64_T_FMT ",%"
                        APR_INT64_T_FMT ",%" APR_INT64_T_FMT ",%"
                        APR_INT64_T_FMT ",%" APR_INT64_T_FMT ",%s\r\n",
                        aiproxy_report_csv_cell(p, row->key), row->requests,
                        row->estimated, row->input, row->cached,
                        row->cache_write, row->output,
                        aiproxy_money_format(p, row->cost));
}

static const char *safe_name(apr_pool_t *p, const char *s)
{
    char *out = apr_pstrdup(p, s), *o;

    for (o = out; *o; o++)
        if (!apr_isalnum(*o) && *o != '@' && *o != '.' && *o != '_' &&
            *o != '-')
            *o = '_';
    return out;
}

const char *aiproxy_report_filename(apr_pool_t *p, aiproxy_report_by_t by,
                                    const aiproxy_report_filter_t *f)
{
    static const char *const names[] = { "user", "model", "day" };
    const char *span = f->month;
    apr_time_exp_t a, b;

    if (!span) {
        apr_time_exp_gmt(&a, apr_time_from_msec(f->from_ms));
        apr_time_exp_gmt(&b, apr_time_from_msec(f->to_ms -
                                                AIPROXY_REPORT_DAY_MS));
        span = apr_psprintf(p, "%04d-%02d-%02d_%04d-%02d-%02d",
                            a.tm_year + 1900, a.tm_mon + 1, a.tm_mday,
                            b.tm_year + 1900, b.tm_mon + 1, b.tm_mday);
    }
    return safe_name(p, apr_pstrcat(p, "aiproxy-", names[by], "-", span,
                                    f->course ? "-" : "",
                                    f->course ? f->course : "",
                                    f->email ? "-" : "",
                                    f->email ? f->email : "", ".csv", NULL));
}
