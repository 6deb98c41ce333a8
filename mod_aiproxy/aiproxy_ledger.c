#include <string.h>
#include <mongoc/mongoc.h>
#include <apr_atomic.h>
#include <apr_strings.h>
#include <apr_thread_cond.h>
#include <apr_thread_mutex.h>
#include <apr_thread_proc.h>

#include "aiproxy_ledger.h"

/* Collections. One document per user and month keyed "email|YYYY-MM":
 *   spent, reserved, load (= spent + reserved, so the cap check is a plain
 *   filter), requests, holds {request id: {a: amount, x: expiry ms,
 *   e: endpoint, m: model}}, done [ids of the last DONE_KEEP settled
 *   requests]. */
#define MONTHS "months"
#define REQUESTS "requests"
#define USERS "users"
#define RATES "ratelimits"

/* Settled request ids a month remembers, newest last: a settlement replayed
 * (a lost reply retried, a request that outlived its swept hold) finds its
 * id there and charges nothing. Retries come within moments, so a few
 * hundred is plenty; the list costs ~17 KB per month document. */
#define DONE_KEEP 512

typedef struct writer writer_t;

struct aiproxy_ledger {
    mongoc_client_pool_t *pool;
    const char *db;
    writer_t *writer;       /* NULL: request records are written inline */
};

static aiproxy_ledger_log_fn *driver_log;

static void log_bridge(mongoc_log_level_t level, const char *domain,
                       const char *message, void *data)
{
    static const int map[] = { 3, 2, 4, 5, 6, 7, 7 };

    (void)data;
    if (driver_log && (int)level >= 0 && (int)level < 7)
        driver_log(map[level], domain, message);
}

void aiproxy_ledger_driver_init(aiproxy_ledger_log_fn *log)
{
    driver_log = log;
    mongoc_log_set_handler(log_bridge, NULL);
    mongoc_init();
}

void aiproxy_ledger_driver_cleanup(void)
{
    mongoc_cleanup();
}

static apr_status_t pool_release(void *data)
{
    mongoc_client_pool_destroy((mongoc_client_pool_t *)data);
    return APR_SUCCESS;
}

const char *aiproxy_ledger_check_uri(apr_pool_t *p, const char *uri)
{
    bson_error_t error;
    mongoc_uri_t *u;

    /* The driver would print its own complaint to stderr; ours names the
     * directive. Children install a handler into httpd's log. */
    mongoc_log_set_handler(NULL, NULL);
    u = mongoc_uri_new_with_error(uri, &error);

    if (!u)
        return apr_pstrdup(p, error.message);
    mongoc_uri_destroy(u);
    return NULL;
}

