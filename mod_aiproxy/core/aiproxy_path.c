#include <string.h>
#include <apr_strings.h>

#include "aiproxy_path.h"

const char *aiproxy_path_endpoint(apr_pool_t *p, const char *prefix,
                                  const char *uri, int by_path,
                                  const char **provider)
{
    apr_size_t n = strlen(prefix), len;
    const char *rel = uri;
    char *ep;

    *provider = NULL;
    if (!strncmp(rel, prefix, n))
        rel += n;
    while (*rel == '/')
        rel++;
    if (by_path) {
        const char *slash = strchr(rel, '/');

        if (!slash)
            return "";
        *provider = apr_pstrmemdup(p, rel, slash - rel);
        rel = slash + 1;
        if (strncmp(rel, "v1", 2) || (rel[2] && rel[2] != '/'))
            return "";
        for (rel += 2; *rel == '/'; rel++)
            ;
    }
    ep = apr_pstrdup(p, rel);
    len = strlen(ep);
    while (len && ep[len - 1] == '/')
        ep[--len] = '\0';
    return ep;
}
