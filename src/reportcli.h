/*
 * reportcli.h
 *    The command line of pgturbo report: arguments, the connection, the output.
 *
 *   pgturbo report [--json | --html] [--output FILE] [--top N] [--long-query-seconds S]
 *                  [--idle-seconds S] CONNINFO
 *
 * CONNINFO is a libpq connection string or URI ("host=db port=5432 dbname=app user=me",
 * "postgresql://me@db/app") or a bare database name; libpq's PG* environment variables fill
 * in what it leaves out. Exit codes: 0 the report was written (whatever it found), 1 no
 * connection, a failed query, an unsupported server or an unwritable output, 2 bad usage
 * (including a malformed connection string).
 */
#ifndef PGTURBO_REPORTCLI_H
#define PGTURBO_REPORTCLI_H

#include "report.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum report_format {
    REPORT_FORMAT_TEXT,
    REPORT_FORMAT_JSON,
    REPORT_FORMAT_HTML,
} report_format_t;

typedef struct report_cli {
    report_format_t format;
    const char *output;   /* NULL for stdout */
    const char *conninfo; /* borrowed from argv */
    bool help;            /* --help: print the usage, nothing else */
    report_options_t options;
} report_cli_t;

/* The usage lines, for pgturbo's own usage text too. */
extern const char report_cli_usage[];

/*
 * Parses argv[1..argc-1] (argv[0] is "report") into cli. Returns 0, or 2 with a one-line
 * message in err. Borrows argv, which cli then points into.
 */
__attribute__((warn_unused_result)) int report_cli_parse(int argc, char **argv, report_cli_t *cli,
                                                         char *err, size_t errlen);

/* Runs pgturbo report; argv[0] is "report". Returns the exit code above; messages go to
 * stderr as "pgturbo report: ...". */
int report_cli_run(int argc, char **argv);

#endif /* PGTURBO_REPORTCLI_H */
