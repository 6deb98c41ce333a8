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

static int wrong_method(request_rec *r, aiproxy_req_t *st, const char *allow)
{
    apr_table_setn(r->headers_out, "Allow", allow);
    return aiproxy_handler_fail(r, st, HTTP_METHOD_NOT_ALLOWED,
                                "method_not_allowed",
                                apr_psprintf(r->pool, "Use %s here.", allow));
}

static int store_down(request_rec *r, aiproxy_req_t *st, const char *err)
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
static const char *json_money(apr_pool_t *p, int has, aiproxy_money_t m)
{
    return has ? apr_pstrcat(p, "\"", aiproxy_money_format(p, m), "\"", NULL)
               : "null";
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
        return wrong_method(r, st, "GET");
    for (i = 0; i < d->nelts; i++)
        APR_ARRAY_PUSH(quoted, const char *) =
            aiproxy_json_quote(r->pool, APR_ARRAY_IDX(d, i, const char *));
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_psprintf(r->pool,
                  "{\"client_id\":%s,\"allowed_domains\":[%s],"
                  "\"require_hosted_domain\":%s}",
                  st->g->google_client_id
                  ? aiproxy_json_quote(r->pool, st->g->google_client_id)
                  : "null",
                  apr_array_pstrcat(r->pool, quoted, ','),
                  st->g->require_hd ? "true" : "false"));
}

/* The credential from ?credential= or a POSTed form (what Google Identity
 * Services sends, with its double-submit CSRF cookie), in *out; the
 * convention of aiproxy_reply.h (DECLINED, or OK once answered). */
static int read_credential(request_rec *r, aiproxy_req_t *st,
                           const char **out)
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

/* Signs a gateway token for email with the newest secret, issued after
 * any revocation (aiproxy_token_issue). */
static int issue_token(request_rec *r, aiproxy_req_t *st, const char *email)
{
    aiproxy_global_t *g = st->g;
    aiproxy_ledger_t *ledger = aiproxy_child_ledger();
    const char *err = "no store connection pool";
    const aiproxy_token_key_t *signer = &APR_ARRAY_IDX(g->token_keys,
        g->token_keys->nelts - 1, aiproxy_token_key_t);
    aiproxy_user_t user;
    char *token;

    if (!ledger || aiproxy_ledger_user(ledger, r->pool, email, &user, &err)
                   != AIPROXY_LEDGER_OK)
        return store_down(r, st, err);
    token = aiproxy_token_issue(r->pool, g->token_keys, email, NULL,
                                apr_time_sec(apr_time_now()), user.revoked_at,
                                g->token_lifetime);
    if (!token) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, AIPLOGNO(04004)
                      "cannot sign a token for %s", email);
        return aiproxy_handler_fail(r, st, HTTP_INTERNAL_SERVER_ERROR,
                                    "signing_failed",
                                    "The token could not be signed.");
    }
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, AIPLOGNO(04005)
                  "issued a token to %s (key id %s)", email, signer->kid
                  ? signer->kid : "none");
    apr_table_setn(r->notes, "aiproxy-email", email);
    return aiproxy_handler_answer(r, st,
                                  HTTP_OK, apr_pstrcat(r->pool, "{\"token\":",
                                      aiproxy_json_quote(r->pool, token),
                                      ",\"email\":",
                                      aiproxy_json_quote(r->pool, email),
                                      "}", NULL));
}

int aiproxy_token_handler(request_rec *r)
{
    aiproxy_req_t *st;
    aiproxy_google_policy_t pol;
    aiproxy_google_identity_t id;
    aiproxy_google_rc_t rc;
    const char *credential = NULL, *why = "", *fetch_error = NULL;

    if (!r->handler || strcmp(r->handler, TOKEN_HANDLER))
        return DECLINED;
    st = aiproxy_handler_begin(r);
    if (!strcmp(last_segment(r), "config"))
        return token_config(r, st);
    if (r->method_number != M_GET && r->method_number != M_POST)
        return wrong_method(r, st, "GET, POST");
    if (read_credential(r, st, &credential) != DECLINED)
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
    return issue_token(r, st, id.email);
}

