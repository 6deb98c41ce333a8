/* aiproxy-admin's course commands (course, member, roster, reset, audit)
 * and the audit entry every command that changes something appends, as
 * "cli:<unix user>". */
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <apr_file_io.h>
#include <apr_strings.h>
#include <apr_time.h>

#include "aiproxy_cli.h"
#include "aiproxy_course.h"
#include "aiproxy_json.h"
#include "aiproxy_ledger_audit.h"
#include "aiproxy_ledger_course.h"
#include "aiproxy_ledger_course_admin.h"
#include "aiproxy_params.h"
#include "aiproxy_policy.h"
#include "aiproxy_roster.h"

#define ROSTER_FILE_MAX (4 * 1024 * 1024)
#define LIST_MAX 1000

/* "cli:<unix user>": who the audit log names. */
static const char *cli_who(apr_pool_t *p)
{
    struct passwd *pw = getpwuid(geteuid());
    const char *user = pw && pw->pw_name ? pw->pw_name : getenv("USER");

    return apr_pstrcat(p, "cli:", user ? user : apr_ltoa(p, (long)geteuid()),
                       NULL);
}

int aiproxy_cli_audit(aiproxy_cli_t *x, const char *action,
                      const char *target, const char *course,
                      const char *before, const char *after)
{
    aiproxy_audit_t e;
    const char *err = "";

    memset(&e, 0, sizeof(e));
    e.who = cli_who(x->p);
    e.role = "cli";
    e.action = action;
    e.target = target;
    e.course = course;
    e.before = before;
    e.after = after;
    if (aiproxy_ledger_audit_append(x->ledger, x->p, &e, &err)
        != AIPROXY_LEDGER_OK)
        return aiproxy_cli_fail("audit (the change itself was made)", err);
    return 0;
}

static const char *joined(apr_pool_t *p, const apr_array_header_t *a)
{
    return a && a->nelts ? apr_array_pstrcat(p, a, ',') : "-";
}

/* The course as the admin API's audit entries show it. */
static const char *course_json(apr_pool_t *p, const aiproxy_course_t *c)
{
    return apr_pstrcat(p, "{", aiproxy_course_json_fields(p, c), "}", NULL);
}

/* a,b,c into a list; emails checked and lower-cased. NULL or a message. */
static const char *split(apr_pool_t *p, const char *s, int emails,
                         apr_array_header_t **out)
{
    char *copy = apr_pstrdup(p, s), *last, *tok;

    *out = apr_array_make(p, 4, sizeof(const char *));
    for (tok = apr_strtok(copy, ",", &last); tok;
         tok = apr_strtok(NULL, ",", &last)) {
        if (emails && !aiproxy_params_who(tok, 0))
            return apr_psprintf(p, "'%s' is not an email address", tok);
        if (!emails && strpbrk(tok, " \t\""))
            return apr_psprintf(p, "'%s' has a blank or a quote", tok);
        APR_ARRAY_PUSH(*out, const char *) =
            emails ? aiproxy_params_lower(p, tok) : tok;
    }
    return NULL;
}

