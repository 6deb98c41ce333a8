/* courses, members and roster (aiproxy_admin_course.h). */
#include <string.h>
#include <apr_strings.h>

#include "httpd.h"
#include "http_log.h"
#include "http_protocol.h"

#include "aiproxy_admin.h"
#include "aiproxy_admin_course.h"
#include "aiproxy_counters.h"
#include "aiproxy_course.h"
#include "aiproxy_handler.h"
#include "aiproxy_ledger_course.h"
#include "aiproxy_ledger_course_admin.h"
#include "aiproxy_params.h"
#include "aiproxy_policy.h"

APLOG_USE_MODULE(aiproxy);

#define NAME_MAX_LEN 200
#define LIST_NAME_MAX 128

static int bad(request_rec *r, aiproxy_req_t *st, const char *message)
{
    return aiproxy_handler_fail(r, st, HTTP_BAD_REQUEST, "invalid_parameter",
                                message);
}

/* A course's settings as JSON (an audit entry closes it, a listing's row
 * goes on). */
static const char *course_json(apr_pool_t *p, const aiproxy_course_t *c)
{
    return apr_pstrcat(p, "{", aiproxy_course_json_fields(p, c), NULL);
}

/* GET courses: an admin's all, an instructor's theirs. */
static int list_courses(request_rec *r, aiproxy_req_t *st,
                        const aiproxy_scope_t *sc)
{
    const char *month = aiproxy_month_of(r->pool, r->request_time), *err = "";
    aiproxy_ledger_t *l = aiproxy_child_ledger();
    apr_array_header_t *rows, *accts, *parts, *none;
    apr_hash_t *months;
    apr_int64_t n;
    int i;

    if (sc->role == AIPROXY_ROLE_STUDENT)
        return aiproxy_scope_forbidden(r, st, "Only administrators and "
                                       "instructors may list courses.");
    if (aiproxy_ledger_courses(l, r->pool, sc->role == AIPROXY_ROLE_ADMIN
                               ? NULL : sc->email, &rows, &err)
        != AIPROXY_LEDGER_OK)
        return aiproxy_admin_store_down(r, st, err);
    accts = apr_array_make(r->pool, rows->nelts, sizeof(const char *));
    for (i = 0; i < rows->nelts; i++)
        APR_ARRAY_PUSH(accts, const char *) = aiproxy_course_account(r->pool,
            APR_ARRAY_IDX(rows, i, aiproxy_course_t).id);
    if (aiproxy_ledger_months_of(l, r->pool, month, accts, &months, &err)
        != AIPROXY_LEDGER_OK)
        return aiproxy_admin_store_down(r, st, err);
    parts = apr_array_make(r->pool, rows->nelts, sizeof(const char *));
    for (i = 0; i < rows->nelts; i++) {
        aiproxy_course_t *c = &APR_ARRAY_IDX(rows, i, aiproxy_course_t);

        if (aiproxy_ledger_members(l, r->pool, c->id, 0, 1, &none, &n, &err)
            != AIPROXY_LEDGER_OK)
            return aiproxy_admin_store_down(r, st, err);
        APR_ARRAY_PUSH(parts, const char *) = apr_psprintf(r->pool,
            "%s,\"month\":%s,\"members\":%" APR_INT64_T_FMT "}",
            course_json(r->pool, c),
            aiproxy_admin_month_json(r->pool, apr_hash_get(months,
                APR_ARRAY_IDX(accts, i, const char *), APR_HASH_KEY_STRING)),
            n);
    }
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_psprintf(r->pool,
                                  "{\"month\":\"%s\",\"data\":[%s]}", month,
                                  apr_array_pstrcat(r->pool, parts, ',')));
}

/* A list of names (models, endpoints) or emails (instructors) from the
 * body: NULL, or the message of a 400. */
