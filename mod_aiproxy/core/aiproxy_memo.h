/* A bounded per-child memo: string keys to small byte values, shared by a
 * child's threads. For work whose answer rarely changes (a token's claims,
 * a user's settings) and would otherwise be redone on every request. */
#ifndef AIPROXY_MEMO_H
#define AIPROXY_MEMO_H

#include "aiproxy.h"

typedef struct aiproxy_memo aiproxy_memo_t;

/* A memo holding up to max stored values before it starts afresh, or NULL
 * when max is 0 or no mutex can be made. */
aiproxy_memo_t *aiproxy_memo_create(apr_pool_t *p, apr_size_t max);

/* The value stored under key at or after since (any time unit, the same as
 * put's), copied into p with its length in *len; NULL when absent or
 * older. */
void *aiproxy_memo_get(aiproxy_memo_t *m, apr_pool_t *p, const char *key,
                       apr_int64_t since, apr_size_t *len);

/* Stores a copy of val under key, stamped at. */
void aiproxy_memo_put(aiproxy_memo_t *m, const char *key, apr_int64_t at,
                      const void *val, apr_size_t len);

#endif
