/* Budget leases, the host's side. Shared memory made by the parent holds a
 * table of leases (one per user and month) and of tickets (one per request
 * in flight on a lease); every child admits and settles there under one
 * global mutex, held for a few arithmetic operations. Store writes happen
 * outside it, one at a time per lease (the lease is marked busy with the
 * writer's pid and the write it is making, so another process can finish a
 * write whose process died). A flusher thread in one child at a time
 * writes what was spent, renews, gives back idle or tight leases and
 * charges the tickets of dead children.
 *
 * Per lease, size = free + inflight + unflushed + writing (the part of the
 * store's hold this host accounts for); the store's hold is `size` after
 * every write. Money leaves `free` only under the cap the store checked. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <apr_atomic.h>
#include <apr_global_mutex.h>
#include <apr_lib.h>
#include <apr_shm.h>
#include <apr_strings.h>
#include <apr_thread_cond.h>
#include <apr_thread_proc.h>

#include "httpd.h"
#include "http_log.h"
#include "util_mutex.h"

#include "aiproxy_counters.h"
#include "aiproxy_course.h"
#include "aiproxy_lease.h"

APLOG_USE_MODULE(aiproxy);

#define MUTEX_TYPE "aiproxy-lease"
#define KEY_MAX 288             /* "email|YYYY-MM": emails are <= 254 */
#define LIVE_MAX 256            /* children a host runs at once */

typedef enum { SLOT_EMPTY = 0, SLOT_LIVE, SLOT_GONE } slot_state_t;

typedef struct {
    char key[KEY_MAX];
    apr_uint32_t hash;
    apr_uint32_t state;         /* slot_state_t */
    aiproxy_money_t cap;        /* granted under; -1: not yet */
    aiproxy_money_t size, free, inflight, unflushed;
    apr_int64_t inflight_n, unflushed_n;
    /* Spent on tickets whose hold was swept: charged outside any hold. */
    aiproxy_money_t unbacked;
    apr_int64_t seq;            /* the store hold's sequence; 0: none */
    aiproxy_money_t store_spent;
    apr_int64_t store_requests;
    apr_int64_t last_use_ms, written_ms;
    int tight;                  /* got less than asked: give back soon */
    /* The write under way, so another process can finish it. */
    pid_t busy;
    aiproxy_money_t w_spent, w_unbacked, w_grow;
    /* A give-back's lower cap, adopted when it lands: in write_end, under
     * the mutex, so no growth under the old cap can slip in between. */
    int w_capped;
    aiproxy_money_t w_cap;
    apr_int64_t w_n;
    /* w_* is a write whose outcome is unknown (the store did not answer):
     * it is sent again exactly as it was, before anything else. */
    int pending;
} slot_t;

typedef struct {
    apr_uint32_t slot;          /* index + 1; 0: free ticket */
    pid_t pid;
    int unbacked;               /* its lease's hold was swept */
    aiproxy_money_t amount;
    apr_int64_t time_ms;
    char id[40], endpoint[40], model[96];
    char course[AIPROXY_COURSE_ID_MAX + 1];
} ticket_t;

typedef struct {
    apr_uint32_t nslots;
    pid_t flusher;              /* the child whose thread writes */
    apr_int64_t flusher_ms;     /* its last pass */
    pid_t live[LIVE_MAX];       /* children, for "the last one out" */
    char leaving[LIVE_MAX];     /* ... and which of them are stopping */
    char name[96];              /* this host's lease name in the store */
    char host[72];
} table_t;

static table_t *table;
static slot_t *slots;
static ticket_t *tickets;
static apr_global_mutex_t *mutex;
static aiproxy_global_t *conf;
static server_rec *lease_server;
static pid_t my_pid;            /* this child's, read once: no system call
                                   per request */

/* The child's flusher. */
static apr_thread_t *flusher;
static apr_thread_mutex_t *wake_lock;
static apr_thread_cond_t *wake;
static volatile int stopping;

static apr_int64_t now_ms(void)
{
    return apr_time_as_msec(apr_time_now());
}

static int pid_dead(pid_t pid)
{
    return pid > 0 && kill(pid, 0) == -1 && errno == ESRCH;
}

