/* Roster CSV (core/aiproxy_roster.c). */
#include "harness.h"
#include "aiproxy_roster.h"

static const char *who_at(const apr_array_header_t *a, int i)
{
    return i < a->nelts ? APR_ARRAY_IDX(a, i, const char *) : "(none)";
}

static void parse_text(apr_pool_t *p, const char *text, int max,
                       apr_array_header_t **whos, apr_array_header_t **bad,
                       const char **why)
{
    *why = aiproxy_roster_parse(p, text, strlen(text), max, whos, bad);
}

static void test_roster_shapes(apr_pool_t *p)
{
    apr_array_header_t *w, *bad;
    const char *why;
    aiproxy_roster_bad_t *b;

    parse_text(p, "\xEF\xBB\xBF" "EMAIL,name\r\nA@X.EDU,Ann\r\n\r\n"
               "\"b@x.edu\",\"Bob, \"\"Jr\"\"\"\r\n,\r\n  c@x.edu \t\n"
               "a@x.edu\n@Dept.X.Edu\n\"multi\nline\"\nnot-an-email",
               100, &w, &bad, &why);
    CHECK(why == NULL);
    CHECK_INT(w->nelts, 4);
    CHECK_STR(who_at(w, 0), "a@x.edu");
    CHECK_STR(who_at(w, 1), "b@x.edu");
    CHECK_STR(who_at(w, 2), "c@x.edu");
    CHECK_STR(who_at(w, 3), "@dept.x.edu");
    CHECK_INT(bad->nelts, 2);
    b = &APR_ARRAY_IDX(bad, 0, aiproxy_roster_bad_t);
    CHECK_INT(b->line, 9);              /* the quoted field starts there */
    b = &APR_ARRAY_IDX(bad, 1, aiproxy_roster_bad_t);
    CHECK_INT(b->line, 11);
    CHECK_STR(b->value, "not-an-email");
}

static void test_roster_header_only_first(apr_pool_t *p)
{
    apr_array_header_t *w, *bad;
    const char *why;

    /* A later "email" is a bad line, not a header. */
    parse_text(p, "a@x.edu\nemail\n", 100, &w, &bad, &why);
    CHECK_INT(w->nelts, 1);
    CHECK_INT(bad->nelts, 1);
    parse_text(p, "", 100, &w, &bad, &why);
    CHECK(why == NULL);
    CHECK_INT(w->nelts + bad->nelts, 0);
}

static void test_roster_hostile(apr_pool_t *p)
{
    apr_array_header_t *w, *bad;
    const char *why;
    char nul[] = "a\0b@x.edu\nc@x.edu\n";
    char *longv = apr_pstrcat(p, apr_psprintf(p, "%0400d", 0), "@x.edu",
                              NULL);

    why = aiproxy_roster_parse(p, nul, sizeof(nul) - 1, 100, &w, &bad);
    CHECK(why == NULL);
    CHECK_INT(w->nelts, 1);
    CHECK_STR(who_at(w, 0), "c@x.edu");
    CHECK_INT(bad->nelts, 1);
    parse_text(p, longv, 100, &w, &bad, &why);
    CHECK_INT(bad->nelts, 1);
    CHECK_INT(strlen(APR_ARRAY_IDX(bad, 0, aiproxy_roster_bad_t).value), 80);
    parse_text(p, "\"unterminated@x.edu", 100, &w, &bad, &why);
    CHECK_INT(w->nelts, 1);
    parse_text(p, "a@x.edu|x\n$where@x.edu\n", 100, &w, &bad, &why);
    CHECK_INT(w->nelts, 0);
    CHECK_INT(bad->nelts, 2);
}

static void test_roster_limit(apr_pool_t *p)
{
    apr_array_header_t *w, *bad;
    const char *why;

    parse_text(p, "a@x.edu\n\n\nb@x.edu\nc@x.edu\n", 3, &w, &bad, &why);
    CHECK(why == NULL);
    parse_text(p, "a@x.edu\nb@x.edu\nc@x.edu\nd@x.edu\n", 3, &w, &bad, &why);
    CHECK_REJECT(why, "more than 3 lines");
}

const unit_test_t unit_roster[] = {
    { "roster_shapes", test_roster_shapes },
    { "roster_header_only_first", test_roster_header_only_first },
    { "roster_hostile", test_roster_hostile },
    { "roster_limit", test_roster_limit },
    { NULL, NULL }
};
