/* The admin API's per-caller parts: the caller's own view (me), tokens
 * issued for others, and the audit log. */
#ifndef AIPROXY_ADMIN_MEMBER_H
#define AIPROXY_ADMIN_MEMBER_H

#include "httpd.h"
#include "aiproxy_req.h"
#include "aiproxy_scope.h"

/* me, tokens, audit: DECLINED when `what` is none of them, else OK once
 * answered. */
int aiproxy_admin_member(request_rec *r, aiproxy_req_t *st,
                         const aiproxy_scope_t *sc,
                         const aiproxy_user_t *user, const char *what);

#endif
