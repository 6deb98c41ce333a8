/* Request bodies, Chat Completions <-> Messages. Every member of the
 * client's body is either carried over or refused by name: a field the
 * other API cannot express would otherwise change the answer unseen.
 * A null member counts as absent. */
#include <string.h>
#include <apr_strings.h>

#include "aiproxy_xlate.h"

typedef struct {
    apr_pool_t *p;
    const char *to;     /* the provider API's name, for messages */
    /* What parsing tool-call arguments may still allocate: a string
     * counted cheaply in the client's body can parse into a tree many
     * times its size. */
    apr_size_t budget;
} xl_t;

static const char *refuse(xl_t *x, const char *field, const char *what)
{
    return apr_psprintf(x->p, "'%s'%s%s cannot be translated for this model, "
                        "which is served by the %s API: %s.", field,
                        what ? " " : "", what ? what : "", x->to,
                        "send the request to that API, or without it");
}

static int absent(const aiproxy_json_t *v)
{
    return !v || aiproxy_json_is_null(v);
}

const char *aiproxy_xlate_endpoint(aiproxy_api_t client, const char *endpoint)
{
    if (client == AIPROXY_API_OPENAI && !strcmp(endpoint, "chat/completions"))
        return "messages";
    if (client == AIPROXY_API_ANTHROPIC && !strcmp(endpoint, "messages"))
        return "chat/completions";
    return NULL;
}

/* obj[key] = another reference to v. */
static int put_ref(aiproxy_json_t *obj, const char *key, aiproxy_json_t *v)
{
    return aiproxy_json_put(obj, key, aiproxy_json_ref(v));
}

static aiproxy_json_t *text_block(aiproxy_json_t *text)
{
    aiproxy_json_t *b = aiproxy_json_new_object();

    aiproxy_json_put(b, "type", aiproxy_json_new_string("text"));
    put_ref(b, "text", text);
    return b;
}

/* Only these keys (NULL-terminated), or null ones, in an object. */
static const char *only_keys(xl_t *x, const aiproxy_json_t *obj,
                             const char *where, const char *const *keys)
{
    apr_array_header_t *k = aiproxy_json_keys(x->p, obj);
    const char *const *ok;
    int i;

    for (i = 0; i < k->nelts; i++) {
        const char *name = APR_ARRAY_IDX(k, i, const char *);

        for (ok = keys; *ok && strcmp(*ok, name); ok++)
            ;
        if (!*ok && !absent(aiproxy_json_get(obj, name)))
            return refuse(x, apr_pstrcat(x->p, where, ".", name, NULL), NULL);
    }
    return NULL;
}

/* ---- Chat Completions -> Messages ---- */

/* One {type:text} part as a text block. */
static const char *text_part(xl_t *x, aiproxy_json_t *part, const char *w,
                             aiproxy_json_t *blocks)
{
    static const char *const part_keys[] = { "type", "text", NULL };
    const char *type = aiproxy_json_string(aiproxy_json_get(part, "type"));
    const char *err;

    if (!type || strcmp(type, "text") ||
        !aiproxy_json_is_string(aiproxy_json_get(part, "text")))
        return refuse(x, w, type ? apr_psprintf(x->p, "of type '%s'", type)
                                 : NULL);
    if ((err = only_keys(x, part, w, part_keys)))
        return err;
    /* Messages refuses empty text blocks; an empty text says nothing. */
    if (!*aiproxy_json_string(aiproxy_json_get(part, "text")))
        return NULL;
    return aiproxy_json_push(blocks, text_block(aiproxy_json_get(part, "text")))
           ? "" : NULL;
}

/* Text parts (a string, or an array of {type:text}) as text blocks. */
static const char *text_blocks(xl_t *x, aiproxy_json_t *content,
                               const char *where, aiproxy_json_t *blocks)
{
    apr_size_t i;
    const char *err;

    if (aiproxy_json_is_string(content))
        return !*aiproxy_json_string(content) ||
               !aiproxy_json_push(blocks, text_block(content)) ? NULL : "";
    if (!aiproxy_json_is_array(content))
        return refuse(x, where, "(not text)");
    for (i = 0; i < aiproxy_json_array_size(content); i++)
        if ((err = text_part(x, aiproxy_json_array_at(content, i),
                             apr_psprintf(x->p, "%s[%" APR_SIZE_T_FMT "]",
                                          where, i), blocks)))
            return err;
    return NULL;
}

/* An image_url part as an image block: a data: URL in base64, or https. */
static const char *image_block(xl_t *x, aiproxy_json_t *part, const char *w,
                               aiproxy_json_t *blocks)
{
    static const char *const iu_keys[] = { "url", "detail", NULL };
    aiproxy_json_t *iu = aiproxy_json_get(part, "image_url");
    const char *url = aiproxy_json_string(aiproxy_json_is_string(iu) ? iu
                                          : aiproxy_json_get(iu, "url"));
    aiproxy_json_t *b, *src;
    const char *comma, *err;

    if (!url)
        return refuse(x, apr_pstrcat(x->p, w, ".image_url", NULL), NULL);
    if (aiproxy_json_is_object(iu) &&
        (err = only_keys(x, iu, apr_pstrcat(x->p, w, ".image_url", NULL),
                         iu_keys)))
        return err;
    src = aiproxy_json_new_object();
    if (!strncmp(url, "data:", 5) && (comma = strchr(url, ',')) &&
        comma - url > 12 && !strncmp(comma - 7, ";base64", 7)) {
        aiproxy_json_put(src, "type", aiproxy_json_new_string("base64"));
        aiproxy_json_put(src, "media_type", aiproxy_json_new_string(
                         apr_pstrndup(x->p, url + 5, comma - 7 - (url + 5))));
        aiproxy_json_put(src, "data", aiproxy_json_new_string(comma + 1));
    }
    else if (!strncmp(url, "https://", 8) || !strncmp(url, "http://", 7)) {
        aiproxy_json_put(src, "type", aiproxy_json_new_string("url"));
        aiproxy_json_put(src, "url", aiproxy_json_new_string(url));
    }
    else {
        aiproxy_json_own(x->p, src);
        return refuse(x, apr_pstrcat(x->p, w, ".image_url.url", NULL),
                      "(neither a base64 data: URL nor http(s))");
    }
    b = aiproxy_json_new_object();
    aiproxy_json_put(b, "type", aiproxy_json_new_string("image"));
    aiproxy_json_put(b, "source", src);
    return aiproxy_json_push(blocks, b) ? "" : NULL;
}

