/* /usage: a user's month, and the admins' listing. */
#ifndef AIPROXY_USAGE_H
#define AIPROXY_USAGE_H

#include "aiproxy_req.h"

int aiproxy_usage_handler(request_rec *r);
/* The admins' listing (skip, limit, month, email, sort) for a request
 * whose caller is identified in st; answers 403 to a non-admin. Also
 * served as /admin/api/usage (aiproxy_admin.c). */
int aiproxy_usage_list(request_rec *r, aiproxy_req_t *st);

#endif
