/* Admission of a request charged to a course (the token's course claim):
 * the course and the caller's enrolment, read once per AIProxyUserCacheTTL
 * per child; what the course allows; the cap that applies; and the hold
 * on the course's budget, taken after the user's. */
#include <string.h>
#include <apr_strings.h>

#include "httpd.h"
#include "http_log.h"
#include "http_protocol.h"

#include "aiproxy_admit.h"
#include "aiproxy_admit_int.h"
#include "aiproxy_counters.h"
#include "aiproxy_lease.h"
#include "aiproxy_ledger_course.h"
#include "aiproxy_memo.h"
#include "aiproxy_policy.h"
#include "aiproxy_reply.h"

APLOG_USE_MODULE(aiproxy);

#define COURSE_MEMO_MAX 4096

/* A course as remembered: the numbers, then its models and endpoints as
 * two '\n'-separated lists, each ending in a NUL. */
typedef struct {
    apr_uint32_t generation;
    int found;
    aiproxy_money_t budget, member_cap;
    int has_member_cap;
} course_entry_t;

typedef struct {
    apr_uint32_t generation;
    int is_member, has_cap;
    aiproxy_money_t cap;
} member_entry_t;

static aiproxy_memo_t *course_memo, *member_memo;
/* Courses this child saw spent, by "month #id": refused before the body is
 * read, as a spent user is (aiproxy_admit.c). */
static aiproxy_memo_t *full_memo;

typedef struct {
    apr_uint32_t generation;
    aiproxy_month_t month;
} full_entry_t;

void aiproxy_admit_course_child_init(apr_pool_t *p, server_rec *s)
{
    aiproxy_global_t *g = aiproxy_global(s);

    if (g->user_memo_ttl > 0) {
        course_memo = aiproxy_memo_create(p, COURSE_MEMO_MAX);
        member_memo = aiproxy_memo_create(p, COURSE_MEMO_MAX);
        full_memo = aiproxy_memo_create(p, COURSE_MEMO_MAX);
    }
}

static const char *joined(apr_pool_t *p, const apr_array_header_t *a)
{
    return a->nelts ? apr_pstrcat(p, "\n", apr_array_pstrcat(p, a, '\n'),
                                  "\n", NULL) : "";
}

/* In a "\nname\nname\n" list; an empty list allows any. */
static int listed(apr_pool_t *p, const char *list, const char *name)
{
    return !*list || strstr(list, apr_pstrcat(p, "\n", name, "\n", NULL));
}

static aiproxy_ledger_rc_t course_of(request_rec *r, aiproxy_req_t *st,
                                     course_entry_t *out, const char **models,
                                     const char **endpoints, const char **err)
{
    apr_int64_t now_ms = apr_time_as_msec(apr_time_now());
    apr_uint32_t gen = aiproxy_users_generation();
    aiproxy_course_t c;
    aiproxy_ledger_rc_t rc;
    course_entry_t *e;
    apr_size_t len, m, n;
    char *buf;

    e = aiproxy_memo_get(course_memo, r->pool, st->course,
                         now_ms - (apr_int64_t)st->g->user_memo_ttl * 1000,
                         &len);
    if (e && len > sizeof(*e) && e->generation == gen) {
        *out = *e;
        *models = (const char *)(e + 1);
        *endpoints = *models + strlen(*models) + 1;
        return AIPROXY_LEDGER_OK;
    }
    rc = aiproxy_ledger_course_get(aiproxy_child_ledger(), r->pool,
                                   st->course, &c, err);
    if (rc == AIPROXY_LEDGER_DOWN)
        return rc;
    memset(out, 0, sizeof(*out));
    out->generation = gen;
    out->found = rc == AIPROXY_LEDGER_OK;
    *models = *endpoints = "";
    if (out->found) {
        out->budget = c.budget;
        out->member_cap = c.member_cap;
        out->has_member_cap = c.has_member_cap;
        *models = joined(r->pool, c.models);
        *endpoints = joined(r->pool, c.endpoints);
    }
    if (course_memo) {
        m = strlen(*models) + 1;
        n = strlen(*endpoints) + 1;
        buf = apr_palloc(r->pool, sizeof(*out) + m + n);
        memcpy(buf, out, sizeof(*out));
        memcpy(buf + sizeof(*out), *models, m);
        memcpy(buf + sizeof(*out) + m, *endpoints, n);
        aiproxy_memo_put(course_memo, st->course, now_ms, buf,
                         sizeof(*out) + m + n);
    }
    return AIPROXY_LEDGER_OK;
}

