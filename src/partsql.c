/*
 * partsql.c
 *    SQL text and statements of the partition commands; see partsql.h.
 */
#include "partsql.h"

#include "pqmsg.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void part_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int part_exec_sql(part_exec_t *x, const char *sql, char *err, size_t errlen)
{
    if (x->dry_run) {
        fprintf(x->out, "%s;\n", sql);
        return 0;
    }
    PGresult *res = PQexec(x->conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        const char *m = PQresultErrorMessage(res);
        size_t n = strlen(m);
        while (n > 0 && m[n - 1] == '\n')
            n--;
        part_set_err(err, errlen, "%.*s (in: %.200s)", (int)n, m, sql);
        rc = -1;
    }
    PQclear(res);
    return rc;
}

PGresult *part_query(PGconn *conn, const char *sql, int n, const char *const *params, char *err,
                     size_t errlen)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pqmsg_describe(err, errlen, "catalog query failed", conn);
        PQclear(res);
        return NULL;
    }
    return res;
}

bool part_quote_ident(PGconn *conn, const char *name, char out[PART_QUOTED_LEN])
{
    char *q = PQescapeIdentifier(conn, name, strlen(name));
    if (q == NULL)
        return false;
    snprintf(out, PART_QUOTED_LEN, "%s", q);
    PQfreemem(q);
    return true;
}

bool part_qualify(PGconn *conn, const char *schema, const char *name, char out[PART_QUALIFIED_LEN])
{
    char s[PART_QUOTED_LEN], n[PART_QUOTED_LEN];
    if (!part_quote_ident(conn, schema, s) || !part_quote_ident(conn, name, n))
        return false;
    snprintf(out, PART_QUALIFIED_LEN, "%s.%s", s, n);
    return true;
}

char *part_column_list(PGconn *conn, unsigned table, char *err, size_t errlen)
{
    char oid[16];
    snprintf(oid, sizeof(oid), "%u", table);
    const char *params[] = {oid};
    PGresult *res = part_query(conn,
                               "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) "
                               "FROM pg_attribute WHERE attrelid = $1::oid AND attnum > 0 "
                               "AND NOT attisdropped AND attgenerated = ''",
                               1, params, err, errlen);
    if (res == NULL)
        return NULL;
    char *list = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    if (list == NULL)
        part_set_err(err, errlen, "out of memory");
    return list;
}

int part_relation_exists(PGconn *conn, const char *schema, const char *name, char *err,
                         size_t errlen)
{
    const char *params[] = {schema, name};
    PGresult *res =
        part_query(conn,
                   "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                   "WHERE n.nspname = $1 AND c.relname = $2",
                   2, params, err, errlen);
    if (res == NULL)
        return -1;
    int taken = PQntuples(res) > 0;
    PQclear(res);
    return taken;
}
