/* members and roster (aiproxy_admin_members.h). */
#include <string.h>
#include <apr_strings.h>

#include "httpd.h"
#include "http_log.h"
#include "http_protocol.h"

#include "aiproxy_admin.h"
#include "aiproxy_admin_course.h"
#include "aiproxy_admin_members.h"
#include "aiproxy_counters.h"
#include "aiproxy_course.h"
#include "aiproxy_handler.h"
#include "aiproxy_ledger_course_admin.h"
#include "aiproxy_params.h"
#include "aiproxy_policy.h"
#include "aiproxy_roster.h"

APLOG_USE_MODULE(aiproxy);

#define MEMBERS_LIMIT_MAX 1000

static int bad(request_rec *r, aiproxy_req_t *st, const char *message)
{
    return aiproxy_handler_fail(r, st, HTTP_BAD_REQUEST, "invalid_parameter",
                                message);
}

/* The cap a member has in the course: an admin's own cap for the email,
 * else the enrolment's, else the course's member_cap, else the domain's or
 * the site's (aiproxy_admit_course applies the same order). */
static aiproxy_money_t effective_cap(apr_hash_t *settings, aiproxy_req_t *st,
                                     const aiproxy_course_t *c,
                                     const aiproxy_member_row_t *m)
{
    aiproxy_user_t u;

    aiproxy_policy_user_in(settings, m->who, &u);
    if (*m->who != '@' && u.cap_own)
        return u.cap;
    if (m->has_cap)
        return m->cap;
    if (c->has_member_cap)
        return c->member_cap;
    return aiproxy_policy_cap(&u, st->g->default_cap);
}

/* GET members?course=&skip=&limit=: enrolments with this month's money. */
static int list_members(request_rec *r, aiproxy_req_t *st,
                        const aiproxy_scope_t *sc)
{
    apr_table_t *args = aiproxy_params_parse(r->pool, r->args);
    const char *month = aiproxy_month_of(r->pool, r->request_time), *err = "";
    const char *v;
    aiproxy_ledger_t *l = aiproxy_child_ledger();
    apr_array_header_t *rows, *users, *emails, *parts;
    apr_int64_t skip = 0, limit = 100, total;
    apr_hash_t *months, *settings;
    aiproxy_course_t c;
    int i;

    if (((v = apr_table_get(args, "skip")) &&
         !aiproxy_params_count(v, 0, APR_INT64_C(1) << 40, &skip)) ||
        ((v = apr_table_get(args, "limit")) &&
         !aiproxy_params_count(v, 1, MEMBERS_LIMIT_MAX, &limit)))
        return bad(r, st, "skip must be a count and limit 1 to 1000.");
    if (aiproxy_admin_course_of(r, st, sc, apr_table_get(args, "course"), &c)
        != DECLINED)
        return OK;
    if (aiproxy_ledger_members(l, r->pool, c.id, skip, limit, &rows, &total,
                               &err) != AIPROXY_LEDGER_OK ||
        aiproxy_ledger_users(l, r->pool, &users, &err) != AIPROXY_LEDGER_OK)
        return aiproxy_admin_store_down(r, st, err);
    emails = apr_array_make(r->pool, rows->nelts, sizeof(const char *));
    for (i = 0; i < rows->nelts; i++)
        APR_ARRAY_PUSH(emails, const char *) =
            APR_ARRAY_IDX(rows, i, aiproxy_member_row_t).who;
    if (aiproxy_ledger_months_of(l, r->pool, month, emails, &months, &err)
        != AIPROXY_LEDGER_OK)
        return aiproxy_admin_store_down(r, st, err);
    settings = aiproxy_policy_settings(r->pool, users);
    parts = apr_array_make(r->pool, rows->nelts, sizeof(const char *));
    for (i = 0; i < rows->nelts; i++) {
        aiproxy_member_row_t *m = &APR_ARRAY_IDX(rows, i,
                                                 aiproxy_member_row_t);
        const char *mj = aiproxy_admin_month_json(r->pool, apr_hash_get(months, m->who,
                                                          APR_HASH_KEY_STRING));

        /* The month's fields, inline: {"who",...,"spent",...}. */
        APR_ARRAY_PUSH(parts, const char *) = apr_psprintf(r->pool,
            "{\"who\":%s,\"cap\":%s,\"effective_cap\":\"%s\","
            "\"added_by\":%s,%s", aiproxy_json_quote(r->pool, m->who),
            aiproxy_admin_json_money(r->pool, m->has_cap, m->cap),
            aiproxy_money_format(r->pool, effective_cap(settings, st, &c, m)),
            aiproxy_json_quote(r->pool, m->added_by), mj + 1);
    }
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_psprintf(r->pool,
                  "{\"course\":%s,\"month\":\"%s\",\"total\":%"
                  APR_INT64_T_FMT ",\"skip\":%" APR_INT64_T_FMT ",\"limit\":%"
                  APR_INT64_T_FMT ",\"data\":[%s]}",
                  aiproxy_json_quote(r->pool, c.id), month, total, skip,
                  limit, apr_array_pstrcat(r->pool, parts, ',')));
}

