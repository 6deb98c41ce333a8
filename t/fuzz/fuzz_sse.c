/* Fuzz target: the SSE splitter. The first byte picks where the rest is cut
 * in two; both parts are fed, each event's data is parsed as JSON and its
 * usage merged as the meter does. The events must be the same as when the
 * input is fed in one piece, and their raw bytes, then the pending tail,
 * must give back the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <apr_general.h>
#include <apr_strings.h>

#include "aiproxy_inspect.h"
#include "aiproxy_usage_read.h"
#include "aiproxy_sse.h"

/* Small, so that short inputs reach the oversized-event path too. */
#define MAX_EVENT 256

typedef struct event_copy {
    struct event_copy *next;
    const char *raw, *name, *data;
    apr_size_t raw_len, data_len;
} event_copy_t;

typedef struct {
    apr_pool_t *p;
    event_copy_t *head, **tail;
    aiproxy_usage_t openai, anthropic;
} run_t;

static void merge(const aiproxy_json_t *usage, aiproxy_api_t api,
                  aiproxy_usage_t *u)
{
    aiproxy_usage_merge(usage, api, u);
    if (u->input < 0 || u->cached_input < 0 || u->cache_write < 0 ||
        u->output < 0)
        abort();
}

static void on_event(void *baton, const aiproxy_sse_event_t *ev)
{
    run_t *run = baton;
    event_copy_t *e = apr_palloc(run->p, sizeof(*e));
    aiproxy_json_t *root;
    const char *err;

    if (ev->data[ev->data_len] != '\0' || ev->data_len > ev->raw_len ||
        strlen(ev->name) > ev->raw_len)
        abort();
    e->raw = apr_pmemdup(run->p, ev->raw, ev->raw_len);
    e->raw_len = ev->raw_len;
    e->name = apr_pstrdup(run->p, ev->name);
    e->data = apr_pmemdup(run->p, ev->data, ev->data_len);
    e->data_len = ev->data_len;
    e->next = NULL;
    *run->tail = e;
    run->tail = &e->next;

    /* What the meter reads of a chat chunk without parsing it: its delta
     * text, and its usage member, read by the scanner and taken out. */
    if (aiproxy_delta_text_len(ev->data, ev->data_len) > ev->data_len)
        abort();
    {
        apr_size_t s, e, vs, vl, used;
        aiproxy_usage_t u;

        memset(&u, 0, sizeof(u));
        if (aiproxy_json_member_span(ev->data, ev->data_len, "usage", &s, &e,
                                     &vs, &vl)) {
            if (s > e || e > ev->data_len || vs + vl > ev->data_len)
                abort();
            if (aiproxy_usage_scan(ev->data + vs, vl, &used,
                                   AIPROXY_API_OPENAI, &u) >= 0 &&
                (used > vl || u.input < 0 || u.output < 0))
                abort();
        }
    }
    /* Where the meter finds usage: Anthropic's message_start and
     * message_delta, the Responses API's response.*, chat's top level. */
    if (!ev->data_len ||
        !(root = aiproxy_json_parse(run->p, ev->data, ev->data_len, &err)))
        return;
    merge(aiproxy_json_get(aiproxy_json_get(root, "message"), "usage"),
          AIPROXY_API_ANTHROPIC, &run->anthropic);
    merge(aiproxy_json_get(root, "usage"), AIPROXY_API_ANTHROPIC,
          &run->anthropic);
    merge(aiproxy_json_get(aiproxy_json_get(root, "response"), "usage"),
          AIPROXY_API_OPENAI, &run->openai);
    merge(aiproxy_json_get(root, "usage"), AIPROXY_API_OPENAI, &run->openai);
}

/* Feeds the input in the given pieces and returns the pending tail. */
static const char *run_feed(run_t *run, const char *in, size_t len,
                            size_t cut, apr_size_t *pending_len)
{
    aiproxy_sse_t *s = aiproxy_sse_create(run->p, MAX_EVENT);

    run->head = NULL;
    run->tail = &run->head;
    memset(&run->openai, 0, sizeof(run->openai));
    memset(&run->anthropic, 0, sizeof(run->anthropic));
    aiproxy_sse_feed(s, in, cut, on_event, run);
    aiproxy_sse_feed(s, in + cut, len - cut, on_event, run);
    aiproxy_sse_end(s, on_event, run);
    return aiproxy_sse_take_pending(s, pending_len);
}

static const event_copy_t *next_read(const event_copy_t *e)
{
    while (e && !e->data_len && !*e->name)
        e = e->next;
    return e;
}

static int gives_back(const event_copy_t *e, const char *in, apr_size_t len,
                      const char *pend, apr_size_t plen)
{
    apr_size_t off = 0;

    for (; e; e = e->next) {
        if (off + e->raw_len > len || memcmp(in + off, e->raw, e->raw_len))
            return 0;
        off += e->raw_len;
    }
    return off + plen == len && !memcmp(in + off, pend, plen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialized;
    apr_pool_t *p;
    run_t split, whole;
    const event_copy_t *a, *b;
    const char *in, *pend, *wpend;
    apr_size_t plen, wlen, len, cut;

    if (!initialized) {
        apr_initialize();
        initialized = 1;
    }
    if (size < 1)
        return 0;
    if (apr_pool_create(&p, NULL) != APR_SUCCESS)
        abort();
    in = (const char *)data + 1;
    len = size - 1;
    cut = (apr_size_t)data[0] * len / 255;

    split.p = whole.p = p;
    pend = run_feed(&split, in, len, cut, &plen);
    wpend = run_feed(&whole, in, len, len, &wlen);

    /* Each run gives back its input: raw bytes in order, then the
     * pending tail. */
    if (!gives_back(split.head, in, len, pend, plen) ||
        !gives_back(whole.head, in, len, wpend, wlen))
        abort();
    /* The events read (a name or data) are the same however the input was
     * cut; an event over MAX_EVENT may be passed on in other pieces. */
    for (a = next_read(split.head), b = next_read(whole.head); a && b;
         a = next_read(a->next), b = next_read(b->next))
        if (a->raw_len != b->raw_len || memcmp(a->raw, b->raw, a->raw_len) ||
            strcmp(a->name, b->name) || a->data_len != b->data_len ||
            memcmp(a->data, b->data, a->data_len))
            abort();
    if (a || b)
        abort();
    if (memcmp(&split.openai, &whole.openai, sizeof(split.openai)) ||
        memcmp(&split.anthropic, &whole.anthropic, sizeof(split.anthropic)))
        abort();
    apr_pool_destroy(p);
    return 0;
}
