/* Metering: reads usage from the provider's response, settles the charge
 * and reports it. Non-streamed bodies are held until complete because the
 * cost goes in the headers; streams pass event by event. */
#include <string.h>
#include <apr_atomic.h>
#include <apr_strings.h>

#include "httpd.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_filter.h"

#include "aiproxy_cache.h"
#include "aiproxy_jscan.h"
#include "aiproxy_meter.h"
#include "aiproxy_reply.h"
#include "aiproxy_req.h"
#include "aiproxy_counters.h"
#include "aiproxy_sse.h"
#include "aiproxy_usage_read.h"

APLOG_USE_MODULE(aiproxy);

#define METER_FILTER "AIPROXY_METER"
#define MAX_SSE_EVENT (1024 * 1024)
#define MAX_USAGE_TEXT (64 * 1024)
/* A non-streamed answer is held in memory up to this, then in a file. */
#define HELD_IN_MEMORY (1024 * 1024)
/* An answer larger than this is not passed on (the largest real ones,
 * embeddings of 2,048 inputs at 3,072 dimensions, are ~60 MB). */
#define MAX_HELD_ANSWER ((apr_off_t)128 * 1024 * 1024)

typedef enum {
    MODE_DISCARD,  /* a failed attempt that another will replace */
    MODE_BUFFER,   /* hold the body, price it at the end */
    MODE_STREAM,   /* SSE: pass events, read usage on the way */
    MODE_MODELS,   /* hold the model list and keep allowed models only */
    MODE_ERROR     /* replace an error page of httpd's with JSON */
} meter_mode_t;

typedef struct {
    request_rec *r;
    aiproxy_req_t *st;
    int attempt;
    meter_mode_t mode;
    apr_bucket_brigade *held;
    aiproxy_sse_t *sse;
    apr_bucket_brigade *out;
    aiproxy_endpoint_t ep;
    apr_pool_t *event_pool; /* what reading one event takes, then cleared */
    int client_gone;        /* the stream is read to its end for its usage */
    apr_time_t gone_at;     /* since when */
    aiproxy_jscan_t *scan;  /* finds `usage` in a held answer as it comes */
    apr_off_t held_len;
    apr_file_t *spill;      /* where a held answer past HELD_IN_MEMORY goes */
    apr_uint64_t spilled;   /* its bytes, counted in child_spilled */
    const char *unheld;     /* why the answer could not be held, if so */
} meter_t;

/* What a request is charged when the provider's final usage never came:
 * a stream cut short pays the input the provider reported at its start
 * (else the reservation's input bound) and the output its deltas show (its
 * whole output bound when reasoning may have gone unseen); a
 * request that was answered without usage, or not answered in time after
 * it was sent, pays its reservation. 1 when it is charged anything. */
static int estimate_usage(aiproxy_req_t *st, int status)
{
    if (st->streaming && status < 400) {
        if (st->stream.start_found) {
            st->usage = st->stream.start_usage;
        }
        else {
            memset(&st->usage, 0, sizeof(st->usage));
            st->usage.input = st->in_tokens;
        }
        if (st->stream.delta_tokens > st->usage.output)
            st->usage.output = st->stream.delta_tokens;
        /* Reasoning the stream did not show, an event too large to read
         * (which may have held the usage), or a stream that went on after
         * it was cut: the whole output bound. */
        if ((st->price->reasoning || st->info.reasoning || st->oversize ||
             st->drain_cut) &&
            st->out_tokens > st->usage.output)
            st->usage.output = st->out_tokens;
        return 1;
    }
    return (!st->streaming && status < 400) || st->timed_out;
}

