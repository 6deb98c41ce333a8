/* Fuzz target: request paths below a route. The first byte says whether
 * the route is by path; the rest, split at the first NUL-free newline, is
 * the route's prefix and the request's path. The endpoint never starts or
 * ends with a slash and is part of the path; a provider never holds one. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <apr_general.h>
#include <apr_strings.h>

#include "aiproxy_path.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialized;
    apr_pool_t *p;
    const char *in, *nl, *prefix, *uri, *ep, *provider;
    int by_path;
    apr_size_t n;

    if (!initialized) {
        apr_initialize();
        initialized = 1;
    }
    if (!size)
        return 0;
    if (apr_pool_create(&p, NULL) != APR_SUCCESS)
        abort();
    by_path = data[0] & 1;
    in = apr_pstrmemdup(p, (const char *)data + 1, size - 1);
    nl = strchr(in, '\n');
    prefix = nl ? apr_pstrmemdup(p, in, nl - in) : "/v1";
    uri = nl ? nl + 1 : in;

    ep = aiproxy_path_endpoint(p, prefix, uri, by_path, &provider);
    n = strlen(ep);
    if (n && (ep[0] == '/' || ep[n - 1] == '/' || !strstr(uri, ep)))
        abort();
    if (provider && (strchr(provider, '/') || !by_path))
        abort();
    if (!by_path && provider)
        abort();
    apr_pool_destroy(p);
    return 0;
}
