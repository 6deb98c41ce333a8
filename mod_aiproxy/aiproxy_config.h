/* Directives and the configuration they build. */
#ifndef AIPROXY_CONFIG_H
#define AIPROXY_CONFIG_H

#include "httpd.h"
#include "http_config.h"

#include "aiproxy.h"
#include "aiproxy_cost.h"
#include "aiproxy_inspect.h"

typedef struct {
    const char *name;
    const char *base_url;          /* no trailing slash */
    aiproxy_api_t api;
    apr_array_header_t *key_specs; /* "env:VAR" or "file:PATH" */
    apr_array_header_t *auth;      /* ready header values, one per key */
    const char *defined_in;        /* "file:line" for start-up errors */
} aiproxy_provider_t;

/* Server-wide settings: every directive here is global-only, so all virtual
 * hosts share one store, one secret, one price list. */
typedef struct {
    const char *store_uri;
    const char *store_db;
    int store_timeout_ms;
    const char *secret_spec;
    unsigned char *secret;
    apr_size_t secret_len;
    int token_leeway;
    apr_size_t token_max;
    apr_hash_t *providers;          /* name -> aiproxy_provider_t */
    apr_hash_t *prices;             /* model -> aiproxy_price_t */
    aiproxy_money_t default_cap;
    apr_hash_t *admins;             /* email -> "" */
    apr_off_t max_body;
    apr_int64_t default_max_tokens;
    int hold_ttl;                   /* seconds */
} aiproxy_global_t;

/* Per <Location>: a gateway route. */
typedef struct {
    const char *prefix;               /* the <Location> path */
    const char *provider_name;        /* NULL: not a route */
    aiproxy_provider_t *provider;     /* resolved at start-up */
    apr_array_header_t *endpoints;    /* NULL: every endpoint of the API */
    apr_hash_t *models;               /* NULL: every priced model */
    apr_array_header_t *model_list;   /* the same, in order, for listings */
} aiproxy_dir_conf_t;

extern module AP_MODULE_DECLARE_DATA aiproxy_module;
extern const command_rec aiproxy_directives[];

aiproxy_global_t *aiproxy_global(server_rec *s);
void *aiproxy_create_server_config(apr_pool_t *p, server_rec *s);
void *aiproxy_merge_server_config(apr_pool_t *p, void *base, void *add);
void *aiproxy_create_dir_config(apr_pool_t *p, char *dir);
void *aiproxy_merge_dir_config(apr_pool_t *p, void *base, void *add);

/* Reads secrets and keys, resolves providers, checks prices; a message
 * naming the directive when the configuration cannot work. p is pconf. */
const char *aiproxy_config_finish(apr_pool_t *p, server_rec *s);

/* Endpoints a route answers when AIProxyEndpoints is not given. */
int aiproxy_endpoint_allowed(const aiproxy_dir_conf_t *d, const char *ep);
const char *aiproxy_endpoint_list(apr_pool_t *p, const aiproxy_dir_conf_t *d);

#endif
