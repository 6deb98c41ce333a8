/* Sign-in through mod_auth_openidc. It runs the code flow with the
 * site's identity provider and keeps the session; this handler, in the
 * location it protects, applies the gateway's own rules (verified email,
 * allowed domains, organisation-managed accounts, revocation, course) to
 * the claims it passes and issues the gateway token.
 *
 * Claims are read from r->subprocess_env only: mod_auth_openidc sets it
 * in its check_user_id hook and no client can write it, while request
 * headers of the same names could be forged wherever OIDCPassClaimsAs does
 * not scrub them. */
#include <string.h>
#include <apr_lib.h>
#include <apr_strings.h>

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"

#include "aiproxy_admin.h"
#include "aiproxy_config_int.h"
#include "aiproxy_course.h"
#include "aiproxy_handler.h"
#include "aiproxy_ledger.h"
#include "aiproxy_ledger_course.h"
#include "aiproxy_ledger_course_admin.h"
#include "aiproxy_oidc.h"
#include "aiproxy_oidc_signin.h"
#include "aiproxy_params.h"
#include "aiproxy_req.h"

APLOG_USE_MODULE(aiproxy);

#define OIDC_HANDLER "aiproxy-oidc"
/* mod_auth_openidc's default OIDCClaimPrefix. */
#define CLAIM_PREFIX "OIDC_CLAIM_"

/* Course groups looked at per sign-in: each may cost store round trips. */
#define COURSE_GROUPS_MAX 16

enum { CLAIM_EMAIL, CLAIM_VERIFIED, CLAIM_HD, CLAIM_TID, CLAIM_GROUPS,
       CLAIM_KINDS };
static const char *const kinds[CLAIM_KINDS] = {
    "email", "email_verified", "hd", "tid", "groups"
};

/* ---- Directives -------------------------------------------------------- */

void aiproxy_oidc_signin_defaults(apr_pool_t *p, aiproxy_global_t *g)
{
    int i;

    g->oidc_dashboard = "/admin/";
    for (i = 0; i < CLAIM_KINDS; i++)
        g->oidc_claim[i] = apr_pstrcat(p, CLAIM_PREFIX, kinds[i], NULL);
    g->oidc_tenants = apr_array_make(p, 2, sizeof(const char *));
}

const char *aiproxy_oidc_signin_set_flag(cmd_parms *cmd, void *dc, int on)
{
    const char *err = aiproxy_cfg_global_only(cmd);

    (void)dc;
    if (err)
        return err;
    aiproxy_cfg_global(cmd)->require_managed = on;
    return NULL;
}

/* A local path: it goes into a Location header and the dashboard. */
static int local_path(const char *s)
{
    return s[0] == '/' && s[1] != '/' && s[1] != '\\' &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789/-_.~") == strlen(s);
}

const char *aiproxy_oidc_signin_set_location(cmd_parms *cmd, void *dc,
                                             const char *path,
                                             const char *dashboard)
{
    aiproxy_global_t *g = aiproxy_cfg_global(cmd);
    const char *err = aiproxy_cfg_global_only(cmd);

    (void)dc;
    if (err)
        return err;
    if (!local_path(path) || (dashboard && !local_path(dashboard)))
        return apr_psprintf(cmd->pool, "AIProxyOIDCSignIn: '%s' is not a "
                            "local URL path (/..., of letters, digits and "
                            "/-_.~)", local_path(path) ? dashboard : path);
    g->oidc_signin = path;
    if (dashboard)
        g->oidc_dashboard = dashboard;
    return NULL;
}

/* mod_auth_openidc ends its session at OIDCRedirectURI?logout=URL: a
 * local URL with a query, which the dashboard's sign-out goes to. */
const char *aiproxy_oidc_signin_set_signout(cmd_parms *cmd, void *dc,
                                            const char *url)
{
    const char *err = aiproxy_cfg_global_only(cmd);

    (void)dc;
    if (err)
        return err;
    if (url[0] != '/' || url[1] == '/' || url[1] == '\\' ||
        strspn(url, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                    "0123456789/-_.~?=&%:") != strlen(url))
        return apr_psprintf(cmd->pool, "AIProxyOIDCSignOut: '%s' is not a "
                            "local URL (/path?logout=..., of letters, digits "
                            "and /-_.~?=&%%:)", url);
    aiproxy_cfg_global(cmd)->oidc_signout = url;
    return NULL;
}

