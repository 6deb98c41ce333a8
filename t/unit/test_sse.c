/* Unit tests: The SSE splitter and stream usage (aiproxy_sse). */
#include "harness.h"

#include "aiproxy_json.h"
#include "aiproxy_cost.h"
#include "aiproxy_inspect.h"
#include "aiproxy_sse.h"
#include "aiproxy_jscan.h"

/* ------------------------------------------------------------------ */
/* SSE                                                                  */

#define MAX_EVENTS 64

typedef struct {
    apr_pool_t *p;
    int n;
    const char *raw[MAX_EVENTS];
    apr_size_t raw_len[MAX_EVENTS];
    const char *name[MAX_EVENTS];
    const char *data[MAX_EVENTS];
    apr_size_t data_len[MAX_EVENTS];
    int bad_nul;            /* data or name not NUL-terminated as promised */
} events_t;

static void collect(void *baton, const aiproxy_sse_event_t *ev)
{
    events_t *e = baton;

    if (ev->data[ev->data_len] != '\0' || strlen(ev->data) > ev->data_len)
        e->bad_nul = 1;
    if (e->n >= MAX_EVENTS)
        return;
    e->raw[e->n] = apr_pstrmemdup(e->p, ev->raw, ev->raw_len);
    e->raw_len[e->n] = ev->raw_len;
    e->name[e->n] = apr_pstrdup(e->p, ev->name);
    e->data[e->n] = apr_pstrmemdup(e->p, ev->data, ev->data_len);
    e->data_len[e->n] = ev->data_len;
    e->n++;
}

/* Feeds `in` in pieces of `step` bytes (0: whole) and collects the events;
 * returns the pending tail. */
static const char *split_events(apr_pool_t *p, const char *in, apr_size_t len,
                                apr_size_t step, apr_size_t max_event,
                                events_t *e, apr_size_t *pending_len)
{
    aiproxy_sse_t *s = aiproxy_sse_create(p, max_event);
    apr_size_t off = 0;

    memset(e, 0, sizeof(*e));
    e->p = p;
    if (!step)
        step = len ? len : 1;
    for (off = 0; off < len; off += step)
        aiproxy_sse_feed(s, in + off, len - off < step ? len - off : step,
                         collect, e);
    return aiproxy_sse_take_pending(s, pending_len);
}

static int same_events(const events_t *a, const events_t *b)
{
    int i;

    if (a->n != b->n)
        return 0;
    for (i = 0; i < a->n; i++)
        if (a->raw_len[i] != b->raw_len[i] ||
            memcmp(a->raw[i], b->raw[i], a->raw_len[i]) ||
            strcmp(a->name[i], b->name[i]) ||
            a->data_len[i] != b->data_len[i] ||
            memcmp(a->data[i], b->data[i], a->data_len[i]))
            return 0;
    return 1;
}

/* All raw bytes, then the pending tail, give back the input. */
static int raw_is_input(apr_pool_t *p, const events_t *e, const char *pending,
                        apr_size_t pending_len, const char *in, apr_size_t len)
{
    apr_size_t total = 0;
    char *all;
    int i;

    for (i = 0; i < e->n; i++)
        total += e->raw_len[i];
    if (total + pending_len != len)
        return 0;
    all = apr_palloc(p, len + 1);
    total = 0;
    for (i = 0; i < e->n; i++) {
        memcpy(all + total, e->raw[i], e->raw_len[i]);
        total += e->raw_len[i];
    }
    memcpy(all + total, pending, pending_len);
    return !memcmp(all, in, len);
}

static const char openai_stream[] =
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":"
    "\"assistant\",\"content\":\"\"}}]}\n\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
    "\"Hello\"}}]}\n\n"
    ": keep-alive\n\n"
    "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,"
    "\"completion_tokens\":2}}\n\n"
    "data: [DONE]\n\n";

static const char anthropic_stream[] =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"usage\":"
    "{\"input_tokens\":12,\"output_tokens\":1}}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
    "{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n"
    "event: ping\n"
    "data: {\"type\": \"ping\"}\n\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":40}}\n\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n\n";

/* The same stream with every \n replaced by `eol`. */
static char *with_eol(apr_pool_t *p, const char *in, const char *eol)
{
    apr_size_t n = 0, k = strlen(eol);
    const char *c;
    char *out, *o;

    for (c = in; *c; c++)
        n += *c == '\n' ? k : 1;
    o = out = apr_palloc(p, n + 1);
    for (c = in; *c; c++) {
        if (*c == '\n') {
            memcpy(o, eol, k);
            o += k;
        }
        else {
            *o++ = *c;
        }
    }
    *o = '\0';
    return out;
}

