/* Admission of a request's body: read within the memory bounds, checked,
 * its model allowed, its cost bounded (input, output, choices, images) and
 * the forwarded body prepared. */
#include <string.h>
#include <apr_strings.h>

#include "httpd.h"
#include "http_log.h"
#include "http_protocol.h"

#include "aiproxy_admit_int.h"
#include "aiproxy_body.h"
#include "aiproxy_counters.h"
#include "aiproxy_reply.h"

APLOG_USE_MODULE(aiproxy);

int aiproxy_admit_model_allowed(const aiproxy_req_t *st, const char *model)
{
    if (!st->dir->any_model)
        return st->dir->models &&
               apr_hash_get(st->dir->models, model, APR_HASH_KEY_STRING);
    if (st->dir->kind == AIPROXY_ROUTE_MODEL)
        return apr_hash_get(st->g->model_map, model, APR_HASH_KEY_STRING) != NULL;
    return apr_hash_get(st->g->prices, model, APR_HASH_KEY_STRING) != NULL;
}

apr_array_header_t *aiproxy_admit_model_names(apr_pool_t *p, const aiproxy_req_t *st)
{
    apr_array_header_t *out;
    apr_hash_index_t *hi;

    if (!st->dir->any_model)
        return st->dir->model_list ? st->dir->model_list
                                   : apr_array_make(p, 1, sizeof(const char *));
    if (st->dir->kind == AIPROXY_ROUTE_MODEL)
        return st->g->model_order;
    out = apr_array_make(p, 16, sizeof(const char *));
    for (hi = apr_hash_first(p, st->g->prices); hi; hi = apr_hash_next(hi))
        APR_ARRAY_PUSH(out, const char *) = apr_hash_this_key(hi);
    return out;
}

/* Who may serve the model: the route's provider (under the model's alias
 * there, if any), or for by-model routes every provider of AIProxyModel
 * that speaks the endpoint's API. */
/* A request with tools carries a tool-use system prompt the provider adds
 * (Anthropic documents up to a few hundred tokens), which its body does not
 * show. */
#define TOOL_PROMPT_TOKENS 1000

static int refuse_bad(request_rec *r, aiproxy_req_t *st, const char *code,
                      const char *message)
{
    return aiproxy_reply_error(r, st, HTTP_BAD_REQUEST,
                               "invalid_request_error", code, message);
}

/* The most output the request may produce: the client's limit, never above
 * the model's maximum; without one, AIProxyDefaultMaxTokens or the model's
 * maximum. The limit is written into the forwarded body, so the provider
 * itself holds the answer to what was reserved. 1 when the body changed. */
static int bound_output(aiproxy_req_t *st, aiproxy_endpoint_t ep,
                        apr_int64_t *out_tokens)
{
    const char *field = aiproxy_output_limit_field(ep);
    apr_int64_t limit = st->price->max_output;
    aiproxy_json_t *root = st->info.root;
    int i, changed = 0;

    *out_tokens = 0;
    if (!field || st->price->output <= 0)
        return 0;
    if (st->info.max_output < 0) {
        if (st->g->default_max_tokens > 0 && st->g->default_max_tokens < limit)
            limit = st->g->default_max_tokens;
        changed = aiproxy_json_set_int(root, field, limit) == 0;
    }
    else {
        for (i = 0; aiproxy_output_limits[i]; i++) {
            apr_int64_t n;

            const char *name = aiproxy_output_limits[i];

            if (aiproxy_json_int(aiproxy_json_get(root, name), &n) && n > limit)
                changed |= aiproxy_json_set_int(root, name, limit) == 0;
        }
        if (st->info.max_output < limit)
            limit = st->info.max_output;
    }
    /* Reasoning tokens are output and count against the same limit. */
    *out_tokens = limit * st->info.choices;
    return changed;
}

/* The most input tokens: every body byte a token, each image at the
 * model's per-image ceiling, the tool prompt; input kept at the provider
 * fills the context window. Never more than the window. Answers and
 * returns the status when the input cannot be bounded here. */