static int course_set(aiproxy_cli_t *x, int argc, const char *const *argv)
{
    aiproxy_course_t c, old;
    apr_array_header_t *alerts;
    const char *err = "", *why = NULL, *budget = NULL, *mcap = NULL;
    aiproxy_ledger_rc_t had;
    int i, existed;

    memset(&c, 0, sizeof(c));
    c.id = argv[0];
    if (!aiproxy_course_id_valid(c.id))
        return aiproxy_cli_usage_error("course set: '%s' is not a course id "
                                       "(1 to 32 of a-z, 0-9, - and _)",
                                       c.id);
    c.models = c.endpoints = c.instructors = NULL;
    c.alerts = apr_array_make(x->p, 2, sizeof(int));
    for (i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (!v)
            return aiproxy_cli_usage_error("course set: %s needs a value", o);
        i++;
        if (!strcmp(o, "--name"))
            c.name = v;
        else if (!strcmp(o, "--budget"))
            budget = v;
        else if (!strcmp(o, "--member-cap"))
            mcap = v;
        else if (!strcmp(o, "--models"))
            why = split(x->p, v, 0, &c.models);
        else if (!strcmp(o, "--endpoints"))
            why = split(x->p, v, 0, &c.endpoints);
        else if (!strcmp(o, "--instructors"))
            why = split(x->p, v, 1, &c.instructors);
        else if (!strcmp(o, "--alerts")) {
            int k;

            why = split(x->p, v, 0, &alerts);
            for (k = 0; !why && k < alerts->nelts; k++) {
                apr_int64_t pct;

                if (!aiproxy_params_count(APR_ARRAY_IDX(alerts, k,
                                          const char *), 1, 1000, &pct))
                    why = "alerts are percentages from 1 to 1000";
                else
                    APR_ARRAY_PUSH(c.alerts, int) = (int)pct;
            }
        }
        else
            return aiproxy_cli_usage_error("course set: unknown option '%s'",
                                           o);
        if (why)
            return aiproxy_cli_usage_error("course set: %s", why);
    }
    if (!c.name || !*c.name || !budget)
        return aiproxy_cli_usage_error("course set: give --name and "
                                       "--budget%s", "");
    if ((why = aiproxy_money_parse(x->p, budget, &c.budget)))
        return aiproxy_cli_usage_error("--budget: %s", why);
    if (mcap) {
        if ((why = aiproxy_money_parse(x->p, mcap, &c.member_cap)))
            return aiproxy_cli_usage_error("--member-cap: %s", why);
        c.has_member_cap = 1;
        if (c.member_cap > c.budget)
            return aiproxy_cli_usage_error("--member-cap: more than the "
                                           "budget%s", "");
    }
    had = aiproxy_ledger_course_get(x->ledger, x->p, c.id, &old, &err);
    if (had == AIPROXY_LEDGER_DOWN ||
        aiproxy_ledger_course_put(x->ledger, x->p, &c, &existed, &err)
        != AIPROXY_LEDGER_OK)
        return aiproxy_cli_fail("store", err);
    printf("course %s %s: budget $%s a month\n", c.id,
           existed ? "updated" : "created",
           aiproxy_money_format(x->p, c.budget));
    return aiproxy_cli_audit(x, existed ? "course.update" : "course.create",
                             c.id, c.id, had == AIPROXY_LEDGER_OK
                             ? course_json(x->p, &old) : NULL,
                             course_json(x->p, &c));
}

static void course_print(aiproxy_cli_t *x, const aiproxy_course_t *c)
{
    apr_array_header_t *al = apr_array_make(x->p, 4, sizeof(const char *));
    int i;

    for (i = 0; i < c->alerts->nelts; i++)
        APR_ARRAY_PUSH(al, const char *) =
            apr_itoa(x->p, APR_ARRAY_IDX(c->alerts, i, int));
    printf("id:          %s\nname:        %s\nbudget:      %s\n"
           "member cap:  %s\nmodels:      %s\nendpoints:   %s\n"
           "instructors: %s\nalerts:      %s\n", c->id, c->name,
           aiproxy_money_format(x->p, c->budget),
           c->has_member_cap ? aiproxy_money_format(x->p, c->member_cap)
                             : "-",
           joined(x->p, c->models), joined(x->p, c->endpoints),
           joined(x->p, c->instructors), joined(x->p, al));
}

