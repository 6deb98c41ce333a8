/* The admin API on courses: courses (admins write, instructors read
 * theirs), members and rosters (admins, instructors of the course). */
#ifndef AIPROXY_ADMIN_COURSE_H
#define AIPROXY_ADMIN_COURSE_H

#include "httpd.h"
#include "aiproxy_req.h"
#include "aiproxy_scope.h"
#include "aiproxy_course.h"

/* courses, members, roster: DECLINED when `what` is none of them, else OK
 * once answered. */
int aiproxy_admin_course(request_rec *r, aiproxy_req_t *st,
                         const aiproxy_scope_t *sc, const char *what);

/* The course id of a query or body, which the caller must manage: DECLINED
 * with *c read, or OK once answered (400 bad id, 403 outside the scope,
 * 404 no such course). */
int aiproxy_admin_course_of(request_rec *r, aiproxy_req_t *st,
                            const aiproxy_scope_t *sc, const char *id,
                            aiproxy_course_t *c);

#endif
