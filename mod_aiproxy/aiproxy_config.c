#include <string.h>
#include <stdlib.h>
#include <apr_strings.h>
#include <apr_file_io.h>
#include <apr_lib.h>

#include "httpd.h"
#include "http_log.h"

#include "aiproxy_cache.h"
#include "aiproxy_config.h"
#include "aiproxy_directives.h"
#include "aiproxy_ledger.h"
#include "aiproxy_secret.h"

#define UNSET -1

aiproxy_global_t *aiproxy_global(server_rec *s)
{
    return ap_get_module_config(s->module_config, &aiproxy_module);
}

void *aiproxy_create_server_config(apr_pool_t *p, server_rec *s)
{
    aiproxy_global_t *g = apr_pcalloc(p, sizeof(*g));

    (void)s;
    g->store_uri = "mongodb://127.0.0.1:27017";
    g->store_db = "aiproxy";
    g->store_timeout_ms = 1500;
    g->token_leeway = 60;
    g->token_max = 8192;
    g->token_memo = 1024;
    g->secret_specs = apr_array_make(p, 2, sizeof(aiproxy_secret_spec_t));
    g->token_lifetime = AIPROXY_TOKEN_LIFETIME_DEFAULT;
    g->providers = apr_hash_make(p);
    g->prices = apr_hash_make(p);
    g->default_cap = 2 * AIPROXY_PICO_PER_USD;   /* what the original charged */
    g->admins = apr_hash_make(p);
    g->max_body = 8 * 1024 * 1024;
    g->request_memory = 32 * 1024 * 1024;
    g->child_memory = 256 * 1024 * 1024;
    g->default_max_tokens = 0;     /* the model's max_output */
    g->hold_ttl = 600;
    g->drain_timeout = 300;
    g->google_jwks_url = "https://www.googleapis.com/oauth2/v3/certs";
    g->google_jwks_refetch = 60;
    g->allowed_domains = apr_array_make(p, 4, sizeof(const char *));
    g->anthropic_betas = apr_hash_make(p);
    g->model_map = apr_hash_make(p);
    g->model_order = apr_array_make(p, 8, sizeof(const char *));
    g->rest_seconds = 30;
    g->max_attempts = 4;
    g->rate_window = 60;
    g->region = "local";
    g->upstream_headers = apr_array_make(p, 4, sizeof(const char *));
    return g;
}

/* Every server directive is global-only, so virtual hosts share the main
 * server's settings. */
void *aiproxy_merge_server_config(apr_pool_t *p, void *base, void *add)
{
    (void)p;
    (void)add;
    return base;
}

void *aiproxy_create_dir_config(apr_pool_t *p, char *dir)
{
    aiproxy_dir_conf_t *d = apr_pcalloc(p, sizeof(*d));

    d->prefix = dir;
    d->cache_embeddings = UNSET;
    d->server_context = UNSET;
    return d;
}

void *aiproxy_merge_dir_config(apr_pool_t *p, void *basev, void *addv)
{
    aiproxy_dir_conf_t *base = basev, *add = addv;
    aiproxy_dir_conf_t *d = apr_pcalloc(p, sizeof(*d));

    d->prefix = add->provider_name ? add->prefix : base->prefix;
    d->provider_name = add->provider_name ? add->provider_name
                                          : base->provider_name;
    d->kind = add->provider_name ? add->kind : base->kind;
    d->cache_embeddings = add->cache_embeddings != UNSET
                          ? add->cache_embeddings : base->cache_embeddings;
    d->provider = add->provider ? add->provider : base->provider;
    d->endpoints = add->endpoints ? add->endpoints : base->endpoints;
    if (add->models || add->any_model) {
        d->models = add->models;
        d->model_list = add->model_list;
        d->any_model = add->any_model;
    }
    else {
        d->models = base->models;
        d->model_list = base->model_list;
        d->any_model = base->any_model;
    }
    d->path_providers = add->provider_name ? add->path_providers
                                           : base->path_providers;
    d->server_context = add->server_context != UNSET ? add->server_context
                                                     : base->server_context;
    return d;
}

