/* What every child counts into one place: shared memory made before the
 * children fork holds the counters, the users' generation, each provider
 * key's turn, rest and failures, and the store probe /health answers
 * from. */
#include <string.h>
#include <apr_atomic.h>
#include <apr_shm.h>
#include <apr_strings.h>

#include "httpd.h"
#include "http_log.h"

#include "aiproxy_counters.h"
#include "aiproxy_json.h"
#include "aiproxy_req.h"

APLOG_USE_MODULE(aiproxy);

typedef struct {
    apr_uint32_t counters[AIPROXY_STAT_COUNT];
    apr_uint32_t users_generation;
    apr_time_t started;
    apr_uint32_t probe_at;      /* second of the last store probe; 0: none */
    apr_uint32_t probe_up;      /* its result */
} shared_t;

/* Per provider key, in shared memory: how its attempts went. */
struct aiproxy_key_health {
    apr_uint32_t failures;      /* since start-up */
    apr_uint32_t in_a_row;      /* since its last good answer */
    apr_uint32_t last_status;   /* of its last failure; 0: no answer */
    apr_uint32_t logged_at;     /* second of the last warning; 0: none */
    apr_uint32_t unlogged;      /* failures since that warning */
};

/* A key's failures are logged at most once per this many seconds, so a
 * dead key under load is one line a minute, not one per request. */
#define KEY_LOG_SECONDS 60
/* This many failures in a row, with no good answer between, and /health
 * names the key's provider degraded. */
#define KEY_DEGRADED_AFTER 3

/* /health answers from a probe at most this old: a load balancer (or
 * anyone, since it is public) polling it costs the store one round trip
 * per period, not one per call. */
#define HEALTH_PROBE_SECONDS 2

static shared_t *shared;

static const char *const stat_names[AIPROXY_STAT_COUNT] = {
    "requests", "cache_hits", "cache_misses", "cache_stores", "retries",
    "rate_limited", "over_cap", "upstream_errors", "busy", "records_pending",
    "leased", "lease_writes"
};

void aiproxy_stat_inc(aiproxy_stat_t which)
{
    if (shared)
        apr_atomic_inc32(&shared->counters[which]);
}

apr_uint32_t *aiproxy_stat_slot(aiproxy_stat_t which)
{
    return shared ? &shared->counters[which] : NULL;
}

void aiproxy_users_changed(void)
{
    if (shared)
        apr_atomic_inc32(&shared->users_generation);
}

apr_uint32_t aiproxy_users_generation(void)
{
    return shared ? apr_atomic_read32(&shared->users_generation) : 0;
}

/* Shared memory holds the counters and, per provider key, its turn and
 * rest time, so every child rotates keys and rests failed ones together. */
int aiproxy_counters_post_config(apr_pool_t *pconf, server_rec *s)
{
    aiproxy_global_t *g = aiproxy_global(s);
    apr_hash_index_t *hi;
    apr_size_t keys = 0, size;
    apr_shm_t *shm;
    apr_status_t rv;
    char *next;

    for (hi = apr_hash_first(pconf, g->providers); hi; hi = apr_hash_next(hi))
        keys += ((aiproxy_provider_t *)apr_hash_this_val(hi))->key_specs->nelts;
    size = APR_ALIGN_DEFAULT(sizeof(shared_t)) + keys * sizeof(apr_time_t) +
           APR_ALIGN_DEFAULT(apr_hash_count(g->providers) *
                             sizeof(apr_uint32_t)) +
           keys * sizeof(struct aiproxy_key_health);
    rv = apr_shm_create(&shm, size, NULL, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, AIPLOGNO(01701)
                     "cannot create shared memory for statistics");
        return !OK;
    }
    shared = apr_shm_baseaddr_get(shm);
    memset(shared, 0, size);
    shared->started = apr_time_now();
    next = (char *)shared + APR_ALIGN_DEFAULT(sizeof(shared_t));
    for (hi = apr_hash_first(pconf, g->providers); hi; hi = apr_hash_next(hi)) {
        aiproxy_provider_t *pv = apr_hash_this_val(hi);

        pv->rest_until = (apr_time_t *)next;
        next += pv->key_specs->nelts * sizeof(apr_time_t);
    }
    for (hi = apr_hash_first(pconf, g->providers); hi; hi = apr_hash_next(hi)) {
        aiproxy_provider_t *pv = apr_hash_this_val(hi);

        pv->turn = (apr_uint32_t *)next;
        next += sizeof(apr_uint32_t);
    }
    next = (char *)APR_ALIGN_DEFAULT((apr_uintptr_t)next);
    for (hi = apr_hash_first(pconf, g->providers); hi; hi = apr_hash_next(hi)) {
        aiproxy_provider_t *pv = apr_hash_this_val(hi);

        pv->health = (struct aiproxy_key_health *)next;
        next += pv->key_specs->nelts * sizeof(struct aiproxy_key_health);
    }
    return OK;
}

static int key_failure(int status, int answered)
{
    return !answered || status == HTTP_UNAUTHORIZED ||
           status == HTTP_FORBIDDEN || status == HTTP_TOO_MANY_REQUESTS ||
           status >= 500;
}

