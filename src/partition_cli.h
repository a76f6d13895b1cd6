/*
 * partition_cli.h
 *    The command line of `pgturbo partition`: create, convert, maintain, list.
 */
#ifndef PGTURBO_PARTITION_CLI_H
#define PGTURBO_PARTITION_CLI_H

#include <stdio.h>

/* Writes the usage lines of pgturbo partition to out. */
void partition_cli_usage(FILE *out);

/* Runs `pgturbo partition ARGS` (argv[0] is "partition"); returns the exit code, a
 * partition_status_t. */
int partition_cli_main(int argc, char **argv);

#endif /* PGTURBO_PARTITION_CLI_H */
