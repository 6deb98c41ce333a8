#include <string.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <apr_thread_mutex.h>

#include "aiproxy_params.h"
#include "aiproxy_google.h"
#include "aiproxy_json.h"
#include "aiproxy_token.h"

#define JWKS_MAX_BYTES (256 * 1024)
#define JWKS_DEFAULT_TTL 300
#define JWKS_MAX_TTL 86400
#define RSA_MIN_BITS 2048

static const char *const codes[] = {
    "ok", "malformed_credential", "wrong_algorithm", "unknown_key",
    "bad_signature", "wrong_issuer", "wrong_audience", "expired",
    "not_yet_valid", "no_email", "email_unverified",
    "hosted_domain_required", "domain_not_allowed", "keys_unavailable"
};

const char *aiproxy_google_code(aiproxy_google_rc_t rc)
{
    return (unsigned)rc < sizeof(codes) / sizeof(codes[0]) ? codes[rc]
                                                           : "invalid";
}

/* ---- Claims ---------------------------------------------------------- */

static int domain_allowed(const apr_array_header_t *domains, const char *d)
{
    int i;

    if (!d)
        return 0;
    for (i = 0; i < domains->nelts; i++)
        if (!strcasecmp(APR_ARRAY_IDX(domains, i, const char *), d))
            return 1;
    return 0;
}

static int audience_matches(const aiproxy_json_t *aud, const char *client_id)
{
    const char *s = aiproxy_json_string(aud);
    apr_size_t i;

    if (s)
        return !strcmp(s, client_id);
    for (i = 0; i < aiproxy_json_array_size(aud); i++)
        if ((s = aiproxy_json_string(aiproxy_json_array_at(aud, i))) &&
            !strcmp(s, client_id))
            return 1;
    return 0;
}

/* A NumericDate claim: -1 absent, 0 present (in *out), 1 not a number. */
static int time_claim(const aiproxy_json_t *claims, const char *name,
                      apr_int64_t *out)
{
    const aiproxy_json_t *v = aiproxy_json_get(claims, name);

    if (!v)
        return -1;
    return aiproxy_json_int(v, out) ? 0 : 1;
}

