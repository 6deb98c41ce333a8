/* Sign-in (/token: a Google ID token in, a gateway token out) and the
 * admin API (/admin/api/...). */
#ifndef AIPROXY_ADMIN_H
#define AIPROXY_ADMIN_H

#include "httpd.h"
#include "aiproxy_json.h"
#include "aiproxy_req.h"
#include "aiproxy_scope.h"

/* Per process: libcurl and the cache of Google's keys. */
void aiproxy_admin_child_init(apr_pool_t *p, server_rec *s);
/* SetHandler aiproxy-token */
int aiproxy_token_handler(request_rec *r);
/* SetHandler aiproxy-admin-api */
int aiproxy_admin_api_handler(request_rec *r);

/* ---- For the admin API's other files (aiproxy_admin_*.c) ----
 * Each answers and returns OK, or returns DECLINED to go on. */
int aiproxy_admin_wrong_method(request_rec *r, aiproxy_req_t *st,
                               const char *allow);
int aiproxy_admin_store_down(request_rec *r, aiproxy_req_t *st,
                             const char *err);
/* The body as a JSON object (admin bodies are at most 64 KiB). */
int aiproxy_admin_read_json(request_rec *r, aiproxy_req_t *st,
                            aiproxy_json_t **out);
/* The raw body, at most the same 64 KiB (413 beyond). */
int aiproxy_admin_read_body(request_rec *r, aiproxy_req_t *st, char **body,
                            apr_size_t *len);
/* A USD amount as a JSON string, or null. */
const char *aiproxy_admin_json_money(apr_pool_t *p, int has,
                                     aiproxy_money_t m);
/* A month's spent, reserved and requests as a JSON object (NULL: none). */
const char *aiproxy_admin_month_json(apr_pool_t *p, const aiproxy_month_t *m);
/* Signs a token for email (and course, NULL: none) after any revocation:
 * DECLINED with *token and *exp (0: none), or OK once answered. */
int aiproxy_admin_sign(request_rec *r, aiproxy_req_t *st, const char *email,
                       const char *course, apr_int64_t lifetime,
                       const char **token, apr_int64_t *exp);
/* Sign-in's answer: a token for email with the newest secret, issued
 * after any revocation, for course (NULL: their only course, if one),
 * which they must be in; JSON {token, email, course}. Returns OK. */
int aiproxy_admin_issue(request_rec *r, aiproxy_req_t *st, const char *email,
                        const char *course);
/* Appends the audit entry of an action that succeeded: who and role from
 * sc; before and after are JSON texts (NULL: null). A store that fails
 * here is logged: the action itself is done. */
void aiproxy_admin_audit(request_rec *r, const aiproxy_scope_t *sc,
                         const char *action, const char *target,
                         const char *course, const char *before,
                         const char *after);

#endif
