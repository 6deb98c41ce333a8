#include <string.h>
#include <apr_strings.h>
#include <apr_lib.h>

#include "aiproxy_multipart.h"

#define MAX_BOUNDARY 70          /* RFC 2046 */
#define MAX_PART_HEADERS 8192

/* Where needle first is in hay[from..len), or len. */
static apr_size_t find(const char *hay, apr_size_t from, apr_size_t len,
                       const char *needle, apr_size_t nlen)
{
    const char *at;

    while (from + nlen <= len) {
        if (!(at = memchr(hay + from, needle[0], len - nlen + 1 - from)))
            return len;
        from = (apr_size_t)(at - hay);
        if (!memcmp(at, needle, nlen))
            return from;
        from++;
    }
    return len;
}

/* A parameter's value after "name=" in s: quoted or a token. */
static const char *param_value(apr_pool_t *p, const char *s)
{
    const char *end;

    if (*s == '"') {
        if (!(end = strchr(s + 1, '"')))
            return NULL;
        return apr_pstrmemdup(p, s + 1, (apr_size_t)(end - s - 1));
    }
    for (end = s; *end && *end != ';' && !apr_isspace(*end); end++)
        ;
    return end > s ? apr_pstrmemdup(p, s, (apr_size_t)(end - s)) : NULL;
}

/* The value of parameter name in a header value's ";"-separated list. */
static const char *param(apr_pool_t *p, const char *v, const char *name,
                         int *bad)
{
    apr_size_t n = strlen(name);
    const char *s = v, *val;

    while ((s = strchr(s, ';'))) {
        s++;
        while (*s == ' ' || *s == '\t')
            s++;
        if (!strncasecmp(s, name, n) && s[n] == '=') {
            if (!(val = param_value(p, s + n + 1)))
                *bad = 1;
            return val;
        }
    }
    return NULL;
}

static const char *boundary_of(apr_pool_t *p, const char *ctype)
{
    const char *b;
    int bad = 0;

    if (!ctype || strncasecmp(ctype, "multipart/form-data", 19) ||
        (ctype[19] && ctype[19] != ';' && ctype[19] != ' '))
        return NULL;
    b = param(p, ctype, "boundary", &bad);
    if (!b || bad || !*b || strlen(b) > MAX_BOUNDARY)
        return NULL;
    return b;
}

/* One part's headers, hdr[0..n): its Content-Disposition names it. */
static const char *part_headers(apr_pool_t *p, const char *hdr, apr_size_t n,
                                aiproxy_form_part_t *part)
{
    char *h = apr_pstrmemdup(p, hdr, n), *line, *last;
    int seen = 0, bad = 0;

    if (memchr(hdr, '\0', n))
        return "a part's headers hold a NUL byte";
    for (line = apr_strtok(h, "\r\n", &last); line;
         line = apr_strtok(NULL, "\r\n", &last)) {
        char *colon = strchr(line, ':');
        const char *v;

        if (!colon)
            return "a part's header line has no ':'";
        *colon = '\0';
        if (strcasecmp(line, "Content-Disposition"))
            continue;
        if (seen++)
            return "a part has two Content-Disposition headers";
        for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
            ;
        if (strncasecmp(v, "form-data", 9) || (v[9] && v[9] != ';' &&
                                               v[9] != ' '))
            return "a part's Content-Disposition is not form-data";
        part->name = param(p, v, "name", &bad);
        part->filename = param(p, v, "filename", &bad);
        if (bad)
            return "a part's Content-Disposition has an unreadable parameter";
    }
    if (!part->name || !*part->name)
        return "a part has no name (Content-Disposition: form-data; "
               "name=...)";
    return NULL;
}

const char *aiproxy_multipart_parse(apr_pool_t *p, const char *ctype,
                                    const char *body, apr_size_t len,
                                    apr_array_header_t **parts)
{
    const char *b = boundary_of(p, ctype);
    const char *delim, *err;
    apr_size_t dlen, pos, end, hend;

    if (!b)
        return "the body must be multipart/form-data with a boundary of 1 "
               "to 70 characters";
    *parts = apr_array_make(p, 8, sizeof(aiproxy_form_part_t));
    delim = apr_pstrcat(p, "\r\n--", b, NULL);
    dlen = strlen(delim);
    /* The first delimiter opens the body or ends a preamble line. */
    if (len >= dlen - 2 && !memcmp(body, delim + 2, dlen - 2))
        pos = dlen - 2;
    else if ((pos = find(body, 0, len, delim, dlen)) < len)
        pos += dlen;
    else
        return "the multipart body has no opening boundary";
    for (;;) {
        aiproxy_form_part_t *part;

        if (pos + 2 <= len && body[pos] == '-' && body[pos + 1] == '-')
            return (*parts)->nelts ? NULL : "the multipart body has no parts";
        while (pos < len && (body[pos] == ' ' || body[pos] == '\t'))
            pos++;
        if (pos + 2 > len || body[pos] != '\r' || body[pos + 1] != '\n')
            return "a multipart boundary line is malformed";
        pos += 2;
        if ((*parts)->nelts >= AIPROXY_FORM_MAX_PARTS)
            return apr_psprintf(p, "the multipart body has more than %d "
                                "parts", AIPROXY_FORM_MAX_PARTS);
        /* Headers, then a blank line (none at all: the blank line only). */
        if (pos + 2 <= len && body[pos] == '\r' && body[pos + 1] == '\n')
            hend = pos;
        else {
            apr_size_t most = len - pos > MAX_PART_HEADERS + 4
                              ? pos + MAX_PART_HEADERS + 4 : len;

            if ((hend = find(body, pos, most, "\r\n\r\n", 4)) >= most)
                return "a part's headers are too long or never end";
            hend += 2;
        }
        part = apr_array_push(*parts);
        memset(part, 0, sizeof(*part));
        if ((err = part_headers(p, body + pos, hend - pos, part)))
            return err;
        pos = hend + 2;
        if ((end = find(body, pos, len, delim, dlen)) >= len)
            return "the multipart body ends before its closing boundary";
        part->value = body + pos;
        part->len = end - pos;
        pos = end + dlen;
    }
}

const aiproxy_form_part_t *aiproxy_form_get(const apr_array_header_t *parts,
                                            const char *name, int *dup)
{
    const aiproxy_form_part_t *found = NULL;
    int i;

    *dup = 0;
    for (i = 0; i < parts->nelts; i++) {
        const aiproxy_form_part_t *part =
            &APR_ARRAY_IDX(parts, i, aiproxy_form_part_t);

        if (strcmp(part->name, name))
            continue;
        if (found)
            *dup = 1;
        else
            found = part;
    }
    return found;
}
