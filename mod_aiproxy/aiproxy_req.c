/* Where a request's state lives, and what a child holds for all of its
 * requests: the store's pool and the request ids. */
#include <apr_atomic.h>
#include <string.h>
#include <apr_strings.h>

#include "httpd.h"
#include "http_config.h"

#include "aiproxy_req.h"

APLOG_USE_MODULE(aiproxy);

static aiproxy_ledger_t *child_ledger;
static char id_prefix[17];
static volatile apr_uint32_t id_counter;

aiproxy_req_t *aiproxy_req_get(request_rec *r)
{
    return ap_get_module_config(r->request_config, &aiproxy_module);
}

aiproxy_ledger_t *aiproxy_child_ledger(void)
{
    return child_ledger;
}

void aiproxy_child_set_ledger(aiproxy_ledger_t *l)
{
    child_ledger = l;
}

void aiproxy_child_id_init(void)
{
    unsigned char rnd[8];
    int i;

    if (apr_generate_random_bytes(rnd, sizeof(rnd)) != APR_SUCCESS)
        apr_cpystrn((char *)rnd, "aiproxy!", sizeof(rnd));
    for (i = 0; i < 8; i++)
        apr_snprintf(id_prefix + 2 * i, 3, "%02x", rnd[i]);
}

const char *aiproxy_next_request_id(apr_pool_t *p)
{
    return apr_psprintf(p, "%s%08x", id_prefix,
                        apr_atomic_inc32(&id_counter));
}

void aiproxy_req_record(const aiproxy_req_t *st, const char *provider,
                        int status, aiproxy_record_t *rec)
{
    memset(rec, 0, sizeof(*rec));
    rec->id = st->id;
    rec->email = st->email;
    rec->month = st->month;
    rec->endpoint = st->endpoint;
    rec->model = st->info.model;
    rec->provider = provider;
    rec->course = st->course;
    rec->time_ms = st->start_ms;
    rec->status = status;
}
