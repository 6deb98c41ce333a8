#include <string.h>
#include <apr_strings.h>

#include "aiproxy_jscan.h"
#include "aiproxy_usage_read.h"

static const char *const top_keys[] = {
    "prompt_tokens", "completion_tokens", "input_tokens", "output_tokens",
    "cache_read_input_tokens", "cache_creation_input_tokens"
};

static void count_at(const aiproxy_json_t *obj, const char *key,
                     const char *sub, aiproxy_usage_fields_t *f, int which)
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

static void fields_from_json(const aiproxy_json_t *usage, aiproxy_usage_fields_t *f)
{
    int i;

    memset(f, 0, sizeof(*f));
    for (i = 0; i <= AIPROXY_F_CACHE_CREATION; i++)
        count_at(usage, top_keys[i], NULL, f, i);
    count_at(usage, "prompt_tokens_details", "cached_tokens", f,
             AIPROXY_F_PROMPT_CACHED);
    count_at(usage, "input_tokens_details", "cached_tokens", f,
             AIPROXY_F_INPUT_CACHED);
    count_at(usage, "cache_creation", "ephemeral_1h_input_tokens", f,
             AIPROXY_F_CACHE_1H);
    count_at(usage, "server_tool_use", "web_search_requests", f,
             AIPROXY_F_WEB_SEARCH);
}

/* Each API counts in its own way: its adapter adds the counts up. */
static int merge_fields(const aiproxy_usage_fields_t *f, aiproxy_api_t api,
                        aiproxy_usage_t *u)
{
    return aiproxy_api(api)->usage_merge(f, u);
}

int aiproxy_usage_merge(const aiproxy_json_t *usage, aiproxy_api_t api,
                        aiproxy_usage_t *u)
{
    aiproxy_usage_fields_t f;

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

    if (details == AIPROXY_F_CACHE_1H)
        return key_is(s, start, n, "ephemeral_1h_input_tokens") ? details : -1;
    if (details == AIPROXY_F_WEB_SEARCH)
        return key_is(s, start, n, "web_search_requests") ? details : -1;
    if (details >= 0)
        return key_is(s, start, n, "cached_tokens") ? details : -1;
    for (k = 0; k <= AIPROXY_F_CACHE_CREATION; k++)
        if (key_is(s, start, n, top_keys[k]))
            return k;
    return -1;
}

/* The object at s[*i] == '{'. details: -1 at the top; inside an object,
 * the field its cached_tokens fills, or -2 for one that fills nothing. */
static int scan_object(const char *s, apr_size_t len, apr_size_t *i,
                       int details, aiproxy_usage_fields_t *f)
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
                sub = AIPROXY_F_PROMPT_CACHED;
            else if (key_is(s, start, n, "input_tokens_details"))
                sub = AIPROXY_F_INPUT_CACHED;
            else if (key_is(s, start, n, "cache_creation"))
                sub = AIPROXY_F_CACHE_1H;
            else if (key_is(s, start, n, "server_tool_use"))
                sub = AIPROXY_F_WEB_SEARCH;
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
    aiproxy_usage_fields_t f;
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

int aiproxy_usage_from_value(apr_pool_t *p, const char *text, apr_size_t len,
                             aiproxy_api_t api, aiproxy_usage_t *u)
{
    aiproxy_usage_t scanned = *u;
    apr_size_t used;
    const char *err;
    int rc;

    if (!len || text[0] != '{')
        return 0;
    /* The value is the object and nothing else (blanks aside): text the
     * member finder kept from broken JSON is no usage. */
    if ((rc = aiproxy_usage_scan(text, len, &used, api, &scanned)) >= 0) {
        while (used < len && (text[used] == ' ' || text[used] == '\n' ||
                              text[used] == '\r' || text[used] == '\t'))
            used++;
        if (used != len)
            return 0;
        *u = scanned;
        return rc;
    }
    if (aiproxy_json_cost(text, len) > MAX_USAGE_PARSE)
        return 0;
    return aiproxy_usage_merge(aiproxy_json_parse(p, text, len, &err), api, u);
}

/* The top-level "usage" of one JSON object, found by the member finder
 * the meter feeds as an answer arrives. */
int aiproxy_usage_from_body(apr_pool_t *p, const char *body, apr_size_t len,
                            aiproxy_api_t api, aiproxy_usage_t *u)
{
    aiproxy_jscan_t *s = aiproxy_jscan_create(p, "usage", AIPROXY_USAGE_TEXT_MAX);
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

int aiproxy_usage_in_event(apr_pool_t *p, const char *data, apr_size_t len,
                           const char *outer, aiproxy_api_t api,
                           aiproxy_usage_t *u)
{
    apr_size_t s, e, vs, vlen;

    if (outer) {
        if (!aiproxy_json_member_span(data, len, outer, &s, &e, &vs, &vlen))
            return 0;
        data += vs;
        len = vlen;
    }
    if (!aiproxy_json_member_span(data, len, "usage", &s, &e, &vs, &vlen))
        return 0;
    return aiproxy_usage_from_value(p, data + vs, vlen, api, u);
}
