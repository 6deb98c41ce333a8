/* aiproxy-admin's commands: tokens, caps, revocation, usage, purging and
 * secrets, on the module's own ledger, token, secret and policy code. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <apr_file_io.h>
#include <apr_general.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_time.h>

#include "aiproxy_cli.h"
#include "aiproxy_cost.h"
#include "aiproxy_course.h"
#include "aiproxy_json.h"
#include "aiproxy_ledger_course.h"
#include "aiproxy_params.h"
#include "aiproxy_policy.h"
#include "aiproxy_secret.h"
#include "aiproxy_token.h"

#define USAGE_PAGE 1000
#define NO_SECRET "no token secret: give --secret or set AIPROXY_TOKEN_SECRET"

static const char *this_month(apr_pool_t *p)
{
    apr_time_exp_t tm;

    apr_time_exp_gmt(&tm, apr_time_now());
    return apr_psprintf(p, "%04d-%02d", tm.tm_year + 1900, tm.tm_mon + 1);
}

/* Every secret, as mod_aiproxy reads them at start-up. */
static const char *token_keys(aiproxy_cli_t *x, apr_array_header_t **keys)
{
    if (x->conf->secret_err)
        return x->conf->secret_err;
    if (x->conf->secret_specs->nelts == 0)
        return NO_SECRET;
    return aiproxy_secret_load_all(x->p, x->conf->secret_specs, keys);
}

int aiproxy_cli_token(aiproxy_cli_t *x, int argc, const char *const *argv)
{
    const char *email = NULL, *course = NULL, *err = "";
    apr_int64_t days = -1, lifetime = x->conf->token_lifetime;
    apr_int64_t iat = apr_time_sec(apr_time_now());
    apr_array_header_t *keys;
    aiproxy_user_t user;
    aiproxy_course_t c;
    aiproxy_ledger_rc_t rc;
    aiproxy_money_t cap;
    int i, member = 0, has_cap;
    char *token;

    for (i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--days") && i + 1 < argc) {
            char *end;

            days = apr_strtoi64(argv[++i], &end, 10);
            if (*end || !*argv[i] || days < 0 || days > 3660)
                return aiproxy_cli_usage_error(
                    "--days: '%s' is not a whole number of "
                    "days from 0 to 3660", argv[i]);
        }
        else if (!strcmp(argv[i], "--course") && i + 1 < argc) {
            course = argv[++i];
            if (!aiproxy_course_id_valid(course))
                return aiproxy_cli_usage_error(
                    "--course: '%s' is not a course id", course);
        }
        else if (!email && argv[i][0] != '-') {
            email = argv[i];
        }
        else {
            return aiproxy_cli_usage_error(
                "token: unexpected argument '%s'", argv[i]);
        }
    }
    if (!email)
        return aiproxy_cli_usage_error("token: give an EMAIL%s", "");
    if (!aiproxy_params_who(email, 0))
        return aiproxy_cli_usage_error(
            "token: '%s' is not an email address", email);
    email = aiproxy_params_lower(x->p, email);
    if ((err = token_keys(x, &keys)))
        return aiproxy_cli_fail("configuration", err);
    /* Issued after any revocation, even one in this very second. */
    if (aiproxy_ledger_user(x->ledger, x->p, email, &user, &err)
        != AIPROXY_LEDGER_OK)
        return aiproxy_cli_fail("store", err);
    if (course) {
        rc = aiproxy_ledger_course_get(x->ledger, x->p, course, &c, &err);
        if (rc == AIPROXY_LEDGER_OK)
            rc = aiproxy_ledger_is_member(x->ledger, x->p, course, email,
                                          &member, &has_cap, &cap, &err);
        if (rc == AIPROXY_LEDGER_DOWN)
            return aiproxy_cli_fail("store", err);
        if (rc == AIPROXY_LEDGER_NOT_FOUND)
            return aiproxy_cli_fail(course, "no such course");
        if (!member)
            return aiproxy_cli_fail(course, apr_pstrcat(x->p, email, " is not "
                                    "a member", NULL));
    }
    if (days >= 0)
        lifetime = days * 86400;
    token = aiproxy_token_issue(x->p, keys, email, course, iat,
                                user.revoked_at, lifetime);
    if (!token)
        return aiproxy_cli_fail("token", "cannot sign");
    printf("%s\n", token);
    if (user.revoked_at >= iat)
        iat = user.revoked_at + 1;
    return aiproxy_cli_audit(x, "token.issue", email, course, NULL,
                             apr_psprintf(x->p, "{\"course\":%s,\"exp\":%s}",
                                 course ? aiproxy_json_quote(x->p, course)
                                        : "null",
                                 lifetime > 0 ? apr_psprintf(x->p, "%"
                                     APR_INT64_T_FMT, iat + lifetime)
                                 : "null"));
}

