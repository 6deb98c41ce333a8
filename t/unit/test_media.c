/* Unit tests: the media endpoints' units (aiproxy_media), the form parser
 * (aiproxy_multipart) and counting an answer's images (aiproxy_jscan). */
#include "harness.h"

#include "aiproxy_cost.h"
#include "aiproxy_jscan.h"
#include "aiproxy_media.h"
#include "aiproxy_multipart.h"

static void test_media_prices(apr_pool_t *p)
{
    static const char *const bad[] = {
        "image_1024_standard=0.04", "image_1024x1024_=0.04", "image_x1024_hd=1",
        "image_1024x1024_HD=1", "image_1024x1024_hd=0", "image_1024x1024_hd=-1",
        "image_1024x1024_hd", "per_minute=0", "per_minute=1e3", "per_minute",
        "per_million_chars=0", "per_million_chars=0.0000001", "max_images=0",
        "max_images=11", "max_images=1.5", NULL
    };
    aiproxy_price_t price;
    const aiproxy_image_price_t *ip;
    int seen = 0, i;

    memset(&price, 0, sizeof(price));
    CHECK(aiproxy_price_field(p, &price, "image_1024x1024_standard=0.04", &seen) == NULL);
    CHECK(aiproxy_price_field(p, &price, "image_1792x1024_hd=0.12", &seen) == NULL);
    CHECK(aiproxy_price_field(p, &price, "per_minute=0.006", &seen) == NULL);
    CHECK(aiproxy_price_field(p, &price, "per_million_chars=15", &seen) == NULL);
    CHECK(aiproxy_price_field(p, &price, "max_images=1", &seen) == NULL);
    CHECK(aiproxy_price_field(p, &price, "image_1024x1024_standard=0.05", &seen) != NULL);
    /* A media unit stands for input=. */
    CHECK(aiproxy_price_finish(&price, seen) == NULL);
    CHECK(aiproxy_price_finish(&price, 0) != NULL);
    CHECK_INT(price.per_minute, APR_INT64_C(6000000000));
    CHECK_INT(price.per_char, 15000000);
    CHECK_INT(price.max_images, 1);
    CHECK((ip = aiproxy_image_price(&price, "1792x1024", "hd")) != NULL);
    CHECK_INT(ip ? ip->each : 0, APR_INT64_C(120000000000));
    CHECK(aiproxy_image_price(&price, "1024x1792", "hd") == NULL);
    CHECK(aiproxy_image_price(&price, "1024x1024", "hd") == NULL);
    CHECK_STR(aiproxy_image_prices(p, &price), "1024x1024/standard, 1792x1024/hd");
    for (i = 0; bad[i]; i++) {
        memset(&price, 0, sizeof(price));
        seen = 0;
        CHECK(aiproxy_price_field(p, &price, bad[i], &seen) != NULL);
    }
}

static void test_media_units(apr_pool_t *p)
{
    aiproxy_price_t price;
    apr_int64_t ms = -1;

    (void)p;
    memset(&price, 0, sizeof(price));
    price.per_minute = APR_INT64_C(6000000000);
    CHECK_INT(aiproxy_utf8_chars("h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x99\x82"), 9);
    CHECK_INT(aiproxy_utf8_chars(""), 0);
    /* By the second, rounded up. */
    CHECK_INT(aiproxy_audio_cost(&price, 3200), 4 * 100000000);
    CHECK_INT(aiproxy_audio_cost(&price, 3000), 3 * 100000000);
    CHECK_INT(aiproxy_audio_cost(&price, 1), 100000000);
    CHECK_INT(aiproxy_audio_cost(&price, 0), 0);
    /* 6 kbit/s: 750 bytes a second, rounded up. */
    CHECK_INT(aiproxy_audio_max_seconds(750), 1);
    CHECK_INT(aiproxy_audio_max_seconds(751), 2);
    CHECK_INT(aiproxy_audio_max_seconds(25 * 1000 * 1000), 33334);
    CHECK(aiproxy_duration_ms("8.47", 4, &ms));
    CHECK_INT(ms, 8470);
    CHECK(aiproxy_duration_ms("12", 2, &ms));
    CHECK_INT(ms, 12000);
    CHECK(aiproxy_duration_ms("1.00001", 7, &ms));
    CHECK_INT(ms, 1001);
    CHECK(!aiproxy_duration_ms("-1", 2, &ms));
    CHECK(!aiproxy_duration_ms("1e3", 3, &ms));
    CHECK(!aiproxy_duration_ms("1.", 2, &ms));
    CHECK(!aiproxy_duration_ms("\"1\"", 3, &ms));
    CHECK(!aiproxy_duration_ms("99999999999999", 14, &ms));
    CHECK_INT(aiproxy_money_times(3, 5), 15);
    CHECK_INT(aiproxy_money_times(APR_INT64_MAX, 2), APR_INT64_MAX);
    CHECK_INT(aiproxy_money_times(-1, 2), 0);
}