/* ---- /admin/api -------------------------------------------------------- */

/* The request body as a JSON object, in *out (DECLINED), or OK once
 * answered with an error. */
static int read_json(request_rec *r, aiproxy_req_t *st, aiproxy_json_t **out)
{
    const char *err;
    aiproxy_json_t *v;
    char *body;
    apr_size_t len;
    int rc = aiproxy_body_read(r, BODY_MAX, &body, &len);

    if (rc != OK) {
        return aiproxy_handler_fail(r, st, rc, "invalid_body",
                                    "The body could not be read, or is "
                                    "larger than 64 KiB.");
    }
    v = aiproxy_json_parse(r->pool, body, len, &err);
    if (!v || !aiproxy_json_is_object(v)) {
        return aiproxy_handler_fail(r, st, HTTP_BAD_REQUEST, "invalid_json",
             v ? "The body must be a JSON object."
               : apr_pstrcat(r->pool, "The body is not JSON: ", err, NULL));
    }
    *out = v;
    return DECLINED;
}

static int list_caps(request_rec *r, aiproxy_req_t *st)
{
    apr_array_header_t *rows, *parts;
    const char *err = "";
    int i;

    if (aiproxy_ledger_users(aiproxy_child_ledger(), r->pool, &rows, &err)
        != AIPROXY_LEDGER_OK)
        return store_down(r, st, err);
    parts = apr_array_make(r->pool, rows->nelts, sizeof(const char *));
    for (i = 0; i < rows->nelts; i++) {
        aiproxy_user_row_t *u = &APR_ARRAY_IDX(rows, i, aiproxy_user_row_t);

        APR_ARRAY_PUSH(parts, const char *) = apr_psprintf(r->pool,
            "{\"who\":%s,\"cap\":%s,\"revoked_at\":%s}",
            aiproxy_json_quote(r->pool, u->who),
            json_money(r->pool, u->has_cap, u->cap),
            u->revoked_at > 0 ? apr_psprintf(r->pool, "%" APR_INT64_T_FMT,
                                             u->revoked_at) : "null");
    }
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_psprintf(r->pool,
                  "{\"default_cap\":\"%s\",\"data\":[%s]}",
                  aiproxy_money_format(r->pool, st->g->default_cap),
                  apr_array_pstrcat(r->pool, parts, ',')));
}

static int set_cap(request_rec *r, aiproxy_req_t *st)
{
    aiproxy_json_t *body;
    const char *who = NULL, *why, *err = "";
    aiproxy_money_t cap = 0;
    int has_cap = 0;

    if (read_json(r, st, &body) != DECLINED)
        return OK;
    if ((why = aiproxy_params_cap(r->pool, body, &who, &has_cap, &cap)))
        return aiproxy_handler_fail(r, st, HTTP_BAD_REQUEST,
                                    "invalid_parameter", why);
    if (aiproxy_ledger_set_cap(aiproxy_child_ledger(), r->pool, who, has_cap,
                               cap, &err) != AIPROXY_LEDGER_OK)
        return store_down(r, st, err);
    aiproxy_users_changed();
    ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, r, AIPLOGNO(04008)
                  "%s %s the cap of %s%s%s", st->email,
                  has_cap ? "set" : "cleared", who, has_cap ? " to $" : "",
                  has_cap ? aiproxy_money_format(r->pool, cap) : "");
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_psprintf(r->pool,
                                  "{\"who\":%s,\"cap\":%s}",
                                  aiproxy_json_quote(r->pool, who),
                                  json_money(r->pool, has_cap, cap)));
}

