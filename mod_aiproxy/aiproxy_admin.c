/* /token: exchanges a Google ID token for a gateway token.
 * /admin/api/...: what the dashboard and its admins do (caps, revocation,
 * usage, cost per day), behind admin tokens. Every answer is JSON. */
#include <string.h>
#include <apr_lib.h>
#include <apr_strings.h>

#include "httpd.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_cookies.h"
#include "util_script.h"

#include "aiproxy_admin.h"
#include "aiproxy_fetch.h"
#include "aiproxy_google.h"
#include "aiproxy_params.h"
#include "aiproxy_json.h"
#include "aiproxy_identify.h"
#include "aiproxy_body.h"
#include "aiproxy_policy.h"
#include "aiproxy_reply.h"
#include "aiproxy_req.h"
#include "aiproxy_counters.h"
#include "aiproxy_handler.h"
#include "aiproxy_usage.h"
#include "aiproxy_token.h"
#include "aiproxy_scope.h"
#include "aiproxy_course.h"
#include "aiproxy_ledger_audit.h"
#include "aiproxy_ledger_course.h"
#include "aiproxy_ledger_course_admin.h"
#include "aiproxy_admin_course.h"
#include "aiproxy_admin_member.h"
#include "aiproxy_admin_members.h"
#include "aiproxy_admin_user.h"
#include "aiproxy_admin_report.h"

APLOG_USE_MODULE(aiproxy);

#define TOKEN_HANDLER "aiproxy-token"
#define ADMIN_HANDLER "aiproxy-admin-api"
#define BODY_MAX 65536
#define JWKS_TIMEOUT_MS 5000
#define CREDENTIAL_MAX 16384

static aiproxy_google_keys_t *google_keys;

static apr_status_t fetch_cleanup(void *data)
{
    (void)data;
    google_keys = NULL;
    aiproxy_fetch_cleanup();
    return APR_SUCCESS;
}

void aiproxy_admin_child_init(apr_pool_t *p, server_rec *s)
{
    aiproxy_global_t *g = aiproxy_global(s);
    const char *err = NULL;

    if (!g->google_client_id)
        return;
    if (aiproxy_fetch_init() != 0) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, AIPLOGNO(04001)
                     "cannot initialise libcurl: Google sign-in is off");
        return;
    }
    apr_pool_cleanup_register(p, NULL, fetch_cleanup, apr_pool_cleanup_null);
    google_keys = aiproxy_google_keys_create(p, g->google_jwks_url,
                                             aiproxy_fetch_get,
                                             JWKS_TIMEOUT_MS,
                                             g->google_jwks_refetch, &err);
    if (!google_keys)
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, AIPLOGNO(04002)
                     "Google sign-in is off: %s", err);
}

/* ---- Shared helpers ---------------------------------------------------- */

int aiproxy_admin_wrong_method(request_rec *r, aiproxy_req_t *st,
                               const char *allow)
{
    apr_table_setn(r->headers_out, "Allow", allow);
    return aiproxy_handler_fail(r, st, HTTP_METHOD_NOT_ALLOWED,
                                "method_not_allowed",
                                apr_psprintf(r->pool, "Use %s here.", allow));
}

int aiproxy_admin_store_down(request_rec *r, aiproxy_req_t *st,
                             const char *err)
{
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, AIPLOGNO(04003)
                  "usage store unavailable: %s", err);
    aiproxy_reply_store_down(r, st);
    return aiproxy_reply_handler(r);
}

/* The last segment of the path: "caps" for /admin/api/caps/. */
static const char *last_segment(request_rec *r)
{
    const char *u = r->uri;
    apr_size_t end = strlen(u), start;

    while (end && u[end - 1] == '/')
        end--;
    for (start = end; start && u[start - 1] != '/'; start--)
        ;
    return apr_pstrmemdup(r->pool, u + start, end - start);
}

/* A USD amount as a JSON string, or null. */
const char *aiproxy_admin_json_money(apr_pool_t *p, int has,
                                     aiproxy_money_t m)
{
    return has ? apr_pstrcat(p, "\"", aiproxy_money_format(p, m), "\"", NULL)
               : "null";
}

