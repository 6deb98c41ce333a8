/* What admission's files (aiproxy_admit.c: the hook's order, rate limit,
 * cache, reservation; aiproxy_admit_body.c: the body and its cost bound)
 * share. */
#ifndef AIPROXY_ADMIT_INT_H
#define AIPROXY_ADMIT_INT_H

#include "aiproxy_req.h"

/* The models a route serves: AIProxyModels, or with `*` every priced
 * model; and their names, for messages. */
int aiproxy_admit_model_allowed(const aiproxy_req_t *st, const char *model);
apr_array_header_t *aiproxy_admit_model_names(apr_pool_t *p,
                                              const aiproxy_req_t *st);
/* The body: read within the limits, checked, its cost bounded and the
 * reservation set. DECLINED to go on, else the request was answered. */
int aiproxy_admit_body(request_rec *r, aiproxy_req_t *st);
/* The media endpoints (aiproxy_admit_media.c), once the body is read:
 * a JSON body checked and its model allowed (images, speech), or an
 * audio/transcriptions form. Set the price and the reservation. */
int aiproxy_admit_media(request_rec *r, aiproxy_req_t *st, char *body);
int aiproxy_admit_media_form(request_rec *r, aiproxy_req_t *st, char *body);

/* A course's part (aiproxy_admit_course.c). After the caller is known:
 * sets st->cap (the user's, or the course's for its members) and, when the
 * token names a course, checks the course and the enrolment. */
void aiproxy_admit_course_child_init(apr_pool_t *p, server_rec *s);
int aiproxy_admit_course(request_rec *r, aiproxy_req_t *st,
                         const aiproxy_user_t *u);
/* A course this child saw spent: refused before the body is read. */
int aiproxy_admit_course_spent(request_rec *r, aiproxy_req_t *st);
/* Whether the request's course (if any) allows a model. */
int aiproxy_admit_course_allows(request_rec *r, const aiproxy_req_t *st,
                                const char *model);
/* Once the model is known: the course's models. */
int aiproxy_admit_course_model(request_rec *r, aiproxy_req_t *st);
/* After the user's hold: the course's, else the user's given back. */
int aiproxy_admit_course_reserve(request_rec *r, aiproxy_req_t *st);
/* Counts a cache hit on the course. */
void aiproxy_admit_course_count(request_rec *r, aiproxy_req_t *st,
                                const aiproxy_record_t *rec);

#endif
