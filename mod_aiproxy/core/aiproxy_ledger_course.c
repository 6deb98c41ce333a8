/* Courses as the request path reads them (aiproxy_ledger_course.h). */
#include <string.h>
#include <apr_strings.h>

#include "aiproxy_ledger_int.h"
#include "aiproxy_ledger_course.h"

#define COURSES "courses"
#define MEMBERS "members"

static apr_array_header_t *str_array(apr_pool_t *p, const bson_t *doc,
                                     const char *key, int ints)
{
    apr_array_header_t *a = apr_array_make(p, 4, ints ? sizeof(int)
                                                      : sizeof(const char *));
    bson_iter_t it, sub;

    if (!bson_iter_init_find(&it, doc, key) || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &sub))
        return a;
    while (bson_iter_next(&sub)) {
        if (ints && (BSON_ITER_HOLDS_INT32(&sub) ||
                     BSON_ITER_HOLDS_INT64(&sub)))
            APR_ARRAY_PUSH(a, int) = (int)bson_iter_as_int64(&sub);
        else if (!ints && BSON_ITER_HOLDS_UTF8(&sub))
            APR_ARRAY_PUSH(a, const char *) =
                apr_pstrdup(p, bson_iter_utf8(&sub, NULL));
    }
    return a;
}

void aiproxy_ledger_read_course(apr_pool_t *p, const bson_t *doc,
                                aiproxy_course_t *c)
{
    memset(c, 0, sizeof(*c));
    c->id = aiproxy_ledger_str(p, doc, "_id");
    c->name = aiproxy_ledger_str(p, doc, "name");
    c->budget = aiproxy_ledger_i64(doc, "budget");
    c->has_member_cap = aiproxy_ledger_has_int(doc, "member_cap");
    c->member_cap = aiproxy_ledger_i64(doc, "member_cap");
    c->models = str_array(p, doc, "models", 0);
    c->endpoints = str_array(p, doc, "endpoints", 0);
    c->instructors = str_array(p, doc, "instructors", 0);
    c->alerts = str_array(p, doc, "alerts", 1);
}

typedef struct {
    aiproxy_course_t *out;
    int found;
} course_scan_t;

static void course_start(apr_pool_t *p, const bson_t *doc, void *baton)
{
    (void)p;
    (void)doc;
    ((course_scan_t *)baton)->found = 0;
}

static void course_each(apr_pool_t *p, const bson_t *doc, void *baton)
{
    course_scan_t *c = baton;

    c->found = 1;
    aiproxy_ledger_read_course(p, doc, c->out);
}

aiproxy_ledger_rc_t aiproxy_ledger_course_get(aiproxy_ledger_t *l,
                                              apr_pool_t *p, const char *id,
                                              aiproxy_course_t *out,
                                              const char **err)
{
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(id));
    course_scan_t c = { out, 0 };
    aiproxy_ledger_rc_t rc;

    memset(out, 0, sizeof(*out));
    rc = aiproxy_ledger_each_doc(p, l, COURSES, filter, NULL, NULL,
                                 course_start, course_each, &c, err);
    bson_destroy(filter);
    if (rc == AIPROXY_LEDGER_OK && !c.found)
        return AIPROXY_LEDGER_NOT_FOUND;
    return rc;
}

typedef struct {
    const char *own;            /* "id|email" */
    int found, own_cap;
    int *has_cap;
    aiproxy_money_t *cap;
} member_scan_t;

static void member_start(apr_pool_t *p, const bson_t *doc, void *baton)
{
    member_scan_t *m = baton;

    (void)p;
    (void)doc;
    m->found = m->own_cap = 0;
    *m->has_cap = 0;
}

/* The email's own enrolment's cap comes before its domain's. */
static void member_each(apr_pool_t *p, const bson_t *doc, void *baton)
{
    member_scan_t *m = baton;
    int own = !strcmp(aiproxy_ledger_str(p, doc, "_id"), m->own);

    m->found = 1;
    if (aiproxy_ledger_has_int(doc, "cap") && (own || !m->own_cap)) {
        *m->cap = aiproxy_ledger_i64(doc, "cap");
        *m->has_cap = 1;
        m->own_cap |= own;
    }
}

aiproxy_ledger_rc_t aiproxy_ledger_is_member(aiproxy_ledger_t *l,
                                             apr_pool_t *p, const char *id,
                                             const char *email,
                                             int *is_member, int *has_cap,
                                             aiproxy_money_t *cap,
                                             const char **err)
{
    const char *at = strchr(email, '@');
    const char *own = apr_pstrcat(p, id, "|", email, NULL);
    bson_t *filter = BCON_NEW("_id", "{", "$in", "[", BCON_UTF8(own),
                              BCON_UTF8(apr_pstrcat(p, id, "|",
                                                    at ? at : email, NULL)),
                              "]", "}");
    member_scan_t m = { own, 0, 0, has_cap, cap };
    aiproxy_ledger_rc_t rc;

    *is_member = *has_cap = 0;
    *cap = 0;
    rc = aiproxy_ledger_each_doc(p, l, MEMBERS, filter, NULL, NULL,
                                 member_start, member_each, &m, err);
    bson_destroy(filter);
    *is_member = m.found;
    return rc;
}