aiproxy_ledger_t *aiproxy_ledger_open(apr_pool_t *p, const char *uri,
                                      const char *db, int timeout_ms,
                                      const char **err)
{
    bson_error_t error;
    mongoc_uri_t *u = mongoc_uri_new_with_error(uri, &error);
    aiproxy_ledger_t *l;

    if (!u) {
        *err = apr_pstrdup(p, error.message);
        return NULL;
    }
    /* Options given in the URI win over the directive. */
    if (!mongoc_uri_has_option(u, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
        mongoc_uri_set_option_as_int32(u, MONGOC_URI_SERVERSELECTIONTIMEOUTMS,
                                       timeout_ms);
    if (!mongoc_uri_has_option(u, MONGOC_URI_CONNECTTIMEOUTMS))
        mongoc_uri_set_option_as_int32(u, MONGOC_URI_CONNECTTIMEOUTMS,
                                       timeout_ms);
    if (!mongoc_uri_has_option(u, MONGOC_URI_WAITQUEUETIMEOUTMS))
        mongoc_uri_set_option_as_int32(u, MONGOC_URI_WAITQUEUETIMEOUTMS,
                                       timeout_ms);
    if (!mongoc_uri_has_option(u, MONGOC_URI_APPNAME))
        mongoc_uri_set_appname(u, "mod_aiproxy");
    l = apr_pcalloc(p, sizeof(*l));
    l->db = apr_pstrdup(p, db);
    l->pool = mongoc_client_pool_new(u);
    mongoc_uri_destroy(u);
    if (!l->pool) {
        *err = "cannot create a MongoDB client pool";
        return NULL;
    }
    mongoc_client_pool_set_error_api(l->pool, MONGOC_ERROR_API_VERSION_2);
    apr_pool_cleanup_register(p, l->pool, pool_release, apr_pool_cleanup_null);
    return l;
}

/* A client held for one operation only, as libmongoc's pool example does. */
typedef struct {
    mongoc_client_t *client;
    mongoc_collection_t *coll;
} lease_t;

static int lease(aiproxy_ledger_t *l, const char *collection, lease_t *ls,
                 const char **err)
{
    ls->client = mongoc_client_pool_pop(l->pool);
    if (!ls->client) {
        *err = "no free store connection (wait queue timed out)";
        return 0;
    }
    ls->coll = mongoc_client_get_collection(ls->client, l->db, collection);
    return 1;
}

static void unlease(aiproxy_ledger_t *l, lease_t *ls)
{
    mongoc_collection_destroy(ls->coll);
    mongoc_client_pool_push(l->pool, ls->client);
}

/* A pooled connection whose server restarted fails once with a stream
 * error before the pool reconnects; every operation here is safe to send
 * twice (a reservation is guarded by its hold, a settlement by its hold and
 * the month's `done` list, even when the lost try had landed), so such a
 * failure is retried once. */
static int retryable(const bson_error_t *e, int attempt)
{
    return attempt == 0 && e->domain == MONGOC_ERROR_STREAM;
}

static const char *describe(apr_pool_t *p, const bson_error_t *e)
{
    return apr_psprintf(p, "store error %u.%u: %s", e->domain, e->code,
                        e->message);
}

static apr_int64_t get_i64(const bson_t *doc, const char *key)
{
    bson_iter_t it;

    if (!bson_iter_init_find(&it, doc, key))
        return 0;
    switch (bson_iter_type(&it)) {
    case BSON_TYPE_INT64:
        return bson_iter_int64(&it);
    case BSON_TYPE_INT32:
        return bson_iter_int32(&it);
    case BSON_TYPE_DOUBLE:
        return (apr_int64_t)bson_iter_double(&it);
    default:
        return 0;
    }
}

static const char *get_str(apr_pool_t *p, const bson_t *doc, const char *key)
{
    bson_iter_t it;

    if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
        return apr_pstrdup(p, bson_iter_utf8(&it, NULL));
    return "";
}

static void read_month(const bson_t *doc, aiproxy_month_t *m)
{
    m->spent = get_i64(doc, "spent");
    m->reserved = get_i64(doc, "reserved");
    m->requests = get_i64(doc, "requests");
}

/* Gives each document of a query (a find, or an aggregation when pipeline
 * is set) to `each`, after `start` resets what a failed try gathered; a
 * try on a stale pooled connection is retried once. */
typedef void doc_fn(apr_pool_t *p, const bson_t *doc, void *baton);

static aiproxy_ledger_rc_t each_doc(apr_pool_t *p, aiproxy_ledger_t *l,
                                    const char *collection,
                                    const bson_t *filter, const bson_t *opts,
                                    const bson_t *pipeline, doc_fn *start,
                                    doc_fn *each, void *baton,
                                    const char **err)
{
    const bson_t *doc;
    bson_error_t error;
    lease_t ls;
    int attempt, failed;

    if (!lease(l, collection, &ls, err))
        return AIPROXY_LEDGER_DOWN;
    for (attempt = 0;; attempt++) {
        mongoc_cursor_t *cur = pipeline
            ? mongoc_collection_aggregate(ls.coll, MONGOC_QUERY_NONE, pipeline,
                                          NULL, NULL)
            : mongoc_collection_find_with_opts(ls.coll, filter, opts, NULL);

        start(p, NULL, baton);
        while (mongoc_cursor_next(cur, &doc))
            each(p, doc, baton);
        failed = mongoc_cursor_error(cur, &error);
        mongoc_cursor_destroy(cur);
        if (!failed || !retryable(&error, attempt))
            break;
    }
    unlease(l, &ls);
    if (failed) {
        *err = describe(p, &error);
        return AIPROXY_LEDGER_DOWN;
    }
    return AIPROXY_LEDGER_OK;
}

static const char *month_key(apr_pool_t *p, const char *email,
                             const char *month)
{
    return apr_pstrcat(p, email, "|", month, NULL);
}

/* findAndModify returning the new document (only the fields `fields`
 * projects, when given); *found says whether the filter matched. 0 on a
 * store error. */
static int find_and_modify(apr_pool_t *p, mongoc_collection_t *coll,
                           const bson_t *filter, const bson_t *update,
                           const bson_t *fields, bson_t *doc_out,
                           aiproxy_month_t *m, int *found, const char **err)
{
    mongoc_find_and_modify_opts_t *opts = mongoc_find_and_modify_opts_new();
    bson_error_t error;
    bson_t reply;
    bson_iter_t it;
    int ok;

    int attempt;

    mongoc_find_and_modify_opts_set_update(opts, update);
    mongoc_find_and_modify_opts_set_flags(opts,
                                          MONGOC_FIND_AND_MODIFY_RETURN_NEW);
    if (fields)
        mongoc_find_and_modify_opts_set_fields(opts, fields);
    for (attempt = 0;; attempt++) {
        ok = mongoc_collection_find_and_modify_with_opts(coll, filter, opts,
                                                         &reply, &error);
        if (ok || !retryable(&error, attempt))
            break;
        bson_destroy(&reply);
    }
    *found = 0;
    if (!ok) {
        *err = describe(p, &error);
    }
    else if (bson_iter_init_find(&it, &reply, "value") &&
             BSON_ITER_HOLDS_DOCUMENT(&it)) {
        const uint8_t *data;
        uint32_t len;
        bson_t doc;

        bson_iter_document(&it, &len, &data);
        if (bson_init_static(&doc, data, len)) {
            if (m)
                read_month(&doc, m);
            if (doc_out)
                bson_copy_to(&doc, doc_out);
            *found = 1;
        }
    }
    bson_destroy(&reply);
    mongoc_find_and_modify_opts_destroy(opts);
    return ok;
}

/* Reads one document by _id into *copy (caller destroys); 1 found, 0 not
 * found, -1 store error. */
static int find_by_id(apr_pool_t *p, mongoc_collection_t *coll,
                      const char *id, bson_t *copy, const char **err)
{
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(id));
    bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
    const bson_t *doc;
    bson_error_t error;
    int rc, attempt;

    for (attempt = 0;; attempt++) {
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter,
                                                                opts, NULL);

        rc = 0;
        if (mongoc_cursor_next(cur, &doc)) {
            bson_copy_to(doc, copy);
            rc = 1;
        }
        else if (mongoc_cursor_error(cur, &error)) {
            *err = describe(p, &error);
            rc = -1;
        }
        mongoc_cursor_destroy(cur);
        if (rc >= 0 || !retryable(&error, attempt))
            break;
    }
    bson_destroy(opts);
    bson_destroy(filter);
    return rc;
}