/* A WAV header: PCM, byte_rate bytes a second, data bytes declared. */
static apr_size_t wav_head(unsigned char *b, apr_uint32_t byte_rate,
                           apr_uint32_t data)
{
    memcpy(b, "RIFF\0\0\0\0WAVEfmt \x10\0\0\0\1\0\1\0", 24);
    memcpy(b + 24, "\x40\x1f\0\0", 4);                /* 8000 Hz */
    b[28] = byte_rate & 0xff;
    b[29] = (byte_rate >> 8) & 0xff;
    b[30] = (byte_rate >> 16) & 0xff;
    b[31] = byte_rate >> 24;
    memcpy(b + 32, "\2\0\x10\0data", 8);
    b[40] = data & 0xff;
    b[41] = (data >> 8) & 0xff;
    b[42] = (data >> 16) & 0xff;
    b[43] = data >> 24;
    return 44;
}

static void test_audio_declared(apr_pool_t *p)
{
    unsigned char f[44 + 1000];
    /* fLaC, STREAMINFO (last), 44100 Hz, 2 ch, 16 bit, 441000 samples. */
    static const unsigned char flac[42] = {
        'f', 'L', 'a', 'C', 0x80, 0, 0, 34, 0x10, 0, 0x10, 0, 0, 0, 0, 0, 0, 0,
        0x0A, 0xC4, 0x42, 0xF0, 0x00, 0x06, 0xBA, 0xA8
    };
    apr_int64_t ms = -1;

    (void)p;
    memset(f, 0, sizeof(f));
    /* 1000 bytes at 100 a second: 10 s; a declared size past the file
     * counts what is there. */
    wav_head(f, 100, 1000);
    CHECK(aiproxy_audio_declared_ms(f, sizeof(f), &ms));
    CHECK_INT(ms, 10000);
    wav_head(f, 100, 0xFFFFFFFF);
    CHECK(aiproxy_audio_declared_ms(f, sizeof(f), &ms));
    CHECK_INT(ms, 10000);
    wav_head(f, 3, 1000);
    CHECK(aiproxy_audio_declared_ms(f, sizeof(f), &ms));
    CHECK_INT(ms, 333334);
    wav_head(f, 0, 1000);
    CHECK(!aiproxy_audio_declared_ms(f, sizeof(f), &ms));
    CHECK(!aiproxy_audio_declared_ms(f, 30, &ms));
    CHECK(!aiproxy_audio_declared_ms((const unsigned char *)"ID3\4", 4, &ms));
    CHECK(aiproxy_audio_declared_ms(flac, sizeof(flac), &ms));
    CHECK_INT(ms, 10000);
    CHECK(!aiproxy_audio_declared_ms(flac, 20, &ms));
}

#define CT "multipart/form-data; boundary=XyZ"

static const char *form_model(apr_pool_t *p, const char *ct, const char *body,
                              int *nparts)
{
    apr_array_header_t *parts;
    const aiproxy_form_part_t *f;
    int dup;

    *nparts = -1;
    if (aiproxy_multipart_parse(p, ct, body, strlen(body), &parts))
        return NULL;
    *nparts = parts->nelts;
    f = aiproxy_form_get(parts, "model", &dup);
    return f && !dup ? apr_pstrmemdup(p, f->value, f->len) : "";
}