static const char *user_blocks(xl_t *x, aiproxy_json_t *content,
                               const char *where, aiproxy_json_t *blocks)
{
    apr_size_t i;

    if (!aiproxy_json_is_array(content))
        return text_blocks(x, content, where, blocks);
    for (i = 0; i < aiproxy_json_array_size(content); i++) {
        aiproxy_json_t *part = aiproxy_json_array_at(content, i);
        const char *w = apr_psprintf(x->p, "%s[%" APR_SIZE_T_FMT "]", where, i);
        const char *type = aiproxy_json_string(aiproxy_json_get(part, "type"));
        const char *err;

        if (type && !strcmp(type, "image_url")) {
            static const char *const keys[] = { "type", "image_url", NULL };

            if ((err = only_keys(x, part, w, keys)) ||
                (err = image_block(x, part, w, blocks)))
                return err;
            continue;
        }
        if (type && !strcmp(type, "text")) {
            if ((err = text_part(x, part, w, blocks)))
                return err;
            continue;
        }
        return refuse(x, w, type ? apr_psprintf(x->p, "of type '%s'", type)
                                 : NULL);
    }
    return NULL;
}

static const char *tool_use_blocks(xl_t *x, aiproxy_json_t *calls,
                                   const char *where, aiproxy_json_t *blocks)
{
    static const char *const call_keys[] = { "id", "type", "function", NULL };
    static const char *const fn_keys[] = { "name", "arguments", NULL };
    apr_size_t i;

    if (!aiproxy_json_is_array(calls))
        return refuse(x, where, "(not an array)");
    for (i = 0; i < aiproxy_json_array_size(calls); i++) {
        aiproxy_json_t *c = aiproxy_json_array_at(calls, i), *fn, *input, *b;
        const char *w = apr_psprintf(x->p, "%s[%" APR_SIZE_T_FMT "]", where, i);
        const char *type = aiproxy_json_string(aiproxy_json_get(c, "type"));
        const char *args, *err;

        fn = aiproxy_json_get(c, "function");
        if ((type && strcmp(type, "function")) || !aiproxy_json_is_object(fn))
            return refuse(x, w, "(not a function call)");
        if ((err = only_keys(x, c, w, call_keys)) ||
            (err = only_keys(x, fn, apr_pstrcat(x->p, w, ".function", NULL),
                             fn_keys)))
            return err;
        args = aiproxy_json_string(aiproxy_json_get(fn, "arguments"));
        if (args) {
            apr_size_t cost = aiproxy_json_cost(args, strlen(args));

            if (cost > x->budget)
                return refuse(x, apr_pstrcat(x->p, w, ".function.arguments",
                                             NULL), "(too large to translate)");
            x->budget -= cost;
        }
        input = args ? aiproxy_json_parse(x->p, args, strlen(args), &err)
                     : NULL;
        if (!aiproxy_json_is_string(aiproxy_json_get(c, "id")) ||
            !aiproxy_json_is_string(aiproxy_json_get(fn, "name")) ||
            !aiproxy_json_is_object(input))
            return refuse(x, apr_pstrcat(x->p, w, ".function.arguments", NULL),
                          "(not a JSON object, or no id or name)");
        b = aiproxy_json_new_object();
        aiproxy_json_put(b, "type", aiproxy_json_new_string("tool_use"));
        put_ref(b, "id", aiproxy_json_get(c, "id"));
        put_ref(b, "name", aiproxy_json_get(fn, "name"));
        put_ref(b, "input", input);
        aiproxy_json_push(blocks, b);
    }
    return NULL;
}

/* Appends blocks as a turn of role; a turn of the same role as the last
 * one joins it (consecutive tool results make one user turn). */
static void push_turn(aiproxy_json_t *msgs, const char *role,
                      aiproxy_json_t *blocks)
{
    apr_size_t n = aiproxy_json_array_size(msgs), i;
    aiproxy_json_t *last = n ? aiproxy_json_array_at(msgs, n - 1) : NULL, *t;
    const char *lr = aiproxy_json_string(aiproxy_json_get(last, "role"));

    if (!aiproxy_json_array_size(blocks))
        return;
    if (lr && !strcmp(lr, role)) {
        aiproxy_json_t *c = aiproxy_json_get(last, "content");

        for (i = 0; i < aiproxy_json_array_size(blocks); i++)
            aiproxy_json_push(c, aiproxy_json_ref(
                                  aiproxy_json_array_at(blocks, i)));
        return;
    }
    t = aiproxy_json_new_object();
    aiproxy_json_put(t, "role", aiproxy_json_new_string(role));
    aiproxy_json_put(t, "content", aiproxy_json_ref(blocks));
    aiproxy_json_push(msgs, t);
}

