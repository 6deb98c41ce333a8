/* What every child counts into one place (shared memory). */
#ifndef AIPROXY_COUNTERS_H
#define AIPROXY_COUNTERS_H

#include "httpd.h"

#include "aiproxy_config.h"

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
    AIPROXY_STAT_LEASED,            /* admitted from a lease: no round trip */
    AIPROXY_STAT_LEASE_WRITES,      /* lease writes sent to the store */
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
int aiproxy_counters_post_config(apr_pool_t *pconf, server_rec *s);
/* An attempt's outcome for a provider key: status the upstream's answer (0:
 * none), answered 0 when the attempt gave the client nothing. A 401, 403,
 * 429 or 5xx, or no answer, is the key's failure: counted, logged at warn
 * at most once a minute per key, and 3 in a row make /health name the
 * provider degraded. */
void aiproxy_counters_key_result(request_rec *r, const aiproxy_provider_t *pv,
                                 int key, int status, int answered);
apr_uint32_t aiproxy_stat_get(aiproxy_stat_t which);
const char *aiproxy_stat_name(aiproxy_stat_t which);
/* 0 before post_config made the shared memory. */
int aiproxy_counters_ready(void);
apr_int64_t aiproxy_counters_uptime_s(void);
/* Providers with a key failing over and over, as a JSON array of names,
 * or NULL; and every key's failures as a JSON object by provider. */
const char *aiproxy_counters_degraded_json(apr_pool_t *p,
                                           aiproxy_global_t *g);
const char *aiproxy_counters_key_errors_json(apr_pool_t *p,
                                             aiproxy_global_t *g);
/* Whether the store answers, from a probe at most 2 s old shared by every
 * child. */
int aiproxy_counters_store_up(request_rec *r);

#endif