static void test_multipart(apr_pool_t *p)
{
    static const char *const bad_ct[] = {
        NULL, "", "multipart/form-data", "multipart/form-data; boundary=",
        "multipart/form-data; boundary=\"XyZ", "multipart/mixed; boundary=XyZ",
        "multipart/form-datax; boundary=XyZ", "application/json", NULL
    };
    static const char *const bad[] = {
        "", "--XyZ--\r\n", "--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nw",
        "--XyZ\r\nContent-Disposition: form-data\r\n\r\nw\r\n--XyZ--",
        "--XyZ\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nw\r\n--XyZ--",
        "--XyZ\r\nNoColon\r\n\r\nw\r\n--XyZ--",
        "--XyZ\r\nContent-Disposition: form-data; name=\"a\r\n\r\nw\r\n--XyZ--",
        "--XyZx\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nw\r\n--XyZ--",
        "--XyZ\r\n\r\nw\r\n--XyZ--",
        /* What another parser could read as another name. */
        "--XyZ\r\nContent-Disposition: form-data; name=\"a\"; name=\"model\"\r\n\r\nw\r\n--XyZ--",
        "--XyZ\r\nContent-Disposition: form-data; name*=UTF-8''model\r\n\r\nw\r\n--XyZ--",
        "--XyZ\r\nContent-Disposition: form-data; name=\"mo\\\"del\"\r\n\r\nw\r\n--XyZ--",
        "--XyZ\r\nContent-Disposition: form-data;\r\n name=\"model\"\r\n\r\nw\r\n--XyZ--",
        "--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\nd2hpc3Blci0x\r\n--XyZ--",
        "--XyZ\r\nContent-Disposition: form-data; name=model x\r\n\r\nw\r\n--XyZ--",
        "--XyZ\r\nContent-Disposition: form-data name=\"model\"\r\n\r\nw\r\n--XyZ--",
        NULL
    };
    int n, i;

    CHECK_STR(form_model(p, CT, "--XyZ\r\nContent-Disposition: form-data; "
                         "name=\"model\"\r\n\r\nwhisper-1\r\n--XyZ\r\n"
                         "Content-Disposition: form-data; name=\"file\"; "
                         "filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
                         "RIFF\r\n--XyZ--\r\n", &n), "whisper-1");
    CHECK_INT(n, 2);
    /* A preamble, a quoted boundary, a token name, padding after the
     * delimiter, an epilogue. */
    CHECK_STR(form_model(p, "multipart/form-data; charset=x; boundary=\"XyZ\"",
                         "preamble\r\n--XyZ  \r\ncontent-disposition: form-data; "
                         "name=model\r\n\r\nm\r\n--XyZ--\r\nepilogue", &n), "m");
    /* Two models: the caller refuses it. */
    CHECK_STR(form_model(p, CT, "--XyZ\r\nContent-Disposition: form-data; name=\"model\""
                         "\r\n\r\na\r\n--XyZ\r\nContent-Disposition: form-data; "
                         "name=\"model\"\r\n\r\nb\r\n--XyZ--", &n), "");
    /* The boundary's text inside a value would be a delimiter to a lax
     * parser (a bare LF before it): refused. */
    CHECK(form_model(p, CT, "--XyZ\r\nContent-Disposition: form-data; name=\"model\""
                     "\r\n\r\na\n--XyZ\r\n--XyZ--", &n) == NULL);
    /* A quoted ';' is no parameter: the name is the quoted one's. */
    CHECK_STR(form_model(p, CT, "--XyZ\r\nContent-Disposition: form-data; "
                         "x=\"a;name=model\"; name=\"model\"\r\n\r\nm\r\n--XyZ--",
                         &n), "m");
    CHECK_STR(form_model(p, CT, "--XyZ\r\nContent-Disposition: form-data; "
                         "x=\"a;name=model\"; name=\"prompt\"\r\n\r\nm\r\n--XyZ--",
                         &n), "");
    CHECK_STR(form_model(p, CT, "--XyZ\r\nContent-Disposition: form-data; name=\"model\""
                         "\r\nContent-Transfer-Encoding: 8bit\r\n\r\nm\r\n--XyZ--",
                         &n), "m");
    for (i = 0; bad_ct[i] || i == 0; i++)
        CHECK(form_model(p, bad_ct[i], "--XyZ\r\nContent-Disposition: form-data; "
                         "name=\"model\"\r\n\r\nm\r\n--XyZ--", &n) == NULL);
    for (i = 0; bad[i]; i++)
        CHECK(form_model(p, CT, bad[i], &n) == NULL);
}

static apr_int64_t items_of(apr_pool_t *p, const char *text, size_t cut)
{
    aiproxy_jscan_t *s = aiproxy_jscan_create(p, "data", 0);
    apr_int64_t n = -1;

    if (cut > strlen(text))
        cut = strlen(text);
    aiproxy_jscan_feed(s, text, cut);
    aiproxy_jscan_feed(s, text + cut, strlen(text) - cut);
    return aiproxy_jscan_items(s, &n) ? n : -1;
}

static void test_jscan_items(apr_pool_t *p)
{
    static const char *const three =
        "{\"created\":1,\"data\":[{\"url\":\"a,b\"},{\"b64_json\":\"[,]\"},"
        "{\"x\":[1,2,{\"y\":[]}]}],\"usage\":{}}";
    size_t cut;

    for (cut = 0; cut <= strlen(three); cut++)
        CHECK_INT(items_of(p, three, cut), 3);
    CHECK_INT(items_of(p, "{\"data\":[]}", 3), 0);
    CHECK_INT(items_of(p, "{\"data\":[ ]}", 3), 0);
    CHECK_INT(items_of(p, "{\"data\":[1]}", 9), 1);
    CHECK_INT(items_of(p, "{\"data\":[\"a\", 2, null]}", 2), 3);
    CHECK_INT(items_of(p, "{\"data\":[[],[]]}", 5), 2);
    CHECK_INT(items_of(p, "{\"data\":{}}", 5), -1);
    CHECK_INT(items_of(p, "{\"data\":[1,2", 5), -1);
    CHECK_INT(items_of(p, "{\"data\":[1],\"data\":[1]}", 5), -1);
    CHECK_INT(items_of(p, "{\"other\":[1]}", 5), -1);
}

const unit_test_t unit_media[] = {
    { "media_prices", test_media_prices },
    { "media_units", test_media_units },
    { "audio_declared", test_audio_declared },
    { "multipart", test_multipart },
    { "jscan_items", test_jscan_items },
    { NULL, NULL }
};
