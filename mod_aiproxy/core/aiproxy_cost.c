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

/* Fields of the long-context tier, in *seen above the public bits. */
#define HAS_LONG_INPUT 0x100
#define HAS_LONG_OUTPUT 0x200
#define HAS_LONG_CACHED 0x400
#define HAS_LONG_WRITE 0x800
#define HAS_LONG_WRITE_1H 0x1000
#define HAS_LONG_ANY (HAS_LONG_INPUT | HAS_LONG_OUTPUT | HAS_LONG_CACHED | \
                      HAS_LONG_WRITE | HAS_LONG_WRITE_1H)

/* The tier's rates: USD per 1M tokens, like the standard ones. */
static aiproxy_money_t *long_field(aiproxy_price_t *price, const char *name,
                                   int *seen)
{
    if (!strcmp(name, "long_input"))
        return *seen |= HAS_LONG_INPUT, &price->long_input;
    if (!strcmp(name, "long_output"))
        return *seen |= HAS_LONG_OUTPUT, &price->long_output;
    if (!strcmp(name, "long_cached"))
        return *seen |= HAS_LONG_CACHED, &price->long_cached;
    if (!strcmp(name, "long_cache_write"))
        return *seen |= HAS_LONG_WRITE, &price->long_cache_write;
    if (!strcmp(name, "long_cache_write_1h"))
        return *seen |= HAS_LONG_WRITE_1H, &price->long_cache_write_1h;
    return NULL;
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
    else if (!strcmp(name, "long_context"))
        tokens = &price->long_context;
    else if (eq && !strcmp(name, "web_search")) {
        /* USD per call, not per 1M tokens. */
        if ((err = aiproxy_money_parse(p, eq + 1, &price->web_search)))
            return apr_psprintf(p, "web_search= (USD per call) %s", err);
        return NULL;
    }
    else if (!strcmp(name, "reasoning") && eq &&
             (!strcmp(eq + 1, "yes") || !strcmp(eq + 1, "no"))) {
        price->reasoning = !strcmp(eq + 1, "yes");
        return NULL;
    }
    else
        field = long_field(price, name, seen);
    if ((!field && !tokens) || !eq)
        return apr_psprintf(p, "unknown field '%s' (input=, cached=, "
                            "cache_write=, cache_write_1h=, output=, "
                            "max_output=, context=, image=, reasoning=yes|no, "
                            "long_context=, long_input=, long_cached=, "
                            "long_cache_write=, long_cache_write_1h=, "
                            "long_output=, web_search=)",
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

/* A tier names every rate the model has: a rate left to a default could
 * bill a long request at the short price. Only the cached rate defaults,
 * to the tier's input, as the standard one does. */
static const char *long_finish(aiproxy_price_t *price, int seen)
{
    if (price->long_context <= 0)
        return (seen & HAS_LONG_ANY) ? "long_input=, long_output= and the "
               "other long_ rates need long_context= (the input threshold, "
               "in tokens, above which they apply)" : NULL;
    if (price->context > 0 && price->long_context >= price->context)
        return "long_context= must be less than context=: no request's "
               "input could reach the tier";
    if (!(seen & HAS_LONG_INPUT))
        return "long_context= needs long_input=";
    if (price->output > 0 && !(seen & HAS_LONG_OUTPUT))
        return "long_context= needs long_output= (the tier's output rate)";
    if (price->cache_write > 0 && !(seen & HAS_LONG_WRITE))
        return "long_context= with cache_write= needs long_cache_write=";
    if (price->cache_write_1h > 0 && !(seen & HAS_LONG_WRITE_1H))
        return "long_context= with cache_write_1h= needs long_cache_write_1h=";
    if (!(seen & HAS_LONG_CACHED))
        price->long_cached = price->long_input;
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
    return long_finish(price, seen);
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

/* The rates one request pays: the standard ones, or the long tier's
 * when its whole input exceeds the threshold. */
typedef struct {
    aiproxy_money_t input, cached, write, write_1h, output;
} rates_t;

static apr_int64_t input_total(const aiproxy_usage_t *u)
{
    const apr_int64_t parts[4] = { u->input, u->cached_input, u->cache_write,
                                   u->cache_write_1h };
    apr_int64_t total = 0;
    int i;

    for (i = 0; i < 4; i++) {
        if (parts[i] <= 0)
            continue;
        if (total > APR_INT64_MAX - parts[i])
            return APR_INT64_MAX;
        total += parts[i];
    }
    return total;
}

static void rates_for(const aiproxy_price_t *price, int long_tier,
                      rates_t *r)
{
    if (long_tier) {
        r->input = price->long_input;
        r->cached = price->long_cached;
        r->write = price->long_cache_write;
        r->write_1h = price->long_cache_write_1h;
        r->output = price->long_output;
    }
    else {
        r->input = price->input;
        r->cached = price->cached_input;
        r->write = price->cache_write;
        r->write_1h = price->cache_write_1h;
        r->output = price->output;
    }
}

aiproxy_money_t aiproxy_cost_of(const aiproxy_price_t *price,
                                const aiproxy_usage_t *u)
{
    aiproxy_money_t c = 0, twice;
    rates_t r;

    rates_for(price, price->long_context > 0 &&
                     input_total(u) > price->long_context, &r);
    c = mul_add(c, u->input, r.input);
    c = mul_add(c, u->cached_input, r.cached);
    c = mul_add(c, u->cache_write, r.write);
    /* Requests that write for an hour are refused unless it is priced; one
     * reported all the same pays twice the input, Anthropic's rate. */
    twice = r.input > MONEY_MAX / 2 ? MONEY_MAX : 2 * r.input;
    c = mul_add(c, u->cache_write_1h, r.write_1h > 0
                ? r.write_1h : (r.write > twice ? r.write : twice));
    c = mul_add(c, u->output, r.output);
    return mul_add(c, u->web_search, price->web_search);
}

static aiproxy_money_t dearer(aiproxy_money_t a, aiproxy_money_t b)
{
    return a > b ? a : b;
}

aiproxy_money_t aiproxy_cost_ceiling(const aiproxy_price_t *price,
                                     apr_int64_t input_tokens,
                                     apr_int64_t max_output)
{
    aiproxy_money_t in = dearer(price->input, price->cache_write);
    aiproxy_money_t out = price->output;

    /* Input that may pass the threshold may be billed, all of it, at the
     * tier's rates: the dearer of each pair bounds both outcomes. */
    if (price->long_context > 0 && input_tokens > price->long_context) {
        in = dearer(in, dearer(dearer(price->long_input, price->long_cached),
                               price->long_cache_write));
        out = dearer(out, price->long_output);
    }
    return mul_add(mul_add(0, input_tokens, in), max_output, out);
}

aiproxy_money_t aiproxy_cost_calls(aiproxy_money_t acc, apr_int64_t calls,
                                   aiproxy_money_t per_call)
{
    return mul_add(acc, calls, per_call);
}
