/* Values of the directives that define providers, checked without httpd:
 * unit-tested and fuzzed. */
#ifndef AIPROXY_DIRECTIVES_H
#define AIPROXY_DIRECTIVES_H

#include "aiproxy.h"

/* A provider's name: a-z, 0-9, '-' and '_'; 1 when it is one. */
int aiproxy_provider_name_ok(const char *name);

/* A base URL: http(s)://host[:port][/path], no credentials, query or
 * fragment. NULL and *out without trailing slashes, or why not. */
const char *aiproxy_provider_url(apr_pool_t *p, const char *url,
                                 const char **out);

/* One option word: api=openai|anthropic (*api 0 or 1) or
 * key=env:VAR|file:PATH (*key the spec). NULL, or why not. */
const char *aiproxy_provider_option(apr_pool_t *p, const char *word,
                                    int *api, const char **key);

#endif
