/* Courses and enrolments as the admin API and aiproxy-admin write and list
 * them; the request path's reads are in aiproxy_ledger_course.h. Emails
 * and @domains arrive lower-cased. */
#ifndef AIPROXY_LEDGER_COURSE_ADMIN_H
#define AIPROXY_LEDGER_COURSE_ADMIN_H

#include "aiproxy_ledger.h"
#include "aiproxy_course.h"

/* Creates or replaces the course c->id (a replaced course keeps its
 * `created`); *existed says which. */
aiproxy_ledger_rc_t aiproxy_ledger_course_put(aiproxy_ledger_t *l,
                                              apr_pool_t *p,
                                              const aiproxy_course_t *c,
                                              int *existed, const char **err);

/* Deletes the course and its enrolments (its months stay, as money
 * history): OK, NOT_FOUND or DOWN; *members: enrolments removed. */
aiproxy_ledger_rc_t aiproxy_ledger_course_delete(aiproxy_ledger_t *l,
                                                 apr_pool_t *p, const char *id,
                                                 apr_int64_t *members,
                                                 const char **err);

/* Courses by id (aiproxy_course_t), all of them or, with instructor set,
 * those whose `instructors` list it (one query, on the instructors
 * index). */
aiproxy_ledger_rc_t aiproxy_ledger_courses(aiproxy_ledger_t *l, apr_pool_t *p,
                                           const char *instructor,
                                           apr_array_header_t **rows,
                                           const char **err);

/* The courses (aiproxy_course_t) among ids (const char *), by id. */
aiproxy_ledger_rc_t aiproxy_ledger_courses_in(aiproxy_ledger_t *l,
                                              apr_pool_t *p,
                                              const apr_array_header_t *ids,
                                              apr_array_header_t **rows,
                                              const char **err);

/* The ids (const char *) of the courses email is a member of, by its own
 * enrolment or its @domain's, in id order. */
aiproxy_ledger_rc_t aiproxy_ledger_member_courses(aiproxy_ledger_t *l,
                                                  apr_pool_t *p,
                                                  const char *email,
                                                  apr_array_header_t **ids,
                                                  const char **err);

/* Whether email is a member (own or @domain enrolment) of any of the
 * courses (const char * ids): *course is the first such, or NULL. */
aiproxy_ledger_rc_t aiproxy_ledger_member_of_any(aiproxy_ledger_t *l,
                                                 apr_pool_t *p,
                                                 const apr_array_header_t *c,
                                                 const char *email,
                                                 const char **course,
                                                 const char **err);

/* Enrols each of whos (const char *: email or "@domain") in course; added[i]
 * is 1 when whos[i] was new, 0 when it was enrolled already. */
aiproxy_ledger_rc_t aiproxy_ledger_members_add(aiproxy_ledger_t *l,
                                               apr_pool_t *p,
                                               const char *course,
                                               const apr_array_header_t *whos,
                                               const char *added_by,
                                               apr_int64_t now_ms,
                                               int *added, const char **err);

/* Removes an enrolment: OK, NOT_FOUND (there was none) or DOWN. */
aiproxy_ledger_rc_t aiproxy_ledger_member_remove(aiproxy_ledger_t *l,
                                                 apr_pool_t *p,
                                                 const char *course,
                                                 const char *who,
                                                 const char **err);

typedef struct {
    const char *who;            /* email or "@domain" */
    int has_cap;
    aiproxy_money_t cap;        /* the enrolment's cap */
    apr_int64_t added_ms;
    const char *added_by;
} aiproxy_member_row_t;

/* A course's enrolments by who, paged; *total counts them all. */
aiproxy_ledger_rc_t aiproxy_ledger_members(aiproxy_ledger_t *l, apr_pool_t *p,
                                           const char *course,
                                           apr_int64_t skip, apr_int64_t limit,
                                           apr_array_header_t **rows,
                                           apr_int64_t *total,
                                           const char **err);

/* Sets (has_cap) or clears the cap of an existing enrolment, giving the
 * one before: OK, NOT_FOUND (no such enrolment) or DOWN. */
aiproxy_ledger_rc_t aiproxy_ledger_member_cap(aiproxy_ledger_t *l,
                                              apr_pool_t *p,
                                              const char *course,
                                              const char *who, int has_cap,
                                              aiproxy_money_t cap,
                                              int *had_cap,
                                              aiproxy_money_t *old,
                                              const char **err);

/* The month documents of these accounts (const char *), by account
 * (aiproxy_month_t *); an account without one is absent. */
aiproxy_ledger_rc_t aiproxy_ledger_months_of(aiproxy_ledger_t *l,
                                             apr_pool_t *p, const char *month,
                                             const apr_array_header_t *accts,
                                             apr_hash_t **out,
                                             const char **err);

/* Sets an account's spent for the month to 0 (holds untouched, so load
 * becomes reserved), atomically against concurrent settlements. *before
 * and *after: the month around it. NOT_FOUND: no month document. */
aiproxy_ledger_rc_t aiproxy_ledger_month_reset(aiproxy_ledger_t *l,
                                               apr_pool_t *p,
                                               const char *account,
                                               const char *month,
                                               aiproxy_month_t *before,
                                               aiproxy_month_t *after,
                                               const char **err);

#endif
