/* aiproxy-admin: the gateway's administration from a shell, on the same
 * ledger, token and policy code as mod_aiproxy, with no httpd running.
 * Like httpd's own tools it reads no httpd configuration: the store, the
 * database and the token secrets come from flags or from the environment
 * variables conf/aiproxy.conf reads, so it cannot quietly use another
 * store or secret than httpd's active configuration.
 *
 * Exit status: 0 done, 1 usage error, 2 configuration or store error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <apr_general.h>
#include <apr_strings.h>

#include "aiproxy_cli.h"
#include "aiproxy_cost.h"
#include "aiproxy_secret.h"
#include "aiproxy_token.h"

static const char usage_text[] =
"usage: aiproxy-admin [OPTIONS] COMMAND [ARGS]\n"
"\n"
"Administers mod_aiproxy's users from a shell. It reads no httpd\n"
"configuration: give it the store and secrets the gateway uses, as flags\n"
"or in the environment variables conf/aiproxy.conf reads.\n"
"\n"
"commands:\n"
"  token EMAIL [--days N] [--course ID]\n"
"                              print a new token for EMAIL, signed with the\n"
"                              last secret; it expires in N days (default:\n"
"                              --lifetime; --days 0: never); with --course,\n"
"                              charged to that course (EMAIL a member)\n"
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
"  course set ID --name N --budget USD [--member-cap USD] [--models a,b]\n"
"         [--endpoints e,f] [--instructors x,y] [--alerts 80,100]\n"
"                              create or replace a course (monthly budget)\n"
"  course list | show ID | delete ID\n"
"                              courses; one with its members; delete one\n"
"                              and its enrolments (its months stay)\n"
"  member add|remove ID WHO... enrol or remove emails or @domains\n"
"  roster import ID FILE.csv   enrol the first column of a CSV (header\n"
"                              'email' optional); prints what was added,\n"
"                              already there, and invalid lines\n"
"  reset EMAIL [--month M]     set a month's spent to 0 (holds kept)\n"
"  audit [--course ID] [--limit N]\n"
"                              the audit log, newest first (default 50)\n"
"  secret new [FILE]           a new random 32-byte secret, in hex: printed,\n"
"                              or written to FILE (mode 0600, never over an\n"
"                              existing file); needs no store\n"
"  secret list                 the given secrets' key ids, which one signs,\n"
"                              where each comes from (never a value)\n"
"  help, --help, -h            this text\n"
"\n"
"options (before the command; a flag beats its variable):\n"
"  --store URI           AIProxyStore; $AIPROXY_STORE (required)\n"
"  --db NAME             AIProxyStoreDatabase; $AIPROXY_DB, else aiproxy\n"
"  --store-timeout MS    AIProxyStoreTimeout; $AIPROXY_STORE_TIMEOUT,\n"
"                        else 1500\n"
"  --secret [KID=]SPEC   an AIProxyTokenSecret line: env:VAR or file:PATH,\n"
"                        with its key id; repeat it for each line, in the\n"
"                        same order (the last signs). Default:\n"
"                        env:AIPROXY_TOKEN_SECRET\n"
"  --lifetime SECONDS    AIProxyTokenLifetime; $AIPROXY_TOKEN_LIFETIME,\n"
"                        else 10368000 (120 days)\n"
"  --default-cap USD     AIProxyMonthlyCap, for usage's CAP column;\n"
"                        $AIPROXY_MONTHLY_CAP, else 2\n"
"\n"
"Commands that change something append an audit entry as cli:<user>.\n"
"\n"
"exit status: 0 done, 1 usage error, 2 configuration or store error\n";

int aiproxy_cli_usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "aiproxy-admin: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'aiproxy-admin --help'.\n");
    return AIPROXY_CLI_EXIT_USAGE;
}

int aiproxy_cli_fail(const char *what, const char *why)
{
    fprintf(stderr, "aiproxy-admin: %s: %s\n", what, why);
    return AIPROXY_CLI_EXIT_STORE;
}

/* ---- Options ------------------------------------------------------------ */

/* A whole number in [min, max]: 1 and *out, else 0. */
static int whole(const char *s, apr_int64_t min, apr_int64_t max,
                 apr_int64_t *out)
{
    char *end;
    apr_int64_t v;

    if (!s || !*s)
        return 0;
    v = apr_strtoi64(s, &end, 10);
    if (*end || v < min || v > max)
        return 0;
    *out = v;
    return 1;
}

