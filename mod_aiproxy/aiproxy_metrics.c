/* Prometheus metrics. Every child counts into one table in shared memory
 * with atomics only (no lock): a series is found by its labels' hash in at
 * most PROBES slots, claimed by a compare-and-swap when new, and bumped by
 * two atomic adds. The table's size is fixed at start-up; its labels come
 * from the configuration (routes, priced models, known endpoints, reply
 * codes), never from what a client typed, and a full table counts on under
 * model="other", so no client can grow it. */
#include <string.h>
#include <apr_atomic.h>
#include <apr_shm.h>
#include <apr_strings.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_protocol.h"

#include "aiproxy_api.h"
#include "aiproxy_counters.h"
#include "aiproxy_handler.h"
#include "aiproxy_metrics.h"
#include "aiproxy_req.h"

APLOG_USE_MODULE(aiproxy);

#define SERIES 512              /* (route, endpoint, model, status) series */
#define SERIES_OTHER 64         /* the table's last ones: model="other" */
#define REASONS 64              /* refusal reasons (reply codes) */
#define PROBES 16               /* slots a lookup tries at most */
#define ROUTE_LEN 96
#define ENDPOINT_LEN 40
#define MODEL_LEN 96
#define REASON_LEN 48
#define PICO_PER_DOLLAR APR_UINT64_C(1000000000000)

typedef struct {
    apr_uint32_t hash;          /* 0: free; set by the claiming child */
    apr_uint32_t ready;         /* 1 once its labels are written */
    apr_uint64_t requests;
    apr_uint64_t pico;          /* cost, pico-dollars */
    apr_uint32_t status;
    char route[ROUTE_LEN], endpoint[ENDPOINT_LEN], model[MODEL_LEN];
} series_t;

typedef struct {
    apr_uint32_t hash, ready;
    apr_uint64_t count;
    char reason[REASON_LEN];
} reason_t;

/* Fixed buckets, in microseconds, with their le labels. */
typedef struct {
    apr_int64_t us;
    const char *le;
} bucket_t;

static const bucket_t upstream_buckets[] = {
    {50000, "0.05"}, {100000, "0.1"}, {250000, "0.25"}, {500000, "0.5"},
    {1000000, "1"}, {2500000, "2.5"}, {5000000, "5"}, {10000000, "10"},
    {30000000, "30"}, {60000000, "60"}, {120000000, "120"}
};
static const bucket_t store_buckets[] = {
    {1000, "0.001"}, {2500, "0.0025"}, {5000, "0.005"}, {10000, "0.01"},
    {25000, "0.025"}, {50000, "0.05"}, {100000, "0.1"}, {250000, "0.25"},
    {500000, "0.5"}, {1000000, "1"}, {2500000, "2.5"}, {5000000, "5"}
};
#define NBUCKETS(b) (sizeof(b) / sizeof((b)[0]))
#define MAX_BUCKETS 16

typedef struct {
    apr_uint64_t counts[MAX_BUCKETS + 1];   /* per bucket, the last +Inf */
    apr_uint64_t sum_us;
} histogram_t;

typedef struct {
    series_t series[SERIES];
    series_t overflow;          /* all labels "other": the table is full */
    reason_t reasons[REASONS];
    apr_uint64_t reasons_other;
    histogram_t upstream, store;
} metrics_t;

static metrics_t *shared;

/* FNV-1a over the labels, never 0 (a free slot's mark). */
static apr_uint32_t hash_of(const char *a, const char *b, const char *c,
                            apr_uint32_t n)
{
    const char *parts[3] = {a, b, c};
    apr_uint32_t h = 2166136261u;
    const unsigned char *s;
    int i;

    for (i = 0; i < 3; i++) {
        for (s = (const unsigned char *)parts[i]; *s; s++)
            h = (h ^ *s) * 16777619u;
        h = (h ^ 0xff) * 16777619u;
    }
    h = (h ^ n) * 16777619u;
    return h ? h : 1;
}

static int series_is(const series_t *e, const char *route,
                     const char *endpoint, const char *model,
                     apr_uint32_t status)
{
    return e->status == status && !strcmp(e->route, route) &&
           !strcmp(e->endpoint, endpoint) && !strcmp(e->model, model);
}

