/* Unit tests of the pure parts of mod_aiproxy: token checks, cost
 * arithmetic, body inspection, usage extraction and the SSE splitter.
 * A harness of our own: one line per failed check, then "N passed, N failed"
 * alone on the last line; the exit status is 1 when any check failed. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jwt.h>
#include <apr_general.h>
#include <apr_strings.h>

#include "aiproxy_json.h"
#include "aiproxy_token.h"
#include "aiproxy_cost.h"
#include "aiproxy_inspect.h"
#include "aiproxy_usage_read.h"
#include "aiproxy_path.h"
#include "aiproxy_sse.h"
#include "aiproxy_memo.h"
#include "aiproxy_jscan.h"
#include <jansson.h>
#include "aiproxy_secret.h"
#include <apr_thread_proc.h>

/* ------------------------------------------------------------------ */
/* The harness                                                          */

static int n_passed, n_failed;
static const char *current_test = "";

static void check(int ok, const char *what, const char *file, int line)
{
    if (ok) {
        n_passed++;
        return;
    }
    n_failed++;
    printf("FAIL %s %s:%d: %s\n", current_test, file, line, what);
}

static void check_str(const char *got, const char *want, const char *what,
                      const char *file, int line)
{
    if (got && want && !strcmp(got, want)) {
        n_passed++;
        return;
    }
    n_failed++;
    printf("FAIL %s %s:%d: %s: got %s%s%s, want \"%s\"\n", current_test,
           file, line, what,
           got ? "\"" : "", got ? got : "NULL", got ? "\"" : "",
           want ? want : "NULL");
}

static void check_int(apr_int64_t got, apr_int64_t want, const char *what,
                      const char *file, int line)
{
    if (got == want) {
        n_passed++;
        return;
    }
    n_failed++;
    printf("FAIL %s %s:%d: %s: got %" APR_INT64_T_FMT ", want %"
           APR_INT64_T_FMT "\n", current_test, file, line, what, got, want);
}

