/* Courses and enrolments written and listed for the admin API and
 * aiproxy-admin (aiproxy_ledger_course_admin.h). */
#include <string.h>
#include <apr_hash.h>
#include <apr_strings.h>

#include "aiproxy_ledger_int.h"
#include "aiproxy_ledger_course_admin.h"

#define COURSES "courses"
#define MEMBERS "members"

/* ---- Courses ------------------------------------------------------------ */

static void course_row(apr_pool_t *p, const bson_t *doc, void *baton)
{
    aiproxy_ledger_read_course(p, doc, apr_array_push(
                                   (apr_array_header_t *)baton));
}

static void append_strs(bson_t *doc, const char *key,
                        const apr_array_header_t *a)
{
    bson_t arr;
    char idx[16];
    const char *k;
    int i;

    BSON_APPEND_ARRAY_BEGIN(doc, key, &arr);
    for (i = 0; a && i < a->nelts; i++) {
        bson_uint32_to_string(i, &k, idx, sizeof(idx));
        BSON_APPEND_UTF8(&arr, k, APR_ARRAY_IDX(a, i, const char *));
    }
    bson_append_array_end(doc, &arr);
}

aiproxy_ledger_rc_t aiproxy_ledger_course_put(aiproxy_ledger_t *l,
                                              apr_pool_t *p,
                                              const aiproxy_course_t *c,
                                              int *existed, const char **err)
{
    bson_t doc = BSON_INITIALIZER, old, arr, *filter;
    apr_int64_t created = 0;
    bson_error_t error;
    aiproxy_conn_t ls;
    char idx[16];
    const char *k;
    int got, ok, i;

    if (!aiproxy_ledger_conn(l, COURSES, &ls, err))
        return AIPROXY_LEDGER_DOWN;
    got = aiproxy_ledger_find_by_id(p, ls.coll, c->id, &old, err);
    if (got < 0) {
        aiproxy_ledger_conn_done(&ls);
        return AIPROXY_LEDGER_DOWN;
    }
    if (got > 0) {
        bson_iter_t it;

        if (bson_iter_init_find(&it, &old, "created") &&
            BSON_ITER_HOLDS_DATE_TIME(&it))
            created = bson_iter_date_time(&it);
        bson_destroy(&old);
    }
    *existed = got > 0;
    if (!created)
        created = (apr_int64_t)(apr_time_now() / 1000);
    BSON_APPEND_UTF8(&doc, "_id", c->id);
    BSON_APPEND_UTF8(&doc, "name", c->name);
    BSON_APPEND_INT64(&doc, "budget", c->budget);
    if (c->has_member_cap)
        BSON_APPEND_INT64(&doc, "member_cap", c->member_cap);
    if (c->models && c->models->nelts)
        append_strs(&doc, "models", c->models);
    if (c->endpoints && c->endpoints->nelts)
        append_strs(&doc, "endpoints", c->endpoints);
    append_strs(&doc, "instructors", c->instructors);
    if (c->alerts && c->alerts->nelts) {
        BSON_APPEND_ARRAY_BEGIN(&doc, "alerts", &arr);
        for (i = 0; i < c->alerts->nelts; i++) {
            bson_uint32_to_string(i, &k, idx, sizeof(idx));
            BSON_APPEND_INT32(&arr, k, APR_ARRAY_IDX(c->alerts, i, int));
        }
        bson_append_array_end(&doc, &arr);
    }
    BSON_APPEND_DATE_TIME(&doc, "created", created);
    filter = BCON_NEW("_id", BCON_UTF8(c->id));
    ok = aiproxy_ledger_update(ls.coll, filter, &doc, 1, 1, NULL, NULL,
                               &error);
    aiproxy_ledger_conn_done(&ls);
    bson_destroy(filter);
    bson_destroy(&doc);
    if (!ok) {
        *err = aiproxy_ledger_describe(p, &error);
        return AIPROXY_LEDGER_DOWN;
    }
    return AIPROXY_LEDGER_OK;
}

