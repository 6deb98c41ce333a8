/* Admission: the fixups hook that checks, bounds and reserves a request. */
#ifndef AIPROXY_ADMIT_H
#define AIPROXY_ADMIT_H

#include "aiproxy_req.h"

int aiproxy_admit(request_rec *r);
/* map_to_storage: a route's requests skip the directory walk. */
int aiproxy_admit_map_to_storage(request_rec *r);

/* Per-child memos of verified tokens and user settings (aiproxy_admit.c). */
void aiproxy_admit_child_init(apr_pool_t *p, server_rec *s);

/* Charges the request's course what rec charges its user (at settlement,
 * by the meter); nothing when no course was held. */
/* A free endpoint's request, once answered: counted at $0 with its
 * record (on a lease, by the host with its next write), its course's
 * too; st->month_state then holds the month for the headers. */
void aiproxy_admit_settle_free(request_rec *r, aiproxy_req_t *st, int status);
void aiproxy_admit_course_settle(request_rec *r, aiproxy_req_t *st,
                                 const aiproxy_record_t *rec);

#endif
