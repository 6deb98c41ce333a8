#include <string.h>
#include <apr_strings.h>
#include <apr_uri.h>

#include "aiproxy_api.h"
#include "aiproxy_directives.h"

int aiproxy_provider_name_ok(const char *name)
{
    return *name && strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-_") ==
                    strlen(name);
}

const char *aiproxy_provider_url(apr_pool_t *p, const char *url,
                                 const char **out)
{
    apr_uri_t uri;
    char *u;
    apr_size_t n;

    if (apr_uri_parse(p, url, &uri) != APR_SUCCESS || !uri.scheme ||
        !uri.hostname || !*uri.hostname || (strcmp(uri.scheme, "http") &&
                                            strcmp(uri.scheme, "https")) ||
        uri.query || uri.fragment || uri.user || uri.password ||
        strpbrk(url, " \t\r\n"))
        return "base URL must be http(s)://host[:port][/path] without "
               "credentials, query or fragment";
    u = apr_pstrdup(p, url);
    for (n = strlen(u); n && u[n - 1] == '/'; n--)
        u[n - 1] = '\0';
    *out = u;
    return NULL;
}

static int secret_spec_ok(const char *spec)
{
    return (!strncmp(spec, "env:", 4) && spec[4]) ||
           (!strncmp(spec, "file:", 5) && spec[5]);
}

const char *aiproxy_provider_option(apr_pool_t *p, const char *word,
                                    int *api, const char **key)
{
    const aiproxy_api_def_t *def;

    *key = NULL;
    if (!strncmp(word, "api=", 4) && (def = aiproxy_api_named(word + 4)))
        *api = def->id;
    else if (!strncmp(word, "key=", 4) && secret_spec_ok(word + 4))
        *key = word + 4;
    else
        return apr_psprintf(p, "unknown option '%.*s' (api=%s, "
                            "key=env:VAR|file:PATH)", (int)strcspn(word, "="),
                            word, aiproxy_api_names(p, "|"));
    return NULL;
}
