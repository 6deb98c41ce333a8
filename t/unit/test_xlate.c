/* Unit tests: translation between Chat Completions and Messages
 * (aiproxy_xlate_req.c, aiproxy_xlate_resp.c, aiproxy_xlate_stream.c). */
#include "harness.h"

#include "aiproxy_xlate.h"

/* The string at a path of keys ("a", "b", NULL) or array indexes ("#0"). */
static const char *at(const aiproxy_json_t *v, ...)
{
    va_list ap;
    const char *k;

    va_start(ap, v);
    while (v && (k = va_arg(ap, const char *)))
        v = k[0] == '#' ? aiproxy_json_array_at(v, (apr_size_t)atoi(k + 1))
                        : aiproxy_json_get(v, k);
    va_end(ap);
    return aiproxy_json_string(v);
}

static apr_int64_t num(const aiproxy_json_t *v, const char *k1, const char *k2)
{
    apr_int64_t n = -1;

    v = aiproxy_json_get(v, k1);
    if (k2)
        v = aiproxy_json_get(v, k2);
    aiproxy_json_int(v, &n);
    return n;
}

static aiproxy_json_t *xlate(apr_pool_t *p, aiproxy_api_t from,
                             const char *body, const char **err)
{
    aiproxy_json_t *out = NULL;

    *err = aiproxy_xlate_request(p, from, parse(p, body), 77, 1 << 20, &out);
    return out;
}

static void test_chat_to_messages(apr_pool_t *p)
{
    const char *err;
    aiproxy_json_t *o = xlate(p, AIPROXY_API_OPENAI,
        "{\"model\":\"c\",\"max_tokens\":9000,\"stop\":\"X\",\"user\":\"u\","
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\","
        "\"parameters\":{\"type\":\"object\"}}}],\"tool_choice\":\"required\","
        "\"messages\":[{\"role\":\"developer\",\"content\":\"sys\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":"
        "{\"url\":\"data:image/png;base64,QUJD\"}}]},"
        "{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c1\",\"type\":"
        "\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"r1\"},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"r2\"}]}", &err);

    CHECK(err == NULL);
    CHECK_INT(num(o, "max_tokens", NULL), 77);      /* the gateway's bound */
    CHECK_STR(at(o, "system", "#0", "text", NULL), "sys");
    CHECK_STR(at(o, "stop_sequences", "#0", NULL), "X");
    CHECK_STR(at(o, "metadata", "user_id", NULL), "u");
    CHECK_STR(at(o, "tool_choice", "type", NULL), "any");
    CHECK_STR(at(o, "tools", "#0", "input_schema", "type", NULL), "object");
    CHECK_STR(at(o, "messages", "#0", "content", "#0", "source", "media_type",
                 NULL), "image/png");
    CHECK_STR(at(o, "messages", "#0", "content", "#0", "source", "data", NULL),
              "QUJD");
    CHECK_STR(at(o, "messages", "#1", "content", "#0", "type", NULL),
              "tool_use");
    CHECK_INT(num(aiproxy_json_array_at(aiproxy_json_get(aiproxy_json_array_at(
              aiproxy_json_get(o, "messages"), 1), "content"), 0), "input", "a"),
              1);
    /* Two tool messages: one user turn of two results. */
    CHECK_INT(aiproxy_json_array_size(aiproxy_json_get(o, "messages")), 3);
    CHECK_STR(at(o, "messages", "#2", "content", "#1", "content", "#0", "text",
                 NULL), "r2");
    CHECK(aiproxy_json_get(o, "user") == NULL);
    /* An assistant's empty content beside its calls makes no text block. */
    o = xlate(p, AIPROXY_API_OPENAI, "{\"model\":\"c\",\"messages\":["
              "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{"
              "\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":"
              "\"f\",\"arguments\":\"{}\"}}]}]}", &err);
    CHECK(err == NULL);
    CHECK_INT(aiproxy_json_array_size(aiproxy_json_get(aiproxy_json_array_at(
              aiproxy_json_get(o, "messages"), 0), "content")), 1);
    CHECK_STR(at(o, "messages", "#0", "content", "#0", "type", NULL),
              "tool_use");
}

static void test_refusals(apr_pool_t *p)
{
    const char *err;

    xlate(p, AIPROXY_API_OPENAI, "{\"model\":\"c\",\"messages\":[],"
          "\"logprobs\":true}", &err);
    CHECK_REJECT(err, "'logprobs'");
    xlate(p, AIPROXY_API_OPENAI, "{\"model\":\"c\",\"n\":3,\"messages\":[]}",
          &err);
    CHECK_REJECT(err, "'n'");
    xlate(p, AIPROXY_API_OPENAI, "{\"model\":\"c\",\"messages\":[{\"role\":"
          "\"assistant\",\"tool_calls\":[{\"id\":\"a\",\"function\":{\"name\":"
          "\"f\",\"arguments\":\"[1]\"}}]}]}", &err);
    CHECK_REJECT(err, "'messages[0].tool_calls[0].function.arguments'");
    xlate(p, AIPROXY_API_ANTHROPIC, "{\"model\":\"g\",\"messages\":[{\"role\":"
          "\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"t\","
          "\"signature\":\"s\"}]}]}", &err);
    CHECK_REJECT(err, "'messages[0].content[0]'");
    xlate(p, AIPROXY_API_ANTHROPIC, "{\"model\":\"g\",\"top_k\":1,"
          "\"messages\":[]}", &err);
    CHECK_REJECT(err, "'top_k'");
    /* null is absent, not refused */
    xlate(p, AIPROXY_API_OPENAI, "{\"model\":\"c\",\"seed\":null,"
          "\"messages\":[]}", &err);
    CHECK(err == NULL);
}

