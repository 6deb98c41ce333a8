/* The ledger against a real store: ledger-tests MONGODB_URI [DATABASE]
 * (or MONGODB_URI in the environment). Each run uses a fresh database;
 * t/test_ledger_c.py runs it against the local store. Prints
 * "N passed, M failed" last and exits non-zero on a failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <apr_atomic.h>
#include <apr_general.h>
#include <apr_strings.h>
#include <apr_thread_proc.h>
#include <apr_time.h>

#include "aiproxy_ledger_int.h"

static int passed, failed;

#define CHECK(cond) check((cond), #cond, __FILE__, __LINE__)
#define CHECK_EQ(a, b) check_eq((apr_int64_t)(a), (apr_int64_t)(b), \
                                #a " == " #b, __FILE__, __LINE__)

static void check(int ok, const char *what, const char *file, int line)
{
    if (ok) {
        passed++;
        return;
    }
    failed++;
    printf("FAIL %s:%d: %s\n", file, line, what);
}

static void check_eq(apr_int64_t a, apr_int64_t b, const char *what,
                     const char *file, int line)
{
    if (a == b) {
        passed++;
        return;
    }
    failed++;
    printf("FAIL %s:%d: %s (%" APR_INT64_T_FMT " != %" APR_INT64_T_FMT ")\n",
           file, line, what, a, b);
}

static void driver_log(int level, const char *domain, const char *message)
{
    if (level <= 4)
        fprintf(stderr, "[%d] %s: %s\n", level, domain, message);
}

static const char *uri, *db;
static aiproxy_ledger_t *ledger;

/* 2024-05-10 12:00 UTC: a fixed month keeps the daily rows predictable. */
#define MONTH "2024-05"
#define NOW_MS ((apr_int64_t)1715342400000)
#define LATER (NOW_MS + 600000)

static aiproxy_ledger_rc_t reserve(apr_pool_t *p, const char *email,
                                   const char *id, aiproxy_money_t amount,
                                   aiproxy_money_t cap, apr_int64_t expires,
                                   aiproxy_month_t *m)
{
    const char *err = NULL;

    return aiproxy_ledger_reserve(ledger, p, email, MONTH, id, amount, cap,
                                  NOW_MS, expires, "/v1/chat/completions",
                                  "gpt-4o-mini", NULL, m, &err);
}

static aiproxy_ledger_rc_t settle(apr_pool_t *p, const char *email,
                                  const char *id, aiproxy_money_t cost,
                                  aiproxy_money_t reserved, int held,
                                  aiproxy_month_t *m)
{
    aiproxy_record_t r;
    const char *err = NULL;

    memset(&r, 0, sizeof(r));
    r.id = id;
    r.email = email;
    r.month = MONTH;
    r.endpoint = "/v1/chat/completions";
    r.model = "gpt-4o-mini";
    r.provider = "openai";
    r.time_ms = NOW_MS;
    r.usage.input = 10;
    r.usage.output = 5;
    r.cost = cost;
    r.reserved = reserved;
    r.status = 200;
    r.held = held;
    return aiproxy_ledger_settle(ledger, p, &r, m, &err);
}

/* The month as the listing shows it; 0 when there is none. */
static int month_of(apr_pool_t *p, const char *email, aiproxy_month_row_t *out)
{
    apr_array_header_t *rows;
    const char *err = NULL;

    if (aiproxy_ledger_months(ledger, p, MONTH, email, NULL, 0, 10, &rows,
                              &err) != AIPROXY_LEDGER_OK || rows->nelts != 1)
        return 0;
    *out = APR_ARRAY_IDX(rows, 0, aiproxy_month_row_t);
    return 1;
}

static void test_reserve_cap_exact(apr_pool_t *p)
{
    const char *who = "cap@example.org";
    aiproxy_month_t m;
    aiproxy_month_row_t row;

    CHECK_EQ(reserve(p, who, "r1", 60, 100, LATER, &m), AIPROXY_LEDGER_OK);
    CHECK_EQ(m.reserved, 60);
    /* Exactly up to the cap passes; one pico-dollar more does not. */
    CHECK_EQ(reserve(p, who, "r2", 40, 100, LATER, &m), AIPROXY_LEDGER_OK);
    CHECK_EQ(m.reserved, 100);
    CHECK_EQ(reserve(p, who, "r3", 1, 100, LATER, &m),
             AIPROXY_LEDGER_OVER_CAP);
    CHECK_EQ(m.reserved, 100);
    /* The same id again (a retried reservation) holds nothing more. */
    CHECK_EQ(reserve(p, who, "r1", 60, 200, LATER, &m), AIPROXY_LEDGER_OK);
    CHECK(month_of(p, who, &row));
    CHECK_EQ(row.reserved, 100);
    CHECK_EQ(row.spent, 0);
}

