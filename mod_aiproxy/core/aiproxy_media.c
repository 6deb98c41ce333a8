#include <string.h>
#include <apr_strings.h>

#include "aiproxy_media.h"

#define MONEY_MAX APR_INT64_MAX

aiproxy_money_t aiproxy_money_times(apr_int64_t n, aiproxy_money_t each)
{
    if (n <= 0 || each <= 0)
        return 0;
    if (n > MONEY_MAX / each)
        return MONEY_MAX;
    return n * each;
}

/* "1024x1024": digits, 'x', digits, short. */
static int valid_size(const char *s, apr_size_t n)
{
    apr_size_t i, x = 0, at = 0;

    if (n < 3 || n > 11)
        return 0;
    for (i = 0; i < n; i++) {
        if (s[i] == 'x') {
            x++;
            at = i;
        }
        else if (s[i] < '0' || s[i] > '9')
            return 0;
    }
    return x == 1 && at > 0 && at < n - 1;
}

static int valid_quality(const char *s)
{
    if (!*s || strlen(s) > 16)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')))
            return 0;
    return 1;
}

static const char *image_field(apr_pool_t *p, aiproxy_price_t *price,
                               const char *name, const char *value)
{
    const char *spec = name + strlen("image_"), *us = strchr(spec, '_');
    aiproxy_image_price_t *ip;
    aiproxy_money_t each;
    const char *err, *size, *quality;

    if (!us || !valid_size(spec, (apr_size_t)(us - spec)) ||
        !valid_quality(us + 1))
        return apr_psprintf(p, "'%s' is not image_SIZE_QUALITY (e.g. "
                            "image_1024x1024_standard=0.04, USD per image)",
                            name);
    size = apr_pstrmemdup(p, spec, (apr_size_t)(us - spec));
    quality = us + 1;
    if ((err = aiproxy_money_parse(p, value, &each)))
        return apr_psprintf(p, "%s= %s", name, err);
    /* A price of nothing would be a way to work for free. */
    if (each <= 0)
        return apr_psprintf(p, "%s= must be more than 0", name);
    if (aiproxy_image_price(price, size, quality))
        return apr_psprintf(p, "%s is given twice", name);
    if (!price->images)
        price->images = apr_array_make(p, 4, sizeof(aiproxy_image_price_t));
    ip = apr_array_push(price->images);
    ip->size = size;
    ip->quality = apr_pstrdup(p, quality);
    ip->each = each;
    return NULL;
}

const char *aiproxy_price_media_field(apr_pool_t *p, aiproxy_price_t *price,
                                      const char *name, const char *value,
                                      int *mine)
{
    aiproxy_money_t *field = NULL;
    const char *err;
    int per_million = 0;

    *mine = 1;
    if (!strcmp(name, "per_million_chars"))
        field = &price->per_char, per_million = 1;
    else if (!strcmp(name, "per_minute"))
        field = &price->per_minute;
    else if (strncmp(name, "image_", 6) && strcmp(name, "max_images")) {
        *mine = 0;
        return NULL;
    }
    if (!value)
        return apr_psprintf(p, "%s needs =VALUE", name);
    if (!strcmp(name, "max_images")) {
        err = aiproxy_decimal_parse(p, value, 0, &price->max_images);
        if (err || price->max_images < 1 ||
            price->max_images > AIPROXY_IMAGES_MAX)
            return apr_psprintf(p, "max_images= must be a whole number from "
                                "1 to %d", AIPROXY_IMAGES_MAX);
        return NULL;
    }
    if (!field)
        return image_field(p, price, name, value);
    /* USD per 1M characters is pico-dollars per character, as for tokens. */
    err = per_million ? aiproxy_price_parse(p, value, field)
                      : aiproxy_money_parse(p, value, field);
    if (err)
        return apr_psprintf(p, "%s= %s", name, err);
    if (*field <= 0)
        return apr_psprintf(p, "%s= must be more than 0", name);
    return NULL;
}

const aiproxy_image_price_t *aiproxy_image_price(const aiproxy_price_t *price,
                                                 const char *size,
                                                 const char *quality)
{
    int i;

    if (!price->images)
        return NULL;
    for (i = 0; i < price->images->nelts; i++) {
        const aiproxy_image_price_t *ip =
            &APR_ARRAY_IDX(price->images, i, aiproxy_image_price_t);

        if (!strcmp(ip->size, size) && !strcmp(ip->quality, quality))
            return ip;
    }
    return NULL;
}

const char *aiproxy_image_prices(apr_pool_t *p, const aiproxy_price_t *price)
{
    const char *out = "";
    int i;

    for (i = 0; price->images && i < price->images->nelts; i++) {
        const aiproxy_image_price_t *ip =
            &APR_ARRAY_IDX(price->images, i, aiproxy_image_price_t);

        out = apr_pstrcat(p, out, i ? ", " : "", ip->size, "/", ip->quality,
                          NULL);
    }
    return out;
}

