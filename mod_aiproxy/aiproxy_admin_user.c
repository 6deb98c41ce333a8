/* Caps, revocation and month resets (aiproxy_admin_user.h). */
#include <string.h>
#include <apr_strings.h>

#include "httpd.h"
#include "http_log.h"
#include "http_protocol.h"

#include "aiproxy_admin.h"
#include "aiproxy_admin_user.h"
#include "aiproxy_counters.h"
#include "aiproxy_course.h"
#include "aiproxy_handler.h"
#include "aiproxy_ledger_course_admin.h"
#include "aiproxy_params.h"
#include "aiproxy_policy.h"

APLOG_USE_MODULE(aiproxy);

int aiproxy_admin_caps_list(request_rec *r, aiproxy_req_t *st)
{
    apr_array_header_t *rows, *parts;
    const char *err = "";
    int i;

    if (aiproxy_ledger_users(aiproxy_child_ledger(), r->pool, &rows, &err)
        != AIPROXY_LEDGER_OK)
        return aiproxy_admin_store_down(r, st, err);
    parts = apr_array_make(r->pool, rows->nelts, sizeof(const char *));
    for (i = 0; i < rows->nelts; i++) {
        aiproxy_user_row_t *u = &APR_ARRAY_IDX(rows, i, aiproxy_user_row_t);

        APR_ARRAY_PUSH(parts, const char *) = apr_psprintf(r->pool,
            "{\"who\":%s,\"cap\":%s,\"revoked_at\":%s}",
            aiproxy_json_quote(r->pool, u->who),
            aiproxy_admin_json_money(r->pool, u->has_cap, u->cap),
            u->revoked_at > 0 ? apr_psprintf(r->pool, "%" APR_INT64_T_FMT,
                                             u->revoked_at) : "null");
    }
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_psprintf(r->pool,
                  "{\"default_cap\":\"%s\",\"data\":[%s]}",
                  aiproxy_money_format(r->pool, st->g->default_cap),
                  apr_array_pstrcat(r->pool, parts, ',')));
}

int aiproxy_admin_caps_set(request_rec *r, aiproxy_req_t *st,
                           const aiproxy_scope_t *sc)
{
    aiproxy_json_t *body;
    const char *who = NULL, *why, *err = "";
    aiproxy_money_t cap = 0;
    aiproxy_user_t old;
    int has_cap = 0;

    if (aiproxy_admin_read_json(r, st, &body) != DECLINED)
        return OK;
    if ((why = aiproxy_params_cap(r->pool, body, &who, &has_cap, &cap)))
        return aiproxy_handler_fail(r, st, HTTP_BAD_REQUEST,
                                    "invalid_parameter", why);
    if (aiproxy_ledger_user(aiproxy_child_ledger(), r->pool, who, &old, &err)
        != AIPROXY_LEDGER_OK ||
        aiproxy_ledger_set_cap(aiproxy_child_ledger(), r->pool, who, has_cap,
                               cap, &err) != AIPROXY_LEDGER_OK)
        return aiproxy_admin_store_down(r, st, err);
    aiproxy_users_changed();
    /* A domain's cap is not the email's own: not what changed. */
    aiproxy_admin_audit(r, sc, has_cap ? "cap.set" : "cap.clear", who, NULL,
                        aiproxy_admin_json_money(r->pool, old.has_cap &&
                            (*who == '@' || old.cap_own), old.cap),
                        aiproxy_admin_json_money(r->pool, has_cap, cap));
    ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, r, AIPLOGNO(04008)
                  "%s %s the cap of %s%s%s", st->email,
                  has_cap ? "set" : "cleared", who, has_cap ? " to $" : "",
                  has_cap ? aiproxy_money_format(r->pool, cap) : "");
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_psprintf(r->pool,
                                  "{\"who\":%s,\"cap\":%s}",
                                  aiproxy_json_quote(r->pool, who),
                                  aiproxy_admin_json_money(r->pool, has_cap,
                                                           cap)));
}

