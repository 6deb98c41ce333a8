/* Threshold alerts (aiproxy_alert.h). Each child runs a thread; one of
 * them at a time (its pid in shared memory, taken over when it dies or
 * stalls) scans the month and delivers. The store makes it exact across
 * children and hosts: a crossing is an insert keyed account|month|pct (a
 * duplicate key means it is recorded already), and a delivery is claimed
 * with findAndModify by moving the alert's next_try ahead (a sender that
 * died leaves a claim that expires). */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <apr_atomic.h>
#include <apr_shm.h>
#include <apr_strings.h>
#include <apr_thread_cond.h>
#include <apr_thread_proc.h>
#include <apr_uri.h>

#include "httpd.h"
#include "http_log.h"

#include "aiproxy_alert.h"
#include "aiproxy_config.h"
#include "aiproxy_course.h"
#include "aiproxy_fetch.h"
#include "aiproxy_json.h"
#include "aiproxy_ledger_alert.h"
#include "aiproxy_ledger_course.h"
#include "aiproxy_policy.h"
#include "aiproxy_req.h"

APLOG_USE_MODULE(aiproxy);

#define POST_TIMEOUT_MS 5000
/* A claim outlives any one POST by far, so only a dead sender loses one. */
#define CLAIM_MS 60000
#define BACKOFF_MAX_MS (10 * 60 * 1000)
#define GIVE_UP_MS (APR_INT64_C(24) * 3600 * 1000)
#define REPLY_MAX 4096
#define SENDS_PER_PASS 100
/* Crossings known to be recorded, kept per child to spare the store an
 * insert per scan; forgotten past this many, or when the month turns. */
#define KNOWN_MAX 50000

typedef struct {
    apr_uint32_t owner;         /* pid of the child that scans; 0: none */
    volatile apr_int64_t beat_ms;   /* its last pass */
} alert_shm_t;

static alert_shm_t *shm;
static aiproxy_global_t *conf;
static server_rec *alert_server;
static const char *webhook_host;
static pid_t my_pid;

static apr_thread_t *scanner;
static apr_thread_mutex_t *wake_lock;
static apr_thread_cond_t *wake;
static volatile int stopping;

static apr_int64_t now_ms(void)
{
    return apr_time_as_msec(apr_time_now());
}

/* ---- Directives ---- */

const char *aiproxy_alert_set_webhook(cmd_parms *cmd, void *dc,
                                      const char *url)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    apr_uri_t uri;

    (void)dc;
    if (err)
        return err;
    /* The URL may hold a secret (Slack's do): never echoed. Empty (an
     * unset variable) leaves alerts off. */
    if (*url && (apr_uri_parse(cmd->pool, url, &uri) != APR_SUCCESS ||
                 !uri.scheme || !uri.hostname ||
                 (strcasecmp(uri.scheme, "http") &&
                  strcasecmp(uri.scheme, "https"))))
        return "AIProxyAlertWebhook: give an http:// or https:// URL";
    aiproxy_global(cmd->server)->alert_webhook = *url ? url : NULL;
    return NULL;
}

static int pct_order(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

const char *aiproxy_alert_set_thresholds(cmd_parms *cmd, void *dc, int argc,
                                         char *const argv[])
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    apr_array_header_t *a;
    int i, *v;

    (void)dc;
    if (err)
        return err;
    if (argc < 1)
        return "AIProxyAlertThresholds: give one or more percentages";
    a = apr_array_make(cmd->pool, argc, sizeof(int));
    for (i = 0; i < argc; i++) {
        char *end;
        long n = strtol(argv[i], &end, 10);

        if (!*argv[i] || *end || n < 1 || n > 1000)
            return apr_psprintf(cmd->pool, "AIProxyAlertThresholds: '%s' is "
                                "not a whole percentage from 1 to 1000",
                                argv[i]);
        APR_ARRAY_PUSH(a, int) = (int)n;
    }
    v = (int *)a->elts;
    qsort(v, a->nelts, sizeof(int), pct_order);
    for (i = 1; i < a->nelts; i++)
        if (v[i] == v[i - 1])
            return apr_psprintf(cmd->pool, "AIProxyAlertThresholds: %d is "
                                "given twice", v[i]);
    aiproxy_global(cmd->server)->alert_thresholds = a;
    return NULL;
}

