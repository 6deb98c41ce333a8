/* The alerts collection (aiproxy_ledger_alert.h). */
#include <string.h>

#include "aiproxy_ledger_int.h"
#include "aiproxy_ledger_alert.h"

#define ALERTS "alerts"

aiproxy_ledger_rc_t aiproxy_ledger_alert_months(aiproxy_ledger_t *l,
                                                apr_pool_t *p,
                                                const char *month,
                                                apr_array_header_t **rows,
                                                const char **err)
{
    /* The {month, spent} index serves this; holds are left behind. */
    bson_t *filter = BCON_NEW("month", BCON_UTF8(month),
                              "spent", "{", "$gt", BCON_INT64(0), "}");
    bson_t *opts = BCON_NEW("projection", "{", "email", BCON_INT32(1),
                            "month", BCON_INT32(1), "spent", BCON_INT32(1),
                            "reserved", BCON_INT32(1),
                            "requests", BCON_INT32(1), "}");
    aiproxy_ledger_rc_t rc;

    *rows = apr_array_make(p, 64, sizeof(aiproxy_month_row_t));
    rc = aiproxy_ledger_each_doc(p, l, AIPROXY_LEDGER_MONTHS, filter, opts,
                                 NULL, aiproxy_ledger_rows_start,
                                 aiproxy_ledger_month_each, *rows, err);
    bson_destroy(opts);
    bson_destroy(filter);
    return rc;
}

aiproxy_ledger_rc_t aiproxy_ledger_alert_add(aiproxy_ledger_t *l,
                                             apr_pool_t *p,
                                             const aiproxy_alert_t *a,
                                             int *created, const char **err)
{
    bson_t *doc = BCON_NEW("_id", BCON_UTF8(a->id),
                           "account", BCON_UTF8(a->account),
                           "kind", BCON_UTF8(a->kind),
                           "month", BCON_UTF8(a->month),
                           "pct", BCON_INT32(a->pct),
                           "spent", BCON_INT64(a->spent),
                           "cap", BCON_INT64(a->cap),
                           "created", BCON_DATE_TIME(a->created_ms),
                           "sent", BCON_NULL,
                           "attempts", BCON_INT32(0),
                           "next_try", BCON_DATE_TIME(a->created_ms),
                           "last_error", BCON_UTF8(""));
    aiproxy_conn_t ls;
    bson_error_t error;
    int ok;

    *created = 0;
    if (a->course)
        BSON_APPEND_UTF8(doc, "course", a->course);
    if (!aiproxy_ledger_conn(l, ALERTS, &ls, err)) {
        bson_destroy(doc);
        return AIPROXY_LEDGER_DOWN;
    }
    ok = aiproxy_ledger_insert(ls.coll, (const bson_t **)&doc, 1, &error);
    aiproxy_ledger_conn_done(&ls);
    bson_destroy(doc);
    if (ok) {
        *created = 1;
        return AIPROXY_LEDGER_OK;
    }
    /* Another host or child (or this one, in an earlier scan) was first. */
    if (error.code == AIPROXY_LEDGER_DUPLICATE)
        return AIPROXY_LEDGER_OK;
    *err = aiproxy_ledger_describe(p, &error);
    return AIPROXY_LEDGER_DOWN;
}

static apr_int64_t date_ms(const bson_t *doc, const char *key)
{
    bson_iter_t it;

    if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_DATE_TIME(&it))
        return bson_iter_date_time(&it);
    return 0;
}

