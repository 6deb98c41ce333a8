/* Admission of the media endpoints, billed by their own units: the most a
 * request can cost, reserved like tokens. images/generations: n images of
 * the asked size and quality; audio/speech: the input's characters (the
 * charge, known now); audio/transcriptions: a form whose model is read in
 * C, its minutes bounded by the upload's size at the lowest bitrate. */
#include <string.h>
#include <apr_strings.h>

#include "httpd.h"
#include "http_protocol.h"

#include "aiproxy_admit_int.h"
#include "aiproxy_media.h"
#include "aiproxy_multipart.h"
#include "aiproxy_reply.h"

static int refuse(request_rec *r, aiproxy_req_t *st, const char *code,
                  const char *message)
{
    return aiproxy_reply_error(r, st, HTTP_BAD_REQUEST,
                               "invalid_request_error", code, message);
}

/* The model's price, when it has the endpoint's unit. */
static int priced(request_rec *r, aiproxy_req_t *st, aiproxy_endpoint_t ep)
{
    const aiproxy_price_t *p = apr_hash_get(st->g->prices, st->info.model,
                                            APR_HASH_KEY_STRING);
    int has = p && (ep == AIPROXY_EP_IMAGES ? p->images != NULL
                    : ep == AIPROXY_EP_SPEECH ? p->per_char > 0
                    : p->per_minute > 0);

    if (!has)
        return aiproxy_reply_error(r, st, HTTP_FORBIDDEN,
                                   "invalid_request_error", "model_not_priced",
                                   apr_psprintf(r->pool, "Model %s has no "
                                                "price for %s here.",
                                                st->info.model, st->endpoint));
    st->price = p;
    st->media_ep = 1;
    return DECLINED;
}

/* A string field, or its default when absent or null; NULL when present
 * and not a non-empty string. */
static const char *string_or(const aiproxy_json_t *root, const char *key,
                             const char *dflt)
{
    const aiproxy_json_t *v = aiproxy_json_get(root, key);
    const char *s;

    if (!v || aiproxy_json_is_null(v))
        return dflt;
    s = aiproxy_json_string(v);
    return s && *s ? s : NULL;
}

/* n images of one size and quality, each priced: n x its price. */
static int admit_images(request_rec *r, aiproxy_req_t *st)
{
    const aiproxy_json_t *root = st->info.root, *v;
    const char *size = string_or(root, "size", AIPROXY_IMAGE_SIZE);
    const char *quality = string_or(root, "quality", AIPROXY_IMAGE_QUALITY);
    apr_int64_t n = 1, most = st->price->max_images > 0
                              ? st->price->max_images : AIPROXY_IMAGES_MAX;
    const aiproxy_image_price_t *ip;

    if ((v = aiproxy_json_get(root, "n")) && !aiproxy_json_is_null(v) &&
        (!aiproxy_json_int(v, &n) || n < 1 || n > most))
        return refuse(r, st, "invalid_n", apr_psprintf(r->pool, "'n' must "
                      "be an integer from 1 to %" APR_INT64_T_FMT " for %s.",
                      most, st->info.model));
    if (!size || !quality)
        return refuse(r, st, "invalid_request", "'size' and 'quality' must "
                      "be non-empty strings.");
    /* Never $0: what has no price is not offered. */
    if (!(ip = aiproxy_image_price(st->price, size, quality)))
        return refuse(r, st, "image_size_not_priced", apr_psprintf(r->pool,
                      "%s images of size %s and quality %s are not offered "
                      "here. Priced: %s.", st->info.model, size, quality,
                      aiproxy_image_prices(r->pool, st->price)));
    st->media_each = ip->each;
    st->reserved = aiproxy_money_times(n, ip->each);
    /* What was priced is what is asked: left out, the provider would pick
     * its own default (OpenAI's quality "auto" may be a dearer one). */
    if ((aiproxy_json_string(aiproxy_json_get(root, "size")) == NULL ||
         aiproxy_json_string(aiproxy_json_get(root, "quality")) == NULL) &&
        (aiproxy_json_set_string(st->info.root, "size", size) != 0 ||
         aiproxy_json_set_string(st->info.root, "quality", quality) != 0 ||
         !(st->body = aiproxy_json_dump(r->pool, st->info.root,
                                        &st->body_out_len))))
        return aiproxy_reply_error(r, st, HTTP_INTERNAL_SERVER_ERROR,
                                   "server_error", "server_error", "The "
                                   "request could not be prepared.");
    return DECLINED;
}

