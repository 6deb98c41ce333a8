/* The one wrapper around libjwt: HS256 tokens carrying a user's email. */
#ifndef AIPROXY_TOKEN_H
#define AIPROXY_TOKEN_H

#include "aiproxy.h"

typedef struct {
    const char *email;   /* pool copy */
    apr_int64_t iat;     /* seconds; 0 when the token has none */
    int has_iat;
    apr_int64_t exp, nbf; /* seconds, when has_exp / has_nbf */
    int has_exp, has_nbf;
    const char *course;  /* the course charged with the caller; NULL: none */
} aiproxy_claims_t;

/* One HS256 secret (AIProxyTokenSecret [KID] SPEC). */
typedef struct {
    const char *kid;            /* NULL: the secret given without an id */
    const unsigned char *key;
    apr_size_t len;
} aiproxy_token_key_t;

/* What a token lasts when a site sets no AIProxyTokenLifetime: a term. */
#define AIPROXY_TOKEN_LIFETIME_DEFAULT (APR_INT64_C(120) * 86400)

/* Verifies a compact JWS: exactly HS256 (libjwt 1.10 would accept HS384/512
 * with the same key), a valid signature, an `email` claim, and `exp`/`nbf`
 * against now (seconds) with leeway. The key must be non-empty: libjwt skips
 * the signature check for an empty key. Returns NULL, or a reason that names
 * the failed check and never echoes the token. */
const char *aiproxy_token_verify(apr_pool_t *p, const char *token,
                                 const unsigned char *key, apr_size_t keylen,
                                 apr_int64_t now, apr_int64_t leeway,
                                 apr_size_t max_len, aiproxy_claims_t *out);

/* aiproxy_token_verify with the secret the token's header names among
 * keys (aiproxy_token_key_t): its `kid`'s, and a kid no secret has is
 * refused; a token without kid (issued before secrets had ids) is checked
 * with the secret given without an id, else with the first one. */
const char *aiproxy_token_verify_keys(apr_pool_t *p, const char *token,
                                      const apr_array_header_t *keys,
                                      apr_int64_t now, apr_int64_t leeway,
                                      apr_size_t max_len,
                                      aiproxy_claims_t *out);

/* Checks verified claims' exp and nbf against now (seconds) with leeway:
 * what must be checked again when a verification is reused. Returns NULL,
 * or the reason. */
const char *aiproxy_token_check_time(const aiproxy_claims_t *c,
                                     apr_int64_t now, apr_int64_t leeway);

/* Signs {email, iat[, exp]} with HS256; exp <= 0 leaves it out. NULL on
 * failure. */
char *aiproxy_token_sign(apr_pool_t *p, const char *email, apr_int64_t iat,
                         apr_int64_t exp, const unsigned char *key,
                         apr_size_t keylen);

/* Issues a token for email (and course, NULL for none): signed with the last of keys and carrying its
 * kid (none for a secret without an id); iat is now, or just past
 * revoked_at so a revocation within this second does not cover it; exp is
 * iat + lifetime, none when lifetime <= 0. NULL on failure. */
char *aiproxy_token_issue(apr_pool_t *p, const apr_array_header_t *keys,
                          const char *email, const char *course,
                          apr_int64_t now, apr_int64_t revoked_at,
                          apr_int64_t lifetime);

/* Reads `alg` and `kid` from a compact JWS header WITHOUT checking its
 * signature: only to choose a key, never to trust. Either may come back
 * NULL. Returns NULL, or a reason. */
const char *aiproxy_token_peek(apr_pool_t *p, const char *token,
                               apr_size_t max_len, const char **alg,
                               const char **kid);

/* Verifies a compact JWS signed with RS256 against a PEM public key:
 * exactly RS256 (libjwt would also accept an HS256 token whose HMAC key is
 * the PEM text itself) and a valid signature. Checks no claim: *claims gets
 * the payload's JSON text. Returns NULL, or a reason. */
const char *aiproxy_token_verify_rs256(apr_pool_t *p, const char *token,
                                       const char *pem, apr_size_t max_len,
                                       char **claims);

#endif