static const char *chat_messages(xl_t *x, aiproxy_json_t *messages,
                                 aiproxy_json_t *out)
{
    aiproxy_json_t *msgs = aiproxy_json_new_array();
    aiproxy_json_t *system = aiproxy_json_own(x->p, aiproxy_json_new_array());
    int started = 0;
    apr_size_t i;

    aiproxy_json_put(out, "messages", msgs);
    if (!aiproxy_json_is_array(messages))
        return refuse(x, "messages", "(not an array)");
    for (i = 0; i < aiproxy_json_array_size(messages); i++) {
        aiproxy_json_t *m = aiproxy_json_array_at(messages, i);
        aiproxy_json_t *content = aiproxy_json_get(m, "content");
        aiproxy_json_t *blocks = aiproxy_json_own(x->p,
                                                  aiproxy_json_new_array());
        const char *mw = apr_psprintf(x->p, "messages[%" APR_SIZE_T_FMT "]",
                                      i);
        const char *w = apr_pstrcat(x->p, mw, ".content", NULL);
        const char *role = aiproxy_json_string(aiproxy_json_get(m, "role"));
        const char *err;

        if (!role)
            return refuse(x, apr_pstrcat(x->p, mw, ".role", NULL), NULL);
        if (!strcmp(role, "system") || !strcmp(role, "developer")) {
            static const char *const keys[] = { "role", "content", NULL };

            if (started)
                return refuse(x, w, "(a system message after the first "
                              "user or assistant message)");
            if ((err = only_keys(x, m, mw, keys)) ||
                (err = text_blocks(x, content, w, system)))
                return err;
            continue;
        }
        started = 1;
        if (!strcmp(role, "user")) {
            static const char *const keys[] = { "role", "content", NULL };

            if ((err = only_keys(x, m, mw, keys)) ||
                (err = user_blocks(x, content, w, blocks)))
                return err;
            push_turn(msgs, "user", blocks);
        }
        else if (!strcmp(role, "assistant")) {
            static const char *const keys[] = { "role", "content",
                                                "tool_calls", NULL };

            if ((err = only_keys(x, m, mw, keys)) ||
                (!absent(content) &&
                 (err = text_blocks(x, content, w, blocks))) ||
                (!absent(aiproxy_json_get(m, "tool_calls")) &&
                 (err = tool_use_blocks(x, aiproxy_json_get(m, "tool_calls"),
                                        apr_psprintf(x->p, "messages[%"
                                                     APR_SIZE_T_FMT
                                                     "].tool_calls", i),
                                        blocks))))
                return err;
            push_turn(msgs, "assistant", blocks);
        }
        else if (!strcmp(role, "tool")) {
            static const char *const keys[] = { "role", "content",
                                                "tool_call_id", NULL };
            aiproxy_json_t *b, *text = aiproxy_json_own(
                x->p, aiproxy_json_new_array());

            if ((err = only_keys(x, m, mw, keys)) ||
                (err = text_blocks(x, content, w, text)))
                return err;
            if (!aiproxy_json_is_string(aiproxy_json_get(m, "tool_call_id")))
                return refuse(x, apr_psprintf(x->p, "messages[%"
                              APR_SIZE_T_FMT "].tool_call_id", i), NULL);
            b = aiproxy_json_new_object();
            aiproxy_json_put(b, "type", aiproxy_json_new_string("tool_result"));
            put_ref(b, "tool_use_id", aiproxy_json_get(m, "tool_call_id"));
            put_ref(b, "content", text);
            aiproxy_json_push(blocks, b);
            push_turn(msgs, "user", blocks);
        }
        else {
            return refuse(x, apr_psprintf(x->p, "messages[%" APR_SIZE_T_FMT
                                          "].role", i),
                          apr_psprintf(x->p, "'%s'", role));
        }
    }
    if (aiproxy_json_array_size(system))
        put_ref(out, "system", system);
    return NULL;
}

static const char *chat_tools(xl_t *x, aiproxy_json_t *tools,
                              aiproxy_json_t *out)
{
    static const char *const tool_keys[] = { "type", "function", NULL };
    static const char *const fn_keys[] = { "name", "description",
                                           "parameters", "strict", NULL };
    aiproxy_json_t *list = aiproxy_json_new_array();
    apr_size_t i;

    aiproxy_json_put(out, "tools", list);
    if (!aiproxy_json_is_array(tools))
        return refuse(x, "tools", "(not an array)");
    for (i = 0; i < aiproxy_json_array_size(tools); i++) {
        aiproxy_json_t *t = aiproxy_json_array_at(tools, i), *fn, *d, *params;
        const char *w = apr_psprintf(x->p, "tools[%" APR_SIZE_T_FMT "]", i);
        const char *type = aiproxy_json_string(aiproxy_json_get(t, "type"));
        const char *err;

        fn = aiproxy_json_get(t, "function");
        if (!type || strcmp(type, "function") || !aiproxy_json_is_object(fn))
            return refuse(x, w, type ? apr_psprintf(x->p, "of type '%s'", type)
                                     : NULL);
        if ((err = only_keys(x, t, w, tool_keys)) ||
            (err = only_keys(x, fn, apr_pstrcat(x->p, w, ".function", NULL),
                             fn_keys)))
            return err;
        if (aiproxy_json_bool(aiproxy_json_get(fn, "strict")) == 1)
            return refuse(x, apr_pstrcat(x->p, w, ".function.strict", NULL),
                          NULL);
        if (!aiproxy_json_is_string(aiproxy_json_get(fn, "name")))
            return refuse(x, apr_pstrcat(x->p, w, ".function.name", NULL),
                          NULL);
        d = aiproxy_json_new_object();
        put_ref(d, "name", aiproxy_json_get(fn, "name"));
        if (aiproxy_json_is_string(aiproxy_json_get(fn, "description")))
            put_ref(d, "description", aiproxy_json_get(fn, "description"));
        params = aiproxy_json_get(fn, "parameters");
        if (aiproxy_json_is_object(params)) {
            put_ref(d, "input_schema", params);
        }
        else {
            aiproxy_json_t *s = aiproxy_json_new_object();

            aiproxy_json_put(s, "type", aiproxy_json_new_string("object"));
            aiproxy_json_put(d, "input_schema", s);
        }
        aiproxy_json_push(list, d);
    }
    return NULL;
}

