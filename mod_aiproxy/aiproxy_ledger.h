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
void aiproxy_ledger_driver_cleanup(void);

/* A connection pool for this process, destroyed with p. The timeout bounds
 * server selection and waiting for a pooled connection, so a dead store
 * fails a request quickly instead of holding a worker for 30 s. */
aiproxy_ledger_t *aiproxy_ledger_open(apr_pool_t *p, const char *uri,
                                      const char *db, int timeout_ms,
                                      const char **err);

/* Checks a URI's syntax without connecting (for start-up checks). */
const char *aiproxy_ledger_check_uri(apr_pool_t *p, const char *uri);

typedef struct {
    int has_cap;
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

/* Reserves amount against cap for the request id, atomically; the hold
 * expires at expires_ms so a crashed child cannot leak it. On OVER_CAP,
 * *m holds the month as it stands. */
aiproxy_ledger_rc_t aiproxy_ledger_reserve(aiproxy_ledger_t *l, apr_pool_t *p,
                                           const char *email,
                                           const char *month,
                                           const char *id,
                                           aiproxy_money_t amount,
                                           aiproxy_money_t cap,
                                           apr_int64_t now_ms,
                                           apr_int64_t expires_ms,
                                           aiproxy_month_t *m,
                                           const char **err);

typedef struct {
    const char *id, *email, *month, *endpoint, *model, *provider;
    apr_int64_t time_ms;
    aiproxy_usage_t usage;
    aiproxy_money_t cost;
    aiproxy_money_t reserved;
    int status;
    int estimated;  /* cost estimated because usage never came */
} aiproxy_record_t;

/* Charges the real cost, releases the rest of the hold and writes the
 * request document. Exactly once per id: a second call finds no hold and
 * charges nothing. */
aiproxy_ledger_rc_t aiproxy_ledger_settle(aiproxy_ledger_t *l, apr_pool_t *p,
                                          const aiproxy_record_t *rec,
                                          aiproxy_month_t *m,
                                          const char **err);

typedef struct {
    const char *email, *month;
    aiproxy_money_t spent, reserved;
    apr_int64_t requests;
} aiproxy_month_row_t;

/* Month documents, newest first or by sort (email, month, spent, requests;
 * descending). month and email may be NULL. */
aiproxy_ledger_rc_t aiproxy_ledger_months(aiproxy_ledger_t *l, apr_pool_t *p,
                                          const char *month,
                                          const char *email,
                                          const char *sort,
                                          apr_int64_t skip,
                                          apr_int64_t limit,
                                          apr_array_header_t **rows,
                                          const char **err);

/* Round trip to the store; OK or DOWN. */
aiproxy_ledger_rc_t aiproxy_ledger_ping(aiproxy_ledger_t *l, apr_pool_t *p,
                                        const char **err);

#endif
