#include <string.h>
#include <apr_strings.h>

#include "aiproxy_inspect.h"
#include "aiproxy_jscan.h"

const char *const aiproxy_output_limits[] = {
    "max_tokens", "max_completion_tokens", "max_output_tokens", NULL
};

/* OpenAI's ceiling on "n". */
#define MAX_CHOICES 128

aiproxy_endpoint_t aiproxy_endpoint_kind(const char *endpoint)
{
    if (!strcmp(endpoint, "chat/completions"))
        return AIPROXY_EP_CHAT;
    if (!strcmp(endpoint, "responses"))
        return AIPROXY_EP_RESPONSES;
    if (!strcmp(endpoint, "messages"))
        return AIPROXY_EP_MESSAGES;
    if (!strcmp(endpoint, "embeddings"))
        return AIPROXY_EP_EMBEDDINGS;
    return AIPROXY_EP_OTHER;
}

const char *aiproxy_output_limit_field(aiproxy_endpoint_t ep)
{
    switch (ep) {
    case AIPROXY_EP_CHAT:
        /* max_tokens is deprecated there and refused by reasoning models. */
        return "max_completion_tokens";
    case AIPROXY_EP_RESPONSES:
        return "max_output_tokens";
    case AIPROXY_EP_MESSAGES:
        return "max_tokens";
    default:
        return NULL;
    }
}

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

/* Client tools (functions the caller runs) cost their tokens only; hosted
 * and server tools (web search, file search, code execution, image
 * generation, MCP) are billed per call or per session on top. */
