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

/* Forwarding: who may serve the request and how the attempts went. */
typedef struct {
    apr_array_header_t *targets;    /* aiproxy_target_t: who may serve it */
    aiproxy_provider_t *provider;   /* serving the current attempt */
    int n, last;                    /* this attempt; it is the last */
    int failed;                     /* answered 429/5xx: try the next one */
    int upstream_status;            /* the attempt's answer; 0: none */
    int committed;                  /* the meter passed bytes to the client */
    int retries;
    aiproxy_replay_t *replay;
    apr_hash_t *aliased;            /* model name -> aiproxy_aliased_t;
                                       "\n" name: translated bodies */
    aiproxy_json_t *xlated;         /* the body in the other API's format,
                                       when a target speaks it */
    apr_time_t sent_at;             /* the first attempt; 0: not forwarded */
    apr_time_t answered_at;         /* an upstream's headers came: metrics */
} aiproxy_fwd_t;

/* Metering: what the answer told and how it was charged. */
typedef struct {
    aiproxy_usage_t usage;
    int usage_found;                /* the provider's final usage was read */
    aiproxy_stream_t stream;        /* what a streamed answer told */
    int asked_stream_usage;         /* for the client, who did not ask */
    int oversize;                   /* a stream event too large to read */
    int drain_cut;                  /* cut while read on for a gone client */
    int streaming;                  /* the response is an SSE stream */
    int timed_out;                  /* sent, and no answer in time */
    int error_generated;            /* httpd made the response (e.g. 502) */
    int settled;
    aiproxy_money_t cost;           /* charged at settlement */
    int media_found;                /* a media answer told its units: */
    aiproxy_money_t media_cost;     /* what they cost */
} aiproxy_metering_t;

/* A local answer instead of forwarding. */
typedef struct {
    int status;                     /* 0: none */
    const char *type, *code, *message;
    const char *body;               /* a ready body (e.g. /usage), or NULL */
    const char *ctype;              /* its type when not JSON (cache hits) */
    apr_size_t len;                 /* its length when it may hold NULs */
    int has_len;
} aiproxy_local_reply_t;

/* One request's state, by phase: admission fills the first part. */
typedef struct {
    aiproxy_global_t *g;
    const aiproxy_dir_conf_t *dir;
    const char *endpoint;
    aiproxy_api_t api;              /* the wire format of the endpoint */
    int is_models;                  /* a model list, not a metered call */
    int free_ep;                    /* a free endpoint: no hold, $0, its
                                       record written when answered */
    int media_ep;                   /* billed by its own unit: images,
                                       audio minutes, characters */
    aiproxy_money_t media_each;     /* images: the price of one */
    const char *email;
    const char *month;              /* YYYY-MM at admission, UTC */
    const char *id;                 /* request id, also the hold's key */
    char *body;                     /* as forwarded (before model aliases) */
    apr_size_t body_len, body_out_len;
    int body_read;                  /* the request body is in hand */
    const unsigned char *cache_key; /* set when the response may be cached */
    aiproxy_request_info_t info;
    const aiproxy_price_t *price;
    apr_int64_t in_tokens;          /* the input bound of the reservation */
    apr_int64_t out_tokens;         /* and its output bound */
    aiproxy_money_t cap;
    aiproxy_money_t reserved;       /* the most it may cost: the hold */
    int held;                       /* a hold exists in the store, or: */
    int ticket;                     /* taken from a lease: its ticket + 1 */
    aiproxy_month_t month_state;    /* as of admission, then settlement */
    /* The course the token names, charged the same as its user. */
    const char *course;
    const char *course_account;     /* "#id": its ledger account */
    aiproxy_money_t course_budget;
    const char *course_models;      /* "\nm1\nm2\n", "": any */
    int course_held, course_ticket; /* as held and ticket, for the course */
    aiproxy_month_t course_month;
    apr_int64_t start_ms;
    aiproxy_fwd_t fwd;
    aiproxy_metering_t meter;
    aiproxy_local_reply_t reply;
} aiproxy_req_t;

/* The settlement record of a request, its identity filled in (the one
 * place it is built): who, when, what, from which provider, with what
 * status; the money is the caller's. */
void aiproxy_req_record(const aiproxy_req_t *st, const char *provider,
                        int status, aiproxy_record_t *rec);
/* The request's state; NULL when the gateway does not handle it. */
aiproxy_req_t *aiproxy_req_get(request_rec *r);
/* Per-process state, set up by child_init. */
aiproxy_ledger_t *aiproxy_child_ledger(void);
const char *aiproxy_next_request_id(apr_pool_t *p);

void aiproxy_child_set_ledger(aiproxy_ledger_t *l);
/* Request ids: a random per-child prefix and a counter. */
void aiproxy_child_id_init(void);

#endif
