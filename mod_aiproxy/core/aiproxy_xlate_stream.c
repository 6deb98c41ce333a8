/* Streams, Messages events <-> Chat Completions chunks: one provider event
 * in, the client's events out. The meter has read the event for its usage
 * (in the provider's terms) before it comes here. Each event is parsed on
 * its own (the SSE reader bounds its size); the state between events is a
 * few counters and ids. */
#include <string.h>
#include <apr_strings.h>

#include "aiproxy_xlate.h"

struct aiproxy_xlate_stream {
    apr_pool_t *pool;           /* lives as long as the stream */
    aiproxy_api_t client;
    int client_usage;           /* the OpenAI client asked for usage */
    const char *id, *model;
    apr_int64_t created;
    /* Anthropic -> chat */
    apr_int64_t in, cache_read, cache_write, out;
    apr_hash_t *block_tool;     /* content block index -> tool index */
    int tools;
    const char *finish;
    /* chat -> Anthropic */
    int started, block_open, block_is_text, blocks, tool_index;
    const char *stop;
    apr_int64_t prompt, cached, completion;
    int done;
};

aiproxy_xlate_stream_t *aiproxy_xlate_stream_create(apr_pool_t *p,
                                                    aiproxy_api_t client,
                                                    int client_usage,
                                                    apr_int64_t created)
{
    aiproxy_xlate_stream_t *x = apr_pcalloc(p, sizeof(*x));

    x->pool = p;
    x->client = client;
    x->client_usage = client_usage;
    x->created = created;
    x->tool_index = -1;
    x->block_tool = apr_hash_make(p);
    return x;
}

static apr_int64_t int_or_0(const aiproxy_json_t *v)
{
    apr_int64_t n;

    return aiproxy_json_int(v, &n) && n > 0 ? n : 0;
}

/* Appends "event: name\ndata: json\n\n" (name NULL: data only). */
static void emit(apr_pool_t *p, apr_array_header_t *out, const char *name,
                 aiproxy_json_t *v)
{
    apr_size_t len;
    const char *json = aiproxy_json_dump(p, aiproxy_json_own(p, v), &len);

    if (json)
        APR_ARRAY_PUSH(out, const char *) = name
            ? apr_pstrcat(p, "event: ", name, "\ndata: ", json, "\n\n", NULL)
            : apr_pstrcat(p, "data: ", json, "\n\n", NULL);
}

/* ---- Anthropic events -> chat chunks ---- */

static aiproxy_json_t *chunk(aiproxy_xlate_stream_t *x, aiproxy_json_t *delta,
                             const char *finish)
{
    aiproxy_json_t *c = aiproxy_json_new_object(), *ch, *choices;

    aiproxy_json_put(c, "id", aiproxy_json_new_string(x->id ? x->id : "msg"));
    aiproxy_json_put(c, "object", aiproxy_json_new_string(
                         "chat.completion.chunk"));
    aiproxy_json_put(c, "created", aiproxy_json_new_int(x->created));
    aiproxy_json_put(c, "model", aiproxy_json_new_string(x->model ? x->model
                                                                  : ""));
    choices = aiproxy_json_new_array();
    if (delta) {
        ch = aiproxy_json_new_object();
        aiproxy_json_put(ch, "index", aiproxy_json_new_int(0));
        aiproxy_json_put(ch, "delta", delta);
        aiproxy_json_put(ch, "finish_reason", finish
                         ? aiproxy_json_new_string(finish)
                         : aiproxy_json_new_null());
        aiproxy_json_push(choices, ch);
    }
    aiproxy_json_put(c, "choices", choices);
    return c;
}

static void read_anthropic_usage(aiproxy_xlate_stream_t *x,
                                 const aiproxy_json_t *u)
{
    if (!aiproxy_json_is_object(u))
        return;
    if (aiproxy_json_get(u, "input_tokens"))
        x->in = int_or_0(aiproxy_json_get(u, "input_tokens"));
    if (aiproxy_json_get(u, "cache_read_input_tokens"))
        x->cache_read = int_or_0(aiproxy_json_get(u, "cache_read_input_tokens"));
    if (aiproxy_json_get(u, "cache_creation_input_tokens"))
        x->cache_write = int_or_0(aiproxy_json_get(
                                      u, "cache_creation_input_tokens"));
    if (aiproxy_json_get(u, "output_tokens"))
        x->out = int_or_0(aiproxy_json_get(u, "output_tokens"));
}

