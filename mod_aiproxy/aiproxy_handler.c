/* What the gateway's own handlers (/health, /targets, /api/stats, /usage,
 * the admin API) share: their request state, the method check, the admin
 * check and the answer. */
#include <apr_strings.h>

#include "httpd.h"
#include "http_config.h"
#include "http_protocol.h"

#include "aiproxy_handler.h"
#include "aiproxy_identify.h"
#include "aiproxy_reply.h"

APLOG_USE_MODULE(aiproxy);

aiproxy_req_t *aiproxy_handler_begin(request_rec *r)
{
    aiproxy_req_t *st = apr_pcalloc(r->pool, sizeof(*st));

    st->g = aiproxy_global(r->server);
    ap_set_module_config(r->request_config, &aiproxy_module, st);
    return st;
}

int aiproxy_handler_answer(request_rec *r, aiproxy_req_t *st, int status,
                           const char *body)
{
    aiproxy_reply_json(r, st, status, body);
    return aiproxy_reply_handler(r);
}

int aiproxy_handler_fail(request_rec *r, aiproxy_req_t *st, int status,
                         const char *code, const char *message)
{
    aiproxy_reply_error(r, st, status, status >= 500 ? "server_error"
                        : "invalid_request_error", code, message);
    return aiproxy_reply_handler(r);
}

int aiproxy_handler_only_get(request_rec *r, aiproxy_req_t *st)
{
    if (r->method_number == M_GET)
        return DECLINED;
    return aiproxy_handler_fail(r, st, HTTP_METHOD_NOT_ALLOWED,
                                "method_not_allowed", "Use GET.");
}

int aiproxy_handler_admin(request_rec *r, aiproxy_req_t *st, const char *what)
{
    aiproxy_user_t user;

    /* No secret, no admin: a server without routes serves these to no
     * one rather than to everyone. */
    if (!st->g->token_keys)
        return aiproxy_handler_fail(r, st, HTTP_FORBIDDEN, "not_admin",
                                    apr_psprintf(r->pool, "No AIProxyToken"
                                                 "Secret is configured: no one "
                                                 "may read %s.", what));
    if (aiproxy_identify(r, st, AIPROXY_API_OPENAI, &user) != DECLINED)
        return aiproxy_reply_handler(r);
    if (apr_hash_get(st->g->admins, st->email, APR_HASH_KEY_STRING))
        return DECLINED;
    return aiproxy_handler_fail(r, st, HTTP_FORBIDDEN, "not_admin",
                                apr_psprintf(r->pool, "Only administrators "
                                             "may read %s.", what));
}

