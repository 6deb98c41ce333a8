/* Unit tests: Google ID tokens (aiproxy_google): the claim checks, the
 * JWKS parser, the cache lifetime of a key set, and verification end to
 * end against a key set served by a fake fetch. */
#include "harness.h"

#include <jwt.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include "aiproxy_google.h"

#define GNOW APR_INT64_C(1700000000)
#define CLIENT "client-1.apps.googleusercontent.com"

static aiproxy_google_policy_t policy(apr_pool_t *p, const char *domain,
                                      int require_hd)
{
    aiproxy_google_policy_t pol;

    memset(&pol, 0, sizeof(pol));
    pol.client_id = CLIENT;
    pol.domains = apr_array_make(p, 1, sizeof(const char *));
    if (domain)
        APR_ARRAY_PUSH((apr_array_header_t *)pol.domains, const char *) = domain;
    pol.require_hd = require_hd;
    pol.leeway = 60;
    pol.max_len = 8192;
    return pol;
}

/* Claims that pass, with members replaced or added: extra holds JSON
 * members that go in place of the defaults of the same name. */
static const char *claims(apr_pool_t *p, const char *extra)
{
    static const char *const base[][2] = {
        { "iss", "\"https://accounts.google.com\"" },
        { "aud", "\"" CLIENT "\"" },
        { "exp", "1700000600" },
        { "iat", "1699999990" },
        { "email", "\"Ann.Lee@Example.COM\"" },
        { "email_verified", "true" },
        { "sub", "\"1234567890\"" },
    };
    const char *out = extra ? extra : "";
    apr_size_t i;

    for (i = 0; i < sizeof(base) / sizeof(base[0]); i++) {
        if (extra && strstr(extra, apr_psprintf(p, "\"%s\":", base[i][0])))
            continue;
        out = apr_psprintf(p, "%s%s\"%s\":%s", out, *out ? "," : "",
                           base[i][0], base[i][1]);
    }
    return apr_pstrcat(p, "{", out, "}", NULL);
}

static aiproxy_google_rc_t claims_rc(apr_pool_t *p, const char *extra,
                                     const aiproxy_google_policy_t *pol,
                                     aiproxy_google_identity_t *id)
{
    const char *why = NULL;
    aiproxy_google_rc_t rc = aiproxy_google_check_claims(p, claims(p, extra),
                                                         pol, GNOW, id, &why);

    if (rc != AIPROXY_GOOGLE_OK && (!why || !*why))
        CHECK(!"a refusal says why");
    return rc;
}