static aiproxy_ledger_rc_t enrolment_of(request_rec *r, aiproxy_req_t *st,
                                        member_entry_t *out, const char **err)
{
    apr_int64_t now_ms = apr_time_as_msec(apr_time_now());
    apr_uint32_t gen = aiproxy_users_generation();
    const char *key = apr_pstrcat(r->pool, st->course, "|", st->email, NULL);
    aiproxy_ledger_rc_t rc;
    member_entry_t *e;
    apr_size_t len;

    e = aiproxy_memo_get(member_memo, r->pool, key,
                         now_ms - (apr_int64_t)st->g->user_memo_ttl * 1000,
                         &len);
    if (e && len == sizeof(*e) && e->generation == gen) {
        *out = *e;
        return AIPROXY_LEDGER_OK;
    }
    memset(out, 0, sizeof(*out));
    out->generation = gen;
    rc = aiproxy_ledger_is_member(aiproxy_child_ledger(), r->pool, st->course,
                                  st->email, &out->is_member, &out->has_cap,
                                  &out->cap, err);
    if (rc == AIPROXY_LEDGER_OK && member_memo)
        aiproxy_memo_put(member_memo, key, now_ms, out, sizeof(*out));
    return rc;
}

static int store_down(request_rec *r, aiproxy_req_t *st, const char *err)
{
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, AIPLOGNO(01121)
                  "usage store unavailable for course %s: %s", st->course,
                  err);
    return aiproxy_reply_store_down(r, st);
}

int aiproxy_admit_course(request_rec *r, aiproxy_req_t *st,
                         const aiproxy_user_t *u)
{
    const char *err = "no store connection pool", *models, *endpoints;
    course_entry_t c;
    member_entry_t m;

    st->cap = aiproxy_policy_cap(u, st->g->default_cap);
    if (!st->course)
        return DECLINED;
    if (!aiproxy_child_ledger() ||
        course_of(r, st, &c, &models, &endpoints, &err) != AIPROXY_LEDGER_OK ||
        (c.found && enrolment_of(r, st, &m, &err) != AIPROXY_LEDGER_OK))
        return store_down(r, st, err);
    if (!c.found || !m.is_member) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, AIPLOGNO(01122)
                      "%s is not in course %s", st->email, st->course);
        return aiproxy_reply_error(r, st, HTTP_FORBIDDEN,
                                   "permission_error", "not_in_course",
                                   apr_psprintf(r->pool, "This token is for "
                                   "course %s, which %s.", st->course,
                                   c.found ? "you are no longer a member of"
                                           : "does not exist"));
    }
    if (!st->is_models && !listed(r->pool, endpoints, st->endpoint))
        return aiproxy_reply_error(r, st, HTTP_FORBIDDEN,
                                   "invalid_request_error",
                                   "endpoint_not_allowed",
                                   apr_psprintf(r->pool, "Course %s does not "
                                                "allow %s.", st->course,
                                                st->endpoint));
    st->course_account = aiproxy_course_account(r->pool, st->course);
    st->month = aiproxy_month_of(r->pool, r->request_time);
    st->course_budget = c.budget;
    st->course_models = models;
    /* An admin's cap for the email wins; else the enrolment's, else the
     * course's default for its members. */
    if (!u->cap_own && m.has_cap)
        st->cap = m.cap;
    else if (!u->cap_own && c.has_member_cap)
        st->cap = c.member_cap;
    return DECLINED;
}

int aiproxy_admit_course_allows(request_rec *r, const aiproxy_req_t *st,
                                const char *model)
{
    return !st->course || listed(r->pool, st->course_models, model);
}

int aiproxy_admit_course_model(request_rec *r, aiproxy_req_t *st)
{
    if (!st->info.model || aiproxy_admit_course_allows(r, st, st->info.model))
        return DECLINED;
    return aiproxy_reply_error(r, st, HTTP_FORBIDDEN, "invalid_request_error",
                               "model_not_allowed",
                               apr_psprintf(r->pool, "Course %s does not "
                                            "allow the model %s.", st->course,
                                            st->info.model));
}

static int course_refused(request_rec *r, aiproxy_req_t *st)
{
    aiproxy_money_t used = st->course_month.spent + st->course_month.reserved;

    aiproxy_stat_inc(AIPROXY_STAT_OVER_CAP);
    aiproxy_reply_set_money_headers(r, r->headers_out, 0, &st->month_state);
    return aiproxy_reply_error(r, st, HTTP_TOO_MANY_REQUESTS,
                               "insufficient_quota", "course_budget_exceeded",
                               apr_psprintf(r->pool, "Course %s used $%s of "
                               "its $%s budget for %s; this request may cost "
                               "up to $%s.", st->course,
                               aiproxy_money_format(r->pool, used),
                               aiproxy_money_format(r->pool, st->course_budget),
                               st->month,
                               aiproxy_money_format(r->pool, st->reserved)));
}

static const char *full_key(apr_pool_t *p, const aiproxy_req_t *st)
{
    return apr_pstrcat(p, st->month, " ", st->course_account, NULL);
}