/* secret new [FILE]: 32 random bytes as 64 hex digits, the form
 * AIProxyTokenSecret reads; FILE is made readable by its owner only. */
int aiproxy_cli_secret_new(apr_pool_t *p, int argc, const char *const *argv)
{
    unsigned char raw[AIPROXY_SECRET_MIN_BYTES];
    char hex[2 * sizeof(raw) + 2];
    apr_file_t *f;
    apr_size_t i, n;
    apr_status_t rv;

    if (argc > 1 || (argc == 1 && argv[0][0] == '-'))
        return aiproxy_cli_usage_error(
            "secret new: give at most a FILE%s", "");
    if (apr_generate_random_bytes(raw, sizeof(raw)) != APR_SUCCESS)
        return aiproxy_cli_fail(
            "secret new", "no random bytes from the system");
    for (i = 0; i < sizeof(raw); i++)
        apr_snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    hex[2 * sizeof(raw)] = '\n';
    hex[2 * sizeof(raw) + 1] = '\0';
    if (argc == 0) {
        fputs(hex, stdout);
        return 0;
    }
    rv = apr_file_open(&f, argv[0], APR_FOPEN_WRITE | APR_FOPEN_CREATE |
                       APR_FOPEN_EXCL, APR_FPROT_UREAD | APR_FPROT_UWRITE, p);
    if (rv != APR_SUCCESS)
        return aiproxy_cli_fail(
            argv[0], rv == APR_EEXIST ? "exists already; a "
            "secret is never overwritten" : "cannot create");
    n = strlen(hex);
    rv = apr_file_write_full(f, hex, n, NULL);
    if (apr_file_close(f) != APR_SUCCESS || rv != APR_SUCCESS)
        return aiproxy_cli_fail(argv[0], "cannot write");
    printf("wrote a new secret to %s; use it with\n"
           "AIProxyTokenSecret KEY-ID file:%s\n", argv[0], argv[0]);
    return 0;
}

/* secret list: what mod_aiproxy would load with the same lines, without a
 * single value. */
int aiproxy_cli_secret_list(aiproxy_cli_t *x, int argc)
{
    const apr_array_header_t *specs = x->conf->secret_specs;
    const char *first_err = x->conf->secret_err;
    int i, kidless = -1;

    if (argc != 0)
        return aiproxy_cli_usage_error(
            "secret list: takes no arguments%s", "");
    for (i = 0; i < specs->nelts && kidless < 0; i++)
        if (!APR_ARRAY_IDX(specs, i, aiproxy_secret_spec_t).kid)
            kidless = i;
    printf("%-20s %-26s %-40s %s\n", "KEY ID", "USE", "SOURCE", "STATE");
    for (i = 0; i < specs->nelts; i++) {
        const aiproxy_secret_spec_t *s =
            &APR_ARRAY_IDX(specs, i, aiproxy_secret_spec_t);
        const char *err, *use;
        aiproxy_token_key_t k;

        err = aiproxy_secret_load(x->p, s, &k);
        if (err && !first_err)
            first_err = err;
        use = i == specs->nelts - 1 ? "signs, verifies" : "verifies";
        /* Tokens without kid go to the secret without an id, else the
         * first (aiproxy_token_verify_keys). */
        if (i == (kidless >= 0 ? kidless : 0))
            use = apr_pstrcat(x->p, use, ", no-kid", NULL);
        printf("%-20s %-26s %-40s %s\n", s->kid ? s->kid : "-", use,
               s->spec, err ? "BAD (see below)" : "ok");
    }
    if (specs->nelts == 0 && !first_err)
        first_err = NO_SECRET;
    if (first_err)
        return aiproxy_cli_fail("secret", first_err);
    return 0;
}