static const char *chat_tool_choice(xl_t *x, aiproxy_json_t *tc,
                                    int parallel, aiproxy_json_t *out)
{
    static const char *const tc_keys[] = { "type", "function", NULL };
    static const char *const fn_keys[] = { "name", NULL };
    const char *s = aiproxy_json_string(tc), *err;
    const char *name = aiproxy_json_string(aiproxy_json_get(
                           aiproxy_json_get(tc, "function"), "name"));
    aiproxy_json_t *c;

    if (aiproxy_json_is_object(tc) &&
        ((err = only_keys(x, tc, "tool_choice", tc_keys)) ||
         (err = only_keys(x, aiproxy_json_get(tc, "function"),
                          "tool_choice.function", fn_keys))))
        return err;
    /* No tools, nothing to choose: Messages refuses a tool_choice alone. */
    if (!aiproxy_json_array_size(aiproxy_json_get(out, "tools")) &&
        (absent(tc) || (s && !strcmp(s, "none"))))
        return NULL;

    if (absent(tc) && parallel)
        return NULL;
    c = aiproxy_json_new_object();
    aiproxy_json_put(out, "tool_choice", c);
    if (absent(tc) || (s && !strcmp(s, "auto")))
        aiproxy_json_put(c, "type", aiproxy_json_new_string("auto"));
    else if (s && !strcmp(s, "none"))
        aiproxy_json_put(c, "type", aiproxy_json_new_string("none"));
    else if (s && !strcmp(s, "required"))
        aiproxy_json_put(c, "type", aiproxy_json_new_string("any"));
    else if (name) {
        aiproxy_json_put(c, "type", aiproxy_json_new_string("tool"));
        aiproxy_json_put(c, "name", aiproxy_json_new_string(name));
    }
    else
        return refuse(x, "tool_choice", NULL);
    if (!parallel && !(s && !strcmp(s, "none")))
        aiproxy_json_put(c, "disable_parallel_tool_use",
                         aiproxy_json_new_bool(1));
    return NULL;
}

static int is_text_format(const aiproxy_json_t *type)
{
    const char *s = aiproxy_json_string(type);

    return s && !strcmp(s, "text");
}

static const char *to_messages(xl_t *x, const aiproxy_json_t *body,
                               apr_int64_t max_output, aiproxy_json_t *out)
{
    apr_array_header_t *keys = aiproxy_json_keys(x->p, body);
    int parallel = aiproxy_json_bool(aiproxy_json_get(body,
                                     "parallel_tool_calls")) != 0;
    apr_int64_t n;
    const char *err;
    int i;

    for (i = 0; i < keys->nelts; i++) {
        const char *k = APR_ARRAY_IDX(keys, i, const char *);
        aiproxy_json_t *v = aiproxy_json_get(body, k);

        if (absent(v) || !strcmp(k, "max_tokens") ||
            !strcmp(k, "max_completion_tokens") ||
            !strcmp(k, "tool_choice"))
            continue;
        if (!strcmp(k, "parallel_tool_calls")) {
            if (aiproxy_json_bool(v) < 0)
                return refuse(x, k, "(not a boolean)");
            continue;
        }
        if (!strcmp(k, "model")) {
            put_ref(out, k, v);
        }
        else if (!strcmp(k, "messages")) {
            if ((err = chat_messages(x, v, out)))
                return err;
        }
        else if ((!strcmp(k, "temperature") || !strcmp(k, "top_p")) &&
                 aiproxy_json_is_number(v)) {
            put_ref(out, k, v);
        }
        else if (!strcmp(k, "stop") && aiproxy_json_is_string(v)) {
            aiproxy_json_t *a = aiproxy_json_new_array();

            aiproxy_json_push(a, aiproxy_json_ref(v));
            aiproxy_json_put(out, "stop_sequences", a);
        }
        else if (!strcmp(k, "stop") && aiproxy_json_is_array(v)) {
            put_ref(out, "stop_sequences", v);
        }
        else if (!strcmp(k, "tools")) {
            if ((err = chat_tools(x, v, out)))
                return err;
        }
        else if (!strcmp(k, "user") && aiproxy_json_is_string(v)) {
            aiproxy_json_t *md = aiproxy_json_new_object();

            put_ref(md, "user_id", v);
            aiproxy_json_put(out, "metadata", md);
        }
        else if (!strcmp(k, "stream") && aiproxy_json_bool(v) == 1) {
            put_ref(out, k, v);
        }
        else if ((!strcmp(k, "n") && aiproxy_json_int(v, &n) && n == 1) ||
                 (!strcmp(k, "stream") && aiproxy_json_bool(v) == 0) ||
                 (!strcmp(k, "store") && aiproxy_json_bool(v) == 0) ||
                 (!strcmp(k, "logprobs") && aiproxy_json_bool(v) == 0)) {
            /* The defaults, said aloud. */
        }
        else if (!strcmp(k, "stream_options")) {
            /* Messages streams always tell their usage; the usage chunk
             * is made for a client that asked (aiproxy_xlate_stream.c). */
            static const char *const so_keys[] = { "include_usage", NULL };

            if ((err = only_keys(x, v, k, so_keys)))
                return err;
        }
        else if (!strcmp(k, "response_format") &&
                 is_text_format(aiproxy_json_get(v, "type"))) {
            static const char *const rf_keys[] = { "type", NULL };

            if ((err = only_keys(x, v, k, rf_keys)))
                return err;
        }
        else {
            return refuse(x, k, NULL);
        }
    }
    if ((err = chat_tool_choice(x, aiproxy_json_get(body, "tool_choice"),
                                parallel, out)))
        return err;
    aiproxy_json_put(out, "max_tokens", aiproxy_json_new_int(max_output));
    return NULL;
}