typedef struct {
    const char *email;
    aiproxy_user_t *out;
    int email_cap;
} user_scan_t;

static void user_start(apr_pool_t *p, const bson_t *doc, void *baton)
{
    user_scan_t *u = baton;

    (void)p;
    (void)doc;
    memset(u->out, 0, sizeof(*u->out));
    u->email_cap = 0;
}

/* An email's document gives its revocation and, first, its cap; the
 * domain's gives a cap when the email's has none. */
static void user_each(apr_pool_t *p, const bson_t *doc, void *baton)
{
    user_scan_t *u = baton;
    int is_email = strcmp(get_str(p, doc, "_id"), u->email) == 0;
    bson_iter_t it;

    if (is_email)
        u->out->revoked_at = get_i64(doc, "revoked_at");
    if (bson_iter_init_find(&it, doc, "cap") &&
        (BSON_ITER_HOLDS_INT64(&it) || BSON_ITER_HOLDS_INT32(&it)) &&
        (is_email || !u->email_cap)) {
        u->out->cap = get_i64(doc, "cap");
        u->out->has_cap = 1;
        u->email_cap |= is_email;
    }
}

aiproxy_ledger_rc_t aiproxy_ledger_user(aiproxy_ledger_t *l, apr_pool_t *p,
                                        const char *email,
                                        aiproxy_user_t *out,
                                        const char **err)
{
    const char *domain = strchr(email, '@');
    bson_t *filter = BCON_NEW("_id", "{", "$in", "[", BCON_UTF8(email),
                              BCON_UTF8(domain ? domain : email), "]", "}");
    user_scan_t u = { email, out, 0 };
    aiproxy_ledger_rc_t rc;

    memset(out, 0, sizeof(*out));
    rc = each_doc(p, l, USERS, filter, NULL, NULL, user_start, user_each, &u,
                  err);
    bson_destroy(filter);
    return rc;
}

static bson_t *record_doc(const aiproxy_record_t *r)
{
    return BCON_NEW("_id", BCON_UTF8(r->id),
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

    if (!driver_log)
        return;
    apr_snprintf(msg, sizeof(msg), "%s %s: %s (domain %u, code %u)", what, id,
                 e->message, e->domain, e->code);
    driver_log(level, "aiproxy-ledger", msg);
}

/* The record of a swept hold, written inline and by replacement: a late
 * settlement of the same request inserts its own record only if none is
 * there, so whichever lands first, the record says what the month was
 * charged. */
static void put_swept_record(aiproxy_ledger_t *l, mongoc_client_t *client,
                             const aiproxy_record_t *r)
{
    mongoc_collection_t *coll = mongoc_client_get_collection(client, l->db,
                                                             REQUESTS);
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(r->id));
    bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));
    bson_t *doc = record_doc(r);
    bson_error_t error;
    int ok, attempt;

    for (attempt = 0;; attempt++) {
        ok = mongoc_collection_replace_one(coll, filter, doc, opts, NULL,
                                           &error);
        if (ok || !retryable(&error, attempt))
            break;
    }
    if (!ok)
        log_line(3, "no record for swept request", r->id, &error);
    bson_destroy(doc);
    bson_destroy(opts);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
}

/* Settles holds whose expiry has passed: their child died or their request
 * outlived AIProxyHoldTTL. The upstream may have done the work, so each is
 * charged its amount (an estimated request record) and its id joins `done`,
 * so a late settlement charges nothing more. Each is atomic and guarded by
 * the hold's presence, so a racing settle or sweep cannot charge twice.
 * Adjusts *m by what it charged; returns how many it settled. */
static int sweep_expired(apr_pool_t *p, aiproxy_ledger_t *l, lease_t *ls,
                         const char *key, const bson_t *doc,
                         apr_int64_t now_ms, aiproxy_month_t *m)
{
    bson_iter_t it, holds;
    int swept = 0;

    if (!bson_iter_init_find(&it, doc, "holds") ||
        !BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &holds))
        return 0;
    while (bson_iter_next(&holds)) {
        const uint8_t *data;
        uint32_t len;
        bson_t hold;
        apr_int64_t amount, expiry;
        const char *id, *field;
        bson_t *filter, *update;
        bson_error_t error;
        bson_t reply;
        aiproxy_record_t rec;

        if (!BSON_ITER_HOLDS_DOCUMENT(&holds))
            continue;
        bson_iter_document(&holds, &len, &data);
        if (!bson_init_static(&hold, data, len))
            continue;
        amount = get_i64(&hold, "a");
        expiry = get_i64(&hold, "x");
        if (expiry > now_ms)
            continue;
        id = apr_pstrdup(p, bson_iter_key(&holds));
        field = apr_pstrcat(p, "holds.", id, NULL);
        filter = BCON_NEW("_id", BCON_UTF8(key), field, "{", "$exists",
                          BCON_BOOL(true), "}");
        /* load is unchanged: reserved money becomes spent money. */
        update = BCON_NEW("$inc", "{", "reserved", BCON_INT64(-amount),
                          "spent", BCON_INT64(amount),
                          "requests", BCON_INT64(1), "}",
                          "$unset", "{", field, BCON_UTF8(""), "}");
        append_done(update, id);
        if (mongoc_collection_update_one(ls->coll, filter, update, NULL,
                                         &reply, &error) &&
            get_i64(&reply, "modifiedCount") > 0) {
            swept++;
            m->spent += amount;
            m->reserved -= amount;
            m->requests += 1;
            memset(&rec, 0, sizeof(rec));
            rec.id = id;
            rec.email = get_str(p, doc, "email");
            rec.month = get_str(p, doc, "month");
            rec.endpoint = get_str(p, &hold, "e");   /* "" in older holds */
            rec.model = get_str(p, &hold, "m");
            rec.time_ms = now_ms;
            rec.cost = rec.reserved = amount;
            rec.estimated = 1;
            put_swept_record(l, ls->client, &rec);
        }
        bson_destroy(&reply);
        bson_destroy(update);
        bson_destroy(filter);
    }
    return swept;
}

