/* /health, /targets and /api/stats. */
#ifndef AIPROXY_STATS_H
#define AIPROXY_STATS_H

#include "aiproxy_req.h"

int aiproxy_health_handler(request_rec *r);
int aiproxy_targets_handler(request_rec *r);
int aiproxy_stats_handler(request_rec *r);
void aiproxy_stats_register_status_hook(void);

#endif
