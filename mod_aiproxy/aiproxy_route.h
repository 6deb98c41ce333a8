/* Which provider and key serve a request, in what order: keys in turn,
 * failed ones rested, the next candidate tried on failure. */
#ifndef AIPROXY_ROUTE_H
#define AIPROXY_ROUTE_H

#include "aiproxy_config.h"

typedef struct {
    aiproxy_provider_t *provider;
    int key;               /* index into provider->auth */
    const char *model;     /* the model's name at this provider */
} aiproxy_attempt_t;

/* The attempts for a request served by targets (aiproxy_target_t), at most
 * max: each target's keys starting at its next turn, resting keys last. */
apr_array_header_t *aiproxy_route_attempts(apr_pool_t *p,
                                           const apr_array_header_t *targets,
                                           int max, apr_time_t now);

/* Leaves a failed key alone until `until`. */
void aiproxy_route_rest(const aiproxy_attempt_t *a, apr_time_t until);

#endif
