/* The one wrapper around jansson (already loaded by libjwt): a strict
 * RFC 8259 parser whose values live as long as the pool they are parsed in. */
#ifndef AIPROXY_JSON_H
#define AIPROXY_JSON_H

#include "aiproxy.h"

typedef struct json_t aiproxy_json_t;

/* Parses one JSON text. Duplicate object keys anywhere are an error: a proxy
 * and its upstream that pick different duplicates disagree about the model.
 * Returns NULL and sets *err (a message fit for a client) on failure. */
aiproxy_json_t *aiproxy_json_parse(apr_pool_t *p, const char *buf,
                                   apr_size_t len, const char **err);

/* Parses the one JSON value at the start of buf, ignoring what follows;
 * *used says how many bytes it took. */
aiproxy_json_t *aiproxy_json_parse_prefix(apr_pool_t *p, const char *buf,
                                          apr_size_t len, apr_size_t *used);

/* An upper bound of the bytes jansson allocates to parse buf (what its tree
 * of small allocations costs; a body of numbers takes ~40 times its size),
 * read in one pass without allocating: a parse can be refused before it
 * is tried. */
apr_size_t aiproxy_json_cost(const char *buf, apr_size_t len);

aiproxy_json_t *aiproxy_json_get(const aiproxy_json_t *obj, const char *key);
int aiproxy_json_is_object(const aiproxy_json_t *v);
int aiproxy_json_is_array(const aiproxy_json_t *v);
int aiproxy_json_is_null(const aiproxy_json_t *v);
/* NULL unless v is a string. */
const char *aiproxy_json_string(const aiproxy_json_t *v);
/* 1 and *out when v is an integer (or a float with no fraction), else 0. */
int aiproxy_json_int(const aiproxy_json_t *v, apr_int64_t *out);
/* 1 for true, 0 for false, -1 when v is not a boolean. */
int aiproxy_json_bool(const aiproxy_json_t *v);
/* The keys of an object (const char *, in the object's order); empty for
 * anything else. */
apr_array_header_t *aiproxy_json_keys(apr_pool_t *p, const aiproxy_json_t *v);
apr_size_t aiproxy_json_array_size(const aiproxy_json_t *v);
aiproxy_json_t *aiproxy_json_array_at(const aiproxy_json_t *v, apr_size_t i);
/* Removes element i of an array; 0 on success. */
int aiproxy_json_array_remove(aiproxy_json_t *v, apr_size_t i);
/* Sets obj[key] = true, creating obj[parent] as an object when missing;
 * 0 on success, -1 when obj[parent] exists and is not an object. */
int aiproxy_json_set_nested_true(aiproxy_json_t *obj, const char *parent,
                                 const char *key);
/* Sets obj[key] to the string value; 0 on success. */
int aiproxy_json_set_string(aiproxy_json_t *obj, const char *key,
                            const char *value);
/* Sets obj[key] to true or false; 0 on success. */
int aiproxy_json_set_bool(aiproxy_json_t *obj, const char *key, int v);
/* Sets obj[key] to an integer; 0 on success. */
int aiproxy_json_set_int(aiproxy_json_t *obj, const char *key, apr_int64_t v);
/* Building trees. A new value belongs to nobody until it is put into a
 * container, which takes it, or given to a pool with aiproxy_json_own. */
aiproxy_json_t *aiproxy_json_new_object(void);
aiproxy_json_t *aiproxy_json_new_array(void);
aiproxy_json_t *aiproxy_json_new_string(const char *s);
aiproxy_json_t *aiproxy_json_new_int(apr_int64_t v);
aiproxy_json_t *aiproxy_json_new_bool(int v);
aiproxy_json_t *aiproxy_json_new_null(void);
/* Another reference to v (shared, not copied), to put into a second tree. */
aiproxy_json_t *aiproxy_json_ref(aiproxy_json_t *v);
/* obj[key] = v and arr += v, taking v (released on failure); 0 on success. */
int aiproxy_json_put(aiproxy_json_t *obj, const char *key, aiproxy_json_t *v);
int aiproxy_json_push(aiproxy_json_t *arr, aiproxy_json_t *v);
/* v, released when p is; NULL stays NULL. */
aiproxy_json_t *aiproxy_json_own(apr_pool_t *p, aiproxy_json_t *v);
int aiproxy_json_is_string(const aiproxy_json_t *v);
int aiproxy_json_is_number(const aiproxy_json_t *v);
/* Calls fn on v and every object and array nested in it, depth first, with
 * the key it is under in its parent object (NULL at the top and for array
 * elements). fn returns 0 to go on, -1 to skip what v holds, or another
 * value to stop the walk, which then returns it. */
typedef int aiproxy_json_walk_fn(void *baton, const char *key,
                                 const aiproxy_json_t *v);
int aiproxy_json_walk(const aiproxy_json_t *v, aiproxy_json_walk_fn *fn,
                      void *baton);
/* Compact serialisation into pool memory; NULL on failure. */
char *aiproxy_json_dump(apr_pool_t *p, const aiproxy_json_t *v,
                        apr_size_t *len);
/* s as a JSON string literal, quotes included. */
char *aiproxy_json_quote(apr_pool_t *p, const char *s);
/* A list of strings (const char *; NULL: none) as a JSON array. */
char *aiproxy_json_strings(apr_pool_t *p, const apr_array_header_t *a);

#endif
