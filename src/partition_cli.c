/*
 * partition_cli.c
 *    The command line of `pgturbo partition`: parses the subcommand and its options, connects
 *    and runs it; every mistake is one line on stderr and exit code 2.
 *
 * The connection string is the last argument that is not an option; the table names come
 * before it.
 */
#include "partition_cli.h"

#include "cliopt.h"
#include "partition.h"
#include "partition_convert.h"
#include "pqmsg.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TABLES 64

typedef struct cli {
    const char *command;
    const char *positional[MAX_TABLES + 1]; /* tables, then the connection string */
    int n_positional;
    part_settings_t settings;
    int64_t from; /* --from: PARTITION_FROM_TODAY unless given */
    int keep;     /* convert --keep: intervals of rows copied; -1 = all */
    int batch;    /* convert --batch: rows per copy step */
    bool dry_run;
    bool has_column;
    bool has_interval;
} cli_t;

void partition_cli_usage(FILE *out)
{
    fprintf(out,
            "       pgturbo partition create TABLE --column COL --interval day|week|month|year\n"
            "                      [--premake N] [--retain N] [--retention drop|detach]\n"
            "                      [--archive-schema S] [--default] [--from YYYY-MM-DD]\n"
            "                      [--dry-run] CONNINFO\n"
            "                                       make the partitions of a table partitioned\n"
            "                                       by RANGE (COL) and manage it\n"
            "       pgturbo partition convert TABLE --column COL --interval ... [--keep N]\n"
            "                      [--keep-months N] [--batch ROWS] [--premake N] [--retain N]\n"
            "                      [--default] [--dry-run] CONNINFO\n"
            "                                       turn a plain table into a partitioned one,\n"
            "                                       the old one kept as TABLE_old\n"
            "       pgturbo partition maintain [TABLE ...] CONNINFO\n"
            "                                       premake, empty the default partition,\n"
            "                                       retire old partitions\n"
            "       pgturbo partition list [TABLE] CONNINFO\n"
            "                                       partitions with ranges, rows and sizes\n"
            "         exit codes: 0 done, 1 database unreachable or a statement failed, 2 bad\n"
            "         command line, 3 refused (no such table or column, partitioned otherwise,\n"
            "         overlapping partitions ...): nothing was changed\n");
}

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "pgturbo partition: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage:\n");
    partition_cli_usage(stderr);
    return PARTITION_FAIL_USAGE;
}

static bool parse_count(const char *s, int min, int *out)
{
    char *end;
    errno = 0;
    long v = s == NULL ? -1 : strtol(s, &end, 10);
    if (s == NULL || errno != 0 || end == s || *end != '\0' || v < min || v > 100000000)
        return false;
    *out = (int)v;
    return true;
}

/* Parses one option at argv[*i] into c; 0, or the exit code of a usage error. */
static int parse_option(cli_t *c, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];
    part_settings_t *s = &c->settings;
    static const struct {
        const char *name;
        int min;
        size_t offset;
    } counts[] = {
        {"--premake", 0, offsetof(cli_t, settings.premake)},
        {"--retain", 0, offsetof(cli_t, settings.retain)},
        {"--keep", 1, offsetof(cli_t, keep)},
        {"--keep-months", 1, offsetof(cli_t, keep)},
        {"--batch", 1, offsetof(cli_t, batch)},
    };
    for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
        if (!cliopt_is(arg, counts[k].name))
            continue;
        const char *v = cliopt_value(argc, argv, i, counts[k].name);
        if (!parse_count(v, counts[k].min, (int *)((char *)c + counts[k].offset)))
            return usage_error("%s: expected a whole number of at least %d, got \"%s\"",
                               counts[k].name, counts[k].min, v == NULL ? "" : v);
        if (strcmp(counts[k].name, "--keep-months") == 0 && c->has_interval &&
            s->interval != PART_MONTH)
            return usage_error("--keep-months goes with --interval month; use --keep");
        return 0;
    }
    const char *v;
    if (cliopt_is(arg, "--column")) {
        v = cliopt_value(argc, argv, i, "--column");
        if (v == NULL || v[0] == '\0' || strlen(v) >= sizeof(s->column))
            return usage_error("--column needs a column name (at most 63 bytes)");
        snprintf(s->column, sizeof(s->column), "%s", v);
        c->has_column = true;
    } else if (cliopt_is(arg, "--interval")) {
        v = cliopt_value(argc, argv, i, "--interval");
        if (v == NULL || !partbounds_parse_interval(v, &s->interval))
            return usage_error("--interval: expected day, week, month or year, got \"%s\"",
                               v == NULL ? "" : v);
        c->has_interval = true;
    } else if (cliopt_is(arg, "--retention")) {
        v = cliopt_value(argc, argv, i, "--retention");
        if (v != NULL && strcmp(v, "drop") == 0)
            s->retention = PART_RETENTION_DROP;
        else if (v != NULL && strcmp(v, "detach") == 0)
            s->retention = PART_RETENTION_DETACH;
        else
            return usage_error("--retention: expected drop or detach, got \"%s\"",
                               v == NULL ? "" : v);
    } else if (cliopt_is(arg, "--archive-schema")) {
        v = cliopt_value(argc, argv, i, "--archive-schema");
        if (v == NULL || v[0] == '\0' || strlen(v) >= sizeof(s->archive_schema))
            return usage_error("--archive-schema needs a schema name (at most 63 bytes)");
        snprintf(s->archive_schema, sizeof(s->archive_schema), "%s", v);
    } else if (cliopt_is(arg, "--from")) {
        v = cliopt_value(argc, argv, i, "--from");
        if (v == NULL || strlen(v) != 10 || !partbounds_parse_day(v, &c->from))
            return usage_error("--from: expected a date YYYY-MM-DD, got \"%s\"",
                               v == NULL ? "" : v);
    } else if (strcmp(arg, "--default") == 0) {
        s->default_partition = true;
    } else if (strcmp(arg, "--dry-run") == 0) {
        c->dry_run = true;
    } else {
        return usage_error("unknown option \"%s\"", arg);
    }
    return 0;
}

