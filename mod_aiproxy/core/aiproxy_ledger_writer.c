/* The request record writer: a queue of documents and one thread per
 * process draining it in batches after the responses have gone, and
 * deleting records older than the retention. */
#include <string.h>
#include <apr_atomic.h>
#include <apr_strings.h>
#include <apr_thread_cond.h>
#include <apr_thread_mutex.h>
#include <apr_thread_proc.h>

#include "aiproxy_ledger_int.h"

#define WRITER_QUEUE 4096
#define WRITER_BATCH 256
#define WRITER_RETRY_MS 500
/* Records gather this long before an insert: one round trip carries many
 * (under load, a batch), where inserting on every wake-up would cost about
 * one per response. */
#define WRITER_GATHER_MS 100
/* With a retention, each child's writer deletes older records at its
 * start and then this often: one cheap delete per child and hour. */
#define WRITER_PURGE_EVERY apr_time_from_sec(3600)

struct aiproxy_ledger_writer {
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

typedef struct aiproxy_ledger_writer writer_t;

int aiproxy_ledger_delete_records(mongoc_collection_t *requests,
                                  apr_int64_t before_ms, apr_int64_t *deleted,
                                  bson_error_t *error)
{
    bson_t *filter = BCON_NEW("time", "{", "$lt", BCON_DATE_TIME(before_ms),
                              "}");
    int ok = aiproxy_ledger_delete(requests, filter, deleted, error);

    bson_destroy(filter);
    return ok;
}

static void writer_log(int level, apr_size_t n, const bson_error_t *e,
                       const char *what)
{
    char msg[700];

    apr_snprintf(msg, sizeof(msg), "%" APR_SIZE_T_FMT " request record(s) %s: "
                 "%s (domain %u, code %u)", n, what, e->message, e->domain,
                 e->code);
    aiproxy_ledger_log(level, "aiproxy-writer", msg);
}

/* Writes one batch; 0 when the store could not be reached (try again). */
static int writer_flush(writer_t *w, const bson_t **batch, apr_size_t n)
{
    const char *err;
    aiproxy_conn_t ls;
    bson_error_t error;
    int ok = 0;

    if (!aiproxy_ledger_conn(w->l, AIPROXY_LEDGER_REQUESTS, &ls, &err)) {
        bson_set_error(&error, MONGOC_ERROR_CLIENT, 0,
                       "no free store connection");
    }
    else {
        /* A record already there (a retried insert that had landed) is no
         * failure: its id is unique. */
        ok = aiproxy_ledger_insert(ls.coll, batch, n, &error) ||
             error.code == AIPROXY_LEDGER_DUPLICATE;
        aiproxy_ledger_conn_done(&ls);
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
    const char *err;
    aiproxy_conn_t ls;
    apr_int64_t deleted = 0;
    bson_error_t error;
    char msg[200];

    if (!aiproxy_ledger_conn(w->l, AIPROXY_LEDGER_REQUESTS, &ls, &err))
        return;
    if (!aiproxy_ledger_delete_records(ls.coll, apr_time_as_msec(now) -
                                       w->retention_ms, &deleted, &error))
        writer_log(3, 0, &error, "older than the retention not deleted");
    else if (deleted) {
        apr_snprintf(msg, sizeof(msg), "%" APR_INT64_T_FMT " request "
                     "record(s) older than the retention deleted", deleted);
        aiproxy_ledger_log(6, "aiproxy-writer", msg);
    }
    aiproxy_ledger_conn_done(&ls);
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
        if (w->n < WRITER_BATCH && !w->stopping) {
            apr_time_t until = apr_time_now() +
                               apr_time_from_msec(WRITER_GATHER_MS);

            while (w->n < WRITER_BATCH && !w->stopping &&
                   apr_time_now() < until)
                apr_thread_cond_timedwait(w->wake, w->lock,
                                          until - apr_time_now());
        }
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

int aiproxy_ledger_writer_enqueue(aiproxy_ledger_t *l, bson_t *doc)
{
    writer_t *w = l->writer;
    int queued = 0;

    if (!w)
        return 0;
    apr_thread_mutex_lock(w->lock);
    if (w->n < WRITER_QUEUE && !w->stopping) {
        w->queue[w->n++] = doc;
        apr_atomic_inc32(w->pending);
        if (w->n == 1 || w->n == WRITER_BATCH)
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
