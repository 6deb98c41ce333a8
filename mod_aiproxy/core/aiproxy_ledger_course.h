/* What the request path reads of courses: a course's settings and whether
 * a user is one of its members. The admin side writes them
 * (aiproxy_ledger_course_admin.h). */
#ifndef AIPROXY_LEDGER_COURSE_H
#define AIPROXY_LEDGER_COURSE_H

#include "aiproxy_ledger.h"
#include "aiproxy_course.h"

/* The course's document: OK, NOT_FOUND or DOWN. */
aiproxy_ledger_rc_t aiproxy_ledger_course_get(aiproxy_ledger_t *l,
                                              apr_pool_t *p, const char *id,
                                              aiproxy_course_t *out,
                                              const char **err);

/* Whether email is a member of course id, by its own enrolment or its
 * @domain's: *is_member, and the enrolment's cap (the email's first) in
 * *cap when *has_cap. OK or DOWN. */
aiproxy_ledger_rc_t aiproxy_ledger_is_member(aiproxy_ledger_t *l,
                                             apr_pool_t *p, const char *id,
                                             const char *email,
                                             int *is_member, int *has_cap,
                                             aiproxy_money_t *cap,
                                             const char **err);

#endif
