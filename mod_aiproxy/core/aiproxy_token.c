#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <jwt.h>
#include <apr_strings.h>

#include "aiproxy_params.h"
#include "aiproxy_token.h"
#include "aiproxy_course.h"

/* The compact form: three base64url segments, no padding. Checked before
 * libjwt sees the token so malformed input never reaches its parser. */
static const char *check_shape(const char *token, apr_size_t max_len)
{
    apr_size_t n = 0;
    int dots = 0;
    const char *c;

    for (c = token; *c; c++, n++) {
        if (n >= max_len)
            return "token too long";
        if (*c == '.') {
            if (++dots > 2)
                return "token must have three segments";
            continue;
        }
        if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
              (*c >= '0' && *c <= '9') || *c == '-' || *c == '_'))
            return "token is not base64url";
    }
    if (dots != 2)
        return "token must have three segments";
    return NULL;
}

/* A NumericDate claim: -1 absent, 0 present (in *out), 1 malformed. Reads
 * the raw JSON because jwt_get_grant_int() answers 0 for a wrong type. */
static int numeric_claim(jwt_t *jwt, const char *name, apr_int64_t *out)
{
    char *raw = jwt_get_grants_json(jwt, name);
    char *end;
    long long v;
    int rc = 1;

    if (!raw)
        return -1;
    errno = 0;
    v = strtoll(raw, &end, 10);
    if (errno == 0 && end != raw && (raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9'))) {
        if (*end == '.') {
            for (end++; *end >= '0' && *end <= '9'; end++)
                ;
        }
        if (*end == '\0') {
            *out = v;
            rc = 0;
        }
    }
    free(raw);
    return rc;
}

const char *aiproxy_token_check_time(const aiproxy_claims_t *c,
                                     apr_int64_t now, apr_int64_t leeway)
{
    /* Written so that an exp near INT64_MAX cannot overflow. */
    if (c->has_exp && c->exp < now - leeway)
        return "token expired";
    if (c->has_nbf && now + leeway < c->nbf)
        return "token not valid yet";
    return NULL;
}

const char *aiproxy_token_verify(apr_pool_t *p, const char *token,
                                 const unsigned char *key, apr_size_t keylen,
                                 apr_int64_t now, apr_int64_t leeway,
                                 apr_size_t max_len, aiproxy_claims_t *out)
{
    jwt_t *jwt = NULL;
    const char *why, *email, *course;
    char *raw;
    int rc;

    if (!key || keylen == 0)
        return "server has no token secret";
    if ((why = check_shape(token, max_len)))
        return why;
    if (jwt_decode(&jwt, token, key, (int)keylen) != 0 || !jwt)
        return "invalid token signature or encoding";
    why = NULL;
    if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
        why = "token algorithm must be HS256";
        goto done;
    }
    if ((rc = numeric_claim(jwt, "exp", &out->exp)) > 0) {
        why = "token exp is not a number";
        goto done;
    }
    out->has_exp = rc == 0;
    if (!out->has_exp)
        out->exp = 0;
    if ((rc = numeric_claim(jwt, "nbf", &out->nbf)) > 0) {
        why = "token nbf is not a number";
        goto done;
    }
    out->has_nbf = rc == 0;
    if (!out->has_nbf)
        out->nbf = 0;
    if ((why = aiproxy_token_check_time(out, now, leeway)))
        goto done;
    if ((rc = numeric_claim(jwt, "iat", &out->iat)) > 0) {
        why = "token iat is not a number";
        goto done;
    }
    out->has_iat = rc == 0;
    if (!out->has_iat)
        out->iat = 0;
    email = jwt_get_grant(jwt, "email");
    if (!email || !aiproxy_params_who(email, 0)) {
        why = "token has no valid email claim";
        goto done;
    }
    out->email = apr_pstrdup(p, email);
    /* A course claim charges the course too: one that is not a course id
     * refuses the token rather than charging nobody. */
    course = jwt_get_grant(jwt, "course");
    if (!course && (raw = jwt_get_grants_json(jwt, "course"))) {
        /* Present, yet no string (libjwt gives NULL for those). */
        free(raw);
        why = "token course claim is not a course id";
        goto done;
    }
    if (course && !aiproxy_course_id_valid(course)) {
        why = "token course claim is not a course id";
        goto done;
    }
    out->course = course ? apr_pstrdup(p, course) : NULL;
done:
    jwt_free(jwt);
    return why;
}

static char *sign(apr_pool_t *p, const char *email, const char *course,
                  apr_int64_t iat, apr_int64_t exp, const char *kid,
                  const unsigned char *key, apr_size_t keylen)
{
    jwt_t *jwt = NULL;
    char *s, *copy = NULL;

    if (!key || keylen == 0 || jwt_new(&jwt) != 0)
        return NULL;
    if (jwt_set_alg(jwt, JWT_ALG_HS256, key, (int)keylen) == 0 &&
        (!kid || jwt_add_header(jwt, "kid", kid) == 0) &&
        jwt_add_grant(jwt, "email", email) == 0 &&
        (!course || jwt_add_grant(jwt, "course", course) == 0) &&
        jwt_add_grant_int(jwt, "iat", (long)iat) == 0 &&
        (exp <= 0 || jwt_add_grant_int(jwt, "exp", (long)exp) == 0) &&
        (s = jwt_encode_str(jwt)) != NULL) {
        copy = apr_pstrdup(p, s);
        free(s);
    }
    jwt_free(jwt);
    return copy;
}

