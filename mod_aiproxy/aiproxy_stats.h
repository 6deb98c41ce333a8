/* Counters shared by all children, /health, /targets and /api/stats. */
#ifndef AIPROXY_STATS_H
#define AIPROXY_STATS_H

#include "aiproxy_req.h"

typedef enum {
    AIPROXY_STAT_REQUESTS = 0,
    AIPROXY_STAT_CACHE_HITS,
    AIPROXY_STAT_CACHE_MISSES,
    AIPROXY_STAT_CACHE_STORES,
    AIPROXY_STAT_RETRIES,
    AIPROXY_STAT_RATE_LIMITED,
    AIPROXY_STAT_OVER_CAP,
    AIPROXY_STAT_UPSTREAM_ERRORS,
    AIPROXY_STAT_BUSY,              /* large requests refused: child full */
    AIPROXY_STAT_RECORDS_PENDING,   /* a gauge: records not yet written */
    AIPROXY_STAT_COUNT
} aiproxy_stat_t;
void aiproxy_stat_inc(aiproxy_stat_t which);
/* The shared slot itself, for code that moves it both ways; NULL before
 * post_config made the shared memory. */
apr_uint32_t *aiproxy_stat_slot(aiproxy_stat_t which);
/* Bumped by this server's admin API whenever a cap or a revocation changes,
 * so every child drops the user settings it remembers at once. */
void aiproxy_users_changed(void);
apr_uint32_t aiproxy_users_generation(void);
int aiproxy_stats_post_config(apr_pool_t *pconf, server_rec *s);
/* An attempt's outcome for a provider key: status the upstream's answer (0:
 * none), answered 0 when the attempt gave the client nothing. A 401, 403,
 * 429 or 5xx, or no answer, is the key's failure: counted, logged at warn
 * at most once a minute per key, and 3 in a row make /health name the
 * provider degraded. */
void aiproxy_stats_key_result(request_rec *r, const aiproxy_provider_t *pv,
                              int key, int status, int answered);
int aiproxy_health_handler(request_rec *r);
int aiproxy_targets_handler(request_rec *r);
int aiproxy_stats_handler(request_rec *r);
void aiproxy_stats_register_status_hook(void);

#endif
