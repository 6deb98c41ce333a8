/* Reports on records and months (aiproxy_ledger_report.h). */
#include <string.h>
#include <apr_hash.h>
#include <apr_lib.h>
#include <apr_strings.h>

#include "aiproxy_ledger_int.h"
#include "aiproxy_ledger_course_admin.h"
#include "aiproxy_ledger_report.h"
#include "aiproxy_policy.h"

/* Enrolments read for a course's reports: a roster import's bound. */
#define MEMBERS_MAX 10000

/* The records' filter. */
static void filter_of(bson_t *b, const aiproxy_report_filter_t *f)
{
    if (f->email)
        BSON_APPEND_UTF8(b, "email", f->email);
    if (f->month)
        BSON_APPEND_UTF8(b, "month", f->month);
    else {
        bson_t t;

        BSON_APPEND_DOCUMENT_BEGIN(b, "time", &t);
        BSON_APPEND_DATE_TIME(&t, "$gte", f->from_ms);
        BSON_APPEND_DATE_TIME(&t, "$lt", f->to_ms);
        bson_append_document_end(b, &t);
    }
    if (f->course)
        BSON_APPEND_UTF8(b, "course", f->course);
}

static apr_int64_t time_of(const bson_t *doc)
{
    bson_iter_t it;

    if (bson_iter_init_find(&it, doc, "time") && BSON_ITER_HOLDS_DATE_TIME(&it))
        return bson_iter_date_time(&it);
    return 0;
}

static void request_each(apr_pool_t *p, const bson_t *doc, void *baton)
{
    aiproxy_request_row_t *row = apr_array_push((apr_array_header_t *)baton);
    bson_iter_t it;

    row->id = aiproxy_ledger_str(p, doc, "_id");
    row->email = aiproxy_ledger_str(p, doc, "email");
    row->endpoint = aiproxy_ledger_str(p, doc, "endpoint");
    row->model = aiproxy_ledger_str(p, doc, "model");
    row->course = aiproxy_ledger_str(p, doc, "course");
    row->time_ms = time_of(doc);
    row->input = aiproxy_ledger_i64(doc, "input_tokens");
    row->cached = aiproxy_ledger_i64(doc, "cached_tokens");
    row->cache_write = aiproxy_ledger_i64(doc, "cache_write_tokens");
    row->output = aiproxy_ledger_i64(doc, "output_tokens");
    row->cost = aiproxy_ledger_i64(doc, "cost");
    row->status = (int)aiproxy_ledger_i64(doc, "status");
    row->estimated = bson_iter_init_find(&it, doc, "estimated") &&
                     BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it);
}

aiproxy_ledger_rc_t aiproxy_ledger_requests(aiproxy_ledger_t *l,
                                            apr_pool_t *p,
                                            const aiproxy_report_filter_t *f,
                                            apr_int64_t skip,
                                            apr_int64_t limit,
                                            apr_array_header_t **rows,
                                            const char **err)
{
    bson_t filter = BSON_INITIALIZER;
    bson_t *opts = BCON_NEW("sort", "{", "time", BCON_INT32(-1),
                            "_id", BCON_INT32(-1), "}",
                            "skip", BCON_INT64(skip),
                            "limit", BCON_INT64(limit));
    aiproxy_ledger_rc_t rc;

    filter_of(&filter, f);
    *rows = apr_array_make(p, 16, sizeof(aiproxy_request_row_t));
    rc = aiproxy_ledger_each_doc(p, l, AIPROXY_LEDGER_REQUESTS, &filter, opts,
                                 NULL, aiproxy_ledger_rows_start,
                                 request_each, *rows, err);
    bson_destroy(opts);
    bson_destroy(&filter);
    return rc;
}

static void sum_of(bson_t *group, const char *name, const char *field)
{
    bson_t s;

    BSON_APPEND_DOCUMENT_BEGIN(group, name, &s);
    BSON_APPEND_UTF8(&s, "$sum", field);
    bson_append_document_end(group, &s);
}

