/* Fuzz target: the input as a compact JWS, verified with a fixed key and
 * with a set of secrets chosen by the header's kid. The input is also
 * signed as a claims object, so the claim checks see any claims and not
 * only the few that survive a signature check. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <jwt.h>
#include <apr_general.h>
#include <apr_strings.h>

#include "aiproxy_token.h"

/* The corpus's valid tokens are signed with this key. */
static const unsigned char KEY[] = "fuzz-secret-0123456789abcdef0123";
#define KEYLEN (sizeof(KEY) - 1)
/* The secret without an id, for tokens without kid; KEY is kid "k1". */
static const unsigned char KEY0[] = "fuzz-legacy-0123456789abcdef0123";
#define KEY0LEN (sizeof(KEY0) - 1)
#define NOW APR_INT64_C(1700000000)
#define LEEWAY 60
#define MAXLEN 8192

static void check_result(const char *why, const aiproxy_claims_t *c)
{
    /* An accepted token always names a user. */
    if (!why && (!c->email || !strchr(c->email, '@')))
        abort();
}

static void verify_signed_claims(apr_pool_t *p, const char *claims)
{
    aiproxy_claims_t c;
    jwt_t *jwt = NULL;
    char *tok = NULL;

    if (claims[0] != '{' || jwt_new(&jwt) != 0)
        return;
    if (jwt_add_grants_json(jwt, claims) == 0 &&
        jwt_set_alg(jwt, JWT_ALG_HS256, KEY, (int)KEYLEN) == 0)
        tok = jwt_encode_str(jwt);
    jwt_free(jwt);
    if (!tok)
        return;
    memset(&c, 0, sizeof(c));
    check_result(aiproxy_token_verify(p, tok, KEY, KEYLEN, NOW, LEEWAY,
                                      MAXLEN, &c), &c);
    free(tok);
}

/* What the kid chooses: a token accepted by the set is one that one of
 * its secrets signed. */
static void verify_by_kid(apr_pool_t *p, const char *token)
{
    apr_array_header_t *keys = apr_array_make(p, 2,
                                              sizeof(aiproxy_token_key_t));
    aiproxy_token_key_t *k;
    aiproxy_claims_t c;
    const char *why;

    k = apr_array_push(keys);
    k->kid = NULL;
    k->key = KEY0;
    k->len = KEY0LEN;
    k = apr_array_push(keys);
    k->kid = "k1";
    k->key = KEY;
    k->len = KEYLEN;
    memset(&c, 0, sizeof(c));
    why = aiproxy_token_verify_keys(p, token, keys, NOW, LEEWAY, MAXLEN, &c);
    check_result(why, &c);
    if (!why &&
        aiproxy_token_verify(p, token, KEY, KEYLEN, NOW, LEEWAY, MAXLEN, &c) &&
        aiproxy_token_verify(p, token, KEY0, KEY0LEN, NOW, LEEWAY, MAXLEN, &c))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialized;
    apr_pool_t *p;
    aiproxy_claims_t c;
    const char *token;

    if (!initialized) {
        apr_initialize();
        initialized = 1;
    }
    if (apr_pool_create(&p, NULL) != APR_SUCCESS)
        abort();
    token = apr_pstrmemdup(p, (const char *)data, size);
    memset(&c, 0, sizeof(c));
    check_result(aiproxy_token_verify(p, token, KEY, KEYLEN, NOW, LEEWAY,
                                      MAXLEN, &c), &c);
    /* Without a key nothing passes. */
    if (!aiproxy_token_verify(p, token, KEY, 0, NOW, LEEWAY, MAXLEN, &c))
        abort();
    verify_signed_claims(p, token);
    verify_by_kid(p, token);
    apr_pool_destroy(p);
    return 0;
}
