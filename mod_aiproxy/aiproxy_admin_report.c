/* Stub: the reports helper replaces this file. */
#include "aiproxy_admin_report.h"

int aiproxy_admin_report(request_rec *r, aiproxy_req_t *st,
                         const aiproxy_scope_t *sc, const char *what)
{
    (void)r;
    (void)st;
    (void)sc;
    (void)what;
    return DECLINED;
}