const char *aiproxy_alert_set_interval(cmd_parms *cmd, void *dc,
                                       const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    char *end;
    long n = strtol(arg, &end, 10);

    (void)dc;
    if (err)
        return err;
    if (!*arg || *end || n < 1 || n > 3600)
        return apr_psprintf(cmd->pool, "AIProxyAlertInterval: '%s' is not a "
                            "whole number of seconds from 1 to 3600", arg);
    aiproxy_global(cmd->server)->alert_interval = (int)n;
    return NULL;
}

int aiproxy_alert_post_config(apr_pool_t *pconf, server_rec *s)
{
    aiproxy_global_t *g = aiproxy_global(s);
    apr_shm_t *seg;
    apr_status_t rv;

    conf = g;
    shm = NULL;
    if (!g->alert_webhook || !g->token_keys)
        return OK;
    rv = apr_shm_create(&seg, sizeof(alert_shm_t), NULL, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, AIPLOGNO(15501)
                     "AIProxyAlertWebhook: cannot create shared memory");
        return !OK;
    }
    shm = apr_shm_baseaddr_get(seg);
    memset(shm, 0, sizeof(*shm));
    return OK;
}

/* ---- Which child works ---- */

static int pid_dead(pid_t pid)
{
    return pid > 0 && kill(pid, 0) == -1 && errno == ESRCH;
}

/* This child's turn: it is the owner, or the owner died or stalled. */
static int my_turn(void)
{
    apr_uint32_t me = (apr_uint32_t)my_pid;
    apr_uint32_t was = apr_atomic_read32(&shm->owner);
    apr_int64_t now = now_ms();
    apr_int64_t stale = 3000 * (apr_int64_t)conf->alert_interval +
                        6 * POST_TIMEOUT_MS;

    if (was != me) {
        if (was && !pid_dead((pid_t)was) && now - shm->beat_ms < stale)
            return 0;
        if (apr_atomic_cas32(&shm->owner, me, was) != was)
            return 0;
    }
    shm->beat_ms = now;
    return 1;
}

/* ---- Scanning ---- */

/* Whether spent reached pct% of cap, exactly and without overflow:
 * spent * 100 >= cap * pct. A course's own percentages come from the
 * store: one outside 1-1000 counts as never reached. */
static int crossed(aiproxy_money_t spent, aiproxy_money_t cap, int pct)
{
    apr_int64_t q = cap / 100, r = cap % 100;

    if (pct < 1 || pct > 1000 || cap <= 0 || q > APR_INT64_MAX / pct - 1)
        return 0;
    return spent >= q * pct + (r * pct + 99) / 100;
}

typedef struct {
    apr_pool_t *pool;           /* lives across passes */
    apr_hash_t *known;          /* ids recorded in the store */
    const char *month;
} known_t;

static known_t known;

static void record(apr_pool_t *p, const char *account, const char *course,
                   const char *month, aiproxy_money_t spent,
                   aiproxy_money_t cap, const apr_array_header_t *pcts)
{
    int i;

    for (i = 0; i < pcts->nelts; i++) {
        int pct = APR_ARRAY_IDX(pcts, i, int), created;
        aiproxy_alert_t a;
        const char *err = "";

        if (!crossed(spent, cap, pct))
            continue;
        memset(&a, 0, sizeof(a));
        a.id = apr_psprintf(p, "%s|%s|%d", account, month, pct);
        if (apr_hash_get(known.known, a.id, APR_HASH_KEY_STRING))
            continue;
        a.account = account;
        a.kind = course ? "course" : "user";
        a.course = course;
        a.month = month;
        a.pct = pct;
        a.spent = spent;
        a.cap = cap;
        a.created_ms = now_ms();
        if (aiproxy_ledger_alert_add(aiproxy_child_ledger(), p, &a, &created,
                                     &err) != AIPROXY_LEDGER_OK) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, alert_server,
                         AIPLOGNO(15502) "alerts: cannot record %s: %s",
                         a.id, err);
            return;
        }
        if (created)
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, alert_server,
                         AIPLOGNO(15503) "alert: %s crossed %d%% of %s USD "
                         "in %s", account, pct,
                         aiproxy_money_format(p, cap), month);
        if (apr_hash_count(known.known) < KNOWN_MAX)
            apr_hash_set(known.known, apr_pstrdup(known.pool, a.id),
                         APR_HASH_KEY_STRING, "");
    }
}

