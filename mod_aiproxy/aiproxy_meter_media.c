/* Metering the media endpoints' answers by their units: the images an
 * answer holds (its `data` items, counted as they pass, however large), a
 * transcription's duration (verbose_json's `duration`, or a `usage` of
 * type duration), and audio/speech's audio, charged its characters before
 * its first byte and passed as it comes. What tells no units is charged
 * its reservation (aiproxy_meter_settle). */
#include <string.h>
#include <apr_strings.h>

#include "httpd.h"
#include "http_protocol.h"
#include "util_filter.h"

#include "aiproxy_json.h"
#include "aiproxy_media.h"
#include "aiproxy_meter_int.h"

/* A transcription's duration is a number: a few bytes. */
#define DURATION_TEXT_MAX 64

void aiproxy_meter_media_init(aiproxy_meter_t *m)
{
    request_rec *r = m->r;
    aiproxy_endpoint_t ep = aiproxy_endpoint_kind(m->st->endpoint);

    /* An error is JSON, held and passed like any; a success to speech is
     * audio, however its upstream labels it. */
    if (ep == AIPROXY_EP_SPEECH && r->status < 300) {
        m->mode = MODE_PASS;
        return;
    }
    m->mode = MODE_BUFFER;
    if (r->status >= 300)
        return;
    if (ep == AIPROXY_EP_IMAGES)
        m->media_scan = aiproxy_jscan_create(r->pool, "data", 0);
    else if (ep == AIPROXY_EP_TRANSCRIPTIONS)
        m->media_scan = aiproxy_jscan_create(r->pool, "duration",
                                             DURATION_TEXT_MAX);
}

/* `usage` {"type": "duration", "seconds": N}, as OpenAI reports
 * whisper's in json and verbose_json: N read as its text, so a fraction
 * is not lost to a float. */
static int usage_seconds(apr_pool_t *p, aiproxy_meter_t *m, apr_int64_t *ms)
{
    apr_size_t len, n;
    const char *text = m->scan ? aiproxy_jscan_value(m->scan, &len) : NULL;
    const char *err, *type, *num;
    aiproxy_json_t *u;
    aiproxy_jscan_t *sec;

    if (!text || !(u = aiproxy_json_parse(p, text, len, &err)) ||
        !(type = aiproxy_json_string(aiproxy_json_get(u, "type"))) ||
        strcmp(type, "duration"))
        return 0;
    sec = aiproxy_jscan_create(p, "seconds", DURATION_TEXT_MAX);
    aiproxy_jscan_feed(sec, text, len);
    return (num = aiproxy_jscan_value(sec, &n)) &&
           aiproxy_duration_ms(num, n, ms);
}

void aiproxy_meter_media_held(aiproxy_meter_t *m)
{
    aiproxy_req_t *st = m->st;
    apr_size_t len;
    apr_int64_t n, ms;
    const char *text;
    apr_pool_t *sub;

    if (!m->media_scan || m->r->status >= 400)
        return;
    if (aiproxy_endpoint_kind(st->endpoint) == AIPROXY_EP_IMAGES) {
        /* The images it holds: a 200 with fewer pays fewer. */
        if (aiproxy_jscan_items(m->media_scan, &n)) {
            st->meter.media_found = 1;
            st->meter.media_cost = aiproxy_money_times(n, st->media_each);
        }
        return;
    }
    apr_pool_create(&sub, m->r->pool);
    if (((text = aiproxy_jscan_value(m->media_scan, &len)) &&
         aiproxy_duration_ms(text, len, &ms)) || usage_seconds(sub, m, &ms)) {
        st->meter.media_found = 1;
        st->meter.media_cost = aiproxy_audio_cost(st->price, ms);
    }
    apr_pool_destroy(sub);
}

apr_status_t aiproxy_meter_pass(ap_filter_t *f, aiproxy_meter_t *m,
                                apr_bucket_brigade *bb)
{
    aiproxy_req_t *st = m->st;

    /* Known at admission, charged before the headers go. */
    if (!m->passed) {
        m->passed = 1;
        st->meter.media_found = 1;
        st->meter.media_cost = st->reserved;
        aiproxy_meter_settle(f->r, st, f->r->status);
        aiproxy_meter_final_headers(f->r, st);
    }
    return ap_pass_brigade(f->next, bb);
}