/* Charges the request once; later calls do nothing. */
static void settle(request_rec *r, aiproxy_req_t *st, int status)
{
    aiproxy_ledger_t *ledger = aiproxy_child_ledger();
    aiproxy_record_t rec;
    const char *err = "no store connection pool";
    aiproxy_month_t m;

    if (!st->held || st->settled)
        return;
    st->settled = 1;
    /* A stream cut while read on for a gone client had not ended: usage
     * seen so far (some providers put running totals on every chunk) is
     * not final, and the estimate charges its whole output bound. */
    if (st->streaming && st->stream.usage_found &&
        !(st->drain_cut && !st->stream.ended)) {
        st->usage = st->stream.usage;
        st->usage_found = 1;
    }
    memset(&rec, 0, sizeof(rec));
    if (st->usage_found)
        rec.cost = aiproxy_cost_of(st->price, &st->usage);
    else if ((rec.estimated = estimate_usage(st, status)))
        rec.cost = st->streaming ? aiproxy_cost_of(st->price, &st->usage)
                                 : st->reserved;
    /* The reservation is the most this request may cost, so a charge above
     * it would pass the cap: it means a bound is wrong, which ops must see. */
    if (rec.cost > st->reserved) {
        if (!rec.estimated)
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, AIPLOGNO(01202)
                          "request %s of %s cost %s USD, more than its "
                          "reservation of %s USD: charged the reservation",
                          st->id, st->email,
                          aiproxy_money_format(r->pool, rec.cost),
                          aiproxy_money_format(r->pool, st->reserved));
        rec.cost = st->reserved;
    }
    rec.id = st->id;
    rec.email = st->email;
    rec.month = st->month;
    rec.endpoint = st->endpoint;
    rec.model = st->info.model;
    rec.provider = st->provider ? st->provider->name : "";
    rec.time_ms = st->start_ms;
    rec.usage = st->usage;
    rec.reserved = st->reserved;
    rec.held = 1;
    rec.status = status;
    apr_table_setn(r->notes, "aiproxy-cost",
                   aiproxy_money_format(r->pool, rec.cost));
    if (!ledger || aiproxy_ledger_settle(ledger, r->pool, &rec, &m, &err)
                   != AIPROXY_LEDGER_OK) {
        /* The hold expires by itself; the charge needs a human. */
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, AIPLOGNO(01201)
                      "settlement failed for request %s of %s (cost %s "
                      "USD): %s", st->id, st->email,
                      aiproxy_money_format(r->pool, rec.cost), err);
        st->month_state.spent += rec.cost;
        st->month_state.requests += aiproxy_ledger_counts(&rec);
        st->reserved = rec.cost;
        return;
    }
    st->month_state = m;
    st->reserved = rec.cost;   /* from here on: the final cost */
}

static void set_final_headers(request_rec *r, aiproxy_req_t *st)
{
    aiproxy_reply_set_money_headers(r, r->headers_out, st->reserved,
                              &st->month_state);
}

/* Upstream response headers that name the university's account at the
 * provider, its quota there, or set the provider's cookies: the provider's
 * business, not the student's. Request ids and Retry-After stay. */
static const char *const private_headers[] = {
    "openai-organization", "openai-project", "anthropic-organization-id",
    "set-cookie", "set-cookie2", NULL
};
static const char *const private_prefixes[] = {
    "x-ratelimit-", "anthropic-ratelimit-", NULL
};

static int collect_private(void *baton, const char *key, const char *value)
{
    apr_array_header_t *gone = baton;
    const char *const *h;

    (void)value;
    for (h = private_prefixes; *h; h++)
        if (!strncasecmp(key, *h, strlen(*h)))
            APR_ARRAY_PUSH(gone, const char *) = key;
    return 1;
}

static void drop_private_headers(request_rec *r, apr_table_t *t)
{
    apr_array_header_t *gone = apr_array_make(r->pool, 8,
                                              sizeof(const char *));
    const char *const *h;
    int i;

    for (h = private_headers; *h; h++)
        apr_table_unset(t, *h);
    apr_table_do(collect_private, gone, t, NULL);
    for (i = 0; i < gone->nelts; i++)
        apr_table_unset(t, APR_ARRAY_IDX(gone, i, const char *));
}

