/* Who may do what in the admin API: roles and their scope. An admin
 * (AIProxyAdmins) may do everything; an instructor (listed in some
 * course's instructors) acts on those courses and their members; anyone
 * else with a valid token is a student and sees their own usage only. */
#ifndef AIPROXY_SCOPE_H
#define AIPROXY_SCOPE_H

#include "httpd.h"
#include "aiproxy_req.h"

typedef enum {
    AIPROXY_ROLE_STUDENT,
    AIPROXY_ROLE_INSTRUCTOR,
    AIPROXY_ROLE_ADMIN
} aiproxy_role_t;

typedef struct {
    const char *email;
    aiproxy_role_t role;
    apr_array_header_t *teaches;    /* const char * course ids */
} aiproxy_scope_t;

/* DECLINED with *out filled, or OK after answering (503 store down). */
int aiproxy_scope_of(request_rec *r, aiproxy_req_t *st, aiproxy_scope_t *out);
/* Whether the caller may manage course: an admin any, an instructor those
 * they teach. */
int aiproxy_scope_teaches(const aiproxy_scope_t *s, const char *course);
/* DECLINED when the caller may act on email (within course, NULL: any
 * course they teach), else OK after answering 403 (or 503). Anyone may
 * see their own email. */
int aiproxy_scope_may_see(request_rec *r, aiproxy_req_t *st,
                          const aiproxy_scope_t *s, const char *course,
                          const char *email);
/* Whether the caller may act on a person (issue a token, reset a month,
 * revoke): administrators only. DECLINED, or OK after answering 403. */
int aiproxy_scope_may_act(request_rec *r, aiproxy_req_t *st,
                          const aiproxy_scope_t *s);
/* "admin", "instructor" or "student". */
const char *aiproxy_scope_role_name(aiproxy_role_t role);
/* 403 permission_error: forbidden, saying what is outside the scope. */
int aiproxy_scope_forbidden(request_rec *r, aiproxy_req_t *st,
                            const char *message);
/* 403 permission_error: not_admin, for what only admins may do. */
int aiproxy_scope_not_admin(request_rec *r, aiproxy_req_t *st);

#endif
