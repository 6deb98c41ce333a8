/* What the configuration's files (aiproxy_config.c: server and
 * directory configuration, plain directives and the directive table;
 * aiproxy_config_upstream.c: providers, prices, models; aiproxy_config_route.c:
 * routes and the start-up checks) share. */
#ifndef AIPROXY_CONFIG_INT_H
#define AIPROXY_CONFIG_INT_H

#include "httpd.h"
#include "http_config.h"

#include "aiproxy_config.h"

#define UNSET -1

const char *aiproxy_cfg_global_only(cmd_parms *cmd);
aiproxy_global_t *aiproxy_cfg_global(cmd_parms *cmd);
const char *aiproxy_cfg_int(cmd_parms *cmd, const char *arg,
                                     apr_int64_t min, apr_int64_t max,
                                     apr_int64_t *out);
const char *aiproxy_config_set_provider(cmd_parms *cmd, void *dc,
                                        const char *args);
const char *aiproxy_config_set_price(cmd_parms *cmd, void *dc,
                                     const char *args);
const char *aiproxy_config_add_anthropic_beta(cmd_parms *cmd, void *dc,
                                              const char *beta);
const char *aiproxy_config_add_upstream_header(cmd_parms *cmd, void *dc,
                                               const char *name);
const char *aiproxy_config_add_model_map(cmd_parms *cmd, void *dc,
                                         const char *args);
const char *aiproxy_config_finish_providers(apr_pool_t *p, aiproxy_global_t *g);
const char *aiproxy_config_finish_model_map(apr_pool_t *p, aiproxy_global_t *g);
apr_array_header_t *aiproxy_config_routes(apr_pool_t *pconf);
const char *aiproxy_config_set_route(cmd_parms *cmd, void *dcv,
                                     const char *args);
const char *aiproxy_config_add_endpoint(cmd_parms *cmd, void *dcv,
                                        const char *ep);
const char *aiproxy_config_set_server_context(cmd_parms *cmd, void *dcv,
                                              const char *arg);
const char *aiproxy_config_add_model(cmd_parms *cmd, void *dcv,
                                     const char *model);
const char *aiproxy_config_set_cache_embeddings(cmd_parms *cmd, void *dcv,
                                                int on);

#endif