int aiproxy_admin_revoke(request_rec *r, aiproxy_req_t *st,
                         const aiproxy_scope_t *sc)
{
    aiproxy_json_t *body;
    const char *email, *err = "";
    aiproxy_user_t old;
    apr_int64_t at;

    if (aiproxy_scope_may_act(r, st, sc) != DECLINED)
        return OK;
    if (aiproxy_admin_read_json(r, st, &body) != DECLINED)
        return OK;
    email = aiproxy_json_string(aiproxy_json_get(body, "email"));
    if (!email || !aiproxy_params_who(email, 0))
        return aiproxy_handler_fail(r, st, HTTP_BAD_REQUEST,
                                    "invalid_parameter",
                                    "email must be an email address.");
    email = aiproxy_params_lower(r->pool, email);
    if (aiproxy_ledger_user(aiproxy_child_ledger(), r->pool, email, &old,
                            &err) != AIPROXY_LEDGER_OK ||
        aiproxy_ledger_revoke(aiproxy_child_ledger(), r->pool, email,
                              apr_time_sec(apr_time_now()), &at, &err)
        != AIPROXY_LEDGER_OK)
        return aiproxy_admin_store_down(r, st, err);
    aiproxy_users_changed();
    aiproxy_admin_audit(r, sc, "revoke", email, NULL,
                        old.revoked_at ? apr_psprintf(r->pool, "%"
                            APR_INT64_T_FMT, old.revoked_at) : NULL,
                        apr_psprintf(r->pool, "%" APR_INT64_T_FMT, at));
    ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, r, AIPLOGNO(04009)
                  "%s revoked the tokens of %s", st->email, email);
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_psprintf(r->pool,
                                  "{\"email\":%s,\"revoked_at\":%"
                                  APR_INT64_T_FMT "}",
                                  aiproxy_json_quote(r->pool, email), at));
}

int aiproxy_admin_reset(request_rec *r, aiproxy_req_t *st,
                        const aiproxy_scope_t *sc)
{
    aiproxy_json_t *body, *v;
    const char *email, *month, *course = NULL, *err = "";
    aiproxy_month_t before, after;
    aiproxy_ledger_rc_t rc;

    if (aiproxy_scope_may_act(r, st, sc) != DECLINED)
        return OK;
    if (aiproxy_admin_read_json(r, st, &body) != DECLINED)
        return OK;
    email = aiproxy_json_string(aiproxy_json_get(body, "email"));
    if (!email || !aiproxy_params_who(email, 0))
        return aiproxy_handler_fail(r, st, HTTP_BAD_REQUEST,
                                    "invalid_parameter",
                                    "email must be an email address.");
    email = aiproxy_params_lower(r->pool, email);
    month = aiproxy_month_of(r->pool, r->request_time);
    if ((v = aiproxy_json_get(body, "month")) && !aiproxy_json_is_null(v)) {
        month = aiproxy_json_string(v);
        if (!month || !aiproxy_params_month(month))
            return aiproxy_handler_fail(r, st, HTTP_BAD_REQUEST,
                                        "invalid_parameter",
                                        "month must be YYYY-MM.");
    }
    if ((v = aiproxy_json_get(body, "course")) && !aiproxy_json_is_null(v)) {
        course = aiproxy_json_string(v);
        if (!course || !aiproxy_course_id_valid(course))
            return aiproxy_handler_fail(r, st, HTTP_BAD_REQUEST,
                                        "invalid_parameter",
                                        "course must be a course id.");
    }
    rc = aiproxy_ledger_month_reset(aiproxy_child_ledger(), r->pool, email,
                                    month, &before, &after, &err);
    if (rc == AIPROXY_LEDGER_DOWN)
        return aiproxy_admin_store_down(r, st, err);
    ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, r, AIPLOGNO(04102)
                  "%s reset the month %s of %s (spent was $%s)", st->email,
                  month, email, aiproxy_money_format(r->pool, before.spent));
    aiproxy_admin_audit(r, sc, "month.reset", email, course,
                        aiproxy_admin_month_json(r->pool, &before),
                        aiproxy_admin_month_json(r->pool, &after));
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_psprintf(r->pool,
                                  "{\"email\":%s,\"month\":\"%s\","
                                  "\"before\":%s,\"after\":%s}",
                                  aiproxy_json_quote(r->pool, email), month,
                                  aiproxy_admin_month_json(r->pool, &before),
                                  aiproxy_admin_month_json(r->pool, &after)));
}