#define CHECK(c) check(!!(c), #c, __FILE__, __LINE__)
#define CHECK_STR(got, want) check_str((got), (want), #got, __FILE__, __LINE__)
#define CHECK_INT(got, want) \
    check_int((apr_int64_t)(got), (apr_int64_t)(want), #got, __FILE__, __LINE__)
/* A rejection that names the check we meant to trip, so a test cannot pass
 * for the wrong reason. */
#define CHECK_REJECT(why, word) \
    check((why) != NULL && strstr((why), (word)) != NULL, \
          apr_psprintf(p, "%s rejected mentioning '%s' (got %s)", #why, \
                       (word), (why) ? (why) : "NULL"), __FILE__, __LINE__)

/* ------------------------------------------------------------------ */
/* Token                                                                */

static const unsigned char KEY[] = "unit-test-secret-0123456789abcdef";
#define KEYLEN (sizeof(KEY) - 1)
#define NOW APR_INT64_C(1700000000)
#define LEEWAY 60
#define MAXLEN 8192

static const char *verify(apr_pool_t *p, const char *token,
                          aiproxy_claims_t *c)
{
    memset(c, 0, sizeof(*c));
    return aiproxy_token_verify(p, token, KEY, KEYLEN, NOW, LEEWAY, MAXLEN, c);
}

/* A token made by libjwt itself, any algorithm, claims given as JSON. */
static char *make_token(apr_pool_t *p, jwt_alg_t alg,
                        const unsigned char *key, apr_size_t keylen,
                        const char *claims)
{
    jwt_t *jwt = NULL;
    char *s, *copy = NULL;

    if (jwt_new(&jwt) != 0)
        return NULL;
    if (jwt_add_grants_json(jwt, claims) == 0 &&
        jwt_set_alg(jwt, alg, key, (int)keylen) == 0 &&
        (s = jwt_encode_str(jwt)) != NULL) {
        copy = apr_pstrdup(p, s);
        free(s);
    }
    jwt_free(jwt);
    return copy;
}

static char *b64url(apr_pool_t *p, const char *in)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    apr_size_t n = strlen(in), i;
    const unsigned char *s = (const unsigned char *)in;
    char *out = apr_palloc(p, n * 4 / 3 + 4), *o = out;

    for (i = 0; i + 2 < n; i += 3) {
        *o++ = tab[s[i] >> 2];
        *o++ = tab[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
        *o++ = tab[((s[i + 1] & 15) << 2) | (s[i + 2] >> 6)];
        *o++ = tab[s[i + 2] & 63];
    }
    if (n - i == 1) {
        *o++ = tab[s[i] >> 2];
        *o++ = tab[(s[i] & 3) << 4];
    }
    else if (n - i == 2) {
        *o++ = tab[s[i] >> 2];
        *o++ = tab[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
        *o++ = tab[(s[i + 1] & 15) << 2];
    }
    *o = '\0';
    return out;
}

/* header.payload.signature from plain JSON texts. */
static char *craft(apr_pool_t *p, const char *header, const char *payload,
                   const char *sig)
{
    return apr_pstrcat(p, b64url(p, header), ".", b64url(p, payload), ".",
                       sig, NULL);
}

static const char *signature_of(const char *token)
{
    return strrchr(token, '.') + 1;
}

static void test_token_valid(apr_pool_t *p)
{
    aiproxy_claims_t c;
    char *tok = aiproxy_token_sign(p, "alice@example.com", NOW - 100, 0,
                                   KEY, KEYLEN);

    CHECK(tok != NULL);
    if (!tok)
        return;
    CHECK(verify(p, tok, &c) == NULL);
    CHECK_STR(c.email, "alice@example.com");
    CHECK_INT(c.has_iat, 1);
    CHECK_INT(c.iat, NOW - 100);

    /* The one we sign carries exp when asked. */
    tok = aiproxy_token_sign(p, "bob@example.com", NOW, NOW + 3600, KEY,
                             KEYLEN);
    CHECK(tok && verify(p, tok, &c) == NULL);
    CHECK_STR(c.email, "bob@example.com");

    /* A token from another HS256 implementation, no iat. */
    tok = make_token(p, JWT_ALG_HS256, KEY, KEYLEN,
                     "{\"email\":\"carol@example.com\"}");
    CHECK(tok && verify(p, tok, &c) == NULL);
    CHECK_STR(c.email, "carol@example.com");
    CHECK_INT(c.has_iat, 0);
    CHECK_INT(c.iat, 0);

    /* exp, nbf and iat as reals with no fraction are numbers too. */
    tok = make_token(p, JWT_ALG_HS256, KEY, KEYLEN,
                     "{\"email\":\"d@example.com\",\"iat\":1699999000.0,"
                     "\"exp\":1700003600.0,\"nbf\":1699999000.0}");
    CHECK(tok && verify(p, tok, &c) == NULL);
    CHECK_INT(c.iat, 1699999000);

    /* Signing needs a key. */
    CHECK(aiproxy_token_sign(p, "a@b.c", NOW, 0, KEY, 0) == NULL);
    CHECK(aiproxy_token_sign(p, "a@b.c", NOW, 0, NULL, 0) == NULL);
}

static void test_token_signature(apr_pool_t *p)
{
    static const unsigned char other[] = "another-secret-0123456789abcdef!";
    aiproxy_claims_t c;
    char *tok = aiproxy_token_sign(p, "alice@example.com", NOW, 0, KEY, KEYLEN);
    char *bad;
    char *sig;

    if (!tok) {
        CHECK(tok != NULL);
        return;
    }
    /* One character of the signature changed. */
    bad = apr_pstrdup(p, tok);
    sig = (char *)signature_of(bad);
    sig[10] = sig[10] == 'A' ? 'B' : 'A';
    CHECK_REJECT(verify(p, bad, &c), "signature");
    CHECK(c.email == NULL);

    /* One character of the payload changed. */
    bad = apr_pstrdup(p, tok);
    sig = strchr(bad, '.') + 5;
    *sig = *sig == 'A' ? 'B' : 'A';
    CHECK(verify(p, bad, &c) != NULL);

    /* Signed with another secret. */
    bad = aiproxy_token_sign(p, "alice@example.com", NOW, 0, other,
                             sizeof(other) - 1);
    CHECK_REJECT(verify(p, bad, &c), "signature");

    /* No signature at all. */
    bad = apr_pstrndup(p, tok, (apr_size_t)(signature_of(tok) - tok));
    CHECK(verify(p, bad, &c) != NULL);
}

static void test_token_algorithms(apr_pool_t *p)
{
    static const char claims[] =
        "{\"email\":\"alice@example.com\",\"iat\":1700000000}";
    aiproxy_claims_t c;
    jwt_t *jwt = NULL;
    char *tok;
    const char *good_sig;

    /* HS384 and HS512 with our own secret: libjwt checks them fine, so only
     * our algorithm check stops them. */
    tok = make_token(p, JWT_ALG_HS384, KEY, KEYLEN, claims);
    CHECK(tok != NULL);
    CHECK(tok && jwt_decode(&jwt, tok, KEY, (int)KEYLEN) == 0);
    jwt_free(jwt);
    jwt = NULL;
    CHECK_REJECT(verify(p, tok, &c), "HS256");

    tok = make_token(p, JWT_ALG_HS512, KEY, KEYLEN, claims);
    CHECK(tok && jwt_decode(&jwt, tok, KEY, (int)KEYLEN) == 0);
    jwt_free(jwt);
    jwt = NULL;
    CHECK_REJECT(verify(p, tok, &c), "HS256");

    /* alg none, as libjwt writes it: header.payload. */
    tok = make_token(p, JWT_ALG_NONE, NULL, 0, claims);
    CHECK(tok != NULL);
    CHECK(tok && tok[strlen(tok) - 1] == '.');
    CHECK(tok && verify(p, tok, &c) != NULL);
    CHECK(c.email == NULL);

    /* Crafted by hand: libjwt reads our crafted none token, so a rejection
     * is our policy and not a malformed test token. */
    tok = craft(p, "{\"alg\":\"none\",\"typ\":\"JWT\"}", claims, "");
    CHECK(jwt_decode(&jwt, tok, NULL, 0) == 0 && jwt &&
          jwt_get_alg(jwt) == JWT_ALG_NONE);
    jwt_free(jwt);
    jwt = NULL;
    CHECK(verify(p, tok, &c) != NULL);

    /* none in other spellings, with no signature and with a real HS256
     * signature (of another token) pasted on. */
    good_sig = signature_of(aiproxy_token_sign(p, "alice@example.com", NOW, 0,
                                               KEY, KEYLEN));
    CHECK(verify(p, craft(p, "{\"alg\":\"NONE\",\"typ\":\"JWT\"}", claims, ""),
                 &c) != NULL);
    CHECK(verify(p, craft(p, "{\"alg\":\"None\",\"typ\":\"JWT\"}", claims, ""),
                 &c) != NULL);
    CHECK(verify(p, craft(p, "{\"alg\":\"none\"}", claims, good_sig),
                 &c) != NULL);
    CHECK(verify(p, craft(p, "{\"alg\":\"NONE\"}", claims, good_sig),
                 &c) != NULL);
    CHECK(verify(p, craft(p, "{\"alg\":\"None\"}", claims, good_sig),
                 &c) != NULL);
    /* No alg at all, or an alg that is not a string. */
    CHECK(verify(p, craft(p, "{\"typ\":\"JWT\"}", claims, good_sig), &c)
          != NULL);
    CHECK(verify(p, craft(p, "{\"alg\":256}", claims, good_sig), &c) != NULL);

    /* RS256 header: the secret is no RSA key, whatever the signature. */
    CHECK(verify(p, craft(p, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", claims,
                          good_sig), &c) != NULL);
    CHECK(verify(p, craft(p, "{\"alg\":\"ES256\",\"typ\":\"JWT\"}", claims,
                          good_sig), &c) != NULL);
    CHECK(c.email == NULL);
}

static void test_token_shape(apr_pool_t *p)
{
    aiproxy_claims_t c;
    char *tok = aiproxy_token_sign(p, "alice@example.com", NOW, 0, KEY, KEYLEN);
    char *big;
    apr_size_t n = 100 * 1024;

    if (!tok) {
        CHECK(tok != NULL);
        return;
    }
    CHECK_REJECT(verify(p, "aaaa.bbbb", &c), "three segments");
    CHECK_REJECT(verify(p, apr_pstrcat(p, tok, ".AAAA", NULL), &c),
                 "three segments");
    CHECK_REJECT(verify(p, apr_pstrcat(p, tok, ".", NULL), &c),
                 "three segments");
    CHECK_REJECT(verify(p, "abcd", &c), "three segments");
    CHECK_REJECT(verify(p, "", &c), "three segments");
    CHECK_REJECT(verify(p, "!!!!.????.####", &c), "base64url");
    CHECK_REJECT(verify(p, "eyJh bGci.eyJl.abcd", &c), "base64url");
    /* Standard base64 and padding are not base64url. */
    CHECK_REJECT(verify(p, apr_pstrcat(p, tok, "=", NULL), &c), "base64url");
    CHECK_REJECT(verify(p, "ab+c.ab/c.abcd", &c), "base64url");
    /* Right alphabet, garbage content. */
    CHECK(verify(p, "abc.def.ghi", &c) != NULL);
    CHECK(verify(p, "..", &c) != NULL);
    CHECK(verify(p, "A.A.A", &c) != NULL);
    /* The header is no JSON. */
    CHECK(verify(p, apr_pstrcat(p, b64url(p, "not json"), ".",
                                b64url(p, "{\"email\":\"a@b.c\"}"), ".",
                                signature_of(tok), NULL), &c) != NULL);

    /* 100 KB of base64url: refused before libjwt sees it. */
    big = apr_palloc(p, n + 1);
    memset(big, 'A', n);
    big[10] = '.';
    big[20] = '.';
    big[n] = '\0';
    CHECK_REJECT(verify(p, big, &c), "too long");

    /* max_len is the longest accepted length. */
    n = strlen(tok);
    CHECK(aiproxy_token_verify(p, tok, KEY, KEYLEN, NOW, LEEWAY, n, &c)
          == NULL);
    CHECK_REJECT(aiproxy_token_verify(p, tok, KEY, KEYLEN, NOW, LEEWAY, n - 1,
                                      &c), "too long");
}

static void test_token_claims(apr_pool_t *p)
{
    aiproxy_claims_t c;
    char *tok;

    /* exp: past beyond leeway refused, within leeway accepted. */
    tok = aiproxy_token_sign(p, "a@example.com", NOW - 7200, NOW - LEEWAY - 1,
                             KEY, KEYLEN);
    CHECK_REJECT(verify(p, tok, &c), "expired");
    tok = aiproxy_token_sign(p, "a@example.com", NOW - 7200, NOW - LEEWAY,
                             KEY, KEYLEN);
    CHECK(verify(p, tok, &c) == NULL);
    tok = aiproxy_token_sign(p, "a@example.com", NOW - 7200, NOW - 30,
                             KEY, KEYLEN);
    CHECK(verify(p, tok, &c) == NULL);
    CHECK_STR(c.email, "a@example.com");
    /* Leeway 0: a second late is late. */
    CHECK_REJECT(aiproxy_token_verify(p, tok, KEY, KEYLEN, NOW, 0, MAXLEN, &c),
                 "expired");

    /* An exp as far away as a signed 64-bit NumericDate goes is the far
     * future, not the past. These two fail, with a UBSan report, while
     * aiproxy_token_verify computes exp + leeway, which overflows: compare
     * exp < now - leeway instead. */
    tok = aiproxy_token_sign(p, "a@example.com", NOW, APR_INT64_MAX, KEY,
                             KEYLEN);
    CHECK(tok != NULL);
    CHECK(verify(p, tok, &c) == NULL);
    tok = make_token(p, JWT_ALG_HS256, KEY, KEYLEN,
                     "{\"email\":\"a@example.com\","
                     "\"exp\":9223372036854775800}");
    CHECK(verify(p, tok, &c) == NULL);

    /* nbf: future beyond leeway refused, within leeway accepted. */
    tok = make_token(p, JWT_ALG_HS256, KEY, KEYLEN,
                     "{\"email\":\"a@example.com\",\"nbf\":1700000061}");
    CHECK_REJECT(verify(p, tok, &c), "not valid yet");
    tok = make_token(p, JWT_ALG_HS256, KEY, KEYLEN,
                     "{\"email\":\"a@example.com\",\"nbf\":1700000030}");
    CHECK(verify(p, tok, &c) == NULL);
    tok = make_token(p, JWT_ALG_HS256, KEY, KEYLEN,
                     "{\"email\":\"a@example.com\","
                     "\"nbf\":-9223372036854775807}");
    CHECK(verify(p, tok, &c) == NULL);

    /* Claims of the wrong type. */
    tok = make_token(p, JWT_ALG_HS256, KEY, KEYLEN,
                     "{\"email\":\"a@example.com\",\"exp\":\"123\"}");
    CHECK_REJECT(verify(p, tok, &c), "exp is not a number");
    tok = make_token(p, JWT_ALG_HS256, KEY, KEYLEN,
                     "{\"email\":\"a@example.com\",\"exp\":\"9999999999\"}");
    CHECK_REJECT(verify(p, tok, &c), "exp is not a number");
    tok = make_token(p, JWT_ALG_HS256, KEY, KEYLEN,
                     "{\"email\":\"a@example.com\",\"exp\":null}");
    CHECK_REJECT(verify(p, tok, &c), "exp is not a number");
    tok = make_token(p, JWT_ALG_HS256, KEY, KEYLEN,
                     "{\"email\":\"a@example.com\",\"exp\":true}");
    CHECK_REJECT(verify(p, tok, &c), "exp is not a number");
    tok = make_token(p, JWT_ALG_HS256, KEY, KEYLEN,
                     "{\"email\":\"a@example.com\",\"exp\":1e300}");
    CHECK_REJECT(verify(p, tok, &c), "exp is not a number");
    tok = make_token(p, JWT_ALG_HS256, KEY, KEYLEN,
                     "{\"email\":\"a@example.com\",\"nbf\":[1]}");
    CHECK_REJECT(verify(p, tok, &c), "nbf is not a number");
    tok = make_token(p, JWT_ALG_HS256, KEY, KEYLEN,
                     "{\"email\":\"a@example.com\",\"iat\":\"now\"}");
    CHECK_REJECT(verify(p, tok, &c), "iat is not a number");

    /* The email claim. */
    tok = make_token(p, JWT_ALG_HS256, KEY, KEYLEN, "{\"iat\":1700000000}");
    CHECK_REJECT(verify(p, tok, &c), "email");
    CHECK(c.email == NULL);
    tok = make_token(p, JWT_ALG_HS256, KEY, KEYLEN,
                     "{\"email\":42,\"iat\":1700000000}");
    CHECK_REJECT(verify(p, tok, &c), "email");
    tok = make_token(p, JWT_ALG_HS256, KEY, KEYLEN,
                     "{\"email\":[\"a@example.com\"]}");
    CHECK_REJECT(verify(p, tok, &c), "email");
    tok = make_token(p, JWT_ALG_HS256, KEY, KEYLEN, "{\"email\":\"\"}");
    CHECK_REJECT(verify(p, tok, &c), "email");
    tok = make_token(p, JWT_ALG_HS256, KEY, KEYLEN,
                     "{\"email\":\"no-at-sign\"}");
    CHECK_REJECT(verify(p, tok, &c), "email");
    tok = make_token(p, JWT_ALG_HS256, KEY, KEYLEN, "{\"email\":\"a@b@c\"}");
    CHECK_REJECT(verify(p, tok, &c), "email");
    tok = make_token(p, JWT_ALG_HS256, KEY, KEYLEN, "{\"email\":\"a b@c\"}");
    CHECK_REJECT(verify(p, tok, &c), "email");
    tok = make_token(p, JWT_ALG_HS256, KEY, KEYLEN, "{\"email\":\"a\\\"@c\"}");
    CHECK_REJECT(verify(p, tok, &c), "email");
    tok = make_token(p, JWT_ALG_HS256, KEY, KEYLEN, "{\"email\":\"@c\"}");
    CHECK_REJECT(verify(p, tok, &c), "email");
    tok = make_token(p, JWT_ALG_HS256, KEY, KEYLEN, "{\"email\":\"a@\"}");
    CHECK_REJECT(verify(p, tok, &c), "email");
}

static void test_token_empty_key(apr_pool_t *p)
{
    aiproxy_claims_t c;
    char *tok = aiproxy_token_sign(p, "alice@example.com", NOW, 0, KEY, KEYLEN);
    char *none = make_token(p, JWT_ALG_NONE, NULL, 0,
                            "{\"email\":\"alice@example.com\"}");

    /* A valid token, and a forged one, both refused without a secret. */
    memset(&c, 0, sizeof(c));
    CHECK_REJECT(aiproxy_token_verify(p, tok, KEY, 0, NOW, LEEWAY, MAXLEN, &c),
                 "secret");
    CHECK_REJECT(aiproxy_token_verify(p, tok, NULL, 0, NOW, LEEWAY, MAXLEN, &c),
                 "secret");
    CHECK(aiproxy_token_verify(p, none, (const unsigned char *)"", 0, NOW,
                               LEEWAY, MAXLEN, &c) != NULL);
    CHECK(c.email == NULL);
    /* The same token passes with the secret: the refusal above is the key. */
    CHECK(aiproxy_token_verify(p, tok, KEY, KEYLEN, NOW, LEEWAY, MAXLEN, &c)
          == NULL);
}

/* ------------------------------------------------------------------ */
/* Cost                                                                 */

static void test_decimal_parse(apr_pool_t *p)
{
    static const char *const bad[] = {
        "1e3", "-1", "", ".", "1.2.3", "+1", " 1", "1 ", "0x10", "1,5",
        "1.5e0", "NaN", "inf", "..1", NULL
    };
    apr_int64_t v;
    aiproxy_money_t m;
    int i;

    CHECK(aiproxy_money_parse(p, "0.15", &m) == NULL);
    CHECK_INT(m, APR_INT64_C(150000000000));
    CHECK(aiproxy_money_parse(p, "2", &m) == NULL);
    CHECK_INT(m, APR_INT64_C(2000000000000));
    CHECK(aiproxy_money_parse(p, "2.00", &m) == NULL);
    CHECK_INT(m, APR_INT64_C(2000000000000));
    CHECK(aiproxy_money_parse(p, "0.000001", &m) == NULL);
    CHECK_INT(m, 1000000);
    CHECK(aiproxy_money_parse(p, "0.000000000001", &m) == NULL);
    CHECK_INT(m, 1);
    CHECK(aiproxy_money_parse(p, "0", &m) == NULL);
    CHECK_INT(m, 0);
    CHECK(aiproxy_money_parse(p, "9223372", &m) == NULL);
    CHECK_INT(m, APR_INT64_C(9223372000000000000));

    CHECK(aiproxy_price_parse(p, "0.15", &m) == NULL);
    CHECK_INT(m, 150000);
    CHECK(aiproxy_price_parse(p, "2", &m) == NULL);
    CHECK_INT(m, 2000000);
    CHECK(aiproxy_price_parse(p, "0.000001", &m) == NULL);
    CHECK_INT(m, 1);
    CHECK(aiproxy_price_parse(p, "0.075", &m) == NULL);
    CHECK_INT(m, 75000);
    CHECK(aiproxy_price_parse(p, "3.75", &m) == NULL);
    CHECK_INT(m, 3750000);

    CHECK(aiproxy_decimal_parse(p, "0.15", 2, &v) == NULL);
    CHECK_INT(v, 15);
    CHECK(aiproxy_decimal_parse(p, "123", 0, &v) == NULL);
    CHECK_INT(v, 123);
    CHECK(aiproxy_decimal_parse(p, "1.5", 0, &v) != NULL);

    for (i = 0; bad[i]; i++) {
        v = -7;
        CHECK(aiproxy_decimal_parse(p, bad[i], 6, &v) != NULL);
        CHECK(aiproxy_money_parse(p, bad[i], &m) != NULL);
        CHECK(aiproxy_price_parse(p, bad[i], &m) != NULL);
        check(v == -7, apr_psprintf(p, "'%s' left the output alone", bad[i]),
              __FILE__, __LINE__);
    }
    /* Too many decimals for the scale. */
    CHECK(aiproxy_price_parse(p, "0.0000001", &m) != NULL);
    CHECK(aiproxy_money_parse(p, "0.0000000000001", &m) != NULL);
    CHECK(aiproxy_decimal_parse(p, "0.123", 2, &v) != NULL);
    /* Overflow, in the digits and in the scaling. */
    CHECK(aiproxy_decimal_parse(p, "99999999999999999999", 0, &v) != NULL);
    CHECK(aiproxy_money_parse(p, "10000000", &m) != NULL);
    CHECK(aiproxy_money_parse(p, "9223373", &m) != NULL);
    CHECK(aiproxy_price_parse(p, "10000000000000", &m) != NULL);
    /* The error names the value, for the config error message. */
    CHECK(strstr(aiproxy_money_parse(p, "1e3", &m), "1e3") != NULL);
}

static void test_money_format(apr_pool_t *p)
{
    CHECK_STR(aiproxy_money_format(p, 0), "0");
    CHECK_STR(aiproxy_money_format(p, APR_INT64_C(2000000000000)), "2");
    CHECK_STR(aiproxy_money_format(p, APR_INT64_C(2500000000000)), "2.5");
    CHECK_STR(aiproxy_money_format(p, 150000000), "0.00015");
    CHECK_STR(aiproxy_money_format(p, 1), "0.000000000001");
    CHECK_STR(aiproxy_money_format(p, APR_INT64_C(12000000000010)),
              "12.00000000001");
    CHECK_STR(aiproxy_money_format(p, -150000000), "-0.00015");
    CHECK_STR(aiproxy_money_format(p, APR_INT64_C(-3000000000000)), "-3");
    CHECK_STR(aiproxy_money_format(p, -1), "-0.000000000001");
    CHECK_STR(aiproxy_money_format(p, APR_INT64_MAX), "9223372.036854775807");
    CHECK_STR(aiproxy_money_format(p, APR_INT64_MIN), "-9223372.036854775808");
}

static void test_money_round_trip(apr_pool_t *p)
{
    static const char *const amounts[] = {
        "0", "2", "0.00015", "0.000000000001", "123.456", "9223372.03685477",
        NULL
    };
    aiproxy_money_t m;
    int i;

    for (i = 0; amounts[i]; i++) {
        CHECK(aiproxy_money_parse(p, amounts[i], &m) == NULL);
        CHECK_STR(aiproxy_money_format(p, m), amounts[i]);
    }
}

static const char CHAT_USAGE[] =
    "{\"usage\":{\"prompt_tokens\":1000,\"completion_tokens\":200,"
    "\"total_tokens\":1200,\"prompt_tokens_details\":{\"cached_tokens\":400}}}";

static aiproxy_price_t price_of(apr_pool_t *p, const char *in,
                                const char *cached, const char *write,
                                const char *out)
{
    aiproxy_price_t pr;

    CHECK(aiproxy_price_parse(p, in, &pr.input) == NULL);
    CHECK(aiproxy_price_parse(p, cached, &pr.cached_input) == NULL);
    CHECK(aiproxy_price_parse(p, write, &pr.cache_write) == NULL);
    CHECK(aiproxy_price_parse(p, out, &pr.output) == NULL);
    return pr;
}

static void test_cost_of(apr_pool_t *p)
{
    aiproxy_price_t mini = price_of(p, "0.15", "0.075", "0", "0.60");
    aiproxy_price_t sonnet = price_of(p, "3", "0.30", "3.75", "15");
    aiproxy_price_t huge;
    aiproxy_usage_t u;

    /* gpt-4o-mini: 1000 prompt tokens, 400 of them cached, 200 output,
     * from the usage the API reports to the pico-dollar. */
    memset(&u, 0, sizeof(u));
    CHECK(aiproxy_usage_from_body(p, CHAT_USAGE, strlen(CHAT_USAGE),
                                  AIPROXY_API_OPENAI, &u) == 1);
    CHECK_INT(aiproxy_cost_of(&mini, &u),
              600 * 150000 + 400 * 75000 + 200 * 600000);
    CHECK_STR(aiproxy_money_format(p, aiproxy_cost_of(&mini, &u)), "0.00024");

    /* Anthropic with a cache write and a cache read. */
    memset(&u, 0, sizeof(u));
    u.input = 100;
    u.cache_write = 2000;
    u.cached_input = 5000;
    u.output = 300;
    CHECK_INT(aiproxy_cost_of(&sonnet, &u),
              APR_INT64_C(100) * 3000000 + APR_INT64_C(2000) * 3750000 +
              APR_INT64_C(5000) * 300000 + APR_INT64_C(300) * 15000000);
    CHECK_STR(aiproxy_money_format(p, aiproxy_cost_of(&sonnet, &u)), "0.0138");

    /* One token of each, so each price lands in its own field. */
    memset(&u, 0, sizeof(u));
    u.cache_write = 1;
    CHECK_INT(aiproxy_cost_of(&sonnet, &u), 3750000);
    memset(&u, 0, sizeof(u));
    u.cached_input = 1;
    CHECK_INT(aiproxy_cost_of(&sonnet, &u), 300000);
    memset(&u, 0, sizeof(u));
    CHECK_INT(aiproxy_cost_of(&sonnet, &u), 0);

    /* Negative counts cost nothing rather than refund. */
    u.input = -1000;
    u.output = 10;
    CHECK_INT(aiproxy_cost_of(&sonnet, &u), 150000000);

    /* Saturation: in one product, and in the sum. */
    memset(&u, 0, sizeof(u));
    u.output = APR_INT64_MAX / 1000;
    CHECK_INT(aiproxy_cost_of(&sonnet, &u), APR_INT64_MAX);
    huge = sonnet;
    huge.input = APR_INT64_MAX / 2;
    huge.output = APR_INT64_MAX / 2;
    memset(&u, 0, sizeof(u));
    u.input = 1;
    u.output = 1;
    CHECK_INT(aiproxy_cost_of(&huge, &u), APR_INT64_MAX - 1);
    u.input = 2;
    CHECK_INT(aiproxy_cost_of(&huge, &u), APR_INT64_MAX);
    u.input = APR_INT64_MAX;
    u.output = APR_INT64_MAX;
    CHECK_INT(aiproxy_cost_of(&huge, &u), APR_INT64_MAX);
    /* A product that would wrap to exactly 0 (2^62 * 4) still saturates. */
    huge.output = 4;
    memset(&u, 0, sizeof(u));
    u.output = APR_INT64_C(1) << 62;
    CHECK_INT(aiproxy_cost_of(&huge, &u), APR_INT64_MAX);
}

static void test_cost_ceiling(apr_pool_t *p)
{
    aiproxy_price_t mini = price_of(p, "0.15", "0.075", "0", "0.60");
    aiproxy_price_t sonnet = price_of(p, "3", "0.30", "3.75", "15");

    CHECK_INT(aiproxy_cost_ceiling(&mini, 1000, 200),
              1000 * 150000 + 200 * 600000);
    /* The dearest input rate is the cache write when there is one. */
    CHECK_INT(aiproxy_cost_ceiling(&sonnet, 1000, 200),
              APR_INT64_C(1000) * 3750000 + APR_INT64_C(200) * 15000000);
    CHECK_INT(aiproxy_cost_ceiling(&mini, 0, 0), 0);
    CHECK_INT(aiproxy_cost_ceiling(&mini, 1000, -1), 1000 * 150000);
    CHECK_INT(aiproxy_cost_ceiling(&mini, APR_INT64_MAX, 1), APR_INT64_MAX);
    CHECK_INT(aiproxy_cost_ceiling(&mini, 1, APR_INT64_MAX), APR_INT64_MAX);
    /* The ceiling is never below the cost of any usage within it. */
    {
        aiproxy_usage_t u = { 300, 400, 300, 0, 200 };

        CHECK(aiproxy_cost_of(&sonnet, &u) <=
              aiproxy_cost_ceiling(&sonnet, 1000, 200));
        CHECK(aiproxy_cost_of(&mini, &u) <=
              aiproxy_cost_ceiling(&mini, 1000, 200));
    }
}

/* ------------------------------------------------------------------ */
/* Inspect                                                              */

static const char *inspect(apr_pool_t *p, const char *body,
                           aiproxy_request_info_t *info)
{
    return aiproxy_inspect_request(p, body, strlen(body), AIPROXY_EP_OTHER, info);
}

static void test_inspect_ok(apr_pool_t *p)
{
    aiproxy_request_info_t info;

    CHECK(inspect(p, "{\"model\":\"gpt-4o-mini\",\"messages\":"
                  "[{\"role\":\"user\",\"content\":\"Hi\"}]}", &info) == NULL);
    CHECK_STR(info.model, "gpt-4o-mini");
    CHECK(info.root != NULL && aiproxy_json_is_object(info.root));
    CHECK_INT(info.stream, 0);
    CHECK_INT(info.include_usage, 0);
    CHECK_INT(info.max_output, -1);

    CHECK(inspect(p, "{\"model\":\"m\",\"stream\":true}", &info) == NULL);
    CHECK_INT(info.stream, 1);
    CHECK_INT(info.include_usage, 0);
    CHECK(inspect(p, "{\"model\":\"m\",\"stream\":false}", &info) == NULL);
    CHECK_INT(info.stream, 0);
    CHECK(inspect(p, "{\"model\":\"m\",\"stream\":true,\"stream_options\":"
                  "{\"include_usage\":true}}", &info) == NULL);
    CHECK_INT(info.stream, 1);
    CHECK_INT(info.include_usage, 1);
    CHECK(inspect(p, "{\"model\":\"m\",\"stream\":true,\"stream_options\":"
                  "{\"include_usage\":false}}", &info) == NULL);
    CHECK_INT(info.include_usage, 0);
    CHECK(inspect(p, "{\"model\":\"m\",\"stream_options\":{}}", &info) == NULL);
    CHECK_INT(info.include_usage, 0);

    /* Output limits: any of the three names, the largest wins. */
    CHECK(inspect(p, "{\"model\":\"m\",\"max_tokens\":100}", &info) == NULL);
    CHECK_INT(info.max_output, 100);
    CHECK(inspect(p, "{\"model\":\"m\",\"max_completion_tokens\":70}", &info)
          == NULL);
    CHECK_INT(info.max_output, 70);
    CHECK(inspect(p, "{\"model\":\"m\",\"max_output_tokens\":55}", &info)
          == NULL);
    CHECK_INT(info.max_output, 55);
    CHECK(inspect(p, "{\"model\":\"m\",\"max_tokens\":100,"
                  "\"max_completion_tokens\":300,\"max_output_tokens\":200}",
                  &info) == NULL);
    CHECK_INT(info.max_output, 300);
    CHECK(inspect(p, "{\"max_output_tokens\":900,\"model\":\"m\","
                  "\"max_tokens\":100}", &info) == NULL);
    CHECK_INT(info.max_output, 900);
    CHECK(inspect(p, "{\"model\":\"m\",\"max_tokens\":0}", &info) == NULL);
    CHECK_INT(info.max_output, 0);
    CHECK(inspect(p, "{\"model\":\"m\",\"max_tokens\":256.0}", &info) == NULL);
    CHECK_INT(info.max_output, 256);

    /* Whitespace around the JSON text is allowed. */
    CHECK(inspect(p, " \r\n\t{\"model\":\"m\"}\n", &info) == NULL);
    CHECK_STR(info.model, "m");
    /* Escapes in the model name are decoded. */
    CHECK(inspect(p, "{\"model\":\"gpt\\u002d4o\"}", &info) == NULL);
    CHECK_STR(info.model, "gpt-4o");
    /* Only len bytes are read: what follows is not part of the body. */
    CHECK(aiproxy_inspect_request(p, "{\"model\":\"m\"}garbage", 13, AIPROXY_EP_CHAT, &info)
          == NULL);
}

static const char *inspect_at(apr_pool_t *p, aiproxy_endpoint_t ep,
                              const char *body, aiproxy_request_info_t *info)
{
    return aiproxy_inspect_request(p, body, strlen(body), ep, info);
}

/* What bounds a request's cost: choices, images, input the body does not
 * show, and the features refused because their cost is beyond tokens. */
static void test_inspect_bounds(apr_pool_t *p)
{
    aiproxy_request_info_t info;

    CHECK(inspect_at(p, AIPROXY_EP_CHAT, "{\"model\":\"m\",\"n\":64}", &info)
          == NULL);
    CHECK_INT(info.choices, 64);
    CHECK(inspect_at(p, AIPROXY_EP_CHAT, "{\"model\":\"m\",\"n\":null}", &info)
          == NULL);
    CHECK_INT(info.choices, 1);
    CHECK_REJECT(inspect_at(p, AIPROXY_EP_CHAT, "{\"model\":\"m\",\"n\":0}",
                            &info), "'n'");
    CHECK_REJECT(inspect_at(p, AIPROXY_EP_CHAT, "{\"model\":\"m\",\"n\":129}",
                            &info), "'n'");
    CHECK_REJECT(inspect_at(p, AIPROXY_EP_CHAT, "{\"model\":\"m\",\"n\":\"2\"}",
                            &info), "'n'");

    /* Images of every API, wherever they are nested. */
    CHECK(inspect_at(p, AIPROXY_EP_CHAT, "{\"model\":\"m\",\"messages\":[{"
                     "\"role\":\"user\",\"content\":[{\"type\":\"text\","
                     "\"text\":\"hi\"},{\"type\":\"image_url\",\"image_url\":"
                     "{\"url\":\"https://x/a.png\"}},{\"type\":\"image_url\","
                     "\"image_url\":{\"url\":\"https://x/b.png\"}}]}]}", &info)
          == NULL);
    CHECK_INT(info.images, 2);
    CHECK(info.unseen_input == NULL && info.refused == NULL);
    CHECK(inspect_at(p, AIPROXY_EP_RESPONSES, "{\"model\":\"m\",\"input\":[{"
                     "\"role\":\"user\",\"content\":[{\"type\":\"input_image\","
                     "\"image_url\":\"data:image/png;base64,AAAA\"}]}]}", &info)
          == NULL);
    CHECK_INT(info.images, 1);
    CHECK(inspect_at(p, AIPROXY_EP_MESSAGES, "{\"model\":\"m\",\"messages\":[{"
                     "\"role\":\"user\",\"content\":[{\"type\":\"tool_result\","
                     "\"tool_use_id\":\"t\",\"content\":[{\"type\":\"image\","
                     "\"source\":{\"type\":\"url\",\"url\":\"https://x\"}}]}]}]}",
                     &info) == NULL);
    CHECK_INT(info.images, 1);

    /* Input kept at the provider. */
    CHECK(inspect_at(p, AIPROXY_EP_RESPONSES, "{\"model\":\"m\","
                     "\"previous_response_id\":\"resp_1\",\"input\":\"go\"}",
                     &info) == NULL);
    CHECK_STR(info.unseen_input, "previous_response_id");
    CHECK(inspect_at(p, AIPROXY_EP_RESPONSES, "{\"model\":\"m\","
                     "\"previous_response_id\":null,\"input\":\"go\"}", &info)
          == NULL);
    CHECK(info.unseen_input == NULL);
    CHECK(inspect_at(p, AIPROXY_EP_RESPONSES, "{\"model\":\"m\","
                     "\"conversation\":\"conv_1\"}", &info) == NULL);
    CHECK_STR(info.unseen_input, "conversation");
    CHECK(inspect_at(p, AIPROXY_EP_RESPONSES, "{\"model\":\"m\",\"input\":[{"
                     "\"type\":\"item_reference\",\"id\":\"msg_1\"}]}", &info)
          == NULL);
    CHECK(info.unseen_input != NULL);
    CHECK(inspect_at(p, AIPROXY_EP_CHAT, "{\"model\":\"m\",\"messages\":[{"
                     "\"role\":\"user\",\"content\":[{\"type\":\"file\","
                     "\"file\":{\"file_id\":\"file-1\"}}]}]}", &info) == NULL);
    CHECK(info.unseen_input != NULL);

    /* Costs beyond tokens are refused, named. */
    CHECK(inspect_at(p, AIPROXY_EP_RESPONSES, "{\"model\":\"m\","
                     "\"background\":true}", &info) == NULL);
    CHECK_REJECT(info.refused, "Background");
    CHECK(inspect_at(p, AIPROXY_EP_RESPONSES, "{\"model\":\"m\","
                     "\"background\":false}", &info) == NULL);
    CHECK(info.refused == NULL);
    CHECK(inspect_at(p, AIPROXY_EP_CHAT, "{\"model\":\"m\","
                     "\"service_tier\":\"priority\"}", &info) == NULL);
    CHECK_REJECT(info.refused, "priority");
    CHECK(inspect_at(p, AIPROXY_EP_CHAT, "{\"model\":\"m\","
                     "\"service_tier\":\"flex\"}", &info) == NULL);
    CHECK(info.refused == NULL);
    CHECK(inspect_at(p, AIPROXY_EP_RESPONSES, "{\"model\":\"m\",\"tools\":[{"
                     "\"type\":\"function\",\"name\":\"f\"},{\"type\":"
                     "\"web_search\"}]}", &info) == NULL);
    CHECK_REJECT(info.refused, "web_search");
    CHECK(inspect_at(p, AIPROXY_EP_CHAT, "{\"model\":\"m\",\"tools\":[{"
                     "\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}",
                     &info) == NULL);
    CHECK(info.refused == NULL && info.tools == 1);
    CHECK(inspect_at(p, AIPROXY_EP_MESSAGES, "{\"model\":\"m\",\"tools\":[{"
                     "\"name\":\"f\",\"input_schema\":{\"type\":\"object\"}}]}",
                     &info) == NULL);
    CHECK(info.refused == NULL && info.tools == 1);
    CHECK(inspect_at(p, AIPROXY_EP_MESSAGES, "{\"model\":\"m\",\"tools\":[{"
                     "\"type\":\"web_search_20250305\",\"name\":\"web_search\"}"
                     "]}", &info) == NULL);
    CHECK_REJECT(info.refused, "web_search_20250305");
    CHECK(inspect_at(p, AIPROXY_EP_MESSAGES, "{\"model\":\"m\",\"system\":[{"
                     "\"type\":\"text\",\"text\":\"s\",\"cache_control\":{"
                     "\"type\":\"ephemeral\",\"ttl\":\"1h\"}}]}", &info) == NULL);
    CHECK(info.refused == NULL && info.cache_1h == 1);
    CHECK(inspect_at(p, AIPROXY_EP_MESSAGES, "{\"model\":\"m\",\"system\":[{"
                     "\"type\":\"text\",\"text\":\"s\",\"cache_control\":{"
                     "\"type\":\"ephemeral\",\"ttl\":\"2h\"}}]}", &info) == NULL);
    CHECK_REJECT(info.refused, "2h");
    CHECK(inspect_at(p, AIPROXY_EP_MESSAGES, "{\"model\":\"m\",\"system\":[{"
                     "\"type\":\"text\",\"text\":\"s\",\"cache_control\":{"
                     "\"type\":\"ephemeral\",\"ttl\":\"5m\"}}]}", &info) == NULL);
    CHECK(info.refused == NULL);
    CHECK(inspect_at(p, AIPROXY_EP_CHAT, "{\"model\":\"m\",\"modalities\":["
                     "\"text\",\"audio\"]}", &info) == NULL);
    CHECK_REJECT(info.refused, "audio");
    CHECK(inspect_at(p, AIPROXY_EP_CHAT, "{\"model\":\"m\","
                     "\"web_search_options\":{}}", &info) == NULL);
    CHECK_REJECT(info.refused, "Web search");
    CHECK(inspect_at(p, AIPROXY_EP_CHAT, "{\"model\":\"m\",\"messages\":[{"
                     "\"role\":\"assistant\",\"audio\":{\"id\":\"a1\"}}]}",
                     &info) == NULL);
    CHECK_REJECT(info.refused, "Audio");

    /* Items the provider fills from what it keeps. */
    CHECK(inspect_at(p, AIPROXY_EP_RESPONSES, "{\"model\":\"m\",\"input\":["
                     "{\"id\":\"msg_1\"},{\"role\":\"user\",\"content\":"
                     "\"sum up\"}]}", &info) == NULL);
    CHECK_STR(info.unseen_input, "an input item given by id");
    CHECK(inspect_at(p, AIPROXY_EP_RESPONSES, "{\"model\":\"m\",\"input\":["
                     "{\"type\":null,\"id\":\"msg_1\"}]}", &info) == NULL);
    CHECK(info.unseen_input != NULL);
    CHECK(inspect_at(p, AIPROXY_EP_RESPONSES, "{\"model\":\"m\",\"input\":["
                     "{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[]}]}",
                     &info) == NULL);
    CHECK_REJECT(info.unseen_input, "encrypted_content");
    CHECK(inspect_at(p, AIPROXY_EP_RESPONSES, "{\"model\":\"m\",\"input\":["
                     "{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[],"
                     "\"encrypted_content\":\"gAAA\"},{\"type\":\"message\","
                     "\"id\":\"msg_2\",\"role\":\"assistant\",\"content\":"
                     "[{\"type\":\"output_text\",\"text\":\"hi\"}]}]}", &info)
          == NULL);
    CHECK(info.unseen_input == NULL);

    /* An output limit of another endpoint would go upstream unbounded. */
    CHECK_REJECT(inspect_at(p, AIPROXY_EP_CHAT, "{\"model\":\"m\","
                            "\"max_output_tokens\":1}", &info),
                 "max_completion_tokens");
    CHECK_REJECT(inspect_at(p, AIPROXY_EP_RESPONSES, "{\"model\":\"m\","
                            "\"max_tokens\":1}", &info), "max_output_tokens");
    CHECK_REJECT(inspect_at(p, AIPROXY_EP_MESSAGES, "{\"model\":\"m\","
                            "\"max_completion_tokens\":1}", &info), "max_tokens");
    CHECK_REJECT(inspect_at(p, AIPROXY_EP_EMBEDDINGS, "{\"model\":\"m\","
                            "\"max_tokens\":1}", &info), "max_tokens");
    CHECK(inspect_at(p, AIPROXY_EP_CHAT, "{\"model\":\"m\",\"max_tokens\":5,"
                     "\"max_completion_tokens\":7}", &info) == NULL);
    CHECK_INT(info.max_output, 7);

    /* Reasoning a stream may not show. */
    CHECK(inspect_at(p, AIPROXY_EP_RESPONSES, "{\"model\":\"m\",\"reasoning\":"
                     "{\"effort\":\"high\"}}", &info) == NULL && info.reasoning);
    CHECK(inspect_at(p, AIPROXY_EP_MESSAGES, "{\"model\":\"m\",\"thinking\":"
                     "{\"type\":\"enabled\",\"budget_tokens\":2000}}", &info)
          == NULL && info.reasoning);
    CHECK(inspect_at(p, AIPROXY_EP_MESSAGES, "{\"model\":\"m\",\"thinking\":"
                     "{\"type\":\"disabled\"}}", &info) == NULL && !info.reasoning);
    CHECK(inspect_at(p, AIPROXY_EP_CHAT, "{\"model\":\"m\"}", &info) == NULL &&
          !info.reasoning);
}

/* The text a delta carries, for the estimate of a cut stream. */
static void test_delta_text(apr_pool_t *p)
{
    static const char *const cases[][2] = {
        { "{\"choices\":[{\"delta\":{\"content\":\"Hello\"}}]}", "5" },
        { "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{"
          "\"arguments\":\"{\\\"a\\\":1}\"}}]}}]}", "9" },
        { "{\"type\":\"response.output_text.delta\",\"delta\":\"abc\"}", "3" },
        { "{\"type\":\"response.reasoning_summary_text.delta\","
          "\"delta\":\"think\",\"item_id\":\"rs_1\"}", "5" },
        { "{\"type\":\"content_block_delta\",\"delta\":{\"type\":"
          "\"thinking_delta\",\"thinking\":\"hmm\"}}", "3" },
        { "{\"type\":\"content_block_delta\",\"delta\":{\"type\":"
          "\"input_json_delta\",\"partial_json\":\"{\\\"x\\\"\"}}", "6" },
        /* A key's name as a value is not a key. */
        { "{\"type\":\"text\",\"x\":\"content\"}", "0" },
        { "{\"text\":\"unterminated", "12" },
        { "", "0" },
    };
    apr_size_t i;

    (void)p;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        CHECK_INT(aiproxy_delta_text_len(cases[i][0], strlen(cases[i][0])),
                  atoi(cases[i][1]));
}

/* The top-level member span: removing it leaves valid JSON. */
static void test_member_span(apr_pool_t *p)
{
    static const char *const cases[][3] = {
        { "{\"a\":1,\"usage\":null}", "{\"a\":1}", "null" },
        { "{\"usage\":null,\"a\":1}", "{\"a\":1}", "null" },
        { "{\"usage\":{\"x\":[1,{\"y\":\"}\"}]}}", "{}", "{\"x\":[1,{\"y\":\"}\"}]}" },
        { "{\"a\":{\"usage\":1} , \"usage\" : 5 , \"b\":\"usage\"}",
          "{\"a\":{\"usage\":1} , \"b\":\"usage\"}", "5" },
        { "{\"a\":\"x\\\"usage\\\":1\",\"usage\":true}", "{\"a\":\"x\\\"usage\\\":1\"}",
          "true" },
    };
    apr_size_t i, s, e, vs, vl;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *in = cases[i][0];
        apr_size_t n = strlen(in);

        int found = aiproxy_json_member_span(in, n, "usage", &s, &e, &vs, &vl);

        CHECK(found);
        if (!found)
            continue;
        CHECK_STR(apr_pstrcat(p, apr_pstrmemdup(p, in, s), in + e, NULL),
                  cases[i][1]);
        CHECK_STR(apr_pstrmemdup(p, in + vs, vl), cases[i][2]);
    }
    CHECK(!aiproxy_json_member_span("{\"a\":{\"usage\":1}}", 17, "usage", &s,
                                    &e, &vs, &vl));
    CHECK(!aiproxy_json_member_span("[1]", 3, "usage", &s, &e, &vs, &vl));
    CHECK(!aiproxy_json_member_span("{\"usage\":", 9, "usage", &s, &e, &vs,
                                    &vl));
    CHECK(!aiproxy_json_member_span("{\"usage\":1", 10, "usage", &s, &e, &vs,
                                    &vl));
}

static void test_path_endpoint(apr_pool_t *p)
{
    const char *pv;

    CHECK_STR(aiproxy_path_endpoint(p, "/openai/v1", "/openai/v1/chat/completions",
                                    0, &pv), "chat/completions");
    CHECK(pv == NULL);
    CHECK_STR(aiproxy_path_endpoint(p, "/v1", "/v1//models/m1//", 0, &pv),
              "models/m1");
    CHECK_STR(aiproxy_path_endpoint(p, "/proxy", "/proxy/second/v1/embeddings",
                                    1, &pv), "embeddings");
    CHECK_STR(pv, "second");
    CHECK_STR(aiproxy_path_endpoint(p, "/proxy", "/proxy/second/v2/embeddings",
                                    1, &pv), "");
    CHECK_STR(aiproxy_path_endpoint(p, "/proxy", "/proxy/second", 1, &pv), "");
    CHECK_STR(aiproxy_path_endpoint(p, "/proxy", "/proxy/second/v1x/m", 1, &pv),
              "");
}

static void test_inspect_bad(apr_pool_t *p)
{
    aiproxy_request_info_t info;
    static const char nul_body[] = "{\"model\":\"m\"}\0";

    CHECK_REJECT(inspect(p, "{\"model\":", &info), "not valid JSON");
    CHECK(info.root == NULL);
    CHECK_REJECT(inspect(p, "", &info), "not valid JSON");
    CHECK_REJECT(inspect(p, "{\"model\":\"m\"} {}", &info), "not valid JSON");
    CHECK_REJECT(inspect(p, "{\"model\":\"m\",}", &info), "not valid JSON");
    CHECK_REJECT(inspect(p, "{'model':'m'}", &info), "not valid JSON");
    CHECK_REJECT(aiproxy_inspect_request(p, nul_body, sizeof(nul_body) - 1,
                                         AIPROXY_EP_CHAT, &info),
                 "not valid JSON");
    CHECK_REJECT(inspect(p, "{\"model\":\"a\\u0000b\"}", &info),
                 "not valid JSON");
    CHECK_REJECT(inspect(p, "[{\"model\":\"m\"}]", &info), "JSON object");
    /* Scalars at the top are refused by the parser itself. */
    CHECK(inspect(p, "\"model\"", &info) != NULL);
    CHECK(inspect(p, "null", &info) != NULL);
    CHECK(inspect(p, "42", &info) != NULL);
    CHECK(info.root == NULL && info.model == NULL);

    CHECK_REJECT(inspect(p, "{\"messages\":[]}", &info), "no 'model'");
    CHECK_REJECT(inspect(p, "{}", &info), "no 'model'");
    CHECK_REJECT(inspect(p, "{\"Model\":\"m\"}", &info), "no 'model'");
    CHECK_REJECT(inspect(p, "{\"model\":5}", &info), "non-empty string");
    CHECK_REJECT(inspect(p, "{\"model\":null}", &info), "non-empty string");
    CHECK_REJECT(inspect(p, "{\"model\":[\"m\"]}", &info), "non-empty string");
    CHECK_REJECT(inspect(p, "{\"model\":\"\"}", &info), "non-empty string");

    /* Duplicate keys: at the top, spelled differently, and nested. */
    CHECK_REJECT(inspect(p, "{\"model\":\"cheap\",\"model\":\"dear\"}", &info),
                 "not valid JSON");
    CHECK_REJECT(inspect(p, "{\"model\":\"cheap\",\"m\\u006fdel\":\"dear\"}",
                         &info), "not valid JSON");
    CHECK_REJECT(inspect(p, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
                         "\"role\":\"system\"}]}", &info), "not valid JSON");
    CHECK_REJECT(inspect(p, "{\"model\":\"m\",\"max_tokens\":1,"
                         "\"max_tokens\":100000}", &info), "not valid JSON");
    CHECK_REJECT(inspect(p, "{\"model\":\"m\",\"stream_options\":"
                         "{\"include_usage\":true,\"include_usage\":false}}",
                         &info), "not valid JSON");

    CHECK_REJECT(inspect(p, "{\"model\":\"m\",\"stream\":\"true\"}", &info),
                 "'stream'");
    CHECK_REJECT(inspect(p, "{\"model\":\"m\",\"stream\":1}", &info),
                 "'stream'");
    CHECK_REJECT(inspect(p, "{\"model\":\"m\",\"max_tokens\":-1}", &info),
                 "'max_tokens'");
    CHECK_REJECT(inspect(p, "{\"model\":\"m\",\"max_completion_tokens\":"
                         "\"100\"}", &info), "'max_completion_tokens'");
    CHECK_REJECT(inspect(p, "{\"model\":\"m\",\"max_output_tokens\":1.5}",
                         &info), "'max_output_tokens'");
    CHECK_REJECT(inspect(p, "{\"model\":\"m\",\"max_tokens\":1e300}", &info),
                 "'max_tokens'");
    /* A bad limit is refused even when another one is fine. */
    CHECK_REJECT(inspect(p, "{\"model\":\"m\",\"max_tokens\":10,"
                         "\"max_output_tokens\":-5}", &info),
                 "'max_output_tokens'");
}

static aiproxy_usage_t usage_of(apr_pool_t *p, const char *body,
                                aiproxy_api_t api, int *found)
{
    aiproxy_usage_t u;

    memset(&u, 0, sizeof(u));
    *found = aiproxy_usage_from_body(p, body, strlen(body), api, &u);
    return u;
}

#define CHECK_USAGE(u, in, cached, write, out) do { \
        CHECK_INT((u).input, in); \
        CHECK_INT((u).cached_input, cached); \
        CHECK_INT((u).cache_write, write); \
        CHECK_INT((u).output, out); \
    } while (0)

