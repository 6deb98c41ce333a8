/* Fuzz target: audio/transcriptions' form parser and counting an answer's
 * images. The first byte picks the Content-Type; the rest is the body.
 * Every part found must lie inside the body, named, at most
 * AIPROXY_FORM_MAX_PARTS of them; the image count must not depend on where
 * the input is cut; the duration an audio header declares, read from the
 * body as an upload, must be positive when given. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <apr_general.h>
#include <apr_strings.h>

#include "aiproxy_jscan.h"
#include "aiproxy_media.h"
#include "aiproxy_multipart.h"

static const char *const ctypes[] = {
    "multipart/form-data; boundary=XyZ",
    "multipart/form-data; boundary=\"a b\"",
    "multipart/form-data; boundary=-",
    "multipart/form-data",
    "multipart/form-data; boundary=XyZ; boundary=Q",
    "text/plain",
};

static apr_int64_t items(apr_pool_t *p, const char *d, size_t n, size_t cut)
{
    aiproxy_jscan_t *s = aiproxy_jscan_create(p, "data", 0);
    apr_int64_t k = -1;

    aiproxy_jscan_feed(s, d, cut);
    aiproxy_jscan_feed(s, d + cut, n - cut);
    return aiproxy_jscan_items(s, &k) ? k : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialized;
    apr_pool_t *p;
    apr_array_header_t *parts;
    const char *body, *err;
    size_t n, cut;
    int i;

    if (!initialized) {
        apr_initialize();
        initialized = 1;
    }
    if (!size || apr_pool_create(&p, NULL) != APR_SUCCESS)
        return 0;
    n = size - 1;
    /* A copy of its own size, so reading past it is caught. */
    body = n ? apr_pmemdup(p, data + 1, n) : "";
    err = aiproxy_multipart_parse(p, ctypes[data[0] % 6], body, n, &parts);
    if (!err) {
        if (parts->nelts < 1 || parts->nelts > AIPROXY_FORM_MAX_PARTS)
            abort();
        for (i = 0; i < parts->nelts; i++) {
            const aiproxy_form_part_t *f =
                &APR_ARRAY_IDX(parts, i, aiproxy_form_part_t);

            if (!f->name || !*f->name || f->value < body ||
                f->value + f->len > body + n)
                abort();
        }
    }
    {
        apr_int64_t ms = 0;

        if (aiproxy_audio_declared_ms((const unsigned char *)body, n, &ms) &&
            ms <= 0)
            abort();
    }
    cut = n ? data[0] % (n + 1) : 0;
    if (items(p, body, n, cut) != items(p, body, n, n))
        abort();
    apr_pool_destroy(p);
    return 0;
}
