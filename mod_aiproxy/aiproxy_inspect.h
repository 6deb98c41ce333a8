/* What the gateway needs to know from request and response bodies. Pure:
 * unit-tested and fuzzed without a server. */
#ifndef AIPROXY_INSPECT_H
#define AIPROXY_INSPECT_H

#include "aiproxy.h"
#include "aiproxy_cost.h"
#include "aiproxy_json.h"

typedef enum {
    AIPROXY_API_OPENAI = 0,
    AIPROXY_API_ANTHROPIC = 1
} aiproxy_api_t;

/* The request endpoints the gateway meters, each billed by tokens. */
typedef enum {
    AIPROXY_EP_CHAT = 0,     /* chat/completions */
    AIPROXY_EP_RESPONSES,    /* responses */
    AIPROXY_EP_MESSAGES,     /* messages (Anthropic) */
    AIPROXY_EP_EMBEDDINGS,   /* embeddings: input only */
    AIPROXY_EP_OTHER
} aiproxy_endpoint_t;

aiproxy_endpoint_t aiproxy_endpoint_kind(const char *endpoint);

/* Every output limit field of the three APIs, NULL-terminated. */
extern const char *const aiproxy_output_limits[];

/* The body field that limits output on an endpoint (NULL: no output). */
const char *aiproxy_output_limit_field(aiproxy_endpoint_t ep);

typedef struct {
    aiproxy_json_t *root;
    const char *model;
    int stream;              /* "stream": true */
    int include_usage;       /* the client itself asked for stream usage */
    apr_int64_t max_output;  /* the largest output limit given; -1: none */
    apr_int64_t choices;     /* answers asked for ("n"); 1 when absent */
    apr_int64_t images;      /* image parts in the input */
    /* Input the body does not show: context kept at the provider
     * (previous_response_id, conversation, stored prompts and items) or
     * files, whose size the gateway cannot see. NULL or what it is. */
    const char *unseen_input;
    int tools;               /* tool definitions, which add a tool prompt */
    int cache_1h;            /* asks for 1-hour cache writes */
    int reasoning;           /* asks for reasoning, which streams may not
                                show (OpenAI's reasoning, Anthropic's
                                thinking) */
    /* Something that costs money beyond the token counts and cannot be
     * bounded here (a service tier, a hosted tool, background mode...):
     * the message of the 400 that refuses it, or NULL. */
    const char *refused;
} aiproxy_request_info_t;

/* Checks a request body: a JSON object (no duplicate keys) with a string
 * `model`, a boolean `stream` if any, non-negative integer output limits
 * and a positive `n`; then reads what bounds its cost. Returns NULL, or a
 * message for a 400 answer. */
const char *aiproxy_inspect_request(apr_pool_t *p, const char *body,
                                    apr_size_t len, aiproxy_endpoint_t ep,
                                    aiproxy_request_info_t *info);

/* The bytes of text an SSE delta event carries (text, arguments,
 * reasoning...), read without parsing the event: the basis of the output
 * estimate of a stream cut before its usage. */
apr_size_t aiproxy_delta_text_len(const char *data, apr_size_t len);

/* Finds the top-level member `key` of the JSON object text s: *start and
 * *end span the member with one neighbouring comma (so removing the span
 * leaves valid JSON), *vstart and *vlen its value. 1 when found. */
int aiproxy_json_member_span(const char *s, apr_size_t len, const char *key,
                             apr_size_t *start, apr_size_t *end,
                             apr_size_t *vstart, apr_size_t *vlen);

/* Adds a usage object of any supported API into *u. A field already seen
 * keeps the larger value, so Anthropic's message_start and message_delta
 * merge into the final counts. Returns 1 when it held any token count. */
int aiproxy_usage_merge(const aiproxy_json_t *usage, aiproxy_api_t api,
                        aiproxy_usage_t *u);

/* The same for a usage object in text at s (the plain shape providers
 * send), without building a JSON tree: 1 or 0 as aiproxy_usage_merge, with
 * *used the object's length; -1 when the text is anything else (jansson
 * must judge it; *u untouched). */
int aiproxy_usage_scan(const char *s, apr_size_t len, apr_size_t *used,
                       aiproxy_api_t api, aiproxy_usage_t *u);

/* Reads a usage object's text: scanned, or parsed (in p) when it has an
 * unusual shape and is small enough to be one. 1 when it held a count. */
int aiproxy_usage_from_value(apr_pool_t *p, const char *text, apr_size_t len,
                             aiproxy_api_t api, aiproxy_usage_t *u);

/* Usage of a whole non-streamed response body (its top-level member, the
 * body one object); 1 when found. */
int aiproxy_usage_from_body(apr_pool_t *p, const char *body, apr_size_t len,
                            aiproxy_api_t api, aiproxy_usage_t *u);

#endif