static apr_uint32_t hash_of(const char *s)
{
    apr_uint32_t h = 2166136261u;

    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

static void lock(void)
{
    apr_global_mutex_lock(mutex);
}

static void unlock(void)
{
    apr_global_mutex_unlock(mutex);
}

void aiproxy_lease_pre_config(apr_pool_t *pconf)
{
    ap_mutex_register(pconf, MUTEX_TYPE, NULL, APR_LOCK_DEFAULT, 0);
}

/* Letters, digits, '-' and '_' of the hostname: it names a field. */
static const char *default_host(apr_pool_t *p)
{
    char buf[APRMAXHOSTLEN + 1], *c;

    if (apr_gethostname(buf, sizeof(buf), p) != APR_SUCCESS || !*buf)
        return "host";
    buf[64] = '\0';
    for (c = buf; *c; c++)
        if (!apr_isalnum(*c) && *c != '-' && *c != '_')
            *c = '_';
    return apr_pstrdup(p, buf);
}

int aiproxy_lease_post_config(apr_pool_t *pconf, server_rec *s)
{
    aiproxy_global_t *g = aiproxy_global(s);
    unsigned char nonce[6];
    apr_size_t size, n = (apr_size_t)g->lease_slots;
    apr_shm_t *shm;
    apr_status_t rv;

    conf = g;
    table = NULL;
    if (g->lease_size <= 0 || !g->token_keys)
        return OK;
    rv = ap_global_mutex_create(&mutex, NULL, MUTEX_TYPE, NULL, s, pconf, 0);
    if (rv != APR_SUCCESS)
        return !OK;
    size = APR_ALIGN_DEFAULT(sizeof(table_t)) +
           APR_ALIGN_DEFAULT(n * sizeof(slot_t)) + n * sizeof(ticket_t);
    rv = apr_shm_create(&shm, size, NULL, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, AIPLOGNO(02301)
                     "AIProxyLeaseSlots: cannot create %" APR_SIZE_T_FMT
                     " bytes of shared memory for leases", size);
        return !OK;
    }
    table = apr_shm_baseaddr_get(shm);
    memset(table, 0, size);
    table->nslots = (apr_uint32_t)n;
    slots = (slot_t *)((char *)table + APR_ALIGN_DEFAULT(sizeof(table_t)));
    tickets = (ticket_t *)((char *)slots + APR_ALIGN_DEFAULT(n * sizeof(slot_t)));
    /* A name of its own per start: a restarted host never mistakes the
     * leases of its previous life (flushed, or lost in a crash) for its
     * own; those expire and are swept. */
    apr_generate_random_bytes(nonce, sizeof(nonce));
    apr_cpystrn(table->host, g->host_id ? g->host_id : default_host(pconf),
                sizeof(table->host));
    apr_snprintf(table->name, sizeof(table->name),
                 "L-%s-%02x%02x%02x%02x%02x%02x", table->host, nonce[0],
                 nonce[1], nonce[2], nonce[3], nonce[4], nonce[5]);
    lease_server = s;
    return OK;
}

/* ---- The table; every function here runs under the mutex. ---- */

static int find_slot(const char *key, int add)
{
    apr_uint32_t h = hash_of(key), i, n = table->nslots;
    int reuse = -1;

    for (i = 0; i < n; i++) {
        apr_uint32_t k = (h + i) % n;
        slot_t *sl = &slots[k];

        if (sl->state == SLOT_EMPTY) {
            if (!add)
                return -1;
            if (reuse < 0)
                reuse = (int)k;
            break;
        }
        if (sl->state == SLOT_GONE) {
            if (reuse < 0)
                reuse = (int)k;
            continue;
        }
        if (sl->hash == h && !strcmp(sl->key, key))
            return (int)k;
    }
    if (!add || reuse < 0)
        return -1;
    memset(&slots[reuse], 0, sizeof(slot_t));
    apr_cpystrn(slots[reuse].key, key, KEY_MAX);
    slots[reuse].hash = h;
    slots[reuse].state = SLOT_LIVE;
    slots[reuse].cap = -1;
    slots[reuse].last_use_ms = now_ms();
    return reuse;
}

