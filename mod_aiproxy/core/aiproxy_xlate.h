/* Translation between OpenAI Chat Completions and Anthropic Messages, for
 * a model whose provider speaks the other API than the client: request
 * bodies (aiproxy_xlate_req.c) and answers, JSON and error bodies
 * (aiproxy_xlate_resp.c). What cannot be carried faithfully is refused,
 * never dropped. Pure: no httpd. */
#ifndef AIPROXY_XLATE_H
#define AIPROXY_XLATE_H

#include "aiproxy.h"
#include "aiproxy_api.h"
#include "aiproxy_json.h"

/* The anthropic-version a translated request is sent with. */
#define AIPROXY_XLATE_ANTHROPIC_VERSION "2023-06-01"

/* The provider's endpoint that serves a client's endpoint of the other
 * API ("messages" for "chat/completions" and back), or NULL when none. */
const char *aiproxy_xlate_endpoint(aiproxy_api_t client, const char *endpoint);

/* Translates a client's request body (client: its API) into the other
 * API's, into *out (owned by p; "model" as in body). The output limit is
 * max_output, the gateway's bound. Returns NULL, or a message for the
 * client's 400 that names what cannot be translated. */
const char *aiproxy_xlate_request(apr_pool_t *p, aiproxy_api_t client,
                                  const aiproxy_json_t *body,
                                  apr_int64_t max_output, apr_size_t budget,
                                  aiproxy_json_t **out);

/* Translates a provider's answer (of the other API than client's) with
 * HTTP status `status` into the client's shape: a 2xx into the client's
 * response, anything else into its error body, status kept. `created` is
 * the answer's time (seconds). NULL when the body cannot be read. */
char *aiproxy_xlate_answer(apr_pool_t *p, aiproxy_api_t client, int status,
                           const char *body, apr_size_t len,
                           apr_int64_t created, apr_size_t *out_len);

/* Messages stop reasons as Chat Completions finish reasons and back (one
 * table for answers and streams); NULL for NULL. */
const char *aiproxy_xlate_finish_reason(const char *stop);
const char *aiproxy_xlate_stop_reason(const char *finish);

/* A stream's translation (aiproxy_xlate_stream.c): the provider's events
 * in, the client's out. client_usage: an OpenAI client asked for the usage
 * chunk. Lives in p. */
typedef struct aiproxy_xlate_stream aiproxy_xlate_stream_t;
aiproxy_xlate_stream_t *aiproxy_xlate_stream_create(apr_pool_t *p,
                                                    aiproxy_api_t client,
                                                    int client_usage,
                                                    apr_int64_t created);
/* One provider event (its event name, "" when none, and data): the
 * client's events it makes (const char *, whole SSE events), in p. */
apr_array_header_t *aiproxy_xlate_stream_event(aiproxy_xlate_stream_t *x,
                                               apr_pool_t *p, const char *name,
                                               const char *data,
                                               apr_size_t len);
/* 1 once the client's stream has its last event. */
int aiproxy_xlate_stream_done(const aiproxy_xlate_stream_t *x);

#endif
