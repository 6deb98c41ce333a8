/* GET /usage (admins) and GET /usage/me (any valid token). */
#include <string.h>
#include <apr_lib.h>
#include <apr_strings.h>

#include "httpd.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_script.h"

#include "aiproxy_json.h"
#include "aiproxy_params.h"
#include "aiproxy_handler.h"
#include "aiproxy_identify.h"
#include "aiproxy_policy.h"
#include "aiproxy_reply.h"
#include "aiproxy_req.h"
#include "aiproxy_usage.h"
#include "aiproxy_course.h"
#include "aiproxy_ledger_report.h"
#include "aiproxy_scope.h"

APLOG_USE_MODULE(aiproxy);

#define USAGE_HANDLER "aiproxy-usage"
#define USAGE_MAX_LIMIT 1000

static const char *const sort_fields[] = {
    "monthlyCost", "monthlyRequests", "month", "email", NULL
};

static const char *row_json(apr_pool_t *p, const aiproxy_month_row_t *row)
{
    return apr_psprintf(p, "{\"email\":%s,\"month\":%s,\"monthlyCost\":\"%s\","
                        "\"monthlyRequests\":%" APR_INT64_T_FMT
                        ",\"reserved\":\"%s\"}",
                        aiproxy_json_quote(p, row->email),
                        aiproxy_json_quote(p, row->month),
                        aiproxy_money_format(p, row->spent), row->requests,
                        aiproxy_money_format(p, row->reserved));
}

static const char *rows_json(apr_pool_t *p, apr_array_header_t *rows)
{
    apr_array_header_t *parts = apr_array_make(p, rows->nelts,
                                               sizeof(const char *));
    int i;

    for (i = 0; i < rows->nelts; i++)
        APR_ARRAY_PUSH(parts, const char *) =
            row_json(p, &APR_ARRAY_IDX(rows, i, aiproxy_month_row_t));
    return apr_pstrcat(p, "[", apr_array_pstrcat(p, parts, ','), "]", NULL);
}

static int bad_param(request_rec *r, aiproxy_req_t *st, const char *msg)
{
    aiproxy_reply_error(r, st, HTTP_BAD_REQUEST, "invalid_request_error",
                        "invalid_parameter", msg);
    return aiproxy_reply_handler(r);
}

static int unavailable(request_rec *r, aiproxy_req_t *st, const char *err)
{
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, AIPLOGNO(01301)
                  "usage query failed: %s", err);
    aiproxy_reply_store_down(r, st);
    return aiproxy_reply_handler(r);
}


/* Every month of the caller, with this month's cap and what is left. */
static int usage_me(request_rec *r, aiproxy_req_t *st,
                    const aiproxy_user_t *user)
{
    const char *err = "", *month = aiproxy_month_of(r->pool, r->request_time);
    aiproxy_money_t cap = aiproxy_policy_cap(user, st->g->default_cap);
    aiproxy_money_t used = 0;
    apr_array_header_t *rows;
    int i;

    if (aiproxy_ledger_months(aiproxy_child_ledger(), r->pool, NULL,
                              st->email, "month", 0, USAGE_MAX_LIMIT, &rows,
                              &err) != AIPROXY_LEDGER_OK)
        return unavailable(r, st, err);
    for (i = 0; i < rows->nelts; i++) {
        aiproxy_month_row_t *row = &APR_ARRAY_IDX(rows, i, aiproxy_month_row_t);

        if (!strcmp(row->month, month))
            used = row->spent + row->reserved;
    }
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_psprintf(r->pool,
                  "{\"email\":%s,\"month\":\"%s\",\"cap\":\"%s\","
                  "\"remaining\":\"%s\",\"months\":%s}",
                  aiproxy_json_quote(r->pool, st->email), month,
                  aiproxy_money_format(r->pool, cap),
                  aiproxy_money_format(r->pool, used < cap ? cap - used : 0),
                  rows_json(r->pool, rows)));
}

