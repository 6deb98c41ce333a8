#include <string.h>
#include <apr_strings.h>

#include "aiproxy_jscan.h"

typedef enum {
    JS_START,      /* before the top-level '{' */
    JS_KEY_NEXT,   /* after '{' or ',': a key (or '}' after '{') */
    JS_KEY,        /* inside a key */
    JS_COLON,      /* after a key */
    JS_VALUE_NEXT, /* after ':' */
    JS_VALUE,      /* inside a member's value */
    JS_END,        /* the top-level object has closed */
    JS_BAD
} js_state_t;

struct aiproxy_jscan {
    const char *key;
    apr_size_t klen, kpos;
    int kmatch;         /* the key so far is the one sought */
    int capturing;      /* this value is the sought member's */
    int found;          /* seen once already */
    int overflow;
    js_state_t state;
    apr_size_t depth;   /* open objects and arrays, the top one included */
    int in_string, escape, first_key;
    char *buf;
    apr_size_t vlen, max;
    int is_array;       /* the member's value opened with '[' */
    int nonempty;       /* the array has an element */
    apr_int64_t commas; /* between its elements */
};

aiproxy_jscan_t *aiproxy_jscan_create(apr_pool_t *p, const char *key,
                                      apr_size_t max_value)
{
    aiproxy_jscan_t *s = apr_pcalloc(p, sizeof(*s));

    s->key = key;
    s->klen = strlen(key);
    s->max = max_value;
    s->buf = apr_palloc(p, max_value + 1);
    return s;
}

