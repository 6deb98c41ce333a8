/* The admin API's reports (requests, models, near, export), scoped by
 * role: dispatched from aiproxy_admin.c. */
#ifndef AIPROXY_ADMIN_REPORT_H
#define AIPROXY_ADMIN_REPORT_H

#include "httpd.h"
#include "aiproxy_req.h"
#include "aiproxy_scope.h"

/* DECLINED when `what` is not a report; else OK once answered. */
int aiproxy_admin_report(request_rec *r, aiproxy_req_t *st,
                         const aiproxy_scope_t *sc, const char *what);

#endif