typedef struct {
    int thread;
    int ok;
} racer_t;

#define RACERS 8
#define RACES 6
#define RACE_CAP 95     /* room for nine holds of 10 */

static void *APR_THREAD_FUNC racer(apr_thread_t *t, void *data)
{
    racer_t *r = data;
    apr_pool_t *p;
    int i;

    apr_pool_create(&p, NULL);
    for (i = 0; i < RACES; i++) {
        aiproxy_month_t m;
        const char *id = apr_psprintf(p, "race-%d-%d", r->thread, i);

        r->ok += reserve(p, "race@example.org", id, 10, RACE_CAP, LATER, &m)
                 == AIPROXY_LEDGER_OK;
    }
    apr_pool_destroy(p);
    /* Returned, not apr_thread_exit(): ASan misreads pthread_exit. */
    (void)t;
    return NULL;
}

static void test_reserve_concurrent(apr_pool_t *p)
{
    apr_thread_t *threads[RACERS];
    racer_t racers[RACERS];
    aiproxy_month_row_t row;
    apr_status_t rv;
    int i, ok = 0;

    for (i = 0; i < RACERS; i++) {
        racers[i].thread = i;
        racers[i].ok = 0;
        CHECK(apr_thread_create(&threads[i], NULL, racer, &racers[i], p) ==
              APR_SUCCESS);
    }
    for (i = 0; i < RACERS; i++) {
        apr_thread_join(&rv, threads[i]);
        ok += racers[i].ok;
    }
    /* Every one that fits, and not one more. */
    CHECK_EQ(ok, RACE_CAP / 10);
    CHECK(month_of(p, "race@example.org", &row));
    CHECK_EQ(row.reserved, (RACE_CAP / 10) * 10);
}

static void test_settle_once(apr_pool_t *p)
{
    const char *who = "settle@example.org";
    aiproxy_month_t m;
    aiproxy_month_row_t row;

    CHECK_EQ(reserve(p, who, "s1", 50, 1000, LATER, &m), AIPROXY_LEDGER_OK);
    CHECK_EQ(settle(p, who, "s1", 30, 50, 1, &m), AIPROXY_LEDGER_OK);
    CHECK_EQ(m.spent, 30);
    CHECK_EQ(m.reserved, 0);
    CHECK_EQ(m.requests, 1);
    /* Sent again (a lost reply): charged once. */
    CHECK_EQ(settle(p, who, "s1", 30, 50, 1, &m), AIPROXY_LEDGER_OK);
    CHECK_EQ(m.spent, 30);
    CHECK_EQ(m.requests, 1);
    /* Without a hold (a cache hit): charged directly, also once. */
    CHECK_EQ(settle(p, who, "s2", 7, 0, 0, &m), AIPROXY_LEDGER_OK);
    CHECK_EQ(settle(p, who, "s2", 7, 0, 0, &m), AIPROXY_LEDGER_OK);
    CHECK(month_of(p, who, &row));
    CHECK_EQ(row.spent, 37);
    CHECK_EQ(row.reserved, 0);
    CHECK_EQ(row.requests, 2);
}

static aiproxy_ledger_rc_t lease_write(apr_pool_t *p, const char *email,
                                       const char *lease, apr_int64_t seq,
                                       aiproxy_money_t spent,
                                       apr_int64_t requests,
                                       aiproxy_money_t grow,
                                       aiproxy_money_t cap,
                                       aiproxy_money_t inflight,
                                       apr_int64_t expires,
                                       aiproxy_month_t *m,
                                       aiproxy_money_t *load)
{
    aiproxy_lease_op_t op;
    const char *err = NULL;

    memset(&op, 0, sizeof(op));
    op.email = email;
    op.month = MONTH;
    op.lease = lease;
    op.host = "test";
    op.seq = seq;
    op.spent = spent;
    op.requests = requests;
    op.grow = grow;
    op.cap = cap;
    op.inflight = inflight;
    op.inflight_n = inflight > 0;
    op.now_ms = NOW_MS;
    op.expires_ms = expires;
    return aiproxy_ledger_lease_write(ledger, p, &op, m, load, &err);
}

