/* Report parameters and CSV (core/aiproxy_report.c). */
#include "harness.h"
#include "aiproxy_report.h"

static void test_report_csv_cells(apr_pool_t *p)
{
    aiproxy_total_row_t row = { "=1+2", 3, 1, 10, 2, 0, 5,
                                1234567 };   /* pico-dollars */

    CHECK_STR(aiproxy_report_csv_cell(p, "gpt-4o-mini"), "gpt-4o-mini");
    CHECK_STR(aiproxy_report_csv_cell(p, "=SUM(A1)"), "'=SUM(A1)");
    CHECK_STR(aiproxy_report_csv_cell(p, "+1"), "'+1");
    CHECK_STR(aiproxy_report_csv_cell(p, "-1"), "'-1");
    CHECK_STR(aiproxy_report_csv_cell(p, "x;=hyperlink(1)@e.test"),
              "\"x;=hyperlink(1)@e.test\"");
    CHECK_STR(aiproxy_report_csv_cell(p, "@x"), "'@x");
    CHECK_STR(aiproxy_report_csv_cell(p, "\tx"), "'\tx");
    CHECK_STR(aiproxy_report_csv_cell(p, "a,b"), "\"a,b\"");
    CHECK_STR(aiproxy_report_csv_cell(p, "say \"hi\""), "\"say \"\"hi\"\"\"");
    CHECK_STR(aiproxy_report_csv_cell(p, "=a,\"b\"\n"),
              "\"'=a,\"\"b\"\"\n\"");
    CHECK_STR(aiproxy_report_csv_cell(p, ""), "");
    CHECK_STR(aiproxy_report_csv_row(p, &row),
              "'=1+2,3,1,10,2,0,5,0.000001234567\r\n");
}

static void test_report_spans(apr_pool_t *p)
{
    aiproxy_report_filter_t f;

    memset(&f, 0, sizeof(f));
    CHECK(aiproxy_report_span(p, &f, NULL, NULL, NULL, "2026-12") == NULL);
    CHECK_STR(f.month, "2026-12");
    CHECK(aiproxy_report_span(p, &f, NULL, "2025-01-31", "2025-02-01",
                              "2026-12") == NULL);
    CHECK(f.month == NULL);
    CHECK_INT(f.from_ms, APR_INT64_C(1738281600000));
    CHECK_INT(f.to_ms, APR_INT64_C(1738281600000) + 2 * AIPROXY_REPORT_DAY_MS);
    CHECK_STR(aiproxy_report_filename(p, AIPROXY_REPORT_BY_DAY, &f),
              "aiproxy-day-2025-01-31_2025-02-01.csv");
    CHECK(aiproxy_report_span(p, &f, NULL, "2024-02-29", "2024-02-29",
                              "x") == NULL);
    CHECK(strstr(aiproxy_report_span(p, &f, NULL, "2025-02-29", "2025-03-01",
                                     "x"), "from") != NULL);
    CHECK(strstr(aiproxy_report_span(p, &f, NULL, "2025-03-01", "2025-3-02",
                                     "x"), "to") != NULL);
    CHECK(strstr(aiproxy_report_span(p, &f, NULL, "2025-03-02", "2025-03-01",
                                     "x"), "before") != NULL);
    CHECK(strstr(aiproxy_report_span(p, &f, NULL, "2025-03-02", NULL, "x"),
                 "to is missing") != NULL);
    CHECK(strstr(aiproxy_report_span(p, &f, "2025-01", "2025-01-01",
                                     "2025-01-02", "x"), "not both") != NULL);
    CHECK(strstr(aiproxy_report_span(p, &f, "2025-13", NULL, NULL, "x"),
                 "month") != NULL);
    CHECK(strstr(aiproxy_report_span(p, &f, NULL, "2024-01-01", "2025-02-05",
                                     "x"), "400 days") != NULL);
    f.month = "2026-12";
    f.course = "cs101";
    f.email = "a b@x.edu";
    CHECK_STR(aiproxy_report_filename(p, AIPROXY_REPORT_BY_USER, &f),
              "aiproxy-user-2026-12-cs101-a_b@x.edu.csv");
}

static void test_report_threshold(apr_pool_t *p)
{
    aiproxy_report_by_t by;
    aiproxy_money_t big = APR_INT64_C(9000000000000000000);

    (void)p;
    CHECK(aiproxy_report_at_least(80, 100, 80));
    CHECK(!aiproxy_report_at_least(79, 100, 80));
    CHECK(aiproxy_report_at_least(big, big, 100));      /* no overflow */
    CHECK(!aiproxy_report_at_least(big - 1, big, 100));
    CHECK(aiproxy_report_by_parse("day", &by) && by == AIPROXY_REPORT_BY_DAY);
    CHECK(!aiproxy_report_by_parse("week", &by));
    CHECK(!aiproxy_report_by_parse(NULL, &by));
}

const unit_test_t unit_report[] = {
    { "report_csv_cells", test_report_csv_cells },
    { "report_spans", test_report_spans },
    { "report_threshold", test_report_threshold },
    { NULL, NULL }
};