static ticket_t *ticket_take(int slot, const aiproxy_req_t *st)
{
    apr_uint32_t i, n = table->nslots, start = (apr_uint32_t)my_pid % n;

    for (i = 0; i < n; i++) {
        ticket_t *t = &tickets[(start + i) % n];

        if (t->slot)
            continue;
        memset(t, 0, sizeof(*t));
        t->slot = (apr_uint32_t)slot + 1;
        t->pid = my_pid;
        t->amount = st->reserved;
        t->time_ms = now_ms();
        apr_cpystrn(t->id, st->id, sizeof(t->id));
        apr_cpystrn(t->endpoint, st->endpoint, sizeof(t->endpoint));
        apr_cpystrn(t->model, st->info.model ? st->info.model : "",
                    sizeof(t->model));
        apr_cpystrn(t->course, st->course ? st->course : "",
                    sizeof(t->course));
        return t;
    }
    return NULL;
}

/* The month as this host sees it. */
static void view(const slot_t *sl, aiproxy_month_t *m)
{
    m->spent = sl->store_spent + sl->w_spent + sl->unflushed;
    m->requests = sl->store_requests + sl->w_n + sl->unflushed_n;
    m->reserved = sl->size - sl->unflushed - sl->w_spent;
}

/* Takes a ticket's ceiling back: its request settled at cost, or its
 * process died (then it is charged the whole ceiling). */
static void ticket_settle(ticket_t *t, aiproxy_money_t cost, int counts)
{
    slot_t *sl = &slots[t->slot - 1];

    sl->inflight -= t->amount;
    sl->inflight_n -= 1;
    if (t->unbacked) {
        sl->unbacked += cost;
    }
    else {
        sl->free += t->amount - cost;
    }
    sl->unflushed += cost;
    sl->unflushed_n += counts;
    sl->last_use_ms = now_ms();
    t->slot = 0;
}

/* ---- Writes ---- */

typedef struct {
    aiproxy_lease_op_t op;
    char email[KEY_MAX];
    const char *month;
} write_t;

/* The write recorded in sl (w_*), as the store's operation. */
static void fill_op(const slot_t *sl, write_t *w)
{
    char *bar;

    memset(w, 0, sizeof(*w));
    apr_cpystrn(w->email, sl->key, sizeof(w->email));
    bar = strrchr(w->email, '|');
    if (bar)
        *bar = '\0';
    w->month = bar ? bar + 1 : "";
    w->op.email = w->email;
    w->op.month = w->month;
    w->op.lease = table->name;
    w->op.host = table->host;
    w->op.seq = sl->seq;
    w->op.spent = sl->w_spent;
    w->op.spent_unbacked = sl->w_unbacked;
    w->op.requests = sl->w_n;
    w->op.grow = sl->w_grow;
    w->op.cap = sl->cap;
    w->op.inflight = sl->inflight;
    w->op.inflight_n = sl->inflight_n;
}

/* Marks sl busy with the write it is about to make; under the mutex. The
 * unflushed money moves into the write; money given back leaves free at
 * once, so no request is admitted from it meanwhile. A pending write goes
 * first, unchanged (grow is then ignored). */
static void write_begin(slot_t *sl, aiproxy_money_t grow, write_t *w)
{
    sl->busy = my_pid;
    if (sl->pending) {
        fill_op(sl, w);
        return;
    }
    sl->w_spent = sl->unflushed;
    sl->w_n = sl->unflushed_n;
    sl->w_unbacked = sl->unbacked;
    sl->w_grow = grow;
    sl->unflushed = sl->unflushed_n = sl->unbacked = 0;
    if (grow < 0)
        sl->free += grow;
    fill_op(sl, w);
}

