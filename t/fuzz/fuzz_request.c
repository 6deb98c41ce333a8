/* Fuzz target: a request body through aiproxy_inspect_request, and the same
 * bytes as a response body through usage extraction for both APIs. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <apr_general.h>
#include <apr_strings.h>

#include "aiproxy_inspect.h"
#include "aiproxy_usage_read.h"
#include "aiproxy_json.h"

static void check_usage(const aiproxy_usage_t *u)
{
    if (u->input < 0 || u->cached_input < 0 || u->cache_write < 0 ||
        u->output < 0 || u->web_search < 0)
        abort();
}

/* The usage scanner against jansson: whatever the scanner accepts,
 * jansson parses to the same counts and the same length. */
static void differential(apr_pool_t *p, const char *body, size_t size,
                         aiproxy_api_t api)
{
    aiproxy_usage_t a, b;
    apr_size_t used_a = 0, used_b = 0;
    aiproxy_json_t *v;
    int ra, rb;

    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    ra = aiproxy_usage_scan(body, size, &used_a, api, &a);
    if (ra < 0)
        return;
    v = aiproxy_json_parse_prefix(p, body, size, &used_b);
    if (!v)
        abort();
    rb = aiproxy_usage_merge(v, api, &b);
    if (ra != rb || used_a != used_b || memcmp(&a, &b, sizeof(a)))
        abort();
}

/* The member finder against jansson: a top-level "usage" jansson sees is
 * found with the same value, and taking its span out leaves valid JSON
 * without it. The delta scanner stays within the text. */
static void member_span(apr_pool_t *p, const char *body, size_t size)
{
    apr_size_t s, e, vs, vl, used;
    const char *err;
    aiproxy_json_t *root = aiproxy_json_parse(p, body, size, &err), *v, *w;
    int found = aiproxy_json_member_span(body, size, "usage", &s, &e, &vs, &vl);
    char *cut;

    if (aiproxy_delta_text_len(body, size) > size)
        abort();
    /* jansson reads a NUL as the end of its input; the finder reads on. */
    if (memchr(body, '\0', size))
        return;
    if (!found) {
        /* Only text jansson refuses, or an object without it, or one whose
         * value the finder cannot delimit alone (never a plain object). */
        if (root && aiproxy_json_is_object(root) &&
            aiproxy_json_get(root, "usage") && body[0] == '{')
            abort();
        return;
    }
    if (s > e || e > size || vs + vl > size || vs < s || vs + vl > e + 1)
        abort();
    if (!root || !aiproxy_json_is_object(root))
        return;
    v = aiproxy_json_get(root, "usage");
    w = aiproxy_json_parse_prefix(p, body + vs, vl, &used);
    if (!v || !w || used != vl)
        abort();
    cut = apr_palloc(p, size - (e - s) + 1);
    memcpy(cut, body, s);
    memcpy(cut + s, body + e, size - e);
    root = aiproxy_json_parse(p, cut, size - (e - s), &err);
    if (!root || aiproxy_json_get(root, "usage"))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialized;
    apr_pool_t *p;
    aiproxy_request_info_t info;
    aiproxy_usage_t u;
    const char *why;
    char *body;

    if (!initialized) {
        apr_initialize();
        initialized = 1;
    }
    if (apr_pool_create(&p, NULL) != APR_SUCCESS)
        abort();
    /* An exact copy with no NUL after it, as a request body is held. */
    body = apr_palloc(p, size ? size : 1);
    memcpy(body, data, size);

    why = aiproxy_inspect_request(p, body, size,
                                  (aiproxy_endpoint_t)(size % 4), &info);
    if (!why) {
        if (!info.root || !info.model || !*info.model ||
            info.max_output < -1 || (info.stream != 0 && info.stream != 1))
            abort();
    }
    else if (!*why) {
        abort();
    }

    memset(&u, 0, sizeof(u));
    aiproxy_usage_from_body(p, body, size, AIPROXY_API_OPENAI, &u);
    check_usage(&u);
    memset(&u, 0, sizeof(u));
    aiproxy_usage_from_body(p, body, size, AIPROXY_API_ANTHROPIC, &u);
    check_usage(&u);
    differential(p, body, size, AIPROXY_API_OPENAI);
    differential(p, body, size, AIPROXY_API_ANTHROPIC);
    member_span(p, body, size);
    apr_pool_destroy(p);
    return 0;
}