aiproxy_ledger_rc_t aiproxy_ledger_course_delete(aiproxy_ledger_t *l,
                                                 apr_pool_t *p, const char *id,
                                                 apr_int64_t *members,
                                                 const char **err)
{
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(id));
    bson_t *of_course = BCON_NEW("course", BCON_UTF8(id));
    apr_int64_t deleted = 0;
    mongoc_collection_t *mc;
    bson_error_t error;
    aiproxy_conn_t ls;
    int ok;

    *members = 0;
    if (!aiproxy_ledger_conn(l, COURSES, &ls, err)) {
        bson_destroy(filter);
        bson_destroy(of_course);
        return AIPROXY_LEDGER_DOWN;
    }
    ok = aiproxy_ledger_delete(ls.coll, filter, &deleted, &error);
    /* Enrolments go even without the course: a half-done delete ends. */
    if (ok) {
        mc = aiproxy_ledger_coll(&ls, MEMBERS);
        ok = aiproxy_ledger_delete(mc, of_course, members, &error);
        mongoc_collection_destroy(mc);
    }
    aiproxy_ledger_conn_done(&ls);
    bson_destroy(filter);
    bson_destroy(of_course);
    if (!ok) {
        *err = aiproxy_ledger_describe(p, &error);
        return AIPROXY_LEDGER_DOWN;
    }
    return deleted ? AIPROXY_LEDGER_OK : AIPROXY_LEDGER_NOT_FOUND;
}

aiproxy_ledger_rc_t aiproxy_ledger_courses(aiproxy_ledger_t *l, apr_pool_t *p,
                                           const char *instructor,
                                           apr_array_header_t **rows,
                                           const char **err)
{
    bson_t filter = BSON_INITIALIZER;
    bson_t *opts = BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}");
    aiproxy_ledger_rc_t rc;

    *rows = apr_array_make(p, 8, sizeof(aiproxy_course_t));
    if (instructor)
        BSON_APPEND_UTF8(&filter, "instructors", instructor);
    rc = aiproxy_ledger_each_doc(p, l, COURSES, &filter, opts, NULL,
                                 aiproxy_ledger_rows_start, course_row, *rows,
                                 err);
    bson_destroy(opts);
    bson_destroy(&filter);
    return rc;
}

aiproxy_ledger_rc_t aiproxy_ledger_courses_in(aiproxy_ledger_t *l,
                                              apr_pool_t *p,
                                              const apr_array_header_t *ids,
                                              apr_array_header_t **rows,
                                              const char **err)
{
    bson_t filter = BSON_INITIALIZER, in, arr;
    bson_t *opts = BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}");
    aiproxy_ledger_rc_t rc = AIPROXY_LEDGER_OK;
    char idx[16];
    const char *k;
    int i;

    *rows = apr_array_make(p, 4, sizeof(aiproxy_course_t));
    if (ids->nelts) {
        BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &in);
        BSON_APPEND_ARRAY_BEGIN(&in, "$in", &arr);
        for (i = 0; i < ids->nelts; i++) {
            bson_uint32_to_string(i, &k, idx, sizeof(idx));
            BSON_APPEND_UTF8(&arr, k, APR_ARRAY_IDX(ids, i, const char *));
        }
        bson_append_array_end(&in, &arr);
        bson_append_document_end(&filter, &in);
        rc = aiproxy_ledger_each_doc(p, l, COURSES, &filter, opts, NULL,
                                     aiproxy_ledger_rows_start, course_row,
                                     *rows, err);
    }
    bson_destroy(opts);
    bson_destroy(&filter);
    return rc;
}

/* ---- Enrolments --------------------------------------------------------- */

static void course_id_row(apr_pool_t *p, const bson_t *doc, void *baton)
{
    const char *id = aiproxy_ledger_str(p, doc, "course");
    apr_array_header_t *a = baton;

    /* Own and @domain enrolments in one course list it once. */
    if (!a->nelts || strcmp(APR_ARRAY_IDX(a, a->nelts - 1, const char *), id))
        APR_ARRAY_PUSH(a, const char *) = id;
}

