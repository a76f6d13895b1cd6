/*
 * main.c
 *    The pgturbo command line: picks the subcommand and hands over; nothing else.
 */
#include "advise_cli.h"
#include "partition_cli.h"
#include "reportcli.h"
#include "serve.h"

#include <stdio.h>
#include <string.h>

#define PGTURBO_VERSION "0.1.0"

static int usage(FILE *out, int code)
{
    fprintf(out,
            "usage: pgturbo serve [-c] CONFIG.ini   run the proxy\n"
            "%s"
            "       pgturbo version                print the version\n",
            report_cli_usage);
    advise_cli_usage(out);
    partition_cli_usage(out);
    fprintf(out, "exit codes: 0 done, 1 failed (no connection, a failed query, an unwritable\n"
                 "output), 2 bad usage or a bad config file (advise, partition: see above)\n");
    return code;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage(stderr, 2);
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0) {
        int i = 2;
        if (i < argc && strcmp(argv[i], "-c") == 0)
            i++;
        if (i != argc - 1)
            return usage(stderr, 2);
        return serve_run(argv[i]);
    }
    if (strcmp(cmd, "report") == 0)
        return report_cli_run(argc - 1, argv + 1);
    if (strcmp(cmd, "advise") == 0)
        return advise_cli_main(argc - 1, argv + 1);
    if (strcmp(cmd, "partition") == 0)
        return partition_cli_main(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("pgturbo %s\n", PGTURBO_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0)
        return usage(stdout, 0);
    fprintf(stderr, "pgturbo: unknown command \"%s\"\n", cmd);
    return usage(stderr, 2);
}
