#include <string.h>
#include <apr_strings.h>

#include "aiproxy_inspect.h"

/* OpenAI's ceiling on "n". */
#define MAX_CHOICES 128


/* What the walk over a body finds. */
typedef struct {
    apr_pool_t *p;
    aiproxy_endpoint_t ep;
    aiproxy_request_info_t *info;
} scan_t;

static int is_type(const aiproxy_json_t *obj, const char *const *types)
{
    const char *t = aiproxy_json_string(aiproxy_json_get(obj, "type"));

    for (; t && *types; types++)
        if (!strcmp(t, *types))
            return 1;
    return 0;
}

static const char *const image_parts[] = {
    "image_url", "input_image", "image", "computer_screenshot", NULL
};
/* Files and documents: their tokens (pages as text and images, fetched
 * URLs, uploaded ids) are not bounded by the bytes that name them. */
static const char *const file_parts[] = {
    "file", "input_file", "document", "container_upload", NULL
};
static const char *const audio_parts[] = { "input_audio", "audio", NULL };
/* Input items that point at content the provider keeps. */
static const char *const stored_items[] = { "item_reference", NULL };

/* Counts media parts and finds what the body alone cannot bound, anywhere
 * in the body: a part the provider would read cannot hide from the count
 * (one counted where the provider sees none only costs its sender). */
static int scan_part(void *baton, const char *key, const aiproxy_json_t *v)
{
    scan_t *sc = baton;
    aiproxy_request_info_t *info = sc->info;
    const aiproxy_json_t *cc;
    const char *ttl;

    if (!aiproxy_json_is_object(v))
        return 0;
    /* An assistant turn's audio, by id: audio tokens, not priced here. */
    if (key && !strcmp(key, "audio") && !info->refused)
        info->refused = "Audio is not offered by this gateway: it is billed "
                        "by audio tokens, which are not priced here.";
    if (is_type(v, image_parts))
        info->images++;
    else if (is_type(v, file_parts))
        info->unseen_input = "a file or document";
    else if (is_type(v, stored_items))
        info->unseen_input = "an item_reference";
    else if (is_type(v, audio_parts) && !info->refused)
        info->refused = "Audio input is not offered by this gateway: it is "
                        "billed by audio tokens, which are not priced here.";
    /* Anthropic's 1-hour cache writes cost twice the input price, not the
     * 5-minute rate: admission takes them where they are priced. */
    if ((cc = aiproxy_json_get(v, "cache_control")) &&
        (ttl = aiproxy_json_string(aiproxy_json_get(cc, "ttl"))) &&
        !strcmp(ttl, "1h"))
        info->cache_1h = 1;
    else if (cc && (ttl = aiproxy_json_string(aiproxy_json_get(cc, "ttl"))) &&
             strcmp(ttl, "5m") && !info->refused)
        info->refused = apr_psprintf(sc->p, "cache_control with ttl '%s' is "
                                     "not offered by this gateway: use 5m or "
                                     "1h.",
                                     ttl);
    return 0;
}

/* Anthropic's web search tool (the version without code execution) with
 * the most searches it may run: max_uses, which admission bounds and
 * prices. Without it nothing bounds the calls, so it is refused. */
#define WEB_SEARCH_TOOL "web_search_20250305"
#define WEB_SEARCH_MAX_USES 20

static const char *web_search_uses(apr_pool_t *p, const aiproxy_json_t *t,
                                   aiproxy_request_info_t *info)
{
    apr_int64_t n;

    if (!aiproxy_json_int(aiproxy_json_get(t, "max_uses"), &n) || n < 1 ||
        n > WEB_SEARCH_MAX_USES)
        return apr_psprintf(p, "The %s tool needs max_uses, an integer from "
                            "1 to %d, on this gateway: each search is billed, "
                            "and the gateway reserves the most a request can "
                            "cost.", WEB_SEARCH_TOOL, WEB_SEARCH_MAX_USES);
    /* Together, too: each tool's searches are another bound. */
    if ((info->web_searches += n) > WEB_SEARCH_MAX_USES)
        return apr_psprintf(p, "The %s tools' max_uses add up to more than %d "
                            "on this gateway.", WEB_SEARCH_TOOL,
                            WEB_SEARCH_MAX_USES);
    return NULL;
}

/* Client tools (functions the caller runs) cost their tokens only; hosted
 * and server tools (web search, file search, code execution, image
 * generation, MCP) are billed per call or per session on top: only
 * Anthropic's web search, bounded by its max_uses, passes here (admission
 * refuses it for a model with no web_search price). A Responses
 * "namespace" (the Codex CLI groups its sub-agent functions in one) is as
 * free as the tools in it, which are checked in turn, one level deep. */
