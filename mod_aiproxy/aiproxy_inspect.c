#include <string.h>
#include <apr_strings.h>

#include "aiproxy_inspect.h"

static const char *const output_limits[] = {
    "max_tokens", "max_completion_tokens", "max_output_tokens", NULL
};

const char *aiproxy_inspect_request(apr_pool_t *p, const char *body,
                                    apr_size_t len,
                                    aiproxy_request_info_t *info)
{
    const char *err = NULL;
    aiproxy_json_t *root, *v, *opts;
    int i, b;

    info->root = NULL;
    info->model = NULL;
    info->stream = info->include_usage = 0;
    info->max_output = -1;

    if (!(root = aiproxy_json_parse(p, body, len, &err)))
        return apr_pstrcat(p, "request body is not valid JSON: ", err, NULL);
    if (!aiproxy_json_is_object(root))
        return "request body must be a JSON object";
    info->root = root;
    v = aiproxy_json_get(root, "model");
    if (!v)
        return "request body has no 'model'";
    if (!(info->model = aiproxy_json_string(v)) || !*info->model)
        return "'model' must be a non-empty string";
    /* A copy: the gateway may rewrite "model" for a provider's alias. */
    info->model = apr_pstrdup(p, info->model);
    /* OpenAI accepts null for these optional fields: null means absent. */
    if ((v = aiproxy_json_get(root, "stream")) && !aiproxy_json_is_null(v)) {
        if ((b = aiproxy_json_bool(v)) < 0)
            return "'stream' must be a boolean";
        info->stream = b;
    }
    if ((opts = aiproxy_json_get(root, "stream_options")) &&
        (v = aiproxy_json_get(opts, "include_usage")))
        info->include_usage = aiproxy_json_bool(v) == 1;
    for (i = 0; output_limits[i]; i++) {
        apr_int64_t n;

        if (!(v = aiproxy_json_get(root, output_limits[i])) ||
            aiproxy_json_is_null(v))
            continue;
        if (!aiproxy_json_int(v, &n) || n < 0)
            return apr_psprintf(p, "'%s' must be a non-negative integer",
                                output_limits[i]);
        if (n > info->max_output)
            info->max_output = n;
    }
    return NULL;
}

/* Reads obj[key] (or obj[key][sub]) as a count; 1 when present. */
static int count_at(const aiproxy_json_t *obj, const char *key,
                    const char *sub, apr_int64_t *out)
{
    const aiproxy_json_t *v = aiproxy_json_get(obj, key);

    if (sub)
        v = aiproxy_json_get(v, sub);
    return v && aiproxy_json_int(v, out) && *out >= 0;
}

static void keep_max(apr_int64_t *field, apr_int64_t v)
{
    if (v > *field)
        *field = v;
}

int aiproxy_usage_merge(const aiproxy_json_t *usage, aiproxy_api_t api,
                        aiproxy_usage_t *u)
{
    apr_int64_t total = 0, cached = 0, out = 0, w = 0;
    int found = 0;

    if (!aiproxy_json_is_object(usage))
        return 0;
    if (api == AIPROXY_API_ANTHROPIC) {
        /* Anthropic's input_tokens excludes cache reads and writes. */
        if (count_at(usage, "input_tokens", NULL, &total))
            keep_max(&u->input, total), found = 1;
        if (count_at(usage, "cache_read_input_tokens", NULL, &cached))
            keep_max(&u->cached_input, cached), found = 1;
        if (count_at(usage, "cache_creation_input_tokens", NULL, &w))
            keep_max(&u->cache_write, w), found = 1;
        if (count_at(usage, "output_tokens", NULL, &out))
            keep_max(&u->output, out), found = 1;
        return found;
    }
    /* OpenAI counts cached tokens inside the prompt total. Chat and
     * embeddings say prompt/completion; the Responses API input/output. */
    if (count_at(usage, "prompt_tokens", NULL, &total)) {
        found = 1;
        count_at(usage, "prompt_tokens_details", "cached_tokens", &cached);
        count_at(usage, "completion_tokens", NULL, &out);
    }
    else if (count_at(usage, "input_tokens", NULL, &total)) {
        found = 1;
        count_at(usage, "input_tokens_details", "cached_tokens", &cached);
        count_at(usage, "output_tokens", NULL, &out);
    }
    if (!found)
        return 0;
    if (cached > total)
        cached = total;
    keep_max(&u->input, total - cached);
    keep_max(&u->cached_input, cached);
    keep_max(&u->output, out);
    return 1;
}

/* 1 when buf[0..len) closes exactly one open object: what follows a
 * member of the top-level object (more members, then its brace). */
static int closes_top_level(const char *buf, apr_size_t len)
{
    apr_size_t i;
    int depth = 1, in_string = 0;

    for (i = 0; i < len; i++) {
        char c = buf[i];

        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
        }
        else if (c == '"')
            in_string = 1;
        else if (c == '{' || c == '[')
            depth++;
        else if ((c == '}' || c == ']') && --depth == 0) {
            for (i++; i < len; i++)
                if (buf[i] != ' ' && buf[i] != '\n' && buf[i] != '\r' &&
                    buf[i] != '\t')
                    return 0;
            return 1;
        }
    }
    return 0;
}

/* Every provider puts the top-level "usage" near the end of its answer:
 * parse that member alone rather than the whole body (embeddings can be
 * megabytes). In a JSON text the bytes "usage" followed by ':' are a key
 * (inside a string the quotes would be escaped); the member is taken only
 * when the rest of the body closes the top-level object. */
static int usage_from_tail(apr_pool_t *p, const char *body, apr_size_t len,
                           aiproxy_api_t api, aiproxy_usage_t *u)
{
    apr_size_t i = len, j, used;
    aiproxy_json_t *usage;

    while (i-- > 7) {
        if (body[i - 7] != '"' || memcmp(body + i - 6, "usage\"", 6) ||
            (i >= 8 && body[i - 8] == '\\'))
            continue;
        for (j = i; j < len && (body[j] == ' ' || body[j] == '\n' ||
                                body[j] == '\r' || body[j] == '\t'); j++)
            ;
        if (j == len || body[j] != ':')
            continue;
        for (j++; j < len && (body[j] == ' ' || body[j] == '\n' ||
                              body[j] == '\r' || body[j] == '\t'); j++)
            ;
        usage = aiproxy_json_parse_prefix(p, body + j, len - j, &used);
        if (!usage || !closes_top_level(body + j + used, len - j - used))
            return -1;
        return aiproxy_usage_merge(usage, api, u);
    }
    return -1;
}

int aiproxy_usage_from_body(apr_pool_t *p, const char *body, apr_size_t len,
                            aiproxy_api_t api, aiproxy_usage_t *u)
{
    const char *err;
    aiproxy_json_t *root;
    int rc = usage_from_tail(p, body, len, api, u);

    if (rc >= 0)
        return rc;
    root = aiproxy_json_parse(p, body, len, &err);
    return root && aiproxy_usage_merge(aiproxy_json_get(root, "usage"), api, u);
}
