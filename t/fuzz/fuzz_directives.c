/* Fuzz target: the values of money directives (AIProxyPrice prices and
 * token limits, AIProxyMonthlyCap, caps set through the admin API and the
 * CLI). Whatever parses is a non-negative amount that formats and parses
 * back to itself; whatever is refused says why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <apr_general.h>
#include <apr_strings.h>

#include "aiproxy_cost.h"
#include "aiproxy_directives.h"

static void round_trip(apr_pool_t *p, aiproxy_money_t m)
{
    aiproxy_money_t back = -1;
    const char *s = aiproxy_money_format(p, m);

    if (aiproxy_money_parse(p, s, &back) || back != m)
        abort();
}

/* The input as the words of an AIProxyPrice line. */
static void price_line(apr_pool_t *p, const char *in)
{
    char *copy = apr_pstrdup(p, in), *last, *word;
    aiproxy_price_t price;
    int seen = 0;

    memset(&price, 0, sizeof(price));
    for (word = apr_strtok(copy, " ", &last); word;
         word = apr_strtok(NULL, " ", &last))
        if (aiproxy_price_field(p, &price, word, &seen))
            return;
    if (aiproxy_price_finish(&price, seen))
        return;
    if (price.input < 0 || price.cached_input < 0 || price.cache_write < 0 ||
        price.cache_write_1h < 0 || price.output < 0 || price.max_output < 0 ||
        price.context < 0 || price.image_tokens < 0 ||
        (price.output > 0 && price.max_output <= 0) ||
        (!(seen & AIPROXY_PRICE_HAS_CACHED) &&
         price.cached_input != price.input))
        abort();
    if (price.long_context < 0 || price.long_input < 0 ||
        price.long_cached < 0 || price.long_cache_write < 0 ||
        price.long_cache_write_1h < 0 || price.long_output < 0 ||
        price.web_search < 0 ||
        (price.long_context > 0 && price.context > 0 &&
         price.long_context >= price.context))
        abort();
    /* No usage within an input bound costs more than its ceiling, on
     * either side of a tier's threshold (cached input below the input
     * rate, as every real price has it). */
    if (price.cached_input <= price.input) {
        const apr_int64_t bounds[] = { 0, 1, price.long_context,
                                       price.long_context + 1, price.context };
        int i;

        for (i = 0; i < 5; i++) {
            aiproxy_usage_t u;
            apr_int64_t n = bounds[i];

            memset(&u, 0, sizeof(u));
            u.input = n / 2;
            u.cached_input = n / 4;
            u.cache_write = n - u.input - u.cached_input;
            u.output = 7;
            if (aiproxy_cost_of(&price, &u) >
                aiproxy_cost_ceiling(&price, n, 7))
                abort();
        }
    }
}

/* The input as the words of an AIProxyProvider line after its name. */
static void provider_line(apr_pool_t *p, const char *in)
{
    char *copy = apr_pstrdup(p, in), *last, *word;
    const char *url, *key;
    int api = 0;

    if (aiproxy_provider_name_ok(in) && strpbrk(in, "/:. "))
        abort();
    if (!(word = apr_strtok(copy, " ", &last)))
        return;
    if (!aiproxy_provider_url(p, word, &url)) {
        apr_size_t n = strlen(url);

        if ((strncmp(url, "http://", 7) && strncmp(url, "https://", 8)) ||
            (n && url[n - 1] == '/') || strpbrk(url, "?# "))
            abort();
    }
    while ((word = apr_strtok(NULL, " ", &last)))
        if (!aiproxy_provider_option(p, word, &api, &key) &&
            ((api != 0 && api != 1) || (key && strncmp(key, "env:", 4) &&
                                        strncmp(key, "file:", 5))))
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialized;
    apr_pool_t *p;
    const char *in, *why;
    apr_int64_t v;
    int scale;

    if (!initialized) {
        apr_initialize();
        initialized = 1;
    }
    if (apr_pool_create(&p, NULL) != APR_SUCCESS)
        abort();
    /* A directive's word: no NUL inside. */
    in = apr_pstrmemdup(p, (const char *)data, size);

    for (scale = 0; scale <= 12; scale += 6) {
        v = -1;
        why = aiproxy_decimal_parse(p, in, scale, &v);
        if (why ? !*why : v < 0)
            abort();
    }
    v = -1;
    if (!aiproxy_money_parse(p, in, &v)) {
        if (v < 0)
            abort();
        round_trip(p, v);
    }
    v = -1;
    if (!aiproxy_price_parse(p, in, &v)) {
        /* A price per token times a million is the USD per 1M tokens. */
        if (v < 0)
            abort();
        if (v <= APR_INT64_MAX / 1000000)
            round_trip(p, v * 1000000);
    }
    price_line(p, in);
    provider_line(p, in);
    apr_pool_destroy(p);
    return 0;
}
