#include <stdlib.h>
#include <string.h>
#include <apr_file_io.h>
#include <apr_strings.h>

#include "aiproxy_secret.h"

#define SECRET_FILE_MAX 65536
#define KID_MAX 64

int aiproxy_secret_spec_ok(const char *spec)
{
    return (!strncmp(spec, "env:", 4) && spec[4]) ||
           (!strncmp(spec, "file:", 5) && spec[5]);
}

int aiproxy_secret_kid_ok(const char *kid)
{
    apr_size_t n = strlen(kid);

    return n > 0 && n <= KID_MAX &&
           strspn(kid, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                       "0123456789._-") == n;
}

const char *aiproxy_secret_read(apr_pool_t *p, const char *directive,
                                const char *spec, char **out,
                                apr_size_t *len)
{
    char *v;
    apr_size_t n = 0;

    if (!strncmp(spec, "env:", 4)) {
        const char *e = getenv(spec + 4);

        if (!e || !*e)
            return apr_psprintf(p, "%s: environment variable %s is not set "
                                "or empty", directive, spec + 4);
        v = apr_pstrdup(p, e);
    }
    else if (!strncmp(spec, "file:", 5)) {
        apr_file_t *f;
        apr_finfo_t fi;
        apr_status_t rv = apr_file_open(&f, spec + 5, APR_READ, 0, p);

        if (rv != APR_SUCCESS)
            return apr_psprintf(p, "%s: cannot read %s", directive, spec + 5);
        if (apr_file_info_get(&fi, APR_FINFO_SIZE, f) != APR_SUCCESS) {
            apr_file_close(f);
            return apr_psprintf(p, "%s: cannot read %s", directive, spec + 5);
        }
        if (fi.size > SECRET_FILE_MAX) {
            apr_file_close(f);
            return apr_psprintf(p, "%s: %s is too large for a secret",
                                directive, spec + 5);
        }
        n = (apr_size_t)fi.size;
        v = apr_palloc(p, n + 1);
        rv = apr_file_read_full(f, v, n, &n);
        apr_file_close(f);
        if (rv != APR_SUCCESS && rv != APR_EOF)
            return apr_psprintf(p, "%s: cannot read %s", directive, spec + 5);
        v[n] = '\0';
    }
    else {
        return apr_psprintf(p, "%s: give env:VARIABLE or file:/path",
                            directive);
    }
    /* A trailing newline from `echo > file` is not part of the secret. */
    *len = strlen(v);
    if (n && *len < n)
        return apr_psprintf(p, "%s: %s holds a NUL byte: not a secret "
                            "file", directive, spec + 5);
    while (*len && (v[*len - 1] == '\n' || v[*len - 1] == '\r'))
        v[--*len] = '\0';
    if (!*len)
        return apr_psprintf(p, "%s: %s is empty", directive, spec);
    *out = v;
    return NULL;
}

const char *aiproxy_secret_spec_add(apr_pool_t *p, apr_array_header_t *specs,
                                    const char *kid, const char *spec)
{
    aiproxy_secret_spec_t *s;
    int i, j;

    if (!aiproxy_secret_spec_ok(spec))
        return "AIProxyTokenSecret: give [KEY-ID] env:VARIABLE or "
               "file:/path, never the secret itself";
    if (kid && !aiproxy_secret_kid_ok(kid))
        return apr_psprintf(p, "AIProxyTokenSecret: the key id must be 1 to "
                            "%d of A-Z a-z 0-9 . _ -", KID_MAX);
    for (i = 0; i < specs->nelts; i++) {
        s = &APR_ARRAY_IDX(specs, i, aiproxy_secret_spec_t);
        if ((!kid && !s->kid) || (kid && s->kid && !strcmp(kid, s->kid))) {
            for (j = i + 1; j < specs->nelts; j++)
                APR_ARRAY_IDX(specs, j - 1, aiproxy_secret_spec_t) =
                    APR_ARRAY_IDX(specs, j, aiproxy_secret_spec_t);
            specs->nelts--;
            break;
        }
    }
    s = apr_array_push(specs);
    s->kid = kid ? apr_pstrdup(p, kid) : NULL;
    s->spec = apr_pstrdup(p, spec);
    return NULL;
}

const char *aiproxy_secret_load(apr_pool_t *p, const aiproxy_secret_spec_t *s,
                                aiproxy_token_key_t *out)
{
    const char *directive = s->kid ? apr_pstrcat(p, "AIProxyTokenSecret ",
                                                 s->kid, NULL)
                                   : "AIProxyTokenSecret";
    const char *err;
    char *v;
    apr_size_t len;

    if ((err = aiproxy_secret_read(p, directive, s->spec, &v, &len)))
        return err;
    /* A short secret can be guessed, and a guessed secret signs a token
     * for anyone, admins included. */
    if (len < AIPROXY_SECRET_MIN_BYTES)
        return apr_psprintf(p, "%s: the secret in %s is %" APR_SIZE_T_FMT
                            " bytes; it must be at least %d random bytes. "
                            "Make one with `openssl rand -hex 32` or "
                            "`aiproxy-admin secret new`", directive, s->spec,
                            len, AIPROXY_SECRET_MIN_BYTES);
    out->kid = s->kid;
    out->key = (const unsigned char *)v;
    out->len = len;
    return NULL;
}

const char *aiproxy_secret_load_all(apr_pool_t *p,
                                    const apr_array_header_t *specs,
                                    apr_array_header_t **keys)
{
    const char *err;
    int i;

    *keys = apr_array_make(p, specs->nelts, sizeof(aiproxy_token_key_t));
    for (i = 0; i < specs->nelts; i++)
        if ((err = aiproxy_secret_load(p, &APR_ARRAY_IDX(specs, i,
                                           aiproxy_secret_spec_t),
                                       apr_array_push(*keys))))
            return err;
    return NULL;
}