const char *aiproxy_admin_month_json(apr_pool_t *p, const aiproxy_month_t *m)
{
    static const aiproxy_month_t none;

    if (!m)
        m = &none;
    return apr_psprintf(p, "{\"spent\":\"%s\",\"reserved\":\"%s\","
                        "\"requests\":%" APR_INT64_T_FMT "}",
                        aiproxy_money_format(p, m->spent),
                        aiproxy_money_format(p, m->reserved), m->requests);
}

/* ---- /token ------------------------------------------------------------ */

/* The credential must never reach the access log, which records the
 * request line: keep only the path. */
static void redact_query(request_rec *r)
{
    if (!r->args)
        return;
    r->the_request = apr_psprintf(r->pool, "%s %s?[redacted] %s", r->method,
                                  r->uri, r->protocol);
    r->args = NULL;
    r->unparsed_uri = r->uri;
}

static int token_config(request_rec *r, aiproxy_req_t *st)
{
    const apr_array_header_t *d = st->g->allowed_domains;
    apr_array_header_t *quoted = apr_array_make(r->pool, d->nelts,
                                                sizeof(const char *));
    int i;

    if (r->method_number != M_GET)
        return aiproxy_admin_wrong_method(r, st, "GET");
    for (i = 0; i < d->nelts; i++)
        APR_ARRAY_PUSH(quoted, const char *) =
            aiproxy_json_quote(r->pool, APR_ARRAY_IDX(d, i, const char *));
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_psprintf(r->pool,
                  "{\"client_id\":%s,\"allowed_domains\":[%s],"
                  "\"require_hosted_domain\":%s,\"oidc_signin\":%s,"
                  "\"oidc_signout\":%s}",
                  st->g->google_client_id
                  ? aiproxy_json_quote(r->pool, st->g->google_client_id)
                  : "null",
                  apr_array_pstrcat(r->pool, quoted, ','),
                  st->g->require_hd ? "true" : "false",
                  st->g->oidc_signin
                  ? aiproxy_json_quote(r->pool, st->g->oidc_signin)
                  : "null",
                  st->g->oidc_signout
                  ? aiproxy_json_quote(r->pool, st->g->oidc_signout)
                  : "null"));
}

/* The credential from ?credential= or a POSTed form (what Google Identity
 * Services sends, with its double-submit CSRF cookie), in *out; the
 * convention of aiproxy_reply.h (DECLINED, or OK once answered). */
static int read_credential(request_rec *r, aiproxy_req_t *st,
                           const char **out, const char **course)
{
    apr_table_t *fields = NULL;
    const char *credential;

    if (r->method_number == M_GET)
        fields = aiproxy_params_parse(r->pool, r->args);
    redact_query(r);
    if (r->method_number != M_GET) {
        const char *ct = apr_table_get(r->headers_in, "Content-Type");
        const char *csrf, *cookie = NULL;
        char *body;
        apr_size_t len;
        int rc;

        if (!ct || strncasecmp(ct, "application/x-www-form-urlencoded", 33)) {
            return aiproxy_handler_fail(r, st, HTTP_UNSUPPORTED_MEDIA_TYPE,
                                        "unsupported_media_type",
                                        "POST the credential as application/"
                                        "x-www-form-urlencoded.");
        }
        rc = aiproxy_body_read(r, BODY_MAX, &body, &len);
        if (rc != OK) {
            return aiproxy_handler_fail(r, st, rc, "invalid_body",
                                        "The form could not be read, or is "
                                        "too large.");
        }
        fields = aiproxy_params_parse(r->pool, body);
        csrf = apr_table_get(fields, "g_csrf_token");
        if (csrf && (ap_cookie_read(r, "g_csrf_token", &cookie, 0) !=
                     APR_SUCCESS || !cookie || strcmp(cookie, csrf))) {
            return aiproxy_handler_fail(r, st,
                                        HTTP_BAD_REQUEST, "csrf_mismatch",
                 "The g_csrf_token field does not match its cookie.");
        }
    }
    credential = apr_table_get(fields, "credential");
    if (!credential || !*credential) {
        return aiproxy_handler_fail(r, st, HTTP_BAD_REQUEST,
                                    "missing_credential", "Missing "
                                    "credential: send the Google ID token as "
                                    "credential=<token>.");
    }
    *out = credential;
    *course = apr_table_get(fields, "course");
    if (*course && !**course)
        *course = NULL;
    if (*course && !aiproxy_course_id_valid(*course))
        return aiproxy_handler_fail(r, st, HTTP_BAD_REQUEST,
                                    "invalid_parameter", "course must be a "
                                    "course id: 1 to 32 of a-z, 0-9, - and _.");
    return DECLINED;
}

