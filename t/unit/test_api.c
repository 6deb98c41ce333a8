/* The API adapters: their tables, and how each reads a stream, fed the
 * events the providers send (as the meter feeds them). */
#include "harness.h"
#include "aiproxy_api.h"
#include "aiproxy_sse.h"

typedef struct {
    apr_pool_t *p;
    const aiproxy_api_def_t *api;
    aiproxy_endpoint_t ep;
    aiproxy_stream_t s;
    apr_array_header_t *out;        /* what passes, event by event */
} feed_t;

static void on_event(void *baton, const aiproxy_sse_event_t *ev)
{
    feed_t *f = baton;
    apr_size_t len;
    const char *out = f->api->stream_event(&f->s, f->p, f->ep, ev, &len);

    APR_ARRAY_PUSH(f->out, const char *) =
        out ? apr_pstrmemdup(f->p, out, len) : NULL;
}

static void feed(feed_t *f, const char *text)
{
    aiproxy_sse_t *sse = aiproxy_sse_create(f->p, 1 << 20);

    aiproxy_sse_feed(sse, text, strlen(text), on_event, f);
    aiproxy_sse_end(sse, on_event, f);
}

static feed_t *feeder(apr_pool_t *p, aiproxy_api_t api, aiproxy_endpoint_t ep)
{
    feed_t *f = apr_pcalloc(p, sizeof(*f));

    f->p = p;
    f->api = aiproxy_api(api);
    f->ep = ep;
    f->out = apr_array_make(p, 8, sizeof(const char *));
    return f;
}

#define OUT(f, i) APR_ARRAY_IDX((f)->out, (i), const char *)

static void test_api_tables(apr_pool_t *p)
{
    CHECK_INT(aiproxy_endpoint_kind("chat/completions"), AIPROXY_EP_CHAT);
    CHECK_INT(aiproxy_endpoint_kind("messages"), AIPROXY_EP_MESSAGES);
    CHECK_INT(aiproxy_endpoint_kind("audio/speech"), AIPROXY_EP_SPEECH);
    CHECK_INT(aiproxy_endpoint_kind("audio/translations"), AIPROXY_EP_OTHER);
    CHECK_INT(aiproxy_endpoint_api("messages"), AIPROXY_API_ANTHROPIC);
    CHECK_INT(aiproxy_endpoint_api("responses"), AIPROXY_API_OPENAI);
    CHECK_STR(aiproxy_output_limit_field(AIPROXY_EP_CHAT),
              "max_completion_tokens");
    CHECK(!aiproxy_output_limit_field(AIPROXY_EP_EMBEDDINGS));
    CHECK(aiproxy_limit_belongs(AIPROXY_EP_CHAT, "max_tokens"));
    CHECK(!aiproxy_limit_belongs(AIPROXY_EP_RESPONSES, "max_tokens"));
    CHECK_STR(aiproxy_api_named("anthropic")->key_header, "x-api-key");
    CHECK_STR(aiproxy_api_named("openai")->key_scheme, "Bearer ");
    CHECK(!aiproxy_api_named("gemini"));
    CHECK_STR(aiproxy_api_names(p, "|"), "openai|anthropic");
    CHECK(aiproxy_api_passes_header("anthropic-version"));
    CHECK(aiproxy_api_passes_header("AUTHORIZATION"));
    CHECK(!aiproxy_api_passes_header("X-Forwarded-For"));
    CHECK(!aiproxy_api_passes_header("Cookie"));
    CHECK(aiproxy_any_endpoint("messages") != NULL);
    CHECK(!aiproxy_api_endpoint(aiproxy_api(AIPROXY_API_ANTHROPIC),
                                "embeddings"));
    /* The free endpoints: each of its own API, no output limit. */
    CHECK_INT(aiproxy_endpoint_kind("messages/count_tokens"),
              AIPROXY_EP_COUNT_TOKENS);
    CHECK_INT(aiproxy_endpoint_api("messages/count_tokens"),
              AIPROXY_API_ANTHROPIC);
    CHECK_INT(aiproxy_endpoint_kind("moderations"), AIPROXY_EP_MODERATIONS);
    CHECK_INT(aiproxy_endpoint_api("moderations"), AIPROXY_API_OPENAI);
    CHECK(aiproxy_endpoint_free(AIPROXY_EP_COUNT_TOKENS));
    CHECK(aiproxy_endpoint_free(AIPROXY_EP_MODERATIONS));
    CHECK(!aiproxy_endpoint_free(AIPROXY_EP_MESSAGES));
    CHECK(!aiproxy_endpoint_free(AIPROXY_EP_OTHER));
    CHECK(!aiproxy_output_limit_field(AIPROXY_EP_COUNT_TOKENS));
    CHECK(!aiproxy_api_endpoint(aiproxy_api(AIPROXY_API_OPENAI),
                                "messages/count_tokens"));
    CHECK(!aiproxy_api_endpoint(aiproxy_api(AIPROXY_API_ANTHROPIC),
                                "moderations"));
    CHECK_INT(aiproxy_endpoint_kind("messages/count_tokens/.."),
              AIPROXY_EP_OTHER);
}

