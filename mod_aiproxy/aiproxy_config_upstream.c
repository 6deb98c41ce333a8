/* Directives about providers: who they are and what they speak, what
 * models cost, who serves a model under which name, what headers go
 * upstream; and their checks at start-up. */
#include <string.h>
#include <stdlib.h>
#include <apr_strings.h>
#include <apr_lib.h>

#include "httpd.h"
#include "http_log.h"

#include "aiproxy_config.h"
#include "aiproxy_config_int.h"
#include "aiproxy_directives.h"
#include "aiproxy_secret.h"

const char *aiproxy_config_set_provider(cmd_parms *cmd, void *dc,
                                        const char *args)
{
    aiproxy_global_t *g = aiproxy_cfg_global(cmd);
    const char *err = aiproxy_cfg_global_only(cmd);
    aiproxy_provider_t *pv;
    const char *word, *key;
    int api = AIPROXY_API_OPENAI;

    (void)dc;
    if (err)
        return err;
    pv = apr_pcalloc(cmd->pool, sizeof(*pv));
    pv->key_specs = apr_array_make(cmd->pool, 2, sizeof(const char *));
    pv->defined_in = apr_psprintf(cmd->pool, "%s:%d",
                                  cmd->directive->filename,
                                  cmd->directive->line_num);
    pv->name = ap_getword_conf(cmd->pool, &args);
    word = ap_getword_conf(cmd->pool, &args);
    if (!*pv->name || !*word)
        return "AIProxyProvider: usage: AIProxyProvider NAME BASE-URL "
               "[api=openai|anthropic] key=env:VAR|file:PATH ...";
    if (!aiproxy_provider_name_ok(pv->name))
        return apr_psprintf(cmd->pool, "AIProxyProvider: name '%s' may use "
                            "only a-z, 0-9, '-' and '_'", pv->name);
    if ((err = aiproxy_provider_url(cmd->pool, word, &pv->base_url)))
        return apr_psprintf(cmd->pool, "AIProxyProvider %s: %s", pv->name,
                            err);
    while (*(word = ap_getword_conf(cmd->pool, &args))) {
        if ((err = aiproxy_provider_option(cmd->pool, word, &api, &key)))
            return apr_psprintf(cmd->pool, "AIProxyProvider %s: %s",
                                pv->name, err);
        if (key)
            APR_ARRAY_PUSH(pv->key_specs, const char *) = key;
    }
    pv->api = (aiproxy_api_t)api;
    if (pv->key_specs->nelts == 0)
        return apr_psprintf(cmd->pool, "AIProxyProvider %s: needs at least "
                            "one key=env:VAR or key=file:PATH", pv->name);
    if (apr_hash_get(g->providers, pv->name, APR_HASH_KEY_STRING))
        return apr_psprintf(cmd->pool, "AIProxyProvider %s: defined twice",
                            pv->name);
    apr_hash_set(g->providers, pv->name, APR_HASH_KEY_STRING, pv);
    return NULL;
}

const char *aiproxy_config_set_price(cmd_parms *cmd, void *dc,
                                     const char *args)
{
    aiproxy_global_t *g = aiproxy_cfg_global(cmd);
    const char *err = aiproxy_cfg_global_only(cmd);
    const char *model, *word;
    aiproxy_price_t *price;
    int seen = 0;

    (void)dc;
    if (err)
        return err;
    model = ap_getword_conf(cmd->pool, &args);
    if (!*model)
        return "AIProxyPrice: usage: AIProxyPrice MODEL input=USD "
               "[cached=USD] [cache_write=USD] [cache_write_1h=USD] "
               "[output=USD max_output=TOKENS] "
               "[context=TOKENS] [image=TOKENS] [reasoning=yes|no] "
               "[long_context=TOKENS long_input=USD long_output=USD "
               "[long_cached=USD] [long_cache_write=USD] "
               "[long_cache_write_1h=USD]] [web_search=USD per call] (USD "
               "per 1M tokens); media: [per_million_chars=USD] "
               "[per_minute=USD] [image_SIZE_QUALITY=USD ... max_images=N]";
    price = apr_pcalloc(cmd->pool, sizeof(*price));
    while (*(word = ap_getword_conf(cmd->pool, &args)))
        if ((err = aiproxy_price_field(cmd->pool, price, word, &seen)))
            return apr_psprintf(cmd->pool, "AIProxyPrice %s: %s", model, err);
    if ((err = aiproxy_price_finish(price, seen)))
        return apr_psprintf(cmd->pool, "AIProxyPrice %s: %s", model, err);
    /* A forgotten output price would bill every answer's output at $0.
     * Embeddings produce none: a model named *embed* may leave it out;
     * any other says output=0 if it truly costs nothing. */
    if (!(seen & AIPROXY_PRICE_HAS_OUTPUT) && !ap_strcasestr(model, "embed") &&
        !(seen & AIPROXY_PRICE_HAS_MEDIA))
        return apr_psprintf(cmd->pool, "AIProxyPrice %s: output= is required "
                            "(USD per 1M output tokens, with max_output=); "
                            "only embedding models (named *embed*) may leave "
                            "it out", model);
    apr_hash_set(g->prices, model, APR_HASH_KEY_STRING, price);
    return NULL;
}

