/* Admission: everything decided before a request may reach a provider.
 * Route and endpoint, token, body checks, model, then the reservation. */
#include <string.h>
#include <apr_strings.h>

#include "httpd.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"

#include "aiproxy_request.h"
#include "aiproxy_token.h"

APLOG_USE_MODULE(aiproxy);

#define METER_FILTER "AIPROXY_METER"

aiproxy_req_t *aiproxy_req_get(request_rec *r)
{
    return ap_get_module_config(r->request_config, &aiproxy_module);
}

const char *aiproxy_month_of(apr_pool_t *p, apr_time_t t)
{
    apr_time_exp_t tm;

    apr_time_exp_gmt(&tm, t);
    return apr_psprintf(p, "%04d-%02d", tm.tm_year + 1900, tm.tm_mon + 1);
}

/* Seconds until the next calendar month starts, UTC. */
static apr_int64_t seconds_to_next_month(apr_time_t now)
{
    apr_time_exp_t tm;
    apr_time_t next;

    apr_time_exp_gmt(&tm, now);
    tm.tm_mon += 1;
    if (tm.tm_mon == 12) {
        tm.tm_mon = 0;
        tm.tm_year += 1;
    }
    tm.tm_mday = 1;
    tm.tm_hour = tm.tm_min = tm.tm_sec = tm.tm_usec = 0;
    tm.tm_gmtoff = 0;
    if (apr_time_exp_gmt_get(&next, &tm) != APR_SUCCESS)
        return 86400;
    return apr_time_sec(next - now) + 1;
}

static const char *bearer_token(request_rec *r, aiproxy_api_t api,
                                int *malformed)
{
    const char *auth = apr_table_get(r->headers_in, "Authorization");

    *malformed = 0;
    if (auth) {
        if (strncasecmp(auth, "Bearer ", 7)) {
            *malformed = 1;
            return NULL;
        }
        auth += 7;
        while (*auth == ' ')
            auth++;
        return *auth ? auth : NULL;
    }
    /* The Anthropic SDK sends its key as x-api-key. */
    if (api == AIPROXY_API_ANTHROPIC)
        return apr_table_get(r->headers_in, "x-api-key");
    return NULL;
}

static int store_unavailable(request_rec *r, aiproxy_req_t *st,
                             const char *err)
{
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, AIPLOGNO(01101)
                  "usage store unavailable: %s", err);
    return aiproxy_reply_error(r, st, HTTP_SERVICE_UNAVAILABLE, "server_error",
                               "store_unavailable", "The usage store is "
                               "unavailable; please retry shortly.");
}

int aiproxy_identify(request_rec *r, aiproxy_req_t *st, aiproxy_api_t api,
                     aiproxy_user_t *user)
{
    aiproxy_global_t *g = st->g;
    aiproxy_ledger_t *ledger = aiproxy_child_ledger();
    aiproxy_claims_t claims;
    const char *token, *why, *err = "no store connection pool";
    int malformed;

    token = bearer_token(r, api, &malformed);
    if (!token)
        return aiproxy_reply_error(r, st, HTTP_UNAUTHORIZED,
                                   "invalid_request_error", "invalid_api_key",
                                   malformed ? "Authorization must be "
                                   "'Bearer <token>'." : "Missing token: send "
                                   "'Authorization: Bearer <token>'.");
    why = aiproxy_token_verify(r->pool, token, g->secret, g->secret_len,
                               apr_time_sec(apr_time_now()), g->token_leeway,
                               g->token_max, &claims);
    if (why) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, AIPLOGNO(01102)
                      "token refused: %s", why);
        return aiproxy_reply_error(r, st, HTTP_UNAUTHORIZED,
                                   "invalid_request_error", "invalid_api_key",
                                   apr_pstrcat(r->pool, "Invalid token: ", why,
                                               ".", NULL));
    }
    st->email = claims.email;
    if (!ledger || aiproxy_ledger_user(ledger, r->pool, st->email, user,
                                       &err) != AIPROXY_LEDGER_OK)
        return store_unavailable(r, st, err);
    /* Revocation outlaws every token issued up to that second. */
    if (user->revoked_at > 0 && (!claims.has_iat ||
                                 claims.iat <= user->revoked_at)) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, AIPLOGNO(01103)
                      "revoked token for %s", st->email);
        return aiproxy_reply_error(r, st, HTTP_UNAUTHORIZED,
                                   "invalid_request_error", "token_revoked",
                                   "Invalid token: this token was revoked; "
                                   "sign in again.");
    }
    return OK;
}

/* The endpoint below the route's <Location>: "chat/completions". */
static const char *endpoint_of(request_rec *r, const aiproxy_dir_conf_t *d)
{
    apr_size_t n = strlen(d->prefix);
    const char *rel = r->uri;
    char *ep;
    apr_size_t len;

    if (!strncmp(rel, d->prefix, n))
        rel += n;
    while (*rel == '/')
        rel++;
    ep = apr_pstrdup(r->pool, rel);
    len = strlen(ep);
    while (len && ep[len - 1] == '/')
        ep[--len] = '\0';
    return ep;
}

