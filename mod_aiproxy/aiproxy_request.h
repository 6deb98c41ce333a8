/* One gateway request's state, shared by admission, the filters, the
 * local replies and settlement. */
#ifndef AIPROXY_REQUEST_H
#define AIPROXY_REQUEST_H

#include "httpd.h"

#include "aiproxy_config.h"
#include "aiproxy_ledger.h"

typedef struct aiproxy_replay aiproxy_replay_t;

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
    aiproxy_usage_t start_usage;    /* usage a stream reports at its start
                                       (Anthropic's message_start) */
    int start_usage_found;
    apr_int64_t in_tokens;          /* the input bound of the reservation */
    apr_int64_t out_tokens;         /* and its output bound */
    int oversize;                   /* a stream event too large to read */
    int drain_cut;                  /* cut while read on for a gone client */
    int streaming;                  /* the response is an SSE stream */
    apr_int64_t delta_tokens;       /* output estimated from the deltas */
    int timed_out;                  /* sent, and no answer in time */
    int error_generated;            /* httpd made the response (e.g. 502) */
    apr_int64_t start_ms;
    /* A local answer instead of forwarding. */
    int reply_status;
    const char *reply_type, *reply_code, *reply_message;
    const char *reply_body;         /* a ready body (e.g. /usage), or NULL */
    const char *reply_ctype;        /* its type when not JSON (cache hits) */
    apr_size_t reply_len;           /* its length when it may hold NULs */
} aiproxy_req_t;

aiproxy_req_t *aiproxy_req_get(request_rec *r);

/* Answers locally: remembers the error and routes the request to our reply
 * handler. Returns OK for the fixups hook to return. */
int aiproxy_reply_error(request_rec *r, aiproxy_req_t *st, int status,
                        const char *type, const char *code,
                        const char *message);
/* Answers locally with a ready JSON body. */
/* The one reply to a store that did not answer: 503 store_unavailable.
 * The caller logs why, with its own tag. */
int aiproxy_reply_store_down(request_rec *r, aiproxy_req_t *st);
int aiproxy_reply_json(request_rec *r, aiproxy_req_t *st, int status,
                       const char *body);
/* An error body in OpenAI's shape. */
const char *aiproxy_error_body(apr_pool_t *p, const char *type,
                               const char *code, const char *message);
int aiproxy_reply_handler(request_rec *r);

/* Body keeping (aiproxy_body.c). */
int aiproxy_body_read(request_rec *r, apr_off_t limit, char **buf,
                      apr_size_t *len);
/* Counts n more bytes this request holds against AIProxyChildMemory: 0
 * when the child holds as much as it may (a request's first
 * AIPROXY_BODY_FREE bytes always fit). Given back with the request. */
int aiproxy_body_take(request_rec *r, apr_size_t n);
#define AIPROXY_BODY_FREE (1024 * 1024)
/* Installs the replay filter (once) and sets what it replays from the
 * start: each upstream attempt gets the whole body again. */
aiproxy_replay_t *aiproxy_body_replay(request_rec *r, aiproxy_replay_t *ctx,
                                      const char *buf, apr_size_t len);
apr_status_t aiproxy_body_filter(ap_filter_t *f, apr_bucket_brigade *bb,
                                 ap_input_mode_t mode, apr_read_type_e block,
                                 apr_off_t readbytes);

/* Admission (aiproxy_admit.c): the fixups hook. */
int aiproxy_admit(request_rec *r);
const char *aiproxy_month_of(apr_pool_t *p, apr_time_t t);
/* Who is calling: the token from the request headers, then the user's
 * settings from the store (revocation, cap). On failure answers the request
 * (401 or 503) and returns its status; OK on success with st->email set. */
int aiproxy_identify(request_rec *r, aiproxy_req_t *st, aiproxy_api_t api,
                     aiproxy_user_t *user);

/* Metering (aiproxy_meter.c). */
apr_status_t aiproxy_meter_filter(ap_filter_t *f, apr_bucket_brigade *bb);
void aiproxy_meter_insert_error_filter(request_rec *r);
int aiproxy_meter_log_transaction(request_rec *r);
void aiproxy_meter_set_headers(request_rec *r, apr_table_t *t,
                               aiproxy_money_t cost,
                               const aiproxy_month_t *m);

/* Forwarding with failover (aiproxy_forward.c). */
int aiproxy_forward_handler(request_rec *r);
/* Hooks mod_proxy's fixups: only listed request headers go upstream. */
void aiproxy_forward_register_hooks(void);

/* Counters shared by all children (aiproxy_stats.c). */
typedef enum {
    AIPROXY_STAT_REQUESTS = 0,
    AIPROXY_STAT_CACHE_HITS,
    AIPROXY_STAT_CACHE_MISSES,
    AIPROXY_STAT_CACHE_STORES,
    AIPROXY_STAT_RETRIES,
    AIPROXY_STAT_RATE_LIMITED,
    AIPROXY_STAT_OVER_CAP,
    AIPROXY_STAT_UPSTREAM_ERRORS,
    AIPROXY_STAT_BUSY,              /* large requests refused: child full */
    AIPROXY_STAT_RECORDS_PENDING,   /* a gauge: records not yet written */
    AIPROXY_STAT_COUNT
} aiproxy_stat_t;
void aiproxy_stat_inc(aiproxy_stat_t which);
/* The shared slot itself, for code that moves it both ways; NULL before
 * post_config made the shared memory. */
apr_uint32_t *aiproxy_stat_slot(aiproxy_stat_t which);
/* Bumped by this server's admin API whenever a cap or a revocation changes,
 * so every child drops the user settings it remembers at once. */
void aiproxy_users_changed(void);
apr_uint32_t aiproxy_users_generation(void);
int aiproxy_stats_post_config(apr_pool_t *pconf, server_rec *s);
/* An attempt's outcome for a provider key: status the upstream's answer (0:
 * none), answered 0 when the attempt gave the client nothing. A 401, 403,
 * 429 or 5xx, or no answer, is the key's failure: counted, logged at warn
 * at most once a minute per key, and 3 in a row make /health name the
 * provider degraded. */
void aiproxy_stats_key_result(request_rec *r, const aiproxy_provider_t *pv,
                              int key, int status, int answered);
int aiproxy_health_handler(request_rec *r);
int aiproxy_targets_handler(request_rec *r);
int aiproxy_stats_handler(request_rec *r);
void aiproxy_stats_register_status_hook(void);

/* /usage (aiproxy_usage.c). */
int aiproxy_usage_handler(request_rec *r);
/* The admins' listing (skip, limit, month, email, sort) for a request
 * whose caller is identified in st; answers 403 to a non-admin. Also
 * served as /admin/api/usage (aiproxy_admin.c). */
int aiproxy_usage_list(request_rec *r, aiproxy_req_t *st);

/* Per-child memos of verified tokens and user settings (aiproxy_admit.c). */
void aiproxy_admit_child_init(apr_pool_t *p, server_rec *s);

/* Per-process state (mod_aiproxy.c). */
aiproxy_ledger_t *aiproxy_child_ledger(void);
const char *aiproxy_next_request_id(apr_pool_t *p);

#endif