/* A chat chunk of one tool call's part: tc (its id and type, when first)
 * at index with its function part fn. */
static void emit_tool_call(aiproxy_xlate_stream_t *x, apr_pool_t *p,
                           apr_array_header_t *out, aiproxy_json_t *tc,
                           int index, aiproxy_json_t *fn)
{
    aiproxy_json_t *a = aiproxy_json_new_array(), *d = aiproxy_json_new_object();

    aiproxy_json_put(tc, "index", aiproxy_json_new_int(index));
    aiproxy_json_put(tc, "function", fn);
    aiproxy_json_push(a, tc);
    aiproxy_json_put(d, "tool_calls", a);
    emit(p, out, NULL, chunk(x, d, NULL));
}

static void from_anthropic(aiproxy_xlate_stream_t *x, apr_pool_t *p,
                           const char *type, aiproxy_json_t *e,
                           apr_array_header_t *out)
{
    aiproxy_json_t *d;
    apr_int64_t index = -1;

    aiproxy_json_int(aiproxy_json_get(e, "index"), &index);
    if (!strcmp(type, "message_start")) {
        aiproxy_json_t *m = aiproxy_json_get(e, "message");
        const char *s;

        if ((s = aiproxy_json_string(aiproxy_json_get(m, "id"))))
            x->id = apr_pstrdup(x->pool, s);
        if ((s = aiproxy_json_string(aiproxy_json_get(m, "model"))))
            x->model = apr_pstrdup(x->pool, s);
        read_anthropic_usage(x, aiproxy_json_get(m, "usage"));
        d = aiproxy_json_new_object();
        aiproxy_json_put(d, "role", aiproxy_json_new_string("assistant"));
        aiproxy_json_put(d, "content", aiproxy_json_new_string(""));
        emit(p, out, NULL, chunk(x, d, NULL));
    }
    else if (!strcmp(type, "content_block_start")) {
        aiproxy_json_t *b = aiproxy_json_get(e, "content_block"), *tc, *fn;
        const char *bt = aiproxy_json_string(aiproxy_json_get(b, "type"));

        if (!bt || strcmp(bt, "tool_use") || index < 0 ||
            !aiproxy_json_is_string(aiproxy_json_get(b, "id")) ||
            !aiproxy_json_is_string(aiproxy_json_get(b, "name")))
            return;
        {
            apr_int64_t *k = apr_pmemdup(x->pool, &index, sizeof(index));

            apr_hash_set(x->block_tool, k, sizeof(*k),
                         apr_pmemdup(x->pool, &x->tools, sizeof(int)));
            x->tools++;
        }
        fn = aiproxy_json_new_object();
        aiproxy_json_put(fn, "name", aiproxy_json_ref(aiproxy_json_get(b,
                                                                    "name")));
        aiproxy_json_put(fn, "arguments", aiproxy_json_new_string(""));
        tc = aiproxy_json_new_object();
        aiproxy_json_put(tc, "id", aiproxy_json_ref(aiproxy_json_get(b, "id")));
        aiproxy_json_put(tc, "type", aiproxy_json_new_string("function"));
        emit_tool_call(x, p, out, tc, x->tools - 1, fn);
    }
    else if (!strcmp(type, "content_block_delta")) {
        aiproxy_json_t *delta = aiproxy_json_get(e, "delta");
        const char *dt = aiproxy_json_string(aiproxy_json_get(delta, "type"));
        aiproxy_json_t *text = aiproxy_json_get(delta, "text");
        aiproxy_json_t *pj = aiproxy_json_get(delta, "partial_json");
        const int *tool = apr_hash_get(x->block_tool, &index, sizeof(index));

        if (dt && !strcmp(dt, "text_delta") && aiproxy_json_is_string(text)) {
            d = aiproxy_json_new_object();
            aiproxy_json_put(d, "content", aiproxy_json_ref(text));
            emit(p, out, NULL, chunk(x, d, NULL));
        }
        else if (dt && !strcmp(dt, "input_json_delta") &&
                 aiproxy_json_is_string(pj) && tool) {
            aiproxy_json_t *fn = aiproxy_json_new_object();

            aiproxy_json_put(fn, "arguments", aiproxy_json_ref(pj));
            emit_tool_call(x, p, out, aiproxy_json_new_object(), *tool, fn);
        }
        /* thinking and signature deltas have no place in a chat chunk */
    }
    else if (!strcmp(type, "message_delta")) {
        const char *s = aiproxy_json_string(aiproxy_json_get(
                            aiproxy_json_get(e, "delta"), "stop_reason"));

        read_anthropic_usage(x, aiproxy_json_get(e, "usage"));
        x->finish = aiproxy_xlate_finish_reason(s);
        if (!x->finish)
            x->finish = "stop";
        emit(p, out, NULL, chunk(x, aiproxy_json_new_object(), x->finish));
    }
    else if (!strcmp(type, "message_stop")) {
        if (x->client_usage) {
            aiproxy_json_t *c = chunk(x, NULL, NULL), *u, *dd;

            u = aiproxy_json_new_object();
            aiproxy_json_put(u, "prompt_tokens", aiproxy_json_new_int(
                                 x->in + x->cache_read + x->cache_write));
            aiproxy_json_put(u, "completion_tokens",
                             aiproxy_json_new_int(x->out));
            aiproxy_json_put(u, "total_tokens", aiproxy_json_new_int(
                x->in + x->cache_read + x->cache_write + x->out));
            dd = aiproxy_json_new_object();
            aiproxy_json_put(dd, "cached_tokens",
                             aiproxy_json_new_int(x->cache_read));
            aiproxy_json_put(u, "prompt_tokens_details", dd);
            aiproxy_json_put(u, "cache_creation_input_tokens",
                             aiproxy_json_new_int(x->cache_write));
            aiproxy_json_put(c, "usage", u);
            emit(p, out, NULL, c);
        }
        APR_ARRAY_PUSH(out, const char *) = "data: [DONE]\n\n";
        x->done = 1;
    }
    else if (!strcmp(type, "error")) {
        aiproxy_json_t *err = aiproxy_json_get(e, "error"), *o, *in;

        in = aiproxy_json_new_object();
        aiproxy_json_put(in, "message", aiproxy_json_new_string(
            aiproxy_json_string(aiproxy_json_get(err, "message"))
            ? aiproxy_json_string(aiproxy_json_get(err, "message"))
            : "The provider's stream failed."));
        aiproxy_json_put(in, "type", aiproxy_json_new_string(
            aiproxy_json_string(aiproxy_json_get(err, "type"))
            ? aiproxy_json_string(aiproxy_json_get(err, "type"))
            : "api_error"));
        aiproxy_json_put(in, "code", aiproxy_json_new_null());
        o = aiproxy_json_new_object();
        aiproxy_json_put(o, "error", in);
        emit(p, out, NULL, o);
    }
}

