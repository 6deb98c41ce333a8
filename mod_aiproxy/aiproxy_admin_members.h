/* The admin API on a course's members: list them with their month, add,
 * remove and cap them, import a roster (admins, instructors of the
 * course). */
#ifndef AIPROXY_ADMIN_MEMBERS_H
#define AIPROXY_ADMIN_MEMBERS_H

#include "httpd.h"
#include "aiproxy_req.h"
#include "aiproxy_scope.h"

/* members, roster: DECLINED when `what` is neither, else OK once
 * answered. */
int aiproxy_admin_members(request_rec *r, aiproxy_req_t *st,
                          const aiproxy_scope_t *sc, const char *what);

#endif
