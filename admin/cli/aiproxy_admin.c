/* aiproxy-admin: the gateway's administration from a shell. It reads the
 * store and the token secret from the same httpd configuration as
 * mod_aiproxy and talks to the same ledger, with no httpd running.
 *
 * Exit status: 0 done, 1 usage error, 2 configuration or store error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <apr_file_io.h>
#include <apr_fnmatch.h>
#include <apr_general.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <apr_tables.h>
#include <apr_time.h>

#include "aiproxy.h"
#include "aiproxy_cost.h"
#include "aiproxy_ledger.h"
#include "aiproxy_params.h"
#include "aiproxy_secret.h"
#include "aiproxy_token.h"

#define EXIT_USAGE 1
#define EXIT_STORE 2
#define MAX_INCLUDE_DEPTH 16
#define USAGE_PAGE 1000

static const char usage_text[] =
"usage: aiproxy-admin [-f HTTPD.CONF] COMMAND [ARGS]\n"
"\n"
"Administers mod_aiproxy's users from a shell. The store (AIProxyStore,\n"
"AIProxyStoreDatabase) and the token secrets (AIProxyTokenSecret) come from\n"
"the httpd configuration, following Include lines and expanding ${VAR}\n"
"from the environment, so run it with the gateway's environment.\n"
"\n"
"commands:\n"
"  token EMAIL [--days N]      print a new token for EMAIL, signed with the\n"
"                              newest secret; it expires in N days (default:\n"
"                              AIProxyTokenLifetime, else 120 days; --days 0:\n"
"                              never)\n"
"  cap set WHO USD             set the monthly cap of an email or @domain\n"
"                              (USD as a decimal, e.g. 2.50)\n"
"  cap clear WHO               remove it (the default cap applies again)\n"
"  cap list                    every email and @domain with settings\n"
"  revoke EMAIL                refuse every token of EMAIL issued until now\n"
"  usage [--month YYYY-MM] [--email EMAIL]\n"
"                              spend per user for a month (default: this\n"
"                              month, UTC), highest first\n"
"  purge --before YYYY-MM-DD | --older-than DAYS\n"
"                              delete request records (the per-request\n"
"                              detail) from before that day (UTC) or older\n"
"                              than DAYS; month totals (the money) stay\n"
"  secret new [FILE]           a new random 32-byte secret, in hex: printed,\n"
"                              or written to FILE (mode 0600, never over an\n"
"                              existing file); needs no configuration\n"
"  secret list                 the configured secrets' key ids, which one\n"
"                              signs, where each comes from (never a value)\n"
"  help, --help, -h            this text\n"
"\n"
"options:\n"
"  -f FILE    httpd configuration (default: $AIPROXY_CONF, else\n"
"             conf/httpd.conf)\n"
"\n"
"exit status: 0 done, 1 usage error, 2 configuration or store error\n";

typedef struct {
    apr_pool_t *p;
    const char *server_root;
    apr_table_t *defines;        /* Define NAME VALUE */
    const char *store_uri;
    const char *store_db;
    int store_timeout_ms;
    apr_array_header_t *secret_specs; /* aiproxy_secret_spec_t */
    const char *secret_err;      /* first bad AIProxyTokenSecret line */
    const char *default_cap;     /* AIProxyMonthlyCap, as written */
    apr_int64_t token_lifetime;
    const char *err;             /* first configuration error */
} conf_t;

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "aiproxy-admin: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'aiproxy-admin --help'.\n");
    return EXIT_USAGE;
}

static int store_error(const char *what, const char *why)
{
    fprintf(stderr, "aiproxy-admin: %s: %s\n", what, why);
    return EXIT_STORE;
}

/* ---- The httpd configuration ------------------------------------------- */

/* ${NAME} from Define lines, then the environment, as httpd does. An
 * unset name becomes "" and is remembered in *missing. */
static const char *expand(conf_t *c, const char *in, const char **missing)
{
    const char *s = in, *open;
    char *out = "";

    while ((open = strstr(s, "${"))) {
        const char *close = strchr(open + 2, '}');
        const char *name, *v;

        if (!close)
            break;
        name = apr_pstrmemdup(c->p, open + 2, close - open - 2);
        v = apr_table_get(c->defines, name);
        if (!v)
            v = getenv(name);
        if (!v) {
            *missing = name;
            v = "";
        }
        out = apr_pstrcat(c->p, out, apr_pstrmemdup(c->p, s, open - s), v,
                          NULL);
        s = close + 1;
    }
    return apr_pstrcat(c->p, out, s, NULL);
}

