/* Answers, Messages <-> Chat Completions: a provider's JSON response or
 * error body in the client's shape. The answer is paid for by then, so
 * what has no counterpart (a thinking block the client did not ask for)
 * is left out rather than refused. */
#include <string.h>
#include <apr_strings.h>

#include "aiproxy_xlate.h"

static apr_int64_t int_or_0(const aiproxy_json_t *v)
{
    apr_int64_t n;

    return aiproxy_json_int(v, &n) && n > 0 ? n : 0;
}

static aiproxy_json_t *str(const char *s)
{
    return aiproxy_json_new_string(s);
}

const char *aiproxy_xlate_finish_reason(const char *stop)
{
    if (!stop)
        return NULL;
    if (!strcmp(stop, "max_tokens") ||
        !strcmp(stop, "model_context_window_exceeded"))
        return "length";
    if (!strcmp(stop, "tool_use"))
        return "tool_calls";
    if (!strcmp(stop, "refusal"))
        return "content_filter";
    return "stop";          /* end_turn, stop_sequence, pause_turn */
}

const char *aiproxy_xlate_stop_reason(const char *finish)
{
    if (!finish)
        return NULL;
    if (!strcmp(finish, "length"))
        return "max_tokens";
    if (!strcmp(finish, "tool_calls") || !strcmp(finish, "function_call"))
        return "tool_use";
    if (!strcmp(finish, "content_filter"))
        return "refusal";
    return "end_turn";
}

/* Anthropic usage as OpenAI's: prompt_tokens counts all input, cached
 * reads among it; cache writes, which OpenAI has no name for, kept under
 * Anthropic's. */
static aiproxy_json_t *chat_usage(const aiproxy_json_t *u)
{
    apr_int64_t in = int_or_0(aiproxy_json_get(u, "input_tokens"));
    apr_int64_t out = int_or_0(aiproxy_json_get(u, "output_tokens"));
    apr_int64_t cr = int_or_0(aiproxy_json_get(u, "cache_read_input_tokens"));
    apr_int64_t cw = int_or_0(aiproxy_json_get(u,
                                               "cache_creation_input_tokens"));
    aiproxy_json_t *o = aiproxy_json_new_object(), *d, *cc;

    aiproxy_json_put(o, "prompt_tokens", aiproxy_json_new_int(in + cr + cw));
    aiproxy_json_put(o, "completion_tokens", aiproxy_json_new_int(out));
    aiproxy_json_put(o, "total_tokens", aiproxy_json_new_int(in + cr + cw +
                                                             out));
    d = aiproxy_json_new_object();
    aiproxy_json_put(d, "cached_tokens", aiproxy_json_new_int(cr));
    aiproxy_json_put(o, "prompt_tokens_details", d);
    aiproxy_json_put(o, "cache_creation_input_tokens",
                     aiproxy_json_new_int(cw));
    if ((cc = aiproxy_json_get(u, "cache_creation")) &&
        aiproxy_json_is_object(cc))
        aiproxy_json_put(o, "cache_creation", aiproxy_json_ref(cc));
    return o;
}

static aiproxy_json_t *messages_usage(const aiproxy_json_t *u)
{
    apr_int64_t prompt = int_or_0(aiproxy_json_get(u, "prompt_tokens"));
    apr_int64_t cached = int_or_0(aiproxy_json_get(
                             aiproxy_json_get(u, "prompt_tokens_details"),
                             "cached_tokens"));
    aiproxy_json_t *o = aiproxy_json_new_object();

    if (cached > prompt)
        cached = prompt;
    aiproxy_json_put(o, "input_tokens", aiproxy_json_new_int(prompt - cached));
    aiproxy_json_put(o, "output_tokens", aiproxy_json_new_int(
                     int_or_0(aiproxy_json_get(u, "completion_tokens"))));
    aiproxy_json_put(o, "cache_read_input_tokens",
                     aiproxy_json_new_int(cached));
    aiproxy_json_put(o, "cache_creation_input_tokens",
                     aiproxy_json_new_int(0));
    return o;
}

