/* What the ledger's files share, and nothing outside them includes: the
 * connection held for one operation, the one retry rule, the store primitives built on it
 * and the bson readers. Only the aiproxy_ledger*.c files include mongoc. */
#ifndef AIPROXY_LEDGER_INT_H
#define AIPROXY_LEDGER_INT_H

#include <mongoc/mongoc.h>

#include "aiproxy_ledger.h"
#include "aiproxy_course.h"

/* Collections. One document per user and month keyed "email|YYYY-MM":
 *   spent, reserved, load (= spent + reserved, so the cap check is a plain
 *   filter), requests, holds {request id: {a: amount, x: expiry ms,
 *   e: endpoint, m: model}}, done [ids of the last settled requests]. */
#define AIPROXY_LEDGER_MONTHS "months"
#define AIPROXY_LEDGER_REQUESTS "requests"
#define AIPROXY_LEDGER_USERS "users"
#define AIPROXY_LEDGER_RATES "ratelimits"

/* MongoDB's duplicate-key error: a racing creator got there first. */
#define AIPROXY_LEDGER_DUPLICATE 11000

typedef struct aiproxy_ledger_writer aiproxy_ledger_writer_t;

struct aiproxy_ledger {
    mongoc_client_pool_t *pool;
    const char *db;
    aiproxy_ledger_writer_t *writer;  /* NULL: records are written inline */
};

/* The driver's log, for the ledger's own lines too (NULL: none). */
void aiproxy_ledger_log(int level, const char *domain, const char *message);

/* A client held for one operation only, as libmongoc's pool example does;
 * coll is the collection named when it was taken. */
typedef struct {
    aiproxy_ledger_t *l;
    mongoc_client_t *client;
    mongoc_collection_t *coll;
} aiproxy_conn_t;

int aiproxy_ledger_conn(aiproxy_ledger_t *l, const char *collection,
                         aiproxy_conn_t *ls, const char **err);
void aiproxy_ledger_conn_done(aiproxy_conn_t *ls);
/* Another collection on the held client; the caller destroys it. */
mongoc_collection_t *aiproxy_ledger_coll(aiproxy_conn_t *ls,
                                         const char *collection);

/* One store call: 1 done, 0 failed with *error set. It may run twice, so
 * it resets whatever a failed try gathered in baton. */
typedef int aiproxy_ledger_op_fn(void *baton, bson_error_t *error);

/* Runs op, and once more when the first try failed on the connection (a
 * pooled connection whose server restarted fails once before the pool
 * reconnects). Every operation of the ledger is safe to send twice: a
 * reservation is guarded by its hold, a settlement by its hold and the
 * month's done list, inserts by unique ids. The only retry loop. */
int aiproxy_ledger_retry(aiproxy_ledger_op_fn *op, void *baton,
                         bson_error_t *error);

const char *aiproxy_ledger_describe(apr_pool_t *p, const bson_error_t *e);

/* ---- Store primitives, each through aiproxy_ledger_retry. ---- */

/* findAndModify returning the new document (only what fields projects,
 * when given) into *m and, when doc_out is set, a copy (caller destroys);
 * *found says whether the filter matched. 0 on a store error. */
int aiproxy_ledger_find_and_modify(apr_pool_t *p, mongoc_collection_t *coll,
                                   const bson_t *filter, const bson_t *update,
                                   const bson_t *fields, bson_t *doc_out,
                                   aiproxy_month_t *m, int *found,
                                   const char **err);

/* Reads one document by _id into *copy (caller destroys); 1 found, 0 not
 * found, -1 store error. */
int aiproxy_ledger_find_by_id(apr_pool_t *p, mongoc_collection_t *coll,
                              const char *id, bson_t *copy, const char **err);

/* Gives each document of a query (a find, or an aggregation when pipeline
 * is set) to `each`, after `start` (doc NULL) resets what a failed try
 * gathered. */
typedef void aiproxy_ledger_doc_fn(apr_pool_t *p, const bson_t *doc,
                                   void *baton);
aiproxy_ledger_rc_t aiproxy_ledger_each_doc(apr_pool_t *p, aiproxy_ledger_t *l,
                                            const char *collection,
                                            const bson_t *filter,
                                            const bson_t *opts,
                                            const bson_t *pipeline,
                                            aiproxy_ledger_doc_fn *start,
                                            aiproxy_ledger_doc_fn *each,
                                            void *baton, const char **err);

/* update_one (replace_one when replace); counts from the reply, each may be
 * NULL. 1 on success. */
int aiproxy_ledger_update(mongoc_collection_t *coll, const bson_t *filter,
                          const bson_t *update, int upsert, int replace,
                          apr_int64_t *matched, apr_int64_t *modified,
                          bson_error_t *error);