/* The write's outcome, under the mutex. */
static void write_end(slot_t *sl, int slot, aiproxy_ledger_rc_t rc,
                      const aiproxy_month_t *m)
{
    apr_uint32_t i;

    if (rc == AIPROXY_LEDGER_OK) {
        if (sl->w_capped)
            sl->cap = sl->w_cap;
        sl->seq += 1;
        sl->size += sl->w_grow - (sl->w_spent - sl->w_unbacked);
        if (sl->w_grow > 0)
            sl->free += sl->w_grow;
        sl->store_spent = m->spent;
        sl->store_requests = m->requests;
        sl->written_ms = now_ms();
    }
    else if (rc == AIPROXY_LEDGER_NOT_FOUND) {
        /* The hold expired and was swept: charged what was in flight at
         * the last write and released the rest. What this host holds now
         * is backed by nothing; it is charged outside any hold. */
        sl->seq = 0;
        sl->size = 0;
        sl->free = 0;
        sl->unflushed += sl->w_spent;
        sl->unflushed_n += sl->w_n;
        sl->unbacked = sl->unflushed;
        for (i = 0; i < table->nslots; i++)
            if (tickets[i].slot == (apr_uint32_t)slot + 1)
                tickets[i].unbacked = 1;
    }
    else if (rc == AIPROXY_LEDGER_DOWN) {
        /* It may have landed: only the same write, sent again, can tell
         * (a bigger one would be taken for it and its extra lost). */
        sl->pending = 1;
        sl->busy = 0;
        return;
    }
    else {
        /* Refused (over the cap): nothing was written. */
        sl->unflushed += sl->w_spent;
        sl->unflushed_n += sl->w_n;
        sl->unbacked += sl->w_unbacked;
        if (sl->w_grow < 0)
            sl->free -= sl->w_grow;
    }
    sl->w_spent = sl->w_n = sl->w_unbacked = sl->w_grow = 0;
    sl->w_capped = 0;
    sl->pending = 0;
    sl->busy = 0;
}

/* Makes the write begun on slot i, outside the mutex. */
static aiproxy_ledger_rc_t write_run(apr_pool_t *p, int i, write_t *w,
                                     aiproxy_month_t *m, aiproxy_money_t *load,
                                     const char **err)
{
    aiproxy_ledger_t *l = aiproxy_child_ledger();
    aiproxy_ledger_rc_t rc;

    w->op.now_ms = now_ms();
    w->op.expires_ms = w->op.now_ms + (apr_int64_t)conf->lease_ttl * 1000;
    aiproxy_stat_inc(AIPROXY_STAT_LEASE_WRITES);
    if (!l) {
        *err = "no store connection pool";
        rc = AIPROXY_LEDGER_DOWN;
    }
    else {
        rc = aiproxy_ledger_lease_write(l, p, &w->op, m, load, err);
    }
    lock();
    write_end(&slots[i], i, rc, m);
    unlock();
    return rc;
}

/* Takes over, under the mutex, the write of a process that died making
 * it: the same write sent again lands once (the sequence says whether it
 * had), so it must be exactly the same, not what is unflushed now. */
static int adopt_write(slot_t *sl, write_t *w)
{
    if (!sl->busy || !pid_dead(sl->busy))
        return 0;
    sl->busy = my_pid;
    fill_op(sl, w);
    return 1;
}

/* ---- Requests ---- */

/* Takes st->reserved for the request from the lease of account (a user's
 * email or a course's "#id") under cap; *ticket names what it took. */