aiproxy_ledger_rc_t aiproxy_ledger_member_courses(aiproxy_ledger_t *l,
                                                  apr_pool_t *p,
                                                  const char *email,
                                                  apr_array_header_t **ids,
                                                  const char **err)
{
    const char *at = strchr(email, '@');
    bson_t *filter = BCON_NEW("who", "{", "$in", "[", BCON_UTF8(email),
                              BCON_UTF8(at ? at : email), "]", "}");
    bson_t *opts = BCON_NEW("sort", "{", "course", BCON_INT32(1), "}");
    aiproxy_ledger_rc_t rc;

    *ids = apr_array_make(p, 4, sizeof(const char *));
    rc = aiproxy_ledger_each_doc(p, l, MEMBERS, filter, opts, NULL,
                                 aiproxy_ledger_rows_start, course_id_row,
                                 *ids, err);
    bson_destroy(opts);
    bson_destroy(filter);
    return rc;
}

aiproxy_ledger_rc_t aiproxy_ledger_member_of_any(aiproxy_ledger_t *l,
                                                 apr_pool_t *p,
                                                 const apr_array_header_t *c,
                                                 const char *email,
                                                 const char **course,
                                                 const char **err)
{
    const char *at = strchr(email, '@');
    apr_array_header_t *found = apr_array_make(p, 2, sizeof(const char *));
    bson_t filter = BSON_INITIALIZER, in, arr;
    bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
    aiproxy_ledger_rc_t rc;
    char idx[16];
    const char *k;
    int i, n = 0;

    *course = NULL;
    if (!c || !c->nelts) {
        bson_destroy(opts);
        return AIPROXY_LEDGER_OK;
    }
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &in);
    BSON_APPEND_ARRAY_BEGIN(&in, "$in", &arr);
    for (i = 0; i < c->nelts; i++) {
        const char *id = APR_ARRAY_IDX(c, i, const char *);

        bson_uint32_to_string(n++, &k, idx, sizeof(idx));
        BSON_APPEND_UTF8(&arr, k, apr_pstrcat(p, id, "|", email, NULL));
        if (at) {
            bson_uint32_to_string(n++, &k, idx, sizeof(idx));
            BSON_APPEND_UTF8(&arr, k, apr_pstrcat(p, id, "|", at, NULL));
        }
    }
    bson_append_array_end(&in, &arr);
    bson_append_document_end(&filter, &in);
    rc = aiproxy_ledger_each_doc(p, l, MEMBERS, &filter, opts, NULL,
                                 aiproxy_ledger_rows_start, course_id_row,
                                 found, err);
    bson_destroy(opts);
    bson_destroy(&filter);
    if (rc == AIPROXY_LEDGER_OK && found->nelts)
        *course = APR_ARRAY_IDX(found, 0, const char *);
    return rc;
}

static void id_set_row(apr_pool_t *p, const bson_t *doc, void *baton)
{
    apr_hash_t *h = baton;

    apr_hash_set(h, aiproxy_ledger_str(p, doc, "_id"), APR_HASH_KEY_STRING,
                 "");
}

static void id_set_start(apr_pool_t *p, const bson_t *doc, void *baton)
{
    (void)p;
    (void)doc;
    apr_hash_clear(baton);
}