/* The next argument of a directive line, unquoted. */
static const char *next_arg(apr_pool_t *p, const char **line)
{
    const char *s = *line, *start;
    char quote = 0;

    while (*s == ' ' || *s == '\t')
        s++;
    if (!*s)
        return NULL;
    if (*s == '"' || *s == '\'')
        quote = *s++;
    start = s;
    while (*s && (quote ? *s != quote : (*s != ' ' && *s != '\t')))
        s++;
    *line = *s ? s + 1 : s;
    return apr_pstrmemdup(p, start, s - start);
}

static void read_config(conf_t *c, const char *path, int optional,
                        int depth);

static void include(conf_t *c, const char *pattern, int optional, int depth)
{
    apr_array_header_t *files;
    const char *path = pattern;
    int i;

    if (*path != '/')
        path = apr_pstrcat(c->p, c->server_root, "/", path, NULL);
    if (!apr_fnmatch_test(path)) {
        read_config(c, path, optional, depth + 1);
        return;
    }
    if (apr_match_glob(path, &files, c->p) != APR_SUCCESS) {
        if (!optional && !c->err)
            c->err = apr_psprintf(c->p, "Include %s: no such files", path);
        return;
    }
    qsort(files->elts, files->nelts, sizeof(char *),
          (int (*)(const void *, const void *))strcmp);
    for (i = 0; i < files->nelts; i++) {
        /* apr_match_glob gives names relative to the pattern's folder. */
        const char *f = APR_ARRAY_IDX(files, i, const char *);
        const char *slash = strrchr(path, '/');

        if (*f != '/')
            f = apr_pstrcat(c->p, apr_pstrmemdup(c->p, path, slash - path),
                            "/", f, NULL);
        read_config(c, f, optional, depth + 1);
    }
}

static void directive(conf_t *c, const char *line, int depth)
{
    static const char *const used[] = {
        "Define", "ServerRoot", "Include", "IncludeOptional", "AIProxyStore",
        "AIProxyStoreDatabase", "AIProxyStoreTimeout", "AIProxyTokenSecret",
        "AIProxyMonthlyCap", "AIProxyTokenLifetime", NULL
    };
    const char *name = next_arg(c->p, &line);
    const char *arg = next_arg(c->p, &line);
    const char *arg2 = NULL, *missing = NULL;
    int i;

    if (!name || !arg)
        return;
    for (i = 0; used[i] && strcasecmp(used[i], name); i++)
        ;
    if (!used[i])
        return;     /* not ours: its variables may stay unset */
    if (!strcasecmp(name, "Define")) {
        const char *v = next_arg(c->p, &line);

        apr_table_set(c->defines, arg, v ? expand(c, v, &missing) : "");
        return;
    }
    arg = expand(c, arg, &missing);
    if (!strcasecmp(name, "AIProxyTokenSecret") &&
        (arg2 = next_arg(c->p, &line)))
        arg2 = expand(c, arg2, &missing);
    if (missing) {
        if (!c->err)
            c->err = apr_psprintf(c->p, "%s: variable ${%s} is not set (run "
                                  "with the gateway's environment)", name,
                                  missing);
        return;
    }
    if (!strcasecmp(name, "ServerRoot"))
        c->server_root = arg;
    else if (!strcasecmp(name, "Include"))
        include(c, arg, 0, depth);
    else if (!strcasecmp(name, "IncludeOptional"))
        include(c, arg, 1, depth);
    else if (!strcasecmp(name, "AIProxyStore"))
        c->store_uri = arg;
    else if (!strcasecmp(name, "AIProxyStoreDatabase"))
        c->store_db = arg;
    else if (!strcasecmp(name, "AIProxyStoreTimeout"))
        c->store_timeout_ms = atoi(arg);
    else if (!strcasecmp(name, "AIProxyTokenSecret")) {
        /* As mod_aiproxy reads it: AIProxyTokenSecret [KID] SPEC. */
        const char *err = aiproxy_secret_spec_add(c->p, c->secret_specs,
                                                  arg2 ? arg : NULL,
                                                  arg2 ? arg2 : arg);

        if (err && !c->secret_err)
            c->secret_err = err;
    }
    else if (!strcasecmp(name, "AIProxyMonthlyCap"))
        c->default_cap = arg;
    else if (!strcasecmp(name, "AIProxyTokenLifetime"))
        c->token_lifetime = apr_atoi64(arg);
}