static const char *global_only(cmd_parms *cmd)
{
    return ap_check_cmd_context(cmd, GLOBAL_ONLY);
}

static aiproxy_global_t *cmd_global(cmd_parms *cmd)
{
    return aiproxy_global(cmd->server);
}

static const char *set_store(cmd_parms *cmd, void *dc, const char *uri)
{
    const char *err = global_only(cmd);

    (void)dc;
    if (err)
        return err;
    /* The URI may hold a password: never echo it. */
    if (aiproxy_ledger_check_uri(cmd->pool, uri))
        return "AIProxyStore: not a valid mongodb:// URI";
    cmd_global(cmd)->store_uri = uri;
    return NULL;
}

static const char *set_store_db(cmd_parms *cmd, void *dc, const char *db)
{
    const char *err = global_only(cmd);

    (void)dc;
    if (err)
        return err;
    if (!*db || strpbrk(db, "/\\. \"$"))
        return "AIProxyStoreDatabase: not a valid database name";
    cmd_global(cmd)->store_db = db;
    return NULL;
}

/* A positive integer within [min, max], or an error naming the directive. */
static const char *parse_int(cmd_parms *cmd, const char *arg, apr_int64_t min,
                             apr_int64_t max, apr_int64_t *out)
{
    char *end;
    apr_int64_t v = apr_strtoi64(arg, &end, 10);

    if (!*arg || *end || v < min || v > max)
        return apr_psprintf(cmd->pool, "%s: '%s' is not a whole number from "
                            "%" APR_INT64_T_FMT " to %" APR_INT64_T_FMT,
                            cmd->cmd->name, arg, min, max);
    *out = v;
    return NULL;
}

static const char *set_int(cmd_parms *cmd, void *dc, const char *arg)
{
    aiproxy_global_t *g = cmd_global(cmd);
    const char *err = global_only(cmd);
    const char *name = cmd->cmd->name;
    apr_int64_t v;

    (void)dc;
    if (err)
        return err;
    if (!strcasecmp(name, "AIProxyStoreTimeout")) {
        if (!(err = parse_int(cmd, arg, 100, 60000, &v)))
            g->store_timeout_ms = (int)v;
    }
    else if (!strcasecmp(name, "AIProxyTokenLeeway")) {
        if (!(err = parse_int(cmd, arg, 0, 3600, &v)))
            g->token_leeway = (int)v;
    }
    else if (!strcasecmp(name, "AIProxyTokenMaxLength")) {
        if (!(err = parse_int(cmd, arg, 64, 1 << 20, &v)))
            g->token_max = (apr_size_t)v;
    }
    else if (!strcasecmp(name, "AIProxyTokenCache")) {
        if (!(err = parse_int(cmd, arg, 0, 1 << 20, &v)))
            g->token_memo = (int)v;
    }
    else if (!strcasecmp(name, "AIProxyUserCacheTTL")) {
        if (!(err = parse_int(cmd, arg, 0, 3600, &v)))
            g->user_memo_ttl = (int)v;
    }
    else if (!strcasecmp(name, "AIProxyMaxBody")) {
        if (!(err = parse_int(cmd, arg, 1024, APR_INT64_C(1) << 30, &v)))
            g->max_body = (apr_off_t)v;
    }
    else if (!strcasecmp(name, "AIProxyRequestMemory")) {
        if (!(err = parse_int(cmd, arg, 1 << 20, APR_INT64_C(1) << 34, &v)))
            g->request_memory = (apr_off_t)v;
    }
    else if (!strcasecmp(name, "AIProxyChildMemory")) {
        if (!(err = parse_int(cmd, arg, 1 << 20, APR_INT64_C(1) << 40, &v)))
            g->child_memory = (apr_off_t)v;
    }
    else if (!strcasecmp(name, "AIProxyDefaultMaxTokens")) {
        if (!(err = parse_int(cmd, arg, 0, 10000000, &v)))
            g->default_max_tokens = v;
    }
    else if (!strcasecmp(name, "AIProxyDrainTimeout")) {
        if (!(err = parse_int(cmd, arg, 0, 3600, &v)))
            g->drain_timeout = (int)v;
    }
    else if (!strcasecmp(name, "AIProxyHoldTTL")) {
        if (!(err = parse_int(cmd, arg, 10, 86400, &v)))
            g->hold_ttl = (int)v;
    }
    else if (!strcasecmp(name, "AIProxyRest")) {
        if (!(err = parse_int(cmd, arg, 0, 86400, &v)))
            g->rest_seconds = (int)v;
    }
    else if (!strcasecmp(name, "AIProxyMaxAttempts")) {
        if (!(err = parse_int(cmd, arg, 1, 16, &v)))
            g->max_attempts = (int)v;
    }
    else if (!strcasecmp(name, "AIProxyRecordRetention")) {
        if (!(err = parse_int(cmd, arg, 0, 36500, &v)))
            g->record_retention = (int)v;
    }
    else if (!strcasecmp(name, "AIProxyCacheTTL")) {
        if (!(err = parse_int(cmd, arg, 0, 30 * 86400, &v)))
            g->cache_ttl = (int)v;
    }
    return err;
}

