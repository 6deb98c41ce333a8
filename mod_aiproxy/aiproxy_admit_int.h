/* What admission's files (aiproxy_admit.c: the hook's order, rate limit,
 * cache, reservation; aiproxy_admit_body.c: the body and its cost bound)
 * share. */
#ifndef AIPROXY_ADMIT_INT_H
#define AIPROXY_ADMIT_INT_H

#include "aiproxy_req.h"

/* The models a route serves: AIProxyModels, or with `*` every priced
 * model; and their names, for messages. */
int aiproxy_admit_model_allowed(const aiproxy_req_t *st, const char *model);
apr_array_header_t *aiproxy_admit_model_names(apr_pool_t *p,
                                              const aiproxy_req_t *st);
/* The body: read within the limits, checked, its cost bounded and the
 * reservation set. DECLINED to go on, else the request was answered. */
int aiproxy_admit_body(request_rec *r, aiproxy_req_t *st);

#endif
