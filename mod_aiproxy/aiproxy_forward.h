/* Forwarding with failover: one mod_proxy attempt per provider key. */
#ifndef AIPROXY_FORWARD_H
#define AIPROXY_FORWARD_H

#include "httpd.h"

int aiproxy_forward_handler(request_rec *r);
/* Hooks mod_proxy's fixups: only listed request headers go upstream. */
void aiproxy_forward_register_hooks(void);

#endif
