/* The ledger's money: reserve against the cap, settle exactly once, sweep
 * expired holds, and the request record each settlement leaves. Every
 * change is one atomic single-document update. */
#include <string.h>
#include <apr_strings.h>

#include "aiproxy_ledger_int.h"
#include "aiproxy_course.h"

/* Settled request ids a month remembers, newest last: a settlement replayed
 * (a lost reply retried, a request that outlived its swept hold) finds its
 * id there and charges nothing. Retries come within moments, so a few
 * hundred is plenty; the list costs ~17 KB per month document. */
#define DONE_KEEP 512

int aiproxy_ledger_create_month(apr_pool_t *p, mongoc_collection_t *coll,
                                const char *key, const char *email,
                                const char *month, const char **err)
{
    bson_t *fresh = BCON_NEW("_id", BCON_UTF8(key),
                             "email", BCON_UTF8(email),
                             "month", BCON_UTF8(month),
                             "spent", BCON_INT64(0),
                             "reserved", BCON_INT64(0),
                             "load", BCON_INT64(0),
                             "requests", BCON_INT64(0),
                             "holds", "{", "}");
    return aiproxy_ledger_create(p, coll, fresh, err);
}

bson_t *aiproxy_ledger_record_doc(const aiproxy_record_t *r)
{
    bson_t *doc = BCON_NEW("_id", BCON_UTF8(r->id),
                    "email", BCON_UTF8(r->email),
                    "month", BCON_UTF8(r->month),
                    "time", BCON_DATE_TIME(r->time_ms),
                    "endpoint", BCON_UTF8(r->endpoint),
                    "model", BCON_UTF8(r->model ? r->model : ""),
                    "provider", BCON_UTF8(r->provider ? r->provider : ""),
                    "input_tokens", BCON_INT64(r->usage.input),
                    "cached_tokens", BCON_INT64(r->usage.cached_input),
                    "cache_write_tokens", BCON_INT64(r->usage.cache_write),
                    "cache_write_1h_tokens", BCON_INT64(r->usage.cache_write_1h),
                    "output_tokens", BCON_INT64(r->usage.output),
                    "cost", BCON_INT64(r->cost),
                    "reserved", BCON_INT64(r->reserved),
                    "status", BCON_INT32(r->status),
                    "estimated", BCON_BOOL(r->estimated != 0));

    if (r->course)
        BSON_APPEND_UTF8(doc, "course", r->course);
    /* Hosted tool calls, billed per call: only where there were some. */
    if (r->usage.web_search > 0)
        BSON_APPEND_INT64(doc, "web_search_calls", r->usage.web_search);
    return doc;
}

/* The id of what a course account's swept hold leaves in `requests`: not
 * the request's own id, which its user's record holds. */
static const char *swept_id(apr_pool_t *p, const char *id, const char *account)
{
    return aiproxy_course_is_account(account)
           ? apr_pstrcat(p, id, account, NULL) : id;
}

/* What a settling update returns: the money, not the holds or done list. */
static bson_t *month_fields(void)
{
    return BCON_NEW("holds", BCON_INT32(0), "done", BCON_INT32(0));
}

/* Appends id to the month's done list, keeping the newest DONE_KEEP. */
static void append_done(bson_t *update, const char *id)
{
    bson_t push, done, each;

    BSON_APPEND_DOCUMENT_BEGIN(update, "$push", &push);
    BSON_APPEND_DOCUMENT_BEGIN(&push, "done", &done);
    BSON_APPEND_ARRAY_BEGIN(&done, "$each", &each);
    BSON_APPEND_UTF8(&each, "0", id);
    bson_append_array_end(&done, &each);
    BSON_APPEND_INT32(&done, "$slice", -DONE_KEEP);
    bson_append_document_end(&push, &done);
    bson_append_document_end(update, &push);
}

static int is_done(const bson_t *doc, const char *id)
{
    bson_iter_t it, ids;

    if (!bson_iter_init_find(&it, doc, "done") || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &ids))
        return 0;
    while (bson_iter_next(&ids))
        if (BSON_ITER_HOLDS_UTF8(&ids) &&
            !strcmp(bson_iter_utf8(&ids, NULL), id))
            return 1;
    return 0;
}

