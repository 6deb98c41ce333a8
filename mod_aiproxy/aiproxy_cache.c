#include <string.h>
#include <apr_sha1.h>
#include <apr_strings.h>

#include "httpd.h"
#include "http_log.h"
#include "ap_provider.h"
#include "ap_socache.h"
#include "util_mutex.h"

#include "aiproxy_cache.h"
#include "aiproxy.h"

APLOG_USE_MODULE(aiproxy);

#define MUTEX_TYPE "aiproxy-cache"
/* A first read buffer fits model lists and small embeddings; a larger
 * entry is read again with the room it needs. */
#define FIRST_READ (64 * 1024)
#define MAX_ENTRY (16 * 1024 * 1024)

typedef struct aiproxy_cache {
    const char *name;
    const ap_socache_provider_t *provider;
    ap_socache_instance_t *instance;
    apr_global_mutex_t *mutex;
} aiproxy_cache_t;

/* The one cache (AIProxyCache is global-only) and its lifetime
 * (AIProxyCacheTTL), as the configuration being read sets them. */
static aiproxy_cache_t *configured;
static int ttl;

const char *aiproxy_cache_set(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    const char *colon = ap_strchr_c(arg, ':');
    aiproxy_cache_t *c;

    (void)dc;
    if (err)
        return err;
    c = apr_pcalloc(cmd->pool, sizeof(*c));
    c->name = colon ? apr_pstrmemdup(cmd->pool, arg, colon - arg) : arg;
    c->provider = ap_lookup_provider(AP_SOCACHE_PROVIDER_GROUP, c->name,
                                     AP_SOCACHE_PROVIDER_VERSION);
    if (!c->provider)
        return apr_psprintf(cmd->pool, "AIProxyCache: unknown socache "
                            "provider '%s' (load mod_socache_%s)", c->name,
                            c->name);
    err = c->provider->create(&c->instance, colon ? colon + 1 : NULL,
                              cmd->temp_pool, cmd->pool);
    if (err)
        return apr_pstrcat(cmd->pool, "AIProxyCache: ", err, NULL);
    configured = c;
    return NULL;
}

void aiproxy_cache_pre_config(apr_pool_t *pconf)
{
    /* A configuration read again starts without a cache. */
    configured = NULL;
    ttl = 0;
    ap_mutex_register(pconf, MUTEX_TYPE, NULL, APR_LOCK_DEFAULT, 0);
}

static apr_status_t cache_destroy(void *data)
{
    aiproxy_cache_t *c = data;

    c->provider->destroy(c->instance, NULL);
    return APR_SUCCESS;
}

int aiproxy_cache_post_config(apr_pool_t *pconf, apr_pool_t *ptemp,
                              server_rec *s, int ttl_seconds)
{
    aiproxy_cache_t *c = configured;
    struct ap_socache_hints hints = { 64, 16384, 300 * APR_USEC_PER_SEC };
    apr_status_t rv;

    (void)ptemp;
    ttl = ttl_seconds;
    if (!c || ttl <= 0)
        return OK;
    if (c->provider->flags & AP_SOCACHE_FLAG_NOTMPSAFE) {
        rv = ap_global_mutex_create(&c->mutex, NULL, MUTEX_TYPE, NULL, s,
                                    pconf, 0);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, AIPLOGNO(01501)
                         "AIProxyCache: cannot create the cache mutex");
            return !OK;
        }
    }
    rv = c->provider->init(c->instance, "aiproxy", &hints, s, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, AIPLOGNO(01502)
                     "AIProxyCache: cannot initialise %s", c->name);
        return !OK;
    }
    apr_pool_cleanup_register(pconf, c, cache_destroy, apr_pool_cleanup_null);
    return OK;
}

void aiproxy_cache_child_init(apr_pool_t *p)
{
    aiproxy_cache_t *c = configured;

    if (c && c->mutex)
        apr_global_mutex_child_init(&c->mutex,
                                    apr_global_mutex_lockfile(c->mutex), p);
}