/* The same on a pooled connection to collection: 1 when a document matched
 * (or was upserted), 0 when none did, -1 on an error (*err). */
int aiproxy_ledger_update_in(aiproxy_ledger_t *l, apr_pool_t *p,
                             const char *collection, const bson_t *filter,
                             const bson_t *update, int upsert,
                             const char **err);

/* insert_one, or an unordered insert_many (one bad document cannot hold
 * back the rest). 1 on success; a duplicate key is a failure here. */
/* Inserts doc (and destroys it) unless a document with its _id exists:
 * a racing creator's duplicate is no error. 0 with *err on a store error. */
int aiproxy_ledger_create(apr_pool_t *p, mongoc_collection_t *coll,
                          bson_t *doc, const char **err);
int aiproxy_ledger_insert(mongoc_collection_t *coll, const bson_t **docs,
                          apr_size_t n, bson_error_t *error);

/* delete_many; *deleted may be NULL. 1 on success. */
int aiproxy_ledger_delete(mongoc_collection_t *coll, const bson_t *filter,
                          apr_int64_t *deleted, bson_error_t *error);

/* ---- The money's shared steps (aiproxy_ledger_money.c) ---- */

/* Creates the month document unless it exists. Create first, then update
 * conditionally: an upsert whose condition fails on an existing document
 * would try to insert a duplicate instead. A concurrent creator's
 * duplicate-key error is harmless. 0 on a store error. */
int aiproxy_ledger_create_month(apr_pool_t *p, mongoc_collection_t *coll,
                                const char *key, const char *email,
                                const char *month, const char **err);

/* Settles the expired holds of the month document doc (key); see
 * aiproxy_ledger_money.c. Returns the money it released from load. */
aiproxy_money_t aiproxy_ledger_sweep(apr_pool_t *p, aiproxy_conn_t *ls,
                                     const char *key, const bson_t *doc,
                                     apr_int64_t now_ms, aiproxy_month_t *m);

/* Writes the request record now, or queues it for the writer. */
int aiproxy_ledger_insert_record(apr_pool_t *p, aiproxy_conn_t *ls,
                                 const aiproxy_record_t *r, const char **err);

/* ---- bson readers ---- */

/* An integer field (int64, int32 or double); 0 when absent. */
apr_int64_t aiproxy_ledger_i64(const bson_t *doc, const char *key);
/* 1 when the field is an int32 or int64. */
int aiproxy_ledger_has_int(const bson_t *doc, const char *key);
/* A string field copied into p; "" when absent. */
const char *aiproxy_ledger_str(apr_pool_t *p, const bson_t *doc,
                               const char *key);
void aiproxy_ledger_read_month(const bson_t *doc, aiproxy_month_t *m);
const char *aiproxy_ledger_month_key(apr_pool_t *p, const char *email,
                                     const char *month);
/* ---- Listings shared with the reports (aiproxy_ledger_list.c) ---- */
/* Adds to filter: no course account ("#id"). */
void aiproxy_ledger_users_only(bson_t *filter);
/* Month rows (aiproxy_month_row_t) matching filter, as
 * aiproxy_ledger_months sorts and pages them. */
aiproxy_ledger_rc_t aiproxy_ledger_months_where(aiproxy_ledger_t *l,
                                                apr_pool_t *p,
                                                const bson_t *filter,
                                                const char *sort,
                                                apr_int64_t skip,
                                                apr_int64_t limit,
                                                apr_array_header_t **rows,
                                                const char **err);
/* Rows of a listing start empty on each try. */
void aiproxy_ledger_rows_start(apr_pool_t *p, const bson_t *doc, void *baton);
/* Appends a month document to an array of aiproxy_month_row_t. */
void aiproxy_ledger_month_each(apr_pool_t *p, const bson_t *doc, void *baton);

/* ---- Request records (aiproxy_ledger_money.c, _writer.c) ---- */

bson_t *aiproxy_ledger_record_doc(const aiproxy_record_t *r);
/* Queues doc for the writer thread, which then owns it; 0 when there is
 * no writer or its queue is full (the caller writes it). */
int aiproxy_ledger_writer_enqueue(aiproxy_ledger_t *l, bson_t *doc);
/* Deletes the records older than before_ms from the requests collection
 * given. 1 on success. */
int aiproxy_ledger_delete_records(mongoc_collection_t *requests,
                                  apr_int64_t before_ms, apr_int64_t *deleted,
                                  bson_error_t *error);

/* A courses document as aiproxy_course_t (aiproxy_ledger_course.c). */
void aiproxy_ledger_read_course(apr_pool_t *p, const bson_t *doc,
                                aiproxy_course_t *c);

#endif
