/*
 * pqmsg.h
 *    libpq's error messages for the one-shot commands (advise, report, partition): the
 *    message of a connection, with what was being done, on one line in a caller's buffer.
 */
#ifndef PGTURBO_PQMSG_H
#define PGTURBO_PQMSG_H

#include <libpq-fe.h>
#include <stddef.h>

/* "what: " and conn's last error message into err, its lines (ERROR, DETAIL, HINT ...)
 * joined into one. */
void pqmsg_describe(char *err, size_t errlen, const char *what, PGconn *conn);

#endif /* PGTURBO_PQMSG_H */
