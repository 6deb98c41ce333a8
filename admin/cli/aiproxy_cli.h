/* aiproxy-admin's own parts: the settings it runs with and the commands.
 * Named aiproxy_cli_* so no file shares a name with the module's admin
 * handler (mod_aiproxy/aiproxy_admin.c). */
#ifndef AIPROXY_CLI_H
#define AIPROXY_CLI_H

#include <apr_tables.h>

#include "aiproxy.h"
#include "aiproxy_ledger.h"

#define AIPROXY_CLI_EXIT_USAGE 1
#define AIPROXY_CLI_EXIT_STORE 2

/* What httpd reads from its configuration, here from flags or the
 * environment (aiproxy_cli.c). */
typedef struct {
    const char *store_uri;              /* --store, AIPROXY_STORE */
    const char *store_db;               /* --db, AIPROXY_DB */
    int store_timeout_ms;               /* --store-timeout */
    apr_array_header_t *secret_specs;   /* --secret: aiproxy_secret_spec_t */
    const char *secret_err;             /* first bad --secret */
    aiproxy_money_t default_cap;        /* --default-cap */
    apr_int64_t token_lifetime;         /* --lifetime */
} aiproxy_cli_conf_t;

typedef struct {
    apr_pool_t *p;
    aiproxy_cli_conf_t *conf;
    aiproxy_ledger_t *ledger;           /* NULL for commands without a store */
} aiproxy_cli_t;

/* Messages on stderr; each returns the exit status it stands for. */
int aiproxy_cli_usage_error(const char *fmt, const char *arg);
int aiproxy_cli_fail(const char *what, const char *why);

/* The commands: argv holds what follows the command's name. */
int aiproxy_cli_token(aiproxy_cli_t *x, int argc, const char *const *argv);
int aiproxy_cli_cap(aiproxy_cli_t *x, int argc, const char *const *argv);
int aiproxy_cli_revoke(aiproxy_cli_t *x, int argc, const char *const *argv);
int aiproxy_cli_usage(aiproxy_cli_t *x, int argc, const char *const *argv);
int aiproxy_cli_purge(aiproxy_cli_t *x, int argc, const char *const *argv);
int aiproxy_cli_secret_new(apr_pool_t *p, int argc, const char *const *argv);
int aiproxy_cli_secret_list(aiproxy_cli_t *x, int argc);
/* Courses (aiproxy_cli_course.c). */
int aiproxy_cli_course(aiproxy_cli_t *x, int argc, const char *const *argv);
int aiproxy_cli_member(aiproxy_cli_t *x, int argc, const char *const *argv);
int aiproxy_cli_roster(aiproxy_cli_t *x, int argc, const char *const *argv);
int aiproxy_cli_reset(aiproxy_cli_t *x, int argc, const char *const *argv);
int aiproxy_cli_audit_list(aiproxy_cli_t *x, int argc,
                           const char *const *argv);
/* Appends the audit entry of a change made, as "cli:<unix user>" (before
 * and after JSON texts, NULL: null): 0, or the exit status of a store
 * that failed (reported). */
int aiproxy_cli_audit(aiproxy_cli_t *x, const char *action,
                      const char *target, const char *course,
                      const char *before, const char *after);

#endif