/* Anthropic names the hour's writes inside cache_creation: they leave the
 * 5-minute count, by the scanner and by jansson alike. */
static void test_usage_cache_hour(apr_pool_t *p)
{
    static const char *const bodies[] = {
        "{\"usage\":{\"input_tokens\":10,\"cache_creation_input_tokens\":300,"
        "\"cache_read_input_tokens\":5,\"cache_creation\":{"
        "\"ephemeral_5m_input_tokens\":100,\"ephemeral_1h_input_tokens\":200},"
        "\"output_tokens\":7}}",
        /* Escapes: jansson's to read. */
        "{\"usage\":{\"input_tokens\":10,\"cache_creation_input_tokens\":300,"
        "\"cache_read_input_tokens\":5,\"cache_\\u0063reation\":{"
        "\"ephemeral_5m_input_tokens\":100,\"ephemeral_1h_input_tokens\":200},"
        "\"output_tokens\":7}}",
    };
    aiproxy_price_t price;
    apr_size_t i;

    memset(&price, 0, sizeof(price));
    price.input = 1000000;
    price.cache_write = 1250000;
    price.cache_write_1h = 2000000;
    for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        aiproxy_usage_t u;

        memset(&u, 0, sizeof(u));
        CHECK(aiproxy_usage_from_body(p, bodies[i], strlen(bodies[i]),
                                      AIPROXY_API_ANTHROPIC, &u) == 1);
        CHECK_USAGE(u, 10, 5, 100, 7);
        CHECK_INT(u.cache_write_1h, 200);
        CHECK_INT(aiproxy_cost_of(&price, &u), 10 * 1000000 + 100 * 1250000 +
                  200 * 2000000);
    }
    /* Unpriced, an hour's write still pays twice the input. */
    {
        aiproxy_usage_t u;

        memset(&u, 0, sizeof(u));
        u.cache_write_1h = 3;
        price.cache_write_1h = 0;
        CHECK_INT(aiproxy_cost_of(&price, &u), 3 * 2000000);
    }
}

