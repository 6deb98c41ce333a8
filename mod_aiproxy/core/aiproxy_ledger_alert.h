/* The alerts collection: one document per account, month and threshold
 * crossed ("account|YYYY-MM|pct"), inserted once whichever host or child
 * sees the crossing first, then claimed and delivered by one of them
 * (aiproxy_alert.c, in the module). */
#ifndef AIPROXY_LEDGER_ALERT_H
#define AIPROXY_LEDGER_ALERT_H

#include "aiproxy_ledger.h"

typedef struct {
    const char *id;             /* "account|YYYY-MM|pct" */
    const char *account;        /* an email, or "#<course id>" */
    const char *kind;           /* "user" or "course" */
    const char *course;         /* the course's id; NULL for a user */
    const char *month;
    int pct;
    aiproxy_money_t spent, cap;
    apr_int64_t created_ms;
    apr_int64_t attempts;
    apr_int64_t claim_ms;       /* next_try as claimed: the claim's token */
} aiproxy_alert_t;

/* The accounts (users and courses) of month that spent anything: rows of
 * aiproxy_month_row_t (email is the account). */
aiproxy_ledger_rc_t aiproxy_ledger_alert_months(aiproxy_ledger_t *l,
                                                apr_pool_t *p,
                                                const char *month,
                                                apr_array_header_t **rows,
                                                const char **err);

/* Inserts the alert unless one with its id exists (then *created is 0):
 * so each threshold is alerted once per month, across hosts. OK or DOWN. */
aiproxy_ledger_rc_t aiproxy_ledger_alert_add(aiproxy_ledger_t *l,
                                             apr_pool_t *p,
                                             const aiproxy_alert_t *a,
                                             int *created, const char **err);

/* Claims one alert due for delivery (unsent, not given up, next_try <=
 * now_ms) by moving its next_try to now_ms + claim_ms: no other sender
 * takes it until then, and a sender that died is replaced then. OK with
 * *out filled, NOT_FOUND when none is due, or DOWN. */
aiproxy_ledger_rc_t aiproxy_ledger_alert_claim(aiproxy_ledger_t *l,
                                               apr_pool_t *p,
                                               apr_int64_t now_ms,
                                               apr_int64_t claim_ms,
                                               aiproxy_alert_t *out,
                                               const char **err);

/* The webhook took the alert. */
aiproxy_ledger_rc_t aiproxy_ledger_alert_sent(aiproxy_ledger_t *l,
                                              apr_pool_t *p, const char *id,
                                              apr_int64_t now_ms,
                                              const char **err);

/* The webhook did not take a claimed alert: attempts + 1, next_try at
 * next_ms, last_error why; given_up: no more tries. Only while the claim
 * (a->claim_ms) is still this sender's. */
aiproxy_ledger_rc_t aiproxy_ledger_alert_failed(aiproxy_ledger_t *l,
                                                apr_pool_t *p,
                                                const aiproxy_alert_t *a,
                                                apr_int64_t next_ms,
                                                const char *why, int given_up,
                                                const char **err);

#endif
