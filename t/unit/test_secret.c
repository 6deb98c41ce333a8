/* Unit tests: Token secrets (aiproxy_secret): specs and loading. */
#include "harness.h"

#include "aiproxy_secret.h"

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

const unit_test_t unit_secret[] = {
    { "secret_specs", test_secret_specs },
    { "secret_load", test_secret_load },
    { NULL, NULL }
};
