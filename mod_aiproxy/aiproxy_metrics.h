/* Prometheus metrics: series counted in shared memory on the request path
 * (requests and cost by route, endpoint, model and status; refusals by
 * reason; upstream and store latency), and the aiproxy-metrics handler
 * that serves them with the other counters in the text format 0.0.4. */
#ifndef AIPROXY_METRICS_H
#define AIPROXY_METRICS_H

#include "httpd.h"

/* The shared table, made before the children fork; also hooks the store's
 * round trips (aiproxy_ledger_set_timer). */
int aiproxy_metrics_post_config(apr_pool_t *pconf, server_rec *s);
/* Counts a gateway request once it is done (log_transaction). */
int aiproxy_metrics_log_transaction(request_rec *r);
/* SetHandler aiproxy-metrics. */
int aiproxy_metrics_handler(request_rec *r);

#endif
