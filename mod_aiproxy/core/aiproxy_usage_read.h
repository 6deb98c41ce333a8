/* Reading usage and stream deltas from the text providers send, without
 * building a JSON tree where it can be helped. Pure: unit-tested and
 * fuzzed. */
#ifndef AIPROXY_USAGE_READ_H
#define AIPROXY_USAGE_READ_H

#include "aiproxy.h"
#include "aiproxy_api.h"
#include "aiproxy_json.h"

/* The longest usage object text kept from an answer: a real one is a few
 * hundred bytes. */
#define AIPROXY_USAGE_TEXT_MAX (64 * 1024)

/* The bytes of text an SSE delta event carries (text, arguments,
 * reasoning...), read without parsing the event: the basis of the output
 * estimate of a stream cut before its usage. */
apr_size_t aiproxy_delta_text_len(const char *data, apr_size_t len);

/* Finds the top-level member `key` of the JSON object text s: *start and
 * *end span the member with one neighbouring comma (so removing the span
 * leaves valid JSON), *vstart and *vlen its value. 1 when found. */
int aiproxy_json_member_span(const char *s, apr_size_t len, const char *key,
                             apr_size_t *start, apr_size_t *end,
                             apr_size_t *vstart, apr_size_t *vlen);

/* Adds a usage object of any supported API into *u. A field already seen
 * keeps the larger value, so Anthropic's message_start and message_delta
 * merge into the final counts. Returns 1 when it held any token count. */
int aiproxy_usage_merge(const aiproxy_json_t *usage, aiproxy_api_t api,
                        aiproxy_usage_t *u);

/* The same for a usage object in text at s (the plain shape providers
 * send), without building a JSON tree: 1 or 0 as aiproxy_usage_merge, with
 * *used the object's length; -1 when the text is anything else (jansson
 * must judge it; *u untouched). */
int aiproxy_usage_scan(const char *s, apr_size_t len, apr_size_t *used,
                       aiproxy_api_t api, aiproxy_usage_t *u);

/* Reads a usage object's text: scanned, or parsed (in p) when it has an
 * unusual shape and is small enough to be one. 1 when it held a count. */
int aiproxy_usage_from_value(apr_pool_t *p, const char *text, apr_size_t len,
                             aiproxy_api_t api, aiproxy_usage_t *u);

/* Usage of a whole non-streamed response body (its top-level member, the
 * body one object); 1 when found. */
int aiproxy_usage_from_body(apr_pool_t *p, const char *body, apr_size_t len,
                            aiproxy_api_t api, aiproxy_usage_t *u);

/* The usage in an event's data at outer.usage (outer NULL: at the top),
 * found without parsing the rest of the event, which may hold a whole
 * answer; 1 when it held a count. */
int aiproxy_usage_in_event(apr_pool_t *p, const char *data, apr_size_t len,
                           const char *outer, aiproxy_api_t api,
                           aiproxy_usage_t *u);

#endif