/* A lease grows only under the cap, spends from its hold without moving
 * load, and a write sent twice (its reply lost) counts once. */
static void test_lease_write_once(apr_pool_t *p)
{
    const char *who = "lease@example.org";
    aiproxy_month_t m;
    aiproxy_month_row_t row;
    aiproxy_money_t load;

    CHECK_EQ(lease_write(p, who, "L-a", 0, 0, 0, 60, 100, 0, LATER, &m,
                         &load), AIPROXY_LEDGER_OK);
    CHECK_EQ(load, 60);
    CHECK_EQ(m.reserved, 60);
    /* A per-request hold and another host's lease share the cap. */
    CHECK_EQ(reserve(p, who, "r1", 30, 100, LATER, &m), AIPROXY_LEDGER_OK);
    CHECK_EQ(lease_write(p, who, "L-b", 0, 0, 0, 11, 100, 0, LATER, &m,
                         &load), AIPROXY_LEDGER_OVER_CAP);
    CHECK_EQ(load, 90);
    CHECK_EQ(lease_write(p, who, "L-b", 0, 0, 0, 10, 100, 0, LATER, &m,
                         &load), AIPROXY_LEDGER_OK);
    CHECK_EQ(load, 100);
    /* Host a spent 25 over 3 requests: reserved becomes spent. */
    CHECK_EQ(lease_write(p, who, "L-a", 1, 25, 3, 0, 100, 5, LATER, &m,
                         &load), AIPROXY_LEDGER_OK);
    CHECK_EQ(m.spent, 25);
    CHECK_EQ(m.requests, 3);
    CHECK_EQ(load, 100);
    /* The same write again, as after a lost reply: recognised, not
     * applied. */
    CHECK_EQ(lease_write(p, who, "L-a", 1, 25, 3, 0, 100, 5, LATER, &m,
                         &load), AIPROXY_LEDGER_OK);
    CHECK(month_of(p, who, &row));
    CHECK_EQ(row.spent, 25);
    CHECK_EQ(row.requests, 3);
    CHECK_EQ(row.reserved, 75);
    /* Giving back 30 of what is left makes room. */
    CHECK_EQ(lease_write(p, who, "L-a", 2, 0, 0, -30, 100, 5, LATER, &m,
                         &load), AIPROXY_LEDGER_OK);
    CHECK_EQ(load, 70);
    /* An empty hold can be dropped; one holding money cannot. */
    CHECK_EQ(aiproxy_ledger_lease_drop(ledger, p, who, MONTH, "L-b", 1,
                                       &(const char *){NULL}),
             AIPROXY_LEDGER_OK);
    CHECK(month_of(p, who, &row));
    CHECK_EQ(row.reserved, 45);
    CHECK_EQ(lease_write(p, who, "L-b", 1, 0, 0, -10, 100, 0, LATER, &m,
                         &load), AIPROXY_LEDGER_OK);
    CHECK_EQ(aiproxy_ledger_lease_drop(ledger, p, who, MONTH, "L-b", 2,
                                       &(const char *){NULL}),
             AIPROXY_LEDGER_OK);
    CHECK_EQ(lease_write(p, who, "L-b", 2, 0, 0, 0, 100, 0, LATER, &m,
                         &load), AIPROXY_LEDGER_NOT_FOUND);
}

/* A dead host's lease, once expired, is charged what it had in flight at
 * its last write and the rest released; its host learns it is gone. */
static void test_lease_sweep(apr_pool_t *p)
{
    const char *who = "lease-sweep@example.org";
    aiproxy_month_t m;
    aiproxy_month_row_t row;
    aiproxy_money_t load;

    CHECK_EQ(lease_write(p, who, "L-dead", 0, 0, 0, 80, 100, 0, LATER, &m,
                         &load), AIPROXY_LEDGER_OK);
    /* Its last write: 10 spent, 15 in flight; then the host died. */
    CHECK_EQ(lease_write(p, who, "L-dead", 1, 10, 1, 0, 100, 15, NOW_MS - 1,
                         &m, &load), AIPROXY_LEDGER_OK);
    /* Another host needs 50: only the sweep makes room. */
    CHECK_EQ(lease_write(p, who, "L-live", 0, 0, 0, 50, 100, 0, LATER, &m,
                         &load), AIPROXY_LEDGER_OK);
    CHECK(month_of(p, who, &row));
    CHECK_EQ(row.spent, 25);
    CHECK_EQ(row.requests, 2);
    CHECK_EQ(row.reserved, 50);
    CHECK_EQ(lease_write(p, who, "L-dead", 2, 3, 1, 0, 100, 0, LATER, &m,
                         &load), AIPROXY_LEDGER_NOT_FOUND);
}