static void read_config(conf_t *c, const char *path, int optional, int depth)
{
    apr_file_t *f;
    char buf[8192];
    const char *line = "";

    if (depth > MAX_INCLUDE_DEPTH) {
        if (!c->err)
            c->err = apr_psprintf(c->p, "%s: Include nested too deep", path);
        return;
    }
    if (apr_file_open(&f, path, APR_READ, 0, c->p) != APR_SUCCESS) {
        if (!optional && !c->err)
            c->err = apr_psprintf(c->p, "cannot read %s", path);
        return;
    }
    while (apr_file_gets(buf, sizeof(buf), f) == APR_SUCCESS) {
        apr_size_t n = strlen(buf);
        const char *s;

        while (n && apr_isspace(buf[n - 1]))
            buf[--n] = '\0';
        /* A trailing backslash continues the line. */
        if (n && buf[n - 1] == '\\') {
            buf[n - 1] = ' ';
            line = apr_pstrcat(c->p, line, buf, NULL);
            continue;
        }
        line = apr_pstrcat(c->p, line, buf, NULL);
        for (s = line; *s == ' ' || *s == '\t'; s++)
            ;
        if (*s && *s != '#' && *s != '<')
            directive(c, s, depth);
        line = "";
    }
    apr_file_close(f);
}

/* Every secret, as mod_aiproxy reads them at start-up. */
static const char *token_keys(conf_t *c, apr_array_header_t **keys)
{
    if (c->secret_err)
        return c->secret_err;
    if (c->secret_specs->nelts == 0)
        return "no AIProxyTokenSecret in the configuration";
    return aiproxy_secret_load_all(c->p, c->secret_specs, keys);
}

/* ---- Arguments ---------------------------------------------------------- */

static const char *this_month(apr_pool_t *p)
{
    apr_time_exp_t tm;

    apr_time_exp_gmt(&tm, apr_time_now());
    return apr_psprintf(p, "%04d-%02d", tm.tm_year + 1900, tm.tm_mon + 1);
}

/* ---- Commands ----------------------------------------------------------- */

typedef struct {
    apr_pool_t *p;
    conf_t *conf;
    aiproxy_ledger_t *ledger;
} ctx_t;

static int cmd_token(ctx_t *x, int argc, const char *const *argv)
{
    const char *email = NULL, *err = "";
    apr_int64_t days = -1, lifetime = x->conf->token_lifetime;
    apr_array_header_t *keys;
    aiproxy_user_t user;
    char *token;
    int i;

    for (i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--days") && i + 1 < argc) {
            char *end;

            days = apr_strtoi64(argv[++i], &end, 10);
            if (*end || !*argv[i] || days < 0 || days > 3660)
                return usage_error("--days: '%s' is not a whole number of "
                                   "days from 0 to 3660", argv[i]);
        }
        else if (!email && argv[i][0] != '-') {
            email = argv[i];
        }
        else {
            return usage_error("token: unexpected argument '%s'", argv[i]);
        }
    }
    if (!email)
        return usage_error("token: give an EMAIL%s", "");
    if (!aiproxy_params_who(email, 0))
        return usage_error("token: '%s' is not an email address", email);
    email = aiproxy_params_lower(x->p, email);
    if ((err = token_keys(x->conf, &keys)))
        return store_error("configuration", err);
    /* Issued after any revocation, even one in this very second. */
    if (aiproxy_ledger_user(x->ledger, x->p, email, &user, &err)
        != AIPROXY_LEDGER_OK)
        return store_error("store", err);
    if (days >= 0)
        lifetime = days * 86400;
    token = aiproxy_token_issue(x->p, keys, email,
                                apr_time_sec(apr_time_now()), user.revoked_at,
                                lifetime);
    if (!token)
        return store_error("token", "cannot sign");
    printf("%s\n", token);
    return 0;
}

/* secret new [FILE]: 32 random bytes as 64 hex digits, the form
 * AIProxyTokenSecret reads; FILE is made readable by its owner only. */