/* ---- Messages -> Chat Completions ---- */

static aiproxy_json_t *chat_text_part(aiproxy_json_t *text)
{
    return text_block(text);    /* the same shape: {type:text,text} */
}

/* One text block (cache_control allowed: OpenAI caches on its own; a
 * citation is not) as a chat text part. */
static const char *msg_text_part(xl_t *x, aiproxy_json_t *b, const char *w,
                                 aiproxy_json_t *parts)
{
    static const char *const keys[] = { "type", "text", "cache_control", NULL };
    const char *type = aiproxy_json_string(aiproxy_json_get(b, "type"));
    const char *err;

    if (!type || strcmp(type, "text") ||
        !aiproxy_json_is_string(aiproxy_json_get(b, "text")))
        return refuse(x, w, type ? apr_psprintf(x->p, "of type '%s'", type)
                                 : NULL);
    if ((err = only_keys(x, b, w, keys)))
        return err;
    return aiproxy_json_push(parts, chat_text_part(aiproxy_json_get(b, "text")))
           ? "" : NULL;
}

/* Text blocks (a string, or an array of them) as chat text parts. */
static const char *msg_text_parts(xl_t *x, aiproxy_json_t *content,
                                  const char *where, aiproxy_json_t *parts)
{
    apr_size_t i;
    const char *err;

    if (aiproxy_json_is_string(content))
        return aiproxy_json_push(parts, chat_text_part(content)) ? "" : NULL;
    if (!aiproxy_json_is_array(content))
        return refuse(x, where, "(not text)");
    for (i = 0; i < aiproxy_json_array_size(content); i++)
        if ((err = msg_text_part(x, aiproxy_json_array_at(content, i),
                                 apr_psprintf(x->p, "%s[%" APR_SIZE_T_FMT "]",
                                              where, i), parts)))
            return err;
    return NULL;
}

static const char *msg_image_part(xl_t *x, aiproxy_json_t *b, const char *w,
                                  aiproxy_json_t *parts)
{
    static const char *const keys[] = { "type", "source", "cache_control",
                                        NULL };
    aiproxy_json_t *src = aiproxy_json_get(b, "source"), *part, *iu;
    const char *type = aiproxy_json_string(aiproxy_json_get(src, "type"));
    const char *mt = aiproxy_json_string(aiproxy_json_get(src, "media_type"));
    const char *data = aiproxy_json_string(aiproxy_json_get(src, "data"));
    const char *url = aiproxy_json_string(aiproxy_json_get(src, "url"));
    const char *err;

    if ((err = only_keys(x, b, w, keys)))
        return err;
    if (type && !strcmp(type, "base64") && mt && data)
        url = apr_pstrcat(x->p, "data:", mt, ";base64,", data, NULL);
    else if (!type || strcmp(type, "url") || !url)
        return refuse(x, apr_pstrcat(x->p, w, ".source", NULL),
                      type ? apr_psprintf(x->p, "of type '%s'", type) : NULL);
    iu = aiproxy_json_new_object();
    aiproxy_json_put(iu, "url", aiproxy_json_new_string(url));
    part = aiproxy_json_new_object();
    aiproxy_json_put(part, "type", aiproxy_json_new_string("image_url"));
    aiproxy_json_put(part, "image_url", iu);
    return aiproxy_json_push(parts, part) ? "" : NULL;
}

static aiproxy_json_t *chat_message(const char *role, aiproxy_json_t *content)
{
    aiproxy_json_t *m = aiproxy_json_new_object();

    aiproxy_json_put(m, "role", aiproxy_json_new_string(role));
    aiproxy_json_put(m, "content", content);
    return m;
}

/* A user turn: its tool results first, each a tool message (they answer
 * the assistant's calls just before), then the rest as one user message. */