static const char *read_list(apr_pool_t *p, const aiproxy_json_t *body,
                             const char *key, int emails,
                             apr_array_header_t **out)
{
    aiproxy_json_t *v = aiproxy_json_get(body, key);
    apr_size_t i, n;

    *out = apr_array_make(p, 4, sizeof(const char *));
    if (!v || aiproxy_json_is_null(v))
        return NULL;
    if (!aiproxy_json_is_array(v))
        return apr_psprintf(p, "%s must be a list of strings.", key);
    n = aiproxy_json_array_size(v);
    for (i = 0; i < n; i++) {
        const char *s = aiproxy_json_string(aiproxy_json_array_at(v, i));
        const char *c;

        if (!s || !*s)
            return apr_psprintf(p, "%s must be a list of strings.", key);
        if (emails) {
            if (!aiproxy_params_who(s, 0))
                return apr_psprintf(p, "%s: '%s' is not an email address.",
                                    key, s);
            s = aiproxy_params_lower(p, s);
        }
        else {
            for (c = s; *c; c++)
                if ((unsigned char)*c <= ' ' || *c == '"')
                    break;
            if (*c || strlen(s) > LIST_NAME_MAX)
                return apr_psprintf(p, "%s: names have no blanks and at "
                                    "most %d bytes.", key, LIST_NAME_MAX);
        }
        APR_ARRAY_PUSH(*out, const char *) = s;
    }
    return NULL;
}

/* A USD string field: 1 and *out; 0 when absent or null; -1 when bad. */
static int read_money(apr_pool_t *p, const aiproxy_json_t *body,
                      const char *key, aiproxy_money_t *out)
{
    aiproxy_json_t *v = aiproxy_json_get(body, key);
    const char *s;

    if (!v || aiproxy_json_is_null(v))
        return 0;
    s = aiproxy_json_string(v);
    return s && !aiproxy_money_parse(p, s, out) ? 1 : -1;
}

static const char *read_course(apr_pool_t *p, const aiproxy_json_t *body,
                               aiproxy_course_t *c)
{
    aiproxy_json_t *v;
    apr_size_t i, n;
    apr_int64_t pct;
    const char *why;
    int rc;

    memset(c, 0, sizeof(*c));
    c->id = aiproxy_json_string(aiproxy_json_get(body, "id"));
    if (!c->id || !aiproxy_course_id_valid(c->id))
        return "id must be a course id: 1 to 32 of a-z, 0-9, - and _, "
               "starting with a letter or digit.";
    c->name = aiproxy_json_string(aiproxy_json_get(body, "name"));
    if (!c->name || !*c->name || strlen(c->name) > NAME_MAX_LEN)
        return "name must be a string of 1 to 200 bytes.";
    if (read_money(p, body, "budget", &c->budget) != 1)
        return "budget is required: the monthly budget in USD as a decimal "
               "string, e.g. \"200\".";
    rc = read_money(p, body, "member_cap", &c->member_cap);
    if (rc < 0)
        return "member_cap must be USD as a decimal string, or null.";
    c->has_member_cap = rc > 0;
    if (c->has_member_cap && c->member_cap > c->budget)
        return "member_cap cannot exceed the course budget.";
    if ((why = read_list(p, body, "models", 0, &c->models)) ||
        (why = read_list(p, body, "endpoints", 0, &c->endpoints)) ||
        (why = read_list(p, body, "instructors", 1, &c->instructors)))
        return why;
    c->alerts = apr_array_make(p, 2, sizeof(int));
    v = aiproxy_json_get(body, "alerts");
    if (v && !aiproxy_json_is_null(v)) {
        if (!aiproxy_json_is_array(v))
            return "alerts must be a list of percentages from 1 to 1000.";
        n = aiproxy_json_array_size(v);
        for (i = 0; i < n; i++) {
            if (!aiproxy_json_int(aiproxy_json_array_at(v, i), &pct) ||
                pct < 1 || pct > 1000)
                return "alerts must be a list of percentages from 1 to 1000.";
            APR_ARRAY_PUSH(c->alerts, int) = (int)pct;
        }
    }
    return NULL;
}

