/* mod_aiproxy: an authorizing, metering gateway to LLM APIs.
 * This file holds only the module's hooks; each part lives in its own
 * aiproxy_*.c by responsibility. */
#include <apr_atomic.h>
#include <apr_strings.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_filter.h"

#include "aiproxy_admin.h"
#include "aiproxy_oidc_signin.h"
#include "aiproxy_alert.h"
#include "aiproxy_cache.h"
#include "aiproxy_admit.h"
#include "aiproxy_body.h"
#include "aiproxy_forward.h"
#include "aiproxy_lease.h"
#include "aiproxy_meter.h"
#include "aiproxy_metrics.h"
#include "aiproxy_reply.h"
#include "aiproxy_req.h"
#include "aiproxy_counters.h"
#include "aiproxy_stats.h"
#include "aiproxy_usage.h"


static server_rec *log_server;

static void driver_log(int level, const char *domain, const char *message)
{
    /* The driver talks a lot at debug level; keep that out of info. */
    ap_log_error(APLOG_MARK, level, 0, log_server, AIPLOGNO(01001)
                 "mongoc %s: %s", domain, message);
}

static int check_config(apr_pool_t *pconf, apr_pool_t *plog,
                        apr_pool_t *ptemp, server_rec *s)
{
    const char *err = aiproxy_config_finish(pconf, s);

    (void)plog;
    (void)ptemp;
    if (err) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, s,
                     AIPLOGNO(01002) "%s", err);
        return !OK;
    }
    return OK;
}

static int pre_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp)
{
    (void)plog;
    (void)ptemp;
    aiproxy_cache_pre_config(pconf);
    aiproxy_lease_pre_config(pconf);
    return OK;
}

static int post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                       server_rec *s)
{
    (void)plog;
    if (aiproxy_counters_post_config(pconf, s) != OK ||
        aiproxy_metrics_post_config(pconf, s) != OK ||
        aiproxy_lease_post_config(pconf, s) != OK ||
        aiproxy_alert_post_config(pconf, s) != OK ||
        aiproxy_cache_post_config(pconf, ptemp, s,
                                  aiproxy_global(s)->cache_ttl) != OK)
        return !OK;
    if (aiproxy_global(s)->token_keys &&
        (!ap_find_linked_module("mod_proxy.c") ||
         !ap_find_linked_module("mod_proxy_http.c"))) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, s,
                     AIPLOGNO(01003) "AIProxyRoute: needs mod_proxy and "
                     "mod_proxy_http loaded");
        return !OK;
    }
    return OK;
}

static apr_status_t child_exit(void *data)
{
    (void)data;
    aiproxy_child_set_ledger(NULL);
    aiproxy_ledger_driver_cleanup();
    return APR_SUCCESS;
}

/* The store's pool is made per child, after fork: libmongoc pools do not
 * survive fork. */
static void child_init(apr_pool_t *p, server_rec *s)
{
    aiproxy_global_t *g = aiproxy_global(s);
    aiproxy_ledger_t *ledger;
    const char *err = NULL;

    log_server = s;
#ifdef __GLIBC__
    /* Large request bodies and answers are taken from the system and given
     * back when freed: with glibc's moving threshold they would stay in
     * each thread's arena, and a child's size would follow its busiest
     * past, not what it holds. */
    mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
#endif
    aiproxy_cache_child_init(p);
    aiproxy_child_id_init();
    if (!g->token_keys)
        return;
    aiproxy_admit_child_init(p, s);
    aiproxy_ledger_driver_init(driver_log);
    /* Cleanups run in reverse: the ledger's pool goes before the driver. */
    apr_pool_cleanup_register(p, NULL, child_exit, apr_pool_cleanup_null);
    ledger = aiproxy_ledger_open(p, g->store_uri, g->store_db,
                                 g->store_timeout_ms, &err);
    aiproxy_child_set_ledger(ledger);
    if (!ledger)
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, AIPLOGNO(01004)
                     "cannot open the usage store: %s", err);
    else if (aiproxy_stat_slot(AIPROXY_STAT_RECORDS_PENDING) &&
             (err = aiproxy_ledger_start_writer(ledger, p,
                        aiproxy_stat_slot(AIPROXY_STAT_RECORDS_PENDING),
                        g->record_retention)))
        /* Records are then written inline, as before: slower, not wrong. */
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, AIPLOGNO(01005)
                     "%s", err);
    aiproxy_lease_child_init(p, s);
    aiproxy_alert_child_init(p, s);
}

static void register_hooks(apr_pool_t *p)
{
    static const char *const before_proxy[] = { "mod_proxy.c", NULL };

    (void)p;
    ap_hook_pre_config(pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_check_config(check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_map_to_storage(aiproxy_admit_map_to_storage, NULL, NULL,
                           APR_HOOK_MIDDLE);
    /* Before mod_proxy's fixup, which canonicalises the URL we set. */
    ap_hook_fixups(aiproxy_admit, NULL, before_proxy, APR_HOOK_FIRST);
    ap_hook_handler(aiproxy_reply_handler, NULL, NULL, APR_HOOK_FIRST);
    ap_hook_handler(aiproxy_forward_handler, NULL, NULL, APR_HOOK_FIRST);
    ap_hook_handler(aiproxy_usage_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(aiproxy_health_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(aiproxy_targets_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(aiproxy_stats_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(aiproxy_metrics_handler, NULL, NULL, APR_HOOK_MIDDLE);
    aiproxy_stats_register_status_hook();
    aiproxy_forward_register_hooks();
    ap_hook_child_init(aiproxy_admin_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(aiproxy_token_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(aiproxy_admin_api_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(aiproxy_oidc_signin_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_insert_error_filter(aiproxy_meter_insert_error_filter, NULL, NULL,
                                APR_HOOK_MIDDLE);
    /* First, so the access log can show the cost note. */
    ap_hook_log_transaction(aiproxy_meter_log_transaction, NULL, NULL,
                            APR_HOOK_FIRST);
    /* After the settlement above: it counts the charge. */
    ap_hook_log_transaction(aiproxy_metrics_log_transaction, NULL, NULL,
                            APR_HOOK_MIDDLE);
    ap_register_input_filter("AIPROXY_BODY", aiproxy_body_filter, NULL,
                             AP_FTYPE_RESOURCE);
    ap_register_output_filter("AIPROXY_METER", aiproxy_meter_filter, NULL,
                              AP_FTYPE_RESOURCE);
}

AP_DECLARE_MODULE(aiproxy) = {
    STANDARD20_MODULE_STUFF,
    aiproxy_create_dir_config,
    aiproxy_merge_dir_config,
    aiproxy_create_server_config,
    aiproxy_merge_server_config,
    aiproxy_directives,
    register_hooks,
    AP_MODULE_FLAG_NONE
};
