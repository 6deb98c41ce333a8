/* What the gateway knows of each provider wire format, one adapter file per
 * API (aiproxy_api_openai.c, aiproxy_api_anthropic.c): its endpoints and
 * their output limits, where the provider's key and the client's token go,
 * how usage counts, and how a stream is read. A new API is one adapter file
 * and one line in aiproxy_api.c. Pure: no httpd. */
#ifndef AIPROXY_API_H
#define AIPROXY_API_H

#include "aiproxy.h"
#include "aiproxy_cost.h"
#include "aiproxy_sse.h"

typedef enum {
    AIPROXY_API_OPENAI = 0,
    AIPROXY_API_ANTHROPIC = 1
} aiproxy_api_t;

/* The request endpoints the gateway meters: billed by tokens, or free. */
typedef enum {
    AIPROXY_EP_CHAT = 0,     /* chat/completions */
    AIPROXY_EP_RESPONSES,    /* responses */
    AIPROXY_EP_MESSAGES,     /* messages (Anthropic) */
    AIPROXY_EP_EMBEDDINGS,   /* embeddings: input only */
    AIPROXY_EP_COUNT_TOKENS, /* messages/count_tokens (Anthropic): free */
    AIPROXY_EP_MODERATIONS,  /* moderations (OpenAI): free */
    AIPROXY_EP_IMAGES,       /* images/generations: per image */
    AIPROXY_EP_TRANSCRIPTIONS, /* audio/transcriptions: per minute */
    AIPROXY_EP_SPEECH,       /* audio/speech: per input character */
    AIPROXY_EP_OTHER
} aiproxy_endpoint_t;

typedef struct {
    const char *path;              /* below the API's base, e.g. "messages" */
    aiproxy_endpoint_t kind;
    /* The output limit written into a forwarded body; NULL: no output. */
    const char *limit_field;
    /* Output limits a body may give (limit_field among them). */
    const char *const *limits;
    /* The option that asks a stream for its usage ("stream_options" /
     * "include_usage"), when the API needs asking. */
    const char *stream_usage_parent, *stream_usage_key;
} aiproxy_endpoint_def_t;

/* The counts a usage object may carry, each present when it is a
 * non-negative integer; read from a JSON tree or scanned from text. */
enum {
    AIPROXY_F_PROMPT, AIPROXY_F_COMPLETION, AIPROXY_F_INPUT,
    AIPROXY_F_OUTPUT, AIPROXY_F_CACHE_READ, AIPROXY_F_CACHE_CREATION,
    AIPROXY_F_PROMPT_CACHED, AIPROXY_F_INPUT_CACHED, AIPROXY_F_CACHE_1H,
    AIPROXY_F_WEB_SEARCH,  /* server_tool_use.web_search_requests (calls) */
    AIPROXY_F_COUNT
};

typedef struct {
    apr_int64_t v[AIPROXY_F_COUNT];
    int has[AIPROXY_F_COUNT];
} aiproxy_usage_fields_t;

/* What a stream has told so far. */
typedef struct {
    aiproxy_usage_t usage;          /* the final counts, once found */
    int usage_found;
    aiproxy_usage_t start_usage;    /* counts given at the start (input) */
    int start_found;
    apr_int64_t delta_tokens;       /* output estimated from the deltas */
    int ended;                      /* its last event came */
    int hide_usage;                 /* usage asked for on the client's
                                       behalf: taken out of what passes */
} aiproxy_stream_t;

typedef struct aiproxy_api_def {
    aiproxy_api_t id;
    const char *name;                         /* api= of AIProxyProvider */
    const aiproxy_endpoint_def_t *endpoints;  /* ends with a NULL path */
    const char *key_header;         /* the provider's key goes here... */
    const char *key_scheme;         /* ...after this ("Bearer ") */
    /* Where a client may send its token besides Authorization: Bearer
     * (its SDK's own key header), or NULL. */
    const char *token_header;
    /* Request headers of the client's that the API needs, besides
     * Content-Type, Content-Length and Accept. NULL-terminated. */
    const char *const *pass_headers;
    /* Adds the counts of one usage object into *u; a count already seen
     * keeps the larger value. 1 when it held any count. */
    int (*usage_merge)(const aiproxy_usage_fields_t *f, aiproxy_usage_t *u);
    /* Reads one event of a stream on endpoint ep into s; p lives as long
     * as the event. Returns what to pass on: ev->raw, a rewrite in p with
     * its length in *len, or NULL to drop the event. */
    const char *(*stream_event)(aiproxy_stream_t *s, apr_pool_t *p,
                                aiproxy_endpoint_t ep,
                                const aiproxy_sse_event_t *ev,
                                apr_size_t *len);
} aiproxy_api_def_t;

const aiproxy_api_def_t *aiproxy_api(aiproxy_api_t id);
/* The i-th API, NULL past the last. */
const aiproxy_api_def_t *aiproxy_api_at(int i);
/* By api= name; NULL when unknown. */
const aiproxy_api_def_t *aiproxy_api_named(const char *name);
/* The APIs' names joined by sep, for messages: "openai|anthropic". */
const char *aiproxy_api_names(apr_pool_t *p, const char *sep);

/* 1 when a request header is one an API needs (or its key header). */
int aiproxy_api_passes_header(const char *name);

/* An endpoint of api, or NULL. */
const aiproxy_endpoint_def_t *aiproxy_api_endpoint(const aiproxy_api_def_t *api,
                                                   const char *path);
/* An endpoint of any API (a route by model serves them all), or NULL. */
const aiproxy_endpoint_def_t *aiproxy_any_endpoint(const char *path);
/* The API an endpoint belongs to (the first that has it). */
aiproxy_api_t aiproxy_endpoint_api(const char *path);

aiproxy_endpoint_t aiproxy_endpoint_kind(const char *path);
/* 1 when an endpoint costs nothing at the provider (counting tokens,
 * moderation): no hold, charged $0, never streamed. */
int aiproxy_endpoint_free(aiproxy_endpoint_t ep);
/* 1 when an endpoint is billed by its own unit, not by tokens (images,
 * minutes of audio, characters): aiproxy_media.h. */
int aiproxy_endpoint_media(aiproxy_endpoint_t ep);
/* The model OpenAI's moderations use when a body names none; the gateway
 * names it in the forwarded body, so what it allowed is what serves. */
#define AIPROXY_MODERATION_MODEL "omni-moderation-latest"
/* The body field that limits output on an endpoint (NULL: no output). */
const char *aiproxy_output_limit_field(aiproxy_endpoint_t ep);
/* Every output limit field of every API, NULL-terminated. */
extern const char *const aiproxy_output_limits[];
/* 1 when field limits output on ep. */
int aiproxy_limit_belongs(aiproxy_endpoint_t ep, const char *field);

/* Tokens an estimate counts for a delta of n bytes of text: at least one,
 * and one for every three bytes (English averages four). */
apr_int64_t aiproxy_delta_tokens(apr_size_t n);

/* For adapters adding up counts: *field = max(*field, v), and a count
 * or 0 when absent. */
void aiproxy_keep_max(apr_int64_t *field, apr_int64_t v);
apr_int64_t aiproxy_field_or_0(const aiproxy_usage_fields_t *f, int which);

/* The adapters. */
extern const aiproxy_api_def_t aiproxy_api_openai;
extern const aiproxy_api_def_t aiproxy_api_anthropic;

#endif
