/* Fuzz target: the top-level member finder and the parse cost bound. The
 * first byte picks where the rest is cut in two. The finder must give the
 * same answer however the input is cut; when jansson parses the input as an
 * object holding "usage", the finder must find that very value; and what
 * jansson allocates to parse any input must stay within
 * aiproxy_json_cost's bound. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <apr_general.h>
#include <apr_strings.h>

#include "aiproxy_json.h"
#include "aiproxy_jscan.h"

#define MAX_VALUE 64

/* jansson's allocations, counted: each block carries its size in front. */
static size_t live, peak;

static void *counted_malloc(size_t n)
{
    size_t *b = malloc(n + 16);

    if (!b)
        return NULL;
    *b = n;
    live += n;
    if (live > peak)
        peak = live;
    return (char *)b + 16;
}

static void counted_free(void *v)
{
    size_t *b;

    if (!v)
        return;
    b = (size_t *)((char *)v - 16);
    live -= *b;
    free(b);
}

static const char *scan(apr_pool_t *p, const char *in, apr_size_t len,
                        apr_size_t cut, apr_size_t max, apr_size_t *vlen)
{
    aiproxy_jscan_t *s = aiproxy_jscan_create(p, "usage", max);

    aiproxy_jscan_feed(s, in, cut);
    aiproxy_jscan_feed(s, in + cut, len - cut);
    return aiproxy_jscan_value(s, vlen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialized;
    apr_pool_t *p;
    const char *in, *a, *b;
    apr_size_t len, cut, alen = 0, blen = 0, bound;
    json_t *root, *want;
    json_error_t err;

    if (!initialized) {
        apr_initialize();
        json_set_alloc_funcs(counted_malloc, counted_free);
        initialized = 1;
    }
    if (size < 1)
        return 0;
    if (apr_pool_create(&p, NULL) != APR_SUCCESS)
        abort();
    in = (const char *)data + 1;
    len = size - 1;
    cut = (apr_size_t)data[0] * len / 255;

    a = scan(p, in, len, cut, MAX_VALUE, &alen);
    b = scan(p, in, len, len, MAX_VALUE, &blen);
    if ((!a) != (!b) || (a && (alen != blen || memcmp(a, b, alen))))
        abort();
    if (a && (alen > MAX_VALUE || a[alen] != '\0'))
        abort();

    bound = aiproxy_json_cost(in, len);
    live = peak = 0;
    root = json_loadb(in, len, JSON_REJECT_DUPLICATES, &err);
    if (peak > bound)
        abort();
    want = json_object_get(root, "usage");
    if (json_is_object(root) && want) {
        json_t *got;

        /* Found, when all of it is kept; a key written with escapes is
         * not looked into (the request is then charged its reservation). */
        if (!a && !memchr(in, '\\', len))
            a = scan(p, in, len, cut, len, &alen);
        if (!a && !memchr(in, '\\', len))
            abort();
        if (a) {
            got = json_loadb(a, alen, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
                             &err);
            if (!got || !json_equal(got, want))
                abort();
            json_decref(got);
        }
    }
    json_decref(root);
    apr_pool_destroy(p);
    return 0;
}
