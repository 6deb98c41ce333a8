/* The admin API's reports: requests, models, near and export
 * (aiproxy_admin_report.h). Scope: an admin sees anything; an instructor a
 * course they teach (course=), its records and its members; anyone their
 * own records. */
#include <string.h>
#include <apr_strings.h>

#include "httpd.h"
#include "http_log.h"
#include "http_protocol.h"
#include "util_filter.h"

#include "aiproxy_admin.h"
#include "aiproxy_admin_course.h"
#include "aiproxy_admin_report.h"
#include "aiproxy_counters.h"
#include "aiproxy_course.h"
#include "aiproxy_handler.h"
#include "aiproxy_json.h"
#include "aiproxy_ledger_report.h"
#include "aiproxy_params.h"
#include "aiproxy_policy.h"

APLOG_USE_MODULE(aiproxy);

#define REPORT_LIMIT_MAX 1000
#define MODELS_MAX 1000

/* A report's query, validated. */
typedef struct {
    apr_table_t *args;
    aiproxy_report_filter_t f;
    apr_int64_t skip, limit, threshold;
    aiproxy_report_by_t by;
    int has_by;
} query_t;

static int bad(request_rec *r, aiproxy_req_t *st, const char *message)
{
    return aiproxy_handler_fail(r, st, HTTP_BAD_REQUEST, "invalid_parameter",
                                message);
}

/* Whether name is one of the space-separated names in list. */
static int allows(const char *list, const char *name)
{
    apr_size_t n = strlen(name);

    while (n && *list) {
        apr_size_t w = strcspn(list, " ");

        if (w == n && !strncmp(list, name, n))
            return 1;
        list += w;
        list += strspn(list, " ");
    }
    return 0;
}

/* Reads the query: only the names in `allowed` (space-separated), each
 * checked. DECLINED, or OK once answered 400. */
static int read_query(request_rec *r, aiproxy_req_t *st, const char *allowed,
                      query_t *q)
{
    const apr_array_header_t *arr;
    const apr_table_entry_t *e;
    const char *month = NULL, *from = NULL, *to = NULL, *msg;
    int i;

    memset(q, 0, sizeof(*q));
    q->limit = 100;
    q->threshold = 80;
    q->args = aiproxy_params_parse(r->pool, r->args);
    arr = apr_table_elts(q->args);
    e = (const apr_table_entry_t *)arr->elts;
    for (i = 0; i < arr->nelts; i++) {
        const char *k = e[i].key, *v = e[i].val ? e[i].val : "";

        if (!allows(allowed, k))
            return bad(r, st, apr_psprintf(r->pool, "Unknown parameter '%s';"
                                           " use %s.", k, allowed));
        if (!strcmp(k, "email")) {
            if (!aiproxy_params_email(r->pool, v, &q->f.email))
                return bad(r, st, "email must be an email address.");
        }
        else if (!strcmp(k, "course")) {
            if (!aiproxy_course_id_valid(v))
                return bad(r, st, "course must be a course id.");
            q->f.course = v;
        }
        else if (!strcmp(k, "skip")) {
            if (!aiproxy_params_count(v, 0, APR_INT64_C(1000000000), &q->skip))
                return bad(r, st, "skip must be a whole number >= 0.");
        }
        else if (!strcmp(k, "limit")) {
            if (!aiproxy_params_count(v, 1, REPORT_LIMIT_MAX, &q->limit))
                return bad(r, st, "limit must be a whole number from 1 to "
                           "1000.");
        }
        else if (!strcmp(k, "threshold")) {
            if (!aiproxy_params_count(v, 1, 1000, &q->threshold))
                return bad(r, st, "threshold must be a whole percentage from "
                           "1 to 1000.");
        }
        else if (!strcmp(k, "by")) {
            if (!aiproxy_report_by_parse(v, &q->by))
                return bad(r, st, "by must be user, model or day.");
            q->has_by = 1;
        }
        else if (!strcmp(k, "month"))
            month = v;
        else if (!strcmp(k, "from"))
            from = v;
        else if (!strcmp(k, "to"))
            to = v;
    }
    if (month && !aiproxy_params_month(month))
        return bad(r, st, "month must be YYYY-MM.");
    msg = aiproxy_report_span(r->pool, &q->f, month, from, to,
                              aiproxy_month_of(r->pool, r->request_time));
    return msg ? bad(r, st, msg) : DECLINED;
}

/* Narrows the filter to the caller's scope: an admin any records; the
 * instructor of course= that course's records (of one member when email=
 * names one); anyone else their own records (email defaults to them), and
 * no course= they do not teach. DECLINED, or OK once answered (403, 404,
 * 503). */
