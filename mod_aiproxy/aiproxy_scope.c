/* Roles and scope (aiproxy_scope.h). */
#include <string.h>
#include <apr_strings.h>

#include "httpd.h"
#include "http_log.h"
#include "http_protocol.h"

#include "aiproxy_scope.h"
#include "aiproxy_handler.h"
#include "aiproxy_reply.h"
#include "aiproxy_ledger_course_admin.h"

APLOG_USE_MODULE(aiproxy);

static int store_down(request_rec *r, aiproxy_req_t *st, const char *err)
{
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, AIPLOGNO(04100)
                  "usage store unavailable for the caller's role: %s", err);
    aiproxy_reply_store_down(r, st);
    return aiproxy_reply_handler(r);
}

int aiproxy_scope_of(request_rec *r, aiproxy_req_t *st, aiproxy_scope_t *out)
{
    aiproxy_ledger_t *l = aiproxy_child_ledger();
    apr_array_header_t *rows;
    const char *err = "no store connection pool";
    int i;

    out->email = st->email;
    out->teaches = apr_array_make(r->pool, 2, sizeof(const char *));
    if (!l || aiproxy_ledger_courses(l, r->pool, st->email, &rows, &err)
              != AIPROXY_LEDGER_OK)
        return store_down(r, st, err);
    for (i = 0; i < rows->nelts; i++)
        APR_ARRAY_PUSH(out->teaches, const char *) =
            APR_ARRAY_IDX(rows, i, aiproxy_course_t).id;
    if (apr_hash_get(st->g->admins, st->email, APR_HASH_KEY_STRING))
        out->role = AIPROXY_ROLE_ADMIN;
    else
        out->role = rows->nelts ? AIPROXY_ROLE_INSTRUCTOR
                                : AIPROXY_ROLE_STUDENT;
    return DECLINED;
}

int aiproxy_scope_teaches(const aiproxy_scope_t *s, const char *course)
{
    int i;

    if (s->role == AIPROXY_ROLE_ADMIN)
        return 1;
    if (s->role != AIPROXY_ROLE_INSTRUCTOR || !course)
        return 0;
    for (i = 0; i < s->teaches->nelts; i++)
        if (!strcmp(APR_ARRAY_IDX(s->teaches, i, const char *), course))
            return 1;
    return 0;
}

const char *aiproxy_scope_role_name(aiproxy_role_t role)
{
    return role == AIPROXY_ROLE_ADMIN ? "admin"
           : role == AIPROXY_ROLE_INSTRUCTOR ? "instructor" : "student";
}

int aiproxy_scope_forbidden(request_rec *r, aiproxy_req_t *st,
                            const char *message)
{
    aiproxy_reply_error(r, st, HTTP_FORBIDDEN, "permission_error",
                        "forbidden", message);
    return aiproxy_reply_handler(r);
}

int aiproxy_scope_not_admin(request_rec *r, aiproxy_req_t *st)
{
    aiproxy_reply_error(r, st, HTTP_FORBIDDEN, "permission_error",
                        "not_admin", "Only administrators may do this.");
    return aiproxy_reply_handler(r);
}

static int member_check(request_rec *r, aiproxy_req_t *st,
                        const aiproxy_scope_t *s, const char *course,
                        const char *email)
{
    apr_array_header_t *one;
    const char *err = "no store connection pool", *in = NULL;
    aiproxy_ledger_t *l = aiproxy_child_ledger();

    if (s->role == AIPROXY_ROLE_ADMIN)
        return DECLINED;
    if (email && !strcmp(email, s->email))
        return DECLINED;
    if (s->role != AIPROXY_ROLE_INSTRUCTOR || !email)
        return aiproxy_scope_forbidden(r, st, "You may only see your own "
                                       "usage.");
    if (course && !aiproxy_scope_teaches(s, course))
        return aiproxy_scope_forbidden(r, st, apr_psprintf(r->pool,
                                       "You do not teach course %s.",
                                       course));
    one = s->teaches;
    if (course) {
        one = apr_array_make(r->pool, 1, sizeof(const char *));
        APR_ARRAY_PUSH(one, const char *) = course;
    }
    if (!l || aiproxy_ledger_member_of_any(l, r->pool, one, email, &in, &err)
              != AIPROXY_LEDGER_OK)
        return store_down(r, st, err);
    if (!in)
        return aiproxy_scope_forbidden(r, st, apr_psprintf(r->pool,
                                       "%s is not a member of %s.", email,
                                       course ? course
                                              : "a course you teach"));
    return DECLINED;
}

int aiproxy_scope_may_see(request_rec *r, aiproxy_req_t *st,
                          const aiproxy_scope_t *s, const char *course,
                          const char *email)
{
    return member_check(r, st, s, course, email);
}

int aiproxy_scope_may_act(request_rec *r, aiproxy_req_t *st,
                          const aiproxy_scope_t *s)
{
    /* An instructor decides who is a member: acting for members would let
     * them enrol anyone and then mint that person's token, rewrite their
     * month or revoke them everywhere. Identity and money belong to
     * administrators; instructors enrol and remove. */
    if (s->role != AIPROXY_ROLE_ADMIN) {
        aiproxy_reply_error(r, st, HTTP_FORBIDDEN, "permission_error",
                            "not_admin", "Only administrators may issue "
                            "tokens, reset a month or revoke. Instructors "
                            "enrol and remove members; students get their "
                            "tokens at sign-in.");
        return aiproxy_reply_handler(r);
    }
    return DECLINED;
}