const char *aiproxy_oidc_signin_set_claim(cmd_parms *cmd, void *dc,
                                          const char *kind, const char *name)
{
    aiproxy_global_t *g = aiproxy_cfg_global(cmd);
    const char *err = aiproxy_cfg_global_only(cmd);
    int i;

    (void)dc;
    if (err)
        return err;
    for (i = 0; i < CLAIM_KINDS && strcmp(kinds[i], kind); i++)
        ;
    if (i == CLAIM_KINDS)
        return apr_psprintf(cmd->pool, "AIProxyOIDCClaim: '%s' is not one "
                            "of email, email_verified, hd, tid, groups", kind);
    if (!strcmp(name, "-")) {
        if (i == CLAIM_EMAIL)
            return "AIProxyOIDCClaim: email cannot be '-': the token is "
                   "issued to an address";
        g->oidc_claim[i] = NULL;
        return NULL;
    }
    if (!*name || strlen(name) > 64 ||
        strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789_") != strlen(name))
        return apr_psprintf(cmd->pool, "AIProxyOIDCClaim: '%s' is not a "
                            "claim name (letters, digits, _) or '-'", name);
    g->oidc_claim[i] = apr_pstrcat(cmd->pool, CLAIM_PREFIX, name, NULL);
    return NULL;
}

const char *aiproxy_oidc_signin_set_course_groups(cmd_parms *cmd, void *dc,
                                                  const char *prefix)
{
    const char *err = aiproxy_cfg_global_only(cmd);

    (void)dc;
    if (err)
        return err;
    if (!*prefix || strlen(prefix) > 64 || strpbrk(prefix, ", \t\"\\"))
        return apr_psprintf(cmd->pool, "AIProxyOIDCCourseGroups: '%s' is not "
                            "a group prefix (1 to 64 characters, no comma, "
                            "space or quote)", prefix);
    aiproxy_cfg_global(cmd)->oidc_course_groups = prefix;
    return NULL;
}

const char *aiproxy_oidc_signin_add_tenant(cmd_parms *cmd, void *dc,
                                           const char *tid)
{
    const char *err = aiproxy_cfg_global_only(cmd);
    char *t;
    int i;

    (void)dc;
    if (err)
        return err;
    t = apr_pstrdup(cmd->pool, tid);
    ap_str_tolower(t);
    /* A GUID, as Entra names tenants. */
    for (i = 0; t[i]; i++)
        if ((i == 8 || i == 13 || i == 18 || i == 23) ? t[i] != '-'
                                                      : !apr_isxdigit(t[i]))
            break;
    if (i != 36 || t[i])
        return apr_psprintf(cmd->pool, "AIProxyOIDCTenants: '%s' is not a "
                            "tenant ID (a GUID)", tid);
    APR_ARRAY_PUSH(aiproxy_cfg_global(cmd)->oidc_tenants, const char *) = t;
    return NULL;
}

const char *aiproxy_oidc_signin_finish(aiproxy_global_t *g)
{
    /* Safe by default: a site that names its domains means its own
     * accounts, not consumer accounts opened with its addresses. */
    if (g->require_managed == UNSET)
        g->require_managed = g->allowed_domains->nelts > 0 ||
                             g->oidc_tenants->nelts > 0;
    if (g->require_hd == UNSET)
        g->require_hd = g->require_managed;
    if (g->oidc_signin && !ap_find_linked_module("mod_auth_openidc.c"))
        return "AIProxyOIDCSignIn: mod_auth_openidc is not loaded (LoadModule "
               "auth_openidc_module .../mod_auth_openidc.so)";
    return NULL;
}

/* ---- The handler -------------------------------------------------------- */

/* fetch() from the dashboard asks for JSON; a browser's navigation gets
 * pages. Only the form of the answer depends on it, never a check. */
static int wants_json(request_rec *r)
{
    const char *a = apr_table_get(r->headers_in, "Accept");

    return a && ap_strstr_c(a, "application/json") != NULL;
}

static void no_store(request_rec *r)
{
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    apr_table_setn(r->headers_out, "Referrer-Policy", "no-referrer");
}

/* A refusal: OpenAI-shaped JSON for the dashboard, a plain page for a
 * person. Returns OK. */
static int refuse(request_rec *r, aiproxy_req_t *st, int json, int status,
                  const char *code, const char *message)
{
    aiproxy_global_t *g = st->g;

    no_store(r);
    if (json)
        return aiproxy_handler_fail(r, st, status, code, message);
    r->status = status;
    apr_table_setn(r->headers_out, "Content-Security-Policy",
                   "default-src 'none'; style-src 'unsafe-inline'; "
                   "base-uri 'none'; form-action 'none'");
    apr_table_setn(r->headers_out, "X-Content-Type-Options", "nosniff");
    ap_set_content_type(r, "text/html; charset=utf-8");
    ap_rprintf(r, "<!doctype html>\n<html lang=\"en\"><head>"
               "<meta charset=\"utf-8\"><title>Sign-in refused</title>"
               "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:"
               "40em;margin:3em auto;padding:0 1em}</style></head><body>\n"
               "<h1>Sign-in refused</h1>\n<p id=\"reason\" data-code=\"%s\">"
               "%s</p>\n<p><a href=\"%s\">Back to the dashboard</a></p>\n"
               "</body></html>\n", code, ap_escape_html2(r->pool, message, 0),
               ap_escape_html2(r->pool, g->oidc_dashboard, 1));
    return OK;
}

static const char *claim(request_rec *r, const char *name)
{
    const char *v = name ? apr_table_get(r->subprocess_env, name) : NULL;

    return v && *v ? v : NULL;
}

/* When the provider authenticated the user (auth_time, else the ID
 * token's iat), in seconds; 0 unknown. */
static apr_int64_t auth_time(request_rec *r)
{
    const char *v = claim(r, CLAIM_PREFIX "auth_time");
    char *end;
    apr_int64_t t;

    if (!v)
        v = claim(r, CLAIM_PREFIX "iat");
    if (!v)
        return 0;
    t = apr_strtoi64(v, &end, 10);
    return *end || t < 0 ? 0 : t;
}

/* Enrols email in each existing course that the groups claim names with
 * the AIProxyOIDCCourseGroups prefix (mod_auth_openidc joins an array's
 * values with commas): the provider's groups are the class lists. At most
 * COURSE_GROUPS_MAX such groups per sign-in; unknown courses are skipped.
 * 0, or -1 when the store failed (*err). */
static int enrol_from_groups(request_rec *r, aiproxy_ledger_t *l,
                             const char *email, const char **err)
{
    aiproxy_global_t *g = aiproxy_global(r->server);
    const char *groups = claim(r, g->oidc_claim[CLAIM_GROUPS]);
    apr_size_t plen;
    char *list, *grp, *last;
    int seen = 0;

    if (!g->oidc_course_groups || !groups)
        return 0;
    plen = strlen(g->oidc_course_groups);
    list = apr_pstrdup(r->pool, groups);
    for (grp = apr_strtok(list, ",", &last); grp && seen < COURSE_GROUPS_MAX;
         grp = apr_strtok(NULL, ",", &last)) {
        apr_array_header_t *who;
        aiproxy_course_t c;
        aiproxy_ledger_rc_t rc;
        const char *id;
        int added = 0;

        if (strncmp(grp, g->oidc_course_groups, plen) ||
            !aiproxy_course_id_valid(grp + plen))
            continue;
        id = grp + plen;
        seen++;
        rc = aiproxy_ledger_course_get(l, r->pool, id, &c, err);
        if (rc == AIPROXY_LEDGER_NOT_FOUND)
            continue;
        if (rc != AIPROXY_LEDGER_OK)
            return -1;
        who = apr_array_make(r->pool, 1, sizeof(const char *));
        APR_ARRAY_PUSH(who, const char *) = email;
        if (aiproxy_ledger_members_add(l, r->pool, id, who,
                                       "identity provider",
                                       apr_time_as_msec(apr_time_now()),
                                       &added, err) != AIPROXY_LEDGER_OK)
            return -1;
        if (added)
            ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, r, AIPLOGNO(04504)
                          "%s enrolled in course %s by the group %s of their "
                          "identity provider", email, id, grp);
    }
    return 0;
}