static int has_hold(const bson_t *doc, const char *id)
{
    bson_iter_t it, sub;

    return bson_iter_init_find(&it, doc, "holds") &&
           BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &sub) &&
           bson_iter_find(&sub, id);
}

/* Creates the month document unless it exists. Create first, then update
 * conditionally: an upsert whose condition fails on an existing document
 * would try to insert a duplicate instead. A concurrent creator's
 * duplicate-key error is harmless. 0 on a store error. */
static int create_month(apr_pool_t *p, mongoc_collection_t *coll,
                        const char *key, const char *email, const char *month,
                        const char **err)
{
    bson_t *fresh = BCON_NEW("_id", BCON_UTF8(key),
                             "email", BCON_UTF8(email),
                             "month", BCON_UTF8(month),
                             "spent", BCON_INT64(0),
                             "reserved", BCON_INT64(0),
                             "load", BCON_INT64(0),
                             "requests", BCON_INT64(0),
                             "holds", "{", "}");
    bson_error_t error;
    int ok = mongoc_collection_insert_one(coll, fresh, NULL, NULL, &error);

    bson_destroy(fresh);
    if (!ok && error.code != 11000) {
        *err = describe(p, &error);
        return 0;
    }
    return 1;
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
                                           aiproxy_month_t *m,
                                           const char **err)
{
    const char *key = month_key(p, email, month);
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
                              "m", BCON_UTF8(model ? model : ""), "}", "}");
    bson_t *fields = month_fields();
    aiproxy_ledger_rc_t rc = AIPROXY_LEDGER_DOWN;
    lease_t ls;
    int attempt, found;

    memset(m, 0, sizeof(*m));
    if (!lease(l, MONTHS, &ls, err))
        goto out;
    /* Try, then mend what may fail a try without the month being over the
     * cap (no document yet, a document inserted by a racing request but not
     * yet visible), then try again. */
    for (attempt = 0; attempt < 4; attempt++) {
        bson_t doc;
        int got, over;

        if (!find_and_modify(p, ls.coll, filter, update, fields, NULL, m,
                             &found, err))
            goto done;
        if (found) {
            rc = AIPROXY_LEDGER_OK;
            goto done;
        }
        got = find_by_id(p, ls.coll, key, &doc, err);
        if (got < 0)
            goto done;
        if (got == 0) {
            if (!create_month(p, ls.coll, key, email, month, err))
                goto done;
            continue;
        }
        read_month(&doc, m);
        if (has_hold(&doc, id)) {
            /* A retried reservation that had already landed. */
            bson_destroy(&doc);
            rc = AIPROXY_LEDGER_OK;
            goto done;
        }
        /* Over the cap only when the document says so. Expired holds are
         * settled on the way, but charged, so they leave load as it was:
         * sweeping never makes room. */
        over = get_i64(&doc, "load") > cap - amount;
        sweep_expired(p, l, &ls, key, &doc, now_ms, m);
        bson_destroy(&doc);
        if (over)
            break;
    }
    rc = AIPROXY_LEDGER_OVER_CAP;
done:
    unlease(l, &ls);
out:
    bson_destroy(fields);
    bson_destroy(update);
    bson_destroy(filter);
    return rc;
}

/* Inserts n records, unordered so one bad record cannot hold back the
 * rest. A record already there (a retried insert that had landed) is no
 * failure: its id is unique. */
static int insert_records(mongoc_collection_t *coll, const bson_t **docs,
                          apr_size_t n, bson_error_t *error)
{
    bson_t *opts = BCON_NEW("ordered", BCON_BOOL(false));
    int ok, attempt;

    for (attempt = 0;; attempt++) {
        ok = n == 1 ? mongoc_collection_insert_one(coll, docs[0], NULL, NULL,
                                                   error)
                    : mongoc_collection_insert_many(coll, docs, n, opts, NULL,
                                                    error);
        if (ok || !retryable(error, attempt))
            break;
    }
    bson_destroy(opts);
    return ok || error->code == 11000;
}

/* Deletes on the client given; 1 on success. */
static int delete_records_before(mongoc_client_t *client, const char *db,
                                 apr_int64_t before_ms, apr_int64_t *deleted,
                                 bson_error_t *error)
{
    mongoc_collection_t *coll = mongoc_client_get_collection(client, db,
                                                             REQUESTS);
    bson_t *filter = BCON_NEW("time", "{", "$lt", BCON_DATE_TIME(before_ms),
                              "}");
    bson_t reply;
    int ok = mongoc_collection_delete_many(coll, filter, NULL, &reply, error);

    if (ok && deleted)
        *deleted = get_i64(&reply, "deletedCount");
    bson_destroy(&reply);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    return ok;
}

