/* aiproxy-admin's reports: export (the admin API's CSV, byte for byte) and
 * requests (a user's request records), on the ledger's report queries. */
#include <stdio.h>
#include <string.h>
#include <apr_strings.h>
#include <apr_time.h>

#include "aiproxy_cli.h"
#include "aiproxy_course.h"
#include "aiproxy_ledger_report.h"
#include "aiproxy_params.h"
#include "aiproxy_policy.h"

#define REQUESTS_LIMIT_MAX 1000

static const char *this_month(apr_pool_t *p)
{
    return aiproxy_month_of(p, apr_time_now());
}

/* The value of an option at argv[*i], or NULL after a usage error. */
static const char *value_of(int argc, const char *const *argv, int *i)
{
    if (*i + 1 >= argc) {
        aiproxy_cli_usage_error("%s: give a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

typedef struct {
    aiproxy_report_by_t by;
    int started;
} export_t;

/* The header goes out with the first row (or once the store answered), so
 * that a store down prints no CSV at all. */
static int write_header(export_t *e)
{
    if (e->started)
        return 0;
    e->started = 1;
    return fputs(aiproxy_report_csv_header(e->by), stdout) == EOF;
}

static int write_row(apr_pool_t *p, const aiproxy_total_row_t *row, void *b)
{
    return write_header(b) ||
           fputs(aiproxy_report_csv_row(p, row), stdout) == EOF;
}

int aiproxy_cli_export(aiproxy_cli_t *x, int argc, const char *const *argv)
{
    const char *month = NULL, *from = NULL, *to = NULL, *by_s = NULL;
    const char *err = "", *msg, *v;
    aiproxy_report_filter_t f;
    export_t e = { AIPROXY_REPORT_BY_USER, 0 };
    int i;

    memset(&f, 0, sizeof(f));
    for (i = 0; i < argc; i++) {
        const char *o = argv[i];

        if (strcmp(o, "--by") && strcmp(o, "--month") && strcmp(o, "--from")
            && strcmp(o, "--to") && strcmp(o, "--course") &&
            strcmp(o, "--email"))
            return aiproxy_cli_usage_error("export: unexpected argument '%s'",
                                           o);
        if (!(v = value_of(argc, argv, &i)))
            return AIPROXY_CLI_EXIT_USAGE;
        if (!strcmp(o, "--by"))
            by_s = v;
        else if (!strcmp(o, "--month"))
            month = v;
        else if (!strcmp(o, "--from"))
            from = v;
        else if (!strcmp(o, "--to"))
            to = v;
        else if (!strcmp(o, "--course")) {
            if (!aiproxy_course_id_valid(v))
                return aiproxy_cli_usage_error("--course: '%s' is not a "
                                               "course id", v);
            f.course = v;
        }
        else {
            if (!aiproxy_params_email(x->p, v, &f.email))
                return aiproxy_cli_usage_error("--email: '%s' is not an "
                                               "email address", v);
        }
    }
    if (!aiproxy_report_by_parse(by_s, &e.by))
        return aiproxy_cli_usage_error("export: give --by user, model or "
                                       "day%s", "");
    if (month && !aiproxy_params_month(month))
        return aiproxy_cli_usage_error("--month: '%s' is not YYYY-MM", month);
    if ((msg = aiproxy_report_span(x->p, &f, month, from, to,
                                   this_month(x->p))))
        return aiproxy_cli_usage_error("export: %s", msg);
    if (aiproxy_ledger_totals(x->ledger, x->p, &f, e.by, write_row, &e, &err)
        != AIPROXY_LEDGER_OK) {
        fflush(stdout);
        return aiproxy_cli_fail("store", err);
    }
    if (write_header(&e) || fflush(stdout) == EOF)
        return aiproxy_cli_fail("stdout", "write failed");
    return 0;
}

int aiproxy_cli_requests(aiproxy_cli_t *x, int argc, const char *const *argv)
{
    aiproxy_report_filter_t f;
    apr_array_header_t *rows;
    apr_int64_t limit = 50;
    const char *err = "", *v;
    int i;

    memset(&f, 0, sizeof(f));
    f.month = this_month(x->p);
    for (i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--month") || !strcmp(argv[i], "--limit")) {
            const char *o = argv[i];

            if (!(v = value_of(argc, argv, &i)))
                return AIPROXY_CLI_EXIT_USAGE;
            if (!strcmp(o, "--month")) {
                if (!aiproxy_params_month(v))
                    return aiproxy_cli_usage_error("--month: '%s' is not "
                                                   "YYYY-MM", v);
                f.month = v;
            }
            else if (!aiproxy_params_count(v, 1, REQUESTS_LIMIT_MAX, &limit))
                return aiproxy_cli_usage_error("--limit: '%s' is not 1 to "
                                               "1000", v);
        }
        else if (!f.email && argv[i][0] != '-') {
            if (!aiproxy_params_email(x->p, argv[i], &f.email))
                return aiproxy_cli_usage_error("requests: '%s' is not an "
                                               "email address", argv[i]);
        }
        else
            return aiproxy_cli_usage_error("requests: unexpected argument "
                                           "'%s'", argv[i]);
    }
    if (!f.email)
        return aiproxy_cli_usage_error("requests: give an EMAIL%s", "");
    if (aiproxy_ledger_requests(x->ledger, x->p, &f, 0, limit, &rows, &err)
        != AIPROXY_LEDGER_OK)
        return aiproxy_cli_fail("store", err);
    printf("%-24s %-22s %-28s %9s %9s %9s %14s %s\n", "TIME (UTC)", "ENDPOINT",
           "MODEL", "INPUT", "CACHED", "OUTPUT", "COST (USD)", "COURSE");
    for (i = 0; i < rows->nelts; i++) {
        aiproxy_request_row_t *r = &APR_ARRAY_IDX(rows, i,
                                                  aiproxy_request_row_t);
        apr_time_exp_t tm;

        apr_time_exp_gmt(&tm, apr_time_from_msec(r->time_ms));
        printf("%04d-%02d-%02d %02d:%02d:%02d.%03d  %-22s %-28s %9"
               APR_INT64_T_FMT " %9" APR_INT64_T_FMT " %9" APR_INT64_T_FMT
               " %14s%s %s\n", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
               tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(r->time_ms % 1000),
               r->endpoint, r->model, r->input, r->cached, r->output,
               aiproxy_money_format(x->p, r->cost), r->estimated ? "*" : " ",
               *r->course ? r->course : "-");
    }
    if (rows->nelts == limit)
        fprintf(stderr, "aiproxy-admin: the newest %d requests are shown "
                "(--limit)\n", (int)limit);
    return 0;
}