static int bound_input(request_rec *r, aiproxy_req_t *st,
                       apr_int64_t *in_tokens)
{
    const aiproxy_price_t *price = st->price;
    apr_int64_t n = (apr_int64_t)st->body_len;

    if (st->info.images) {
        if (price->image_tokens <= 0)
            return refuse_bad(r, st, "images_not_allowed", apr_psprintf(
                              r->pool, "Images are not offered for %s on "
                              "this gateway: its price list names no "
                              "per-image ceiling.", st->info.model));
        n += st->info.images * price->image_tokens;
    }
    if (st->info.tools)
        n += TOOL_PROMPT_TOKENS;
    if (st->info.cache_1h && price->cache_write_1h <= 0)
        return refuse_bad(r, st, "unsupported_feature", apr_psprintf(
                          r->pool, "1-hour cache writes are not offered for "
                          "%s on this gateway: its price list names no "
                          "cache_write_1h. Use ttl 5m.", st->info.model));
    if (st->info.unseen_input) {
        if (st->dir->server_context != 1 || price->context <= 0)
            return refuse_bad(r, st, "unbounded_input", apr_psprintf(
                              r->pool, "This request uses %s: input kept at "
                              "the provider, whose size the gateway cannot "
                              "see, so its cost cannot be bounded. Send the "
                              "whole conversation in the request instead.",
                              st->info.unseen_input));
        n = price->context;
    }
    /* The window bounds one request's input (embeddings: each input). */
    if (price->context > 0 && n > price->context &&
        aiproxy_endpoint_kind(st->endpoint) != AIPROXY_EP_EMBEDDINGS)
        n = price->context;
    if (st->info.web_searches) {
        /* Each search feeds its results to another pass over the whole
         * conversation, every pass billed as input: up to a window's worth
         * per pass, one pass more than the searches. */
        if (price->web_search <= 0 || price->context <= 0)
            return refuse_bad(r, st, "unsupported_feature", apr_psprintf(
                              r->pool, "The web_search_20250305 tool is not "
                              "offered for %s on this gateway: its price list "
                              "names no %s.", st->info.model,
                              price->web_search <= 0 ? "web_search= price"
                                                     : "context window"));
        n = price->context * (st->info.web_searches + 1);
    }
    *in_tokens = n;
    return DECLINED;
}

/* Where provider-kept context is refused, nothing is kept either: a
 * stored response could be pulled into a later request by an id the
 * gateway cannot tell from any other. 1 when the body changed. */
static int keep_nothing_stored(aiproxy_req_t *st, aiproxy_endpoint_t ep)
{
    const aiproxy_json_t *v = aiproxy_json_get(st->info.root, "store");

    if (ep != AIPROXY_EP_RESPONSES || st->dir->server_context == 1 ||
        (v && aiproxy_json_bool(v) == 0))
        return 0;
    return aiproxy_json_set_bool(st->info.root, "store", 0) == 0;
}

/* OpenAI reports usage in a chat stream only when asked: ask for it, so no
 * stream is ever billed at $0. The meter hides the usage from a client that
 * did not ask. 1 when the body changed. */
/* A stream's usage comes only when asked for on some endpoints: asked on
 * the client's behalf, and taken out again on the way back. */
static int ask_stream_usage(aiproxy_req_t *st)
{
    const aiproxy_endpoint_def_t *e = aiproxy_api_endpoint(aiproxy_api(st->api),
                                                           st->endpoint);

    if (!st->info.stream || st->info.include_usage || !e ||
        !e->stream_usage_parent)
        return 0;
    st->meter.asked_stream_usage = aiproxy_json_set_nested_true(
        st->info.root, e->stream_usage_parent, e->stream_usage_key) == 0;
    return st->meter.asked_stream_usage;
}

/* The body: unencoded, within the limit, JSON with an allowed model, and a
 * cost the gateway can bound; sets the reservation. */
static int server_busy(request_rec *r, aiproxy_req_t *st)
{
    aiproxy_stat_inc(AIPROXY_STAT_BUSY);
    apr_table_setn(r->err_headers_out, "Retry-After", "1");
    return aiproxy_reply_error(r, st, HTTP_SERVICE_UNAVAILABLE, "server_error",
                               "server_busy", "The gateway is holding as many "
                               "large requests as it may; retry in a "
                               "moment.");
}

