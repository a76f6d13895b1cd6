/*
 * reportcli.c
 *    pgturbo report on the command line: parses the arguments, connects with libpq, builds
 *    the report and writes it as text, JSON or HTML; see reportcli.h.
 */
#include "reportcli.h"

#include "log.h"
#include "pqmsg.h"

#include "reportrender.h"

#include <errno.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char report_cli_usage[] =
    "       pgturbo report [--json | --html] [--output FILE] [--top N]\n"
    "                      [--long-query-seconds S] [--idle-seconds S] CONNINFO\n"
    "                                      health report of one database; CONNINFO is a\n"
    "                                      libpq connection string or URI\n";

/* The value of option name: "--name=value" or "--name value". NULL when arg is not name. */
static const char *option_value(const char *name, int argc, char **argv, int *i, bool *missing)
{
    size_t n = strlen(name);
    const char *arg = argv[*i];
    if (strncmp(arg, name, n) != 0)
        return NULL;
    if (arg[n] == '=')
        return arg + n + 1;
    if (arg[n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        *missing = true;
        return NULL;
    }
    return argv[++*i];
}

static bool parse_seconds(const char *text, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 || !isfinite(v) || v < 0 || v > 1e9)
        return false;
    *out = v;
    return true;
}

static bool parse_count(const char *text, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || errno != 0 || v < 1 || v > 10000)
        return false;
    *out = (int)v;
    return true;
}

int report_cli_parse(int argc, char **argv, report_cli_t *cli, char *err, size_t errlen)
{
    memset(cli, 0, sizeof(*cli));
    report_options_init(&cli->options);
    bool format_set = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *v;
        bool missing = false;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            cli->help = true;
            return 0;
        }
        if (strcmp(arg, "--json") == 0 || strcmp(arg, "--html") == 0) {
            report_format_t f = arg[3] == 's' ? REPORT_FORMAT_JSON : REPORT_FORMAT_HTML;
            if (format_set && f != cli->format) {
                snprintf(err, errlen, "--json and --html exclude each other");
                return 2;
            }
            cli->format = f;
            format_set = true;
        } else if ((v = option_value("--output", argc, argv, &i, &missing)) != NULL) {
            if (v[0] == '\0') {
                snprintf(err, errlen, "--output: expected a file name");
                return 2;
            }
            cli->output = v;
        } else if ((v = option_value("--top", argc, argv, &i, &missing)) != NULL) {
            if (!parse_count(v, &cli->options.top)) {
                snprintf(err, errlen, "--top: expected a number from 1 to 10000, got \"%s\"", v);
                return 2;
            }
        } else if ((v = option_value("--long-query-seconds", argc, argv, &i, &missing)) != NULL) {
            if (!parse_seconds(v, &cli->options.long_query_s)) {
                snprintf(err, errlen,
                         "--long-query-seconds: expected a number of seconds, got \"%s\"", v);
                return 2;
            }
        } else if ((v = option_value("--idle-seconds", argc, argv, &i, &missing)) != NULL) {
            if (!parse_seconds(v, &cli->options.idle_in_xact_s)) {
                snprintf(err, errlen, "--idle-seconds: expected a number of seconds, got \"%s\"",
                         v);
                return 2;
            }
        } else if (missing) {
            snprintf(err, errlen, "%s: expected a value", arg);
            return 2;
        } else if (arg[0] == '-' && arg[1] != '\0') {
            snprintf(err, errlen, "unknown option \"%s\"", arg);
            return 2;
        } else if (cli->conninfo != NULL) {
            snprintf(err, errlen, "one connection string expected, got \"%s\" and \"%s\"",
                     cli->conninfo, arg);
            return 2;
        } else {
            cli->conninfo = arg;
        }
    }
    if (cli->conninfo == NULL) {
        snprintf(err, errlen,
                 "a connection string is needed, e.g. \"host=127.0.0.1 port=5432 "
                 "dbname=app user=postgres\"");
        return 2;
    }
    /* A string with key=value pairs or a URI must parse; a bare name is a database name. */
    if (strchr(cli->conninfo, '=') != NULL || strncmp(cli->conninfo, "postgres://", 11) == 0 ||
        strncmp(cli->conninfo, "postgresql://", 13) == 0) {
        char *msg = NULL;
        PQconninfoOption *parsed = PQconninfoParse(cli->conninfo, &msg);
        if (parsed == NULL) {
            char *nl = msg != NULL ? strchr(msg, '\n') : NULL;
            if (nl != NULL)
                *nl = '\0';
            snprintf(err, errlen, "bad connection string: %s", msg != NULL ? msg : "out of memory");
            PQfreemem(msg);
            return 2;
        }
        PQconninfoFree(parsed);
    }
    return 0;
}

static int write_report(const report_cli_t *cli, const json_t *doc)
{
    FILE *out = stdout;
    if (cli->output != NULL && (out = fopen(cli->output, "w")) == NULL) {
        fprintf(stderr, "pgturbo report: cannot write %s: %s\n", cli->output, strerror(errno));
        return 1;
    }
    switch (cli->format) {
    case REPORT_FORMAT_JSON:
        json_dumpf(doc, out, JSON_INDENT(2) | JSON_REAL_PRECISION(12));
        fputc('\n', out);
        break;
    case REPORT_FORMAT_HTML:
        report_render_html(doc, out);
        break;
    case REPORT_FORMAT_TEXT:
        report_render_text(doc, out);
        break;
    }
    bool failed = ferror(out) != 0;
    failed = (out == stdout ? fflush(out) : fclose(out)) != 0 || failed;
    if (failed) {
        fprintf(stderr, "pgturbo report: cannot write %s: %s\n",
                cli->output != NULL ? cli->output : "the output", strerror(errno));
        return 1;
    }
    return 0;
}

int report_cli_run(int argc, char **argv)
{
    report_cli_t cli;
    char err[1024];
    if (report_cli_parse(argc, argv, &cli, err, sizeof(err)) != 0) {
        fprintf(stderr, "pgturbo report: %s\nusage:\n%s", err, report_cli_usage);
        return 2;
    }
    if (cli.help) {
        printf("usage:\n%s", report_cli_usage);
        return 0;
    }
    /* Our defaults first: what the connection string says wins. */
    const char *const keys[] = {"connect_timeout", "fallback_application_name", "dbname", NULL};
    const char *const values[] = {"10", "pgturbo report", cli.conninfo, NULL};
    PGconn *conn = PQconnectdbParams(keys, values, 1);
    if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
        char msg[1024] = "cannot connect: out of memory";
        if (conn != NULL)
            pqmsg_describe(msg, sizeof(msg), "cannot connect", conn);
        fprintf(stderr, "pgturbo report: %s\n", msg);
        PQfinish(conn);
        return 1;
    }
    json_t *doc = report_build(conn, &cli.options, err, sizeof(err));
    PQfinish(conn);
    if (doc == NULL) {
        log_one_line(err);
        fprintf(stderr, "pgturbo report: %s\n", err);
        return 1;
    }
    int rc = write_report(&cli, doc);
    json_decref(doc);
    return rc;
}
