/*
 * pqmsg.c
 *    libpq's error messages on one line; see pqmsg.h.
 */
#include "pqmsg.h"

#include "log.h"

#include <stdio.h>

void pqmsg_describe(char *err, size_t errlen, const char *what, PGconn *conn)
{
    if (errlen == 0)
        return;
    snprintf(err, errlen, "%s: %s", what, PQerrorMessage(conn));
    log_one_line(err);
}
