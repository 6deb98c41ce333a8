/* Budget leases, the host's side: a slice of each active user's monthly
 * budget held in the store by this host and spent from shared memory, so
 * admission and settlement need no store round trip. */
#ifndef AIPROXY_LEASE_H
#define AIPROXY_LEASE_H

#include "httpd.h"

#include "aiproxy_req.h"

typedef enum {
    AIPROXY_LEASE_TAKEN = 0,    /* admitted: st->ticket names it */
    AIPROXY_LEASE_NONE,         /* leases off or full: reserve a hold */
    AIPROXY_LEASE_OVER_CAP,     /* *m holds the month as it stands */
    AIPROXY_LEASE_DOWN          /* the store did not answer: *err */
} aiproxy_lease_rc_t;

void aiproxy_lease_pre_config(apr_pool_t *pconf);
int aiproxy_lease_post_config(apr_pool_t *pconf, server_rec *s);
/* After the child's ledger (and its writer) started: the flusher thread,
 * stopped with p after a last write. */
void aiproxy_lease_child_init(apr_pool_t *p, server_rec *s);

/* Takes st->reserved from the user's lease for this request, growing the
 * lease in the store when it cannot cover it. */
aiproxy_lease_rc_t aiproxy_lease_take(request_rec *r, aiproxy_req_t *st,
                                      aiproxy_month_t *m, const char **err);
/* The same from the lease of the request's course (st->course_account,
 * under st->course_budget): st->course_ticket, st->course_month. */
aiproxy_lease_rc_t aiproxy_lease_take_course(request_rec *r,
                                             aiproxy_req_t *st,
                                             const char **err);
/* Settles a request admitted by aiproxy_lease_take: the rest of its
 * ceiling goes back to the lease, cost joins what the host will write.
 * *m: the month as this host sees it (the store's at the last write, and
 * what this host spent since). */
void aiproxy_lease_settle(aiproxy_req_t *st, aiproxy_money_t cost,
                          int counts, aiproxy_month_t *m);
/* And its course's ticket, into st->course_month. */
void aiproxy_lease_settle_course(aiproxy_req_t *st, aiproxy_money_t cost,
                                 int counts);
/* Counts a request that cost nothing and held nothing (a cache hit) on
 * account's lease; 0 when leases cannot (off, or full), and the store
 * must. */
int aiproxy_lease_count(aiproxy_req_t *st, const char *account,
                        aiproxy_month_t *m);

#endif
