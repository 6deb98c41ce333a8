/* The gateway's own answers, always JSON, and the money headers.
 *
 * The one convention of the gateway's steps (admission, identification,
 * the handlers' checks): a step returns DECLINED to let the request go on,
 * or, when it answered it, what aiproxy_reply_error or aiproxy_reply_json
 * returned (OK): the request is then routed to the reply handler. */
#ifndef AIPROXY_REPLY_H
#define AIPROXY_REPLY_H

#include "aiproxy_req.h"

/* Answers locally: remembers the error and routes the request to our reply
 * handler. Returns OK for the fixups hook to return. */
int aiproxy_reply_error(request_rec *r, aiproxy_req_t *st, int status,
                        const char *type, const char *code,
                        const char *message);
/* The one reply to a store that did not answer: 503 store_unavailable.
 * The caller logs why, with its own tag. */
int aiproxy_reply_store_down(request_rec *r, aiproxy_req_t *st);
/* Answers locally with a ready JSON body. */
int aiproxy_reply_json(request_rec *r, aiproxy_req_t *st, int status,
                       const char *body);
/* An error body in OpenAI's shape. */
const char *aiproxy_error_body(apr_pool_t *p, const char *type,
                               const char *code, const char *message);
int aiproxy_reply_handler(request_rec *r);

/* Sets cost (unless negative), monthlyCost and monthlyRequests. */
void aiproxy_reply_set_money_headers(request_rec *r, apr_table_t *t,
                                     aiproxy_money_t cost,
                                     const aiproxy_month_t *m);

#endif
