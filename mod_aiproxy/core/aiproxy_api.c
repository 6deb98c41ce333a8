/* The registry of API adapters, and what is read from their tables. */
#include <string.h>
#include <apr_strings.h>
#include <strings.h>

#include "aiproxy_api.h"

/* One line per API, in the order a path is looked up. */
static const aiproxy_api_def_t *const apis[] = {
    &aiproxy_api_openai, &aiproxy_api_anthropic, NULL
};

const char *const aiproxy_output_limits[] = {
    "max_tokens", "max_completion_tokens", "max_output_tokens", NULL
};

const aiproxy_api_def_t *aiproxy_api(aiproxy_api_t id)
{
    int i;

    for (i = 0; apis[i]; i++)
        if (apis[i]->id == id)
            return apis[i];
    return apis[0];
}

const aiproxy_api_def_t *aiproxy_api_at(int i)
{
    return i >= 0 && i < (int)(sizeof(apis) / sizeof(apis[0])) ? apis[i]
                                                                : NULL;
}

const aiproxy_api_def_t *aiproxy_api_named(const char *name)
{
    int i;

    for (i = 0; apis[i]; i++)
        if (!strcmp(apis[i]->name, name))
            return apis[i];
    return NULL;
}

const char *aiproxy_api_names(apr_pool_t *p, const char *sep)
{
    const char *out = apis[0]->name;
    int i;

    for (i = 1; apis[i]; i++)
        out = apr_pstrcat(p, out, sep, apis[i]->name, NULL);
    return out;
}

int aiproxy_api_passes_header(const char *name)
{
    const char *const *h;
    int i;

    for (i = 0; apis[i]; i++) {
        if (!strcasecmp(name, apis[i]->key_header))
            return 1;
        for (h = apis[i]->pass_headers; h && *h; h++)
            if (!strcasecmp(name, *h))
                return 1;
    }
    return 0;
}

const aiproxy_endpoint_def_t *aiproxy_api_endpoint(const aiproxy_api_def_t *api,
                                                   const char *path)
{
    const aiproxy_endpoint_def_t *e;

    for (e = api->endpoints; e->path; e++)
        if (!strcmp(e->path, path))
            return e;
    return NULL;
}

const aiproxy_endpoint_def_t *aiproxy_any_endpoint(const char *path)
{
    const aiproxy_endpoint_def_t *e;
    int i;

    for (i = 0; apis[i]; i++)
        if ((e = aiproxy_api_endpoint(apis[i], path)))
            return e;
    return NULL;
}

aiproxy_api_t aiproxy_endpoint_api(const char *path)
{
    int i;

    for (i = 0; apis[i]; i++)
        if (aiproxy_api_endpoint(apis[i], path))
            return apis[i]->id;
    return apis[0]->id;
}

aiproxy_endpoint_t aiproxy_endpoint_kind(const char *path)
{
    const aiproxy_endpoint_def_t *e = aiproxy_any_endpoint(path);

    return e ? e->kind : AIPROXY_EP_OTHER;
}

int aiproxy_endpoint_free(aiproxy_endpoint_t ep)
{
    return ep == AIPROXY_EP_COUNT_TOKENS || ep == AIPROXY_EP_MODERATIONS;
}

int aiproxy_endpoint_media(aiproxy_endpoint_t ep)
{
    return ep == AIPROXY_EP_IMAGES || ep == AIPROXY_EP_TRANSCRIPTIONS ||
           ep == AIPROXY_EP_SPEECH;
}

static const aiproxy_endpoint_def_t *of_kind(aiproxy_endpoint_t ep)
{
    const aiproxy_endpoint_def_t *e;
    int i;

    for (i = 0; apis[i]; i++)
        for (e = apis[i]->endpoints; e->path; e++)
            if (e->kind == ep)
                return e;
    return NULL;
}

const char *aiproxy_output_limit_field(aiproxy_endpoint_t ep)
{
    const aiproxy_endpoint_def_t *e = ep == AIPROXY_EP_OTHER ? NULL
                                      : of_kind(ep);

    return e ? e->limit_field : NULL;
}

int aiproxy_limit_belongs(aiproxy_endpoint_t ep, const char *field)
{
    const aiproxy_endpoint_def_t *e = ep == AIPROXY_EP_OTHER ? NULL
                                      : of_kind(ep);
    const char *const *l;

    if (!e || !e->limits)
        return 0;
    for (l = e->limits; *l; l++)
        if (!strcmp(*l, field))
            return 1;
    return 0;
}

apr_int64_t aiproxy_delta_tokens(apr_size_t n)
{
    return n > 3 ? (apr_int64_t)((n + 2) / 3) : 1;
}

void aiproxy_keep_max(apr_int64_t *field, apr_int64_t v)
{
    if (v > *field)
        *field = v;
}

apr_int64_t aiproxy_field_or_0(const aiproxy_usage_fields_t *f, int which)
{
    return f->has[which] ? f->v[which] : 0;
}
