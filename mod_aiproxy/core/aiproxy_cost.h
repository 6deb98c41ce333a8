/* Prices and cost arithmetic, in integers only. */
#ifndef AIPROXY_COST_H
#define AIPROXY_COST_H

#include "aiproxy.h"

/* Pico-dollars per token, from list prices in USD per 1M tokens. */
typedef struct {
    aiproxy_money_t input;        /* uncached input */
    aiproxy_money_t cached_input; /* input served from the provider's cache */
    aiproxy_money_t cache_write;  /* input written to the cache (Anthropic),
                                     for 5 minutes */
    aiproxy_money_t cache_write_1h; /* for an hour; 0: refused */
    aiproxy_money_t output;
    /* Limits of the model, in tokens, that bound what a request can cost:
     * the most output one answer can have (required where output is
     * priced), the context window (0: unknown), and the input one image
     * can add (0: images are refused). */
    apr_int64_t max_output;
    apr_int64_t context;
    apr_int64_t image_tokens;
    /* The model reasons in tokens a stream does not show (reasoning=yes):
     * a stream cut before its usage pays its whole output bound. */
    int reasoning;
    /* A long-context tier (Anthropic's 1M window, Gemini): a request whose
     * input (uncached, cached and cache writes together) exceeds
     * long_context tokens pays the long_* rates for ALL its tokens.
     * long_context 0: no tier. */
    apr_int64_t long_context;
    aiproxy_money_t long_input, long_cached, long_cache_write,
                    long_cache_write_1h, long_output;
    /* Hosted tools, pico-dollars per call; 0: the tool is refused. */
    aiproxy_money_t web_search;
    /* Media endpoints' own units (aiproxy_media.c), 0/NULL where not
     * priced: audio/speech per input character, audio/transcriptions per
     * minute of audio, images/generations per image by size and quality
     * (aiproxy_image_price_t), at most max_images (0: 10) a request. */
    aiproxy_money_t per_char;
    aiproxy_money_t per_minute;
    apr_array_header_t *images;
    apr_int64_t max_images;
} aiproxy_price_t;

/* Token counts normalised across APIs: every input token is in exactly one
 * of the first four fields. */
typedef struct {
    apr_int64_t input;
    apr_int64_t cached_input;
    apr_int64_t cache_write;
    apr_int64_t cache_write_1h;
    apr_int64_t output;
    apr_int64_t web_search;   /* hosted web searches (calls, not tokens) */
} aiproxy_usage_t;

/* Parses a non-negative decimal ("0.15", "2", "1.5e0" is refused) scaled by
 * 10^scale into *out. Returns NULL or an error message. */
const char *aiproxy_decimal_parse(apr_pool_t *p, const char *s, int scale,
                                  apr_int64_t *out);

/* USD amount parsed into pico-dollars ("2.00" -> 2e12). */
const char *aiproxy_money_parse(apr_pool_t *p, const char *usd,
                                aiproxy_money_t *out);

/* USD per 1M tokens into pico-dollars per token (six decimals at most). */
const char *aiproxy_price_parse(apr_pool_t *p, const char *usd_per_million,
                                aiproxy_money_t *out);

/* One NAME=VALUE word of an AIProxyPrice line into *price; *seen gathers
 * which fields were given. NULL, or what is wrong with the word. */
#define AIPROXY_PRICE_HAS_INPUT 1
#define AIPROXY_PRICE_HAS_CACHED 2
#define AIPROXY_PRICE_HAS_OUTPUT 4
#define AIPROXY_PRICE_HAS_MEDIA 8   /* a media unit: input= optional */
const char *aiproxy_price_field(apr_pool_t *p, aiproxy_price_t *price,
                                const char *word, int *seen);

/* After the last word: defaults, and the checks between fields. */
const char *aiproxy_price_finish(aiproxy_price_t *price, int seen);

/* Pico-dollars as a USD decimal string with no trailing zeros ("0.00015",
 * "2", "0"). Negative amounts keep their sign. */
char *aiproxy_money_format(apr_pool_t *p, aiproxy_money_t m);

/* Exact cost of a usage at a price. Saturates instead of overflowing. */
aiproxy_money_t aiproxy_cost_of(const aiproxy_price_t *price,
                                const aiproxy_usage_t *u);

/* The most a request can cost: every body byte an input token at the
 * dearest input rate, plus max_output tokens of output; at the dearer of
 * the two tiers' rates when input_tokens can exceed long_context. Hosted
 * tool calls are not in it: see aiproxy_cost_calls. */
aiproxy_money_t aiproxy_cost_ceiling(const aiproxy_price_t *price,
                                     apr_int64_t input_tokens,
                                     apr_int64_t max_output);

/* acc plus calls at a per-call price, saturating: the bound of a
 * request's hosted tool calls added to its token ceiling. */
aiproxy_money_t aiproxy_cost_calls(aiproxy_money_t acc, apr_int64_t calls,
                                   aiproxy_money_t per_call);

#endif