/* ---- chat chunks -> Anthropic events ---- */

static void start_message(aiproxy_xlate_stream_t *x, apr_pool_t *p,
                          apr_array_header_t *out)
{
    aiproxy_json_t *e = aiproxy_json_new_object(), *m, *u;

    x->started = 1;
    m = aiproxy_json_new_object();
    aiproxy_json_put(m, "id", aiproxy_json_new_string(x->id ? x->id : "msg"));
    aiproxy_json_put(m, "type", aiproxy_json_new_string("message"));
    aiproxy_json_put(m, "role", aiproxy_json_new_string("assistant"));
    aiproxy_json_put(m, "model", aiproxy_json_new_string(x->model ? x->model
                                                                  : ""));
    aiproxy_json_put(m, "content", aiproxy_json_new_array());
    aiproxy_json_put(m, "stop_reason", aiproxy_json_new_null());
    aiproxy_json_put(m, "stop_sequence", aiproxy_json_new_null());
    u = aiproxy_json_new_object();
    aiproxy_json_put(u, "input_tokens", aiproxy_json_new_int(0));
    aiproxy_json_put(u, "output_tokens", aiproxy_json_new_int(0));
    aiproxy_json_put(m, "usage", u);
    aiproxy_json_put(e, "type", aiproxy_json_new_string("message_start"));
    aiproxy_json_put(e, "message", m);
    emit(p, out, "message_start", e);
}

