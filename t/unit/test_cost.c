/* Unit tests: Cost arithmetic (aiproxy_cost): decimals, money, prices, ceilings. */
#include "harness.h"

#include "aiproxy_json.h"
#include "aiproxy_cost.h"
#include "aiproxy_inspect.h"

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

    memset(&pr, 0, sizeof(pr));
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
        aiproxy_usage_t u = { 300, 400, 300, 0, 200, 0 };

        CHECK(aiproxy_cost_of(&sonnet, &u) <=
              aiproxy_cost_ceiling(&sonnet, 1000, 200));
        CHECK(aiproxy_cost_of(&mini, &u) <=
              aiproxy_cost_ceiling(&mini, 1000, 200));
    }
}

/* An AIProxyPrice line's words into *price, as the directive reads them:
 * NULL or the first error. */
static const char *price_line(apr_pool_t *p, const char *line,
                              aiproxy_price_t *price)
{
    char *words = apr_pstrdup(p, line), *last, *w;
    const char *err;
    int seen = 0;

    memset(price, 0, sizeof(*price));
    for (w = apr_strtok(words, " ", &last); w; w = apr_strtok(NULL, " ", &last))
        if ((err = aiproxy_price_field(p, price, w, &seen)))
            return err;
    return aiproxy_price_finish(price, seen);
}

#define SONNET_1M "input=3 cached=0.30 cache_write=3.75 cache_write_1h=6 " \
    "output=15 max_output=64000 context=1000000 long_context=200000 " \
    "long_input=6 long_cached=0.60 long_cache_write=7.50 " \
    "long_cache_write_1h=12 long_output=22.50"

static void test_price_long_syntax(apr_pool_t *p)
{
    static const char *const bad[] = {
        /* a tier rate without its threshold */
        "input=3 output=15 max_output=10 long_input=6 long_output=22.5",
        /* a threshold without the tier's input or output rate */
        "input=3 output=15 max_output=10 long_context=200000 long_output=22.5",
        "input=3 output=15 max_output=10 long_context=200000 long_input=6",
        /* a cache rate the tier does not name */
        "input=3 cache_write=3.75 output=15 max_output=10 long_context=2000 "
        "long_input=6 long_output=22.5",
        "input=3 cache_write=3.75 cache_write_1h=6 output=15 max_output=10 "
        "long_context=2000 long_input=6 long_output=22.5 "
        "long_cache_write=7.5",
        /* a tier no input can reach */
        "input=3 output=15 max_output=10 context=200000 long_context=200000 "
        "long_input=6 long_output=22.5",
        "input=3 output=15 max_output=10 long_context=-1 long_input=6 "
        "long_output=22.5",
        "input=3 output=15 max_output=10 long_context=2e5 long_input=6 "
        "long_output=22.5",
        "input=3 output=15 max_output=10 long_context=2000 long_input=6.0000001 "
        "long_output=22.5",
        "input=3 output=15 max_output=10 web_search=-0.01",
        "input=3 output=15 max_output=10 web_search=1e-2",
        "input=3 output=15 max_output=10 web_search",
        "input=3 output=15 max_output=10 long_inputs=6",
        NULL
    };
    aiproxy_price_t pr;
    int i;

    CHECK(price_line(p, SONNET_1M, &pr) == NULL);
    CHECK_INT(pr.long_context, 200000);
    CHECK_INT(pr.long_input, 6000000);
    CHECK_INT(pr.long_cached, 600000);
    CHECK_INT(pr.long_cache_write, 7500000);
    CHECK_INT(pr.long_cache_write_1h, 12000000);
    CHECK_INT(pr.long_output, 22500000);
    /* long_cached defaults to the tier's input, as cached does. */
    CHECK(price_line(p, "input=1.25 output=10 max_output=65535 "
                     "long_context=200000 long_input=2.50 long_output=15",
                     &pr) == NULL);
    CHECK_INT(pr.long_cached, 2500000);
    /* web_search is USD per call, to the pico-dollar. */
    CHECK(price_line(p, "input=3 output=15 max_output=10 web_search=0.01",
                     &pr) == NULL);
    CHECK_INT(pr.web_search, APR_INT64_C(10000000000));
    CHECK_INT(pr.long_context, 0);
    for (i = 0; bad[i]; i++)
        check(price_line(p, bad[i], &pr) != NULL,
              apr_psprintf(p, "'%s' refused", bad[i]), __FILE__, __LINE__);
}