static bson_t *totals_pipeline(const aiproxy_report_filter_t *f,
                               aiproxy_report_by_t by)
{
    bson_t *pl = bson_new(), stage, match, group, g, key, est, cond, arr;
    bson_t st2, sort;

    BSON_APPEND_DOCUMENT_BEGIN(pl, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$match", &match);
    filter_of(&match, f);
    bson_append_document_end(&stage, &match);
    bson_append_document_end(pl, &stage);

    BSON_APPEND_DOCUMENT_BEGIN(pl, "1", &group);
    BSON_APPEND_DOCUMENT_BEGIN(&group, "$group", &g);
    if (by == AIPROXY_REPORT_BY_DAY) {
        bson_t dts;

        BSON_APPEND_DOCUMENT_BEGIN(&g, "_id", &key);
        BSON_APPEND_DOCUMENT_BEGIN(&key, "$dateToString", &dts);
        BSON_APPEND_UTF8(&dts, "format", "%Y-%m-%d");
        BSON_APPEND_UTF8(&dts, "date", "$time");
        bson_append_document_end(&key, &dts);
        bson_append_document_end(&g, &key);
    }
    else
        BSON_APPEND_UTF8(&g, "_id", by == AIPROXY_REPORT_BY_USER ? "$email"
                                                                 : "$model");
    BSON_APPEND_DOCUMENT_BEGIN(&g, "requests", &est);
    BSON_APPEND_INT32(&est, "$sum", 1);
    bson_append_document_end(&g, &est);
    BSON_APPEND_DOCUMENT_BEGIN(&g, "estimated", &est);
    BSON_APPEND_DOCUMENT_BEGIN(&est, "$sum", &cond);
    BSON_APPEND_ARRAY_BEGIN(&cond, "$cond", &arr);
    BSON_APPEND_UTF8(&arr, "0", "$estimated");
    BSON_APPEND_INT32(&arr, "1", 1);
    BSON_APPEND_INT32(&arr, "2", 0);
    bson_append_array_end(&cond, &arr);
    bson_append_document_end(&est, &cond);
    bson_append_document_end(&g, &est);
    sum_of(&g, "input", "$input_tokens");
    sum_of(&g, "cached", "$cached_tokens");
    sum_of(&g, "cache_write", "$cache_write_tokens");
    sum_of(&g, "output", "$output_tokens");
    sum_of(&g, "cost", "$cost");
    bson_append_document_end(&group, &g);
    bson_append_document_end(pl, &group);

    BSON_APPEND_DOCUMENT_BEGIN(pl, "2", &st2);
    BSON_APPEND_DOCUMENT_BEGIN(&st2, "$sort", &sort);
    BSON_APPEND_INT32(&sort, "_id", 1);
    bson_append_document_end(&st2, &sort);
    bson_append_document_end(pl, &st2);
    return pl;
}

/* Streams the cursor itself, since aiproxy_ledger_each_doc may run a query
 * twice: rows already given out cannot be taken back, so only a failure
 * before the first row is tried again. */
aiproxy_ledger_rc_t aiproxy_ledger_totals(aiproxy_ledger_t *l, apr_pool_t *p,
                                          const aiproxy_report_filter_t *f,
                                          aiproxy_report_by_t by,
                                          aiproxy_total_fn *fn, void *baton,
                                          const char **err)
{
    bson_t *pl = totals_pipeline(f, by);
    bson_t *opts = BCON_NEW("allowDiskUse", BCON_BOOL(true),
                            "batchSize", BCON_INT32(500));
    apr_pool_t *rowp;
    bson_error_t error;
    aiproxy_ledger_rc_t rc = AIPROXY_LEDGER_DOWN;
    apr_int64_t given = 0;
    int tries, stopped = 0;

    apr_pool_create(&rowp, p);
    for (tries = 0; tries < 2 && !given && !stopped; tries++) {
        aiproxy_conn_t ls;
        mongoc_cursor_t *cur;
        const bson_t *doc;

        if (!aiproxy_ledger_conn(l, AIPROXY_LEDGER_REQUESTS, &ls, err))
            break;
        cur = mongoc_collection_aggregate(ls.coll, MONGOC_QUERY_NONE, pl,
                                          opts, NULL);
        while (!stopped && mongoc_cursor_next(cur, &doc)) {
            aiproxy_total_row_t row;

            row.key = aiproxy_ledger_str(rowp, doc, "_id");
            row.requests = aiproxy_ledger_i64(doc, "requests");
            row.estimated = aiproxy_ledger_i64(doc, "estimated");
            row.input = aiproxy_ledger_i64(doc, "input");
            row.cached = aiproxy_ledger_i64(doc, "cached");
            row.cache_write = aiproxy_ledger_i64(doc, "cache_write");
            row.output = aiproxy_ledger_i64(doc, "output");
            row.cost = aiproxy_ledger_i64(doc, "cost");
            given++;
            stopped = fn(rowp, &row, baton) != 0;
            apr_pool_clear(rowp);
        }
        if (!stopped && mongoc_cursor_error(cur, &error))
            *err = aiproxy_ledger_describe(p, &error);
        else
            rc = AIPROXY_LEDGER_OK;
        mongoc_cursor_destroy(cur);
        aiproxy_ledger_conn_done(&ls);
        if (rc == AIPROXY_LEDGER_OK)
            break;
    }
    apr_pool_destroy(rowp);
    bson_destroy(opts);
    bson_destroy(pl);
    return rc;
}

static int percent_of(aiproxy_money_t spent, aiproxy_money_t cap)
{
    __int128 v = cap > 0 ? (__int128)spent * 100 / cap : 0;

    return v > 1000000 ? 1000000 : (int)v;
}

/* A course's enrolments, by who, for membership and the member's cap. */
static aiproxy_ledger_rc_t course_whos(aiproxy_ledger_t *l, apr_pool_t *p,
                                       const char *course, apr_hash_t **out,
                                       const char **err)
{
    apr_array_header_t *rows;
    apr_int64_t total;
    aiproxy_ledger_rc_t rc;
    int i;

    *out = apr_hash_make(p);
    rc = aiproxy_ledger_members(l, p, course, 0, MEMBERS_MAX, &rows, &total,
                                err);
    for (i = 0; rc == AIPROXY_LEDGER_OK && i < rows->nelts; i++) {
        aiproxy_member_row_t *m = &APR_ARRAY_IDX(rows, i,
                                                 aiproxy_member_row_t);

        apr_hash_set(*out, m->who, APR_HASH_KEY_STRING, m);
    }
    return rc;
}

/* The enrolment that makes email a member: its own, else its @domain's. */
static const aiproxy_member_row_t *enrolment(apr_hash_t *whos,
                                             const char *email)
{
    const aiproxy_member_row_t *m = apr_hash_get(whos, email,
                                                 APR_HASH_KEY_STRING);
    const char *at = strchr(email, '@');

    return m ? m : at ? apr_hash_get(whos, at, APR_HASH_KEY_STRING) : NULL;
}

typedef struct {
    apr_array_header_t *rows;
    apr_hash_t *settings, *whos;
    const aiproxy_course_t *course;
    aiproxy_money_t dflt;
    int pct, max;
} near_t;

static void near_start(apr_pool_t *p, const bson_t *doc, void *baton)
{
    (void)p;
    (void)doc;
    ((near_t *)baton)->rows->nelts = 0;
}

static void near_each(apr_pool_t *p, const bson_t *doc, void *baton)
{
    near_t *n = baton;
    const char *email = aiproxy_ledger_str(p, doc, "email");
    const aiproxy_member_row_t *m = NULL;
    aiproxy_near_row_t *row;
    aiproxy_user_t u;
    aiproxy_month_t mo;
    aiproxy_money_t cap;

    if (n->rows->nelts >= n->max || aiproxy_course_is_account(email))
        return;
    if (n->course && !(m = enrolment(n->whos, email)))
        return;
    aiproxy_policy_user_in(n->settings, email, &u);
    /* As the request path: an admin's cap for the email wins, else the
     * enrolment's, else the course's member cap, else domain or site. */
    if (u.cap_own || !n->course)
        cap = aiproxy_policy_cap(&u, n->dflt);
    else if (m->has_cap)
        cap = m->cap;
    else if (n->course->has_member_cap)
        cap = n->course->member_cap;
    else
        cap = aiproxy_policy_cap(&u, n->dflt);
    aiproxy_ledger_read_month(doc, &mo);
    if (!aiproxy_report_at_least(mo.spent, cap, n->pct))
        return;
    row = apr_array_push(n->rows);
    row->email = email;
    row->spent = mo.spent;
    row->reserved = mo.reserved;
    row->requests = mo.requests;
    row->cap = cap;
    row->pct = percent_of(mo.spent, cap);
}

aiproxy_ledger_rc_t aiproxy_ledger_near(aiproxy_ledger_t *l, apr_pool_t *p,
                                        const char *month,
                                        const aiproxy_course_t *course,
                                        aiproxy_money_t dflt, int pct,
                                        int max, apr_array_header_t **rows,
                                        const char **err)
{
    near_t n = { NULL, NULL, NULL, course, dflt, pct, max };
    apr_array_header_t *users;
    bson_t filter = BSON_INITIALIZER, gt;
    bson_t *opts = BCON_NEW("sort", "{", "spent", BCON_INT32(-1),
                            "_id", BCON_INT32(1), "}",
                            "projection", "{", "holds", BCON_INT32(0),
                            "done", BCON_INT32(0), "}");
    aiproxy_ledger_rc_t rc;

    *rows = n.rows = apr_array_make(p, 16, sizeof(aiproxy_near_row_t));
    rc = aiproxy_ledger_users(l, p, &users, err);
    if (rc == AIPROXY_LEDGER_OK && course)
        rc = course_whos(l, p, course->id, &n.whos, err);
    if (rc == AIPROXY_LEDGER_OK) {
        n.settings = aiproxy_policy_settings(p, users);
        BSON_APPEND_UTF8(&filter, "month", month);
        aiproxy_ledger_users_only(&filter);
        if (pct > 0) {
            BSON_APPEND_DOCUMENT_BEGIN(&filter, "spent", &gt);
            BSON_APPEND_INT64(&gt, "$gt", 0);
            bson_append_document_end(&filter, &gt);
        }
        /* Streamed: only the rows at or over the threshold are kept. */
        rc = aiproxy_ledger_each_doc(p, l, AIPROXY_LEDGER_MONTHS, &filter,
                                     opts, NULL, near_start, near_each, &n,
                                     err);
    }
    bson_destroy(opts);
    bson_destroy(&filter);
    return rc;
}

/* "@x.edu" as a pattern matching emails that end with it. */
static const char *domain_pattern(apr_pool_t *p, const char *dom)
{
    char *out = apr_palloc(p, strlen(dom) * 2 + 2), *o = out;

    for (; *dom; dom++) {
        if (!apr_isalnum(*dom))
            *o++ = '\\';
        *o++ = *dom;
    }
    *o++ = '$';
    *o = '\0';
    return out;
}

aiproxy_ledger_rc_t aiproxy_ledger_course_months(aiproxy_ledger_t *l,
                                                 apr_pool_t *p,
                                                 const char *course,
                                                 const char *month,
                                                 const char *sort,
                                                 apr_int64_t skip,
                                                 apr_int64_t limit,
                                                 apr_array_header_t **rows,
                                                 const char **err)
{
    bson_t filter = BSON_INITIALIZER, or, alt, in, list, re;
    apr_hash_t *whos;
    apr_hash_index_t *hi;
    aiproxy_ledger_rc_t rc;
    int i = 0, k = 1;

    *rows = apr_array_make(p, 1, sizeof(aiproxy_month_row_t));
    if ((rc = course_whos(l, p, course, &whos, err)) != AIPROXY_LEDGER_OK)
        return rc;
    if (month)
        BSON_APPEND_UTF8(&filter, "month", month);
    aiproxy_ledger_users_only(&filter);
    /* $or: [{email: {$in: [emails]}}, {email: /@domain$/}...] */
    BSON_APPEND_ARRAY_BEGIN(&filter, "$or", &or);
    BSON_APPEND_DOCUMENT_BEGIN(&or, "0", &alt);
    BSON_APPEND_DOCUMENT_BEGIN(&alt, "email", &in);
    BSON_APPEND_ARRAY_BEGIN(&in, "$in", &list);
    for (hi = apr_hash_first(p, whos); hi; hi = apr_hash_next(hi)) {
        const char *who = apr_hash_this_key(hi);

        if (*who != '@') {
            const char *at = apr_itoa(p, i++);

            BSON_APPEND_UTF8(&list, at, who);
        }
    }
    bson_append_array_end(&in, &list);
    bson_append_document_end(&alt, &in);
    bson_append_document_end(&or, &alt);
    for (hi = apr_hash_first(p, whos); hi; hi = apr_hash_next(hi)) {
        const char *who = apr_hash_this_key(hi), *at;

        if (*who != '@')
            continue;
        at = apr_itoa(p, k++);
        BSON_APPEND_DOCUMENT_BEGIN(&or, at, &re);
        BSON_APPEND_REGEX(&re, "email", domain_pattern(p, who), "");
        bson_append_document_end(&or, &re);
    }
    bson_append_array_end(&filter, &or);
    rc = aiproxy_ledger_months_where(l, p, &filter, sort, skip, limit, rows,
                                     err);
    bson_destroy(&filter);
    return rc;
}