aiproxy_ledger_rc_t aiproxy_ledger_members_add(aiproxy_ledger_t *l,
                                               apr_pool_t *p,
                                               const char *course,
                                               const apr_array_header_t *whos,
                                               const char *added_by,
                                               apr_int64_t now_ms,
                                               int *added, const char **err)
{
    apr_hash_t *had = apr_hash_make(p);
    bson_t filter = BSON_INITIALIZER, in, arr;
    bson_t *opts = BCON_NEW("projection", "{", "_id", BCON_INT32(1), "}");
    const bson_t **docs;
    bson_error_t error;
    aiproxy_conn_t ls;
    aiproxy_ledger_rc_t rc;
    apr_size_t n = 0, j;
    char idx[16];
    const char *k;
    int i, ok = 1;

    if (!whos->nelts) {
        bson_destroy(opts);
        return AIPROXY_LEDGER_OK;
    }
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &in);
    BSON_APPEND_ARRAY_BEGIN(&in, "$in", &arr);
    for (i = 0; i < whos->nelts; i++) {
        bson_uint32_to_string(i, &k, idx, sizeof(idx));
        BSON_APPEND_UTF8(&arr, k, apr_pstrcat(p, course, "|",
                         APR_ARRAY_IDX(whos, i, const char *), NULL));
    }
    bson_append_array_end(&in, &arr);
    bson_append_document_end(&filter, &in);
    rc = aiproxy_ledger_each_doc(p, l, MEMBERS, &filter, opts, NULL,
                                 id_set_start, id_set_row, had, err);
    bson_destroy(opts);
    bson_destroy(&filter);
    if (rc != AIPROXY_LEDGER_OK)
        return rc;
    docs = apr_pcalloc(p, whos->nelts * sizeof(*docs));
    for (i = 0; i < whos->nelts; i++) {
        const char *who = APR_ARRAY_IDX(whos, i, const char *);
        const char *id = apr_pstrcat(p, course, "|", who, NULL);

        added[i] = !apr_hash_get(had, id, APR_HASH_KEY_STRING);
        if (added[i])
            docs[n++] = BCON_NEW("_id", BCON_UTF8(id),
                                 "course", BCON_UTF8(course),
                                 "who", BCON_UTF8(who),
                                 "added", BCON_DATE_TIME(now_ms),
                                 "added_by", BCON_UTF8(added_by));
    }
    if (n) {
        if (!aiproxy_ledger_conn(l, MEMBERS, &ls, err))
            ok = -1;
        else {
            /* Unordered: one racing duplicate does not hold back the rest,
             * and a duplicate is an enrolment that exists: no error. */
            ok = aiproxy_ledger_insert(ls.coll, docs, n, &error) ||
                 error.code == AIPROXY_LEDGER_DUPLICATE;
            aiproxy_ledger_conn_done(&ls);
            if (!ok)
                *err = aiproxy_ledger_describe(p, &error);
        }
    }
    for (j = 0; j < n; j++)
        bson_destroy((bson_t *)docs[j]);
    return ok > 0 ? AIPROXY_LEDGER_OK : AIPROXY_LEDGER_DOWN;
}

aiproxy_ledger_rc_t aiproxy_ledger_member_remove(aiproxy_ledger_t *l,
                                                 apr_pool_t *p,
                                                 const char *course,
                                                 const char *who,
                                                 const char **err)
{
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(apr_pstrcat(p, course, "|",
                                                           who, NULL)));
    apr_int64_t deleted = 0;
    bson_error_t error;
    aiproxy_conn_t ls;
    int ok;

    if (!aiproxy_ledger_conn(l, MEMBERS, &ls, err)) {
        bson_destroy(filter);
        return AIPROXY_LEDGER_DOWN;
    }
    ok = aiproxy_ledger_delete(ls.coll, filter, &deleted, &error);
    aiproxy_ledger_conn_done(&ls);
    bson_destroy(filter);
    if (!ok) {
        *err = aiproxy_ledger_describe(p, &error);
        return AIPROXY_LEDGER_DOWN;
    }
    return deleted ? AIPROXY_LEDGER_OK : AIPROXY_LEDGER_NOT_FOUND;
}

static void member_row(apr_pool_t *p, const bson_t *doc, void *baton)
{
    aiproxy_member_row_t *m = apr_array_push((apr_array_header_t *)baton);
    bson_iter_t it;

    m->who = aiproxy_ledger_str(p, doc, "who");
    m->has_cap = aiproxy_ledger_has_int(doc, "cap");
    m->cap = aiproxy_ledger_i64(doc, "cap");
    m->added_ms = bson_iter_init_find(&it, doc, "added") &&
                  BSON_ITER_HOLDS_DATE_TIME(&it) ? bson_iter_date_time(&it)
                                                 : 0;
    m->added_by = aiproxy_ledger_str(p, doc, "added_by");
}

