/* Admission: everything decided before a request may reach a provider.
 * Route and endpoint, token, body checks, model, then the reservation. */
#include <string.h>
#include <apr_strings.h>

#include "httpd.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"

#include "aiproxy_cache.h"
#include "aiproxy_memo.h"
#include "aiproxy_path.h"
#include "aiproxy_admit.h"
#include "aiproxy_admit_int.h"
#include "aiproxy_identify.h"
#include "aiproxy_lease.h"
#include "aiproxy_body.h"
#include "aiproxy_policy.h"
#include "aiproxy_reply.h"
#include "aiproxy_req.h"
#include "aiproxy_counters.h"
#include "aiproxy_xlate.h"

APLOG_USE_MODULE(aiproxy);

#define METER_FILTER "AIPROXY_METER"
#define FORWARD_HANDLER "aiproxy-forward"

/* Seconds until the next calendar month starts, UTC. */
static apr_int64_t seconds_to_next_month(apr_time_t now)
{
    apr_time_exp_t tm;
    apr_time_t next;

    apr_time_exp_gmt(&tm, now);
    tm.tm_mon += 1;
    if (tm.tm_mon == 12) {
        tm.tm_mon = 0;
        tm.tm_year += 1;
    }
    tm.tm_mday = 1;
    tm.tm_hour = tm.tm_min = tm.tm_sec = tm.tm_usec = 0;
    tm.tm_gmtoff = 0;
    if (apr_time_exp_gmt_get(&next, &tm) != APR_SUCCESS)
        return 86400;
    return apr_time_sec(next - now) + 1;
}

static int store_unavailable(request_rec *r, aiproxy_req_t *st,
                             const char *err)
{
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, AIPLOGNO(01101)
                  "usage store unavailable: %s", err);
    return aiproxy_reply_store_down(r, st);
}

/* Users whose month this child saw spent (at or over the cap): refused
 * again without reading their bodies while the entry is fresh. Spent only
 * grows within a month; an admin's change to any user starts afresh. */
static aiproxy_memo_t *spent_memo;

typedef struct {
    aiproxy_month_t month;
    apr_uint32_t generation;
} spent_entry_t;

#define SPENT_MEMO_MAX 4096

void aiproxy_admit_child_init(apr_pool_t *p, server_rec *s)
{
    aiproxy_global_t *g = aiproxy_global(s);

    aiproxy_identify_child_init(p, s);
    aiproxy_admit_course_child_init(p, s);
    spent_memo = g->user_memo_ttl > 0 ? aiproxy_memo_create(p, SPENT_MEMO_MAX)
                                      : NULL;
}

/* The models a route serves: AIProxyModels, or with `*` every priced model
 * (routed by model, every model with an AIProxyModel line). */
static apr_array_header_t *targets_for(apr_pool_t *p, aiproxy_req_t *st,
                                       aiproxy_provider_t *pv,
                                       const char *model)
{
    apr_array_header_t *mapped = apr_hash_get(st->g->model_map, model,
                                              APR_HASH_KEY_STRING);
    apr_array_header_t *out = apr_array_make(p, 2, sizeof(aiproxy_target_t));
    aiproxy_target_t *t;
    int i;

    for (i = 0; mapped && i < mapped->nelts; i++) {
        aiproxy_target_t *m = &APR_ARRAY_IDX(mapped, i, aiproxy_target_t);

        /* Chat Completions and Messages serve each other's models,
         * translated (aiproxy_xlate.h), on a route by model. */
        if (pv ? m->provider == pv
               : m->provider->api == st->api ||
                 aiproxy_xlate_endpoint(st->api, st->endpoint))
            *(aiproxy_target_t *)apr_array_push(out) = *m;
        if (pv && out->nelts)
            return out;
    }
    if (pv) {
        t = apr_array_push(out);
        t->provider = pv;
        t->provider_name = pv->name;
        t->upstream_model = model;
    }
    return out;
}

#define XLATE_TREE_FACTOR 3

/* A request some target serves in the other API: its body translated
 * once, now, so that what cannot be translated is refused before anything
 * is held. The output limit is the reservation's. */