static aiproxy_json_t *to_chat(apr_pool_t *p, const aiproxy_json_t *a,
                               apr_int64_t created)
{
    aiproxy_json_t *content = aiproxy_json_get(a, "content");
    aiproxy_json_t *o = aiproxy_json_own(p, aiproxy_json_new_object());
    aiproxy_json_t *msg, *choice, *choices, *calls = NULL, *v;
    const char *text = NULL, *id = aiproxy_json_string(aiproxy_json_get(a,
                                                                    "id"));
    const char *fr = aiproxy_xlate_finish_reason(aiproxy_json_string(
                         aiproxy_json_get(a, "stop_reason")));
    apr_size_t i, len;
    /* Joined once at the end: joining as they come is quadratic. */
    apr_array_header_t *texts = apr_array_make(p, 4, sizeof(const char *));

    if (!aiproxy_json_is_array(content))
        return NULL;
    for (i = 0; i < aiproxy_json_array_size(content); i++) {
        aiproxy_json_t *b = aiproxy_json_array_at(content, i), *c, *fn;
        const char *type = aiproxy_json_string(aiproxy_json_get(b, "type"));
        const char *t = aiproxy_json_string(aiproxy_json_get(b, "text"));
        const char *args;

        if (type && !strcmp(type, "text") && t) {
            APR_ARRAY_PUSH(texts, const char *) = t;
        }
        else if (type && !strcmp(type, "tool_use") &&
                 aiproxy_json_is_string(aiproxy_json_get(b, "id")) &&
                 aiproxy_json_is_string(aiproxy_json_get(b, "name")) &&
                 (args = aiproxy_json_dump(p, aiproxy_json_get(b, "input"),
                                           &len))) {
            if (!calls)
                calls = aiproxy_json_own(p, aiproxy_json_new_array());
            fn = aiproxy_json_new_object();
            aiproxy_json_put(fn, "name", aiproxy_json_ref(
                                 aiproxy_json_get(b, "name")));
            aiproxy_json_put(fn, "arguments", str(args));
            c = aiproxy_json_new_object();
            aiproxy_json_put(c, "id", aiproxy_json_ref(aiproxy_json_get(b,
                                                                    "id")));
            aiproxy_json_put(c, "type", str("function"));
            aiproxy_json_put(c, "function", fn);
            aiproxy_json_push(calls, c);
        }
    }
    if (texts->nelts)
        text = apr_array_pstrcat(p, texts, '\0');
    aiproxy_json_put(o, "id", str(id ? id : "msg"));
    aiproxy_json_put(o, "object", str("chat.completion"));
    aiproxy_json_put(o, "created", aiproxy_json_new_int(created));
    if ((v = aiproxy_json_get(a, "model")) && aiproxy_json_is_string(v))
        aiproxy_json_put(o, "model", aiproxy_json_ref(v));
    msg = aiproxy_json_new_object();
    aiproxy_json_put(msg, "role", str("assistant"));
    aiproxy_json_put(msg, "content", text ? str(text)
                                          : aiproxy_json_new_null());
    aiproxy_json_put(msg, "refusal", aiproxy_json_new_null());
    if (calls)
        aiproxy_json_put(msg, "tool_calls", aiproxy_json_ref(calls));
    choice = aiproxy_json_new_object();
    aiproxy_json_put(choice, "index", aiproxy_json_new_int(0));
    aiproxy_json_put(choice, "message", msg);
    aiproxy_json_put(choice, "finish_reason", fr ? str(fr) : aiproxy_json_new_null());
    choices = aiproxy_json_new_array();
    aiproxy_json_push(choices, choice);
    aiproxy_json_put(o, "choices", choices);
    aiproxy_json_put(o, "usage", chat_usage(aiproxy_json_get(a, "usage")));
    return o;
}

