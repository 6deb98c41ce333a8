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
    /* Shared by every child, so placed in the shared memory that
     * aiproxy_counters_post_config makes (and only there): */
    apr_uint32_t *turn;            /* key rotation */
    apr_time_t *rest_until;        /* per key: failed, left alone till then */
    struct aiproxy_key_health *health; /* per key: failures */
} aiproxy_provider_t;

/* One way to serve a public model: a provider and the model's name there. */
typedef struct {
    aiproxy_provider_t *provider;
    const char *provider_name;
    const char *upstream_model;
} aiproxy_target_t;

typedef enum {
    AIPROXY_ROUTE_FIXED = 0,       /* AIProxyRoute NAME */
    AIPROXY_ROUTE_PATH,            /* AIProxyRoute path: /{provider}/v1/... */
    AIPROXY_ROUTE_MODEL            /* AIProxyRoute model: by the body's model */
} aiproxy_route_kind_t;


/* Server-wide settings: every directive here is global-only, so all virtual
 * hosts share one store, one secret, one price list. */
typedef struct {
    const char *store_uri;
    const char *store_db;
    int store_timeout_ms;
    apr_array_header_t *secret_specs; /* aiproxy_secret_spec_t, in order */
    apr_array_header_t *token_keys; /* aiproxy_token_key_t, the same order:
                                       the last signs; NULL when no route
                                       needs them */
    int token_leeway;
    apr_size_t token_max;
    int token_memo;                 /* verified tokens kept per child; 0: off */
    int user_memo_ttl;              /* seconds a child reuses user settings */
    apr_hash_t *providers;          /* name -> aiproxy_provider_t */
    apr_hash_t *prices;             /* model -> aiproxy_price_t */
    aiproxy_money_t default_cap;
    apr_hash_t *admins;             /* email -> "" */
    apr_off_t max_body;
    apr_off_t request_memory;       /* a body's parse may cost at most this */
    apr_off_t child_memory;         /* large bodies and parses, per child */
    apr_int64_t default_max_tokens; /* written when a request has no
                                       limit; 0: the model's max_output */
    apr_hash_t *anthropic_betas;    /* anthropic-beta values passed on */
    int hold_ttl;                   /* seconds */
    int drain_timeout;              /* seconds a stream is read on after its
                                       client went */
    /* Google sign-in and the tokens /token issues (aiproxy_admin.c). */
    const char *google_client_id;   /* NULL: sign-in is off */
    const char *google_jwks_url;
    int google_jwks_refetch;        /* seconds between unknown-kid fetches */
    apr_array_header_t *allowed_domains; /* lower-case; empty: any */
    int require_hd;                 /* -1 unset: as require_managed */
    /* Sign-in through mod_auth_openidc (aiproxy_oidc_signin.c). */
    int require_managed;            /* -1 unset: on when domains are set */
    const char *oidc_signin;        /* its location; NULL: not offered */
    const char *oidc_dashboard;     /* where a browser goes once signed in */
    const char *oidc_signout;       /* mod_auth_openidc's logout URL; NULL:
                                       sign-out ends only the dashboard's */
    const char *oidc_claim[5];      /* environment names: email,
                                       email_verified (NULL: unchecked), hd,
                                       tid, groups */
    const char *oidc_course_groups; /* group prefix that enrols in the
                                       course named by the rest; NULL: off */
    apr_array_header_t *oidc_tenants; /* lower-case Entra tenant IDs */
    apr_int64_t token_lifetime;     /* seconds; 0: issued tokens carry no exp */
    apr_hash_t *model_map;          /* public model -> array of aiproxy_target_t */
    apr_array_header_t *model_order;/* public models in AIProxyModel order */
    int rest_seconds;
    int max_attempts;
    int cache_ttl;                  /* seconds; 0 disables */
    int rate_limit;                 /* requests per window per user; 0 off */
    int rate_window;                /* seconds */
    int free_rate_limit;            /* the same for the free endpoints */
    int free_rate_window;
    const char *region;
    apr_array_header_t *upstream_headers; /* client request headers passed
                                             on beyond the built-in list */
    int record_retention;           /* days request records are kept; 0:
                                       for ever */
    /* Budget leases (aiproxy_lease.c). */
    aiproxy_money_t lease_size;     /* 0: a store hold per request */
    int lease_flush_ms;
    int lease_idle;                 /* seconds */
    int lease_ttl;                  /* seconds */
    int lease_slots;                /* users a host leases for at once */
    const char *host_id;            /* NULL: the machine's hostname */
    /* Threshold alerts (aiproxy_alert.c). */
    const char *alert_webhook;      /* NULL: no alerts */
    apr_array_header_t *alert_thresholds; /* int percentages, ascending */
    int alert_interval;             /* seconds between scans */
} aiproxy_global_t;

/* Per <Location>: a gateway route. */
typedef struct {
    const char *prefix;               /* the <Location> path */
    const char *provider_name;        /* NULL: not a route */
    aiproxy_route_kind_t kind;
    aiproxy_provider_t *provider;     /* resolved at start-up (FIXED) */
    int cache_embeddings;             /* -1 unset, 0 off, 1 on */
    apr_array_header_t *endpoints;    /* NULL: every endpoint of the API */
    apr_hash_t *models;               /* AIProxyModels; NULL: none given */
    apr_array_header_t *model_list;   /* the same, in order, for listings */
    int any_model;                    /* AIProxyModels *: every priced (or,
                                         by model, mapped) model */
    apr_hash_t *path_providers;       /* by-path: providers reachable */
    int server_context;               /* AIProxyServerContext: -1 unset,
                                         0 refuse, 1 reserve */
    int metrics_public;               /* AIProxyMetricsPublic: -1 unset,
                                         0 admin token, 1 httpd's Require */
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

/* Endpoints a route answers: AIProxyEndpoints, else every endpoint of the
 * API the route's provider (or, for by-path routes, pv) speaks. */
int aiproxy_endpoint_allowed(const aiproxy_dir_conf_t *d,
                             const aiproxy_provider_t *pv, const char *ep);
const char *aiproxy_endpoint_list(apr_pool_t *p, const aiproxy_dir_conf_t *d,
                                  const aiproxy_provider_t *pv);

#endif
