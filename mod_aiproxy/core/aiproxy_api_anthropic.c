/* Anthropic's wire format: the Messages API, and counting its tokens. */
#include <string.h>
#include <apr_strings.h>

#include "aiproxy_api.h"
#include "aiproxy_usage_read.h"

static const char *const messages_limits[] = { "max_tokens", NULL };

static const char *const pass_headers[] = {
    "anthropic-version", "anthropic-beta", NULL
};

static const aiproxy_endpoint_def_t endpoints[] = {
    { "messages", AIPROXY_EP_MESSAGES, "max_tokens", messages_limits,
      NULL, NULL },
    /* Free: the same body as messages, answered {"input_tokens": N}. */
    { "messages/count_tokens", AIPROXY_EP_COUNT_TOKENS, NULL, NULL,
      NULL, NULL },
    { NULL, AIPROXY_EP_OTHER, NULL, NULL, NULL, NULL }
};

/* input_tokens excludes cache reads and writes; cache_creation_input_tokens
 * counts writes of both durations, the hour's named inside
 * cache_creation. */
static int usage_merge(const aiproxy_usage_fields_t *f, aiproxy_usage_t *u)
{
    apr_int64_t writes = aiproxy_field_or_0(f, AIPROXY_F_CACHE_CREATION);
    apr_int64_t hour = f->has[AIPROXY_F_CACHE_1H] ? f->v[AIPROXY_F_CACHE_1H]
                                                  : u->cache_write_1h;

    aiproxy_keep_max(&u->input, aiproxy_field_or_0(f, AIPROXY_F_INPUT));
    aiproxy_keep_max(&u->cached_input,
                     aiproxy_field_or_0(f, AIPROXY_F_CACHE_READ));
    if (hour > writes)
        writes = hour;
    aiproxy_keep_max(&u->cache_write, writes - hour);
    aiproxy_keep_max(&u->cache_write_1h, hour);
    aiproxy_keep_max(&u->output, aiproxy_field_or_0(f, AIPROXY_F_OUTPUT));
    /* Web searches the server ran, billed per call (server_tool_use). */
    aiproxy_keep_max(&u->web_search,
                     aiproxy_field_or_0(f, AIPROXY_F_WEB_SEARCH));
    return f->has[AIPROXY_F_INPUT] || f->has[AIPROXY_F_CACHE_READ] ||
           f->has[AIPROXY_F_CACHE_CREATION] || f->has[AIPROXY_F_OUTPUT] ||
           f->has[AIPROXY_F_CACHE_1H] || f->has[AIPROXY_F_WEB_SEARCH];
}

/* message_start's usage is the input, with a placeholder output: only
 * message_delta's counts are final, those it names, the rest from the
 * start. */
static const char *stream_event(aiproxy_stream_t *s, apr_pool_t *p,
                                aiproxy_endpoint_t ep,
                                const aiproxy_sse_event_t *ev,
                                apr_size_t *len)
{
    (void)ep;
    *len = ev->raw_len;
    if (!strcmp(ev->name, "content_block_delta")) {
        s->delta_tokens += aiproxy_delta_tokens(aiproxy_delta_text_len(
                               ev->data, ev->data_len));
    }
    else if (!strcmp(ev->name, "message_start")) {
        if (aiproxy_usage_in_event(p, ev->data, ev->data_len, "message",
                                   AIPROXY_API_ANTHROPIC, &s->start_usage))
            s->start_found = 1;
    }
    else if (!strcmp(ev->name, "message_delta")) {
        aiproxy_usage_t u = s->start_usage;

        if (aiproxy_usage_in_event(p, ev->data, ev->data_len, NULL,
                                   AIPROXY_API_ANTHROPIC, &u)) {
            s->usage = u;
            s->usage_found = 1;
        }
    }
    else if (!strcmp(ev->name, "message_stop")) {
        s->ended = 1;
    }
    return ev->raw;
}

const aiproxy_api_def_t aiproxy_api_anthropic = {
    AIPROXY_API_ANTHROPIC, "anthropic", endpoints,
    "x-api-key", "", "x-api-key", pass_headers,
    usage_merge, stream_event
};