static int admit_translated(request_rec *r, aiproxy_req_t *st)
{
    apr_array_header_t *t = st->fwd.targets;
    const char *err;
    apr_size_t cost;
    int i, other = 0;

    for (i = 0; i < t->nelts; i++)
        if (APR_ARRAY_IDX(t, i, aiproxy_target_t).provider->api != st->api)
            other++;
    if (!other)
        return DECLINED;
    /* The translated tree has new containers for every part (its leaves
     * are shared): at most a few times the client's parse, counted
     * against the child's memory like it. */
    /* Tool-call arguments parsed on the way may take as much again: they
     * are strings in the client's tree. */
    cost = aiproxy_json_cost(st->body, st->body_out_len);
    if (!aiproxy_body_take(r, (XLATE_TREE_FACTOR + 1) * cost)) {
        aiproxy_stat_inc(AIPROXY_STAT_BUSY);
        apr_table_setn(r->err_headers_out, "Retry-After", "1");
        return aiproxy_reply_error(r, st, HTTP_SERVICE_UNAVAILABLE,
                                   "server_error", "server_busy", "The "
                                   "gateway is holding as many large "
                                   "requests as it may; retry in a moment.");
    }
    /* Serialised per target model by the forwarder, which counts it. */
    if ((err = aiproxy_xlate_request(r->pool, st->api, st->info.root,
                                     st->out_tokens, cost, &st->fwd.xlated)))
        return aiproxy_reply_error(r, st, HTTP_BAD_REQUEST,
                                   "invalid_request_error", "untranslatable",
                                   err);
    return DECLINED;
}

static void set_rate_headers(request_rec *r, int limit, int remaining,
                             apr_int64_t reset_s)
{
    apr_table_setn(r->err_headers_out, "RateLimit-Limit",
                   apr_itoa(r->pool, limit));
    apr_table_setn(r->err_headers_out, "RateLimit-Remaining",
                   apr_itoa(r->pool, remaining));
    apr_table_setn(r->err_headers_out, "RateLimit-Reset",
                   apr_psprintf(r->pool, "%" APR_INT64_T_FMT, reset_s));
}

/* A sliding window per user, kept in the store so every child and every
 * host sharing it counts the same requests. The free endpoints have a
 * window of their own (their key cannot be an email: no email has '|'),
 * on by default: costing the student nothing, they would otherwise cost
 * the store a record and the provider's quota a call without end. */
static int rate_limit(request_rec *r, aiproxy_req_t *st, int is_free)
{
    aiproxy_global_t *g = st->g;
    apr_int64_t now_ms = apr_time_as_msec(apr_time_now()), reset_ms = 0;
    const char *err = "";
    int remaining = 0, limit = is_free ? g->free_rate_limit : g->rate_limit;
    int window = is_free ? g->free_rate_window : g->rate_window;
    aiproxy_ledger_rc_t rc;

    if (limit <= 0)
        return DECLINED;
    rc = aiproxy_ledger_rate(aiproxy_child_ledger(), r->pool,
                             is_free ? apr_pstrcat(r->pool, "free|", st->email,
                                                   NULL) : st->email,
                             limit, (apr_int64_t)window * 1000,
                             now_ms, &remaining, &reset_ms, &err);
    if (rc == AIPROXY_LEDGER_DOWN)
        return store_unavailable(r, st, err);
    set_rate_headers(r, limit, remaining, (reset_ms + 999) / 1000);
    if (rc == AIPROXY_LEDGER_OK)
        return DECLINED;
    aiproxy_stat_inc(AIPROXY_STAT_RATE_LIMITED);
    apr_table_setn(r->err_headers_out, "Retry-After",
                   apr_psprintf(r->pool, "%" APR_INT64_T_FMT,
                                (reset_ms + 999) / 1000));
    return aiproxy_reply_error(r, st, HTTP_TOO_MANY_REQUESTS,
                               "rate_limit_exceeded", "rate_limit_exceeded",
                               apr_psprintf(r->pool, "Rate limit: %d requests "
                                            "per %d s%s. Retry in %"
                                            APR_INT64_T_FMT " s.", limit, window,
                                            is_free ? " on free endpoints" : "",
                                            (reset_ms + 999) / 1000));
}

/* A request charged nothing, counted as one with its record (no hold: by
 * its id; on a lease, by the host with its next write). One that failed
 * is recorded, not counted: by the store, which counts it 0. */
static aiproxy_ledger_rc_t count_unheld(request_rec *r, aiproxy_req_t *st,
                                        const char *provider, int status,
                                        const char **err)
{
    aiproxy_record_t rec;
    int counts;

    aiproxy_req_record(st, provider, status, &rec);
    counts = aiproxy_ledger_counts(&rec);
    if (counts)
        aiproxy_admit_course_count(r, st, &rec);
    if (counts && aiproxy_lease_count(st, st->email, &st->month_state)) {
        if (aiproxy_ledger_put_record(aiproxy_child_ledger(), r->pool,
                                      &rec, err) != AIPROXY_LEDGER_OK)
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, AIPLOGNO(01107)
                          "no record for request %s at $0: %s", st->id, *err);
        return AIPROXY_LEDGER_OK;
    }
    return aiproxy_ledger_settle(aiproxy_child_ledger(), r->pool, &rec,
                                 &st->month_state, err);
}

