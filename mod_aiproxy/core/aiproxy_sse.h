/* An incremental Server-Sent Events splitter: bytes in any chunking, line
 * ends \n, \r\n or \r, out come whole events. Pure: unit-tested and fuzzed. */
#ifndef AIPROXY_SSE_H
#define AIPROXY_SSE_H

#include "aiproxy.h"

typedef struct aiproxy_sse aiproxy_sse_t;

typedef struct {
    const char *raw;        /* the event's bytes as received, terminator too */
    apr_size_t raw_len;
    const char *name;       /* "event:" field, "" when absent */
    const char *data;       /* "data:" lines joined by \n, NUL-terminated */
    apr_size_t data_len;
    int oversize;           /* past the limit: passed on unread */
} aiproxy_sse_event_t;

typedef void aiproxy_sse_event_fn(void *baton, const aiproxy_sse_event_t *ev);

/* Events longer than max_event bytes are still passed on whole (raw), but
 * with empty data, so a hostile stream cannot make us parse megabytes. */
aiproxy_sse_t *aiproxy_sse_create(apr_pool_t *p, apr_size_t max_event);

void aiproxy_sse_feed(aiproxy_sse_t *s, const char *buf, apr_size_t len,
                      aiproxy_sse_event_fn *fn, void *baton);

/* The stream has ended: a last line ended by a lone CR (which could have
 * been the start of CRLF) is complete now, and so may be its event. */
void aiproxy_sse_end(aiproxy_sse_t *s, aiproxy_sse_event_fn *fn, void *baton);

/* Bytes of an unfinished event (at end of stream); they are dropped from
 * the splitter. */
const char *aiproxy_sse_take_pending(aiproxy_sse_t *s, apr_size_t *len);

#endif