static void close_block(aiproxy_xlate_stream_t *x, apr_pool_t *p,
                        apr_array_header_t *out)
{
    aiproxy_json_t *e;

    if (!x->block_open)
        return;
    e = aiproxy_json_new_object();
    aiproxy_json_put(e, "type", aiproxy_json_new_string("content_block_stop"));
    aiproxy_json_put(e, "index", aiproxy_json_new_int(x->blocks - 1));
    emit(p, out, "content_block_stop", e);
    x->block_open = 0;
}

static void open_block(aiproxy_xlate_stream_t *x, apr_pool_t *p,
                       apr_array_header_t *out, aiproxy_json_t *block)
{
    aiproxy_json_t *e = aiproxy_json_new_object();

    close_block(x, p, out);
    aiproxy_json_put(e, "type", aiproxy_json_new_string("content_block_start"));
    aiproxy_json_put(e, "index", aiproxy_json_new_int(x->blocks++));
    aiproxy_json_put(e, "content_block", block);
    emit(p, out, "content_block_start", e);
    x->block_open = 1;
}

static void block_delta(aiproxy_xlate_stream_t *x, apr_pool_t *p,
                        apr_array_header_t *out, const char *type,
                        const char *key, aiproxy_json_t *value)
{
    aiproxy_json_t *e = aiproxy_json_new_object(), *d = aiproxy_json_new_object();

    aiproxy_json_put(d, "type", aiproxy_json_new_string(type));
    aiproxy_json_put(d, key, aiproxy_json_ref(value));
    aiproxy_json_put(e, "type", aiproxy_json_new_string("content_block_delta"));
    aiproxy_json_put(e, "index", aiproxy_json_new_int(x->blocks - 1));
    aiproxy_json_put(e, "delta", d);
    emit(p, out, "content_block_delta", e);
}

static void finish_message(aiproxy_xlate_stream_t *x, apr_pool_t *p,
                           apr_array_header_t *out)
{
    aiproxy_json_t *e = aiproxy_json_new_object(), *d, *u;
    apr_int64_t cached = x->cached > x->prompt ? x->prompt : x->cached;
    const char *stop;

    if (!x->started)
        start_message(x, p, out);
    close_block(x, p, out);
    d = aiproxy_json_new_object();
    stop = aiproxy_xlate_stop_reason(x->stop);
    aiproxy_json_put(d, "stop_reason",
                     aiproxy_json_new_string(stop ? stop : "end_turn"));
    aiproxy_json_put(d, "stop_sequence", aiproxy_json_new_null());
    u = aiproxy_json_new_object();
    aiproxy_json_put(u, "input_tokens", aiproxy_json_new_int(x->prompt -
                                                             cached));
    aiproxy_json_put(u, "output_tokens", aiproxy_json_new_int(x->completion));
    aiproxy_json_put(u, "cache_read_input_tokens", aiproxy_json_new_int(cached));
    aiproxy_json_put(u, "cache_creation_input_tokens", aiproxy_json_new_int(0));
    aiproxy_json_put(e, "type", aiproxy_json_new_string("message_delta"));
    aiproxy_json_put(e, "delta", d);
    aiproxy_json_put(e, "usage", u);
    emit(p, out, "message_delta", e);
    e = aiproxy_json_new_object();
    aiproxy_json_put(e, "type", aiproxy_json_new_string("message_stop"));
    emit(p, out, "message_stop", e);
    x->done = 1;
}

