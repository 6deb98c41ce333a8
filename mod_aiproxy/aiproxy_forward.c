/* Forwarding through mod_proxy, with failover: each attempt hands the
 * request to mod_proxy's handler with one provider key; an attempt that
 * answers 429 or 5xx (swallowed by the meter before any byte reaches the
 * client) or does not answer at all rests that key and the next candidate
 * is tried. The client is charged once, for the attempt that answered. */
#include <string.h>
#include <apr_strings.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_optional_hooks.h"
#include "mod_proxy.h"

#include "aiproxy_json.h"
#include "aiproxy_body.h"
#include "aiproxy_forward.h"
#include "aiproxy_req.h"
#include "aiproxy_counters.h"
#include "aiproxy_route.h"
#include "aiproxy_xlate.h"

APLOG_USE_MODULE(aiproxy);

#define FORWARD_HANDLER "aiproxy-forward"

/* The request headers the providers' APIs need; nothing else of the
 * client's (its address, host names, user agent, cookies) goes upstream
 * unless the site lists it in AIProxyUpstreamHeaders. The provider's key
 * is set by set_attempt; Host by mod_proxy from the provider's URL. */
static const char *const upstream_headers[] = {
    "Content-Type", "Content-Length", "Accept", NULL
};

typedef struct {
    const apr_array_header_t *site;
    apr_array_header_t *gone;
} header_walk_t;

static int allowed_header(const header_walk_t *w, const char *key)
{
    const char *const *h;
    int i;

    for (h = upstream_headers; *h; h++)
        if (!strcasecmp(key, *h))
            return 1;
    if (aiproxy_api_passes_header(key))
        return 1;
    for (i = 0; i < w->site->nelts; i++) {
        const char *name = APR_ARRAY_IDX(w->site, i, const char *);
        apr_size_t n = strlen(name);

        if (n && name[n - 1] == '*' ? !strncasecmp(key, name, n - 1)
                                    : !strcasecmp(key, name))
            return 1;
    }
    return 0;
}

static int collect_unlisted(void *data, const char *key, const char *value)
{
    header_walk_t *w = data;

    (void)value;
    if (!allowed_header(w, key))
        APR_ARRAY_PUSH(w->gone, const char *) = key;
    return 1;
}

/* mod_proxy's last call before it writes the request: by now it has added
 * X-Forwarded-For/-Host/-Server (ProxyAddHeaders, on by default) and Via
 * (ProxyVia), so the allow list holds whatever the site's conf says. */
static int upstream_fixup(request_rec *r)
{
    aiproxy_req_t *st = aiproxy_req_get(r);
    header_walk_t w;
    int i;

    if (!st || !st->fwd.provider || strcmp(r->handler, "proxy-server"))
        return OK;
    w.site = st->g->upstream_headers;
    w.gone = apr_array_make(r->pool, 8, sizeof(const char *));
    apr_table_do(collect_unlisted, &w, r->headers_in, NULL);
    for (i = 0; i < w.gone->nelts; i++)
        apr_table_unset(r->headers_in, APR_ARRAY_IDX(w.gone, i, const char *));
    /* The gateway's own name, not the student's browser or SDK build. */
    if (!apr_table_get(r->headers_in, "User-Agent"))
        apr_table_setn(r->headers_in, "User-Agent", "mod_aiproxy");
    return OK;
}

void aiproxy_forward_register_hooks(void)
{
    APR_OPTIONAL_HOOK(proxy, fixups, upstream_fixup, NULL, NULL,
                      APR_HOOK_REALLY_LAST);
}

/* The body for a provider that knows the model by another name, or
 * speaks the other API (translated at admission): made once per name and
 * API, however many attempts use it, and counted against the child's
 * memory. -1 when a translated body could not be made: the client's must
 * never reach the other API. */
static int set_body(request_rec *r, aiproxy_req_t *st, const char *model,
                     int translated)
{
    const char *body = st->body;
    apr_size_t len = st->body_out_len;
    aiproxy_json_t *root = translated ? st->fwd.xlated : st->info.root;
    const char *key = translated ? apr_pstrcat(r->pool, "\n", model, NULL)
                                 : model;
    aiproxy_aliased_t *a;

    if (!st->body)
        return 0;
    /* A form (audio/transcriptions) is forwarded as sent: no alias. */
    if ((translated || strcmp(model, st->info.model)) && st->info.root) {
        if (!st->fwd.aliased)
            st->fwd.aliased = apr_hash_make(r->pool);
        if (!(a = apr_hash_get(st->fwd.aliased, key, APR_HASH_KEY_STRING))) {
            a = apr_pcalloc(r->pool, sizeof(*a));
            if (root && aiproxy_json_set_string(root, "model", model) == 0 &&
                (a->body = aiproxy_json_dump(r->pool, root, &a->len)))
                aiproxy_body_count(r, a->len);
            apr_hash_set(st->fwd.aliased, key, APR_HASH_KEY_STRING, a);
        }
        if (a->body) {
            body = a->body;
            len = a->len;
        }
        else if (translated) {
            return -1;
        }
    }
    aiproxy_body_replay(r, st->fwd.replay, body, len);
    return 0;
}

