/* The response cache, through httpd's socache providers (shmcb on one host,
 * redis or memcache across hosts): no cache storage code of our own. */
#ifndef AIPROXY_CACHE_H
#define AIPROXY_CACHE_H

#include "httpd.h"
#include "http_config.h"

#define AIPROXY_CACHE_KEY_LEN 20

/* AIProxyCache PROVIDER[:ARGS] */
const char *aiproxy_cache_set(cmd_parms *cmd, void *dc, const char *arg);
void aiproxy_cache_pre_config(apr_pool_t *pconf);
/* Opens the configured cache, whose entries live ttl_seconds (0: no
 * cache). */
int aiproxy_cache_post_config(apr_pool_t *pconf, apr_pool_t *ptemp,
                              server_rec *s, int ttl_seconds);
void aiproxy_cache_child_init(apr_pool_t *p);
/* A short description for stats ("shmcb", "redis"), NULL without cache. */
const char *aiproxy_cache_name(void);

/* SHA-1 of provider, endpoint, query and body. */
const unsigned char *aiproxy_cache_key(apr_pool_t *p, const char *provider,
                                       const char *endpoint, const char *args,
                                       const char *body, apr_size_t len);

/* 1 on a hit, with the stored content type and body in r's pool. */
int aiproxy_cache_get(request_rec *r, const unsigned char *key,
                      const char **ctype, const char **body, apr_size_t *len);
void aiproxy_cache_put(request_rec *r, const unsigned char *key,
                       const char *ctype, const char *body, apr_size_t len);

#endif
