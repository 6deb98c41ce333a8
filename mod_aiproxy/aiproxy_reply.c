/* Answers the gateway gives itself, always as JSON. */
#include <apr_strings.h>

#include "httpd.h"
#include "http_protocol.h"
#include "http_request.h"

#include "aiproxy_json.h"
#include "aiproxy_body.h"
#include "aiproxy_reply.h"
#include "aiproxy_req.h"

#define REPLY_HANDLER "aiproxy-reply"

static const char *const reported_headers[] = {
    "cost", "monthlyCost", "monthlyRequests", "costMax", NULL
};

void aiproxy_reply_set_money_headers(request_rec *r, apr_table_t *t,
                                     aiproxy_money_t cost,
                                     const aiproxy_month_t *m)
{
    const char *const *h;

    for (h = reported_headers; *h; h++) {
        apr_table_unset(r->err_headers_out, *h);
        apr_table_unset(t, *h);
    }
    if (cost >= 0)
        apr_table_setn(t, "cost", aiproxy_money_format(r->pool, cost));
    apr_table_setn(t, "monthlyCost", aiproxy_money_format(r->pool, m->spent));
    apr_table_setn(t, "monthlyRequests",
                   apr_psprintf(r->pool, "%" APR_INT64_T_FMT, m->requests));
}

const char *aiproxy_error_body(apr_pool_t *p, const char *type,
                               const char *code, const char *message)
{
    return apr_pstrcat(p, "{\"error\":{\"message\":",
                       aiproxy_json_quote(p, message),
                       ",\"type\":", aiproxy_json_quote(p, type),
                       ",\"param\":null,\"code\":",
                       aiproxy_json_quote(p, code), "}}", NULL);
}

static int route_to_reply(request_rec *r, aiproxy_req_t *st, int status)
{
    st->reply.status = status;
    r->handler = REPLY_HANDLER;
    /* Not a file: keep core's handler and mod_proxy out of it. */
    r->proxyreq = PROXYREQ_NONE;
    r->filename = NULL;
    return OK;
}

int aiproxy_reply_error(request_rec *r, aiproxy_req_t *st, int status,
                        const char *type, const char *code,
                        const char *message)
{
    st->reply.type = type;
    st->reply.code = code;
    st->reply.message = message;
    st->reply.body = NULL;
    return route_to_reply(r, st, status);
}

int aiproxy_reply_store_down(request_rec *r, aiproxy_req_t *st)
{
    return aiproxy_reply_error(r, st, HTTP_SERVICE_UNAVAILABLE, "server_error",
                               "store_unavailable", "The usage store is "
                               "unavailable; please retry shortly.");
}

int aiproxy_reply_json(request_rec *r, aiproxy_req_t *st, int status,
                       const char *body)
{
    st->reply.body = body;
    return route_to_reply(r, st, status);
}

static int large_body_coming(request_rec *r)
{
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    apr_off_t n;
    char *end;

    if (apr_table_get(r->headers_in, "Transfer-Encoding"))
        return 1;
    return cl && apr_strtoff(&n, cl, &end, 10) == APR_SUCCESS &&
           n > AIPROXY_BODY_FREE / 16;
}

int aiproxy_reply_handler(request_rec *r)
{
    aiproxy_req_t *st;
    const char *body;
    apr_size_t len;

    if (strcmp(r->handler, REPLY_HANDLER) || !(st = aiproxy_req_get(r)))
        return DECLINED;
    /* Reading what is left of the body keeps the connection usable; a body
     * never read (Expect: 100-continue) closes it instead, and so does a
     * large one refused before it was read: answered now, not read. */
    if (!st->body_read && large_body_coming(r))
        r->connection->keepalive = AP_CONN_CLOSE;
    ap_discard_request_body(r);
    body = st->reply.body ? st->reply.body
           : aiproxy_error_body(r->pool, st->reply.type, st->reply.code,
                                st->reply.message);
    len = st->reply.has_len ? st->reply.len : strlen(body);
    r->status = st->reply.status;
    ap_set_content_type(r, st->reply.ctype ? st->reply.ctype
                                           : "application/json");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_set_content_length(r, len);
    if (!r->header_only)
        ap_rwrite(body, (int)len, r);
    return OK;
}
