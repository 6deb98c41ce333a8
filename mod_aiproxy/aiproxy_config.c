#include <string.h>
#include <stdlib.h>
#include <apr_strings.h>
#include <apr_file_io.h>
#include <apr_lib.h>

#include "httpd.h"
#include "http_log.h"

#include "aiproxy_alert.h"
#include "aiproxy_cache.h"
#include "aiproxy_config.h"
#include "aiproxy_directives.h"
#include "aiproxy_ledger.h"
#include "aiproxy_oidc_signin.h"
#include "aiproxy_secret.h"

#include "aiproxy_config_int.h"

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
    g->require_hd = UNSET;
    g->require_managed = UNSET;
    aiproxy_oidc_signin_defaults(p, g);
    g->anthropic_betas = apr_hash_make(p);
    g->model_map = apr_hash_make(p);
    g->model_order = apr_array_make(p, 8, sizeof(const char *));
    g->rest_seconds = 30;
    g->max_attempts = 4;
    g->rate_window = 60;
    g->free_rate_limit = 120;
    g->free_rate_window = 60;
    g->region = "local";
    g->upstream_headers = apr_array_make(p, 4, sizeof(const char *));
    g->lease_flush_ms = 250;
    g->lease_idle = 60;
    g->lease_ttl = 300;
    g->lease_slots = 4096;
    g->alert_thresholds = apr_array_make(p, 2, sizeof(int));
    APR_ARRAY_PUSH(g->alert_thresholds, int) = 80;
    APR_ARRAY_PUSH(g->alert_thresholds, int) = 100;
    g->alert_interval = 15;
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
    d->metrics_public = UNSET;
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
    d->metrics_public = add->metrics_public != UNSET ? add->metrics_public
                                                     : base->metrics_public;
    return d;
}

const char *aiproxy_cfg_global_only(cmd_parms *cmd)
{
    return ap_check_cmd_context(cmd, GLOBAL_ONLY);
}

aiproxy_global_t *aiproxy_cfg_global(cmd_parms *cmd)
{
    return aiproxy_global(cmd->server);
}

static const char *set_store(cmd_parms *cmd, void *dc, const char *uri)
{
    const char *err = aiproxy_cfg_global_only(cmd);

    (void)dc;
    if (err)
        return err;
    /* The URI may hold a password: never echo it. */
    if (aiproxy_ledger_check_uri(cmd->pool, uri))
        return "AIProxyStore: not a valid mongodb:// URI";
    aiproxy_cfg_global(cmd)->store_uri = uri;
    return NULL;
}

static const char *set_store_db(cmd_parms *cmd, void *dc, const char *db)
{
    const char *err = aiproxy_cfg_global_only(cmd);

    (void)dc;
    if (err)
        return err;
    if (!*db || strpbrk(db, "/\\. \"$"))
        return "AIProxyStoreDatabase: not a valid database name";
    aiproxy_cfg_global(cmd)->store_db = db;
    return NULL;
}

