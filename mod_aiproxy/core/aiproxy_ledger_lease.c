/* The store's side of budget leases: one conditional update per write,
 * guarded by the lease's sequence so that no write counts twice. */
#include <string.h>
#include <apr_strings.h>

#include "aiproxy_ledger_int.h"

/* The hold named lease in doc, copied into *hold; 0 when absent. */
static int find_hold(const bson_t *doc, const char *lease, bson_t *hold)
{
    bson_iter_t it, sub;
    const uint8_t *data;
    uint32_t len;

    if (!bson_iter_init_find(&it, doc, "holds") ||
        !BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &sub) ||
        !bson_iter_find(&sub, lease) || !BSON_ITER_HOLDS_DOCUMENT(&sub))
        return 0;
    bson_iter_document(&sub, &len, &data);
    return bson_init_static(hold, data, len);
}

static void read_after(const bson_t *doc, aiproxy_month_t *m,
                       aiproxy_money_t *load)
{
    aiproxy_ledger_read_month(doc, m);
    *load = aiproxy_ledger_i64(doc, "load");
}

aiproxy_ledger_rc_t aiproxy_ledger_lease_write(aiproxy_ledger_t *l,
                                               apr_pool_t *p,
                                               const aiproxy_lease_op_t *op,
                                               aiproxy_month_t *m,
                                               aiproxy_money_t *load,
                                               const char **err)
{
    const char *key = aiproxy_ledger_month_key(p, op->email, op->month);
    const char *field = apr_pstrcat(p, "holds.", op->lease, NULL);
    const char *f_s = apr_pstrcat(p, field, ".s", NULL);
    aiproxy_money_t backed = op->spent - op->spent_unbacked;
    bson_t *filter = bson_new(), *update, *fields;
    aiproxy_ledger_rc_t rc = AIPROXY_LEDGER_DOWN;
    aiproxy_conn_t ls;
    bson_t child;
    int attempt, found;

    memset(m, 0, sizeof(*m));
    *load = 0;
    BSON_APPEND_UTF8(filter, "_id", key);
    if (op->seq > 0) {
        BSON_APPEND_INT64(filter, f_s, op->seq);
    }
    else {
        BSON_APPEND_DOCUMENT_BEGIN(filter, field, &child);
        BSON_APPEND_BOOL(&child, "$exists", false);
        bson_append_document_end(filter, &child);
    }
    if (op->grow > 0) {
        /* The cap condition of a reservation, for the growth. */
        BSON_APPEND_DOCUMENT_BEGIN(filter, "load", &child);
        BSON_APPEND_INT64(&child, "$lte", op->cap - op->grow);
        bson_append_document_end(filter, &child);
    }
    /* Backed spending moves from reserved to spent (load unchanged);
     * spending whose hold was swept is new load. */
    update = BCON_NEW("$inc", "{", "spent", BCON_INT64(op->spent),
                      "requests", BCON_INT64(op->requests),
                      "reserved", BCON_INT64(op->grow - backed),
                      "load", BCON_INT64(op->grow + op->spent_unbacked),
                      apr_pstrcat(p, field, ".a", NULL),
                      BCON_INT64(op->grow - backed), "}",
                      "$set", "{", f_s, BCON_INT64(op->seq + 1),
                      apr_pstrcat(p, field, ".l", NULL), BCON_BOOL(true),
                      apr_pstrcat(p, field, ".f", NULL),
                      BCON_INT64(op->inflight),
                      apr_pstrcat(p, field, ".n", NULL),
                      BCON_INT64(op->inflight_n),
                      apr_pstrcat(p, field, ".x", NULL),
                      BCON_INT64(op->expires_ms),
                      apr_pstrcat(p, field, ".h", NULL),
                      BCON_UTF8(op->host), "}");
    fields = BCON_NEW("spent", BCON_INT32(1), "reserved", BCON_INT32(1),
                      "requests", BCON_INT32(1), "load", BCON_INT32(1));
    if (!aiproxy_ledger_conn(l, AIPROXY_LEDGER_MONTHS, &ls, err))
        goto out;
    for (attempt = 0; attempt < 4; attempt++) {
        bson_t doc, hold, after;
        int got, has;
        apr_int64_t s;

        if (!aiproxy_ledger_find_and_modify(p, ls.coll, filter, update,
                                            fields, &after, m, &found, err))
            goto done;
        if (found) {
            read_after(&after, m, load);
            bson_destroy(&after);
            rc = AIPROXY_LEDGER_OK;
            goto done;
        }
        /* Not applied: no month yet, a try whose reply was lost (the
         * sequence moved on), the hold swept, or the growth over the cap. */
        if ((got = aiproxy_ledger_find_by_id(p, ls.coll, key, &doc, err)) < 0)
            goto done;
        if (got == 0) {
            if (!aiproxy_ledger_create_month(p, ls.coll, key, op->email,
                                             op->month, err))
                goto done;
            continue;
        }
        has = find_hold(&doc, op->lease, &hold);
        s = has ? aiproxy_ledger_i64(&hold, "s") : 0;
        read_after(&doc, m, load);
        if (has && s == op->seq + 1) {
            rc = AIPROXY_LEDGER_OK;
        }
        else if (op->seq > 0 && !has) {
            rc = AIPROXY_LEDGER_NOT_FOUND;
        }
        else if (has != (op->seq > 0) || s != op->seq) {
            *err = apr_psprintf(p, "lease %s of %s is at sequence %"
                                APR_INT64_T_FMT ", not %" APR_INT64_T_FMT
                                ": two hosts share its name", op->lease, key,
                                s, op->seq);
        }
        else if (op->grow > 0 && *load > op->cap - op->grow) {
            /* Expired holds (a dead host's lease) may make room. */
            if (aiproxy_ledger_sweep(p, &ls, key, &doc, op->now_ms, m) > 0) {
                bson_destroy(&doc);
                continue;
            }
            rc = AIPROXY_LEDGER_OVER_CAP;
        }
        else {
            bson_destroy(&doc);     /* changed meanwhile: try again */
            continue;
        }
        bson_destroy(&doc);
        goto done;
    }
    *err = "the month document kept changing; lease not written";
done:
    aiproxy_ledger_conn_done(&ls);
out:
    bson_destroy(fields);
    bson_destroy(update);
    bson_destroy(filter);
    return rc;
}