/* The month's accounts against their caps: a user's by the policy every
 * request applies (the users collection, else the domain's, else
 * AIProxyMonthlyCap; a course member's enrolment cap is not looked at), a
 * course's budget with its own thresholds when it sets some. */
static void scan(apr_pool_t *p)
{
    aiproxy_ledger_t *l = aiproxy_child_ledger();
    const char *month = aiproxy_month_of(p, apr_time_now()), *err = "";
    apr_array_header_t *rows, *users = NULL;
    apr_hash_t *settings = NULL;
    int i;

    if (!known.month || strcmp(known.month, month) ||
        apr_hash_count(known.known) >= KNOWN_MAX) {
        apr_pool_clear(known.pool);
        known.known = apr_hash_make(known.pool);
        known.month = apr_pstrdup(known.pool, month);
    }
    if (aiproxy_ledger_alert_months(l, p, month, &rows, &err)
        != AIPROXY_LEDGER_OK) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, alert_server,
                     AIPLOGNO(15504) "alerts: cannot read the month: %s",
                     err);
        return;
    }
    for (i = 0; i < rows->nelts && !stopping; i++) {
        aiproxy_month_row_t *m = &APR_ARRAY_IDX(rows, i, aiproxy_month_row_t);

        if (aiproxy_course_is_account(m->email)) {
            aiproxy_course_t c;
            aiproxy_ledger_rc_t rc = aiproxy_ledger_course_get(l, p,
                                                               m->email + 1,
                                                               &c, &err);

            if (rc == AIPROXY_LEDGER_DOWN)
                return;
            if (rc == AIPROXY_LEDGER_OK)
                record(p, m->email, c.id, month, m->spent, c.budget,
                       c.alerts->nelts ? c.alerts : conf->alert_thresholds);
            continue;
        }
        if (!settings) {
            if (aiproxy_ledger_users(l, p, &users, &err) != AIPROXY_LEDGER_OK)
                return;
            settings = aiproxy_policy_settings(p, users);
        }
        {
            aiproxy_user_t u;

            aiproxy_policy_user_in(settings, m->email, &u);
            record(p, m->email, NULL, month, m->spent,
                   aiproxy_policy_cap(&u, conf->default_cap),
                   conf->alert_thresholds);
        }
    }
}

/* ---- Delivery ---- */

/* Dollars with at least two decimals, as people read them: "5.00". */
static const char *usd(apr_pool_t *p, aiproxy_money_t m)
{
    const char *s = aiproxy_money_format(p, m), *dot = strchr(s, '.');

    if (!dot)
        return apr_pstrcat(p, s, ".00", NULL);
    if (!dot[2])
        return apr_pstrcat(p, s, "0", NULL);
    return s;
}

/* Slack reads <...> in "text" as a mention or link (<!channel>): an email
 * is shown as text, with &, < and > escaped as Slack asks. */
static const char *slack_text(apr_pool_t *p, const char *s)
{
    char *out = apr_palloc(p, strlen(s) * 5 + 1), *o = out;

    for (; *s; s++) {
        const char *e = *s == '&' ? "&amp;" : *s == '<' ? "&lt;"
                        : *s == '>' ? "&gt;" : NULL;

        if (e) {
            memcpy(o, e, strlen(e));
            o += strlen(e);
        }
        else {
            *o++ = *s;
        }
    }
    *o = '\0';
    return out;
}

