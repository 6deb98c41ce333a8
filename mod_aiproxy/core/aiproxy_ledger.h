/* The ledger: the one file that talks to MongoDB (libmongoc). Every money
 * change is one atomic single-document update, so concurrent requests in
 * any number of processes and hosts can neither overspend nor lose a
 * charge. */
#ifndef AIPROXY_LEDGER_H
#define AIPROXY_LEDGER_H

#include "aiproxy.h"
#include "aiproxy_cost.h"

typedef struct aiproxy_ledger aiproxy_ledger_t;

typedef enum {
    AIPROXY_LEDGER_OK = 0,
    AIPROXY_LEDGER_OVER_CAP,
    AIPROXY_LEDGER_NOT_FOUND,
    AIPROXY_LEDGER_DOWN
} aiproxy_ledger_rc_t;

/* Receives the driver's own log lines; level is syslog-like (3 error,
 * 4 warning, 6 info, 7 debug). */
typedef void aiproxy_ledger_log_fn(int level, const char *domain,
                                   const char *message);

/* Once per process, after fork. */
void aiproxy_ledger_driver_init(aiproxy_ledger_log_fn *log);
/* Called with the time each store round trip took (a retried operation is
 * two), from any thread: the module's latency histogram. NULL: none. */
typedef void aiproxy_ledger_timer_fn(apr_interval_time_t took);
void aiproxy_ledger_set_timer(aiproxy_ledger_timer_fn *fn);
void aiproxy_ledger_driver_cleanup(void);

/* A connection pool for this process, destroyed with p. The timeout bounds
 * server selection and waiting for a pooled connection, so a dead store
 * fails a request quickly instead of holding a worker for 30 s. */
aiproxy_ledger_t *aiproxy_ledger_open(apr_pool_t *p, const char *uri,
                                      const char *db, int timeout_ms,
                                      const char **err);

/* Moves request records off the request path: from now on settlement
 * queues them for a thread of this process that inserts them in batches,
 * and *pending (shared memory) counts those not yet written. With
 * retention_days > 0 the thread also deletes records older than that, at
 * its start and hourly. Stopped, after a last flush, when p is destroyed.
 * Without it records are written inline (the CLI). NULL, or the reason it
 * could not start. */
const char *aiproxy_ledger_start_writer(aiproxy_ledger_t *l, apr_pool_t *p,
                                        apr_uint32_t *pending,
                                        int retention_days);

/* Deletes the request records (the detail) older than before_ms; the
 * months, which hold the money, are untouched. *deleted: how many. */
aiproxy_ledger_rc_t aiproxy_ledger_purge_records(aiproxy_ledger_t *l,
                                                 apr_pool_t *p,
                                                 apr_int64_t before_ms,
                                                 apr_int64_t *deleted,
                                                 const char **err);

/* Checks a URI's syntax without connecting (for start-up checks). */
const char *aiproxy_ledger_check_uri(apr_pool_t *p, const char *uri);

typedef struct {
    int has_cap;
    int cap_own;             /* the cap is the email's own, not its domain's */
    aiproxy_money_t cap;
    apr_int64_t revoked_at;  /* seconds; 0 when never revoked */
} aiproxy_user_t;

/* Settings of a user: cap from the email's document, else its @domain's;
 * revocation from the email's. */
aiproxy_ledger_rc_t aiproxy_ledger_user(aiproxy_ledger_t *l, apr_pool_t *p,
                                        const char *email,
                                        aiproxy_user_t *out,
                                        const char **err);

typedef struct {
    aiproxy_money_t spent;
    aiproxy_money_t reserved;
    apr_int64_t requests;
} aiproxy_month_t;

/* Reserves amount against cap for the request id, atomically. The hold
 * expires at expires_ms; a later reservation that finds the month near its
 * cap then charges it as spent (its request may have done the work before
 * its child died), with an estimated request record naming endpoint and
 * model. On OVER_CAP, *m holds the month as it stands. */
aiproxy_ledger_rc_t aiproxy_ledger_reserve(aiproxy_ledger_t *l, apr_pool_t *p,
        const char *email, const char *month, const char *id,
        aiproxy_money_t amount, aiproxy_money_t cap,
        apr_int64_t now_ms, apr_int64_t expires_ms,
        const char *endpoint, const char *model, const char *course,
        aiproxy_month_t *m, const char **err);