/* Emails or @domains from a JSON list: NULL or a 400's message. */
static const char *read_whos(apr_pool_t *p, const aiproxy_json_t *v,
                             apr_array_header_t **out)
{
    apr_size_t i, n = v ? aiproxy_json_array_size(v) : 0;

    *out = apr_array_make(p, (int)n + 1, sizeof(const char *));
    if (v && !aiproxy_json_is_null(v) && !aiproxy_json_is_array(v))
        return "add and remove must be lists of emails or @domains.";
    if (n > AIPROXY_ROSTER_MAX_LINES)
        return "At most 10000 members at a time.";
    for (i = 0; i < n; i++) {
        const char *w = aiproxy_json_string(aiproxy_json_array_at(v, i));

        if (!w || !aiproxy_params_who(w, 1))
            return apr_psprintf(p, "'%s' is not an email or @domain.",
                                w ? w : "(not a string)");
        APR_ARRAY_PUSH(*out, const char *) = aiproxy_params_lower(p, w);
    }
    return NULL;
}

/* Enrols whos into the lists added and already, for POST members (which
 * audits each one added) and POST roster (whose one entry counts them: a
 * roster may be thousands). */
static int add_members(request_rec *r, aiproxy_req_t *st,
                       const aiproxy_scope_t *sc, const char *course,
                       const apr_array_header_t *whos, int audit_each,
                       apr_array_header_t *added, apr_array_header_t *already)
{
    int *fresh = apr_pcalloc(r->pool, (whos->nelts + 1) * sizeof(int));
    const char *err = "";
    int i;

    if (aiproxy_ledger_members_add(aiproxy_child_ledger(), r->pool, course,
                                   whos, sc->email,
                                   apr_time_as_msec(apr_time_now()), fresh,
                                   &err) != AIPROXY_LEDGER_OK)
        return aiproxy_admin_store_down(r, st, err);
    for (i = 0; i < whos->nelts; i++) {
        const char *w = APR_ARRAY_IDX(whos, i, const char *);

        APR_ARRAY_PUSH(fresh[i] ? added : already, const char *) = w;
        if (fresh[i] && audit_each)
            aiproxy_admin_audit(r, sc, "member.add", w, course, NULL,
                                apr_psprintf(r->pool, "{\"who\":%s}",
                                             aiproxy_json_quote(r->pool, w)));
    }
    aiproxy_users_changed();
    return DECLINED;
}

/* The cap:{who: "USD"|null} of POST members, each within the course
 * budget: NULL or a 400's message. */
static const char *read_caps(apr_pool_t *p, const aiproxy_json_t *caps,
                             const aiproxy_course_t *c,
                             apr_array_header_t **whos, aiproxy_money_t **cap,
                             int **has)
{
    apr_array_header_t *keys = aiproxy_json_keys(p, caps);
    int i;

    if (caps && !aiproxy_json_is_null(caps) && !aiproxy_json_is_object(caps))
        return "cap must map emails or @domains to USD strings or null.";
    *whos = apr_array_make(p, keys->nelts + 1, sizeof(const char *));
    *cap = apr_pcalloc(p, (keys->nelts + 1) * sizeof(**cap));
    *has = apr_pcalloc(p, (keys->nelts + 1) * sizeof(**has));
    for (i = 0; i < keys->nelts; i++) {
        const char *w = APR_ARRAY_IDX(keys, i, const char *);
        aiproxy_json_t *v = aiproxy_json_get(caps, w);
        const char *s = aiproxy_json_string(v);

        if (!aiproxy_params_who(w, 1))
            return apr_psprintf(p, "cap: '%s' is not an email or @domain.",
                                w);
        if (!aiproxy_json_is_null(v) &&
            (!s || aiproxy_money_parse(p, s, &(*cap)[i])))
            return apr_psprintf(p, "cap of %s must be USD as a decimal "
                                "string, or null to clear it.", w);
        (*has)[i] = !aiproxy_json_is_null(v);
        if ((*has)[i] && (*cap)[i] > c->budget)
            return apr_psprintf(p, "cap of %s ($%s) exceeds the course "
                                "budget ($%s).", w,
                                aiproxy_money_format(p, (*cap)[i]),
                                aiproxy_money_format(p, c->budget));
        APR_ARRAY_PUSH(*whos, const char *) = aiproxy_params_lower(p, w);
    }
    return NULL;
}

