/* Threshold alerts: a thread in each child (one child per host working at
 * a time) finds the accounts of the month that crossed a threshold of
 * their cap or budget, records each crossing once in the store, and
 * delivers it to AIProxyAlertWebhook. Never on a request's path. */
#ifndef AIPROXY_ALERT_H
#define AIPROXY_ALERT_H

#include "httpd.h"
#include "http_config.h"

/* The directives: AIProxyAlertWebhook URL, AIProxyAlertThresholds PCT...,
 * AIProxyAlertInterval SECONDS. */
const char *aiproxy_alert_set_webhook(cmd_parms *cmd, void *dc,
                                      const char *url);
const char *aiproxy_alert_set_thresholds(cmd_parms *cmd, void *dc, int argc,
                                         char *const argv[]);
const char *aiproxy_alert_set_interval(cmd_parms *cmd, void *dc,
                                       const char *arg);

/* Shared memory for "which child scans"; nothing when no webhook. */
int aiproxy_alert_post_config(apr_pool_t *pconf, server_rec *s);
/* After the child's ledger opened: the thread, stopped with p. */
void aiproxy_alert_child_init(apr_pool_t *p, server_rec *s);

#endif