/* --secret [KID=]SPEC, read as `AIProxyTokenSecret [KID] SPEC`. */
static void add_secret(apr_pool_t *p, aiproxy_cli_conf_t *c, const char *arg)
{
    const char *eq = strchr(arg, '='), *colon = strchr(arg, ':');
    const char *kid = NULL, *spec = arg, *err;

    /* A key id comes before the source: env:A=B has no id. */
    if (eq && (!colon || eq < colon)) {
        kid = apr_pstrmemdup(p, arg, eq - arg);
        spec = eq + 1;
    }
    err = aiproxy_secret_spec_add(p, c->secret_specs, kid, spec);
    if (err && !c->secret_err)
        c->secret_err = err;
}

/* The value of the option at argv[*i] ("--name VALUE" or "--name=VALUE")
 * when it is name; NULL when it is another one. *missing is set when the
 * value is absent. */
static const char *option(int argc, const char *const *argv, int *i,
                          const char *name, int *missing)
{
    const char *a = argv[*i];
    apr_size_t n = strlen(name);

    if (strncmp(a, name, n))
        return NULL;
    if (a[n] == '=')
        return a + n + 1;
    if (a[n])
        return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
}

/* Reads the options before the command into c; the command's index, or -1
 * after a usage error (reported). */
static int read_options(apr_pool_t *p, int argc, const char *const *argv,
                        aiproxy_cli_conf_t *c)
{
    const char *v, *timeout = getenv("AIPROXY_STORE_TIMEOUT");
    const char *lifetime = getenv("AIPROXY_TOKEN_LIFETIME");
    const char *cap = getenv("AIPROXY_MONTHLY_CAP"), *err;
    apr_int64_t n;
    int i, missing = 0, secrets = 0;

    c->store_uri = getenv("AIPROXY_STORE");
    c->store_db = getenv("AIPROXY_DB");
    for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
        if ((v = option(argc, argv, &i, "--store", &missing)))
            c->store_uri = v;
        else if ((v = option(argc, argv, &i, "--db", &missing)))
            c->store_db = v;
        else if ((v = option(argc, argv, &i, "--store-timeout", &missing)))
            timeout = v;
        else if ((v = option(argc, argv, &i, "--secret", &missing))) {
            add_secret(p, c, v);
            secrets++;
        }
        else if ((v = option(argc, argv, &i, "--lifetime", &missing)))
            lifetime = v;
        else if ((v = option(argc, argv, &i, "--default-cap", &missing)))
            cap = v;
        else if (missing)
            break;
        else if (!strcmp(argv[i], "--help"))
            return i;
        else {
            aiproxy_cli_usage_error("unknown option '%s'", argv[i]);
            return -1;
        }
    }
    if (missing) {
        aiproxy_cli_usage_error("%s: give a value", argv[i]);
        return -1;
    }
    if (!secrets)
        add_secret(p, c, "env:AIPROXY_TOKEN_SECRET");
    if (!c->store_db || !*c->store_db)
        c->store_db = "aiproxy";
    if (timeout && *timeout) {
        if (!whole(timeout, 100, 60000, &n)) {
            aiproxy_cli_usage_error("--store-timeout: '%s' is not a number "
                                    "of milliseconds from 100 to 60000",
                                    timeout);
            return -1;
        }
        c->store_timeout_ms = (int)n;
    }
    if (lifetime && *lifetime) {
        if (!whole(lifetime, 0, APR_INT64_C(10) * 366 * 86400, &n)) {
            aiproxy_cli_usage_error("--lifetime: '%s' is not a number of "
                                    "seconds from 0 to 316224000", lifetime);
            return -1;
        }
        c->token_lifetime = n;
    }
    if (cap && *cap && (err = aiproxy_money_parse(p, cap, &c->default_cap))) {
        aiproxy_cli_usage_error("--default-cap: %s", err);
        return -1;
    }
    return i;
}

/* ---- Main --------------------------------------------------------------- */

static int driver_started;

static void driver_log(int level, const char *domain, const char *message)
{
    if (level <= 3)
        fprintf(stderr, "aiproxy-admin: mongoc %s: %s\n", domain, message);
}

static const char *const commands[] = {
    "token", "cap", "revoke", "usage", "purge", "secret", "course", "member",
    "roster", "reset", "audit", NULL
};

static int known(const char *cmd)
{
    int i;

    for (i = 0; commands[i]; i++)
        if (!strcmp(cmd, commands[i]))
            return 1;
    return 0;
}