apr_int64_t aiproxy_utf8_chars(const char *s)
{
    apr_int64_t n = 0;

    /* Every byte but a continuation byte (10xxxxxx) starts a code point;
     * the JSON parser let only valid UTF-8 through. */
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

apr_int64_t aiproxy_audio_max_seconds(apr_int64_t bytes)
{
    apr_int64_t per_second = AIPROXY_AUDIO_MIN_BITRATE / 8;

    if (bytes <= 0)
        return 1;
    return (bytes + per_second - 1) / per_second;
}

static apr_uint64_t le32(const unsigned char *b)
{
    return (apr_uint64_t)b[0] | (apr_uint64_t)b[1] << 8 |
           (apr_uint64_t)b[2] << 16 | (apr_uint64_t)b[3] << 24;
}

/* samples (or bytes) at rate a second, as milliseconds rounded up. */
static int ms_of(apr_uint64_t n, apr_uint64_t rate, apr_int64_t *ms)
{
    /* n < 2^36 and rate >= 1: n * 1000 cannot overflow. */
    if (!n || !rate || n >= (APR_UINT64_C(1) << 36))
        return 0;
    *ms = (apr_int64_t)((n * 1000 + rate - 1) / rate);
    return 1;
}

/* RIFF/WAVE: the "fmt " chunk's byte rate, the "data" chunk's size. */
static int wav_ms(const unsigned char *f, apr_size_t len, apr_int64_t *ms)
{
    apr_size_t at = 12;
    apr_uint64_t byte_rate = 0;
    int chunks;

    for (chunks = 0; chunks < 64 && at + 8 <= len; chunks++) {
        apr_uint64_t size = le32(f + at + 4);

        if (!memcmp(f + at, "fmt ", 4) && size >= 16 && at + 24 <= len)
            byte_rate = le32(f + at + 16);
        else if (!memcmp(f + at, "data", 4)) {
            /* Only the bytes present can be decoded. */
            if (size > len - at - 8)
                size = len - at - 8;
            return ms_of(size, byte_rate, ms);
        }
        if (size > len - at - 8)
            return 0;
        at += 8 + (apr_size_t)size + (size & 1);
    }
    return 0;
}

/* fLaC: the first metadata block is STREAMINFO; its bytes 10..17 hold the
 * sample rate (20 bits) and the total samples (36 bits; 0: unknown). */
static int flac_ms(const unsigned char *f, apr_size_t len, apr_int64_t *ms)
{
    const unsigned char *b = f + 8;
    apr_uint64_t rate, total;

    if (len < 8 + 34 || (f[4] & 0x7F) != 0)
        return 0;
    rate = (apr_uint64_t)b[10] << 12 | (apr_uint64_t)b[11] << 4 | b[12] >> 4;
    total = (apr_uint64_t)(b[13] & 0x0F) << 32 | (apr_uint64_t)b[14] << 24 |
            (apr_uint64_t)b[15] << 16 | (apr_uint64_t)b[16] << 8 | b[17];
    return ms_of(total, rate, ms);
}

int aiproxy_audio_declared_ms(const unsigned char *f, apr_size_t len,
                              apr_int64_t *ms)
{
    if (len >= 12 && !memcmp(f, "RIFF", 4) && !memcmp(f + 8, "WAVE", 4))
        return wav_ms(f, len, ms);
    if (len >= 4 && !memcmp(f, "fLaC", 4))
        return flac_ms(f, len, ms);
    return 0;
}

aiproxy_money_t aiproxy_audio_cost(const aiproxy_price_t *price,
                                   apr_int64_t ms)
{
    apr_int64_t seconds = (ms + 999) / 1000;
    aiproxy_money_t total;

    if (seconds <= 0 || price->per_minute <= 0)
        return 0;
    total = aiproxy_money_times(seconds, price->per_minute);
    if (total == MONEY_MAX)
        return MONEY_MAX;
    return (total + 59) / 60;
}

int aiproxy_duration_ms(const char *text, apr_size_t len, apr_int64_t *ms)
{
    apr_int64_t whole = 0, frac = 0;
    apr_size_t i = 0;
    int digits = 0, fdigits = 0, more = 0;

    for (; i < len && text[i] >= '0' && text[i] <= '9'; i++, digits++) {
        if (whole > APR_INT64_C(1000000000))
            return 0;
        whole = whole * 10 + (text[i] - '0');
    }
    if (!digits)
        return 0;
    if (i < len && text[i] == '.') {
        for (i++; i < len && text[i] >= '0' && text[i] <= '9'; i++) {
            if (fdigits < 3) {
                frac = frac * 10 + (text[i] - '0');
                fdigits++;
            }
            else if (text[i] != '0')
                more = 1;
        }
        if (!fdigits && !more)
            return 0;
    }
    if (i != len)
        return 0;
    for (; fdigits < 3; fdigits++)
        frac *= 10;
    *ms = whole * 1000 + frac + more;
    return 1;
}