aiproxy_ledger_rc_t aiproxy_ledger_members(aiproxy_ledger_t *l, apr_pool_t *p,
                                           const char *course,
                                           apr_int64_t skip, apr_int64_t limit,
                                           apr_array_header_t **rows,
                                           apr_int64_t *total,
                                           const char **err)
{
    bson_t *filter = BCON_NEW("course", BCON_UTF8(course));
    bson_t *opts = BCON_NEW("sort", "{", "who", BCON_INT32(1), "}",
                            "skip", BCON_INT64(skip),
                            "limit", BCON_INT64(limit));
    bson_error_t error;
    aiproxy_conn_t ls;
    aiproxy_ledger_rc_t rc;
    apr_int64_t n;

    *rows = apr_array_make(p, 16, sizeof(aiproxy_member_row_t));
    *total = 0;
    rc = aiproxy_ledger_each_doc(p, l, MEMBERS, filter, opts, NULL,
                                 aiproxy_ledger_rows_start, member_row, *rows,
                                 err);
    bson_destroy(opts);
    if (rc == AIPROXY_LEDGER_OK) {
        if (!aiproxy_ledger_conn(l, MEMBERS, &ls, err))
            rc = AIPROXY_LEDGER_DOWN;
        else {
            n = mongoc_collection_count_documents(ls.coll, filter, NULL, NULL,
                                                  NULL, &error);
            aiproxy_ledger_conn_done(&ls);
            if (n < 0) {
                *err = aiproxy_ledger_describe(p, &error);
                rc = AIPROXY_LEDGER_DOWN;
            }
            else
                *total = n;
        }
    }
    bson_destroy(filter);
    return rc;
}

aiproxy_ledger_rc_t aiproxy_ledger_member_cap(aiproxy_ledger_t *l,
                                              apr_pool_t *p,
                                              const char *course,
                                              const char *who, int has_cap,
                                              aiproxy_money_t cap,
                                              int *had_cap,
                                              aiproxy_money_t *old,
                                              const char **err)
{
    const char *id = apr_pstrcat(p, course, "|", who, NULL);
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(id));
    bson_t *update = has_cap
        ? BCON_NEW("$set", "{", "cap", BCON_INT64(cap), "}")
        : BCON_NEW("$unset", "{", "cap", BCON_UTF8(""), "}");
    bson_t doc;
    bson_error_t error;
    aiproxy_conn_t ls;
    apr_int64_t matched = 0;
    int got, ok = 0;

    *had_cap = 0;
    *old = 0;
    if (!aiproxy_ledger_conn(l, MEMBERS, &ls, err)) {
        bson_destroy(filter);
        bson_destroy(update);
        return AIPROXY_LEDGER_DOWN;
    }
    got = aiproxy_ledger_find_by_id(p, ls.coll, id, &doc, err);
    if (got > 0) {
        *had_cap = aiproxy_ledger_has_int(&doc, "cap");
        *old = aiproxy_ledger_i64(&doc, "cap");
        bson_destroy(&doc);
        ok = aiproxy_ledger_update(ls.coll, filter, update, 0, 0, &matched,
                                   NULL, &error);
        if (!ok)
            *err = aiproxy_ledger_describe(p, &error);
    }
    aiproxy_ledger_conn_done(&ls);
    bson_destroy(filter);
    bson_destroy(update);
    if (got < 0 || (got > 0 && !ok))
        return AIPROXY_LEDGER_DOWN;
    return got > 0 && matched ? AIPROXY_LEDGER_OK : AIPROXY_LEDGER_NOT_FOUND;
}

/* ---- Months --------------------------------------------------------------- */