static void log_line(int level, const char *what, const char *id,
                     const bson_error_t *e)
{
    char msg[700];

    apr_snprintf(msg, sizeof(msg), "%s %s: %s (domain %u, code %u)", what, id,
                 e->message, e->domain, e->code);
    aiproxy_ledger_log(level, "aiproxy-ledger", msg);
}

/* The record of a swept hold, written inline and by replacement: a late
 * settlement of the same request inserts its own record only if none is
 * there, so whichever lands first, the record says what the month was
 * charged. */
static void put_swept_record(aiproxy_conn_t *ls, const aiproxy_record_t *r)
{
    mongoc_collection_t *coll = aiproxy_ledger_coll(ls,
                                                    AIPROXY_LEDGER_REQUESTS);
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(r->id));
    bson_t *doc = aiproxy_ledger_record_doc(r);
    bson_error_t error;

    if (!aiproxy_ledger_update(coll, filter, doc, 1, 1, NULL, NULL, &error))
        log_line(3, "no record for swept request", r->id, &error);
    bson_destroy(doc);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
}

/* Settles holds whose expiry has passed: their child died or their request
 * outlived AIProxyHoldTTL. The upstream may have done the work, so each is
 * charged its amount (an estimated request record) and its id joins `done`,
 * so a late settlement charges nothing more. A host's lease that expired
 * (the host died, or lost the store for AIProxyLeaseTTL) is charged what
 * it had in flight at its last write, `f` over `n` requests, and the rest
 * of it is released. Each is atomic and guarded by the hold (its presence;
 * a lease's sequence), so a racing settle, write or sweep cannot charge
 * twice. Adjusts *m by what it charged; returns what it released from
 * load (only leases release: a request's hold becomes spent). */
aiproxy_money_t aiproxy_ledger_sweep(apr_pool_t *p, aiproxy_conn_t *ls, const char *key,
                         const bson_t *doc, apr_int64_t now_ms,
                         aiproxy_month_t *m)
{
    bson_iter_t it, holds;
    aiproxy_money_t released = 0;

    if (!bson_iter_init_find(&it, doc, "holds") ||
        !BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &holds))
        return 0;
    while (bson_iter_next(&holds)) {
        const uint8_t *data;
        uint32_t len;
        bson_t hold;
        apr_int64_t amount, expiry, modified = 0, charged, counted;
        const char *id, *field;
        bson_t *filter, *update;
        bson_error_t error;
        aiproxy_record_t rec;
        int is_lease;

        if (!BSON_ITER_HOLDS_DOCUMENT(&holds))
            continue;
        bson_iter_document(&holds, &len, &data);
        if (!bson_init_static(&hold, data, len))
            continue;
        amount = aiproxy_ledger_i64(&hold, "a");
        expiry = aiproxy_ledger_i64(&hold, "x");
        if (expiry > now_ms)
            continue;
        is_lease = bson_iter_init_find(&it, &hold, "l") &&
                   BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it);
        charged = amount;
        counted = 1;
        if (is_lease) {
            charged = aiproxy_ledger_i64(&hold, "f");
            counted = aiproxy_ledger_i64(&hold, "n");
            if (charged > amount)
                charged = amount;
        }
        id = apr_pstrdup(p, bson_iter_key(&holds));
        field = apr_pstrcat(p, "holds.", id, NULL);
        filter = is_lease
            ? BCON_NEW("_id", BCON_UTF8(key),
                       apr_pstrcat(p, field, ".s", NULL),
                       BCON_INT64(aiproxy_ledger_i64(&hold, "s")))
            : BCON_NEW("_id", BCON_UTF8(key), field, "{", "$exists",
                       BCON_BOOL(true), "}");
        /* A request's hold: reserved money becomes spent, load unchanged.
         * A lease: its unspent part leaves load. */
        update = BCON_NEW("$inc", "{", "reserved", BCON_INT64(-amount),
                          "spent", BCON_INT64(charged),
                          "load", BCON_INT64(charged - amount),
                          "requests", BCON_INT64(counted), "}",
                          "$unset", "{", field, BCON_UTF8(""), "}");
        if (!is_lease)
            append_done(update, id);
        if (aiproxy_ledger_update(ls->coll, filter, update, 0, 0, NULL,
                                  &modified, &error) && modified > 0) {
            released += amount - charged;
            m->spent += charged;
            m->reserved -= amount;
            m->requests += counted;
            if (charged > 0 || !is_lease) {
                memset(&rec, 0, sizeof(rec));
                rec.email = aiproxy_ledger_str(p, doc, "email");
                /* A host's lease has one name in every account's month. */
                rec.id = is_lease ? apr_psprintf(p, "%s-%s-%" APR_INT64_T_FMT,
                                        id, rec.email,
                                        aiproxy_ledger_i64(&hold, "s"))
                                  : swept_id(p, id, rec.email);
                rec.course = aiproxy_ledger_str(p, &hold, "c");
                if (!*rec.course)
                    rec.course = NULL;
                rec.month = aiproxy_ledger_str(p, doc, "month");
                rec.endpoint = is_lease ? "lease"
                                        : aiproxy_ledger_str(p, &hold, "e");
                rec.model = aiproxy_ledger_str(p, &hold, "m");
                rec.time_ms = now_ms;
                rec.cost = rec.reserved = charged;
                rec.estimated = 1;
                put_swept_record(ls, &rec);
            }
        }
        bson_destroy(update);
        bson_destroy(filter);
    }
    return released;
}

