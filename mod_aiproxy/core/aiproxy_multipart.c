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

/* The next ";key=value" of a header value at *s: 1 with *key and *val,
 * 0 at the end, -1 when it is malformed. Read strictly, quotes and all, so
 * that no parameter hides in another's value: a parser of the provider's
 * that reads a form otherwise than this one must see a 400 here, not
 * another model. Extended (key*=) and escaped values are refused. */
static int next_param(apr_pool_t *p, const char **s, const char **key,
                      const char **val)
{
    const char *c = *s, *k, *v;

    while (*c == ' ' || *c == '\t')
        c++;
    if (!*c)
        return 0;
    if (*c++ != ';')
        return -1;
    while (*c == ' ' || *c == '\t')
        c++;
    for (k = c; apr_isalnum(*c) || *c == '-' || *c == '_' || *c == '.'; c++)
        ;
    if (c == k || *c != '=')
        return -1;
    *key = apr_pstrmemdup(p, k, (apr_size_t)(c - k));
    if (*++c == '"') {
        for (v = ++c; *c && *c != '"' && *c != '\\'; c++)
            ;
        if (*c != '"')
            return -1;
        *val = apr_pstrmemdup(p, v, (apr_size_t)(c++ - v));
    }
    else {
        for (v = c; *c && *c != ';' && *c != '"' && *c != ' ' && *c != '\t';
             c++)
            ;
        if (c == v)
            return -1;
        *val = apr_pstrmemdup(p, v, (apr_size_t)(c - v));
    }
    *s = c;
    return 1;
}

/* The parameters after a header value's type: name and filename (or
 * boundary) each at most once. 0, or -1 when malformed. */
static int params(apr_pool_t *p, const char *s, const char *want1,
                  const char **val1, const char *want2, const char **val2)
{
    const char *k, *v;
    int rc;

    *val1 = NULL;
    if (val2)
        *val2 = NULL;
    while ((rc = next_param(p, &s, &k, &v)) == 1) {
        const char **slot = !strcasecmp(k, want1) ? val1
                            : want2 && !strcasecmp(k, want2) ? val2 : NULL;

        if (slot) {
            if (*slot)
                return -1;
            *slot = v;
        }
    }
    return rc;
}

static const char *boundary_of(apr_pool_t *p, const char *ctype)
{
    const char *b;

    if (!ctype || strncasecmp(ctype, "multipart/form-data", 19) ||
        (ctype[19] && ctype[19] != ';' && ctype[19] != ' ' &&
         ctype[19] != '\t'))
        return NULL;
    if (params(p, ctype + 19, "boundary", &b, NULL, NULL) < 0 ||
        !b || !*b || strlen(b) > MAX_BOUNDARY)
        return NULL;
    return b;
}

/* One part's headers, hdr[0..n): its Content-Disposition names it. */
static const char *part_headers(apr_pool_t *p, const char *hdr, apr_size_t n,
                                aiproxy_form_part_t *part)
{
    char *h = apr_pstrmemdup(p, hdr, n), *line, *last;
    int seen = 0;

    if (memchr(hdr, '\0', n))
        return "a part's headers hold a NUL byte";
    for (line = apr_strtok(h, "\r\n", &last); line;
         line = apr_strtok(NULL, "\r\n", &last)) {
        char *colon = strchr(line, ':');
        const char *v;

        /* A folded line continues the last header: read as one by some. */
        if (!colon || *line == ' ' || *line == '\t')
            return "a part's header line is malformed";
        *colon = '\0';
        for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
            ;
        /* An encoded value reads differently to whoever decodes it. */
        if (!strcasecmp(line, "Content-Transfer-Encoding") &&
            strcasecmp(v, "binary") && strcasecmp(v, "8bit") &&
            strcasecmp(v, "7bit"))
            return "a part's Content-Transfer-Encoding is not binary";
        if (strcasecmp(line, "Content-Disposition"))
            continue;
        if (seen++)
            return "a part has two Content-Disposition headers";
        if (strncasecmp(v, "form-data", 9) || (v[9] && v[9] != ';' &&
                                               v[9] != ' ' && v[9] != '\t'))
            return "a part's Content-Disposition is not form-data";
        if (params(p, v + 9, "name", &part->name, "filename",
                   &part->filename) < 0)
            return "a part's Content-Disposition is malformed (its "
                   "parameters, quoted without escapes, each once)";
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
        /* The boundary's text inside a value, as a laxer parser's
         * delimiter (a bare LF before it), would be a part to some. */
        if (find(part->value, 0, part->len, delim + 2, dlen - 2) < part->len)
            return "a part holds the boundary's text: choose another "
                   "boundary";
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
