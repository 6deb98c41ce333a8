/* Courses: a named budget shared by its members. What the module, the admin
 * API and aiproxy-admin must agree on, defined once. Pure: APR only.
 *
 * A course's month is kept in `months` like a user's, under the account
 * "#<id>" (aiproxy_course_account), so reservations, settlements, sweeps
 * and leases hold a course budget exactly as they hold a user's cap. */
#ifndef AIPROXY_COURSE_H
#define AIPROXY_COURSE_H

#include <apr_pools.h>
#include <apr_tables.h>

#include "aiproxy.h"

#define AIPROXY_COURSE_ID_MAX 32

/* A course id: 1 to 32 of [a-z0-9_-], starting with a letter or digit. */
int aiproxy_course_id_valid(const char *id);

/* The ledger account of a course's money: "#<id>". */
const char *aiproxy_course_account(apr_pool_t *p, const char *id);

/* A ledger account that is a course's, not a user's. */
int aiproxy_course_is_account(const char *account);

typedef struct {
    const char *id, *name;
    aiproxy_money_t budget;         /* monthly, for all members together */
    int has_member_cap;
    aiproxy_money_t member_cap;     /* a member's default monthly cap */
    apr_array_header_t *models;     /* const char *; empty: the location's */
    apr_array_header_t *endpoints;  /* const char *; empty: the location's */
    apr_array_header_t *instructors;/* const char * emails */
    apr_array_header_t *alerts;     /* int percentages; empty: the site's */
} aiproxy_course_t;

/* A course's settings as the members of a JSON object, without braces,
 * money as USD strings: what audit entries keep, whoever made them, and
 * the start of a listing's row. */
const char *aiproxy_course_json_fields(apr_pool_t *p,
                                       const aiproxy_course_t *c);

/* Whether a name is in a course's list; an empty list allows any. */
int aiproxy_course_allows(const apr_array_header_t *list, const char *name);

#endif