static meter_t *meter_init(ap_filter_t *f, aiproxy_req_t *st)
{
    request_rec *r = f->r;
    meter_t *m = apr_pcalloc(r->pool, sizeof(*m));
    const char *ct = r->content_type ? r->content_type
                     : apr_table_get(r->headers_out, "Content-Type");

    m->r = r;
    m->st = st;
    m->attempt = st->attempt;
    drop_private_headers(r, r->headers_out);
    drop_private_headers(r, r->err_headers_out);
    m->held = apr_brigade_create(r->pool, f->c->bucket_alloc);
    if (!st->error_generated)
        st->upstream_status = r->status;    /* as answered, for ops */
    if (st->error_generated)
        m->mode = MODE_ERROR;
    else if (!st->last_attempt &&
             (r->status == HTTP_UNAUTHORIZED ||
              r->status == HTTP_TOO_MANY_REQUESTS || r->status >= 500)) {
        m->mode = MODE_DISCARD;
        st->attempt_failed = 1;
    }
    else if (r->status == HTTP_UNAUTHORIZED) {
        /* The provider refused our key: not the student's token. */
        m->mode = MODE_ERROR;
        r->status = HTTP_BAD_GATEWAY;
        r->status_line = NULL;
    }
    else if (!st->held)
        m->mode = MODE_MODELS;
    else if ((ct && !strncasecmp(ct, "text/event-stream", 17)) ||
             (st->info.stream && r->status < 300 &&
              !(ct && !strncasecmp(ct, "application/json", 16))))
        /* A stream is read as one whatever its upstream calls it, so its
         * usage is found and its events pass as they come; an upstream
         * that answers a stream request in JSON is read as JSON. */
        m->mode = MODE_STREAM;
    else
        m->mode = MODE_BUFFER;
    if (m->mode == MODE_BUFFER)
        m->scan = aiproxy_jscan_create(r->pool, "usage", MAX_USAGE_TEXT);
    if (m->mode == MODE_STREAM) {
        st->streaming = 1;
        m->sse = aiproxy_sse_create(r->pool, MAX_SSE_EVENT);
        m->out = apr_brigade_create(r->pool, f->c->bucket_alloc);
        m->ep = aiproxy_endpoint_kind(st->endpoint);
        apr_pool_create(&m->event_pool, r->pool);
        st->stream.hide_usage = st->asked_stream_usage;
        /* The final cost is known only at the end: the headers carry the
         * month at admission and the most this request may cost. */
        aiproxy_reply_set_money_headers(r, r->headers_out, -1, &st->month_state);
        apr_table_setn(r->headers_out, "costMax",
                       aiproxy_money_format(r->pool, st->reserved));
        apr_table_unset(r->headers_out, "Content-Length");
    }
    f->ctx = m;
    return m;
}

/* The SSE comment that carries the final cost: every SSE client, the
 * OpenAI and Anthropic SDKs included, skips comment lines. */
static void append_cost_comment(meter_t *m)
{
    aiproxy_req_t *st = m->st;
    request_rec *r = m->r;
    const char *line = apr_psprintf(r->pool, ": aiproxy {\"cost\":\"%s\","
                                    "\"monthlyCost\":\"%s\",\"monthlyRequests\":"
                                    "%" APR_INT64_T_FMT ",\"estimated\":%s}\n\n",
                                    aiproxy_money_format(r->pool, st->reserved),
                                    aiproxy_money_format(r->pool,
                                                         st->month_state.spent),
                                    st->month_state.requests,
                                    st->usage_found ? "false" : "true");

    APR_BRIGADE_INSERT_TAIL(m->out, apr_bucket_pool_create(
                                line, strlen(line), r->pool,
                                m->out->bucket_alloc));
}

static void finish_stream(meter_t *m)
{
    if (m->st->settled)
        return;
    settle(m->r, m->st, m->r->status);
    append_cost_comment(m);
}

/* One event: the API's adapter reads it; what it gives back passes on. */
static void on_event(void *baton, const aiproxy_sse_event_t *ev)
{
    meter_t *m = baton;
    aiproxy_req_t *st = m->st;
    const char *out;
    apr_size_t len;

    if (ev->oversize)
        st->oversize = 1;
    out = aiproxy_api(st->api)->stream_event(&st->stream, m->event_pool,
                                             m->ep, ev, &len);
    if (st->stream.ended)
        finish_stream(m);
    if (out)
        APR_BRIGADE_INSERT_TAIL(m->out, apr_bucket_heap_create(
                                    out, len, NULL, m->out->bucket_alloc));
    apr_pool_clear(m->event_pool);
}