static aiproxy_lease_rc_t take(request_rec *r, aiproxy_req_t *st,
                               const char *account, aiproxy_money_t cap,
                               int *ticket, aiproxy_month_t *m,
                               const char **err)
{
    const char *key;
    apr_int64_t deadline;
    aiproxy_money_t want = 0;  /* > 0: a tight growth after a refusal */
    int i, tries = 0;

    if (!table)
        return AIPROXY_LEASE_NONE;
    key = apr_pstrcat(r->pool, account, "|", st->month, NULL);
    if (strlen(key) >= KEY_MAX)
        return AIPROXY_LEASE_NONE;
    deadline = now_ms() + 2 * (apr_int64_t)conf->store_timeout_ms + 1000;
    for (;;) {
        slot_t *sl;
        write_t w;
        aiproxy_money_t grow, load = 0;
        aiproxy_ledger_rc_t rc;

        lock();
        if ((i = find_slot(key, 1)) < 0) {
            unlock();
            return AIPROXY_LEASE_NONE;
        }
        sl = &slots[i];
        sl->last_use_ms = now_ms();
        if (sl->cap >= 0 && cap > sl->cap)
            sl->cap = cap;      /* raised: what it holds still fits */
        if (sl->cap == cap && sl->free >= st->reserved) {
            ticket_t *t = ticket_take(i, st);

            if (!t) {
                unlock();
                return AIPROXY_LEASE_NONE;
            }
            sl->free -= st->reserved;
            sl->inflight += st->reserved;
            sl->inflight_n += 1;
            *ticket = (int)(t - tickets) + 1;
            view(sl, m);
            unlock();
            aiproxy_stat_inc(AIPROXY_STAT_LEASED);
            return AIPROXY_LEASE_TAKEN;
        }
        if (sl->busy && !adopt_write(sl, &w)) {
            /* Another request or the flusher is writing this lease. */
            unlock();
            if (now_ms() > deadline) {
                *err = "the lease stayed busy";
                return AIPROXY_LEASE_DOWN;
            }
            apr_sleep(apr_time_from_msec(1));
            continue;
        }
        if (!sl->busy && sl->pending) {
            write_begin(sl, 0, &w);
        }
        else if (!sl->busy) {
            if (cap < sl->cap) {
                /* The cap went down: give back what was taken under the
                 * old one, then grow under the new. */
                grow = -sl->free;
                sl->w_capped = 1;
                sl->w_cap = cap;
            }
            else {
                aiproxy_money_t need = st->reserved - sl->free;
                aiproxy_money_t full = conf->lease_size > st->reserved
                                       ? conf->lease_size : st->reserved;

                grow = want >= need ? want : full - sl->free;
                sl->cap = cap;
            }
            write_begin(sl, grow, &w);
        }
        unlock();
        /* Only the give-back itself adopts the lower cap (write_end): a
         * pending or adopted write before it left free as the old cap
         * granted it. */
        rc = write_run(r->pool, i, &w, m, &load, err);
        if (rc == AIPROXY_LEDGER_OVER_CAP) {
            aiproxy_money_t need;

            lock();
            need = st->reserved - slots[i].free;
            slots[i].tight = 1;
            /* What this host spent and has not written yet counts too. */
            m->spent += slots[i].unflushed + slots[i].w_spent;
            unlock();
            /* Near the cap: exactly what this request needs, if that
             * fits; else refused, as a hold would have been. */
            if (want == 0 && need > 0 && need <= cap - load) {
                want = need;
                continue;
            }
            return AIPROXY_LEASE_OVER_CAP;
        }
        if (rc == AIPROXY_LEDGER_DOWN)
            return AIPROXY_LEASE_DOWN;
        if (rc == AIPROXY_LEDGER_OK && w.op.grow > 0 && want == 0) {
            lock();
            slots[i].tight = 0;
            unlock();
        }
        if (++tries > 8) {
            *err = "the lease kept changing";
            return AIPROXY_LEASE_DOWN;
        }
    }
}

aiproxy_lease_rc_t aiproxy_lease_take(request_rec *r, aiproxy_req_t *st,
                                      aiproxy_month_t *m, const char **err)
{
    return take(r, st, st->email, st->cap, &st->ticket, m, err);
}

aiproxy_lease_rc_t aiproxy_lease_take_course(request_rec *r,
                                             aiproxy_req_t *st,
                                             const char **err)
{
    return take(r, st, st->course_account, st->course_budget,
                &st->course_ticket, &st->course_month, err);
}

static void settle(int *ticket, aiproxy_money_t cost, int counts,
                   aiproxy_month_t *m)
{
    ticket_t *t = &tickets[*ticket - 1];
    slot_t *sl;

    lock();
    sl = &slots[t->slot - 1];
    ticket_settle(t, cost, counts);
    view(sl, m);
    unlock();
    *ticket = 0;
}

void aiproxy_lease_settle(aiproxy_req_t *st, aiproxy_money_t cost,
                          int counts, aiproxy_month_t *m)
{
    settle(&st->ticket, cost, counts, m);
}

void aiproxy_lease_settle_course(aiproxy_req_t *st, aiproxy_money_t cost,
                                 int counts)
{
    settle(&st->course_ticket, cost, counts, &st->course_month);
}

int aiproxy_lease_count(aiproxy_req_t *st, const char *account,
                        aiproxy_month_t *m)
{
    char key[KEY_MAX];
    int i;

    if (!table || apr_snprintf(key, sizeof(key), "%s|%s", account,
                               st->month) >= (int)sizeof(key) - 1)
        return 0;
    lock();
    if ((i = find_slot(key, 1)) >= 0) {
        slots[i].unflushed_n += 1;
        slots[i].last_use_ms = now_ms();
        view(&slots[i], m);
    }
    unlock();
    return i >= 0;
}

/* ---- The flusher ---- */

/* Failed writes are logged at most this often per child: a store that is
 * down for a minute is a few lines, not one per user per pass. */
#define WRITE_LOG_MS 10000

static apr_int64_t write_logged_ms;

