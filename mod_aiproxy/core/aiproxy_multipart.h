/* multipart/form-data bodies (RFC 7578), as audio/transcriptions takes
 * them: the parts found in a body held whole, their values pointing into
 * it. Strict and bounded (parts, header sizes): pure, unit tested and
 * fuzzed. */
#ifndef AIPROXY_MULTIPART_H
#define AIPROXY_MULTIPART_H

#include "aiproxy.h"

typedef struct {
    const char *name;       /* the form field's name */
    const char *filename;   /* NULL: not a file */
    const char *value;      /* its bytes, in the body */
    apr_size_t len;
} aiproxy_form_part_t;

/* The most parts a body may have. */
#define AIPROXY_FORM_MAX_PARTS 64

/* Parses body as multipart/form-data given its Content-Type; *parts gets
 * aiproxy_form_part_t. NULL, or a message for a 400 answer. */
const char *aiproxy_multipart_parse(apr_pool_t *p, const char *ctype,
                                    const char *body, apr_size_t len,
                                    apr_array_header_t **parts);

/* The one part named name (*dup set when there are more), or NULL. */
const aiproxy_form_part_t *aiproxy_form_get(const apr_array_header_t *parts,
                                            const char *name, int *dup);

#endif