aiproxy_ledger_rc_t aiproxy_ledger_purge_records(aiproxy_ledger_t *l,
                                                 apr_pool_t *p,
                                                 apr_int64_t before_ms,
                                                 apr_int64_t *deleted,
                                                 const char **err)
{
    bson_error_t error;
    lease_t ls;
    int ok;

    *deleted = 0;
    if (!lease(l, REQUESTS, &ls, err))
        return AIPROXY_LEDGER_DOWN;
    ok = delete_records_before(ls.client, l->db, before_ms, deleted, &error);
    unlease(l, &ls);
    if (!ok)
        *err = describe(p, &error);
    return ok ? AIPROXY_LEDGER_OK : AIPROXY_LEDGER_DOWN;
}

/* The record writer: a queue of documents and one thread draining it. */
#define WRITER_QUEUE 4096
#define WRITER_BATCH 256
#define WRITER_RETRY_MS 500
/* With a retention, each child's writer deletes older records at its
 * start and then this often: one cheap delete per child and hour. */
#define WRITER_PURGE_EVERY apr_time_from_sec(3600)

struct writer {
    aiproxy_ledger_t *l;
    apr_thread_mutex_t *lock;
    apr_thread_cond_t *wake;
    apr_thread_t *thread;
    bson_t *queue[WRITER_QUEUE];
    apr_size_t n;
    int stopping;
    apr_uint32_t *pending;
    apr_int64_t retention_ms;       /* 0: records are kept */
    apr_time_t next_purge;
};

static void writer_log(int level, apr_size_t n, const bson_error_t *e,
                       const char *what)
{
    char msg[700];

    if (!driver_log)
        return;
    apr_snprintf(msg, sizeof(msg), "%" APR_SIZE_T_FMT " request record(s) %s: "
                 "%s (domain %u, code %u)", n, what, e->message, e->domain,
                 e->code);
    driver_log(level, "aiproxy-writer", msg);
}

/* Writes one batch; 0 when the store could not take it. */
/* Writes one batch; 0 when the store could not be reached (try again). */
static int writer_flush(writer_t *w, const bson_t **batch, apr_size_t n)
{
    mongoc_client_t *client = mongoc_client_pool_pop(w->l->pool);
    mongoc_collection_t *coll;
    bson_error_t error;
    int ok = 0;

    if (!client) {
        bson_set_error(&error, MONGOC_ERROR_CLIENT, 0,
                       "no free store connection");
    }
    else {
        coll = mongoc_client_get_collection(client, w->l->db, REQUESTS);
        ok = insert_records(coll, batch, n, &error);
        mongoc_collection_destroy(coll);
        mongoc_client_pool_push(w->l->pool, client);
    }
    if (ok)
        return 1;
    if (error.domain == MONGOC_ERROR_STREAM ||
        error.domain == MONGOC_ERROR_SERVER_SELECTION ||
        error.domain == MONGOC_ERROR_CLIENT) {
        writer_log(3, n, &error, "wait for the store");
        return 0;
    }
    /* The server refused them (a validator, say): retrying would not help,
     * and holding them would stop every later record. */
    writer_log(3, n, &error, "refused by the store and dropped");
    return 1;
}

/* Takes the first n records off the queue; the lock is held. */
static void writer_drop(writer_t *w, apr_size_t n)
{
    apr_size_t i;

    for (i = 0; i < n; i++) {
        bson_destroy(w->queue[i]);
        apr_atomic_dec32(w->pending);
    }
    memmove(w->queue, w->queue + n, (w->n - n) * sizeof(w->queue[0]));
    w->n -= n;
}

/* Records older than the retention go; a store away now is tried again at
 * the next period. */
static void writer_purge(writer_t *w, apr_time_t now)
{
    mongoc_client_t *client = mongoc_client_pool_pop(w->l->pool);
    apr_int64_t deleted = 0;
    bson_error_t error;
    char msg[200];

    if (!client)
        return;
    if (!delete_records_before(client, w->l->db, apr_time_as_msec(now) -
                               w->retention_ms, &deleted, &error))
        writer_log(3, 0, &error, "older than the retention not deleted");
    else if (deleted && driver_log) {
        apr_snprintf(msg, sizeof(msg), "%" APR_INT64_T_FMT " request "
                     "record(s) older than the retention deleted", deleted);
        driver_log(6, "aiproxy-writer", msg);
    }
    mongoc_client_pool_push(w->l->pool, client);
}

static void *APR_THREAD_FUNC writer_main(apr_thread_t *t, void *data)
{
    writer_t *w = data;
    apr_size_t n;
    int ok;

    (void)t;
    apr_thread_mutex_lock(w->lock);
    for (;;) {
        while (w->n == 0 && !w->stopping) {
            apr_time_t now = apr_time_now();

            if (!w->retention_ms) {
                apr_thread_cond_wait(w->wake, w->lock);
                continue;
            }
            if (now < w->next_purge) {
                apr_thread_cond_timedwait(w->wake, w->lock,
                                          w->next_purge - now);
                continue;
            }
            w->next_purge = now + WRITER_PURGE_EVERY;
            apr_thread_mutex_unlock(w->lock);
            writer_purge(w, now);
            apr_thread_mutex_lock(w->lock);
        }
        if (w->n == 0)
            break;
        /* Only this thread removes records, so the head stays put while
         * the lock is released for the insert. */
        n = w->n < WRITER_BATCH ? w->n : WRITER_BATCH;
        apr_thread_mutex_unlock(w->lock);
        ok = writer_flush(w, (const bson_t **)w->queue, n);
        apr_thread_mutex_lock(w->lock);
        if (ok) {
            writer_drop(w, n);
        }
        else if (!w->stopping) {
            apr_thread_cond_timedwait(w->wake, w->lock,
                                      apr_time_from_msec(WRITER_RETRY_MS));
        }
        else {
            /* Stopping with no store: one attempt, not one per batch. */
            bson_error_t e;

            bson_set_error(&e, MONGOC_ERROR_CLIENT, 0, "process stopping");
            writer_log(3, w->n, &e, "lost");
            writer_drop(w, w->n);
        }
    }
    apr_thread_mutex_unlock(w->lock);
    return NULL;
}