static const char *check_tool_list(apr_pool_t *p, aiproxy_endpoint_t ep,
                                   const aiproxy_json_t *tools, int nested,
                                   aiproxy_request_info_t *info)
{
    apr_size_t i, n = aiproxy_json_array_size(tools);

    for (i = 0; i < n; i++) {
        const aiproxy_json_t *t = aiproxy_json_array_at(tools, i);
        const aiproxy_json_t *type = aiproxy_json_get(t, "type");
        const char *name = aiproxy_json_string(type), *why;

        if (ep == AIPROXY_EP_MESSAGES && name &&
            !strcmp(name, WEB_SEARCH_TOOL)) {
            if ((why = web_search_uses(p, t, info)))
                return why;
            continue;
        }
        if (ep == AIPROXY_EP_MESSAGES ? (!type || (name && !strcmp(name, "custom")))
                                      : (name && (!strcmp(name, "function") ||
                                                  !strcmp(name, "custom"))))
            continue;
        if (ep == AIPROXY_EP_RESPONSES && !nested && name
            && !strcmp(name, "namespace")) {
            if ((why = check_tool_list(p, ep, aiproxy_json_get(t, "tools"), 1,
                                       info)))
                return why;
            continue;
        }
        return apr_psprintf(p, "The tool type '%s' is not offered by this "
                            "gateway: hosted and server tools are billed "
                            "beyond tokens. Use function tools.",
                            name ? name : "(not a string)");
    }
    return NULL;
}

static const char *check_tools(apr_pool_t *p, aiproxy_endpoint_t ep,
                               aiproxy_request_info_t *info)
{
    const aiproxy_json_t *tools = aiproxy_json_get(info->root, "tools");

    if (aiproxy_json_array_size(tools))
        info->tools = 1;
    return check_tool_list(p, ep, tools, 0, info);
}

/* Fields whose cost the gateway cannot bound before the answer. */
static const char *check_extras(apr_pool_t *p, aiproxy_endpoint_t ep,
                                aiproxy_request_info_t *info)
{
    const aiproxy_json_t *root = info->root, *v;
    const char *s;
    apr_size_t i;

    if ((v = aiproxy_json_get(root, "background")) && aiproxy_json_bool(v) == 1)
        return "Background mode is not offered by this gateway: its answer "
               "and its cost arrive later, where the gateway cannot meter "
               "them. Send the request without background.";
    if ((v = aiproxy_json_get(root, "service_tier")) && !aiproxy_json_is_null(v)) {
        s = aiproxy_json_string(v);
        /* Standard prices bound auto, default and flex (flex costs less);
         * priority and scale cost more. Anthropic's values are both
         * standard. */
        if (!s || (strcmp(s, "auto") && strcmp(s, "default") &&
                   strcmp(s, "flex") && strcmp(s, "standard_only")))
            return apr_psprintf(p, "service_tier '%s' is not offered by this "
                                "gateway: only standard prices are charged "
                                "here. Use 'auto' or 'default'.",
                                s ? s : "(not a string)");
    }
    if (((v = aiproxy_json_get(root, "audio")) && !aiproxy_json_is_null(v)))
        return "Audio output is not offered by this gateway: it is billed by "
               "audio tokens, which are not priced here.";
    v = aiproxy_json_get(root, "modalities");
    for (i = 0; i < aiproxy_json_array_size(v); i++)
        if ((s = aiproxy_json_string(aiproxy_json_array_at(v, i))) &&
            strcmp(s, "text"))
            return apr_psprintf(p, "The output modality '%s' is not offered "
                                "by this gateway.", s);
    if ((v = aiproxy_json_get(root, "web_search_options")) &&
        !aiproxy_json_is_null(v))
        return "Web search is not offered by this gateway: it is billed per "
               "call beyond tokens.";
    /* Rejected prediction tokens are billed as output on top of the
     * answer's own. */
    if ((v = aiproxy_json_get(root, "prediction")) && !aiproxy_json_is_null(v))
        return "Predicted outputs are not offered by this gateway: their "
               "rejected tokens are billed beyond the output limit.";
    if (ep == AIPROXY_EP_MESSAGES &&
        (((v = aiproxy_json_get(root, "mcp_servers")) &&
          aiproxy_json_array_size(v)) ||
         ((v = aiproxy_json_get(root, "container")) && !aiproxy_json_is_null(v))))
        return "MCP servers and code execution containers are not offered "
               "by this gateway: they are billed beyond tokens.";
    return check_tools(p, ep, info);
}

/* A Responses input item the provider fills from what it keeps: one named
 * by id alone (its type may be left out, or null), or reasoning without
 * its encrypted content. */
static const char *stored_item(const aiproxy_json_t *item)
{
    const aiproxy_json_t *type = aiproxy_json_get(item, "type");
    const char *t = aiproxy_json_string(type);

    if (!aiproxy_json_is_object(item))
        return NULL;
    if ((!type || aiproxy_json_is_null(type)) && aiproxy_json_get(item, "id") &&
        !aiproxy_json_get(item, "role") && !aiproxy_json_get(item, "content"))
        return "an input item given by id";
    if (t && !strcmp(t, "reasoning") &&
        !aiproxy_json_string(aiproxy_json_get(item, "encrypted_content")))
        return "a reasoning item without its encrypted_content";
    return NULL;
}

