/* Metering a stream: events pass as they come, each read by the API's
 * adapter; the cost comes last, as an SSE comment. */
#include <string.h>
#include <apr_atomic.h>
#include <apr_strings.h>

#include "httpd.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_filter.h"

#include "aiproxy_cache.h"
#include "aiproxy_counters.h"
#include "aiproxy_meter_int.h"
#include "aiproxy_reply.h"
#include "aiproxy_usage_read.h"
#include "aiproxy_xlate.h"

APLOG_USE_MODULE(aiproxy);

/* The SSE comment that carries the final cost: every SSE client, the
 * OpenAI and Anthropic SDKs included, skips comment lines. */
static void append_cost_comment(aiproxy_meter_t *m)
{
    aiproxy_req_t *st = m->st;
    request_rec *r = m->r;
    const char *line = apr_psprintf(r->pool, ": aiproxy {\"cost\":\"%s\","
                                    "\"monthlyCost\":\"%s\",\"monthlyRequests\":"
                                    "%" APR_INT64_T_FMT ",\"estimated\":%s}\n\n",
                                    aiproxy_money_format(r->pool, st->meter.cost),
                                    aiproxy_money_format(r->pool,
                                                         st->month_state.spent),
                                    st->month_state.requests,
                                    st->meter.usage_found ? "false" : "true");

    APR_BRIGADE_INSERT_TAIL(m->out, apr_bucket_pool_create(
                                line, strlen(line), r->pool,
                                m->out->bucket_alloc));
}

static void finish_stream(aiproxy_meter_t *m)
{
    if (m->st->meter.settled)
        return;
    aiproxy_meter_settle(m->r, m->st, m->r->status);
    append_cost_comment(m);
}

/* One event: the API's adapter reads it; what it gives back passes on. */
static void on_event(void *baton, const aiproxy_sse_event_t *ev)
{
    aiproxy_meter_t *m = baton;
    aiproxy_req_t *st = m->st;
    const char *out;
    apr_size_t len;

    if (ev->oversize)
        st->meter.oversize = 1;
    out = aiproxy_api(st->fwd.provider->api)->stream_event(&st->meter.stream, m->event_pool,
                                             m->ep, ev, &len);
    if (m->xs) {
        apr_array_header_t *evs = aiproxy_xlate_stream_event(
            m->xs, m->event_pool, ev->name, ev->data, ev->data_len);
        int i;

        for (i = 0; i < evs->nelts; i++) {
            const char *e = APR_ARRAY_IDX(evs, i, const char *);

            APR_BRIGADE_INSERT_TAIL(m->out, apr_bucket_heap_create(
                                        e, strlen(e), NULL,
                                        m->out->bucket_alloc));
        }
        out = NULL;
    }
    if (st->meter.stream.ended)
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
static apr_status_t pass_on(ap_filter_t *f, aiproxy_meter_t *m, int eos)
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
        m->st->meter.drain_cut = 1;
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

apr_status_t aiproxy_meter_stream(ap_filter_t *f, aiproxy_meter_t *m,
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
            /* A translated stream's client speaks another API: the
             * provider's unfinished bytes are nothing it could read. */
            if (m->xs)
                n = 0;

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

