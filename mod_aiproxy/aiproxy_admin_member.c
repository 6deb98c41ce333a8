/* me, tokens and audit (aiproxy_admin_member.h). */
#include <string.h>
#include <apr_strings.h>

#include "httpd.h"
#include "http_log.h"
#include "http_protocol.h"

#include "aiproxy_admin.h"
#include "aiproxy_admin_member.h"
#include "aiproxy_course.h"
#include "aiproxy_handler.h"
#include "aiproxy_ledger_audit.h"
#include "aiproxy_ledger_course.h"
#include "aiproxy_ledger_course_admin.h"
#include "aiproxy_params.h"
#include "aiproxy_policy.h"

APLOG_USE_MODULE(aiproxy);

#define AUDIT_LIMIT_MAX 1000
#define TOKEN_DAYS_MAX 3660

static int listed(const apr_array_header_t *a, const char *s)
{
    int i;

    for (i = 0; a && i < a->nelts; i++)
        if (!strcmp(APR_ARRAY_IDX(a, i, const char *), s))
            return 1;
    return 0;
}

/* The caller's own month, role and courses (the dashboard learns the role
 * here). */
static int me(request_rec *r, aiproxy_req_t *st, const aiproxy_scope_t *sc,
              const aiproxy_user_t *user)
{
    const char *month = aiproxy_month_of(r->pool, r->request_time);
    const char *err = "";
    aiproxy_ledger_t *l = aiproxy_child_ledger();
    aiproxy_money_t cap = aiproxy_policy_cap(user, st->g->default_cap);
    aiproxy_month_row_t m = { NULL, NULL, 0, 0, 0 };
    apr_array_header_t *rows, *member, *all, *parts, *ids;
    int i;

    if (aiproxy_ledger_months(l, r->pool, month, st->email, NULL, 0, 1,
                              &rows, &err) != AIPROXY_LEDGER_OK ||
        aiproxy_ledger_member_courses(l, r->pool, st->email, &member, &err)
        != AIPROXY_LEDGER_OK)
        return aiproxy_admin_store_down(r, st, err);
    /* Only the caller's courses: those they are in and those they teach. */
    ids = apr_array_append(r->pool, member, sc->teaches);
    if (aiproxy_ledger_courses_in(l, r->pool, ids, &all, &err)
        != AIPROXY_LEDGER_OK)
        return aiproxy_admin_store_down(r, st, err);
    if (rows->nelts)
        m = APR_ARRAY_IDX(rows, 0, aiproxy_month_row_t);
    parts = apr_array_make(r->pool, 4, sizeof(const char *));
    for (i = 0; i < all->nelts; i++) {
        aiproxy_course_t *c = &APR_ARRAY_IDX(all, i, aiproxy_course_t);
        int teaches = listed(sc->teaches, c->id);

        if (teaches || listed(member, c->id))
            APR_ARRAY_PUSH(parts, const char *) = apr_psprintf(r->pool,
                "{\"id\":%s,\"name\":%s,\"teaches\":%s}",
                aiproxy_json_quote(r->pool, c->id),
                aiproxy_json_quote(r->pool, c->name),
                teaches ? "true" : "false");
    }
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_psprintf(r->pool,
                  "{\"email\":%s,\"admin\":%s,\"role\":\"%s\","
                  "\"courses\":[%s],\"month\":\"%s\","
                  "\"spent\":\"%s\",\"reserved\":\"%s\",\"requests\":%"
                  APR_INT64_T_FMT ",\"cap\":\"%s\",\"remaining\":\"%s\"}",
                  aiproxy_json_quote(r->pool, st->email),
                  sc->role == AIPROXY_ROLE_ADMIN ? "true" : "false",
                  aiproxy_scope_role_name(sc->role),
                  apr_array_pstrcat(r->pool, parts, ','), month,
                  aiproxy_money_format(r->pool, m.spent),
                  aiproxy_money_format(r->pool, m.reserved), m.requests,
                  aiproxy_money_format(r->pool, cap),
                  aiproxy_money_format(r->pool,
                                       m.spent + m.reserved < cap
                                       ? cap - m.spent - m.reserved : 0)));
}