static int blank(char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static void keep(aiproxy_jscan_t *s, char c)
{
    if (!s->capturing)
        return;
    if (s->vlen < s->max)
        s->buf[s->vlen++] = c;
    else
        s->overflow = 1;
}

/* The value ends at c (',' or the top-level '}'), which is not its own. */
static void end_value(aiproxy_jscan_t *s)
{
    if (s->capturing) {
        while (s->vlen && blank(s->buf[s->vlen - 1]))
            s->vlen--;
        s->capturing = 0;
        s->found = 1;
    }
}

/* One byte inside a value: strings, nesting, and the value's end. */
static void value_byte(aiproxy_jscan_t *s, char c)
{
    if (s->in_string) {
        if (s->escape)
            s->escape = 0;
        else if (c == '\\')
            s->escape = 1;
        else if (c == '"')
            s->in_string = 0;
        keep(s, c);
        return;
    }
    if (c == '"') {
        s->in_string = 1;
    }
    else if (c == '{' || c == '[') {
        s->depth++;
    }
    else if (c == '}' || c == ']') {
        if (s->depth == 1) {
            /* Only a brace closes the top-level object. */
            if (c != '}') {
                s->state = JS_BAD;
                return;
            }
            end_value(s);
            s->depth = 0;
            s->state = JS_END;
            return;
        }
        s->depth--;
    }
    else if (c == ',' && s->depth == 1) {
        end_value(s);
        s->state = JS_KEY_NEXT;
        s->first_key = 0;
        return;
    }
    if (s->capturing && s->is_array) {
        if (c == ',' && s->depth == 2)
            s->commas++;
        else if (s->depth >= 2 && !blank(c) && !(c == '[' && s->depth == 2 &&
                                                  !s->vlen && !s->overflow))
            s->nonempty = 1;
    }
    keep(s, c);
}

/* keep() for a run of bytes. */
static void keep_run(aiproxy_jscan_t *s, const char *run, apr_size_t n)
{
    apr_size_t room = s->max - s->vlen;

    if (!s->capturing)
        return;
    if (s->is_array && s->depth >= 2 && !s->nonempty) {
        apr_size_t i;

        for (i = 0; i < n; i++)
            if (!blank(run[i]))
                s->nonempty = 1;
    }
    if (n > room) {
        n = room;
        s->overflow = 1;
    }
    memcpy(s->buf + s->vlen, run, n);
    s->vlen += n;
}

/* Bytes that value_byte() treats as more than a byte to keep. */
static int structural(char c)
{
    return c == '"' || c == '{' || c == '[' || c == '}' || c == ']' ||
           c == ',';
}

/* A value's bytes from buf[i] on, while the value lasts: the runs inside
 * strings and between structural bytes, where value_byte() would only
 * keep each byte, are passed over whole (most of an answer is such runs).
 * Returns where the value ended, or len. */
static apr_size_t value_run(aiproxy_jscan_t *s, const char *buf, apr_size_t i,
                            apr_size_t len)
{
    while (i < len && s->state == JS_VALUE) {
        apr_size_t j = i;

        if (!s->in_string)
            while (j < len && !structural(buf[j]))
                j++;
        else if (!s->escape)
            while (j < len && buf[j] != '"' && buf[j] != '\\')
                j++;
        if (j > i) {
            keep_run(s, buf + i, j - i);
            i = j;
            continue;
        }
        value_byte(s, buf[i++]);
    }
    return i;
}

void aiproxy_jscan_feed(aiproxy_jscan_t *s, const char *buf, apr_size_t len)
{
    apr_size_t i = 0;

    while (i < len && s->state != JS_BAD) {
        char c;

        if (s->state == JS_VALUE) {
            i = value_run(s, buf, i, len);
            continue;
        }
        c = buf[i++];
        switch (s->state) {
        case JS_START:
            if (c == '{') {
                s->depth = 1;
                s->state = JS_KEY_NEXT;
                s->first_key = 1;
            }
            else if (!blank(c))
                s->state = JS_BAD;
            break;
        case JS_KEY_NEXT:
            if (c == '"') {
                s->state = JS_KEY;
                s->kpos = 0;
                s->kmatch = 1;
            }
            else if (c == '}' && s->first_key) {
                s->depth = 0;
                s->state = JS_END;
            }
            else if (!blank(c))
                s->state = JS_BAD;
            break;
        case JS_KEY:
            if (s->escape) {
                s->escape = 0;
                s->kmatch = 0;
            }
            else if (c == '\\') {
                s->escape = 1;
                s->kmatch = 0;
            }
            else if (c == '"') {
                s->state = JS_COLON;
                s->kmatch = s->kmatch && s->kpos == s->klen;
            }
            else {
                if (s->kpos >= s->klen || s->key[s->kpos] != c)
                    s->kmatch = 0;
                s->kpos++;
            }
            break;
        case JS_COLON:
            if (c == ':')
                s->state = JS_VALUE_NEXT;
            else if (!blank(c))
                s->state = JS_BAD;
            break;
        case JS_VALUE_NEXT:
            if (blank(c))
                break;
            if (c == ',' || c == '}' || c == ']' || c == ':') {
                s->state = JS_BAD;
                break;
            }
            if (s->kmatch) {
                /* A duplicate key: which one counts is anyone's guess. */
                if (s->found) {
                    s->state = JS_BAD;
                    break;
                }
                s->capturing = 1;
                s->is_array = c == '[';
            }
            s->state = JS_VALUE;
            value_byte(s, c);
            break;
        case JS_VALUE:
            value_byte(s, c);
            break;
        case JS_END:
            if (!blank(c))
                s->state = JS_BAD;
            break;
        case JS_BAD:
            break;
        }
    }
}

const char *aiproxy_jscan_value(aiproxy_jscan_t *s, apr_size_t *len)
{
    if (s->state != JS_END || !s->found || s->overflow || !s->vlen)
        return NULL;
    s->buf[s->vlen] = '\0';
    *len = s->vlen;
    return s->buf;
}

int aiproxy_jscan_items(aiproxy_jscan_t *s, apr_int64_t *n)
{
    if (s->state != JS_END || !s->found || !s->is_array)
        return 0;
    *n = s->nonempty ? s->commas + 1 : 0;
    return 1;
}