static int scope_records(request_rec *r, aiproxy_req_t *st,
                         const aiproxy_scope_t *sc, query_t *q)
{
    aiproxy_course_t c;

    if (sc->role == AIPROXY_ROLE_ADMIN)
        return DECLINED;
    if (q->f.course && aiproxy_scope_teaches(sc, q->f.course)) {
        if (aiproxy_admin_course_of(r, st, sc, q->f.course, &c) != DECLINED)
            return OK;
        return q->f.email ? aiproxy_scope_may_see(r, st, sc, q->f.course,
                                                  q->f.email)
                          : DECLINED;
    }
    if (q->f.course)
        return aiproxy_scope_forbidden(r, st, apr_psprintf(r->pool,
                                       "You do not teach course %s.",
                                       q->f.course));
    if (q->f.email && strcmp(q->f.email, sc->email))
        return aiproxy_scope_forbidden(r, st, "You may only see your own "
                                       "usage.");
    q->f.email = sc->email;
    return DECLINED;
}

static const char *opt_str(apr_pool_t *p, const char *s)
{
    return s && *s ? aiproxy_json_quote(p, s) : "null";
}

static const char *span_json(apr_pool_t *p, const aiproxy_report_filter_t *f)
{
    if (f->month)
        return apr_psprintf(p, "\"month\":\"%s\"", f->month);
    return apr_psprintf(p, "\"from\":\"%s\",\"to\":\"%s\"",
                        apr_pstrndup(p, aiproxy_iso_time(p, f->from_ms), 10),
                        apr_pstrndup(p, aiproxy_iso_time(p, f->to_ms -
                                                 AIPROXY_REPORT_DAY_MS), 10));
}

/* GET requests?email=&month=|from=&to=&course=&skip=&limit= */
static int requests(request_rec *r, aiproxy_req_t *st,
                    const aiproxy_scope_t *sc)
{
    apr_array_header_t *rows, *parts;
    const char *err = "";
    query_t q;
    int i;

    if (read_query(r, st, "email month from to course skip limit", &q)
        != DECLINED || scope_records(r, st, sc, &q) != DECLINED)
        return OK;
    /* An admin's list is of one user: their own unless email= names one. */
    if (!q.f.email && !q.f.course)
        q.f.email = sc->email;
    if (aiproxy_ledger_requests(aiproxy_child_ledger(), r->pool, &q.f, q.skip,
                                q.limit, &rows, &err) != AIPROXY_LEDGER_OK)
        return aiproxy_admin_store_down(r, st, err);
    parts = apr_array_make(r->pool, rows->nelts, sizeof(const char *));
    for (i = 0; i < rows->nelts; i++) {
        aiproxy_request_row_t *x = &APR_ARRAY_IDX(rows, i,
                                                  aiproxy_request_row_t);

        APR_ARRAY_PUSH(parts, const char *) = apr_psprintf(r->pool,
            "{\"id\":%s,\"email\":%s,\"time\":\"%s\",\"endpoint\":%s,"
            "\"model\":%s,\"input_tokens\":%" APR_INT64_T_FMT
            ",\"cached_tokens\":%" APR_INT64_T_FMT ",\"cache_write_tokens\":%"
            APR_INT64_T_FMT ",\"output_tokens\":%" APR_INT64_T_FMT
            ",\"cost\":\"%s\",\"estimated\":%s,\"status\":%d,\"course\":%s}",
            aiproxy_json_quote(r->pool, x->id),
            aiproxy_json_quote(r->pool, x->email),
            aiproxy_iso_time(r->pool, x->time_ms),
            aiproxy_json_quote(r->pool, x->endpoint),
            aiproxy_json_quote(r->pool, x->model), x->input, x->cached,
            x->cache_write, x->output, aiproxy_money_format(r->pool, x->cost),
            x->estimated ? "true" : "false", x->status,
            opt_str(r->pool, x->course));
    }
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_psprintf(r->pool,
                  "{\"email\":%s,\"course\":%s,%s,\"skip\":%" APR_INT64_T_FMT
                  ",\"limit\":%" APR_INT64_T_FMT ",\"data\":[%s]}",
                  opt_str(r->pool, q.f.email), opt_str(r->pool, q.f.course),
                  span_json(r->pool, &q.f), q.skip, q.limit,
                  apr_array_pstrcat(r->pool, parts, ',')));
}

typedef struct {
    apr_pool_t *p;
    apr_array_header_t *parts;
    aiproxy_money_t cost;
    apr_int64_t requests;
} models_t;