/* Writes of several users in one round trip; one already applied (its
 * reply lost) is recognised, not applied again. */
static void test_lease_write_many(apr_pool_t *p)
{
    const char *a = "many-a@example.org", *b = "many-b@example.org";
    aiproxy_lease_op_t ops[2];
    aiproxy_ledger_rc_t rcs[2];
    aiproxy_month_t months[2], m;
    aiproxy_money_t loads[2], load;
    const char *errs[2];
    aiproxy_month_row_t row;
    int i;

    CHECK_EQ(lease_write(p, a, "L-m", 0, 0, 0, 50, 100, 0, LATER, &m, &load),
             AIPROXY_LEDGER_OK);
    CHECK_EQ(lease_write(p, b, "L-m", 0, 0, 0, 50, 100, 0, LATER, &m, &load),
             AIPROXY_LEDGER_OK);
    memset(ops, 0, sizeof(ops));
    for (i = 0; i < 2; i++) {
        ops[i].email = i ? b : a;
        ops[i].month = MONTH;
        ops[i].lease = "L-m";
        ops[i].host = "test";
        ops[i].seq = 1;
        ops[i].spent = 10 + i;
        ops[i].requests = 1;
        ops[i].cap = 100;
        ops[i].now_ms = NOW_MS;
        ops[i].expires_ms = LATER;
    }
    aiproxy_ledger_lease_write_many(ledger, p, ops, 2, rcs, months, loads,
                                    errs);
    CHECK_EQ(rcs[0], AIPROXY_LEDGER_OK);
    CHECK_EQ(rcs[1], AIPROXY_LEDGER_OK);
    CHECK_EQ(months[0].spent, 10);
    CHECK_EQ(months[1].spent, 11);
    CHECK_EQ(loads[1], 50);
    /* Sent again: b's as is (its reply lost), a's as the next write. */
    ops[0].seq = 2;
    ops[0].spent = 5;
    aiproxy_ledger_lease_write_many(ledger, p, ops, 2, rcs, months, loads,
                                    errs);
    CHECK_EQ(rcs[0], AIPROXY_LEDGER_OK);
    CHECK_EQ(rcs[1], AIPROXY_LEDGER_OK);
    CHECK(month_of(p, a, &row));
    CHECK_EQ(row.spent, 15);
    CHECK(month_of(p, b, &row));
    CHECK_EQ(row.spent, 11);
    CHECK_EQ(row.requests, 1);
}

static void test_sweep(apr_pool_t *p)
{
    const char *who = "sweep@example.org";
    aiproxy_month_t m;
    aiproxy_month_row_t row;
    apr_array_header_t *days;
    const char *err = NULL;

    /* A hold whose child died: already expired. */
    CHECK_EQ(reserve(p, who, "dead", 40, 100, NOW_MS - 1, &m),
             AIPROXY_LEDGER_OK);
    /* A live hold that does not expire. */
    CHECK_EQ(reserve(p, who, "live", 20, 100, LATER, &m), AIPROXY_LEDGER_OK);
    /* Near the cap, the next reservation sweeps the dead hold: charged as
     * spent, so it makes no room. */
    CHECK_EQ(reserve(p, who, "next", 50, 100, LATER, &m),
             AIPROXY_LEDGER_OVER_CAP);
    CHECK(month_of(p, who, &row));
    CHECK_EQ(row.spent, 40);
    CHECK_EQ(row.reserved, 20);
    CHECK_EQ(row.requests, 1);
    /* Its late settlement charges nothing more. */
    CHECK_EQ(settle(p, who, "dead", 5, 40, 1, &m), AIPROXY_LEDGER_OK);
    CHECK_EQ(m.spent, 40);
    CHECK(month_of(p, who, &row));
    CHECK_EQ(row.spent, 40);
    CHECK_EQ(row.requests, 1);
    /* The sweep wrote the (estimated) record of what it charged. */
    CHECK_EQ(aiproxy_ledger_daily(ledger, p, MONTH, who, &days, &err),
             AIPROXY_LEDGER_OK);
    CHECK_EQ(days->nelts, 1);
    if (days->nelts == 1) {
        CHECK_EQ(APR_ARRAY_IDX(days, 0, aiproxy_day_row_t).cost, 40);
        CHECK_EQ(APR_ARRAY_IDX(days, 0, aiproxy_day_row_t).requests, 1);
    }
}

