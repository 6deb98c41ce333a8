#include <string.h>
#include <apr_strings.h>

#include "aiproxy_course.h"
#include "aiproxy_cost.h"
#include "aiproxy_json.h"

int aiproxy_course_id_valid(const char *id)
{
    apr_size_t n;

    if (!id || !*id || *id == '-' || *id == '_')
        return 0;
    for (n = 0; id[n]; n++)
        if (n >= AIPROXY_COURSE_ID_MAX ||
            !((id[n] >= 'a' && id[n] <= 'z') ||
              (id[n] >= '0' && id[n] <= '9') || id[n] == '-' ||
              id[n] == '_'))
            return 0;
    return 1;
}

const char *aiproxy_course_account(apr_pool_t *p, const char *id)
{
    return apr_pstrcat(p, "#", id, NULL);
}

int aiproxy_course_is_account(const char *account)
{
    /* Never an email (no token or admin call names one beginning with
     * '#'; older ones in the store have an '@'). */
    return account && account[0] == '#' && !strchr(account, '@');
}

int aiproxy_course_allows(const apr_array_header_t *list, const char *name)
{
    int i;

    if (!list || list->nelts == 0)
        return 1;
    for (i = 0; i < list->nelts; i++)
        if (!strcmp(APR_ARRAY_IDX(list, i, const char *), name))
            return 1;
    return 0;
}

const char *aiproxy_course_json_fields(apr_pool_t *p,
                                       const aiproxy_course_t *c)
{
    apr_array_header_t *al = apr_array_make(p, 4, sizeof(const char *));
    int i;

    for (i = 0; c->alerts && i < c->alerts->nelts; i++)
        APR_ARRAY_PUSH(al, const char *) =
            apr_itoa(p, APR_ARRAY_IDX(c->alerts, i, int));
    return apr_psprintf(p, "\"id\":%s,\"name\":%s,\"budget\":\"%s\","
                        "\"member_cap\":%s,\"models\":%s,\"endpoints\":%s,"
                        "\"instructors\":%s,\"alerts\":[%s]",
                        aiproxy_json_quote(p, c->id),
                        aiproxy_json_quote(p, c->name),
                        aiproxy_money_format(p, c->budget),
                        c->has_member_cap
                        ? apr_pstrcat(p, "\"", aiproxy_money_format(
                                          p, c->member_cap), "\"", NULL)
                        : "null",
                        aiproxy_json_strings(p, c->models),
                        aiproxy_json_strings(p, c->endpoints),
                        aiproxy_json_strings(p, c->instructors),
                        apr_array_pstrcat(p, al, ','));
}
