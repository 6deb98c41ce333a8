/* Fuzz target: translation (aiproxy_xlate.h). The first byte picks the
 * client's API; the rest goes through the request translator (as a body),
 * the answer translator (as a 200 answer and as an error), and the stream
 * translator (split into events at newlines). Nothing may crash, and what
 * comes out must be JSON (the SSE events' data too). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <apr_general.h>
#include <apr_strings.h>

#include "aiproxy_xlate.h"

static void must_parse(apr_pool_t *p, const char *s, apr_size_t n)
{
    const char *err;

    if (!aiproxy_json_parse(p, s, n, &err))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialized;
    apr_pool_t *p;
    aiproxy_api_t api;
    aiproxy_json_t *body, *out = NULL;
    aiproxy_xlate_stream_t *xs;
    const char *in, *err, *line, *end;
    char *ans;
    apr_size_t len, n;
    int i;

    if (!initialized) {
        apr_initialize();
        initialized = 1;
    }
    if (size < 1)
        return 0;
    if (apr_pool_create(&p, NULL) != APR_SUCCESS)
        abort();
    api = data[0] & 1 ? AIPROXY_API_ANTHROPIC : AIPROXY_API_OPENAI;
    in = apr_pstrmemdup(p, (const char *)data + 1, size - 1);
    len = size - 1;

    if ((body = aiproxy_json_parse(p, in, len, &err)) &&
        !aiproxy_xlate_request(p, api, body, 100,
                               aiproxy_json_cost(in, len), &out)) {
        if (!(ans = aiproxy_json_dump(p, out, &n)))
            abort();
        must_parse(p, ans, n);
    }
    if ((ans = aiproxy_xlate_answer(p, api, 200, in, len, 1, &n)))
        must_parse(p, ans, n);
    if (!(ans = aiproxy_xlate_answer(p, api, 500, in, len, 1, &n)))
        abort();
    must_parse(p, ans, n);

    xs = aiproxy_xlate_stream_create(p, api, data[0] & 2, 1);
    for (line = in; line < in + len; line = end + 1) {
        apr_array_header_t *evs;

        if (!(end = memchr(line, '\n', in + len - line)))
            end = in + len;
        evs = aiproxy_xlate_stream_event(xs, p, "", apr_pstrmemdup(
                                             p, line, end - line),
                                         end - line);
        for (i = 0; i < evs->nelts; i++) {
            const char *e = APR_ARRAY_IDX(evs, i, const char *);
            const char *d = strstr(e, "data: ");

            if (!d)
                abort();
            d += 6;
            if (strcmp(d, "[DONE]\n\n"))
                must_parse(p, d, strlen(d) - 2);
        }
    }
    apr_pool_destroy(p);
    return 0;
}