aiproxy_google_rc_t aiproxy_google_check_claims(apr_pool_t *p,
                                                const char *claims,
                                                const aiproxy_google_policy_t *pol,
                                                apr_int64_t now,
                                                aiproxy_google_identity_t *out,
                                                const char **why)
{
    const char *err, *iss, *email, *hd, *at, *sub;
    char *lower, *e;
    aiproxy_json_t *c = aiproxy_json_parse(p, claims, strlen(claims), &err);
    const aiproxy_json_t *verified;
    apr_int64_t t;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!c || !aiproxy_json_is_object(c)) {
        *why = "the credential's claims are not a JSON object";
        return AIPROXY_GOOGLE_MALFORMED;
    }
    iss = aiproxy_json_string(aiproxy_json_get(c, "iss"));
    if (!iss || (strcmp(iss, "accounts.google.com") &&
                 strcmp(iss, "https://accounts.google.com"))) {
        *why = "the credential was not issued by accounts.google.com";
        return AIPROXY_GOOGLE_WRONG_ISSUER;
    }
    if (!audience_matches(aiproxy_json_get(c, "aud"), pol->client_id)) {
        *why = "the credential was issued to another application "
               "(aud is not this site's client ID)";
        return AIPROXY_GOOGLE_WRONG_AUDIENCE;
    }
    if ((rc = time_claim(c, "exp", &t)) != 0) {
        *why = "the credential has no valid exp";
        return AIPROXY_GOOGLE_MALFORMED;
    }
    if (now > t + pol->leeway) {
        *why = "the credential has expired; sign in again";
        return AIPROXY_GOOGLE_EXPIRED;
    }
    if (((rc = time_claim(c, "iat", &t)) == 0 && t > now + pol->leeway) ||
        ((rc = time_claim(c, "nbf", &t)) == 0 && t > now + pol->leeway)) {
        *why = "the credential is not valid yet (check the server's clock)";
        return AIPROXY_GOOGLE_NOT_YET_VALID;
    }
    email = aiproxy_json_string(aiproxy_json_get(c, "email"));
    if (!email || !aiproxy_params_who(email, 0)) {
        *why = "the credential carries no email address (ask for the "
               "email scope)";
        return AIPROXY_GOOGLE_NO_EMAIL;
    }
    verified = aiproxy_json_get(c, "email_verified");
    if (aiproxy_json_bool(verified) != 1 &&
        !(aiproxy_json_string(verified) &&
          !strcmp(aiproxy_json_string(verified), "true"))) {
        *why = "Google has not verified this email address";
        return AIPROXY_GOOGLE_EMAIL_UNVERIFIED;
    }
    hd = aiproxy_json_string(aiproxy_json_get(c, "hd"));
    if (hd && !*hd)
        hd = NULL;
    if (pol->require_hd && !hd) {
        *why = "sign in with your organisation's Google account, not a "
               "personal one";
        return AIPROXY_GOOGLE_HOSTED_DOMAIN_REQUIRED;
    }
    at = strchr(email, '@');
    if (pol->domains && pol->domains->nelts > 0 &&
        !domain_allowed(pol->domains, at + 1) &&
        !domain_allowed(pol->domains, hd)) {
        *why = apr_psprintf(p, "accounts of %s may not sign in here",
                            hd ? hd : at + 1);
        return AIPROXY_GOOGLE_DOMAIN_NOT_ALLOWED;
    }
    /* One spelling per user: the ledger keys on the email. */
    lower = apr_pstrdup(p, email);
    for (e = lower; *e; e++)
        *e = (char)apr_tolower(*e);
    out->email = lower;
    out->hd = hd ? apr_pstrdup(p, hd) : NULL;
    sub = aiproxy_json_string(aiproxy_json_get(c, "sub"));
    out->sub = apr_pstrdup(p, sub ? sub : "");
    return AIPROXY_GOOGLE_OK;
}

/* ---- Keys ------------------------------------------------------------ */