const char *aiproxy_cache_name(void)
{
    return configured && ttl > 0 ? configured->name : NULL;
}

const unsigned char *aiproxy_cache_key(apr_pool_t *p, const char *provider,
                                       const char *endpoint, const char *args,
                                       const char *body, apr_size_t len)
{
    unsigned char *key = apr_palloc(p, AIPROXY_CACHE_KEY_LEN);
    apr_sha1_ctx_t ctx;

    apr_sha1_init(&ctx);
    /* NUL separators keep ("ab","c") and ("a","bc") apart. */
    apr_sha1_update_binary(&ctx, (const unsigned char *)provider,
                           strlen(provider) + 1);
    apr_sha1_update_binary(&ctx, (const unsigned char *)endpoint,
                           strlen(endpoint) + 1);
    apr_sha1_update_binary(&ctx, (const unsigned char *)(args ? args : ""),
                           strlen(args ? args : "") + 1);
    apr_sha1_update_binary(&ctx, (const unsigned char *)body, len);
    apr_sha1_final(key, &ctx);
    return key;
}

static apr_status_t locked_retrieve(aiproxy_cache_t *c, request_rec *r,
                                    const unsigned char *key,
                                    unsigned char *buf, unsigned int *len)
{
    apr_status_t rv;

    if (c->mutex && apr_global_mutex_lock(c->mutex) != APR_SUCCESS)
        return APR_EGENERAL;
    rv = c->provider->retrieve(c->instance, r->server, key,
                               AIPROXY_CACHE_KEY_LEN, buf, len, r->pool);
    if (c->mutex)
        apr_global_mutex_unlock(c->mutex);
    return rv;
}

int aiproxy_cache_get(request_rec *r, const unsigned char *key,
                      const char **ctype, const char **body, apr_size_t *len)
{
    aiproxy_cache_t *c = configured;
    unsigned int room = FIRST_READ, n = room;
    unsigned char *buf = apr_palloc(r->pool, room + 1);
    apr_status_t rv = locked_retrieve(c, r, key, buf, &n);
    char *nl;

    if (rv == APR_ENOSPC) {
        room = MAX_ENTRY;
        n = room;
        buf = apr_palloc(r->pool, room + 1);
        rv = locked_retrieve(c, r, key, buf, &n);
    }
    if (rv != APR_SUCCESS || !(nl = memchr(buf, '\n', n)))
        return 0;
    buf[n] = '\0';
    *ctype = apr_pstrmemdup(r->pool, (char *)buf, (char *)nl - (char *)buf);
    *body = nl + 1;
    *len = n - (apr_size_t)((unsigned char *)nl + 1 - buf);
    return 1;
}

void aiproxy_cache_put(request_rec *r, const unsigned char *key,
                       const char *ctype, const char *body, apr_size_t len)
{
    aiproxy_cache_t *c = configured;
    apr_size_t clen = strlen(ctype);
    unsigned char *value;
    apr_status_t rv;

    if (len + clen + 1 > MAX_ENTRY || strchr(ctype, '\n'))
        return;
    value = apr_palloc(r->pool, clen + 1 + len);
    memcpy(value, ctype, clen);
    value[clen] = '\n';
    memcpy(value + clen + 1, body, len);
    if (c->mutex && apr_global_mutex_lock(c->mutex) != APR_SUCCESS)
        return;
    rv = c->provider->store(c->instance, r->server, key, AIPROXY_CACHE_KEY_LEN,
                            apr_time_now() + apr_time_from_sec(ttl),
                            value, (unsigned int)(clen + 1 + len), r->pool);
    if (c->mutex)
        apr_global_mutex_unlock(c->mutex);
    if (rv != APR_SUCCESS)
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, rv, r, AIPLOGNO(01503)
                      "response not cached (%" APR_SIZE_T_FMT " bytes)", len);
}