int aiproxy_cli_cap(aiproxy_cli_t *x, int argc, const char *const *argv)
{
    const char *err = "", *who;
    aiproxy_money_t cap = 0;
    aiproxy_user_t old;
    int set, has_old;

    if (argc >= 1 && !strcmp(argv[0], "list") && argc == 1) {
        apr_array_header_t *rows;
        int i;

        if (aiproxy_ledger_users(x->ledger, x->p, &rows, &err)
            != AIPROXY_LEDGER_OK)
            return aiproxy_cli_fail("store", err);
        printf("%-40s %14s  %s\n", "WHO", "CAP (USD)", "REVOKED AT (UTC)");
        for (i = 0; i < rows->nelts; i++) {
            aiproxy_user_row_t *u = &APR_ARRAY_IDX(rows, i,
                                                   aiproxy_user_row_t);
            char when[APR_RFC822_DATE_LEN] = "-";

            if (u->revoked_at > 0)
                apr_rfc822_date(when, apr_time_from_sec(u->revoked_at));
            printf("%-40s %14s  %s\n", u->who,
                   u->has_cap ? aiproxy_money_format(x->p, u->cap) : "-",
                   when);
        }
        return 0;
    }
    if (argc < 2 || (strcmp(argv[0], "set") && strcmp(argv[0], "clear")))
        return aiproxy_cli_usage_error(
            "cap: use 'cap set WHO USD', 'cap clear WHO' or "
            "'cap list'%s", "");
    set = !strcmp(argv[0], "set");
    if (argc != (set ? 3 : 2))
        return aiproxy_cli_usage_error(set ? "cap set: give WHO and USD%s"
                               : "cap clear: give WHO only%s", "");
    who = argv[1];
    if (!aiproxy_params_who(who, 1))
        return aiproxy_cli_usage_error(
            "cap: '%s' is not an email or @domain", who);
    who = aiproxy_params_lower(x->p, who);
    if (set && (err = aiproxy_money_parse(x->p, argv[2], &cap)))
        return aiproxy_cli_usage_error("cap set: %s", err);
    if (aiproxy_ledger_user(x->ledger, x->p, who, &old, &err)
        != AIPROXY_LEDGER_OK ||
        aiproxy_ledger_set_cap(x->ledger, x->p, who, set, cap, &err)
        != AIPROXY_LEDGER_OK)
        return aiproxy_cli_fail("store", err);
    if (set)
        printf("cap of %s set to $%s a month\n", who,
               aiproxy_money_format(x->p, cap));
    else
        printf("cap of %s cleared\n", who);
    has_old = old.has_cap && (*who == '@' || old.cap_own);
    return aiproxy_cli_audit(x, set ? "cap.set" : "cap.clear", who, NULL,
                             has_old ? apr_psprintf(x->p, "\"%s\"",
                                 aiproxy_money_format(x->p, old.cap)) : NULL,
                             set ? apr_psprintf(x->p, "\"%s\"",
                                 aiproxy_money_format(x->p, cap)) : NULL);
}

int aiproxy_cli_revoke(aiproxy_cli_t *x, int argc, const char *const *argv)
{
    const char *err = "", *email;
    aiproxy_user_t old;
    apr_int64_t at;
    char when[APR_RFC822_DATE_LEN];

    if (argc != 1)
        return aiproxy_cli_usage_error("revoke: give one EMAIL%s", "");
    if (!aiproxy_params_who(argv[0], 0))
        return aiproxy_cli_usage_error(
            "revoke: '%s' is not an email address", argv[0]);
    email = aiproxy_params_lower(x->p, argv[0]);
    if (aiproxy_ledger_user(x->ledger, x->p, email, &old, &err)
        != AIPROXY_LEDGER_OK ||
        aiproxy_ledger_revoke(x->ledger, x->p, email,
                              apr_time_sec(apr_time_now()), &at, &err)
        != AIPROXY_LEDGER_OK)
        return aiproxy_cli_fail("store", err);
    apr_rfc822_date(when, apr_time_from_sec(at));
    printf("tokens of %s issued up to %s are refused; signing in again "
           "gives a new one\n", email, when);
    return aiproxy_cli_audit(x, "revoke", email, NULL, old.revoked_at
                             ? apr_psprintf(x->p, "%" APR_INT64_T_FMT,
                                            old.revoked_at) : NULL,
                             apr_psprintf(x->p, "%" APR_INT64_T_FMT, at));
}