static int model_allowed(const aiproxy_dir_conf_t *d, const aiproxy_global_t *g,
                         const char *model)
{
    if (d->models)
        return apr_hash_get(d->models, model, APR_HASH_KEY_STRING) != NULL;
    return apr_hash_get(g->prices, model, APR_HASH_KEY_STRING) != NULL;
}

static const char *model_list(apr_pool_t *p, const aiproxy_dir_conf_t *d,
                              const aiproxy_global_t *g)
{
    apr_hash_index_t *hi;
    const char *out = NULL;

    if (d->model_list)
        return apr_array_pstrcat(p, d->model_list, ',');
    for (hi = apr_hash_first(p, g->prices); hi; hi = apr_hash_next(hi))
        out = out ? apr_pstrcat(p, out, ",", apr_hash_this_key(hi), NULL)
                  : apr_hash_this_key(hi);
    return out ? out : "";
}

/* OpenAI reports usage in a chat stream only when asked: ask for it, so no
 * stream is ever billed at $0. The meter hides the extra chunk from a
 * client that did not ask. Any other body goes on byte for byte. */
static char *with_stream_usage(request_rec *r, aiproxy_req_t *st, char *body,
                               apr_size_t *len)
{
    char *rewritten;

    *len = st->body_len;
    if (!st->info.stream || st->info.include_usage ||
        st->dir->provider->api != AIPROXY_API_OPENAI ||
        strcmp(st->endpoint, "chat/completions"))
        return body;
    if (aiproxy_json_set_nested_true(st->info.root, "stream_options",
                                     "include_usage") != 0 ||
        !(rewritten = aiproxy_json_dump(r->pool, st->info.root, len))) {
        *len = st->body_len;
        return body;
    }
    return rewritten;
}

/* The body: unencoded, within the limit, JSON with an allowed model. */
static int admit_body(request_rec *r, aiproxy_req_t *st)
{
    const char *enc = apr_table_get(r->headers_in, "Content-Encoding");
    const char *why;
    char *body;
    apr_size_t len;
    int rc;

    if (enc && strcasecmp(enc, "identity"))
        return aiproxy_reply_error(r, st, HTTP_UNSUPPORTED_MEDIA_TYPE,
                                   "invalid_request_error",
                                   "unsupported_encoding", "Request bodies "
                                   "must not be content-encoded.");
    rc = aiproxy_body_read(r, st->g->max_body, &body, &st->body_len);
    if (rc == HTTP_REQUEST_ENTITY_TOO_LARGE)
        return aiproxy_reply_error(r, st, rc, "invalid_request_error",
                                   "request_too_large", apr_psprintf(r->pool,
                                   "Request body is larger than %" APR_OFF_T_FMT
                                   " bytes.", st->g->max_body));
    if (rc != OK)
        return aiproxy_reply_error(r, st, rc, "invalid_request_error",
                                   "invalid_body", "The request body could "
                                   "not be read.");
    if ((why = aiproxy_inspect_request(r->pool, body, st->body_len, &st->info)))
        return aiproxy_reply_error(r, st, HTTP_BAD_REQUEST,
                                   "invalid_request_error", "invalid_request",
                                   why);
    if (!model_allowed(st->dir, st->g, st->info.model))
        return aiproxy_reply_error(r, st, HTTP_FORBIDDEN,
                                   "invalid_request_error", "model_not_allowed",
                                   apr_psprintf(r->pool, "Model %s is not "
                                                "allowed here. Allowed: %s.",
                                                st->info.model,
                                                model_list(r->pool, st->dir,
                                                           st->g)));
    st->price = apr_hash_get(st->g->prices, st->info.model,
                             APR_HASH_KEY_STRING);
    body = with_stream_usage(r, st, body, &len);
    aiproxy_body_replay(r, body, len);
    return DECLINED;
}

static int over_cap(request_rec *r, aiproxy_req_t *st, aiproxy_money_t cap)
{
    apr_time_t now = apr_time_now();
    aiproxy_money_t used = st->month_state.spent + st->month_state.reserved;

    apr_table_setn(r->headers_out, "Retry-After",
                   apr_psprintf(r->pool, "%" APR_INT64_T_FMT,
                                seconds_to_next_month(now)));
    aiproxy_meter_set_headers(r, r->headers_out, 0, &st->month_state);
    return aiproxy_reply_error(r, st, HTTP_TOO_MANY_REQUESTS,
                               "insufficient_quota", "insufficient_quota",
                               apr_psprintf(r->pool, "On %s you used $%s, "
                                            "exceeding $%s. This request "
                                            "may cost up to $%s.", st->month,
                                            aiproxy_money_format(r->pool, used),
                                            aiproxy_money_format(r->pool, cap),
                                            aiproxy_money_format(r->pool,
                                                                 st->reserved)));
}