static const char *msg_user(xl_t *x, aiproxy_json_t *content, const char *w,
                            aiproxy_json_t *msgs)
{
    static const char *const result_keys[] = { "type", "tool_use_id",
                                               "content", "is_error",
                                               "cache_control", NULL };
    aiproxy_json_t *parts = aiproxy_json_own(x->p, aiproxy_json_new_array());
    apr_size_t i;
    const char *err = NULL;

    if (!aiproxy_json_is_array(content)) {
        err = msg_text_parts(x, content, w, parts);
        goto done;
    }
    for (i = 0; !err && i < aiproxy_json_array_size(content); i++) {
        aiproxy_json_t *b = aiproxy_json_array_at(content, i);
        const char *bw = apr_psprintf(x->p, "%s[%" APR_SIZE_T_FMT "]", w, i);
        const char *type = aiproxy_json_string(aiproxy_json_get(b, "type"));

        if (type && !strcmp(type, "text")) {
            err = msg_text_part(x, b, bw, parts);
        }
        else if (type && !strcmp(type, "image")) {
            err = msg_image_part(x, b, bw, parts);
        }
        else if (type && !strcmp(type, "tool_result")) {
            aiproxy_json_t *rc = aiproxy_json_get(b, "content"), *tm;
            aiproxy_json_t *tp = aiproxy_json_own(x->p,
                                                  aiproxy_json_new_array());

            if ((err = only_keys(x, b, bw, result_keys)) ||
                (!absent(rc) &&
                 (err = msg_text_parts(x, rc, apr_pstrcat(x->p, bw,
                                       ".content", NULL), tp))))
                break;
            if (!aiproxy_json_is_string(aiproxy_json_get(b, "tool_use_id"))) {
                err = refuse(x, apr_pstrcat(x->p, bw, ".tool_use_id", NULL),
                             NULL);
                break;
            }
            if (!aiproxy_json_array_size(tp))
                aiproxy_json_push(tp, chat_text_part(
                    aiproxy_json_own(x->p, aiproxy_json_new_string(""))));
            tm = chat_message("tool", aiproxy_json_ref(tp));
            put_ref(tm, "tool_call_id", aiproxy_json_get(b, "tool_use_id"));
            aiproxy_json_push(msgs, tm);
        }
        else {
            err = refuse(x, bw, type ? apr_psprintf(x->p, "of type '%s'",
                                                    type) : NULL);
        }
    }
done:
    if (!err && aiproxy_json_array_size(parts))
        return aiproxy_json_push(msgs, chat_message(
                   "user", aiproxy_json_ref(parts))) ? "" : NULL;
    return err;
}

static const char *msg_assistant(xl_t *x, aiproxy_json_t *content,
                                 const char *w, aiproxy_json_t *msgs)
{
    static const char *const use_keys[] = { "type", "id", "name", "input",
                                            "cache_control", NULL };
    const char *text = NULL;
    aiproxy_json_t *calls = aiproxy_json_own(x->p, aiproxy_json_new_array());
    aiproxy_json_t *m;
    /* Joined once at the end: joining as they come is quadratic. */
    apr_array_header_t *texts = apr_array_make(x->p, 4, sizeof(const char *));
    apr_size_t i;

    if (aiproxy_json_is_string(content))
        text = aiproxy_json_string(content);
    else if (!aiproxy_json_is_array(content))
        return refuse(x, w, NULL);
    for (i = 0; i < aiproxy_json_array_size(content); i++) {
        aiproxy_json_t *b = aiproxy_json_array_at(content, i), *c, *fn;
        const char *bw = apr_psprintf(x->p, "%s[%" APR_SIZE_T_FMT "]", w, i);
        const char *type = aiproxy_json_string(aiproxy_json_get(b, "type"));
        const char *err, *args;
        apr_size_t len;

        if (type && !strcmp(type, "text") &&
            aiproxy_json_is_string(aiproxy_json_get(b, "text"))) {
            static const char *const keys[] = { "type", "text",
                                                "cache_control", NULL };

            if ((err = only_keys(x, b, bw, keys)))
                return err;
            APR_ARRAY_PUSH(texts, const char *) =
                aiproxy_json_string(aiproxy_json_get(b, "text"));
            continue;
        }
        if (!type || strcmp(type, "tool_use"))
            return refuse(x, bw, type ? apr_psprintf(x->p, "of type '%s'", type)
                                      : NULL);
        if ((err = only_keys(x, b, bw, use_keys)))
            return err;
        if (!aiproxy_json_is_string(aiproxy_json_get(b, "id")) ||
            !aiproxy_json_is_string(aiproxy_json_get(b, "name")) ||
            !aiproxy_json_is_object(aiproxy_json_get(b, "input")) ||
            !(args = aiproxy_json_dump(x->p, aiproxy_json_get(b, "input"),
                                       &len)))
            return refuse(x, bw, "(a tool_use without id, name or input)");
        fn = aiproxy_json_new_object();
        put_ref(fn, "name", aiproxy_json_get(b, "name"));
        aiproxy_json_put(fn, "arguments", aiproxy_json_new_string(args));
        c = aiproxy_json_new_object();
        put_ref(c, "id", aiproxy_json_get(b, "id"));
        aiproxy_json_put(c, "type", aiproxy_json_new_string("function"));
        aiproxy_json_put(c, "function", fn);
        aiproxy_json_push(calls, c);
    }
    if (texts->nelts)
        text = apr_array_pstrcat(x->p, texts, '\0');
    m = chat_message("assistant", text ? aiproxy_json_new_string(text) : NULL);
    if (!text)
        aiproxy_json_put(m, "content", aiproxy_json_new_string(""));
    if (aiproxy_json_array_size(calls))
        put_ref(m, "tool_calls", calls);
    return aiproxy_json_push(msgs, m) ? "" : NULL;
}

