/* A course roster as CSV: one email or @domain per record, in the first
 * column. Pure: unit-tested and shared by the admin API and the CLI. */
#ifndef AIPROXY_ROSTER_H
#define AIPROXY_ROSTER_H

#include <apr_tables.h>

#include "aiproxy.h"

#define AIPROXY_ROSTER_MAX_LINES 10000

typedef struct {
    int line;                   /* 1-based, where the record starts */
    const char *value;          /* as given (trimmed, at most 80 bytes) */
    const char *reason;
} aiproxy_roster_bad_t;

/* Reads text: a UTF-8 BOM, CRLF or LF, quoted fields ("" inside quotes),
 * extra columns, blank records and a header whose first field is `email`
 * are all fine. *whos: each valid entry once, lower-cased, in file order;
 * *invalid: aiproxy_roster_bad_t for the rest. NULL, or why the whole
 * roster is refused (more than max_lines records). */
const char *aiproxy_roster_parse(apr_pool_t *p, const char *text,
                                 apr_size_t len, int max_lines,
                                 apr_array_header_t **whos,
                                 apr_array_header_t **invalid);

#endif
