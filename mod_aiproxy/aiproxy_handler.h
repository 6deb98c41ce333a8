/* What the gateway's own handlers share. */
#ifndef AIPROXY_HANDLER_H
#define AIPROXY_HANDLER_H

#include "aiproxy_req.h"

/* A request state for a handler (no route, no body). */
aiproxy_req_t *aiproxy_handler_begin(request_rec *r);
/* Answers with a ready JSON body; returns OK for the handler to return. */
int aiproxy_handler_answer(request_rec *r, aiproxy_req_t *st, int status,
                           const char *body);
/* Answers an error in OpenAI's shape (type from the status). */
int aiproxy_handler_fail(request_rec *r, aiproxy_req_t *st, int status,
                         const char *code, const char *message);
/* The checks follow aiproxy_reply.h's convention: DECLINED to go on, OK
 * when they answered (the reply already sent). */
/* GET only: else 405. */
int aiproxy_handler_only_get(request_rec *r, aiproxy_req_t *st);
/* An administrator's token (or a server without tokens): else 401 or
 * 403. */
int aiproxy_handler_admin(request_rec *r, aiproxy_req_t *st,
                          const char *what);

#endif
