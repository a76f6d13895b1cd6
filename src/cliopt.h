/*
 * cliopt.h
 *    Long options of the one-shot commands (advise, partition): "--name VALUE" and
 *    "--name=VALUE" alike.
 */
#ifndef PGTURBO_CLIOPT_H
#define PGTURBO_CLIOPT_H

#include <stdbool.h>

/* True when arg is option name, alone or as "name=value". */
bool cliopt_is(const char *arg, const char *name);

/* The value of option argv[*i] (which cliopt_is() matched to name), advancing *i past a
 * separate value; NULL when it has none. Borrowed from argv. */
const char *cliopt_value(int argc, char **argv, int *i, const char *name);

#endif /* PGTURBO_CLIOPT_H */