static int has_hold(const bson_t *doc, const char *id)
{
    bson_iter_t it, sub;

    return bson_iter_init_find(&it, doc, "holds") &&
           BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &sub) &&
           bson_iter_find(&sub, id);
}

aiproxy_ledger_rc_t aiproxy_ledger_reserve(aiproxy_ledger_t *l, apr_pool_t *p,
                                           const char *email,
                                           const char *month,
                                           const char *id,
                                           aiproxy_money_t amount,
                                           aiproxy_money_t cap,
                                           apr_int64_t now_ms,
                                           apr_int64_t expires_ms,
                                           const char *endpoint,
                                           const char *model,
                                           const char *course,
                                           aiproxy_month_t *m,
                                           const char **err)
{
    const char *key = aiproxy_ledger_month_key(p, email, month);
    const char *hold = apr_pstrcat(p, "holds.", id, NULL);
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(key), "load", "{", "$lte",
                              BCON_INT64(cap - amount), "}",
                              hold, "{", "$exists", BCON_BOOL(false), "}");
    /* Endpoint and model let a sweep write the record of a hold whose
     * request never settled. */
    bson_t *update = BCON_NEW("$inc", "{", "load", BCON_INT64(amount),
                              "reserved", BCON_INT64(amount), "}",
                              "$set", "{", hold, "{", "a", BCON_INT64(amount),
                              "x", BCON_INT64(expires_ms),
                              "e", BCON_UTF8(endpoint ? endpoint : ""),
                              "m", BCON_UTF8(model ? model : ""),
                              "c", BCON_UTF8(course ? course : ""), "}", "}");
    bson_t *fields = month_fields();
    aiproxy_ledger_rc_t rc = AIPROXY_LEDGER_DOWN;
    aiproxy_conn_t ls;
    int attempt, found;

    memset(m, 0, sizeof(*m));
    if (!aiproxy_ledger_conn(l, AIPROXY_LEDGER_MONTHS, &ls, err))
        goto out;
    /* Try, then mend what may fail a try without the month being over the
     * cap (no document yet, a document inserted by a racing request but not
     * yet visible), then try again. */
    for (attempt = 0; attempt < 4; attempt++) {
        bson_t doc;
        int got, over;

        if (!aiproxy_ledger_find_and_modify(p, ls.coll, filter, update,
                                            fields, NULL, m, &found, err))
            goto done;
        if (found) {
            rc = AIPROXY_LEDGER_OK;
            goto done;
        }
        got = aiproxy_ledger_find_by_id(p, ls.coll, key, &doc, err);
        if (got < 0)
            goto done;
        if (got == 0) {
            if (!aiproxy_ledger_create_month(p, ls.coll, key, email, month, err))
                goto done;
            continue;
        }
        aiproxy_ledger_read_month(&doc, m);
        if (has_hold(&doc, id)) {
            /* A retried reservation that had already landed. */
            bson_destroy(&doc);
            rc = AIPROXY_LEDGER_OK;
            goto done;
        }
        /* Over the cap only when the document says so. Expired holds are
         * settled on the way, but charged, so they leave load as it was;
         * only an expired lease's unspent part makes room. */
        over = aiproxy_ledger_i64(&doc, "load") > cap - amount;
        if (aiproxy_ledger_sweep(p, &ls, key, &doc, now_ms, m) > 0)
            over = 0;
        bson_destroy(&doc);
        if (over)
            break;
    }
    rc = AIPROXY_LEDGER_OVER_CAP;