static void test_sse_chunking(apr_pool_t *p)
{
    events_t whole, bytes, two;
    const char *pend;
    apr_size_t plen, len = sizeof(anthropic_stream) - 1, cut;
    int all_same = 1;

    pend = split_events(p, anthropic_stream, len, 0, 1 << 20, &whole, &plen);
    CHECK_INT(whole.n, 5);
    CHECK_INT(plen, 0);
    CHECK(!whole.bad_nul);
    CHECK(raw_is_input(p, &whole, pend, plen, anthropic_stream, len));
    CHECK_STR(whole.name[0], "message_start");
    CHECK_STR(whole.data[0], "{\"type\":\"message_start\",\"message\":"
              "{\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}");
    CHECK_STR(whole.name[2], "ping");
    CHECK_STR(whole.data[2], "{\"type\": \"ping\"}");
    CHECK_STR(whole.name[3], "message_delta");
    CHECK_STR(whole.name[4], "message_stop");
    CHECK_STR(whole.raw[4], "event: message_stop\n"
              "data: {\"type\":\"message_stop\"}\n\n");

    pend = split_events(p, anthropic_stream, len, 1, 1 << 20, &bytes, &plen);
    CHECK(same_events(&whole, &bytes));
    CHECK(raw_is_input(p, &bytes, pend, plen, anthropic_stream, len));

    /* Cut in two at every position. */
    for (cut = 1; cut < len; cut++) {
        aiproxy_sse_t *s = aiproxy_sse_create(p, 1 << 20);

        memset(&two, 0, sizeof(two));
        two.p = p;
        aiproxy_sse_feed(s, anthropic_stream, cut, collect, &two);
        aiproxy_sse_feed(s, anthropic_stream + cut, len - cut, collect, &two);
        if (!same_events(&whole, &two)) {
            all_same = 0;
            printf("FAIL %s %s:%d: events differ when cut at %lu\n",
                   current_test, __FILE__, __LINE__, (unsigned long)cut);
            break;
        }
    }
    CHECK(all_same);

    /* OpenAI: the comment is an event of its own with no data. */
    len = sizeof(openai_stream) - 1;
    pend = split_events(p, openai_stream, len, 0, 1 << 20, &whole, &plen);
    CHECK_INT(whole.n, 5);
    CHECK_STR(whole.name[0], "");
    CHECK_STR(whole.raw[2], ": keep-alive\n\n");
    CHECK_INT(whole.data_len[2], 0);
    CHECK_STR(whole.data[4], "[DONE]");
    CHECK(raw_is_input(p, &whole, pend, plen, openai_stream, len));
    pend = split_events(p, openai_stream, len, 1, 1 << 20, &bytes, &plen);
    CHECK(same_events(&whole, &bytes));
    pend = split_events(p, openai_stream, len, 7, 1 << 20, &bytes, &plen);
    CHECK(same_events(&whole, &bytes));
}

static void test_sse_line_ends(apr_pool_t *p)
{
    events_t lf, other, bytes;
    const char *in, *pend;
    apr_size_t plen, len;
    int i, ok = 1;

    split_events(p, anthropic_stream, sizeof(anthropic_stream) - 1, 0,
                 1 << 20, &lf, &plen);

    /* \r\n: same names and data, raw as received. */
    in = with_eol(p, anthropic_stream, "\r\n");
    len = strlen(in);
    pend = split_events(p, in, len, 0, 1 << 20, &other, &plen);
    CHECK_INT(other.n, lf.n);
    for (i = 0; i < lf.n && i < other.n; i++)
        ok &= !strcmp(lf.name[i], other.name[i]) &&
              !strcmp(lf.data[i], other.data[i]);
    CHECK(ok);
    CHECK(raw_is_input(p, &other, pend, plen, in, len));
    pend = split_events(p, in, len, 1, 1 << 20, &bytes, &plen);
    CHECK(same_events(&other, &bytes));
    CHECK(raw_is_input(p, &bytes, pend, plen, in, len));

    /* \r alone. A final \r might still be the start of \r\n, so the stream
     * here goes on after the last event. */
    in = apr_pstrcat(p, with_eol(p, anthropic_stream, "\r"), "data: x", NULL);
    len = strlen(in);
    pend = split_events(p, in, len, 0, 1 << 20, &other, &plen);
    CHECK_INT(other.n, lf.n);
    ok = 1;
    for (i = 0; i < lf.n && i < other.n; i++)
        ok &= !strcmp(lf.name[i], other.name[i]) &&
              !strcmp(lf.data[i], other.data[i]);
    CHECK(ok);
    CHECK_INT(plen, 7);
    CHECK(raw_is_input(p, &other, pend, plen, in, len));
    pend = split_events(p, in, len, 1, 1 << 20, &bytes, &plen);
    CHECK(same_events(&other, &bytes));

    /* Mixed line ends within one event. */
    in = "event: e\rdata: a\r\ndata: b\ndata: c\r\r\n";
    len = strlen(in);
    pend = split_events(p, in, len, 0, 1 << 20, &other, &plen);
    CHECK_INT(other.n, 1);
    CHECK_STR(other.name[0], "e");
    CHECK_STR(other.data[0], "a\nb\nc");
    CHECK_INT(plen, 0);
    pend = split_events(p, in, len, 1, 1 << 20, &bytes, &plen);
    CHECK(same_events(&other, &bytes));
}

