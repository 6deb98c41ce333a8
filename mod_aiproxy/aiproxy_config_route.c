/* Directives of a route (a <Location>): its provider or how it finds one,
 * its endpoints and models; the start-up checks of every route, and what
 * a route answers. */
#include <string.h>
#include <stdlib.h>
#include <apr_strings.h>
#include <apr_lib.h>

#include "httpd.h"
#include "http_log.h"

#include "aiproxy_config.h"
#include "aiproxy_config_int.h"
#include "aiproxy_oidc_signin.h"
#include "aiproxy_directives.h"
#include "aiproxy_secret.h"

/* Routes of every virtual host, kept on pconf for the start-up checks. */
apr_array_header_t *aiproxy_config_routes(apr_pool_t *pconf)
{
    void *v = NULL;

    apr_pool_userdata_get(&v, "aiproxy-routes", pconf);
    if (!v) {
        v = apr_array_make(pconf, 4, sizeof(aiproxy_dir_conf_t *));
        apr_pool_userdata_set(v, "aiproxy-routes", apr_pool_cleanup_null,
                              pconf);
    }
    return v;
}

/* AIProxyRoute PROVIDER | path PROVIDER... | model */
const char *aiproxy_config_set_route(cmd_parms *cmd, void *dcv,
                                     const char *args)
{
    aiproxy_dir_conf_t *d = dcv;
    const char *name = ap_getword_conf(cmd->pool, &args), *word;

    if (!cmd->path || cmd->info)
        return "AIProxyRoute: belongs in a <Location> section";
    if (!*name)
        return "AIProxyRoute: usage: AIProxyRoute PROVIDER | path PROVIDER "
               "... | model";
    d->provider_name = name;
    d->kind = !strcmp(name, "path") ? AIPROXY_ROUTE_PATH
              : !strcmp(name, "model") ? AIPROXY_ROUTE_MODEL
              : AIPROXY_ROUTE_FIXED;
    d->prefix = cmd->path;
    /* By path, a provider is reachable by its name only when listed: one
     * kept for failover is not a route of its own. */
    if (d->kind == AIPROXY_ROUTE_PATH) {
        d->path_providers = apr_hash_make(cmd->pool);
        while (*(word = ap_getword_conf(cmd->pool, &args)))
            apr_hash_set(d->path_providers, word, APR_HASH_KEY_STRING, word);
        if (!apr_hash_count(d->path_providers))
            return "AIProxyRoute path: name the providers reachable by path, "
                   "e.g. AIProxyRoute path openai anthropic";
    }
    else if (*args) {
        return apr_psprintf(cmd->pool, "AIProxyRoute %s: takes no further "
                            "arguments", name);
    }
    APR_ARRAY_PUSH(aiproxy_config_routes(cmd->pool), aiproxy_dir_conf_t *) = d;
    return NULL;
}

const char *aiproxy_config_add_endpoint(cmd_parms *cmd, void *dcv,
                                        const char *ep)
{
    aiproxy_dir_conf_t *d = dcv;

    while (*ep == '/')
        ep++;
    /* Only endpoints the gateway knows how to bound and meter. */
    if (strcmp(ep, "models") && aiproxy_endpoint_kind(ep) == AIPROXY_EP_OTHER)
        return apr_psprintf(cmd->pool, "AIProxyEndpoints: '%s' is not an "
                            "endpoint the gateway can meter (%s)", ep,
                            "chat/completions, embeddings, models, moderations, "
                            "responses, messages, messages/count_tokens, "
                            "images/generations, audio/transcriptions, "
                            "audio/speech");
    if (!d->endpoints)
        d->endpoints = apr_array_make(cmd->pool, 4, sizeof(const char *));
    APR_ARRAY_PUSH(d->endpoints, const char *) = ep;
    return NULL;
}

const char *aiproxy_config_set_server_context(cmd_parms *cmd, void *dcv,
                                              const char *arg)
{
    aiproxy_dir_conf_t *d = dcv;

    (void)cmd;
    if (!strcasecmp(arg, "refuse"))
        d->server_context = 0;
    else if (!strcasecmp(arg, "reserve"))
        d->server_context = 1;
    else
        return "AIProxyServerContext: refuse or reserve";
    return NULL;
}

const char *aiproxy_config_add_model(cmd_parms *cmd, void *dcv,
                                     const char *model)
{
    aiproxy_dir_conf_t *d = dcv;

    if (!strcmp(model, "*")) {
        d->any_model = 1;
        return NULL;
    }
    if (!d->models) {
        d->models = apr_hash_make(cmd->pool);
        d->model_list = apr_array_make(cmd->pool, 4, sizeof(const char *));
    }
    if (!apr_hash_get(d->models, model, APR_HASH_KEY_STRING))
        APR_ARRAY_PUSH(d->model_list, const char *) = model;
    apr_hash_set(d->models, model, APR_HASH_KEY_STRING, model);
    return NULL;
}

const char *aiproxy_config_set_cache_embeddings(cmd_parms *cmd, void *dcv,
                                                int on)
{
    (void)cmd;
    ((aiproxy_dir_conf_t *)dcv)->cache_embeddings = on;
    return NULL;
}

/* A route's endpoints: its provider's API's, or with a route by model
 * every API's (the model picks the provider). */
static int route_has(const aiproxy_dir_conf_t *d, const aiproxy_provider_t *pv,
                     const char *ep)
{
    if (d->kind == AIPROXY_ROUTE_MODEL)
        return aiproxy_any_endpoint(ep) != NULL;
    return aiproxy_api_endpoint(aiproxy_api(pv ? pv->api : AIPROXY_API_OPENAI),
                                ep) != NULL;
}

