/* Finds one top-level member of a JSON object fed in pieces of any size,
 * keeping only that member's value: how `usage` is read from an answer of
 * any length in fixed memory. Pure: unit-tested and fuzzed. */
#ifndef AIPROXY_JSCAN_H
#define AIPROXY_JSCAN_H

#include "aiproxy.h"

typedef struct aiproxy_jscan aiproxy_jscan_t;

/* key: the member's name (as it is written, no escapes); values longer
 * than max_value bytes are not kept. */
aiproxy_jscan_t *aiproxy_jscan_create(apr_pool_t *p, const char *key,
                                      apr_size_t max_value);

void aiproxy_jscan_feed(aiproxy_jscan_t *s, const char *buf, apr_size_t len);

/* After the last piece: the value's text (NUL-terminated, no surrounding
 * blanks) when the input was one object that holds the member once, with
 * nothing but blanks after it; else NULL. */
const char *aiproxy_jscan_value(aiproxy_jscan_t *s, apr_size_t *len);

/* After the last piece, when the member is an array: 1 and its element
 * count in *n (how many images an answer's `data` holds, however large
 * they are: counted whatever max_value is); else 0. Same conditions as
 * aiproxy_jscan_value otherwise. */
int aiproxy_jscan_items(aiproxy_jscan_t *s, apr_int64_t *n);

#endif