static void month_row(apr_pool_t *p, const bson_t *doc, void *baton)
{
    aiproxy_month_t *m = apr_palloc(p, sizeof(*m));

    aiproxy_ledger_read_month(doc, m);
    apr_hash_set(baton, aiproxy_ledger_str(p, doc, "email"),
                 APR_HASH_KEY_STRING, m);
}

aiproxy_ledger_rc_t aiproxy_ledger_months_of(aiproxy_ledger_t *l,
                                             apr_pool_t *p, const char *month,
                                             const apr_array_header_t *accts,
                                             apr_hash_t **out,
                                             const char **err)
{
    bson_t filter = BSON_INITIALIZER, in, arr;
    bson_t *opts = BCON_NEW("projection", "{", "holds", BCON_INT32(0),
                            "done", BCON_INT32(0), "}");
    aiproxy_ledger_rc_t rc = AIPROXY_LEDGER_OK;
    char idx[16];
    const char *k;
    int i;

    *out = apr_hash_make(p);
    if (accts->nelts) {
        BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &in);
        BSON_APPEND_ARRAY_BEGIN(&in, "$in", &arr);
        for (i = 0; i < accts->nelts; i++) {
            bson_uint32_to_string(i, &k, idx, sizeof(idx));
            BSON_APPEND_UTF8(&arr, k, aiproxy_ledger_month_key(p,
                             APR_ARRAY_IDX(accts, i, const char *), month));
        }
        bson_append_array_end(&in, &arr);
        bson_append_document_end(&filter, &in);
        rc = aiproxy_ledger_each_doc(p, l, AIPROXY_LEDGER_MONTHS, &filter,
                                     opts, NULL, id_set_start, month_row,
                                     *out, err);
    }
    bson_destroy(opts);
    bson_destroy(&filter);
    return rc;
}

aiproxy_ledger_rc_t aiproxy_ledger_month_reset(aiproxy_ledger_t *l,
                                               apr_pool_t *p,
                                               const char *account,
                                               const char *month,
                                               aiproxy_month_t *before,
                                               aiproxy_month_t *after,
                                               const char **err)
{
    const char *key = aiproxy_ledger_month_key(p, account, month);
    int attempt;

    memset(before, 0, sizeof(*before));
    memset(after, 0, sizeof(*after));
    /* Compare and set on spent: the $inc leaves what holds come and go
     * meanwhile in reserved and load. */
    for (attempt = 0; attempt < 16; attempt++) {
        bson_t doc, *filter, *update;
        aiproxy_conn_t ls;
        apr_int64_t spent;
        int got, found = 0, ok;

        if (!aiproxy_ledger_conn(l, AIPROXY_LEDGER_MONTHS, &ls, err))
            return AIPROXY_LEDGER_DOWN;
        got = aiproxy_ledger_find_by_id(p, ls.coll, key, &doc, err);
        if (got <= 0) {
            aiproxy_ledger_conn_done(&ls);
            return got < 0 ? AIPROXY_LEDGER_DOWN : AIPROXY_LEDGER_NOT_FOUND;
        }
        aiproxy_ledger_read_month(&doc, before);
        spent = aiproxy_ledger_i64(&doc, "spent");
        bson_destroy(&doc);
        filter = BCON_NEW("_id", BCON_UTF8(key), "spent", BCON_INT64(spent));
        update = BCON_NEW("$inc", "{", "spent", BCON_INT64(-spent),
                          "load", BCON_INT64(-spent), "}");
        ok = aiproxy_ledger_find_and_modify(p, ls.coll, filter, update, NULL,
                                            NULL, after, &found, err);
        aiproxy_ledger_conn_done(&ls);
        bson_destroy(filter);
        bson_destroy(update);
        if (!ok)
            return AIPROXY_LEDGER_DOWN;
        if (found)
            return AIPROXY_LEDGER_OK;
    }
    *err = "the month kept changing; try again";
    return AIPROXY_LEDGER_DOWN;
}
