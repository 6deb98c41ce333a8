/* Metering: the output filter that reads usage, settles and reports. */
#ifndef AIPROXY_METER_H
#define AIPROXY_METER_H

#include "aiproxy_req.h"
#include "util_filter.h"

apr_status_t aiproxy_meter_filter(ap_filter_t *f, apr_bucket_brigade *bb);
void aiproxy_meter_insert_error_filter(request_rec *r);
int aiproxy_meter_log_transaction(request_rec *r);

#endif
