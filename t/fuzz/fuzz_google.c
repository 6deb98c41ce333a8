/* Fuzz target for Google sign-in: the input as a JWKS document, as an ID
 * token's claims, as a Cache-Control header, and as a credential verified
 * end to end against a key cache whose fetch returns a fixed JWKS. The
 * corpus's credential_ok is signed by that JWKS's key (its private half was
 * thrown away), so the accepting path is replayed too. */
#include <stdint.h>
#include <sanitizer/lsan_interface.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <apr_general.h>
#include <apr_strings.h>

#include "aiproxy_google.h"

#define NOW APR_INT64_C(1700000100)

static const char JWKS[] = "{\"keys\": [{\"kty\": \"RSA\", \"alg\": \"RS256\", \"use\": \"sig\", \"kid\": \"fuzz-kid\", \"n\": \"sX2HyIG_u0a-tnCOtXKexxuFQjCDcyzAbaQ8nyD9C9EynCCl8UFtyEVzwY5fi6hlFdosI4pnxcBP98e7Yh4ojMJeHyp6BjC4bWI5VRbIIfXrg5POY391tv05BaYUaSHFUyUylpbXfbfoWx_tj-BcZiPkIQMfjGBxBU9n7g6u8AaJqJHXXk6BqdkQfYbL1PlL12hywANGbr4WF0dm9GY0t9YsCwEIV_WNhXoqp-IZQWpWKbiTMp-GCmQe14jddwn-YbExf8XGH_k5gupypg8mNCUC5zL_Q-XyB7rsRlyJidmzKuDLAWy_Ecsqf9PTCxQLr3Y47ZbQUDF8zZ5kIqVtWw\", \"e\": \"AQAB\"}]}";

static const char *fixed_fetch(apr_pool_t *p, const char *url, long timeout_ms,
                               apr_size_t max, aiproxy_fetch_reply_t *out)
{
    (void)url;
    (void)timeout_ms;
    (void)max;
    memset(out, 0, sizeof(*out));
    out->status = 200;
    out->body = apr_pstrdup(p, JWKS);
    out->len = strlen(JWKS);
    out->cache_control = "public, max-age=86400";
    return NULL;
}

static void check_identity(aiproxy_google_rc_t rc,
                           const aiproxy_google_identity_t *id)
{
    const char *c;

    if (rc != AIPROXY_GOOGLE_OK)
        return;
    /* An accepted credential names one verified, lower-cased address in
     * an allowed domain. */
    if (!id->email || !strchr(id->email, '@') ||
        strchr(strchr(id->email, '@') + 1, '@'))
        abort();
    for (c = id->email; *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            abort();
    if (strcmp(strchr(id->email, '@') + 1, "example.com") &&
        (!id->hd || strcasecmp(id->hd, "example.com")))
        abort();
}

static apr_pool_t *global;

/* The cache's allocator is referenced only from pool memory, which APR may
 * map outside malloc's heap: free it at exit so LeakSanitizer agrees. */
static void destroy_global(void)
{
    apr_pool_destroy(global);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static aiproxy_google_keys_t *keys;
    static apr_array_header_t *domains;
    aiproxy_google_policy_t pol;
    aiproxy_google_identity_t id;
    apr_hash_t *parsed;
    apr_hash_index_t *hi;
    apr_pool_t *p;
    const char *in, *why = "", *fetch_error, *err = "";
    apr_int64_t ttl;
    aiproxy_google_rc_t rc;

    if (!global) {
        apr_initialize();
        apr_pool_create(&global, NULL);
        atexit(destroy_global);
        domains = apr_array_make(global, 1, sizeof(const char *));
        APR_ARRAY_PUSH(domains, const char *) = "example.com";
        /* Its allocator is referenced only from pool memory, which APR
         * maps outside malloc's heap where LeakSanitizer cannot see it:
         * made once, freed at exit, never a leak of an input's. */
        __lsan_disable();
        keys = aiproxy_google_keys_create(global, "http://fixed/", fixed_fetch,
                                          1000, 60, &err);
        __lsan_enable();
        if (!keys)
            abort();
    }
    if (apr_pool_create(&p, NULL) != APR_SUCCESS)
        abort();
    in = apr_pstrmemdup(p, (const char *)data, size);
    pol.client_id = "fuzz-client";
    pol.domains = domains;
    pol.require_hd = size % 2;
    pol.leeway = 60;
    pol.max_len = 16384;

    if (!aiproxy_google_parse_jwks(p, in, size, &parsed))
        for (hi = apr_hash_first(p, parsed); hi; hi = apr_hash_next(hi))
            if (strncmp(apr_hash_this_val(hi), "-----BEGIN PUBLIC KEY-----", 26))
                abort();

    rc = aiproxy_google_check_claims(p, in, &pol, NOW, &id, &why);
    check_identity(rc, &id);
    if (rc != AIPROXY_GOOGLE_OK && (!why || !*why))
        abort();

    ttl = aiproxy_google_cache_seconds(in, in, 300);
    if (ttl < 0 || ttl > 86400)
        abort();

    rc = aiproxy_google_verify(keys, p, in, &pol, NOW, &id, &why, &fetch_error);
    check_identity(rc, &id);
    if (!strcmp(aiproxy_google_code(rc), "invalid"))
        abort();
    apr_pool_destroy(p);
    return 0;
}