static void test_sse_fields(apr_pool_t *p)
{
    events_t e;
    const char *in, *pend;
    apr_size_t plen;

    /* Multi-line data joined by \n; one space after the colon is dropped. */
    in = "data: a\ndata:b\ndata:  c\ndata\ndata: d\n\n";
    split_events(p, in, strlen(in), 0, 1 << 20, &e, &plen);
    CHECK_INT(e.n, 1);
    CHECK_STR(e.data[0], "a\nb\n c\n\nd");
    CHECK_INT(e.data_len[0], 9);

    /* Comments and unknown fields are not data. */
    in = ": comment\ndata: x\n: data: y\nid: 7\nretry: 100\ndatax: z\n"
         " data: w\ndata: {\"usage\":{}}\n\n";
    split_events(p, in, strlen(in), 0, 1 << 20, &e, &plen);
    CHECK_INT(e.n, 1);
    CHECK_STR(e.data[0], "x\n{\"usage\":{}}");
    CHECK_STR(e.name[0], "");
    CHECK_STR(e.raw[0], in);

    /* The event name, with or without a space; the last one wins. */
    in = "event:first\nevent: message_delta\ndata: {}\n\nevent: only\n\n";
    split_events(p, in, strlen(in), 0, 1 << 20, &e, &plen);
    CHECK_INT(e.n, 2);
    CHECK_STR(e.name[0], "message_delta");
    CHECK_STR(e.data[0], "{}");
    CHECK_STR(e.name[1], "only");
    CHECK_INT(e.data_len[1], 0);

    /* Blank lines with no event before them pass on alone. */
    in = "\n\r\ndata: x\n\n\n";
    pend = split_events(p, in, strlen(in), 0, 1 << 20, &e, &plen);
    CHECK_INT(e.n, 4);
    CHECK_INT(e.data_len[0], 0);
    CHECK_STR(e.data[2], "x");
    CHECK(raw_is_input(p, &e, pend, plen, in, strlen(in)));

    /* Data with a NUL byte keeps its length. */
    {
        static const char nul[] = "data: a\0b\n\n";

        split_events(p, nul, sizeof(nul) - 1, 0, 1 << 20, &e, &plen);
        CHECK_INT(e.n, 1);
        CHECK_INT(e.data_len[0], 3);
        CHECK(e.data[0] && !memcmp(e.data[0], "a\0b", 3));
    }
}

