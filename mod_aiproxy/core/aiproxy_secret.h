/* Where secrets come from (env:VAR, file:PATH) and what a token secret
 * must be. APR only: the module and aiproxy-admin read them the same way. */
#ifndef AIPROXY_SECRET_H
#define AIPROXY_SECRET_H

#include "aiproxy.h"
#include "aiproxy_token.h"

/* The shortest token secret, in bytes as written: the HMAC key is the
 * value itself, so `openssl rand -hex 32` (64 characters) is 64 bytes. */
#define AIPROXY_SECRET_MIN_BYTES 32

/* One AIProxyTokenSecret line. */
typedef struct {
    const char *kid;   /* NULL: given without an id */
    const char *spec;  /* env:VAR or file:PATH */
} aiproxy_secret_spec_t;

/* env:VAR or file:PATH with something after the colon. */
int aiproxy_secret_spec_ok(const char *spec);

/* A key id: 1 to 64 of A-Z a-z 0-9 . _ - */
int aiproxy_secret_kid_ok(const char *kid);

/* Reads env:VAR or file:PATH into *out (NUL-terminated, *len bytes),
 * without a trailing newline. Messages start with directive and never hold
 * the value. */
const char *aiproxy_secret_read(apr_pool_t *p, const char *directive,
                                const char *spec, char **out,
                                apr_size_t *len);

/* Adds `AIProxyTokenSecret [KID] SPEC` to specs (aiproxy_secret_spec_t).
 * The same id, or no id, given again replaces the earlier line and takes
 * its place at the end: a later file overrides as with any directive.
 * NULL, or a message naming the directive. */
const char *aiproxy_secret_spec_add(apr_pool_t *p, apr_array_header_t *specs,
                                    const char *kid, const char *spec);

/* Reads one token secret and checks its length. NULL, or a message naming
 * AIProxyTokenSecret and how to make a good one. */
const char *aiproxy_secret_load(apr_pool_t *p, const aiproxy_secret_spec_t *s,
                                aiproxy_token_key_t *out);

/* Reads every secret into *keys (aiproxy_token_key_t, the same order);
 * the first error, or NULL. */
const char *aiproxy_secret_load_all(apr_pool_t *p,
                                    const apr_array_header_t *specs,
                                    apr_array_header_t **keys);

#endif
