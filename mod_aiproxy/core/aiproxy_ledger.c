/* The ledger's connection: driver set-up, the client pool, a connection
 * held per operation, the one retry rule and the store primitives the other ledger files use. */
#include <string.h>
#include <apr_strings.h>

#include "aiproxy_ledger_int.h"

static aiproxy_ledger_log_fn *driver_log;
static aiproxy_ledger_timer_fn *round_trip_timer;

void aiproxy_ledger_set_timer(aiproxy_ledger_timer_fn *fn)
{
    round_trip_timer = fn;
}

void aiproxy_ledger_log(int level, const char *domain, const char *message)
{
    if (driver_log)
        driver_log(level, domain, message);
}

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
    /* A store that accepted a command and never answers (a partition, a
     * stalled primary) would otherwise hold the worker for libmongoc's
     * default of 5 minutes. Four times the selection bound leaves slow
     * but live operations (a large bulk, an aggregation) room. */
    if (!mongoc_uri_has_option(u, MONGOC_URI_SOCKETTIMEOUTMS))
        mongoc_uri_set_option_as_int32(u, MONGOC_URI_SOCKETTIMEOUTMS,
                                       4 * timeout_ms);
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

int aiproxy_ledger_conn(aiproxy_ledger_t *l, const char *collection,
                         aiproxy_conn_t *ls, const char **err)
{
    ls->l = l;
    ls->client = mongoc_client_pool_pop(l->pool);
    if (!ls->client) {
        *err = "no free store connection (wait queue timed out)";
        return 0;
    }
    ls->coll = mongoc_client_get_collection(ls->client, l->db, collection);
    return 1;
}

void aiproxy_ledger_conn_done(aiproxy_conn_t *ls)
{
    mongoc_collection_destroy(ls->coll);
    mongoc_client_pool_push(ls->l->pool, ls->client);
}

mongoc_collection_t *aiproxy_ledger_coll(aiproxy_conn_t *ls,
                                         const char *collection)
{
    return mongoc_client_get_collection(ls->client, ls->l->db, collection);
}

/* One try, timed for the module's store latency histogram. */
static int timed(aiproxy_ledger_op_fn *op, void *baton, bson_error_t *error)
{
    apr_time_t t0;
    int ok;

    if (!round_trip_timer)
        return op(baton, error);
    t0 = apr_time_now();
    ok = op(baton, error);
    round_trip_timer(apr_time_now() - t0);
    return ok;
}

int aiproxy_ledger_retry(aiproxy_ledger_op_fn *op, void *baton,
                         bson_error_t *error)
{
    return timed(op, baton, error) ||
           (error->domain == MONGOC_ERROR_STREAM && timed(op, baton, error));
}

const char *aiproxy_ledger_describe(apr_pool_t *p, const bson_error_t *e)
{
    return apr_psprintf(p, "store error %u.%u: %s", e->domain, e->code,
                        e->message);
}

apr_int64_t aiproxy_ledger_i64(const bson_t *doc, const char *key)
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

int aiproxy_ledger_has_int(const bson_t *doc, const char *key)
{
    bson_iter_t it;

    return bson_iter_init_find(&it, doc, key) &&
           (BSON_ITER_HOLDS_INT64(&it) || BSON_ITER_HOLDS_INT32(&it));
}

const char *aiproxy_ledger_str(apr_pool_t *p, const bson_t *doc,
                               const char *key)
{
    bson_iter_t it;

    if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
        return apr_pstrdup(p, bson_iter_utf8(&it, NULL));
    return "";
}

void aiproxy_ledger_read_month(const bson_t *doc, aiproxy_month_t *m)
{
    m->spent = aiproxy_ledger_i64(doc, "spent");
    m->reserved = aiproxy_ledger_i64(doc, "reserved");
    m->requests = aiproxy_ledger_i64(doc, "requests");
}

const char *aiproxy_ledger_month_key(apr_pool_t *p, const char *email,
                                     const char *month)
{
    return apr_pstrcat(p, email, "|", month, NULL);
}

void aiproxy_ledger_rows_start(apr_pool_t *p, const bson_t *doc, void *baton)
{
    (void)p;
    (void)doc;
    apr_array_clear((apr_array_header_t *)baton);
}

/* ---- Store primitives ------------------------------------------------ */

typedef struct {
    apr_pool_t *p;
    mongoc_collection_t *coll;
    const bson_t *filter, *opts, *pipeline;
    aiproxy_ledger_doc_fn *start, *each;
    void *baton;
} each_op_t;

static int each_op(void *baton, bson_error_t *error)
{
    each_op_t *o = baton;
    const bson_t *doc;
    mongoc_cursor_t *cur = o->pipeline
        ? mongoc_collection_aggregate(o->coll, MONGOC_QUERY_NONE, o->pipeline,
                                      NULL, NULL)
        : mongoc_collection_find_with_opts(o->coll, o->filter, o->opts, NULL);
    int failed;

    o->start(o->p, NULL, o->baton);
    while (mongoc_cursor_next(cur, &doc))
        o->each(o->p, doc, o->baton);
    failed = mongoc_cursor_error(cur, error);
    mongoc_cursor_destroy(cur);
    return !failed;
}

