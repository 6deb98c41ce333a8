/* Metering an answer held whole (its cost goes in the headers): in
 * memory up to 1 MiB, then in an unlinked file; usage found as it comes.
 * Also the model list, kept to the allowed models, and httpd's own error
 * pages, replaced by JSON. */
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

/* A 200 answer to a cacheable request, for the next identical one. */
static void store_in_cache(aiproxy_meter_t *m, const char *body, apr_size_t len)
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
static void filter_models(aiproxy_meter_t *m, char **bodyp, apr_size_t *lenp)
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

static void replace_error_page(aiproxy_meter_t *m)
{
    request_rec *r = m->r;
    const char *body = m->st->meter.timed_out
        ? aiproxy_error_body(r->pool, "upstream_error", "upstream_timeout",
                             "The provider did not answer in time (504). It "
                             "may have done the work, so this request was "
                             "charged its reserved maximum.")
        : m->st->meter.error_generated
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
    aiproxy_meter_t *m = v;

    apr_atomic_sub64(&child_spilled, m->spilled);
    m->spilled = 0;
    return APR_SUCCESS;
}

static int spill_take(aiproxy_meter_t *m, apr_size_t n)
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
static apr_status_t spill_open(aiproxy_meter_t *m)
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
static void hold(aiproxy_meter_t *m, apr_bucket *b)
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
    if (m->media_scan)
        aiproxy_jscan_feed(m->media_scan, d, n);
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
static void held_usage(aiproxy_meter_t *m)
{
    apr_pool_t *sub;
    apr_size_t len;
    const char *text = aiproxy_jscan_value(m->scan, &len);

    if (text) {
        apr_pool_create(&sub, m->r->pool);
        /* In the serving provider's terms, whatever the client speaks. */
        if (aiproxy_usage_from_value(sub, text, len, m->st->fwd.provider->api,
                                     &m->st->meter.usage))
            m->st->meter.usage_found = 1;
        apr_pool_destroy(sub);
    }
}

static void replace_unheld(aiproxy_meter_t *m)
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

/* A translated request's answer in the client's API (read after its
 * usage, so it is charged whatever becomes of it): held in memory, or it
 * is too large to translate; one that cannot be read answers 502. */
static void translate_held(aiproxy_meter_t *m)
{
    request_rec *r = m->r;
    char *body, *out = NULL;
    apr_size_t len, out_len = 0;

    if (!m->st->fwd.provider || m->st->fwd.provider->api == m->st->api ||
        m->unheld)
        return;
    if (m->spill)
        m->unheld = "is too large to translate";
    else if (apr_brigade_pflatten(m->held, &body, &len, r->pool)
             != APR_SUCCESS ||
             !(out = aiproxy_xlate_answer(r->pool, m->st->api, r->status,
                                          body, len,
                                          apr_time_sec(r->request_time),
                                          &out_len)))
        m->unheld = "could not be translated";
    if (m->unheld) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, AIPLOGNO(01208)
                      "the provider's answer %s: answered 502", m->unheld);
        return;
    }
    apr_brigade_cleanup(m->held);
    ap_set_content_type(r, "application/json");
    apr_table_unset(r->headers_out, "Content-Length");
    APR_BRIGADE_INSERT_TAIL(m->held, apr_bucket_pool_create(
                                out, out_len, r->pool, m->held->bucket_alloc));
}

/* Non-streamed responses: hold everything, then price, report, pass. */
apr_status_t aiproxy_meter_held(ap_filter_t *f, aiproxy_meter_t *m,
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
        aiproxy_meter_settle(r, st, status);
        aiproxy_meter_final_headers(r, st);
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
        if (st->media_ep)
            aiproxy_meter_media_held(m);
        translate_held(m);
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
        aiproxy_meter_settle(r, st, status);
        aiproxy_meter_final_headers(r, st);
    }
    APR_BRIGADE_CONCAT(m->held, bb);
    return ap_pass_brigade(f->next, m->held);
}