/* AIProxyTokenSecret [KID] SPEC, repeatable: one line per secret. */
static const char *set_secret(cmd_parms *cmd, void *dc, const char *a1,
                              const char *a2)
{
    const char *err = global_only(cmd);

    (void)dc;
    if (err)
        return err;
    return aiproxy_secret_spec_add(cmd->pool, cmd_global(cmd)->secret_specs,
                                   a2 ? a1 : NULL, a2 ? a2 : a1);
}

static const char *set_provider(cmd_parms *cmd, void *dc, const char *args)
{
    aiproxy_global_t *g = cmd_global(cmd);
    const char *err = global_only(cmd);
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

static const char *set_price(cmd_parms *cmd, void *dc, const char *args)
{
    aiproxy_global_t *g = cmd_global(cmd);
    const char *err = global_only(cmd);
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
               "[context=TOKENS] [image=TOKENS] [reasoning=yes|no] (USD per "
               "1M tokens)";
    price = apr_pcalloc(cmd->pool, sizeof(*price));
    while (*(word = ap_getword_conf(cmd->pool, &args)))
        if ((err = aiproxy_price_field(cmd->pool, price, word, &seen)))
            return apr_psprintf(cmd->pool, "AIProxyPrice %s: %s", model, err);
    if ((err = aiproxy_price_finish(price, seen)))
        return apr_psprintf(cmd->pool, "AIProxyPrice %s: %s", model, err);
    /* A forgotten output price would bill every answer's output at $0.
     * Embeddings produce none: a model named *embed* may leave it out;
     * any other says output=0 if it truly costs nothing. */
    if (!(seen & AIPROXY_PRICE_HAS_OUTPUT) && !ap_strcasestr(model, "embed"))
        return apr_psprintf(cmd->pool, "AIProxyPrice %s: output= is required "
                            "(USD per 1M output tokens, with max_output=); "
                            "only embedding models (named *embed*) may leave "
                            "it out", model);
    apr_hash_set(g->prices, model, APR_HASH_KEY_STRING, price);
    return NULL;
}

static const char *set_cap(cmd_parms *cmd, void *dc, const char *usd)
{
    const char *err = global_only(cmd);

    (void)dc;
    if (err)
        return err;
    if ((err = aiproxy_money_parse(cmd->pool, usd, &cmd_global(cmd)->default_cap)))
        return apr_pstrcat(cmd->pool, "AIProxyMonthlyCap: ", err, NULL);
    return NULL;
}

static const char *add_admin(cmd_parms *cmd, void *dc, const char *email)
{
    const char *err = global_only(cmd);

    (void)dc;
    if (err)
        return err;
    if (!strchr(email, '@'))
        return apr_psprintf(cmd->pool, "AIProxyAdmins: '%s' is not an email",
                            email);
    apr_hash_set(cmd_global(cmd)->admins, email, APR_HASH_KEY_STRING, "");
    return NULL;
}

/* Routes of every virtual host, kept on pconf for the start-up checks. */
static apr_array_header_t *config_routes(apr_pool_t *pconf)
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
static const char *set_route(cmd_parms *cmd, void *dcv, const char *args)
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
    APR_ARRAY_PUSH(config_routes(cmd->pool), aiproxy_dir_conf_t *) = d;
    return NULL;
}