void aiproxy_admit_settle_free(request_rec *r, aiproxy_req_t *st, int status)
{
    const char *err = "";

    /* Refused before it was given an id: it never went out. */
    if (!st->id || st->meter.settled)
        return;
    st->meter.settled = 1;
    st->meter.cost = 0;
    apr_table_setn(r->notes, "aiproxy-cost", "0");
    if (count_unheld(r, st, st->fwd.provider ? st->fwd.provider->name : "",
                     status, &err) != AIPROXY_LEDGER_OK)
        /* Nothing was charged: only the count and the record are lost. */
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, AIPLOGNO(01108)
                      "free request %s of %s not counted: %s", st->id,
                      st->email, err);
}

/* A cached answer costs $0 but counts as a request; a miss is stored by
 * the meter when the upstream answers 200. */
static int cache_lookup(request_rec *r, aiproxy_req_t *st, const char *body,
                        apr_size_t len)
{
    const aiproxy_target_t *t = &APR_ARRAY_IDX(st->fwd.targets, 0,
                                               aiproxy_target_t);
    const char *ctype, *cached, *err = "";
    apr_size_t clen;

    /* The route's prefix too: routes may allow different models. */
    st->cache_key = aiproxy_cache_key(r->pool, apr_pstrcat(r->pool,
                                      t->provider->name, " ", st->dir->prefix,
                                      NULL), st->endpoint, r->args, body, len);
    if (!aiproxy_cache_get(r, st->cache_key, &ctype, &cached, &clen)) {
        aiproxy_stat_inc(AIPROXY_STAT_CACHE_MISSES);
        apr_table_setn(r->err_headers_out, "X-Cache", "MISS");
        return DECLINED;
    }
    aiproxy_stat_inc(AIPROXY_STAT_CACHE_HITS);
    st->cache_key = NULL;
    apr_table_setn(r->err_headers_out, "X-Cache", "HIT");
    if (st->id) {
        if (count_unheld(r, st, "cache", HTTP_OK, &err) != AIPROXY_LEDGER_OK)
            return store_unavailable(r, st, err);
        apr_table_setn(r->notes, "aiproxy-cost", "0");
        aiproxy_reply_set_money_headers(r, r->err_headers_out, 0, &st->month_state);
    }
    st->reply.ctype = ctype;
    st->reply.len = clen;
    st->reply.has_len = 1;
    return aiproxy_reply_json(r, st, HTTP_OK, cached);
}

static int cacheable(const aiproxy_req_t *st, int is_models)
{
    if (!aiproxy_cache_name())
        return 0;
    if (is_models)
        return 1;
    return !strcmp(st->endpoint, "embeddings") && st->dir->cache_embeddings == 1;
}

static int over_cap(request_rec *r, aiproxy_req_t *st, aiproxy_money_t cap)
{
    apr_time_t now = apr_time_now();
    aiproxy_money_t used = st->month_state.spent + st->month_state.reserved;
    const char *msg;

    aiproxy_stat_inc(AIPROXY_STAT_OVER_CAP);
    apr_table_setn(r->headers_out, "Retry-After",
                   apr_psprintf(r->pool, "%" APR_INT64_T_FMT,
                                seconds_to_next_month(now)));
    aiproxy_reply_set_money_headers(r, r->headers_out, 0, &st->month_state);
    if (used >= cap && !st->reserved)
        /* Refused before its body was read. */
        msg = apr_psprintf(r->pool, "On %s you used $%s of $%s: nothing is "
                           "left this month.", st->month,
                           aiproxy_money_format(r->pool, used),
                           aiproxy_money_format(r->pool, cap));
    else if (used >= cap)
        msg = apr_psprintf(r->pool, "On %s you used $%s, exceeding $%s. This "
                           "request may cost up to $%s.", st->month,
                           aiproxy_money_format(r->pool, used),
                           aiproxy_money_format(r->pool, cap),
                           aiproxy_money_format(r->pool, st->reserved));
    else
        /* Under the cap, but the most this request may cost is more than
         * what is left: say so, and how to ask for less. */
        msg = apr_psprintf(r->pool, "On %s you used $%s of $%s. This request "
                           "may cost up to $%s, more than the $%s left; a "
                           "lower max_tokens or a shorter input costs less.",
                           st->month, aiproxy_money_format(r->pool, used),
                           aiproxy_money_format(r->pool, cap),
                           aiproxy_money_format(r->pool, st->reserved),
                           aiproxy_money_format(r->pool, cap - used));
    return aiproxy_reply_error(r, st, HTTP_TOO_MANY_REQUESTS,
                               "insufficient_quota", "insufficient_quota", msg);
}