static int google_status(aiproxy_google_rc_t rc)
{
    switch (rc) {
    case AIPROXY_GOOGLE_MALFORMED:
        return HTTP_BAD_REQUEST;
    case AIPROXY_GOOGLE_EMAIL_UNVERIFIED:
    case AIPROXY_GOOGLE_HOSTED_DOMAIN_REQUIRED:
    case AIPROXY_GOOGLE_DOMAIN_NOT_ALLOWED:
        return HTTP_FORBIDDEN;
    case AIPROXY_GOOGLE_KEYS_UNAVAILABLE:
        return HTTP_SERVICE_UNAVAILABLE;
    default:
        return HTTP_UNAUTHORIZED;
    }
}

int aiproxy_admin_sign(request_rec *r, aiproxy_req_t *st, const char *email,
                       const char *course, apr_int64_t lifetime,
                       const char **token, apr_int64_t *exp)
{
    aiproxy_global_t *g = st->g;
    aiproxy_ledger_t *ledger = aiproxy_child_ledger();
    const char *err = "no store connection pool";
    const aiproxy_token_key_t *signer;
    apr_int64_t now = apr_time_sec(apr_time_now()), iat = now;
    aiproxy_user_t user;

    if (!g->token_keys || !g->token_keys->nelts)
        return aiproxy_handler_fail(r, st, HTTP_SERVICE_UNAVAILABLE,
                                    "signing_not_configured", "No "
                                    "AIProxyTokenSecret: no tokens to sign.");
    signer = &APR_ARRAY_IDX(g->token_keys, g->token_keys->nelts - 1,
                            aiproxy_token_key_t);
    if (!ledger || aiproxy_ledger_user(ledger, r->pool, email, &user, &err)
                   != AIPROXY_LEDGER_OK)
        return aiproxy_admin_store_down(r, st, err);
    *token = aiproxy_token_issue(r->pool, g->token_keys, email, course, now,
                                 user.revoked_at, lifetime);
    if (!*token) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, AIPLOGNO(04004)
                      "cannot sign a token for %s", email);
        return aiproxy_handler_fail(r, st, HTTP_INTERNAL_SERVER_ERROR,
                                    "signing_failed",
                                    "The token could not be signed.");
    }
    /* As aiproxy_token_issue dates it. */
    if (user.revoked_at >= iat)
        iat = user.revoked_at + 1;
    *exp = lifetime > 0 ? iat + lifetime : 0;
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, AIPLOGNO(04005)
                  "issued a token to %s%s%s (key id %s)", email,
                  course ? " for course " : "", course ? course : "",
                  signer->kid ? signer->kid : "none");
    return DECLINED;
}

/* The course of a sign-in's token: the one asked for, which the user must
 * be in; else their only course, if they are in exactly one; else none.
 * DECLINED with *course, or OK once answered. */