aiproxy_ledger_rc_t aiproxy_ledger_each_doc(apr_pool_t *p, aiproxy_ledger_t *l,
                                            const char *collection,
                                            const bson_t *filter,
                                            const bson_t *opts,
                                            const bson_t *pipeline,
                                            aiproxy_ledger_doc_fn *start,
                                            aiproxy_ledger_doc_fn *each,
                                            void *baton, const char **err)
{
    each_op_t o = { p, NULL, filter, opts, pipeline, start, each, baton };
    bson_error_t error;
    aiproxy_conn_t ls;
    int ok;

    if (!aiproxy_ledger_conn(l, collection, &ls, err))
        return AIPROXY_LEDGER_DOWN;
    o.coll = ls.coll;
    ok = aiproxy_ledger_retry(each_op, &o, &error);
    aiproxy_ledger_conn_done(&ls);
    if (!ok) {
        *err = aiproxy_ledger_describe(p, &error);
        return AIPROXY_LEDGER_DOWN;
    }
    return AIPROXY_LEDGER_OK;
}

typedef struct {
    mongoc_collection_t *coll;
    const bson_t *filter;
    mongoc_find_and_modify_opts_t *opts;
    bson_t reply;
} fam_op_t;

static int fam_op(void *baton, bson_error_t *error)
{
    fam_op_t *o = baton;
    int ok = mongoc_collection_find_and_modify_with_opts(o->coll, o->filter,
                                                         o->opts, &o->reply,
                                                         error);

    if (!ok)
        bson_destroy(&o->reply);
    return ok;
}

int aiproxy_ledger_find_and_modify(apr_pool_t *p, mongoc_collection_t *coll,
                                   const bson_t *filter, const bson_t *update,
                                   const bson_t *fields, bson_t *doc_out,
                                   aiproxy_month_t *m, int *found,
                                   const char **err)
{
    fam_op_t o = { coll, filter, mongoc_find_and_modify_opts_new(),
                   BSON_INITIALIZER };
    bson_error_t error;
    bson_iter_t it;
    int ok;

    mongoc_find_and_modify_opts_set_update(o.opts, update);
    mongoc_find_and_modify_opts_set_flags(o.opts,
                                          MONGOC_FIND_AND_MODIFY_RETURN_NEW);
    if (fields)
        mongoc_find_and_modify_opts_set_fields(o.opts, fields);
    ok = aiproxy_ledger_retry(fam_op, &o, &error);
    mongoc_find_and_modify_opts_destroy(o.opts);
    *found = 0;
    if (!ok) {
        *err = aiproxy_ledger_describe(p, &error);
        return 0;
    }
    if (bson_iter_init_find(&it, &o.reply, "value") &&
        BSON_ITER_HOLDS_DOCUMENT(&it)) {
        const uint8_t *data;
        uint32_t len;
        bson_t doc;

        bson_iter_document(&it, &len, &data);
        if (bson_init_static(&doc, data, len)) {
            if (m)
                aiproxy_ledger_read_month(&doc, m);
            if (doc_out)
                bson_copy_to(&doc, doc_out);
            *found = 1;
        }
    }
    bson_destroy(&o.reply);
    return 1;
}

typedef struct {
    mongoc_collection_t *coll;
    const bson_t *filter, *opts;
    bson_t *copy;
    int found;
} find_op_t;

static int find_op(void *baton, bson_error_t *error)
{
    find_op_t *o = baton;
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(o->coll, o->filter,
                                                            o->opts, NULL);
    const bson_t *doc;
    int ok = 1;

    o->found = 0;
    if (mongoc_cursor_next(cur, &doc)) {
        bson_copy_to(doc, o->copy);
        o->found = 1;
    }
    else if (mongoc_cursor_error(cur, error)) {
        ok = 0;
    }
    mongoc_cursor_destroy(cur);
    return ok;
}

int aiproxy_ledger_find_by_id(apr_pool_t *p, mongoc_collection_t *coll,
                              const char *id, bson_t *copy, const char **err)
{
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(id));
    bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
    find_op_t o = { coll, filter, opts, copy, 0 };
    bson_error_t error;
    int rc = -1;

    if (aiproxy_ledger_retry(find_op, &o, &error))
        rc = o.found;
    else
        *err = aiproxy_ledger_describe(p, &error);
    bson_destroy(opts);
    bson_destroy(filter);
    return rc;
}

typedef struct {
    mongoc_collection_t *coll;
    const bson_t *filter, *update, *opts;
    int replace;
    apr_int64_t matched, modified;
} update_op_t;

static int update_op(void *baton, bson_error_t *error)
{
    update_op_t *o = baton;
    bson_t reply;
    int ok = o->replace
        ? mongoc_collection_replace_one(o->coll, o->filter, o->update, o->opts,
                                        &reply, error)
        : mongoc_collection_update_one(o->coll, o->filter, o->update, o->opts,
                                       &reply, error);

    if (ok) {
        o->matched = aiproxy_ledger_i64(&reply, "matchedCount") +
                     aiproxy_ledger_i64(&reply, "upsertedCount");
        o->modified = aiproxy_ledger_i64(&reply, "modifiedCount");
    }
    bson_destroy(&reply);
    return ok;
}