static int bad(request_rec *r, aiproxy_req_t *st, const char *message)
{
    return aiproxy_handler_fail(r, st, HTTP_BAD_REQUEST, "invalid_parameter",
                                message);
}

/* POST tokens {email, course?, days?}: an admin's, for anyone (a course's
 * token for its members only). */
static int tokens(request_rec *r, aiproxy_req_t *st,
                  const aiproxy_scope_t *sc)
{
    aiproxy_json_t *body, *v;
    const char *email, *course = NULL, *token, *err = "";
    apr_int64_t lifetime = st->g->token_lifetime, days, exp;
    aiproxy_ledger_t *l = aiproxy_child_ledger();
    aiproxy_course_t c;
    aiproxy_ledger_rc_t rc;
    aiproxy_money_t cap;
    int member = 0, has_cap;

    if (aiproxy_scope_may_act(r, st, sc) != DECLINED)
        return OK;
    if (aiproxy_admin_read_json(r, st, &body) != DECLINED)
        return OK;
    email = aiproxy_json_string(aiproxy_json_get(body, "email"));
    if (!email || !aiproxy_params_who(email, 0))
        return bad(r, st, "email must be an email address.");
    email = aiproxy_params_lower(r->pool, email);
    if ((v = aiproxy_json_get(body, "course")) && !aiproxy_json_is_null(v)) {
        course = aiproxy_json_string(v);
        if (!course || !aiproxy_course_id_valid(course))
            return bad(r, st, "course must be a course id: 1 to 32 of a-z, "
                       "0-9, - and _.");
    }
    if ((v = aiproxy_json_get(body, "days")) && !aiproxy_json_is_null(v)) {
        if (!aiproxy_json_int(v, &days) || days < 0 || days > TOKEN_DAYS_MAX)
            return bad(r, st, "days must be a whole number from 0 (never "
                       "expires) to 3660.");
        lifetime = days * 86400;
    }
    if (course) {
        rc = aiproxy_ledger_course_get(l, r->pool, course, &c, &err);
        if (rc == AIPROXY_LEDGER_OK)
            rc = aiproxy_ledger_is_member(l, r->pool, course, email, &member,
                                          &has_cap, &cap, &err);
        if (rc == AIPROXY_LEDGER_DOWN)
            return aiproxy_admin_store_down(r, st, err);
        if (!member)
            return aiproxy_handler_fail(r, st, HTTP_BAD_REQUEST,
                                        "not_in_course", apr_psprintf(r->pool,
                                        "%s is not a member of course %s.",
                                        email, course));
    }
    if (aiproxy_admin_sign(r, st, email, course, lifetime, &token, &exp)
        != DECLINED)
        return OK;
    /* Never the token itself. */
    aiproxy_admin_audit(r, sc, "token.issue", email, course, NULL,
                        apr_psprintf(r->pool, "{\"course\":%s,\"exp\":%s}",
                            course ? aiproxy_json_quote(r->pool, course)
                                   : "null",
                            exp ? apr_psprintf(r->pool, "%" APR_INT64_T_FMT,
                                               exp) : "null"));
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_psprintf(r->pool,
                                  "{\"token\":%s,\"email\":%s,\"course\":%s,"
                                  "\"exp\":%s}",
                                  aiproxy_json_quote(r->pool, token),
                                  aiproxy_json_quote(r->pool, email),
                                  course ? aiproxy_json_quote(r->pool, course)
                                         : "null",
                                  exp ? apr_psprintf(r->pool, "%"
                                                     APR_INT64_T_FMT, exp)
                                      : "null"));
}

/* GET audit?skip=&limit=&course=: an admin's all, an instructor's their
 * courses'. */
