#include <string.h>
#include <jansson.h>
#include <apr_strings.h>

#include "aiproxy_json.h"

static apr_status_t json_release(void *v)
{
    json_decref((json_t *)v);
    return APR_SUCCESS;
}

aiproxy_json_t *aiproxy_json_parse(apr_pool_t *p, const char *buf,
                                   apr_size_t len, const char **err)
{
    json_error_t jerr;
    json_t *v = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);

    if (!v) {
        *err = apr_psprintf(p, "%s at line %d column %d", jerr.text,
                            jerr.line, jerr.column);
        return NULL;
    }
    apr_pool_cleanup_register(p, v, json_release, apr_pool_cleanup_null);
    return v;
}

aiproxy_json_t *aiproxy_json_parse_prefix(apr_pool_t *p, const char *buf,
                                          apr_size_t len, apr_size_t *used)
{
    json_error_t jerr;
    json_t *v = json_loadb(buf, len, JSON_REJECT_DUPLICATES |
                           JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &jerr);

    if (!v)
        return NULL;
    *used = (apr_size_t)jerr.position;
    apr_pool_cleanup_register(p, v, json_release, apr_pool_cleanup_null);
    return v;
}

/* jansson 2.14 on 64 bits, malloc's header and rounding included: an
 * object with its first 8 hash buckets, an array with its first 8 slots, a
 * string or number, a member (pair) with its key, and what each element
 * adds to its container's table as it doubles (old tables are freed). */
#define COST_OBJECT  256
#define COST_ARRAY   160
#define COST_STRING  96     /* + its length: string value or member key */
#define COST_NUMBER  48
#define COST_ELEMENT 48     /* per element or member: slot, bucket, list */

apr_size_t aiproxy_json_cost(const char *buf, apr_size_t len)
{
    apr_size_t i = 0, j, cost = 0, longest = 0, run = 0, bare = 0;
    int in_number = 0;

    while (i < len) {
        char c = buf[i];

        if (c == '"') {
            apr_size_t start = ++i;

            while (i < len && buf[i] != '"')
                i += buf[i] == '\\' ? 2 : 1;
            /* Escapes only shrink a string when decoded. */
            cost += COST_STRING + (i - start) + COST_ELEMENT;
            if (i - start > longest)
                longest = i - start;
            /* A member's key is copied again into its hash entry. */
            for (j = i + 1; j < len && (buf[j] == ' ' || buf[j] == '\n' ||
                                        buf[j] == '\r' || buf[j] == '\t'); j++)
                ;
            if (j < len && buf[j] == ':')
                cost += i - start;
            i++;
            in_number = 0;
            run = 0;
            continue;
        }
        if (c == '{' || c == '[' || c == '}' || c == ']' || c == ',' ||
            c == ':' || c == ' ' || c == '\n' || c == '\r' || c == '\t')
            run = 0;
        else if (++run > bare)
            bare = run;      /* a number, a literal, or a bad token */
        if ((c >= '0' && c <= '9') || c == '-') {
            if (!in_number)
                cost += COST_NUMBER + COST_ELEMENT;
            in_number = 1;
        }
        else {
            in_number = c == '.' || c == 'e' || c == 'E' || c == '+';
            if (c == '{')
                cost += COST_OBJECT + COST_ELEMENT;
            else if (c == '[')
                cost += COST_ARRAY + COST_ELEMENT;
            else if (c == 't' || c == 'f' || c == 'n')
                cost += COST_ELEMENT;
        }
        i++;
    }
    /* The lexer's buffer for the longest token: at most twice it, or the
     * old and new buffers while it grows (a string's copy is counted). */
    return cost + (2 * longest > 3 * bare ? 2 * longest : 3 * bare) + 128;
}

aiproxy_json_t *aiproxy_json_get(const aiproxy_json_t *obj, const char *key)
{
    return json_is_object(obj) ? json_object_get(obj, key) : NULL;
}

int aiproxy_json_is_object(const aiproxy_json_t *v)
{
    return json_is_object(v);
}

int aiproxy_json_is_array(const aiproxy_json_t *v)
{
    return json_is_array(v);
}

int aiproxy_json_is_null(const aiproxy_json_t *v)
{
    return json_is_null(v);
}

