#include <apr_strings.h>

#include "aiproxy_cost.h"
#include "aiproxy_media.h"

#define MONEY_MAX APR_INT64_MAX

const char *aiproxy_decimal_parse(apr_pool_t *p, const char *s, int scale,
                                  apr_int64_t *out)
{
    apr_int64_t v = 0;
    int frac = -1, digits = 0;
    const char *c;

    for (c = s; *c; c++) {
        if (*c == '.' && frac < 0) {
            frac = 0;
            continue;
        }
        if (*c < '0' || *c > '9')
            return apr_psprintf(p, "'%s' is not a plain decimal number", s);
        if (frac >= 0 && ++frac > scale)
            return apr_psprintf(p, "'%s' has more than %d decimals", s, scale);
        if (v > (APR_INT64_MAX - 9) / 10)
            return apr_psprintf(p, "'%s' is too large", s);
        v = v * 10 + (*c - '0');
        digits++;
    }
    if (!digits)
        return apr_psprintf(p, "'%s' is not a number", s);
    for (frac = frac < 0 ? 0 : frac; frac < scale; frac++) {
        if (v > APR_INT64_MAX / 10)
            return apr_psprintf(p, "'%s' is too large", s);
        v *= 10;
    }
    *out = v;
    return NULL;
}

const char *aiproxy_money_parse(apr_pool_t *p, const char *usd,
                                aiproxy_money_t *out)
{
    return aiproxy_decimal_parse(p, usd, 12, out);
}

const char *aiproxy_price_parse(apr_pool_t *p, const char *usd_per_million,
                                aiproxy_money_t *out)
{
    return aiproxy_decimal_parse(p, usd_per_million, 6, out);
}

const char *aiproxy_price_field(apr_pool_t *p, aiproxy_price_t *price,
                                const char *word, int *seen)
{
    const char *eq = strchr(word, '=');
    const char *name = eq ? apr_pstrmemdup(p, word, eq - word) : word;
    aiproxy_money_t *field = NULL;
    apr_int64_t *tokens = NULL;
    const char *err;
    int media = 0;

    /* A media endpoint's unit price (aiproxy_media.c). */
    err = aiproxy_price_media_field(p, price, name, eq ? eq + 1 : NULL, &media);
    if (media) {
        if (!err)
            *seen |= AIPROXY_PRICE_HAS_MEDIA;
        return err;
    }
    if (!strcmp(name, "input"))
        field = &price->input, *seen |= AIPROXY_PRICE_HAS_INPUT;
    else if (!strcmp(name, "cached"))
        field = &price->cached_input, *seen |= AIPROXY_PRICE_HAS_CACHED;
    else if (!strcmp(name, "cache_write"))
        field = &price->cache_write;
    else if (!strcmp(name, "cache_write_1h"))
        field = &price->cache_write_1h;
    else if (!strcmp(name, "output"))
        field = &price->output, *seen |= AIPROXY_PRICE_HAS_OUTPUT;
    else if (!strcmp(name, "max_output"))
        tokens = &price->max_output;
    else if (!strcmp(name, "context"))
        tokens = &price->context;
    else if (!strcmp(name, "image"))
        tokens = &price->image_tokens;
    else if (!strcmp(name, "reasoning") && eq &&
             (!strcmp(eq + 1, "yes") || !strcmp(eq + 1, "no"))) {
        price->reasoning = !strcmp(eq + 1, "yes");
        return NULL;
    }
    if ((!field && !tokens) || !eq)
        return apr_psprintf(p, "unknown field '%s' (input=, cached=, "
                            "cache_write=, cache_write_1h=, output=, "
                            "max_output=, context=, image=, reasoning=yes|no)",
                            name);
    if (tokens) {
        err = aiproxy_decimal_parse(p, eq + 1, 0, tokens);
        if (err || *tokens > APR_INT64_C(100000000))
            return apr_psprintf(p, "%s= must be a whole number of tokens up "
                                "to 100000000", name);
        return NULL;
    }
    if ((err = aiproxy_price_parse(p, eq + 1, field)))
        return apr_psprintf(p, "%s= %s", name, err);
    return NULL;
}

const char *aiproxy_price_finish(aiproxy_price_t *price, int seen)
{
    if (!(seen & AIPROXY_PRICE_HAS_INPUT) && !(seen & AIPROXY_PRICE_HAS_MEDIA))
        return "input= is required (or a media unit: per_million_chars=, "
               "per_minute=, image_SIZE_QUALITY=)";
    /* Without it no request's output, and so no reservation, is bounded. */
    if (price->output > 0 && price->max_output <= 0)
        return "max_output= (the most output tokens one answer can have) is "
               "required with output=";
    if (!(seen & AIPROXY_PRICE_HAS_CACHED))
        price->cached_input = price->input;
    return NULL;
}

/* Digits by hand, from the right: every answer carries two or three of
 * these, and two apr_*printf calls each cost more than the rest of its
 * headers. */
char *aiproxy_money_format(apr_pool_t *p, aiproxy_money_t m)
{
    char buf[32], *end = buf + sizeof(buf), *o = end;
    apr_uint64_t u, whole, frac;
    int i, kept = 0;

    if (m < 0)
        u = (apr_uint64_t)(-(m + 1)) + 1;
    else
        u = (apr_uint64_t)m;
    whole = u / (apr_uint64_t)AIPROXY_PICO_PER_USD;
    frac = u % (apr_uint64_t)AIPROXY_PICO_PER_USD;
    if (frac) {
        /* Twelve digits, less the trailing zeros. */
        for (i = 0; i < 12; i++, frac /= 10)
            if (kept || frac % 10) {
                *--o = (char)('0' + frac % 10);
                kept = 1;
            }
        *--o = '.';
    }
    do {
        *--o = (char)('0' + whole % 10);
        whole /= 10;
    } while (whole);
    if (m < 0)
        *--o = '-';
    return apr_pstrmemdup(p, o, (apr_size_t)(end - o));
}

/* a*b + acc, saturating at MONEY_MAX; negatives count as zero. */
static aiproxy_money_t mul_add(aiproxy_money_t acc, apr_int64_t tokens,
                               aiproxy_money_t price)
{
    if (tokens <= 0 || price <= 0)
        return acc;
    if (tokens > MONEY_MAX / price)
        return MONEY_MAX;
    if (acc > MONEY_MAX - tokens * price)
        return MONEY_MAX;
    return acc + tokens * price;
}

aiproxy_money_t aiproxy_cost_of(const aiproxy_price_t *price,
                                const aiproxy_usage_t *u)
{
    aiproxy_money_t c = 0;

    c = mul_add(c, u->input, price->input);
    c = mul_add(c, u->cached_input, price->cached_input);
    c = mul_add(c, u->cache_write, price->cache_write);
    /* Requests that write for an hour are refused unless it is priced; one
     * reported all the same pays twice the input, Anthropic's rate. */
    c = mul_add(c, u->cache_write_1h, price->cache_write_1h > 0
                ? price->cache_write_1h
                : (price->cache_write > 2 * price->input ? price->cache_write
                                                         : 2 * price->input));
    c = mul_add(c, u->output, price->output);
    return c;
}

aiproxy_money_t aiproxy_cost_ceiling(const aiproxy_price_t *price,
                                     apr_int64_t input_tokens,
                                     apr_int64_t max_output)
{
    aiproxy_money_t in = price->input;

    if (price->cache_write > in)
        in = price->cache_write;
    return mul_add(mul_add(0, input_tokens, in), max_output, price->output);
}