static void write_failed(aiproxy_ledger_rc_t rc, const char *err)
{
    apr_int64_t now = now_ms();

    if (now - write_logged_ms < WRITE_LOG_MS)
        return;
    write_logged_ms = now;
    ap_log_error(APLOG_MARK, APLOG_WARNING, 0, lease_server, AIPLOGNO(02302)
                 "lease write failed (%s): spending waits on this host and "
                 "is written when the store answers", rc ==
                 AIPROXY_LEDGER_NOT_FOUND ? "the lease had expired and was "
                 "swept" : err);
}

/* The tickets of children that died: their requests may have done the
 * work, so each is charged its ceiling, as a swept hold is, with an
 * estimated request record. */
static void charge_dead_tickets(apr_pool_t *p)
{
    apr_array_header_t *recs = apr_array_make(p, 4, sizeof(aiproxy_record_t));
    apr_uint32_t i;
    int k;

    lock();
    for (i = 0; i < table->nslots; i++) {
        ticket_t *t = &tickets[i];
        aiproxy_record_t *rec;
        char *bar;

        if (!t->slot || !pid_dead(t->pid))
            continue;
        if (aiproxy_course_is_account(slots[t->slot - 1].key)) {
            /* Its user's ticket records the request. */
            ticket_settle(t, t->amount, 1);
            continue;
        }
        rec = apr_array_push(recs);
        memset(rec, 0, sizeof(*rec));
        rec->id = apr_pstrdup(p, t->id);
        rec->email = apr_pstrdup(p, slots[t->slot - 1].key);
        bar = strrchr((char *)rec->email, '|');
        if (bar)
            *bar = '\0';
        rec->month = bar ? bar + 1 : "";
        rec->endpoint = apr_pstrdup(p, t->endpoint);
        rec->model = apr_pstrdup(p, t->model);
        rec->course = t->course[0] ? apr_pstrdup(p, t->course) : NULL;
        rec->time_ms = now_ms();
        rec->cost = rec->reserved = t->amount;
        rec->estimated = 1;
        rec->held = 1;
        ticket_settle(t, t->amount, 1);
    }
    unlock();
    for (k = 0; k < recs->nelts; k++) {
        aiproxy_record_t *rec = &APR_ARRAY_IDX(recs, k, aiproxy_record_t);
        const char *err = "no store connection pool";

        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, lease_server,
                     AIPLOGNO(02303) "request %s of %s was in flight in a "
                     "child that died: charged its reservation of %s USD",
                     rec->id, rec->email,
                     aiproxy_money_format(p, rec->cost));
        if (!aiproxy_child_ledger() ||
            aiproxy_ledger_put_record(aiproxy_child_ledger(), p, rec, &err)
            != AIPROXY_LEDGER_OK)
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, lease_server,
                         AIPLOGNO(02304) "no record for request %s: %s",
                         rec->id, err);
    }
}

/* Decides, under the mutex, what slot i needs: 1 and *w begun when a
 * write, 2 when its (empty) hold can go, 3 when another process is
 * writing it, 0 when nothing. */
static int slot_needs(int i, int giveall, write_t *w)
{
    slot_t *sl = &slots[i];
    apr_int64_t now = now_ms();
    int idle, renew;

    if (sl->state != SLOT_LIVE)
        return 0;
    if (sl->busy)
        return adopt_write(sl, w) ? 1 : 3;
    if (sl->pending) {
        write_begin(sl, 0, w);
        return 1;
    }
    idle = sl->inflight_n == 0 &&
           now - sl->last_use_ms > (apr_int64_t)conf->lease_idle * 1000;
    renew = sl->seq > 0 &&
            now - sl->written_ms > (apr_int64_t)conf->lease_ttl * 1000 / 3;
    if (sl->free > 0 && (sl->tight || idle || giveall)) {
        write_begin(sl, -sl->free, w);
        return 1;
    }
    if (sl->unflushed_n || sl->unflushed || renew) {
        write_begin(sl, 0, w);
        return 1;
    }
    if ((idle || giveall) && sl->size == 0 && sl->inflight_n == 0 &&
        !sl->unbacked) {
        if (sl->seq == 0) {
            sl->state = SLOT_GONE;
            return 0;
        }
        return 2;
    }
    return 0;
}

/* Leases written in one round trip by the flusher. */
#define WRITE_BATCH 256