/* A course's account ("#id") holds the same request id as its user's:
 * the sweep of the course's hold must not take the user's record id, its
 * late settlement charges nothing more, a course settlement writes no
 * record, and a released hold gives everything back. */
static void day_totals(apr_pool_t *p, const char *who, aiproxy_money_t *cost,
                       apr_int64_t *n)
{
    apr_array_header_t *days;
    const char *err = NULL;
    int i;

    *cost = 0;
    *n = 0;
    CHECK_EQ(aiproxy_ledger_daily(ledger, p, MONTH, who, &days, &err),
             AIPROXY_LEDGER_OK);
    for (i = 0; i < days->nelts; i++) {
        *cost += APR_ARRAY_IDX(days, i, aiproxy_day_row_t).cost;
        *n += APR_ARRAY_IDX(days, i, aiproxy_day_row_t).requests;
    }
}

static void test_course_account(apr_pool_t *p)
{
    const char *who = "course-user@example.org", *course = "#c1";
    aiproxy_month_t m;
    aiproxy_money_t cost;
    apr_int64_t n;
    const char *err = NULL;

    CHECK_EQ(reserve(p, who, "r1", 40, 100, LATER, &m), AIPROXY_LEDGER_OK);
    CHECK_EQ(reserve(p, course, "r1", 40, 100, NOW_MS - 1, &m),
             AIPROXY_LEDGER_OK);
    /* The course's hold outlives its TTL and is swept by the next. */
    CHECK_EQ(reserve(p, course, "r2", 70, 100, LATER, &m),
             AIPROXY_LEDGER_OVER_CAP);
    CHECK_EQ(m.spent, 40);
    CHECK_EQ(settle(p, who, "r1", 5, 40, 1, &m), AIPROXY_LEDGER_OK);
    CHECK_EQ(m.spent, 5);
    CHECK_EQ(settle(p, course, "r1", 5, 40, 1, &m), AIPROXY_LEDGER_OK);
    CHECK_EQ(m.spent, 40);              /* charged by the sweep, once */
    day_totals(p, who, &cost, &n);
    CHECK_EQ(cost, 5);                  /* the user's own record */
    CHECK_EQ(n, 1);
    day_totals(p, course, &cost, &n);
    CHECK_EQ(cost, 40);                 /* the sweep's, under its own id */
    CHECK_EQ(n, 1);
    /* A settlement of a live course hold: charged, no record. */
    CHECK_EQ(reserve(p, course, "r3", 30, 100, LATER, &m), AIPROXY_LEDGER_OK);
    CHECK_EQ(settle(p, course, "r3", 7, 30, 1, &m), AIPROXY_LEDGER_OK);
    CHECK_EQ(m.spent, 47);
    CHECK_EQ(m.reserved, 0);
    day_totals(p, course, &cost, &n);
    CHECK_EQ(cost, 40);
    /* Released: nothing spent, nothing held, nothing counted. */
    CHECK_EQ(reserve(p, course, "r4", 50, 100, LATER, &m), AIPROXY_LEDGER_OK);
    CHECK_EQ(aiproxy_ledger_release(ledger, p, course, MONTH, "r4", 50, &err),
             AIPROXY_LEDGER_OK);
    CHECK_EQ(aiproxy_ledger_release(ledger, p, course, MONTH, "r4", 50, &err),
             AIPROXY_LEDGER_OK);        /* again: nothing more */
    CHECK_EQ(reserve(p, course, "r5", 53, 100, LATER, &m), AIPROXY_LEDGER_OK);
    CHECK_EQ(m.spent, 47);
    CHECK_EQ(m.reserved, 53);
    CHECK_EQ(m.requests, 2);
}

static void test_rate(apr_pool_t *p)
{
    const char *who = "rate@example.org", *err = NULL;
    apr_int64_t reset = 0;
    int left = -1, i;

    for (i = 0; i < 3; i++) {
        CHECK_EQ(aiproxy_ledger_rate(ledger, p, who, 3, 1000, NOW_MS + i,
                                     &left, &reset, &err), AIPROXY_LEDGER_OK);
        CHECK_EQ(left, 2 - i);
    }
    CHECK_EQ(aiproxy_ledger_rate(ledger, p, who, 3, 1000, NOW_MS + 500, &left,
                                 &reset, &err), AIPROXY_LEDGER_OVER_CAP);
    CHECK_EQ(left, 0);
    CHECK_EQ(reset, 500);   /* the oldest, at NOW_MS, leaves at +1000 */
    /* Once the oldest left the window, one more. */
    CHECK_EQ(aiproxy_ledger_rate(ledger, p, who, 3, 1000, NOW_MS + 1000,
                                 &left, &reset, &err), AIPROXY_LEDGER_OK);
    CHECK_EQ(left, 0);
    CHECK_EQ(aiproxy_ledger_rate(ledger, p, who, 3, 1000, NOW_MS + 1000,
                                 &left, &reset, &err),
             AIPROXY_LEDGER_OVER_CAP);
}

