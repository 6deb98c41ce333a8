#include <apr_atomic.h>

#include "aiproxy_route.h"

apr_array_header_t *aiproxy_route_attempts(apr_pool_t *p,
                                           const apr_array_header_t *targets,
                                           int max, apr_time_t now)
{
    apr_array_header_t *fresh = apr_array_make(p, 4, sizeof(aiproxy_attempt_t));
    apr_array_header_t *resting = apr_array_make(p, 2,
                                                 sizeof(aiproxy_attempt_t));
    int i, k;

    for (i = 0; i < targets->nelts; i++) {
        const aiproxy_target_t *t = &APR_ARRAY_IDX(targets, i,
                                                   aiproxy_target_t);
        aiproxy_provider_t *pv = t->provider;
        int n = pv->auth->nelts;
        /* In shared memory: every child takes the next turn. */
        int start = (int)(apr_atomic_inc32(pv->turn) % (apr_uint32_t)n);

        for (k = 0; k < n; k++) {
            int key = (start + k) % n;
            aiproxy_attempt_t *a = apr_array_push(
                pv->rest_until[key] > now ? resting : fresh);

            a->provider = pv;
            a->key = key;
            a->model = t->upstream_model;
        }
    }
    apr_array_cat(fresh, resting);
    if (fresh->nelts > max)
        fresh->nelts = max;
    return fresh;
}

void aiproxy_route_rest(const aiproxy_attempt_t *a, apr_time_t until)
{
    /* A plain aligned store: racing threads write near-equal times. */
    a->provider->rest_until[a->key] = until;
}