static const char *finish_route(apr_pool_t *p, aiproxy_global_t *g,
                                aiproxy_dir_conf_t *d)
{
    apr_hash_index_t *hi;
    int i;

    if (d->kind == AIPROXY_ROUTE_FIXED) {
        d->provider = apr_hash_get(g->providers, d->provider_name,
                                   APR_HASH_KEY_STRING);
        if (!d->provider)
            return apr_psprintf(p, "AIProxyRoute %s (in <Location %s>): no "
                                "AIProxyProvider of that name",
                                d->provider_name, d->prefix);
        for (i = 0; d->endpoints && i < d->endpoints->nelts; i++) {
            const char *ep = APR_ARRAY_IDX(d->endpoints, i, const char *);

            if (!route_has(d, d->provider, ep))
                return apr_psprintf(p, "AIProxyEndpoints %s (in <Location "
                                    "%s>): not an endpoint of provider %s's "
                                    "API (%s)", ep, d->prefix, d->provider_name,
                                    aiproxy_api(d->provider->api)->name);
        }
    }
    if (d->kind == AIPROXY_ROUTE_PATH)
        for (hi = apr_hash_first(p, d->path_providers); hi;
             hi = apr_hash_next(hi))
            if (!apr_hash_get(g->providers, apr_hash_this_key(hi),
                              APR_HASH_KEY_STRING))
                return apr_psprintf(p, "AIProxyRoute path (in <Location %s>): "
                                    "no AIProxyProvider named '%s'", d->prefix,
                                    (const char *)apr_hash_this_key(hi));
    /* A route serves the models it names, never every priced one by
     * default: a price added for failover must not open a route. */
    if (!d->models && !d->any_model)
        return apr_psprintf(p, "AIProxyRoute %s (in <Location %s>): needs "
                            "AIProxyModels in the same section: the models "
                            "it serves, or * for every priced one",
                            d->provider_name, d->prefix);
    if (!d->models)
        return NULL;
    for (hi = apr_hash_first(p, d->models); hi; hi = apr_hash_next(hi)) {
        const char *model = apr_hash_this_key(hi);

        if (!apr_hash_get(g->prices, model, APR_HASH_KEY_STRING))
            return apr_psprintf(p, "AIProxyModels: model '%s' (in <Location "
                                "%s>) has no AIProxyPrice; it would be billed "
                                "at $0", model, d->prefix);
        if (d->kind == AIPROXY_ROUTE_MODEL &&
            !apr_hash_get(g->model_map, model, APR_HASH_KEY_STRING))
            return apr_psprintf(p, "AIProxyModels: model '%s' (in <Location "
                                "%s>, routed by model) has no AIProxyModel",
                                model, d->prefix);
    }
    return NULL;
}

const char *aiproxy_config_finish(apr_pool_t *p, server_rec *s)
{
    aiproxy_global_t *g = aiproxy_global(s);
    apr_array_header_t *routes = aiproxy_config_routes(p);
    const char *err;
    int i;

    if ((err = aiproxy_oidc_signin_finish(g)))
        return err;
    if (routes->nelts == 0)
        return NULL;
    if (g->secret_specs->nelts == 0)
        return "AIProxyTokenSecret: required when any AIProxyRoute is "
               "configured";
    if ((err = aiproxy_secret_load_all(p, g->secret_specs, &g->token_keys)))
        return err;
    if ((err = aiproxy_config_finish_providers(p, g)) || (err = aiproxy_config_finish_model_map(p, g)))
        return err;
    for (i = 0; i < routes->nelts; i++)
        if ((err = finish_route(p, g, APR_ARRAY_IDX(routes, i,
                                                    aiproxy_dir_conf_t *))))
            return err;
    return NULL;
}

int aiproxy_endpoint_allowed(const aiproxy_dir_conf_t *d,
                             const aiproxy_provider_t *pv, const char *ep)
{
    int i;

    /* Listed or not, an endpoint is its provider's API's: another API's
     * path at this provider would be read (and metered) as this API's. */
    if (!route_has(d, pv, ep))
        return 0;
    if (d->endpoints) {
        for (i = 0; i < d->endpoints->nelts; i++)
            if (!strcmp(APR_ARRAY_IDX(d->endpoints, i, const char *), ep))
                return 1;
        return 0;
    }
    /* Images and audio cost far more than a request of tokens: open only
     * where listed, never by a route's default. */
    return !aiproxy_endpoint_media(aiproxy_endpoint_kind(ep));
}

const char *aiproxy_endpoint_list(apr_pool_t *p, const aiproxy_dir_conf_t *d,
                                  const aiproxy_provider_t *pv)
{
    const aiproxy_api_def_t *api;
    const aiproxy_endpoint_def_t *e;
    const char *out = NULL;
    int i;

    if (d->endpoints)
        return apr_array_pstrcat(p, d->endpoints, ',');
    for (i = 0; (api = aiproxy_api_at(i)); i++) {
        if (d->kind != AIPROXY_ROUTE_MODEL &&
            api->id != (pv ? pv->api : AIPROXY_API_OPENAI))
            continue;
        for (e = api->endpoints; e->path; e++)
            if (!aiproxy_endpoint_media(e->kind))
                out = out ? apr_pstrcat(p, out, ",", e->path, NULL) : e->path;
    }
    return out;
}