static int revoke_user(request_rec *r, aiproxy_req_t *st)
{
    aiproxy_json_t *body;
    const char *email, *err = "";
    apr_int64_t at;

    if (read_json(r, st, &body) != DECLINED)
        return OK;
    email = aiproxy_json_string(aiproxy_json_get(body, "email"));
    if (!email || !aiproxy_params_who(email, 0))
        return aiproxy_handler_fail(r, st, HTTP_BAD_REQUEST,
                                    "invalid_parameter",
                                    "email must be an email address.");
    email = aiproxy_params_lower(r->pool, email);
    if (aiproxy_ledger_revoke(aiproxy_child_ledger(), r->pool, email,
                              apr_time_sec(apr_time_now()), &at, &err)
        != AIPROXY_LEDGER_OK)
        return store_down(r, st, err);
    aiproxy_users_changed();
    ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, r, AIPLOGNO(04009)
                  "%s revoked the tokens of %s", st->email, email);
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_psprintf(r->pool,
                                  "{\"email\":%s,\"revoked_at\":%"
                                  APR_INT64_T_FMT "}",
                                  aiproxy_json_quote(r->pool, email), at));
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
        return store_down(r, st, err);
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

/* The caller's own month (the dashboard also learns from a 200 here that
 * the caller is an admin). */
static int me(request_rec *r, aiproxy_req_t *st, const aiproxy_user_t *user)
{
    const char *month = aiproxy_month_of(r->pool, r->request_time);
    const char *err = "";
    aiproxy_money_t cap = aiproxy_policy_cap(user, st->g->default_cap);
    aiproxy_month_row_t m = { NULL, NULL, 0, 0, 0 };
    apr_array_header_t *rows;

    if (aiproxy_ledger_months(aiproxy_child_ledger(), r->pool, month,
                              st->email, NULL, 0, 1, &rows, &err)
        != AIPROXY_LEDGER_OK)
        return store_down(r, st, err);
    if (rows->nelts)
        m = APR_ARRAY_IDX(rows, 0, aiproxy_month_row_t);
    return aiproxy_handler_answer(r, st, HTTP_OK, apr_psprintf(r->pool,
                  "{\"email\":%s,\"admin\":true,\"month\":\"%s\","
                  "\"spent\":\"%s\",\"reserved\":\"%s\",\"requests\":%"
                  APR_INT64_T_FMT ",\"cap\":\"%s\",\"remaining\":\"%s\"}",
                  aiproxy_json_quote(r->pool, st->email), month,
                  aiproxy_money_format(r->pool, m.spent),
                  aiproxy_money_format(r->pool, m.reserved), m.requests,
                  aiproxy_money_format(r->pool, cap),
                  aiproxy_money_format(r->pool,
                                       m.spent + m.reserved < cap
                                       ? cap - m.spent - m.reserved : 0)));
}

int aiproxy_admin_api_handler(request_rec *r)
{
    aiproxy_req_t *st;
    aiproxy_user_t user;
    const char *what;
    int get, post;

    if (!r->handler || strcmp(r->handler, ADMIN_HANDLER))
        return DECLINED;
    st = aiproxy_handler_begin(r);
    /* Who first, so that nothing here answers anyone without a token. */
    if (aiproxy_identify(r, st, AIPROXY_API_OPENAI, &user) != DECLINED)
        return aiproxy_reply_handler(r);
    apr_table_setn(r->notes, "aiproxy-email", st->email);
    if (!apr_hash_get(st->g->admins, st->email, APR_HASH_KEY_STRING))
        return aiproxy_handler_fail(r, st, HTTP_FORBIDDEN, "not_admin",
                                    "Only administrators may use the admin "
                                    "API.");
    what = last_segment(r);
    get = r->method_number == M_GET;
    post = r->method_number == M_POST || r->method_number == M_PUT;
    if (!strcmp(what, "usage"))
        return get ? aiproxy_usage_list(r, st) : wrong_method(r, st, "GET");
    if (!strcmp(what, "caps"))
        return get ? list_caps(r, st) : post ? set_cap(r, st)
               : wrong_method(r, st, "GET, PUT, POST");
    if (!strcmp(what, "revoke"))
        return r->method_number == M_POST ? revoke_user(r, st)
               : wrong_method(r, st, "POST");
    if (!strcmp(what, "daily"))
        return get ? daily(r, st) : wrong_method(r, st, "GET");
    if (!strcmp(what, "me"))
        return get ? me(r, st, &user) : wrong_method(r, st, "GET");
    return aiproxy_handler_fail(r, st, HTTP_NOT_FOUND, "unknown_url",
                                "Admin endpoints: usage, caps, revoke, daily, "
                                "me.");
}
