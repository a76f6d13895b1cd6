/*
 * partsql.h
 *    SQL text and statements of the partition commands (partition.c, partition_convert.c):
 *    names quoted with PQescapeIdentifier, catalog queries with parameters, and the one way
 *    statements that change the database are run, or printed under --dry-run.
 */
#ifndef PGTURBO_PARTSQL_H
#define PGTURBO_PARTSQL_H

#include "partbounds.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define PART_QUOTED_LEN    (2 * PARTBOUNDS_NAME_LEN + 3) /* a quoted identifier */
#define PART_QUALIFIED_LEN (2 * PART_QUOTED_LEN + 2)     /* "schema"."name" */
#define PART_SQL_LEN       8192                          /* one generated statement */

/* Where statements go: run on conn, or printed to out when dry_run. */
typedef struct part_exec {
    PGconn *conn; /* borrowed */
    FILE *out;    /* borrowed: progress, and the statements of a dry run */
    bool dry_run;
} part_exec_t;

/* Runs sql (or prints it with a ";" under dry_run). Returns 0, or -1 with the server's
 * message in err. */
__attribute__((warn_unused_result)) int part_exec_sql(part_exec_t *x, const char *sql, char *err,
                                                      size_t errlen);

/* Runs a query with text parameters; the result (caller clears), or NULL with err set. */
PGresult *part_query(PGconn *conn, const char *sql, int n, const char *const *params, char *err,
                     size_t errlen);

__attribute__((format(printf, 3, 4))) void part_set_err(char *err, size_t errlen, const char *fmt,
                                                        ...);

/* name quoted as an identifier into out; false when memory runs out. */
bool part_quote_ident(PGconn *conn, const char *name, char out[PART_QUOTED_LEN]);
/* "schema"."name" into out; false when memory runs out. */
bool part_qualify(PGconn *conn, const char *schema, const char *name, char out[PART_QUALIFIED_LEN]);

/* The columns of the table with oid table, quoted and comma-separated, generated ones left
 * out (they are computed again): malloc'd (caller frees), or NULL with err set. */
char *part_column_list(PGconn *conn, unsigned table, char *err, size_t errlen);

/* 1 when a relation named name is in schema, 0 when none is, -1 (err set) on failure. */
int part_relation_exists(PGconn *conn, const char *schema, const char *name, char *err,
                         size_t errlen);

#endif /* PGTURBO_PARTSQL_H */
