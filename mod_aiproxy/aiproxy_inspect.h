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

typedef struct {
    aiproxy_json_t *root;
    const char *model;
    int stream;              /* "stream": true */
    int include_usage;       /* the client itself asked for stream usage */
    apr_int64_t max_output;  /* max_tokens and friends; -1 when absent */
} aiproxy_request_info_t;

/* Checks a request body: a JSON object (no duplicate keys) with a string
 * `model`, a boolean `stream` if any, and non-negative integer output
 * limits. Returns NULL, or a message for a 400 answer. */
const char *aiproxy_inspect_request(apr_pool_t *p, const char *body,
                                    apr_size_t len,
                                    aiproxy_request_info_t *info);

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

/* Usage of a whole non-streamed response body; 1 when found. */
int aiproxy_usage_from_body(apr_pool_t *p, const char *body, apr_size_t len,
                            aiproxy_api_t api, aiproxy_usage_t *u);

#endif
