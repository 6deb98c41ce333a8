/* Admission: the fixups hook that checks, bounds and reserves a request. */
#ifndef AIPROXY_ADMIT_H
#define AIPROXY_ADMIT_H

#include "aiproxy_req.h"

int aiproxy_admit(request_rec *r);
const char *aiproxy_month_of(apr_pool_t *p, apr_time_t t);
/* Who is calling: the token from the request headers, then the user's
 * settings from the store (revocation, cap). On failure answers the request
 * (401 or 503) and returns its status; OK on success with st->email set. */
int aiproxy_identify(request_rec *r, aiproxy_req_t *st, aiproxy_api_t api,
                     aiproxy_user_t *user);

/* Per-child memos of verified tokens and user settings (aiproxy_admit.c). */
void aiproxy_admit_child_init(apr_pool_t *p, server_rec *s);

#endif
