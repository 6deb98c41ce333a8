/* Unit tests: Request inspection and usage extraction (aiproxy_inspect, aiproxy_path). */
#include "harness.h"

#include "aiproxy_json.h"
#include "aiproxy_cost.h"
#include "aiproxy_inspect.h"
#include "aiproxy_path.h"

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
    /* A namespace of functions (Codex CLI) is functions; of anything
     * else, or nested, or on chat, it is refused like a hosted tool. */
    CHECK(inspect_at(p, AIPROXY_EP_RESPONSES, "{\"model\":\"m\",\"tools\":[{"
                     "\"type\":\"namespace\",\"name\":\"ns\",\"tools\":[{"
                     "\"type\":\"function\",\"name\":\"f\"}]}]}", &info) == NULL);
    CHECK(info.refused == NULL && info.tools == 1);
    CHECK(inspect_at(p, AIPROXY_EP_RESPONSES, "{\"model\":\"m\",\"tools\":[{"
                     "\"type\":\"namespace\",\"name\":\"ns\",\"tools\":[{"
                     "\"type\":\"function\",\"name\":\"f\"},{\"type\":"
                     "\"web_search\"}]}]}", &info) == NULL);
    CHECK_REJECT(info.refused, "web_search");
    CHECK(inspect_at(p, AIPROXY_EP_RESPONSES, "{\"model\":\"m\",\"tools\":[{"
                     "\"type\":\"namespace\",\"name\":\"ns\",\"tools\":[{"
                     "\"type\":\"namespace\",\"name\":\"in\",\"tools\":[]}]}]}",
                     &info) == NULL);
    CHECK_REJECT(info.refused, "namespace");
    CHECK(inspect_at(p, AIPROXY_EP_CHAT, "{\"model\":\"m\",\"tools\":[{"
                     "\"type\":\"namespace\",\"name\":\"ns\",\"tools\":[]}]}",
                     &info) == NULL);
    CHECK_REJECT(info.refused, "namespace");
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

/* The free endpoints: model and stream read, nothing else refused;
 * moderations default their model into the body. */
static void test_inspect_free(apr_pool_t *p)
{
    aiproxy_request_info_t info;
    char *out;
    apr_size_t len;

    CHECK(inspect_at(p, AIPROXY_EP_MODERATIONS, "{\"input\":\"hi\"}", &info)
          == NULL);
    CHECK_STR(info.model, AIPROXY_MODERATION_MODEL);
    CHECK(info.model_defaulted);
    out = aiproxy_json_dump(p, info.root, &len);
    CHECK(out && strstr(out, "\"model\":\"omni-moderation-latest\""));
    CHECK(inspect_at(p, AIPROXY_EP_MODERATIONS,
                     "{\"input\":\"hi\",\"model\":null}", &info) == NULL);
    CHECK(info.model_defaulted);
    CHECK(inspect_at(p, AIPROXY_EP_MODERATIONS,
                     "{\"input\":\"hi\",\"model\":\"text-moderation-stable\"}",
                     &info) == NULL);
    CHECK_STR(info.model, "text-moderation-stable");
    CHECK(!info.model_defaulted);
    CHECK_REJECT(inspect_at(p, AIPROXY_EP_MODERATIONS,
                            "{\"input\":\"hi\",\"model\":7}", &info),
                 "'model'");
    /* count_tokens: a model is required, like messages. */
    CHECK_REJECT(inspect_at(p, AIPROXY_EP_COUNT_TOKENS, "{\"messages\":[]}",
                            &info), "'model'");
    CHECK(inspect_at(p, AIPROXY_EP_COUNT_TOKENS,
                     "{\"model\":\"m\",\"stream\":true,\"max_tokens\":5,"
                     "\"tools\":[{\"type\":\"web_search_20250305\"}]}",
                     &info) == NULL);
    CHECK(info.stream);
    CHECK(!info.refused);
    CHECK_REJECT(inspect_at(p, AIPROXY_EP_COUNT_TOKENS,
                            "{\"model\":\"m\",\"stream\":1}", &info),
                 "'stream'");
}

const unit_test_t unit_inspect[] = {
    { "inspect_free", test_inspect_free },
    { "inspect_ok", test_inspect_ok },
    { "inspect_bad", test_inspect_bad },
    { "inspect_bounds", test_inspect_bounds },
    { "delta_text", test_delta_text },
    { "member_span", test_member_span },
    { "path_endpoint", test_path_endpoint },
    { "usage", test_usage },
    { "usage_cache_hour", test_usage_cache_hour },
    { NULL, NULL }
};