typedef struct {
    const char *id, *email, *month, *endpoint, *model, *provider;
    const char *course;         /* the course also charged; NULL: none */
    apr_int64_t time_ms;
    aiproxy_usage_t usage;
    aiproxy_money_t cost;
    aiproxy_money_t reserved;
    int status;
    int estimated;  /* cost estimated because usage never came */
    int held;       /* settles a hold made by aiproxy_ledger_reserve */
} aiproxy_record_t;

/* What a settled request adds to its month's request count: 1 when it was
 * charged or answered (a cache hit costs $0 yet counts), 0 for a failure
 * that cost the user nothing. */
int aiproxy_ledger_counts(const aiproxy_record_t *r);

/* Charges the real cost, releases the rest of the hold and writes (or,
 * with a writer, queues) the request document (not for a course's account,
 * "#id": its user's settlement records the request). Exactly once per id, even
 * when a reply is lost and the update is sent again: the month keeps the
 * ids it settled last, and a second settlement of one of them (or of a
 * hold already swept and charged) charges nothing and returns the month as
 * it stands. Without a hold (a cache hit) the cost is charged directly. */
aiproxy_ledger_rc_t aiproxy_ledger_settle(aiproxy_ledger_t *l, apr_pool_t *p,
                                          const aiproxy_record_t *rec,
                                          aiproxy_month_t *m,
                                          const char **err);

/* Gives back a hold of amount unused: the request never went out (its
 * course refused it). Charges nothing, counts nothing, writes no record. */
aiproxy_ledger_rc_t aiproxy_ledger_release(aiproxy_ledger_t *l, apr_pool_t *p,
                                           const char *email,
                                           const char *month, const char *id,
                                           aiproxy_money_t amount,
                                           const char **err);

/* ---- Budget leases (aiproxy_ledger_lease.c) ----
 * A host's lease is a hold in the month document named by the host (and
 * its start), {l: true, a: amount, s: sequence, f/n: ceilings and requests
 * in flight at its last write, x: expiry, h: host}, counted in load and
 * reserved like any hold. The host admits requests from it in shared
 * memory and writes what they spent in batches. */
typedef struct {
    const char *email, *month;
    const char *lease;          /* the hold's name */
    const char *host;           /* for people reading the store */
    apr_int64_t seq;            /* the hold's s as last written; 0: no hold */
    aiproxy_money_t spent;      /* settled on this host since that write */
    aiproxy_money_t spent_unbacked; /* the part of it no hold covers (its
                                       hold was swept): charged anew */
    apr_int64_t requests;       /* counted since */
    aiproxy_money_t grow;       /* > 0: taken under cap; < 0: given back */
    aiproxy_money_t cap;
    aiproxy_money_t inflight;   /* ceilings in flight now */
    apr_int64_t inflight_n;
    apr_int64_t now_ms, expires_ms;
} aiproxy_lease_op_t;

/* One write of a lease: moves op->spent from reserved into spent (load
 * unchanged), adds op->requests, grows (only if load + grow stays within
 * cap) or shrinks the hold, renews its expiry, and makes its sequence
 * seq + 1. Exactly once: it applies only where the hold's sequence is
 * seq, so a try whose reply was lost is recognised by the next (s is
 * already seq + 1) and not applied again. OK: *m (and *load) is the month
 * after it. OVER_CAP: the growth does not fit (expired holds were swept on
 * the way, and did not make room); nothing was written and *m, *load are
 * the month as it stands. NOT_FOUND: the hold is gone (it expired and was
 * swept) though seq > 0; nothing written. */
aiproxy_ledger_rc_t aiproxy_ledger_lease_write(aiproxy_ledger_t *l,
                                               apr_pool_t *p,
                                               const aiproxy_lease_op_t *op,
                                               aiproxy_month_t *m,
                                               aiproxy_money_t *load,
                                               const char **err);

/* Several writes (of different months) in one round trip, as an unordered
 * bulk of conditional updates; when every one matched, one more round trip
 * reads the months back. Otherwise each is sent again on its own (which
 * recognises a write that had landed), so rcs[i], months[i] and loads[i]
 * mean what aiproxy_ledger_lease_write's would. */
