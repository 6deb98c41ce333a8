#include <string.h>
#include <apr_lib.h>
#include <apr_strings.h>

#include "aiproxy_cost.h"
#include "aiproxy_params.h"

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes s in place; 0 on a bad escape or a NUL. */
static int unescape(char *s)
{
    char *in = s, *out = s;

    for (; *in; in++, out++) {
        if (*in == '+') {
            *out = ' ';
        }
        else if (*in == '%') {
            int hi = hex_value(in[1]), lo = hi < 0 ? -1 : hex_value(in[2]);

            if (lo < 0 || (hi == 0 && lo == 0))
                return 0;
            *out = (char)(hi * 16 + lo);
            in += 2;
        }
        else {
            *out = *in;
        }
    }
    *out = '\0';
    return 1;
}

apr_table_t *aiproxy_params_parse(apr_pool_t *p, const char *s)
{
    apr_table_t *t = apr_table_make(p, 4);
    char *copy = apr_pstrdup(p, s ? s : ""), *last, *pair;

    for (pair = apr_strtok(copy, "&", &last); pair;
         pair = apr_strtok(NULL, "&", &last)) {
        char *eq = strchr(pair, '=');
        char *val = eq ? eq + 1 : "";

        if (eq)
            *eq = '\0';
        if (unescape(pair) && (!eq || unescape(val)))
            apr_table_setn(t, pair, val);
    }
    return t;
}

int aiproxy_params_month(const char *m)
{
    return strlen(m) == 7 && apr_isdigit(m[0]) && apr_isdigit(m[1]) &&
           apr_isdigit(m[2]) && apr_isdigit(m[3]) && m[4] == '-' &&
           ((m[5] == '0' && m[6] >= '1' && m[6] <= '9') ||
            (m[5] == '1' && m[6] >= '0' && m[6] <= '2'));
}

int aiproxy_params_who(const char *w, int domain_ok)
{
    const char *at = strchr(w, '@'), *c;

    /* '#' begins the ledger accounts of courses, never a person's. */
    if (!at || strchr(at + 1, '@') || !at[1] || strlen(w) > 320 ||
        (at == w && !domain_ok) || *w == '#')
        return 0;
    for (c = w; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f || *c == '"' ||
            *c == '|' || *c == '\\' || *c == '$' || *c == ',' ||
            *c == '<' || *c == '>')
            return 0;
    return 1;
}

char *aiproxy_params_lower(apr_pool_t *p, const char *s)
{
    char *out = apr_pstrdup(p, s), *c;

    for (c = out; *c; c++)
        *c = (char)apr_tolower(*c);
    return out;
}

int aiproxy_params_email(apr_pool_t *p, const char *v, const char **out)
{
    if (!v || !aiproxy_params_who(v, 0))
        return 0;
    *out = aiproxy_params_lower(p, v);
    return 1;
}

int aiproxy_params_count(const char *v, apr_int64_t min, apr_int64_t max,
                         apr_int64_t *out)
{
    apr_int64_t n = 0;
    const char *c;

    if (!v || !*v || strlen(v) > 12)
        return 0;
    for (c = v; *c; c++) {
        if (*c < '0' || *c > '9')
            return 0;
        n = n * 10 + (*c - '0');
    }
    if (n < min || n > max)
        return 0;
    *out = n;
    return 1;
}

const char *aiproxy_params_cap(apr_pool_t *p, const aiproxy_json_t *body,
                               const char **who, int *has_cap,
                               aiproxy_money_t *cap)
{
    const aiproxy_json_t *capv;
    const char *w, *usd, *err;

    *has_cap = 0;
    *cap = 0;
    w = aiproxy_json_string(aiproxy_json_get(body, "who"));
    if (!w || !aiproxy_params_who(w, 1))
        return "who must be an email or @domain.";
    *who = aiproxy_params_lower(p, w);
    if (!(capv = aiproxy_json_get(body, "cap")))
        return "cap is required: a USD amount as a string (\"2.50\"), or "
               "null to clear.";
    if (aiproxy_json_is_null(capv))
        return NULL;
    if (!(usd = aiproxy_json_string(capv)))
        return "cap must be a USD amount as a string (\"2.50\"), never a "
               "number, or null to clear.";
    if ((err = aiproxy_money_parse(p, usd, cap)))
        return apr_pstrcat(p, "cap: ", err, NULL);
    *has_cap = 1;
    return NULL;
}