static int audit(request_rec *r, aiproxy_req_t *st, const aiproxy_scope_t *sc)
{
    apr_table_t *args = aiproxy_params_parse(r->pool, r->args);
    const apr_array_header_t *arr = apr_table_elts(args);
    const apr_table_entry_t *e = (const apr_table_entry_t *)arr->elts;
    apr_array_header_t *courses = NULL, *rows, *parts;
    apr_int64_t skip = 0, limit = 100;
    const char *course = NULL, *err = "";
    int i;

    if (sc->role == AIPROXY_ROLE_STUDENT)
        return aiproxy_scope_forbidden(r, st, "Only administrators and "
                                       "instructors may read the audit "
                                       "log.");
    for (i = 0; i < arr->nelts; i++) {
        const char *v = e[i].val ? e[i].val : "";

        if (!strcmp(e[i].key, "skip") &&
            aiproxy_params_count(v, 0, APR_INT64_C(1) << 40, &skip))
            continue;
        if (!strcmp(e[i].key, "limit") &&
            aiproxy_params_count(v, 1, AUDIT_LIMIT_MAX, &limit))
            continue;
        if (!strcmp(e[i].key, "course") && aiproxy_course_id_valid(v)) {
            course = v;
            continue;
        }
        return bad(r, st, apr_psprintf(r->pool, "Bad parameter '%s': use "
                                       "skip=N, limit=1..1000 and "
                                       "course=ID.", e[i].key));
    }
    if (course && !aiproxy_scope_teaches(sc, course))
        return aiproxy_scope_forbidden(r, st, apr_psprintf(r->pool,
                                       "You do not teach course %s.",
                                       course));
    if (course) {
        courses = apr_array_make(r->pool, 1, sizeof(const char *));
        APR_ARRAY_PUSH(courses, const char *) = course;
    }
    else if (sc->role != AIPROXY_ROLE_ADMIN)
        courses = sc->teaches;
    if (aiproxy_ledger_audit_list(aiproxy_child_ledger(), r->pool, courses,
                                  skip, limit, &rows, &err)
        != AIPROXY_LEDGER_OK)
        return aiproxy_admin_store_down(r, st, err);
    parts = apr_array_make(r->pool, rows->nelts, sizeof(const char *));
    for (i = 0; i < rows->nelts; i++) {
        aiproxy_audit_t *a = &APR_ARRAY_IDX(rows, i, aiproxy_audit_t);

        APR_ARRAY_PUSH(parts, const char *) = apr_psprintf(r->pool,
            "{\"time\":\"%s\",\"who\":%s,\"role\":%s,\"action\":%s,"
            "\"target\":%s,\"course\":%s,\"before\":%s,\"after\":%s}",
            aiproxy_iso_time(r->pool, a->time_ms),
            aiproxy_json_quote(r->pool, a->who),
            aiproxy_json_quote(r->pool, a->role),
            aiproxy_json_quote(r->pool, a->action),
            aiproxy_json_quote(r->pool, a->target),
            a->course ? aiproxy_json_quote(r->pool, a->course) : "null",
            a->before, a->after);
    }
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_psprintf(r->pool,
                  "{\"data\":[%s],\"skip\":%" APR_INT64_T_FMT ",\"limit\":%"
                  APR_INT64_T_FMT "}", apr_array_pstrcat(r->pool, parts, ','),
                  skip, limit));
}

int aiproxy_admin_member(request_rec *r, aiproxy_req_t *st,
                         const aiproxy_scope_t *sc,
                         const aiproxy_user_t *user, const char *what)
{
    int get = r->method_number == M_GET;

    if (!strcmp(what, "me"))
        return get ? me(r, st, sc, user)
               : aiproxy_admin_wrong_method(r, st, "GET");
    if (!strcmp(what, "tokens"))
        return r->method_number == M_POST ? tokens(r, st, sc)
               : aiproxy_admin_wrong_method(r, st, "POST");
    if (!strcmp(what, "audit"))
        return get ? audit(r, st, sc)
               : aiproxy_admin_wrong_method(r, st, "GET");
    return DECLINED;
}