/* Passes what is ready to the client. When the client has gone, the rest
 * of the stream is still read (and dropped): the provider bills it all, and
 * its final usage, which a client could otherwise cut off just after the
 * answer (hiding a reasoning model's hidden tokens), comes at the end.
 * mod_proxy stops reading when a pass fails or the connection is marked
 * aborted, so neither is shown to it until the stream's end. */
static apr_status_t pass_on(ap_filter_t *f, meter_t *m, int eos)
{
    apr_status_t rv = APR_SUCCESS;

    if (!m->client_gone && !APR_BRIGADE_EMPTY(m->out))
        rv = ap_pass_brigade(f->next, m->out);
    /* HTTP/2 marks the connection aborted from another thread when the
     * client goes, whether or not this pass wrote anything. */
    if (!m->client_gone && !eos && (rv != APR_SUCCESS || f->c->aborted)) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, rv, f->r, AIPLOGNO(01203)
                      "client gone: reading the rest of the stream for "
                      "its usage");
        m->client_gone = 1;
        m->gone_at = apr_time_now();
    }
    /* Reading on holds a worker: for AIProxyDrainTimeout at most, then the
     * stream is cut and charged as one cut before its usage, with its
     * whole output bound (it went on out of sight). */
    if (m->client_gone && !eos &&
        apr_time_now() - m->gone_at > apr_time_from_sec(m->st->g->drain_timeout)) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, f->r, AIPLOGNO(01204)
                      "client gone %d s ago: the stream is cut and charged "
                      "its output bound", m->st->g->drain_timeout);
        m->st->drain_cut = 1;
        f->c->aborted = 1;
        apr_brigade_cleanup(m->out);
        return APR_ECONNABORTED;
    }
    if (m->client_gone) {
        rv = APR_SUCCESS;
        f->c->aborted = eos ? 1 : 0;
    }
    apr_brigade_cleanup(m->out);
    return rv;
}

static apr_status_t stream_filter(ap_filter_t *f, meter_t *m,
                                  apr_bucket_brigade *bb)
{
    apr_bucket *b;
    apr_status_t rv;

    while (!APR_BRIGADE_EMPTY(bb)) {
        b = APR_BRIGADE_FIRST(bb);
        if (APR_BUCKET_IS_EOS(b)) {
            apr_size_t n;
            const char *rest;

            aiproxy_sse_end(m->sse, on_event, m);
            rest = aiproxy_sse_take_pending(m->sse, &n);

            if (n)
                APR_BRIGADE_INSERT_TAIL(m->out, apr_bucket_heap_create(
                                            rest, n, NULL,
                                            m->out->bucket_alloc));
            /* The cost comment must start a line of its own. */
            if (n && rest[n - 1] != '\n' && rest[n - 1] != '\r')
                APR_BRIGADE_INSERT_TAIL(m->out, apr_bucket_immortal_create(
                                            "\n\n", 2,
                                            m->out->bucket_alloc));
            finish_stream(m);
            APR_BUCKET_REMOVE(b);
            APR_BRIGADE_INSERT_TAIL(m->out, b);
            apr_brigade_cleanup(bb);
            return pass_on(f, m, 1);
        }
        if (APR_BUCKET_IS_METADATA(b)) {
            /* FLUSH and friends go out at once, after what came before. */
            APR_BUCKET_REMOVE(b);
            APR_BRIGADE_INSERT_TAIL(m->out, b);
            continue;
        }
        {
            const char *data;
            apr_size_t len;

            if ((rv = apr_bucket_read(b, &data, &len, APR_BLOCK_READ))
                != APR_SUCCESS)
                return rv;
            aiproxy_sse_feed(m->sse, data, len, on_event, m);
            apr_bucket_delete(b);
        }
    }
    return pass_on(f, m, 0);
}

/* A 200 answer to a cacheable request, for the next identical one. */
static void store_in_cache(meter_t *m, const char *body, apr_size_t len)
{
    request_rec *r = m->r;
    const char *ctype = r->content_type ? r->content_type
                        : apr_table_get(r->headers_out, "Content-Type");

    /* A HEAD's answer has no body to give the next GET. */
    if (!m->st->cache_key || r->status != HTTP_OK || r->header_only || !len)
        return;
    aiproxy_cache_put(r, m->st->cache_key, ctype ? ctype : "application/json",
                      body, len);
    aiproxy_stat_inc(AIPROXY_STAT_CACHE_STORES);
}

