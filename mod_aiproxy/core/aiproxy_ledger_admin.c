/* The users collection (caps and revocation: read on every request,
 * written by the admin API and aiproxy-admin) and the purge of request
 * records. */
#include <string.h>

#include "aiproxy_ledger_int.h"

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
    int is_email = strcmp(aiproxy_ledger_str(p, doc, "_id"), u->email) == 0;

    if (is_email)
        u->out->revoked_at = aiproxy_ledger_i64(doc, "revoked_at");
    if (aiproxy_ledger_has_int(doc, "cap") && (is_email || !u->email_cap)) {
        u->out->cap = aiproxy_ledger_i64(doc, "cap");
        u->out->has_cap = 1;
        u->out->cap_own = is_email;
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
    rc = aiproxy_ledger_each_doc(p, l, AIPROXY_LEDGER_USERS, filter, NULL,
                                 NULL, user_start, user_each, &u, err);
    bson_destroy(filter);
    return rc;
}

static int update_user(aiproxy_ledger_t *l, apr_pool_t *p, const bson_t *filter,
                       const bson_t *update, int upsert, const char **err)
{
    return aiproxy_ledger_update_in(l, p, AIPROXY_LEDGER_USERS, filter,
                                    update, upsert, err);
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

/* Creates the email's document revoked at now; 1 created, 0 created by
 * someone else meanwhile, -1 on an error. */
static int create_revoked(aiproxy_ledger_t *l, apr_pool_t *p,
                          const char *email, apr_int64_t now,
                          const char **err)
{
    bson_t *fresh = BCON_NEW("_id", BCON_UTF8(email),
                             "revoked_at", BCON_INT64(now));
    bson_error_t error;
    aiproxy_conn_t ls;
    int ok;

    if (!aiproxy_ledger_conn(l, AIPROXY_LEDGER_USERS, &ls, err)) {
        bson_destroy(fresh);
        return -1;
    }
    ok = aiproxy_ledger_insert(ls.coll, (const bson_t **)&fresh, 1, &error);
    aiproxy_ledger_conn_done(&ls);
    bson_destroy(fresh);
    if (ok)
        return 1;
    if (error.code == AIPROXY_LEDGER_DUPLICATE)
        return 0;
    *err = aiproxy_ledger_describe(p, &error);
    return -1;
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
        apr_int64_t want = now;
        aiproxy_conn_t ls;
        int got, rc;

        if (!aiproxy_ledger_conn(l, AIPROXY_LEDGER_USERS, &ls, err))
            return AIPROXY_LEDGER_DOWN;
        got = aiproxy_ledger_find_by_id(p, ls.coll, email, &doc, err);
        aiproxy_ledger_conn_done(&ls);
        if (got < 0)
            return AIPROXY_LEDGER_DOWN;
        if (got == 0) {
            rc = create_revoked(l, p, email, now, err);
            if (rc < 0)
                return AIPROXY_LEDGER_DOWN;
            if (rc > 0) {
                *revoked_at = now;
                return AIPROXY_LEDGER_OK;
            }
            continue;   /* created meanwhile: read it again */
        }
        if (aiproxy_ledger_has_int(&doc, "revoked_at")) {
            apr_int64_t prev = aiproxy_ledger_i64(&doc, "revoked_at");

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

aiproxy_ledger_rc_t aiproxy_ledger_purge_records(aiproxy_ledger_t *l,
                                                 apr_pool_t *p,
                                                 apr_int64_t before_ms,
                                                 apr_int64_t *deleted,
                                                 const char **err)
{
    bson_error_t error;
    aiproxy_conn_t ls;
    int ok;

    *deleted = 0;
    if (!aiproxy_ledger_conn(l, AIPROXY_LEDGER_REQUESTS, &ls, err))
        return AIPROXY_LEDGER_DOWN;
    ok = aiproxy_ledger_delete_records(ls.coll, before_ms, deleted, &error);
    aiproxy_ledger_conn_done(&ls);
    if (!ok)
        *err = aiproxy_ledger_describe(p, &error);
    return ok ? AIPROXY_LEDGER_OK : AIPROXY_LEDGER_DOWN;
}