int aiproxy_admit_course_spent(request_rec *r, aiproxy_req_t *st)
{
    apr_int64_t now_ms = apr_time_as_msec(apr_time_now());
    full_entry_t *e;
    apr_size_t len;

    if (!st->course || !full_memo)
        return DECLINED;
    e = aiproxy_memo_get(full_memo, r->pool, full_key(r->pool, st),
                         now_ms - (apr_int64_t)st->g->user_memo_ttl * 1000,
                         &len);
    if (!e || len != sizeof(*e) || e->generation != aiproxy_users_generation()
        || e->month.spent < st->course_budget)
        return DECLINED;
    st->course_month = e->month;
    return course_refused(r, st);
}

/* The user's hold back, untouched: the request never went out. */
static void release_user(request_rec *r, aiproxy_req_t *st)
{
    const char *err = "";

    if (st->ticket) {
        aiproxy_lease_settle(st, 0, 0, &st->month_state);
    }
    else if (aiproxy_ledger_release(aiproxy_child_ledger(), r->pool,
                                    st->email, st->month, st->id,
                                    st->reserved, &err) != AIPROXY_LEDGER_OK)
        /* Its expiry releases it; the sweep then charges it, so say so. */
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, AIPLOGNO(01123)
                      "could not release the hold of request %s of %s: %s",
                      st->id, st->email, err);
    st->held = 0;
}

int aiproxy_admit_course_reserve(request_rec *r, aiproxy_req_t *st)
{
    apr_int64_t now_ms = apr_time_as_msec(apr_time_now());
    const char *err = "";
    aiproxy_ledger_rc_t rc;

    if (!st->course)
        return DECLINED;
    switch (aiproxy_lease_take_course(r, st, &err)) {
    case AIPROXY_LEASE_TAKEN:
        st->course_held = 1;
        return DECLINED;
    case AIPROXY_LEASE_DOWN:
        rc = AIPROXY_LEDGER_DOWN;
        break;
    case AIPROXY_LEASE_OVER_CAP:
        rc = AIPROXY_LEDGER_OVER_CAP;
        break;
    default:
        rc = aiproxy_ledger_reserve(aiproxy_child_ledger(), r->pool,
                                    st->course_account, st->month, st->id,
                                    st->reserved, st->course_budget, now_ms,
                                    now_ms + (apr_int64_t)st->g->hold_ttl
                                             * 1000,
                                    st->endpoint, st->info.model, st->course,
                                    &st->course_month, &err);
    }
    if (rc == AIPROXY_LEDGER_OK) {
        st->course_held = 1;
        return DECLINED;
    }
    release_user(r, st);
    if (rc == AIPROXY_LEDGER_OVER_CAP) {
        if (full_memo && st->course_month.spent >= st->course_budget) {
            full_entry_t e;

            memset(&e, 0, sizeof(e));
            e.generation = aiproxy_users_generation();
            e.month = st->course_month;
            aiproxy_memo_put(full_memo, full_key(r->pool, st), now_ms, &e,
                             sizeof(e));
        }
        return course_refused(r, st);
    }
    /* The hold may have landed with its reply lost: give it back, or its
     * sweep would charge the course for a request never sent. */
    if (!st->course_ticket)
        aiproxy_ledger_release(aiproxy_child_ledger(), r->pool,
                               st->course_account, st->month, st->id,
                               st->reserved, &err);
    return store_down(r, st, err);
}

void aiproxy_admit_course_settle(request_rec *r, aiproxy_req_t *st,
                                 const aiproxy_record_t *rec)
{
    aiproxy_ledger_t *ledger = aiproxy_child_ledger();
    const char *err = "no store connection pool";
    aiproxy_record_t c;

    if (!st->course_held)
        return;
    st->course_held = 0;
    if (st->course_ticket) {
        aiproxy_lease_settle_course(st, rec->cost,
                                    aiproxy_ledger_counts(rec));
        return;
    }
    c = *rec;
    c.email = st->course_account;
    if (!ledger || aiproxy_ledger_settle(ledger, r->pool, &c,
                                         &st->course_month, &err)
                   != AIPROXY_LEDGER_OK)
        /* Its hold expires and is swept: charged its whole amount. */
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, AIPLOGNO(01124)
                      "course %s: settlement failed for request %s (cost "
                      "%s USD): %s", st->course, st->id,
                      aiproxy_money_format(r->pool, rec->cost), err);
}

void aiproxy_admit_course_count(request_rec *r, aiproxy_req_t *st,
                                const aiproxy_record_t *rec)
{
    const char *err = "";
    aiproxy_record_t c;

    if (!st->course_account ||
        aiproxy_lease_count(st, st->course_account, &st->course_month))
        return;
    c = *rec;
    c.email = st->course_account;
    if (aiproxy_ledger_settle(aiproxy_child_ledger(), r->pool, &c,
                              &st->course_month, &err) != AIPROXY_LEDGER_OK)
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, AIPLOGNO(01125)
                      "course %s: cached request %s not counted: %s",
                      st->course, st->id, err);
}
