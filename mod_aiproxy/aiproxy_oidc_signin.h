/* Sign-in through mod_auth_openidc: SetHandler aiproxy-oidc in a location
 * protected by AuthType openid-connect issues the gateway token for the
 * user it authenticated, from the claims it passes in the environment. */
#ifndef AIPROXY_OIDC_SIGNIN_H
#define AIPROXY_OIDC_SIGNIN_H

#include "httpd.h"
#include "http_config.h"

#include "aiproxy_config.h"

/* Directive defaults, setters and the start-up check (naming the
 * directive when the configuration cannot work). */
void aiproxy_oidc_signin_defaults(apr_pool_t *p, aiproxy_global_t *g);
const char *aiproxy_oidc_signin_set_flag(cmd_parms *cmd, void *dc, int on);
const char *aiproxy_oidc_signin_set_location(cmd_parms *cmd, void *dc,
                                             const char *path,
                                             const char *dashboard);
const char *aiproxy_oidc_signin_set_signout(cmd_parms *cmd, void *dc,
                                            const char *url);
const char *aiproxy_oidc_signin_set_claim(cmd_parms *cmd, void *dc,
                                          const char *kind, const char *name);
const char *aiproxy_oidc_signin_set_course_groups(cmd_parms *cmd, void *dc,
                                                  const char *prefix);
const char *aiproxy_oidc_signin_add_tenant(cmd_parms *cmd, void *dc,
                                           const char *tid);
const char *aiproxy_oidc_signin_finish(aiproxy_global_t *g);

/* SetHandler aiproxy-oidc */
int aiproxy_oidc_signin_handler(request_rec *r);

#endif