static void test_listings(apr_pool_t *p)
{
    apr_array_header_t *rows;
    const char *err = NULL;
    aiproxy_month_t m;
    int i;

    CHECK_EQ(settle(p, "big@list.org", "l1", 900, 0, 0, &m),
             AIPROXY_LEDGER_OK);
    CHECK_EQ(settle(p, "small@list.org", "l2", 100, 0, 0, &m),
             AIPROXY_LEDGER_OK);
    CHECK_EQ(settle(p, "small@list.org", "l3", 100, 0, 0, &m),
             AIPROXY_LEDGER_OK);
    CHECK_EQ(aiproxy_ledger_months(ledger, p, MONTH, NULL, NULL, 0, 100,
                                   &rows, &err), AIPROXY_LEDGER_OK);
    /* By default the most spent leads. */
    CHECK(rows->nelts >= 2);
    for (i = 1; i < rows->nelts; i++)
        CHECK(APR_ARRAY_IDX(rows, i - 1, aiproxy_month_row_t).spent >=
              APR_ARRAY_IDX(rows, i, aiproxy_month_row_t).spent);
    CHECK(!strcmp(APR_ARRAY_IDX(rows, 0, aiproxy_month_row_t).email,
                  "big@list.org"));
    CHECK_EQ(aiproxy_ledger_months(ledger, p, MONTH, NULL, "monthlyRequests",
                                   0, 1, &rows, &err), AIPROXY_LEDGER_OK);
    CHECK_EQ(rows->nelts, 1);
    CHECK(rows->nelts == 1 &&
          APR_ARRAY_IDX(rows, 0, aiproxy_month_row_t).requests >= 2);
    CHECK_EQ(aiproxy_ledger_months(ledger, p, "1999-01", NULL, NULL, 0, 10,
                                   &rows, &err), AIPROXY_LEDGER_OK);
    CHECK_EQ(rows->nelts, 0);
    CHECK_EQ(aiproxy_ledger_daily(ledger, p, MONTH, "small@list.org", &rows,
                                  &err), AIPROXY_LEDGER_OK);
    CHECK_EQ(rows->nelts, 1);
    if (rows->nelts == 1) {
        aiproxy_day_row_t *d = &APR_ARRAY_IDX(rows, 0, aiproxy_day_row_t);

        CHECK(!strcmp(d->day, "2024-05-10"));
        CHECK_EQ(d->cost, 200);
        CHECK_EQ(d->requests, 2);
    }
}

