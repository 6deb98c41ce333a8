/* What the meter's files (aiproxy_meter.c: the filter and settlement;
 * aiproxy_meter_stream.c: streams; aiproxy_meter_held.c: answers held
 * whole) share. */
#ifndef AIPROXY_METER_INT_H
#define AIPROXY_METER_INT_H

#include "httpd.h"
#include "util_filter.h"

#include "aiproxy_jscan.h"
#include "aiproxy_req.h"
#include "aiproxy_sse.h"

#define MAX_SSE_EVENT (1024 * 1024)
/* A non-streamed answer is held in memory up to this, then in a file. */
#define HELD_IN_MEMORY (1024 * 1024)
/* An answer larger than this is not passed on (the largest real ones,
 * embeddings of 2,048 inputs at 3,072 dimensions, are ~60 MB). */
#define MAX_HELD_ANSWER ((apr_off_t)128 * 1024 * 1024)

typedef enum {
    MODE_DISCARD,  /* a failed attempt that another will replace */
    MODE_BUFFER,   /* hold the body, price it at the end */
    MODE_STREAM,   /* SSE: pass events, read usage on the way */
    MODE_MODELS,   /* hold the model list and keep allowed models only */
    MODE_ERROR,    /* replace an error page of httpd's with JSON */
    MODE_PASS      /* audio/speech: charged at once, its audio passed */
} aiproxy_meter_mode_t;

typedef struct {
    request_rec *r;
    aiproxy_req_t *st;
    int attempt;
    aiproxy_meter_mode_t mode;
    apr_bucket_brigade *held;
    aiproxy_sse_t *sse;
    apr_bucket_brigade *out;
    aiproxy_endpoint_t ep;
    apr_pool_t *event_pool; /* what reading one event takes, then cleared */
    int client_gone;        /* the stream is read to its end for its usage */
    apr_time_t gone_at;     /* since when */
    aiproxy_jscan_t *scan;  /* finds `usage` in a held answer as it comes */
    apr_off_t held_len;
    apr_file_t *spill;      /* where a held answer past HELD_IN_MEMORY goes */
    apr_uint64_t spilled;   /* its bytes, counted in child_spilled */
    const char *unheld;     /* why the answer could not be held, if so */
    aiproxy_jscan_t *media_scan; /* a media answer's units (images' data,
                                    a transcription's duration) */
    int passed;             /* MODE_PASS: charged, headers set */
    struct aiproxy_xlate_stream *xs; /* a translated stream's state */
} aiproxy_meter_t;

/* Charges the request once; later calls do nothing. */
void aiproxy_meter_settle(request_rec *r, aiproxy_req_t *st, int status);
/* The final cost and the month in the response headers. */
void aiproxy_meter_final_headers(request_rec *r, aiproxy_req_t *st);
/* The filter for a stream, and for an answer held whole. */
apr_status_t aiproxy_meter_stream(ap_filter_t *f, aiproxy_meter_t *m,
                                  apr_bucket_brigade *bb);
apr_status_t aiproxy_meter_held(ap_filter_t *f, aiproxy_meter_t *m,
                                apr_bucket_brigade *bb);
/* The media endpoints (aiproxy_meter_media.c): how an answer is read (a
 * success to audio/speech passes, MODE_PASS; others are held and their
 * units scanned), the units a held answer reports, and passing. */
void aiproxy_meter_media_init(aiproxy_meter_t *m);
void aiproxy_meter_media_held(aiproxy_meter_t *m);
apr_status_t aiproxy_meter_pass(ap_filter_t *f, aiproxy_meter_t *m,
                                apr_bucket_brigade *bb);

#endif
