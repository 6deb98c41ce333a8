/* /health, /targets, /api/stats and mod_status's lines: what the
 * counters (aiproxy_counters.c) hold, for ops. */
#include <string.h>
#include <apr_strings.h>

#include "httpd.h"
#include "http_config.h"
#include "http_protocol.h"
#include "http_request.h"
#include "mod_status.h"

#include "aiproxy_cache.h"
#include "aiproxy_counters.h"
#include "aiproxy_handler.h"
#include "aiproxy_json.h"
#include "aiproxy_stats.h"

APLOG_USE_MODULE(aiproxy);

int aiproxy_health_handler(request_rec *r)
{
    aiproxy_req_t *st;
    const char *degraded;
    int up;

    if (strcmp(r->handler, "aiproxy-health"))
        return DECLINED;
    st = aiproxy_handler_begin(r);
    if (aiproxy_handler_only_get(r, st) != DECLINED)
        return OK;
    up = aiproxy_counters_store_up(r);
    /* A failing provider key is the same for every server behind a load
     * balancer: it is named, yet the answer stays 200. */
    degraded = aiproxy_counters_degraded_json(r->pool, st->g);
    return aiproxy_handler_answer(r, st, up ? HTTP_OK : HTTP_SERVICE_UNAVAILABLE,
                  apr_psprintf(r->pool, "{\"status\":\"%s\",\"ts\":%"
                               APR_INT64_T_FMT ",\"region\":%s%s%s%s}",
                               !up ? "unavailable" : degraded ? "degraded"
                                                             : "ok",
                               apr_time_as_msec(apr_time_now()),
                               aiproxy_json_quote(r->pool, st->g->region),
                               up ? "" : ",\"failing\":[\"store\"]",
                               degraded ? ",\"degraded\":" : "",
                               degraded ? degraded : ""));
}

static const char *targets_json(request_rec *r, aiproxy_global_t *g)
{
    apr_array_header_t *parts = apr_array_make(r->pool, 4, sizeof(char *));
    apr_hash_index_t *hi;

    for (hi = apr_hash_first(r->pool, g->providers); hi; hi = apr_hash_next(hi)) {
        aiproxy_provider_t *pv = apr_hash_this_val(hi);

        APR_ARRAY_PUSH(parts, const char *) = apr_psprintf(r->pool,
            "{\"name\":%s,\"url\":%s,\"api\":\"%s\",\"keys\":%d}",
            aiproxy_json_quote(r->pool, pv->name),
            aiproxy_json_quote(r->pool, pv->base_url),
            aiproxy_api(pv->api)->name,
            pv->auth ? pv->auth->nelts : 0);
    }
    return apr_pstrcat(r->pool, "[", apr_array_pstrcat(r->pool, parts, ','),
                       "]", NULL);
}

int aiproxy_targets_handler(request_rec *r)
{
    aiproxy_req_t *st;

    if (strcmp(r->handler, "aiproxy-targets"))
        return DECLINED;
    st = aiproxy_handler_begin(r);
    /* Upstream URLs tell where the site's traffic goes: for admins. */
    if (aiproxy_handler_only_get(r, st) != DECLINED ||
        aiproxy_handler_admin(r, st, "targets") != DECLINED)
        return OK;
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_pstrcat(r->pool, "{\"targets\":",
                                              targets_json(r, st->g), "}",
                                              NULL));
}

int aiproxy_stats_handler(request_rec *r)
{
    aiproxy_req_t *st;
    aiproxy_global_t *g;
    apr_uint32_t hits, misses;
    const char *cache;
    int i;
    char *counters = "";

    if (strcmp(r->handler, "aiproxy-stats"))
        return DECLINED;
    st = aiproxy_handler_begin(r);
    g = st->g;
    if (aiproxy_handler_only_get(r, st) != DECLINED)
        return OK;
    if (aiproxy_handler_admin(r, st, "statistics") != DECLINED)
        return OK;
    for (i = 0; i < AIPROXY_STAT_COUNT; i++)
        counters = apr_psprintf(r->pool, "%s\"%s\":%u,", counters,
                                aiproxy_stat_name((aiproxy_stat_t)i), aiproxy_stat_get((aiproxy_stat_t)i));
    hits = aiproxy_stat_get(AIPROXY_STAT_CACHE_HITS);
    misses = aiproxy_stat_get(AIPROXY_STAT_CACHE_MISSES);
    cache = aiproxy_cache_name();
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_psprintf(r->pool,
        "{%s\"cache_hit_rate\":%.4f,\"cached_keys\":%u,\"cache\":%s,"
        "\"cache_ttl\":%d,\"store_connected\":%s,\"uptime_s\":%" APR_INT64_T_FMT
        ",\"rate_limit\":{\"requests\":%d,\"window_s\":%d},\"targets\":%s,"
        "\"provider_errors\":%s}",
        counters, hits + misses ? (double)hits / (hits + misses) : 0.0,
        aiproxy_stat_get(AIPROXY_STAT_CACHE_STORES),
        cache ? aiproxy_json_quote(r->pool, cache) : "null", g->cache_ttl,
        aiproxy_counters_store_up(r) ? "true" : "false",
        aiproxy_counters_uptime_s(),
        g->rate_limit, g->rate_window, targets_json(r, g),
        aiproxy_counters_key_errors_json(r->pool, g)));
}

static int status_hook(request_rec *r, int flags)
{
    int i;

    if (!aiproxy_counters_ready())
        return OK;
    if (flags & AP_STATUS_SHORT) {
        for (i = 0; i < AIPROXY_STAT_COUNT; i++)
            ap_rprintf(r, "AIProxy_%s: %u\n", aiproxy_stat_name((aiproxy_stat_t)i),
                       aiproxy_stat_get((aiproxy_stat_t)i));
        return OK;
    }
    ap_rputs("<hr />\n<h2>mod_aiproxy</h2>\n<table>\n", r);
    for (i = 0; i < AIPROXY_STAT_COUNT; i++)
        ap_rprintf(r, "<tr><td>%s</td><td>%u</td></tr>\n", aiproxy_stat_name((aiproxy_stat_t)i),
                   aiproxy_stat_get((aiproxy_stat_t)i));
    ap_rputs("</table>\n", r);
    return OK;
}

void aiproxy_stats_register_status_hook(void)
{
    APR_OPTIONAL_HOOK(ap, status_hook, status_hook, NULL, NULL,
                      APR_HOOK_MIDDLE);
}