int aiproxy_oidc_signin_handler(request_rec *r)
{
    aiproxy_req_t *st;
    aiproxy_global_t *g;
    aiproxy_oidc_claims_t c;
    aiproxy_oidc_policy_t pol;
    aiproxy_oidc_rc_t rc;
    aiproxy_ledger_t *l;
    aiproxy_user_t user;
    const char *at, *email = NULL, *why = "", *course, *err = "no store "
               "connection pool";
    apr_table_t *args;
    int json;

    if (!r->handler || strcmp(r->handler, OIDC_HANDLER))
        return DECLINED;
    st = aiproxy_handler_begin(r);
    g = st->g;
    json = wants_json(r);
    if (r->method_number != M_GET)
        return aiproxy_admin_wrong_method(r, st, "GET");
    at = ap_auth_type(r);
    if (!at || strcasecmp(at, "openid-connect") || !r->user) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, AIPLOGNO(04500)
                      "%s: SetHandler aiproxy-oidc needs AuthType "
                      "openid-connect and Require valid-user here", r->uri);
        return refuse(r, st, json, HTTP_INTERNAL_SERVER_ERROR,
                      "signin_not_configured", "This sign-in location is not "
                      "protected by mod_auth_openidc.");
    }
    args = aiproxy_params_parse(r->pool, r->args);
    course = apr_table_get(args, "course");
    if (course && !*course)
        course = NULL;
    if (course && !aiproxy_course_id_valid(course))
        return refuse(r, st, json, HTTP_BAD_REQUEST, "invalid_parameter",
                      "course must be a course id: 1 to 32 of a-z, 0-9, - "
                      "and _.");
    c.email = claim(r, g->oidc_claim[CLAIM_EMAIL]);
    c.email_verified = claim(r, g->oidc_claim[CLAIM_VERIFIED]);
    c.hd = claim(r, g->oidc_claim[CLAIM_HD]);
    c.tid = claim(r, g->oidc_claim[CLAIM_TID]);
    pol.domains = g->allowed_domains;
    pol.tenants = g->oidc_tenants;
    pol.check_verified = g->oidc_claim[CLAIM_VERIFIED] != NULL;
    pol.require_managed = g->require_managed;
    rc = aiproxy_oidc_check(r->pool, &c, &pol, &email, &why);
    if (rc != AIPROXY_OIDC_OK) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, AIPLOGNO(04501)
                      "sign-in of %s refused (%s): %s", r->user,
                      aiproxy_oidc_code(rc), why);
        return refuse(r, st, json, HTTP_FORBIDDEN, aiproxy_oidc_code(rc),
                      apr_pstrcat(r->pool, "Sign-in refused: ", why, ".",
                                  NULL));
    }
    apr_table_setn(r->notes, "aiproxy-email", email);
    /* A revocation ends every sign-in made before it, the provider's
     * session here too: the user must authenticate again. */
    l = aiproxy_child_ledger();
    if (!l || aiproxy_ledger_user(l, r->pool, email, &user, &err)
              != AIPROXY_LEDGER_OK) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, AIPLOGNO(04502)
                      "usage store unavailable: %s", err);
        return refuse(r, st, json, HTTP_SERVICE_UNAVAILABLE,
                      "store_unavailable", "The usage store is unavailable; "
                      "try again in a minute.");
    }
    if (user.revoked_at > 0 && auth_time(r) <= user.revoked_at) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, AIPLOGNO(04503)
                      "sign-in of %s refused: revoked after the provider "
                      "authenticated them", email);
        return refuse(r, st, json, HTTP_FORBIDDEN, "token_revoked",
                      "Sign-in refused: your access was revoked after you "
                      "signed in. Sign out of your identity provider, then "
                      "sign in again.");
    }
    if (enrol_from_groups(r, l, email, &err) != 0) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, AIPLOGNO(04505)
                      "usage store unavailable: %s", err);
        return refuse(r, st, json, HTTP_SERVICE_UNAVAILABLE,
                      "store_unavailable", "The usage store is unavailable; "
                      "try again in a minute.");
    }
    no_store(r);
    if (json)
        return aiproxy_admin_issue(r, st, email, course);
    /* A browser goes back to the dashboard, which asks here for the token
     * with fetch(): the token is never in a URL, a page or a log. */
    apr_table_setn(r->headers_out, "Location",
                   apr_pstrcat(r->pool, g->oidc_dashboard, "?signin=oidc",
                               course ? "&course=" : "",
                               course ? course : "", NULL));
    return HTTP_SEE_OTHER;
}
