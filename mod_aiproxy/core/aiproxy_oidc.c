#include <string.h>
#include <apr_lib.h>
#include <apr_strings.h>

#include "aiproxy_params.h"
#include "aiproxy_oidc.h"

static const char *const codes[] = {
    "ok", "no_email", "email_unverified", "domain_not_allowed",
    "managed_account_required"
};

const char *aiproxy_oidc_code(aiproxy_oidc_rc_t rc)
{
    return (unsigned)rc < sizeof(codes) / sizeof(codes[0]) ? codes[rc]
                                                           : "invalid";
}

int aiproxy_oidc_listed(const apr_array_header_t *list, const char *name)
{
    int i;

    if (!list || !name || !*name)
        return 0;
    for (i = 0; i < list->nelts; i++)
        if (!strcasecmp(APR_ARRAY_IDX(list, i, const char *), name))
            return 1;
    return 0;
}

aiproxy_oidc_rc_t aiproxy_oidc_check(apr_pool_t *p,
                                     const aiproxy_oidc_claims_t *c,
                                     const aiproxy_oidc_policy_t *pol,
                                     const char **email, const char **why)
{
    const char *hd = c->hd && *c->hd ? c->hd : NULL;
    const char *at, *v = c->email_verified;
    char *lower, *e;
    int managed;

    *email = NULL;
    if (!c->email || !aiproxy_params_who(c->email, 0)) {
        *why = "your identity provider sent no usable email address (the "
               "site must ask for the email scope)";
        return AIPROXY_OIDC_NO_EMAIL;
    }
    if (pol->check_verified && !(v && (!strcmp(v, "1") ||
                                       !strcasecmp(v, "true")))) {
        *why = "your identity provider has not verified this email address";
        return AIPROXY_OIDC_EMAIL_UNVERIFIED;
    }
    at = strchr(c->email, '@');
    if (pol->domains && pol->domains->nelts > 0 &&
        !aiproxy_oidc_listed(pol->domains, at + 1)) {
        *why = apr_psprintf(p, "accounts of %s may not sign in here", at + 1);
        return AIPROXY_OIDC_DOMAIN_NOT_ALLOWED;
    }
    /* A consumer account may carry a university address (a personal
     * Google or Microsoft account opened with it): it outlives the
     * person's enrolment, so only the organisation's own accounts pass. */
    managed = (hd && (!pol->domains || !pol->domains->nelts ||
                      aiproxy_oidc_listed(pol->domains, hd))) ||
              aiproxy_oidc_listed(pol->tenants, c->tid);
    if (pol->require_managed && !managed) {
        *why = "sign in with your organisation's account, not a personal "
               "one";
        return AIPROXY_OIDC_NOT_MANAGED;
    }
    lower = apr_pstrdup(p, c->email);
    for (e = lower; *e; e++)
        *e = (char)apr_tolower(*e);
    *email = lower;
    return AIPROXY_OIDC_OK;
}
