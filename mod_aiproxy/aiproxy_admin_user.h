/* The admin API on a user's settings and month: caps (site-wide, admins
 * only), revocation and month resets (admins; instructors for members of
 * their courses). Each answers and returns OK. */
#ifndef AIPROXY_ADMIN_USER_H
#define AIPROXY_ADMIN_USER_H

#include "httpd.h"
#include "aiproxy_req.h"
#include "aiproxy_scope.h"

/* GET caps */
int aiproxy_admin_caps_list(request_rec *r, aiproxy_req_t *st);
/* PUT/POST caps {who, cap} */
int aiproxy_admin_caps_set(request_rec *r, aiproxy_req_t *st,
                           const aiproxy_scope_t *sc);
/* POST revoke {email} */
int aiproxy_admin_revoke(request_rec *r, aiproxy_req_t *st,
                         const aiproxy_scope_t *sc);
/* POST reset {email, month?, course?} */
int aiproxy_admin_reset(request_rec *r, aiproxy_req_t *st,
                        const aiproxy_scope_t *sc);

#endif