static void test_messages_to_chat(apr_pool_t *p)
{
    const char *err;
    aiproxy_json_t *o = xlate(p, AIPROXY_API_ANTHROPIC,
        "{\"model\":\"g\",\"max_tokens\":5,\"stream\":true,\"system\":\"s\","
        "\"tool_choice\":{\"type\":\"any\"},\"messages\":["
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":"
        "\"t1\",\"name\":\"f\",\"input\":{}}]},{\"role\":\"user\",\"content\":["
        "{\"type\":\"text\",\"text\":\"after\"},{\"type\":\"tool_result\","
        "\"tool_use_id\":\"t1\",\"content\":\"res\"}]}]}", &err);

    CHECK(err == NULL);
    CHECK_INT(num(o, "max_completion_tokens", NULL), 77);
    CHECK(aiproxy_json_bool(aiproxy_json_get(aiproxy_json_get(o,
          "stream_options"), "include_usage")) == 1);
    CHECK_STR(at(o, "tool_choice", NULL), "required");
    CHECK_STR(at(o, "messages", "#0", "role", NULL), "system");
    CHECK_STR(at(o, "messages", "#1", "tool_calls", "#0", "function",
                 "arguments", NULL), "{}");
    /* The tool result comes before the rest of its turn. */
    CHECK_STR(at(o, "messages", "#2", "role", NULL), "tool");
    CHECK_STR(at(o, "messages", "#2", "tool_call_id", NULL), "t1");
    CHECK_STR(at(o, "messages", "#3", "content", "#0", "text", NULL), "after");
}

static aiproxy_json_t *answer(apr_pool_t *p, aiproxy_api_t client, int status,
                              const char *body)
{
    apr_size_t len;
    char *out = aiproxy_xlate_answer(p, client, status, body, strlen(body), 5,
                                     &len);

    return out ? parse(p, out) : NULL;
}

static void test_answers(apr_pool_t *p)
{
    aiproxy_json_t *o = answer(p, AIPROXY_API_OPENAI, 200,
        "{\"id\":\"m\",\"model\":\"c\",\"content\":[{\"type\":\"text\",\"text\":"
        "\"hi\"},{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":"
        "{\"a\":1}}],\"stop_reason\":\"tool_use\",\"usage\":{\"input_tokens\":2,"
        "\"output_tokens\":3,\"cache_read_input_tokens\":10,"
        "\"cache_creation_input_tokens\":20}}");

    CHECK_STR(at(o, "choices", "#0", "message", "content", NULL), "hi");
    CHECK_STR(at(o, "choices", "#0", "finish_reason", NULL), "tool_calls");
    CHECK_STR(at(o, "choices", "#0", "message", "tool_calls", "#0", "function",
                 "arguments", NULL), "{\"a\":1}");
    CHECK_INT(num(o, "usage", "prompt_tokens"), 32);
    CHECK_INT(num(aiproxy_json_get(o, "usage"), "prompt_tokens_details",
                  "cached_tokens"), 10);
    CHECK_INT(num(o, "usage", "cache_creation_input_tokens"), 20);
    o = answer(p, AIPROXY_API_ANTHROPIC, 200,
        "{\"id\":\"c\",\"choices\":[{\"message\":{\"content\":\"yo\"},"
        "\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":40,"
        "\"completion_tokens\":4,\"prompt_tokens_details\":{\"cached_tokens\":"
        "30}}}");
    CHECK_STR(at(o, "content", "#0", "text", NULL), "yo");
    CHECK_STR(at(o, "stop_reason", NULL), "max_tokens");
    CHECK_INT(num(o, "usage", "input_tokens"), 10);
    CHECK_INT(num(o, "usage", "cache_read_input_tokens"), 30);
    o = answer(p, AIPROXY_API_OPENAI, 529, "{\"type\":\"error\",\"error\":"
               "{\"type\":\"overloaded_error\",\"message\":\"busy\"}}");
    CHECK_STR(at(o, "error", "message", NULL), "busy");
    CHECK_STR(at(o, "error", "type", NULL), "overloaded_error");
    o = answer(p, AIPROXY_API_ANTHROPIC, 400, "not json");
    CHECK_STR(at(o, "type", NULL), "error");
    CHECK(at(o, "error", "message", NULL) != NULL);
    CHECK(answer(p, AIPROXY_API_OPENAI, 200, "[1]") == NULL);
    CHECK(answer(p, AIPROXY_API_OPENAI, 200, "{\"content\":3}") == NULL);
}