/* Requests that make the provider read what it keeps. */
static void check_stored(aiproxy_request_info_t *info)
{
    const aiproxy_json_t *input = aiproxy_json_get(info->root, "input");
    apr_size_t n;

    static const char *const fields[] = {
        "previous_response_id", "conversation", "prompt", NULL
    };
    const aiproxy_json_t *v;
    int i;

    for (i = 0; fields[i]; i++)
        if ((v = aiproxy_json_get(info->root, fields[i])) &&
            !aiproxy_json_is_null(v)) {
            info->unseen_input = fields[i];
            return;
        }
    for (n = 0; n < aiproxy_json_array_size(input); n++)
        if ((info->unseen_input = stored_item(aiproxy_json_array_at(input, n))))
            return;
}

/* Reasoning asked for: OpenAI's reasoning or reasoning_effort, Anthropic's
 * thinking (not when disabled). */
static int asks_reasoning(const aiproxy_json_t *root)
{
    const aiproxy_json_t *v;
    const char *t;

    if (((v = aiproxy_json_get(root, "reasoning")) && !aiproxy_json_is_null(v)) ||
        ((v = aiproxy_json_get(root, "reasoning_effort")) &&
         !aiproxy_json_is_null(v)))
        return 1;
    v = aiproxy_json_get(root, "thinking");
    t = aiproxy_json_string(aiproxy_json_get(v, "type"));
    return v && !aiproxy_json_is_null(v) && !(t && !strcmp(t, "disabled"));
}

/* The output limits each endpoint has; another's name would go upstream
 * unbounded by what the gateway reserved. */

const char *aiproxy_inspect_request(apr_pool_t *p, const char *body,
                                    apr_size_t len, aiproxy_endpoint_t ep,
                                    aiproxy_request_info_t *info)
{
    const char *err = NULL;
    aiproxy_json_t *root, *v, *opts;
    scan_t sc;
    int i, b;

    memset(info, 0, sizeof(*info));
    info->max_output = -1;
    info->choices = 1;

    if (!(root = aiproxy_json_parse(p, body, len, &err)))
        return apr_pstrcat(p, "request body is not valid JSON: ", err, NULL);
    if (!aiproxy_json_is_object(root))
        return "request body must be a JSON object";
    info->root = root;
    v = aiproxy_json_get(root, "model");
    if (ep == AIPROXY_EP_MODERATIONS && (!v || aiproxy_json_is_null(v))) {
        if (aiproxy_json_set_string(root, "model", AIPROXY_MODERATION_MODEL))
            return "request body could not be read";
        v = aiproxy_json_get(root, "model");
        info->model_defaulted = 1;
    }
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
    /* Nothing a free endpoint's body asks for is billed: its limits,
     * tools and parts are the provider's to check. A media endpoint's
     * units are read by its admission (aiproxy_media.h). */
    if (aiproxy_endpoint_free(ep) || aiproxy_endpoint_media(ep))
        return NULL;
    if ((opts = aiproxy_json_get(root, "stream_options")) &&
        (v = aiproxy_json_get(opts, "include_usage")))
        info->include_usage = aiproxy_json_bool(v) == 1;
    for (i = 0; aiproxy_output_limits[i]; i++) {
        apr_int64_t n;

        if (!(v = aiproxy_json_get(root, aiproxy_output_limits[i])) ||
            aiproxy_json_is_null(v))
            continue;
        if (!aiproxy_json_int(v, &n) || n < 0)
            return apr_psprintf(p, "'%s' must be a non-negative integer",
                                aiproxy_output_limits[i]);
        if (ep != AIPROXY_EP_OTHER && !aiproxy_limit_belongs(ep, aiproxy_output_limits[i]))
            return apr_psprintf(p, "'%s' is not an output limit of this "
                                "endpoint%s", aiproxy_output_limits[i],
                                ep == AIPROXY_EP_EMBEDDINGS ? "" :
                                apr_pstrcat(p, ": use '",
                                            aiproxy_output_limit_field(ep),
                                            "'", NULL));
        if (n > info->max_output)
            info->max_output = n;
    }
    if ((v = aiproxy_json_get(root, "n")) && !aiproxy_json_is_null(v)) {
        if (!aiproxy_json_int(v, &info->choices) || info->choices < 1 ||
            info->choices > MAX_CHOICES)
            return apr_psprintf(p, "'n' must be an integer from 1 to %d",
                                MAX_CHOICES);
    }
    if ((err = check_extras(p, ep, info)))
        info->refused = err;
    check_stored(info);
    info->reasoning = asks_reasoning(root);
    sc.p = p;
    sc.ep = ep;
    sc.info = info;
    aiproxy_json_walk(root, scan_part, &sc);
    return NULL;
}