/* The series in slots [0, n) of table, found or claimed within PROBES
 * slots; NULL when none is free. Two children claiming the same labels at
 * once may make two slots: the scrape adds them up. */
static series_t *series_find(series_t *table, apr_uint32_t n,
                             const char *route, const char *endpoint,
                             const char *model, apr_uint32_t status)
{
    apr_uint32_t h = hash_of(route, endpoint, model, status), i, at;

    for (i = 0; i < PROBES && i < n; i++) {
        series_t *e = &table[(h + i) % n];

        at = apr_atomic_read32(&e->hash);
        if (!at && !(at = apr_atomic_cas32(&e->hash, h, 0))) {
            e->status = status;
            apr_cpystrn(e->route, route, sizeof(e->route));
            apr_cpystrn(e->endpoint, endpoint, sizeof(e->endpoint));
            apr_cpystrn(e->model, model, sizeof(e->model));
            apr_atomic_set32(&e->ready, 1);
            return e;
        }
        if (at == h && apr_atomic_read32(&e->ready) &&
            series_is(e, route, endpoint, model, status))
            return e;
    }
    return NULL;
}

static void count_request(const char *route_in, const char *endpoint,
                          const char *model_in, apr_uint32_t status,
                          aiproxy_money_t cost)
{
    char route[ROUTE_LEN], model[MODEL_LEN];
    series_t *e;

    /* Compared as stored: a long label is kept cut. */
    apr_cpystrn(route, route_in, sizeof(route));
    apr_cpystrn(model, model_in, sizeof(model));
    e = series_find(shared->series, SERIES - SERIES_OTHER, route, endpoint,
                    model, status);
    if (!e)
        e = series_find(shared->series + SERIES - SERIES_OTHER, SERIES_OTHER,
                        route, endpoint, "other", status);
    if (!e)
        e = &shared->overflow;
    apr_atomic_inc64(&e->requests);
    if (cost > 0)
        apr_atomic_add64(&e->pico, (apr_uint64_t)cost);
}

static void count_refusal(const char *code)
{
    char reason[REASON_LEN];
    apr_uint32_t h, i, at;

    apr_cpystrn(reason, code, sizeof(reason));
    h = hash_of(reason, "", "", 0);
    for (i = 0; i < PROBES; i++) {
        reason_t *e = &shared->reasons[(h + i) % REASONS];

        at = apr_atomic_read32(&e->hash);
        if (!at && !(at = apr_atomic_cas32(&e->hash, h, 0))) {
            memcpy(e->reason, reason, sizeof(reason));
            apr_atomic_set32(&e->ready, 1);
            apr_atomic_inc64(&e->count);
            return;
        }
        if (at == h && apr_atomic_read32(&e->ready) &&
            !strcmp(e->reason, reason)) {
            apr_atomic_inc64(&e->count);
            return;
        }
    }
    apr_atomic_inc64(&shared->reasons_other);
}

static void observe(histogram_t *hg, const bucket_t *b, apr_size_t n,
                    apr_interval_time_t took)
{
    apr_size_t i;

    if (took < 0)
        took = 0;
    for (i = 0; i < n && took > b[i].us; i++)
        ;
    apr_atomic_inc64(&hg->counts[i]);
    apr_atomic_add64(&hg->sum_us, (apr_uint64_t)took);
}

/* Each store round trip, from any thread of any child (and the lease
 * flusher's and record writer's threads). */
static void store_round_trip(apr_interval_time_t took)
{
    if (shared)
        observe(&shared->store, store_buckets, NBUCKETS(store_buckets), took);
}

int aiproxy_metrics_post_config(apr_pool_t *pconf, server_rec *s)
{
    apr_shm_t *shm;
    apr_status_t rv;

    rv = apr_shm_create(&shm, sizeof(metrics_t), NULL, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, AIPLOGNO(01710)
                     "cannot create shared memory for metrics");
        return !OK;
    }
    shared = apr_shm_baseaddr_get(shm);
    memset(shared, 0, sizeof(*shared));
    shared->overflow.ready = 1;
    strcpy(shared->overflow.route, "other");
    strcpy(shared->overflow.endpoint, "other");
    strcpy(shared->overflow.model, "other");
    aiproxy_ledger_set_timer(store_round_trip);
    return OK;
}

