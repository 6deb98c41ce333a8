/* The unit tests' harness: checks that count and print one line per
 * failure. Each t/unit/test_<unit>.c holds one unit's tests and a table of
 * them, unit_<unit>[], ending in { NULL, NULL }; unit_main.c runs every
 * table and prints "N passed, N failed" alone on the last line. */
#ifndef AIPROXY_UNIT_HARNESS_H
#define AIPROXY_UNIT_HARNESS_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <apr_general.h>
#include <apr_strings.h>

#include "aiproxy_json.h"
#include "aiproxy_cost.h"
#include "aiproxy_inspect.h"
#include "aiproxy_usage_read.h"

extern const char *current_test;   /* for messages of a test's own */

void check(int ok, const char *what, const char *file, int line);
void check_str(const char *got, const char *want, const char *what,
               const char *file, int line);
void check_int(apr_int64_t got, apr_int64_t want, const char *what,
               const char *file, int line);

#define CHECK(c) check(!!(c), #c, __FILE__, __LINE__)
#define CHECK_STR(got, want) check_str((got), (want), #got, __FILE__, __LINE__)
#define CHECK_INT(got, want) \
    check_int((apr_int64_t)(got), (apr_int64_t)(want), #got, __FILE__, __LINE__)
/* A rejection that names the check we meant to trip, so a test cannot pass
 * for the wrong reason. */
#define CHECK_REJECT(why, word) \
    check((why) != NULL && strstr((why), (word)) != NULL, \
          apr_psprintf(p, "%s rejected mentioning '%s' (got %s)", #why, \
                       (word), (why) ? (why) : "NULL"), __FILE__, __LINE__)

typedef void unit_test_fn(apr_pool_t *p);
typedef struct {
    const char *name;
    unit_test_fn *fn;
} unit_test_t;

/* Helpers several units use. */
static inline aiproxy_json_t *parse(apr_pool_t *p, const char *text)
{
    const char *err = NULL;

    return aiproxy_json_parse(p, text, strlen(text), &err);
}

static inline aiproxy_usage_t usage_of(apr_pool_t *p, const char *body,
                                       aiproxy_api_t api, int *found)
{
    aiproxy_usage_t u;

    memset(&u, 0, sizeof(u));
    *found = aiproxy_usage_from_body(p, body, strlen(body), api, &u);
    return u;
}

#define CHECK_USAGE(u, in, cached, write, out) do { \
        CHECK_INT((u).input, in); \
        CHECK_INT((u).cached_input, cached); \
        CHECK_INT((u).cache_write, write); \
        CHECK_INT((u).output, out); \
    } while (0)

/* One table per unit (t/unit/test_<unit>.c). */
extern const unit_test_t unit_token[], unit_secret[], unit_cost[],
    unit_inspect[], unit_json[], unit_sse[], unit_jscan[], unit_memo[], unit_oidc[],
    unit_google[], unit_route[], unit_api[], unit_roster[], unit_report[],
    unit_media[], unit_xlate[];

#endif