void aiproxy_counters_key_result(request_rec *r, const aiproxy_provider_t *pv,
                              int key, int status, int answered)
{
    struct aiproxy_key_health *h;
    apr_uint32_t now, at, missed;

    if (!pv->health || key < 0 || key >= pv->key_specs->nelts)
        return;
    h = &pv->health[key];
    if (!key_failure(status, answered)) {
        if (apr_atomic_read32(&h->in_a_row))
            apr_atomic_set32(&h->in_a_row, 0);
        return;
    }
    aiproxy_stat_inc(AIPROXY_STAT_UPSTREAM_ERRORS);
    apr_atomic_inc32(&h->failures);
    apr_atomic_inc32(&h->in_a_row);
    apr_atomic_set32(&h->last_status, (apr_uint32_t)(answered ? status : 0));
    apr_atomic_inc32(&h->unlogged);
    now = (apr_uint32_t)apr_time_sec(apr_time_now());
    at = apr_atomic_read32(&h->logged_at);
    /* One child (the one whose swap wins) writes the minute's line. */
    if ((at && now - at < KEY_LOG_SECONDS) ||
        apr_atomic_cas32(&h->logged_at, now, at) != at)
        return;
    missed = apr_atomic_xchg32(&h->unlogged, 0);
    /* Never the key itself: its provider and position only. */
    ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, AIPLOGNO(01310)
                  "provider %s key #%d is failing: %s%s (%u failure(s) since "
                  "the last report, %u in a row)", pv->name, key + 1,
                  status && answered ? "answered " : "no answer",
                  status && answered ? apr_itoa(r->pool, status) : "",
                  missed, apr_atomic_read32(&h->in_a_row));
}

/* Providers with a key failing over and over, as a JSON array of names. */
const char *aiproxy_counters_degraded_json(apr_pool_t *p, aiproxy_global_t *g)
{
    apr_array_header_t *names = apr_array_make(p, 2, sizeof(char *));
    apr_hash_index_t *hi;
    int k;

    for (hi = apr_hash_first(p, g->providers); hi; hi = apr_hash_next(hi)) {
        aiproxy_provider_t *pv = apr_hash_this_val(hi);

        for (k = 0; pv->health && k < pv->key_specs->nelts; k++)
            if (apr_atomic_read32(&pv->health[k].in_a_row) >=
                KEY_DEGRADED_AFTER) {
                APR_ARRAY_PUSH(names, const char *) =
                    aiproxy_json_quote(p, pv->name);
                break;
            }
    }
    return names->nelts ? apr_pstrcat(p, "[", apr_array_pstrcat(p, names, ','),
                                      "]", NULL) : NULL;
}

/* Per provider and key: its failures, for /api/stats. */
const char *aiproxy_counters_key_errors_json(apr_pool_t *p, aiproxy_global_t *g)
{
    apr_array_header_t *parts = apr_array_make(p, 4, sizeof(char *));
    apr_hash_index_t *hi;
    int k;

    for (hi = apr_hash_first(p, g->providers); hi; hi = apr_hash_next(hi)) {
        aiproxy_provider_t *pv = apr_hash_this_val(hi);
        apr_array_header_t *keys = apr_array_make(p, 2, sizeof(char *));

        for (k = 0; pv->health && k < pv->key_specs->nelts; k++) {
            struct aiproxy_key_health *h = &pv->health[k];

            APR_ARRAY_PUSH(keys, const char *) = apr_psprintf(p,
                "{\"key\":%d,\"errors\":%u,\"in_a_row\":%u,"
                "\"last_status\":%u}", k + 1,
                apr_atomic_read32(&h->failures),
                apr_atomic_read32(&h->in_a_row),
                apr_atomic_read32(&h->last_status));
        }
        APR_ARRAY_PUSH(parts, const char *) = apr_psprintf(p, "%s:[%s]",
            aiproxy_json_quote(p, pv->name), apr_array_pstrcat(p, keys, ','));
    }
    return apr_pstrcat(p, "{", apr_array_pstrcat(p, parts, ','), "}", NULL);
}

apr_uint32_t aiproxy_stat_get(aiproxy_stat_t which)
{
    return shared ? apr_atomic_read32(&shared->counters[which]) : 0;
}

int aiproxy_counters_store_up(request_rec *r)
{
    aiproxy_ledger_t *l = aiproxy_child_ledger();
    apr_uint32_t now = (apr_uint32_t)apr_time_sec(apr_time_now()), at;
    const char *err = "";
    int up;

    if (shared) {
        at = apr_atomic_read32(&shared->probe_at);
        /* Fresh enough, or another request (of any child) probes now. */
        if (at && (now - at < HEALTH_PROBE_SECONDS ||
                   apr_atomic_cas32(&shared->probe_at, now, at) != at))
            return (int)apr_atomic_read32(&shared->probe_up);
    }
    up = l && aiproxy_ledger_ping(l, r->pool, &err) == AIPROXY_LEDGER_OK;
    if (shared) {
        apr_atomic_set32(&shared->probe_up, (apr_uint32_t)up);
        apr_atomic_set32(&shared->probe_at, now);
    }
    return up;
}

const char *aiproxy_stat_name(aiproxy_stat_t which)
{
    return stat_names[which];
}

apr_int64_t aiproxy_counters_uptime_s(void)
{
    return shared ? apr_time_sec(apr_time_now() - shared->started) : 0;
}

int aiproxy_counters_ready(void)
{
    return shared != NULL;
}