static const char *quoted_list(apr_pool_t *p, const apr_array_header_t *a)
{
    return aiproxy_json_strings(p, a);
}

/* POST members {course, add:[...], remove:[...], cap:{who: "USD"|null}}:
 * everything checked first, then added, capped and removed. */
static int change_members(request_rec *r, aiproxy_req_t *st,
                          const aiproxy_scope_t *sc)
{
    aiproxy_ledger_t *l = aiproxy_child_ledger();
    apr_array_header_t *add, *remove, *capwho, *added, *already, *removed;
    apr_array_header_t *absent, *capped;
    aiproxy_money_t *cap, old;
    aiproxy_ledger_rc_t rc;
    aiproxy_json_t *body;
    aiproxy_course_t c;
    const char *why, *err = "";
    int *has, i, had;

    if (aiproxy_admin_read_json(r, st, &body) != DECLINED)
        return OK;
    if (aiproxy_admin_course_of(r, st, sc, aiproxy_json_string(aiproxy_json_get(body,
                     "course")), &c) != DECLINED)
        return OK;
    if ((why = read_whos(r->pool, aiproxy_json_get(body, "add"), &add)) ||
        (why = read_whos(r->pool, aiproxy_json_get(body, "remove"),
                         &remove)) ||
        (why = read_caps(r->pool, aiproxy_json_get(body, "cap"), &c, &capwho,
                         &cap, &has)))
        return bad(r, st, why);
    added = apr_array_make(r->pool, 4, sizeof(const char *));
    already = apr_array_make(r->pool, 4, sizeof(const char *));
    removed = apr_array_make(r->pool, 4, sizeof(const char *));
    absent = apr_array_make(r->pool, 4, sizeof(const char *));
    capped = apr_array_make(r->pool, 4, sizeof(const char *));
    if (add_members(r, st, sc, c.id, add, 1, added, already) != DECLINED)
        return OK;
    for (i = 0; i < capwho->nelts; i++) {
        const char *w = APR_ARRAY_IDX(capwho, i, const char *);

        rc = aiproxy_ledger_member_cap(l, r->pool, c.id, w, has[i], cap[i],
                                       &had, &old, &err);
        if (rc == AIPROXY_LEDGER_DOWN)
            return aiproxy_admin_store_down(r, st, err);
        if (rc == AIPROXY_LEDGER_NOT_FOUND) {
            APR_ARRAY_PUSH(absent, const char *) = w;
            continue;
        }
        APR_ARRAY_PUSH(capped, const char *) = apr_psprintf(r->pool, "%s:%s",
            aiproxy_json_quote(r->pool, w),
            aiproxy_admin_json_money(r->pool, has[i], cap[i]));
        aiproxy_admin_audit(r, sc, "member.cap", w, c.id,
                            aiproxy_admin_json_money(r->pool, had, old),
                            aiproxy_admin_json_money(r->pool, has[i],
                                                     cap[i]));
    }
    for (i = 0; i < remove->nelts; i++) {
        const char *w = APR_ARRAY_IDX(remove, i, const char *);

        rc = aiproxy_ledger_member_remove(l, r->pool, c.id, w, &err);
        if (rc == AIPROXY_LEDGER_DOWN)
            return aiproxy_admin_store_down(r, st, err);
        APR_ARRAY_PUSH(rc == AIPROXY_LEDGER_OK ? removed : absent,
                       const char *) = w;
        if (rc == AIPROXY_LEDGER_OK)
            aiproxy_admin_audit(r, sc, "member.remove", w, c.id,
                                apr_psprintf(r->pool, "{\"who\":%s}",
                                             aiproxy_json_quote(r->pool, w)),
                                NULL);
    }
    aiproxy_users_changed();
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_psprintf(r->pool,
        "{\"course\":%s,\"added\":%s,\"already\":%s,\"removed\":%s,"
        "\"cap\":{%s},\"not_members\":%s}", aiproxy_json_quote(r->pool, c.id),
        quoted_list(r->pool, added), quoted_list(r->pool, already),
        quoted_list(r->pool, removed),
        apr_array_pstrcat(r->pool, capped, ','),
        quoted_list(r->pool, absent)));
}