static void test_cost_long_tier(apr_pool_t *p)
{
    aiproxy_price_t pr;
    aiproxy_usage_t u;

    CHECK(price_line(p, SONNET_1M, &pr) == NULL);
    /* At the threshold: the standard rates. */
    memset(&u, 0, sizeof(u));
    u.input = 200000;
    u.output = 1000;
    CHECK_INT(aiproxy_cost_of(&pr, &u),
              APR_INT64_C(200000) * 3000000 + APR_INT64_C(1000) * 15000000);
    /* One token above: every token at the tier's rates, output too. */
    u.input = 200001;
    CHECK_INT(aiproxy_cost_of(&pr, &u),
              APR_INT64_C(200001) * 6000000 + APR_INT64_C(1000) * 22500000);
    /* The threshold counts cached input and cache writes with the rest:
     * a request cannot stay short by having its input cached. */
    memset(&u, 0, sizeof(u));
    u.input = 10;
    u.cached_input = 150000;
    u.cache_write = 40000;
    u.cache_write_1h = 10000;
    u.output = 7;
    CHECK_INT(aiproxy_cost_of(&pr, &u),
              APR_INT64_C(10) * 6000000 + APR_INT64_C(150000) * 600000 +
              APR_INT64_C(40000) * 7500000 + APR_INT64_C(10000) * 12000000 +
              APR_INT64_C(7) * 22500000);
    u.cache_write_1h = 9990;
    CHECK_INT(aiproxy_cost_of(&pr, &u),
              APR_INT64_C(10) * 3000000 + APR_INT64_C(150000) * 300000 +
              APR_INT64_C(40000) * 3750000 + APR_INT64_C(9990) * 6000000 +
              APR_INT64_C(7) * 15000000);
    /* Counts that would overflow the sum saturate into the tier. */
    u.input = APR_INT64_MAX;
    u.cached_input = APR_INT64_MAX;
    CHECK_INT(aiproxy_cost_of(&pr, &u), APR_INT64_MAX);
}

static void test_ceiling_long_tier(apr_pool_t *p)
{
    aiproxy_price_t pr;
    apr_int64_t bounds[] = { 1000, 199999, 200000, 200001, 1000000 };
    int b;

    CHECK(price_line(p, SONNET_1M, &pr) == NULL);
    /* An input bound within the threshold: standard rates (the dearest
     * input rate being the 5-minute write). */
    CHECK_INT(aiproxy_cost_ceiling(&pr, 200000, 100),
              APR_INT64_C(200000) * 3750000 + APR_INT64_C(100) * 15000000);
    /* One that may pass it: the tier's, for the whole request. */
    CHECK_INT(aiproxy_cost_ceiling(&pr, 200001, 100),
              APR_INT64_C(200001) * 7500000 + APR_INT64_C(100) * 22500000);
    /* Whatever the split of the input, no usage within the bounds costs
     * more than the ceiling. */
    for (b = 0; b < 5; b++) {
        apr_int64_t in = bounds[b], split;

        for (split = 0; split <= 4; split++) {
            aiproxy_usage_t u;

            memset(&u, 0, sizeof(u));
            u.input = in * split / 4;
            u.cached_input = (in - u.input) / 3;
            u.cache_write = in - u.input - u.cached_input;
            u.output = 100;
            check(aiproxy_cost_of(&pr, &u) <=
                  aiproxy_cost_ceiling(&pr, in, 100),
                  apr_psprintf(p, "usage within %" APR_INT64_T_FMT
                               " costs at most the ceiling", in),
                  __FILE__, __LINE__);
        }
    }
}

static void test_cost_web_search(apr_pool_t *p)
{
    aiproxy_price_t pr;
    aiproxy_usage_t u;

    CHECK(price_line(p, "input=3 output=15 max_output=64000 web_search=0.01",
                     &pr) == NULL);
    memset(&u, 0, sizeof(u));
    u.input = 100;
    u.output = 10;
    u.web_search = 3;
    CHECK_INT(aiproxy_cost_of(&pr, &u), APR_INT64_C(100) * 3000000 +
              APR_INT64_C(10) * 15000000 + APR_INT64_C(3) * 10000000000);
    CHECK_STR(aiproxy_money_format(p, aiproxy_cost_of(&pr, &u)), "0.03045");
    /* Negative counts are nothing; the bound of n calls is n at the price,
     * saturating. */
    u.web_search = -5;
    CHECK_INT(aiproxy_cost_of(&pr, &u), APR_INT64_C(450000000));
    CHECK_INT(aiproxy_cost_calls(7, 5, pr.web_search),
              7 + APR_INT64_C(50000000000));
    CHECK_INT(aiproxy_cost_calls(7, 0, pr.web_search), 7);
    CHECK_INT(aiproxy_cost_calls(APR_INT64_MAX - 1, 1, pr.web_search),
              APR_INT64_MAX);
    /* A model without a per-call price charges nothing for calls: it is
     * admission that refuses the tool for it. */
    pr.web_search = 0;
    u.web_search = 3;
    CHECK_INT(aiproxy_cost_of(&pr, &u), APR_INT64_C(450000000));
}

/* Anthropic reports the searches it ran in usage.server_tool_use, read by
 * the scanner and by jansson alike, and kept at their largest across a
 * stream's events. */
#define ONLY_SEARCHES(n) "{\"server_tool_use\":{\"web_search_requests\":" n "}}"

