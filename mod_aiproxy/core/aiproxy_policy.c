/* Rules shared by the module and aiproxy-admin (aiproxy_policy.h). */
#include <string.h>
#include <apr_strings.h>
#include <apr_time.h>

#include "aiproxy_policy.h"

aiproxy_money_t aiproxy_policy_cap(const aiproxy_user_t *u,
                                   aiproxy_money_t dflt)
{
    return u->has_cap ? u->cap : dflt;
}

apr_hash_t *aiproxy_policy_settings(apr_pool_t *p,
                                    const apr_array_header_t *rows)
{
    apr_hash_t *h = apr_hash_make(p);
    int i;

    for (i = 0; i < rows->nelts; i++) {
        const aiproxy_user_row_t *u = &APR_ARRAY_IDX(rows, i,
                                                     aiproxy_user_row_t);

        apr_hash_set(h, u->who, APR_HASH_KEY_STRING, u);
    }
    return h;
}

void aiproxy_policy_user_in(apr_hash_t *settings, const char *email,
                            aiproxy_user_t *out)
{
    const aiproxy_user_row_t *own = apr_hash_get(settings, email,
                                                 APR_HASH_KEY_STRING);
    const aiproxy_user_row_t *dom = NULL;
    const char *at = strchr(email, '@');

    memset(out, 0, sizeof(*out));
    if (at)
        dom = apr_hash_get(settings, at, APR_HASH_KEY_STRING);
    if (own) {
        out->revoked_at = own->revoked_at;
        out->has_cap = out->cap_own = own->has_cap;
        out->cap = own->cap;
    }
    if (!out->has_cap && dom && dom->has_cap) {
        out->has_cap = 1;
        out->cap = dom->cap;
    }
}

const char *aiproxy_month_of(apr_pool_t *p, apr_time_t t)
{
    apr_time_exp_t tm;

    apr_time_exp_gmt(&tm, t);
    return apr_psprintf(p, "%04d-%02d", tm.tm_year + 1900, tm.tm_mon + 1);
}

const char *aiproxy_iso_time(apr_pool_t *p, apr_int64_t ms)
{
    apr_time_exp_t tm;

    apr_time_exp_gmt(&tm, apr_time_from_msec(ms));
    return apr_psprintf(p, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                        tm.tm_hour, tm.tm_min, tm.tm_sec,
                        (int)(ms % 1000));
}