static int signin_course(request_rec *r, aiproxy_req_t *st, const char *email,
                         const char **course)
{
    aiproxy_ledger_t *l = aiproxy_child_ledger();
    const char *err = "no store connection pool";
    apr_array_header_t *ids;
    aiproxy_course_t c;
    aiproxy_ledger_rc_t rc;
    aiproxy_money_t cap;
    int member = 0, has_cap;

    if (!l)
        return aiproxy_admin_store_down(r, st, err);
    if (!*course) {
        if (aiproxy_ledger_member_courses(l, r->pool, email, &ids, &err)
            != AIPROXY_LEDGER_OK)
            return aiproxy_admin_store_down(r, st, err);
        if (ids->nelts == 1)
            *course = APR_ARRAY_IDX(ids, 0, const char *);
        return DECLINED;
    }
    rc = aiproxy_ledger_course_get(l, r->pool, *course, &c, &err);
    if (rc == AIPROXY_LEDGER_OK)
        rc = aiproxy_ledger_is_member(l, r->pool, *course, email, &member,
                                      &has_cap, &cap, &err);
    if (rc == AIPROXY_LEDGER_DOWN)
        return aiproxy_admin_store_down(r, st, err);
    if (!member) {
        aiproxy_reply_error(r, st, HTTP_FORBIDDEN, "permission_error",
                            "not_in_course", apr_psprintf(r->pool, "You are "
                            "not a member of course %s.", *course));
        return aiproxy_reply_handler(r);
    }
    return DECLINED;
}

int aiproxy_admin_issue(request_rec *r, aiproxy_req_t *st, const char *email,
                        const char *course)
{
    const char *token;
    apr_int64_t exp;

    if (signin_course(r, st, email, &course) != DECLINED ||
        aiproxy_admin_sign(r, st, email, course, st->g->token_lifetime,
                           &token, &exp) != DECLINED)
        return OK;
    apr_table_setn(r->notes, "aiproxy-email", email);
    return aiproxy_handler_answer(r, st,
                                  HTTP_OK, apr_pstrcat(r->pool, "{\"token\":",
                                      aiproxy_json_quote(r->pool, token),
                                      ",\"email\":",
                                      aiproxy_json_quote(r->pool, email),
                                      course ? ",\"course\":" : "",
                                      course ? aiproxy_json_quote(r->pool,
                                                                  course)
                                             : "",
                                      "}", NULL));
}

int aiproxy_token_handler(request_rec *r)
{
    aiproxy_req_t *st;
    aiproxy_google_policy_t pol;
    aiproxy_google_identity_t id;
    aiproxy_google_rc_t rc;
    const char *credential = NULL, *why = "", *fetch_error = NULL;
    const char *course = NULL;

    if (!r->handler || strcmp(r->handler, TOKEN_HANDLER))
        return DECLINED;
    st = aiproxy_handler_begin(r);
    if (!strcmp(last_segment(r), "config"))
        return token_config(r, st);
    if (r->method_number != M_GET && r->method_number != M_POST)
        return aiproxy_admin_wrong_method(r, st, "GET, POST");
    if (read_credential(r, st, &credential, &course) != DECLINED)
        return OK;
    if (!st->g->google_client_id || !google_keys || !st->g->token_keys)
        return aiproxy_handler_fail(r, st, HTTP_SERVICE_UNAVAILABLE,
                                    "signin_not_configured", "Google sign-in "
                                    "is not configured on this server.");
    pol.client_id = st->g->google_client_id;
    pol.domains = st->g->allowed_domains;
    pol.require_hd = st->g->require_hd;
    pol.leeway = st->g->token_leeway;
    pol.max_len = CREDENTIAL_MAX;
    rc = aiproxy_google_verify(google_keys, r->pool, credential, &pol,
                               apr_time_sec(apr_time_now()), &id, &why,
                               &fetch_error);
    if (fetch_error)
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, AIPLOGNO(04006)
                      "cannot fetch Google's keys from %s: %s",
                      st->g->google_jwks_url, fetch_error);
    if (rc != AIPROXY_GOOGLE_OK) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, AIPLOGNO(04007)
                      "Google sign-in refused (%s): %s",
                      aiproxy_google_code(rc), why);
        if (rc == AIPROXY_GOOGLE_KEYS_UNAVAILABLE)
            apr_table_setn(r->headers_out, "Retry-After", "30");
        return aiproxy_handler_fail(r, st,
                                    google_status(rc), aiproxy_google_code(rc),
                    apr_pstrcat(r->pool, "Google sign-in refused: ", why, ".",
                                NULL));
    }
    return aiproxy_admin_issue(r, st, id.email, course);
}