static int model_row(apr_pool_t *rp, const aiproxy_total_row_t *x, void *b)
{
    models_t *m = b;

    (void)rp;
    m->cost += x->cost;
    m->requests += x->requests;
    APR_ARRAY_PUSH(m->parts, const char *) = apr_psprintf(m->p,
        "{\"model\":%s,\"requests\":%" APR_INT64_T_FMT ",\"estimated\":%"
        APR_INT64_T_FMT ",\"input_tokens\":%" APR_INT64_T_FMT
        ",\"cached_tokens\":%" APR_INT64_T_FMT ",\"cache_write_tokens\":%"
        APR_INT64_T_FMT ",\"output_tokens\":%" APR_INT64_T_FMT
        ",\"cost\":\"%s\"}", aiproxy_json_quote(m->p, x->key), x->requests,
        x->estimated, x->input, x->cached, x->cache_write, x->output,
        aiproxy_money_format(m->p, x->cost));
    return m->parts->nelts >= MODELS_MAX;
}

/* GET models?month=|from=&to=&email=&course= */
static int models(request_rec *r, aiproxy_req_t *st,
                  const aiproxy_scope_t *sc)
{
    models_t m = { r->pool, NULL, 0, 0 };
    const char *err = "";
    query_t q;

    if (read_query(r, st, "email month from to course", &q) != DECLINED ||
        scope_records(r, st, sc, &q) != DECLINED)
        return OK;
    m.parts = apr_array_make(r->pool, 8, sizeof(const char *));
    if (aiproxy_ledger_totals(aiproxy_child_ledger(), r->pool, &q.f,
                              AIPROXY_REPORT_BY_MODEL, model_row, &m, &err)
        != AIPROXY_LEDGER_OK)
        return aiproxy_admin_store_down(r, st, err);
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_psprintf(r->pool,
                  "{\"email\":%s,\"course\":%s,%s,\"data\":[%s],"
                  "\"total\":{\"requests\":%" APR_INT64_T_FMT
                  ",\"cost\":\"%s\"}}", opt_str(r->pool, q.f.email),
                  opt_str(r->pool, q.f.course), span_json(r->pool, &q.f),
                  apr_array_pstrcat(r->pool, m.parts, ','), m.requests,
                  aiproxy_money_format(r->pool, m.cost)));
}

/* The course's own month against its budget, as JSON. */
static int course_json(request_rec *r, aiproxy_req_t *st,
                       const aiproxy_course_t *c, const char *month,
                       const char **out)
{
    apr_array_header_t *rows;
    const char *err = "";
    aiproxy_money_t spent = 0;
    __int128 pct;

    if (aiproxy_ledger_months(aiproxy_child_ledger(), r->pool, month,
                              aiproxy_course_account(r->pool, c->id), NULL, 0,
                              1, &rows, &err) != AIPROXY_LEDGER_OK)
        return aiproxy_admin_store_down(r, st, err);
    if (rows->nelts)
        spent = APR_ARRAY_IDX(rows, 0, aiproxy_month_row_t).spent;
    pct = c->budget > 0 ? (__int128)spent * 100 / c->budget : 0;
    *out = apr_psprintf(r->pool, "{\"id\":%s,\"spent\":\"%s\","
                        "\"budget\":\"%s\",\"pct\":%d}",
                        aiproxy_json_quote(r->pool, c->id),
                        aiproxy_money_format(r->pool, spent),
                        aiproxy_money_format(r->pool, c->budget),
                        (int)(pct > 1000000 ? 1000000 : pct));
    return DECLINED;
}

/* GET near?threshold=80&course=&month=: admins, instructors of course. */
static int near(request_rec *r, aiproxy_req_t *st, const aiproxy_scope_t *sc)
{
    apr_array_header_t *rows, *parts;
    const char *err = "", *cj = "null";
    aiproxy_course_t c;
    query_t q;
    int i;

    if (read_query(r, st, "threshold course month", &q) != DECLINED)
        return OK;
    if (!q.f.month)
        return bad(r, st, "near takes a month, not from and to.");
    if (q.f.course) {
        if (aiproxy_admin_course_of(r, st, sc, q.f.course, &c) != DECLINED ||
            course_json(r, st, &c, q.f.month, &cj) != DECLINED)
            return OK;
    }
    else if (sc->role != AIPROXY_ROLE_ADMIN)
        return aiproxy_scope_forbidden(r, st, sc->role ==
               AIPROXY_ROLE_INSTRUCTOR ? "Name a course you teach: course=."
               : "Only administrators and instructors may list who is near "
                 "their cap.");
    if (aiproxy_ledger_near(aiproxy_child_ledger(), r->pool, q.f.month,
                            q.f.course ? &c : NULL, st->g->default_cap,
                            (int)q.threshold, REPORT_LIMIT_MAX, &rows, &err)
        != AIPROXY_LEDGER_OK)
        return aiproxy_admin_store_down(r, st, err);
    parts = apr_array_make(r->pool, rows->nelts, sizeof(const char *));
    for (i = 0; i < rows->nelts; i++) {
        aiproxy_near_row_t *x = &APR_ARRAY_IDX(rows, i, aiproxy_near_row_t);

        APR_ARRAY_PUSH(parts, const char *) = apr_psprintf(r->pool,
            "{\"email\":%s,\"spent\":\"%s\",\"reserved\":\"%s\","
            "\"cap\":\"%s\",\"pct\":%d,\"requests\":%" APR_INT64_T_FMT "}",
            aiproxy_json_quote(r->pool, x->email),
            aiproxy_money_format(r->pool, x->spent),
            aiproxy_money_format(r->pool, x->reserved),
            aiproxy_money_format(r->pool, x->cap), x->pct, x->requests);
    }
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_psprintf(r->pool,
                  "{\"month\":\"%s\",\"threshold\":%" APR_INT64_T_FMT
                  ",\"course\":%s,\"data\":[%s]}", q.f.month, q.threshold,
                  cj, apr_array_pstrcat(r->pool, parts, ',')));
}