/* Labels from the configuration only: the route's <Location>, an endpoint
 * the API tables name, a model that passed the allow list and has a price
 * (st->price is set only then); anything else is "other" or "none". */
static const char *endpoint_label(const aiproxy_req_t *st)
{
    const aiproxy_endpoint_def_t *e;

    if (st->is_models)
        return "models";
    e = st->endpoint ? aiproxy_any_endpoint(st->endpoint) : NULL;
    return e ? e->path : "other";
}

int aiproxy_metrics_log_transaction(request_rec *r)
{
    aiproxy_req_t *st = aiproxy_req_get(r);
    aiproxy_money_t cost;
    apr_uint32_t status;

    if (!shared || !st || !st->dir || !st->dir->provider_name)
        return DECLINED;
    status = r->status >= 100 && r->status <= 599 ? (apr_uint32_t)r->status
                                                  : 0;
    cost = st->meter.settled ? st->meter.cost : 0;
    /* An error costs a client nothing to vary (models x statuses would
     * fill the table): its model is named only when it was charged. */
    count_request(st->dir->prefix, endpoint_label(st),
                  st->price && st->info.model && (status < 400 || cost > 0)
                  ? st->info.model : "none", status, cost);
    /* A refusal is the gateway's own error answer (not the provider's). */
    if (st->reply.status >= 400 && st->reply.code && !st->reply.body)
        count_refusal(st->reply.code);
    if (st->fwd.sent_at && st->fwd.answered_at)
        observe(&shared->upstream, upstream_buckets,
                NBUCKETS(upstream_buckets),
                st->fwd.answered_at - st->fwd.sent_at);
    return DECLINED;
}

/* ---- The text format ---- */

/* A label value as the format wants it: \\, \" and \n escaped. */
static const char *esc(apr_pool_t *p, const char *v)
{
    char *out, *o;

    if (!strpbrk(v, "\\\"\n"))
        return v;
    o = out = apr_palloc(p, 2 * strlen(v) + 1);
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            *o++ = '\\', *o++ = *v;
        else if (*v == '\n')
            *o++ = '\\', *o++ = 'n';
        else
            *o++ = *v;
    }
    *o = '\0';
    return out;
}

/* An integer count of units (pico-dollars, microseconds) as exact decimal
 * text: integer arithmetic, no float. */
static const char *decimal(apr_pool_t *p, apr_uint64_t v, apr_uint64_t unit,
                           int digits)
{
    char *s = apr_psprintf(p, "%" APR_UINT64_T_FMT ".%0*" APR_UINT64_T_FMT,
                           v / unit, digits, v % unit);
    char *end = s + strlen(s) - 1;

    while (*end == '0')
        *end-- = '\0';
    if (*end == '.')
        *end = '\0';
    return s;
}