static void test_admin(apr_pool_t *p)
{
    const char *who = "ann@admin.org", *err = NULL;
    apr_array_header_t *rows;
    aiproxy_user_t u;
    apr_int64_t at = 0, deleted = -1;
    int i, seen = 0;

    CHECK_EQ(aiproxy_ledger_user(ledger, p, who, &u, &err), AIPROXY_LEDGER_OK);
    CHECK(!u.has_cap && u.revoked_at == 0);
    /* The domain's cap, until the email has its own. */
    CHECK_EQ(aiproxy_ledger_set_cap(ledger, p, "@admin.org", 1, 500, &err),
             AIPROXY_LEDGER_OK);
    CHECK_EQ(aiproxy_ledger_user(ledger, p, who, &u, &err), AIPROXY_LEDGER_OK);
    CHECK(u.has_cap && u.cap == 500);
    CHECK_EQ(aiproxy_ledger_set_cap(ledger, p, who, 1, 70, &err),
             AIPROXY_LEDGER_OK);
    CHECK_EQ(aiproxy_ledger_user(ledger, p, who, &u, &err), AIPROXY_LEDGER_OK);
    CHECK(u.has_cap && u.cap == 70);
    CHECK_EQ(aiproxy_ledger_set_cap(ledger, p, who, 0, 0, &err),
             AIPROXY_LEDGER_OK);
    CHECK_EQ(aiproxy_ledger_user(ledger, p, who, &u, &err), AIPROXY_LEDGER_OK);
    CHECK(u.has_cap && u.cap == 500);
    /* Revocation: now, then at least one second after the last. */
    CHECK_EQ(aiproxy_ledger_revoke(ledger, p, who, 1000, &at, &err),
             AIPROXY_LEDGER_OK);
    CHECK_EQ(at, 1000);
    CHECK_EQ(aiproxy_ledger_revoke(ledger, p, who, 1000, &at, &err),
             AIPROXY_LEDGER_OK);
    CHECK_EQ(at, 1001);
    CHECK_EQ(aiproxy_ledger_revoke(ledger, p, "new@admin.org", 2000, &at,
                                   &err), AIPROXY_LEDGER_OK);
    CHECK_EQ(at, 2000);
    CHECK_EQ(aiproxy_ledger_user(ledger, p, who, &u, &err), AIPROXY_LEDGER_OK);
    CHECK_EQ(u.revoked_at, 1001);
    CHECK_EQ(aiproxy_ledger_users(ledger, p, &rows, &err), AIPROXY_LEDGER_OK);
    for (i = 0; i < rows->nelts; i++) {
        aiproxy_user_row_t *r = &APR_ARRAY_IDX(rows, i, aiproxy_user_row_t);

        if (!strcmp(r->who, who)) {
            seen++;
            CHECK(!r->has_cap && r->revoked_at == 1001);
        }
        if (!strcmp(r->who, "@admin.org")) {
            seen++;
            CHECK(r->has_cap && r->cap == 500);
        }
        if (i)
            CHECK(strcmp(APR_ARRAY_IDX(rows, i - 1, aiproxy_user_row_t).who,
                         r->who) < 0);
    }
    CHECK_EQ(seen, 2);
    /* Purge: records before a time go, the months stay. */
    CHECK_EQ(aiproxy_ledger_purge_records(ledger, p, NOW_MS - 1, &deleted,
                                          &err), AIPROXY_LEDGER_OK);
    CHECK_EQ(deleted, 0);
    CHECK_EQ(aiproxy_ledger_purge_records(ledger, p, NOW_MS + 1, &deleted,
                                          &err), AIPROXY_LEDGER_OK);
    CHECK(deleted > 0);
    CHECK_EQ(aiproxy_ledger_daily(ledger, p, MONTH, NULL, &rows, &err),
             AIPROXY_LEDGER_OK);
    CHECK_EQ(rows->nelts, 0);
    CHECK_EQ(aiproxy_ledger_months(ledger, p, MONTH, "big@list.org", NULL, 0,
                                   10, &rows, &err), AIPROXY_LEDGER_OK);
    CHECK_EQ(rows->nelts, 1);
}

/* Settlement through the writer thread: the record arrives a moment
 * later, and the pending count returns to zero. */
static void test_writer(apr_pool_t *p)
{
    apr_pool_t *wp;
    apr_uint32_t pending = 0;
    apr_array_header_t *days;
    const char *err = NULL;
    aiproxy_ledger_t *l2;
    aiproxy_ledger_t *saved = ledger;
    aiproxy_month_t m;
    int i;

    apr_pool_create(&wp, p);
    l2 = aiproxy_ledger_open(wp, uri, db, 3000, &err);
    CHECK(l2 != NULL);
    if (!l2)
        return;
    CHECK(aiproxy_ledger_start_writer(l2, wp, &pending, 0) == NULL);
    ledger = l2;
    for (i = 0; i < 5; i++)
        CHECK_EQ(settle(p, "writer@example.org",
                        apr_psprintf(p, "w%d", i), 3, 0, 0, &m),
                 AIPROXY_LEDGER_OK);
    ledger = saved;
    for (i = 0; i < 100 && apr_atomic_read32(&pending); i++)
        apr_sleep(apr_time_from_msec(20));
    CHECK_EQ(apr_atomic_read32(&pending), 0);
    apr_pool_destroy(wp);   /* stops the writer after a last flush */
    CHECK_EQ(aiproxy_ledger_daily(ledger, p, MONTH, "writer@example.org",
                                  &days, &err), AIPROXY_LEDGER_OK);
    CHECK_EQ(days->nelts, 1);
    if (days->nelts == 1)
        CHECK_EQ(APR_ARRAY_IDX(days, 0, aiproxy_day_row_t).requests, 5);
}