/* Makes the writes begun on slots idx[0..n) in one round trip. */
static void write_batch(apr_pool_t *p, const int *idx, write_t *w, int n,
                        apr_int64_t deadline_ms)
{
    aiproxy_lease_op_t *ops = apr_palloc(p, n * sizeof(*ops));
    aiproxy_ledger_rc_t *rcs = apr_palloc(p, n * sizeof(*rcs));
    aiproxy_month_t *months = apr_palloc(p, n * sizeof(*months));
    aiproxy_money_t *loads = apr_palloc(p, n * sizeof(*loads));
    const char **errs = apr_palloc(p, n * sizeof(*errs));
    apr_int64_t now = now_ms();
    int k;

    for (k = 0; k < n; k++) {
        ops[k] = w[k].op;
        ops[k].now_ms = now;
        ops[k].expires_ms = now + (apr_int64_t)conf->lease_ttl * 1000;
        rcs[k] = AIPROXY_LEDGER_DOWN;
        errs[k] = "the child is stopping";
    }
    if (aiproxy_stat_slot(AIPROXY_STAT_LEASE_WRITES))
        apr_atomic_add32(aiproxy_stat_slot(AIPROXY_STAT_LEASE_WRITES),
                         (apr_uint32_t)n);
    if (aiproxy_child_ledger() && (!deadline_ms || now < deadline_ms))
        aiproxy_ledger_lease_write_many(aiproxy_child_ledger(), p, ops,
                                        (apr_size_t)n, rcs, months, loads,
                                        errs);
    lock();
    for (k = 0; k < n; k++)
        write_end(&slots[idx[k]], idx[k], rcs[k], &months[k]);
    unlock();
    for (k = 0; k < n; k++)
        if (rcs[k] != AIPROXY_LEDGER_OK) {
            write_failed(rcs[k], errs[k]);
            break;
        }
}

/* Removes slot i's empty hold; the slot is free then unless a request came
 * meanwhile. */
static void drop_slot(apr_pool_t *p, int i)
{
    char email[KEY_MAX], *bar;
    const char *err = "";
    apr_int64_t seq;

    lock();
    apr_cpystrn(email, slots[i].key, sizeof(email));
    seq = slots[i].seq;
    unlock();
    bar = strrchr(email, '|');
    if (!bar || !aiproxy_child_ledger())
        return;
    *bar = '\0';
    if (aiproxy_ledger_lease_drop(aiproxy_child_ledger(), p, email, bar + 1,
                                  table->name, seq, &err)
        != AIPROXY_LEDGER_OK) {
        write_failed(AIPROXY_LEDGER_DOWN, err);
        return;
    }
    lock();
    if (slots[i].seq == seq && !slots[i].busy && slots[i].size == 0 &&
        slots[i].inflight_n == 0 && !slots[i].unflushed_n &&
        !slots[i].unflushed)
        slots[i].state = SLOT_GONE;
    unlock();
}

/* One pass over the table: every lease that needs a write gets it, in
 * batches. giveall: every lease's free part goes back, and its hold then
 * (the last child of a stopping server). Stops at deadline_ms (0: none). */
static void flush_pass(apr_pool_t *p, int giveall, apr_int64_t deadline_ms)
{
    int *idx = apr_palloc(p, WRITE_BATCH * sizeof(int));
    write_t *w = apr_palloc(p, WRITE_BATCH * sizeof(write_t));
    int round;

    charge_dead_tickets(p);
    /* A lease given back in one round has its empty hold dropped in the
     * next; when giving all back, leases another stopping child is writing
     * are waited for. */
    for (round = 0; round < 20; round++) {
        apr_uint32_t i;
        int n = 0, did = 0, busy = 0;

        for (i = 0; i < table->nslots; i++) {
            int need;

            if (slots[i].state != SLOT_LIVE)
                continue;       /* a racy peek: a slot made meanwhile waits */
            if (deadline_ms && now_ms() > deadline_ms)
                break;
            lock();
            need = slot_needs((int)i, giveall, &w[n]);
            unlock();
            if (need == 1) {
                idx[n++] = (int)i;
                did = 1;
            }
            else if (need == 2) {
                drop_slot(p, (int)i);
            }
            else if (need == 3) {
                busy = 1;
            }
            if (n == WRITE_BATCH) {
                write_batch(p, idx, w, n, deadline_ms);
                n = 0;
            }
        }
        if (n)
            write_batch(p, idx, w, n, deadline_ms);
        if (!did && !(busy && giveall))
            break;
        if (!did)
            apr_sleep(apr_time_from_msec(20));
        if (deadline_ms && now_ms() > deadline_ms)
            break;
    }
}