static int set_attempt(request_rec *r, aiproxy_req_t *st,
                        const aiproxy_attempt_t *a, apr_table_t *headers)
{
    const char *key = APR_ARRAY_IDX(a->provider->auth, a->key, const char *);
    int translated = a->provider->api != st->api && st->fwd.xlated;
    const char *endpoint = translated
        ? aiproxy_xlate_endpoint(st->api, st->endpoint) : st->endpoint;

    /* mod_proxy adds X-Forwarded-* and Via on every attempt: start clean. */
    r->headers_in = apr_table_copy(r->pool, headers);
    apr_table_setn(r->headers_in, aiproxy_api(a->provider->api)->key_header,
                   key);
    if (translated) {
        /* Anthropic's version of the Messages API the translation speaks;
         * no beta of the client's applies to a translated request. */
        apr_table_unset(r->headers_in, "anthropic-beta");
        if (a->provider->api == AIPROXY_API_ANTHROPIC)
            apr_table_setn(r->headers_in, "anthropic-version",
                           AIPROXY_XLATE_ANTHROPIC_VERSION);
        else
            apr_table_unset(r->headers_in, "anthropic-version");
    }
    if (set_body(r, st, a->model, translated) < 0)
        return -1;
    st->fwd.provider = a->provider;
    /* A metered request's query string is no part of its price: it does
     * not go upstream, where it could ask for more. */
    r->filename = apr_pstrcat(r->pool, "proxy:", a->provider->base_url, "/",
                              endpoint, r->args && !st->body ? "?" : "",
                              r->args && !st->body ? r->args : "", NULL);
    r->proxyreq = PROXYREQ_REVERSE;
    r->handler = "proxy-server";
    return 0;
}

int aiproxy_forward_handler(request_rec *r)
{
    aiproxy_req_t *st;
    apr_array_header_t *attempts;
    apr_table_t *headers;
    apr_time_t now;
    int i, answered, rc = HTTP_BAD_GATEWAY;

    if (strcmp(r->handler, FORWARD_HANDLER) || !(st = aiproxy_req_get(r)))
        return DECLINED;
    st->fwd.sent_at = now = apr_time_now();
    attempts = aiproxy_route_attempts(r->pool, st->fwd.targets,
                                      st->g->max_attempts, now);
    headers = apr_table_copy(r->pool, r->headers_in);
    for (i = 0; i < attempts->nelts; i++) {
        const aiproxy_attempt_t *a = &APR_ARRAY_IDX(attempts, i,
                                                    aiproxy_attempt_t);

        st->fwd.n = i;
        st->fwd.last = i == attempts->nelts - 1;
        st->fwd.failed = 0;
        st->fwd.upstream_status = 0;
        st->fwd.answered_at = 0;
        if (set_attempt(r, st, a, headers) < 0) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, AIPLOGNO(01603)
                          "no translated body for %s: not sent",
                          a->provider->name);
            rc = HTTP_INTERNAL_SERVER_ERROR;
            break;
        }
        apr_table_unset(r->notes, "proxy_timedout");
        rc = ap_run_handler(r);
        /* mod_proxy_http answers a read timeout with 502 and this note. */
        if (rc != OK && !st->fwd.committed &&
            apr_table_get(r->notes, "proxy_timedout")) {
            st->meter.timed_out = 1;
            rc = HTTP_GATEWAY_TIME_OUT;
        }
        r->handler = FORWARD_HANDLER;
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, AIPLOGNO(01602)
                      "attempt %d via %s: handler %d, status %d%s", i + 1,
                      a->provider->name, rc, r->status,
                      st->fwd.failed ? ", discarded" : "");
        /* DONE: mod_proxy stopped because the client went; the upstream
         * answered, so it is no upstream error. */
        answered = (rc == OK || (rc == DONE && st->fwd.committed)) &&
                   !st->fwd.failed;
        /* The last attempt's refusal reaches the client, yet it is the
         * key's failure all the same: ops must see a dead key. */
        aiproxy_counters_key_result(r, a->provider, a->key, st->fwd.upstream_status,
                                 answered);
        if (answered)
            break;
        /* Once a byte went out, the answer is this attempt's. A request
         * sent and not answered in time may have been done and billed:
         * another attempt could be billed again. */
        if (st->fwd.last || st->fwd.committed || st->meter.timed_out)
            break;
        /* Never the key itself: its provider and position only. */
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, AIPLOGNO(01601)
                      "provider %s key #%d failed (%s %d); trying the next",
                      a->provider->name, a->key + 1,
                      st->fwd.failed ? "answered" : "status",
                      st->fwd.failed ? r->status : rc);
        aiproxy_route_rest(a, now + apr_time_from_sec(st->g->rest_seconds));
        aiproxy_stat_inc(AIPROXY_STAT_RETRIES);
        st->fwd.retries++;
        r->status = HTTP_OK;
    }
    /* The provider's key stays out of what logs and later phases see. */
    r->headers_in = headers;
    apr_table_setn(r->notes, "aiproxy-provider",
                   st->fwd.provider ? st->fwd.provider->name : "-");
    apr_table_setn(r->notes, "aiproxy-retries", apr_itoa(r->pool, st->fwd.retries));
    return rc;
}