static const char *feed(apr_pool_t *p, aiproxy_xlate_stream_t *x,
                        const char *data)
{
    apr_array_header_t *a = aiproxy_xlate_stream_event(x, p, "", data,
                                                       strlen(data));

    return apr_array_pstrcat(p, a, 0);
}

static void test_streams(apr_pool_t *p)
{
    aiproxy_xlate_stream_t *x = aiproxy_xlate_stream_create(
        p, AIPROXY_API_OPENAI, 1, 5);
    const char *s;

    feed(p, x, "{\"type\":\"message_start\",\"message\":{\"id\":\"m\","
         "\"usage\":{\"input_tokens\":4,\"cache_read_input_tokens\":6}}}");
    s = feed(p, x, "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
             "{\"type\":\"text_delta\",\"text\":\"hey\"}}");
    CHECK(strstr(s, "\"content\":\"hey\"") != NULL);
    s = feed(p, x, "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
             "\"max_tokens\"},\"usage\":{\"output_tokens\":7}}");
    CHECK(strstr(s, "\"finish_reason\":\"length\"") != NULL);
    s = feed(p, x, "{\"type\":\"message_stop\"}");
    CHECK(strstr(s, "\"prompt_tokens\":10") != NULL);
    CHECK(strstr(s, "data: [DONE]\n\n") != NULL);
    CHECK(aiproxy_xlate_stream_done(x));
    CHECK_STR(feed(p, x, "{\"type\":\"message_stop\"}"), "");

    x = aiproxy_xlate_stream_create(p, AIPROXY_API_ANTHROPIC, 0, 5);
    s = feed(p, x, "{\"id\":\"c\",\"choices\":[{\"delta\":{\"tool_calls\":[{"
             "\"index\":0,\"id\":\"t\",\"function\":{\"name\":\"f\","
             "\"arguments\":\"{\\\"a\\\"\"}}]}}]}");
    CHECK(strstr(s, "event: message_start") != NULL);
    CHECK(strstr(s, "\"type\":\"tool_use\"") != NULL);
    CHECK(strstr(s, "\"partial_json\":\"{\\\"a\\\"\"") != NULL);
    feed(p, x, "{\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\"}]}");
    feed(p, x, "{\"choices\":[],\"usage\":{\"prompt_tokens\":3,"
         "\"completion_tokens\":2}}");
    s = feed(p, x, "[DONE]");
    CHECK(strstr(s, "event: content_block_stop") != NULL);
    CHECK(strstr(s, "\"stop_reason\":\"tool_use\"") != NULL);
    CHECK(strstr(s, "\"output_tokens\":2") != NULL);
    CHECK(strstr(s, "event: message_stop") != NULL);
    /* Garbage is skipped, never a crash. */
    x = aiproxy_xlate_stream_create(p, AIPROXY_API_OPENAI, 0, 5);
    CHECK_STR(feed(p, x, "{\"type\":\"content_block_start\",\"index\":3,"
                   "\"content_block\":{\"type\":\"tool_use\"}}"), "");
    /* Any block index, as the provider numbers them. */
    s = feed(p, x, "{\"type\":\"content_block_start\",\"index\":99999,"
             "\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\","
             "\"name\":\"f\"}}");
    CHECK(strstr(s, "\"name\":\"f\"") != NULL);
    s = feed(p, x, "{\"type\":\"content_block_delta\",\"index\":99999,"
             "\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":"
             "\"{}\"}}");
    CHECK(strstr(s, "\"arguments\":\"{}\"") != NULL);
    CHECK_STR(feed(p, x, "not json"), "");
}

/* Tool-call arguments are a string in the client's tree but parse into a
 * tree of their own: bounded by what admission counted, then refused. */
static void test_arguments_budget(apr_pool_t *p)
{
    static const char body[] =
        "{\"model\":\"c\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
        "{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"t1\",\"type\":"
        "\"function\",\"function\":{\"name\":\"f\",\"arguments\":"
        "\"{\\\"a\\\":[{},{},{},{},{},{},{},{}]}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"t1\",\"content\":\"ok\"}]}";
    aiproxy_json_t *out = NULL;
    const char *err;

    err = aiproxy_xlate_request(p, AIPROXY_API_OPENAI, parse(p, body), 77, 16,
                                &out);
    CHECK_REJECT(err, "too large");
    err = aiproxy_xlate_request(p, AIPROXY_API_OPENAI, parse(p, body), 77,
                                1 << 20, &out);
    CHECK(err == NULL);
}

const unit_test_t unit_xlate[] = {
    { "xlate_arguments_budget", test_arguments_budget },
    { "xlate_chat_to_messages", test_chat_to_messages },
    { "xlate_refusals", test_refusals },
    { "xlate_messages_to_chat", test_messages_to_chat },
    { "xlate_answers", test_answers },
    { "xlate_streams", test_streams },
    { NULL, NULL }
};