/* Keeps only the allowed models in a model list. */
static void filter_models(meter_t *m, char **bodyp, apr_size_t *lenp)
{
    const char *body = *bodyp;
    apr_size_t len = *lenp;
    request_rec *r = m->r;
    const aiproxy_dir_conf_t *d = m->st->dir;
    char *out;
    const char *err;
    aiproxy_json_t *root = aiproxy_json_parse(r->pool, body, len, &err);
    aiproxy_json_t *data = aiproxy_json_get(root, "data");
    apr_size_t i, n;

    apr_brigade_cleanup(m->held);
    if (aiproxy_json_is_array(data)) {
        for (i = 0, n = aiproxy_json_array_size(data); i < n;) {
            const char *id = aiproxy_json_string(aiproxy_json_get(
                                 aiproxy_json_array_at(data, i), "id"));
            int keep = id && (d->any_model
                ? apr_hash_get(m->st->g->prices, id, APR_HASH_KEY_STRING) != NULL
                : d->models &&
                  apr_hash_get(d->models, id, APR_HASH_KEY_STRING) != NULL);

            if (keep) {
                i++;
            }
            else {
                aiproxy_json_array_remove(data, i);
                n--;
            }
        }
        if ((out = aiproxy_json_dump(r->pool, root, &len))) {
            body = out;
            apr_table_unset(r->headers_out, "Content-Length");
        }
    }
    APR_BRIGADE_INSERT_TAIL(m->held, apr_bucket_pool_create(
                                body, len, r->pool, m->held->bucket_alloc));
    *bodyp = (char *)body;
    *lenp = len;
}

static void replace_error_page(meter_t *m)
{
    request_rec *r = m->r;
    const char *body = m->st->timed_out
        ? aiproxy_error_body(r->pool, "upstream_error", "upstream_timeout",
                             "The provider did not answer in time (504). It "
                             "may have done the work, so this request was "
                             "charged its reserved maximum.")
        : m->st->error_generated
        ? aiproxy_error_body(r->pool, "upstream_error",
                             r->status == HTTP_GATEWAY_TIME_OUT
                             ? "upstream_timeout" : "upstream_unavailable",
                             apr_psprintf(r->pool, "The provider did not "
                                          "answer (%d); you were not "
                                          "charged.", r->status))
        : aiproxy_error_body(r->pool, "upstream_error", "upstream_auth",
                             "The provider refused the gateway's "
                             "credentials; you were not charged.");

    apr_brigade_cleanup(m->held);
    ap_set_content_type(r, "application/json");
    apr_table_unset(r->headers_out, "Content-Length");
    APR_BRIGADE_INSERT_TAIL(m->held, apr_bucket_pool_create(
                                body, strlen(body), r->pool,
                                m->held->bucket_alloc));
}

/* What this child's answers hold in files at once: at most four times
 * AIProxyChildMemory, so a flood of large answers cannot fill the disk
 * (or, where $TMPDIR is tmpfs, memory). */
static volatile apr_uint64_t child_spilled;

static apr_status_t spill_give_back(void *v)
{
    meter_t *m = v;

    apr_atomic_sub64(&child_spilled, m->spilled);
    m->spilled = 0;
    return APR_SUCCESS;
}

static int spill_take(meter_t *m, apr_size_t n)
{
    apr_uint64_t most = 4 * (apr_uint64_t)m->st->g->child_memory;

    if (apr_atomic_add64(&child_spilled, n) + n > most) {
        apr_atomic_sub64(&child_spilled, n);
        return 0;
    }
    m->spilled += n;
    return 1;
}

/* Moves what is held in memory to a file of its own, unlinked at once so
 * that nothing is left behind whatever happens to the child. */