static aiproxy_json_t *parse(apr_pool_t *p, const char *text)
{
    const char *err = NULL;

    return aiproxy_json_parse(p, text, strlen(text), &err);
}

static void test_usage(apr_pool_t *p)
{
    aiproxy_usage_t u;
    aiproxy_json_t *start, *delta;
    int found;

    /* Chat completion: cached tokens are inside prompt_tokens. */
    u = usage_of(p, "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\","
                 "\"choices\":[{\"index\":0,\"message\":"
                 "{\"role\":\"assistant\",\"content\":\"Hi\"},"
                 "\"finish_reason\":\"stop\"}],"
                 "\"usage\":{\"prompt_tokens\":1000,\"completion_tokens\":200,"
                 "\"total_tokens\":1200,\"prompt_tokens_details\":"
                 "{\"cached_tokens\":400,\"audio_tokens\":0},"
                 "\"completion_tokens_details\":{\"reasoning_tokens\":0}}}",
                 AIPROXY_API_OPENAI, &found);
    CHECK_INT(found, 1);
    CHECK_USAGE(u, 600, 400, 0, 200);

    /* No details: nothing cached. */
    u = usage_of(p, "{\"usage\":{\"prompt_tokens\":12,"
                 "\"completion_tokens\":3}}",
                 AIPROXY_API_OPENAI, &found);
    CHECK_INT(found, 1);
    CHECK_USAGE(u, 12, 0, 0, 3);

    /* More cached than prompt is clamped, never a negative input. */
    u = usage_of(p, "{\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":1,"
                 "\"prompt_tokens_details\":{\"cached_tokens\":50}}}",
                 AIPROXY_API_OPENAI, &found);
    CHECK_USAGE(u, 0, 10, 0, 1);

    /* Embeddings: no completion. */
    u = usage_of(p, "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\","
                 "\"index\":0,\"embedding\":[0.1,-0.2]}],"
                 "\"model\":\"text-embedding-3-small\","
                 "\"usage\":{\"prompt_tokens\":8,\"total_tokens\":8}}",
                 AIPROXY_API_OPENAI, &found);
    CHECK_INT(found, 1);
    CHECK_USAGE(u, 8, 0, 0, 0);

    /* Responses API. */
    u = usage_of(p, "{\"id\":\"resp_1\",\"object\":\"response\","
                 "\"status\":\"completed\",\"usage\":{\"input_tokens\":328,"
                 "\"input_tokens_details\":{\"cached_tokens\":128},"
                 "\"output_tokens\":52,\"output_tokens_details\":"
                 "{\"reasoning_tokens\":10},\"total_tokens\":380}}",
                 AIPROXY_API_OPENAI, &found);
    CHECK_INT(found, 1);
    CHECK_USAGE(u, 200, 128, 0, 52);

    /* Anthropic: input_tokens excludes cache reads and writes. */
    u = usage_of(p, "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":"
                 "\"assistant\",\"content\":[{\"type\":\"text\",\"text\":"
                 "\"Hi\"}],\"stop_reason\":\"end_turn\",\"usage\":"
                 "{\"input_tokens\":12,\"cache_creation_input_tokens\":100,"
                 "\"cache_read_input_tokens\":2000,\"output_tokens\":40}}",
                 AIPROXY_API_ANTHROPIC, &found);
    CHECK_INT(found, 1);
    CHECK_USAGE(u, 12, 2000, 100, 40);

    /* Anthropic streaming: message_start, then message_delta; either order
     * merges to the same counts, field by field. */
    start = parse(p, "{\"input_tokens\":12,"
                  "\"cache_creation_input_tokens\":100,"
                  "\"cache_read_input_tokens\":2000,\"output_tokens\":1}");
    delta = parse(p, "{\"output_tokens\":40}");
    CHECK(start != NULL && delta != NULL);
    memset(&u, 0, sizeof(u));
    CHECK_INT(aiproxy_usage_merge(start, AIPROXY_API_ANTHROPIC, &u), 1);
    CHECK_USAGE(u, 12, 2000, 100, 1);
    CHECK_INT(aiproxy_usage_merge(delta, AIPROXY_API_ANTHROPIC, &u), 1);
    CHECK_USAGE(u, 12, 2000, 100, 40);
    memset(&u, 0, sizeof(u));
    aiproxy_usage_merge(delta, AIPROXY_API_ANTHROPIC, &u);
    aiproxy_usage_merge(start, AIPROXY_API_ANTHROPIC, &u);
    CHECK_USAGE(u, 12, 2000, 100, 40);
    /* A later, cumulative message_delta carrying every field. */
    delta = parse(p, "{\"input_tokens\":12,"
                  "\"cache_creation_input_tokens\":100,"
                  "\"cache_read_input_tokens\":2000,\"output_tokens\":503}");
    CHECK(delta != NULL);
    aiproxy_usage_merge(delta, AIPROXY_API_ANTHROPIC, &u);
    CHECK_USAGE(u, 12, 2000, 100, 503);

    /* No usage, or usage of no use. */
    u = usage_of(p, "{\"id\":\"x\",\"choices\":[]}", AIPROXY_API_OPENAI,
                 &found);
    CHECK_INT(found, 0);
    CHECK_USAGE(u, 0, 0, 0, 0);
    u = usage_of(p, "{\"usage\":null}", AIPROXY_API_OPENAI, &found);
    CHECK_INT(found, 0);
    CHECK_USAGE(u, 0, 0, 0, 0);
    u = usage_of(p, "{\"usage\":{}}", AIPROXY_API_ANTHROPIC, &found);
    CHECK_INT(found, 0);
    u = usage_of(p, "{\"usage\":{\"total_tokens\":9}}", AIPROXY_API_OPENAI,
                 &found);
    CHECK_INT(found, 0);
    CHECK_USAGE(u, 0, 0, 0, 0);
    u = usage_of(p, "{\"usage\":{\"prompt_tokens\":-5,"
                 "\"completion_tokens\":3}}",
                 AIPROXY_API_OPENAI, &found);
    CHECK_INT(found, 0);
    CHECK_USAGE(u, 0, 0, 0, 0);
    u = usage_of(p, "{\"usage\":{\"prompt_tokens\":\"5\"}}", AIPROXY_API_OPENAI,
                 &found);
    CHECK_INT(found, 0);
    u = usage_of(p, "not json", AIPROXY_API_OPENAI, &found);
    CHECK_INT(found, 0);
    CHECK_USAGE(u, 0, 0, 0, 0);
    u = usage_of(p, "[{\"usage\":{\"prompt_tokens\":5}}]", AIPROXY_API_OPENAI,
                 &found);
    CHECK_INT(found, 0);
    CHECK_INT(aiproxy_usage_merge(NULL, AIPROXY_API_OPENAI, &u), 0);
}

