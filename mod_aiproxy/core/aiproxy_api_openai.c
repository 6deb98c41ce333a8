/* OpenAI's wire format: Chat Completions, the Responses API, embeddings,
 * moderations, images, audio, the model list. */
#include <string.h>
#include <apr_strings.h>

#include "aiproxy_api.h"
#include "aiproxy_usage_read.h"

/* max_tokens is deprecated on chat and refused by reasoning models: the
 * gateway writes max_completion_tokens. */
static const char *const chat_limits[] = {
    "max_tokens", "max_completion_tokens", NULL
};
static const char *const responses_limits[] = { "max_output_tokens", NULL };

static const char *const pass_headers[] = {
    "OpenAI-Beta", "Idempotency-Key", NULL
};

static const aiproxy_endpoint_def_t endpoints[] = {
    /* Billed by their own units (aiproxy_media.h). */
    { "audio/speech", AIPROXY_EP_SPEECH, NULL, NULL, NULL, NULL },
    { "audio/transcriptions", AIPROXY_EP_TRANSCRIPTIONS, NULL, NULL, NULL,
      NULL },
    { "chat/completions", AIPROXY_EP_CHAT, "max_completion_tokens",
      chat_limits, "stream_options", "include_usage" },
    { "embeddings", AIPROXY_EP_EMBEDDINGS, NULL, NULL, NULL, NULL },
    { "images/generations", AIPROXY_EP_IMAGES, NULL, NULL, NULL, NULL },
    { "models", AIPROXY_EP_OTHER, NULL, NULL, NULL, NULL },
    /* Free; its model is optional (AIPROXY_MODERATION_MODEL). */
    { "moderations", AIPROXY_EP_MODERATIONS, NULL, NULL, NULL, NULL },
    { "responses", AIPROXY_EP_RESPONSES, "max_output_tokens",
      responses_limits, NULL, NULL },
    { NULL, AIPROXY_EP_OTHER, NULL, NULL, NULL, NULL }
};

/* Cached tokens are counted inside the prompt total. Chat and embeddings
 * say prompt/completion; the Responses API input/output. */
static int usage_merge(const aiproxy_usage_fields_t *f, aiproxy_usage_t *u)
{
    apr_int64_t total, cached, out;

    if (f->has[AIPROXY_F_PROMPT]) {
        total = f->v[AIPROXY_F_PROMPT];
        cached = aiproxy_field_or_0(f, AIPROXY_F_PROMPT_CACHED);
        out = aiproxy_field_or_0(f, AIPROXY_F_COMPLETION);
    }
    else if (f->has[AIPROXY_F_INPUT]) {
        total = f->v[AIPROXY_F_INPUT];
        cached = aiproxy_field_or_0(f, AIPROXY_F_INPUT_CACHED);
        out = aiproxy_field_or_0(f, AIPROXY_F_OUTPUT);
    }
    else {
        return 0;
    }
    if (cached > total)
        cached = total;
    aiproxy_keep_max(&u->input, total - cached);
    aiproxy_keep_max(&u->cached_input, cached);
    aiproxy_keep_max(&u->output, out);
    return 1;
}

static int ends_with(const char *s, const char *tail)
{
    apr_size_t n = strlen(s), t = strlen(tail);

    return n >= t && !memcmp(s + n - t, tail, t);
}

/* A chat chunk: counts its delta, reads usage wherever it rides (OpenAI
 * puts "usage": null on every chunk once asked), and when the gateway
 * asked for usage on the client's behalf takes it out again (a usage-only
 * chunk goes whole). */
static const char *chat_chunk(aiproxy_stream_t *s, apr_pool_t *p,
                              const aiproxy_sse_event_t *ev, apr_size_t *len)
{
    apr_size_t b, e, vs, vlen, cs, ce, cvs, cvlen, i;
    char *out;

    if (strstr(ev->data, "\"delta\""))
        s->delta_tokens += aiproxy_delta_tokens(aiproxy_delta_text_len(
                               ev->data, ev->data_len));
    if (!strstr(ev->data, "\"usage\"") ||
        !aiproxy_json_member_span(ev->data, ev->data_len, "usage", &b, &e,
                                  &vs, &vlen))
        return ev->raw;
    if (ev->data[vs] == '{' &&
        aiproxy_usage_from_value(p, ev->data + vs, vlen, AIPROXY_API_OPENAI,
                                 &s->usage))
        s->usage_found = 1;
    if (!s->hide_usage)
        return ev->raw;
    if (aiproxy_json_member_span(ev->data, ev->data_len, "choices", &cs, &ce,
                                 &cvs, &cvlen) &&
        cvlen == 2 && !memcmp(ev->data + cvs, "[]", 2))
        return NULL;
    /* One data line: a line break in JSON text is whitespace, so one in
     * the data becomes a space. */
    *len = 6 + ev->data_len - (e - b) + 2;
    out = apr_palloc(p, *len);
    memcpy(out, "data: ", 6);
    memcpy(out + 6, ev->data, b);
    memcpy(out + 6 + b, ev->data + e, ev->data_len - e);
    for (i = 6; i < *len - 2; i++)
        if (out[i] == '\n')
            out[i] = ' ';
    memcpy(out + *len - 2, "\n\n", 2);
    return out;
}

static const char *stream_event(aiproxy_stream_t *s, apr_pool_t *p,
                                aiproxy_endpoint_t ep,
                                const aiproxy_sse_event_t *ev,
                                apr_size_t *len)
{
    *len = ev->raw_len;
    if (ep == AIPROXY_EP_RESPONSES) {
        if (ends_with(ev->name, ".delta"))
            s->delta_tokens += aiproxy_delta_tokens(aiproxy_delta_text_len(
                                   ev->data, ev->data_len));
        else if (!strcmp(ev->name, "response.completed") ||
                 !strcmp(ev->name, "response.incomplete") ||
                 !strcmp(ev->name, "response.failed")) {
            if (aiproxy_usage_in_event(p, ev->data, ev->data_len, "response",
                                       AIPROXY_API_OPENAI, &s->usage))
                s->usage_found = 1;
            s->ended = 1;
        }
        return ev->raw;
    }
    if (ev->data_len == 6 && !memcmp(ev->data, "[DONE]", 6)) {
        s->ended = 1;
        return ev->raw;
    }
    return ev->data_len ? chat_chunk(s, p, ev, len) : ev->raw;
}

const aiproxy_api_def_t aiproxy_api_openai = {
    AIPROXY_API_OPENAI, "openai", endpoints,
    "Authorization", "Bearer ", NULL, pass_headers,
    usage_merge, stream_event
};