/* POST roster?course=C, the CSV as text/csv or {"csv": "..."}. */
static int import_roster(request_rec *r, aiproxy_req_t *st,
                         const aiproxy_scope_t *sc)
{
    apr_table_t *args = aiproxy_params_parse(r->pool, r->args);
    const char *ct = apr_table_get(r->headers_in, "Content-Type");
    apr_array_header_t *whos, *invalid, *added, *already, *bads;
    const char *text, *why, *err;
    aiproxy_json_t *v;
    aiproxy_course_t c;
    char *body;
    apr_size_t len;
    int i;

    if (aiproxy_admin_course_of(r, st, sc, apr_table_get(args, "course"), &c)
        != DECLINED)
        return OK;
    if (aiproxy_admin_read_body(r, st, &body, &len) != DECLINED)
        return OK;
    text = body;
    if (ct && !strncasecmp(ct, "application/json", 16)) {
        v = aiproxy_json_parse(r->pool, body, len, &err);
        text = v ? aiproxy_json_string(aiproxy_json_get(v, "csv")) : NULL;
        if (!text)
            return aiproxy_handler_fail(r, st, HTTP_BAD_REQUEST,
                                        "invalid_json", "Send the roster as "
                                        "text/csv, or as {\"csv\": \"...\"}.");
        len = strlen(text);
    }
    why = aiproxy_roster_parse(r->pool, text, len, AIPROXY_ROSTER_MAX_LINES,
                               &whos, &invalid);
    if (why)
        return aiproxy_handler_fail(r, st, HTTP_REQUEST_ENTITY_TOO_LARGE,
                                    "roster_too_large", why);
    added = apr_array_make(r->pool, whos->nelts + 1, sizeof(const char *));
    already = apr_array_make(r->pool, 4, sizeof(const char *));
    if (add_members(r, st, sc, c.id, whos, 0, added, already) != DECLINED)
        return OK;
    bads = apr_array_make(r->pool, invalid->nelts, sizeof(const char *));
    for (i = 0; i < invalid->nelts; i++) {
        aiproxy_roster_bad_t *b = &APR_ARRAY_IDX(invalid, i,
                                                 aiproxy_roster_bad_t);

        APR_ARRAY_PUSH(bads, const char *) = apr_psprintf(r->pool,
            "{\"line\":%d,\"value\":%s,\"reason\":%s}", b->line,
            aiproxy_json_quote(r->pool, b->value),
            aiproxy_json_quote(r->pool, b->reason));
    }
    aiproxy_admin_audit(r, sc, "roster.import", c.id, c.id, NULL,
                        apr_psprintf(r->pool, "{\"added\":%d,\"already\":%d,"
                                     "\"invalid\":%d}", added->nelts,
                                     already->nelts, invalid->nelts));
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_psprintf(r->pool,
        "{\"course\":%s,\"added\":%s,\"already\":%s,\"invalid\":[%s]}",
        aiproxy_json_quote(r->pool, c.id), quoted_list(r->pool, added),
        quoted_list(r->pool, already),
        apr_array_pstrcat(r->pool, bads, ',')));
}

int aiproxy_admin_members(request_rec *r, aiproxy_req_t *st,
                          const aiproxy_scope_t *sc, const char *what)
{
    int m = r->method_number;

    if (!strcmp(what, "members"))
        return m == M_GET ? list_members(r, st, sc)
               : m == M_POST ? change_members(r, st, sc)
               : aiproxy_admin_wrong_method(r, st, "GET, POST");
    if (!strcmp(what, "roster"))
        return m == M_POST ? import_roster(r, st, sc)
               : aiproxy_admin_wrong_method(r, st, "POST");
    return DECLINED;
}
