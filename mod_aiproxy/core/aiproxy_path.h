/* Request paths below a route: which endpoint, and for a by-path route
 * which provider. Pure: unit-tested and fuzzed without a server. */
#ifndef AIPROXY_PATH_H
#define AIPROXY_PATH_H

#include "aiproxy.h"

/* The endpoint below prefix in uri ("chat/completions"), without slashes at
 * either end; "" when there is none. With by_path, the first segment names
 * the provider (*provider, else NULL) and "v1" must follow it. */
const char *aiproxy_path_endpoint(apr_pool_t *p, const char *prefix,
                                  const char *uri, int by_path,
                                  const char **provider);

#endif