/* ------------------------------------------------------------------ */
/* JSON wrapper                                                         */

static void test_json(apr_pool_t *p)
{
    const char *err = NULL;
    aiproxy_json_t *v;
    apr_int64_t n;
    apr_size_t len;
    char *s;

    v = parse(p, "{\"a\":1,\"b\":2.0,\"c\":2.5,\"d\":\"x\","
              "\"e\":true,\"f\":[1,2,3],\"g\":1e300}");
    CHECK(v != NULL);
    CHECK(aiproxy_json_int(aiproxy_json_get(v, "a"), &n) && n == 1);
    CHECK(aiproxy_json_int(aiproxy_json_get(v, "b"), &n) && n == 2);
    CHECK(!aiproxy_json_int(aiproxy_json_get(v, "c"), &n));
    CHECK(!aiproxy_json_int(aiproxy_json_get(v, "d"), &n));
    CHECK(!aiproxy_json_int(aiproxy_json_get(v, "g"), &n));
    CHECK_STR(aiproxy_json_string(aiproxy_json_get(v, "d")), "x");
    CHECK(aiproxy_json_string(aiproxy_json_get(v, "a")) == NULL);
    CHECK_INT(aiproxy_json_bool(aiproxy_json_get(v, "e")), 1);
    CHECK_INT(aiproxy_json_bool(aiproxy_json_get(v, "a")), -1);
    CHECK_INT(aiproxy_json_array_size(aiproxy_json_get(v, "f")), 3);
    CHECK_INT(aiproxy_json_array_size(aiproxy_json_get(v, "d")), 0);
    CHECK(aiproxy_json_get(aiproxy_json_get(v, "d"), "x") == NULL);
    CHECK(aiproxy_json_array_remove(aiproxy_json_get(v, "f"), 0) == 0);
    CHECK(aiproxy_json_int(aiproxy_json_array_at(aiproxy_json_get(v, "f"), 0),
                           &n) && n == 2);

    err = NULL;
    CHECK(aiproxy_json_parse(p, "{\"a\":1,\"a\":1}", 13, &err) == NULL);
    CHECK(err != NULL && strstr(err, "duplicate") != NULL);

    /* The include_usage rewrite of a streamed chat request. */
    v = parse(p, "{\"model\":\"m\"}");
    CHECK(aiproxy_json_set_nested_true(v, "stream_options", "include_usage")
          == 0);
    CHECK_STR(aiproxy_json_dump(p, v, &len),
              "{\"model\":\"m\",\"stream_options\":{\"include_usage\":true}}");
    v = parse(p, "{\"stream_options\":{\"include_usage\":false,\"x\":1}}");
    CHECK(v && aiproxy_json_set_nested_true(v, "stream_options",
                                            "include_usage") == 0);
    CHECK_STR(aiproxy_json_dump(p, v, &len),
              "{\"stream_options\":{\"include_usage\":true,\"x\":1}}");
    v = parse(p, "{\"stream_options\":null}");
    CHECK(v && aiproxy_json_set_nested_true(v, "stream_options",
                                            "include_usage") == 0);
    CHECK_STR(aiproxy_json_dump(p, v, NULL),
              "{\"stream_options\":{\"include_usage\":true}}");
    v = parse(p, "{\"stream_options\":5}");
    CHECK(v && aiproxy_json_set_nested_true(v, "stream_options",
                                            "include_usage") == -1);

    /* Quoting: the result parses back to the same string. */
    s = aiproxy_json_quote(p, "a\"b\\c\n\x01\x1f/\xc3\xa9");
    CHECK_STR(s, "\"a\\\"b\\\\c\\u000a\\u0001\\u001f/\xc3\xa9\"");
    v = aiproxy_json_parse(p, apr_pstrcat(p, "[", s, "]", NULL),
                           strlen(s) + 2, &err);
    CHECK_STR(aiproxy_json_string(aiproxy_json_array_at(v, 0)),
              "a\"b\\c\n\x01\x1f/\xc3\xa9");
    CHECK_STR(aiproxy_json_quote(p, ""), "\"\"");
}

/* ------------------------------------------------------------------ */
/* SSE                                                                  */

#define MAX_EVENTS 64

typedef struct {
    apr_pool_t *p;
    int n;
    const char *raw[MAX_EVENTS];
    apr_size_t raw_len[MAX_EVENTS];
    const char *name[MAX_EVENTS];
    const char *data[MAX_EVENTS];
    apr_size_t data_len[MAX_EVENTS];
    int bad_nul;            /* data or name not NUL-terminated as promised */
} events_t;

static void collect(void *baton, const aiproxy_sse_event_t *ev)
{
    events_t *e = baton;

    if (ev->data[ev->data_len] != '\0' || strlen(ev->data) > ev->data_len)
        e->bad_nul = 1;
    if (e->n >= MAX_EVENTS)
        return;
    e->raw[e->n] = apr_pstrmemdup(e->p, ev->raw, ev->raw_len);
    e->raw_len[e->n] = ev->raw_len;
    e->name[e->n] = apr_pstrdup(e->p, ev->name);
    e->data[e->n] = apr_pstrmemdup(e->p, ev->data, ev->data_len);
    e->data_len[e->n] = ev->data_len;
    e->n++;
}

/* Feeds `in` in pieces of `step` bytes (0: whole) and collects the events;
 * returns the pending tail. */
static const char *split_events(apr_pool_t *p, const char *in, apr_size_t len,
                                apr_size_t step, apr_size_t max_event,
                                events_t *e, apr_size_t *pending_len)
{
    aiproxy_sse_t *s = aiproxy_sse_create(p, max_event);
    apr_size_t off = 0;

    memset(e, 0, sizeof(*e));
    e->p = p;
    if (!step)
        step = len ? len : 1;
    for (off = 0; off < len; off += step)
        aiproxy_sse_feed(s, in + off, len - off < step ? len - off : step,
                         collect, e);
    return aiproxy_sse_take_pending(s, pending_len);
}

static int same_events(const events_t *a, const events_t *b)
{
    int i;

    if (a->n != b->n)
        return 0;
    for (i = 0; i < a->n; i++)
        if (a->raw_len[i] != b->raw_len[i] ||
            memcmp(a->raw[i], b->raw[i], a->raw_len[i]) ||
            strcmp(a->name[i], b->name[i]) ||
            a->data_len[i] != b->data_len[i] ||
            memcmp(a->data[i], b->data[i], a->data_len[i]))
            return 0;
    return 1;
}

/* All raw bytes, then the pending tail, give back the input. */
static int raw_is_input(apr_pool_t *p, const events_t *e, const char *pending,
                        apr_size_t pending_len, const char *in, apr_size_t len)
{
    apr_size_t total = 0;
    char *all;
    int i;

    for (i = 0; i < e->n; i++)
        total += e->raw_len[i];
    if (total + pending_len != len)
        return 0;
    all = apr_palloc(p, len + 1);
    total = 0;
    for (i = 0; i < e->n; i++) {
        memcpy(all + total, e->raw[i], e->raw_len[i]);
        total += e->raw_len[i];
    }
    memcpy(all + total, pending, pending_len);
    return !memcmp(all, in, len);
}

static const char openai_stream[] =
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":"
    "\"assistant\",\"content\":\"\"}}]}\n\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
    "\"Hello\"}}]}\n\n"
    ": keep-alive\n\n"
    "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,"
    "\"completion_tokens\":2}}\n\n"
    "data: [DONE]\n\n";

static const char anthropic_stream[] =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"usage\":"
    "{\"input_tokens\":12,\"output_tokens\":1}}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
    "{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n"
    "event: ping\n"
    "data: {\"type\": \"ping\"}\n\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":40}}\n\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n\n";

/* The same stream with every \n replaced by `eol`. */
static char *with_eol(apr_pool_t *p, const char *in, const char *eol)
{
    apr_size_t n = 0, k = strlen(eol);
    const char *c;
    char *out, *o;

    for (c = in; *c; c++)
        n += *c == '\n' ? k : 1;
    o = out = apr_palloc(p, n + 1);
    for (c = in; *c; c++) {
        if (*c == '\n') {
            memcpy(o, eol, k);
            o += k;
        }
        else {
            *o++ = *c;
        }
    }
    *o = '\0';
    return out;
}

static void test_sse_chunking(apr_pool_t *p)
{
    events_t whole, bytes, two;
    const char *pend;
    apr_size_t plen, len = sizeof(anthropic_stream) - 1, cut;
    int all_same = 1;

    pend = split_events(p, anthropic_stream, len, 0, 1 << 20, &whole, &plen);
    CHECK_INT(whole.n, 5);
    CHECK_INT(plen, 0);
    CHECK(!whole.bad_nul);
    CHECK(raw_is_input(p, &whole, pend, plen, anthropic_stream, len));
    CHECK_STR(whole.name[0], "message_start");
    CHECK_STR(whole.data[0], "{\"type\":\"message_start\",\"message\":"
              "{\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}");
    CHECK_STR(whole.name[2], "ping");
    CHECK_STR(whole.data[2], "{\"type\": \"ping\"}");
    CHECK_STR(whole.name[3], "message_delta");
    CHECK_STR(whole.name[4], "message_stop");
    CHECK_STR(whole.raw[4], "event: message_stop\n"
              "data: {\"type\":\"message_stop\"}\n\n");

    pend = split_events(p, anthropic_stream, len, 1, 1 << 20, &bytes, &plen);
    CHECK(same_events(&whole, &bytes));
    CHECK(raw_is_input(p, &bytes, pend, plen, anthropic_stream, len));

    /* Cut in two at every position. */
    for (cut = 1; cut < len; cut++) {
        aiproxy_sse_t *s = aiproxy_sse_create(p, 1 << 20);

        memset(&two, 0, sizeof(two));
        two.p = p;
        aiproxy_sse_feed(s, anthropic_stream, cut, collect, &two);
        aiproxy_sse_feed(s, anthropic_stream + cut, len - cut, collect, &two);
        if (!same_events(&whole, &two)) {
            all_same = 0;
            printf("FAIL %s %s:%d: events differ when cut at %lu\n",
                   current_test, __FILE__, __LINE__, (unsigned long)cut);
            break;
        }
    }
    CHECK(all_same);

    /* OpenAI: the comment is an event of its own with no data. */
    len = sizeof(openai_stream) - 1;
    pend = split_events(p, openai_stream, len, 0, 1 << 20, &whole, &plen);
    CHECK_INT(whole.n, 5);
    CHECK_STR(whole.name[0], "");
    CHECK_STR(whole.raw[2], ": keep-alive\n\n");
    CHECK_INT(whole.data_len[2], 0);
    CHECK_STR(whole.data[4], "[DONE]");
    CHECK(raw_is_input(p, &whole, pend, plen, openai_stream, len));
    pend = split_events(p, openai_stream, len, 1, 1 << 20, &bytes, &plen);
    CHECK(same_events(&whole, &bytes));
    pend = split_events(p, openai_stream, len, 7, 1 << 20, &bytes, &plen);
    CHECK(same_events(&whole, &bytes));
}

