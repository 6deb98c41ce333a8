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

const unit_test_t unit_cost[] = {
    { "decimal_parse", test_decimal_parse },
    { "money_format", test_money_format },
    { "money_round_trip", test_money_round_trip },
    { "cost_of", test_cost_of },
    { "cost_ceiling", test_cost_ceiling },
    { NULL, NULL }
};
