/* Sign-in through an OpenID provider, as mod_auth_openidc hands it over:
 * the checks on the claims it passes (email, email_verified, hd, tid),
 * the same as the Google path's plus the organisation-managed rule.
 * APR only, no httpd: the claims come in as plain strings. */
#ifndef AIPROXY_OIDC_H
#define AIPROXY_OIDC_H

#include "aiproxy.h"

typedef enum {
    AIPROXY_OIDC_OK = 0,
    AIPROXY_OIDC_NO_EMAIL,
    AIPROXY_OIDC_EMAIL_UNVERIFIED,
    AIPROXY_OIDC_DOMAIN_NOT_ALLOWED,
    AIPROXY_OIDC_NOT_MANAGED          /* a consumer account */
} aiproxy_oidc_rc_t;

/* The claims as mod_auth_openidc passes them (NULL: absent). */
typedef struct {
    const char *email;
    const char *email_verified;       /* "1" or "true" when verified */
    const char *hd;                   /* Google Workspace domain */
    const char *tid;                  /* Microsoft Entra tenant */
} aiproxy_oidc_claims_t;

typedef struct {
    const apr_array_header_t *domains; /* lower-case; empty: any */
    const apr_array_header_t *tenants; /* lower-case Entra tenant IDs */
    int check_verified;               /* 0: the provider vouches for all */
    int require_managed;              /* hd in domains, or tid in tenants */
} aiproxy_oidc_policy_t;

/* A stable name for a result ("email_unverified"), for error bodies. */
const char *aiproxy_oidc_code(aiproxy_oidc_rc_t rc);

/* Checks the claims; on success *email is the lower-cased address. *why
 * says, for the person signing in, which check failed. */
aiproxy_oidc_rc_t aiproxy_oidc_check(apr_pool_t *p,
                                     const aiproxy_oidc_claims_t *c,
                                     const aiproxy_oidc_policy_t *pol,
                                     const char **email, const char **why);

/* A listed name, compared without case (domains, tenants). */
int aiproxy_oidc_listed(const apr_array_header_t *list, const char *name);

#endif