static apr_status_t spill_open(meter_t *m)
{
    request_rec *r = m->r;
    const char *dir, *d;
    char *path;
    apr_size_t n;
    apr_bucket *b;
    apr_status_t rv;

    if ((rv = apr_temp_dir_get(&dir, r->pool)) != APR_SUCCESS)
        return rv;
    path = apr_pstrcat(r->pool, dir, "/aiproxy-answer-XXXXXX", NULL);
    if ((rv = apr_file_mktemp(&m->spill, path, APR_FOPEN_CREATE |
                              APR_FOPEN_READ | APR_FOPEN_WRITE |
                              APR_FOPEN_EXCL | APR_FOPEN_BINARY, r->pool))
        != APR_SUCCESS)
        return rv;
    apr_file_remove(path, r->pool);
    apr_pool_cleanup_register(r->pool, m, spill_give_back,
                              apr_pool_cleanup_null);
    if (!spill_take(m, (apr_size_t)m->held_len))
        return APR_ENOSPC;
    for (b = APR_BRIGADE_FIRST(m->held); b != APR_BRIGADE_SENTINEL(m->held);
         b = APR_BUCKET_NEXT(b))
        if ((rv = apr_bucket_read(b, &d, &n, APR_BLOCK_READ)) != APR_SUCCESS ||
            (rv = apr_file_write_full(m->spill, d, n, NULL)) != APR_SUCCESS)
            return rv;
    apr_brigade_cleanup(m->held);
    return APR_SUCCESS;
}

/* Keeps one piece of a non-streamed answer: read for its usage on the way,
 * held in memory up to HELD_IN_MEMORY, then in a file, so an answer of any
 * size costs the child the same memory. */
static void hold(meter_t *m, apr_bucket *b)
{
    request_rec *r = m->r;
    const char *d;
    apr_size_t n;
    apr_status_t rv;

    /* An error page that is replaced is not kept at all. */
    if (APR_BUCKET_IS_METADATA(b) || m->mode == MODE_ERROR) {
        apr_bucket_delete(b);
        return;
    }
    /* Read while still in its brigade: a socket or pipe bucket puts what
     * it has not read yet after itself. */
    if ((rv = apr_bucket_read(b, &d, &n, APR_BLOCK_READ)) != APR_SUCCESS) {
        apr_bucket_delete(b);
        m->unheld = "could not be read";
        return;
    }
    /* Read for its usage even when it cannot be kept: it is charged. */
    if (m->scan)
        aiproxy_jscan_feed(m->scan, d, n);
    if (m->unheld) {
        apr_bucket_delete(b);
        return;
    }
    m->held_len += n;
    if (!m->spill && m->held_len > HELD_IN_MEMORY) {
        if (m->mode == MODE_MODELS)
            m->unheld = "is too large";
        else if ((rv = spill_open(m)) != APR_SUCCESS)
            m->unheld = "could not be kept";
    }
    else if (m->spill && m->held_len > MAX_HELD_ANSWER) {
        m->unheld = "is too large";
    }
    if (m->spill && !m->unheld && !spill_take(m, n))
        m->unheld = "could not be kept while the gateway holds as many as "
                    "it may";
    else if (m->spill && !m->unheld &&
             (rv = apr_file_write_full(m->spill, d, n, NULL)) != APR_SUCCESS)
        m->unheld = "could not be kept";
    if (m->unheld) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r, AIPLOGNO(01205)
                      "the provider's answer %s (%" APR_OFF_T_FMT " bytes "
                      "so far): answered 502", m->unheld, m->held_len);
        apr_brigade_cleanup(m->held);
    }
    if (m->spill || m->unheld) {
        apr_bucket_delete(b);
        return;
    }
    APR_BUCKET_REMOVE(b);
    apr_bucket_setaside(b, r->pool);
    APR_BRIGADE_INSERT_TAIL(m->held, b);
}

/* The usage found in a held answer. */
static void held_usage(meter_t *m)
{
    apr_pool_t *sub;
    apr_size_t len;
    const char *text = aiproxy_jscan_value(m->scan, &len);

    if (text) {
        apr_pool_create(&sub, m->r->pool);
        if (aiproxy_usage_from_value(sub, text, len, m->st->api,
                                     &m->st->usage))
            m->st->usage_found = 1;
        apr_pool_destroy(sub);
    }
}