/* A positive integer within [min, max], or an error naming the directive. */
const char *aiproxy_cfg_int(cmd_parms *cmd, const char *arg,
                                     apr_int64_t min, apr_int64_t max,
                                     apr_int64_t *out)
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
    aiproxy_global_t *g = aiproxy_cfg_global(cmd);
    const char *err = aiproxy_cfg_global_only(cmd);
    const char *name = cmd->cmd->name;
    apr_int64_t v;

    (void)dc;
    if (err)
        return err;
    if (!strcasecmp(name, "AIProxyStoreTimeout")) {
        if (!(err = aiproxy_cfg_int(cmd, arg, 100, 60000, &v)))
            g->store_timeout_ms = (int)v;
    }
    else if (!strcasecmp(name, "AIProxyTokenLeeway")) {
        if (!(err = aiproxy_cfg_int(cmd, arg, 0, 3600, &v)))
            g->token_leeway = (int)v;
    }
    else if (!strcasecmp(name, "AIProxyTokenMaxLength")) {
        if (!(err = aiproxy_cfg_int(cmd, arg, 64, 1 << 20, &v)))
            g->token_max = (apr_size_t)v;
    }
    else if (!strcasecmp(name, "AIProxyTokenCache")) {
        if (!(err = aiproxy_cfg_int(cmd, arg, 0, 1 << 20, &v)))
            g->token_memo = (int)v;
    }
    else if (!strcasecmp(name, "AIProxyUserCacheTTL")) {
        if (!(err = aiproxy_cfg_int(cmd, arg, 0, 3600, &v)))
            g->user_memo_ttl = (int)v;
    }
    else if (!strcasecmp(name, "AIProxyMaxBody")) {
        if (!(err = aiproxy_cfg_int(cmd, arg, 1024, APR_INT64_C(1) << 30, &v)))
            g->max_body = (apr_off_t)v;
    }
    else if (!strcasecmp(name, "AIProxyRequestMemory")) {
        if (!(err = aiproxy_cfg_int(cmd, arg,
                                    1 << 20, APR_INT64_C(1) << 34, &v)))
            g->request_memory = (apr_off_t)v;
    }
    else if (!strcasecmp(name, "AIProxyChildMemory")) {
        if (!(err = aiproxy_cfg_int(cmd, arg,
                                    1 << 20, APR_INT64_C(1) << 40, &v)))
            g->child_memory = (apr_off_t)v;
    }
    else if (!strcasecmp(name, "AIProxyDefaultMaxTokens")) {
        if (!(err = aiproxy_cfg_int(cmd, arg, 0, 10000000, &v)))
            g->default_max_tokens = v;
    }
    else if (!strcasecmp(name, "AIProxyDrainTimeout")) {
        if (!(err = aiproxy_cfg_int(cmd, arg, 0, 3600, &v)))
            g->drain_timeout = (int)v;
    }
    else if (!strcasecmp(name, "AIProxyHoldTTL")) {
        if (!(err = aiproxy_cfg_int(cmd, arg, 10, 86400, &v)))
            g->hold_ttl = (int)v;
    }
    else if (!strcasecmp(name, "AIProxyRest")) {
        if (!(err = aiproxy_cfg_int(cmd, arg, 0, 86400, &v)))
            g->rest_seconds = (int)v;
    }
    else if (!strcasecmp(name, "AIProxyMaxAttempts")) {
        if (!(err = aiproxy_cfg_int(cmd, arg, 1, 16, &v)))
            g->max_attempts = (int)v;
    }
    else if (!strcasecmp(name, "AIProxyRecordRetention")) {
        if (!(err = aiproxy_cfg_int(cmd, arg, 0, 36500, &v)))
            g->record_retention = (int)v;
    }
    else if (!strcasecmp(name, "AIProxyLeaseFlush")) {
        if (!(err = aiproxy_cfg_int(cmd, arg, 10, 60000, &v)))
            g->lease_flush_ms = (int)v;
    }
    else if (!strcasecmp(name, "AIProxyLeaseIdle")) {
        if (!(err = aiproxy_cfg_int(cmd, arg, 1, 86400, &v)))
            g->lease_idle = (int)v;
    }
    else if (!strcasecmp(name, "AIProxyLeaseTTL")) {
        if (!(err = aiproxy_cfg_int(cmd, arg, 2, 86400, &v)))
            g->lease_ttl = (int)v;
    }
    else if (!strcasecmp(name, "AIProxyLeaseSlots")) {
        if (!(err = aiproxy_cfg_int(cmd, arg, 16, 1 << 20, &v)))
            g->lease_slots = (int)v;
    }
    else if (!strcasecmp(name, "AIProxyCacheTTL")) {
        if (!(err = aiproxy_cfg_int(cmd, arg, 0, 30 * 86400, &v)))
            g->cache_ttl = (int)v;
    }
    return err;
}

/* AIProxyTokenSecret [KID] SPEC, repeatable: one line per secret. */
static const char *set_secret(cmd_parms *cmd, void *dc, const char *a1,
                              const char *a2)
{
    const char *err = aiproxy_cfg_global_only(cmd);

    (void)dc;
    if (err)
        return err;
    return aiproxy_secret_spec_add(cmd->pool, aiproxy_cfg_global(cmd)->secret_specs,
                                   a2 ? a1 : NULL, a2 ? a2 : a1);
}

static const char *set_cap(cmd_parms *cmd, void *dc, const char *usd)
{
    const char *err = aiproxy_cfg_global_only(cmd);

    (void)dc;
    if (err)
        return err;
    if ((err = aiproxy_money_parse(cmd->pool, usd, &aiproxy_cfg_global(cmd)->default_cap)))
        return apr_pstrcat(cmd->pool, "AIProxyMonthlyCap: ", err, NULL);
    return NULL;
}