/* The webhook's JSON: a "text" line that Slack shows as is, and the
 * alert's fields for anything else. */
static const char *alert_body(apr_pool_t *p, const aiproxy_alert_t *a)
{
    const char *spent = usd(p, a->spent), *cap = usd(p, a->cap);
    const char *text = a->course
        ? apr_psprintf(p, "Course %s has spent $%s of its $%s budget for %s "
                       "(%d%% threshold)", a->course, spent, cap, a->month,
                       a->pct)
        : apr_psprintf(p, "%s has spent $%s of a $%s cap for %s (%d%% "
                       "threshold)", a->account, spent, cap, a->month, a->pct);

    text = slack_text(p, text);
    return apr_pstrcat(p, "{\"text\":", aiproxy_json_quote(p, text),
                       ",\"account\":", aiproxy_json_quote(p, a->account),
                       ",\"kind\":", aiproxy_json_quote(p, a->kind),
                       a->course ? ",\"course\":" : "",
                       a->course ? aiproxy_json_quote(p, a->course) : "",
                       ",\"month\":", aiproxy_json_quote(p, a->month),
                       apr_psprintf(p, ",\"threshold\":%d", a->pct),
                       ",\"spent\":", aiproxy_json_quote(p, spent),
                       ",\"cap\":", aiproxy_json_quote(p, cap), "}", NULL);
}

/* The wait before try attempts + 1: one scan interval, doubling, at most
 * BACKOFF_MAX_MS. */
static apr_int64_t backoff_ms(apr_int64_t attempts)
{
    apr_int64_t ms = 1000 * (apr_int64_t)conf->alert_interval;

    while (attempts-- > 1 && ms < BACKOFF_MAX_MS)
        ms *= 2;
    return ms < BACKOFF_MAX_MS ? ms : BACKOFF_MAX_MS;
}

/* Posts one claimed alert and records how it went; 0 when the store did
 * not answer (the pass stops). */
static int deliver_one(apr_pool_t *p, aiproxy_alert_t *a)
{
    aiproxy_ledger_t *l = aiproxy_child_ledger();
    const char *body = alert_body(p, a), *why, *err = "";
    aiproxy_fetch_reply_t reply;
    apr_int64_t now, next;
    int give_up;

    /* Never log the URL: it may carry a secret; its host says enough. */
    why = aiproxy_fetch_post(p, conf->alert_webhook, "application/json",
                             body, strlen(body), POST_TIMEOUT_MS, REPLY_MAX,
                             &stopping, &reply);
    now = now_ms();
    if (!why && reply.status >= 200 && reply.status < 300) {
        if (aiproxy_ledger_alert_sent(l, p, a->id, now, &err)
            != AIPROXY_LEDGER_OK) {
            /* Sent, not marked: it goes again when the claim expires. */
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, alert_server,
                         AIPLOGNO(15505) "alert %s was delivered but not "
                         "marked sent: %s", a->id, err);
            return 0;
        }
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, alert_server, AIPLOGNO(15506)
                     "alert %s delivered to %s", a->id, webhook_host);
        return 1;
    }
    if (!why)
        why = apr_psprintf(p, "HTTP status %ld", reply.status);
    give_up = now - a->created_ms >= GIVE_UP_MS;
    next = now + backoff_ms(a->attempts + 1);
    if (stopping) {
        /* Cut short by the child's exit: due again at once, for whichever
         * child or host is next. */
        give_up = 0;
        next = now;
        why = "cut short: the sending process stopped";
    }
    else if (give_up)
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, alert_server, AIPLOGNO(15507)
                     "alert %s not delivered to %s after %" APR_INT64_T_FMT
                     " attempts over 24 hours (%s): given up", a->id,
                     webhook_host, a->attempts + 1, why);
    else
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, alert_server,
                     AIPLOGNO(15508) "alert %s not delivered to %s (attempt "
                     "%" APR_INT64_T_FMT ": %s); next try in %" APR_INT64_T_FMT
                     " s", a->id, webhook_host, a->attempts + 1, why,
                     (next - now) / 1000);
    if (aiproxy_ledger_alert_failed(l, p, a, next, why, give_up, &err)
        != AIPROXY_LEDGER_OK)
        return 0;
    return 1;
}