static const char *spent_key(apr_pool_t *p, const aiproxy_req_t *st)
{
    return apr_pstrcat(p, st->month, " ", st->email, NULL);
}

/* A month this child saw spent is refused before the body is read: the
 * cheap refusal a client cannot make us parse megabytes for. So is a cap
 * of 0, which no request fits. */
static int spent_already(request_rec *r, aiproxy_req_t *st)
{
    aiproxy_money_t cap = st->cap;
    apr_int64_t now_ms = apr_time_as_msec(apr_time_now());
    spent_entry_t *e;
    apr_size_t len;

    if (cap > 0) {
        if (!spent_memo)
            return DECLINED;
        e = aiproxy_memo_get(spent_memo, r->pool, spent_key(r->pool, st),
                             now_ms - (apr_int64_t)st->g->user_memo_ttl * 1000,
                             &len);
        if (!e || len != sizeof(*e) || e->generation != aiproxy_users_generation() ||
            e->month.spent < cap)
            return DECLINED;
        st->month_state = e->month;
    }
    return over_cap(r, st, cap);
}

static int reserve(request_rec *r, aiproxy_req_t *st)
{
    aiproxy_global_t *g = st->g;
    apr_int64_t now_ms = apr_time_as_msec(apr_time_now());
    const char *err = "";
    aiproxy_ledger_rc_t rc;

    switch (aiproxy_lease_take(r, st, &st->month_state, &err)) {
    case AIPROXY_LEASE_TAKEN:
        st->held = 1;
        return DECLINED;
    case AIPROXY_LEASE_DOWN:
        return store_unavailable(r, st, err);
    case AIPROXY_LEASE_OVER_CAP:
        rc = AIPROXY_LEDGER_OVER_CAP;
        goto refused;
    case AIPROXY_LEASE_NONE:
        break;
    }
    rc = aiproxy_ledger_reserve(aiproxy_child_ledger(), r->pool, st->email,
                                st->month, st->id, st->reserved, st->cap,
                                now_ms, now_ms + (apr_int64_t)g->hold_ttl * 1000,
                                st->endpoint, st->info.model, st->course,
                                &st->month_state, &err);
    if (rc == AIPROXY_LEDGER_DOWN)
        return store_unavailable(r, st, err);
refused:
    if (rc == AIPROXY_LEDGER_OVER_CAP) {
        if (spent_memo && st->month_state.spent >= st->cap) {
            spent_entry_t e;

            memset(&e, 0, sizeof(e));
            e.month = st->month_state;
            e.generation = aiproxy_users_generation();
            aiproxy_memo_put(spent_memo, spent_key(r->pool, st), now_ms, &e,
                             sizeof(e));
        }
        return over_cap(r, st, st->cap);
    }
    st->held = 1;
    return DECLINED;
}

/* A by-model route lists its models itself: they come from several
 * providers. */
static int list_models(request_rec *r, aiproxy_req_t *st, const char *one)
{
    apr_array_header_t *names = one ? NULL : aiproxy_admit_model_names(r->pool, st);
    apr_array_header_t *parts = apr_array_make(r->pool, 8,
                                               sizeof(const char *));
    int i;

    if (one) {
        names = apr_array_make(r->pool, 1, sizeof(const char *));
        APR_ARRAY_PUSH(names, const char *) = one;
    }
    for (i = 0; i < names->nelts; i++) {
        const char *m = APR_ARRAY_IDX(names, i, const char *);
        apr_array_header_t *t = apr_hash_get(st->g->model_map, m,
                                             APR_HASH_KEY_STRING);

        if (!aiproxy_admit_course_allows(r, st, m))
            continue;

        APR_ARRAY_PUSH(parts, const char *) = apr_psprintf(r->pool,
            "{\"id\":%s,\"object\":\"model\",\"created\":0,\"owned_by\":%s}",
            aiproxy_json_quote(r->pool, m), aiproxy_json_quote(r->pool,
                t && t->nelts ? APR_ARRAY_IDX(t, 0, aiproxy_target_t).provider_name
                              : "aiproxy"));
    }
    if (one)
        return aiproxy_reply_json(r, st, HTTP_OK,
                                  APR_ARRAY_IDX(parts, 0, const char *));
    return aiproxy_reply_json(r, st, HTTP_OK, apr_pstrcat(r->pool,
                              "{\"object\":\"list\",\"data\":[",
                              apr_array_pstrcat(r->pool, parts, ','), "]}",
                              NULL));
}

