/* Roster CSV (aiproxy_roster.h). */
#include <string.h>
#include <apr_hash.h>
#include <apr_strings.h>

#include "aiproxy_params.h"
#include "aiproxy_roster.h"

#define SHOWN_MAX 80

static int blank(char c)
{
    return c == ' ' || c == '\t';
}

/* The first field of the record at *pos, unquoted; moves *pos past the
 * record and counts the newlines it crossed in *lines. */
static char *first_field(apr_pool_t *p, const char *s, apr_size_t len,
                         apr_size_t *pos, int *lines)
{
    apr_size_t i = *pos;
    char *out = apr_palloc(p, len - i + 1);
    apr_size_t n = 0;
    int quoted = 0, field = 0;

    while (i < len && blank(s[i]))
        i++;
    if (i < len && s[i] == '"') {
        quoted = 1;
        i++;
    }
    for (; i < len; i++) {
        /* A NUL becomes a control byte: refused, never a cut string. */
        char c = s[i] ? s[i] : '\x01';

        if (quoted) {
            if (c == '"' && i + 1 < len && s[i + 1] == '"') {
                if (!field)
                    out[n++] = '"';
                i++;
            }
            else if (c == '"')
                quoted = 0;
            else {
                if (c == '\n')
                    (*lines)++;
                if (!field)
                    out[n++] = c;
            }
            continue;
        }
        if (c == '\n') {
            (*lines)++;
            i++;
            break;
        }
        if (c == ',') {
            field = 1;
            /* A later field may be quoted too. */
            continue;
        }
        if (c == '"' && field) {
            quoted = 1;
            continue;
        }
        if (!field && c != '\r')
            out[n++] = c;
    }
    *pos = i;
    while (n && (blank(out[n - 1]) || out[n - 1] == '\r'))
        n--;
    out[n] = '\0';
    return out;
}

static const char *shown(apr_pool_t *p, const char *v)
{
    return strlen(v) > SHOWN_MAX ? apr_pstrndup(p, v, SHOWN_MAX) : v;
}

const char *aiproxy_roster_parse(apr_pool_t *p, const char *text,
                                 apr_size_t len, int max_lines,
                                 apr_array_header_t **whos,
                                 apr_array_header_t **invalid)
{
    apr_hash_t *seen = apr_hash_make(p);
    apr_size_t pos = 0;
    int line = 1, records = 0, header_done = 0;

    *whos = apr_array_make(p, 64, sizeof(const char *));
    *invalid = apr_array_make(p, 4, sizeof(aiproxy_roster_bad_t));
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3))
        pos = 3;
    while (pos < len) {
        int at = line;
        char *v = first_field(p, text, len, &pos, &line);
        aiproxy_roster_bad_t *bad;

        if (!*v)
            continue;
        if (++records > max_lines)
            return apr_psprintf(p, "The roster has more than %d lines; "
                                "split it.", max_lines);
        if (!header_done) {
            header_done = 1;
            if (!strcasecmp(v, "email"))
                continue;
        }
        if (!aiproxy_params_who(v, 1)) {
            bad = apr_array_push(*invalid);
            bad->line = at;
            bad->value = shown(p, v);
            bad->reason = "not an email address or @domain";
            continue;
        }
        v = aiproxy_params_lower(p, v);
        if (apr_hash_get(seen, v, APR_HASH_KEY_STRING))
            continue;
        apr_hash_set(seen, v, APR_HASH_KEY_STRING, v);
        APR_ARRAY_PUSH(*whos, const char *) = v;
    }
    return NULL;
}