static void test_sse_line_ends(apr_pool_t *p)
{
    events_t lf, other, bytes;
    const char *in, *pend;
    apr_size_t plen, len;
    int i, ok = 1;

    split_events(p, anthropic_stream, sizeof(anthropic_stream) - 1, 0,
                 1 << 20, &lf, &plen);

    /* \r\n: same names and data, raw as received. */
    in = with_eol(p, anthropic_stream, "\r\n");
    len = strlen(in);
    pend = split_events(p, in, len, 0, 1 << 20, &other, &plen);
    CHECK_INT(other.n, lf.n);
    for (i = 0; i < lf.n && i < other.n; i++)
        ok &= !strcmp(lf.name[i], other.name[i]) &&
              !strcmp(lf.data[i], other.data[i]);
    CHECK(ok);
    CHECK(raw_is_input(p, &other, pend, plen, in, len));
    pend = split_events(p, in, len, 1, 1 << 20, &bytes, &plen);
    CHECK(same_events(&other, &bytes));
    CHECK(raw_is_input(p, &bytes, pend, plen, in, len));

    /* \r alone. A final \r might still be the start of \r\n, so the stream
     * here goes on after the last event. */
    in = apr_pstrcat(p, with_eol(p, anthropic_stream, "\r"), "data: x", NULL);
    len = strlen(in);
    pend = split_events(p, in, len, 0, 1 << 20, &other, &plen);
    CHECK_INT(other.n, lf.n);
    ok = 1;
    for (i = 0; i < lf.n && i < other.n; i++)
        ok &= !strcmp(lf.name[i], other.name[i]) &&
              !strcmp(lf.data[i], other.data[i]);
    CHECK(ok);
    CHECK_INT(plen, 7);
    CHECK(raw_is_input(p, &other, pend, plen, in, len));
    pend = split_events(p, in, len, 1, 1 << 20, &bytes, &plen);
    CHECK(same_events(&other, &bytes));

    /* Mixed line ends within one event. */
    in = "event: e\rdata: a\r\ndata: b\ndata: c\r\r\n";
    len = strlen(in);
    pend = split_events(p, in, len, 0, 1 << 20, &other, &plen);
    CHECK_INT(other.n, 1);
    CHECK_STR(other.name[0], "e");
    CHECK_STR(other.data[0], "a\nb\nc");
    CHECK_INT(plen, 0);
    pend = split_events(p, in, len, 1, 1 << 20, &bytes, &plen);
    CHECK(same_events(&other, &bytes));
}

static void test_sse_fields(apr_pool_t *p)
{
    events_t e;
    const char *in, *pend;
    apr_size_t plen;

    /* Multi-line data joined by \n; one space after the colon is dropped. */
    in = "data: a\ndata:b\ndata:  c\ndata\ndata: d\n\n";
    split_events(p, in, strlen(in), 0, 1 << 20, &e, &plen);
    CHECK_INT(e.n, 1);
    CHECK_STR(e.data[0], "a\nb\n c\n\nd");
    CHECK_INT(e.data_len[0], 9);

    /* Comments and unknown fields are not data. */
    in = ": comment\ndata: x\n: data: y\nid: 7\nretry: 100\ndatax: z\n"
         " data: w\ndata: {\"usage\":{}}\n\n";
    split_events(p, in, strlen(in), 0, 1 << 20, &e, &plen);
    CHECK_INT(e.n, 1);
    CHECK_STR(e.data[0], "x\n{\"usage\":{}}");
    CHECK_STR(e.name[0], "");
    CHECK_STR(e.raw[0], in);

    /* The event name, with or without a space; the last one wins. */
    in = "event:first\nevent: message_delta\ndata: {}\n\nevent: only\n\n";
    split_events(p, in, strlen(in), 0, 1 << 20, &e, &plen);
    CHECK_INT(e.n, 2);
    CHECK_STR(e.name[0], "message_delta");
    CHECK_STR(e.data[0], "{}");
    CHECK_STR(e.name[1], "only");
    CHECK_INT(e.data_len[1], 0);

    /* Blank lines with no event before them pass on alone. */
    in = "\n\r\ndata: x\n\n\n";
    pend = split_events(p, in, strlen(in), 0, 1 << 20, &e, &plen);
    CHECK_INT(e.n, 4);
    CHECK_INT(e.data_len[0], 0);
    CHECK_STR(e.data[2], "x");
    CHECK(raw_is_input(p, &e, pend, plen, in, strlen(in)));

    /* Data with a NUL byte keeps its length. */
    {
        static const char nul[] = "data: a\0b\n\n";

        split_events(p, nul, sizeof(nul) - 1, 0, 1 << 20, &e, &plen);
        CHECK_INT(e.n, 1);
        CHECK_INT(e.data_len[0], 3);
        CHECK(e.data[0] && !memcmp(e.data[0], "a\0b", 3));
    }
}

static void test_sse_limits(apr_pool_t *p)
{
    events_t e, bytes;
    const char *pend;
    apr_size_t plen, n = 200;
    char *big, *in;
    aiproxy_sse_t *s;

    /* An event over max_event: raw whole, data empty; the next one is
     * parsed as usual. */
    big = apr_palloc(p, n + 1);
    memset(big, 'A', n);
    big[n] = '\0';
    in = apr_pstrcat(p, "event: big\ndata: ", big, "\n\ndata: small\n\n", NULL);
    pend = split_events(p, in, strlen(in), 0, 64, &e, &plen);
    CHECK_INT(e.n, 2);
    CHECK_INT(e.data_len[0], 0);
    CHECK_STR(e.data[0], "");
    CHECK_STR(e.name[0], "");
    CHECK_INT(e.raw_len[0], strlen(in) - strlen("data: small\n\n"));
    CHECK_STR(e.data[1], "small");
    CHECK(raw_is_input(p, &e, pend, plen, in, strlen(in)));
    /* Arriving byte by byte, the big event is passed on in pieces as soon
     * as more than max_event of it is held, all unread; the next event is
     * read as usual. */
    pend = split_events(p, in, strlen(in), 1, 64, &bytes, &plen);
    CHECK(raw_is_input(p, &bytes, pend, plen, in, strlen(in)));
    CHECK(bytes.n > 2);
    CHECK_STR(bytes.data[bytes.n - 1], "small");
    {
        int i, unread = 1;

        for (i = 0; i < bytes.n - 1; i++)
            unread = unread && bytes.data_len[i] == 0 &&
                     !strcmp(bytes.name[i], "") && bytes.raw_len[i] <= 65;
        CHECK(unread);
    }
    /* An event that never ends is never held whole: what stays pending is
     * at most max_event bytes. */
    n = 50000;
    big = apr_palloc(p, n + 1);
    memset(big, 'C', n);
    big[n] = '\0';
    in = apr_pstrcat(p, "data: ", big, NULL);
    pend = split_events(p, in, strlen(in), 1000, 4096, &bytes, &plen);
    CHECK(plen <= 4096);
    CHECK(bytes.n > 0 && bytes.data_len[0] == 0);
    CHECK(raw_is_input(p, &bytes, pend, plen, in, strlen(in)));
    /* The limit is on the event's bytes: exactly max_event is still read. */
    in = "data: 0123456789\n\n";
    split_events(p, in, strlen(in), 0, strlen(in), &e, &plen);
    CHECK_STR(e.data[0], "0123456789");
    split_events(p, in, strlen(in), 0, strlen(in) - 1, &e, &plen);
    CHECK_INT(e.data_len[0], 0);

    /* Events bigger than the first buffers (4 KB) under a large limit. */
    n = 100000;
    big = apr_palloc(p, n + 1);
    memset(big, 'B', n);
    big[n] = '\0';
    in = apr_pstrcat(p, "event: e\ndata: ", big, "\ndata: ", big, "\n\n", NULL);
    pend = split_events(p, in, strlen(in), 0, 1 << 20, &e, &plen);
    CHECK_INT(e.n, 1);
    CHECK_INT(e.data_len[0], 2 * n + 1);
    CHECK_STR(e.name[0], "e");
    CHECK(raw_is_input(p, &e, pend, plen, in, strlen(in)));
    split_events(p, in, strlen(in), 4093, 1 << 20, &bytes, &plen);
    CHECK(same_events(&e, &bytes));

    /* The pending tail: taken once, then the splitter starts afresh. */
    s = aiproxy_sse_create(p, 1 << 20);
    memset(&e, 0, sizeof(e));
    e.p = p;
    in = "data: one\n\nevent: two\ndata: par";
    aiproxy_sse_feed(s, in, strlen(in), collect, &e);
    CHECK_INT(e.n, 1);
    pend = aiproxy_sse_take_pending(s, &plen);
    CHECK_INT(plen, strlen("event: two\ndata: par"));
    CHECK(plen == strlen("event: two\ndata: par") &&
          !memcmp(pend, "event: two\ndata: par", plen));
    pend = aiproxy_sse_take_pending(s, &plen);
    CHECK_INT(plen, 0);
    aiproxy_sse_feed(s, "data: three\n\n", 13, collect, &e);
    CHECK_INT(e.n, 2);
    CHECK_STR(e.data[1], "three");
    CHECK_STR(e.name[1], "");
    CHECK_STR(e.raw[1], "data: three\n\n");

    /* A lone \r ends a chunk, \n starts the next: one line end, so the event
     * ends only at the second line end. */
    s = aiproxy_sse_create(p, 1 << 20);
    memset(&e, 0, sizeof(e));
    e.p = p;
    aiproxy_sse_feed(s, "data: a\r", 8, collect, &e);
    CHECK_INT(e.n, 0);
    aiproxy_sse_feed(s, "\n", 1, collect, &e);
    CHECK_INT(e.n, 0);
    aiproxy_sse_feed(s, "\r", 1, collect, &e);
    CHECK_INT(e.n, 0);
    aiproxy_sse_feed(s, "\ndata: b\n\n", 10, collect, &e);
    CHECK_INT(e.n, 2);
    CHECK_STR(e.raw[0], "data: a\r\n\r\n");
    CHECK_STR(e.data[0], "a");
    CHECK_STR(e.data[1], "b");
    pend = aiproxy_sse_take_pending(s, &plen);
    CHECK_INT(plen, 0);
}

/* Usage is read from the body's tail; anything that is not the top-level
 * member there (a "usage" inside a string or a nested object, usage
 * first) must give the same answer as a whole parse. */
static void test_usage_tail(apr_pool_t *p)
{
    aiproxy_usage_t u;
    int found;

    u = usage_of(p, "{\"choices\":[{\"message\":{\"content\":"
                 "\"say \\\"usage\\\": {\\\"prompt_tokens\\\": 99}\"}}],"
                 "\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}",
                 AIPROXY_API_OPENAI, &found);
    CHECK(found);
    CHECK_USAGE(u, 7, 0, 0, 3);
    u = usage_of(p, "{\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2},"
                 "\"x\":{\"usage\":{\"prompt_tokens\":99}}}",
                 AIPROXY_API_OPENAI, &found);
    CHECK(found);
    CHECK_USAGE(u, 5, 0, 0, 2);
    u = usage_of(p, "{\"usage\":{\"prompt_tokens\":4},\"choices\":[]}",
                 AIPROXY_API_OPENAI, &found);
    CHECK(found);
    CHECK_USAGE(u, 4, 0, 0, 0);
    u = usage_of(p, "{\"usage\" :\n {\"input_tokens\":2,\"output_tokens\":1}"
                 " , \"stop\" : null }\n", AIPROXY_API_ANTHROPIC, &found);
    CHECK(found);
    CHECK_USAGE(u, 2, 0, 0, 1);
    /* A tail that does not close the object is not trusted, and the whole
     * body is not JSON either. */
    u = usage_of(p, "{\"usage\":{\"prompt_tokens\":4}", AIPROXY_API_OPENAI,
                 &found);
    CHECK(!found);
}

/* A stream whose last event ends with bare CRs: the final CR could have
 * been half a CRLF until the stream ends; then the event is whole. */
static void test_sse_end(apr_pool_t *p)
{
    aiproxy_sse_t *s = aiproxy_sse_create(p, 1 << 20);
    const char *in = "data: {\"usage\":{\"prompt_tokens\":3}}\r\r";
    const char *pend;
    apr_size_t plen;
    events_t e;

    memset(&e, 0, sizeof(e));
    e.p = p;
    aiproxy_sse_feed(s, in, strlen(in), collect, &e);
    CHECK_INT(e.n, 0);
    aiproxy_sse_end(s, collect, &e);
    CHECK_INT(e.n, 1);
    CHECK_STR(e.data[0], "{\"usage\":{\"prompt_tokens\":3}}");
    CHECK_INT(e.raw_len[0], strlen(in));
    pend = aiproxy_sse_take_pending(s, &plen);
    CHECK_INT(plen, 0);
    (void)pend;
    /* An event with no blank line after it is still unfinished. */
    memset(&e, 0, sizeof(e));
    e.p = p;
    in = "data: a\r\ndata: b\r";
    aiproxy_sse_feed(s, in, strlen(in), collect, &e);
    aiproxy_sse_end(s, collect, &e);
    CHECK_INT(e.n, 0);
    pend = aiproxy_sse_take_pending(s, &plen);
    CHECK_INT(plen, strlen(in));
    CHECK(pend && !memcmp(pend, in, plen));
}

/* The usage scanner: what it reads, what it leaves to jansson (-1), and
 * that it agrees with jansson on what it reads. */
static int scan_agrees(apr_pool_t *p, const char *text, aiproxy_api_t api)
{
    aiproxy_usage_t a, b;
    apr_size_t ua = 0, ub = 0;
    aiproxy_json_t *v;
    int ra;

    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    ra = aiproxy_usage_scan(text, strlen(text), &ua, api, &a);
    if (ra < 0)
        return 0;
    v = aiproxy_json_parse_prefix(p, text, strlen(text), &ub);
    return v && aiproxy_usage_merge(v, api, &b) == ra && ua == ub &&
           !memcmp(&a, &b, sizeof(a));
}

