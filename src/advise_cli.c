/*
 * advise_cli.c
 *    The command line of `pgturbo advise`: parses the options into advise_options_t and runs
 *    advise_run(); every mistake is one line on stderr and exit code 2.
 */
#include "advise_cli.h"

#include "advise.h"
#include "cliopt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void advise_cli_usage(FILE *out)
{
    fprintf(
        out,
        "       pgturbo advise [--source pg_stat_statements|daemon] [--json]\n"
        "                      [--min-improvement N] [--migrations DIR] [--apply]\n"
        "                      [--api HOST:PORT --token T] CONNINFO\n"
        "                                       prove and print index advice for a database\n"
        "                                       (--source daemon reads the daemon's admin API)\n"
        "       pgturbo advise --rollback VERSION [--migrations DIR] CONNINFO\n"
        "                                       run the down migration of an applied version\n"
        "         exit codes: 0 done (or nothing to advise), 1 database unreachable or a\n"
        "         query failed, 2 bad command line, 3 HypoPG or pg_stat_statements missing\n"
        "         (or the privileges to use them), 4 migration refused or failed\n");
}

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "pgturbo advise: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage:\n");
    advise_cli_usage(stderr);
    return ADVISE_FAIL_USAGE;
}

static bool parse_percent(const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 1 || v > 100)
        return false;
    *out = (int)v;
    return true;
}

int advise_cli_main(int argc, char **argv)
{
    advise_options_t opts = {
        .source = ADVISE_SOURCE_PG_STAT_STATEMENTS,
        .min_improvement = ADVISE_DEFAULT_MIN_IMPROVEMENT,
    };
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value;
        if (cliopt_is(arg, "--source")) {
            if ((value = cliopt_value(argc, argv, &i, "--source")) == NULL)
                return usage_error("%s needs a value: pg_stat_statements or daemon", arg);
            if (strcmp(value, "pg_stat_statements") == 0)
                opts.source = ADVISE_SOURCE_PG_STAT_STATEMENTS;
            else if (strcmp(value, "daemon") == 0)
                opts.source = ADVISE_SOURCE_DAEMON;
            else
                return usage_error("--source: expected pg_stat_statements or daemon, got \"%s\"",
                                   value);
        } else if (cliopt_is(arg, "--api")) {
            if ((opts.api = cliopt_value(argc, argv, &i, "--api")) == NULL)
                return usage_error("%s needs host:port", "--api");
        } else if (cliopt_is(arg, "--token")) {
            if ((opts.token = cliopt_value(argc, argv, &i, "--token")) == NULL)
                return usage_error("%s needs the daemon's admin_token", "--token");
        } else if (strcmp(arg, "--json") == 0) {
            opts.json = true;
        } else if (cliopt_is(arg, "--min-improvement")) {
            value = cliopt_value(argc, argv, &i, "--min-improvement");
            if (value == NULL || !parse_percent(value, &opts.min_improvement))
                return usage_error("--min-improvement: expected a whole percentage from 1 to "
                                   "100, got \"%s\"",
                                   value == NULL ? "" : value);
        } else if (cliopt_is(arg, "--migrations")) {
            value = cliopt_value(argc, argv, &i, "--migrations");
            if (value == NULL || value[0] == '\0')
                return usage_error("%s needs a directory", "--migrations");
            opts.migrations_dir = value;
        } else if (strcmp(arg, "--apply") == 0) {
            opts.apply = true;
        } else if (cliopt_is(arg, "--rollback")) {
            value = cliopt_value(argc, argv, &i, "--rollback");
            if (value == NULL || value[0] == '\0')
                return usage_error("%s needs a migration version", "--rollback");
            opts.rollback_version = value;
        } else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            printf("usage:\n");
            advise_cli_usage(stdout);
            return ADVISE_OK;
        } else if (arg[0] == '-' && arg[1] == '-') {
            return usage_error("unknown option \"%s\"", arg);
        } else if (opts.conninfo != NULL) {
            return usage_error("one connection string only; \"%s\" is a second", arg);
        } else {
            opts.conninfo = arg;
        }
    }
    if (opts.conninfo == NULL)
        return usage_error("a connection string is needed (e.g. \"dbname=app\" or "
                           "postgresql://host/app)");
    if (opts.rollback_version != NULL && (opts.apply || opts.json))
        return usage_error("--rollback runs a down migration only: no --apply or --json");
    if (opts.source == ADVISE_SOURCE_DAEMON) {
        if (opts.token == NULL)
            opts.token = getenv("PGTURBO_ADMIN_TOKEN");
        if (opts.api == NULL || opts.token == NULL)
            return usage_error("--source daemon needs --api HOST:PORT (the daemon's "
                               "admin_listen) and --token (its admin_token, or "
                               "PGTURBO_ADMIN_TOKEN)");
    }
    return advise_run(&opts);
}