static const char *check_tools(apr_pool_t *p, aiproxy_endpoint_t ep,
                               aiproxy_request_info_t *info)
{
    const aiproxy_json_t *tools = aiproxy_json_get(info->root, "tools");
    apr_size_t i, n = aiproxy_json_array_size(tools);

    for (i = 0; i < n; i++) {
        const aiproxy_json_t *t = aiproxy_json_array_at(tools, i);
        const aiproxy_json_t *type = aiproxy_json_get(t, "type");
        const char *name = aiproxy_json_string(type);

        info->tools = 1;
        if (ep == AIPROXY_EP_MESSAGES ? (!type || (name && !strcmp(name, "custom")))
                                      : (name && (!strcmp(name, "function") ||
                                                  !strcmp(name, "custom"))))
            continue;
        return apr_psprintf(p, "The tool type '%s' is not offered by this "
                            "gateway: hosted and server tools are billed "
                            "beyond tokens. Use function tools.",
                            name ? name : "(not a string)");
    }
    return NULL;
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
static int limit_belongs(aiproxy_endpoint_t ep, const char *field)
{
    switch (ep) {
    case AIPROXY_EP_CHAT:
        return !strcmp(field, "max_tokens") ||
               !strcmp(field, "max_completion_tokens");
    case AIPROXY_EP_RESPONSES:
        return !strcmp(field, "max_output_tokens");
    case AIPROXY_EP_MESSAGES:
        return !strcmp(field, "max_tokens");
    default:
        return 0;
    }
}

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
    for (i = 0; aiproxy_output_limits[i]; i++) {
        apr_int64_t n;

        if (!(v = aiproxy_json_get(root, aiproxy_output_limits[i])) ||
            aiproxy_json_is_null(v))
            continue;
        if (!aiproxy_json_int(v, &n) || n < 0)
            return apr_psprintf(p, "'%s' must be a non-negative integer",
                                aiproxy_output_limits[i]);
        if (ep != AIPROXY_EP_OTHER && !limit_belongs(ep, aiproxy_output_limits[i]))
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

/* Reads obj[key] (or obj[key][sub]) as a count; 1 when present. */
/* The counts a usage object may carry, each present when it is a
 * non-negative integer; read from jansson's tree or by scan_usage(). */
enum {
    F_PROMPT, F_COMPLETION, F_INPUT, F_OUTPUT, F_CACHE_READ,
    F_CACHE_CREATION, F_PROMPT_CACHED, F_INPUT_CACHED, F_CACHE_1H, F_COUNT
};

typedef struct {
    apr_int64_t v[F_COUNT];
    int has[F_COUNT];
} fields_t;

static const char *const top_keys[] = {
    "prompt_tokens", "completion_tokens", "input_tokens", "output_tokens",
    "cache_read_input_tokens", "cache_creation_input_tokens"
};

static void count_at(const aiproxy_json_t *obj, const char *key,
                     const char *sub, fields_t *f, int which)
{
    const aiproxy_json_t *v = aiproxy_json_get(obj, key);
    apr_int64_t n;

    if (sub)
        v = aiproxy_json_get(v, sub);
    if (v && aiproxy_json_int(v, &n) && n >= 0) {
        f->v[which] = n;
        f->has[which] = 1;
    }
}

static void fields_from_json(const aiproxy_json_t *usage, fields_t *f)
{
    int i;

    memset(f, 0, sizeof(*f));
    for (i = 0; i <= F_CACHE_CREATION; i++)
        count_at(usage, top_keys[i], NULL, f, i);
    count_at(usage, "prompt_tokens_details", "cached_tokens", f,
             F_PROMPT_CACHED);
    count_at(usage, "input_tokens_details", "cached_tokens", f,
             F_INPUT_CACHED);
    count_at(usage, "cache_creation", "ephemeral_1h_input_tokens", f,
             F_CACHE_1H);
}

static void keep_max(apr_int64_t *field, apr_int64_t v)
{
    if (v > *field)
        *field = v;
}

static apr_int64_t field_or_0(const fields_t *f, int which)
{
    return f->has[which] ? f->v[which] : 0;
}

static int merge_fields(const fields_t *f, aiproxy_api_t api,
                        aiproxy_usage_t *u)
{
    apr_int64_t total, cached, out;

    if (api == AIPROXY_API_ANTHROPIC) {
        /* Anthropic's input_tokens excludes cache reads and writes. */
        keep_max(&u->input, field_or_0(f, F_INPUT));
        keep_max(&u->cached_input, field_or_0(f, F_CACHE_READ));
        apr_int64_t writes = field_or_0(f, F_CACHE_CREATION);
        apr_int64_t hour = f->has[F_CACHE_1H] ? f->v[F_CACHE_1H]
                                              : u->cache_write_1h;

        /* cache_creation_input_tokens counts both durations; the hour's
         * are named inside cache_creation. */
        if (hour > writes)
            writes = hour;
        keep_max(&u->cache_write, writes - hour);
        keep_max(&u->cache_write_1h, hour);
        keep_max(&u->output, field_or_0(f, F_OUTPUT));
        return f->has[F_INPUT] || f->has[F_CACHE_READ] ||
               f->has[F_CACHE_CREATION] || f->has[F_OUTPUT] ||
               f->has[F_CACHE_1H];
    }
    /* OpenAI counts cached tokens inside the prompt total. Chat and
     * embeddings say prompt/completion; the Responses API input/output. */
    if (f->has[F_PROMPT]) {
        total = f->v[F_PROMPT];
        cached = field_or_0(f, F_PROMPT_CACHED);
        out = field_or_0(f, F_COMPLETION);
    }
    else if (f->has[F_INPUT]) {
        total = f->v[F_INPUT];
        cached = field_or_0(f, F_INPUT_CACHED);
        out = field_or_0(f, F_OUTPUT);
    }
    else {
        return 0;
    }
    if (cached > total)
        cached = total;
    keep_max(&u->input, total - cached);
    keep_max(&u->cached_input, cached);
    keep_max(&u->output, out);
    return 1;
}

int aiproxy_usage_merge(const aiproxy_json_t *usage, aiproxy_api_t api,
                        aiproxy_usage_t *u)
{
    fields_t f;

    if (!aiproxy_json_is_object(usage))
        return 0;
    fields_from_json(usage, &f);
    return merge_fields(&f, api, u);
}

/* A scanner for usage objects in the plain shape every provider sends,
 * which costs a tenth of building jansson's tree. It reads objects (two
 * levels), keys and strings of printable ASCII without escapes, integers,
 * true, false and null, and refuses (-1) anything else, or a duplicate
 * key: the caller then asks jansson, so anything unusual is decided exactly
 * as before. */
#define SCAN_MAX_KEYS 32

static void skip_ws(const char *s, apr_size_t len, apr_size_t *i)
{
    while (*i < len && (s[*i] == ' ' || s[*i] == '\n' || s[*i] == '\r' ||
                        s[*i] == '\t'))
        (*i)++;
}

/* A string at s[*i] == '"': its bytes' span. */
static int scan_string(const char *s, apr_size_t len, apr_size_t *i,
                       apr_size_t *start, apr_size_t *n)
{
    apr_size_t j = *i + 1;

    for (; j < len && s[j] != '"'; j++)
        if ((unsigned char)s[j] < 0x20 || (unsigned char)s[j] >= 0x7f ||
            s[j] == '\\')
            return -1;
    if (j >= len)
        return -1;
    *start = *i + 1;
    *n = j - *i - 1;
    *i = j + 1;
    return 0;
}

static int scan_int(const char *s, apr_size_t len, apr_size_t *i,
                    apr_int64_t *out)
{
    apr_size_t j = *i, digits = 0;
    int neg = 0;
    apr_int64_t v = 0;

    if (s[j] == '-')
        neg = 1, j++;
    /* 18 digits always fit; past them the value is jansson's to judge,
     * and multiplying on would overflow. */
    for (; j < len && s[j] >= '0' && s[j] <= '9'; j++, digits++)
        if (digits < 18)
            v = v * 10 + (s[j] - '0');
    /* No digits, a leading zero, past 18 digits, or a fraction or
     * exponent: jansson's to judge. */
    if (digits == 0 || digits > 18 || (digits > 1 && s[j - digits] == '0') ||
        (j < len && (s[j] == '.' || s[j] == 'e' || s[j] == 'E')))
        return -1;
    *out = neg ? -v : v;
    *i = j;
    return 0;
}

static int word_at(const char *s, apr_size_t len, apr_size_t *i,
                   const char *w)
{
    apr_size_t n = strlen(w);

    if (len - *i < n || memcmp(s + *i, w, n))
        return -1;
    *i += n;
    return 0;
}

static int key_is(const char *s, apr_size_t start, apr_size_t n,
                  const char *key)
{
    return strlen(key) == n && !memcmp(s + start, key, n);
}

/* Which count a key names: at the top, or inside the named details. */
static int field_of(const char *s, apr_size_t start, apr_size_t n,
                    int details)
{
    int k;

    if (details == F_CACHE_1H)
        return key_is(s, start, n, "ephemeral_1h_input_tokens") ? details : -1;
    if (details >= 0)
        return key_is(s, start, n, "cached_tokens") ? details : -1;
    for (k = 0; k <= F_CACHE_CREATION; k++)
        if (key_is(s, start, n, top_keys[k]))
            return k;
    return -1;
}

/* The object at s[*i] == '{'. details: -1 at the top; inside an object,
 * the field its cached_tokens fills, or -2 for one that fills nothing. */
static int scan_object(const char *s, apr_size_t len, apr_size_t *i,
                       int details, fields_t *f)
{
    apr_size_t keys[SCAN_MAX_KEYS][2], nkeys = 0, k, start, n;

    (*i)++;
    skip_ws(s, len, i);
    if (*i < len && s[*i] == '}') {
        (*i)++;
        return 0;
    }
    for (;;) {
        int which;

        if (*i >= len || s[*i] != '"' || scan_string(s, len, i, &start, &n))
            return -1;
        for (k = 0; k < nkeys; k++)
            if (keys[k][1] == n && !memcmp(s + keys[k][0], s + start, n))
                return -1;
        if (nkeys == SCAN_MAX_KEYS)
            return -1;
        keys[nkeys][0] = start;
        keys[nkeys++][1] = n;
        which = details == -2 ? -1 : field_of(s, start, n, details);
        skip_ws(s, len, i);
        if (*i >= len || s[(*i)++] != ':')
            return -1;
        skip_ws(s, len, i);
        if (*i >= len)
            return -1;
        if (s[*i] == '{') {
            int sub = -2;

            if (details != -1)
                return -1;   /* deeper than any usage goes */
            if (key_is(s, start, n, "prompt_tokens_details"))
                sub = F_PROMPT_CACHED;
            else if (key_is(s, start, n, "input_tokens_details"))
                sub = F_INPUT_CACHED;
            else if (key_is(s, start, n, "cache_creation"))
                sub = F_CACHE_1H;
            if (scan_object(s, len, i, sub, f))
                return -1;
        }
        else if (s[*i] == '"') {
            apr_size_t vs, vn;

            if (scan_string(s, len, i, &vs, &vn))
                return -1;
        }
        else if (s[*i] == '-' || (s[*i] >= '0' && s[*i] <= '9')) {
            apr_int64_t v;

            if (scan_int(s, len, i, &v))
                return -1;
            if (which >= 0 && v >= 0) {
                f->v[which] = v;
                f->has[which] = 1;
            }
        }
        else if (word_at(s, len, i, "true") && word_at(s, len, i, "false") &&
                 word_at(s, len, i, "null")) {
            return -1;
        }
        skip_ws(s, len, i);
        if (*i >= len)
            return -1;
        if (s[*i] == '}') {
            (*i)++;
            return 0;
        }
        if (s[(*i)++] != ',')
            return -1;
        skip_ws(s, len, i);
    }
}

int aiproxy_usage_scan(const char *s, apr_size_t len, apr_size_t *used,
                       aiproxy_api_t api, aiproxy_usage_t *u)
{
    fields_t f;
    apr_size_t i = 0;

    memset(&f, 0, sizeof(f));
    if (!len || s[0] != '{' || scan_object(s, len, &i, -1, &f))
        return -1;
    *used = i;
    return merge_fields(&f, api, u);
}

/* A usage object is a few hundred bytes: text that would take more to
 * parse is not one. */
#define MAX_USAGE_PARSE (256 * 1024)
#define MAX_USAGE_TEXT (64 * 1024)

int aiproxy_usage_from_value(apr_pool_t *p, const char *text, apr_size_t len,
                             aiproxy_api_t api, aiproxy_usage_t *u)
{
    apr_size_t used;
    const char *err;
    int rc;

    if (!len || text[0] != '{')
        return 0;
    if ((rc = aiproxy_usage_scan(text, len, &used, api, u)) >= 0)
        return rc;
    if (aiproxy_json_cost(text, len) > MAX_USAGE_PARSE)
        return 0;
    return aiproxy_usage_merge(aiproxy_json_parse(p, text, len, &err), api, u);
}

/* The top-level "usage" of one JSON object, found by the member finder
 * the meter feeds as an answer arrives. */
int aiproxy_usage_from_body(apr_pool_t *p, const char *body, apr_size_t len,
                            aiproxy_api_t api, aiproxy_usage_t *u)
{
    aiproxy_jscan_t *s = aiproxy_jscan_create(p, "usage", MAX_USAGE_TEXT);
    const char *text;
    apr_size_t n;

    aiproxy_jscan_feed(s, body, len);
    text = aiproxy_jscan_value(s, &n);
    return text && aiproxy_usage_from_value(p, text, n, api, u);
}

/* The end of the string that starts at s[i] == '"' (the index after its
 * closing quote), or len when it does not end. */
static apr_size_t string_end(const char *s, apr_size_t len, apr_size_t i)
{
    for (i++; i < len; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return len;
}

static apr_size_t skip_blank(const char *s, apr_size_t len, apr_size_t i)
{
    while (i < len && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' ||
                       s[i] == '\t'))
        i++;
    return i;
}

/* Keys whose string values are generated text in the delta events of the
 * three APIs: content, tool arguments, reasoning, refusals. */
static const char *const delta_keys[] = {
    "text", "partial_json", "thinking", "delta", "content", "arguments",
    "reasoning_content", "reasoning", "refusal", NULL
};

apr_size_t aiproxy_delta_text_len(const char *data, apr_size_t len)
{
    apr_size_t i = 0, total = 0;

    while (i < len) {
        apr_size_t ks, ke, j;
        int k, wanted = 0;

        if (data[i] != '"') {
            i++;
            continue;
        }
        ks = i + 1;
        ke = string_end(data, len, i);
        j = skip_blank(data, len, ke);
        if (j >= len || data[j] != ':') {
            i = ke;            /* a value, not a key */
            continue;
        }
        for (k = 0; delta_keys[k]; k++)
            if (ke - 1 - ks == strlen(delta_keys[k]) &&
                !memcmp(data + ks, delta_keys[k], ke - 1 - ks))
                wanted = 1;
        j = skip_blank(data, len, j + 1);
        if (j < len && data[j] == '"') {
            i = string_end(data, len, j);
            if (wanted)
                total += i - j - 2 + (i == len);
        }
        else {
            i = j;
        }
    }
    return total;
}

/* The index after the value at s[i], or len when it does not end. */
static apr_size_t value_end(const char *s, apr_size_t len, apr_size_t i)
{
    int depth = 0;

    if (i < len && s[i] == '"')
        return string_end(s, len, i);
    for (; i < len; i++) {
        if (s[i] == '"')
            i = string_end(s, len, i) - 1;
        else if (s[i] == '{' || s[i] == '[')
            depth++;
        else if (s[i] == '}' || s[i] == ']') {
            if (depth == 0)
                return i;
            if (--depth == 0)
                return i + 1;
        }
        else if (depth == 0 && (s[i] == ',' || s[i] == ' ' || s[i] == '\n' ||
                                s[i] == '\r' || s[i] == '\t'))
            return i;
    }
    return len;
}

int aiproxy_json_member_span(const char *s, apr_size_t len, const char *key,
                             apr_size_t *start, apr_size_t *end,
                             apr_size_t *vstart, apr_size_t *vlen)
{
    apr_size_t klen = strlen(key), i = skip_blank(s, len, 0), prev_comma = 0;
    int have_prev = 0;

    if (i >= len || s[i] != '{')
        return 0;
    i = skip_blank(s, len, i + 1);
    while (i < len && s[i] == '"') {
        apr_size_t ks = i, ke = string_end(s, len, i), vs, ve, after;

        i = skip_blank(s, len, ke);
        if (i >= len || s[i] != ':')
            return 0;
        vs = skip_blank(s, len, i + 1);
        ve = value_end(s, len, vs);
        if (ve >= len || ve == vs)
            return 0;
        after = skip_blank(s, len, ve);
        if (after >= len || (s[after] != ',' && s[after] != '}'))
            return 0;
        if (ke - ks - 2 == klen && !memcmp(s + ks + 1, key, klen)) {
            *vstart = vs;
            *vlen = ve - vs;
            if (s[after] == ',') {
                *start = ks;
                *end = skip_blank(s, len, after + 1);
            }
            else {
                *start = have_prev ? prev_comma : ks;
                *end = after;
            }
            return 1;
        }
        if (s[after] == '}')
            return 0;
        prev_comma = after;
        have_prev = 1;
        i = skip_blank(s, len, after + 1);
    }
    return 0;
}
