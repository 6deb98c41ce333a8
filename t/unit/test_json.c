/* Unit tests: The JSON wrapper (aiproxy_json). */
#include "harness.h"

#include "aiproxy_json.h"

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

const unit_test_t unit_json[] = {
    { "json", test_json },
    { NULL, NULL }
};