const char *aiproxy_config_add_anthropic_beta(cmd_parms *cmd, void *dc,
                                              const char *beta)
{
    const char *err = aiproxy_cfg_global_only(cmd);

    (void)dc;
    if (err)
        return err;
    if (!*beta || strpbrk(beta, ", \t"))
        return apr_psprintf(cmd->pool, "AIProxyAnthropicBeta: '%s' is not "
                            "one beta name", beta);
    apr_hash_set(aiproxy_cfg_global(cmd)->anthropic_betas, beta, APR_HASH_KEY_STRING,
                 beta);
    return NULL;
}

/* A client request header to pass upstream; NAME* passes a prefix. */
const char *aiproxy_config_add_upstream_header(cmd_parms *cmd, void *dc,
                                               const char *name)
{
    const char *err = aiproxy_cfg_global_only(cmd);
    const char *c;

    (void)dc;
    if (err)
        return err;
    for (c = name; *c && (apr_isalnum(*c) || *c == '-' || *c == '_'); c++)
        ;
    if (c == name || (*c && (*c != '*' || c[1])))
        return apr_psprintf(cmd->pool, "AIProxyUpstreamHeaders: '%s' is not "
                            "a header name (or NAME* for a prefix)", name);
    APR_ARRAY_PUSH(aiproxy_cfg_global(cmd)->upstream_headers, const char *) = name;
    return NULL;
}

/* AIProxyModel PUBLIC TARGET...: TARGET is a provider, or provider=name
 * when the provider knows the model by another name. Resolved at start-up,
 * so providers may be defined later in the file. */
const char *aiproxy_config_add_model_map(cmd_parms *cmd, void *dc,
                                         const char *args)
{
    aiproxy_global_t *g = aiproxy_cfg_global(cmd);
    const char *err = aiproxy_cfg_global_only(cmd);
    const char *model, *word;
    apr_array_header_t *targets;

    (void)dc;
    if (err)
        return err;
    model = ap_getword_conf(cmd->pool, &args);
    if (!*model || !*args)
        return "AIProxyModel: usage: AIProxyModel MODEL PROVIDER[=NAME] ...";
    if (apr_hash_get(g->model_map, model, APR_HASH_KEY_STRING))
        return apr_psprintf(cmd->pool, "AIProxyModel %s: defined twice", model);
    targets = apr_array_make(cmd->pool, 2, sizeof(aiproxy_target_t));
    while (*(word = ap_getword_conf(cmd->pool, &args))) {
        aiproxy_target_t *t = apr_array_push(targets);
        const char *eq = strchr(word, '=');

        t->provider_name = eq ? apr_pstrmemdup(cmd->pool, word, eq - word) : word;
        t->upstream_model = eq ? eq + 1 : model;
        if (!*t->provider_name || !*t->upstream_model)
            return apr_psprintf(cmd->pool, "AIProxyModel %s: bad target '%s'",
                                model, word);
    }
    apr_hash_set(g->model_map, model, APR_HASH_KEY_STRING, targets);
    APR_ARRAY_PUSH(g->model_order, const char *) = model;
    return NULL;
}

const char *aiproxy_config_finish_providers(apr_pool_t *p, aiproxy_global_t *g)
{
    apr_hash_index_t *hi;

    for (hi = apr_hash_first(p, g->providers); hi; hi = apr_hash_next(hi)) {
        aiproxy_provider_t *pv = apr_hash_this_val(hi);
        int i;

        pv->auth = apr_array_make(p, pv->key_specs->nelts, sizeof(char *));
        for (i = 0; i < pv->key_specs->nelts; i++) {
            const char *spec = APR_ARRAY_IDX(pv->key_specs, i, const char *);
            const char *err;
            char *key;
            apr_size_t len;

            if ((err = aiproxy_secret_read(p, apr_psprintf(p,
                                           "AIProxyProvider %s (%s)",
                                           pv->name, pv->defined_in),
                                           spec, &key, &len)))
                return err;
            if (strpbrk(key, "\r\n"))
                return apr_psprintf(p, "AIProxyProvider %s: key from %s has "
                                    "a line break", pv->name, spec);
            APR_ARRAY_PUSH(pv->auth, char *) =
                apr_pstrcat(p, aiproxy_api(pv->api)->key_scheme, key, NULL);
        }
    }
    return NULL;
}

const char *aiproxy_config_finish_model_map(apr_pool_t *p, aiproxy_global_t *g)
{
    int i, j;

    for (i = 0; i < g->model_order->nelts; i++) {
        const char *model = APR_ARRAY_IDX(g->model_order, i, const char *);
        apr_array_header_t *targets = apr_hash_get(g->model_map, model,
                                                   APR_HASH_KEY_STRING);

        if (!apr_hash_get(g->prices, model, APR_HASH_KEY_STRING))
            return apr_psprintf(p, "AIProxyModel %s: has no AIProxyPrice; it "
                                "would be billed at $0", model);
        for (j = 0; j < targets->nelts; j++) {
            aiproxy_target_t *t = &APR_ARRAY_IDX(targets, j, aiproxy_target_t);

            t->provider = apr_hash_get(g->providers, t->provider_name,
                                       APR_HASH_KEY_STRING);
            if (!t->provider)
                return apr_psprintf(p, "AIProxyModel %s: no AIProxyProvider "
                                    "named '%s'", model, t->provider_name);
        }
    }
    return NULL;
}
