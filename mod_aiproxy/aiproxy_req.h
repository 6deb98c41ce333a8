/* One gateway request's state, kept in its request_config, and what a
 * child holds for every request (its store pool, its request ids). */
#ifndef AIPROXY_REQ_H
#define AIPROXY_REQ_H

#include "httpd.h"
#include "aiproxy_config.h"
#include "aiproxy_ledger.h"

typedef struct aiproxy_replay aiproxy_replay_t;

/* A body as sent to a provider that names the model otherwise. */
typedef struct {
    char *body;
    apr_size_t len;
} aiproxy_aliased_t;

typedef struct {
    aiproxy_global_t *g;
    const aiproxy_dir_conf_t *dir;
    const char *endpoint;
    aiproxy_api_t api;              /* the wire format of the endpoint */
    apr_array_header_t *targets;    /* aiproxy_target_t: who may serve it */
    aiproxy_provider_t *provider;   /* serving the current attempt */
    int attempt, last_attempt;
    int attempt_failed;             /* answered 429/5xx: try the next one */
    int upstream_status;            /* the attempt's answer; 0: none */
    int committed;                  /* the meter passed bytes to the client */
    int retries;
    char *body;                     /* as forwarded (before model aliases) */
    apr_size_t body_out_len;
    aiproxy_replay_t *replay;
    apr_hash_t *aliased;            /* model name -> aiproxy_aliased_t */
    const unsigned char *cache_key; /* set when the response may be cached */
    const char *email;
    const char *month;              /* YYYY-MM at admission, UTC */
    const char *id;                 /* request id, also the hold's key */
    aiproxy_request_info_t info;
    const aiproxy_price_t *price;
    apr_size_t body_len;
    int body_read;                  /* the request body is in hand */
    aiproxy_money_t cap;
    aiproxy_money_t reserved;       /* > 0 while a hold is outstanding */
    int held;                       /* a hold exists in the store */
    int settled;
    aiproxy_month_t month_state;    /* as of admission, then settlement */
    aiproxy_usage_t usage;
    int usage_found;                /* the provider's final usage was read */
    aiproxy_stream_t stream;        /* what a streamed answer told */
    int asked_stream_usage;         /* for the client, who did not ask */
    apr_int64_t in_tokens;          /* the input bound of the reservation */
    apr_int64_t out_tokens;         /* and its output bound */
    int oversize;                   /* a stream event too large to read */
    int drain_cut;                  /* cut while read on for a gone client */
    int streaming;                  /* the response is an SSE stream */
    int timed_out;                  /* sent, and no answer in time */
    int error_generated;            /* httpd made the response (e.g. 502) */
    apr_int64_t start_ms;
    /* A local answer instead of forwarding. */
    int reply_status;
    const char *reply_type, *reply_code, *reply_message;
    const char *reply_body;         /* a ready body (e.g. /usage), or NULL */
    const char *reply_ctype;        /* its type when not JSON (cache hits) */
    apr_size_t reply_len;           /* its length when it may hold NULs */
    int reply_has_len;
} aiproxy_req_t;

/* The request's state; NULL when the gateway does not handle it. */
aiproxy_req_t *aiproxy_req_get(request_rec *r);
/* Per-process state, set up by child_init. */
aiproxy_ledger_t *aiproxy_child_ledger(void);
const char *aiproxy_next_request_id(apr_pool_t *p);

void aiproxy_child_set_ledger(aiproxy_ledger_t *l);
/* Request ids: a random per-child prefix and a counter. */
void aiproxy_child_id_init(void);

#endif