/* 1 when queued; 0 when the queue is full and the caller writes it. */
static int writer_enqueue(writer_t *w, bson_t *doc)
{
    int queued = 0;

    apr_thread_mutex_lock(w->lock);
    if (w->n < WRITER_QUEUE && !w->stopping) {
        w->queue[w->n++] = doc;
        apr_atomic_inc32(w->pending);
        if (w->n == 1)
            apr_thread_cond_signal(w->wake);
        queued = 1;
    }
    apr_thread_mutex_unlock(w->lock);
    return queued;
}

/* A pre-cleanup: runs before the pool's sub-pools and its other cleanups
 * go (the client pool among them), so the last batch still has a store. */
static apr_status_t writer_stop(void *data)
{
    writer_t *w = data;
    apr_status_t rv;

    apr_thread_mutex_lock(w->lock);
    w->stopping = 1;
    apr_thread_cond_signal(w->wake);
    apr_thread_mutex_unlock(w->lock);
    apr_thread_join(&rv, w->thread);
    w->l->writer = NULL;
    return APR_SUCCESS;
}

const char *aiproxy_ledger_start_writer(aiproxy_ledger_t *l, apr_pool_t *p,
                                        apr_uint32_t *pending,
                                        int retention_days)
{
    writer_t *w = apr_pcalloc(p, sizeof(*w));
    apr_threadattr_t *attr;

    w->l = l;
    w->pending = pending;
    w->retention_ms = (apr_int64_t)retention_days * 86400 * 1000;
    if (apr_thread_mutex_create(&w->lock, APR_THREAD_MUTEX_DEFAULT, p) ||
        apr_thread_cond_create(&w->wake, p) ||
        apr_threadattr_create(&attr, p) ||
        apr_thread_create(&w->thread, attr, writer_main, w, p))
        return "cannot start the request record writer";
    l->writer = w;
    apr_pool_pre_cleanup_register(p, w, writer_stop);
    return NULL;
}

