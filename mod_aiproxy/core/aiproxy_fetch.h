/* The one wrapper around libcurl: small HTTP GETs the gateway makes itself
 * (Google's signing keys) and small POSTs (alert webhooks). APR only, no
 * httpd. */
#ifndef AIPROXY_FETCH_H
#define AIPROXY_FETCH_H

#include "aiproxy.h"

/* Once per process, before any thread fetches (libcurl's global init is
 * not thread-safe). 0 on success. */
int aiproxy_fetch_init(void);
void aiproxy_fetch_cleanup(void);

typedef struct {
    long status;                 /* HTTP status */
    char *body;                  /* NUL-terminated pool copy */
    apr_size_t len;
    const char *cache_control;   /* NULL when absent */
    const char *age;             /* NULL when absent */
} aiproxy_fetch_reply_t;

/* GET url (http or https only, no redirects) within timeout_ms, refusing a
 * body over max bytes. Returns NULL, or a reason fit for a log line. Any
 * status counts as a reply: the caller judges it. */
const char *aiproxy_fetch_get(apr_pool_t *p, const char *url, long timeout_ms,
                              apr_size_t max, aiproxy_fetch_reply_t *out);

/* POST body (len bytes, of content_type) to url, as aiproxy_fetch_get
 * does a GET: no redirects, within timeout_ms, the reply's body up to max
 * bytes. A nonzero *cancel (NULL: none) aborts it within about a second:
 * a stopping process does not wait out the timeout. */
const char *aiproxy_fetch_post(apr_pool_t *p, const char *url,
                               const char *content_type, const char *body,
                               apr_size_t len, long timeout_ms,
                               apr_size_t max, const volatile int *cancel,
                               aiproxy_fetch_reply_t *out);

/* aiproxy_fetch_get as a type: what the key cache is given to fetch with, so that
 * it links without libcurl (unit tests, fuzzers). */
typedef const char *aiproxy_fetch_fn(apr_pool_t *p, const char *url,
                                     long timeout_ms, apr_size_t max,
                                     aiproxy_fetch_reply_t *out);

#endif
