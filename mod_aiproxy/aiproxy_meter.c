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

#include "aiproxy_admit.h"
#include "aiproxy_cache.h"
#include "aiproxy_jscan.h"
#include "aiproxy_lease.h"
#include "aiproxy_meter.h"
#include "aiproxy_meter_int.h"
#include "aiproxy_xlate.h"
#include "aiproxy_reply.h"
#include "aiproxy_req.h"
#include "aiproxy_counters.h"
#include "aiproxy_sse.h"
#include "aiproxy_usage_read.h"

APLOG_USE_MODULE(aiproxy);

#define METER_FILTER "AIPROXY_METER"

/* What a request is charged when the provider's final usage never came:
 * a stream cut short pays the input the provider reported at its start
 * (else the reservation's input bound) and the output its deltas show (its
 * whole output bound when reasoning may have gone unseen); a
 * request that was answered without usage, or not answered in time after
 * it was sent, pays its reservation. 1 when it is charged anything. */
static int estimate_usage(aiproxy_req_t *st, int status)
{
    if (st->meter.streaming && status < 400) {
        /* Searches feed passes whose input the start does not show: the
         * input bound, and every search max_uses allowed. */
        if (st->meter.stream.start_found && !st->info.web_searches) {
            st->meter.usage = st->meter.stream.start_usage;
        }
        else {
            memset(&st->meter.usage, 0, sizeof(st->meter.usage));
            st->meter.usage.input = st->in_tokens;
        }
        if (st->meter.stream.delta_tokens > st->meter.usage.output)
            st->meter.usage.output = st->meter.stream.delta_tokens;
        /* Reasoning the stream did not show, an event too large to read
         * (which may have held the usage), or a stream that went on after
         * it was cut: the whole output bound. */
        if ((st->price->reasoning || st->info.reasoning || st->meter.oversize ||
             st->meter.drain_cut) &&
            st->out_tokens > st->meter.usage.output)
            st->meter.usage.output = st->out_tokens;
        st->meter.usage.web_search = st->info.web_searches;
        return 1;
    }
    return (!st->meter.streaming && status < 400) || st->meter.timed_out;
}

/* Charges the request once; later calls do nothing. */
void aiproxy_meter_settle(request_rec *r, aiproxy_req_t *st, int status)
{
    aiproxy_ledger_t *ledger = aiproxy_child_ledger();
    aiproxy_record_t rec;
    const char *err = "no store connection pool";
    aiproxy_month_t m;

    if (st->free_ep) {
        aiproxy_admit_settle_free(r, st, status);
        return;
    }
    if (!st->held || st->meter.settled)
        return;
    st->meter.settled = 1;
    /* A stream cut while read on for a gone client had not ended: usage
     * seen so far (some providers put running totals on every chunk) is
     * not final, and the estimate charges its whole output bound. */
    if (st->meter.streaming && st->meter.stream.usage_found &&
        !(st->meter.drain_cut && !st->meter.stream.ended)) {
        st->meter.usage = st->meter.stream.usage;
        st->meter.usage_found = 1;
    }
    aiproxy_req_record(st, st->fwd.provider ? st->fwd.provider->name : "",
                       status, &rec);
    if (st->media_ep)
        /* Its own units, else what an answer without them may have cost:
         * the reservation (a failure: nothing). */
        rec.cost = st->meter.media_found ? st->meter.media_cost
                   : (rec.estimated = (status < 400 || st->meter.timed_out))
                   ? st->reserved : 0;
    else if (st->meter.usage_found)
        rec.cost = aiproxy_cost_of(st->price, &st->meter.usage);
    else if ((rec.estimated = estimate_usage(st, status)))
        rec.cost = st->meter.streaming
                   ? aiproxy_cost_of(st->price, &st->meter.usage)
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
    rec.usage = st->meter.usage;
    rec.reserved = st->reserved;
    rec.held = 1;
    apr_table_setn(r->notes, "aiproxy-cost",
                   aiproxy_money_format(r->pool, rec.cost));
    aiproxy_admit_course_settle(r, st, &rec);
    if (st->ticket) {
        /* On a lease: settled here, written with the lease's next write;
         * the record goes to the writer now. */
        aiproxy_lease_settle(st, rec.cost, aiproxy_ledger_counts(&rec),
                             &st->month_state);
        st->meter.cost = rec.cost;
        if (!ledger || aiproxy_ledger_put_record(ledger, r->pool, &rec, &err)
                       != AIPROXY_LEDGER_OK)
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, AIPLOGNO(01206)
                          "no record for request %s of %s (cost %s USD, "
                          "charged): %s", st->id, st->email,
                          aiproxy_money_format(r->pool, rec.cost), err);
        return;
    }
    if (!ledger || aiproxy_ledger_settle(ledger, r->pool, &rec, &m, &err)
                   != AIPROXY_LEDGER_OK) {
        /* The hold expires by itself; the charge needs a human. */
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, AIPLOGNO(01201)
                      "settlement failed for request %s of %s (cost %s "
                      "USD): %s", st->id, st->email,
                      aiproxy_money_format(r->pool, rec.cost), err);
        st->month_state.spent += rec.cost;
        st->month_state.requests += aiproxy_ledger_counts(&rec);
        st->meter.cost = rec.cost;
        /* The settlement may have landed with its reply lost: its record
         * is queued all the same. Had it not, the hold's sweep replaces
         * this record with the estimated one of what it charged. */
        if (ledger && aiproxy_ledger_put_record(ledger, r->pool, &rec, &err)
                      != AIPROXY_LEDGER_OK)
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, AIPLOGNO(01207)
                          "no record for request %s: %s", st->id, err);
        return;
    }
    st->month_state = m;
    st->meter.cost = rec.cost;
}

