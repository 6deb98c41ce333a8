/* A module with deliberate memory errors, built by make -f Makefile.apxs
 * asan and loaded only by t/test_sanitizer.py: it proves that a report from
 * inside httpd reaches the harness and fails a test. Never in a real
 * configuration. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_protocol.h"

static int probe_post_read_request(request_rec *r)
{
    if (!strcmp(r->uri, "/sanitizer-probe/overflow")) {
        /* volatile: the compiler would drop an unused allocation, and
         * UBSan would see a constant size overflowed before ASan does */
        volatile size_t n = 8;
        volatile char *p = malloc(n);
        p[n] = 1;
        free((void *)p);
    }
    else if (!strcmp(r->uri, "/sanitizer-probe/undefined")) {
        volatile int n = INT_MAX;
        n = n + 1;
    }
    else if (!strcmp(r->uri, "/sanitizer-probe/segv")) {
        /* not NULL, which UBSan would report before the fault */
        int *volatile p = (int *)16;
        *p = 1;
    }
    return DECLINED;
}

static void probe_register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_post_read_request(probe_post_read_request, NULL, NULL,
                              APR_HOOK_REALLY_FIRST);
}

AP_DECLARE_MODULE(sanitizer_probe) = {
    STANDARD20_MODULE_STUFF, NULL, NULL, NULL, NULL, NULL, probe_register_hooks, 0
};