static const char *add_endpoint(cmd_parms *cmd, void *dcv, const char *ep)
{
    aiproxy_dir_conf_t *d = dcv;

    while (*ep == '/')
        ep++;
    /* Only endpoints the gateway knows how to bound and meter. */
    if (strcmp(ep, "models") && aiproxy_endpoint_kind(ep) == AIPROXY_EP_OTHER)
        return apr_psprintf(cmd->pool, "AIProxyEndpoints: '%s' is not an "
                            "endpoint the gateway can meter (%s)", ep,
                            "chat/completions, embeddings, models, responses, "
                            "messages");
    if (!d->endpoints)
        d->endpoints = apr_array_make(cmd->pool, 4, sizeof(const char *));
    APR_ARRAY_PUSH(d->endpoints, const char *) = ep;
    return NULL;
}

static const char *set_server_context(cmd_parms *cmd, void *dcv,
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

static const char *add_anthropic_beta(cmd_parms *cmd, void *dc,
                                      const char *beta)
{
    const char *err = global_only(cmd);

    (void)dc;
    if (err)
        return err;
    if (!*beta || strpbrk(beta, ", \t"))
        return apr_psprintf(cmd->pool, "AIProxyAnthropicBeta: '%s' is not "
                            "one beta name", beta);
    apr_hash_set(cmd_global(cmd)->anthropic_betas, beta, APR_HASH_KEY_STRING,
                 beta);
    return NULL;
}

/* A client request header to pass upstream; NAME* passes a prefix. */
static const char *add_upstream_header(cmd_parms *cmd, void *dc,
                                       const char *name)
{
    const char *err = global_only(cmd);
    const char *c;

    (void)dc;
    if (err)
        return err;
    for (c = name; *c && (apr_isalnum(*c) || *c == '-' || *c == '_'); c++)
        ;
    if (c == name || (*c && (*c != '*' || c[1])))
        return apr_psprintf(cmd->pool, "AIProxyUpstreamHeaders: '%s' is not "
                            "a header name (or NAME* for a prefix)", name);
    APR_ARRAY_PUSH(cmd_global(cmd)->upstream_headers, const char *) = name;
    return NULL;
}

static const char *add_model(cmd_parms *cmd, void *dcv, const char *model)
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

/* AIProxyModel PUBLIC TARGET...: TARGET is a provider, or provider=name
 * when the provider knows the model by another name. Resolved at start-up,
 * so providers may be defined later in the file. */
static const char *add_model_map(cmd_parms *cmd, void *dc, const char *args)
{
    aiproxy_global_t *g = cmd_global(cmd);
    const char *err = global_only(cmd);
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

static const char *set_rate_limit(cmd_parms *cmd, void *dc, const char *n,
                                  const char *window)
{
    aiproxy_global_t *g = cmd_global(cmd);
    const char *err = global_only(cmd);
    apr_int64_t v, w;

    (void)dc;
    if (err)
        return err;
    if ((err = parse_int(cmd, n, 0, 1000000, &v)) ||
        (err = parse_int(cmd, window, 1, 86400, &w)))
        return err;
    g->rate_limit = (int)v;
    g->rate_window = (int)w;
    return NULL;
}

static const char *set_region(cmd_parms *cmd, void *dc, const char *label)
{
    const char *err = global_only(cmd);

    (void)dc;
    if (err)
        return err;
    cmd_global(cmd)->region = label;
    return NULL;
}

static const char *set_cache_embeddings(cmd_parms *cmd, void *dcv, int on)
{
    (void)cmd;
    ((aiproxy_dir_conf_t *)dcv)->cache_embeddings = on;
    return NULL;
}

/* Sign-in directives (Google ID tokens, the tokens /token issues). */
static const char *set_google_client_id(cmd_parms *cmd, void *dc,
                                        const char *id)
{
    const char *err = global_only(cmd);

    (void)dc;
    if (err)
        return err;
    if (strpbrk(id, " \t\r\n\"\\"))
        return "AIProxyGoogleClientID: not an OAuth client ID";
    /* Empty (an unset variable) leaves sign-in off. */
    cmd_global(cmd)->google_client_id = *id ? id : NULL;
    return NULL;
}

static const char *set_google_jwks(cmd_parms *cmd, void *dc, const char *url)
{
    const char *err = global_only(cmd);
    apr_uri_t uri;

    (void)dc;
    if (err)
        return err;
    if (apr_uri_parse(cmd->pool, url, &uri) != APR_SUCCESS || !uri.scheme ||
        !uri.hostname || (strcmp(uri.scheme, "http") &&
                          strcmp(uri.scheme, "https")) || uri.user ||
        uri.password)
        return "AIProxyGoogleJWKS: give an http(s):// URL";
    cmd_global(cmd)->google_jwks_url = url;
    return NULL;
}

static const char *add_allowed_domain(cmd_parms *cmd, void *dc,
                                      const char *domain)
{
    const char *err = global_only(cmd);
    char *d;

    (void)dc;
    if (err)
        return err;
    d = apr_pstrdup(cmd->pool, *domain == '@' ? domain + 1 : domain);
    ap_str_tolower(d);
    if (!*d || strspn(d, "abcdefghijklmnopqrstuvwxyz0123456789.-") != strlen(d))
        return apr_psprintf(cmd->pool, "AIProxyAllowedDomains: '%s' is not a "
                            "domain name", domain);
    APR_ARRAY_PUSH(cmd_global(cmd)->allowed_domains, const char *) = d;
    return NULL;
}

static const char *set_require_hd(cmd_parms *cmd, void *dc, int on)
{
    const char *err = global_only(cmd);

    (void)dc;
    if (err)
        return err;
    cmd_global(cmd)->require_hd = on;
    return NULL;
}

static const char *set_signin_int(cmd_parms *cmd, void *dc, const char *arg)
{
    aiproxy_global_t *g = cmd_global(cmd);
    const char *err = global_only(cmd);
    apr_int64_t v;

    (void)dc;
    if (err)
        return err;
    if (!strcasecmp(cmd->cmd->name, "AIProxyTokenLifetime")) {
        if (!(err = parse_int(cmd, arg, 0, APR_INT64_C(10) * 366 * 86400, &v)))
            g->token_lifetime = v;
    }
    else if (!(err = parse_int(cmd, arg, 1, 86400, &v))) {
        g->google_jwks_refetch = (int)v;
    }
    return err;
}

const command_rec aiproxy_directives[] = {
    AP_INIT_TAKE1("AIProxyStore", set_store, NULL, RSRC_CONF,
                  "MongoDB URI of the ledger"),
    AP_INIT_TAKE1("AIProxyStoreDatabase", set_store_db, NULL, RSRC_CONF,
                  "database name (default aiproxy)"),
    AP_INIT_TAKE1("AIProxyStoreTimeout", set_int, NULL, RSRC_CONF,
                  "milliseconds to find the store before failing (1500)"),
    AP_INIT_TAKE12("AIProxyTokenSecret", set_secret, NULL, RSRC_CONF,
                   "[KEY-ID] env:VAR|file:PATH: an HS256 secret of at least "
                   "32 bytes; repeatable, the last one signs"),
    AP_INIT_TAKE1("AIProxyTokenLeeway", set_int, NULL, RSRC_CONF,
                  "seconds of clock skew allowed on exp and nbf (60)"),
    AP_INIT_TAKE1("AIProxyTokenMaxLength", set_int, NULL, RSRC_CONF,
                  "longest token accepted, in bytes (8192)"),
    AP_INIT_TAKE1("AIProxyTokenCache", set_int, NULL, RSRC_CONF,
                  "verified tokens each child remembers; 0 is off (1024)"),
    AP_INIT_TAKE1("AIProxyUserCacheTTL", set_int, NULL, RSRC_CONF,
                  "seconds a child reuses a user's cap and revocation; "
                  "0 is off (0)"),
    AP_INIT_RAW_ARGS("AIProxyProvider", set_provider, NULL, RSRC_CONF,
                     "NAME BASE-URL [api=openai|anthropic] key=env:VAR|file:PATH ..."),
    AP_INIT_RAW_ARGS("AIProxyPrice", set_price, NULL, RSRC_CONF,
                     "MODEL input=USD [cached=USD] [cache_write=USD] "
                     "output=USD max_output=TOKENS (output= may be left out "
                     "for *embed* models)"),
    AP_INIT_TAKE1("AIProxyMonthlyCap", set_cap, NULL, RSRC_CONF,
                  "default monthly cap per user in USD (2)"),
    AP_INIT_ITERATE("AIProxyAdmins", add_admin, NULL, RSRC_CONF,
                    "emails allowed to read /usage"),
    AP_INIT_TAKE1("AIProxyMaxBody", set_int, NULL, RSRC_CONF,
                  "largest request body in bytes (8388608)"),
    AP_INIT_TAKE1("AIProxyRequestMemory", set_int, NULL, RSRC_CONF,
                  "most bytes one request body's parse may take (33554432)"),
    AP_INIT_TAKE1("AIProxyChildMemory", set_int, NULL, RSRC_CONF,
                  "bytes a child may hold in large request bodies and their "
                  "parses at once (268435456)"),
    AP_INIT_TAKE1("AIProxyDefaultMaxTokens", set_int, NULL, RSRC_CONF,
                  "output tokens reserved when a request sets no limit (4096)"),
    AP_INIT_TAKE1("AIProxyDrainTimeout", set_int, NULL, RSRC_CONF,
                  "seconds a stream is read on after its client went, for "
                  "its usage (0: not at all)"),
    AP_INIT_TAKE1("AIProxyHoldTTL", set_int, NULL, RSRC_CONF,
                  "seconds after which an unsettled reservation expires (600)"),
    AP_INIT_TAKE1("AIProxyGoogleClientID", set_google_client_id, NULL,
                  RSRC_CONF, "OAuth client ID that Google ID tokens must be "
                  "issued to (unset: /token is off)"),
    AP_INIT_TAKE1("AIProxyGoogleJWKS", set_google_jwks, NULL, RSRC_CONF,
                  "URL of Google's signing keys (https://www.googleapis.com/"
                  "oauth2/v3/certs)"),
    AP_INIT_TAKE1("AIProxyGoogleJWKSRefetch", set_signin_int, NULL, RSRC_CONF,
                  "least seconds between key fetches for an unknown kid (60)"),
    AP_INIT_ITERATE("AIProxyAllowedDomains", add_allowed_domain, NULL,
                    RSRC_CONF, "email or hd domains that may sign in "
                    "(none given: any)"),
    AP_INIT_FLAG("AIProxyRequireHostedDomain", set_require_hd, NULL,
                 RSRC_CONF, "On: only Google Workspace accounts (with hd) may "
                 "sign in (Off)"),
    AP_INIT_TAKE1("AIProxyTokenLifetime", set_signin_int, NULL, RSRC_CONF,
                  "seconds an issued token lasts; 0 = no exp (10368000: "
                  "120 days)"),
    AP_INIT_RAW_ARGS("AIProxyRoute", set_route, NULL, ACCESS_CONF,
                  "provider this <Location> forwards to, or 'path' or 'model'"),
    AP_INIT_RAW_ARGS("AIProxyModel", add_model_map, NULL, RSRC_CONF,
                     "MODEL PROVIDER[=NAME] ...: who serves a model, in order"),
    AP_INIT_TAKE1("AIProxyRest", set_int, NULL, RSRC_CONF,
                  "seconds a failed provider key is left alone (30)"),
    AP_INIT_TAKE1("AIProxyMaxAttempts", set_int, NULL, RSRC_CONF,
                  "most upstream attempts per request (4)"),
    AP_INIT_TAKE1("AIProxyCache", aiproxy_cache_set, NULL, RSRC_CONF,
                  "socache provider for responses: shmcb, redis:HOST:PORT, ..."),
    AP_INIT_TAKE1("AIProxyCacheTTL", set_int, NULL, RSRC_CONF,
                  "seconds a cached response lives; 0 disables (0)"),
    AP_INIT_FLAG("AIProxyCacheEmbeddings", set_cache_embeddings, NULL,
                 ACCESS_CONF, "cache byte-identical embeddings requests"),
    AP_INIT_TAKE2("AIProxyRateLimit", set_rate_limit, NULL, RSRC_CONF,
                  "REQUESTS SECONDS: sliding window per user (0 = off)"),
    AP_INIT_TAKE1("AIProxyRegion", set_region, NULL, RSRC_CONF,
                  "label reported by /health (local)"),
    AP_INIT_ITERATE("AIProxyEndpoints", add_endpoint, NULL, ACCESS_CONF,
                    "endpoints allowed below the route"),
    AP_INIT_ITERATE("AIProxyModels", add_model, NULL, ACCESS_CONF,
                    "models allowed on the route, or * for every priced one"),
    AP_INIT_TAKE1("AIProxyServerContext", set_server_context, NULL,
                  ACCESS_CONF, "refuse or reserve requests that use context "
                  "kept at the provider"),
    AP_INIT_ITERATE("AIProxyUpstreamHeaders", add_upstream_header, NULL,
                    RSRC_CONF, "client request headers passed to providers "
                    "beyond those their APIs need (none)"),
    AP_INIT_TAKE1("AIProxyRecordRetention", set_int, NULL, RSRC_CONF,
                  "days request records are kept; 0 keeps them (0)"),
    AP_INIT_ITERATE("AIProxyAnthropicBeta", add_anthropic_beta, NULL,
                    RSRC_CONF, "anthropic-beta values clients may send"),
    { NULL }
};

static const char *finish_providers(apr_pool_t *p, aiproxy_global_t *g)
{
    apr_hash_index_t *hi;

    for (hi = apr_hash_first(p, g->providers); hi; hi = apr_hash_next(hi)) {
        aiproxy_provider_t *pv = apr_hash_this_val(hi);
        int i;

        pv->auth = apr_array_make(p, pv->key_specs->nelts, sizeof(char *));
        pv->turn = apr_pcalloc(p, sizeof(*pv->turn));
        pv->rest_until = apr_pcalloc(p, pv->key_specs->nelts *
                                        sizeof(*pv->rest_until));
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

static const char *finish_model_map(apr_pool_t *p, aiproxy_global_t *g)
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

static const char *finish_route(apr_pool_t *p, aiproxy_global_t *g,
                                aiproxy_dir_conf_t *d)
{
    apr_hash_index_t *hi;

    if (d->kind == AIPROXY_ROUTE_FIXED) {
        d->provider = apr_hash_get(g->providers, d->provider_name,
                                   APR_HASH_KEY_STRING);
        if (!d->provider)
            return apr_psprintf(p, "AIProxyRoute %s (in <Location %s>): no "
                                "AIProxyProvider of that name",
                                d->provider_name, d->prefix);
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
    apr_array_header_t *routes = config_routes(p);
    const char *err;
    int i;

    if (routes->nelts == 0)
        return NULL;
    if (g->secret_specs->nelts == 0)
        return "AIProxyTokenSecret: required when any AIProxyRoute is "
               "configured";
    if ((err = aiproxy_secret_load_all(p, g->secret_specs, &g->token_keys)))
        return err;
    if ((err = finish_providers(p, g)) || (err = finish_model_map(p, g)))
        return err;
    for (i = 0; i < routes->nelts; i++)
        if ((err = finish_route(p, g, APR_ARRAY_IDX(routes, i,
                                                    aiproxy_dir_conf_t *))))
            return err;
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

int aiproxy_endpoint_allowed(const aiproxy_dir_conf_t *d,
                             const aiproxy_provider_t *pv, const char *ep)
{
    int i;

    if (d->endpoints) {
        for (i = 0; i < d->endpoints->nelts; i++)
            if (!strcmp(APR_ARRAY_IDX(d->endpoints, i, const char *), ep))
                return 1;
        return 0;
    }
    return route_has(d, pv, ep);
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
            out = out ? apr_pstrcat(p, out, ",", e->path, NULL) : e->path;
    }
    return out;
}