/* Anthropic's betas can change prices (long context, 1-hour cache, server
 * tools): only the values the site allows go on. */
static void filter_betas(request_rec *r, aiproxy_req_t *st)
{
    const char *v = apr_table_getm(r->pool, r->headers_in, "anthropic-beta");
    char *list, *word, *last;
    const char *kept = NULL;

    if (!v) {
        apr_table_unset(r->headers_in, "anthropic_beta");
        return;
    }
    list = apr_pstrdup(r->pool, v);
    for (word = apr_strtok(list, ", \t", &last); word;
         word = apr_strtok(NULL, ", \t", &last))
        if (apr_hash_get(st->g->anthropic_betas, word, APR_HASH_KEY_STRING))
            kept = kept ? apr_pstrcat(r->pool, kept, ",", word, NULL) : word;
    apr_table_unset(r->headers_in, "anthropic-beta");
    /* A front end that reads '_' as '-' must not see another copy. */
    apr_table_unset(r->headers_in, "anthropic_beta");
    if (kept)
        apr_table_setn(r->headers_in, "anthropic-beta", kept);
}

/* The caller's credentials stay here; the forward handler sets the
 * provider's key for each attempt. */
static void prepare_forward(request_rec *r, aiproxy_req_t *st)
{
    apr_table_unset(r->headers_in, "Authorization");
    apr_table_unset(r->headers_in, "api-key");
    apr_table_unset(r->headers_in, "x-api-key");
    apr_table_unset(r->headers_in, "OpenAI-Organization");
    apr_table_unset(r->headers_in, "OpenAI-Project");
    apr_table_unset(r->headers_in, "Cookie");
    filter_betas(r, st);
    /* Usage must be readable in the response. */
    apr_table_unset(r->headers_in, "Accept-Encoding");
    if (st->body)
        st->fwd.replay = aiproxy_body_replay(r, NULL, st->body, st->body_out_len);
    r->handler = FORWARD_HANDLER;
    ap_add_output_filter(METER_FILTER, NULL, r, r->connection);
}

/* A route's URL names no file: without this, the core would walk (and
 * stat) DocumentRoot for every request, as mod_proxy spares its own.
 * The per-dir config was reset to the server's for this phase; the
 * location walk is cached, so the core's own walk after this is a no-op.
 * TRACE stays the core's. */
int aiproxy_admit_map_to_storage(request_rec *r)
{
    aiproxy_dir_conf_t *d;

    if (r->main || r->prev || r->method_number == M_TRACE ||
        ap_location_walk(r) != OK)
        return DECLINED;
    d = ap_get_module_config(r->per_dir_config, &aiproxy_module);
    return d && d->provider_name ? OK : DECLINED;
}

