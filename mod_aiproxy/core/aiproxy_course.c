#include <string.h>
#include <apr_strings.h>

#include "aiproxy_course.h"

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
    /* Never an email, though an email may begin with '#'. */
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