done:
    aiproxy_ledger_conn_done(&ls);
out:
    bson_destroy(fields);
    bson_destroy(update);
    bson_destroy(filter);
    return rc;
}

/* Queues the record for the writer, or writes it inline. A record already
 * there (a retried insert that had landed, a swept hold's) is kept. */
int aiproxy_ledger_insert_record(apr_pool_t *p, aiproxy_conn_t *ls,
                                 const aiproxy_record_t *r, const char **err)
{
    bson_t *doc = aiproxy_ledger_record_doc(r);
    mongoc_collection_t *coll;
    bson_error_t error;
    int ok;

    if (aiproxy_ledger_writer_enqueue(ls->l, doc))
        return 1;
    coll = aiproxy_ledger_coll(ls, AIPROXY_LEDGER_REQUESTS);
    ok = aiproxy_ledger_insert(coll, (const bson_t **)&doc, 1, &error) ||
         error.code == AIPROXY_LEDGER_DUPLICATE;
    mongoc_collection_destroy(coll);
    bson_destroy(doc);
    if (!ok)
        *err = aiproxy_ledger_describe(p, &error);
    return ok;
}

int aiproxy_ledger_counts(const aiproxy_record_t *r)
{
    return r->cost > 0 || (r->status > 0 && r->status < 400);
}

/* Charges a request that has no hold: one that reserved nothing (a cache
 * hit), or one whose hold is gone. Its id is the guard: a hold settled by
 * an earlier try whose reply was lost, or swept and charged while the
 * request ran, has its id in `done`, and then nothing more is charged and
 * *m is the month as it stands. 0 on a store error. */
static int charge_unheld(apr_pool_t *p, mongoc_collection_t *coll,
                         const char *key, const aiproxy_record_t *r,
                         const bson_t *fields, aiproxy_month_t *m,
                         const char **err)
{
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(key),
                              "done", "{", "$ne", BCON_UTF8(r->id), "}");
    bson_t *update = BCON_NEW("$inc", "{", "load", BCON_INT64(r->cost),
                              "spent", BCON_INT64(r->cost),
                              "requests",
                              BCON_INT64(aiproxy_ledger_counts(r)), "}");
    int attempt, found, got, ok = 0;

    append_done(update, r->id);
    for (attempt = 0; attempt < 4; attempt++) {
        bson_t doc;

        if (!aiproxy_ledger_find_and_modify(p, coll, filter, update, fields,
                                            NULL, m, &found, err))
            goto out;
        if (found) {
            ok = 1;
            goto out;
        }
        if ((got = aiproxy_ledger_find_by_id(p, coll, key, &doc, err)) < 0)
            goto out;
        if (got == 0) {
            /* The month's first request, a cache hit. */
            if (!aiproxy_ledger_create_month(p, coll, key, r->email, r->month, err))
                goto out;
            continue;
        }
        if (is_done(&doc, r->id)) {
            aiproxy_ledger_read_month(&doc, m);
            bson_destroy(&doc);
            ok = 1;
            goto out;
        }
        bson_destroy(&doc);     /* created meanwhile: try again */
    }
    *err = "the month document kept changing; settlement not recorded";
out:
    bson_destroy(update);
    bson_destroy(filter);
    return ok;
}

/* 1 when the request record of id is in the store, 0 when not, -1 on a
 * store error. */