static int reserve(request_rec *r, aiproxy_req_t *st, const aiproxy_user_t *u)
{
    aiproxy_global_t *g = st->g;
    apr_int64_t max_out = st->info.max_output >= 0 ? st->info.max_output
                                                   : g->default_max_tokens;
    apr_int64_t now_ms = apr_time_as_msec(apr_time_now());
    const char *err = "";
    aiproxy_ledger_rc_t rc;

    st->cap = u->has_cap ? u->cap : g->default_cap;
    /* Every body byte could be a token: a ceiling, never an undercount. */
    st->reserved = aiproxy_cost_ceiling(st->price, (apr_int64_t)st->body_len,
                                        max_out);
    rc = aiproxy_ledger_reserve(aiproxy_child_ledger(), r->pool, st->email,
                                st->month, st->id, st->reserved, st->cap,
                                now_ms, now_ms + (apr_int64_t)g->hold_ttl * 1000,
                                &st->month_state, &err);
    if (rc == AIPROXY_LEDGER_DOWN)
        return store_unavailable(r, st, err);
    if (rc == AIPROXY_LEDGER_OVER_CAP)
        return over_cap(r, st, st->cap);
    st->held = 1;
    return DECLINED;
}

static void hand_to_proxy(request_rec *r, aiproxy_req_t *st)
{
    const aiproxy_provider_t *pv = st->dir->provider;
    const char *key = APR_ARRAY_IDX(pv->auth, 0, const char *);

    r->filename = apr_pstrcat(r->pool, "proxy:", pv->base_url, "/",
                              st->endpoint, NULL);
    r->handler = "proxy-server";
    r->proxyreq = PROXYREQ_REVERSE;
    /* The caller's credentials stay here; the server's key goes on. */
    apr_table_unset(r->headers_in, "Authorization");
    apr_table_unset(r->headers_in, "api-key");
    apr_table_unset(r->headers_in, "x-api-key");
    apr_table_unset(r->headers_in, "OpenAI-Organization");
    apr_table_unset(r->headers_in, "OpenAI-Project");
    apr_table_unset(r->headers_in, "Cookie");
    /* Usage must be readable in the response. */
    apr_table_unset(r->headers_in, "Accept-Encoding");
    if (pv->api == AIPROXY_API_ANTHROPIC)
        apr_table_setn(r->headers_in, "x-api-key", key);
    else
        apr_table_setn(r->headers_in, "Authorization", key);
    ap_add_output_filter(METER_FILTER, NULL, r, r->connection);
}

int aiproxy_admit(request_rec *r)
{
    aiproxy_dir_conf_t *d = ap_get_module_config(r->per_dir_config,
                                                 &aiproxy_module);
    aiproxy_req_t *st;
    aiproxy_user_t user;
    int rc, is_models;

    if (!d || !d->provider || r->main || r->prev)
        return DECLINED;
    st = apr_pcalloc(r->pool, sizeof(*st));
    st->g = aiproxy_global(r->server);
    st->dir = d;
    st->start_ms = apr_time_as_msec(r->request_time);
    ap_set_module_config(r->request_config, &aiproxy_module, st);
    st->endpoint = endpoint_of(r, d);
    if (!*st->endpoint || !aiproxy_endpoint_allowed(d, st->endpoint))
        return aiproxy_reply_error(r, st, HTTP_NOT_FOUND,
                                   "invalid_request_error", "unknown_url",
                                   apr_psprintf(r->pool, "Unknown endpoint "
                                                "%s. Allowed below %s: %s.",
                                                r->uri, d->prefix,
                                                aiproxy_endpoint_list(r->pool,
                                                                      d)));
    is_models = !strcmp(st->endpoint, "models");
    if (r->method_number != (is_models ? M_GET : M_POST))
        return aiproxy_reply_error(r, st, HTTP_METHOD_NOT_ALLOWED,
                                   "invalid_request_error",
                                   "method_not_allowed",
                                   apr_psprintf(r->pool, "Use %s for %s.",
                                                is_models ? "GET" : "POST",
                                                st->endpoint));
    if ((rc = aiproxy_identify(r, st, d->provider->api, &user)) != OK ||
        st->reply_status)
        return rc;
    if (!is_models) {
        st->month = aiproxy_month_of(r->pool, r->request_time);
        st->id = aiproxy_next_request_id(r->pool);
        if (admit_body(r, st) != DECLINED || reserve(r, st, &user) != DECLINED)
            return OK;
        apr_table_setn(r->notes, "aiproxy-request-id", st->id);
    }
    apr_table_setn(r->notes, "aiproxy-email", st->email);
    hand_to_proxy(r, st);
    return OK;
}