static void test_google_claims(apr_pool_t *p)
{
    aiproxy_google_policy_t any = policy(p, NULL, 0);
    aiproxy_google_policy_t school = policy(p, "school.edu", 0);
    aiproxy_google_policy_t workspace = policy(p, NULL, 1);
    aiproxy_google_identity_t id;
    const char *why = NULL;

    CHECK_INT(claims_rc(p, NULL, &any, &id), AIPROXY_GOOGLE_OK);
    CHECK_STR(id.email, "ann.lee@example.com");     /* one spelling per user */
    CHECK(id.hd == NULL);
    CHECK_STR(id.sub, "1234567890");
    CHECK_INT(claims_rc(p, "\"iss\":\"accounts.google.com\"", &any, &id),
              AIPROXY_GOOGLE_OK);
    CHECK_INT(claims_rc(p, "\"aud\":[\"other\",\"" CLIENT "\"]", &any, &id),
              AIPROXY_GOOGLE_OK);
    CHECK_INT(claims_rc(p, "\"email_verified\":\"true\"", &any, &id),
              AIPROXY_GOOGLE_OK);

    CHECK_INT(claims_rc(p, "\"iss\":\"https://evil.example\"", &any, &id),
              AIPROXY_GOOGLE_WRONG_ISSUER);
    CHECK_INT(claims_rc(p, "\"aud\":\"other\"", &any, &id),
              AIPROXY_GOOGLE_WRONG_AUDIENCE);
    CHECK_INT(claims_rc(p, "\"aud\":[\"other\"]", &any, &id),
              AIPROXY_GOOGLE_WRONG_AUDIENCE);
    /* exp within the leeway passes; beyond it, expired; absent, malformed */
    CHECK_INT(claims_rc(p, "\"exp\":1699999950", &any, &id), AIPROXY_GOOGLE_OK);
    CHECK_INT(claims_rc(p, "\"exp\":1699999939", &any, &id),
              AIPROXY_GOOGLE_EXPIRED);
    CHECK_INT(claims_rc(p, "\"exp\":\"soon\"", &any, &id),
              AIPROXY_GOOGLE_MALFORMED);
    CHECK_INT(claims_rc(p, "\"iat\":1700000061", &any, &id),
              AIPROXY_GOOGLE_NOT_YET_VALID);
    CHECK_INT(claims_rc(p, "\"nbf\":1700000100", &any, &id),
              AIPROXY_GOOGLE_NOT_YET_VALID);
    CHECK_INT(claims_rc(p, "\"email\":\"no-at-sign\"", &any, &id),
              AIPROXY_GOOGLE_NO_EMAIL);
    CHECK_INT(claims_rc(p, "\"email\":\"a b@example.com\"", &any, &id),
              AIPROXY_GOOGLE_NO_EMAIL);
    CHECK_INT(claims_rc(p, "\"email_verified\":false", &any, &id),
              AIPROXY_GOOGLE_EMAIL_UNVERIFIED);
    CHECK_INT(claims_rc(p, "\"email_verified\":\"false\"", &any, &id),
              AIPROXY_GOOGLE_EMAIL_UNVERIFIED);

    /* Workspace accounts only, and allowed domains (by email or hd). */
    CHECK_INT(claims_rc(p, NULL, &workspace, &id),
              AIPROXY_GOOGLE_HOSTED_DOMAIN_REQUIRED);
    CHECK_INT(claims_rc(p, "\"hd\":\"\"", &workspace, &id),
              AIPROXY_GOOGLE_HOSTED_DOMAIN_REQUIRED);
    CHECK_INT(claims_rc(p, "\"hd\":\"example.com\"", &workspace, &id),
              AIPROXY_GOOGLE_OK);
    CHECK_STR(id.hd, "example.com");
    CHECK_INT(claims_rc(p, NULL, &school, &id), AIPROXY_GOOGLE_DOMAIN_NOT_ALLOWED);
    CHECK_INT(claims_rc(p, "\"email\":\"bo@SCHOOL.edu\"", &school, &id),
              AIPROXY_GOOGLE_OK);
    CHECK_INT(claims_rc(p, "\"hd\":\"school.edu\"", &school, &id),
              AIPROXY_GOOGLE_OK);

    CHECK_INT(aiproxy_google_check_claims(p, "[1]", &any, GNOW, &id, &why),
              AIPROXY_GOOGLE_MALFORMED);
    CHECK_INT(aiproxy_google_check_claims(p, "{", &any, GNOW, &id, &why),
              AIPROXY_GOOGLE_MALFORMED);
}

static void test_google_codes(apr_pool_t *p)
{
    (void)p;
    CHECK_STR(aiproxy_google_code(AIPROXY_GOOGLE_OK), "ok");
    CHECK_STR(aiproxy_google_code(AIPROXY_GOOGLE_WRONG_AUDIENCE),
              "wrong_audience");
    CHECK_STR(aiproxy_google_code(AIPROXY_GOOGLE_KEYS_UNAVAILABLE),
              "keys_unavailable");
    CHECK_STR(aiproxy_google_code((aiproxy_google_rc_t)99), "invalid");
}

static void test_google_cache_seconds(apr_pool_t *p)
{
    (void)p;
    CHECK_INT(aiproxy_google_cache_seconds("public, max-age=19000", NULL, 300),
              19000);
    CHECK_INT(aiproxy_google_cache_seconds("max-age=19000", "1000", 300),
              18000);
    CHECK_INT(aiproxy_google_cache_seconds(NULL, NULL, 300), 300);
    CHECK_INT(aiproxy_google_cache_seconds("public", NULL, 300), 300);
    CHECK_INT(aiproxy_google_cache_seconds("no-store", NULL, 300), 0);
    CHECK_INT(aiproxy_google_cache_seconds("no-cache", NULL, 300), 0);
    CHECK_INT(aiproxy_google_cache_seconds("max-age=0", NULL, 300), 0);
    CHECK_INT(aiproxy_google_cache_seconds("max-age=999999999", NULL, 300),
              86400);                                   /* a day at most */
}

/* ---- A key of our own, as Google would publish it ------------------- */