int aiproxy_cli_course(aiproxy_cli_t *x, int argc, const char *const *argv)
{
    const char *err = "";
    apr_array_header_t *rows;
    aiproxy_course_t c;
    aiproxy_ledger_rc_t rc;
    apr_int64_t n;
    int i;

    if (argc == 1 && !strcmp(argv[0], "list")) {
        if (aiproxy_ledger_courses(x->ledger, x->p, NULL, &rows, &err)
            != AIPROXY_LEDGER_OK)
            return aiproxy_cli_fail("store", err);
        printf("%-32s %-30s %14s %14s  %s\n", "ID", "NAME", "BUDGET (USD)",
               "MEMBER CAP", "INSTRUCTORS");
        for (i = 0; i < rows->nelts; i++) {
            aiproxy_course_t *r = &APR_ARRAY_IDX(rows, i, aiproxy_course_t);

            printf("%-32s %-30s %14s %14s  %s\n", r->id, r->name,
                   aiproxy_money_format(x->p, r->budget),
                   r->has_member_cap ? aiproxy_money_format(x->p,
                                                            r->member_cap)
                                     : "-", joined(x->p, r->instructors));
        }
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[0], "set"))
        return course_set(x, argc - 1, argv + 1);
    if (argc != 2 || (strcmp(argv[0], "show") && strcmp(argv[0], "delete")))
        return aiproxy_cli_usage_error("course: use 'course set ID --name N "
                                       "--budget USD ...', 'course list', "
                                       "'course show ID' or 'course delete "
                                       "ID'%s", "");
    if (!aiproxy_course_id_valid(argv[1]))
        return aiproxy_cli_usage_error("course: '%s' is not a course id",
                                       argv[1]);
    rc = aiproxy_ledger_course_get(x->ledger, x->p, argv[1], &c, &err);
    if (rc == AIPROXY_LEDGER_DOWN)
        return aiproxy_cli_fail("store", err);
    if (rc == AIPROXY_LEDGER_NOT_FOUND)
        return aiproxy_cli_fail(argv[1], "no such course");
    if (!strcmp(argv[0], "show")) {
        course_print(x, &c);
        if (aiproxy_ledger_members(x->ledger, x->p, c.id, 0, LIST_MAX, &rows,
                                   &n, &err) != AIPROXY_LEDGER_OK)
            return aiproxy_cli_fail("store", err);
        printf("members:     %" APR_INT64_T_FMT "\n", n);
        for (i = 0; i < rows->nelts; i++) {
            aiproxy_member_row_t *m = &APR_ARRAY_IDX(rows, i,
                                                     aiproxy_member_row_t);

            printf("  %-40s %s\n", m->who, m->has_cap
                   ? apr_pstrcat(x->p, "cap $", aiproxy_money_format(x->p,
                                 m->cap), NULL) : "");
        }
        return 0;
    }
    if (aiproxy_ledger_course_delete(x->ledger, x->p, c.id, &n, &err)
        == AIPROXY_LEDGER_DOWN)
        return aiproxy_cli_fail("store", err);
    printf("course %s deleted, with its %" APR_INT64_T_FMT " enrolment(s); "
           "its months are kept\n", c.id, n);
    return aiproxy_cli_audit(x, "course.delete", c.id, c.id,
                             course_json(x->p, &c),
                             apr_psprintf(x->p, "{\"members_removed\":%"
                                          APR_INT64_T_FMT "}", n));
}

/* The course named, which must exist: 0, or the exit status. */
static int existing_course(aiproxy_cli_t *x, const char *id)
{
    aiproxy_course_t c;
    const char *err = "";
    aiproxy_ledger_rc_t rc;

    if (!aiproxy_course_id_valid(id))
        return aiproxy_cli_usage_error("'%s' is not a course id", id);
    rc = aiproxy_ledger_course_get(x->ledger, x->p, id, &c, &err);
    if (rc == AIPROXY_LEDGER_DOWN)
        return aiproxy_cli_fail("store", err);
    if (rc == AIPROXY_LEDGER_NOT_FOUND)
        return aiproxy_cli_fail(id, "no such course");
    return 0;
}

/* Enrols whos and prints what was added; audits each one added unless a
 * roster's one entry counts them. */
static int add_all(aiproxy_cli_t *x, const char *id,
                   const apr_array_header_t *whos, int audit_each,
                   int *n_added)
{
    int *added = apr_pcalloc(x->p, (whos->nelts + 1) * sizeof(int));
    const char *err = "";
    int i, rc = 0;

    if (aiproxy_ledger_members_add(x->ledger, x->p, id, whos, cli_who(x->p),
                                   apr_time_as_msec(apr_time_now()), added,
                                   &err) != AIPROXY_LEDGER_OK)
        return aiproxy_cli_fail("store", err);
    *n_added = 0;
    for (i = 0; i < whos->nelts; i++) {
        const char *w = APR_ARRAY_IDX(whos, i, const char *);

        printf("%-8s %s\n", added[i] ? "added" : "already", w);
        if (added[i])
            (*n_added)++;
        if (added[i] && audit_each)
            rc |= aiproxy_cli_audit(x, "member.add", w, id, NULL,
                                    apr_psprintf(x->p, "{\"who\":%s}",
                                                 aiproxy_json_quote(x->p, w)));
    }
    return rc;
}

