/* Fuzz target: the admin API's and /token's parameters. The input is read
 * as a query string (or form body), each value checked as the handlers
 * check it, and as a JSON body that sets a cap. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <apr_general.h>
#include <apr_strings.h>

#include "aiproxy_params.h"

static int each(void *baton, const char *key, const char *value)
{
    apr_pool_t *p = baton;
    apr_int64_t n = -1;
    const char *lower;

    if (!key || !value)
        abort();
    if (aiproxy_params_count(value, 1, 1000, &n) && (n < 1 || n > 1000))
        abort();
    if (aiproxy_params_month(value) && strlen(value) != 7)
        abort();
    if (aiproxy_params_who(value, 1)) {
        lower = aiproxy_params_lower(p, value);
        if (strlen(lower) != strlen(value) || !aiproxy_params_who(lower, 1))
            abort();
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialized;
    apr_pool_t *p;
    const char *in, *err, *who = NULL;
    aiproxy_json_t *body;
    aiproxy_money_t cap = -1;
    int has_cap = -1;

    if (!initialized) {
        apr_initialize();
        initialized = 1;
    }
    if (apr_pool_create(&p, NULL) != APR_SUCCESS)
        abort();
    in = apr_pstrmemdup(p, (const char *)data, size);
    apr_table_do(each, p, aiproxy_params_parse(p, in), NULL);

    body = aiproxy_json_parse(p, (const char *)data, size, &err);
    if (body && !aiproxy_params_cap(p, body, &who, &has_cap, &cap)) {
        const char *c;

        if (!who || !aiproxy_params_who(who, 1) || cap < 0 ||
            (has_cap != 0 && has_cap != 1) || (!has_cap && cap != 0))
            abort();
        for (c = who; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                abort();
    }
    apr_pool_destroy(p);
    return 0;
}
