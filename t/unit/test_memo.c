/* Unit tests: The per-child memo (aiproxy_memo). */
#include "harness.h"

#include <apr_thread_proc.h>
#include "aiproxy_memo.h"

static void test_memo_basics(apr_pool_t *p)
{
    aiproxy_memo_t *m = aiproxy_memo_create(p, 4);
    apr_size_t len = 0;
    char *v;

    CHECK(aiproxy_memo_create(p, 0) == NULL);
    /* A NULL memo (turned off) stores nothing and finds nothing. */
    aiproxy_memo_put(NULL, "k", 1, "v", 2);
    CHECK(aiproxy_memo_get(NULL, p, "k", 0, &len) == NULL);

    CHECK(m != NULL);
    CHECK(aiproxy_memo_get(m, p, "a@x.edu", 0, &len) == NULL);
    aiproxy_memo_put(m, "a@x.edu", 100, "first", 6);
    v = aiproxy_memo_get(m, p, "a@x.edu", 100, &len);
    CHECK_STR(v, "first");
    CHECK_INT(len, 6);
    /* Older than asked for: a miss. */
    CHECK(aiproxy_memo_get(m, p, "a@x.edu", 101, &len) == NULL);
    /* Replaced: the new value and stamp. */
    aiproxy_memo_put(m, "a@x.edu", 200, "second", 7);
    CHECK_STR(aiproxy_memo_get(m, p, "a@x.edu", 150, &len), "second");
    /* The copy belongs to the caller: changing it changes nothing inside. */
    v = aiproxy_memo_get(m, p, "a@x.edu", 0, &len);
    v[0] = 'X';
    CHECK_STR(aiproxy_memo_get(m, p, "a@x.edu", 0, &len), "second");
    /* Keys are whole strings, not prefixes. */
    CHECK(aiproxy_memo_get(m, p, "a@x.ed", 0, &len) == NULL);
}

static void test_memo_bounded(apr_pool_t *p)
{
    aiproxy_memo_t *m = aiproxy_memo_create(p, 3);
    apr_size_t len;
    int i;

    aiproxy_memo_put(m, "a", 1, "1", 2);
    aiproxy_memo_put(m, "b", 1, "2", 2);
    aiproxy_memo_put(m, "c", 1, "3", 2);
    CHECK_STR(aiproxy_memo_get(m, p, "a", 0, &len), "1");
    /* The fourth store starts afresh: only it remains. */
    aiproxy_memo_put(m, "d", 1, "4", 2);
    CHECK(aiproxy_memo_get(m, p, "a", 0, &len) == NULL);
    CHECK(aiproxy_memo_get(m, p, "c", 0, &len) == NULL);
    CHECK_STR(aiproxy_memo_get(m, p, "d", 0, &len), "4");
    /* Storing one key over and over stays bounded too (ASan would report
     * the pool's growth only as a leak at exit, so count on the bound). */
    for (i = 0; i < 10000; i++)
        aiproxy_memo_put(m, "d", i, "same", 5);
    CHECK_STR(aiproxy_memo_get(m, p, "d", 9999, &len), "same");
}

#define MEMO_THREADS 4
#define MEMO_ROUNDS 20000

typedef struct {
    aiproxy_memo_t *m;
    long bad;
} memo_job_t;

static void *APR_THREAD_FUNC memo_worker(apr_thread_t *t, void *data)
{
    memo_job_t *job = data;
    aiproxy_memo_t *m = job->m;
    apr_pool_t *p;
    char key[32], val[32];
    apr_size_t len;
    long bad = 0;
    int i;

    apr_pool_create(&p, NULL);
    for (i = 0; i < MEMO_ROUNDS; i++) {
        const char *got;

        apr_snprintf(key, sizeof(key), "user%d@x.edu", i % 50);
        apr_snprintf(val, sizeof(val), "value of user%d", i % 50);
        aiproxy_memo_put(m, key, i, val, strlen(val) + 1);
        got = aiproxy_memo_get(m, p, key, 0, &len);
        /* Another thread may have started the memo afresh in between,
         * never left a torn or foreign value. */
        if (got && strcmp(got, val))
            bad++;
        if (i % 1000 == 0)
            apr_pool_clear(p);
    }
    apr_pool_destroy(p);
    job->bad = bad;
    (void)t;   /* returns instead of apr_thread_exit(): ASan trips on it */
    return NULL;
}

static void test_memo_threads(apr_pool_t *p)
{
    aiproxy_memo_t *m = aiproxy_memo_create(p, 64);
    apr_thread_t *th[MEMO_THREADS];
    memo_job_t jobs[MEMO_THREADS];
    apr_status_t rv;
    long bad = 0;
    int i;

    for (i = 0; i < MEMO_THREADS; i++) {
        jobs[i].m = m;
        jobs[i].bad = 0;
        CHECK(apr_thread_create(&th[i], NULL, memo_worker, &jobs[i], p)
              == APR_SUCCESS);
    }
    for (i = 0; i < MEMO_THREADS; i++) {
        apr_thread_join(&rv, th[i]);
        bad += jobs[i].bad;
    }
    CHECK_INT(bad, 0);
}

const unit_test_t unit_memo[] = {
    { "memo_basics", test_memo_basics },
    { "memo_bounded", test_memo_bounded },
    { "memo_threads", test_memo_threads },
    { NULL, NULL }
};
