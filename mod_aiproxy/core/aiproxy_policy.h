/* Rules the module and aiproxy-admin must apply alike, each defined once
 * here: which cap applies to a user. Pure: APR only. */
#ifndef AIPROXY_POLICY_H
#define AIPROXY_POLICY_H

#include <apr_hash.h>

#include "aiproxy.h"
#include "aiproxy_ledger.h"

/* The monthly cap that applies to a user whose settings are u (the email's
 * cap, else its @domain's, as aiproxy_ledger_user resolves them), else
 * dflt (AIProxyMonthlyCap). */
aiproxy_money_t aiproxy_policy_cap(const aiproxy_user_t *u,
                                   aiproxy_money_t dflt);

/* The settings of every user and domain (aiproxy_ledger_users rows), by
 * who, for aiproxy_policy_user_in: many users' caps from one listing. */
apr_hash_t *aiproxy_policy_settings(apr_pool_t *p,
                                    const apr_array_header_t *rows);

/* A user's settings from that table, as aiproxy_ledger_user gives them:
 * the email's cap, else its @domain's; the email's revocation. */
void aiproxy_policy_user_in(apr_hash_t *settings, const char *email,
                            aiproxy_user_t *out);

/* The month a time falls in, UTC: "YYYY-MM", the ledger's month. */
const char *aiproxy_month_of(apr_pool_t *p, apr_time_t t);

/* A time in ms since the epoch as ISO 8601, UTC, with milliseconds. */
const char *aiproxy_iso_time(apr_pool_t *p, apr_int64_t ms);

#endif