/* ---- /admin/api -------------------------------------------------------- */

/* The request body as a JSON object, in *out (DECLINED), or OK once
 * answered with an error. */
int aiproxy_admin_read_body(request_rec *r, aiproxy_req_t *st, char **body,
                            apr_size_t *len)
{
    int rc = aiproxy_body_read(r, BODY_MAX, body, len);

    if (rc != OK)
        return aiproxy_handler_fail(r, st, rc, "invalid_body",
                                    "The body could not be read, or is "
                                    "larger than 64 KiB.");
    return DECLINED;
}

int aiproxy_admin_read_json(request_rec *r, aiproxy_req_t *st,
                            aiproxy_json_t **out)
{
    const char *err;
    aiproxy_json_t *v;
    char *body;
    apr_size_t len;

    if (aiproxy_admin_read_body(r, st, &body, &len) != DECLINED)
        return OK;
    v = aiproxy_json_parse(r->pool, body, len, &err);
    if (!v || !aiproxy_json_is_object(v)) {
        return aiproxy_handler_fail(r, st, HTTP_BAD_REQUEST, "invalid_json",
             v ? "The body must be a JSON object."
               : apr_pstrcat(r->pool, "The body is not JSON: ", err, NULL));
    }
    *out = v;
    return DECLINED;
}

void aiproxy_admin_audit(request_rec *r, const aiproxy_scope_t *sc,
                         const char *action, const char *target,
                         const char *course, const char *before,
                         const char *after)
{
    aiproxy_audit_t e;
    const char *err = "no store connection pool";
    aiproxy_ledger_t *l = aiproxy_child_ledger();

    memset(&e, 0, sizeof(e));
    e.who = sc->email;
    e.role = aiproxy_scope_role_name(sc->role);
    e.action = action;
    e.target = target;
    e.course = course;
    e.before = before;
    e.after = after;
    if (!l || aiproxy_ledger_audit_append(l, r->pool, &e, &err)
              != AIPROXY_LEDGER_OK)
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, AIPLOGNO(04101)
                      "%s's %s of %s was done but not audited: %s",
                      sc->email, action, target, err);
}

/* Reads month (default: this one) and email from the query: DECLINED, or
 * OK once answered with an error. */
static int month_email_args(request_rec *r, aiproxy_req_t *st,
                            const char **month, const char **email)
{
    apr_table_t *args;
    const apr_array_header_t *arr;
    const apr_table_entry_t *e;
    int i;

    *month = aiproxy_month_of(r->pool, r->request_time);
    *email = NULL;
    args = aiproxy_params_parse(r->pool, r->args);
    arr = apr_table_elts(args);
    e = (const apr_table_entry_t *)arr->elts;
    for (i = 0; i < arr->nelts; i++) {
        const char *v = e[i].val ? e[i].val : "";

        if (!strcmp(e[i].key, "month") && aiproxy_params_month(v))
            *month = v;
        else if (!strcmp(e[i].key, "email") &&
                 aiproxy_params_email(r->pool, v, email))
            continue;
        else
            return aiproxy_handler_fail(r, st, HTTP_BAD_REQUEST,
                                        "invalid_parameter", apr_psprintf(
                                        r->pool, "Bad parameter '%s': use "
                                        "month=YYYY-MM and email=ADDRESS.",
                                        e[i].key));
    }
    return DECLINED;
}

