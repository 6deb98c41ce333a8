/* What the gateway needs to know from request and response bodies. Pure:
 * unit-tested and fuzzed without a server. */
#ifndef AIPROXY_INSPECT_H
#define AIPROXY_INSPECT_H

#include "aiproxy.h"
#include "aiproxy_cost.h"
#include "aiproxy_json.h"
#include "aiproxy_api.h"

typedef struct {
    aiproxy_json_t *root;
    const char *model;
    int model_defaulted;     /* moderations without one: the default, set
                                in root */
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
    /* Anthropic's hosted web search: the most searches it may run (the
     * max_uses of its tools, summed), each billed per call; 0: none. */
    apr_int64_t web_searches;
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
 * and a positive `n`; then reads what bounds its cost. A free endpoint's
 * body is checked for its model and stream only (moderations default
 * theirs): nothing in it is billed. Returns NULL, or a message for a 400
 * answer. */
const char *aiproxy_inspect_request(apr_pool_t *p, const char *body,
                                    apr_size_t len, aiproxy_endpoint_t ep,
                                    aiproxy_request_info_t *info);

#endif
