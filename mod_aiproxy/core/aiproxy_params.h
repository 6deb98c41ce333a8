/* Parameters of the admin API, /usage and /token: query strings and form
 * bodies, months, emails, counts and caps. Pure: unit-tested and fuzzed. */
#ifndef AIPROXY_PARAMS_H
#define AIPROXY_PARAMS_H

#include <apr_tables.h>

#include "aiproxy.h"
#include "aiproxy_json.h"

/* name=value pairs joined by '&', with '+' and %XX decoded. A pair with a
 * bad escape, or one that decodes to a NUL, is left out. */
apr_table_t *aiproxy_params_parse(apr_pool_t *p, const char *s);

/* YYYY-MM with a month from 01 to 12. */
int aiproxy_params_month(const char *m);

/* An email (one '@', something after it), or "@domain" when domain_ok;
 * at most 320 bytes, none of them blank, control, '"', '|', '\', '$'
 * (the store's keys and operators), ',', '<', '>' (a CSV cell, a chat
 * message's markup); not beginning with '#' (the ledger accounts of
 * courses). The one check of every email the gateway takes: tokens,
 * sign-ins, admin calls. */
int aiproxy_params_who(const char *w, int domain_ok);

/* s in lower case (ASCII). */
char *aiproxy_params_lower(apr_pool_t *p, const char *s);

/* The `email` of a query (/usage, /admin/api/usage and daily): an email
 * address, lower-cased into *out as the store keeps it; 0 for anything
 * else, empty included (a 400). */
int aiproxy_params_email(apr_pool_t *p, const char *v, const char **out);

/* A decimal count within [min, max]: 1 and *out, else 0. */
int aiproxy_params_count(const char *v, apr_int64_t min, apr_int64_t max,
                         apr_int64_t *out);

/* A cap-setting body {"who": EMAIL|@DOMAIN, "cap": "USD"|null}: NULL, with
 * *who lower-cased and *has_cap 0 for null (clear); or the message of a
 * 400. */
const char *aiproxy_params_cap(apr_pool_t *p, const aiproxy_json_t *body,
                               const char **who, int *has_cap,
                               aiproxy_money_t *cap);

#endif