static const char *msg_messages(xl_t *x, const aiproxy_json_t *body,
                                aiproxy_json_t *out)
{
    aiproxy_json_t *messages = aiproxy_json_get(body, "messages");
    aiproxy_json_t *system = aiproxy_json_get(body, "system");
    aiproxy_json_t *msgs = aiproxy_json_new_array();
    apr_size_t i;
    const char *err;

    aiproxy_json_put(out, "messages", msgs);
    if (!absent(system)) {
        aiproxy_json_t *parts = aiproxy_json_own(x->p,
                                                 aiproxy_json_new_array());

        if ((err = msg_text_parts(x, system, "system", parts)))
            return err;
        aiproxy_json_push(msgs, chat_message("system",
                                             aiproxy_json_ref(parts)));
    }
    if (!aiproxy_json_is_array(messages))
        return refuse(x, "messages", "(not an array)");
    for (i = 0; i < aiproxy_json_array_size(messages); i++) {
        aiproxy_json_t *m = aiproxy_json_array_at(messages, i);
        static const char *const keys[] = { "role", "content", NULL };
        const char *w = apr_psprintf(x->p, "messages[%" APR_SIZE_T_FMT "]", i);
        const char *role = aiproxy_json_string(aiproxy_json_get(m, "role"));
        aiproxy_json_t *content = aiproxy_json_get(m, "content");

        if ((err = only_keys(x, m, w, keys)))
            return err;
        w = apr_pstrcat(x->p, w, ".content", NULL);
        if (role && !strcmp(role, "user"))
            err = msg_user(x, content, w, msgs);
        else if (role && !strcmp(role, "system")) {
            /* A system turn within the conversation (Claude Code's
             * environment notes): a system message where it stands. */
            aiproxy_json_t *parts = aiproxy_json_own(x->p,
                                                     aiproxy_json_new_array());

            if (!(err = msg_text_parts(x, content, w, parts)))
                err = aiproxy_json_push(msgs, chat_message(
                          "system", aiproxy_json_ref(parts))) ? "" : NULL;
        }
        else if (role && !strcmp(role, "assistant"))
            err = msg_assistant(x, content, w, msgs);
        else
            err = refuse(x, apr_psprintf(x->p, "messages[%" APR_SIZE_T_FMT
                                         "].role", i), NULL);
        if (err)
            return err;
    }
    return NULL;
}

static const char *msg_tools(xl_t *x, aiproxy_json_t *tools,
                             aiproxy_json_t *out)
{
    static const char *const keys[] = { "type", "name", "description",
                                        "input_schema", "cache_control", NULL };
    aiproxy_json_t *list = aiproxy_json_new_array();
    apr_size_t i;

    aiproxy_json_put(out, "tools", list);
    if (!aiproxy_json_is_array(tools))
        return refuse(x, "tools", "(not an array)");
    for (i = 0; i < aiproxy_json_array_size(tools); i++) {
        aiproxy_json_t *t = aiproxy_json_array_at(tools, i), *fn, *d;
        const char *w = apr_psprintf(x->p, "tools[%" APR_SIZE_T_FMT "]", i);
        const char *type = aiproxy_json_string(aiproxy_json_get(t, "type"));
        const char *err;

        if (type && strcmp(type, "custom"))
            return refuse(x, w, apr_psprintf(x->p, "of type '%s' (a server "
                                             "tool)", type));
        if ((err = only_keys(x, t, w, keys)))
            return err;
        if (!aiproxy_json_is_string(aiproxy_json_get(t, "name")) ||
            !aiproxy_json_is_object(aiproxy_json_get(t, "input_schema")))
            return refuse(x, w, "(no name or input_schema)");
        fn = aiproxy_json_new_object();
        put_ref(fn, "name", aiproxy_json_get(t, "name"));
        if (aiproxy_json_is_string(aiproxy_json_get(t, "description")))
            put_ref(fn, "description", aiproxy_json_get(t, "description"));
        put_ref(fn, "parameters", aiproxy_json_get(t, "input_schema"));
        d = aiproxy_json_new_object();
        aiproxy_json_put(d, "type", aiproxy_json_new_string("function"));
        aiproxy_json_put(d, "function", fn);
        aiproxy_json_push(list, d);
    }
    return NULL;
}

static const char *msg_tool_choice(xl_t *x, aiproxy_json_t *tc,
                                   aiproxy_json_t *out)
{
    static const char *const keys[] = { "type", "name",
                                        "disable_parallel_tool_use", NULL };
    const char *type = aiproxy_json_string(aiproxy_json_get(tc, "type"));
    const char *name = aiproxy_json_string(aiproxy_json_get(tc, "name"));
    const char *err;

    if ((err = only_keys(x, tc, "tool_choice", keys)))
        return err;
    if (type && !strcmp(type, "auto"))
        aiproxy_json_put(out, "tool_choice", aiproxy_json_new_string("auto"));
    else if (type && !strcmp(type, "any"))
        aiproxy_json_put(out, "tool_choice",
                         aiproxy_json_new_string("required"));
    else if (type && !strcmp(type, "none"))
        aiproxy_json_put(out, "tool_choice", aiproxy_json_new_string("none"));
    else if (type && !strcmp(type, "tool") && name) {
        aiproxy_json_t *c = aiproxy_json_new_object(),
                       *fn = aiproxy_json_new_object();

        aiproxy_json_put(fn, "name", aiproxy_json_new_string(name));
        aiproxy_json_put(c, "type", aiproxy_json_new_string("function"));
        aiproxy_json_put(c, "function", fn);
        aiproxy_json_put(out, "tool_choice", c);
    }
    else
        return refuse(x, "tool_choice.type", NULL);
    if (aiproxy_json_bool(aiproxy_json_get(tc, "disable_parallel_tool_use"))
        == 1)
        aiproxy_json_put(out, "parallel_tool_calls", aiproxy_json_new_bool(0));
    return NULL;
}

