/* The media endpoints' units and prices: images/generations per image by
 * size and quality, audio/transcriptions per minute of audio (reserved
 * from the upload's size), audio/speech per input character. Pure: unit
 * tested. */
#ifndef AIPROXY_MEDIA_H
#define AIPROXY_MEDIA_H

#include "aiproxy.h"
#include "aiproxy_cost.h"

/* One image price: USD per image of a size ("1024x1024") and quality. */
typedef struct {
    const char *size, *quality;
    aiproxy_money_t each;
} aiproxy_image_price_t;

/* One AIProxyPrice word when it is a media unit (*mine set): NAME is
 * per_million_chars, per_minute, image_SIZE_QUALITY or max_images, value
 * what follows '=' (NULL: none). NULL, or what is wrong with it. */
const char *aiproxy_price_media_field(apr_pool_t *p, aiproxy_price_t *price,
                                      const char *name, const char *value,
                                      int *mine);

/* What OpenAI's images/generations assume when a body names none. */
#define AIPROXY_IMAGE_SIZE "1024x1024"
#define AIPROXY_IMAGE_QUALITY "standard"
#define AIPROXY_IMAGES_MAX 10

/* The price of one image of size and quality, or NULL when not priced. */
const aiproxy_image_price_t *aiproxy_image_price(const aiproxy_price_t *price,
                                                 const char *size,
                                                 const char *quality);
/* The priced size/quality pairs, "1024x1024/standard, ...", for messages. */
const char *aiproxy_image_prices(apr_pool_t *p, const aiproxy_price_t *price);

/* Unicode code points in a UTF-8 string (what audio/speech is billed by). */
apr_int64_t aiproxy_utf8_chars(const char *s);

/* The lowest bitrate an upload is assumed to have, bits per second (Opus
 * speech goes down to 6 kbit/s): a file of n bytes holds at most
 * n * 8 / 6000 seconds of audio, which bounds a transcription. */
#define AIPROXY_AUDIO_MIN_BITRATE 6000
apr_int64_t aiproxy_audio_max_seconds(apr_int64_t bytes);

/* The duration an upload's header declares, in milliseconds rounded up:
 * a WAV file's data bytes (those present) at its byte rate, a FLAC file's
 * STREAMINFO samples at its sample rate. 0 when it is neither or declares
 * none. Only ever raises a reservation: audio that packs more than 6
 * kbit/s would bound (silence in FLAC, a WAV at 100 Hz) is then reserved
 * as long as it says it is. */
int aiproxy_audio_declared_ms(const unsigned char *f, apr_size_t len,
                              apr_int64_t *ms);

/* The charge for ms milliseconds of audio at price->per_minute, by the
 * second, rounded up (as OpenAI bills). */
aiproxy_money_t aiproxy_audio_cost(const aiproxy_price_t *price,
                                   apr_int64_t ms);

/* A non-negative JSON number's text ("8.47", "12", "1.5e1" refused) as
 * milliseconds, rounded up; 0 when it is not one. */
int aiproxy_duration_ms(const char *text, apr_size_t len, apr_int64_t *ms);

/* n * each, saturating. */
aiproxy_money_t aiproxy_money_times(apr_int64_t n, aiproxy_money_t each);

#endif
