/* Who is calling: the token (verified once per child and remembered),
 * then the user's settings from the store (remembered for
 * AIProxyUserCacheTTL). Used by admission and by every handler that needs
 * a caller. */
#include <string.h>
#include <apr_strings.h>

#include "httpd.h"
#include "http_log.h"
#include "http_protocol.h"

#include "aiproxy_identify.h"
#include "aiproxy_memo.h"
#include "aiproxy_reply.h"
#include "aiproxy_counters.h"
#include "aiproxy_token.h"

APLOG_USE_MODULE(aiproxy);

static const char *bearer_token(request_rec *r, aiproxy_api_t api,
                                int *malformed)
{
    const char *auth = apr_table_get(r->headers_in, "Authorization");
    const char *other = aiproxy_api(api)->token_header;

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
    /* An SDK's own key header (the Anthropic SDK's x-api-key). */
    return other ? apr_table_get(r->headers_in, other) : NULL;
}

/* Verified tokens: the HMAC and the claims' parse cost more than a store
 * round trip's client side, and a student sends the same token all month.
 * Keyed by the token's exact bytes, so a hit is a token this child has
 * verified with the same secrets (a restart, which changes them, starts new
 * children); exp and nbf are checked again. */
static aiproxy_memo_t *token_memo;
/* User settings, for AIProxyUserCacheTTL seconds or until this server's
 * admin API changes a cap or a revocation (aiproxy_users_changed). */
static aiproxy_memo_t *user_memo;

typedef struct {
    aiproxy_user_t user;
    apr_uint32_t generation;
} user_entry_t;

#define USER_MEMO_MAX 4096

void aiproxy_identify_child_init(apr_pool_t *p, server_rec *s)
{
    aiproxy_global_t *g = aiproxy_global(s);

    token_memo = aiproxy_memo_create(p, (apr_size_t)g->token_memo);
    user_memo = g->user_memo_ttl > 0 ? aiproxy_memo_create(p, USER_MEMO_MAX)
                                     : NULL;
}

/* A remembered verification is the claims (their pointers unused)
 * followed by the email and its NUL, then the course and its NUL (empty:
 * none). */
static const char *verify_token(request_rec *r, aiproxy_global_t *g,
                                const char *token, aiproxy_claims_t *c)
{
    apr_int64_t now = apr_time_sec(apr_time_now());
    aiproxy_claims_t *e;
    const char *why;
    apr_size_t len, n, k;

    e = aiproxy_memo_get(token_memo, r->pool, token, 0, &len);
    if (e && len > sizeof(*e)) {
        *c = *e;
        c->email = (const char *)(e + 1);
        c->course = c->email + strlen(c->email) + 1;
        if (!*c->course)
            c->course = NULL;
        return aiproxy_token_check_time(c, now, g->token_leeway);
    }
    why = aiproxy_token_verify_keys(r->pool, token, g->token_keys, now,
                                    g->token_leeway, g->token_max, c);
    if (why || !token_memo)
        return why;
    n = strlen(c->email) + 1;
    k = c->course ? strlen(c->course) + 1 : 1;
    e = apr_palloc(r->pool, sizeof(*e) + n + k);
    *e = *c;
    memcpy(e + 1, c->email, n);
    memcpy((char *)(e + 1) + n, c->course ? c->course : "", k);
    aiproxy_memo_put(token_memo, token, 0, e, sizeof(*e) + n + k);
    return NULL;
}

static aiproxy_ledger_rc_t user_settings(request_rec *r, aiproxy_global_t *g,
                                         aiproxy_ledger_t *ledger,
                                         const char *email,
                                         aiproxy_user_t *user,
                                         const char **err)
{
    apr_int64_t now_ms = apr_time_as_msec(apr_time_now());
    apr_uint32_t gen = aiproxy_users_generation();
    user_entry_t *e, fresh;
    aiproxy_ledger_rc_t rc;
    apr_size_t len;

    e = aiproxy_memo_get(user_memo, r->pool, email,
                         now_ms - (apr_int64_t)g->user_memo_ttl * 1000, &len);
    if (e && len == sizeof(*e) && e->generation == gen) {
        *user = e->user;
        return AIPROXY_LEDGER_OK;
    }
    rc = aiproxy_ledger_user(ledger, r->pool, email, user, err);
    if (rc == AIPROXY_LEDGER_OK && user_memo) {
        /* The generation read before the lookup: a change made during it
         * makes this entry stale at once rather than hiding the change. */
        fresh.user = *user;
        fresh.generation = gen;
        aiproxy_memo_put(user_memo, email, now_ms, &fresh, sizeof(fresh));
    }
    return rc;
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
    why = verify_token(r, g, token, &claims);
    if (why) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, AIPLOGNO(01102)
                      "token refused: %s", why);
        return aiproxy_reply_error(r, st, HTTP_UNAUTHORIZED,
                                   "invalid_request_error", "invalid_api_key",
                                   apr_pstrcat(r->pool, "Invalid token: ", why,
                                               ".", NULL));
    }
    st->email = claims.email;
    st->course = claims.course;
    if (!ledger || user_settings(r, g, ledger, st->email, user, &err)
                   != AIPROXY_LEDGER_OK)
    {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, AIPLOGNO(01106)
                      "usage store unavailable for the caller's settings: %s",
                      err);
        return aiproxy_reply_store_down(r, st);
    }
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
    return DECLINED;
}
