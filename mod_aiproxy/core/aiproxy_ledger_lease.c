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

/* The filter and update of one lease write: applies only at the hold's
 * expected sequence (or where there is no hold yet), and a growth only
 * under the cap. */
static void build_write(apr_pool_t *p, const aiproxy_lease_op_t *op,
                        const char *key, bson_t *filter, bson_t **update)
{
    const char *field = apr_pstrcat(p, "holds.", op->lease, NULL);
    const char *f_s = apr_pstrcat(p, field, ".s", NULL);
    aiproxy_money_t backed = op->spent - op->spent_unbacked;
    bson_t child;

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
    *update = BCON_NEW("$inc", "{", "spent", BCON_INT64(op->spent),
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
}

aiproxy_ledger_rc_t aiproxy_ledger_lease_write(aiproxy_ledger_t *l,
                                               apr_pool_t *p,
                                               const aiproxy_lease_op_t *op,
                                               aiproxy_month_t *m,
                                               aiproxy_money_t *load,
                                               const char **err)
{
    const char *key = aiproxy_ledger_month_key(p, op->email, op->month);
    bson_t *filter = bson_new(), *update, *fields;
    aiproxy_ledger_rc_t rc = AIPROXY_LEDGER_DOWN;
    aiproxy_conn_t ls;
    int attempt, found;

    memset(m, 0, sizeof(*m));
    *load = 0;
    build_write(p, op, key, filter, &update);
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
    /* Matching nothing is fine: dropped by a try whose reply was lost, or
     * written again meanwhile. */
    aiproxy_ledger_rc_t rc = aiproxy_ledger_update_in(
        l, p, AIPROXY_LEDGER_MONTHS, filter, update, 0, err) < 0
        ? AIPROXY_LEDGER_DOWN : AIPROXY_LEDGER_OK;

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

typedef struct {
    mongoc_collection_t *coll;
    bson_t **filters, **updates;
    apr_size_t n;
    apr_int64_t matched;
} bulk_op_t;

static int bulk_op(void *baton, bson_error_t *error)
{
    bulk_op_t *o = baton;
    bson_t *opts = BCON_NEW("ordered", BCON_BOOL(false));
    mongoc_bulk_operation_t *bulk =
        mongoc_collection_create_bulk_operation_with_opts(o->coll, opts);
    bson_t reply;
    apr_size_t i;
    int ok = 1;

    for (i = 0; ok && i < o->n; i++)
        ok = mongoc_bulk_operation_update_one_with_opts(bulk, o->filters[i],
                                                        o->updates[i], NULL,
                                                        error);
    if (ok) {
        ok = mongoc_bulk_operation_execute(bulk, &reply, error) != 0;
        o->matched = aiproxy_ledger_i64(&reply, "nMatched");
        bson_destroy(&reply);
    }
    mongoc_bulk_operation_destroy(bulk);
    bson_destroy(opts);
    return ok;
}

typedef struct {
    apr_hash_t *keys;           /* month key -> index + 1 */
    aiproxy_month_t *m;
    aiproxy_money_t *load;
    int *read;
} after_t;

static void after_start(apr_pool_t *p, const bson_t *doc, void *baton)
{
    (void)p;
    (void)doc;
    (void)baton;
}

static void after_each(apr_pool_t *p, const bson_t *doc, void *baton)
{
    after_t *a = baton;
    /* One write per month in a batch: a host has one lease per month. */
    apr_size_t i = (apr_size_t)(apr_uintptr_t)apr_hash_get(
                       a->keys, aiproxy_ledger_str(p, doc, "_id"),
                       APR_HASH_KEY_STRING);

    if (i > 0) {
        read_after(doc, &a->m[i - 1], &a->load[i - 1]);
        a->read[i - 1] = 1;
    }
}

void aiproxy_ledger_lease_write_many(aiproxy_ledger_t *l, apr_pool_t *p,
                                     const aiproxy_lease_op_t *ops,
                                     apr_size_t n, aiproxy_ledger_rc_t *rcs,
                                     aiproxy_month_t *months,
                                     aiproxy_money_t *loads,
                                     const char **errs)
{
    bulk_op_t o;
    after_t a;
    aiproxy_conn_t ls;
    bson_error_t error;
    bson_t *filter, ids;
    const char *err = "";
    apr_size_t i;
    int ran = 0, all = 0;

    memset(&o, 0, sizeof(o));
    o.filters = apr_pcalloc(p, n * sizeof(bson_t *));
    o.updates = apr_pcalloc(p, n * sizeof(bson_t *));
    o.n = n;
    a.keys = apr_hash_make(p);
    a.m = months;
    a.load = loads;
    a.read = apr_pcalloc(p, n * sizeof(int));
    memset(months, 0, n * sizeof(*months));
    memset(loads, 0, n * sizeof(*loads));
    for (i = 0; i < n; i++) {
        const char *key = aiproxy_ledger_month_key(p, ops[i].email,
                                                   ops[i].month);

        o.filters[i] = bson_new();
        build_write(p, &ops[i], key, o.filters[i], &o.updates[i]);
        apr_hash_set(a.keys, key, APR_HASH_KEY_STRING,
                     (void *)(apr_uintptr_t)(i + 1));
        rcs[i] = AIPROXY_LEDGER_DOWN;
        errs[i] = "";
    }
    if (aiproxy_ledger_conn(l, AIPROXY_LEDGER_MONTHS, &ls, &err)) {
        o.coll = ls.coll;
        if ((ran = aiproxy_ledger_retry(bulk_op, &o, &error)))
            all = o.matched == (apr_int64_t)n;
        else
            err = aiproxy_ledger_describe(p, &error);
        aiproxy_ledger_conn_done(&ls);
    }
    if (all) {
        /* Every write landed: one read brings back the months as they
         * stand, other hosts' spending included. */
        apr_hash_index_t *hi;
        apr_size_t k = 0;
        bson_t in;

        filter = bson_new();
        BSON_APPEND_DOCUMENT_BEGIN(filter, "_id", &ids);
        BSON_APPEND_ARRAY_BEGIN(&ids, "$in", &in);
        for (hi = apr_hash_first(p, a.keys); hi; hi = apr_hash_next(hi)) {
            const char *pos = apr_psprintf(p, "%" APR_SIZE_T_FMT, k++);

            BSON_APPEND_UTF8(&in, pos, apr_hash_this_key(hi));
        }
        bson_append_array_end(&ids, &in);
        bson_append_document_end(filter, &ids);
        {
            bson_t *opts = BCON_NEW("projection", "{", "spent", BCON_INT32(1),
                                    "reserved", BCON_INT32(1),
                                    "requests", BCON_INT32(1),
                                    "load", BCON_INT32(1), "}");

            if (aiproxy_ledger_each_doc(p, l, AIPROXY_LEDGER_MONTHS, filter,
                                        opts, NULL, after_start, after_each,
                                        &a, &err) != AIPROXY_LEDGER_OK)
                memset(a.read, 0, n * sizeof(int));
            bson_destroy(opts);
        }
        bson_destroy(filter);
    }
    for (i = 0; i < n; i++) {
        if (all && a.read[i]) {
            rcs[i] = AIPROXY_LEDGER_OK;
        }
        else if (ran) {
            /* Not all matched (or the months could not be read back):
             * each on its own, which recognises one that had landed. */
            rcs[i] = aiproxy_ledger_lease_write(l, p, &ops[i], &months[i],
                                                &loads[i], &errs[i]);
        }
        else {
            errs[i] = err;
        }
        bson_destroy(o.filters[i]);
        bson_destroy(o.updates[i]);
    }
}
