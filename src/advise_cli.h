/*
 * advise_cli.h
 *    The command line of `pgturbo advise`: options, usage text and exit codes.
 */
#ifndef PGTURBO_ADVISE_CLI_H
#define PGTURBO_ADVISE_CLI_H

#include <stdio.h>

/* The usage lines of `pgturbo advise`, for pgturbo's own usage text. */
void advise_cli_usage(FILE *out);

/* Runs `pgturbo advise` with argv[0] = "advise" and its arguments (borrowed). Returns the
 * process exit code (advise.h: advise_status_t). */
int advise_cli_main(int argc, char **argv);

#endif /* PGTURBO_ADVISE_CLI_H */