/* Checks what each command needs; 0 or a usage error's exit code. */
static int check_command(const cli_t *c)
{
    const char *cmd = c->command;
    bool makes = strcmp(cmd, "create") == 0 || strcmp(cmd, "convert") == 0;
    if (!makes && strcmp(cmd, "maintain") != 0 && strcmp(cmd, "list") != 0)
        return usage_error("unknown command \"%s\": create, convert, maintain or list", cmd);
    if (c->n_positional == 0)
        return usage_error("a connection string is needed (e.g. \"dbname=app\")");
    if (makes && c->n_positional != 2)
        return usage_error("%s takes one table and a connection string", cmd);
    if (strcmp(cmd, "list") == 0 && c->n_positional > 2)
        return usage_error("list takes at most one table and a connection string");
    if (makes && (!c->has_column || !c->has_interval))
        return usage_error("%s needs --column and --interval", cmd);
    if (!makes && (c->has_column || c->has_interval || c->dry_run))
        return usage_error("%s reads its settings from pgturbo.partition_config: no --column, "
                           "--interval or --dry-run",
                           cmd);
    if (c->settings.archive_schema[0] != '\0' && c->settings.retention != PART_RETENTION_DETACH)
        return usage_error("--archive-schema goes with --retention detach");
    return 0;
}

static int run(const cli_t *c, PGconn *conn)
{
    char err[1024] = "";
    const char *table = c->positional[0];
    partition_status_t rc = PARTITION_OK;
    if (strcmp(c->command, "create") == 0) {
        rc = partition_create(conn, table, &c->settings, c->from, c->dry_run, stdout, err,
                              sizeof(err));
    } else if (strcmp(c->command, "convert") == 0) {
        convert_options_t o = {
            .table = table,
            .settings = c->settings,
            .keep = c->keep,
            .batch = c->batch,
            .dry_run = c->dry_run,
        };
        rc = partition_convert(conn, &o, stdout, err, sizeof(err));
    } else if (strcmp(c->command, "maintain") == 0) {
        char *text = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&text, &len);
        if (out == NULL)
            return PARTITION_FAIL_DB;
        rc = partition_maintain(conn, c->positional, c->n_positional - 1, out, err, sizeof(err));
        fclose(out);
        fputs(len > 0 ? text : "nothing to do\n", stdout);
        free(text);
    } else {
        rc = partition_list(conn, c->n_positional == 2 ? table : NULL, stdout, err, sizeof(err));
    }
    if (rc != PARTITION_OK)
        fprintf(stderr, "pgturbo partition %s: %s\n", c->command, err);
    return rc;
}

int partition_cli_main(int argc, char **argv)
{
    cli_t c = {
        .settings = {.premake = PART_DEFAULT_PREMAKE, .retain = -1},
        .from = PARTITION_FROM_TODAY,
        .keep = -1,
        .batch = CONVERT_DEFAULT_BATCH,
    };
    if (argc < 2)
        return usage_error("a command is needed");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        printf("usage:\n");
        partition_cli_usage(stdout);
        return PARTITION_OK;
    }
    c.command = argv[1];
    for (int i = 2; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1] == '-') {
            int rc = parse_option(&c, argc, argv, &i);
            if (rc != 0)
                return rc;
        } else if (c.n_positional == MAX_TABLES + 1) {
            return usage_error("at most %d tables at once", MAX_TABLES);
        } else {
            c.positional[c.n_positional++] = argv[i];
        }
    }
    int rc = check_command(&c);
    if (rc != 0)
        return rc;
    const char *conninfo = c.positional[c.n_positional - 1];
    PGconn *conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        char msg[1024];
        pqmsg_describe(msg, sizeof(msg), "cannot connect", conn);
        fprintf(stderr, "pgturbo partition %s: %s\n", c.command, msg);
        PQfinish(conn);
        return PARTITION_FAIL_DB;
    }
    rc = run(&c, conn);
    PQfinish(conn);
    return rc;
}