void aiproxy_ledger_lease_write_many(aiproxy_ledger_t *l, apr_pool_t *p,
                                     const aiproxy_lease_op_t *ops,
                                     apr_size_t n, aiproxy_ledger_rc_t *rcs,
                                     aiproxy_month_t *months,
                                     aiproxy_money_t *loads,
                                     const char **errs);

/* Removes a lease's hold once it holds nothing (a == 0) at sequence seq. */
aiproxy_ledger_rc_t aiproxy_ledger_lease_drop(aiproxy_ledger_t *l,
                                              apr_pool_t *p, const char *email,
                                              const char *month,
                                              const char *lease,
                                              apr_int64_t seq,
                                              const char **err);

/* Writes (or queues for the writer) the record of a request settled on a
 * lease: its money reaches the month with the lease's next write. */
aiproxy_ledger_rc_t aiproxy_ledger_put_record(aiproxy_ledger_t *l,
                                              apr_pool_t *p,
                                              const aiproxy_record_t *rec,
                                              const char **err);

typedef struct {
    const char *email, *month;
    aiproxy_money_t spent, reserved;
    apr_int64_t requests;
} aiproxy_month_row_t;

/* Month documents, newest first or by sort (email, month, spent, requests;
 * descending). month and email may be NULL; without email, users only
 * (no course account "#id"). */
aiproxy_ledger_rc_t aiproxy_ledger_months(aiproxy_ledger_t *l, apr_pool_t *p,
                                          const char *month,
                                          const char *email,
                                          const char *sort,
                                          apr_int64_t skip,
                                          apr_int64_t limit,
                                          apr_array_header_t **rows,
                                          const char **err);

/* A sliding window of `limit` requests per window_ms for one user: OK
 * (counted), OVER_CAP (refused) or DOWN. *remaining is what is left in the
 * window, *reset_ms when the oldest counted request leaves it. */
aiproxy_ledger_rc_t aiproxy_ledger_rate(aiproxy_ledger_t *l, apr_pool_t *p,
                                        const char *email, int limit,
                                        apr_int64_t window_ms,
                                        apr_int64_t now_ms, int *remaining,
                                        apr_int64_t *reset_ms,
                                        const char **err);

/* Round trip to the store; OK or DOWN. */
aiproxy_ledger_rc_t aiproxy_ledger_ping(aiproxy_ledger_t *l, apr_pool_t *p,
                                        const char **err);

/* ---- Administration: the admin API and the aiproxy-admin command. ---- */

/* Sets (has_cap) or clears the monthly cap of an email or "@domain". */
aiproxy_ledger_rc_t aiproxy_ledger_set_cap(aiproxy_ledger_t *l, apr_pool_t *p,
                                           const char *who, int has_cap,
                                           aiproxy_money_t cap,
                                           const char **err);

/* Refuses every token of email issued so far: revoked_at becomes
 * max(now, previous revoked_at + 1), since a token issued in the second of
 * an earlier revocation carries iat = that revocation + 1. Atomic against
 * concurrent revocations. now in seconds; the new value in *revoked_at. */
aiproxy_ledger_rc_t aiproxy_ledger_revoke(aiproxy_ledger_t *l, apr_pool_t *p,
                                          const char *email, apr_int64_t now,
                                          apr_int64_t *revoked_at,
                                          const char **err);

typedef struct {
    const char *who;            /* email or "@domain" */
    int has_cap;
    aiproxy_money_t cap;
    apr_int64_t revoked_at;     /* 0: never */
} aiproxy_user_row_t;

/* Every users document, ordered by _id. */
aiproxy_ledger_rc_t aiproxy_ledger_users(aiproxy_ledger_t *l, apr_pool_t *p,
                                         apr_array_header_t **rows,
                                         const char **err);

typedef struct {
    const char *day;            /* YYYY-MM-DD, UTC */
    aiproxy_money_t cost;
    apr_int64_t requests;
} aiproxy_day_row_t;

/* Cost and requests per UTC day of a month, from the request records, in
 * day order; email NULL for everyone. Days without requests are absent. */
aiproxy_ledger_rc_t aiproxy_ledger_daily(aiproxy_ledger_t *l, apr_pool_t *p,
                                         const char *month, const char *email,
                                         apr_array_header_t **rows,
                                         const char **err);

#endif