/* Bodies up to this are parsed without counting the tree's cost: theirs is
 * within the fixed share every request has. */
#define SMALL_BODY (64 * 1024)

static int parse_memory(request_rec *r, aiproxy_req_t *st, const char *body)
{
    apr_size_t cost;

    if (st->body_len <= SMALL_BODY)
        return DECLINED;
    cost = aiproxy_json_cost(body, st->body_len);
    if ((apr_off_t)cost > st->g->request_memory)
        return aiproxy_reply_error(r, st, HTTP_REQUEST_ENTITY_TOO_LARGE,
                                   "invalid_request_error",
                                   "request_too_complex", apr_psprintf(
                                   r->pool, "Reading this body would take "
                                   "about %" APR_SIZE_T_FMT " MiB, more than "
                                   "the %" APR_OFF_T_FMT " MiB a request may "
                                   "take: send fewer, larger values (a long "
                                   "array of numbers costs most).",
                                   cost >> 20, st->g->request_memory >> 20));
    if (!aiproxy_body_take(r, cost))
        return server_busy(r, st);
    return DECLINED;
}

/* A free endpoint's body (counting tokens, moderation): its model allowed
 * like any other, nothing reserved, no stream (an answer that is a count
 * or a verdict has nothing to stream, and a stream would be read as one
 * that costs). Forwarded as sent, but for the default model named. */
static int admit_free(request_rec *r, aiproxy_req_t *st, char *body)
{
    if (st->info.stream)
        return refuse_bad(r, st, "stream_not_supported", apr_psprintf(
                          r->pool, "%s does not stream: send it without "
                          "'stream'.", st->endpoint));
    st->free_ep = 1;
    st->price = NULL;
    st->reserved = 0;
    st->body = body;
    st->body_out_len = st->body_len;
    if (st->info.model_defaulted &&
        !(st->body = aiproxy_json_dump(r->pool, st->info.root,
                                       &st->body_out_len)))
        return aiproxy_reply_error(r, st, HTTP_INTERNAL_SERVER_ERROR,
                                   "server_error", "internal_error",
                                   "The request could not be prepared.");
    if (st->info.model_defaulted && st->body_out_len > SMALL_BODY &&
        !aiproxy_body_take(r, st->body_out_len))
        return server_busy(r, st);
    return DECLINED;
}

