/* Google ID tokens ("Sign in with Google" credentials): the signing keys
 * (JWKS) cached per process, and every check Google asks a relying party to
 * make. The one file that includes OpenSSL. APR only, no httpd. */
#ifndef AIPROXY_GOOGLE_H
#define AIPROXY_GOOGLE_H

#include "aiproxy.h"
#include "aiproxy_fetch.h"

typedef enum {
    AIPROXY_GOOGLE_OK = 0,
    AIPROXY_GOOGLE_MALFORMED,           /* not a JWT at all */
    AIPROXY_GOOGLE_BAD_ALGORITHM,       /* header alg is not RS256 */
    AIPROXY_GOOGLE_UNKNOWN_KEY,         /* kid not among Google's keys */
    AIPROXY_GOOGLE_BAD_SIGNATURE,
    AIPROXY_GOOGLE_WRONG_ISSUER,
    AIPROXY_GOOGLE_WRONG_AUDIENCE,
    AIPROXY_GOOGLE_EXPIRED,
    AIPROXY_GOOGLE_NOT_YET_VALID,
    AIPROXY_GOOGLE_NO_EMAIL,
    AIPROXY_GOOGLE_EMAIL_UNVERIFIED,
    AIPROXY_GOOGLE_HOSTED_DOMAIN_REQUIRED,
    AIPROXY_GOOGLE_DOMAIN_NOT_ALLOWED,
    AIPROXY_GOOGLE_KEYS_UNAVAILABLE     /* JWKS could not be fetched */
} aiproxy_google_rc_t;

/* What a credential must satisfy. */
typedef struct {
    const char *client_id;            /* the `aud` we accept */
    const apr_array_header_t *domains; /* lower-case; empty: any domain */
    int require_hd;                   /* a Workspace account (`hd`) only */
    apr_int64_t leeway;               /* seconds of clock skew */
    apr_size_t max_len;               /* longest credential accepted */
} aiproxy_google_policy_t;

typedef struct {
    const char *email;  /* lower-cased */
    const char *hd;     /* NULL for a consumer account */
    const char *sub;
} aiproxy_google_identity_t;

/* A stable name for a result ("wrong_audience"), for error bodies. */
const char *aiproxy_google_code(aiproxy_google_rc_t rc);

/* Checks the claims (payload JSON text) of a token whose signature is
 * already verified: iss, aud, exp, iat, nbf, email, email_verified, hd and
 * the allowed domains. now in seconds. *why says which check failed. */
aiproxy_google_rc_t aiproxy_google_check_claims(apr_pool_t *p,
                                                const char *claims,
                                                const aiproxy_google_policy_t *pol,
                                                apr_int64_t now,
                                                aiproxy_google_identity_t *out,
                                                const char **why);

/* Parses a JWKS document into kid -> PEM public key for its RSA signing
 * keys (RS256, at least 2048 bits); other keys are skipped. NULL, or why
 * the document is unusable. */
const char *aiproxy_google_parse_jwks(apr_pool_t *p, const char *json,
                                      apr_size_t len, apr_hash_t **keys);

/* Seconds a reply may be cached from its Cache-Control and Age headers:
 * max-age less age; 0 for no-store, no-cache or max-age=0; dflt without a
 * max-age; never more than a day. */
apr_int64_t aiproxy_google_cache_seconds(const char *cache_control,
                                         const char *age, apr_int64_t dflt);

/* The per-process cache of Google's keys. Thread-safe. Lookups hold a lock
 * for a hash lookup only; a fetch holds a second lock that only requests
 * needing new keys wait on, so requests with cached keys never wait for
 * the network. */
typedef struct aiproxy_google_keys aiproxy_google_keys_t;

/* refetch: least seconds between fetches caused by an unknown kid while the
 * cached keys are fresh; fetch: how to GET url (aiproxy_fetch_get). The
 * cache lives as long as p. */
aiproxy_google_keys_t *aiproxy_google_keys_create(apr_pool_t *p,
                                                  const char *url,
                                                  aiproxy_fetch_fn *fetch,
                                                  long timeout_ms,
                                                  apr_int64_t refetch,
                                                  const char **err);

/* Verifies a credential end to end: header, key (fetched when the cache is
 * stale, or at most once per refetch interval for an unknown kid),
 * signature, then the claims. *fetch_error is set when a fetch was tried
 * and failed (worth a log line even if stale keys still did the job). */
aiproxy_google_rc_t aiproxy_google_verify(aiproxy_google_keys_t *keys,
                                          apr_pool_t *p,
                                          const char *credential,
                                          const aiproxy_google_policy_t *pol,
                                          apr_int64_t now,
                                          aiproxy_google_identity_t *out,
                                          const char **why,
                                          const char **fetch_error);

#endif