static int cmd_secret_new(apr_pool_t *p, int argc, const char *const *argv)
{
    unsigned char raw[AIPROXY_SECRET_MIN_BYTES];
    char hex[2 * sizeof(raw) + 2];
    apr_file_t *f;
    apr_size_t i, n;
    apr_status_t rv;

    if (argc > 1 || (argc == 1 && argv[0][0] == '-'))
        return usage_error("secret new: give at most a FILE%s", "");
    if (apr_generate_random_bytes(raw, sizeof(raw)) != APR_SUCCESS)
        return store_error("secret new", "no random bytes from the system");
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
        return store_error(argv[0], rv == APR_EEXIST ? "exists already; a "
                           "secret is never overwritten" : "cannot create");
    n = strlen(hex);
    rv = apr_file_write_full(f, hex, n, NULL);
    if (apr_file_close(f) != APR_SUCCESS || rv != APR_SUCCESS)
        return store_error(argv[0], "cannot write");
    printf("wrote a new secret to %s; use it with\n"
           "AIProxyTokenSecret KEY-ID file:%s\n", argv[0], argv[0]);
    return 0;
}

/* secret list: what mod_aiproxy would load, without a single value. */
static int cmd_secret_list(conf_t *c, int argc)
{
    const char *first_err = c->secret_err;
    int i, kidless = -1;

    if (argc != 0)
        return usage_error("secret list: takes no arguments%s", "");
    for (i = 0; i < c->secret_specs->nelts && kidless < 0; i++)
        if (!APR_ARRAY_IDX(c->secret_specs, i, aiproxy_secret_spec_t).kid)
            kidless = i;
    printf("%-20s %-26s %-40s %s\n", "KEY ID", "USE", "SOURCE", "STATE");
    for (i = 0; i < c->secret_specs->nelts; i++) {
        const aiproxy_secret_spec_t *s =
            &APR_ARRAY_IDX(c->secret_specs, i, aiproxy_secret_spec_t);
        const char *err, *use;
        aiproxy_token_key_t k;

        err = aiproxy_secret_load(c->p, s, &k);
        if (err && !first_err)
            first_err = err;
        use = i == c->secret_specs->nelts - 1 ? "signs, verifies"
                                               : "verifies";
        /* Tokens without kid go to the secret without an id, else the
         * first (aiproxy_token_verify_keys). */
        if (i == (kidless >= 0 ? kidless : 0))
            use = apr_pstrcat(c->p, use, ", no-kid", NULL);
        printf("%-20s %-26s %-40s %s\n", s->kid ? s->kid : "-", use,
               s->spec, err ? "BAD (see below)" : "ok");
    }
    if (c->secret_specs->nelts == 0 && !first_err)
        first_err = "no AIProxyTokenSecret in the configuration";
    if (first_err)
        return store_error("configuration", first_err);
    return 0;
}