static void from_chat(aiproxy_xlate_stream_t *x, apr_pool_t *p,
                      aiproxy_json_t *c, apr_array_header_t *out)
{
    aiproxy_json_t *choice = aiproxy_json_array_at(aiproxy_json_get(c,
                                                   "choices"), 0);
    aiproxy_json_t *delta = aiproxy_json_get(choice, "delta");
    aiproxy_json_t *text = aiproxy_json_get(delta, "content");
    aiproxy_json_t *calls = aiproxy_json_get(delta, "tool_calls");
    aiproxy_json_t *u = aiproxy_json_get(c, "usage");
    const char *s;
    apr_size_t i;

    if (!x->started) {
        if ((s = aiproxy_json_string(aiproxy_json_get(c, "id"))))
            x->id = apr_pstrdup(x->pool, s);
        if ((s = aiproxy_json_string(aiproxy_json_get(c, "model"))))
            x->model = apr_pstrdup(x->pool, s);
        start_message(x, p, out);
    }
    if (aiproxy_json_is_object(u)) {
        x->prompt = int_or_0(aiproxy_json_get(u, "prompt_tokens"));
        x->completion = int_or_0(aiproxy_json_get(u, "completion_tokens"));
        x->cached = int_or_0(aiproxy_json_get(aiproxy_json_get(
                        u, "prompt_tokens_details"), "cached_tokens"));
    }
    if ((s = aiproxy_json_string(aiproxy_json_get(choice, "finish_reason"))))
        x->stop = apr_pstrdup(x->pool, s);
    if (aiproxy_json_is_string(text) && *aiproxy_json_string(text)) {
        if (!x->block_open || !x->block_is_text) {
            aiproxy_json_t *b = aiproxy_json_new_object();

            aiproxy_json_put(b, "type", aiproxy_json_new_string("text"));
            aiproxy_json_put(b, "text", aiproxy_json_new_string(""));
            open_block(x, p, out, b);
            x->block_is_text = 1;
        }
        block_delta(x, p, out, "text_delta", "text", text);
    }
    for (i = 0; i < aiproxy_json_array_size(calls); i++) {
        aiproxy_json_t *tc = aiproxy_json_array_at(calls, i);
        aiproxy_json_t *fn = aiproxy_json_get(tc, "function");
        aiproxy_json_t *args = aiproxy_json_get(fn, "arguments");
        apr_int64_t index = -1;

        aiproxy_json_int(aiproxy_json_get(tc, "index"), &index);
        if (index != x->tool_index &&
            aiproxy_json_is_string(aiproxy_json_get(tc, "id"))) {
            aiproxy_json_t *b = aiproxy_json_new_object();

            aiproxy_json_put(b, "type", aiproxy_json_new_string("tool_use"));
            aiproxy_json_put(b, "id", aiproxy_json_ref(aiproxy_json_get(tc,
                                                                    "id")));
            aiproxy_json_put(b, "name", aiproxy_json_is_string(
                                 aiproxy_json_get(fn, "name"))
                             ? aiproxy_json_ref(aiproxy_json_get(fn, "name"))
                             : aiproxy_json_new_string(""));
            aiproxy_json_put(b, "input", aiproxy_json_new_object());
            open_block(x, p, out, b);
            x->block_is_text = 0;
            x->tool_index = (int)index;
        }
        if (x->block_open && !x->block_is_text &&
            aiproxy_json_is_string(args) && *aiproxy_json_string(args))
            block_delta(x, p, out, "input_json_delta", "partial_json", args);
    }
}

apr_array_header_t *aiproxy_xlate_stream_event(aiproxy_xlate_stream_t *x,
                                               apr_pool_t *p, const char *name,
                                               const char *data, apr_size_t len)
{
    apr_array_header_t *out = apr_array_make(p, 4, sizeof(const char *));
    aiproxy_json_t *e;
    const char *err, *type;

    if (x->done)
        return out;
    if (x->client == AIPROXY_API_ANTHROPIC && len == 6 &&
        !memcmp(data, "[DONE]", 6)) {
        finish_message(x, p, out);
        return out;
    }
    if (!len || !(e = aiproxy_json_parse(p, data, len, &err)) ||
        !aiproxy_json_is_object(e))
        return out;
    if (x->client == AIPROXY_API_OPENAI) {
        type = aiproxy_json_string(aiproxy_json_get(e, "type"));
        if (!type)
            type = name;
        if (type)
            from_anthropic(x, p, type, e, out);
    }
    else if (aiproxy_json_get(e, "error")) {
        aiproxy_json_t *err_in = aiproxy_json_get(e, "error"), *o, *in;

        in = aiproxy_json_new_object();
        aiproxy_json_put(in, "type", aiproxy_json_new_string("api_error"));
        aiproxy_json_put(in, "message", aiproxy_json_new_string(
            aiproxy_json_string(aiproxy_json_get(err_in, "message"))
            ? aiproxy_json_string(aiproxy_json_get(err_in, "message"))
            : "The provider's stream failed."));
        o = aiproxy_json_new_object();
        aiproxy_json_put(o, "type", aiproxy_json_new_string("error"));
        aiproxy_json_put(o, "error", in);
        emit(p, out, "error", o);
    }
    else {
        from_chat(x, p, e, out);
    }
    return out;
}

int aiproxy_xlate_stream_done(const aiproxy_xlate_stream_t *x)
{
    return x->done;
}
