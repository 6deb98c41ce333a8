/* Unit tests: Parse cost bound and the top-level member finder (aiproxy_jscan). */
#include "harness.h"

#include <jansson.h>
#include "aiproxy_json.h"
#include "aiproxy_jscan.h"

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

const unit_test_t unit_jscan[] = {
    { "json_cost", test_json_cost },
    { "jscan", test_jscan },
    { "usage_value_alone", test_usage_value_alone },
    { NULL, NULL }
};