/* The one retry rule: once more after a connection-level failure only. */
typedef struct {
    int calls;
    int fail;               /* tries that fail */
    uint32_t domain;        /* with this error domain */
} fake_op_t;

static int fake_op(void *baton, bson_error_t *error)
{
    fake_op_t *o = baton;

    if (o->calls++ < o->fail) {
        bson_set_error(error, o->domain, 1, "fake failure");
        return 0;
    }
    return 1;
}

static void test_retry(apr_pool_t *p)
{
    fake_op_t ok = { 0, 0, 0 }, stale = { 0, 1, MONGOC_ERROR_STREAM },
              dead = { 0, 5, MONGOC_ERROR_STREAM },
              refused = { 0, 1, MONGOC_ERROR_SERVER };
    bson_error_t error;

    (void)p;
    CHECK(aiproxy_ledger_retry(fake_op, &ok, &error));
    CHECK_EQ(ok.calls, 1);
    CHECK(aiproxy_ledger_retry(fake_op, &stale, &error));
    CHECK_EQ(stale.calls, 2);
    CHECK(!aiproxy_ledger_retry(fake_op, &dead, &error));
    CHECK_EQ(dead.calls, 2);
    CHECK(!aiproxy_ledger_retry(fake_op, &refused, &error));
    CHECK_EQ(refused.calls, 1);
    CHECK_EQ(error.domain, MONGOC_ERROR_SERVER);
}

/* A store that is not there: DOWN, quickly, with a reason. */
static void test_down(apr_pool_t *p)
{
    const char *err = NULL;
    aiproxy_ledger_t *dead = aiproxy_ledger_open(
        p, "mongodb://127.0.0.1:1/?serverSelectionTryOnce=true", db, 300,
        &err);
    aiproxy_month_t m;

    CHECK(dead != NULL);
    if (!dead)
        return;
    CHECK_EQ(aiproxy_ledger_ping(dead, p, &err), AIPROXY_LEDGER_DOWN);
    CHECK(err && *err);
    err = NULL;
    CHECK_EQ(aiproxy_ledger_reserve(dead, p, "x@y.org", MONTH, "d1", 1, 10,
                                    NOW_MS, LATER, "", "", NULL, &m, &err),
             AIPROXY_LEDGER_DOWN);
    CHECK(err && *err);
    CHECK(aiproxy_ledger_check_uri(p, "not a uri") != NULL);
    CHECK(aiproxy_ledger_check_uri(p, uri) == NULL);
}

int main(int argc, char **argv)
{
    apr_pool_t *p, *tp;
    const char *err = NULL;
    struct {
        const char *name;
        void (*fn)(apr_pool_t *);
    } tests[] = {
        { "retry", test_retry },
        { "reserve_cap_exact", test_reserve_cap_exact },
        { "reserve_concurrent", test_reserve_concurrent },
        { "settle_once", test_settle_once },
        { "sweep", test_sweep },
        { "course_account", test_course_account },
        { "lease_write_once", test_lease_write_once },
        { "lease_sweep", test_lease_sweep },
        { "lease_write_many", test_lease_write_many },
        { "rate", test_rate },
        { "listings", test_listings },
        { "admin", test_admin },
        { "writer", test_writer },
        { "down", test_down },
    };
    apr_size_t i;

    uri = argc > 1 ? argv[1] : getenv("MONGODB_URI");
    if (!uri || !*uri) {
        fprintf(stderr, "usage: ledger-tests MONGODB_URI [DATABASE]\n");
        return 2;
    }
    apr_initialize();
    apr_pool_create(&p, NULL);
    db = argc > 2 ? argv[2]
                  : apr_psprintf(p, "ledger_c_%ld_%" APR_INT64_T_FMT,
                                 (long)getpid(), (apr_int64_t)apr_time_now());
    aiproxy_ledger_driver_init(driver_log);
    ledger = aiproxy_ledger_open(p, uri, db, 3000, &err);
    if (!ledger || aiproxy_ledger_ping(ledger, p, &err) != AIPROXY_LEDGER_OK) {
        fprintf(stderr, "no store at %s: %s\n", uri, err ? err : "?");
        return 2;
    }
    for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
        int before = failed;

        apr_pool_create(&tp, p);
        tests[i].fn(tp);
        apr_pool_destroy(tp);
        printf("%s %s\n", failed == before ? "ok  " : "FAIL", tests[i].name);
    }
    apr_pool_destroy(p);    /* the client pools go before the driver */
    aiproxy_ledger_driver_cleanup();
    apr_terminate();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