/* The input's characters at the model's price: the charge itself. */
static int admit_speech(request_rec *r, aiproxy_req_t *st)
{
    const aiproxy_json_t *root = st->info.root;
    const char *input = aiproxy_json_string(aiproxy_json_get(root, "input"));
    const char *sf = string_or(root, "stream_format", "audio");

    if (!input || !*input)
        return refuse(r, st, "invalid_request", "'input' must be a non-empty "
                      "string.");
    /* Audio bytes pass as they come; events would be read as a stream. */
    if (!sf || strcmp(sf, "audio"))
        return refuse(r, st, "stream_not_supported", "Only stream_format "
                      "'audio' is offered here.");
    st->reserved = aiproxy_money_times(aiproxy_utf8_chars(input),
                                       st->price->per_char);
    return DECLINED;
}

int aiproxy_admit_media(request_rec *r, aiproxy_req_t *st, char *body)
{
    aiproxy_endpoint_t ep = aiproxy_endpoint_kind(st->endpoint);
    int rc;

    if (st->info.stream)
        return refuse(r, st, "stream_not_supported", apr_psprintf(r->pool,
                      "%s is not streamed here: send it without 'stream'.",
                      st->endpoint));
    if ((rc = priced(r, st, ep)) != DECLINED)
        return rc;
    st->body = NULL;
    rc = ep == AIPROXY_EP_IMAGES ? admit_images(r, st) : admit_speech(r, st);
    if (rc != DECLINED)
        return rc;
    /* Forwarded as sent (but an image's size and quality, named when
     * left out): nothing else in it needs bounding by the gateway. */
    if (!st->body) {
        st->body = body;
        st->body_out_len = st->body_len;
    }
    return DECLINED;
}

/* A text field of the form: its bytes as a string, NULL when absent;
 * *bad when given twice, as a file, or with NUL or line breaks. */
static const char *form_text(apr_pool_t *p, const apr_array_header_t *parts,
                             const char *name, int *bad)
{
    int dup;
    const aiproxy_form_part_t *f = aiproxy_form_get(parts, name, &dup);

    if (!f)
        return NULL;
    if (dup || f->filename || f->len > 256 || memchr(f->value, '\0', f->len) ||
        memchr(f->value, '\r', f->len) || memchr(f->value, '\n', f->len)) {
        *bad = 1;
        return NULL;
    }
    return apr_pstrmemdup(p, f->value, f->len);
}

int aiproxy_admit_media_form(request_rec *r, aiproxy_req_t *st, char *body)
{
    apr_array_header_t *parts;
    const aiproxy_form_part_t *file;
    const char *why, *model, *stream;
    apr_int64_t bound_ms, declared_ms = 0;
    int bad = 0, dup, rc;

    if ((why = aiproxy_multipart_parse(r->pool, apr_table_get(r->headers_in,
                                       "Content-Type"), body, st->body_len,
                                       &parts)))
        return refuse(r, st, "invalid_request", why);
    /* The model is the form's, read as the provider reads it: one field. */
    model = form_text(r->pool, parts, "model", &bad);
    if (bad || (model && !*model))
        return refuse(r, st, "invalid_request", "'model' must be one "
                      "non-empty text field.");
    if (!model)
        return refuse(r, st, "invalid_request", "The form has no 'model'.");
    stream = form_text(r->pool, parts, "stream", &bad);
    if (bad || (stream && strcmp(stream, "false")))
        return refuse(r, st, "stream_not_supported", "audio/transcriptions "
                      "is not streamed here: send it without 'stream'.");
    file = aiproxy_form_get(parts, "file", &dup);
    if (!file || dup || !file->filename || !file->len)
        return refuse(r, st, "invalid_request", "The form needs one "
                      "non-empty 'file' part with a filename.");
    memset(&st->info, 0, sizeof(st->info));
    st->info.model = model;
    st->info.max_output = -1;
    st->info.choices = 1;
    if (!aiproxy_admit_model_allowed(st, model))
        return aiproxy_reply_error(r, st, HTTP_FORBIDDEN,
                                   "invalid_request_error", "model_not_allowed",
                                   apr_psprintf(r->pool, "Model %s is not "
                                                "allowed here. Allowed: %s.",
                                                model, apr_array_pstrcat(
                                                r->pool, aiproxy_admit_model_names(
                                                r->pool, st), ',')));
    if ((rc = priced(r, st, AIPROXY_EP_TRANSCRIPTIONS)) != DECLINED)
        return rc;
    /* The most audio the file can hold at the lowest bitrate, or more
     * when its header says so (it can only raise the bound). */
    bound_ms = 1000 * aiproxy_audio_max_seconds((apr_int64_t)file->len);
    if (aiproxy_audio_declared_ms((const unsigned char *)file->value,
                                  file->len, &declared_ms) &&
        declared_ms > bound_ms)
        bound_ms = declared_ms;
    st->reserved = aiproxy_audio_cost(st->price, bound_ms);
    st->body = body;
    st->body_out_len = st->body_len;
    return DECLINED;
}