static int daily(request_rec *r, aiproxy_req_t *st)
{
    const char *month, *email, *err = "";
    apr_array_header_t *rows, *parts;
    aiproxy_money_t total = 0;
    apr_int64_t requests = 0;
    int i;

    if (month_email_args(r, st, &month, &email) != DECLINED)
        return OK;
    if (aiproxy_ledger_daily(aiproxy_child_ledger(), r->pool, month, email,
                             &rows, &err) != AIPROXY_LEDGER_OK)
        return aiproxy_admin_store_down(r, st, err);
    parts = apr_array_make(r->pool, rows->nelts, sizeof(const char *));
    for (i = 0; i < rows->nelts; i++) {
        aiproxy_day_row_t *d = &APR_ARRAY_IDX(rows, i, aiproxy_day_row_t);

        total += d->cost;
        requests += d->requests;
        APR_ARRAY_PUSH(parts, const char *) = apr_psprintf(r->pool,
            "{\"day\":%s,\"cost\":\"%s\",\"requests\":%" APR_INT64_T_FMT "}",
            aiproxy_json_quote(r->pool, d->day),
            aiproxy_money_format(r->pool, d->cost), d->requests);
    }
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_psprintf(r->pool,
                  "{\"month\":\"%s\",\"email\":%s,\"days\":[%s],"
                  "\"total\":\"%s\",\"requests\":%" APR_INT64_T_FMT "}",
                  month, email ? aiproxy_json_quote(r->pool, email) : "null",
                  apr_array_pstrcat(r->pool, parts, ','),
                  aiproxy_money_format(r->pool, total), requests));
}

int aiproxy_admin_api_handler(request_rec *r)
{
    aiproxy_req_t *st;
    aiproxy_user_t user;
    aiproxy_scope_t sc;
    const char *what;
    int get, post, admin, rc;

    if (!r->handler || strcmp(r->handler, ADMIN_HANDLER))
        return DECLINED;
    st = aiproxy_handler_begin(r);
    /* Who first, so that nothing here answers anyone without a token. */
    if (aiproxy_identify(r, st, AIPROXY_API_OPENAI, &user) != DECLINED)
        return aiproxy_reply_handler(r);
    apr_table_setn(r->notes, "aiproxy-email", st->email);
    if (aiproxy_scope_of(r, st, &sc) != DECLINED)
        return OK;
    admin = sc.role == AIPROXY_ROLE_ADMIN;
    what = last_segment(r);
    get = r->method_number == M_GET;
    post = r->method_number == M_POST || r->method_number == M_PUT;
    /* usage checks its own scope: instructors may name a course. */
    if (!strcmp(what, "usage"))
        return get ? aiproxy_usage_list(r, st)
               : aiproxy_admin_wrong_method(r, st, "GET");
    /* Site-wide: administrators only. */
    if (!strcmp(what, "caps") ||
        !strcmp(what, "daily")) {
        if (!admin)
            return aiproxy_scope_not_admin(r, st);
        if (!strcmp(what, "caps"))
            return get ? aiproxy_admin_caps_list(r, st)
                   : post ? aiproxy_admin_caps_set(r, st, &sc)
                   : aiproxy_admin_wrong_method(r, st, "GET, PUT, POST");
        return get ? daily(r, st) : aiproxy_admin_wrong_method(r, st, "GET");
    }
    if (!strcmp(what, "revoke"))
        return r->method_number == M_POST ? aiproxy_admin_revoke(r, st, &sc)
               : aiproxy_admin_wrong_method(r, st, "POST");
    if (!strcmp(what, "reset"))
        return r->method_number == M_POST ? aiproxy_admin_reset(r, st, &sc)
               : aiproxy_admin_wrong_method(r, st, "POST");
    if ((rc = aiproxy_admin_course(r, st, &sc, what)) != DECLINED ||
        (rc = aiproxy_admin_members(r, st, &sc, what)) != DECLINED ||
        (rc = aiproxy_admin_member(r, st, &sc, &user, what)) != DECLINED ||
        (rc = aiproxy_admin_report(r, st, &sc, what)) != DECLINED)
        return rc;
    return aiproxy_handler_fail(r, st, HTTP_NOT_FOUND, "unknown_url",
                                "Admin endpoints: usage, caps, revoke, daily, "
                                "me, courses, members, roster, reset, tokens, "
                                "audit, requests, models, near, export.");
}