char *aiproxy_token_sign(apr_pool_t *p, const char *email, apr_int64_t iat,
                         apr_int64_t exp, const unsigned char *key,
                         apr_size_t keylen)
{
    return sign(p, email, NULL, iat, exp, NULL, key, keylen);
}

char *aiproxy_token_issue(apr_pool_t *p, const apr_array_header_t *keys,
                          const char *email, const char *course,
                          apr_int64_t now, apr_int64_t revoked_at,
                          apr_int64_t lifetime)
{
    const aiproxy_token_key_t *k;
    apr_int64_t iat = now;

    if (!keys || keys->nelts == 0)
        return NULL;
    k = &APR_ARRAY_IDX(keys, keys->nelts - 1, aiproxy_token_key_t);
    if (revoked_at >= iat)
        iat = revoked_at + 1;
    if (course && !aiproxy_course_id_valid(course))
        return NULL;
    return sign(p, email, course, iat, lifetime > 0 ? iat + lifetime : 0,
                k->kid,
                k->key, k->len);
}

/* The kid of a token's header, unverified: only to choose a key. */
static const char *header_kid(const char *token, apr_size_t max_len,
                              apr_pool_t *p, const char **kid)
{
    jwt_t *jwt = NULL;
    const char *why = NULL, *v;
    char *raw;

    *kid = NULL;
    if ((why = check_shape(token, max_len)))
        return why;
    if (jwt_decode(&jwt, token, NULL, 0) != 0 || !jwt)
        return "invalid token signature or encoding";
    if ((v = jwt_get_header(jwt, "kid")))
        *kid = apr_pstrdup(p, v);
    else if ((raw = jwt_get_headers_json(jwt, "kid"))) {
        /* A kid that is not a string names no key of ours. */
        free(raw);
        why = "token kid is not a string";
    }
    jwt_free(jwt);
    return why;
}

const char *aiproxy_token_verify_keys(apr_pool_t *p, const char *token,
                                      const apr_array_header_t *keys,
                                      apr_int64_t now, apr_int64_t leeway,
                                      apr_size_t max_len,
                                      aiproxy_claims_t *out)
{
    const aiproxy_token_key_t *k, *use = NULL;
    const char *kid, *why;
    int i;

    if (!keys || keys->nelts == 0)
        return "server has no token secret";
    if ((why = header_kid(token, max_len, p, &kid)))
        return why;
    for (i = 0; i < keys->nelts && !use; i++) {
        k = &APR_ARRAY_IDX(keys, i, aiproxy_token_key_t);
        if (kid ? k->kid && !strcmp(k->kid, kid) : !k->kid)
            use = k;
    }
    if (!use && kid)
        return "token key id is unknown or retired";
    if (!use)
        use = &APR_ARRAY_IDX(keys, 0, aiproxy_token_key_t);
    return aiproxy_token_verify(p, token, use->key, use->len, now, leeway,
                                max_len, out);
}

const char *aiproxy_token_peek(apr_pool_t *p, const char *token,
                               apr_size_t max_len, const char **alg,
                               const char **kid)
{
    jwt_t *jwt = NULL;
    const char *why, *v;

    *alg = *kid = NULL;
    if ((why = check_shape(token, max_len)))
        return why;
    /* No key: libjwt parses without verifying, which is all we want. */
    if (jwt_decode(&jwt, token, NULL, 0) != 0 || !jwt)
        return "token header or payload is not valid JSON";
    if ((v = jwt_get_header(jwt, "alg")))
        *alg = apr_pstrdup(p, v);
    if ((v = jwt_get_header(jwt, "kid")))
        *kid = apr_pstrdup(p, v);
    jwt_free(jwt);
    return NULL;
}

const char *aiproxy_token_verify_rs256(apr_pool_t *p, const char *token,
                                       const char *pem, apr_size_t max_len,
                                       char **claims)
{
    jwt_t *jwt = NULL;
    const char *why = NULL;
    char *json;

    *claims = NULL;
    if (!pem || !*pem)
        return "no key";
    if ((why = check_shape(token, max_len)))
        return why;
    if (jwt_decode(&jwt, token, (const unsigned char *)pem,
                   (int)strlen(pem)) != 0 || !jwt)
        return "invalid token signature";
    if (jwt_get_alg(jwt) != JWT_ALG_RS256)
        why = "token algorithm must be RS256";
    else if (!(json = jwt_get_grants_json(jwt, NULL)))
        why = "token has no claims";
    else {
        *claims = apr_pstrdup(p, json);
        free(json);
    }
    jwt_free(jwt);
    return why;
}