/* A chat stream as OpenAI sends it once asked for usage: "usage": null on
 * every chunk, then a usage-only chunk, then [DONE]. */
#define CHAT_STREAM \
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello there\"}}]," \
    "\"usage\":null}\n\n" \
    "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]," \
    "\"usage\":null}\n\n" \
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4," \
    "\"prompt_tokens_details\":{\"cached_tokens\":3}}}\n\n" \
    "data: [DONE]\n\n"

static void test_api_chat_stream(apr_pool_t *p)
{
    feed_t *f = feeder(p, AIPROXY_API_OPENAI, AIPROXY_EP_CHAT);

    feed(f, CHAT_STREAM);
    CHECK(f->s.usage_found && f->s.ended);
    CHECK_INT(f->s.usage.input, 6);
    CHECK_INT(f->s.usage.cached_input, 3);
    CHECK_INT(f->s.usage.output, 4);
    CHECK(f->s.delta_tokens >= 2);
    /* Every event passes as it came. */
    CHECK_INT(f->out->nelts, 4);
    CHECK(OUT(f, 2) && strstr(OUT(f, 2), "prompt_tokens"));

    /* Asked for on the client's behalf: the usage-only chunk is dropped,
     * and usage is taken out of chunks that carry choices. */
    f = feeder(p, AIPROXY_API_OPENAI, AIPROXY_EP_CHAT);
    f->s.hide_usage = 1;
    feed(f, CHAT_STREAM);
    CHECK(f->s.usage_found);
    CHECK_INT(f->s.usage.output, 4);
    CHECK_INT(f->out->nelts, 4);
    CHECK(OUT(f, 0) && !strstr(OUT(f, 0), "usage") &&
          strstr(OUT(f, 0), "Hello there"));
    CHECK(!OUT(f, 2));
    CHECK_STR(OUT(f, 3), "data: [DONE]\n\n");
}

static void test_api_responses_stream(apr_pool_t *p)
{
    feed_t *f = feeder(p, AIPROXY_API_OPENAI, AIPROXY_EP_RESPONSES);

    feed(f, "event: response.output_text.delta\n"
            "data: {\"type\":\"response.output_text.delta\",\"delta\":\"abcdefghi\"}\n\n"
            "event: response.completed\n"
            "data: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\","
            "\"instructions\":\"say \\\"usage\\\": {\\\"input_tokens\\\": 999}\","
            "\"usage\":{\"input_tokens\":12,\"output_tokens\":5,"
            "\"input_tokens_details\":{\"cached_tokens\":2}}}}\n\n");
    CHECK(f->s.ended && f->s.usage_found);
    CHECK_INT(f->s.usage.input, 10);
    CHECK_INT(f->s.usage.cached_input, 2);
    CHECK_INT(f->s.usage.output, 5);
    CHECK_INT(f->s.delta_tokens, 3);
}

/* Anthropic: the input at message_start, running output totals at
 * message_delta (without the input), the end at message_stop. */
static void test_api_messages_stream(apr_pool_t *p)
{
    feed_t *f = feeder(p, AIPROXY_API_ANTHROPIC, AIPROXY_EP_MESSAGES);

    feed(f, "event: message_start\n"
            "data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\","
            "\"usage\":{\"input_tokens\":20,\"cache_read_input_tokens\":4,"
            "\"output_tokens\":1}}}\n\n"
            "event: content_block_delta\n"
            "data: {\"type\":\"content_block_delta\",\"index\":0,"
            "\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi!\"}}\n\n");
    CHECK(f->s.start_found && !f->s.usage_found && !f->s.ended);
    CHECK_INT(f->s.start_usage.input, 20);
    CHECK_INT(f->s.delta_tokens, 1);
    feed(f, "event: message_delta\n"
            "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
            "\"end_turn\"},\"usage\":{\"output_tokens\":7}}\n\n"
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    CHECK(f->s.usage_found && f->s.ended);
    CHECK_INT(f->s.usage.input, 20);
    CHECK_INT(f->s.usage.cached_input, 4);
    CHECK_INT(f->s.usage.output, 7);
    /* Anthropic's events pass unchanged. */
    CHECK_INT(f->out->nelts, 4);
    CHECK(OUT(f, 2) && strstr(OUT(f, 2), "message_delta"));
}

const unit_test_t unit_api[] = {
    { "api_tables", test_api_tables },
    { "api_chat_stream", test_api_chat_stream },
    { "api_responses_stream", test_api_responses_stream },
    { "api_messages_stream", test_api_messages_stream },
    { NULL, NULL }
};
