/* The rate limit: a sliding window per user kept in the store, so it holds
 * across children and hosts. */
#include <apr_strings.h>

#include "aiproxy_ledger_int.h"

static int window_count(const bson_t *doc, apr_int64_t since)
{
    bson_iter_t it, hits;
    int n = 0;

    if (bson_iter_init_find(&it, doc, "hits") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &hits))
        while (bson_iter_next(&hits))
            n += bson_iter_as_int64(&hits) > since;
    return n;
}

/* Creates the user's empty window unless it exists; a racing creator's
 * duplicate is harmless. 0 on a store error. */
static int create_window(apr_pool_t *p, mongoc_collection_t *coll,
                         const char *email, const char **err)
{
    bson_t *fresh = BCON_NEW("_id", BCON_UTF8(email), "hits", "[", "]");
    return aiproxy_ledger_create(p, coll, fresh, err);
}

aiproxy_ledger_rc_t aiproxy_ledger_rate(aiproxy_ledger_t *l, apr_pool_t *p,
                                        const char *email, int limit,
                                        apr_int64_t window_ms,
                                        apr_int64_t now_ms, int *remaining,
                                        apr_int64_t *reset_ms,
                                        const char **err)
{
    const char *nth = apr_psprintf(p, "hits.%d", limit - 1);
    /* The last `limit` hits are kept, oldest first: one more is admitted
     * when there are fewer, or when the oldest left the window. */
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(email), "$or", "[",
                              "{", nth, "{", "$exists", BCON_BOOL(false), "}",
                              "}",
                              "{", "hits.0", "{", "$lte",
                              BCON_INT64(now_ms - window_ms), "}", "}", "]");
    bson_t *update = BCON_NEW("$push", "{", "hits", "{", "$each", "[",
                              BCON_INT64(now_ms), "]", "$slice",
                              BCON_INT32(-limit), "}", "}");
    aiproxy_ledger_rc_t rc = AIPROXY_LEDGER_DOWN;
    apr_int64_t oldest = now_ms;
    bson_t doc;
    aiproxy_conn_t ls;
    int attempt, found, used = 0;

    *remaining = 0;
    *reset_ms = 0;
    if (!aiproxy_ledger_conn(l, AIPROXY_LEDGER_RATES, &ls, err))
        goto out;
    for (attempt = 0; attempt < 4; attempt++) {
        int got;

        if (!aiproxy_ledger_find_and_modify(p, ls.coll, filter, update, NULL,
                                            &doc, NULL, &found, err))
            goto done;
        if (found) {
            rc = AIPROXY_LEDGER_OK;
            break;
        }
        if ((got = aiproxy_ledger_find_by_id(p, ls.coll, email, &doc,
                                             err)) < 0)
            goto done;
        /* Refused only when the document shows the window full; a racing
         * first request may have just created it. */
        if (got && window_count(&doc, now_ms - window_ms) >= limit) {
            rc = AIPROXY_LEDGER_OVER_CAP;
            break;
        }
        if (got) {
            bson_destroy(&doc);
            continue;
        }
        if (!create_window(p, ls.coll, email, err))
            goto done;
    }
    if (rc != AIPROXY_LEDGER_DOWN) {
        bson_iter_t it, hits;

        if (bson_iter_init_find(&it, &doc, "hits") &&
            BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &hits)) {
            while (bson_iter_next(&hits)) {
                apr_int64_t t = bson_iter_as_int64(&hits);

                if (t > now_ms - window_ms) {
                    if (!used++ || t < oldest)
                        oldest = t;
                }
            }
        }
        bson_destroy(&doc);
        *remaining = used < limit ? limit - used : 0;
        *reset_ms = oldest + window_ms - now_ms;
    }
done:
    aiproxy_ledger_conn_done(&ls);
out:
    bson_destroy(update);
    bson_destroy(filter);
    return rc;
}