int aiproxy_admit_body(request_rec *r, aiproxy_req_t *st)
{
    const char *enc = apr_table_get(r->headers_in, "Content-Encoding");
    aiproxy_endpoint_t ep = aiproxy_endpoint_kind(st->endpoint);
    apr_int64_t in_tokens = 0, out_tokens = 0;
    const char *why;
    char *body;
    int rc, changed;

    if (enc && strcasecmp(enc, "identity"))
        return aiproxy_reply_error(r, st, HTTP_UNSUPPORTED_MEDIA_TYPE,
                                   "invalid_request_error",
                                   "unsupported_encoding", "Request bodies "
                                   "must not be content-encoded.");
    rc = aiproxy_body_read(r, st->g->max_body, &body, &st->body_len);
    st->body_read = rc == OK;
    if (rc == HTTP_REQUEST_ENTITY_TOO_LARGE)
        return aiproxy_reply_error(r, st, rc, "invalid_request_error",
                                   "request_too_large", apr_psprintf(r->pool,
                                   "Request body is larger than %" APR_OFF_T_FMT
                                   " bytes.", st->g->max_body));
    if (rc == HTTP_SERVICE_UNAVAILABLE)
        return server_busy(r, st);
    if (rc != OK)
        return aiproxy_reply_error(r, st, rc, "invalid_request_error",
                                   "invalid_body", "The request body could "
                                   "not be read.");
    /* A form, not JSON: its model is read from its fields. */
    if (ep == AIPROXY_EP_TRANSCRIPTIONS)
        return aiproxy_admit_media_form(r, st, body);
    /* A parse's tree can be 40 times its text: bounded before it is
     * built, per request and with the bodies this child holds. */
    if ((rc = parse_memory(r, st, body)) != DECLINED)
        return rc;
    if ((why = aiproxy_inspect_request(r->pool, body, st->body_len, ep,
                                       &st->info)))
        return refuse_bad(r, st, "invalid_request", why);
    if (!aiproxy_admit_model_allowed(st, st->info.model))
        return aiproxy_reply_error(r, st, HTTP_FORBIDDEN,
                                   "invalid_request_error", "model_not_allowed",
                                   apr_psprintf(r->pool, "Model %s is not "
                                                "allowed here. Allowed: %s.",
                                                st->info.model,
                                                apr_array_pstrcat(r->pool,
                                                    aiproxy_admit_model_names(r->pool, st),
                                                    ',')));
    if (aiproxy_endpoint_free(ep))
        return admit_free(r, st, body);
    if (aiproxy_endpoint_media(ep))
        return aiproxy_admit_media(r, st, body);
    if (st->info.refused)
        return refuse_bad(r, st, "unsupported_feature", st->info.refused);
    st->price = apr_hash_get(st->g->prices, st->info.model,
                             APR_HASH_KEY_STRING);
    /* A model priced in media units only has no token price to bill. */
    if (st->price && st->price->input <= 0 && st->price->output <= 0 &&
        (st->price->per_char > 0 || st->price->per_minute > 0 ||
         st->price->images))
        return aiproxy_reply_error(r, st, HTTP_FORBIDDEN,
                                   "invalid_request_error", "model_not_priced",
                                   apr_psprintf(r->pool, "Model %s is priced "
                                                "here for images or audio "
                                                "only, not %s.",
                                                st->info.model, st->endpoint));
    /* A model priced at nothing (a moderation model) serves the free
     * endpoints only: on a paid one, or under another's name by an alias,
     * its price would be a way to work for free. */
    if (!st->price || (st->price->input <= 0 && st->price->output <= 0 &&
                       st->price->cached_input <= 0 &&
                       st->price->cache_write <= 0))
        return aiproxy_reply_error(r, st, HTTP_FORBIDDEN,
                                   "invalid_request_error", "model_not_allowed",
                                   apr_psprintf(r->pool, "Model %s is free "
                                                "here and serves only the "
                                                "free endpoints, not %s.",
                                                st->info.model, st->endpoint));
    if ((rc = bound_input(r, st, &in_tokens)) != DECLINED)
        return rc;
    changed = bound_output(st, ep, &out_tokens);
    changed |= ask_stream_usage(st);
    changed |= keep_nothing_stored(st, ep);
    st->in_tokens = in_tokens;
    st->out_tokens = out_tokens;
    if (st->info.cache_1h) {
        /* Input may be written for an hour, at that dearer rate. */
        aiproxy_price_t dear = *st->price;

        if (dear.cache_write_1h > dear.cache_write)
            dear.cache_write = dear.cache_write_1h;
        if (dear.long_cache_write_1h > dear.long_cache_write)
            dear.long_cache_write = dear.long_cache_write_1h;
        st->reserved = aiproxy_cost_ceiling(&dear, in_tokens, out_tokens);
    }
    else {
        st->reserved = aiproxy_cost_ceiling(st->price, in_tokens, out_tokens);
    }
    st->reserved = aiproxy_cost_calls(st->reserved, st->info.web_searches,
                                      st->price->web_search);
    st->body = body;
    st->body_out_len = st->body_len;
    if (changed) {
        char *out = aiproxy_json_dump(r->pool, st->info.root,
                                      &st->body_out_len);

        if (!out)
            return aiproxy_reply_error(r, st, HTTP_INTERNAL_SERVER_ERROR,
                                       "server_error", "internal_error",
                                       "The request could not be prepared.");
        if (st->body_out_len > SMALL_BODY &&
            !aiproxy_body_take(r, st->body_out_len))
            return server_busy(r, st);
        st->body = out;
    }
    return DECLINED;
}