int aiproxy_usage_list(request_rec *r, aiproxy_req_t *st)
{
    apr_table_t *args;
    const apr_array_header_t *arr;
    const apr_table_entry_t *e;
    apr_int64_t skip = 0, limit = USAGE_MAX_LIMIT;
    const char *month = NULL, *email = NULL, *sort = "monthlyCost";
    const char *course = NULL;
    aiproxy_scope_t sc;
    aiproxy_ledger_rc_t rc;
    const char *err = "";
    apr_array_header_t *rows;
    int i;

    args = aiproxy_params_parse(r->pool, r->args);
    arr = apr_table_elts(args);
    e = (const apr_table_entry_t *)arr->elts;
    for (i = 0; i < arr->nelts; i++) {
        const char *k = e[i].key, *v = e[i].val ? e[i].val : "";

        if (!strcmp(k, "skip")) {
            if (!aiproxy_params_count(v, 0, APR_INT64_C(1000000000), &skip))
                return bad_param(r, st, "skip must be a whole number >= 0.");
        }
        else if (!strcmp(k, "limit")) {
            if (!aiproxy_params_count(v, 1, USAGE_MAX_LIMIT, &limit))
                return bad_param(r, st, "limit must be a whole number from "
                                 "1 to 1000.");
        }
        else if (!strcmp(k, "month")) {
            if (!aiproxy_params_month(v))
                return bad_param(r, st, "month must be YYYY-MM.");
            month = v;
        }
        else if (!strcmp(k, "email")) {
            if (!aiproxy_params_email(r->pool, v, &email))
                return bad_param(r, st, "email must be an email address.");
        }
        else if (!strcmp(k, "course")) {
            if (!aiproxy_course_id_valid(v))
                return bad_param(r, st, "course must be a course id.");
            course = v;
        }
        else if (!strcmp(k, "sort")) {
            const char *const *f;

            for (f = sort_fields; *f && strcmp(*f, v); f++)
                ;
            if (!*f)
                return bad_param(r, st, "sort must be one of monthlyCost, "
                                 "monthlyRequests, month, email.");
            sort = v;
        }
        else {
            return bad_param(r, st, apr_psprintf(r->pool, "Unknown parameter "
                                                 "'%s'; use skip, limit, "
                                                 "month, email, course, "
                                                 "sort.", k));
        }
    }
    /* Administrators see everyone; an instructor the members of a course
     * they teach (course=). */
    if (aiproxy_scope_of(r, st, &sc) != DECLINED)
        return OK;
    if (sc.role != AIPROXY_ROLE_ADMIN && !(course &&
                                           aiproxy_scope_teaches(&sc, course))) {
        aiproxy_reply_error(r, st, HTTP_FORBIDDEN, "permission_error",
                            "not_admin", "Only administrators, and "
                            "instructors with course=, may list usage; see "
                            "/usage/me for your own.");
        return aiproxy_reply_handler(r);
    }
    if (course && email &&
        aiproxy_scope_may_see(r, st, &sc, course, email) != DECLINED)
        return OK;
    rc = course && !email
         ? aiproxy_ledger_course_months(aiproxy_child_ledger(), r->pool,
                                        course, month, sort, skip, limit,
                                        &rows, &err)
         : aiproxy_ledger_months(aiproxy_child_ledger(), r->pool, month,
                                 email, sort, skip, limit, &rows, &err);
    if (rc != AIPROXY_LEDGER_OK)
        return unavailable(r, st, err);
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_psprintf(r->pool, "{\"data\":%s,\"skip\":%"
                                      APR_INT64_T_FMT ",\"limit\":%"
                                      APR_INT64_T_FMT ",\"sort\":\"%s\"}",
                                      rows_json(r->pool, rows), skip, limit,
                                      sort));
}

int aiproxy_usage_handler(request_rec *r)
{
    aiproxy_req_t *st;
    aiproxy_user_t user;
    const char *sub;

    if (strcmp(r->handler, USAGE_HANDLER))
        return DECLINED;
    st = aiproxy_handler_begin(r);
    sub = r->path_info ? r->path_info : "";
    while (*sub == '/')
        sub++;
    if (r->method_number != M_GET) {
        aiproxy_reply_error(r, st, HTTP_METHOD_NOT_ALLOWED,
                            "invalid_request_error", "method_not_allowed",
                            "Use GET for usage.");
        return aiproxy_reply_handler(r);
    }
    if (aiproxy_identify(r, st, AIPROXY_API_OPENAI, &user) != DECLINED)
        return aiproxy_reply_handler(r);
    if (!strcmp(sub, "me"))
        return usage_me(r, st, &user);
    if (!*sub)
        return aiproxy_usage_list(r, st);
    aiproxy_reply_error(r, st, HTTP_NOT_FOUND, "invalid_request_error",
                        "unknown_url", "Use /usage or /usage/me.");
    return aiproxy_reply_handler(r);
}
