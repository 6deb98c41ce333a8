/* Request bodies: read as bytes arrive, counted against the child's
 * memory, replayed to each upstream attempt. */
#ifndef AIPROXY_BODY_H
#define AIPROXY_BODY_H

#include "aiproxy_req.h"
#include "util_filter.h"

int aiproxy_body_read(request_rec *r, apr_off_t limit, char **buf,
                      apr_size_t *len);
/* Counts n more bytes this request holds against AIProxyChildMemory: 0
 * when the child holds as much as it may (a request's first
 * AIPROXY_BODY_FREE bytes always fit). Given back with the request. */
int aiproxy_body_take(request_rec *r, apr_size_t n);
#define AIPROXY_BODY_FREE (1024 * 1024)
/* Counts n bytes already held, whatever the child holds. */
void aiproxy_body_count(request_rec *r, apr_size_t n);
/* Installs the replay filter (once) and sets what it replays from the
 * start: each upstream attempt gets the whole body again. */
aiproxy_replay_t *aiproxy_body_replay(request_rec *r, aiproxy_replay_t *ctx,
                                      const char *buf, apr_size_t len);
apr_status_t aiproxy_body_filter(ap_filter_t *f, apr_bucket_brigade *bb,
                                 ap_input_mode_t mode, apr_read_type_e block,
                                 apr_off_t readbytes);

#endif