aiproxy_ledger_rc_t aiproxy_ledger_alert_claim(aiproxy_ledger_t *l,
                                               apr_pool_t *p,
                                               apr_int64_t now_ms,
                                               apr_int64_t claim_ms,
                                               aiproxy_alert_t *out,
                                               const char **err)
{
    bson_t *filter = BCON_NEW("sent", BCON_NULL, "gave_up", BCON_NULL,
                              "next_try", "{", "$lte",
                              BCON_DATE_TIME(now_ms), "}");
    bson_t *update = BCON_NEW("$set", "{", "next_try",
                              BCON_DATE_TIME(now_ms + claim_ms), "}");
    bson_t doc = BSON_INITIALIZER;
    aiproxy_conn_t ls;
    int ok, found = 0;

    memset(out, 0, sizeof(*out));
    if (!aiproxy_ledger_conn(l, ALERTS, &ls, err)) {
        ok = 0;
    }
    else {
        ok = aiproxy_ledger_find_and_modify(p, ls.coll, filter, update, NULL,
                                            &doc, NULL, &found, err);
        aiproxy_ledger_conn_done(&ls);
    }
    bson_destroy(filter);
    bson_destroy(update);
    if (ok && found) {
        out->id = aiproxy_ledger_str(p, &doc, "_id");
        out->account = aiproxy_ledger_str(p, &doc, "account");
        out->kind = aiproxy_ledger_str(p, &doc, "kind");
        out->course = aiproxy_ledger_str(p, &doc, "course");
        if (!*out->course)
            out->course = NULL;
        out->month = aiproxy_ledger_str(p, &doc, "month");
        out->pct = (int)aiproxy_ledger_i64(&doc, "pct");
        out->spent = aiproxy_ledger_i64(&doc, "spent");
        out->cap = aiproxy_ledger_i64(&doc, "cap");
        out->attempts = aiproxy_ledger_i64(&doc, "attempts");
        out->created_ms = date_ms(&doc, "created");
        out->claim_ms = date_ms(&doc, "next_try");
    }
    bson_destroy(&doc);
    if (!ok)
        return AIPROXY_LEDGER_DOWN;
    return found ? AIPROXY_LEDGER_OK : AIPROXY_LEDGER_NOT_FOUND;
}

/* update_one on alerts. */
static aiproxy_ledger_rc_t alert_update(aiproxy_ledger_t *l, apr_pool_t *p,
                                        const bson_t *filter,
                                        const bson_t *update,
                                        const char **err)
{
    return aiproxy_ledger_update_in(l, p, ALERTS, filter, update, 0, err) < 0
           ? AIPROXY_LEDGER_DOWN : AIPROXY_LEDGER_OK;
}

aiproxy_ledger_rc_t aiproxy_ledger_alert_sent(aiproxy_ledger_t *l,
                                              apr_pool_t *p, const char *id,
                                              apr_int64_t now_ms,
                                              const char **err)
{
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(id));
    bson_t *update = BCON_NEW("$set", "{", "sent", BCON_DATE_TIME(now_ms), "}",
                              "$inc", "{", "attempts", BCON_INT32(1), "}");
    aiproxy_ledger_rc_t rc = alert_update(l, p, filter, update, err);

    bson_destroy(filter);
    bson_destroy(update);
    return rc;
}

aiproxy_ledger_rc_t aiproxy_ledger_alert_failed(aiproxy_ledger_t *l,
                                                apr_pool_t *p,
                                                const aiproxy_alert_t *a,
                                                apr_int64_t next_ms,
                                                const char *why, int given_up,
                                                const char **err)
{
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(a->id), "sent", BCON_NULL,
                              "next_try", BCON_DATE_TIME(a->claim_ms));
    bson_t *update = BCON_NEW("$set", "{", "next_try", BCON_DATE_TIME(next_ms),
                              "last_error", BCON_UTF8(why), "}",
                              "$inc", "{", "attempts", BCON_INT32(1), "}");
    aiproxy_ledger_rc_t rc;

    if (given_up) {
        bson_t *more = BCON_NEW("$set", "{", "next_try",
                                BCON_DATE_TIME(next_ms), "last_error",
                                BCON_UTF8(why), "gave_up",
                                BCON_DATE_TIME(next_ms), "}",
                                "$inc", "{", "attempts", BCON_INT32(1), "}");

        bson_destroy(update);
        update = more;
    }
    rc = alert_update(l, p, filter, update, err);
    bson_destroy(filter);
    bson_destroy(update);
    return rc;
}