static void head(apr_array_header_t *out, const char *name, const char *type,
                 const char *help)
{
    APR_ARRAY_PUSH(out, const char *) = apr_psprintf(out->pool,
        "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void line(apr_array_header_t *out, const char *text)
{
    APR_ARRAY_PUSH(out, const char *) = text;
}

typedef struct {
    const series_t *first;
    apr_uint64_t requests, pico;
} merged_t;

/* The table's series, slots with the same labels added up, in slot order. */
static apr_array_header_t *merged_series(apr_pool_t *p)
{
    apr_array_header_t *all = apr_array_make(p, 64, sizeof(merged_t));
    apr_hash_t *seen = apr_hash_make(p);
    int i;

    for (i = 0; i <= SERIES; i++) {
        const series_t *e = i < SERIES ? &shared->series[i] : &shared->overflow;
        apr_uint64_t n = apr_atomic_read64((apr_uint64_t *)&e->requests);
        const char *key;
        apr_uintptr_t at;
        merged_t *m;

        if (!apr_atomic_read32((apr_uint32_t *)&e->ready) || !n)
            continue;
        key = apr_psprintf(p, "%s\n%s\n%s\n%u", e->route, e->endpoint,
                           e->model, e->status);
        /* The hash holds a series' place + 1. */
        at = (apr_uintptr_t)apr_hash_get(seen, key, APR_HASH_KEY_STRING);
        if (at) {
            m = &APR_ARRAY_IDX(all, at - 1, merged_t);
        }
        else {
            m = apr_array_push(all);
            m->first = e;
            m->requests = m->pico = 0;
            apr_hash_set(seen, key, APR_HASH_KEY_STRING,
                         (void *)(apr_uintptr_t)all->nelts);
        }
        m->requests += n;
        m->pico += apr_atomic_read64((apr_uint64_t *)&e->pico);
    }
    return all;
}

static void series_lines(apr_array_header_t *out)
{
    apr_pool_t *p = out->pool;
    apr_array_header_t *all = merged_series(p);
    const char **labels = apr_pcalloc(p, (all->nelts + 1) * sizeof(char *));
    int i;

    for (i = 0; i < all->nelts; i++) {
        const series_t *e = APR_ARRAY_IDX(all, i, merged_t).first;

        labels[i] = apr_psprintf(p, "{route=\"%s\",endpoint=\"%s\","
                                 "model=\"%s\",status=\"%s\"}",
                                 esc(p, e->route), esc(p, e->endpoint),
                                 esc(p, e->model), e->status
                                 ? apr_itoa(p, (int)e->status) : "other");
    }
    head(out, "aiproxy_requests_total", "counter", "Gateway requests by "
         "route, endpoint, model (allow-listed and priced; none: no such "
         "model; other: the series table is full) and HTTP status.");
    for (i = 0; i < all->nelts; i++)
        line(out, apr_psprintf(p, "aiproxy_requests_total%s %" APR_UINT64_T_FMT
                               "\n", labels[i],
                               APR_ARRAY_IDX(all, i, merged_t).requests));
    head(out, "aiproxy_cost_dollars_total", "counter", "US dollars charged, "
         "by the same labels (exact: counted in pico-dollars).");
    for (i = 0; i < all->nelts; i++)
        line(out, apr_psprintf(p, "aiproxy_cost_dollars_total%s %s\n",
                               labels[i], decimal(p,
                               APR_ARRAY_IDX(all, i, merged_t).pico,
                               PICO_PER_DOLLAR, 12)));
}

static void refusal_lines(apr_array_header_t *out)
{
    apr_pool_t *p = out->pool;
    apr_uint64_t n;
    int i;

    head(out, "aiproxy_refusals_total", "counter", "Requests the gateway "
         "answered itself with an error, by its error code.");
    for (i = 0; i < REASONS; i++) {
        reason_t *e = &shared->reasons[i];

        if (apr_atomic_read32(&e->ready) &&
            (n = apr_atomic_read64(&e->count)))
            line(out, apr_psprintf(p, "aiproxy_refusals_total{reason=\"%s\"} %"
                                   APR_UINT64_T_FMT "\n", esc(p, e->reason), n));
    }
    if ((n = apr_atomic_read64(&shared->reasons_other)))
        line(out, apr_psprintf(p, "aiproxy_refusals_total{reason=\"other\"} %"
                               APR_UINT64_T_FMT "\n", n));
}

/* Buckets read once each and added up here, so every bucket, +Inf and
 * _count agree within one scrape. */
static void histogram_lines(apr_array_header_t *out, const char *name,
                            const char *help, histogram_t *hg,
                            const bucket_t *b, apr_size_t n)
{
    apr_pool_t *p = out->pool;
    apr_uint64_t total = 0;
    apr_size_t i;

    head(out, name, "histogram", help);
    for (i = 0; i <= n; i++) {
        total += apr_atomic_read64(&hg->counts[i]);
        line(out, apr_psprintf(p, "%s_bucket{le=\"%s\"} %" APR_UINT64_T_FMT
                               "\n", name, i < n ? b[i].le : "+Inf", total));
    }
    line(out, apr_psprintf(p, "%s_sum %s\n%s_count %" APR_UINT64_T_FMT "\n",
                           name, decimal(p, apr_atomic_read64(&hg->sum_us),
                                         APR_UINT64_C(1000000), 6),
                           name, total));
}

static const struct {
    aiproxy_stat_t stat;
    const char *name, *type, *help;
} plain[] = {
    {AIPROXY_STAT_CACHE_HITS, "aiproxy_cache_hits_total", "counter",
     "Responses served from the cache."},
    {AIPROXY_STAT_CACHE_MISSES, "aiproxy_cache_misses_total", "counter",
     "Cacheable requests not in the cache."},
    {AIPROXY_STAT_CACHE_STORES, "aiproxy_cache_stores_total", "counter",
     "Responses stored in the cache."},
    {AIPROXY_STAT_RETRIES, "aiproxy_retries_total", "counter",
     "Upstream attempts retried on another key or provider."},
    {AIPROXY_STAT_UPSTREAM_ERRORS, "aiproxy_upstream_errors_total", "counter",
     "Upstream attempts that failed (401, 403, 429, 5xx or no answer)."},
    {AIPROXY_STAT_BUSY, "aiproxy_busy_total", "counter",
     "Large requests refused because the child was full."},
    {AIPROXY_STAT_RECORDS_PENDING, "aiproxy_records_pending", "gauge",
     "Request records not yet written to the store."},
    {AIPROXY_STAT_LEASED, "aiproxy_leased_total", "counter",
     "Requests admitted from a budget lease (no store round trip)."},
    {AIPROXY_STAT_LEASE_WRITES, "aiproxy_lease_writes_total", "counter",
     "Lease writes sent to the store."},
};

static const char *exposition(request_rec *r)
{
    apr_array_header_t *out = apr_array_make(r->pool, 256, sizeof(char *));
    apr_size_t i;

    series_lines(out);
    refusal_lines(out);
    histogram_lines(out, "aiproxy_upstream_latency_seconds", "Seconds from "
                    "forwarding a request to the upstream's response headers "
                    "(retries included; unanswered requests are not here).",
                    &shared->upstream, upstream_buckets,
                    NBUCKETS(upstream_buckets));
    histogram_lines(out, "aiproxy_store_latency_seconds", "Seconds each "
                    "store round trip took (requests, leases, records).",
                    &shared->store, store_buckets, NBUCKETS(store_buckets));
    for (i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        head(out, plain[i].name, plain[i].type, plain[i].help);
        line(out, apr_psprintf(r->pool, "%s %u\n", plain[i].name,
                               aiproxy_stat_get(plain[i].stat)));
    }
    head(out, "aiproxy_store_up", "gauge", "1 when the store answers (a "
         "probe at most 2 s old).");
    line(out, apr_psprintf(r->pool, "aiproxy_store_up %d\n",
                           aiproxy_counters_store_up(r) ? 1 : 0));
    head(out, "aiproxy_uptime_seconds", "gauge", "Seconds since start-up.");
    line(out, apr_psprintf(r->pool, "aiproxy_uptime_seconds %"
                           APR_INT64_T_FMT "\n", aiproxy_counters_uptime_s()));
    return apr_array_pstrcat(r->pool, out, 0);
}

int aiproxy_metrics_handler(request_rec *r)
{
    const aiproxy_dir_conf_t *d;
    aiproxy_req_t *st;

    if (strcmp(r->handler, "aiproxy-metrics"))
        return DECLINED;
    st = aiproxy_handler_begin(r);
    d = ap_get_module_config(r->per_dir_config, &aiproxy_module);
    if (aiproxy_handler_only_get(r, st) != DECLINED)
        return OK;
    /* Public: httpd's own Require (an address, a network) is the guard. */
    if (!(d && d->metrics_public == 1) &&
        aiproxy_handler_admin(r, st, "metrics") != DECLINED)
        return OK;
    if (!shared)
        return aiproxy_handler_fail(r, st, HTTP_SERVICE_UNAVAILABLE,
                                    "not_ready", "Metrics are not ready.");
    st->reply.ctype = "text/plain; version=0.0.4; charset=utf-8";
    return aiproxy_handler_answer(r, st, HTTP_OK, exposition(r));
}