static int cmd_cap(ctx_t *x, int argc, const char *const *argv)
{
    const char *err = "", *who;
    aiproxy_money_t cap = 0;
    int set;

    if (argc >= 1 && !strcmp(argv[0], "list") && argc == 1) {
        apr_array_header_t *rows;
        int i;

        if (aiproxy_ledger_users(x->ledger, x->p, &rows, &err)
            != AIPROXY_LEDGER_OK)
            return store_error("store", err);
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
        return usage_error("cap: use 'cap set WHO USD', 'cap clear WHO' or "
                           "'cap list'%s", "");
    set = !strcmp(argv[0], "set");
    if (argc != (set ? 3 : 2))
        return usage_error(set ? "cap set: give WHO and USD%s"
                               : "cap clear: give WHO only%s", "");
    who = argv[1];
    if (!aiproxy_params_who(who, 1))
        return usage_error("cap: '%s' is not an email or @domain", who);
    who = aiproxy_params_lower(x->p, who);
    if (set && (err = aiproxy_money_parse(x->p, argv[2], &cap)))
        return usage_error("cap set: %s", err);
    if (aiproxy_ledger_set_cap(x->ledger, x->p, who, set, cap, &err)
        != AIPROXY_LEDGER_OK)
        return store_error("store", err);
    if (set)
        printf("cap of %s set to $%s a month\n", who,
               aiproxy_money_format(x->p, cap));
    else
        printf("cap of %s cleared\n", who);
    return 0;
}

static int cmd_revoke(ctx_t *x, int argc, const char *const *argv)
{
    const char *err = "", *email;
    apr_int64_t at;
    char when[APR_RFC822_DATE_LEN];

    if (argc != 1)
        return usage_error("revoke: give one EMAIL%s", "");
    if (!aiproxy_params_who(argv[0], 0))
        return usage_error("revoke: '%s' is not an email address", argv[0]);
    email = aiproxy_params_lower(x->p, argv[0]);
    if (aiproxy_ledger_revoke(x->ledger, x->p, email,
                              apr_time_sec(apr_time_now()), &at, &err)
        != AIPROXY_LEDGER_OK)
        return store_error("store", err);
    apr_rfc822_date(when, apr_time_from_sec(at));
    printf("tokens of %s issued up to %s are refused; signing in again "
           "gives a new one\n", email, when);
    return 0;
}

/* The cap that applies: the email's, the domain's, else the default. */
static aiproxy_money_t effective_cap(apr_hash_t *caps, const char *email,
                                     aiproxy_money_t dflt)
{
    aiproxy_money_t *c = apr_hash_get(caps, email, APR_HASH_KEY_STRING);
    const char *at = strchr(email, '@');

    if (!c && at)
        c = apr_hash_get(caps, at, APR_HASH_KEY_STRING);
    return c ? *c : dflt;
}

static int cmd_usage(ctx_t *x, int argc, const char *const *argv)
{
    const char *month = this_month(x->p), *email = NULL, *err = "";
    apr_array_header_t *rows, *users;
    apr_hash_t *caps = apr_hash_make(x->p);
    aiproxy_money_t dflt = 2 * AIPROXY_PICO_PER_USD, total = 0;
    apr_int64_t requests = 0;
    int i;

    for (i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--month") && i + 1 < argc) {
            month = argv[++i];
            if (!aiproxy_params_month(month))
                return usage_error("--month: '%s' is not YYYY-MM", month);
        }
        else if (!strcmp(argv[i], "--email") && i + 1 < argc) {
            email = argv[++i];
            if (!aiproxy_params_who(email, 0))
                return usage_error("--email: '%s' is not an email address",
                                   email);
            email = aiproxy_params_lower(x->p, email);
        }
        else {
            return usage_error("usage: unexpected argument '%s'", argv[i]);
        }
    }
    if (x->conf->default_cap &&
        (err = aiproxy_money_parse(x->p, x->conf->default_cap, &dflt)))
        return store_error("AIProxyMonthlyCap", err);
    if (aiproxy_ledger_users(x->ledger, x->p, &users, &err)
        != AIPROXY_LEDGER_OK ||
        aiproxy_ledger_months(x->ledger, x->p, month, email, "monthlyCost", 0,
                              USAGE_PAGE, &rows, &err) != AIPROXY_LEDGER_OK)
        return store_error("store", err);
    for (i = 0; i < users->nelts; i++) {
        aiproxy_user_row_t *u = &APR_ARRAY_IDX(users, i, aiproxy_user_row_t);

        if (u->has_cap)
            apr_hash_set(caps, u->who, APR_HASH_KEY_STRING, &u->cap);
    }
    printf("%-7s  %-36s %16s %9s %14s %12s\n", "MONTH", "EMAIL",
           "SPENT (USD)", "REQUESTS", "RESERVED", "CAP");
    for (i = 0; i < rows->nelts; i++) {
        aiproxy_month_row_t *m = &APR_ARRAY_IDX(rows, i, aiproxy_month_row_t);

        total += m->spent;
        requests += m->requests;
        printf("%-7s  %-36s %16s %9" APR_INT64_T_FMT " %14s %12s\n", m->month,
               m->email, aiproxy_money_format(x->p, m->spent), m->requests,
               aiproxy_money_format(x->p, m->reserved),
               aiproxy_money_format(x->p, effective_cap(caps, m->email, dflt)));
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

static int cmd_purge(ctx_t *x, int argc, const char *const *argv)
{
    apr_int64_t now_ms = apr_time_as_msec(apr_time_now()), before = -1;
    apr_int64_t deleted = 0;
    const char *err = "";
    char when[APR_RFC822_DATE_LEN];

    if (argc != 2)
        return usage_error("purge: give --before YYYY-MM-DD or --older-than "
                           "DAYS%s", "");
    if (!strcmp(argv[0], "--before")) {
        if ((before = day_start_ms(argv[1])) < 0)
            return usage_error("--before: '%s' is not a day YYYY-MM-DD",
                               argv[1]);
    }
    else if (!strcmp(argv[0], "--older-than")) {
        char *end;
        apr_int64_t days = apr_strtoi64(argv[1], &end, 10);

        if (*end || !*argv[1] || days < 1 || days > 36500)
            return usage_error("--older-than: '%s' is not a whole number of "
                               "days from 1 to 36500", argv[1]);
        before = now_ms - days * 86400 * 1000;
    }
    else {
        return usage_error("purge: unexpected argument '%s'", argv[0]);
    }
    /* Today's records are still being written and read: never those. */
    if (before > now_ms)
        return usage_error("purge: %s is in the future", argv[1]);
    if (aiproxy_ledger_purge_records(x->ledger, x->p, before, &deleted, &err)
        != AIPROXY_LEDGER_OK)
        return store_error("store", err);
    apr_rfc822_date(when, apr_time_from_msec(before));
    printf("deleted %" APR_INT64_T_FMT " request record(s) from before %s; "
           "month totals are kept\n", deleted, when);
    return 0;
}

/* ---- Main ---------------------------------------------------------------- */

static int driver_started;

static void driver_log(int level, const char *domain, const char *message)
{
    if (level <= 3)
        fprintf(stderr, "aiproxy-admin: mongoc %s: %s\n", domain, message);
}

static int run(apr_pool_t *p, int argc, const char *const *argv)
{
    conf_t conf;
    ctx_t x;
    const char *path = getenv("AIPROXY_CONF"), *cmd, *err = "";
    int i = 1, rc;

    memset(&conf, 0, sizeof(conf));
    conf.p = p;
    conf.defines = apr_table_make(p, 8);
    conf.store_uri = "mongodb://127.0.0.1:27017";
    conf.store_db = "aiproxy";
    conf.store_timeout_ms = 1500;
    conf.secret_specs = apr_array_make(p, 2, sizeof(aiproxy_secret_spec_t));
    conf.token_lifetime = AIPROXY_TOKEN_LIFETIME_DEFAULT;
    if (!path || !*path)
        path = "conf/httpd.conf";
    if (argc > 2 && !strcmp(argv[1], "-f")) {
        path = argv[2];
        i = 3;
    }
    if (i >= argc)
        return usage_error("give a command%s", "");
    cmd = argv[i++];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (strcmp(cmd, "token") && strcmp(cmd, "cap") && strcmp(cmd, "revoke") &&
        strcmp(cmd, "usage") && strcmp(cmd, "purge") &&
        strcmp(cmd, "secret"))
        return usage_error("unknown command '%s'", cmd);
    if (i < argc && (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (!strcmp(cmd, "secret") &&
        (i >= argc || (strcmp(argv[i], "new") && strcmp(argv[i], "list"))))
        return usage_error("secret: use 'secret new [FILE]' or 'secret "
                           "list'%s", "");
    if (!strcmp(cmd, "secret") && !strcmp(argv[i], "new"))
        return cmd_secret_new(p, argc - i - 1, argv + i + 1);
    /* ServerRoot defaults to the configuration file's folder's parent. */
    {
        char *dir = apr_pstrdup(p, path), *slash = strrchr(dir, '/');

        if (slash)
            *slash = '\0';
        conf.server_root = slash ? dir : ".";
    }
    read_config(&conf, path, 0, 0);
    if (conf.err)
        return store_error(path, conf.err);
    if (!strcmp(cmd, "secret"))
        return cmd_secret_list(&conf, argc - i - 1);
    if (conf.store_timeout_ms < 100)
        conf.store_timeout_ms = 1500;
    aiproxy_ledger_driver_init(driver_log);
    driver_started = 1;
    x.p = p;
    x.conf = &conf;
    x.ledger = aiproxy_ledger_open(p, conf.store_uri, conf.store_db,
                                   conf.store_timeout_ms, &err);
    if (!x.ledger)
        return store_error("AIProxyStore", err);
    argv += i;
    argc -= i;
    if (!strcmp(cmd, "token"))
        rc = cmd_token(&x, argc, argv);
    else if (!strcmp(cmd, "cap"))
        rc = cmd_cap(&x, argc, argv);
    else if (!strcmp(cmd, "revoke"))
        rc = cmd_revoke(&x, argc, argv);
    else if (!strcmp(cmd, "purge"))
        rc = cmd_purge(&x, argc, argv);
    else
        rc = cmd_usage(&x, argc, argv);
    return rc;
}

int main(int argc, const char *const *argv)
{
    apr_pool_t *p;
    int rc;

    if (apr_app_initialize(&argc, &argv, NULL) != APR_SUCCESS ||
        apr_pool_create(&p, NULL) != APR_SUCCESS) {
        fprintf(stderr, "aiproxy-admin: cannot initialise APR\n");
        return EXIT_STORE;
    }
    rc = run(p, argc, argv);
    /* The ledger's connection pool goes with p, before the driver. */
    apr_pool_destroy(p);
    if (driver_started)
        aiproxy_ledger_driver_cleanup();
    apr_terminate();
    return rc;
}