static void *APR_THREAD_FUNC flusher_main(apr_thread_t *thread, void *data)
{
    apr_pool_t *p;
    pid_t me = getpid();

    (void)data;
    apr_pool_create(&p, apr_thread_pool_get(thread));
    apr_thread_mutex_lock(wake_lock);
    while (!stopping) {
        apr_int64_t now;
        int mine;

        apr_thread_cond_timedwait(wake, wake_lock,
                                  apr_time_from_msec(conf->lease_flush_ms));
        if (stopping)
            break;
        apr_thread_mutex_unlock(wake_lock);
        /* One child's thread writes at a time; another takes over when it
         * dies or stalls. */
        now = now_ms();
        lock();
        mine = table->flusher == me || !table->flusher ||
               pid_dead(table->flusher) ||
               now - table->flusher_ms > 10 * (apr_int64_t)conf->lease_flush_ms
                                         + 5000;
        if (mine) {
            table->flusher = me;
            table->flusher_ms = now;
        }
        unlock();
        if (mine)
            flush_pass(p, 0, 0);
        apr_pool_clear(p);
        apr_thread_mutex_lock(wake_lock);
    }
    apr_thread_mutex_unlock(wake_lock);
    apr_pool_destroy(p);
    apr_thread_exit(thread, APR_SUCCESS);
    return NULL;
}

/* The child's last pass: what it settled is written, and the last child
 * out (a server stopping) gives every lease back. Bounded, since httpd
 * kills children that take long to go. */
static apr_status_t child_stop(void *data)
{
    apr_pool_t *p = data, *sub;
    apr_status_t rv;
    pid_t me = getpid();
    int k, last = 1;

    stopping = 1;
    if (flusher) {
        apr_thread_mutex_lock(wake_lock);
        apr_thread_cond_signal(wake);
        apr_thread_mutex_unlock(wake_lock);
        apr_thread_join(&rv, flusher);
        flusher = NULL;
    }
    /* The last one out gives the leases back: the server is stopping (or
     * this generation ends in a graceful restart) when every other child
     * is stopping too or gone. Two may both think so; giving back twice
     * gives nothing the second time. */
    lock();
    for (k = 0; k < LIVE_MAX; k++)
        if (table->live[k] == me)
            table->leaving[k] = 1;
    for (k = 0; k < LIVE_MAX; k++)
        if (table->live[k] && table->live[k] != me && !table->leaving[k] &&
            !pid_dead(table->live[k]))
            last = 0;
    if (table->flusher == me)
        table->flusher = 0;
    unlock();
    apr_pool_create(&sub, p);
    flush_pass(sub, last, now_ms() + 2000);
    apr_pool_destroy(sub);
    return APR_SUCCESS;
}

void aiproxy_lease_child_init(apr_pool_t *p, server_rec *s)
{
    pid_t me = my_pid = getpid();
    apr_status_t rv;
    int k;

    if (!table)
        return;
    rv = apr_global_mutex_child_init(&mutex, apr_global_mutex_lockfile(mutex),
                                     p);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, AIPLOGNO(02305)
                     "cannot attach the lease mutex: leases off in this "
                     "child");
        table = NULL;
        return;
    }
    lock();
    for (k = 0; k < LIVE_MAX; k++)
        if (!table->live[k] || pid_dead(table->live[k])) {
            table->live[k] = me;
            table->leaving[k] = 0;
            break;
        }
    unlock();
    stopping = 0;
    if (apr_thread_mutex_create(&wake_lock, APR_THREAD_MUTEX_DEFAULT, p) ||
        apr_thread_cond_create(&wake, p) ||
        apr_thread_create(&flusher, NULL, flusher_main, NULL, p) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, AIPLOGNO(02306)
                     "cannot start the lease flusher in this child; another "
                     "child's writes");
        flusher = NULL;
    }
    /* Before the ledger's writer stops: records of dead children's
     * requests go through it. */
    apr_pool_pre_cleanup_register(p, p, child_stop);
}