int aiproxy_admit(request_rec *r)
{
    aiproxy_dir_conf_t *d = ap_get_module_config(r->per_dir_config,
                                                 &aiproxy_module);
    aiproxy_provider_t *pv = NULL;
    const char *pv_name;
    aiproxy_req_t *st;
    aiproxy_user_t user;
    int is_models, is_free;

    if (!d || !d->provider_name || r->main || r->prev)
        return DECLINED;
    st = apr_pcalloc(r->pool, sizeof(*st));
    st->g = aiproxy_global(r->server);
    st->dir = d;
    st->start_ms = apr_time_as_msec(r->request_time);
    ap_set_module_config(r->request_config, &aiproxy_module, st);
    st->endpoint = aiproxy_path_endpoint(r->pool, d->prefix, r->uri,
                                         d->kind == AIPROXY_ROUTE_PATH,
                                         &pv_name);
    if (d->kind == AIPROXY_ROUTE_PATH && pv_name &&
        (!apr_hash_get(d->path_providers, pv_name, APR_HASH_KEY_STRING) ||
         !(pv = apr_hash_get(st->g->providers, pv_name, APR_HASH_KEY_STRING))))
        return aiproxy_reply_error(r, st, HTTP_NOT_FOUND,
                                   "invalid_request_error", "unknown_provider",
                                   apr_psprintf(r->pool, "Unknown provider "
                                                "'%s'.", pv_name));
    if (d->kind == AIPROXY_ROUTE_FIXED)
        pv = d->provider;
    st->api = pv ? pv->api : aiproxy_endpoint_api(st->endpoint);
    /* GET models/{id}: one model, allowed when the list is. */
    is_models = st->is_models = !strcmp(st->endpoint, "models") ||
                                !strncmp(st->endpoint, "models/", 7);
    if (!*st->endpoint || !aiproxy_endpoint_allowed(d, pv, is_models
                                                    ? "models" : st->endpoint))
        return aiproxy_reply_error(r, st, HTTP_NOT_FOUND,
                                   "invalid_request_error", "unknown_url",
                                   apr_psprintf(r->pool, "Unknown endpoint "
                                                "%s. Allowed below %s: %s.",
                                                r->uri, d->prefix,
                                                aiproxy_endpoint_list(r->pool,
                                                                      d, pv)));
    if (r->method_number != (is_models ? M_GET : M_POST))
        return aiproxy_reply_error(r, st, HTTP_METHOD_NOT_ALLOWED,
                                   "invalid_request_error",
                                   "method_not_allowed",
                                   apr_psprintf(r->pool, "Use %s for %s.",
                                                is_models ? "GET" : "POST",
                                                st->endpoint));
    aiproxy_stat_inc(AIPROXY_STAT_REQUESTS);
    if (aiproxy_identify(r, st, st->api, &user) != DECLINED)
        return OK;
    apr_table_setn(r->notes, "aiproxy-email", st->email);
    if (aiproxy_admit_course(r, st, &user) != DECLINED)
        return OK;
    if (is_models) {
        const char *id = st->endpoint[6] ? st->endpoint + 7 : NULL;

        if (id && (strchr(id, '/') || !aiproxy_admit_model_allowed(st, id) ||
                   !aiproxy_admit_course_allows(r, st, id)))
            return aiproxy_reply_error(r, st, HTTP_NOT_FOUND,
                                       "invalid_request_error",
                                       "model_not_found", apr_psprintf(
                                       r->pool, "The model '%s' does not "
                                       "exist or is not allowed here.", id));
        if (!pv)
            return list_models(r, st, id);
        st->fwd.targets = targets_for(r->pool, st, pv, "");
        if (cacheable(st, 1) && cache_lookup(r, st, "", 0) != DECLINED)
            return OK;
        prepare_forward(r, st);
        return OK;
    }
    /* The rate limit and a spent month before the body is read and
     * parsed: a refused client costs a store round trip, not a parse. */
    st->month = aiproxy_month_of(r->pool, r->request_time);
    /* A free endpoint stays open to a spent month, the user's or the
     * course's: it costs nothing. */
    is_free = aiproxy_endpoint_free(aiproxy_endpoint_kind(st->endpoint));
    if (rate_limit(r, st, 0) != DECLINED ||
        (is_free && rate_limit(r, st, 1) != DECLINED) ||
        /* A cap of 0 opens nothing, free or not. */
        ((!is_free || st->cap == 0) && spent_already(r, st) != DECLINED) ||
        (!is_free && aiproxy_admit_course_spent(r, st) != DECLINED) ||
        aiproxy_admit_body(r, st) != DECLINED ||
        aiproxy_admit_course_model(r, st) != DECLINED)
        return OK;
    st->fwd.targets = targets_for(r->pool, st, pv, st->info.model);
    if (!st->fwd.targets->nelts)
        return aiproxy_reply_error(r, st, HTTP_FORBIDDEN,
                                   "invalid_request_error", "model_not_allowed",
                                   apr_psprintf(r->pool, "No provider serves "
                                                "%s on %s.", st->info.model,
                                                st->endpoint));
    if (admit_translated(r, st) != DECLINED)
        return OK;
    st->id = aiproxy_next_request_id(r->pool);
    apr_table_setn(r->notes, "aiproxy-request-id", st->id);
    if (st->free_ep) {
        /* Nothing held: counted when answered (aiproxy_admit_settle_free). */
        prepare_forward(r, st);
        return OK;
    }
    if (cacheable(st, 0) && !st->info.stream &&
        cache_lookup(r, st, st->body, st->body_out_len) != DECLINED)
        return OK;
    if (reserve(r, st) != DECLINED ||
        aiproxy_admit_course_reserve(r, st) != DECLINED)
        return OK;
    prepare_forward(r, st);
    return OK;
}