static int insert_record(apr_pool_t *p, aiproxy_ledger_t *l,
                         mongoc_client_t *client, const aiproxy_record_t *r,
                         const char **err)
{
    bson_t *doc = record_doc(r);
    mongoc_collection_t *coll;
    bson_error_t error;
    int ok;

    if (l->writer && writer_enqueue(l->writer, doc))
        return 1;
    coll = mongoc_client_get_collection(client, l->db, REQUESTS);
    ok = insert_records(coll, (const bson_t **)&doc, 1, &error);
    mongoc_collection_destroy(coll);
    bson_destroy(doc);
    if (!ok)
        *err = describe(p, &error);
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

        if (!find_and_modify(p, coll, filter, update, fields, NULL, m, &found,
                             err))
            goto out;
        if (found) {
            ok = 1;
            goto out;
        }
        if ((got = find_by_id(p, coll, key, &doc, err)) < 0)
            goto out;
        if (got == 0) {
            /* The month's first request, a cache hit. */
            if (!create_month(p, coll, key, r->email, r->month, err))
                goto out;
            continue;
        }
        if (is_done(&doc, r->id)) {
            read_month(&doc, m);
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
static int record_exists(apr_pool_t *p, aiproxy_ledger_t *l,
                         mongoc_client_t *client, const char *id,
                         const char **err)
{
    mongoc_collection_t *coll = mongoc_client_get_collection(client, l->db,
                                                             REQUESTS);
    bson_t doc;
    int got = find_by_id(p, coll, id, &doc, err);

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
    const char *key = month_key(p, r->email, r->month);
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
    lease_t ls;
    int found = 0;

    append_done(update, r->id);
    memset(m, 0, sizeof(*m));
    if (!lease(l, MONTHS, &ls, err))
        goto out;
    if (r->held && !find_and_modify(p, ls.coll, filter, update, fields, NULL,
                                    m, &found, err))
        goto done;
    if (!found && r->held) {
        /* The hold is gone: swept (and charged) while the request ran, or
         * settled by a try whose reply was lost. `done` remembers the last
         * settlements only; the sweep's record, written at once, is the
         * lasting proof that this one was charged. */
        int swept = record_exists(p, l, ls.client, r->id, err);

        if (swept < 0)
            goto done;
        if (swept) {
            bson_t doc;
            int got = find_by_id(p, ls.coll, key, &doc, err);

            if (got < 0)
                goto done;
            if (got) {
                read_month(&doc, m);
                bson_destroy(&doc);
            }
            found = 1;
        }
    }
    if (!found && !charge_unheld(p, ls.coll, key, r, fields, m, err))
        goto done;
    /* Also when already settled: the try whose reply was lost wrote no
     * record, and a record already there (a swept hold's) is kept. */
    if (insert_record(p, l, ls.client, r, err))
        rc = AIPROXY_LEDGER_OK;
done:
    unlease(l, &ls);
out:
    bson_destroy(fields);
    bson_destroy(update);
    bson_destroy(filter);
    return rc;
}

static const char *sort_field(const char *sort)
{
    if (!sort || !strcmp(sort, "monthlyCost"))
        return "spent";
    if (!strcmp(sort, "monthlyRequests"))
        return "requests";
    return sort;  /* email, month: validated by the caller */
}

static void rows_start(apr_pool_t *p, const bson_t *doc, void *baton)
{
    apr_array_header_t *rows = baton;

    (void)p;
    (void)doc;
    apr_array_clear(rows);
}

static void month_each(apr_pool_t *p, const bson_t *doc, void *baton)
{
    aiproxy_month_row_t *row = apr_array_push((apr_array_header_t *)baton);
    aiproxy_month_t m;

    read_month(doc, &m);
    row->email = get_str(p, doc, "email");
    row->month = get_str(p, doc, "month");
    row->spent = m.spent;
    row->reserved = m.reserved;
    row->requests = m.requests;
}

aiproxy_ledger_rc_t aiproxy_ledger_months(aiproxy_ledger_t *l, apr_pool_t *p,
                                          const char *month,
                                          const char *email,
                                          const char *sort,
                                          apr_int64_t skip,
                                          apr_int64_t limit,
                                          apr_array_header_t **rows,
                                          const char **err)
{
    bson_t filter = BSON_INITIALIZER;
    bson_t *opts = BCON_NEW("sort", "{", sort_field(sort), BCON_INT32(-1),
                            "_id", BCON_INT32(1), "}",
                            "skip", BCON_INT64(skip),
                            "limit", BCON_INT64(limit),
                            "projection", "{", "holds", BCON_INT32(0),
                            "done", BCON_INT32(0), "}");
    aiproxy_ledger_rc_t rc;

    *rows = apr_array_make(p, 16, sizeof(aiproxy_month_row_t));
    if (month)
        BSON_APPEND_UTF8(&filter, "month", month);
    if (email)
        BSON_APPEND_UTF8(&filter, "email", email);
    rc = each_doc(p, l, MONTHS, &filter, opts, NULL, rows_start, month_each,
                  *rows, err);
    bson_destroy(opts);
    bson_destroy(&filter);
    return rc;
}

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
    lease_t ls;
    int attempt, found, used = 0;

    *remaining = 0;
    *reset_ms = 0;
    if (!lease(l, RATES, &ls, err))
        goto out;
    for (attempt = 0; attempt < 4; attempt++) {
        int got;

        if (!find_and_modify(p, ls.coll, filter, update, NULL, &doc, NULL,
                             &found, err))
            goto done;
        if (found) {
            rc = AIPROXY_LEDGER_OK;
            break;
        }
        if ((got = find_by_id(p, ls.coll, email, &doc, err)) < 0)
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
        {
            bson_t *fresh = BCON_NEW("_id", BCON_UTF8(email), "hits", "[", "]");
            bson_error_t error;
            int ok = mongoc_collection_insert_one(ls.coll, fresh, NULL, NULL,
                                                  &error);

            bson_destroy(fresh);
            if (!ok && error.code != 11000) {
                *err = describe(p, &error);
                goto done;
            }
        }
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
    unlease(l, &ls);
out:
    bson_destroy(update);
    bson_destroy(filter);
    return rc;
}

aiproxy_ledger_rc_t aiproxy_ledger_ping(aiproxy_ledger_t *l, apr_pool_t *p,
                                        const char **err)
{
    bson_t *cmd = BCON_NEW("ping", BCON_INT32(1));
    bson_error_t error;
    lease_t ls;
    int ok = 0;

    if (lease(l, USERS, &ls, err)) {
        ok = mongoc_client_command_simple(ls.client, l->db, cmd, NULL, NULL,
                                          &error);
        if (!ok)
            *err = describe(p, &error);
        unlease(l, &ls);
    }
    bson_destroy(cmd);
    return ok ? AIPROXY_LEDGER_OK : AIPROXY_LEDGER_DOWN;
}

/* ---- Administration ---------------------------------------------------- */

/* update_one on USERS with one retry after a stale connection; 1 when a
 * document matched (or was upserted), 0 when none did, -1 on an error. */
static int update_user(aiproxy_ledger_t *l, apr_pool_t *p, const bson_t *filter,
                       const bson_t *update, int upsert, const char **err)
{
    bson_t *opts = BCON_NEW("upsert", BCON_BOOL(upsert != 0));
    bson_error_t error;
    bson_t reply;
    lease_t ls;
    int attempt, rc = -1;

    if (!lease(l, USERS, &ls, err)) {
        bson_destroy(opts);
        return -1;
    }
    for (attempt = 0;; attempt++) {
        int ok = mongoc_collection_update_one(ls.coll, filter, update, opts,
                                              &reply, &error);

        if (ok)
            rc = get_i64(&reply, "matchedCount") > 0 ||
                 get_i64(&reply, "upsertedCount") > 0;
        bson_destroy(&reply);
        if (ok)
            break;
        if (!retryable(&error, attempt)) {
            *err = describe(p, &error);
            break;
        }
    }
    unlease(l, &ls);
    bson_destroy(opts);
    return rc;
}

aiproxy_ledger_rc_t aiproxy_ledger_set_cap(aiproxy_ledger_t *l, apr_pool_t *p,
                                           const char *who, int has_cap,
                                           aiproxy_money_t cap,
                                           const char **err)
{
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(who));
    bson_t *update = has_cap
        ? BCON_NEW("$set", "{", "cap", BCON_INT64(cap), "}")
        : BCON_NEW("$unset", "{", "cap", BCON_UTF8(""), "}");
    /* Clearing creates nothing: no document means no cap already. */
    int rc = update_user(l, p, filter, update, has_cap, err);

    bson_destroy(update);
    bson_destroy(filter);
    return rc < 0 ? AIPROXY_LEDGER_DOWN : AIPROXY_LEDGER_OK;
}

aiproxy_ledger_rc_t aiproxy_ledger_revoke(aiproxy_ledger_t *l, apr_pool_t *p,
                                          const char *email, apr_int64_t now,
                                          apr_int64_t *revoked_at,
                                          const char **err)
{
    int attempt;

    /* Compare and set: read, then update only if revoked_at is unchanged. */
    for (attempt = 0; attempt < 16; attempt++) {
        bson_t doc, *filter, *update;
        bson_iter_t it;
        apr_int64_t want = now;
        lease_t ls;
        int got, rc;

        if (!lease(l, USERS, &ls, err))
            return AIPROXY_LEDGER_DOWN;
        got = find_by_id(p, ls.coll, email, &doc, err);
        if (got == 0) {
            bson_t *fresh = BCON_NEW("_id", BCON_UTF8(email),
                                     "revoked_at", BCON_INT64(now));
            bson_error_t error;
            int ok = mongoc_collection_insert_one(ls.coll, fresh, NULL, NULL,
                                                  &error);

            bson_destroy(fresh);
            unlease(l, &ls);
            if (ok) {
                *revoked_at = now;
                return AIPROXY_LEDGER_OK;
            }
            if (error.code != 11000 && !retryable(&error, 0)) {
                *err = describe(p, &error);
                return AIPROXY_LEDGER_DOWN;
            }
            continue;   /* created meanwhile: read it again */
        }
        unlease(l, &ls);
        if (got < 0)
            return AIPROXY_LEDGER_DOWN;
        if (bson_iter_init_find(&it, &doc, "revoked_at") &&
            (BSON_ITER_HOLDS_INT64(&it) || BSON_ITER_HOLDS_INT32(&it))) {
            apr_int64_t prev = get_i64(&doc, "revoked_at");

            if (prev + 1 > want)
                want = prev + 1;
            filter = BCON_NEW("_id", BCON_UTF8(email),
                              "revoked_at", BCON_INT64(prev));
        }
        else {
            filter = BCON_NEW("_id", BCON_UTF8(email), "revoked_at", "{",
                              "$exists", BCON_BOOL(false), "}");
        }
        bson_destroy(&doc);
        update = BCON_NEW("$set", "{", "revoked_at", BCON_INT64(want), "}");
        rc = update_user(l, p, filter, update, 0, err);
        bson_destroy(update);
        bson_destroy(filter);
        if (rc < 0)
            return AIPROXY_LEDGER_DOWN;
        if (rc > 0) {
            *revoked_at = want;
            return AIPROXY_LEDGER_OK;
        }
    }
    *err = "revocation kept racing with others; try again";
    return AIPROXY_LEDGER_DOWN;
}

static void user_row_each(apr_pool_t *p, const bson_t *doc, void *baton)
{
    aiproxy_user_row_t *row = apr_array_push((apr_array_header_t *)baton);
    bson_iter_t it;

    row->who = get_str(p, doc, "_id");
    row->has_cap = bson_iter_init_find(&it, doc, "cap") &&
                   (BSON_ITER_HOLDS_INT64(&it) || BSON_ITER_HOLDS_INT32(&it));
    row->cap = row->has_cap ? get_i64(doc, "cap") : 0;
    row->revoked_at = get_i64(doc, "revoked_at");
}

aiproxy_ledger_rc_t aiproxy_ledger_users(aiproxy_ledger_t *l, apr_pool_t *p,
                                         apr_array_header_t **rows,
                                         const char **err)
{
    bson_t filter = BSON_INITIALIZER;
    bson_t *opts = BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}");
    aiproxy_ledger_rc_t rc;

    *rows = apr_array_make(p, 16, sizeof(aiproxy_user_row_t));
    rc = each_doc(p, l, USERS, &filter, opts, NULL, rows_start, user_row_each,
                  *rows, err);
    bson_destroy(opts);
    bson_destroy(&filter);
    return rc;
}