static int record_exists(apr_pool_t *p, aiproxy_conn_t *ls, const char *id,
                         const char **err)
{
    mongoc_collection_t *coll = aiproxy_ledger_coll(ls,
                                                    AIPROXY_LEDGER_REQUESTS);
    bson_t doc;
    int got = aiproxy_ledger_find_by_id(p, coll, id, &doc, err);

    if (got > 0)
        bson_destroy(&doc);
    mongoc_collection_destroy(coll);
    return got;
}

aiproxy_ledger_rc_t aiproxy_ledger_settle(aiproxy_ledger_t *l, apr_pool_t *p,
                                          const aiproxy_record_t *r,
                                          aiproxy_month_t *m,
                                          const char **err)
{
    const char *key = aiproxy_ledger_month_key(p, r->email, r->month);
    const char *hold = apr_pstrcat(p, "holds.", r->id, NULL);
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(key), hold, "{", "$exists",
                              BCON_BOOL(true), "}");
    bson_t *update = BCON_NEW("$inc", "{",
                              "load", BCON_INT64(r->cost - r->reserved),
                              "reserved", BCON_INT64(-r->reserved),
                              "spent", BCON_INT64(r->cost),
                              "requests",
                              BCON_INT64(aiproxy_ledger_counts(r)), "}",
                              "$unset", "{", hold, BCON_UTF8(""), "}");
    bson_t *fields = month_fields();
    aiproxy_ledger_rc_t rc = AIPROXY_LEDGER_DOWN;
    aiproxy_conn_t ls;
    int found = 0;

    append_done(update, r->id);
    memset(m, 0, sizeof(*m));
    if (!aiproxy_ledger_conn(l, AIPROXY_LEDGER_MONTHS, &ls, err))
        goto out;
    if (r->held && !aiproxy_ledger_find_and_modify(p, ls.coll, filter, update,
                                                   fields, NULL, m, &found,
                                                   err))
        goto done;
    if (!found && r->held) {
        /* The hold is gone: swept (and charged) while the request ran, or
         * settled by a try whose reply was lost. `done` remembers the last
         * settlements only; the sweep's record, written at once, is the
         * lasting proof that this one was charged. */
        int swept = record_exists(p, &ls, swept_id(p, r->id, r->email),
                                  err);

        if (swept < 0)
            goto done;
        if (swept) {
            bson_t doc;
            int got = aiproxy_ledger_find_by_id(p, ls.coll, key, &doc, err);

            if (got < 0)
                goto done;
            if (got) {
                aiproxy_ledger_read_month(&doc, m);
                bson_destroy(&doc);
            }
            found = 1;
        }
    }
    if (!found && !charge_unheld(p, ls.coll, key, r, fields, m, err))
        goto done;
    /* Also when already settled: the try whose reply was lost wrote no
     * record, and a record already there (a swept hold's) is kept. A
     * course's share is recorded by its user's settlement. */
    if (aiproxy_course_is_account(r->email) ||
        aiproxy_ledger_insert_record(p, &ls, r, err))
        rc = AIPROXY_LEDGER_OK;
done:
    aiproxy_ledger_conn_done(&ls);
out:
    bson_destroy(fields);
    bson_destroy(update);
    bson_destroy(filter);
    return rc;
}

aiproxy_ledger_rc_t aiproxy_ledger_release(aiproxy_ledger_t *l, apr_pool_t *p,
                                           const char *email,
                                           const char *month, const char *id,
                                           aiproxy_money_t amount,
                                           const char **err)
{
    const char *hold = apr_pstrcat(p, "holds.", id, NULL);
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(aiproxy_ledger_month_key(
                                  p, email, month)),
                              hold, "{", "$exists", BCON_BOOL(true), "}");
    bson_t *update = BCON_NEW("$inc", "{", "reserved", BCON_INT64(-amount),
                              "load", BCON_INT64(-amount), "}",
                              "$unset", "{", hold, BCON_UTF8(""), "}");
    /* Gone already (swept): the sweep charged it, nothing to give. */
    aiproxy_ledger_rc_t rc = aiproxy_ledger_update_in(
        l, p, AIPROXY_LEDGER_MONTHS, filter, update, 0, err) < 0
        ? AIPROXY_LEDGER_DOWN : AIPROXY_LEDGER_OK;

    bson_destroy(update);
    bson_destroy(filter);
    return rc;
}