static void test_sse_limits(apr_pool_t *p)
{
    events_t e, bytes;
    const char *pend;
    apr_size_t plen, n = 200;
    char *big, *in;
    aiproxy_sse_t *s;

    /* An event over max_event: raw whole, data empty; the next one is
     * parsed as usual. */
    big = apr_palloc(p, n + 1);
    memset(big, 'A', n);
    big[n] = '\0';
    in = apr_pstrcat(p, "event: big\ndata: ", big, "\n\ndata: small\n\n", NULL);
    pend = split_events(p, in, strlen(in), 0, 64, &e, &plen);
    CHECK_INT(e.n, 2);
    CHECK_INT(e.data_len[0], 0);
    CHECK_STR(e.data[0], "");
    CHECK_STR(e.name[0], "");
    CHECK_INT(e.raw_len[0], strlen(in) - strlen("data: small\n\n"));
    CHECK_STR(e.data[1], "small");
    CHECK(raw_is_input(p, &e, pend, plen, in, strlen(in)));
    /* Arriving byte by byte, the big event is passed on in pieces as soon
     * as more than max_event of it is held, all unread; the next event is
     * read as usual. */
    pend = split_events(p, in, strlen(in), 1, 64, &bytes, &plen);
    CHECK(raw_is_input(p, &bytes, pend, plen, in, strlen(in)));
    CHECK(bytes.n > 2);
    CHECK_STR(bytes.data[bytes.n - 1], "small");
    {
        int i, unread = 1;

        for (i = 0; i < bytes.n - 1; i++)
            unread = unread && bytes.data_len[i] == 0 &&
                     !strcmp(bytes.name[i], "") && bytes.raw_len[i] <= 65;
        CHECK(unread);
    }
    /* An event that never ends is never held whole: what stays pending is
     * at most max_event bytes. */
    n = 50000;
    big = apr_palloc(p, n + 1);
    memset(big, 'C', n);
    big[n] = '\0';
    in = apr_pstrcat(p, "data: ", big, NULL);
    pend = split_events(p, in, strlen(in), 1000, 4096, &bytes, &plen);
    CHECK(plen <= 4096);
    CHECK(bytes.n > 0 && bytes.data_len[0] == 0);
    CHECK(raw_is_input(p, &bytes, pend, plen, in, strlen(in)));
    /* The limit is on the event's bytes: exactly max_event is still read. */
    in = "data: 0123456789\n\n";
    split_events(p, in, strlen(in), 0, strlen(in), &e, &plen);
    CHECK_STR(e.data[0], "0123456789");
    split_events(p, in, strlen(in), 0, strlen(in) - 1, &e, &plen);
    CHECK_INT(e.data_len[0], 0);

    /* Events bigger than the first buffers (4 KB) under a large limit. */
    n = 100000;
    big = apr_palloc(p, n + 1);
    memset(big, 'B', n);
    big[n] = '\0';
    in = apr_pstrcat(p, "event: e\ndata: ", big, "\ndata: ", big, "\n\n", NULL);
    pend = split_events(p, in, strlen(in), 0, 1 << 20, &e, &plen);
    CHECK_INT(e.n, 1);
    CHECK_INT(e.data_len[0], 2 * n + 1);
    CHECK_STR(e.name[0], "e");
    CHECK(raw_is_input(p, &e, pend, plen, in, strlen(in)));
    split_events(p, in, strlen(in), 4093, 1 << 20, &bytes, &plen);
    CHECK(same_events(&e, &bytes));

    /* The pending tail: taken once, then the splitter starts afresh. */
    s = aiproxy_sse_create(p, 1 << 20);
    memset(&e, 0, sizeof(e));
    e.p = p;
    in = "data: one\n\nevent: two\ndata: par";
    aiproxy_sse_feed(s, in, strlen(in), collect, &e);
    CHECK_INT(e.n, 1);
    pend = aiproxy_sse_take_pending(s, &plen);
    CHECK_INT(plen, strlen("event: two\ndata: par"));
    CHECK(plen == strlen("event: two\ndata: par") &&
          !memcmp(pend, "event: two\ndata: par", plen));
    pend = aiproxy_sse_take_pending(s, &plen);
    CHECK_INT(plen, 0);
    aiproxy_sse_feed(s, "data: three\n\n", 13, collect, &e);
    CHECK_INT(e.n, 2);
    CHECK_STR(e.data[1], "three");
    CHECK_STR(e.name[1], "");
    CHECK_STR(e.raw[1], "data: three\n\n");

    /* A lone \r ends a chunk, \n starts the next: one line end, so the event
     * ends only at the second line end. */
    s = aiproxy_sse_create(p, 1 << 20);
    memset(&e, 0, sizeof(e));
    e.p = p;
    aiproxy_sse_feed(s, "data: a\r", 8, collect, &e);
    CHECK_INT(e.n, 0);
    aiproxy_sse_feed(s, "\n", 1, collect, &e);
    CHECK_INT(e.n, 0);
    aiproxy_sse_feed(s, "\r", 1, collect, &e);
    CHECK_INT(e.n, 0);
    aiproxy_sse_feed(s, "\ndata: b\n\n", 10, collect, &e);
    CHECK_INT(e.n, 2);
    CHECK_STR(e.raw[0], "data: a\r\n\r\n");
    CHECK_STR(e.data[0], "a");
    CHECK_STR(e.data[1], "b");
    pend = aiproxy_sse_take_pending(s, &plen);
    CHECK_INT(plen, 0);
}