int aiproxy_cli_usage(aiproxy_cli_t *x, int argc, const char *const *argv)
{
    const char *month = this_month(x->p), *email = NULL, *err = "";
    apr_array_header_t *rows, *users;
    apr_hash_t *settings;
    aiproxy_money_t total = 0;
    apr_int64_t requests = 0;
    int i;

    for (i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--month") && i + 1 < argc) {
            month = argv[++i];
            if (!aiproxy_params_month(month))
                return aiproxy_cli_usage_error(
                    "--month: '%s' is not YYYY-MM", month);
        }
        else if (!strcmp(argv[i], "--email") && i + 1 < argc) {
            email = argv[++i];
            if (!aiproxy_params_who(email, 0))
                return aiproxy_cli_usage_error(
                    "--email: '%s' is not an email address",
                    email);
            email = aiproxy_params_lower(x->p, email);
        }
        else {
            return aiproxy_cli_usage_error(
                "usage: unexpected argument '%s'", argv[i]);
        }
    }
    if (aiproxy_ledger_users(x->ledger, x->p, &users, &err)
        != AIPROXY_LEDGER_OK ||
        aiproxy_ledger_months(x->ledger, x->p, month, email, "monthlyCost", 0,
                              USAGE_PAGE, &rows, &err) != AIPROXY_LEDGER_OK)
        return aiproxy_cli_fail("store", err);
    settings = aiproxy_policy_settings(x->p, users);
    printf("%-7s  %-36s %16s %9s %14s %12s\n", "MONTH", "EMAIL",
           "SPENT (USD)", "REQUESTS", "RESERVED", "CAP");
    for (i = 0; i < rows->nelts; i++) {
        aiproxy_month_row_t *m = &APR_ARRAY_IDX(rows, i, aiproxy_month_row_t);
        aiproxy_user_t u;
        aiproxy_money_t cap;

        aiproxy_policy_user_in(settings, m->email, &u);
        cap = aiproxy_policy_cap(&u, x->conf->default_cap);
        total += m->spent;
        requests += m->requests;
        printf("%-7s  %-36s %16s %9" APR_INT64_T_FMT " %14s %12s\n", m->month,
               m->email, aiproxy_money_format(x->p, m->spent), m->requests,
               aiproxy_money_format(x->p, m->reserved),
               aiproxy_money_format(x->p, cap));
    }
    printf("%-7s  %-36s %16s %9" APR_INT64_T_FMT "\n", month,
           apr_psprintf(x->p, "total (%d users)", rows->nelts),
           aiproxy_money_format(x->p, total), requests);
    if (rows->nelts == USAGE_PAGE)
        fprintf(stderr, "aiproxy-admin: only the first %d users are shown\n",
                USAGE_PAGE);
    return 0;
}

/* Midnight UTC of YYYY-MM-DD in ms; -1 when it is no such day. */
static apr_int64_t day_start_ms(const char *day)
{
    apr_time_exp_t tm;
    apr_time_t t;
    int y, m, d;
    char extra;

    if (strlen(day) != 10 ||
        sscanf(day, "%4d-%2d-%2d%c", &y, &m, &d, &extra) != 3 ||
        y < 1970 || m < 1 || m > 12 || d < 1 || d > 31)
        return -1;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    if (apr_time_exp_gmt_get(&t, &tm) != APR_SUCCESS)
        return -1;
    /* 2026-02-31 would roll over into March: not a day. */
    if (apr_time_exp_gmt(&tm, t) != APR_SUCCESS || tm.tm_mday != d)
        return -1;
    return apr_time_as_msec(t);
}

int aiproxy_cli_purge(aiproxy_cli_t *x, int argc, const char *const *argv)
{
    apr_int64_t now_ms = apr_time_as_msec(apr_time_now()), before = -1;
    apr_int64_t deleted = 0;
    const char *err = "";
    char when[APR_RFC822_DATE_LEN];

    if (argc != 2)
        return aiproxy_cli_usage_error(
            "purge: give --before YYYY-MM-DD or --older-than "
            "DAYS%s", "");
    if (!strcmp(argv[0], "--before")) {
        if ((before = day_start_ms(argv[1])) < 0)
            return aiproxy_cli_usage_error(
                "--before: '%s' is not a day YYYY-MM-DD",
                argv[1]);
    }
    else if (!strcmp(argv[0], "--older-than")) {
        char *end;
        apr_int64_t days = apr_strtoi64(argv[1], &end, 10);

        if (*end || !*argv[1] || days < 1 || days > 36500)
            return aiproxy_cli_usage_error(
                "--older-than: '%s' is not a whole number of "
                "days from 1 to 36500", argv[1]);
        before = now_ms - days * 86400 * 1000;
    }
    else {
        return aiproxy_cli_usage_error(
            "purge: unexpected argument '%s'", argv[0]);
    }
    /* Today's records are still being written and read: never those. */
    if (before > now_ms)
        return aiproxy_cli_usage_error("purge: %s is in the future", argv[1]);
    if (aiproxy_ledger_purge_records(x->ledger, x->p, before, &deleted, &err)
        != AIPROXY_LEDGER_OK)
        return aiproxy_cli_fail("store", err);
    apr_rfc822_date(when, apr_time_from_msec(before));
    printf("deleted %" APR_INT64_T_FMT " request record(s) from before %s; "
           "month totals are kept\n", deleted, when);
    return 0;
}

