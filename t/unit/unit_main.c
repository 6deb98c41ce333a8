/* Unit tests of the pure parts of mod_aiproxy, one file per unit
 * (t/unit/test_*.c), run by this one program: one line per failed check,
 * then "N passed, N failed" alone on the last line; the exit status is 1
 * when any check failed. */
#include "harness.h"

static int n_passed, n_failed;
const char *current_test = "";

void check(int ok, const char *what, const char *file, int line)
{
    if (ok) {
        n_passed++;
        return;
    }
    n_failed++;
    printf("FAIL %s %s:%d: %s\n", current_test, file, line, what);
}

void check_str(const char *got, const char *want, const char *what,
               const char *file, int line)
{
    if (got && want && !strcmp(got, want)) {
        n_passed++;
        return;
    }
    n_failed++;
    printf("FAIL %s %s:%d: %s: got %s%s%s, want \"%s\"\n", current_test,
           file, line, what,
           got ? "\"" : "", got ? got : "NULL", got ? "\"" : "",
           want ? want : "NULL");
}

void check_int(apr_int64_t got, apr_int64_t want, const char *what,
               const char *file, int line)
{
    if (got == want) {
        n_passed++;
        return;
    }
    n_failed++;
    printf("FAIL %s %s:%d: %s: got %" APR_INT64_T_FMT ", want %"
           APR_INT64_T_FMT "\n", current_test, file, line, what, got, want);
}

static const unit_test_t *const units[] = {
    unit_token, unit_secret, unit_cost, unit_inspect, unit_json, unit_sse,
    unit_jscan, unit_memo, unit_google, unit_route, unit_api, unit_roster,
    unit_report, unit_media, unit_oidc, unit_xlate,
};

int main(void)
{
    apr_pool_t *root, *p;
    apr_size_t u;
    const unit_test_t *t;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (apr_initialize() != APR_SUCCESS || apr_pool_create(&root, NULL))
        return 2;
    for (u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
        for (t = units[u]; t->name; t++) {
            current_test = t->name;
            apr_pool_create(&p, root);
            t->fn(p);
            apr_pool_destroy(p);
        }
    }
    apr_pool_destroy(root);
    apr_terminate();
    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed ? 1 : 0;
}