static void day_each(apr_pool_t *p, const bson_t *doc, void *baton)
{
    aiproxy_day_row_t *row = apr_array_push((apr_array_header_t *)baton);

    row->day = get_str(p, doc, "_id");
    row->cost = get_i64(doc, "cost");
    row->requests = get_i64(doc, "requests");
}

aiproxy_ledger_rc_t aiproxy_ledger_daily(aiproxy_ledger_t *l, apr_pool_t *p,
                                         const char *month, const char *email,
                                         apr_array_header_t **rows,
                                         const char **err)
{
    bson_t match = BSON_INITIALIZER;
    bson_t *pipeline;
    aiproxy_ledger_rc_t rc;

    BSON_APPEND_UTF8(&match, "month", month);
    if (email)
        BSON_APPEND_UTF8(&match, "email", email);
    /* Summed in the store: a month can hold many thousands of requests. */
    pipeline = BCON_NEW("pipeline", "[",
                        "{", "$match", BCON_DOCUMENT(&match), "}",
                        "{", "$group", "{",
                             "_id", "{", "$dateToString", "{",
                                 "format", BCON_UTF8("%Y-%m-%d"),
                                 "date", BCON_UTF8("$time"), "}", "}",
                             "cost", "{", "$sum", BCON_UTF8("$cost"), "}",
                             "requests", "{", "$sum", BCON_INT32(1), "}",
                        "}", "}",
                        "{", "$sort", "{", "_id", BCON_INT32(1), "}", "}",
                        "]");
    *rows = apr_array_make(p, 31, sizeof(aiproxy_day_row_t));
    rc = each_doc(p, l, REQUESTS, NULL, NULL, pipeline, rows_start, day_each,
                  *rows, err);
    bson_destroy(pipeline);
    bson_destroy(&match);
    return rc;
}
