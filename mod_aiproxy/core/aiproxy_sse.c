#include <stdlib.h>
#include <string.h>
#include <apr_strings.h>

#include "aiproxy_sse.h"

struct aiproxy_sse {
    apr_pool_t *pool;
    char *buf;              /* the unfinished event */
    apr_size_t len, size;
    apr_size_t scan;        /* where the next line starts within buf */
    apr_size_t max_event;
    int oversize;           /* inside an event already passed on unread */
    int mid_line;           /* buf starts inside a line passed on */
    char *data;             /* scratch for joined data lines */
    apr_size_t data_size;
};

/* The buffers grow by realloc and are freed with the pool: grown as pool
 * blocks, every smaller copy would stay until the stream ends. */
static apr_status_t free_buffers(void *v)
{
    aiproxy_sse_t *s = v;

    free(s->buf);
    free(s->data);
    s->buf = s->data = NULL;
    return APR_SUCCESS;
}

static char *grow(char *old, apr_size_t size)
{
    char *p = realloc(old, size);

    if (!p)
        abort();   /* as apr_palloc would, out of memory */
    return p;
}

aiproxy_sse_t *aiproxy_sse_create(apr_pool_t *p, apr_size_t max_event)
{
    aiproxy_sse_t *s = apr_pcalloc(p, sizeof(*s));

    s->pool = p;
    s->size = 4096;
    s->buf = grow(NULL, s->size);
    s->data_size = 4096;
    s->data = grow(NULL, s->data_size);
    s->max_event = max_event;
    apr_pool_cleanup_register(p, s, free_buffers, apr_pool_cleanup_null);
    return s;
}

static void reserve_buf(aiproxy_sse_t *s, apr_size_t need)
{
    if (need <= s->size)
        return;
    while (s->size < need)
        s->size *= 2;
    s->buf = grow(s->buf, s->size);
}

/* Finds the end of the line starting at `from`: *eol is where the line
 * ends, *next where the following one starts. 0 when the line is not
 * complete yet (a lone \r at the end may still be part of \r\n). */
static int find_line(const char *b, apr_size_t len, apr_size_t from,
                     apr_size_t *eol, apr_size_t *next, int at_end)
{
    apr_size_t i;

    for (i = from; i < len; i++) {
        if (b[i] == '\n') {
            *eol = i;
            *next = i + 1;
            return 1;
        }
        if (b[i] == '\r') {
            if (i + 1 == len && !at_end)
                return 0;
            *eol = i;
            *next = i + 1 < len && b[i + 1] == '\n' ? i + 2 : i + 1;
            return 1;
        }
    }
    return 0;
}

/* Builds the event's name and data from its lines, then calls fn. */
static void dispatch(aiproxy_sse_t *s, apr_size_t end,
                     aiproxy_sse_event_fn *fn, void *baton)
{
    aiproxy_sse_event_t ev;
    apr_size_t pos = 0, eol, next, dlen = 0;
    const char *name = "";
    apr_size_t name_len = 0;
    int any_data = 0;

    ev.raw = s->buf;
    ev.raw_len = end;
    ev.oversize = end > s->max_event || s->oversize;
    if (ev.oversize) {
        s->data[0] = '\0';
        ev.name = "";
        ev.data = s->data;
        ev.data_len = 0;
        fn(baton, &ev);
        return;
    }
    /* Data and name are parts of the event, so end + 2 bytes hold both. */
    if (s->data_size < end + 2) {
        while (s->data_size < end + 2)
            s->data_size *= 2;
        s->data = grow(s->data, s->data_size);
    }
    while (pos < end && find_line(s->buf, end, pos, &eol, &next, 1)) {
        const char *line = s->buf + pos;
        apr_size_t n = eol - pos, flen = n, vstart;
        const char *colon = memchr(line, ':', n);

        if (colon)
            flen = (apr_size_t)(colon - line);
        vstart = colon ? flen + 1 : n;
        if (colon && vstart < n && line[vstart] == ' ')
            vstart++;
        if (flen == 4 && !memcmp(line, "data", 4)) {
            if (any_data)
                s->data[dlen++] = '\n';
            memcpy(s->data + dlen, line + vstart, n - vstart);
            dlen += n - vstart;
            any_data = 1;
        }
        else if (flen == 5 && !memcmp(line, "event", 5)) {
            name = line + vstart;
            name_len = n - vstart;
        }
        pos = next;
    }
    s->data[dlen] = '\0';
    memcpy(s->data + dlen + 1, name, name_len);
    s->data[dlen + 1 + name_len] = '\0';
    ev.name = s->data + dlen + 1;
    ev.data = s->data;
    ev.data_len = dlen;
    fn(baton, &ev);
}

static void split(aiproxy_sse_t *s, aiproxy_sse_event_fn *fn, void *baton,
                  int at_end)
{
    apr_size_t eol, next;

    while (find_line(s->buf, s->len, s->scan, &eol, &next, at_end)) {
        if (s->mid_line) {
            /* The end of a line whose start was passed on: no blank line. */
            s->mid_line = 0;
            s->scan = next;
            continue;
        }
        if (eol == s->scan && (s->scan > 0 || s->oversize)) {
            /* A blank line ends the event. */
            dispatch(s, next, fn, baton);
            memmove(s->buf, s->buf + next, s->len - next);
            s->len -= next;
            s->scan = 0;
            s->oversize = 0;
            continue;
        }
        if (eol == s->scan) {
            /* A blank line with no event before it: pass it on alone. */
            dispatch(s, next, fn, baton);
            memmove(s->buf, s->buf + next, s->len - next);
            s->len -= next;
            continue;
        }
        s->scan = next;
    }
}

void aiproxy_sse_feed(aiproxy_sse_t *s, const char *in, apr_size_t len,
                      aiproxy_sse_event_fn *fn, void *baton)
{
    apr_size_t keep;

    reserve_buf(s, s->len + len);
    memcpy(s->buf + s->len, in, len);
    s->len += len;
    split(s, fn, baton, 0);
    if (s->len <= s->max_event)
        return;
    /* An event this long is never read: pass on its complete lines,
     * unread, and the rest as it comes, so an endless event cannot hold
     * the child's memory. The unfinished line stays unless it alone is too
     * long; a CR at the very end stays, as it may start a CRLF. */
    keep = s->scan;
    if (s->len - keep > s->max_event) {
        keep = s->len - (s->buf[s->len - 1] == '\r');
        s->mid_line = 1;
    }
    if (keep == 0)
        return;
    s->oversize = 1;
    dispatch(s, keep, fn, baton);
    memmove(s->buf, s->buf + keep, s->len - keep);
    s->len -= keep;
    s->scan = 0;
}

void aiproxy_sse_end(aiproxy_sse_t *s, aiproxy_sse_event_fn *fn, void *baton)
{
    split(s, fn, baton, 1);
}

const char *aiproxy_sse_take_pending(aiproxy_sse_t *s, apr_size_t *len)
{
    const char *out = apr_pmemdup(s->pool, s->buf, s->len);

    *len = s->len;
    s->len = 0;
    s->scan = 0;
    s->oversize = 0;
    s->mid_line = 0;
    return out;
}