/* Usage is read from the body's tail; anything that is not the top-level
 * member there (a "usage" inside a string or a nested object, usage
 * first) must give the same answer as a whole parse. */
static void test_usage_tail(apr_pool_t *p)
{
    aiproxy_usage_t u;
    int found;

    u = usage_of(p, "{\"choices\":[{\"message\":{\"content\":"
                 "\"say \\\"usage\\\": {\\\"prompt_tokens\\\": 99}\"}}],"
                 "\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}",
                 AIPROXY_API_OPENAI, &found);
    CHECK(found);
    CHECK_USAGE(u, 7, 0, 0, 3);
    u = usage_of(p, "{\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2},"
                 "\"x\":{\"usage\":{\"prompt_tokens\":99}}}",
                 AIPROXY_API_OPENAI, &found);
    CHECK(found);
    CHECK_USAGE(u, 5, 0, 0, 2);
    u = usage_of(p, "{\"usage\":{\"prompt_tokens\":4},\"choices\":[]}",
                 AIPROXY_API_OPENAI, &found);
    CHECK(found);
    CHECK_USAGE(u, 4, 0, 0, 0);
    u = usage_of(p, "{\"usage\" :\n {\"input_tokens\":2,\"output_tokens\":1}"
                 " , \"stop\" : null }\n", AIPROXY_API_ANTHROPIC, &found);
    CHECK(found);
    CHECK_USAGE(u, 2, 0, 0, 1);
    /* A tail that does not close the object is not trusted, and the whole
     * body is not JSON either. */
    u = usage_of(p, "{\"usage\":{\"prompt_tokens\":4}", AIPROXY_API_OPENAI,
                 &found);
    CHECK(!found);
}

/* A stream whose last event ends with bare CRs: the final CR could have
 * been half a CRLF until the stream ends; then the event is whole. */
static void test_sse_end(apr_pool_t *p)
{
    aiproxy_sse_t *s = aiproxy_sse_create(p, 1 << 20);
    const char *in = "data: {\"usage\":{\"prompt_tokens\":3}}\r\r";
    const char *pend;
    apr_size_t plen;
    events_t e;

    memset(&e, 0, sizeof(e));
    e.p = p;
    aiproxy_sse_feed(s, in, strlen(in), collect, &e);
    CHECK_INT(e.n, 0);
    aiproxy_sse_end(s, collect, &e);
    CHECK_INT(e.n, 1);
    CHECK_STR(e.data[0], "{\"usage\":{\"prompt_tokens\":3}}");
    CHECK_INT(e.raw_len[0], strlen(in));
    pend = aiproxy_sse_take_pending(s, &plen);
    CHECK_INT(plen, 0);
    (void)pend;
    /* An event with no blank line after it is still unfinished. */
    memset(&e, 0, sizeof(e));
    e.p = p;
    in = "data: a\r\ndata: b\r";
    aiproxy_sse_feed(s, in, strlen(in), collect, &e);
    aiproxy_sse_end(s, collect, &e);
    CHECK_INT(e.n, 0);
    pend = aiproxy_sse_take_pending(s, &plen);
    CHECK_INT(plen, strlen(in));
    CHECK(pend && !memcmp(pend, in, plen));
}

/* The usage scanner: what it reads, what it leaves to jansson (-1), and
 * that it agrees with jansson on what it reads. */
static int scan_agrees(apr_pool_t *p, const char *text, aiproxy_api_t api)
{
    aiproxy_usage_t a, b;
    apr_size_t ua = 0, ub = 0;
    aiproxy_json_t *v;
    int ra;

    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    ra = aiproxy_usage_scan(text, strlen(text), &ua, api, &a);
    if (ra < 0)
        return 0;
    v = aiproxy_json_parse_prefix(p, text, strlen(text), &ub);
    return v && aiproxy_usage_merge(v, api, &b) == ra && ua == ub &&
           !memcmp(&a, &b, sizeof(a));
}