/* Strict base64url without padding (RFC 7515). NULL on a bad character. */
static unsigned char *b64url_decode(apr_pool_t *p, const char *s,
                                    apr_size_t *len)
{
    apr_size_t n = strlen(s), i, o = 0;
    unsigned char *out = apr_palloc(p, n * 3 / 4 + 3);
    apr_uint32_t acc = 0;
    int bits = 0;

    for (i = 0; i < n; i++) {
        int c = (unsigned char)s[i], v;

        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '-')
            v = 62;
        else if (c == '_')
            v = 63;
        else if (c == '=' && i + 2 >= n)
            break;      /* tolerate padding at the very end */
        else
            return NULL;
        acc = (acc << 6) | (apr_uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if (n % 4 == 1)
        return NULL;
    *len = o;
    return out;
}

/* A JWK's n and e as a PEM SubjectPublicKeyInfo, via OpenSSL 3's
 * parameter builder. NULL, or why not. */
static const char *rsa_pem(apr_pool_t *p, const char *n64, const char *e64,
                           char **pem)
{
    unsigned char *nb, *eb;
    apr_size_t nlen, elen;
    BIGNUM *n = NULL, *e = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    BIO *bio = NULL;
    const char *why = NULL;
    char *data;
    long size;

    if (!(nb = b64url_decode(p, n64, &nlen)) || nlen == 0 ||
        !(eb = b64url_decode(p, e64, &elen)) || elen == 0)
        return "n or e is not base64url";
    if (!(n = BN_bin2bn(nb, (int)nlen, NULL)) ||
        !(e = BN_bin2bn(eb, (int)elen, NULL)) ||
        !(bld = OSSL_PARAM_BLD_new()) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
        !(params = OSSL_PARAM_BLD_to_param(bld)) ||
        !(ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) ||
        EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        why = "not a usable RSA public key";
        goto done;
    }
    if (EVP_PKEY_get_bits(pkey) < RSA_MIN_BITS) {
        why = "RSA key shorter than 2048 bits";
        goto done;
    }
    if (!(bio = BIO_new(BIO_s_mem())) || !PEM_write_bio_PUBKEY(bio, pkey) ||
        (size = BIO_get_mem_data(bio, &data)) <= 0) {
        why = "cannot write the key as PEM";
        goto done;
    }
    *pem = apr_pstrmemdup(p, data, (apr_size_t)size);
done:
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(e);
    BN_free(n);
    return why;
}

const char *aiproxy_google_parse_jwks(apr_pool_t *p, const char *json,
                                      apr_size_t len, apr_hash_t **keys)
{
    const char *err;
    aiproxy_json_t *doc = aiproxy_json_parse(p, json, len, &err);
    aiproxy_json_t *list = aiproxy_json_get(doc, "keys");
    apr_size_t i;

    if (!doc)
        return apr_pstrcat(p, "JWKS is not JSON: ", err, NULL);
    if (!aiproxy_json_is_array(list))
        return "JWKS has no keys array";
    *keys = apr_hash_make(p);
    for (i = 0; i < aiproxy_json_array_size(list); i++) {
        aiproxy_json_t *k = aiproxy_json_array_at(list, i);
        const char *kty = aiproxy_json_string(aiproxy_json_get(k, "kty"));
        const char *kid = aiproxy_json_string(aiproxy_json_get(k, "kid"));
        const char *alg = aiproxy_json_string(aiproxy_json_get(k, "alg"));
        const char *use = aiproxy_json_string(aiproxy_json_get(k, "use"));
        const char *n = aiproxy_json_string(aiproxy_json_get(k, "n"));
        const char *e = aiproxy_json_string(aiproxy_json_get(k, "e"));
        char *pem = NULL;

        if (!kty || strcmp(kty, "RSA") || !kid || !*kid || !n || !e ||
            (alg && strcmp(alg, "RS256")) || (use && strcmp(use, "sig")))
            continue;
        if (rsa_pem(p, n, e, &pem) == NULL)
            apr_hash_set(*keys, apr_pstrdup(p, kid), APR_HASH_KEY_STRING, pem);
    }
    if (apr_hash_count(*keys) == 0)
        return "JWKS holds no usable RS256 key";
    return NULL;
}

apr_int64_t aiproxy_google_cache_seconds(const char *cache_control,
                                         const char *age, apr_int64_t dflt)
{
    apr_int64_t ttl = dflt, a = 0;
    const char *c = cache_control;

    while (c && *c) {
        const char *tok;
        apr_size_t n;

        while (*c == ' ' || *c == '\t' || *c == ',')
            c++;
        tok = c;
        while (*c && *c != ',')
            c++;
        n = (apr_size_t)(c - tok);
        while (n && (tok[n - 1] == ' ' || tok[n - 1] == '\t'))
            n--;
        if ((n == 8 && !strncasecmp(tok, "no-store", 8)) ||
            (n == 8 && !strncasecmp(tok, "no-cache", 8)))
            return 0;
        if (n > 8 && !strncasecmp(tok, "max-age=", 8)) {
            apr_int64_t v = 0;
            apr_size_t i;

            for (i = 8; i < n && apr_isdigit(tok[i]) && v < JWKS_MAX_TTL; i++)
                v = v * 10 + (tok[i] - '0');
            if (i == 8)
                continue;
            ttl = v;
        }
    }
    if (age) {
        for (; apr_isdigit(*age) && a < JWKS_MAX_TTL; age++)
            a = a * 10 + (*age - '0');
    }
    ttl -= a;
    if (ttl < 0)
        ttl = 0;
    return ttl > JWKS_MAX_TTL ? JWKS_MAX_TTL : ttl;
}

/* ---- The per-process cache ------------------------------------------- */

struct aiproxy_google_keys {
    const char *url;
    aiproxy_fetch_fn *fetch;
    long timeout_ms;
    apr_time_t refetch;
    apr_thread_mutex_t *fetching;   /* one fetch at a time */
    apr_thread_mutex_t *lock;       /* guards what follows; held briefly */
    apr_pool_t *pool;               /* own allocator: used under lock only */
    apr_pool_t *set_pool;           /* holds keys */
    apr_hash_t *keys;               /* kid -> PEM; NULL before a fetch */
    apr_time_t expires;
    apr_time_t last_fetch;          /* last attempt, good or bad */
    apr_uint64_t generation;        /* attempts finished */
    char last_error[256];           /* of the last attempt; "" when good */
};

aiproxy_google_keys_t *aiproxy_google_keys_create(apr_pool_t *p,
                                                  const char *url,
                                                  aiproxy_fetch_fn *fetch,
                                                  long timeout_ms,
                                                  apr_int64_t refetch,
                                                  const char **err)
{
    aiproxy_google_keys_t *c = apr_pcalloc(p, sizeof(*c));
    apr_allocator_t *a;

    c->url = apr_pstrdup(p, url);
    c->fetch = fetch;
    c->timeout_ms = timeout_ms;
    c->refetch = apr_time_from_sec(refetch);
    if (apr_thread_mutex_create(&c->fetching, APR_THREAD_MUTEX_DEFAULT, p) ||
        apr_thread_mutex_create(&c->lock, APR_THREAD_MUTEX_DEFAULT, p) ||
        apr_allocator_create(&a) != APR_SUCCESS) {
        *err = "cannot create the key cache's locks";
        return NULL;
    }
    /* Key sets are swapped while requests run: a pool of our own, with its
     * own allocator, keeps that off every other thread's allocator. */
    if (apr_pool_create_ex(&c->pool, p, NULL, a) != APR_SUCCESS) {
        apr_allocator_destroy(a);
        *err = "cannot create the key cache's pool";
        return NULL;
    }
    apr_allocator_owner_set(a, c->pool);
    return c;
}

typedef struct {
    const char *pem;     /* request-pool copy of the key, or NULL */
    int fresh;           /* keys within their max-age */
    int have_keys;
    apr_time_t last_fetch;
    apr_uint64_t generation;
    const char *last_error;
} snapshot_t;

static void snapshot(aiproxy_google_keys_t *c, apr_pool_t *p, const char *kid,
                     apr_time_t now, snapshot_t *s)
{
    const char *pem;

    apr_thread_mutex_lock(c->lock);
    pem = c->keys ? apr_hash_get(c->keys, kid, APR_HASH_KEY_STRING) : NULL;
    s->pem = pem ? apr_pstrdup(p, pem) : NULL;
    s->have_keys = c->keys != NULL;
    s->fresh = c->keys && now < c->expires;
    s->last_fetch = c->last_fetch;
    s->generation = c->generation;
    s->last_error = c->last_error[0] ? apr_pstrdup(p, c->last_error) : NULL;
    apr_thread_mutex_unlock(c->lock);
}

/* Fetches and parses the JWKS; installs it on success. Called with
 * c->fetching held and c->lock not held. */
static const char *refresh(aiproxy_google_keys_t *c, apr_pool_t *p)
{
    aiproxy_fetch_reply_t reply;
    apr_hash_t *parsed = NULL;
    apr_int64_t ttl = 0;
    const char *why;

    why = c->fetch(p, c->url, c->timeout_ms, JWKS_MAX_BYTES, &reply);
    if (!why && reply.status != 200)
        why = apr_psprintf(p, "HTTP status %ld", reply.status);
    if (!why)
        why = aiproxy_google_parse_jwks(p, reply.body, reply.len, &parsed);
    if (!why)
        ttl = aiproxy_google_cache_seconds(reply.cache_control, reply.age,
                                           JWKS_DEFAULT_TTL);
    apr_thread_mutex_lock(c->lock);
    c->last_fetch = apr_time_now();
    c->generation++;
    if (why) {
        apr_cpystrn(c->last_error, why, sizeof(c->last_error));
    }
    else {
        apr_pool_t *fresh;
        apr_hash_t *keys;
        apr_hash_index_t *hi;

        apr_pool_create(&fresh, c->pool);
        keys = apr_hash_make(fresh);
        for (hi = apr_hash_first(p, parsed); hi; hi = apr_hash_next(hi))
            apr_hash_set(keys, apr_pstrdup(fresh, apr_hash_this_key(hi)),
                         APR_HASH_KEY_STRING,
                         apr_pstrdup(fresh, apr_hash_this_val(hi)));
        if (c->set_pool)
            apr_pool_destroy(c->set_pool);
        c->set_pool = fresh;
        c->keys = keys;
        c->expires = c->last_fetch + apr_time_from_sec(ttl);
        c->last_error[0] = '\0';
    }
    apr_thread_mutex_unlock(c->lock);
    return why;
}

/* The PEM for kid, fetching Google's keys when needed. */
static aiproxy_google_rc_t find_key(aiproxy_google_keys_t *c, apr_pool_t *p,
                                    const char *kid, const char **pem,
                                    const char **why,
                                    const char **fetch_error)
{
    apr_time_t now = apr_time_now();
    snapshot_t s;
    int need;

    snapshot(c, p, kid, now, &s);
    if (s.pem && s.fresh) {
        *pem = s.pem;
        return AIPROXY_GOOGLE_OK;
    }
    /* Stale keys are fetched again; an unknown kid with fresh keys only
     * once per interval, so made-up kids cannot hammer Google. */
    need = !s.fresh || now - s.last_fetch >= c->refetch;
    if (need) {
        apr_uint64_t seen = s.generation;

        apr_thread_mutex_lock(c->fetching);
        snapshot(c, p, kid, apr_time_now(), &s);
        /* Another request fetched while this one waited: use its result. */
        if (s.generation == seen)
            *fetch_error = refresh(c, p);
        else
            *fetch_error = s.last_error;
        apr_thread_mutex_unlock(c->fetching);
        snapshot(c, p, kid, apr_time_now(), &s);
    }
    if (s.pem) {
        /* Stale keys beat none while Google cannot be reached. */
        *pem = s.pem;
        return AIPROXY_GOOGLE_OK;
    }
    if (!s.have_keys) {
        *why = "Google's signing keys cannot be fetched right now; please "
               "retry shortly";
        return AIPROXY_GOOGLE_KEYS_UNAVAILABLE;
    }
    *why = "the credential is signed by a key Google does not publish";
    return AIPROXY_GOOGLE_UNKNOWN_KEY;
}

aiproxy_google_rc_t aiproxy_google_verify(aiproxy_google_keys_t *keys,
                                          apr_pool_t *p,
                                          const char *credential,
                                          const aiproxy_google_policy_t *pol,
                                          apr_int64_t now,
                                          aiproxy_google_identity_t *out,
                                          const char **why,
                                          const char **fetch_error)
{
    const char *alg, *kid, *pem = NULL, *err;
    char *claims;
    aiproxy_google_rc_t rc;

    *fetch_error = NULL;
    if ((err = aiproxy_token_peek(p, credential, pol->max_len, &alg, &kid))) {
        *why = apr_pstrcat(p, "the credential is not a JWT: ", err, NULL);
        return AIPROXY_GOOGLE_MALFORMED;
    }
    /* Refused before any key lookup, so an HS256 token can never be
     * checked with a public key as its HMAC secret. */
    if (!alg || strcmp(alg, "RS256")) {
        *why = "the credential must be signed with RS256";
        return AIPROXY_GOOGLE_BAD_ALGORITHM;
    }
    if (!kid || !*kid || strlen(kid) > 256) {
        *why = "the credential names no signing key (kid)";
        return AIPROXY_GOOGLE_UNKNOWN_KEY;
    }
    if ((rc = find_key(keys, p, kid, &pem, why, fetch_error))
        != AIPROXY_GOOGLE_OK)
        return rc;
    if ((err = aiproxy_token_verify_rs256(p, credential, pem, pol->max_len,
                                          &claims))) {
        *why = apr_pstrcat(p, "the credential's signature is not Google's (",
                           err, ")", NULL);
        return AIPROXY_GOOGLE_BAD_SIGNATURE;
    }
    return aiproxy_google_check_claims(p, claims, pol, now, out, why);
}