int aiproxy_ledger_update(mongoc_collection_t *coll, const bson_t *filter,
                          const bson_t *update, int upsert, int replace,
                          apr_int64_t *matched, apr_int64_t *modified,
                          bson_error_t *error)
{
    bson_t *opts = upsert ? BCON_NEW("upsert", BCON_BOOL(true)) : NULL;
    update_op_t o = { coll, filter, update, opts, replace, 0, 0 };
    int ok = aiproxy_ledger_retry(update_op, &o, error);

    if (matched)
        *matched = o.matched;
    if (modified)
        *modified = o.modified;
    if (opts)
        bson_destroy(opts);
    return ok;
}

int aiproxy_ledger_update_in(aiproxy_ledger_t *l, apr_pool_t *p,
                             const char *collection, const bson_t *filter,
                             const bson_t *update, int upsert,
                             const char **err)
{
    apr_int64_t matched = 0;
    bson_error_t error;
    aiproxy_conn_t ls;
    int ok;

    if (!aiproxy_ledger_conn(l, collection, &ls, err))
        return -1;
    ok = aiproxy_ledger_update(ls.coll, filter, update, upsert, 0, &matched,
                               NULL, &error);
    aiproxy_ledger_conn_done(&ls);
    if (!ok) {
        *err = aiproxy_ledger_describe(p, &error);
        return -1;
    }
    return matched > 0;
}

typedef struct {
    mongoc_collection_t *coll;
    const bson_t **docs;
    apr_size_t n;
    const bson_t *opts;
} insert_op_t;

static int insert_op(void *baton, bson_error_t *error)
{
    insert_op_t *o = baton;

    return o->n == 1
        ? mongoc_collection_insert_one(o->coll, o->docs[0], NULL, NULL, error)
        : mongoc_collection_insert_many(o->coll, o->docs, o->n, o->opts, NULL,
                                        error);
}

int aiproxy_ledger_insert(mongoc_collection_t *coll, const bson_t **docs,
                          apr_size_t n, bson_error_t *error)
{
    bson_t *opts = BCON_NEW("ordered", BCON_BOOL(false));
    insert_op_t o = { coll, docs, n, opts };
    int ok = aiproxy_ledger_retry(insert_op, &o, error);

    bson_destroy(opts);
    return ok;
}

typedef struct {
    mongoc_collection_t *coll;
    const bson_t *filter;
    apr_int64_t deleted;
} delete_op_t;

static int delete_op(void *baton, bson_error_t *error)
{
    delete_op_t *o = baton;
    bson_t reply;
    int ok = mongoc_collection_delete_many(o->coll, o->filter, NULL, &reply,
                                           error);

    if (ok)
        o->deleted = aiproxy_ledger_i64(&reply, "deletedCount");
    bson_destroy(&reply);
    return ok;
}

int aiproxy_ledger_delete(mongoc_collection_t *coll, const bson_t *filter,
                          apr_int64_t *deleted, bson_error_t *error)
{
    delete_op_t o = { coll, filter, 0 };
    int ok = aiproxy_ledger_retry(delete_op, &o, error);

    if (ok && deleted)
        *deleted = o.deleted;
    return ok;
}

typedef struct {
    aiproxy_conn_t *ls;
    const bson_t *cmd;
} ping_op_t;

static int ping_op(void *baton, bson_error_t *error)
{
    ping_op_t *o = baton;

    return mongoc_client_command_simple(o->ls->client, o->ls->l->db, o->cmd,
                                        NULL, NULL, error);
}

aiproxy_ledger_rc_t aiproxy_ledger_ping(aiproxy_ledger_t *l, apr_pool_t *p,
                                        const char **err)
{
    bson_t *cmd = BCON_NEW("ping", BCON_INT32(1));
    bson_error_t error;
    aiproxy_conn_t ls;
    int ok = 0;

    if (aiproxy_ledger_conn(l, AIPROXY_LEDGER_USERS, &ls, err)) {
        ping_op_t o = { &ls, cmd };

        ok = aiproxy_ledger_retry(ping_op, &o, &error);
        if (!ok)
            *err = aiproxy_ledger_describe(p, &error);
        aiproxy_ledger_conn_done(&ls);
    }
    bson_destroy(cmd);
    return ok ? AIPROXY_LEDGER_OK : AIPROXY_LEDGER_DOWN;
}

int aiproxy_ledger_create(apr_pool_t *p, mongoc_collection_t *coll,
                          bson_t *doc, const char **err)
{
    bson_error_t error;
    int ok = aiproxy_ledger_insert(coll, (const bson_t **)&doc, 1, &error);

    bson_destroy(doc);
    if (!ok && error.code != AIPROXY_LEDGER_DUPLICATE) {
        *err = aiproxy_ledger_describe(p, &error);
        return 0;
    }
    return 1;
}