static const char *add_admin(cmd_parms *cmd, void *dc, const char *email)
{
    const char *err = aiproxy_cfg_global_only(cmd);

    (void)dc;
    if (err)
        return err;
    if (!strchr(email, '@'))
        return apr_psprintf(cmd->pool, "AIProxyAdmins: '%s' is not an email",
                            email);
    /* Compared with the lower-cased email of a token. */
    email = apr_pstrdup(cmd->pool, email);
    ap_str_tolower((char *)email);
    apr_hash_set(aiproxy_cfg_global(cmd)->admins, email, APR_HASH_KEY_STRING, "");
    return NULL;
}

/* AIProxyRateLimit and AIProxyFreeRateLimit (cmd->info non-NULL). */
static const char *set_rate_limit(cmd_parms *cmd, void *dc, const char *n,
                                  const char *window)
{
    aiproxy_global_t *g = aiproxy_cfg_global(cmd);
    const char *err = aiproxy_cfg_global_only(cmd);
    apr_int64_t v, w;

    (void)dc;
    if (err)
        return err;
    if ((err = aiproxy_cfg_int(cmd, n, 0, 1000000, &v)) ||
        (err = aiproxy_cfg_int(cmd, window, 1, 86400, &w)))
        return err;
    *(cmd->info ? &g->free_rate_limit : &g->rate_limit) = (int)v;
    *(cmd->info ? &g->free_rate_window : &g->rate_window) = (int)w;
    return NULL;
}

static const char *set_lease_size(cmd_parms *cmd, void *dc, const char *usd)
{
    const char *err = aiproxy_cfg_global_only(cmd);

    (void)dc;
    if (err)
        return err;
    if ((err = aiproxy_money_parse(cmd->pool, usd,
                                   &aiproxy_cfg_global(cmd)->lease_size)))
        return apr_pstrcat(cmd->pool, "AIProxyLeaseSize: ", err, NULL);
    return NULL;
}

/* Names this host's leases in the store: letters, digits, '-' and '_'
 * only, since it becomes part of a field name. */
static const char *set_host_id(cmd_parms *cmd, void *dc, const char *id)
{
    const char *err = aiproxy_cfg_global_only(cmd);
    const char *c;

    (void)dc;
    if (err)
        return err;
    for (c = id; *c; c++)
        if (!apr_isalnum(*c) && *c != '-' && *c != '_')
            break;
    if (!*id || *c || strlen(id) > 64)
        return apr_psprintf(cmd->pool, "AIProxyHostId: '%s' is not 1 to 64 "
                            "letters, digits, '-' or '_'", id);
    aiproxy_cfg_global(cmd)->host_id = id;
    return NULL;
}

static const char *set_region(cmd_parms *cmd, void *dc, const char *label)
{
    const char *err = aiproxy_cfg_global_only(cmd);

    (void)dc;
    if (err)
        return err;
    aiproxy_cfg_global(cmd)->region = label;
    return NULL;
}

/* Sign-in directives (Google ID tokens, the tokens /token issues). */
static const char *set_google_client_id(cmd_parms *cmd, void *dc,
                                        const char *id)
{
    const char *err = aiproxy_cfg_global_only(cmd);

    (void)dc;
    if (err)
        return err;
    if (strpbrk(id, " \t\r\n\"\\"))
        return "AIProxyGoogleClientID: not an OAuth client ID";
    /* Empty (an unset variable) leaves sign-in off. */
    aiproxy_cfg_global(cmd)->google_client_id = *id ? id : NULL;
    return NULL;
}

static const char *set_google_jwks(cmd_parms *cmd, void *dc, const char *url)
{
    const char *err = aiproxy_cfg_global_only(cmd);
    apr_uri_t uri;

    (void)dc;
    if (err)
        return err;
    if (apr_uri_parse(cmd->pool, url, &uri) != APR_SUCCESS || !uri.scheme ||
        !uri.hostname || (strcmp(uri.scheme, "http") &&
                          strcmp(uri.scheme, "https")) || uri.user ||
        uri.password)
        return "AIProxyGoogleJWKS: give an http(s):// URL";
    aiproxy_cfg_global(cmd)->google_jwks_url = url;
    return NULL;
}