void aiproxy_meter_final_headers(request_rec *r, aiproxy_req_t *st)
{
    aiproxy_reply_set_money_headers(r, r->headers_out, st->meter.cost,
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

static aiproxy_meter_t *meter_init(ap_filter_t *f, aiproxy_req_t *st)
{
    request_rec *r = f->r;
    aiproxy_meter_t *m = apr_pcalloc(r->pool, sizeof(*m));
    const char *ct = r->content_type ? r->content_type
                     : apr_table_get(r->headers_out, "Content-Type");

    m->r = r;
    m->st = st;
    m->attempt = st->fwd.n;
    drop_private_headers(r, r->headers_out);
    drop_private_headers(r, r->err_headers_out);
    m->held = apr_brigade_create(r->pool, f->c->bucket_alloc);
    if (!st->meter.error_generated) {
        st->fwd.upstream_status = r->status;    /* as answered, for ops */
        st->fwd.answered_at = apr_time_now();
    }
    if (st->meter.error_generated)
        m->mode = MODE_ERROR;
    else if (!st->fwd.last &&
             (r->status == HTTP_UNAUTHORIZED ||
              r->status == HTTP_TOO_MANY_REQUESTS || r->status >= 500)) {
        m->mode = MODE_DISCARD;
        st->fwd.failed = 1;
    }
    else if (r->status == HTTP_UNAUTHORIZED) {
        /* The provider refused our key: not the student's token. */
        m->mode = MODE_ERROR;
        r->status = HTTP_BAD_GATEWAY;
        r->status_line = NULL;
    }
    else if (st->is_models)
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
    if (st->media_ep && (m->mode == MODE_BUFFER || m->mode == MODE_STREAM))
        aiproxy_meter_media_init(m);
    if (m->mode == MODE_BUFFER)
        m->scan = aiproxy_jscan_create(r->pool, "usage",
                                       AIPROXY_USAGE_TEXT_MAX);
    if (m->mode == MODE_STREAM) {
        st->meter.streaming = 1;
        m->sse = aiproxy_sse_create(r->pool, MAX_SSE_EVENT);
        m->out = apr_brigade_create(r->pool, f->c->bucket_alloc);
        m->ep = aiproxy_endpoint_kind(st->endpoint);
        /* A translated stream is read in the provider's terms, then
         * written in the client's. */
        if (st->fwd.provider && st->fwd.provider->api != st->api) {
            m->ep = aiproxy_endpoint_kind(aiproxy_xlate_endpoint(
                                              st->api, st->endpoint));
            m->xs = aiproxy_xlate_stream_create(
                r->pool, st->api, st->info.include_usage,
                apr_time_sec(r->request_time));
        }
        apr_pool_create(&m->event_pool, r->pool);
        st->meter.stream.hide_usage = st->meter.asked_stream_usage;
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

apr_status_t aiproxy_meter_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    aiproxy_meter_t *m = f->ctx;

    if (!m || (m->mode != MODE_ERROR && m->attempt != m->st->fwd.n)) {
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
    m->st->fwd.committed = 1;
    if (m->mode == MODE_STREAM)
        return aiproxy_meter_stream(f, m, bb);
    if (m->mode == MODE_PASS)
        return aiproxy_meter_pass(f, m, bb);
    return aiproxy_meter_held(f, m, bb);
}

/* httpd's own error responses (mod_proxy's 502 and 504) replace the
 * output filters: put ours back to answer in JSON and report the charge. */
void aiproxy_meter_insert_error_filter(request_rec *r)
{
    aiproxy_req_t *st = aiproxy_req_get(r);

    if (!st || st->reply.status || !r->proxyreq || r->main)
        return;
    st->meter.error_generated = 1;
    ap_add_output_filter(METER_FILTER, NULL, r, r->connection);
}

/* Whatever happened (client gone, upstream cut, error page), a hold that
 * is still open is settled here, after the response. */
int aiproxy_meter_log_transaction(request_rec *r)
{
    aiproxy_req_t *st = aiproxy_req_get(r);

    if (st && (st->held || st->free_ep) && !st->meter.settled)
        aiproxy_meter_settle(r, st, r->status);
    return DECLINED;
}
