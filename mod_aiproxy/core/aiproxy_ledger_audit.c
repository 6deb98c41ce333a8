/* The audit log (aiproxy_ledger_audit.h). */
#include <string.h>
#include <apr_strings.h>
#include <apr_time.h>

#include "aiproxy_ledger_int.h"
#include "aiproxy_ledger_audit.h"

#define AUDIT "audit"

/* Appends a JSON text as field key: parsed inside a one-field object so
 * that a scalar or null keeps its type; what does not parse is a string. */
static void append_json(apr_pool_t *p, bson_t *doc, const char *key,
                        const char *json)
{
    bson_t wrap;
    bson_iter_t it;

    if (!json) {
        BSON_APPEND_NULL(doc, key);
        return;
    }
    if (bson_init_from_json(&wrap, apr_pstrcat(p, "{\"v\":", json, "}", NULL),
                            -1, NULL)) {
        if (bson_iter_init_find(&it, &wrap, "v"))
            bson_append_iter(doc, key, -1, &it);
        bson_destroy(&wrap);
        return;
    }
    BSON_APPEND_UTF8(doc, key, json);
}

aiproxy_ledger_rc_t aiproxy_ledger_audit_append(aiproxy_ledger_t *l,
                                                apr_pool_t *p,
                                                const aiproxy_audit_t *e,
                                                const char **err)
{
    bson_t *doc = bson_new();
    bson_oid_t oid;
    bson_error_t error;
    aiproxy_conn_t ls;
    int ok;

    bson_oid_init(&oid, NULL);
    BSON_APPEND_OID(doc, "_id", &oid);
    BSON_APPEND_DATE_TIME(doc, "time", e->time_ms ? e->time_ms
                          : (apr_int64_t)apr_time_as_msec(apr_time_now()));
    BSON_APPEND_UTF8(doc, "who", e->who);
    BSON_APPEND_UTF8(doc, "role", e->role);
    BSON_APPEND_UTF8(doc, "action", e->action);
    BSON_APPEND_UTF8(doc, "target", e->target);
    if (e->course)
        BSON_APPEND_UTF8(doc, "course", e->course);
    append_json(p, doc, "before", e->before);
    append_json(p, doc, "after", e->after);
    if (!aiproxy_ledger_conn(l, AUDIT, &ls, err)) {
        bson_destroy(doc);
        return AIPROXY_LEDGER_DOWN;
    }
    /* The _id is fixed before the first try: a retry finds it taken. */
    ok = aiproxy_ledger_insert(ls.coll, (const bson_t **)&doc, 1, &error) ||
         error.code == AIPROXY_LEDGER_DUPLICATE;
    aiproxy_ledger_conn_done(&ls);
    bson_destroy(doc);
    if (!ok) {
        *err = aiproxy_ledger_describe(p, &error);
        return AIPROXY_LEDGER_DOWN;
    }
    return AIPROXY_LEDGER_OK;
}

/* A field's value as relaxed extended JSON ("null" when absent). */
static const char *field_json(apr_pool_t *p, const bson_t *doc,
                              const char *key)
{
    bson_t one = BSON_INITIALIZER;
    bson_iter_t it;
    const char *out = "null";
    char *s, *v;
    apr_size_t n;

    if (!bson_iter_init_find(&it, doc, key))
        return out;
    bson_append_iter(&one, "v", -1, &it);
    s = bson_as_relaxed_extended_json(&one, NULL);
    /* { "v" : X } */
    if (s && (v = strchr(s, ':')) && (n = strlen(v)) >= 3)
        out = apr_pstrmemdup(p, v + 2, n - 4);
    bson_free(s);
    bson_destroy(&one);
    return out;
}

static void audit_row(apr_pool_t *p, const bson_t *doc, void *baton)
{
    aiproxy_audit_t *e = apr_array_push((apr_array_header_t *)baton);
    bson_iter_t it;

    e->time_ms = bson_iter_init_find(&it, doc, "time") &&
                 BSON_ITER_HOLDS_DATE_TIME(&it) ? bson_iter_date_time(&it)
                                                : 0;
    e->who = aiproxy_ledger_str(p, doc, "who");
    e->role = aiproxy_ledger_str(p, doc, "role");
    e->action = aiproxy_ledger_str(p, doc, "action");
    e->target = aiproxy_ledger_str(p, doc, "target");
    e->course = bson_iter_init_find(&it, doc, "course") &&
                BSON_ITER_HOLDS_UTF8(&it) ? aiproxy_ledger_str(p, doc,
                                                               "course")
                                          : NULL;
    e->before = field_json(p, doc, "before");
    e->after = field_json(p, doc, "after");
}

aiproxy_ledger_rc_t aiproxy_ledger_audit_list(aiproxy_ledger_t *l,
                                              apr_pool_t *p,
                                              const apr_array_header_t *courses,
                                              apr_int64_t skip,
                                              apr_int64_t limit,
                                              apr_array_header_t **rows,
                                              const char **err)
{
    bson_t filter = BSON_INITIALIZER, in, arr;
    bson_t *opts = BCON_NEW("sort", "{", "time", BCON_INT32(-1),
                            "_id", BCON_INT32(-1), "}",
                            "skip", BCON_INT64(skip),
                            "limit", BCON_INT64(limit));
    aiproxy_ledger_rc_t rc = AIPROXY_LEDGER_OK;
    char idx[16];
    const char *k;
    int i;

    *rows = apr_array_make(p, 16, sizeof(aiproxy_audit_t));
    if (courses) {
        BSON_APPEND_DOCUMENT_BEGIN(&filter, "course", &in);
        BSON_APPEND_ARRAY_BEGIN(&in, "$in", &arr);
        for (i = 0; i < courses->nelts; i++) {
            bson_uint32_to_string(i, &k, idx, sizeof(idx));
            BSON_APPEND_UTF8(&arr, k, APR_ARRAY_IDX(courses, i,
                                                    const char *));
        }
        bson_append_array_end(&in, &arr);
        bson_append_document_end(&filter, &in);
    }
    if (!courses || courses->nelts)
        rc = aiproxy_ledger_each_doc(p, l, AUDIT, &filter, opts, NULL,
                                     aiproxy_ledger_rows_start, audit_row,
                                     *rows, err);
    bson_destroy(opts);
    bson_destroy(&filter);
    return rc;
}
