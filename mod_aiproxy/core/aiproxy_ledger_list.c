/* The ledger's listings: months, users and cost per day, read for the
 * usage and admin APIs and the aiproxy-admin command. */
#include <string.h>

#include "aiproxy_ledger_int.h"

static const char *sort_field(const char *sort)
{
    if (!sort || !strcmp(sort, "monthlyCost"))
        return "spent";
    if (!strcmp(sort, "monthlyRequests"))
        return "requests";
    return sort;  /* email, month: validated by the caller */
}

void aiproxy_ledger_month_each(apr_pool_t *p, const bson_t *doc, void *baton)
{
    aiproxy_month_row_t *row = apr_array_push((apr_array_header_t *)baton);
    aiproxy_month_t m;

    aiproxy_ledger_read_month(doc, &m);
    row->email = aiproxy_ledger_str(p, doc, "email");
    row->month = aiproxy_ledger_str(p, doc, "month");
    row->spent = m.spent;
    row->reserved = m.reserved;
    row->requests = m.requests;
}

/* Leaves out the accounts of courses ("#id"), which are no user's. */
void aiproxy_ledger_users_only(bson_t *filter)
{
    bson_t email, not;

    BSON_APPEND_DOCUMENT_BEGIN(filter, "email", &email);
    BSON_APPEND_DOCUMENT_BEGIN(&email, "$not", &not);
    BSON_APPEND_UTF8(&not, "$gte", "#");
    BSON_APPEND_UTF8(&not, "$lt", "$");     /* '#' + 1 */
    bson_append_document_end(&email, &not);
    bson_append_document_end(filter, &email);
}

aiproxy_ledger_rc_t aiproxy_ledger_months_where(aiproxy_ledger_t *l,
                                                apr_pool_t *p,
                                                const bson_t *filter,
                                                const char *sort,
                                                apr_int64_t skip,
                                                apr_int64_t limit,
                                                apr_array_header_t **rows,
                                                const char **err)
{
    bson_t *opts = BCON_NEW("sort", "{", sort_field(sort), BCON_INT32(-1),
                            "_id", BCON_INT32(1), "}",
                            "skip", BCON_INT64(skip),
                            "limit", BCON_INT64(limit),
                            "projection", "{", "holds", BCON_INT32(0),
                            "done", BCON_INT32(0), "}");
    aiproxy_ledger_rc_t rc;

    *rows = apr_array_make(p, 16, sizeof(aiproxy_month_row_t));
    rc = aiproxy_ledger_each_doc(p, l, AIPROXY_LEDGER_MONTHS, filter, opts,
                                 NULL, aiproxy_ledger_rows_start,
                                 aiproxy_ledger_month_each, *rows, err);
    bson_destroy(opts);
    return rc;
}

aiproxy_ledger_rc_t aiproxy_ledger_months(aiproxy_ledger_t *l, apr_pool_t *p,
                                          const char *month,
                                          const char *email,
                                          const char *sort,
                                          apr_int64_t skip,
                                          apr_int64_t limit,
                                          apr_array_header_t **rows,
                                          const char **err)
{
    bson_t filter = BSON_INITIALIZER;
    aiproxy_ledger_rc_t rc;

    if (month)
        BSON_APPEND_UTF8(&filter, "month", month);
    if (email)
        BSON_APPEND_UTF8(&filter, "email", email);
    else
        aiproxy_ledger_users_only(&filter);
    rc = aiproxy_ledger_months_where(l, p, &filter, sort, skip, limit, rows,
                                     err);
    bson_destroy(&filter);
    return rc;
}

static void user_row_each(apr_pool_t *p, const bson_t *doc, void *baton)
{
    aiproxy_user_row_t *row = apr_array_push((apr_array_header_t *)baton);

    row->who = aiproxy_ledger_str(p, doc, "_id");
    row->has_cap = aiproxy_ledger_has_int(doc, "cap");
    row->cap = row->has_cap ? aiproxy_ledger_i64(doc, "cap") : 0;
    row->revoked_at = aiproxy_ledger_i64(doc, "revoked_at");
}

aiproxy_ledger_rc_t aiproxy_ledger_users(aiproxy_ledger_t *l, apr_pool_t *p,
                                         apr_array_header_t **rows,
                                         const char **err)
{
    bson_t filter = BSON_INITIALIZER;
    bson_t *opts = BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}");
    aiproxy_ledger_rc_t rc;

    *rows = apr_array_make(p, 16, sizeof(aiproxy_user_row_t));
    rc = aiproxy_ledger_each_doc(p, l, AIPROXY_LEDGER_USERS, &filter, opts,
                                 NULL, aiproxy_ledger_rows_start,
                                 user_row_each, *rows, err);
    bson_destroy(opts);
    bson_destroy(&filter);
    return rc;
}

static void day_each(apr_pool_t *p, const bson_t *doc, void *baton)
{
    aiproxy_day_row_t *row = apr_array_push((apr_array_header_t *)baton);

    row->day = aiproxy_ledger_str(p, doc, "_id");
    row->cost = aiproxy_ledger_i64(doc, "cost");
    row->requests = aiproxy_ledger_i64(doc, "requests");
}

aiproxy_ledger_rc_t aiproxy_ledger_daily(aiproxy_ledger_t *l, apr_pool_t *p,
                                         const char *month, const char *email,
                                         apr_array_header_t **rows,
                                         const char **err)
{
    bson_t match = BSON_INITIALIZER;
    bson_t *pipeline;
    aiproxy_ledger_rc_t rc;

    BSON_APPEND_UTF8(&match, "month", month);
    if (email)
        BSON_APPEND_UTF8(&match, "email", email);
    /* Summed in the store: a month can hold many thousands of requests. */
    pipeline = BCON_NEW("pipeline", "[",
                        "{", "$match", BCON_DOCUMENT(&match), "}",
                        "{", "$group", "{",
                             "_id", "{", "$dateToString", "{",
                                 "format", BCON_UTF8("%Y-%m-%d"),
                                 "date", BCON_UTF8("$time"), "}", "}",
                             "cost", "{", "$sum", BCON_UTF8("$cost"), "}",
                             "requests", "{", "$sum", BCON_INT32(1), "}",
                        "}", "}",
                        "{", "$sort", "{", "_id", BCON_INT32(1), "}", "}",
                        "]");
    *rows = apr_array_make(p, 31, sizeof(aiproxy_day_row_t));
    rc = aiproxy_ledger_each_doc(p, l, AIPROXY_LEDGER_REQUESTS, NULL, NULL,
                                 pipeline, aiproxy_ledger_rows_start, day_each,
                                 *rows, err);
    bson_destroy(pipeline);
    bson_destroy(&match);
    return rc;
}