static void test_usage_scan(apr_pool_t *p)
{
    static const char *const read[] = {
        "{\"prompt_tokens\":19,\"completion_tokens\":10,\"total_tokens\":29,"
        "\"prompt_tokens_details\":{\"cached_tokens\":7,\"audio_tokens\":0},"
        "\"completion_tokens_details\":{\"reasoning_tokens\":0}}",
        "{\"input_tokens\":12,\"cache_creation_input_tokens\":100,"
        "\"cache_read_input_tokens\":2048,\"output_tokens\":6,"
        "\"service_tier\":\"standard\",\"cache_creation\":"
        "{\"ephemeral_5m_input_tokens\":100},\"server_tool_use\":null}",
        "{ \"input_tokens\" : 36 ,\n\"input_tokens_details\":{\"cached_tokens\""
        ":40},\"output_tokens\":-3,\"x\":true,\"y\":false,\"z\":{}}",
        "{}", "{\"prompt_tokens\":-0}", "{\"prompt_tokens\":\"12\"}",
        "{\"prompt_tokens_details\":3,\"prompt_tokens\":4}",
        "{\"prompt_tokens\":1} trailing",
    };
    static const char *const refused[] = {
        "{\"prompt_tokens\":5,\"prompt_tokens\":6}",        /* duplicate */
        "{\"d\":{\"a\":1,\"a\":2},\"prompt_tokens\":1}",   /* duplicate inside */
        "{\"prompt_tokens\":5.0}", "{\"prompt_tokens\":1e1}",
        "{\"prompt_tokens\":012}", "{\"prompt_tokens\":1234567890123456789}",
        "{\"pr\\u006fmpt_tokens\":5}", "{\"prompt_tokens\":[1]}",
        "{\"a\":{\"b\":{\"c\":1}}}", "{\"a\":\"\xc3\xa9\"}",
        "{\"prompt_tokens\":5,}", "{\"prompt_tokens\":5", "{\"prompt_tokens\" 5}",
        "{\"prompt_tokens\":nul}", "{\"prompt_tokens\":truex}", "[1]", "",
        "{\"prompt_tokens\":-}",
    };
    aiproxy_usage_t u;
    apr_size_t used, i;

    for (i = 0; i < sizeof(read) / sizeof(read[0]); i++) {
        memset(&u, 0, sizeof(u));
        CHECK(aiproxy_usage_scan(read[i], strlen(read[i]), &used,
                                 AIPROXY_API_OPENAI, &u) >= 0);
        CHECK(scan_agrees(p, read[i], AIPROXY_API_OPENAI));
        CHECK(scan_agrees(p, read[i], AIPROXY_API_ANTHROPIC));
    }
    for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        memset(&u, 0, sizeof(u));
        CHECK_INT(aiproxy_usage_scan(refused[i], strlen(refused[i]), &used,
                                     AIPROXY_API_OPENAI, &u), -1);
        CHECK(u.input == 0 && u.output == 0);
    }
    /* The counts themselves: cached inside the prompt total for OpenAI. */
    memset(&u, 0, sizeof(u));
    CHECK_INT(aiproxy_usage_scan(read[0], strlen(read[0]), &used,
                                 AIPROXY_API_OPENAI, &u), 1);
    CHECK_USAGE(u, 12, 7, 0, 10);
    CHECK_INT(used, strlen(read[0]));
    memset(&u, 0, sizeof(u));
    CHECK_INT(aiproxy_usage_scan(read[1], strlen(read[1]), &used,
                                 AIPROXY_API_ANTHROPIC, &u), 1);
    CHECK_USAGE(u, 12, 2048, 100, 6);
    /* Responses API: cached capped at the total, a negative count absent. */
    memset(&u, 0, sizeof(u));
    CHECK_INT(aiproxy_usage_scan(read[2], strlen(read[2]), &used,
                                 AIPROXY_API_OPENAI, &u), 1);
    CHECK_USAGE(u, 0, 36, 0, 0);
    /* Only the object: what follows is the caller's. */
    CHECK_INT(aiproxy_usage_scan(read[7], strlen(read[7]), &used,
                                 AIPROXY_API_OPENAI, &u), 1);
    CHECK_INT(used, strlen("{\"prompt_tokens\":1}"));
}

const unit_test_t unit_sse[] = {
    { "usage_tail", test_usage_tail },
    { "usage_scan", test_usage_scan },
    { "sse_end", test_sse_end },
    { "sse_chunking", test_sse_chunking },
    { "sse_line_ends", test_sse_line_ends },
    { "sse_fields", test_sse_fields },
    { "sse_limits", test_sse_limits },
    { NULL, NULL }
};