/* POST courses: create or replace (admins). */
static int put_course(request_rec *r, aiproxy_req_t *st,
                      const aiproxy_scope_t *sc)
{
    aiproxy_ledger_t *l = aiproxy_child_ledger();
    aiproxy_json_t *body;
    aiproxy_course_t c, old;
    aiproxy_ledger_rc_t rc;
    const char *why, *err = "", *after;
    int existed;

    if (aiproxy_admin_read_json(r, st, &body) != DECLINED)
        return OK;
    if ((why = read_course(r->pool, body, &c)))
        return bad(r, st, why);
    rc = aiproxy_ledger_course_get(l, r->pool, c.id, &old, &err);
    if (rc == AIPROXY_LEDGER_DOWN ||
        aiproxy_ledger_course_put(l, r->pool, &c, &existed, &err)
        != AIPROXY_LEDGER_OK)
        return aiproxy_admin_store_down(r, st, err);
    aiproxy_users_changed();
    after = apr_pstrcat(r->pool, course_json(r->pool, &c), "}", NULL);
    aiproxy_admin_audit(r, sc, existed ? "course.update" : "course.create",
                        c.id, c.id, rc == AIPROXY_LEDGER_OK
                        ? apr_pstrcat(r->pool, course_json(r->pool, &old), "}",
                                      NULL) : NULL, after);
    return aiproxy_handler_answer(r, st, existed ? HTTP_OK : HTTP_CREATED,
                                  after);
}

int aiproxy_admin_course_of(request_rec *r, aiproxy_req_t *st,
                            const aiproxy_scope_t *sc, const char *id,
                            aiproxy_course_t *c)
{
    const char *err = "";
    aiproxy_ledger_rc_t rc;

    if (!id || !aiproxy_course_id_valid(id))
        return bad(r, st, "course must be a course id.");
    if (sc->role == AIPROXY_ROLE_STUDENT)
        return aiproxy_scope_forbidden(r, st, "Only administrators and "
                                       "instructors may manage courses.");
    if (!aiproxy_scope_teaches(sc, id))
        return aiproxy_scope_forbidden(r, st, apr_psprintf(r->pool,
                                       "You do not teach course %s.", id));
    rc = aiproxy_ledger_course_get(aiproxy_child_ledger(), r->pool, id, c,
                                   &err);
    if (rc == AIPROXY_LEDGER_DOWN)
        return aiproxy_admin_store_down(r, st, err);
    if (rc == AIPROXY_LEDGER_NOT_FOUND)
        return aiproxy_handler_fail(r, st, HTTP_NOT_FOUND, "unknown_course",
                                    apr_psprintf(r->pool, "No course %s.",
                                                 id));
    return DECLINED;
}

/* DELETE courses?id=: the course and its enrolments (admins). */
static int delete_course(request_rec *r, aiproxy_req_t *st,
                         const aiproxy_scope_t *sc)
{
    apr_table_t *args = aiproxy_params_parse(r->pool, r->args);
    const char *id = apr_table_get(args, "id"), *err = "";
    apr_int64_t members;
    aiproxy_course_t c;

    if (aiproxy_admin_course_of(r, st, sc, id, &c) != DECLINED)
        return OK;
    if (aiproxy_ledger_course_delete(aiproxy_child_ledger(), r->pool, id,
                                     &members, &err) == AIPROXY_LEDGER_DOWN)
        return aiproxy_admin_store_down(r, st, err);
    aiproxy_users_changed();
    aiproxy_admin_audit(r, sc, "course.delete", id, id,
                        apr_pstrcat(r->pool, course_json(r->pool, &c), "}",
                                    NULL),
                        apr_psprintf(r->pool, "{\"members_removed\":%"
                                     APR_INT64_T_FMT "}", members));
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_psprintf(r->pool,
                                  "{\"id\":%s,\"deleted\":true,"
                                  "\"members_removed\":%" APR_INT64_T_FMT "}",
                                  aiproxy_json_quote(r->pool, id), members));
}

int aiproxy_admin_course(request_rec *r, aiproxy_req_t *st,
                         const aiproxy_scope_t *sc, const char *what)
{
    int m = r->method_number;

    if (!strcmp(what, "courses")) {
        if (m == M_GET)
            return list_courses(r, st, sc);
        if (m != M_POST && m != M_PUT && m != M_DELETE)
            return aiproxy_admin_wrong_method(r, st, "GET, POST, DELETE");
        if (sc->role != AIPROXY_ROLE_ADMIN)
            return aiproxy_scope_not_admin(r, st);
        return m == M_DELETE ? delete_course(r, st, sc)
                             : put_course(r, st, sc);
    }
    return DECLINED;
}
