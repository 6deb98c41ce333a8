/* Keeps the request body: read whole before forwarding (it must be checked
 * and priced), then replayed to mod_proxy by an input filter. */
#include <stdlib.h>
#include <string.h>
#include <apr_strings.h>
#include <apr_atomic.h>

#include "httpd.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_filter.h"

#include "aiproxy_body.h"

#define BODY_FILTER "AIPROXY_BODY"
#define BODY_FIRST (64 * 1024)

/* What this child's requests hold in large bodies and their parses, and
 * what each request holds of it. */
static volatile apr_uint64_t child_taken;

typedef struct {
    apr_uint64_t taken;
} tally_t;

static apr_status_t give_back(void *v)
{
    tally_t *t = v;

    apr_atomic_sub64(&child_taken, t->taken);
    return APR_SUCCESS;
}

static int take(request_rec *r, apr_size_t n, int refuse)
{
    static const char key[] = "aiproxy-body-tally";
    aiproxy_global_t *g = aiproxy_global(r->server);
    tally_t *t = NULL;

    apr_pool_userdata_get((void **)&t, key, r->pool);
    if (!t) {
        t = apr_pcalloc(r->pool, sizeof(*t));
        apr_pool_userdata_setn(t, key, give_back, r->pool);
    }
    /* Taken first, then checked: two requests cannot both squeeze into
     * the last room. */
    if (apr_atomic_add64(&child_taken, n) + n > (apr_uint64_t)g->child_memory &&
        refuse && t->taken + n > AIPROXY_BODY_FREE) {
        apr_atomic_sub64(&child_taken, n);
        return 0;
    }
    t->taken += n;
    return 1;
}

int aiproxy_body_take(request_rec *r, apr_size_t n)
{
    return take(r, n, 1);
}

void aiproxy_body_count(request_rec *r, apr_size_t n)
{
    take(r, n, 0);
}

struct aiproxy_replay {
    const char *buf;
    apr_size_t len, off;
};

/* A body's buffer grows by realloc (in place where it can, mremap for
 * large ones) rather than by fresh pool blocks, which would keep every
 * smaller copy until the request ends: twice the body. Freed with the
 * request. */
typedef struct {
    char *data;
} grown_t;

static apr_status_t free_grown(void *v)
{
    grown_t *g = v;

    free(g->data);
    g->data = NULL;
    return APR_SUCCESS;
}

static int grow(request_rec *r, grown_t *g, apr_size_t *room, apr_size_t to)
{
    char *bigger;

    if (!aiproxy_body_take(r, to - *room))
        return HTTP_SERVICE_UNAVAILABLE;
    if (!(bigger = realloc(g->data, to + 1)))
        return HTTP_INTERNAL_SERVER_ERROR;
    g->data = bigger;
    *room = to;
    return OK;
}

int aiproxy_body_read(request_rec *r, apr_off_t limit, char **buf,
                      apr_size_t *len)
{
    apr_bucket_brigade *bb;
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    apr_size_t size = 0, room = 0, first = BODY_FIRST, declared = 0;
    grown_t *g = apr_pcalloc(r->pool, sizeof(*g));
    int eos = 0, rc;

    if (cl) {
        char *end;
        apr_off_t n;

        if (apr_strtoff(&n, cl, &end, 10) != APR_SUCCESS || *end || n < 0)
            return HTTP_BAD_REQUEST;
        if (n > limit)
            return HTTP_REQUEST_ENTITY_TOO_LARGE;
        /* Memory follows the bytes that arrive, not what a client claims
         * it will send. */
        declared = (apr_size_t)n;
        if (declared < first)
            first = declared;
    }
    apr_pool_cleanup_register(r->pool, g, free_grown, apr_pool_cleanup_null);
    if ((rc = grow(r, g, &room, first)) != OK)
        return rc;
    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    while (!eos) {
        apr_bucket *b;
        apr_status_t rv = ap_get_brigade(r->input_filters, bb,
                                         AP_MODE_READBYTES, APR_BLOCK_READ,
                                         HUGE_STRING_LEN);

        if (rv != APR_SUCCESS)
            return ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
        for (b = APR_BRIGADE_FIRST(bb); b != APR_BRIGADE_SENTINEL(bb);
             b = APR_BUCKET_NEXT(b)) {
            const char *d;
            apr_size_t n, to;

            if (APR_BUCKET_IS_EOS(b)) {
                eos = 1;
                break;
            }
            if (APR_BUCKET_IS_METADATA(b))
                continue;
            if ((rv = apr_bucket_read(b, &d, &n, APR_BLOCK_READ)) != APR_SUCCESS)
                return ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
            if ((apr_off_t)(size + n) > limit)
                return HTTP_REQUEST_ENTITY_TOO_LARGE;
            if (size + n > room) {
                /* Doubling from at least BODY_FIRST (room may be 0 for a
                 * Content-Length of 0), never past what was declared
                 * unless more came. */
                for (to = room; size + n > to;)
                    to = to < BODY_FIRST ? BODY_FIRST : to * 2;
                if (declared >= size + n && to > declared)
                    to = declared;
                if ((apr_off_t)to > limit)
                    to = (apr_size_t)limit;
                if ((rc = grow(r, g, &room, to)) != OK)
                    return rc;
            }
            memcpy(g->data + size, d, n);
            size += n;
        }
        apr_brigade_cleanup(bb);
    }
    g->data[size] = '\0';
    *buf = g->data;
    *len = size;
    return OK;
}

aiproxy_replay_t *aiproxy_body_replay(request_rec *r, aiproxy_replay_t *ctx,
                                      const char *buf, apr_size_t len)
{
    if (!ctx) {
        ctx = apr_pcalloc(r->pool, sizeof(*ctx));
        apr_table_unset(r->headers_in, "Transfer-Encoding");
        /* The body is in hand: a 100-continue to or from upstream is moot. */
        apr_table_unset(r->headers_in, "Expect");
        r->expecting_100 = 0;
        /* Our filter's length is exact, so mod_proxy may stream it with a
         * Content-Length instead of chunking or spooling it. */
        apr_table_setn(r->subprocess_env, "proxy-sendunchangedcl", "1");
        ap_add_input_filter(BODY_FILTER, ctx, r, r->connection);
    }
    ctx->buf = buf;
    ctx->len = len;
    ctx->off = 0;
    apr_table_setn(r->headers_in, "Content-Length",
                   apr_psprintf(r->pool, "%" APR_SIZE_T_FMT, len));
    return ctx;
}

apr_status_t aiproxy_body_filter(ap_filter_t *f, apr_bucket_brigade *bb,
                                 ap_input_mode_t mode, apr_read_type_e block,
                                 apr_off_t readbytes)
{
    aiproxy_replay_t *ctx = f->ctx;
    apr_bucket_alloc_t *ba = f->c->bucket_alloc;
    apr_size_t n;

    if (mode != AP_MODE_READBYTES || !ctx)
        return ap_get_brigade(f->next, bb, mode, block, readbytes);
    n = ctx->len - ctx->off;
    if (readbytes > 0 && (apr_off_t)n > readbytes)
        n = (apr_size_t)readbytes;
    if (n)
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_immortal_create(
                                    ctx->buf + ctx->off, n, ba));
    ctx->off += n;
    /* The filter stays for the next attempt, which rewinds it. */
    if (ctx->off == ctx->len)
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(ba));
    return APR_SUCCESS;
}
