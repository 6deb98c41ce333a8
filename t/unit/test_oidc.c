/* Unit tests: the checks on mod_auth_openidc's claims (aiproxy_oidc). */
#include "harness.h"

#include "aiproxy_oidc.h"

static apr_array_header_t *list(apr_pool_t *p, const char *a, const char *b)
{
    apr_array_header_t *l = apr_array_make(p, 2, sizeof(const char *));

    if (a)
        APR_ARRAY_PUSH(l, const char *) = a;
    if (b)
        APR_ARRAY_PUSH(l, const char *) = b;
    return l;
}

static aiproxy_oidc_rc_t claims_check(apr_pool_t *p, const char *email,
                               const char *verified, const char *hd,
                               const char *tid, int managed,
                               const char **out)
{
    aiproxy_oidc_claims_t c = { email, verified, hd, tid };
    aiproxy_oidc_policy_t pol;
    const char *why = NULL;
    aiproxy_oidc_rc_t rc;

    pol.domains = list(p, "uni.example", "college.example");
    pol.tenants = list(p, "6f1c2d3e-4a5b-4c6d-8e7f-901a2b3c4d5e", NULL);
    pol.check_verified = 1;
    pol.require_managed = managed;
    rc = aiproxy_oidc_check(p, &c, &pol, out, &why);
    CHECK(why != NULL || rc == AIPROXY_OIDC_OK);
    return rc;
}

static void test_oidc_checks(apr_pool_t *p)
{
    const char *e;

    CHECK_INT(claims_check(p, "Alice@Uni.Example", "1", "uni.example", NULL, 1, &e),
              AIPROXY_OIDC_OK);
    CHECK_STR(e, "alice@uni.example");
    CHECK_INT(claims_check(p, "a@uni.example", "true", NULL,
                    "6F1C2D3E-4A5B-4C6D-8E7F-901A2B3C4D5E", 1, &e),
              AIPROXY_OIDC_OK);
    /* Each refusal, and no address out of it. */
    CHECK_INT(claims_check(p, NULL, "1", "uni.example", NULL, 1, &e),
              AIPROXY_OIDC_NO_EMAIL);
    CHECK(e == NULL);
    CHECK_INT(claims_check(p, "a b@uni.example", "1", NULL, NULL, 0, &e),
              AIPROXY_OIDC_NO_EMAIL);
    CHECK_INT(claims_check(p, "a@uni.example,b@x.example", "1", NULL, NULL, 0, &e),
              AIPROXY_OIDC_NO_EMAIL);
    CHECK_INT(claims_check(p, "a@uni.example", "0", "uni.example", NULL, 1, &e),
              AIPROXY_OIDC_EMAIL_UNVERIFIED);
    CHECK_INT(claims_check(p, "a@uni.example", NULL, "uni.example", NULL, 1, &e),
              AIPROXY_OIDC_EMAIL_UNVERIFIED);
    CHECK_INT(claims_check(p, "a@uni.example", "yes", "uni.example", NULL, 1, &e),
              AIPROXY_OIDC_EMAIL_UNVERIFIED);
    CHECK_INT(claims_check(p, "a@elsewhere.example", "1", "uni.example", NULL, 1,
                    &e), AIPROXY_OIDC_DOMAIN_NOT_ALLOWED);
    /* A subdomain is another domain. */
    CHECK_INT(claims_check(p, "a@x.uni.example", "1", NULL, NULL, 0, &e),
              AIPROXY_OIDC_DOMAIN_NOT_ALLOWED);
    /* Consumer accounts: no hd, an hd not listed, another tenant. */
    CHECK_INT(claims_check(p, "a@uni.example", "1", NULL, NULL, 1, &e),
              AIPROXY_OIDC_NOT_MANAGED);
    CHECK_INT(claims_check(p, "a@uni.example", "1", "gmail.com", NULL, 1, &e),
              AIPROXY_OIDC_NOT_MANAGED);
    CHECK_INT(claims_check(p, "a@uni.example", "1", NULL,
                    "00000000-0000-4000-8000-000000000000", 1, &e),
              AIPROXY_OIDC_NOT_MANAGED);
    CHECK_INT(claims_check(p, "a@uni.example", "1", "", NULL, 1, &e),
              AIPROXY_OIDC_NOT_MANAGED);
    /* Off: a consumer account with an allowed address passes. */
    CHECK_INT(claims_check(p, "a@uni.example", "1", NULL, NULL, 0, &e),
              AIPROXY_OIDC_OK);
    CHECK_STR(aiproxy_oidc_code(AIPROXY_OIDC_NOT_MANAGED),
              "managed_account_required");
    CHECK_STR(aiproxy_oidc_code((aiproxy_oidc_rc_t)99), "invalid");
}

static void test_oidc_unchecked_verified(apr_pool_t *p)
{
    aiproxy_oidc_claims_t c = { "a@uni.example", NULL, NULL, NULL };
    aiproxy_oidc_policy_t pol = { NULL, NULL, 0, 0 };
    const char *e, *why;

    /* A provider that vouches for every address (Entra, no such claim). */
    CHECK_INT(aiproxy_oidc_check(p, &c, &pol, &e, &why), AIPROXY_OIDC_OK);
    /* No domains listed: any domain; managed means an hd at all. */
    pol.require_managed = 1;
    CHECK_INT(aiproxy_oidc_check(p, &c, &pol, &e, &why),
              AIPROXY_OIDC_NOT_MANAGED);
    c.hd = "anything.example";
    CHECK_INT(aiproxy_oidc_check(p, &c, &pol, &e, &why), AIPROXY_OIDC_OK);
}

const unit_test_t unit_oidc[] = {
    { "oidc_checks", test_oidc_checks },
    { "oidc_unchecked_verified", test_oidc_unchecked_verified },
    { NULL, NULL }
};
