#include <string.h>
#include <apr_strings.h>
#include <apr_thread_mutex.h>

#include "aiproxy_memo.h"

typedef struct {
    apr_int64_t at;
    apr_size_t len;
    /* the value's bytes follow */
} entry_t;

struct aiproxy_memo {
    apr_thread_mutex_t *lock;
    apr_pool_t *pool;    /* holds the entries; cleared when full */
    apr_hash_t *map;
    apr_size_t puts, max;
};

aiproxy_memo_t *aiproxy_memo_create(apr_pool_t *p, apr_size_t max)
{
    aiproxy_memo_t *m;

    if (max == 0)
        return NULL;
    m = apr_pcalloc(p, sizeof(*m));
    m->max = max;
    if (apr_thread_mutex_create(&m->lock, APR_THREAD_MUTEX_DEFAULT, p)
        != APR_SUCCESS || apr_pool_create(&m->pool, p) != APR_SUCCESS)
        return NULL;
    m->map = apr_hash_make(m->pool);
    return m;
}

void *aiproxy_memo_get(aiproxy_memo_t *m, apr_pool_t *p, const char *key,
                       apr_int64_t since, apr_size_t *len)
{
    const entry_t *e;
    void *out = NULL;

    if (!m || apr_thread_mutex_lock(m->lock) != APR_SUCCESS)
        return NULL;
    e = apr_hash_get(m->map, key, APR_HASH_KEY_STRING);
    if (e && e->at >= since) {
        out = apr_pmemdup(p, e + 1, e->len);
        *len = e->len;
    }
    apr_thread_mutex_unlock(m->lock);
    return out;
}

void aiproxy_memo_put(aiproxy_memo_t *m, const char *key, apr_int64_t at,
                      const void *val, apr_size_t len)
{
    entry_t *e;

    if (!m || apr_thread_mutex_lock(m->lock) != APR_SUCCESS)
        return;
    /* Counting puts rather than keys bounds the pool even when the same
     * keys are stored again and again: a replaced value stays allocated. */
    if (++m->puts > m->max) {
        apr_pool_clear(m->pool);
        m->map = apr_hash_make(m->pool);
        m->puts = 1;
    }
    e = apr_palloc(m->pool, sizeof(*e) + len);
    e->at = at;
    e->len = len;
    memcpy(e + 1, val, len);
    apr_hash_set(m->map, apr_pstrdup(m->pool, key), APR_HASH_KEY_STRING, e);
    apr_thread_mutex_unlock(m->lock);
}
