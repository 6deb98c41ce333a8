/* Sign-in (/token: a Google ID token in, a gateway token out) and the
 * admin API (/admin/api/...). */
#ifndef AIPROXY_ADMIN_H
#define AIPROXY_ADMIN_H

#include "httpd.h"

/* Per process: libcurl and the cache of Google's keys. */
void aiproxy_admin_child_init(apr_pool_t *p, server_rec *s);
/* SetHandler aiproxy-token */
int aiproxy_token_handler(request_rec *r);
/* SetHandler aiproxy-admin-api */
int aiproxy_admin_api_handler(request_rec *r);

#endif