static const char *add_allowed_domain(cmd_parms *cmd, void *dc,
                                      const char *domain)
{
    const char *err = aiproxy_cfg_global_only(cmd);
    char *d;

    (void)dc;
    if (err)
        return err;
    d = apr_pstrdup(cmd->pool, *domain == '@' ? domain + 1 : domain);
    ap_str_tolower(d);
    if (!*d || strspn(d, "abcdefghijklmnopqrstuvwxyz0123456789.-") != strlen(d))
        return apr_psprintf(cmd->pool, "AIProxyAllowedDomains: '%s' is not a "
                            "domain name", domain);
    APR_ARRAY_PUSH(aiproxy_cfg_global(cmd)->allowed_domains, const char *) = d;
    return NULL;
}

static const char *set_require_hd(cmd_parms *cmd, void *dc, int on)
{
    const char *err = aiproxy_cfg_global_only(cmd);

    (void)dc;
    if (err)
        return err;
    aiproxy_cfg_global(cmd)->require_hd = on;
    return NULL;
}

static const char *set_signin_int(cmd_parms *cmd, void *dc, const char *arg)
{
    aiproxy_global_t *g = aiproxy_cfg_global(cmd);
    const char *err = aiproxy_cfg_global_only(cmd);
    apr_int64_t v;

    (void)dc;
    if (err)
        return err;
    if (!strcasecmp(cmd->cmd->name, "AIProxyTokenLifetime")) {
        if (!(err = aiproxy_cfg_int(cmd, arg,
                                    0, APR_INT64_C(10) * 366 * 86400, &v)))
            g->token_lifetime = v;
    }
    else if (!(err = aiproxy_cfg_int(cmd, arg, 1, 86400, &v))) {
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
    AP_INIT_RAW_ARGS("AIProxyProvider", aiproxy_config_set_provider, NULL, RSRC_CONF,
                     "NAME BASE-URL [api=openai|anthropic] key=env:VAR|file:PATH ..."),
    AP_INIT_RAW_ARGS("AIProxyPrice", aiproxy_config_set_price, NULL, RSRC_CONF,
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
                 "sign in (as AIProxyRequireManagedAccount)"),
    AP_INIT_FLAG("AIProxyRequireManagedAccount", aiproxy_oidc_signin_set_flag,
                 NULL, RSRC_CONF, "On: only organisation-managed accounts "
                 "(hd, or tid in AIProxyOIDCTenants) may sign in (On when "
                 "AIProxyAllowedDomains is set)"),
    AP_INIT_TAKE12("AIProxyOIDCSignIn", aiproxy_oidc_signin_set_location,
                   NULL, RSRC_CONF, "URL-PATH [DASHBOARD-PATH]: the location "
                   "protected by AuthType openid-connect that the dashboard "
                   "offers, and where it sends a browser back (/admin/)"),
    AP_INIT_TAKE1("AIProxyOIDCSignOut", aiproxy_oidc_signin_set_signout,
                  NULL, RSRC_CONF, "URL: where the dashboard's sign-out ends "
                  "mod_auth_openidc's session (OIDCRedirectURI?logout=...)"),
    AP_INIT_TAKE2("AIProxyOIDCClaim", aiproxy_oidc_signin_set_claim, NULL,
                  RSRC_CONF, "email|email_verified|hd|tid|groups NAME: the "
                  "claim mod_auth_openidc passes it in ('-': none)"),
    AP_INIT_TAKE1("AIProxyOIDCCourseGroups", aiproxy_oidc_signin_set_course_groups,
                  NULL, RSRC_CONF, "PREFIX: a group PREFIX<course-id> in the "
                  "groups claim enrols the user in that course at sign-in "
                  "(off)"),
    AP_INIT_ITERATE("AIProxyOIDCTenants", aiproxy_oidc_signin_add_tenant,
                    NULL, RSRC_CONF, "Microsoft Entra tenant IDs whose "
                    "accounts are organisation-managed"),
    AP_INIT_TAKE1("AIProxyTokenLifetime", set_signin_int, NULL, RSRC_CONF,
                  "seconds an issued token lasts; 0 = no exp (10368000: "
                  "120 days)"),
    AP_INIT_RAW_ARGS("AIProxyRoute", aiproxy_config_set_route, NULL, ACCESS_CONF,
                  "provider this <Location> forwards to, or 'path' or 'model'"),
    AP_INIT_RAW_ARGS("AIProxyModel", aiproxy_config_add_model_map, NULL, RSRC_CONF,
                     "MODEL PROVIDER[=NAME] ...: who serves a model, in order"),
    AP_INIT_TAKE1("AIProxyRest", set_int, NULL, RSRC_CONF,
                  "seconds a failed provider key is left alone (30)"),
    AP_INIT_TAKE1("AIProxyMaxAttempts", set_int, NULL, RSRC_CONF,
                  "most upstream attempts per request (4)"),
    AP_INIT_TAKE1("AIProxyCache", aiproxy_cache_set, NULL, RSRC_CONF,
                  "socache provider for responses: shmcb, redis:HOST:PORT, ..."),
    AP_INIT_TAKE1("AIProxyCacheTTL", set_int, NULL, RSRC_CONF,
                  "seconds a cached response lives; 0 disables (0)"),
    AP_INIT_FLAG("AIProxyCacheEmbeddings", aiproxy_config_set_cache_embeddings, NULL,
                 ACCESS_CONF, "cache byte-identical embeddings requests"),
    AP_INIT_FLAG("AIProxyMetricsPublic", ap_set_flag_slot,
                 (void *)APR_OFFSETOF(aiproxy_dir_conf_t, metrics_public),
                 ACCESS_CONF, "serve aiproxy-metrics without an admin token: "
                 "httpd's Require guards it (Off)"),
    AP_INIT_TAKE2("AIProxyRateLimit", set_rate_limit, NULL, RSRC_CONF,
                  "REQUESTS SECONDS: sliding window per user (0 = off)"),
    AP_INIT_TAKE2("AIProxyFreeRateLimit", set_rate_limit, "free", RSRC_CONF,
                  "REQUESTS SECONDS: the same on the free endpoints (0 = off)"),
    AP_INIT_TAKE1("AIProxyLeaseSize", set_lease_size, NULL, RSRC_CONF,
                  "USD a host takes from a user's budget at once (0: a store "
                  "hold per request)"),
    AP_INIT_TAKE1("AIProxyLeaseFlush", set_int, NULL, RSRC_CONF,
                  "milliseconds between writes of leased spending (250)"),
    AP_INIT_TAKE1("AIProxyLeaseIdle", set_int, NULL, RSRC_CONF,
                  "seconds after which an unused lease returns (60)"),
    AP_INIT_TAKE1("AIProxyLeaseTTL", set_int, NULL, RSRC_CONF,
                  "seconds a lease outlives its host's last write (300)"),
    AP_INIT_TAKE1("AIProxyLeaseSlots", set_int, NULL, RSRC_CONF,
                  "users one host holds leases for at once (4096)"),
    AP_INIT_TAKE1("AIProxyHostId", set_host_id, NULL, RSRC_CONF,
                  "names this host's leases (the hostname)"),
    AP_INIT_TAKE1("AIProxyAlertWebhook", aiproxy_alert_set_webhook, NULL,
                  RSRC_CONF, "URL that threshold alerts are POSTed to as JSON "
                  "(none: no alerts)"),
    AP_INIT_TAKE_ARGV("AIProxyAlertThresholds", aiproxy_alert_set_thresholds,
                      NULL, RSRC_CONF, "percentages of a cap or budget that "
                      "raise an alert, 1-1000 (80 100)"),
    AP_INIT_TAKE1("AIProxyAlertInterval", aiproxy_alert_set_interval, NULL,
                  RSRC_CONF, "seconds between alert scans (15)"),
    AP_INIT_TAKE1("AIProxyRegion", set_region, NULL, RSRC_CONF,
                  "label reported by /health (local)"),
    AP_INIT_ITERATE("AIProxyEndpoints", aiproxy_config_add_endpoint, NULL, ACCESS_CONF,
                    "endpoints allowed below the route"),
    AP_INIT_ITERATE("AIProxyModels", aiproxy_config_add_model, NULL, ACCESS_CONF,
                    "models allowed on the route, or * for every priced one"),
    AP_INIT_TAKE1("AIProxyServerContext", aiproxy_config_set_server_context, NULL,
                  ACCESS_CONF, "refuse or reserve requests that use context "
                  "kept at the provider"),
    AP_INIT_ITERATE("AIProxyUpstreamHeaders", aiproxy_config_add_upstream_header, NULL,
                    RSRC_CONF, "client request headers passed to providers "
                    "beyond those their APIs need (none)"),
    AP_INIT_TAKE1("AIProxyRecordRetention", set_int, NULL, RSRC_CONF,
                  "days request records are kept; 0 keeps them (0)"),
    AP_INIT_ITERATE("AIProxyAnthropicBeta", aiproxy_config_add_anthropic_beta, NULL,
                    RSRC_CONF, "anthropic-beta values clients may send"),
    { NULL }
};