static void test_usage_scan(apr_pool_t *p)
{
    static const char *const read[] = {
        "{\"prompt_tokens\":19,\"completion_tokens\":10,\"total_tokens\":29,"
        "\"prompt_tokens_details\":{\"cached_tokens\":7,\"audio_tokens\":0},"
        "\"completion_tokens_details\":{\"reasoning_tokens\":0}}",
        "{\"input_tokens\":12,\"cache_creation_input_tokens\":100,"
        "\"cache_read_input_tokens\":2048,\"output_tokens\":6,"
        "\"service_tier\":\"standard\",\"cache_creation\":"
        "{\"ephemeral_5m_input_tokens\":100},\"server_tool_use\":null}",
        "{ \"input_tokens\" : 36 ,\n\"input_tokens_details\":{\"cached_tokens\""
        ":40},\"output_tokens\":-3,\"x\":true,\"y\":false,\"z\":{}}",
        "{}", "{\"prompt_tokens\":-0}", "{\"prompt_tokens\":\"12\"}",
        "{\"prompt_tokens_details\":3,\"prompt_tokens\":4}",
        "{\"prompt_tokens\":1} trailing",
    };
    static const char *const refused[] = {
        "{\"prompt_tokens\":5,\"prompt_tokens\":6}",        /* duplicate */
        "{\"d\":{\"a\":1,\"a\":2},\"prompt_tokens\":1}",   /* duplicate inside */
        "{\"prompt_tokens\":5.0}", "{\"prompt_tokens\":1e1}",
        "{\"prompt_tokens\":012}", "{\"prompt_tokens\":1234567890123456789}",
        "{\"pr\\u006fmpt_tokens\":5}", "{\"prompt_tokens\":[1]}",
        "{\"a\":{\"b\":{\"c\":1}}}", "{\"a\":\"\xc3\xa9\"}",
        "{\"prompt_tokens\":5,}", "{\"prompt_tokens\":5", "{\"prompt_tokens\" 5}",
        "{\"prompt_tokens\":nul}", "{\"prompt_tokens\":truex}", "[1]", "",
        "{\"prompt_tokens\":-}",
    };
    aiproxy_usage_t u;
    apr_size_t used, i;

    for (i = 0; i < sizeof(read) / sizeof(read[0]); i++) {
        memset(&u, 0, sizeof(u));
        CHECK(aiproxy_usage_scan(read[i], strlen(read[i]), &used,
                                 AIPROXY_API_OPENAI, &u) >= 0);
        CHECK(scan_agrees(p, read[i], AIPROXY_API_OPENAI));
        CHECK(scan_agrees(p, read[i], AIPROXY_API_ANTHROPIC));
    }
    for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        memset(&u, 0, sizeof(u));
        CHECK_INT(aiproxy_usage_scan(refused[i], strlen(refused[i]), &used,
                                     AIPROXY_API_OPENAI, &u), -1);
        CHECK(u.input == 0 && u.output == 0);
    }
    /* The counts themselves: cached inside the prompt total for OpenAI. */
    memset(&u, 0, sizeof(u));
    CHECK_INT(aiproxy_usage_scan(read[0], strlen(read[0]), &used,
                                 AIPROXY_API_OPENAI, &u), 1);
    CHECK_USAGE(u, 12, 7, 0, 10);
    CHECK_INT(used, strlen(read[0]));
    memset(&u, 0, sizeof(u));
    CHECK_INT(aiproxy_usage_scan(read[1], strlen(read[1]), &used,
                                 AIPROXY_API_ANTHROPIC, &u), 1);
    CHECK_USAGE(u, 12, 2048, 100, 6);
    /* Responses API: cached capped at the total, a negative count absent. */
    memset(&u, 0, sizeof(u));
    CHECK_INT(aiproxy_usage_scan(read[2], strlen(read[2]), &used,
                                 AIPROXY_API_OPENAI, &u), 1);
    CHECK_USAGE(u, 0, 36, 0, 0);
    /* Only the object: what follows is the caller's. */
    CHECK_INT(aiproxy_usage_scan(read[7], strlen(read[7]), &used,
                                 AIPROXY_API_OPENAI, &u), 1);
    CHECK_INT(used, strlen("{\"prompt_tokens\":1}"));
}

/* ------------------------------------------------------------------ */
/* The per-child memo */

/* ------------------------------------------------------------------ */
/* Parse cost bound and the top-level member finder                     */

static size_t jc_live, jc_peak;

static void *jc_malloc(size_t n)
{
    size_t *b = malloc(n + 16);

    if (!b)
        return NULL;
    *b = n;
    jc_live += n;
    if (jc_live > jc_peak)
        jc_peak = jc_live;
    return (char *)b + 16;
}

static void jc_free(void *v)
{
    size_t *b;

    if (!v)
        return;
    b = (size_t *)((char *)v - 16);
    jc_live -= *b;
    free(b);
}

/* What jansson really allocates at its peak to parse text (its own
 * allocator, counted, only around this parse and its free). */
static size_t jansson_peak(const char *text, apr_size_t len)
{
    json_malloc_t m;
    json_free_t f;
    json_error_t err;
    json_t *v;

    json_get_alloc_funcs(&m, &f);
    json_set_alloc_funcs(jc_malloc, jc_free);
    jc_live = jc_peak = 0;
    v = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    json_decref(v);
    json_set_alloc_funcs(m, f);
    return jc_peak;
}

static void check_cost(apr_pool_t *p, const char *what, const char *text,
                       double most)
{
    apr_size_t len = strlen(text), bound = aiproxy_json_cost(text, len);
    size_t peak = jansson_peak(text, len);

    (void)p;
    check(bound >= peak, apr_psprintf(p, "%s: bound %" APR_SIZE_T_FMT
                                      " >= jansson's %" APR_SIZE_T_FMT, what,
                                      bound, (apr_size_t)peak),
          __FILE__, __LINE__);
    /* Not so loose that ordinary bodies are refused. */
    check(bound <= most * peak, apr_psprintf(p, "%s: bound %" APR_SIZE_T_FMT
                                             " within %.1fx of %"
                                             APR_SIZE_T_FMT, what, bound,
                                             most, (apr_size_t)peak),
          __FILE__, __LINE__);
}

static void test_json_cost(apr_pool_t *p)
{
    apr_size_t n = 200000, i;
    char *nums = apr_palloc(p, 2 * n + 2), *text;
    apr_array_header_t *parts = apr_array_make(p, 16, sizeof(char *));

    /* [0,0,...]: the shape that grows most. */
    nums[0] = '[';
    for (i = 0; i < n; i++) {
        nums[1 + 2 * i] = '0';
        nums[2 + 2 * i] = ',';
    }
    nums[2 * n] = ']';
    nums[2 * n + 1] = '\0';
    check_cost(p, "numbers", nums, 3.0);
    /* One long text, as a big prompt is. */
    text = apr_palloc(p, 3000001);
    memset(text, 'a', 3000000);
    text[3000000] = '\0';
    check_cost(p, "long text", apr_pstrcat(p, "{\"model\":\"m\",\"messages\":"
                                           "[{\"role\":\"user\",\"content\":\"",
                                           text, "\"}]}", NULL), 2.0);
    /* Many members, many short messages, nesting, literals, reals. */
    for (i = 0; i < 20000; i++)
        APR_ARRAY_PUSH(parts, char *) = apr_psprintf(p, "\"key%lu\": %lu",
                                                     (unsigned long)i,
                                                     (unsigned long)i);
    check_cost(p, "members", apr_pstrcat(p, "{", apr_array_pstrcat(p, parts,
                                                                  ','), "}",
                                         NULL), 3.0);
    apr_array_clear(parts);
    for (i = 0; i < 20000; i++)
        APR_ARRAY_PUSH(parts, char *) = "{\"role\":\"user\",\"content\":"
                                        "\"hello\"}";
    check_cost(p, "messages", apr_pstrcat(p, "{\"messages\":[",
                                          apr_array_pstrcat(p, parts, ','),
                                          "]}", NULL), 3.0);
    apr_array_clear(parts);
    for (i = 0; i < 20000; i++)
        APR_ARRAY_PUSH(parts, char *) = "[[[true,false,null,-1.5e3]]]";
    check_cost(p, "nesting", apr_pstrcat(p, "[", apr_array_pstrcat(p, parts,
                                                                  ','), "]",
                                         NULL), 3.0);
    check_cost(p, "escapes", "{\"a\\u0041\":\"\\n\\t\\\"\\ud83d\\ude00\"}",
               40.0);
}

/* The member finder keeps a value's text without checking it: the usage
 * read from it must be the object alone. */
static void test_usage_value_alone(apr_pool_t *p)
{
    aiproxy_usage_t u;

    memset(&u, 0, sizeof(u));
    CHECK(!aiproxy_usage_from_value(p, "{\"prompt_tokens\":2}\"x\":1", 24,
                                    AIPROXY_API_OPENAI, &u));
    CHECK_INT(u.input, 0);
    CHECK(!aiproxy_usage_from_body(p, "{\"usage\":{\"prompt_tokens\":2}\"x\":1}",
                                   34, AIPROXY_API_OPENAI, &u));
    CHECK_INT(u.input, 0);
    CHECK(aiproxy_usage_from_value(p, "{\"prompt_tokens\":2} \n", 21,
                                   AIPROXY_API_OPENAI, &u));
    CHECK_INT(u.input, 2);
}

static void jscan_one(apr_pool_t *p, const char *text, apr_size_t cut,
                      apr_size_t max, const char *want, int line)
{
    aiproxy_jscan_t *s = aiproxy_jscan_create(p, "usage", max);
    apr_size_t len = strlen(text), vlen = 0;
    const char *got;

    if (cut > len)
        cut = len;
    aiproxy_jscan_feed(s, text, cut);
    aiproxy_jscan_feed(s, text + cut, len - cut);
    got = aiproxy_jscan_value(s, &vlen);
    if (want)
        check_str(got, want, apr_psprintf(p, "jscan cut at %" APR_SIZE_T_FMT,
                                          cut), __FILE__, line);
    else
        check(!got, apr_psprintf(p, "jscan finds nothing (cut at %"
                                 APR_SIZE_T_FMT ")", cut), __FILE__, line);
    if (got)
        CHECK_INT(vlen, strlen(want));
}

#define JSCAN(text, want) do { apr_size_t c_; \
    for (c_ = 0; c_ <= strlen(text); c_++) \
        jscan_one(p, (text), c_, 256, (want), __LINE__); } while (0)

static void test_jscan(apr_pool_t *p)
{
    /* Found at the top level, whatever precedes it and however cut. */
    JSCAN("{\"id\":\"x\",\"choices\":[{\"message\":{\"content\":\"a\\\"usage"
          "\\\": {}\"}}],\"usage\":{\"prompt_tokens\":3}}",
          "{\"prompt_tokens\":3}");
    JSCAN(" { \"usage\" :\n{\"a\": [1, \"}\"]} , \"model\":\"m\" }\n ",
          "{\"a\": [1, \"}\"]}");
    JSCAN("{\"usage\":null}", "null");
    JSCAN("{\"usage\":\"x\\\\\"}", "\"x\\\\\"");
    /* Not at the top level, or not found at all. */
    JSCAN("{\"a\":{\"usage\":{}}}", NULL);
    JSCAN("{\"a\":[\"usage\",{\"usage\":1}]}", NULL);
    JSCAN("{\"a\":\"\\\"usage\\\":{}\"}", NULL);
    JSCAN("{}", NULL);
    /* Not one object: nothing is trusted. */
    JSCAN("[{\"usage\":1}]", NULL);
    JSCAN("{\"usage\":1}{\"usage\":2}", NULL);
    JSCAN("{\"usage\":1", NULL);
    JSCAN("{\"usage\":1]", NULL);
    JSCAN("{\"usage\":1,\"usage\":2}", NULL);
    JSCAN("{\"usage\":{}} x", NULL);
    JSCAN("{\"usage\" 1}", NULL);
    JSCAN("{\"usage\":}", NULL);
    /* A key spelt with escapes is not looked into. */
    JSCAN("{\"us\\u0061ge\":{}}", NULL);
    JSCAN("{\"usages\":{},\"usag\":{}}", NULL);
    /* A value longer than kept is not given. */
    jscan_one(p, "{\"usage\":{\"prompt_tokens\":12345}}", 100, 10, NULL,
              __LINE__);
    jscan_one(p, "{\"usage\":{\"prompt_tokens\":12345}}", 100, 24,
              "{\"prompt_tokens\":12345}", __LINE__);
}

static void test_memo_basics(apr_pool_t *p)
{
    aiproxy_memo_t *m = aiproxy_memo_create(p, 4);
    apr_size_t len = 0;
    char *v;

    CHECK(aiproxy_memo_create(p, 0) == NULL);
    /* A NULL memo (turned off) stores nothing and finds nothing. */
    aiproxy_memo_put(NULL, "k", 1, "v", 2);
    CHECK(aiproxy_memo_get(NULL, p, "k", 0, &len) == NULL);

    CHECK(m != NULL);
    CHECK(aiproxy_memo_get(m, p, "a@x.edu", 0, &len) == NULL);
    aiproxy_memo_put(m, "a@x.edu", 100, "first", 6);
    v = aiproxy_memo_get(m, p, "a@x.edu", 100, &len);
    CHECK_STR(v, "first");
    CHECK_INT(len, 6);
    /* Older than asked for: a miss. */
    CHECK(aiproxy_memo_get(m, p, "a@x.edu", 101, &len) == NULL);
    /* Replaced: the new value and stamp. */
    aiproxy_memo_put(m, "a@x.edu", 200, "second", 7);
    CHECK_STR(aiproxy_memo_get(m, p, "a@x.edu", 150, &len), "second");
    /* The copy belongs to the caller: changing it changes nothing inside. */
    v = aiproxy_memo_get(m, p, "a@x.edu", 0, &len);
    v[0] = 'X';
    CHECK_STR(aiproxy_memo_get(m, p, "a@x.edu", 0, &len), "second");
    /* Keys are whole strings, not prefixes. */
    CHECK(aiproxy_memo_get(m, p, "a@x.ed", 0, &len) == NULL);
}

static void test_memo_bounded(apr_pool_t *p)
{
    aiproxy_memo_t *m = aiproxy_memo_create(p, 3);
    apr_size_t len;
    int i;

    aiproxy_memo_put(m, "a", 1, "1", 2);
    aiproxy_memo_put(m, "b", 1, "2", 2);
    aiproxy_memo_put(m, "c", 1, "3", 2);
    CHECK_STR(aiproxy_memo_get(m, p, "a", 0, &len), "1");
    /* The fourth store starts afresh: only it remains. */
    aiproxy_memo_put(m, "d", 1, "4", 2);
    CHECK(aiproxy_memo_get(m, p, "a", 0, &len) == NULL);
    CHECK(aiproxy_memo_get(m, p, "c", 0, &len) == NULL);
    CHECK_STR(aiproxy_memo_get(m, p, "d", 0, &len), "4");
    /* Storing one key over and over stays bounded too (ASan would report
     * the pool's growth only as a leak at exit, so count on the bound). */
    for (i = 0; i < 10000; i++)
        aiproxy_memo_put(m, "d", i, "same", 5);
    CHECK_STR(aiproxy_memo_get(m, p, "d", 9999, &len), "same");
}

#define MEMO_THREADS 4
#define MEMO_ROUNDS 20000

typedef struct {
    aiproxy_memo_t *m;
    long bad;
} memo_job_t;

static void *APR_THREAD_FUNC memo_worker(apr_thread_t *t, void *data)
{
    memo_job_t *job = data;
    aiproxy_memo_t *m = job->m;
    apr_pool_t *p;
    char key[32], val[32];
    apr_size_t len;
    long bad = 0;
    int i;

    apr_pool_create(&p, NULL);
    for (i = 0; i < MEMO_ROUNDS; i++) {
        const char *got;

        apr_snprintf(key, sizeof(key), "user%d@x.edu", i % 50);
        apr_snprintf(val, sizeof(val), "value of user%d", i % 50);
        aiproxy_memo_put(m, key, i, val, strlen(val) + 1);
        got = aiproxy_memo_get(m, p, key, 0, &len);
        /* Another thread may have started the memo afresh in between,
         * never left a torn or foreign value. */
        if (got && strcmp(got, val))
            bad++;
        if (i % 1000 == 0)
            apr_pool_clear(p);
    }
    apr_pool_destroy(p);
    job->bad = bad;
    (void)t;   /* returns instead of apr_thread_exit(): ASan trips on it */
    return NULL;
}