static int is_help(const char *a)
{
    return !strcmp(a, "--help") || !strcmp(a, "-h") || !strcmp(a, "help");
}

static int run(apr_pool_t *p, int argc, const char *const *argv)
{
    aiproxy_cli_conf_t conf;
    aiproxy_cli_t x;
    const char *cmd, *err = "";
    int i;

    memset(&conf, 0, sizeof(conf));
    conf.store_timeout_ms = 1500;
    conf.secret_specs = apr_array_make(p, 2, sizeof(aiproxy_secret_spec_t));
    conf.token_lifetime = AIPROXY_TOKEN_LIFETIME_DEFAULT;
    conf.default_cap = 2 * AIPROXY_PICO_PER_USD;
    if (argc > 1 && !strcmp(argv[1], "-f"))
        return aiproxy_cli_usage_error("-f: no httpd configuration is read "
                                       "any more; give --store, --db and "
                                       "--secret, or set AIPROXY_STORE, "
                                       "AIPROXY_DB and AIPROXY_TOKEN_SECRET%s",
                                       "");
    if ((i = read_options(p, argc, argv, &conf)) < 0)
        return AIPROXY_CLI_EXIT_USAGE;
    if (i >= argc)
        return aiproxy_cli_usage_error("give a command%s", "");
    cmd = argv[i++];
    if (is_help(cmd) || (i < argc && (!strcmp(argv[i], "--help") ||
                                      !strcmp(argv[i], "-h")))) {
        if (!is_help(cmd) && !known(cmd))
            return aiproxy_cli_usage_error("unknown command '%s'", cmd);
        fputs(usage_text, stdout);
        return 0;
    }
    x.p = p;
    x.conf = &conf;
    x.ledger = NULL;
    argv += i;
    argc -= i;
    if (!strcmp(cmd, "secret")) {
        if (argc >= 1 && !strcmp(argv[0], "new"))
            return aiproxy_cli_secret_new(p, argc - 1, argv + 1);
        if (argc >= 1 && !strcmp(argv[0], "list"))
            return aiproxy_cli_secret_list(&x, argc - 1);
        return aiproxy_cli_usage_error("secret: use 'secret new [FILE]' or "
                                       "'secret list'%s", "");
    }
    if (!known(cmd))
        return aiproxy_cli_usage_error("unknown command '%s'", cmd);
    if (!conf.store_uri || !*conf.store_uri)
        return aiproxy_cli_fail("store", "give --store URI or set "
                                "AIPROXY_STORE (the gateway's AIProxyStore)");
    aiproxy_ledger_driver_init(driver_log);
    driver_started = 1;
    x.ledger = aiproxy_ledger_open(p, conf.store_uri, conf.store_db,
                                   conf.store_timeout_ms, &err);
    if (!x.ledger)
        return aiproxy_cli_fail("store", err);
    if (!strcmp(cmd, "token"))
        return aiproxy_cli_token(&x, argc, argv);
    if (!strcmp(cmd, "cap"))
        return aiproxy_cli_cap(&x, argc, argv);
    if (!strcmp(cmd, "revoke"))
        return aiproxy_cli_revoke(&x, argc, argv);
    if (!strcmp(cmd, "purge"))
        return aiproxy_cli_purge(&x, argc, argv);
    if (!strcmp(cmd, "course"))
        return aiproxy_cli_course(&x, argc, argv);
    if (!strcmp(cmd, "member"))
        return aiproxy_cli_member(&x, argc, argv);
    if (!strcmp(cmd, "roster"))
        return aiproxy_cli_roster(&x, argc, argv);
    if (!strcmp(cmd, "reset"))
        return aiproxy_cli_reset(&x, argc, argv);
    if (!strcmp(cmd, "audit"))
        return aiproxy_cli_audit_list(&x, argc, argv);
    return aiproxy_cli_usage(&x, argc, argv);
}

int main(int argc, const char *const *argv)
{
    apr_pool_t *p;
    int rc;

    if (apr_app_initialize(&argc, &argv, NULL) != APR_SUCCESS ||
        apr_pool_create(&p, NULL) != APR_SUCCESS) {
        fprintf(stderr, "aiproxy-admin: cannot initialise APR\n");
        return AIPROXY_CLI_EXIT_STORE;
    }
    rc = run(p, argc, argv);
    /* The ledger's connection pool goes with p, before the driver. */
    apr_pool_destroy(p);
    if (driver_started)
        aiproxy_ledger_driver_cleanup();
    apr_terminate();
    return rc;
}