typedef struct {
    request_rec *r;
    apr_bucket_brigade *bb;
    aiproxy_report_by_t by;
    const char *filename;
    int started;
    apr_status_t rv;
} export_t;

/* The headers go out with the first bytes, so that a store down before
 * them is still a 503. */
static void export_start(export_t *x)
{
    if (x->started)
        return;
    x->started = 1;
    ap_set_content_type(x->r, "text/csv; charset=utf-8");
    apr_table_setn(x->r->headers_out, "Content-Disposition",
                   apr_psprintf(x->r->pool, "attachment; filename=\"%s\"",
                                x->filename));
    apr_table_setn(x->r->headers_out, "Cache-Control", "no-store");
    x->rv = apr_brigade_puts(x->bb, ap_filter_flush, x->r->output_filters,
                             aiproxy_report_csv_header(x->by));
}

static int export_row(apr_pool_t *rp, const aiproxy_total_row_t *row,
                      void *b)
{
    export_t *x = b;

    export_start(x);
    if (x->rv == APR_SUCCESS)
        x->rv = apr_brigade_puts(x->bb, ap_filter_flush, x->r->output_filters,
                                 aiproxy_report_csv_row(rp, row));
    return x->rv != APR_SUCCESS;   /* the client went away */
}

/* GET export?by=&month=|from=&to=&course=&email=: CSV, streamed. */
static int export(request_rec *r, aiproxy_req_t *st,
                  const aiproxy_scope_t *sc)
{
    export_t x = { r, NULL, AIPROXY_REPORT_BY_USER, NULL, 0, APR_SUCCESS };
    const char *err = "";
    aiproxy_ledger_rc_t rc;
    query_t q;

    if (read_query(r, st, "by month from to course email", &q) != DECLINED)
        return OK;
    if (!q.has_by)
        return bad(r, st, "by is missing: give by=user, model or day.");
    if (scope_records(r, st, sc, &q) != DECLINED)
        return OK;
    x.by = q.by;
    x.filename = aiproxy_report_filename(r->pool, q.by, &q.f);
    x.bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    rc = aiproxy_ledger_totals(aiproxy_child_ledger(), r->pool, &q.f, q.by,
                               export_row, &x, &err);
    if (rc != AIPROXY_LEDGER_OK && !x.started)
        return aiproxy_admin_store_down(r, st, err);
    if (rc != AIPROXY_LEDGER_OK) {
        /* Too late for a status: a 502 error bucket makes the chunked
         * reply end without its last chunk, so the client sees it cut. */
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, AIPLOGNO(04200)
                      "export cut short, the store failed: %s", err);
        APR_BRIGADE_INSERT_TAIL(x.bb, ap_bucket_error_create(
            HTTP_BAD_GATEWAY, NULL, r->pool, r->connection->bucket_alloc));
    }
    export_start(&x);
    APR_BRIGADE_INSERT_TAIL(x.bb,
                            apr_bucket_eos_create(r->connection->bucket_alloc));
    if (ap_pass_brigade(r->output_filters, x.bb) != APR_SUCCESS ||
        x.rv != APR_SUCCESS)
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, AIPLOGNO(04201)
                      "export not delivered in full: the client went away");
    return OK;
}

int aiproxy_admin_report(request_rec *r, aiproxy_req_t *st,
                         const aiproxy_scope_t *sc, const char *what)
{
    int (*fn)(request_rec *, aiproxy_req_t *, const aiproxy_scope_t *) =
        !strcmp(what, "requests") ? requests
        : !strcmp(what, "models") ? models
        : !strcmp(what, "near") ? near
        : !strcmp(what, "export") ? export : NULL;

    if (!fn)
        return DECLINED;
    if (r->method_number != M_GET)
        return aiproxy_admin_wrong_method(r, st, "GET");
    return fn(r, st, sc);
}