static void test_memo_threads(apr_pool_t *p)
{
    aiproxy_memo_t *m = aiproxy_memo_create(p, 64);
    apr_thread_t *th[MEMO_THREADS];
    memo_job_t jobs[MEMO_THREADS];
    apr_status_t rv;
    long bad = 0;
    int i;

    for (i = 0; i < MEMO_THREADS; i++) {
        jobs[i].m = m;
        jobs[i].bad = 0;
        CHECK(apr_thread_create(&th[i], NULL, memo_worker, &jobs[i], p)
              == APR_SUCCESS);
    }
    for (i = 0; i < MEMO_THREADS; i++) {
        apr_thread_join(&rv, th[i]);
        bad += jobs[i].bad;
    }
    CHECK_INT(bad, 0);
}

/* What a remembered verification re-checks: time, with the same leeway
 * and overflow-safe comparisons as the first verification. */
static void test_token_check_time(apr_pool_t *p)
{
    aiproxy_claims_t c;
    char *tok = aiproxy_token_sign(p, "a@example.com", NOW, NOW + 100, KEY,
                                   KEYLEN);

    memset(&c, 0, sizeof(c));
    CHECK(tok && verify(p, tok, &c) == NULL);
    CHECK(c.has_exp && c.exp == NOW + 100 && !c.has_nbf);
    CHECK(aiproxy_token_check_time(&c, NOW + 100 + LEEWAY, LEEWAY) == NULL);
    CHECK_REJECT(aiproxy_token_check_time(&c, NOW + 101 + LEEWAY, LEEWAY),
                 "expired");
    c.has_exp = 0;
    c.has_nbf = 1;
    c.nbf = NOW + 10;
    CHECK(aiproxy_token_check_time(&c, NOW, LEEWAY) == NULL);
    CHECK_REJECT(aiproxy_token_check_time(&c, NOW, 5), "not valid yet");
    c.has_nbf = 0;
    c.has_exp = 1;
    c.exp = APR_INT64_MAX;
    CHECK(aiproxy_token_check_time(&c, NOW, LEEWAY) == NULL);
}

/* ------------------------------------------------------------------ */
/* Token secrets: several with key ids, rotation                        */

static const unsigned char KEY_OLD[] = "old-secret-0123456789abcdef012345";
static const unsigned char KEY_NEW[] = "new-secret-0123456789abcdef012345";

static apr_array_header_t *ring(apr_pool_t *p, int n, ...)
{
    apr_array_header_t *keys = apr_array_make(p, n, sizeof(aiproxy_token_key_t));
    va_list ap;
    int i;

    va_start(ap, n);
    for (i = 0; i < n; i++) {
        aiproxy_token_key_t *k = apr_array_push(keys);

        k->kid = va_arg(ap, const char *);
        k->key = va_arg(ap, const unsigned char *);
        k->len = strlen((const char *)k->key);
    }
    va_end(ap);
    return keys;
}

/* The header's kid and the claims of a token, read without a key. */
static const char *kid_of(apr_pool_t *p, const char *token, long *iat,
                          long *exp)
{
    jwt_t *jwt = NULL;
    const char *kid = NULL;
    char *raw;

    if (jwt_decode(&jwt, token, NULL, 0) != 0 || !jwt)
        return "(undecodable)";
    if (jwt_get_header(jwt, "kid"))
        kid = apr_pstrdup(p, jwt_get_header(jwt, "kid"));
    *iat = jwt_get_grant_int(jwt, "iat");
    raw = jwt_get_grants_json(jwt, "exp");
    *exp = raw ? jwt_get_grant_int(jwt, "exp") : 0;   /* 0: no exp claim */
    free(raw);
    jwt_free(jwt);
    return kid;
}

static void test_token_issue(apr_pool_t *p)
{
    apr_array_header_t *keys = ring(p, 2, "k1", KEY_OLD, "k2", KEY_NEW);
    aiproxy_claims_t c;
    long iat, exp;
    char *tok;

    /* The last secret signs and names itself. */
    tok = aiproxy_token_issue(p, keys, "a@example.com", NOW, 0, 3600);
    CHECK(tok != NULL);
    CHECK_STR(kid_of(p, tok, &iat, &exp), "k2");
    CHECK_INT(iat, NOW);
    CHECK_INT(exp, NOW + 3600);
    memset(&c, 0, sizeof(c));
    CHECK(aiproxy_token_verify(p, tok, KEY_NEW, strlen((char *)KEY_NEW), NOW,
                               LEEWAY, MAXLEN, &c) == NULL);
    CHECK(aiproxy_token_verify(p, tok, KEY_OLD, strlen((char *)KEY_OLD), NOW,
                               LEEWAY, MAXLEN, &c) != NULL);
    /* Revoked in this very second: issued just after it. */
    tok = aiproxy_token_issue(p, keys, "a@example.com", NOW, NOW, 0);
    kid_of(p, tok, &iat, &exp);
    CHECK_INT(iat, NOW + 1);
    CHECK_INT(exp, 0);        /* lifetime 0: no exp claim at all */
    memset(&c, 0, sizeof(c));
    CHECK(aiproxy_token_verify_keys(p, tok, keys, NOW, LEEWAY, MAXLEN, &c)
          == NULL && !c.has_exp && c.iat == NOW + 1);
    /* A secret without an id signs tokens without kid, as before. */
    tok = aiproxy_token_issue(p, ring(p, 1, NULL, KEY_OLD), "a@example.com",
                              NOW, 0, 0);
    CHECK(tok && kid_of(p, tok, &iat, &exp) == NULL);
    CHECK(aiproxy_token_issue(p, ring(p, 0), "a@example.com", NOW, 0, 0)
          == NULL);
    CHECK(aiproxy_token_issue(p, NULL, "a@example.com", NOW, 0, 0) == NULL);
}

static void test_token_verify_keys(apr_pool_t *p)
{
    apr_array_header_t *old = ring(p, 1, "k1", KEY_OLD);
    apr_array_header_t *both = ring(p, 2, "k1", KEY_OLD, "k2", KEY_NEW);
    apr_array_header_t *new_only = ring(p, 1, "k2", KEY_NEW);
    apr_array_header_t *legacy = ring(p, 2, NULL, KEY, "k2", KEY_NEW);
    aiproxy_claims_t c;
    char *t1 = aiproxy_token_issue(p, old, "a@example.com", NOW, 0, 0);
    char *t2 = aiproxy_token_issue(p, both, "b@example.com", NOW, 0, 0);
    char *bare = aiproxy_token_sign(p, "c@example.com", NOW, 0, KEY, KEYLEN);
    char *forged;

#define VK(tok, keys) aiproxy_token_verify_keys(p, (tok), (keys), NOW, \
                                                LEEWAY, MAXLEN, &c)
    CHECK(VK(t1, old) == NULL);
    CHECK(VK(t1, both) == NULL);        /* an old token after a rotation */
    CHECK_STR(c.email, "a@example.com");
    CHECK(VK(t2, both) == NULL);
    CHECK_STR(c.email, "b@example.com");
    CHECK_REJECT(VK(t1, new_only), "key id");  /* its secret removed */
    CHECK(VK(t2, new_only) == NULL);
    CHECK_REJECT(VK(t2, old), "key id");
    /* A known kid does not lend its name to another secret's token. */
    forged = aiproxy_token_issue(p, ring(p, 1, "k2", KEY_OLD), "x@example.com",
                                 NOW, 0, 0);
    CHECK_REJECT(VK(forged, both), "signature");
    /* No kid: the secret without an id, else the first. */
    CHECK(VK(bare, legacy) == NULL);
    CHECK_STR(c.email, "c@example.com");
    CHECK_REJECT(VK(bare, both), "signature");
    CHECK(VK(bare, ring(p, 2, "k0", KEY, "k2", KEY_NEW)) == NULL);
    /* A kid that is not a string, or an empty one, names no secret. */
    CHECK_REJECT(VK(craft(p, "{\"alg\":\"HS256\",\"kid\":2}",
                          "{\"email\":\"a@b.c\"}", "AAAA"), legacy),
                 "not a string");
    CHECK_REJECT(VK(craft(p, "{\"alg\":\"HS256\",\"kid\":\"\"}",
                          "{\"email\":\"a@b.c\"}", "AAAA"), legacy), "key id");
    CHECK_REJECT(VK(craft(p, "{\"alg\":\"HS256\",\"kid\":\"k9\"}",
                          "{\"email\":\"a@b.c\"}", "AAAA"), both), "key id");
    /* Malformed input is refused before any key is chosen. */
    CHECK_REJECT(VK("a.b", both), "three segments");
    CHECK_REJECT(VK("not json.at.all", both), "base64url");
    CHECK_REJECT(aiproxy_token_verify_keys(p, t1, ring(p, 0), NOW, LEEWAY,
                                           MAXLEN, &c), "no token secret");
    CHECK_REJECT(aiproxy_token_verify_keys(p, t1, NULL, NOW, LEEWAY, MAXLEN,
                                           &c), "no token secret");
    /* exp is still checked with the chosen secret. */
    t1 = aiproxy_token_issue(p, old, "a@example.com", NOW - 7200, 0, 3600);
    CHECK_REJECT(VK(t1, both), "expired");
#undef VK
}

static void test_secret_specs(apr_pool_t *p)
{
    apr_array_header_t *specs = apr_array_make(p, 2,
                                               sizeof(aiproxy_secret_spec_t));
    aiproxy_secret_spec_t *s;

    CHECK(aiproxy_secret_kid_ok("2026-autumn.v1_a"));
    CHECK(!aiproxy_secret_kid_ok(""));
    CHECK(!aiproxy_secret_kid_ok("a b"));
    CHECK(!aiproxy_secret_kid_ok("k\"1"));
    CHECK(!aiproxy_secret_kid_ok(apr_psprintf(p, "%065d", 0)));
    CHECK(aiproxy_secret_kid_ok(apr_psprintf(p, "%064d", 0)));
    CHECK(aiproxy_secret_spec_add(p, specs, NULL, "env:A") == NULL);
    CHECK(aiproxy_secret_spec_add(p, specs, "k1", "file:/b") == NULL);
    CHECK(aiproxy_secret_spec_add(p, specs, "k2", "env:C") == NULL);
    CHECK_INT(specs->nelts, 3);
    /* Given again: replaced, and moved last (so it signs). */
    CHECK(aiproxy_secret_spec_add(p, specs, "k1", "env:D") == NULL);
    CHECK(aiproxy_secret_spec_add(p, specs, NULL, "env:E") == NULL);
    CHECK_INT(specs->nelts, 3);
    s = (aiproxy_secret_spec_t *)specs->elts;
    CHECK_STR(s[0].kid, "k2");
    CHECK_STR(s[1].kid, "k1");
    CHECK_STR(s[1].spec, "env:D");
    CHECK(s[2].kid == NULL);
    CHECK_STR(s[2].spec, "env:E");
    CHECK_REJECT(aiproxy_secret_spec_add(p, specs, NULL, "inline-value"),
                 "AIProxyTokenSecret");
    CHECK_REJECT(aiproxy_secret_spec_add(p, specs, "k1", "env:"),
                 "env:VARIABLE");
    CHECK_REJECT(aiproxy_secret_spec_add(p, specs, "bad kid", "env:X"),
                 "key id");
    CHECK_INT(specs->nelts, 3);
}

static void test_secret_load(apr_pool_t *p)
{
    aiproxy_secret_spec_t s = { "k1", "env:AIPROXY_UNIT_SECRET" };
    aiproxy_token_key_t k;
    const char *err;
    apr_array_header_t *keys;

    setenv("AIPROXY_UNIT_SECRET", "abc", 1);
    err = aiproxy_secret_load(p, &s, &k);
    CHECK_REJECT(err, "AIProxyTokenSecret k1");
    CHECK_REJECT(err, "openssl rand -hex 32");
    CHECK_REJECT(err, "aiproxy-admin secret new");
    CHECK(err && !strstr(err, ": abc"));      /* never the value */
    /* 31 bytes refused, 32 taken; a trailing newline does not count. */
    setenv("AIPROXY_UNIT_SECRET", "0123456789abcdef0123456789abcde\n", 1);
    CHECK_REJECT(aiproxy_secret_load(p, &s, &k), "31 bytes");
    setenv("AIPROXY_UNIT_SECRET", "0123456789abcdef0123456789abcdef\n", 1);
    CHECK(aiproxy_secret_load(p, &s, &k) == NULL);
    CHECK_INT(k.len, 32);
    CHECK_STR(k.kid, "k1");
    CHECK(!memcmp(k.key, "0123456789abcdef0123456789abcdef", 32));
    s.kid = NULL;
    unsetenv("AIPROXY_UNIT_SECRET");
    CHECK_REJECT(aiproxy_secret_load(p, &s, &k), "not set");
    s.spec = "file:/nonexistent/aiproxy-unit-secret";
    CHECK_REJECT(aiproxy_secret_load(p, &s, &k), "cannot read");
    keys = NULL;
    CHECK(aiproxy_secret_load_all(p, apr_array_make(p, 1, sizeof(s)), &keys)
          == NULL && keys && keys->nelts == 0);
}

/* ------------------------------------------------------------------ */

typedef void test_fn(apr_pool_t *p);

static const struct {
    const char *name;
    test_fn *fn;
} tests[] = {
    { "token_valid", test_token_valid },
    { "token_signature", test_token_signature },
    { "token_algorithms", test_token_algorithms },
    { "token_shape", test_token_shape },
    { "token_claims", test_token_claims },
    { "token_empty_key", test_token_empty_key },
    { "decimal_parse", test_decimal_parse },
    { "money_format", test_money_format },
    { "money_round_trip", test_money_round_trip },
    { "cost_of", test_cost_of },
    { "cost_ceiling", test_cost_ceiling },
    { "inspect_ok", test_inspect_ok },
    { "inspect_bad", test_inspect_bad },
    { "inspect_bounds", test_inspect_bounds },
    { "delta_text", test_delta_text },
    { "member_span", test_member_span },
    { "path_endpoint", test_path_endpoint },
    { "usage", test_usage },
    { "usage_cache_hour", test_usage_cache_hour },
    { "usage_tail", test_usage_tail },
    { "usage_scan", test_usage_scan },
    { "sse_end", test_sse_end },
    { "json", test_json },
    { "sse_chunking", test_sse_chunking },
    { "sse_line_ends", test_sse_line_ends },
    { "sse_fields", test_sse_fields },
    { "sse_limits", test_sse_limits },
    { "memo_basics", test_memo_basics },
    { "memo_bounded", test_memo_bounded },
    { "memo_threads", test_memo_threads },
    { "token_check_time", test_token_check_time },
    { "json_cost", test_json_cost },
    { "jscan", test_jscan },
    { "usage_value_alone", test_usage_value_alone },
    { "token_issue", test_token_issue },
    { "token_verify_keys", test_token_verify_keys },
    { "secret_specs", test_secret_specs },
    { "secret_load", test_secret_load },
};

int main(void)
{
    apr_pool_t *root, *p;
    apr_size_t i;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (apr_initialize() != APR_SUCCESS || apr_pool_create(&root, NULL))
        return 2;
    for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
        current_test = tests[i].name;
        apr_pool_create(&p, root);
        tests[i].fn(p);
        apr_pool_destroy(p);
    }
    apr_pool_destroy(root);
    apr_terminate();
    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed ? 1 : 0;
}
