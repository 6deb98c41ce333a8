#include <string.h>
#include <curl/curl.h>
#include <apr_lib.h>
#include <apr_strings.h>

#include "aiproxy_fetch.h"

typedef struct {
    apr_pool_t *p;
    char *buf;
    apr_size_t len, room, max;
    int too_big;
    aiproxy_fetch_reply_t *out;
} sink_t;

int aiproxy_fetch_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void aiproxy_fetch_cleanup(void)
{
    curl_global_cleanup();
}

static size_t on_body(char *data, size_t size, size_t n, void *v)
{
    sink_t *s = v;
    apr_size_t add = size * n;

    if (add > s->max - s->len) {
        s->too_big = 1;
        return 0;       /* aborts the transfer */
    }
    if (s->len + add + 1 > s->room) {
        char *bigger;

        while (s->len + add + 1 > s->room)
            s->room *= 2;
        bigger = apr_palloc(s->p, s->room);
        memcpy(bigger, s->buf, s->len);
        s->buf = bigger;
    }
    memcpy(s->buf + s->len, data, add);
    s->len += add;
    s->buf[s->len] = '\0';
    return add;
}

/* The value of a header line "Name: value\r\n" when the name matches. */
static const char *header_value(apr_pool_t *p, const char *line,
                                apr_size_t n, const char *name)
{
    apr_size_t k = strlen(name);
    const char *v, *end = line + n;

    if (n <= k || strncasecmp(line, name, k) || line[k] != ':')
        return NULL;
    for (v = line + k + 1; v < end && (*v == ' ' || *v == '\t'); v++)
        ;
    while (end > v && apr_isspace(end[-1]))
        end--;
    return apr_pstrmemdup(p, v, end - v);
}

static size_t on_header(char *line, size_t size, size_t n, void *v)
{
    sink_t *s = v;
    apr_size_t len = size * n;
    const char *val;

    /* A status line starts a new response: forget the previous one's. */
    if (len >= 5 && !strncmp(line, "HTTP/", 5)) {
        s->out->cache_control = NULL;
        s->out->age = NULL;
    }
    else if ((val = header_value(s->p, line, len, "Cache-Control")))
        s->out->cache_control = val;
    else if ((val = header_value(s->p, line, len, "Age")))
        s->out->age = val;
    return len;
}

/* libcurl calls this about once a second, and more often while data
 * moves: a nonzero *cancel aborts the transfer. */
static int on_progress(void *v, curl_off_t dlt, curl_off_t dln,
                       curl_off_t ult, curl_off_t uln)
{
    (void)dlt;
    (void)dln;
    (void)ult;
    (void)uln;
    return *(const volatile int *)v ? 1 : 0;
}

/* One request: a GET, or a POST of body when content_type is set. */
static const char *perform(apr_pool_t *p, const char *url,
                           const char *content_type, const char *body,
                           apr_size_t body_len, long timeout_ms,
                           apr_size_t max, const volatile int *cancel,
                           aiproxy_fetch_reply_t *out)
{
    CURL *c = curl_easy_init();
    struct curl_slist *headers = NULL;
    char errbuf[CURL_ERROR_SIZE];
    sink_t s;
    CURLcode rc;
    const char *why = NULL;

    memset(out, 0, sizeof(*out));
    if (!c)
        return "cannot create a curl handle";
    memset(&s, 0, sizeof(s));
    s.p = p;
    s.room = 16384;
    s.buf = apr_palloc(p, s.room);
    s.buf[0] = '\0';
    s.max = max;
    s.out = out;
    errbuf[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    /* Threads: no signals for timeouts. */
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "mod_aiproxy");
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &s);
    if (cancel) {
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)cancel);
    }
    if (content_type) {
        headers = curl_slist_append(headers, apr_pstrcat(p, "Content-Type: ",
                                                         content_type, NULL));
        /* No "Expect: 100-continue" round trip for a small body. */
        headers = curl_slist_append(headers, "Expect:");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    rc = curl_easy_perform(c);
    if (s.too_big)
        why = apr_psprintf(p, "reply larger than %" APR_SIZE_T_FMT " bytes",
                           max);
    else if (rc != CURLE_OK)
        why = apr_pstrdup(p, errbuf[0] ? errbuf : curl_easy_strerror(rc));
    else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
        out->body = s.buf;
        out->len = s.len;
    }
    curl_easy_cleanup(c);
    curl_slist_free_all(headers);
    return why;
}

const char *aiproxy_fetch_get(apr_pool_t *p, const char *url, long timeout_ms,
                              apr_size_t max, aiproxy_fetch_reply_t *out)
{
    return perform(p, url, NULL, NULL, 0, timeout_ms, max, NULL, out);
}

const char *aiproxy_fetch_post(apr_pool_t *p, const char *url,
                               const char *content_type, const char *body,
                               apr_size_t len, long timeout_ms,
                               apr_size_t max, const volatile int *cancel,
                               aiproxy_fetch_reply_t *out)
{
    return perform(p, url, content_type, body, len, timeout_ms, max, cancel,
                   out);
}