aiproxy_ledger_rc_t aiproxy_ledger_lease_drop(aiproxy_ledger_t *l,
                                              apr_pool_t *p, const char *email,
                                              const char *month,
                                              const char *lease,
                                              apr_int64_t seq,
                                              const char **err)
{
    const char *field = apr_pstrcat(p, "holds.", lease, NULL);
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(aiproxy_ledger_month_key(
                                  p, email, month)),
                              apr_pstrcat(p, field, ".s", NULL),
                              BCON_INT64(seq),
                              apr_pstrcat(p, field, ".a", NULL),
                              BCON_INT64(0));
    bson_t *update = BCON_NEW("$unset", "{", field, BCON_UTF8(""), "}");
    aiproxy_ledger_rc_t rc = AIPROXY_LEDGER_DOWN;
    aiproxy_conn_t ls;
    bson_error_t error;

    if (aiproxy_ledger_conn(l, AIPROXY_LEDGER_MONTHS, &ls, err)) {
        /* Matching nothing is fine: dropped by a try whose reply was lost,
         * or written again meanwhile. */
        if (aiproxy_ledger_update(ls.coll, filter, update, 0, 0, NULL, NULL,
                                  &error))
            rc = AIPROXY_LEDGER_OK;
        else
            *err = aiproxy_ledger_describe(p, &error);
        aiproxy_ledger_conn_done(&ls);
    }
    bson_destroy(update);
    bson_destroy(filter);
    return rc;
}

aiproxy_ledger_rc_t aiproxy_ledger_put_record(aiproxy_ledger_t *l,
                                              apr_pool_t *p,
                                              const aiproxy_record_t *rec,
                                              const char **err)
{
    aiproxy_ledger_rc_t rc = AIPROXY_LEDGER_DOWN;
    bson_t *doc = aiproxy_ledger_record_doc(rec);
    aiproxy_conn_t ls;

    /* Queued without a connection: the writer has its own. */
    if (aiproxy_ledger_writer_enqueue(l, doc))
        return AIPROXY_LEDGER_OK;
    bson_destroy(doc);
    if (aiproxy_ledger_conn(l, AIPROXY_LEDGER_REQUESTS, &ls, err)) {
        if (aiproxy_ledger_insert_record(p, &ls, rec, err))
            rc = AIPROXY_LEDGER_OK;
        aiproxy_ledger_conn_done(&ls);
    }
    return rc;
}