static char *b64url_bytes(apr_pool_t *p, const unsigned char *in, int n)
{
    static const char a[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = apr_palloc(p, (apr_size_t)n * 4 / 3 + 4), *o = out;
    int i;

    for (i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 |
                     (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);

        *o++ = a[v >> 18 & 63];
        *o++ = a[v >> 12 & 63];
        if (i + 1 < n)
            *o++ = a[v >> 6 & 63];
        if (i + 2 < n)
            *o++ = a[v & 63];
    }
    *o = 0;
    return out;
}

static char *b64url_bn(apr_pool_t *p, const BIGNUM *bn)
{
    int n = BN_num_bytes(bn);
    unsigned char *buf = apr_palloc(p, (apr_size_t)n + 1);

    BN_bn2bin(bn, buf);
    return b64url_bytes(p, buf, n);
}

typedef struct {
    char *private_pem;
    const char *jwk;    /* one entry of a JWKS "keys" array */
} rsa_key_t;

static int make_rsa(apr_pool_t *p, unsigned bits, const char *kid,
                    rsa_key_t *out)
{
    EVP_PKEY *k = EVP_RSA_gen(bits);
    BIGNUM *n = NULL, *e = NULL;
    BIO *bio = BIO_new(BIO_s_mem());
    char *data;
    long len;

    if (!k || !bio || !EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n) ||
        !EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &e) ||
        !PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL))
        return 0;
    len = BIO_get_mem_data(bio, &data);
    out->private_pem = apr_pstrmemdup(p, data, (apr_size_t)len);
    out->jwk = apr_psprintf(p, "{\"kty\":\"RSA\",\"alg\":\"RS256\",\"use\":"
                            "\"sig\",\"kid\":\"%s\",\"n\":\"%s\",\"e\":\"%s\"}",
                            kid, b64url_bn(p, n), b64url_bn(p, e));
    BN_free(n);
    BN_free(e);
    BIO_free(bio);
    EVP_PKEY_free(k);
    return 1;
}

static const char *sign(apr_pool_t *p, const rsa_key_t *key, const char *kid,
                        const char *claims_json)
{
    jwt_t *jwt = NULL;
    char *s;
    const char *out = NULL;

    if (jwt_new(&jwt) == 0 &&
        jwt_set_alg(jwt, JWT_ALG_RS256, (const unsigned char *)key->private_pem,
                    (int)strlen(key->private_pem)) == 0 &&
        jwt_add_header(jwt, "kid", kid) == 0 &&
        jwt_add_grants_json(jwt, claims_json) == 0 &&
        (s = jwt_encode_str(jwt)) != NULL) {
        out = apr_pstrdup(p, s);
        free(s);
    }
    jwt_free(jwt);
    return out;
}

static void test_google_jwks(apr_pool_t *p)
{
    rsa_key_t big, small;
    apr_hash_t *keys = NULL;
    const char *doc;

    CHECK(make_rsa(p, 2048, "k1", &big));
    CHECK(make_rsa(p, 1024, "short", &small));
    doc = apr_psprintf(p, "{\"keys\":[%s,%s,{\"kty\":\"EC\",\"kid\":\"ec\"},"
                       "{\"kty\":\"RSA\",\"kid\":\"bad\",\"n\":\"*\","
                       "\"e\":\"AQAB\"}]}", big.jwk, small.jwk);
    CHECK(aiproxy_google_parse_jwks(p, doc, strlen(doc), &keys) == NULL);
    CHECK_INT(apr_hash_count(keys), 1);       /* short, EC and bad skipped */
    CHECK(apr_hash_get(keys, "k1", APR_HASH_KEY_STRING) != NULL);
    CHECK(strstr(apr_hash_get(keys, "k1", APR_HASH_KEY_STRING),
                 "BEGIN PUBLIC KEY") != NULL);

    CHECK_REJECT(aiproxy_google_parse_jwks(p, "nope", 4, &keys), "not JSON");
    CHECK_REJECT(aiproxy_google_parse_jwks(p, "{}", 2, &keys), "no keys array");
    doc = apr_psprintf(p, "{\"keys\":[%s]}", small.jwk);
    CHECK_REJECT(aiproxy_google_parse_jwks(p, doc, strlen(doc), &keys),
                 "no usable RS256 key");
}

/* ---- Verification end to end, keys from a fake fetch ----------------- */

static struct {
    const char *body;   /* NULL: the fetch fails */
    long status;
    int calls;
} served;

static const char *fake_fetch(apr_pool_t *p, const char *url, long timeout_ms,
                              apr_size_t max, aiproxy_fetch_reply_t *out)
{
    (void)url;
    (void)timeout_ms;
    served.calls++;
    if (!served.body)
        return "connection refused";
    if (strlen(served.body) > max)
        return "too large";
    memset(out, 0, sizeof(*out));
    out->status = served.status;
    out->body = apr_pstrdup(p, served.body);
    out->len = strlen(served.body);
    out->cache_control = "public, max-age=3600";
    return NULL;
}