int aiproxy_cli_member(aiproxy_cli_t *x, int argc, const char *const *argv)
{
    apr_array_header_t *whos;
    const char *err = "";
    int i, rc, n;

    if (argc < 3 || (strcmp(argv[0], "add") && strcmp(argv[0], "remove")))
        return aiproxy_cli_usage_error("member: use 'member add ID EMAIL...' "
                                       "or 'member remove ID EMAIL...'%s", "");
    if ((rc = existing_course(x, argv[1])))
        return rc;
    whos = apr_array_make(x->p, argc, sizeof(const char *));
    for (i = 2; i < argc; i++) {
        if (!aiproxy_params_who(argv[i], 1))
            return aiproxy_cli_usage_error("member: '%s' is not an email or "
                                           "@domain", argv[i]);
        APR_ARRAY_PUSH(whos, const char *) = aiproxy_params_lower(x->p,
                                                                  argv[i]);
    }
    if (!strcmp(argv[0], "add"))
        return add_all(x, argv[1], whos, 1, &n);
    for (i = 0; i < whos->nelts; i++) {
        const char *w = APR_ARRAY_IDX(whos, i, const char *);
        aiproxy_ledger_rc_t r = aiproxy_ledger_member_remove(x->ledger, x->p,
                                                             argv[1], w, &err);

        if (r == AIPROXY_LEDGER_DOWN)
            return aiproxy_cli_fail("store", err);
        printf("%-8s %s\n", r == AIPROXY_LEDGER_OK ? "removed" : "absent", w);
        if (r == AIPROXY_LEDGER_OK && (rc = aiproxy_cli_audit(x,
                "member.remove", w, argv[1], apr_psprintf(x->p,
                "{\"who\":%s}", aiproxy_json_quote(x->p, w)), NULL)))
            return rc;
    }
    return 0;
}

int aiproxy_cli_roster(aiproxy_cli_t *x, int argc, const char *const *argv)
{
    apr_array_header_t *whos, *invalid;
    apr_file_t *f;
    apr_finfo_t fi;
    const char *why;
    char *text;
    apr_size_t len;
    int i, rc, added;

    if (argc != 3 || strcmp(argv[0], "import"))
        return aiproxy_cli_usage_error("roster: use 'roster import ID "
                                       "FILE.csv'%s", "");
    if ((rc = existing_course(x, argv[1])))
        return rc;
    if (apr_file_open(&f, argv[2], APR_FOPEN_READ, 0, x->p) != APR_SUCCESS ||
        apr_file_info_get(&fi, APR_FINFO_SIZE, f) != APR_SUCCESS)
        return aiproxy_cli_fail(argv[2], "cannot read");
    if (fi.size > ROSTER_FILE_MAX)
        return aiproxy_cli_fail(argv[2], "larger than 4 MiB");
    len = (apr_size_t)fi.size;
    text = apr_palloc(x->p, len + 1);
    if (len && apr_file_read_full(f, text, len, &len) != APR_SUCCESS)
        return aiproxy_cli_fail(argv[2], "cannot read");
    text[len] = '\0';
    apr_file_close(f);
    if ((why = aiproxy_roster_parse(x->p, text, len, AIPROXY_ROSTER_MAX_LINES,
                                    &whos, &invalid)))
        return aiproxy_cli_fail(argv[2], why);
    if ((rc = add_all(x, argv[1], whos, 0, &added)))
        return rc;
    for (i = 0; i < invalid->nelts; i++) {
        aiproxy_roster_bad_t *b = &APR_ARRAY_IDX(invalid, i,
                                                 aiproxy_roster_bad_t);

        printf("invalid  line %d: '%s': %s\n", b->line, b->value, b->reason);
    }
    printf("%d added, %d already members, %d invalid\n", added,
           whos->nelts - added, invalid->nelts);
    return aiproxy_cli_audit(x, "roster.import", argv[1], argv[1], NULL,
                             apr_psprintf(x->p, "{\"added\":%d,\"already\":%d,"
                                          "\"invalid\":%d}", added,
                                          whos->nelts - added,
                                          invalid->nelts));
}