/* What Claude Code sends every model and a Chat Completions model does
 * anyway, so nothing is lost by not sending it: thinking left to the model
 * (adaptive) or off, which a model without visible thinking honours; an
 * effort level, which only bounds how much of the reserved output a
 * Claude model spends; clearing thinking blocks from the context, of which
 * a translated conversation has none. Anything else of these is refused. */
static const char *msg_no_op(xl_t *x, const char *k, const aiproxy_json_t *v)
{
    static const char *const thinking_keys[] = { "type", "display", NULL };
    static const char *const output_keys[] = { "effort", NULL };
    static const char *const edit_keys[] = { "type", "keep", NULL };
    static const char *const cm_keys[] = { "edits", NULL };
    const char *type, *err;
    apr_size_t i;

    if (!strcmp(k, "thinking")) {
        type = aiproxy_json_string(aiproxy_json_get(v, "type"));
        if (!type || (strcmp(type, "adaptive") && strcmp(type, "disabled")))
            return refuse(x, k, "(only adaptive or disabled)");
        return only_keys(x, v, k, thinking_keys);
    }
    if (!strcmp(k, "output_config")) {
        if ((err = only_keys(x, v, k, output_keys)))
            return err;
        return aiproxy_json_is_string(aiproxy_json_get(v, "effort")) ? NULL
               : refuse(x, "output_config.effort", NULL);
    }
    if ((err = only_keys(x, v, k, cm_keys)))
        return err;
    v = aiproxy_json_get(v, "edits");
    if (!aiproxy_json_is_array(v))
        return refuse(x, "context_management.edits", NULL);
    for (i = 0; i < aiproxy_json_array_size(v); i++) {
        const aiproxy_json_t *e = aiproxy_json_array_at(v, i);

        type = aiproxy_json_string(aiproxy_json_get(e, "type"));
        if ((err = only_keys(x, e, "context_management.edits", edit_keys)))
            return err;
        if (!type || strncmp(type, "clear_thinking_", 15))
            return refuse(x, "context_management.edits", type ? apr_psprintf(
                              x->p, "of type '%s'", type) : NULL);
    }
    return NULL;
}

static const char *to_chat(xl_t *x, const aiproxy_json_t *body,
                           apr_int64_t max_output, const char *limit_field,
                           aiproxy_json_t *out)
{
    apr_array_header_t *keys = aiproxy_json_keys(x->p, body);
    const char *err;
    int i;

    if ((err = msg_messages(x, body, out)))
        return err;
    for (i = 0; i < keys->nelts; i++) {
        const char *k = APR_ARRAY_IDX(keys, i, const char *);
        aiproxy_json_t *v = aiproxy_json_get(body, k);

        if (absent(v) || !strcmp(k, "max_tokens") || !strcmp(k, "messages") ||
            !strcmp(k, "system"))
            continue;
        if (!strcmp(k, "model") ||
            ((!strcmp(k, "temperature") || !strcmp(k, "top_p")) &&
             aiproxy_json_is_number(v))) {
            put_ref(out, k, v);
        }
        else if (!strcmp(k, "stop_sequences") && aiproxy_json_is_array(v)) {
            if (aiproxy_json_array_size(v))
                put_ref(out, "stop", v);
        }
        else if (!strcmp(k, "tools")) {
            if ((err = msg_tools(x, v, out)))
                return err;
        }
        else if (!strcmp(k, "tool_choice")) {
            if ((err = msg_tool_choice(x, v, out)))
                return err;
        }
        else if (!strcmp(k, "metadata")) {
            static const char *const md_keys[] = { "user_id", NULL };
            aiproxy_json_t *u = aiproxy_json_get(v, "user_id");

            if ((err = only_keys(x, v, "metadata", md_keys)))
                return err;
            if (aiproxy_json_is_string(u))
                put_ref(out, "user", u);
        }
        else if (!strcmp(k, "thinking") || !strcmp(k, "output_config") ||
                 !strcmp(k, "context_management")) {
            if ((err = msg_no_op(x, k, v)))
                return err;
        }
        else if (!strcmp(k, "stream") && aiproxy_json_bool(v) == 0) {
        }
        else if (!strcmp(k, "stream") && aiproxy_json_bool(v) == 1) {
            /* Its usage comes only when asked for: the charge needs it. */
            aiproxy_json_put(out, "stream", aiproxy_json_new_bool(1));
            aiproxy_json_set_nested_true(out, "stream_options",
                                         "include_usage");
        }
        else {
            return refuse(x, k, NULL);
        }
    }
    aiproxy_json_put(out, limit_field, aiproxy_json_new_int(max_output));
    return NULL;
}

const char *aiproxy_xlate_request(apr_pool_t *p, aiproxy_api_t client,
                                  const aiproxy_json_t *body,
                                  apr_int64_t max_output, apr_size_t budget,
                                  aiproxy_json_t **out)
{
    xl_t x;

    x.p = p;
    x.budget = budget;
    *out = aiproxy_json_own(p, aiproxy_json_new_object());
    if (!*out || !aiproxy_json_is_object(body))
        return "The request body cannot be translated.";
    if (client == AIPROXY_API_OPENAI) {
        x.to = "Anthropic Messages";
        return to_messages(&x, body, max_output, *out);
    }
    x.to = "OpenAI Chat Completions";
    return to_chat(&x, body, max_output,
                   aiproxy_output_limit_field(AIPROXY_EP_CHAT), *out);
}
