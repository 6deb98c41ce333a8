/* Unit tests: the order of attempts (aiproxy_route): each provider's keys
 * in turn from its next turn, resting keys last, at most max attempts.
 * Built on aiproxy_config.h's types only: no server. */
#include "harness.h"

#include "aiproxy_route.h"

#define T0 APR_TIME_C(1700000000000000)

static aiproxy_provider_t *provider(apr_pool_t *p, const char *name, int keys)
{
    aiproxy_provider_t *pv = apr_pcalloc(p, sizeof(*pv));
    int i;

    pv->name = name;
    pv->auth = apr_array_make(p, keys, sizeof(const char *));
    for (i = 0; i < keys; i++)
        APR_ARRAY_PUSH(pv->auth, const char *) = apr_psprintf(p, "Bearer k%d", i);
    pv->turn = apr_pcalloc(p, sizeof(*pv->turn));
    pv->rest_until = apr_pcalloc(p, sizeof(apr_time_t) * (apr_size_t)keys);
    return pv;
}

static void add_target(apr_array_header_t *targets, aiproxy_provider_t *pv,
                       const char *model)
{
    aiproxy_target_t *t = apr_array_push(targets);

    t->provider = pv;
    t->provider_name = pv->name;
    t->upstream_model = model;
}

/* "provider:key/model" per attempt, space-separated. */
static const char *order(apr_pool_t *p, const apr_array_header_t *targets,
                         int max, apr_time_t now)
{
    apr_array_header_t *a = aiproxy_route_attempts(p, targets, max, now);
    const char *out = "";
    int i;

    for (i = 0; i < a->nelts; i++) {
        const aiproxy_attempt_t *at = &APR_ARRAY_IDX(a, i, aiproxy_attempt_t);

        out = apr_psprintf(p, "%s%s%s:%d/%s", out, i ? " " : "",
                           at->provider->name, at->key, at->model);
    }
    return out;
}

static void test_route_turns(apr_pool_t *p)
{
    apr_array_header_t *targets = apr_array_make(p, 2, sizeof(aiproxy_target_t));
    aiproxy_provider_t *a = provider(p, "a", 3), *b = provider(p, "b", 1);

    add_target(targets, a, "m-a");
    add_target(targets, b, "m-b");
    /* Each request starts one key further on; the other provider follows. */
    CHECK_STR(order(p, targets, 10, T0), "a:0/m-a a:1/m-a a:2/m-a b:0/m-b");
    CHECK_STR(order(p, targets, 10, T0), "a:1/m-a a:2/m-a a:0/m-a b:0/m-b");
    CHECK_STR(order(p, targets, 10, T0), "a:2/m-a a:0/m-a a:1/m-a b:0/m-b");
    CHECK_STR(order(p, targets, 10, T0), "a:0/m-a a:1/m-a a:2/m-a b:0/m-b");
    /* max bounds the attempts. */
    CHECK_STR(order(p, targets, 2, T0), "a:1/m-a a:2/m-a");
    CHECK_STR(order(p, targets, 1, T0), "a:2/m-a");
}

static void test_route_rest(apr_pool_t *p)
{
    apr_array_header_t *targets = apr_array_make(p, 2, sizeof(aiproxy_target_t));
    aiproxy_provider_t *a = provider(p, "a", 2), *b = provider(p, "b", 1);
    aiproxy_attempt_t failed;

    add_target(targets, a, "m");
    add_target(targets, b, "m");
    failed.provider = a;
    failed.key = 0;
    failed.model = "m";
    aiproxy_route_rest(&failed, T0 + apr_time_from_sec(30));
    /* A resting key goes last, behind the other provider, still a last
     * resort; once its rest is over it takes its turn again. */
    CHECK_STR(order(p, targets, 10, T0), "a:1/m b:0/m a:0/m");
    CHECK_STR(order(p, targets, 10, T0), "a:1/m b:0/m a:0/m");
    CHECK_STR(order(p, targets, 2, T0), "a:1/m b:0/m");
    CHECK_STR(order(p, targets, 10, T0 + apr_time_from_sec(31)),
              "a:1/m a:0/m b:0/m");
    /* Every key resting: all still tried, in their turn. */
    failed.key = 1;
    aiproxy_route_rest(&failed, T0 + apr_time_from_sec(30));
    failed.provider = b;
    failed.key = 0;
    aiproxy_route_rest(&failed, T0 + apr_time_from_sec(30));
    CHECK_STR(order(p, targets, 10, T0), "a:0/m a:1/m b:0/m");
}

const unit_test_t unit_route[] = {
    { "route_turns", test_route_turns },
    { "route_rest", test_route_rest },
    { NULL, NULL }
};