static void test_google_verify(apr_pool_t *p)
{
    aiproxy_google_policy_t pol = policy(p, NULL, 0);
    aiproxy_google_identity_t id;
    aiproxy_google_keys_t *keys;
    rsa_key_t k1, other;
    const char *err = NULL, *why, *fetch_error, *good, *forged, *tampered;
    char *t;

    if (!make_rsa(p, 2048, "k1", &k1) || !make_rsa(p, 2048, "k1", &other)) {
        CHECK(!"RSA keys made");
        return;
    }
    served.body = apr_psprintf(p, "{\"keys\":[%s]}", k1.jwk);
    served.status = 200;
    served.calls = 0;
    keys = aiproxy_google_keys_create(p, "https://keys.example/certs",
                                      fake_fetch, 1000, 60, &err);
    CHECK(keys != NULL && err == NULL);
    if (!keys)
        return;

    good = sign(p, &k1, "k1", claims(p, NULL));
    CHECK(good != NULL);
    CHECK_INT(aiproxy_google_verify(keys, p, good, &pol, GNOW, &id, &why,
                                    &fetch_error), AIPROXY_GOOGLE_OK);
    CHECK_STR(id.email, "ann.lee@example.com");
    CHECK(fetch_error == NULL);
    CHECK_INT(served.calls, 1);
    /* The keys are cached: the next credential fetches nothing. */
    CHECK_INT(aiproxy_google_verify(keys, p, good, &pol, GNOW, &id, &why,
                                    &fetch_error), AIPROXY_GOOGLE_OK);
    CHECK_INT(served.calls, 1);

    /* Signed by a key with the same kid that Google does not hold. */
    forged = sign(p, &other, "k1", claims(p, NULL));
    CHECK_INT(aiproxy_google_verify(keys, p, forged, &pol, GNOW, &id, &why,
                                    &fetch_error), AIPROXY_GOOGLE_BAD_SIGNATURE);
    /* A changed payload under the original signature. */
    t = apr_pstrdup(p, good);
    *strchr(t, '.') = 0;
    tampered = apr_pstrcat(p, t, ".", b64url_bytes(p, (const unsigned char *)
                           claims(p, "\"email\":\"eve@example.com\""),
                           (int)strlen(claims(p, "\"email\":\"eve@example.com\""))),
                           strrchr(good, '.'), NULL);
    CHECK_INT(aiproxy_google_verify(keys, p, tampered, &pol, GNOW, &id, &why,
                                    &fetch_error), AIPROXY_GOOGLE_BAD_SIGNATURE);
    /* Claims are checked after the signature. */
    CHECK_INT(aiproxy_google_verify(keys, p, sign(p, &k1, "k1",
                                    claims(p, "\"aud\":\"other\"")), &pol, GNOW,
                                    &id, &why, &fetch_error),
              AIPROXY_GOOGLE_WRONG_AUDIENCE);
    /* HS256 is refused before any key is looked up. */
    CHECK_INT(aiproxy_google_verify(keys, p, "eyJhbGciOiJIUzI1NiIsImtpZCI6Imsx"
                                    "In0.eyJhIjoxfQ.c2ln", &pol, GNOW, &id, &why,
                                    &fetch_error), AIPROXY_GOOGLE_BAD_ALGORITHM);
    CHECK_INT(aiproxy_google_verify(keys, p, "not a jwt", &pol, GNOW, &id, &why,
                                    &fetch_error), AIPROXY_GOOGLE_MALFORMED);

    /* An unknown kid: one refetch, then the key is not Google's. */
    served.calls = 0;
    CHECK_INT(aiproxy_google_verify(keys, p, sign(p, &k1, "k9", claims(p, NULL)),
                                    &pol, GNOW, &id, &why, &fetch_error),
              AIPROXY_GOOGLE_UNKNOWN_KEY);
    CHECK(served.calls <= 1);

    /* No keys to be had at all: unavailable, and the fetch error told. */
    served.body = NULL;
    served.calls = 0;
    keys = aiproxy_google_keys_create(p, "https://keys.example/certs",
                                      fake_fetch, 1000, 60, &err);
    CHECK_INT(aiproxy_google_verify(keys, p, good, &pol, GNOW, &id, &why,
                                    &fetch_error),
              AIPROXY_GOOGLE_KEYS_UNAVAILABLE);
    CHECK(fetch_error != NULL);
    CHECK_INT(served.calls, 1);
}

const unit_test_t unit_google[] = {
    { "google_claims", test_google_claims },
    { "google_codes", test_google_codes },
    { "google_cache_seconds", test_google_cache_seconds },
    { "google_jwks", test_google_jwks },
    { "google_verify", test_google_verify },
    { NULL, NULL }
};