const char *aiproxy_json_string(const aiproxy_json_t *v)
{
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int aiproxy_json_int(const aiproxy_json_t *v, apr_int64_t *out)
{
    if (json_is_integer(v)) {
        *out = (apr_int64_t)json_integer_value(v);
        return 1;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        /* Bounds keep the cast defined; usage counts never come near them. */
        if (d >= -9.0e15 && d <= 9.0e15 && d == (double)(apr_int64_t)d) {
            *out = (apr_int64_t)d;
            return 1;
        }
    }
    return 0;
}

int aiproxy_json_bool(const aiproxy_json_t *v)
{
    return json_is_boolean(v) ? json_is_true(v) : -1;
}

apr_size_t aiproxy_json_array_size(const aiproxy_json_t *v)
{
    return json_is_array(v) ? json_array_size(v) : 0;
}

aiproxy_json_t *aiproxy_json_array_at(const aiproxy_json_t *v, apr_size_t i)
{
    return json_is_array(v) ? json_array_get(v, i) : NULL;
}

int aiproxy_json_array_remove(aiproxy_json_t *v, apr_size_t i)
{
    return json_array_remove(v, i);
}

int aiproxy_json_set_nested_true(aiproxy_json_t *obj, const char *parent,
                                 const char *key)
{
    json_t *sub = json_object_get(obj, parent);

    if (!sub || json_is_null(sub)) {
        sub = json_object();
        if (!sub || json_object_set_new(obj, parent, sub) != 0)
            return -1;
    }
    else if (!json_is_object(sub)) {
        return -1;
    }
    return json_object_set_new(sub, key, json_true());
}

int aiproxy_json_set_string(aiproxy_json_t *obj, const char *key,
                            const char *value)
{
    return json_object_set_new(obj, key, json_string(value));
}

int aiproxy_json_set_bool(aiproxy_json_t *obj, const char *key, int v)
{
    return json_object_set_new(obj, key, json_boolean(v));
}

int aiproxy_json_set_int(aiproxy_json_t *obj, const char *key, apr_int64_t v)
{
    return json_object_set_new(obj, key, json_integer((json_int_t)v));
}

aiproxy_json_t *aiproxy_json_new_object(void)
{
    return json_object();
}

aiproxy_json_t *aiproxy_json_new_array(void)
{
    return json_array();
}

aiproxy_json_t *aiproxy_json_new_string(const char *s)
{
    return s ? json_string(s) : NULL;
}

aiproxy_json_t *aiproxy_json_new_int(apr_int64_t v)
{
    return json_integer((json_int_t)v);
}

aiproxy_json_t *aiproxy_json_new_bool(int v)
{
    return json_boolean(v);
}

aiproxy_json_t *aiproxy_json_new_null(void)
{
    return json_null();
}

aiproxy_json_t *aiproxy_json_ref(aiproxy_json_t *v)
{
    return json_incref(v);
}

int aiproxy_json_put(aiproxy_json_t *obj, const char *key, aiproxy_json_t *v)
{
    if (!json_is_object(obj)) {
        json_decref(v);
        return -1;
    }
    return json_object_set_new(obj, key, v);
}

int aiproxy_json_push(aiproxy_json_t *arr, aiproxy_json_t *v)
{
    if (!json_is_array(arr)) {
        json_decref(v);
        return -1;
    }
    return json_array_append_new(arr, v);
}

aiproxy_json_t *aiproxy_json_own(apr_pool_t *p, aiproxy_json_t *v)
{
    if (v)
        apr_pool_cleanup_register(p, v, json_release, apr_pool_cleanup_null);
    return v;
}

int aiproxy_json_is_string(const aiproxy_json_t *v)
{
    return json_is_string(v);
}

int aiproxy_json_is_number(const aiproxy_json_t *v)
{
    return json_is_number(v);
}

apr_array_header_t *aiproxy_json_keys(apr_pool_t *p, const aiproxy_json_t *v)
{
    apr_array_header_t *a = apr_array_make(p, 4, sizeof(const char *));
    const char *k;
    json_t *child;

    if (json_is_object(v))
        json_object_foreach((json_t *)v, k, child)
            APR_ARRAY_PUSH(a, const char *) = apr_pstrdup(p, k);
    return a;
}

static int walk(const json_t *v, const char *key, aiproxy_json_walk_fn *fn,
                void *baton)
{
    const char *k;
    json_t *child;
    size_t i;
    int rc;

    if (!json_is_object(v) && !json_is_array(v))
        return 0;
    if ((rc = fn(baton, key, v)))
        return rc < 0 ? 0 : rc;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, child)
            if ((rc = walk(child, k, fn, baton)))
                return rc;
    }
    else {
        json_array_foreach(v, i, child)
            if ((rc = walk(child, NULL, fn, baton)))
                return rc;
    }
    return 0;
}

int aiproxy_json_walk(const aiproxy_json_t *v, aiproxy_json_walk_fn *fn,
                      void *baton)
{
    return walk(v, NULL, fn, baton);
}

char *aiproxy_json_dump(apr_pool_t *p, const aiproxy_json_t *v,
                        apr_size_t *len)
{
    size_t n = json_dumpb(v, NULL, 0, JSON_COMPACT);
    char *buf;

    if (n == 0)
        return NULL;
    buf = apr_palloc(p, n + 1);
    if (json_dumpb(v, buf, n, JSON_COMPACT) != n)
        return NULL;
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

char *aiproxy_json_quote(apr_pool_t *p, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    apr_size_t n = 2;
    const unsigned char *c;
    char *out, *o;

    for (c = (const unsigned char *)s; *c; c++)
        n += (*c < 0x20) ? 6 : (*c == '"' || *c == '\\') ? 2 : 1;
    o = out = apr_palloc(p, n + 1);
    *o++ = '"';
    for (c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') {
            *o++ = '\\';
            *o++ = (char)*c;
        }
        else if (*c < 0x20) {
            memcpy(o, "\\u00", 4);
            o[4] = hex[*c >> 4];
            o[5] = hex[*c & 15];
            o += 6;
        }
        else {
            *o++ = (char)*c;
        }
    }
    *o++ = '"';
    *o = '\0';
    return out;
}

char *aiproxy_json_strings(apr_pool_t *p, const apr_array_header_t *a)
{
    apr_array_header_t *q = apr_array_make(p, a ? a->nelts : 0,
                                           sizeof(const char *));
    int i;

    for (i = 0; a && i < a->nelts; i++)
        APR_ARRAY_PUSH(q, const char *) =
            aiproxy_json_quote(p, APR_ARRAY_IDX(a, i, const char *));
    return apr_pstrcat(p, "[", apr_array_pstrcat(p, q, ','), "]", NULL);
}