static const char *month_json(apr_pool_t *p, const aiproxy_month_t *m)
{
    return apr_psprintf(p, "{\"spent\":\"%s\",\"reserved\":\"%s\","
                        "\"requests\":%" APR_INT64_T_FMT "}",
                        aiproxy_money_format(p, m->spent),
                        aiproxy_money_format(p, m->reserved), m->requests);
}

int aiproxy_cli_reset(aiproxy_cli_t *x, int argc, const char *const *argv)
{
    const char *email = NULL, *err = "";
    const char *month = aiproxy_month_of(x->p, apr_time_now());
    aiproxy_month_t before, after;
    int i;

    for (i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--month") && i + 1 < argc) {
            month = argv[++i];
            if (!aiproxy_params_month(month))
                return aiproxy_cli_usage_error("--month: '%s' is not "
                                               "YYYY-MM", month);
        }
        else if (!email && aiproxy_params_who(argv[i], 0))
            email = aiproxy_params_lower(x->p, argv[i]);
        else
            return aiproxy_cli_usage_error("reset: unexpected argument '%s'",
                                           argv[i]);
    }
    if (!email)
        return aiproxy_cli_usage_error("reset: give an EMAIL%s", "");
    if (aiproxy_ledger_month_reset(x->ledger, x->p, email, month, &before,
                                   &after, &err) == AIPROXY_LEDGER_DOWN)
        return aiproxy_cli_fail("store", err);
    printf("month %s of %s reset: spent $%s -> $%s (holds kept: $%s)\n",
           month, email, aiproxy_money_format(x->p, before.spent),
           aiproxy_money_format(x->p, after.spent),
           aiproxy_money_format(x->p, after.reserved));
    return aiproxy_cli_audit(x, "month.reset", email, NULL,
                             month_json(x->p, &before),
                             month_json(x->p, &after));
}

int aiproxy_cli_audit_list(aiproxy_cli_t *x, int argc,
                           const char *const *argv)
{
    apr_array_header_t *courses = NULL, *rows;
    apr_int64_t limit = 50;
    const char *err = "";
    int i;

    for (i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--course") && i + 1 < argc &&
            aiproxy_course_id_valid(argv[i + 1])) {
            courses = apr_array_make(x->p, 1, sizeof(const char *));
            APR_ARRAY_PUSH(courses, const char *) = argv[++i];
        }
        else if (!strcmp(argv[i], "--limit") && i + 1 < argc &&
                 aiproxy_params_count(argv[i + 1], 1, LIST_MAX, &limit))
            i++;
        else
            return aiproxy_cli_usage_error("audit: unexpected argument '%s' "
                                           "(--course ID, --limit 1..1000)",
                                           argv[i]);
    }
    if (aiproxy_ledger_audit_list(x->ledger, x->p, courses, 0, limit, &rows,
                                  &err) != AIPROXY_LEDGER_OK)
        return aiproxy_cli_fail("store", err);
    printf("%-24s %-28s %-10s %-14s %-28s %-12s %s -> %s\n", "TIME (UTC)",
           "WHO", "ROLE", "ACTION", "TARGET", "COURSE", "BEFORE", "AFTER");
    for (i = 0; i < rows->nelts; i++) {
        aiproxy_audit_t *a = &APR_ARRAY_IDX(rows, i, aiproxy_audit_t);
        apr_time_exp_t tm;

        apr_time_exp_gmt(&tm, apr_time_from_msec(a->time_ms));
        printf("%04d-%02d-%02d %02d:%02d:%02d      %-28s %-10s %-14s %-28s "
               "%-12s %s -> %s\n", tm.tm_year + 1900, tm.tm_mon + 1,
               tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, a->who, a->role,
               a->action, a->target, a->course ? a->course : "-", a->before,
               a->after);
    }
    return 0;
}
