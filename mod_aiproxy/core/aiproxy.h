/* Types shared by every part of mod_aiproxy. APR only: no httpd headers, so
 * the pure parts (token, cost, inspection) link into unit tests and fuzzers. */
#ifndef AIPROXY_H
#define AIPROXY_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_hash.h>

/* Money is an integer count of pico-dollars (1e-12 USD): a price of
 * $X per 1M tokens is exactly X*1e6 pico-dollars per token, so list prices
 * with up to six decimals multiply into costs without rounding. int64 holds
 * 9.2 million dollars, far more than one user's month. */
typedef apr_int64_t aiproxy_money_t;
#define AIPROXY_PICO_PER_USD APR_INT64_C(1000000000000)

/* Our own log tags: the AH prefix belongs to httpd. */
#define AIPLOGNO(n) "AIP" #n ": "

#endif