static void deliver(apr_pool_t *p)
{
    int n;

    for (n = 0; n < SENDS_PER_PASS && !stopping; n++) {
        apr_pool_t *sub;
        aiproxy_alert_t a;
        const char *err = "";
        aiproxy_ledger_rc_t rc;
        int go_on;

        apr_pool_create(&sub, p);
        rc = aiproxy_ledger_alert_claim(aiproxy_child_ledger(), sub, now_ms(),
                                        CLAIM_MS, &a, &err);
        go_on = rc == AIPROXY_LEDGER_OK && deliver_one(sub, &a);
        apr_pool_destroy(sub);
        if (!go_on)
            break;
        shm->beat_ms = now_ms();
    }
}

/* ---- The thread ---- */

static void *APR_THREAD_FUNC scanner_main(apr_thread_t *thread, void *data)
{
    apr_pool_t *p;

    (void)data;
    apr_pool_create(&p, apr_thread_pool_get(thread));
    apr_pool_create(&known.pool, apr_thread_pool_get(thread));
    known.month = NULL;
    apr_thread_mutex_lock(wake_lock);
    while (!stopping) {
        apr_thread_cond_timedwait(wake, wake_lock,
                                  apr_time_from_sec(conf->alert_interval));
        if (stopping)
            break;
        apr_thread_mutex_unlock(wake_lock);
        if (aiproxy_child_ledger() && my_turn()) {
            scan(p);
            deliver(p);
        }
        apr_pool_clear(p);
        apr_thread_mutex_lock(wake_lock);
    }
    apr_thread_mutex_unlock(wake_lock);
    apr_pool_destroy(known.pool);
    apr_pool_destroy(p);
    /* A plain return, not apr_thread_exit: pthread_exit's unwinding skips
     * the frame's end, which ASan then reports at the thread's exit. */
    return NULL;
}

/* Before the ledger goes: the thread finishes what it is doing (a POST
 * takes at most POST_TIMEOUT_MS) and another child takes the turn. */
static apr_status_t child_stop(void *data)
{
    apr_status_t rv;

    (void)data;
    stopping = 1;
    if (scanner) {
        apr_thread_mutex_lock(wake_lock);
        apr_thread_cond_signal(wake);
        apr_thread_mutex_unlock(wake_lock);
        apr_thread_join(&rv, scanner);
        scanner = NULL;
    }
    apr_atomic_cas32(&shm->owner, 0, (apr_uint32_t)my_pid);
    return APR_SUCCESS;
}

static apr_status_t fetch_done(void *data)
{
    (void)data;
    aiproxy_fetch_cleanup();
    return APR_SUCCESS;
}

void aiproxy_alert_child_init(apr_pool_t *p, server_rec *s)
{
    apr_uri_t uri;

    if (!shm || !conf->alert_webhook)
        return;
    alert_server = s;
    my_pid = getpid();
    webhook_host = "the webhook";
    if (apr_uri_parse(p, conf->alert_webhook, &uri) == APR_SUCCESS &&
        uri.hostname)
        webhook_host = uri.hostname;
    if (aiproxy_fetch_init() != 0) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, AIPLOGNO(15509)
                     "cannot initialise libcurl: no alerts from this child");
        return;
    }
    apr_pool_cleanup_register(p, NULL, fetch_done, apr_pool_cleanup_null);
    stopping = 0;
    if (apr_thread_mutex_create(&wake_lock, APR_THREAD_MUTEX_DEFAULT, p) ||
        apr_thread_cond_create(&wake, p) ||
        apr_thread_create(&scanner, NULL, scanner_main, NULL, p)
        != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, AIPLOGNO(15510)
                     "cannot start the alert thread in this child; another "
                     "child's sends alerts");
        scanner = NULL;
        return;
    }
    apr_pool_pre_cleanup_register(p, NULL, child_stop);
}