static aiproxy_json_t *to_messages(apr_pool_t *p, const aiproxy_json_t *c)
{
    aiproxy_json_t *choice = aiproxy_json_array_at(aiproxy_json_get(c,
                                                   "choices"), 0);
    aiproxy_json_t *msg = aiproxy_json_get(choice, "message");
    aiproxy_json_t *calls = aiproxy_json_get(msg, "tool_calls");
    aiproxy_json_t *o = aiproxy_json_own(p, aiproxy_json_new_object());
    aiproxy_json_t *content, *b, *v;
    const char *text = aiproxy_json_string(aiproxy_json_get(msg, "content"));
    const char *refusal = aiproxy_json_string(aiproxy_json_get(msg,
                                                               "refusal"));
    const char *sr = aiproxy_xlate_stop_reason(aiproxy_json_string(
                         aiproxy_json_get(choice, "finish_reason")));
    apr_size_t i;

    if (!aiproxy_json_is_object(msg))
        return NULL;
    content = aiproxy_json_new_array();
    if (text && *text) {
        b = aiproxy_json_new_object();
        aiproxy_json_put(b, "type", str("text"));
        aiproxy_json_put(b, "text", str(text));
        aiproxy_json_push(content, b);
    }
    if (refusal && *refusal) {
        b = aiproxy_json_new_object();
        aiproxy_json_put(b, "type", str("text"));
        aiproxy_json_put(b, "text", str(refusal));
        aiproxy_json_push(content, b);
        sr = "refusal";
    }
    for (i = 0; i < aiproxy_json_array_size(calls); i++) {
        aiproxy_json_t *call = aiproxy_json_array_at(calls, i);
        aiproxy_json_t *fn = aiproxy_json_get(call, "function"), *input;
        const char *args = aiproxy_json_string(aiproxy_json_get(fn,
                                                                "arguments"));
        const char *err;

        if (!aiproxy_json_is_string(aiproxy_json_get(call, "id")) ||
            !aiproxy_json_is_string(aiproxy_json_get(fn, "name")))
            continue;
        /* Arguments that are not an object (a model's broken JSON) come
         * as an empty input: Messages has no place for raw text. */
        input = args ? aiproxy_json_parse(p, args, strlen(args), &err) : NULL;
        b = aiproxy_json_new_object();
        aiproxy_json_put(b, "type", str("tool_use"));
        aiproxy_json_put(b, "id", aiproxy_json_ref(aiproxy_json_get(call,
                                                                    "id")));
        aiproxy_json_put(b, "name", aiproxy_json_ref(aiproxy_json_get(fn,
                                                                  "name")));
        aiproxy_json_put(b, "input", aiproxy_json_is_object(input)
                         ? aiproxy_json_ref(input) : aiproxy_json_new_object());
        aiproxy_json_push(content, b);
    }
    v = aiproxy_json_get(c, "id");
    aiproxy_json_put(o, "id", aiproxy_json_is_string(v) ? aiproxy_json_ref(v)
                                                        : str("msg"));
    aiproxy_json_put(o, "type", str("message"));
    aiproxy_json_put(o, "role", str("assistant"));
    if ((v = aiproxy_json_get(c, "model")) && aiproxy_json_is_string(v))
        aiproxy_json_put(o, "model", aiproxy_json_ref(v));
    aiproxy_json_put(o, "content", content);
    aiproxy_json_put(o, "stop_reason", sr ? str(sr) : aiproxy_json_new_null());
    aiproxy_json_put(o, "stop_sequence", aiproxy_json_new_null());
    aiproxy_json_put(o, "usage", messages_usage(aiproxy_json_get(c,
                                                                 "usage")));
    return o;
}

/* An error body in the client's shape; the provider's message kept. */
static aiproxy_json_t *error_body(apr_pool_t *p, aiproxy_api_t client,
                                  int status, const aiproxy_json_t *e)
{
    aiproxy_json_t *err = aiproxy_json_get(e, "error");
    const char *type = aiproxy_json_string(aiproxy_json_get(err, "type"));
    const char *msg = aiproxy_json_string(aiproxy_json_get(err, "message"));
    aiproxy_json_t *o = aiproxy_json_own(p, aiproxy_json_new_object());
    aiproxy_json_t *inner = aiproxy_json_new_object();

    if (!msg)
        msg = apr_psprintf(p, "The provider answered %d.", status);
    if (!type)
        type = status >= 500 ? "api_error" : "invalid_request_error";
    aiproxy_json_put(inner, "message", str(msg));
    aiproxy_json_put(inner, "type", str(type));
    if (client == AIPROXY_API_OPENAI) {
        aiproxy_json_t *code = aiproxy_json_get(err, "code");

        aiproxy_json_put(inner, "code", aiproxy_json_is_string(code)
                         ? aiproxy_json_ref(code) : aiproxy_json_new_null());
    }
    else {
        aiproxy_json_put(o, "type", str("error"));
    }
    aiproxy_json_put(o, "error", inner);
    return o;
}

char *aiproxy_xlate_answer(apr_pool_t *p, aiproxy_api_t client, int status,
                           const char *body, apr_size_t len,
                           apr_int64_t created, apr_size_t *out_len)
{
    const char *err;
    aiproxy_json_t *in = aiproxy_json_parse(p, body, len, &err), *out;

    if (status < 200 || status >= 300)
        out = error_body(p, client, status, in);
    else if (!aiproxy_json_is_object(in))
        return NULL;
    else if (client == AIPROXY_API_OPENAI)
        out = to_chat(p, in, created);
    else
        out = to_messages(p, in);
    return out ? aiproxy_json_dump(p, out, out_len) : NULL;
}