static void replace_unheld(meter_t *m)
{
    request_rec *r = m->r;
    const char *body = aiproxy_error_body(r->pool, "upstream_error",
                                          "upstream_answer_unheld",
                                          apr_psprintf(r->pool, "The "
                                          "provider's answer %s for the "
                                          "gateway to pass on; you were "
                                          "charged what it reported.",
                                          m->unheld));

    apr_brigade_cleanup(m->held);
    r->status = HTTP_BAD_GATEWAY;
    r->status_line = NULL;
    ap_set_content_type(r, "application/json");
    apr_table_unset(r->headers_out, "Content-Length");
    APR_BRIGADE_INSERT_TAIL(m->held, apr_bucket_pool_create(
                                body, strlen(body), r->pool,
                                m->held->bucket_alloc));
}

/* Non-streamed responses: hold everything, then price, report, pass. */
static apr_status_t buffer_filter(ap_filter_t *f, meter_t *m,
                                  apr_bucket_brigade *bb)
{
    request_rec *r = f->r;
    aiproxy_req_t *st = m->st;
    apr_bucket *b;
    char *body;
    apr_size_t len;
    int status;

    while (!APR_BRIGADE_EMPTY(bb)) {
        b = APR_BRIGADE_FIRST(bb);
        if (APR_BUCKET_IS_EOS(b))
            break;
        hold(m, b);
    }
    if (APR_BRIGADE_EMPTY(bb))
        return APR_SUCCESS;
    /* EOS: the body is complete. */
    status = r->status;
    if (m->mode == MODE_ERROR) {
        replace_error_page(m);
        settle(r, st, status);
        set_final_headers(r, st);
    }
    else if (m->mode == MODE_MODELS) {
        if (m->unheld)
            replace_unheld(m);
        else if (apr_brigade_pflatten(m->held, &body, &len, r->pool)
                 == APR_SUCCESS) {
            filter_models(m, &body, &len);
            store_in_cache(m, body, len);
        }
    }
    else {
        held_usage(m);
        if (m->unheld)
            replace_unheld(m);
        else if (m->spill)
            apr_brigade_insert_file(m->held, m->spill, 0, m->held_len,
                                    r->pool);
        else if (m->st->cache_key &&
                 apr_brigade_pflatten(m->held, &body, &len, r->pool)
                 == APR_SUCCESS)
            /* At most HELD_IN_MEMORY: a copy for the cache. */
            store_in_cache(m, body, len);
        settle(r, st, status);
        set_final_headers(r, st);
    }
    APR_BRIGADE_CONCAT(m->held, bb);
    return ap_pass_brigade(f->next, m->held);
}

apr_status_t aiproxy_meter_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    meter_t *m = f->ctx;

    if (!m || (m->mode != MODE_ERROR && m->attempt != m->st->attempt)) {
        aiproxy_req_t *st = aiproxy_req_get(f->r);

        if (!st || f->r->main) {
            ap_remove_output_filter(f);
            return ap_pass_brigade(f->next, bb);
        }
        m = meter_init(f, st);
    }
    if (m->mode == MODE_DISCARD) {
        apr_brigade_cleanup(bb);
        return APR_SUCCESS;
    }
    /* From here on bytes reach the client: no other attempt may follow. */
    m->st->committed = 1;
    if (m->mode == MODE_STREAM)
        return stream_filter(f, m, bb);
    return buffer_filter(f, m, bb);
}

/* httpd's own error responses (mod_proxy's 502 and 504) replace the
 * output filters: put ours back to answer in JSON and report the charge. */
void aiproxy_meter_insert_error_filter(request_rec *r)
{
    aiproxy_req_t *st = aiproxy_req_get(r);

    if (!st || st->reply_status || !r->proxyreq || r->main)
        return;
    st->error_generated = 1;
    ap_add_output_filter(METER_FILTER, NULL, r, r->connection);
}

/* Whatever happened (client gone, upstream cut, error page), a hold that
 * is still open is settled here, after the response. */
int aiproxy_meter_log_transaction(request_rec *r)
{
    aiproxy_req_t *st = aiproxy_req_get(r);

    if (st && st->held && !st->settled)
        settle(r, st, r->status);
    return DECLINED;
}
