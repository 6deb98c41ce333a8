/* Who is calling: token, then the user's settings. */
#ifndef AIPROXY_IDENTIFY_H
#define AIPROXY_IDENTIFY_H

#include "aiproxy_req.h"

/* Who is calling: the token from the request headers, then the user's
 * settings from the store (revocation, cap). DECLINED with st->email set
 * to go on; on failure the request is answered (401 or 503, see
 * aiproxy_reply.h's convention) and OK returned. */
int aiproxy_identify(request_rec *r, aiproxy_req_t *st, aiproxy_api_t api,
                     aiproxy_user_t *user);
/* The per-child memos of verified tokens and user settings. */
void aiproxy_identify_child_init(apr_pool_t *p, server_rec *s);

#endif