static void test_usage_web_search(apr_pool_t *p)
{
    static const char *const bodies[] = {
        "{\"id\":\"m\",\"usage\":{\"input_tokens\":10,\"output_tokens\":5,"
        "\"server_tool_use\":{\"web_search_requests\":3}}}",
        /* an escape sends it to jansson */
        "{\"id\":\"m\",\"usage\":{\"input_tokens\":10,\"output_tokens\":5,"
        "\"server_tool_use\":{\"web_search_requests\":3},\"x\":\"\\u0041\"}}",
        NULL
    };
    aiproxy_usage_t u;
    int i;

    for (i = 0; bodies[i]; i++) {
        memset(&u, 0, sizeof(u));
        CHECK(aiproxy_usage_from_body(p, bodies[i], strlen(bodies[i]),
                                      AIPROXY_API_ANTHROPIC, &u) == 1);
        CHECK_INT(u.input, 10);
        CHECK_INT(u.output, 5);
        CHECK_INT(u.web_search, 3);
    }
    /* Only searches: still a usage, never dropped as empty. */
    memset(&u, 0, sizeof(u));
    CHECK(aiproxy_usage_from_value(p, ONLY_SEARCHES("2"),
                                   strlen(ONLY_SEARCHES("2")),
                                   AIPROXY_API_ANTHROPIC, &u) == 1);
    CHECK_INT(u.web_search, 2);
    CHECK(aiproxy_usage_from_value(p, ONLY_SEARCHES("1"),
                                   strlen(ONLY_SEARCHES("1")),
                                   AIPROXY_API_ANTHROPIC, &u) == 1);
    CHECK_INT(u.web_search, 2);
}

/* The web search tool passes inspection only with max_uses in bounds;
 * other hosted tools stay refused. */
#define OPENAI_SEARCH "{\"model\":\"m\",\"tools\":[{\"type\":\"web_search\"}]}"

static void test_inspect_web_search(apr_pool_t *p)
{
    static const char *const refused[] = {
        "{\"model\":\"m\",\"tools\":[{\"type\":\"web_search_20250305\","
        "\"name\":\"web_search\"}]}",
        "{\"model\":\"m\",\"tools\":[{\"type\":\"web_search_20250305\","
        "\"name\":\"web_search\",\"max_uses\":0}]}",
        "{\"model\":\"m\",\"tools\":[{\"type\":\"web_search_20250305\","
        "\"name\":\"web_search\",\"max_uses\":21}]}",
        "{\"model\":\"m\",\"tools\":[{\"type\":\"web_search_20250305\","
        "\"name\":\"web_search\",\"max_uses\":\"3\"}]}",
        "{\"model\":\"m\",\"tools\":[{\"type\":\"web_search_20260209\","
        "\"name\":\"web_search\",\"max_uses\":3}]}",
        "{\"model\":\"m\",\"tools\":[{\"type\":\"web_fetch_20250910\","
        "\"name\":\"web_fetch\",\"max_uses\":3}]}",
        /* together above the bound */
        "{\"model\":\"m\",\"tools\":[{\"type\":\"web_search_20250305\","
        "\"name\":\"a\",\"max_uses\":11},{\"type\":\"web_search_20250305\","
        "\"name\":\"b\",\"max_uses\":10}]}",
        NULL
    };
    static const char *const two =
        "{\"model\":\"m\",\"tools\":[{\"type\":\"web_search_20250305\","
        "\"name\":\"web_search\",\"max_uses\":3},{\"name\":\"f\","
        "\"input_schema\":{}},{\"type\":\"web_search_20250305\","
        "\"name\":\"w2\",\"max_uses\":2}]}";
    aiproxy_request_info_t info;
    int i;

    CHECK(aiproxy_inspect_request(p, two, strlen(two), AIPROXY_EP_MESSAGES,
                                  &info) == NULL);
    CHECK(info.refused == NULL);
    CHECK_INT(info.web_searches, 5);
    CHECK_INT(info.tools, 1);
    for (i = 0; refused[i]; i++) {
        CHECK(aiproxy_inspect_request(p, refused[i], strlen(refused[i]),
                                      AIPROXY_EP_MESSAGES, &info) == NULL);
        check(info.refused != NULL, apr_psprintf(p, "%s refused", refused[i]),
              __FILE__, __LINE__);
    }
    /* OpenAI's hosted search is not priced per call here: refused. */
    CHECK(aiproxy_inspect_request(p, OPENAI_SEARCH, strlen(OPENAI_SEARCH),
                                  AIPROXY_EP_RESPONSES, &info) == NULL);
    CHECK(info.refused != NULL);
    CHECK_INT(info.web_searches, 0);
}

const unit_test_t unit_cost[] = {
    { "decimal_parse", test_decimal_parse },
    { "money_format", test_money_format },
    { "money_round_trip", test_money_round_trip },
    { "cost_of", test_cost_of },
    { "cost_ceiling", test_cost_ceiling },
    { "price_long_syntax", test_price_long_syntax },
    { "cost_long_tier", test_cost_long_tier },
    { "ceiling_long_tier", test_ceiling_long_tier },
    { "cost_web_search", test_cost_web_search },
    { "usage_web_search", test_usage_web_search },
    { "inspect_web_search", test_inspect_web_search },
    { NULL, NULL }
};
